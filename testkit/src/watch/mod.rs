//! Watches on `PasswordResetOperation`s that record what the operator wrote: `history`
//! keeps every version of every resource (the test suites, hundreds of resources);
//! `recorder` keeps a few counters per resource, small enough for the benchmark's 10,000.

pub mod history;
pub mod recorder;

pub use history::{History, Seen, SeenCondition};
pub use recorder::{Recorder, Track};

use pwreset_operator::api::PasswordResetOperation;

/// Whether the operator has written `Finished=True`.
pub fn is_finished(o: &PasswordResetOperation) -> bool {
    o.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Finished" && c.status == "True"))
}

/// Index of a numbered name: `pro-00042` with prefix `pro-` is 42.
pub fn index_of(name: &str, prefix: &str) -> Option<usize> {
    name.strip_prefix(prefix)?.parse().ok()
}
