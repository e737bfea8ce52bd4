//! The operator end to end: the real binary against the real control plane and the Graph
//! emulator, checked the way a user checks it (status, conditions, events, kubectl wait).

use std::time::Duration;

use kube::ResourceExt;
use pwreset_testkit::harness::SECRET;
use pwreset_testkit::{Emulator, Harness, condition, eventually};
use serde_json::json;

fn by_id(user: &str, op: &str) -> serde_json::Value {
    json!({"userId": user, "operationId": op, "credentialsSecretRef": {"name": SECRET}})
}

#[tokio::test]
async fn mirrors_every_field_of_a_successful_operation() {
    let h = Harness::start(&[]).await;
    h.emulator
        .add_operation(json!({
            "userId": "alice@contoso.com",
            "id": "2d497bb-57bd-47a6-8749-5ccd0869f2bd",
            "resourceLocation": "https://graph.microsoft.com/v1.0/users/alice@contoso.com",
            "steps": [
                {"status": "notStarted", "afterMs": 0},
                {"status": "running", "afterMs": 1500, "statusDetail": "Resetting"},
                {"status": "succeeded", "afterMs": 3000, "statusDetail": "Password changed"}
            ],
        }))
        .await;
    h.create("alice", by_id("alice@contoso.com", "2d497bb-57bd-47a6-8749-5ccd0869f2bd")).await;

    let done = h.wait_condition("alice", "Finished", "True").await;
    let status = done.status.clone().unwrap();

    // What Graph says now, read directly with the same token.
    let graph: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{}/v1.0/users/alice@contoso.com/authentication/operations/2d497bb-57bd-47a6-8749-5ccd0869f2bd",
            h.emulator.url
        ))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status.status.as_deref(), Some("succeeded"));
    assert_eq!(status.operation_id.as_deref(), graph["id"].as_str());
    assert_eq!(status.created_date_time.as_deref(), graph["createdDateTime"].as_str());
    assert_eq!(status.last_action_date_time.as_deref(), graph["lastActionDateTime"].as_str());
    assert_eq!(status.resource_location.as_deref(), graph["resourceLocation"].as_str());
    assert_eq!(status.status_detail.as_deref(), Some("Password changed"));
    assert_eq!(status.observed_generation, done.metadata.generation);
    assert!(status.last_polled_time.is_some() && status.completion_time.is_some());
    assert!(status.request_id.is_none());

    assert_eq!(condition(&done, "Ready").unwrap().0, "True");
    assert_eq!(condition(&done, "Ready").unwrap().1, "Succeeded");
    assert!(condition(&done, "Reconciling").is_none() && condition(&done, "Stalled").is_none());
    for c in &status.conditions {
        assert_eq!(c.observed_generation, done.metadata.generation, "{c:?}");
    }

    // Progress (notStarted → running) is no event; the end is one Normal event.
    let events = h.wait_event("alice", "Succeeded", |e| e.1 == "Succeeded" && e.2.contains("Password changed")).await;
    let reasons: Vec<(&str, &str)> = events.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect();
    assert_eq!(reasons, [("Normal", "Succeeded")], "one event, for the end: {events:?}");

    // The token never leaves the Secret (tests/leaks.rs covers every credential path).
    let outputs = pwreset_testkit::leaks::operator_outputs(&h.client, &h.ns, &h.operator).await;
    pwreset_testkit::leaks::assert_no_leak_in(&outputs, &[&h.token]);

    let metrics = h.operator.http_get("/metrics").await.unwrap().1;
    assert!(metrics.contains("pwreset_graph_requests_total{"), "{metrics}");
    assert!(metrics.contains("pwreset_operations{state=\"succeeded\"} 1"), "{metrics}");
}

#[tokio::test]
async fn a_failed_operation_is_stalled_and_finished() {
    let h = Harness::start(&[]).await;
    h.emulator
        .add_operation(json!({
            "userId": "bob", "id": "op-fail",
            "steps": [{"status": "running", "afterMs": 0},
                      {"status": "failed", "afterMs": 1000, "statusDetail": "Password does not meet complexity requirements"}],
        }))
        .await;
    h.create("bob", by_id("bob", "op-fail")).await;
    let done = h.wait_condition("bob", "Finished", "True").await;
    assert_eq!(done.status.as_ref().unwrap().status.as_deref(), Some("failed"));
    let stalled = condition(&done, "Stalled").unwrap();
    assert_eq!((stalled.0.as_str(), stalled.1.as_str()), ("True", "OperationFailed"));
    assert!(stalled.2.contains("complexity requirements"), "{stalled:?}");
    assert_eq!(condition(&done, "Ready").unwrap().0, "False");
    h.wait_event("bob", "Warning OperationFailed", |e| e.0 == "Warning" && e.1 == "OperationFailed").await;
}

