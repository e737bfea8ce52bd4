//! resetPassword's side of the directory, and the faults that prove a caller's
//! at-most-once handling:
//!
//! - the **ledger**: how many resets were processed per user, and each user's current
//!   password (tests ask "does this password match?"; the password itself is never served);
//! - **complexity**: Entra's rule for cloud accounts (8–256 characters, three of the four
//!   classes lower, upper, digit, symbol), refused with 400 before anything is processed;
//! - **scripted faults**, consumed one per resetPassword request, default none:
//!   `throttle` (429 with Retry-After, not processed), `holdBeforeProcessing` (wait, then
//!   process), `holdAfterProcessing` (process, then wait before answering),
//!   `dropAfterProcessing` (process, then close the connection without an answer) and
//!   `errorAfterProcessing` (process, then answer a 5xx).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

/// One scripted answer to the next resetPassword request.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "fault", rename_all = "camelCase", deny_unknown_fields)]
pub enum ResetFault {
    /// 429 TooManyRequests with `Retry-After` (seconds, sent verbatim); nothing processed.
    Throttle {
        #[serde(default = "one", rename = "retryAfter")]
        retry_after: String,
    },
    /// Wait `ms`, then process and answer normally.
    HoldBeforeProcessing { ms: u64 },
    /// Process, then wait `ms` before answering (a caller that gives up or dies meanwhile
    /// never learns that the reset happened).
    HoldAfterProcessing { ms: u64 },
    /// Process, then close the connection without an answer.
    DropAfterProcessing,
    /// Process, then answer `status` (default 503) with a Graph error.
    ErrorAfterProcessing {
        #[serde(default = "service_unavailable")]
        status: u16,
    },
}

fn one() -> String {
    "1".into()
}

fn service_unavailable() -> u16 {
    503
}

/// Processed resets and current passwords, plus the fault script.
#[derive(Debug, Default)]
pub struct ResetLedger {
    pub(crate) processed: BTreeMap<String, u64>,
    pub(crate) passwords: BTreeMap<String, String>,
    pub(crate) script: VecDeque<ResetFault>,
}

impl ResetLedger {
    /// The fault for this request, if one is scripted.
    pub fn next_fault(&mut self) -> Option<ResetFault> {
        self.script.pop_front()
    }

    /// Records a processed reset of `user` (case-insensitive, as Entra ids are).
    pub fn processed(&mut self, user: &str, password: &str) {
        let key = user.to_ascii_lowercase();
        *self.processed.entry(key.clone()).or_default() += 1;
        self.passwords.insert(key, password.to_owned());
    }

    pub fn clear(&mut self) {
        *self = ResetLedger::default();
    }
}

/// Entra's complexity rule for cloud accounts; the message is the one Entra gives.
pub fn complexity_problem(password: &str) -> Option<&'static str> {
    let len = password.chars().count();
    let classes = [
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    let weak = !(8..=256).contains(&len) || classes.iter().filter(|&&c| c).count() < 3;
    weak.then_some(
        "The specified password does not comply with password complexity requirements. Please provide a different \
         password.",
    )
}

/// What the handler does around processing, for a scripted fault.
pub async fn before_processing(fault: &Option<ResetFault>) {
    if let Some(ResetFault::HoldBeforeProcessing { ms }) = fault {
        tokio::time::sleep(Duration::from_millis(*ms)).await;
    }
}

/// After processing: the normal `answer`, late, replaced by an error, or no answer at all.
pub async fn after_processing(
    fault: Option<ResetFault>,
    answer: Response,
    error: impl FnOnce(StatusCode) -> Response,
) -> Response {
    match fault {
        Some(ResetFault::HoldAfterProcessing { ms }) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            answer
        }
        Some(ResetFault::ErrorAfterProcessing { status }) => {
            error(StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE))
        }
        Some(ResetFault::DropAfterProcessing) => {
            tracing::warn!("fault dropAfterProcessing: the reset was processed; closing the connection unanswered");
            // Unwinding ends the connection's task: hyper closes the socket without writing
            // a byte of the answer, as a crashed front end would.
            std::panic::resume_unwind(Box::new("fault injection: dropAfterProcessing"))
        }
        _ => answer,
    }
}

#[derive(Deserialize)]
pub(crate) struct Script {
    pub(crate) faults: Vec<ResetFault>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn complexity_needs_length_and_three_classes() {
        assert!(complexity_problem("short1!").is_some());
        assert!(complexity_problem("alllowercaseletters").is_some());
        assert!(complexity_problem("lowerUPPER").is_some());
        assert!(complexity_problem("lowerUPPER1").is_none());
        assert!(complexity_problem("lower-1234").is_none());
        assert!(complexity_problem(&"aA1".repeat(90)).is_some(), "over 256");
    }

    #[test]
    fn the_script_parses_and_is_consumed_in_order() {
        let script: Script = serde_json::from_value(json!({"faults": [
            {"fault": "throttle", "retryAfter": "2"}, {"fault": "dropAfterProcessing"},
            {"fault": "errorAfterProcessing"}, {"fault": "holdAfterProcessing", "ms": 5}
        ]}))
        .unwrap();
        let mut ledger = ResetLedger { script: script.faults.into(), ..Default::default() };
        assert_eq!(ledger.next_fault(), Some(ResetFault::Throttle { retry_after: "2".into() }));
        assert_eq!(ledger.next_fault(), Some(ResetFault::DropAfterProcessing));
        assert_eq!(ledger.next_fault(), Some(ResetFault::ErrorAfterProcessing { status: 503 }));
        assert_eq!(ledger.next_fault(), Some(ResetFault::HoldAfterProcessing { ms: 5 }));
        assert_eq!(ledger.next_fault(), None);
        assert!(serde_json::from_value::<Script>(json!({"faults": [{"fault": "nope"}]})).is_err());
    }
}
