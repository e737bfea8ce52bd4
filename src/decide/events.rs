//! Which Kubernetes Events a change deserves.

use kube::runtime::events::{Event, EventType};

use crate::api::PasswordResetOperationStatus;
use crate::conditions::{self, Phase};
use crate::reason::Reason;

/// Longest event note: the API server refuses notes over 1 kB.
const MAX_NOTE: usize = 1000;
/// The event reason of a cleared problem (not a condition reason: no condition says it).
pub const RECOVERED: &str = "Recovered";

/// An event to publish (kube's `Event` without the parts a decision does not choose).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: String,
    pub note: String,
    pub action: String,
}

impl Note {
    pub fn to_event(&self) -> Event {
        Event {
            type_: if self.warning { EventType::Warning } else { EventType::Normal },
            reason: self.reason.clone(),
            note: Some(self.note.clone()),
            action: self.action.clone(),
            secondary: None,
        }
    }
}

/// Events mark what a person acts on or looks for in `kubectl describe`, not progress:
///
/// - a Warning when a new problem appears (a repeat of the same problem publishes nothing:
///   the condition already says it);
/// - a Normal `Recovered` when a problem clears and tracking goes on (so the last event of a
///   resource that was throttled does not keep saying it is throttled);
/// - one event at the end: Normal `Succeeded`, or a Warning with the reason it failed.
///
/// Graph's ordinary progress (`notStarted` → `running`), waiting and pausing publish
/// nothing: status and conditions show them, and at 10,000 resources each such event was
/// an apiserver write nobody read.
pub(super) fn for_change(before: &PasswordResetOperationStatus, phase: &Phase) -> Vec<Note> {
    let reason = phase.reason;
    let before_reason = conditions::reason_of(&before.conditions, conditions::READY);
    if before_reason == Some(reason.as_str()) {
        return Vec::new();
    }
    if reason.is_problem() || phase.is_terminal() {
        return vec![Note {
            warning: reason.is_problem(),
            reason: reason.as_str().into(),
            note: crate::text::for_people(&phase.message, MAX_NOTE),
            action: "Poll".into(),
        }];
    }
    // A problem cleared (Paused is a person's own doing, not a recovery).
    let was_problem = before_reason.and_then(Reason::parse).is_some_and(Reason::is_problem);
    if was_problem && reason != Reason::Paused {
        let was = before_reason.unwrap_or_default();
        return vec![Note {
            warning: false,
            reason: RECOVERED.into(),
            note: crate::text::for_people(&format!("{} (was {was})", phase.message), MAX_NOTE),
            action: "Poll".into(),
        }];
    }
    Vec::new()
}
