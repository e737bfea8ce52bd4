//! A resource's life after Graph: `spec.activeDeadlineSeconds` gives up on an operation
//! that never ends, `spec.ttlSecondsAfterFinished` deletes finished resources on time
//! (never before, within ~2 s after; 0 right away), also when they expired while the
//! operator was down.
//!
//! Times are taken from one watch started before the resources exist, so "finished" and
//! "deleted" are the moments the API server told a client about them.

use std::time::Duration;

use kube::ResourceExt;
use pwreset_testkit::harness::SECRET;
use pwreset_testkit::observe::{History, Seen, now_ms, operation_gets, request_log};
use pwreset_testkit::{Harness, Operator, condition, eventually};
use serde_json::{Value, json};

/// TTL deletions are timed in wall-clock milliseconds: the tests of this file run one at a time, so
/// they do not slow each other down on a 2-core machine (a bound loosened for that would
/// mean nothing).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Tolerance for the watch delivering "finished" later than "deleted" is measured from.
const WATCH_SLACK_MS: i64 = 300;
/// How soon after it is due a resource must be gone.
const ON_TIME_MS: i64 = 2000;

fn spec(user: &str, op: &str, extra: Value) -> Value {
    let mut spec = json!({"userId": user, "operationId": op, "credentialsSecretRef": {"name": SECRET}});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    spec
}

fn first_finished(history: &History, name: &str) -> Option<Seen> {
    history.of(name).into_iter().find(Seen::finished)
}

fn deleted_at(history: &History, name: &str) -> Option<i64> {
    history.of(name).iter().find(|v| v.deleted).map(|v| v.at_ms)
}

#[tokio::test]
async fn active_deadline_gives_up_on_an_operation_that_never_ends() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let h = Harness::start(&[]).await;
    let history = History::start(h.api());
    h.emulator.add_operation(json!({"userId": "dana", "id": "op-forever", "status": "running"})).await;
    h.emulator
        .add_operation(json!({"userId": "dana", "id": "op-in-time",
            "steps": [{"status": "running", "afterMs": 0}, {"status": "succeeded", "afterMs": 1000}]}))
        .await;
    let forever = h.create("forever", spec("dana", "op-forever", json!({"activeDeadlineSeconds": 4}))).await;
    h.create("in-time", spec("dana", "op-in-time", json!({"activeDeadlineSeconds": 4}))).await;
    let created_ms = forever.metadata.creation_timestamp.as_ref().unwrap().0.as_millisecond();

    // It is tracked (running) until the deadline...
    history
        .wait_for("forever", "status running", Duration::from_secs(20), |v| v.status.as_deref() == Some("running"))
        .await;
    let gave_up = history.wait_for("forever", "Finished", Duration::from_secs(30), Seen::finished).await;
    assert!(gave_up.has("Stalled", "True", "DeadlineExceeded"), "{:?}", gave_up.conditions);
    assert!(gave_up.has("Finished", "True", "DeadlineExceeded"), "{:?}", gave_up.conditions);
    assert!(gave_up.has("Ready", "False", "DeadlineExceeded"), "{:?}", gave_up.conditions);
    assert!(gave_up.condition("Reconciling").is_none(), "{:?}", gave_up.conditions);
    let message = &gave_up.condition("Stalled").unwrap().message;
    assert!(message.contains("activeDeadlineSeconds (4s)"), "{message}");
    // ...and not a moment before it (creationTimestamp has whole seconds), nor long after.
    let after = gave_up.at_ms - created_ms;
    assert!(after >= 4000 - WATCH_SLACK_MS, "gave up {after} ms after creation; the deadline is 4 s");
    assert!(after <= 4000 + 1000 + ON_TIME_MS, "gave up {after} ms after creation; the deadline is 4 s");
    assert_eq!(gave_up.status.as_deref(), Some("running"), "Graph's last word is kept");
    assert!(gave_up.completion_ms.is_some(), "completionTime is set");
    h.wait_event("forever", "Warning DeadlineExceeded", |e| e.0 == "Warning" && e.1 == "DeadlineExceeded").await;

    // Final: no more polls, no more writes (watch for several poll intervals).
    let gets = operation_gets(&request_log(&h.emulator).await, Some("op-forever")).len();
    let rv = h.api().get("forever").await.unwrap().resource_version();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(operation_gets(&request_log(&h.emulator).await, Some("op-forever")).len(), gets, "polled after the end");
    assert_eq!(h.api().get("forever").await.unwrap().resource_version(), rv, "written after the end");

    // An operation that ends before its deadline keeps its own ending.
    let in_time = h.api().get("in-time").await.unwrap();
    assert_eq!(condition(&in_time, "Ready").map(|c| (c.0, c.1)), Some(("True".into(), "Succeeded".into())));
    assert!(history.of("in-time").iter().all(|v| v.reason("Stalled") != Some("DeadlineExceeded")));
}

