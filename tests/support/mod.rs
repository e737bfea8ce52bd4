//! Shared end-to-end support: a real control plane per test binary, and the operator and
//! the Graph emulator as real processes. Every test binary includes it with `mod support;`
//! and uses a different part of it, hence the dead-code allowance.
#![allow(dead_code, unused_imports)]

pub mod control_plane;
pub mod emulator;
pub mod harness;
pub mod observe;
pub mod operator;
pub mod wait;

pub use control_plane::ControlPlane;
pub use emulator::Emulator;
pub use harness::{Harness, condition};
pub use operator::Operator;
pub use wait::eventually;

use std::path::{Path, PathBuf};

/// The repository root, where `make` leaves the control plane and tools.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A built tool (`kubectl`, `helm`) from `target/tools/bin`. A missing tool fails the test
/// with the command that builds it: tests never skip.
pub fn tool(name: &str) -> PathBuf {
    let path = repo_root().join("target/tools/bin").join(name);
    assert!(path.exists(), "{} is missing: run `make tools` (or `make test`, which builds it) first", path.display());
    path
}

/// Installs rustls' process-wide crypto provider once; reqwest is built without one.
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A namespace name unique to this test run, valid as a DNS label.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}