#[tokio::test]
async fn unknown_statuses_are_shown_and_never_taken_as_an_end() {
    let h = Harness::start(&[]).await;
    h.emulator.add_operation(json!({"userId": "carol", "id": "op-new", "status": "unknownFutureValue"})).await;
    h.create("carol", by_id("carol", "op-new")).await;
    let obj = h
        .wait_for("carol", "UnknownStatus", Duration::from_secs(30), |o| {
            condition(o, "Reconciling").is_some_and(|c| c.1 == "UnknownStatus")
        })
        .await;
    assert_eq!(obj.status.as_ref().unwrap().status.as_deref(), Some("unknownFutureValue"));
    assert_eq!(condition(&obj, "Finished").unwrap().0, "False");
    assert_eq!(condition(&obj, "Ready").unwrap().0, "False");

    // It keeps watching: when Graph moves on, so does the resource.
    h.emulator.set_status("carol", "op-new", "succeeded").await;
    let done = h.wait_condition("carol", "Ready", "True").await;
    assert_eq!(done.status.unwrap().status.as_deref(), Some("succeeded"));
}

#[tokio::test]
async fn malformed_timestamps_are_mirrored_verbatim() {
    let h = Harness::start(&[]).await;
    h.emulator
        .add_operation(json!({
            "userId": "dave", "id": "op-ts", "status": "succeeded", "timestampStyle": "docsMalformed",
        }))
        .await;
    h.create("dave", by_id("dave", "op-ts")).await;
    let done = h.wait_condition("dave", "Ready", "True").await;
    let created = done.status.unwrap().created_date_time.unwrap();
    // The docs' shape: hyphens in the time of day.
    let time_of_day = created.split('T').nth(1).unwrap();
    assert!(time_of_day.contains('-') && !time_of_day.contains(':'), "{created}");
}

#[tokio::test]
async fn throttling_is_honoured_no_request_before_retry_after() {
    let h = Harness::start(&[]).await;
    h.emulator
        .add_operation(json!({
            "userId": "erin", "id": "op-429", "status": "succeeded",
            "respond": [{"status": 429, "retryAfter": "3"}, {"status": 429, "retryAfter": "2.5"}],
        }))
        .await;
    h.create("erin", by_id("erin", "op-429")).await;
    h.wait_condition("erin", "Ready", "True").await;

    let gets = h.emulator.gets_for("op-429").await;
    assert_eq!(gets.len(), 3, "two throttled GETs and one answer: {gets:#?}");
    for pair in gets.windows(2) {
        let (first, next) = (&pair[0], &pair[1]);
        let allowed: f64 = first["retryAfter"].as_str().unwrap().parse().unwrap();
        let waited = (next["timeMs"].as_i64().unwrap() - first["timeMs"].as_i64().unwrap()) as f64 / 1000.0;
        assert!(waited >= allowed, "next request after {waited}s, Retry-After was {allowed}s");
    }
    h.wait_event("erin", "Warning Throttled", |e| e.0 == "Warning" && e.1 == "Throttled").await;
}

/// README, "Events": a cleared problem is a Normal `Recovered`; going on `running` is none.
#[tokio::test]
async fn a_cleared_problem_is_a_recovered_event() {
    let h = Harness::start(&[]).await;
    h.emulator
        .add_operation(json!({
            "userId": "ivy", "id": "op-back", "status": "running",
            "respond": [{"status": 429, "retryAfter": "1"}],
        }))
        .await;
    h.create("ivy", by_id("ivy", "op-back")).await;
    let events = h.wait_event("ivy", "Normal Recovered", |e| e.0 == "Normal" && e.1 == "Recovered").await;
    let mut reasons: Vec<(&str, &str)> = events.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect();
    reasons.sort();
    assert_eq!(reasons, [("Normal", "Recovered"), ("Warning", "Throttled")], "{events:?}");
    assert!(events.iter().any(|e| e.1 == "Recovered" && e.2.contains("(was Throttled)")), "{events:?}");
}

