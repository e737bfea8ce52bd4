//! Table tests: one row per transition, each naming what a user would check.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::api::{PasswordResetOperationSpec, PasswordResetOperationStatus};
use crate::conditions::{FINISHED, READY, RECONCILING, STALLED, reason_of};
use crate::credentials::CredentialError;
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

fn graph_error(kind: GraphErrorKind, retry_after: Option<Duration>, request_id: &str) -> Outcome {
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
fn round(before: &PasswordResetOperationStatus, outcome: &Outcome, now: i64, failures: u32) -> Decision {
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
fn an_unknown_status_backs_off_and_the_backoff_grows() {
    let mut status = PasswordResetOperationStatus::default();
    let mut failures = 0;
    let mut waits = Vec::new();
    for i in 0..6 {
        let d = round(&status, &op("partiallySucceeded"), i * 100, failures);
        assert_eq!(d.reason, Some(Reason::UnknownStatus));
        assert!(d.status.completion_time.is_none(), "never taken as an end");
        waits.push(wait(&d).0.as_secs());
        failures = d.failures;
        status = d.status;
    }
    // The poll interval (15 s) is the floor; then 20, 40, 80, 160 s.
    assert_eq!(waits, [15, 15, 20, 40, 80, 160]);
    let d = round(&status, &op("running"), 1000, failures);
    assert_eq!((d.failures, wait(&d).0), (0, Duration::from_secs(15)), "a known status resets the backoff");
}

#[test]
fn backoff_starts_at_five_seconds_doubles_and_is_capped_at_five_minutes() {
    let waits: Vec<u64> = (1..=10).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]);
    assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
}

#[test]
fn passing_graph_errors_back_off_and_keep_the_first_request_id_of_an_episode() {
    let rows = [
        (GraphErrorKind::Unavailable, Reason::GraphUnavailable),
        (GraphErrorKind::Timeout, Reason::GraphUnavailable),
        (GraphErrorKind::Malformed, Reason::InvalidGraphResponse),
        (GraphErrorKind::Unauthorized, Reason::CredentialsRejected),
        (GraphErrorKind::Forbidden, Reason::PermissionDenied),
    ];
    for (kind, reason) in rows {
        let first = round(&PasswordResetOperationStatus::default(), &graph_error(kind, None, "req-1"), 1, 0);
        assert_eq!(first.reason, Some(reason), "{kind:?}");
        assert_eq!(wait(&first), (Duration::from_secs(5), Jitter::Backoff), "{kind:?}");
        assert_eq!(first.status.request_id.as_deref(), Some("req-1"));
        assert_eq!(first.status.client_request_id.as_deref(), Some("ours-req-1"), "both ids Microsoft asks for");
        assert_eq!(first.status.conditions[0].type_, READY);
        let second = round(&first.status, &graph_error(kind, None, "req-2"), 10, first.failures);
        assert_eq!(second.status, first.status, "{kind:?}: a repeat rewrites nothing");
        assert!(second.events.is_empty(), "{kind:?}: a repeat publishes nothing");
        assert_eq!(wait(&second).0, Duration::from_secs(10), "{kind:?}: the backoff grows");
        let recovered = round(&second.status, &op("running"), 30, second.failures);
        assert_eq!((recovered.status.request_id, recovered.status.client_request_id), (None, None), "{kind:?}");
        assert_eq!(recovered.failures, 0);
    }
    // A different problem starts a new episode with its own request id.
    let first =
        round(&PasswordResetOperationStatus::default(), &graph_error(GraphErrorKind::Unavailable, None, "a"), 1, 0);
    let other = round(&first.status, &graph_error(GraphErrorKind::Malformed, None, "b"), 10, 1);
    assert_eq!(other.status.request_id.as_deref(), Some("b"));
}

#[test]
fn a_refused_request_ends_tracking_after_three_identical_answers() {
    let refused = graph_error(GraphErrorKind::Rejected, None, "r1");
    // Another problem before does not count towards the three.
    let outage =
        round(&PasswordResetOperationStatus::default(), &graph_error(GraphErrorKind::Unavailable, None, "u"), 1, 0);
    let first = round(&outage.status, &refused, 10, outage.failures);
    assert_eq!((first.reason, first.failures), (Some(Reason::GraphRequestRejected), 1));
    assert_eq!(condition(&first, FINISHED), Some("False"));
    let second = round(&first.status, &refused, 20, first.failures);
    assert_eq!((second.reason, wait(&second).0), (Some(Reason::GraphRequestRejected), Duration::from_secs(10)));
    let third = round(&second.status, &refused, 40, second.failures);
    assert_eq!(third.reason, Some(Reason::PermanentGraphError));
    assert_eq!((condition(&third, FINISHED), condition(&third, STALLED)), (Some("True"), Some("True")));
    assert_eq!(third.requeue, Requeue::Never);
    assert!(third.status.conditions[0].message.contains("3 times in a row"), "{}", third.status.conditions[0].message);
}

