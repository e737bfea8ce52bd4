//! Table tests for what a person asks through annotations (pause, re-poll now) and for the
//! ids every resource shows in status.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::tests::{at, condition, input, op, policy, spec, wait};
use super::*;
use crate::conditions::{FINISHED, READY, RECONCILING, STALLED};

fn decided(start: Start) -> Decision {
    match start {
        Start::Decided(d) => d,
        Start::Poll { url, .. } => panic!("expected no Graph call, got a poll of {url}"),
    }
}

/// A status after Graph said `graph` at second 1.
fn after_answer(graph: &str) -> PasswordResetOperationStatus {
    let (spec, policy) = (spec(), policy());
    let empty = PasswordResetOperationStatus::default();
    after(&input(&spec, &empty, &policy, 1, 0), &empty, &op(graph)).status
}

#[test]
fn paused_makes_no_graph_call_and_says_so_in_reconciling_whatever_came_before() {
    let policy = policy();
    let spec = spec();
    let mut not_found = after_answer("running");
    not_found.not_found_since = Some(Time(at(5)));
    // (what came before, why)
    let rows = [
        (PasswordResetOperationStatus::default(), "a fresh resource"),
        (after_answer("notStarted"), "not started"),
        (after_answer("running"), "running"),
        (not_found, "inside a 404 grace period"),
    ];
    for (before, why) in rows {
        let mut paused = input(&spec, &before, &policy, 10, 2);
        paused.paused = true;
        let d = decided(start(&paused));
        assert_eq!(d.reason, Some(Reason::Paused), "{why}");
        assert_eq!(
            (condition(&d, READY), condition(&d, RECONCILING), condition(&d, STALLED), condition(&d, FINISHED)),
            (Some("False"), Some("True"), None, Some("False")),
            "{why}: Paused is progress held on purpose, not a failure"
        );
        let reconciling = d.status.conditions.iter().find(|c| c.type_ == RECONCILING).unwrap();
        assert_eq!((reconciling.reason.as_str(), reconciling.message.as_str()), ("Paused", PAUSED_MESSAGE), "{why}");
        assert_eq!(d.requeue, Requeue::Never, "{why}: removing the annotation brings it back, nothing else");
        assert!(d.events.is_empty(), "{why}: pausing is not a problem worth an event");
        assert_eq!(d.status.status, before.status, "{why}: Graph's last word is kept");
        assert_eq!(d.status.not_found_since, before.not_found_since, "{why}: the 404 grace keeps its start");
        assert_eq!(d.status.completion_time, None, "{why}");
        assert_eq!(d.status.user_id.as_deref(), Some("alice@contoso.com"), "{why}");

        let again = decided(start(&Input { status: &d.status, now: at(99), ..paused }));
        assert_eq!(again.status, d.status, "{why}: staying paused writes nothing");

        let resumed = Input { status: &d.status, paused: false, ..paused };
        assert!(matches!(start(&resumed), Start::Poll { .. }), "{why}: removing the annotation polls again");
        let running = after(&resumed, &d.status, &op("running"));
        assert_eq!(running.reason, Some(Reason::Running), "{why}");
    }
}

#[test]
fn a_paused_resource_still_meets_its_deadline_and_still_reports_a_broken_spec() {
    let policy = policy();
    let status = after_answer("running");
    let mut with_deadline = spec();
    with_deadline.active_deadline_seconds = Some(60);
    let mut paused = input(&with_deadline, &status, &policy, 10, 0);
    paused.paused = true;
    let d = decided(start(&paused));
    assert_eq!(d.reason, Some(Reason::Paused));
    assert_eq!(d.requeue, Requeue::After { wait: Duration::from_millis(50_100), jitter: Jitter::None });
    let late = decided(start(&Input { now: at(61), ..paused }));
    assert_eq!(late.reason, Some(Reason::DeadlineExceeded), "a pause does not stop the deadline");

    let mut foreign = spec();
    (foreign.user_id, foreign.operation_id) = (None, None);
    foreign.location = Some("https://evil.example/v1.0/users/u/authentication/operations/o".into());
    let mut paused = input(&foreign, &status, &policy, 10, 0);
    paused.paused = true;
    assert_eq!(decided(start(&paused)).reason, Some(Reason::LocationHostNotAllowed));
}

