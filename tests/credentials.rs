//! Credentials for real tenants, against the emulator's token endpoint: delegated refresh
//! tokens (rotation persisted), app-only client secrets, workload identity, per-tenant
//! limits, and the guarantee that no secret ever leaks.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use pwreset_testkit::harness::{HarnessParts, create_secret};
use pwreset_testkit::leaks::{assert_no_leak_in, operator_outputs};
use pwreset_testkit::{Harness, Operator, condition, eventually};
use serde_json::{Value, json};

const TENANT_ID: &str = "11111111-2222-3333-4444-555555555555";

async fn add_tenant(h: &HarnessParts, clients: Value, throttle: Option<Value>) {
    let mut tenant = json!({"id": TENANT_ID, "clients": clients});
    if let Some(t) = throttle {
        tenant["throttle"] = t;
    }
    h.emulator.admin("POST", "/tenants", tenant).await;
}

/// Graph documents application permissions as not supported for the operation GET, and
/// the emulator refuses app-only tokens by default: these tests of the operator's app-only
/// credential handling opt in to the old acceptance.
async fn add_app_only_tenant(h: &HarnessParts, clients: Value, throttle: Option<Value>) {
    let mut tenant = json!({"id": TENANT_ID, "allowAppOnly": true, "clients": clients});
    if let Some(t) = throttle {
        tenant["throttle"] = t;
    }
    h.emulator.admin("POST", "/tenants", tenant).await;
}

fn operator_args<'a>(h: &'a HarnessParts, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--login-url", h.emulator.url.as_str()];
    args.extend_from_slice(extra);
    args
}

async fn token_requests(h: &Harness) -> Vec<Value> {
    h.emulator.requests().await.into_iter().filter(|r| r["kind"] == "token").collect()
}

fn spec(user: &str, op: &str, secret: &str) -> Value {
    json!({"userId": user, "operationId": op, "credentialsSecretRef": {"name": secret}})
}

async fn secret_value(h: &Harness, name: &str, key: &str) -> String {
    let s = Api::<Secret>::namespaced(h.client.clone(), &h.ns).get(name).await.unwrap();
    String::from_utf8(s.data.unwrap()[key].0.clone()).unwrap()
}

/// Every place a secret could leak to (operator logs, events, statuses, metrics), scanned
/// for `secrets` and every credential the emulator issued or knows, in every encoding.
async fn assert_never_shown(h: &Harness, secrets: &[String]) {
    let mut all = h.emulator.credentials().await;
    all.extend(secrets.iter().cloned());
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let outputs = operator_outputs(&h.client, &h.ns, &h.operator).await;
    assert_no_leak_in(&outputs, &all);
}

#[tokio::test]
async fn delegated_refresh_tokens_rotate_and_survive_a_restart() {
    let parts = Harness::start_without_operator().await;
    add_tenant(
        &parts,
        json!([{"clientId": "app-delegated", "refreshTokens": ["rt-first-7f3a"], "subject": "admin-1"}]),
        None,
    )
    .await;
    create_secret(
        &parts.client,
        &parts.ns,
        "delegated",
        json!({"tenantId": TENANT_ID, "clientId": "app-delegated", "refreshToken": "rt-first-7f3a"}),
    )
    .await;
    let op = parts.start_operator(&operator_args(&parts, &[]));
    op.wait_ready().await;
    let mut h = parts.with_operator(op);
    h.emulator.add_operation(json!({"userId": "u1", "id": "op-r1", "status": "succeeded"})).await;
    h.create("first", spec("u1", "op-r1", "delegated")).await;
    h.wait_condition("first", "Ready", "True").await;

    let rotated = secret_value(&h, "delegated", "refreshToken").await;
    assert_ne!(rotated, "rt-first-7f3a", "the new refresh token was written back");

    // Restart: the operator must use the persisted token (the first one is spent).
    let login = h.emulator.url.clone();
    h.restart_operator(&["--login-url", &login]).await;
    h.emulator.add_operation(json!({"userId": "u1", "id": "op-r2", "status": "succeeded"})).await;
    h.create("second", spec("u1", "op-r2", "delegated")).await;
    h.wait_condition("second", "Ready", "True").await;
    let tokens = token_requests(&h).await;
    assert!(tokens.iter().all(|t| t["status"] == 200), "{tokens:#?}");
    assert_eq!(tokens.len(), 2, "one refresh per operator start: {tokens:#?}");
    let rotated_again = secret_value(&h, "delegated", "refreshToken").await;
    assert_ne!(rotated_again, rotated);

    assert_never_shown(&h, &["rt-first-7f3a".into(), rotated, rotated_again]).await;
}

