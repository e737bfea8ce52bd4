//! Microsoft Graph emulator: a local stand-in for the parts of Graph and
//! Entra ID that pwreset-operator talks to, faithful to
//! `docs/graph-api.md` (repository root), with scripted progressions and injectable faults.
//! User documentation: `docs/emulator.md`.
//!
//! Module map:
//! - `server`: command line, logging, life cycle
//! - `routes`: the router
//! - `http`: correlation headers, request-log middleware, errors
//! - `graph`, `graph_reset`, `graph_keyed`, `graph_answers`, `users`: the Graph routes (operation GET,
//!   resetPassword; `users('…')` keys), their scripted and fault answers, user path segments
//! - `token`, `token_error`, `token_faults`, `client_auth`: the Entra token endpoint, its
//!   grants, error shape, scripted answers and faults, client authentication
//! - `admin`: the `/_emulator` admin API
//! - `state`: shared state and its locks
//! - `config`: config file / admin API shapes
//! - `operations`, `progression`, `timefmt`: scripted operations
//! - `identity`: tenants, clients, access and refresh tokens
//! - `throttle`, `faults`: per-tenant token buckets, random faults
//! - `reqlog`: request log and counters
//! - `tls`: the HTTPS listener (`--tls-cert`, `--tls-key`)

mod admin;
mod admin_ledger;
mod client_auth;
pub mod config;
mod device_code;
mod faults;
mod graph;
mod graph_answers;
mod graph_keyed;
mod graph_reset;
mod http;
mod identity;
mod operations;
mod progression;
mod reqlog;
mod reset_ledger;
mod routes;
mod server;
mod state;
mod throttle;
mod timefmt;
mod tls;
mod token;
mod token_error;
mod token_faults;
mod users;

pub use server::{Args, LogFormat, init_logging, run};
