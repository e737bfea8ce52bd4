//! No secret in any output, in any encoding, at any log level: the operator runs with
//! `RUST_LOG=trace` (its own and every dependency's: HTTP, TLS, Kubernetes clients) and JSON
//! logs (where a value with quotes or control characters appears escaped), through every
//! path that handles a credential: a static token, a delegated refresh token (rotated and
//! written back), a token Graph rejects (401, refreshed), an app-only client secret Graph
//! refuses, and a Secret too broken to use. Then its log, the events, the resources'
//! status and its metrics are scanned for every credential the emulator issued or knows
//! and every value in the Secrets: raw, JSON-escaped and base64.

use std::time::Duration;

use pwreset_testkit::harness::{SECRET, create_secret};
use pwreset_testkit::leaks::{assert_no_leak_in, forms, operator_outputs};
use pwreset_testkit::operator::Options;
use pwreset_testkit::{Harness, Operator, condition};
use serde_json::json;

const TENANT_ID: &str = "11111111-2222-3333-4444-555555555555";
/// Values with quotes and backslashes: JSON logs escape them, so a scan for the raw value
/// alone would miss them. (Control characters make a Secret unusable: `BROKEN` has one.)
const REFRESH: &str = "rt-\"quoted\"\\back-slash-7d2c41e0";
const CLIENT_SECRET: &str = "cs-\"quoted\"\\x-91ab33f7";
const BROKEN: &str = "rt-broken-\u{7}\"0f9e8d7c6b5a";

fn spec(user: &str, op: &str, secret: &str) -> serde_json::Value {
    json!({"userId": user, "operationId": op, "credentialsSecretRef": {"name": secret}, "pollInterval": "1s"})
}

#[tokio::test]
async fn no_credential_appears_in_logs_events_status_or_metrics_even_at_trace_level() {
    let parts = Harness::start_without_operator().await;
    parts
        .emulator
        .admin(
            "POST",
            "/tenants",
            json!({"id": TENANT_ID, "clients": [
                {"clientId": "app-delegated", "refreshTokens": [REFRESH], "subject": "admin-1"},
                {"clientId": "app-only", "clientSecret": CLIENT_SECRET, "scopes": ["UserAuthenticationMethod.Read.All"]}]}),
        )
        .await;
    let client = &parts.client;
    create_secret(
        client,
        &parts.ns,
        "delegated",
        json!({"tenantId": TENANT_ID, "clientId": "app-delegated", "refreshToken": REFRESH}),
    )
    .await;
    create_secret(
        client,
        &parts.ns,
        "app",
        json!({"tenantId": TENANT_ID, "clientId": "app-only", "clientSecret": CLIENT_SECRET}),
    )
    .await;
    // A refresh token with a control character and no client id: unusable, and the message
    // must name the key only.
    create_secret(client, &parts.ns, "broken", json!({"tenantId": TENANT_ID, "refreshToken": BROKEN})).await;

    let mut options = Options::new(parts.cp, &["--namespace", &parts.ns, "--graph-url", &parts.emulator.url]);
    options.args.extend(["--login-url".to_string(), parts.emulator.url.clone()]);
    options.rust_log = "trace".into();
    let operator = Operator::start_with(options).unwrap();
    operator.wait_ready().await;
    let h = parts.with_operator(operator);

    h.emulator.add_operation(json!({"userId": "u1", "id": "op-static", "status": "succeeded"})).await;
    h.emulator
        .add_operation(json!({"userId": "u1", "id": "op-deleg", "status": "succeeded",
                              "respond": [{"status": 401}]}))
        .await;
    h.emulator.add_operation(json!({"userId": "u1", "id": "op-app", "status": "succeeded"})).await;
    h.emulator.add_operation(json!({"userId": "u1", "id": "op-broken", "status": "succeeded"})).await;
    h.create("static", spec("u1", "op-static", SECRET)).await;
    h.create("deleg", spec("u1", "op-deleg", "delegated")).await;
    h.create("app", spec("u1", "op-app", "app")).await;
    h.create("broken", spec("u1", "op-broken", "broken")).await;

    h.wait_condition("static", "Ready", "True").await;
    h.wait_condition("deleg", "Ready", "True").await;
    let stalled = |reason: &'static str| {
        move |o: &pwreset_operator::api::PasswordResetOperation| condition(o, "Stalled").is_some_and(|c| c.1 == reason)
    };
    h.wait_for("app", "AppOnlyNotSupported", Duration::from_secs(30), stalled("AppOnlyNotSupported")).await;
    h.wait_for("broken", "InvalidCredentials", Duration::from_secs(30), stalled("InvalidCredentials")).await;

    // Controls: the paths ran (tokens were minted and one was rejected), and the log really
    // is at trace level, dependencies included.
    let credentials = h.emulator.credentials().await;
    let minted = credentials.iter().filter(|c| c.starts_with("emu-at-")).count();
    let rotated = credentials.iter().filter(|c| c.starts_with("emu-rt-")).count();
    assert!(minted >= 3 && rotated >= 2, "access tokens {minted}, rotated refresh tokens {rotated}");
    let log = h.operator.logs();
    assert!(log.contains(r#""level":"TRACE""#), "no trace-level line in the log");
    let gets = h.emulator.gets_for("op-deleg").await;
    assert_eq!(gets.first().map(|g| g["status"].as_u64()), Some(Some(401)), "{gets:#?}");
    // The escaped forms are what JSON logs would carry.
    assert!(forms(REFRESH).iter().any(|f| f.contains(r#"\"quoted\""#)));

    let mut secrets: Vec<&str> = credentials.iter().map(String::as_str).collect();
    secrets.extend([REFRESH, CLIENT_SECRET, BROKEN, h.token.as_str()]);
    let outputs = operator_outputs(&h.client, &h.ns, &h.operator).await;
    assert_no_leak_in(&outputs, &secrets);
}
