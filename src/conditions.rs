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

use crate::reason::{Kind, Reason};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const FINISHED: &str = "Finished";
/// Longest condition message: three conditions carry it, and the object must stay far below
/// etcd's size limit whatever Graph sends.
pub const MAX_MESSAGE: usize = 1024;

/// Where tracking stands: a reason (whose kind decides the conditions) and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub reason: Reason,
    pub message: String,
}

impl Phase {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Phase { reason, message: message.into() }
    }

    pub fn kind(&self) -> Kind {
        self.reason.kind()
    }

    pub fn is_terminal(&self) -> bool {
        self.kind().is_terminal()
    }
}

/// The full condition list for `phase`. `lastTransitionTime` is carried over from
/// `previous` for every condition whose status did not change.
pub fn conditions_for(phase: &Phase, generation: Option<i64>, now: &Time, previous: &[Condition]) -> Vec<Condition> {
    let message = crate::text::for_people(&phase.message, MAX_MESSAGE);
    let (reason, message) = (phase.reason.as_str(), message.as_str());
    let mut wanted: Vec<(&str, &str, &str)> = Vec::with_capacity(3);
    match phase.kind() {
        Kind::Progressing => {
            wanted.push((READY, "False", reason));
            wanted.push((RECONCILING, "True", reason));
            wanted.push((FINISHED, "False", reason));
        }
        Kind::Blocked => {
            wanted.push((READY, "False", reason));
            wanted.push((STALLED, "True", reason));
            wanted.push((FINISHED, "False", reason));
        }
        Kind::Succeeded => {
            wanted.push((READY, "True", reason));
            wanted.push((FINISHED, "True", reason));
        }
        Kind::Failed => {
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
        let p = conditions_for(&Phase::new(Reason::Running, "running"), Some(1), &t(1), &[]);
        assert_eq!(get(&p, READY).unwrap().status, "False");
        assert_eq!(get(&p, RECONCILING).unwrap().status, "True");
        assert_eq!(get(&p, FINISHED).unwrap().status, "False");
        assert!(get(&p, STALLED).is_none());

        let s = conditions_for(&Phase::new(Reason::Succeeded, "ok"), Some(1), &t(2), &p);
        assert_eq!(get(&s, READY).unwrap().status, "True");
        assert_eq!(get(&s, FINISHED).unwrap().status, "True");
        assert!(get(&s, RECONCILING).is_none() && get(&s, STALLED).is_none());

        let f = conditions_for(&Phase::new(Reason::OperationFailed, "no"), Some(1), &t(2), &p);
        assert_eq!(get(&f, STALLED).unwrap().status, "True");
        assert_eq!(get(&f, FINISHED).unwrap().status, "True");
        assert_eq!(get(&f, READY).unwrap().status, "False");

        let b = conditions_for(&Phase::new(Reason::CredentialsSecretNotFound, "x"), Some(1), &t(2), &p);
        assert_eq!(get(&b, STALLED).unwrap().status, "True");
        assert_eq!(get(&b, FINISHED).unwrap().status, "False");
        assert!(get(&b, RECONCILING).is_none());
        assert!(is_finished(&f) && is_finished(&s) && !is_finished(&b));
    }

    #[test]
    fn transition_time_changes_only_with_status() {
        let first = conditions_for(&Phase::new(Reason::NotStarted, "a"), Some(1), &t(1), &[]);
        let second = conditions_for(&Phase::new(Reason::Running, "b"), Some(2), &t(5), &first);
        assert_eq!(get(&second, READY).unwrap().last_transition_time, t(1));
        assert_eq!(get(&second, READY).unwrap().reason, "Running");
        assert_eq!(get(&second, READY).unwrap().observed_generation, Some(2));
        let done = conditions_for(&Phase::new(Reason::Succeeded, "c"), Some(2), &t(9), &second);
        assert_eq!(get(&done, READY).unwrap().last_transition_time, t(9));
    }
}
