//! Which Kubernetes Events a change deserves.

use kube::runtime::events::{Event, EventType};

use crate::api::PasswordResetOperationStatus;
use crate::conditions::{self, Phase};

/// Longest event note: the API server refuses notes over 1 kB.
const MAX_NOTE: usize = 1000;

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

/// One event per change: a Normal event when Graph's status changes, a Warning when a new
/// problem appears, and a single event at the end (Succeeded, or the reason it failed).
/// Repeats of the same problem publish nothing (the condition already says it).
pub(super) fn for_change(
    before: &PasswordResetOperationStatus,
    after: &PasswordResetOperationStatus,
    phase: &Phase,
) -> Vec<Note> {
    let mut events = Vec::new();
    let reason = phase.reason;
    let new_reason = conditions::reason_of(&before.conditions, conditions::READY) != Some(reason.as_str());
    let status_changed = after.status.is_some() && after.status != before.status;
    if status_changed && !(phase.is_terminal() && new_reason) {
        let now = after.status.as_deref().unwrap_or("");
        let note = match &before.status {
            Some(old) => format!("Graph status {now} (was {old})"),
            None => format!("Graph status {now}"),
        };
        events.push(Note {
            warning: false,
            reason: "StatusChanged".into(),
            note,
            action: format!("Observed{}", camel_word(now)),
        });
    }
    if new_reason && (reason.is_problem() || phase.is_terminal()) {
        events.push(Note {
            warning: reason.is_problem(),
            reason: reason.as_str().into(),
            note: crate::text::for_people(&phase.message, MAX_NOTE),
            action: "Poll".into(),
        });
    }
    events
}

/// `notStarted` → `NotStarted`; anything else reduced to ASCII letters and digits.
fn camel_word(s: &str) -> String {
    let mut out: String = s.chars().filter(char::is_ascii_alphanumeric).take(64).collect();
    if let Some(first) = out.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    out
}
