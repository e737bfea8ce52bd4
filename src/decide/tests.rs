//! Table tests: one row per transition, each naming what a user would check.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::api::{PasswordResetOperationSpec, PasswordResetOperationStatus};
use crate::conditions::{FINISHED, READY, RECONCILING, STALLED, reason_of};
use crate::graph::{GraphError, GraphErrorKind, LongRunningOperation, Outcome};

pub(super) const T0: i64 = 1_800_000_000;

pub(super) fn at(s: i64) -> Timestamp {
    Timestamp::from_second(T0 + s).unwrap()
}

pub(super) fn policy() -> Policy {
    Policy {
        graph_root: "https://graph.microsoft.com".parse().unwrap(),
        poll_interval: Duration::from_secs(15),
        not_found_grace: Duration::from_secs(120),
    }
}

pub(super) fn spec() -> PasswordResetOperationSpec {
    PasswordResetOperationSpec {
        user_id: Some("alice@contoso.com".into()),
        operation_id: Some("op1".into()),
        location: None,
        credentials_secret_ref: None,
        poll_interval: None,
        active_deadline_seconds: None,
        ttl_seconds_after_finished: None,
    }
}

pub(super) fn input<'a>(
    spec: &'a PasswordResetOperationSpec,
    status: &'a PasswordResetOperationStatus,
    policy: &'a Policy,
    now: i64,
    failures: u32,
) -> Input<'a> {
    Input {
        namespace: "ns",
        secret: Some("graph-credentials"),
        spec,
        generation: Some(1),
        created: Some(at(0)),
        status,
        now: at(now),
        failures,
        policy,
        paused: false,
        reconcile_requested_at: None,
    }
}

pub(super) fn op(status: &str) -> Outcome {
    Outcome::Answer(LongRunningOperation {
        id: Some("op1".into()),
        status: Some(status.into()),
        created_date_time: Some("2020-03-19T12-01-03.45Z".into()),
        last_action_date_time: Some("2020-03-19T12-01-03.45Z".into()),
        resource_location: None,
        status_detail: None,
    })
}

pub(super) fn graph_error(kind: GraphErrorKind, retry_after: Option<Duration>, request_id: &str) -> Outcome {
    Outcome::Graph(GraphError {
        kind,
        status: Some(500),
        code: None,
        request_id: Some(request_id.into()),
        retry_after,
        diagnostic: None,
        client_request_id: Some(format!("ours-{request_id}")),
        message: format!("Graph answered ({kind:?})"),
    })
}

/// The status after one round from `before`.
pub(super) fn round(before: &PasswordResetOperationStatus, outcome: &Outcome, now: i64, failures: u32) -> Decision {
    let (spec, policy) = (spec(), policy());
    after(&input(&spec, before, &policy, now, failures), before, outcome)
}

pub(super) fn wait(d: &Decision) -> (Duration, Jitter) {
    match d.requeue {
        Requeue::After { wait, jitter } => (wait, jitter),
        Requeue::Never => panic!("expected a requeue, got Never: {d:?}"),
    }
}

pub(super) fn condition<'a>(d: &'a Decision, type_: &str) -> Option<&'a str> {
    d.status.conditions.iter().find(|c| c.type_ == type_).map(|c| c.status.as_str())
}

#[test]
fn each_graph_answer_maps_to_its_reason_conditions_and_wait() {
    fn s(x: &str) -> Option<&str> {
        Some(x)
    }
    // (graph status, reason, (Ready, Reconciling, Stalled, Finished), requeue)
    type Conditions<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, Option<&'a str>);
    let rows: [(&str, Reason, Conditions, Option<Duration>); 6] = [
        ("notStarted", Reason::NotStarted, (s("False"), s("True"), None, s("False")), Some(Duration::from_secs(15))),
        ("running", Reason::Running, (s("False"), s("True"), None, s("False")), Some(Duration::from_secs(15))),
        ("NotStarted", Reason::NotStarted, (s("False"), s("True"), None, s("False")), Some(Duration::from_secs(15))),
        ("succeeded", Reason::Succeeded, (s("True"), None, None, s("True")), None),
        ("failed", Reason::OperationFailed, (s("False"), None, s("True"), s("True")), None),
        (
            "unknownFutureValue",
            Reason::UnknownStatus,
            (s("False"), s("True"), None, s("False")),
            Some(Duration::from_secs(15)),
        ),
    ];
    for (graph, reason, (ready, reconciling, stalled, finished), requeue) in rows {
        let d = round(&PasswordResetOperationStatus::default(), &op(graph), 1, 0);
        assert_eq!(d.reason, Some(reason), "{graph}");
        assert_eq!(reason_of(&d.status.conditions, READY), Some(reason.as_str()), "{graph}");
        assert_eq!(
            (condition(&d, READY), condition(&d, RECONCILING), condition(&d, STALLED), condition(&d, FINISHED)),
            (ready, reconciling, stalled, finished),
            "{graph}"
        );
        assert_eq!(d.status.status.as_deref(), Some(graph), "Graph's status is mirrored verbatim");
        assert_eq!(d.status.created_date_time.as_deref(), Some("2020-03-19T12-01-03.45Z"));
        match requeue {
            Some(w) => assert_eq!(wait(&d).0, w, "{graph}"),
            None => assert_eq!(d.requeue, Requeue::Never, "{graph}: terminal, no TTL"),
        }
        assert_eq!(d.status.completion_time.is_some(), reason.kind().is_terminal(), "{graph}");
    }
}