#[tokio::test]
async fn not_found_is_retried_for_the_grace_period_then_stalled() {
    let h = Harness::start(&["--not-found-grace", "4s"]).await;
    // Appears late, within the grace period: tracked to the end.
    h.emulator
        .add_operation(json!({"userId": "frank", "id": "op-late", "status": "succeeded", "appearAfterMs": 2000}))
        .await;
    h.create("late", by_id("frank", "op-late")).await;
    // Never appears.
    h.create("missing", by_id("frank", "op-missing")).await;

    let waiting = h
        .wait_for("missing", "OperationNotFoundYet", Duration::from_secs(20), |o| {
            condition(o, "Reconciling").is_some_and(|c| c.1 == "OperationNotFoundYet")
        })
        .await;
    assert!(waiting.status.unwrap().not_found_since.is_some());
    let gone = h.wait_condition("missing", "Finished", "True").await;
    let stalled = condition(&gone, "Stalled").unwrap();
    assert_eq!(stalled.1, "OperationNotFound", "{stalled:?}");
    assert!(gone.status.as_ref().unwrap().request_id.is_some(), "Graph's request-id is kept for support");

    let late = h.wait_condition("late", "Ready", "True").await;
    assert!(late.status.unwrap().not_found_since.is_none());
}

#[tokio::test]
async fn a_missing_secret_is_a_condition_until_it_is_created() {
    let h = Harness::start(&[]).await;
    h.emulator.add_operation(json!({"userId": "gina", "id": "op-s", "status": "succeeded"})).await;
    h.create("gina", json!({"userId": "gina", "operationId": "op-s", "credentialsSecretRef": {"name": "later"}})).await;
    let blocked = h
        .wait_for("gina", "CredentialsSecretNotFound", Duration::from_secs(20), |o| {
            condition(o, "Stalled").is_some_and(|c| c.1 == "CredentialsSecretNotFound")
        })
        .await;
    assert!(condition(&blocked, "Stalled").unwrap().2.contains("later"));
    assert_eq!(condition(&blocked, "Finished").unwrap().0, "False");
    assert!(h.emulator.gets_for("op-s").await.is_empty(), "no Graph call without credentials");

    // Creating the Secret is enough; nothing else needs a nudge (the first retry is at 5 s).
    h.create_token_secret("later").await;
    let done = h.wait_condition("gina", "Ready", "True").await;
    assert!(condition(&done, "Stalled").is_none());
}

