//! What happens around a poll, end to end on the real control plane: credentials edited
//! while resources are polling, a person's edit racing the refresh-token write-back, a token
//! Graph stops accepting, a resource or a whole namespace deleted under a poll, sharded
//! replicas, SIGTERM during a slow poll, and the longest user id the CRD admits.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use pwreset_testkit::harness::{HarnessParts, SECRET, create_secret};
use pwreset_testkit::{Harness, Operator, condition, eventually};
use serde_json::{Value, json};

const TENANT_ID: &str = "11111111-2222-3333-4444-555555555555";
/// README: "Secret edits take effect within 10 s, without a restart".
const SECRET_CACHE: Duration = Duration::from_secs(10);

fn spec(user: &str, op: &str, secret: &str) -> Value {
    json!({"userId": user, "operationId": op, "credentialsSecretRef": {"name": secret}, "pollInterval": "1s"})
}

async fn delegated_tenant(h: &HarnessParts, clients: Value) {
    h.emulator.admin("POST", "/tenants", json!({"id": TENANT_ID, "clients": clients})).await;
}

async fn refresh_token_in(client: &kube::Client, ns: &str, name: &str) -> String {
    let s = Api::<Secret>::namespaced(client.clone(), ns).get(name).await.unwrap();
    String::from_utf8(s.data.unwrap()["refreshToken"].0.clone()).unwrap()
}

async fn replace_secret(client: &kube::Client, ns: &str, name: &str, string_data: Value) {
    let patch = json!({"data": null, "stringData": string_data});
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("edit Secret {name}: {e}"));
}

fn token_requests(log: &[Value]) -> Vec<&Value> {
    log.iter().filter(|r| r["kind"] == "token").collect()
}

