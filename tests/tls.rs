//! TLS and proxies, end to end: the emulator serves HTTPS with a certificate from a test CA,
//! and the operator (the real binary) trusts it the way a user would make it: `--extra-ca-file`
//! (the chart's extraCACertificates) or `SSL_CERT_FILE`; a CA it does not trust is reported
//! on the resource, in words, within seconds; and everything works through an HTTPS_PROXY.

use std::time::{Duration, Instant};

use pwreset_testkit::emulator::{self, Emulator};
use pwreset_testkit::harness::{HarnessParts, SECRET, TENANT, create_secret};
use pwreset_testkit::proxy::ConnectProxy;
use pwreset_testkit::tls::TestPki;
use pwreset_testkit::{ControlPlane, Harness, Operator, condition, unique_name};
use serde_json::{Value, json};

const TENANT_ID: &str = "11111111-2222-3333-4444-555555555555";
/// The Secret with delegated credentials: the operator calls the token endpoint first.
const DELEGATED: &str = "delegated";

/// A namespace, an HTTPS emulator whose certificate `pki` signed, a static-token Secret
/// (`graph-credentials`, Graph only) and a refresh-token Secret (`delegated`, token endpoint
/// then Graph).
async fn world(pki: &TestPki) -> HarnessParts {
    let cp = ControlPlane::shared();
    let client = cp.client().await;
    let ns = unique_name("tls");
    pwreset_testkit::kube::create_namespace(&client, &ns).await.unwrap();
    let emulator = Emulator::start_with(emulator::Options {
        args: pki.emulator_args(),
        ca_pem: Some(pki.ca_pem.clone()),
        log: Some(cp.data_dir().join(format!("{ns}-emulator.log"))),
        ..emulator::Options::default()
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(emulator.url.starts_with("https://127.0.0.1:"), "{}", emulator.url);
    let token = format!("tok-{}", uuid::Uuid::new_v4());
    emulator.add_token(&token, TENANT).await;
    let refresh = format!("rt-{}", uuid::Uuid::new_v4());
    let tenant =
        json!({"id": TENANT_ID, "clients": [{"clientId": "app-d", "refreshTokens": [refresh], "subject": "admin-1"}]});
    emulator.admin("POST", "/tenants", tenant).await;
    let parts = HarnessParts { cp, ns, emulator, client, token };
    parts.create_token_secret(SECRET).await;
    let delegated = json!({"tenantId": TENANT_ID, "clientId": "app-d", "refreshToken": refresh});
    create_secret(&parts.client, &parts.ns, DELEGATED, delegated).await;
    parts
}

/// The operator watching the world's namespace, with Graph at `graph` and the token
/// endpoint at `login`, plus `extra` flags and `env`.
fn operator(cp: &ControlPlane, ns: &str, graph: &str, login: &str, extra: &[&str], env: &[(&str, &str)]) -> Operator {
    let mut args = vec!["--namespace", ns, "--graph-url", graph, "--login-url", login];
    args.extend(["--poll-interval", "1s"]);
    args.extend_from_slice(extra);
    Operator::start_with_env(cp, &args, env)
}

fn spec(op: &str, secret: &str) -> Value {
    json!({"userId": "u1", "operationId": op, "credentialsSecretRef": {"name": secret}})
}

/// Both kinds of credentials reach `succeeded`: Graph and the token endpoint were trusted.
async fn both_succeed(h: &Harness, prefix: &str) {
    for (name, secret) in [("static", SECRET), ("delegated", DELEGATED)] {
        let op = format!("op-{prefix}-{name}");
        h.emulator.add_operation(json!({"userId": "u1", "id": op, "status": "succeeded"})).await;
        h.create(&format!("{prefix}-{name}"), spec(&op, secret)).await;
    }
    for name in ["static", "delegated"] {
        let obj = h.wait_condition(&format!("{prefix}-{name}"), "Ready", "True").await;
        assert_eq!(obj.status.as_ref().unwrap().status.as_deref(), Some("succeeded"));
    }
}

async fn token_requests(h: &Harness) -> usize {
    h.emulator.requests().await.iter().filter(|r| r["kind"] == "token" && r["status"] == 200).count()
}

#[tokio::test]
async fn an_extra_ca_file_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), "emulator").unwrap();
    let parts = world(&pki).await;
    let url = parts.emulator.url.clone();
    let ca = pki.ca_file.display().to_string();
    let op = operator(parts.cp, &parts.ns, &url, &url, &["--extra-ca-file", &ca], &[]);
    op.wait_ready().await;
    let h = parts.with_operator(op);
    both_succeed(&h, "extra").await;
    assert!(token_requests(&h).await >= 1, "the token endpoint was reached over HTTPS");
    let logs = h.operator.logs();
    assert!(logs.contains("trusting extra CA certificates"), "the start says what it trusts");
    assert!(!logs.contains(&h.token), "no bearer token in the logs");
}

