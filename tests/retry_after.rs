//! Retry-After, checked where code that ignored it would be caught: every wait Graph asks
//! for here is longer than the operator's own first backoff (5 s), so an operator that just
//! backed off would come back too soon. Each test also shows that the measurement can see an
//! early request (a control answer without Retry-After, or a resource polled every second).

use std::time::Duration;

use pwreset_testkit::harness::SECRET;
use pwreset_testkit::{Harness, eventually};
use serde_json::{Value, json};

/// The operator's first backoff after a failed poll (`decide::backoff(1)`).
const FIRST_BACKOFF_MS: i64 = 5_000;

fn spec(user: &str, op: &str, poll: &str) -> Value {
    json!({"userId": user, "operationId": op, "credentialsSecretRef": {"name": SECRET}, "pollInterval": poll})
}

/// When an answer left the emulator (Unix ms).
fn answered_at(entry: &Value) -> i64 {
    entry["timeMs"].as_i64().expect("timeMs") + entry["durationMs"].as_i64().expect("durationMs")
}

fn arrived_at(entry: &Value) -> i64 {
    entry["timeMs"].as_i64().expect("timeMs")
}

/// The GETs of one operation, once there are at least `n` of them.
async fn wait_gets(h: &Harness, op: &str, n: usize, within: Duration) -> Vec<Value> {
    eventually(&format!("{n} GETs of {op}"), within, || async {
        let gets = h.emulator.gets_for(op).await;
        if gets.len() >= n { Ok(gets) } else { Err(format!("{} so far: {gets:#?}", gets.len())) }
    })
    .await
}

#[tokio::test]
async fn a_retry_after_longer_than_the_backoff_is_waited_out_for_429_and_503() {
    let h = Harness::start(&[]).await;
    // The backoff doubles with each failure of an episode (5 s, 10 s, 20 s); each Retry-After
    // is longer than the backoff it meets.
    h.emulator
        .add_operation(json!({
            "userId": "ra-user", "id": "op-ra", "status": "succeeded",
            "respond": [
                {"status": 503},
                {"status": 429, "retryAfter": "14"},
                {"status": 503, "retryAfter": "25"},
            ],
        }))
        .await;
    h.create("ra", spec("ra-user", "op-ra", "5s")).await;
    let gets = wait_gets(&h, "op-ra", 4, Duration::from_secs(90)).await;
    h.wait_condition("ra", "Ready", "True").await;

    assert_eq!(gets.len(), 4, "three scripted answers and the real one: {gets:#?}");
    let gap = |i: usize| arrived_at(&gets[i + 1]) - answered_at(&gets[i]);
    // Control: without Retry-After the operator is back after its own backoff, well before
    // the waits below, so they would see an operator that ignored Retry-After.
    assert_eq!(gets[0]["status"], 503);
    assert!(gets[0]["retryAfter"].is_null(), "{:?}", gets[0]);
    assert!(gap(0) < 8_000, "the control retry came {} ms after a plain 503", gap(0));
    for (i, status, wait) in [(1, 429, 14_000), (2, 503, 25_000)] {
        assert_eq!(gets[i]["status"], status, "{:?}", gets[i]);
        assert_eq!(gets[i]["retryAfter"], (wait / 1000).to_string());
        assert!(gap(i) >= wait, "after a {status} with Retry-After {wait} ms the next GET came {} ms later", gap(i));
    }
}

#[tokio::test]
async fn a_retry_after_given_as_an_http_date_is_waited_out() {
    let h = Harness::start(&[]).await;
    // HTTP-dates have whole seconds: 11 s from now leaves at least 10 s after the first GET,
    // twice the backoff.
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(11);
    let date = jiff::fmt::rfc2822::DateTimePrinter::new().timestamp_to_rfc9110_string(&until).unwrap();
    let until_ms = until.as_second() * 1000;
    h.emulator
        .add_operation(json!({
            "userId": "date-user", "id": "op-date", "status": "succeeded",
            "respond": [{"status": 429, "retryAfter": date}],
        }))
        .await;
    h.create("date", spec("date-user", "op-date", "5s")).await;
    h.wait_condition("date", "Ready", "True").await;

    let gets = h.emulator.gets_for("op-date").await;
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert_eq!(gets[0]["retryAfter"], date.as_str());
    // The check below only tells the date from the backoff if the date was well beyond it.
    assert!(
        until_ms - answered_at(&gets[0]) > FIRST_BACKOFF_MS + 1_000,
        "the first GET came too late ({} ms before the date) for this test to mean anything",
        until_ms - answered_at(&gets[0])
    );
    assert!(
        arrived_at(&gets[1]) >= until_ms,
        "the GET after Retry-After: {date} came {} ms before it",
        until_ms - arrived_at(&gets[1])
    );
}

#[tokio::test]
async fn a_retry_after_pauses_every_resource_of_the_tenant() {
    let h = Harness::start(&[]).await;
    // B is polled every second for as long as the test runs.
    h.emulator.add_operation(json!({"userId": "b-user", "id": "op-b", "status": "running"})).await;
    h.create("b", spec("b-user", "op-b", "1s")).await;
    wait_gets(&h, "op-b", 4, Duration::from_secs(30)).await;

    // A, same Secret and so the same tenant, is throttled on its first GET.
    h.emulator
        .add_operation(json!({
            "userId": "a-user", "id": "op-a", "status": "succeeded",
            "respond": [{"status": 429, "retryAfter": "8"}],
        }))
        .await;
    h.create("a", spec("a-user", "op-a", "5s")).await;
    h.wait_condition("a", "Ready", "True").await;
    let a = h.emulator.gets_for("op-a").await;
    assert_eq!(a[0]["status"], 429, "{a:#?}");
    let paused_from = answered_at(&a[0]);
    let paused_until = paused_from + 8_000;
    // B's GETs after the pause show it resumed.
    let b = wait_gets(&h, "op-b", 1, Duration::from_secs(1)).await;
    let b = if b.iter().any(|e| arrived_at(e) >= paused_until) {
        b
    } else {
        eventually("B polled again after the pause", Duration::from_secs(20), || async {
            let b = h.emulator.gets_for("op-b").await;
            if b.iter().any(|e| arrived_at(e) >= paused_until) { Ok(b) } else { Err(format!("{b:#?}")) }
        })
        .await
    };

    // Control: in the 8 s before A's 429, B was polled about every second.
    let before = b.iter().filter(|e| (paused_from - 8_000..paused_from).contains(&arrived_at(e))).count();
    assert!(before >= 4, "B was polled {before} times in the 8 s before the pause: {b:#?}");
    // During the pause none of B's GETs left, apart from one already on its way when the
    // 429 was answered.
    let during: Vec<&Value> = b.iter().filter(|e| (paused_from + 500..paused_until).contains(&arrived_at(e))).collect();
    assert!(during.is_empty(), "B was polled during A's Retry-After ({paused_from}..{paused_until}): {during:#?}");
    h.emulator.set_status("b-user", "op-b", "succeeded").await;
    h.wait_condition("b", "Ready", "True").await;
}
