//! Scripted progressions: which step an operation is at, given how long ago
//! it was created.

use super::config::Step;

/// Status reported before the first step is reached.
pub const NOT_STARTED: &str = "notStarted";

/// Members of Graph's `longRunningOperationStatus` enum. Anything else is an
/// "unknown" member, sent only to callers that opt in.
const KNOWN_STATUSES: [&str; 5] = ["notStarted", "running", "succeeded", "failed", "unknownFutureValue"];

/// Where an operation stands at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position<'a> {
    pub status: &'a str,
    /// Milliseconds after creation at which the current step began
    /// (`lastActionDateTime`); 0 before the first step.
    pub since_ms: u64,
    /// `None`: the step does not override the operation's `statusDetail`.
    pub status_detail: Option<Option<&'a str>>,
}

/// Sorts steps by time, keeping the given order among equal times, so the
/// lookup can binary-search.
pub fn normalize(steps: &mut [Step]) {
    steps.sort_by_key(|s| s.after_ms);
}

/// The last step whose `afterMs` has elapsed; `notStarted` before the first.
/// `steps` must be normalized. Negative `elapsed_ms` (creation time in the
/// future) counts as "not started yet".
pub fn position(steps: &[Step], elapsed_ms: i64) -> Position<'_> {
    let reached = if elapsed_ms < 0 { 0 } else { steps.partition_point(|s| s.after_ms <= elapsed_ms as u64) };
    match reached.checked_sub(1).map(|i| &steps[i]) {
        None => Position { status: NOT_STARTED, since_ms: 0, status_detail: None },
        Some(step) => Position {
            status: &step.status,
            since_ms: step.after_ms,
            status_detail: step.status_detail.as_ref().map(|d| d.as_deref()),
        },
    }
}

/// What Graph would send for `status`: unknown enum members collapse to
/// `unknownFutureValue` unless the caller asked for them. Case variants of
/// known members (the old beta page's `NotStarted`) are scripted quirks and
/// pass through untouched.
pub fn wire_status(status: &str, include_unknown_members: bool) -> &str {
    let known = KNOWN_STATUSES.iter().any(|k| k.eq_ignore_ascii_case(status));
    if known || include_unknown_members { status } else { "unknownFutureValue" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps() -> Vec<Step> {
        let mut failed = Step::new("failed", 3000);
        failed.status_detail = Some(Some("policy".into()));
        let mut s = vec![failed, Step::new("running", 1000)];
        normalize(&mut s);
        s
    }

    #[test]
    fn before_first_step_is_not_started() {
        let s = steps();
        let p = position(&s, 999);
        assert_eq!((p.status, p.since_ms, p.status_detail), ("notStarted", 0, None));
        assert_eq!(position(&s, -5).status, "notStarted");
        assert_eq!(position(&[], 10_000).status, "notStarted");
    }

    #[test]
    fn last_elapsed_step_wins() {
        let s = steps();
        assert_eq!(position(&s, 1000).status, "running");
        assert_eq!(position(&s, 2999).since_ms, 1000);
        let p = position(&s, 3000);
        assert_eq!((p.status, p.since_ms), ("failed", 3000));
        assert_eq!(p.status_detail, Some(Some("policy")));
        assert_eq!(position(&s, i64::MAX).status, "failed");
    }

    #[test]
    fn equal_times_keep_given_order() {
        let mut s = vec![Step::new("running", 0), Step::new("succeeded", 0)];
        normalize(&mut s);
        assert_eq!(position(&s, 0).status, "succeeded");
    }

    #[test]
    fn unknown_members_need_opt_in() {
        assert_eq!(wire_status("someNewValue", false), "unknownFutureValue");
        assert_eq!(wire_status("someNewValue", true), "someNewValue");
        assert_eq!(wire_status("NotStarted", false), "NotStarted");
        assert_eq!(wire_status("succeeded", false), "succeeded");
    }
}
