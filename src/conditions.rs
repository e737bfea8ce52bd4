//! The conditions a resource carries, and how they follow from where tracking stands.
//!
//! They are read by kstatus (Flux, kpt), Argo CD's health check and `kubectl wait`:
//! - `Ready`: True only when the operation succeeded.
//! - `Reconciling`: present (True) while the operation is not finished and nothing blocks it.
//! - `Stalled`: present (True) when the operation failed, or cannot progress without a
//!   person (credentials, a wrong id, a deadline). kstatus reports it as Failed.
//! - `Finished`: True at either end (succeeded, or failed / given up), so a pipeline can
//!   `kubectl wait --for=condition=Finished` once and then branch on `Ready`.
//!
//! Following Flux, `Reconciling` and `Stalled` are present only while True.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const FINISHED: &str = "Finished";

/// Where tracking stands, with a stable CamelCase reason and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Still going: waiting for Graph, or retrying a passing error.
    Progressing { reason: String, message: String },
    /// Blocked until a person acts (fix a Secret, grant a role); not finished.
    Blocked { reason: String, message: String },
    /// The operation succeeded. Terminal.
    Succeeded { message: String },
    /// The operation failed, or tracking gave up for good. Terminal.
    Failed { reason: String, message: String },
}

impl Phase {
    pub fn progressing(reason: &str, message: impl Into<String>) -> Self {
        Phase::Progressing { reason: reason.into(), message: message.into() }
    }
    pub fn blocked(reason: &str, message: impl Into<String>) -> Self {
        Phase::Blocked { reason: reason.into(), message: message.into() }
    }
    pub fn failed(reason: &str, message: impl Into<String>) -> Self {
        Phase::Failed { reason: reason.into(), message: message.into() }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, Phase::Succeeded { .. } | Phase::Failed { .. })
    }

    pub fn reason(&self) -> &str {
        match self {
            Phase::Progressing { reason, .. } | Phase::Blocked { reason, .. } | Phase::Failed { reason, .. } => reason,
            Phase::Succeeded { .. } => "Succeeded",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Phase::Progressing { message, .. }
            | Phase::Blocked { message, .. }
            | Phase::Failed { message, .. }
            | Phase::Succeeded { message } => message,
        }
    }
}

/// The full condition list for `phase`. `lastTransitionTime` is carried over from
/// `previous` for every condition whose status did not change.
pub fn conditions_for(phase: &Phase, generation: Option<i64>, now: &Time, previous: &[Condition]) -> Vec<Condition> {
    let (reason, message) = (phase.reason(), phase.message());
    let mut wanted: Vec<(&str, &str, &str)> = Vec::with_capacity(3);
    match phase {
        Phase::Progressing { .. } => {
            wanted.push((READY, "False", reason));
            wanted.push((RECONCILING, "True", reason));
            wanted.push((FINISHED, "False", reason));
        }
        Phase::Blocked { .. } => {
            wanted.push((READY, "False", reason));
            wanted.push((STALLED, "True", reason));
            wanted.push((FINISHED, "False", reason));
        }
        Phase::Succeeded { .. } => {
            wanted.push((READY, "True", reason));
            wanted.push((FINISHED, "True", reason));
        }
        Phase::Failed { .. } => {
            wanted.push((READY, "False", reason));
            wanted.push((STALLED, "True", reason));
            wanted.push((FINISHED, "True", reason));
        }
    }
    wanted
        .into_iter()
        .map(|(type_, status, reason)| {
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: type_.into(),
                status: status.into(),
                reason: reason.into(),
                message: message.into(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Whether `conditions` say tracking is over (Finished=True).
pub fn is_finished(conditions: &[Condition]) -> bool {
    conditions.iter().any(|c| c.type_ == FINISHED && c.status == "True")
}

/// The reason of the condition `type_`, if present.
pub fn reason_of<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a str> {
    conditions.iter().find(|c| c.type_ == type_).map(|c| c.reason.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap())
    }

    fn get<'a>(c: &'a [Condition], type_: &str) -> Option<&'a Condition> {
        c.iter().find(|c| c.type_ == type_)
    }

    #[test]
    fn each_phase_sets_the_conditions_kstatus_and_kubectl_wait_read() {
        let p = conditions_for(&Phase::progressing("Running", "running"), Some(1), &t(1), &[]);
        assert_eq!(get(&p, READY).unwrap().status, "False");
        assert_eq!(get(&p, RECONCILING).unwrap().status, "True");
        assert_eq!(get(&p, FINISHED).unwrap().status, "False");
        assert!(get(&p, STALLED).is_none());

        let s = conditions_for(&Phase::Succeeded { message: "ok".into() }, Some(1), &t(2), &p);
        assert_eq!(get(&s, READY).unwrap().status, "True");
        assert_eq!(get(&s, FINISHED).unwrap().status, "True");
        assert!(get(&s, RECONCILING).is_none() && get(&s, STALLED).is_none());

        let f = conditions_for(&Phase::failed("OperationFailed", "no"), Some(1), &t(2), &p);
        assert_eq!(get(&f, STALLED).unwrap().status, "True");
        assert_eq!(get(&f, FINISHED).unwrap().status, "True");
        assert_eq!(get(&f, READY).unwrap().status, "False");

        let b = conditions_for(&Phase::blocked("CredentialsSecretNotFound", "x"), Some(1), &t(2), &p);
        assert_eq!(get(&b, STALLED).unwrap().status, "True");
        assert_eq!(get(&b, FINISHED).unwrap().status, "False");
        assert!(get(&b, RECONCILING).is_none());
        assert!(is_finished(&f) && is_finished(&s) && !is_finished(&b));
    }

    #[test]
    fn transition_time_changes_only_with_status() {
        let first = conditions_for(&Phase::progressing("NotStarted", "a"), Some(1), &t(1), &[]);
        let second = conditions_for(&Phase::progressing("Running", "b"), Some(2), &t(5), &first);
        assert_eq!(get(&second, READY).unwrap().last_transition_time, t(1));
        assert_eq!(get(&second, READY).unwrap().reason, "Running");
        assert_eq!(get(&second, READY).unwrap().observed_generation, Some(2));
        let done = conditions_for(&Phase::Succeeded { message: "c".into() }, Some(2), &t(9), &second);
        assert_eq!(get(&done, READY).unwrap().last_transition_time, t(9));
    }

    #[test]
    fn reasons_are_valid_condition_reasons() {
        let re = |r: &str| {
            r.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && r.chars().all(|c| c.is_ascii_alphanumeric() || ",:_".contains(c))
        };
        for phase in [Phase::Succeeded { message: String::new() }, Phase::progressing("WaitingForGraph", "")] {
            assert!(re(phase.reason()));
        }
    }
}