#[test]
fn a_finished_resource_is_final_whatever_happens() {
    let done = round(&PasswordResetOperationStatus::default(), &op("succeeded"), 1, 0).status;
    let (spec, policy) = (spec(), policy());
    for now in [2, 1_000_000] {
        let Start::Decided(d) = start(&input(&spec, &done, &policy, now, 3)) else {
            panic!("no Graph call once finished")
        };
        assert_eq!(d.status, done, "no status write");
        assert!(d.events.is_empty() && d.effects.is_empty());
        assert_eq!(d.requeue, Requeue::Never);
    }
}

#[test]
fn ttl_waits_until_due_then_deletes() {
    let mut spec = spec();
    spec.ttl_seconds_after_finished = Some(60);
    let policy = policy();
    let fresh = PasswordResetOperationStatus::default();
    let finished = after(&input(&spec, &fresh, &policy, 10, 0), &fresh, &op("failed"));
    assert_eq!(wait(&finished), (Duration::from_secs(60), Jitter::None), "the TTL wake-up comes with the end");
    let done = finished.status;
    let rows =
        [(11, Some(Duration::from_millis(59_100))), (69, Some(Duration::from_millis(1_100))), (70, None), (99, None)];
    for (now, requeue) in rows {
        let Start::Decided(d) = start(&input(&spec, &done, &policy, now, 0)) else { panic!() };
        match requeue {
            Some(w) => assert_eq!((wait(&d).0, d.effects.len()), (w, 0), "t={now}"),
            None => assert_eq!(d.effects, [Effect::Delete], "t={now}"),
        }
    }
    spec.ttl_seconds_after_finished = Some(0);
    let Start::Decided(d) = start(&input(&spec, &done, &policy, 10, 0)) else { panic!() };
    assert_eq!(d.effects, [Effect::Delete], "0 deletes right after the end");
}

#[test]
fn the_deadline_ends_tracking_without_graph_and_no_wait_sleeps_past_it() {
    let mut spec = spec();
    spec.active_deadline_seconds = Some(100);
    let policy = policy();
    let status = round(&PasswordResetOperationStatus::default(), &op("running"), 1, 0).status;
    let Start::Poll { .. } = start(&input(&spec, &status, &policy, 99, 0)) else { panic!("polls before the deadline") };
    let d = after(&input(&spec, &status, &policy, 95, 0), &status, &op("running"));
    assert_eq!(wait(&d), (Duration::from_millis(5_100), Jitter::None), "woken just after the deadline");
    let Start::Decided(d) = start(&input(&spec, &status, &policy, 100, 0)) else { panic!("no Graph call after it") };
    assert_eq!(d.reason, Some(Reason::DeadlineExceeded));
    assert_eq!(condition(&d, FINISHED), Some("True"));
    assert_eq!(condition(&d, STALLED), Some("True"));
}

#[test]
fn conditions_are_due_before_the_first_answer_and_only_then() {
    let (spec, policy) = (spec(), policy());
    let fresh = PasswordResetOperationStatus::default();
    let Start::Poll { url, waiting: Some(waiting) } = start(&input(&spec, &fresh, &policy, 0, 0)) else { panic!() };
    assert_eq!(url.as_str(), "https://graph.microsoft.com/v1.0/users/alice@contoso.com/authentication/operations/op1");
    assert_eq!(reason_of(&waiting.conditions, READY), Some("WaitingForGraph"));
    assert_eq!(reason_of(&waiting.conditions, RECONCILING), Some("WaitingForGraph"));
    let polled = round(&fresh, &op("running"), 1, 0).status;
    let Start::Poll { waiting: None, .. } = start(&input(&spec, &polled, &policy, 2, 0)) else {
        panic!("conditions already written: nothing to pre-write")
    };
}

#[test]
fn an_unchanged_poll_changes_nothing_not_even_the_poll_time() {
    let first = round(&PasswordResetOperationStatus::default(), &op("running"), 1, 0);
    assert_eq!(first.status.last_polled_time, Some(Time(at(1))));
    let again = round(&first.status, &op("running"), 60, 0);
    assert_eq!(again.status, first.status);
    assert!(again.events.is_empty());
    let changed = round(&first.status, &op("succeeded"), 90, 0);
    assert_eq!(changed.status.last_polled_time, Some(Time(at(90))));
}