#[test]
fn a_finished_resource_ignores_pause_and_reconcile_requests() {
    let policy = policy();
    let spec = spec();
    for graph in ["succeeded", "failed"] {
        let done = after_answer(graph);
        // (paused, reconcile requested)
        for (paused, requested) in [(false, Some("2026-11-30T00:00:00Z")), (true, None), (true, Some("now"))] {
            let mut i = input(&spec, &done, &policy, 50, 0);
            (i.paused, i.reconcile_requested_at) = (paused, requested);
            let d = decided(start(&i));
            assert_eq!(d.status, done, "{graph} {paused} {requested:?}: terminal is final, nothing recorded");
            assert_eq!(d.requeue, Requeue::Never, "{graph}");
            assert!(d.events.is_empty() && d.effects.is_empty(), "{graph}");
        }
    }
}

#[test]
fn a_reconcile_request_is_recorded_once_graph_was_asked_whatever_it_answered() {
    let policy = policy();
    let spec = spec();
    let running = after_answer("running");
    let rows: [(Outcome, Reason); 3] = [
        (op("running"), Reason::Running),
        (op("succeeded"), Reason::Succeeded),
        (
            Outcome::Graph(crate::graph::GraphError {
                kind: GraphErrorKind::Unavailable,
                status: Some(503),
                code: None,
                request_id: None,
                retry_after: None,
                diagnostic: None,
                client_request_id: None,
                message: "down".into(),
            }),
            Reason::GraphUnavailable,
        ),
    ];
    for (outcome, reason) in rows {
        let mut i = input(&spec, &running, &policy, 30, 0);
        i.reconcile_requested_at = Some("2026-11-30T00:00:00Z");
        assert!(matches!(start(&i), Start::Poll { .. }), "{reason}: a request on a running resource polls");
        let d = after(&i, &running, &outcome);
        assert_eq!(d.reason, Some(reason));
        assert_eq!(d.status.last_handled_reconcile_at.as_deref(), Some("2026-11-30T00:00:00Z"), "{reason}");
    }
    // Without a request nothing is recorded, and an unchanged poll still writes nothing.
    let d = after(&input(&spec, &running, &policy, 30, 0), &running, &op("running"));
    assert_eq!(d.status, running);
    // The same value again: recorded already, so the poll writes nothing new.
    let mut handled = running.clone();
    handled.last_handled_reconcile_at = Some("r1".into());
    let mut i = input(&spec, &handled, &policy, 40, 0);
    i.reconcile_requested_at = Some("r1");
    assert_eq!(after(&i, &handled, &op("running")).status, handled);
    // A pause wins: the request is not acted on, so it is not recorded.
    i.reconcile_requested_at = Some("r2");
    i.paused = true;
    assert_eq!(decided(start(&i)).status.last_handled_reconcile_at.as_deref(), Some("r1"));
    assert_eq!(wait(&after(&Input { paused: false, ..i }, &handled, &op("running"))).0, Duration::from_secs(15));
}

#[test]
fn every_resource_shows_its_user_and_operation_by_ids_or_by_location() {
    let policy = policy();
    let by_location = |location: &str| PasswordResetOperationSpec {
        user_id: None,
        operation_id: None,
        location: Some(location.into()),
        ..spec()
    };
    let graph = "https://graph.microsoft.com/v1.0";
    // (spec, user shown, operation shown before Graph answers)
    let rows = [
        (spec(), "alice@contoso.com", "op1"),
        (by_location(&format!("{graph}/users/u-7/authentication/operations/op-9?aadgdc=DUB02P")), "u-7", "op-9"),
        (
            by_location(&format!("{graph}/users/bob%23EXT%23@x.com/authentication/operations/o2")),
            "bob#EXT#@x.com",
            "o2",
        ),
        // Refused without a request, but the row still says which operation it is about.
        (by_location("https://evil.example/v1.0/users/eve/authentication/operations/o3"), "eve", "o3"),
    ];
    let empty = PasswordResetOperationStatus::default();
    for (spec, user, operation) in rows {
        let i = input(&spec, &empty, &policy, 1, 0);
        let first = match start(&i) {
            Start::Decided(d) => d.status,
            Start::Poll { waiting, .. } => waiting.expect("conditions are due on a fresh resource"),
        };
        assert_eq!(first.user_id.as_deref(), Some(user), "{spec:?}");
        assert_eq!(first.operation_id.as_deref(), Some(operation), "{spec:?}");
    }
    // Graph's id wins once it answers; an answer without one keeps the spec's.
    let spec = spec();
    let i = input(&spec, &empty, &policy, 1, 0);
    let mut answer = op("running");
    if let Outcome::Answer(o) = &mut answer {
        o.id = Some("graphs-id".into());
    }
    assert_eq!(after(&i, &empty, &answer).status.operation_id.as_deref(), Some("graphs-id"));
    if let Outcome::Answer(o) = &mut answer {
        o.id = None;
    }
    assert_eq!(after(&i, &empty, &answer).status.operation_id.as_deref(), Some("op1"));
}
