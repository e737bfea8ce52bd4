//! pwreset-operator: mirrors Microsoft Entra ID password-reset operations
//! (Graph `longRunningOperation`) into `PasswordResetOperation` custom resources.

pub mod api;
pub mod conditions;
pub mod controller;
pub mod duration;
pub mod events;
pub mod graph;
pub mod leader;
pub mod metrics;
pub mod server;
pub mod shard;
pub mod telemetry;

/// Installs rustls' process-wide crypto provider (ring) once. reqwest is built without a
/// provider of its own so that the binary carries a single TLS stack, shared with kube.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