/// `SSL_CERT_FILE` stands in for the system store here; `--extra-ca-file` naming an unrelated
/// CA must not push it out (the extra CAs are added, not substituted).
#[tokio::test]
async fn ssl_cert_file_is_the_system_store_and_extra_cas_do_not_replace_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), "emulator").unwrap();
    let unrelated = TestPki::generate(dir.path(), "unrelated").unwrap();
    let parts = world(&pki).await;
    let url = parts.emulator.url.clone();
    let (ca, other) = (pki.ca_file.display().to_string(), unrelated.ca_file.display().to_string());
    let op = operator(parts.cp, &parts.ns, &url, &url, &["--extra-ca-file", &other], &[("SSL_CERT_FILE", &ca)]);
    op.wait_ready().await;
    let h = parts.with_operator(op);
    both_succeed(&h, "sslcertfile").await;
}

#[tokio::test]
async fn an_untrusted_certificate_is_reported_in_words_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), "emulator").unwrap();
    // Well-formed, but not the CA that signed the emulator's certificate.
    let stranger = TestPki::generate(dir.path(), "stranger").unwrap();
    let parts = world(&pki).await;
    let url = parts.emulator.url.clone();
    let wrong = stranger.ca_file.display().to_string();
    let op = operator(parts.cp, &parts.ns, &url, &url, &["--extra-ca-file", &wrong], &[]);
    op.wait_ready().await;
    let h = parts.with_operator(op);
    h.create("graph", spec("op-graph", SECRET)).await;
    h.create("login", spec("op-login", DELEGATED)).await;

    let started = Instant::now();
    for (name, reason) in [("graph", "GraphUnavailable"), ("login", "TokenEndpointUnavailable")] {
        let obj = h
            .wait_for(name, reason, Duration::from_secs(30), |o| {
                condition(o, "Reconciling").is_some_and(|c| c.1 == reason)
            })
            .await;
        let (_, _, message) = condition(&obj, "Reconciling").unwrap();
        assert!(
            message.contains("TLS: the server's certificate is not signed by a CA this operator trusts")
                && message.contains("--extra-ca-file")
                && message.contains("UnknownIssuer"),
            "{name}: {message}"
        );
        assert_eq!(condition(&obj, "Ready").unwrap().0, "False");
    }
    assert!(started.elapsed() < Duration::from_secs(30), "reported in {:?}", started.elapsed());
    // The handshake failed, so no HTTP request ever reached the emulator.
    let requests = h.emulator.requests().await;
    assert!(requests.iter().all(|r| r["kind"] != "operationGet" && r["kind"] != "token"), "{requests:#?}");
    assert!(h.operator.exited().is_none(), "the operator keeps running: {}", h.operator.log_tail(20));
    assert_eq!(h.operator.http_get("/healthz").await.map(|r| r.0), Ok(200));
}

#[tokio::test]
async fn graph_and_the_token_endpoint_are_reached_through_https_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), "emulator").unwrap();
    let parts = world(&pki).await;
    let proxy = ConnectProxy::start().await.unwrap();
    // One emulator, two host names: Graph as 127.0.0.1, the token endpoint as localhost,
    // so the proxy's log tells the two apart.
    let graph = parts.emulator.url.clone();
    let port = graph.rsplit(':').next().unwrap().to_string();
    let login = format!("https://localhost:{port}");
    let (graph_target, login_target) = (format!("127.0.0.1:{port}"), format!("localhost:{port}"));
    let ca = pki.ca_file.display().to_string();
    // With credentials, as corporate proxies often want: they must never reach the logs.
    let proxy_url = proxy.url().replace("http://", "http://tester:proxy-s3cret@");
    let op = operator(parts.cp, &parts.ns, &graph, &login, &["--extra-ca-file", &ca], &[("HTTPS_PROXY", &proxy_url)]);
    op.wait_ready().await;
    let mut h = parts.with_operator(op);
    both_succeed(&h, "proxied").await;
    assert!(proxy.tunnels_to(&graph_target) > 0, "Graph went through the proxy: {:?}", proxy.targets());
    assert!(proxy.tunnels_to(&login_target) > 0, "the token endpoint went through the proxy: {:?}", proxy.targets());
    let logs = h.operator.logs();
    assert!(logs.contains("proxy setting from the environment"), "the start says which proxy");
    assert!(!logs.contains("proxy-s3cret"), "no proxy password in the logs");

    // NO_PROXY is honoured: the token endpoint is reached directly, Graph still tunnelled.
    h.operator.stop();
    let op = operator(
        h.cp,
        &h.ns,
        &graph,
        &login,
        &["--extra-ca-file", &ca],
        &[("HTTPS_PROXY", &proxy_url), ("NO_PROXY", "localhost")],
    );
    op.wait_ready().await;
    h.operator = op;
    let (login_before, graph_before, tokens_before) =
        (proxy.tunnels_to(&login_target), proxy.tunnels_to(&graph_target), token_requests(&h).await);
    h.emulator.add_operation(json!({"userId": "u1", "id": "op-direct", "status": "succeeded"})).await;
    h.create("direct", spec("op-direct", DELEGATED)).await;
    h.wait_condition("direct", "Ready", "True").await;
    assert!(token_requests(&h).await > tokens_before, "the new operator fetched a token");
    assert_eq!(proxy.tunnels_to(&login_target), login_before, "NO_PROXY=localhost: {:?}", proxy.targets());
    assert!(proxy.tunnels_to(&graph_target) > graph_before, "Graph still tunnelled: {:?}", proxy.targets());
}
