//! The end-to-end harness of pwreset-operator, shared by `tests/` and the benchmark
//! (`bench/`): a real control plane, the Graph emulator and the operator as real processes,
//! watches that record what the operator wrote, and poll-with-deadline helpers.
//!
//! Binaries are found next to the running executable (see [`binary`]): a test or the bench
//! runs the exact `graph-emulator` and `pwreset-operator` of its own build profile.

pub mod control_plane;
pub mod emulator;
pub mod harness;
pub mod kube;
pub mod leaks;
pub mod observe;
pub mod operator;
pub mod process;
pub mod proxy;
pub mod run;
pub mod tls;
pub mod upgrade;
pub mod wait;
pub mod watch;

pub use control_plane::ControlPlane;
pub use emulator::{Emulator, EmulatorClient};
pub use harness::{Harness, condition};
pub use operator::Operator;
pub use wait::eventually;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The repository root, where `make` leaves the control plane and tools.
pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A built tool (`kubectl`, `helm`) from `target/tools/bin`. A missing tool fails the test
/// with the command that builds it: tests never skip.
pub fn tool(name: &str) -> PathBuf {
    let path = repo_root().join("target/tools/bin").join(name);
    assert!(path.exists(), "{} is missing: run `make tools` (or `make test`, which builds it) first", path.display());
    path
}

/// The profile directory the running executable was built into (`target/debug`,
/// `target/release`): test executables live one level down, in `deps/`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("locating the running executable");
    let mut dir = exe.parent().expect("executable without a directory").to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps" || n == "examples") {
        dir.pop();
    }
    dir
}

/// A workspace binary (`pwreset-operator`, `graph-emulator`) of the same build profile as the
/// running executable. Cargo builds a package's own binaries for its integration tests only,
/// not other members', so a missing one fails loudly with the command that builds it.
pub fn binary(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace's binaries first with `cargo build --workspace --bins` \
         (add --release for a release test run; `make test` does it)",
        path.display()
    );
    path
}

/// Installs rustls' process-wide crypto provider once; reqwest is built without one.
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A name unique to this test run, valid as a DNS label.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Wall-clock Unix milliseconds: the emulator's request log uses the same clock.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}
