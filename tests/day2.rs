//! Day-2 operations on a real control plane: `kubectl get` tells each resource's story
//! (READY, REASON, USER, OPERATION, also for a resource made from a `location`), the
//! `pwreset.dev/paused` annotation stops Graph polls until it is removed, and
//! `pwreset.dev/reconcile-requested-at` polls a running resource at once but leaves a
//! finished one alone.
//!
//! Graph calls are counted in the emulator's request log; every "nothing happened" is
//! bounded by a positive control that shows the operator was busy meanwhile.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use pwreset_operator::api::{PAUSED, PasswordResetOperation, RECONCILE_REQUESTED_AT};
use pwreset_testkit::harness::SECRET;
use pwreset_testkit::observe::{operation_gets, request_log};
use pwreset_testkit::{Harness, condition, eventually};
use serde_json::{Value, json};

fn by_ids(user: &str, op: &str, extra: Value) -> Value {
    let mut spec = json!({"userId": user, "operationId": op, "credentialsSecretRef": {"name": SECRET}});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    spec
}

async fn gets(h: &Harness, op: &str) -> usize {
    operation_gets(&request_log(&h.emulator).await, Some(op)).len()
}

/// Sets (or, with `null`, removes) one annotation without touching the spec.
async fn annotate(h: &Harness, name: &str, key: &str, value: Value) {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    h.api().patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap_or_else(|e| panic!("{e}"));
}

fn reason(obj: &PasswordResetOperation, type_: &str) -> Option<String> {
    condition(obj, type_).map(|c| c.1)
}

/// `kubectl get` as the API server renders it (the Table kubectl prints): row name →
/// column name → cell, every column including the `-o wide` ones.
async fn table(h: &Harness) -> BTreeMap<String, BTreeMap<String, Value>> {
    let path = format!("/apis/pwreset.dev/v1alpha1/namespaces/{}/passwordresetoperations", h.ns);
    let request = http::Request::get(path)
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
    let table: Value = h.client.request(request).await.expect("the Table of PasswordResetOperations");
    let columns: Vec<String> =
        table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().into()).collect();
    let mut rows = BTreeMap::new();
    for row in table["rows"].as_array().unwrap() {
        let cells = row["cells"].as_array().unwrap();
        let named: BTreeMap<String, Value> = columns.iter().cloned().zip(cells.iter().cloned()).collect();
        rows.insert(named["Name"].as_str().unwrap().to_string(), named);
    }
    rows
}

