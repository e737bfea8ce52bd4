//! pwreset-operator: mirrors Microsoft Entra ID password-reset operations
//! (Graph `longRunningOperation`) into `PasswordResetOperation` custom resources.
//!
//! Where things are: `api` (the CRD types), `reason` and `conditions` (the vocabulary),
//! `decide` (every decision, pure), `reconcile` (the I/O shell around it), `controller`
//! (the watch and housekeeping), `graph` (Graph client, limiter, gateway), `credentials`,
//! `metrics`, `events`, `wakeups` (when each resource is looked at next), `cache` (what the watch
//! keeps of each resource), and the process around them (`leader`, `shard`, `server`, `telemetry`);
//! `check` is the `check` subcommand (is this installation able to work?), `login` the `login`
//! one; `cli` holds every subcommand's flags and `endpoints` where credentials may be sent.

pub mod api;
pub mod api_reset;
pub mod cache;
pub mod check;
pub mod cli;
pub mod conditions;
pub mod context;
pub mod controller;
pub mod credentials;
pub mod decide;
pub mod decide_reset;
pub mod duration;
pub mod endpoints;
pub mod events;
pub mod graph;
pub mod http;
pub mod leader;
pub mod login;
pub mod metrics;
pub mod outbound;
pub mod password;
pub mod reason;
pub mod reconcile;
pub mod reconcile_reset;
pub mod reset_secret;
pub mod run;
pub mod server;
pub mod shard;
pub mod telemetry;
pub mod text;
pub mod triggers;
pub mod wakeups;

/// Installs rustls' process-wide crypto provider (ring) once. reqwest is built without a
/// provider of its own so that the binary carries a single TLS stack, shared with kube.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