#[tokio::test]
async fn a_revoked_refresh_token_asks_for_a_person_without_a_retry_storm() {
    let parts = Harness::start_without_operator().await;
    add_tenant(
        &parts,
        json!([{"clientId": "app-d", "refreshTokens": ["rt-revoked-91c2"], "subject": "admin-1"}]),
        None,
    )
    .await;
    parts.emulator.admin("POST", "/refresh-tokens/revoke", json!({"token": "rt-revoked-91c2"})).await;
    create_secret(
        &parts.client,
        &parts.ns,
        "revoked",
        json!({"tenantId": TENANT_ID, "clientId": "app-d", "refreshToken": "rt-revoked-91c2"}),
    )
    .await;
    let op = parts.start_operator(&operator_args(&parts, &[]));
    op.wait_ready().await;
    let h = parts.with_operator(op);
    for i in 0..5 {
        h.create(&format!("r{i}"), spec("u1", &format!("op-{i}"), "revoked")).await;
    }
    for i in 0..5 {
        let obj = h
            .wait_for(&format!("r{i}"), "ReauthenticationRequired", Duration::from_secs(30), |o| {
                condition(o, "Stalled").is_some_and(|c| c.1 == "ReauthenticationRequired")
            })
            .await;
        let message = condition(&obj, "Stalled").unwrap().2;
        assert!(message.contains("sign in again") && message.contains("revoked"), "{message}");
        assert_eq!(condition(&obj, "Finished").unwrap().0, "False", "a person can still fix it");
    }
    // Five resources, one credential: one refused request, held rather than retried.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tokens = token_requests(&h).await;
    assert_eq!(tokens.len(), 1, "{tokens:#?}");

    // A new sign-in requirement (e.g. an MFA policy) is the same story: interaction_required.
    h.emulator
        .admin(
            "POST",
            "/tenants",
            json!({"id": TENANT_ID, "clients": [
                {"clientId": "app-d", "refreshTokens": ["rt-revoked-91c2"], "subject": "admin-1"},
                {"clientId": "app-mfa", "refreshTokens": ["rt-mfa-20aa"], "subject": "admin-1", "interactionRequired": true}
            ]}),
        )
        .await;
    create_secret(
        &h.client,
        &h.ns,
        "mfa",
        json!({"tenantId": TENANT_ID, "clientId": "app-mfa", "refreshToken": "rt-mfa-20aa"}),
    )
    .await;
    h.create("mfa", spec("u1", "op-mfa", "mfa")).await;
    let obj = h
        .wait_for("mfa", "ReauthenticationRequired", Duration::from_secs(30), |o| {
            condition(o, "Stalled").is_some_and(|c| c.1 == "ReauthenticationRequired")
        })
        .await;
    assert!(condition(&obj, "Stalled").unwrap().2.contains("interaction_required"));
    assert_never_shown(&h, &["rt-revoked-91c2".into(), "rt-mfa-20aa".into()]).await;
}