fn arrived_at(entry: &Value) -> i64 {
    entry["timeMs"].as_i64().expect("timeMs")
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[tokio::test]
async fn a_secret_edited_while_polling_is_used_within_ten_seconds() {
    let parts = Harness::start_without_operator().await;
    delegated_tenant(
        &parts,
        json!([{"clientId": "app-one", "refreshTokens": ["rt-one-5be1"], "subject": "admin-1"},
               {"clientId": "app-two", "refreshTokens": ["rt-two-90ac"], "subject": "admin-2"}]),
    )
    .await;
    let secret = json!({"tenantId": TENANT_ID, "clientId": "app-one", "refreshToken": "rt-one-5be1"});
    create_secret(&parts.client, &parts.ns, "deleg", secret).await;
    let op = parts.start_operator(&["--login-url", &parts.emulator.url]);
    op.wait_ready().await;
    let h = parts.with_operator(op);
    h.emulator.add_operation(json!({"userId": "u1", "id": "op-edit", "status": "running"})).await;
    h.create("edit", spec("u1", "op-edit", "deleg")).await;

    // Control: the operator uses the first Secret and writes the rotated token back.
    let client = h.client.clone();
    eventually("the first refresh token rotated", Duration::from_secs(30), || async {
        let rt = refresh_token_in(&client, &h.ns, "deleg").await;
        if rt != "rt-one-5be1" { Ok(()) } else { Err(rt) }
    })
    .await;

    // A person points the Secret at another app registration while the resource polls.
    let edited = Instant::now();
    replace_secret(
        &h.client,
        &h.ns,
        "deleg",
        json!({"tenantId": TENANT_ID, "clientId": "app-two", "refreshToken": "rt-two-90ac"}),
    )
    .await;
    eventually("the edited Secret used", SECRET_CACHE + Duration::from_secs(5), || async {
        let rt = refresh_token_in(&client, &h.ns, "deleg").await;
        if rt != "rt-two-90ac" { Ok(()) } else { Err("not used yet".to_string()) }
    })
    .await;
    let took = edited.elapsed();
    // The cache lifetime plus one poll interval and the token round trip.
    assert!(took <= SECRET_CACHE + Duration::from_secs(2), "the edit took {took:?} to be used");
    let tokens = h.emulator.requests().await;
    assert_eq!(token_requests(&tokens).len(), 2, "one token per Secret version: {tokens:#?}");
    h.emulator.set_status("u1", "op-edit", "succeeded").await;
    h.wait_condition("edit", "Ready", "True").await;
}

#[tokio::test]
async fn a_persons_edit_wins_over_a_refresh_token_write_back_in_flight() {
    let parts = Harness::start_without_operator().await;
    // The first token answer is held 6 s: time for a person to edit the Secret under it.
    parts
        .emulator
        .admin(
            "POST",
            "/tenants",
            json!({"id": TENANT_ID, "tokenRespond": [{"status": 200, "delayMs": 6000}], "clients": [
                {"clientId": "app-one", "refreshTokens": ["rt-old-11aa", "rt-new-22bb"], "subject": "admin-1"}]}),
        )
        .await;
    let secret = json!({"tenantId": TENANT_ID, "clientId": "app-one", "refreshToken": "rt-old-11aa"});
    create_secret(&parts.client, &parts.ns, "deleg", secret).await;
    let op = parts.start_operator(&["--login-url", &parts.emulator.url]);
    op.wait_ready().await;
    let h = parts.with_operator(op);
    h.emulator.add_operation(json!({"userId": "u1", "id": "op-race", "status": "running"})).await;
    h.create("race", spec("u1", "op-race", "deleg")).await;

    // Graph (here: the token request, the first thing a poll does) is slower than the
    // first-answer bound, so the operator writes `WaitingForGraph` while it is in flight.
    let client = h.client.clone();
    let person =
        json!({"tenantId": TENANT_ID, "clientId": "app-one", "refreshToken": "rt-new-22bb", "note": "re-signed in"});
    h.wait_for("race", "WaitingForGraph", Duration::from_secs(20), |o| {
        condition(o, "Reconciling").is_some_and(|c| c.1 == "WaitingForGraph")
    })
    .await;
    replace_secret(&client, &h.ns, "deleg", person.clone()).await;
    let edited_at = now_ms();

    // The held answer arrives; the operator's write-back must not overwrite the person.
    let log = eventually("a GET after the held token answer", Duration::from_secs(20), || async {
        let log = h.emulator.requests().await;
        let answered = token_requests(&log).first().map(|t| arrived_at(t) + t["durationMs"].as_i64().unwrap());
        match answered {
            Some(at) if log.iter().any(|r| r["kind"] == "operationGet" && arrived_at(r) >= at) => Ok(log),
            _ => Err(format!("{log:#?}")),
        }
    })
    .await;
    let first = token_requests(&log)[0];
    assert!(
        arrived_at(first) < edited_at && arrived_at(first) + first["durationMs"].as_i64().unwrap() > edited_at,
        "the edit (at {edited_at}) did not land while the token request was held: {first}"
    );
    assert_eq!(refresh_token_in(&client, &h.ns, "deleg").await, "rt-new-22bb", "the person's token was overwritten");
    let s = Api::<Secret>::namespaced(client.clone(), &h.ns).get("deleg").await.unwrap();
    assert_eq!(s.data.unwrap()["note"].0, b"re-signed in");

    // The person's token is used from then on (and rotated: the control that write-backs happen).
    eventually("the person's token used and rotated", SECRET_CACHE + Duration::from_secs(10), || async {
        let rt = refresh_token_in(&client, &h.ns, "deleg").await;
        if rt != "rt-new-22bb" { Ok(()) } else { Err(rt) }
    })
    .await;
}

#[tokio::test]
async fn a_token_graph_rejects_is_replaced_and_the_poll_is_not_lost() {
    let parts = Harness::start_without_operator().await;
    delegated_tenant(&parts, json!([{"clientId": "app-one", "refreshTokens": ["rt-401-77de"], "subject": "admin-1"}]))
        .await;
    create_secret(
        &parts.client,
        &parts.ns,
        "deleg",
        json!({"tenantId": TENANT_ID, "clientId": "app-one", "refreshToken": "rt-401-77de"}),
    )
    .await;
    let op = parts.start_operator(&["--login-url", &parts.emulator.url]);
    op.wait_ready().await;
    let h = parts.with_operator(op);
    // Graph stops accepting the access token (expired or revoked early) on the second poll.
    h.emulator
        .add_operation(json!({"userId": "u1", "id": "op-401", "status": "running",
                              "respond": [{"status": 200}, {"status": 401}]}))
        .await;
    h.create("expiry", spec("u1", "op-401", "deleg")).await;
    let gets = eventually("polls after the 401", Duration::from_secs(30), || async {
        let gets = h.emulator.gets_for("op-401").await;
        if gets.len() >= 4 { Ok(gets) } else { Err(format!("{gets:#?}")) }
    })
    .await;
    assert_eq!((gets[0]["status"].as_u64(), gets[1]["status"].as_u64()), (Some(200), Some(401)), "{gets:#?}");
    assert!(gets[2..].iter().all(|g| g["status"] == 200), "the fresh token is accepted: {gets:#?}");
    let log = h.emulator.requests().await;
    let tokens = token_requests(&log);
    assert_eq!(tokens.len(), 2, "one token at the start, one after the 401: {tokens:#?}");
    assert!(arrived_at(tokens[1]) > arrived_at(&gets[1]), "the second token came after the 401");
    // No lost poll: the retry comes after the first backoff, not a whole poll later.
    let retry = arrived_at(&gets[2]) - arrived_at(&gets[1]);
    assert!(retry <= 7_000, "the poll after the 401 came {retry} ms later");
    h.emulator.set_status("u1", "op-401", "succeeded").await;
    h.wait_condition("expiry", "Ready", "True").await;
}

/// Reconcile errors the operator counted (all reasons).
async fn reconcile_errors(op: &Operator) -> f64 {
    let (status, body) = op.http_get("/metrics").await.expect("/metrics reachable");
    assert_eq!(status, 200);
    pwreset_testkit::observe::metric_sum(&body, "pwreset_reconcile_errors_total")
}

#[tokio::test]
async fn a_resource_deleted_while_its_poll_is_in_flight_is_let_go() {
    let h = Harness::start(&[]).await;
    h.emulator.add_operation(json!({"userId": "u1", "id": "op-ctl", "status": "running"})).await;
    h.create("control", spec("u1", "op-ctl", SECRET)).await;
    h.emulator
        .add_operation(json!({"userId": "u1", "id": "op-doomed", "status": "running",
                              "respond": [{"status": 200, "delayMs": 5000}]}))
        .await;
    h.create("doomed", spec("u1", "op-doomed", SECRET)).await;
    h.wait_for("doomed", "WaitingForGraph", Duration::from_secs(20), |o| {
        condition(o, "Reconciling").is_some_and(|c| c.1 == "WaitingForGraph")
    })
    .await;
    let errors_before = reconcile_errors(&h.operator).await;
    h.api().delete("doomed", &DeleteParams::default()).await.unwrap();
    let deleted_at = now_ms();

    // The held answer comes back to a resource that is gone; the operator carries on.
    let control_after =
        eventually("the control polled 3 times after the held answer", Duration::from_secs(30), || async {
            let doomed = h.emulator.gets_for("op-doomed").await;
            let Some(answered) = doomed.first().map(|g| arrived_at(g) + g["durationMs"].as_i64().unwrap()) else {
                return Err("the held GET has not been answered".to_string());
            };
            let control = h.emulator.gets_for("op-ctl").await;
            let after = control.iter().filter(|g| arrived_at(g) > answered + 500).count();
            if after >= 3 { Ok((doomed, after)) } else { Err(format!("{after} control GETs after the answer")) }
        })
        .await;
    let (doomed, _) = control_after;
    assert_eq!(doomed.len(), 1, "the deleted resource was polled again: {doomed:#?}");
    assert!(arrived_at(&doomed[0]) < deleted_at, "the GET was in flight when the resource was deleted");
    assert!(h.operator.exited().is_none(), "the operator stopped");
    assert_eq!(reconcile_errors(&h.operator).await, errors_before, "a deleted resource counted as an error");
    h.emulator.set_status("u1", "op-ctl", "succeeded").await;
    h.wait_condition("control", "Ready", "True").await;
}

#[tokio::test]
async fn a_namespace_deleted_with_resources_in_it_stops_their_polls() {
    let h = Harness::start(&[]).await;
    for i in 0..3 {
        h.emulator.add_operation(json!({"userId": "u1", "id": format!("op-ns-{i}"), "status": "running"})).await;
        h.create(&format!("ns-{i}"), spec("u1", &format!("op-ns-{i}"), SECRET)).await;
    }
    // Control: each is polled about every second.
    eventually("every resource polled twice", Duration::from_secs(30), || async {
        let log = h.emulator.requests().await;
        let counts: Vec<usize> =
            (0..3).map(|i| log.iter().filter(|r| r["operationId"] == format!("op-ns-{i}").as_str()).count()).collect();
        if counts.iter().all(|&n| n >= 2) { Ok(()) } else { Err(format!("{counts:?}")) }
    })
    .await;
    let namespaces: Api<Namespace> = Api::all(h.client.clone());
    namespaces.delete(&h.ns, &DeleteParams::default()).await.unwrap();
    eventually("the namespace gone", Duration::from_secs(90), || async {
        match namespaces.get_opt(&h.ns).await {
            Ok(None) => Ok(()),
            other => Err(format!("{:?}", other.map(|n| n.map(|n| n.status)))),
        }
    })
    .await;
    let gone_at = now_ms();
    // The operator's own view empties (its gauges count its cache) …
    eventually("the operator's cache empty", Duration::from_secs(20), || async {
        let (status, body) = h.operator.http_get("/metrics").await?;
        let running = pwreset_testkit::observe::metric_sum(&body, "pwreset_operations");
        if status == 200 && running == 0.0 { Ok(()) } else { Err(format!("{status}: {running} in the cache")) }
    })
    .await;
    // … and nothing is polled for three poll intervals (the control above shows polls
    // would have shown up).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late: Vec<Value> = h
        .emulator
        .requests()
        .await
        .into_iter()
        .filter(|r| r["kind"] == "operationGet" && arrived_at(r) > gone_at + 1_000)
        .collect();
    assert!(late.is_empty(), "polled after the namespace was gone: {late:#?}");
    assert!(h.operator.exited().is_none(), "the operator stopped");
    assert_eq!(h.operator.http_get("/readyz").await.map(|r| r.0), Ok(200));
}

#[tokio::test]
async fn sigterm_lets_a_slow_poll_finish_and_write_its_answer() {
    let h = Harness::start(&[]).await;
    h.emulator
        .add_operation(json!({"userId": "u1", "id": "op-slow", "status": "succeeded",
                              "respond": [{"status": 200, "delayMs": 5000}]}))
        .await;
    h.create("slow", spec("u1", "op-slow", SECRET)).await;
    h.wait_for("slow", "WaitingForGraph", Duration::from_secs(20), |o| {
        condition(o, "Reconciling").is_some_and(|c| c.1 == "WaitingForGraph")
    })
    .await;
    let Harness { mut operator, emulator, client, ns, .. } = h;
    let stopped_at = now_ms();
    let exit = tokio::task::spawn_blocking(move || operator.stop()).await.unwrap();
    assert!(exit.is_some_and(|s| s.success()), "exit after SIGTERM: {exit:?}");
    let gets = emulator.gets_for("op-slow").await;
    assert_eq!(gets.len(), 1, "{gets:#?}");
    assert!(arrived_at(&gets[0]) < stopped_at, "the GET was in flight at SIGTERM");
    let obj = Api::<pwreset_operator::api::PasswordResetOperation>::namespaced(client, &ns).get("slow").await.unwrap();
    assert_eq!(
        obj.status.as_ref().and_then(|s| s.status.as_deref()),
        Some("succeeded"),
        "the answer was written before exit"
    );
    assert_eq!(condition(&obj, "Ready").unwrap().0, "True");
}

#[tokio::test]
async fn two_shards_own_disjoint_halves_and_together_finish_all() {
    let parts = Harness::start_without_operator().await;
    let shard = |n: &'static str| parts.start_operator(&["--shard", n, "--total-shards", "2"]);
    let (a, b) = (shard("0"), shard("1"));
    a.wait_ready().await;
    b.wait_ready().await;
    for i in 0..20 {
        parts
            .emulator
            .add_operation(json!({"userId": "u1", "id": format!("op-sh-{i}"), "steps": [
                {"status": "running", "afterMs": 0}, {"status": "succeeded", "afterMs": 2000}]}))
            .await;
        pwreset_testkit::harness::create(
            &parts.client,
            &parts.ns,
            &format!("sh-{i}"),
            spec("u1", &format!("op-sh-{i}"), SECRET),
        )
        .await;
    }
    let api: Api<pwreset_operator::api::PasswordResetOperation> = Api::namespaced(parts.client.clone(), &parts.ns);
    eventually("all 20 Ready", Duration::from_secs(60), || async {
        let list = api.list(&Default::default()).await.map_err(|e| e.to_string())?;
        let ready = list.items.iter().filter(|o| condition(o, "Ready").is_some_and(|c| c.0 == "True")).count();
        if ready == 20 { Ok(()) } else { Err(format!("{ready} Ready")) }
    })
    .await;
    // Each replica counts the resources it owns; an overlap would count some twice.
    let (na, nb) = eventually("both shards' gauges up to date", Duration::from_secs(20), || async {
        let (na, nb) = (owned(&a).await, owned(&b).await);
        if na + nb == 20.0 { Ok((na, nb)) } else { Err(format!("{na} + {nb}")) }
    })
    .await;
    assert!(na > 0.0 && nb > 0.0, "one shard owned everything: {na} / {nb}");
    // And each operation was polled by exactly one of them: both counted Graph requests, and
    // together no more than Graph saw.
    let (sa, sb) = (sent(&a).await, sent(&b).await);
    let graph_saw = parts.emulator.requests().await.iter().filter(|r| r["kind"] == "operationGet").count() as f64;
    assert!(sa > 0.0 && sb > 0.0 && sa + sb == graph_saw, "{sa} + {sb} requests, Graph saw {graph_saw}");
}

#[tokio::test]
async fn the_longest_user_id_the_crd_admits_works_end_to_end() {
    let h = Harness::start(&[]).await;
    let suffix = "_fabrikam.com#EXT#@contoso.onmicrosoft.com";
    let user = format!("{}{suffix}", "g".repeat(256 - suffix.len()));
    assert_eq!(user.len(), 256);
    h.emulator.add_operation(json!({"userId": user, "id": "op-long", "status": "succeeded"})).await;
    h.create("long", spec(&user, "op-long", SECRET)).await;
    let done = h.wait_condition("long", "Ready", "True").await;
    assert_eq!(done.spec.user_id.as_deref(), Some(user.as_str()));
    let gets = h.emulator.gets_for("op-long").await;
    assert_eq!(gets.len(), 1, "{gets:#?}");
    assert!(gets[0]["path"].as_str().unwrap().contains("%23EXT%23"), "'#' sent percent-encoded: {}", gets[0]["path"]);
    // One more character is refused by the CRD, with a message.
    let refused = Api::<pwreset_operator::api::PasswordResetOperation>::namespaced(h.client.clone(), &h.ns)
        .create(
            &Default::default(),
            &pwreset_testkit::kube::resource("longer", spec(&format!("g{user}"), "op-x", SECRET)),
        )
        .await
        .expect_err("a 257-character userId is refused");
    assert!(refused.to_string().contains("256"), "{refused}");
}

async fn owned(op: &Operator) -> f64 {
    op.metric("pwreset_operations{state=\"succeeded\"}").await.expect("the operations gauge")
}

async fn sent(op: &Operator) -> f64 {
    let (_, body) = op.http_get("/metrics").await.expect("/metrics");
    pwreset_testkit::observe::metric_sum(&body, "pwreset_graph_requests_total")
}