#[tokio::test]
async fn ttl_after_finished_deletes_on_time_and_zero_deletes_at_once() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let h = Harness::start(&[]).await;
    let history = History::start(h.api());
    let ends_soon = |id: &str, end: &str| {
        json!({"userId": "tess", "id": id,
            "steps": [{"status": "running", "afterMs": 0}, {"status": end, "afterMs": 1500}]})
    };
    for (id, end) in
        [("op-ttl3", "succeeded"), ("op-ttl0", "succeeded"), ("op-failed-ttl2", "failed"), ("op-keep", "succeeded")]
    {
        h.emulator.add_operation(ends_soon(id, end)).await;
    }
    h.create("ttl3", spec("tess", "op-ttl3", json!({"ttlSecondsAfterFinished": 3}))).await;
    h.create("ttl0", spec("tess", "op-ttl0", json!({"ttlSecondsAfterFinished": 0}))).await;
    h.create("failed-ttl2", spec("tess", "op-failed-ttl2", json!({"ttlSecondsAfterFinished": 2}))).await;
    h.create("keep", spec("tess", "op-keep", json!({}))).await;

    for (name, ttl) in [("ttl3", 3), ("ttl0", 0), ("failed-ttl2", 2)] {
        history.wait_for(name, "deleted", Duration::from_secs(40), |v| v.deleted).await;
        let finished = first_finished(&history, name).unwrap_or_else(|| panic!("{name} was deleted unfinished"));
        let deleted = deleted_at(&history, name).unwrap();
        let due = finished.at_ms + ttl * 1000;
        assert!(deleted >= due - WATCH_SLACK_MS, "{name}: deleted {} ms before it was due", due - deleted);
        assert!(deleted <= due + ON_TIME_MS, "{name}: deleted {} ms after it was due", deleted - due);
        // Judged by what the user sees too: status.completionTime + ttl.
        let completion = finished.completion_ms.expect("completionTime");
        assert!(deleted >= completion + ttl * 1000, "{name}: deleted before completionTime + ttl");
        println!(
            "{name}: ttl {ttl}s, deleted {:.2}s after it was seen finished",
            (deleted - finished.at_ms) as f64 / 1e3
        );
    }
    let failed = first_finished(&history, "failed-ttl2").unwrap();
    assert!(
        failed.has("Stalled", "True", "OperationFailed"),
        "the TTL applies to failures too: {:?}",
        failed.conditions
    );

    // Without a TTL a finished resource stays: give it at least the 3 s after which ttl3 was
    // deleted (the positive control above), counted from when it finished itself.
    let keep = first_finished(&history, "keep").expect("keep finished");
    let seen = now_ms() - keep.at_ms;
    if seen < 3000 {
        tokio::time::sleep(Duration::from_millis((3000 - seen) as u64)).await;
    }
    assert!(now_ms() - keep.at_ms >= 3000);
    assert!(h.api().get_opt("keep").await.unwrap().is_some(), "a resource without a TTL was deleted");
    assert!(h.operator.logs().contains("deleted after ttlSecondsAfterFinished"));
}

#[tokio::test]
async fn resources_that_expired_while_the_operator_was_down_are_deleted_when_it_returns() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let parts = Harness::start_without_operator().await;
    let operator = parts.start_operator(&[]);
    operator.wait_ready().await;
    let mut h = parts.with_operator(operator);
    let history = History::start(h.api());
    for id in ["op-short", "op-long"] {
        h.emulator.add_operation(json!({"userId": "owen", "id": id, "status": "succeeded"})).await;
    }
    h.create("short", spec("owen", "op-short", json!({"ttlSecondsAfterFinished": 3}))).await;
    h.create("long", spec("owen", "op-long", json!({"ttlSecondsAfterFinished": 14}))).await;
    let short = history.wait_for("short", "Finished", Duration::from_secs(30), Seen::finished).await;
    let long = history.wait_for("long", "Finished", Duration::from_secs(30), Seen::finished).await;

    let status = h.operator.stop().expect("the operator was running");
    assert!(status.success(), "SIGTERM must end the operator cleanly: {status:?}");
    // Down past the short TTL (time has to pass here): nothing deletes it meanwhile.
    let down_until = short.at_ms + 3000 + 1500;
    tokio::time::sleep(Duration::from_millis((down_until - now_ms()).max(0) as u64)).await;
    assert!(h.api().get_opt("short").await.unwrap().is_some(), "deleted while no operator ran");

    let restarted_ms = now_ms();
    let operator =
        Operator::start(h.cp, &["--namespace", &h.ns, "--graph-url", &h.emulator.url, "--poll-interval", "1s"]);
    operator.wait_ready().await;
    h.operator = operator;
    let ready_ms = now_ms();
    history.wait_for("short", "deleted", Duration::from_secs(30), |v| v.deleted).await;
    let deleted = deleted_at(&history, "short").unwrap();
    assert!(
        deleted - ready_ms <= ON_TIME_MS,
        "expired while the operator was down; deleted {} ms after it was ready again ({} ms after start)",
        deleted - ready_ms,
        deleted - restarted_ms
    );
    println!(
        "short: deleted {:.2}s after the operator started again ({:.2}s after ready)",
        (deleted - restarted_ms) as f64 / 1e3,
        (deleted - ready_ms) as f64 / 1e3
    );

    // The other one is not due yet: deleted at its own time, not at the restart.
    assert!(deleted_at(&history, "long").is_none(), "a resource not yet due was deleted at the restart");
    history.wait_for("long", "deleted", Duration::from_secs(40), |v| v.deleted).await;
    let long_deleted = deleted_at(&history, "long").unwrap();
    let completion = long.completion_ms.expect("completionTime");
    assert!(long_deleted >= completion + 14_000, "long: deleted before completionTime + ttl");
    assert!(
        long_deleted <= long.at_ms + 14_000 + ON_TIME_MS,
        "long: deleted {} ms after it was due",
        long_deleted - long.at_ms - 14_000
    );
    println!(
        "long: deleted {:.2}s after it was seen finished (ttl 14s, across a restart)",
        (long_deleted - long.at_ms) as f64 / 1e3
    );
    eventually("no panics", Duration::from_secs(1), || async {
        if h.operator.logs().contains("panicked") { Err("panicked".to_string()) } else { Ok(()) }
    })
    .await;
}