#[tokio::test]
async fn app_only_credentials_serve_a_hundred_resources_with_one_token_request() {
    let parts = Harness::start_without_operator().await;
    add_app_only_tenant(
        &parts,
        json!([{"clientId": "app-c", "clientSecret": "cs-value-5d1e", "scopes": ["UserAuthenticationMethod.Read.All"]}]),
        None,
    )
    .await;
    create_secret(
        &parts.client,
        &parts.ns,
        "app",
        json!({"tenantId": TENANT_ID, "clientId": "app-c", "clientSecret": "cs-value-5d1e"}),
    )
    .await;
    let op = parts.start_operator(&operator_args(&parts, &["--poll-interval", "2s"]));
    op.wait_ready().await;
    let h = parts.with_operator(op);
    for i in 0..100 {
        h.emulator.add_operation(json!({"userId": "u1", "id": format!("op-{i}"), "status": "succeeded"})).await;
        h.create(&format!("app-{i}"), spec("u1", &format!("op-{i}"), "app")).await;
    }
    let api = h.api();
    eventually("100 resources Ready", Duration::from_secs(90), || async {
        let list = api.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        let ready = list.items.iter().filter(|o| condition(o, "Ready").is_some_and(|c| c.0 == "True")).count();
        if ready == 100 { Ok(()) } else { Err(format!("{ready} ready")) }
    })
    .await;
    let tokens = token_requests(&h).await;
    assert_eq!(tokens.len(), 1, "one token request for one shared credential: {}", tokens.len());
    assert_eq!(tokens[0]["grantType"], "client_credentials");
    assert_never_shown(&h, &["cs-value-5d1e".into()]).await;
}

#[tokio::test]
async fn workload_identity_from_a_secret_and_from_the_operator_environment() {
    let parts = Harness::start_without_operator().await;
    let assertion = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnLTQ0MmE";
    add_app_only_tenant(
        &parts,
        json!([{"clientId": "app-wi", "federatedAssertion": assertion, "scopes": ["UserAuthenticationMethod.Read.All"]}]),
        None,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    // The operator's own projected token, and another one a team's Secret may name.
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, assertion).unwrap();
    let team_file = dir.path().join("team-token");
    std::fs::write(&team_file, assertion).unwrap();
    create_secret(
        &parts.client,
        &parts.ns,
        "wi",
        json!({"tenantId": TENANT_ID, "clientId": "app-wi", "federatedTokenFile": team_file.to_str().unwrap()}),
    )
    .await;
    let dir_arg = dir.path().to_str().unwrap().to_string();
    let mut args = vec!["--namespace", parts.ns.as_str(), "--graph-url", parts.emulator.url.as_str()];
    args.extend([
        "--poll-interval",
        "1s",
        "--login-url",
        parts.emulator.url.as_str(),
        "--federated-token-dir",
        &dir_arg,
        "--workload-identity-namespaces",
        parts.ns.as_str(),
    ]);
    let env = [
        ("AZURE_TENANT_ID", TENANT_ID),
        ("AZURE_CLIENT_ID", "app-wi"),
        ("AZURE_FEDERATED_TOKEN_FILE", file.to_str().unwrap()),
    ];
    let op = Operator::start_with_env(parts.cp, &args, &env);
    op.wait_ready().await;
    let h = parts.with_operator(op);
    h.emulator.add_operation(json!({"userId": "u1", "id": "op-wi", "status": "succeeded"})).await;
    h.create("from-secret", spec("u1", "op-wi", "wi")).await;
    h.create("from-env", json!({"userId": "u1", "operationId": "op-wi"})).await;
    h.wait_condition("from-secret", "Ready", "True").await;
    h.wait_condition("from-env", "Ready", "True").await;
    let tokens = token_requests(&h).await;
    assert!(tokens.iter().all(|t| t["grantType"] == "client_credentials" && t["status"] == 200), "{tokens:#?}");

    // A Secret may not point the operator at files outside --federated-token-dir.
    create_secret(
        &h.client,
        &h.ns,
        "escape",
        json!({"tenantId": TENANT_ID, "clientId": "app-wi", "federatedTokenFile": "/etc/hostname"}),
    )
    .await;
    h.create("escape", spec("u1", "op-wi", "escape")).await;
    let refused = h
        .wait_for("escape", "InvalidCredentials", Duration::from_secs(30), |o| {
            condition(o, "Stalled").is_some_and(|c| c.1 == "InvalidCredentials")
        })
        .await;
    assert!(condition(&refused, "Stalled").unwrap().2.contains("outside"));

    // Nor may a Secret borrow the operator's own identity by naming its token file.
    create_secret(
        &h.client,
        &h.ns,
        "borrow",
        json!({"tenantId": TENANT_ID, "clientId": "app-wi", "federatedTokenFile": file.to_str().unwrap()}),
    )
    .await;
    h.create("borrow", spec("u1", "op-wi", "borrow")).await;
    let refused = h
        .wait_for("borrow", "InvalidCredentials", Duration::from_secs(30), |o| {
            condition(o, "Stalled").is_some_and(|c| c.1 == "InvalidCredentials")
        })
        .await;
    assert!(condition(&refused, "Stalled").unwrap().2.contains("operator's own identity token"));
    assert_never_shown(&h, &[assertion.to_string()]).await;
}