#[test]
fn a_location_on_another_host_is_refused_without_a_request() {
    let mut spec = spec();
    spec.user_id = None;
    spec.operation_id = None;
    spec.location = Some("https://evil.example/v1.0/users/u/authentication/operations/o".into());
    let (policy, fresh) = (policy(), PasswordResetOperationStatus::default());
    let Start::Decided(d) = start(&input(&spec, &fresh, &policy, 0, 0)) else { panic!("must not poll") };
    assert_eq!(d.reason, Some(Reason::LocationHostNotAllowed));
    assert_eq!(condition(&d, FINISHED), Some("True"));
}

/// (step, the round before it, what Graph answered) → the events published: problems,
/// recovery from one and the end; never ordinary progress.
#[test]
fn events_mark_problems_recovery_and_the_end_not_progress() {
    let fresh = PasswordResetOperationStatus::default();
    let notes = |d: &Decision| d.events.iter().map(|e| (e.warning, e.reason.clone())).collect::<Vec<_>>();
    let not_started = round(&fresh, &op("notStarted"), 1, 0);
    let running = round(&not_started.status, &op("running"), 2, 0);
    let outage = round(&running.status, &graph_error(GraphErrorKind::Unavailable, None, "r"), 3, 0);
    let outage_again = round(&outage.status, &graph_error(GraphErrorKind::Unavailable, None, "r2"), 4, 1);
    let back = round(&outage.status, &op("running"), 5, 1);
    let throttled = round(&running.status, &graph_error(GraphErrorKind::Throttled, None, "t"), 3, 0);
    type Row<'a> = (&'a str, &'a Decision, &'a [(bool, &'a str)]);
    let table: [Row; 10] = [
        ("first answer notStarted", &not_started, &[]),
        ("notStarted → running", &running, &[]),
        ("running → running", &round(&running.status, &op("running"), 3, 0), &[]),
        ("a new problem", &outage, &[(true, "GraphUnavailable")]),
        ("the same problem again", &outage_again, &[]),
        ("the problem clears", &back, &[(false, "Recovered")]),
        ("another problem", &throttled, &[(true, "Throttled")]),
        (
            "succeeded after a problem: the end only",
            &round(&outage.status, &op("succeeded"), 6, 1),
            &[(false, "Succeeded")],
        ),
        ("succeeded straight away", &round(&fresh, &op("succeeded"), 1, 0), &[(false, "Succeeded")]),
        ("failed", &round(&running.status, &op("failed"), 3, 0), &[(true, "OperationFailed")]),
    ];
    for (step, decision, expected) in table {
        let expected: Vec<(bool, String)> = expected.iter().map(|(w, r)| (*w, r.to_string())).collect();
        assert_eq!(notes(decision), expected, "{step}");
    }
    let note = &back.events[0].note;
    assert!(note.contains("(was GraphUnavailable)"), "the recovery says from what: {note}");
}

#[test]
fn what_graph_sends_is_shown_bounded_and_without_control_characters() {
    let huge = format!("\u{1b}[2J{}", "d".repeat(256 * 1024));
    let outcome = Outcome::Answer(LongRunningOperation {
        id: Some("op1".into()),
        status: Some("failed".into()),
        status_detail: Some(huge),
        ..Default::default()
    });
    let d = round(&PasswordResetOperationStatus::default(), &outcome, 1, 0);
    let detail = d.status.status_detail.as_deref().unwrap();
    assert!(detail.starts_with("\\u{1b}[2J"), "escaped, not dropped: {}", &detail[..20]);
    assert!(detail.len() <= MAX_STATUS_DETAIL + 3);
    for c in &d.status.conditions {
        assert!(c.message.len() <= crate::conditions::MAX_MESSAGE + 3, "{}", c.message.len());
        assert!(!c.message.chars().any(char::is_control));
    }
    let total = serde_json::to_string(&d.status).unwrap().len();
    assert!(total < 16 * 1024, "the whole status stays small: {total} bytes");
    assert!(d.events.iter().all(|e| e.note.len() <= 1003 && !e.note.chars().any(char::is_control)));
}

#[test]
fn the_spec_poll_interval_wins_over_the_operators() {
    let mut spec = spec();
    spec.poll_interval = Some("1m30s".into());
    let (policy, fresh) = (policy(), PasswordResetOperationStatus::default());
    let d = after(&input(&spec, &fresh, &policy, 0, 0), &fresh, &op("running"));
    assert_eq!(wait(&d), (Duration::from_secs(90), Jitter::Spread));
}