#[test]
fn retry_after_wins_over_the_backoff_in_both_directions() {
    let throttled = |after: Option<u64>, failures: u32| {
        let outcome = graph_error(GraphErrorKind::Throttled, after.map(Duration::from_secs), "r");
        round(&PasswordResetOperationStatus::default(), &outcome, 1, failures)
    };
    // Longer than the backoff: Graph's wait, not 5 s.
    assert_eq!(wait(&throttled(Some(30), 0)), (Duration::from_secs(30), Jitter::RetryAfter));
    // Shorter than a grown backoff: still Graph's wait.
    assert_eq!(wait(&throttled(Some(2), 5)), (Duration::from_secs(2), Jitter::RetryAfter));
    // Zero is never a busy loop.
    assert_eq!(wait(&throttled(Some(0), 0)).0, Duration::from_millis(100));
    // Without Retry-After: the backoff.
    assert_eq!(wait(&throttled(None, 2)), (Duration::from_secs(20), Jitter::Backoff));
    assert_eq!(throttled(None, 0).reason, Some(Reason::Throttled));
}

#[test]
fn a_404_is_retried_for_the_grace_period_then_ends_tracking() {
    let first =
        round(&PasswordResetOperationStatus::default(), &graph_error(GraphErrorKind::NotFound, None, "n"), 10, 0);
    assert_eq!(first.reason, Some(Reason::OperationNotFoundYet));
    assert_eq!(first.status.not_found_since, Some(Time(at(10))));
    // (now, reason, wait): grace 120 s from t=10, poll 15 s.
    let rows = [
        (20, Reason::OperationNotFoundYet, Some(Duration::from_secs(15))),
        (125, Reason::OperationNotFoundYet, Some(Duration::from_millis(5100))),
        (129, Reason::OperationNotFoundYet, Some(Duration::from_millis(1100))),
        (130, Reason::OperationNotFound, None),
        (500, Reason::OperationNotFound, None),
    ];
    for (now, reason, requeue) in rows {
        let d = round(&first.status, &graph_error(GraphErrorKind::NotFound, None, "n2"), now, 1);
        assert_eq!(d.reason, Some(reason), "t={now}");
        assert_eq!(d.status.not_found_since, Some(Time(at(10))), "counted from the first 404");
        match requeue {
            Some(w) => assert_eq!(wait(&d).0, w, "t={now}"),
            None => {
                assert_eq!(d.requeue, Requeue::Never);
                assert_eq!(condition(&d, FINISHED), Some("True"));
            }
        }
    }
    let found = round(&first.status, &op("running"), 30, 1);
    assert_eq!(found.status.not_found_since, None, "cleared once found");
}

#[test]
fn credential_errors_block_or_retry_and_are_retried_within_thirty_seconds() {
    let cases = [
        (CredentialError::NotConfigured { why: "none".into() }, Reason::CredentialsNotConfigured, true),
        (
            CredentialError::SecretNotFound { namespace: "ns".into(), name: "s".into() },
            Reason::CredentialsSecretNotFound,
            true,
        ),
        (
            CredentialError::ReauthenticationRequired { source_name: "s".into(), code: "invalid_grant".into() },
            Reason::ReauthenticationRequired,
            true,
        ),
        (
            CredentialError::TokenEndpoint { source_name: "s".into(), message: "down".into(), retry_after: None },
            Reason::TokenEndpointUnavailable,
            false,
        ),
        (
            CredentialError::ConsentRequired { source_name: "s".into(), code: "invalid_grant".into() },
            Reason::ConsentRequired,
            true,
        ),
    ];
    for (error, reason, blocked) in cases {
        let outcome = Outcome::Credentials(error);
        let d = round(&PasswordResetOperationStatus::default(), &outcome, 1, 9);
        assert_eq!(d.reason, Some(reason));
        assert_eq!(condition(&d, STALLED).is_some(), blocked, "{reason}");
        assert_eq!(condition(&d, FINISHED), Some("False"), "{reason}: not an end");
        assert_eq!(wait(&d).0, Duration::from_secs(30), "{reason}");
        assert!(d.events.iter().any(|e| e.warning && e.reason == reason.as_str()), "{reason}");
    }
}

#[test]
fn the_token_endpoints_retry_after_is_honoured() {
    let error = CredentialError::TokenEndpoint {
        source_name: "s".into(),
        message: "temporarily_unavailable".into(),
        retry_after: Some(Duration::from_secs(45)),
    };
    let d = round(&PasswordResetOperationStatus::default(), &Outcome::Credentials(error), 1, 0);
    assert_eq!(wait(&d), (Duration::from_secs(45), Jitter::RetryAfter), "longer than the 30 s credential retry");
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