#[tokio::test]
async fn the_per_tenant_limit_holds_under_load_with_graph_throttling_on() {
    let parts = Harness::start_without_operator().await;
    add_app_only_tenant(
        &parts,
        json!([{"clientId": "app-t", "clientSecret": "cs-throttle-0b7c", "scopes": ["UserAuthenticationMethod.Read.All"]}]),
        Some(json!({"capacity": 10.0, "refillPerSecond": 5.0})),
    )
    .await;
    create_secret(
        &parts.client,
        &parts.ns,
        "app",
        json!({"tenantId": TENANT_ID, "clientId": "app-t", "clientSecret": "cs-throttle-0b7c"}),
    )
    .await;
    // The client-side limit sits below Graph's: throttling should be rare, and adapt when hit.
    let op = parts.start_operator(&operator_args(&parts, &["--tenant-rate", "4", "--tenant-burst", "8"]));
    op.wait_ready().await;
    let h = parts.with_operator(op);
    for i in 0..20 {
        h.emulator
            .add_operation(json!({"userId": "u1", "id": format!("op-{i}"),
                "steps": [{"status": "running", "afterMs": 0}, {"status": "succeeded", "afterMs": 3000}]}))
            .await;
        h.create(&format!("t-{i}"), spec("u1", &format!("op-{i}"), "app")).await;
    }
    let api = h.api();
    eventually("20 resources Ready", Duration::from_secs(120), || async {
        let list = api.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        let ready = list.items.iter().filter(|o| condition(o, "Ready").is_some_and(|c| c.0 == "True")).count();
        if ready == 20 { Ok(()) } else { Err(format!("{ready} ready")) }
    })
    .await;
    let gets: Vec<Value> = h.emulator.requests().await.into_iter().filter(|r| r["kind"] == "operationGet").collect();
    let throttled = gets.iter().filter(|r| r["status"] == 429).count();
    // Over any 1 s window the operator sent at most burst + rate requests.
    let times: Vec<i64> = gets.iter().map(|r| r["timeMs"].as_i64().unwrap()).collect();
    let busiest = times.iter().map(|&t| times.iter().filter(|&&u| u >= t && u < t + 1000).count()).max().unwrap();
    assert!(busiest <= 8 + 4, "{busiest} requests within one second");
    assert!(throttled <= 2, "{throttled} of {} GETs were throttled", gets.len());
    let metrics = h.operator.http_get("/metrics").await.unwrap().1;
    assert!(metrics.contains(&format!("pwreset_tenant_allowed_rate{{tenant=\"{TENANT_ID}/app-t\"}}")), "{metrics}");
    assert_never_shown(&h, &["cs-throttle-0b7c".into()]).await;
}