#[tokio::test]
async fn kubectl_get_shows_ready_reason_user_and_operation_for_every_kind_of_row() {
    let h = Harness::start(&[]).await;
    h.emulator.add_operation(json!({"userId": "alice@contoso.com", "id": "op-ok", "status": "succeeded"})).await;
    let failing = h
        .emulator
        .add_operation(json!({"userId": "bob@contoso.com", "id": "op-failed",
            "steps": [{"status": "failed", "afterMs": 0, "statusDetail": "The password does not meet the policy"}]}))
        .await;
    h.emulator.add_operation(json!({"userId": "carol@contoso.com", "id": "op-held", "status": "running"})).await;
    let location = failing["location"].as_str().expect("the emulator gives the operation's Location").to_string();
    assert!(location.contains("?"), "a Location with its routing query: {location}");

    h.create("succeeded-by-ids", by_ids("alice@contoso.com", "op-ok", json!({}))).await;
    h.create("failed-by-location", json!({"location": location, "credentialsSecretRef": {"name": SECRET}})).await;
    h.create(
        "blocked-no-secret",
        json!({"userId": "dave@contoso.com", "operationId": "op-nowhere",
        "credentialsSecretRef": {"name": "no-such-secret"}}),
    )
    .await;
    h.create("paused-running", by_ids("carol@contoso.com", "op-held", json!({}))).await;

    h.wait_condition("succeeded-by-ids", "Ready", "True").await;
    h.wait_condition("failed-by-location", "Finished", "True").await;
    h.wait_condition("blocked-no-secret", "Stalled", "True").await;
    h.wait_for("paused-running", "running", Duration::from_secs(30), |o| {
        o.status.as_ref().and_then(|s| s.status.as_deref()) == Some("running")
    })
    .await;
    annotate(&h, "paused-running", PAUSED, json!("true")).await;
    h.wait_for("paused-running", "Reconciling reason Paused", Duration::from_secs(20), |o| {
        reason(o, "Reconciling").as_deref() == Some("Paused")
    })
    .await;

    let rows = table(&h).await;
    // (row, READY, REASON, USER, OPERATION, Graph's STATUS)
    let expected = [
        ("succeeded-by-ids", "True", "Succeeded", "alice@contoso.com", "op-ok", Some("succeeded")),
        ("failed-by-location", "False", "OperationFailed", "bob@contoso.com", "op-failed", Some("failed")),
        ("blocked-no-secret", "False", "CredentialsSecretNotFound", "dave@contoso.com", "op-nowhere", None),
        ("paused-running", "False", "Paused", "carol@contoso.com", "op-held", Some("running")),
    ];
    for (name, ready, why, user, op, status) in expected {
        let row = rows.get(name).unwrap_or_else(|| panic!("no row {name}: {rows:?}"));
        assert_eq!(row["Ready"], ready, "{name}: {row:?}");
        assert_eq!(row["Reason"], why, "{name}: {row:?}");
        assert_eq!(row["User"], user, "{name}: USER for every row, location or not: {row:?}");
        assert_eq!(row["Operation"], op, "{name}: {row:?}");
        assert_eq!(row["Status"].as_str(), status, "{name}: {row:?}");
        assert!(row["Message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: -o wide keeps the message: {row:?}");
        // LAST ACTION is an age ("5s"), not a raw timestamp, wherever Graph gave one.
        match status {
            Some(_) => assert!(row["Last Action"].as_str().is_some_and(|a| a.ends_with('s')), "{name}: {row:?}"),
            None => assert!(row["Last Action"].is_null(), "{name}: Graph never answered: {row:?}"),
        }
    }
    assert!(rows["failed-by-location"]["Message"].as_str().unwrap().contains("does not meet the policy"));

    // What a person sees.
    let plain = h.cp.kubectl_ok(&["get", "pwreset", "-n", &h.ns]);
    let wide = h.cp.kubectl_ok(&["get", "pwreset", "-n", &h.ns, "-o", "wide"]);
    println!("$ kubectl get pwreset\n{plain}\n$ kubectl get pwreset -o wide\n{wide}");
    let header = |t: &str| t.lines().next().unwrap().split_whitespace().map(String::from).collect::<Vec<_>>();
    assert_eq!(header(&plain), ["NAME", "READY", "REASON", "USER", "LAST", "ACTION", "AGE"], "{plain}");
    assert_eq!(
        header(&wide),
        ["NAME", "READY", "REASON", "USER", "LAST", "ACTION", "AGE", "STATUS", "OPERATION", "MESSAGE"],
        "{wide}"
    );
}

#[tokio::test]
async fn paused_stops_graph_polls_until_the_annotation_is_removed() {
    let h = Harness::start(&[]).await;
    for (user, op) in [("erin", "op-paused"), ("frank", "op-control")] {
        h.emulator.add_operation(json!({"userId": user, "id": op, "status": "running"})).await;
    }
    // Five minutes between its polls: any GET of it after the annotation is the pause failing
    // (even a single poll on the way into the pause). The control polls every second.
    h.create("held", by_ids("erin", "op-paused", json!({"pollInterval": "300s"}))).await;
    h.create("control", by_ids("frank", "op-control", json!({}))).await;
    for name in ["held", "control"] {
        h.wait_for(name, "running", Duration::from_secs(30), |o| {
            o.status.as_ref().and_then(|s| s.status.as_deref()) == Some("running")
        })
        .await;
    }

    let held_before = gets(&h, "op-paused").await;
    annotate(&h, "held", PAUSED, json!("true")).await;
    let paused = h
        .wait_for("held", "Reconciling reason Paused", Duration::from_secs(20), |o| {
            reason(o, "Reconciling").as_deref() == Some("Paused")
        })
        .await;
    let (status, _, message) = condition(&paused, "Reconciling").unwrap();
    assert_eq!(status, "True");
    assert!(message.contains("pwreset.dev/paused"), "the message names the annotation: {message}");
    assert_eq!(reason(&paused, "Ready").as_deref(), Some("Paused"), "REASON in kubectl get says Paused");
    // Graph moves on meanwhile; a paused resource must not find out.
    h.emulator.set_status("erin", "op-paused", "succeeded").await;

    // The window: as long as the unpaused control needs for five more polls (1 s apart).
    let control_before = gets(&h, "op-control").await;
    eventually("five more polls of the unpaused control", Duration::from_secs(30), || async {
        let n = gets(&h, "op-control").await;
        if n >= control_before + 5 { Ok(()) } else { Err(format!("{n} GETs, had {control_before}")) }
    })
    .await;
    assert_eq!(gets(&h, "op-paused").await, held_before, "a paused resource was polled");
    let still = h.api().get("held").await.unwrap();
    assert_eq!(still.status.as_ref().and_then(|s| s.status.as_deref()), Some("running"), "nothing new was read");
    assert_eq!(reason(&still, "Reconciling").as_deref(), Some("Paused"));

    // Removing the annotation resumes, and the resource reaches the end Graph reached.
    annotate(&h, "held", PAUSED, Value::Null).await;
    let done = h.wait_condition("held", "Ready", "True").await;
    assert_eq!(reason(&done, "Ready").as_deref(), Some("Succeeded"));
    assert!(gets(&h, "op-paused").await > held_before, "unpausing polls again");
    let control = h.api().get("control").await.unwrap();
    assert_eq!(reason(&control, "Reconciling").as_deref(), Some("Running"), "the control was never paused");
}

#[tokio::test]
async fn a_reconcile_request_polls_a_running_resource_now_and_leaves_a_finished_one_alone() {
    let h = Harness::start(&[]).await;
    h.emulator.add_operation(json!({"userId": "gina", "id": "op-slow", "status": "running"})).await;
    h.emulator.add_operation(json!({"userId": "hugo", "id": "op-done", "status": "succeeded"})).await;
    // Five minutes between polls: a poll within seconds can only be the request's doing.
    h.create("slow", by_ids("gina", "op-slow", json!({"pollInterval": "300s"}))).await;
    h.create("done", by_ids("hugo", "op-done", json!({"pollInterval": "300s"}))).await;
    h.wait_for("slow", "running", Duration::from_secs(30), |o| {
        o.status.as_ref().and_then(|s| s.status.as_deref()) == Some("running")
    })
    .await;
    let done = h.wait_condition("done", "Ready", "True").await;
    let done_status = done.status.clone().unwrap();

    // A request on the finished resource: the operator reconciles it (the reconcile counter
    // moves: the positive control) but asks Graph nothing and writes nothing.
    let reconciles = || async { h.operator.metric("pwreset_reconciles_total{result=\"ok\"}").await.unwrap_or(0.0) };
    let (done_gets, reconciled_before) = (gets(&h, "op-done").await, reconciles().await);
    annotate(&h, "done", RECONCILE_REQUESTED_AT, json!("2026-11-30T01:00:00Z")).await;
    eventually("a reconcile of the annotated finished resource", Duration::from_secs(20), || async {
        let n = reconciles().await;
        if n > reconciled_before { Ok(()) } else { Err(format!("{n} reconciles, had {reconciled_before}")) }
    })
    .await;
    assert_eq!(gets(&h, "op-done").await, done_gets, "a finished resource was polled");
    let after = h.api().get("done").await.unwrap().status.unwrap();
    assert_eq!(after, done_status, "a finished resource's status changed (status, lastActionDateTime, conditions)");
    assert_eq!(after.last_handled_reconcile_at, None, "not acted on, so not recorded");

    // The same request on the running resource polls within seconds and is recorded.
    let slow_gets = gets(&h, "op-slow").await;
    let asked = Instant::now();
    annotate(&h, "slow", RECONCILE_REQUESTED_AT, json!("2026-11-30T01:00:00Z")).await;
    let handled = h
        .wait_for("slow", "lastHandledReconcileAt recorded", Duration::from_secs(10), |o| {
            o.status.as_ref().and_then(|s| s.last_handled_reconcile_at.as_deref()) == Some("2026-11-30T01:00:00Z")
        })
        .await;
    let took = asked.elapsed();
    assert_eq!(gets(&h, "op-slow").await, slow_gets + 1, "exactly one poll for one request");
    assert!(took < Duration::from_secs(5), "polled {took:?} after the request; pollInterval is 300s");
    assert_eq!(reason(&handled, "Reconciling").as_deref(), Some("Running"));
    println!("reconcile request on a running resource: polled and recorded after {took:?}");

    // Other metadata wakes nothing. The window: three polls of a resource polled every
    // second (created only now, so it did not move the reconcile counter above).
    h.emulator.add_operation(json!({"userId": "ivan", "id": "op-ticker", "status": "running"})).await;
    h.create("ticker", by_ids("ivan", "op-ticker", json!({}))).await;
    h.wait_condition("ticker", "Reconciling", "True").await;
    let slow_gets = gets(&h, "op-slow").await;
    annotate(&h, "slow", "example.com/note", json!("looked at it")).await;
    let ticks = gets(&h, "op-ticker").await;
    eventually("three more polls of the ticker", Duration::from_secs(20), || async {
        let n = gets(&h, "op-ticker").await;
        if n >= ticks + 3 { Ok(()) } else { Err(format!("{n} GETs, had {ticks}")) }
    })
    .await;
    assert_eq!(gets(&h, "op-slow").await, slow_gets, "another annotation made the operator poll");
}