#[tokio::test]
async fn finished_resources_cost_no_graph_call_and_no_write() {
    let h = Harness::start(&[]).await;
    h.emulator.add_operation(json!({"userId": "hank", "id": "op-done", "status": "succeeded"})).await;
    h.create("hank", by_id("hank", "op-done")).await;
    let done = h.wait_condition("hank", "Finished", "True").await;
    let gets = h.emulator.gets_for("op-done").await.len();

    // Watch for three poll intervals: any Graph call or status write would show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(h.emulator.gets_for("op-done").await.len(), gets, "Graph was polled after the end");
    let later = h.api().get("hank").await.unwrap();
    assert_eq!(later.resource_version(), done.resource_version(), "status written after the end");

    // Not after a restart either: the operator resumes from status.
    let mut h = h;
    h.restart_operator(&[]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(h.emulator.gets_for("op-done").await.len(), gets, "Graph was polled after a restart");
}

#[tokio::test]
async fn an_unchanged_poll_writes_nothing() {
    let h = Harness::start(&[]).await;
    h.emulator.add_operation(json!({"userId": "ivy", "id": "op-slow", "status": "running"})).await;
    h.create("ivy", by_id("ivy", "op-slow")).await;
    let running = h
        .wait_for("ivy", "status running", Duration::from_secs(20), |o| {
            o.status.as_ref().and_then(|s| s.status.as_deref()) == Some("running")
        })
        .await;
    let before = h.emulator.gets_for("op-slow").await.len();
    eventually("three more polls", Duration::from_secs(20), || async {
        let n = h.emulator.gets_for("op-slow").await.len();
        if n >= before + 3 { Ok(()) } else { Err(format!("{n} GETs")) }
    })
    .await;
    let after = h.api().get("ivy").await.unwrap();
    assert_eq!(after.resource_version(), running.resource_version(), "an unchanged poll wrote status");
    let writes = h.operator.metric("pwreset_status_writes_total").await.unwrap();
    assert!(writes <= 3.0, "{writes} status writes for: initial conditions, notStarted/running");
    // Its own writes do not trigger it: one reconcile per poll, no hot loop.
    let gets = h.emulator.gets_for("op-slow").await.len() as f64;
    let reconciles = h.operator.metric("pwreset_reconciles_total{result=\"ok\"}").await.unwrap();
    assert!(reconciles <= gets + 1.0, "{reconciles} reconciles for {gets} Graph requests");
}

#[tokio::test]
async fn conditions_are_written_before_graph_answers() {
    let h = Harness::start(&[]).await;
    h.emulator
        .add_operation(json!({
            "userId": "jack", "id": "op-wait", "status": "succeeded",
            "respond": [{"status": 200, "delayMs": 4000}],
        }))
        .await;
    h.create("jack", by_id("jack", "op-wait")).await;
    let early = h
        .wait_for("jack", "initial conditions", Duration::from_secs(3), |o| condition(o, "Reconciling").is_some())
        .await;
    assert_eq!(condition(&early, "Reconciling").unwrap().1, "WaitingForGraph");
    assert_eq!(early.status.as_ref().unwrap().observed_generation, early.metadata.generation);
    h.wait_condition("jack", "Ready", "True").await;
}

#[tokio::test]
async fn kubectl_wait_works_for_finished_and_ready() {
    let h = Harness::start(&[]).await;
    h.emulator
        .add_operation(json!({"userId": "kim", "id": "op-kw",
            "steps": [{"status": "running", "afterMs": 0}, {"status": "succeeded", "afterMs": 2000}]}))
        .await;
    h.create("kim", by_id("kim", "op-kw")).await;
    for condition in ["Finished", "Ready"] {
        let out =
            h.cp.kubectl()
                .args(["wait", "-n", &h.ns, "--for", &format!("condition={condition}"), "pwreset/kim", "--timeout=60s"])
                .output()
                .unwrap();
        assert!(out.status.success(), "kubectl wait {condition}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let status = h.cp.kubectl_ok(&["get", "-n", &h.ns, "pwreset/kim", "-o", "jsonpath={.status.status}"]);
    assert_eq!(status, "succeeded");
}

#[tokio::test]
async fn a_location_is_polled_as_given_and_a_foreign_host_gets_nothing() {
    let h = Harness::start(&[]).await;
    let created = h.emulator.add_operation(json!({"userId": "lee", "id": "op-loc", "status": "succeeded"})).await;
    let location = created["location"].as_str().expect("emulator returns the Location URL").to_string();
    assert!(location.contains("aadgdc="), "{location}");
    h.create("by-location", json!({"location": location, "credentialsSecretRef": {"name": SECRET}})).await;
    h.wait_condition("by-location", "Ready", "True").await;
    let gets = h.emulator.gets_for("op-loc").await;
    assert!(gets.iter().all(|g| g["query"].as_str().is_some_and(|q| q.contains("aadgsu=ssprprod-a"))), "{gets:?}");

    // Another server on loopback (the CRD admits it) must never see the token.
    let foreign = Emulator::start();
    foreign.add_operation(json!({"userId": "lee", "id": "op-loc", "status": "succeeded"})).await;
    let foreign_location = format!("{}/v1.0/users/lee/authentication/operations/op-loc", foreign.url);
    h.create("foreign", json!({"location": foreign_location, "credentialsSecretRef": {"name": SECRET}})).await;
    let refused = h.wait_condition("foreign", "Finished", "True").await;
    assert_eq!(condition(&refused, "Stalled").unwrap().1, "LocationHostNotAllowed");
    let foreign_requests: Vec<_> = foreign.requests().await.into_iter().filter(|r| r["kind"] != "admin").collect();
    assert!(foreign_requests.is_empty(), "the foreign host was contacted: {foreign_requests:?}");
    // Control: a request that does reach the foreign server shows up in its log.
    reqwest::get(&foreign_location).await.expect("the foreign server answers");
    let seen: Vec<_> = foreign.requests().await.into_iter().filter(|r| r["kind"] != "admin").collect();
    assert_eq!(seen.len(), 1, "the foreign server's log misses a request: {seen:?}");
    h.wait_event("foreign", "LocationHostNotAllowed", |e| e.1 == "LocationHostNotAllowed").await;
}
