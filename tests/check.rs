//! `pwreset-operator check` as users run it: the real binary against the real apiserver and
//! the Graph emulator. Each test has its own namespace and emulator.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use pwreset_testkit::Harness;
use pwreset_testkit::harness::{HarnessParts, SECRET, create_secret};
use serde_json::json;

const TENANT_ID: &str = "11111111-2222-3333-4444-555555555555";

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// The line of `check` (e.g. `login-host`), asserting there is exactly one.
    fn line(&self, check: &str) -> &str {
        let lines = self.lines(check);
        assert_eq!(lines.len(), 1, "one {check} line expected:\n{}", self.stdout);
        lines[0]
    }

    fn lines(&self, check: &str) -> Vec<&str> {
        self.stdout.lines().filter(|l| l.split_whitespace().nth(1) == Some(check)).collect()
    }
}

/// Runs `pwreset-operator check` with `kubeconfig` and `args`; stdout is the report.
fn check(kubeconfig: &Path, args: &[&str]) -> Outcome {
    let started = Instant::now();
    let out = Command::new(pwreset_testkit::binary("pwreset-operator"))
        .arg("check")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("POD_NAMESPACE")
        .output()
        .expect("running pwreset-operator check");
    let outcome = Outcome {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    println!(
        "$ pwreset-operator check {} ({:?})\n{}{}",
        args.join(" "),
        started.elapsed(),
        outcome.stdout,
        outcome.stderr
    );
    outcome
}

/// The flags pointing `check` at the test's emulator (Graph and, unless `login` says
/// otherwise, the token authority) and namespace.
fn emulator_args(h: &HarnessParts) -> Vec<String> {
    login_args(h, &h.emulator.url)
}

fn login_args(h: &HarnessParts, login: &str) -> Vec<String> {
    ["--graph-url", &h.emulator.url, "--login-url", login, "--namespace", &h.ns].map(String::from).to_vec()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn every_check_passes_as_cluster_admin_against_the_emulator() {
    let h = Harness::start_without_operator().await;
    let secret = format!("{}/{SECRET}", h.ns);
    let mut args = emulator_args(&h);
    args.extend(
        ["--leader-elect", "--leader-election-namespace", &h.ns, "--credentials-secret", &secret].map(String::from),
    );
    let out = check(h.cp.kubeconfig(), &strs(&args));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(out.line("crd"), "ok   crd         passwordresetoperations.pwreset.dev established (v1alpha1)");
    assert!(out.line("rbac").starts_with("ok   rbac        all 16 permissions"), "{}", out.stdout);
    let emulator = format!("{}/", h.emulator.url);
    for check in ["graph", "login-host"] {
        let line = out.line(check);
        assert!(line.starts_with("ok") && line.contains(&emulator) && line.contains("(HTTP "), "{line}");
    }
    assert!(out.line("credentials").contains("holds a static token"), "{}", out.stdout);
    assert_eq!(out.stdout.lines().count(), 5, "{}", out.stdout);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    assert_never_shown(&out, std::slice::from_ref(&h.token));
}

#[tokio::test]
async fn an_unreachable_login_host_fails_clearly_while_graph_still_passes() {
    let h = Harness::start_without_operator().await;
    // A port nothing listens on: refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let args = login_args(&h, &closed_url);
    let out = check(h.cp.kubeconfig(), &strs(&args));
    assert_eq!(out.code, 1, "{}", out.stdout);
    let port = closed_url.rsplit(':').next().unwrap();
    assert_eq!(
        out.line("login-host"),
        format!("FAIL login-host  {closed_url}/: connection refused by 127.0.0.1:{port} (nothing listens there)")
    );
    // The positive control: the same run reaches Graph, and the cluster checks pass.
    for check in ["graph", "crd", "rbac"] {
        assert!(out.line(check).starts_with("ok "), "{}", out.stdout);
    }

    // A host that accepts the connection and never answers: the check gives up after
    // --timeout and says so, instead of hanging.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let mut args = login_args(&h, &silent_url);
    args.extend(["--timeout".into(), "1s".into()]);
    let started = Instant::now();
    let out = check(h.cp.kubeconfig(), &strs(&args));
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    assert_eq!(out.code, 1, "{}", out.stdout);
    let line = out.line("login-host");
    assert!(line.starts_with(&format!("FAIL login-host  {silent_url}/: no answer within 1s (timeout")), "{line}");
    assert!(out.line("graph").starts_with("ok "), "{}", out.stdout);
    drop(silent);

    // Plain http to another machine is refused before any request, as `run` refuses it.
    let args = login_args(&h, "http://login.example");
    let out = check(h.cp.kubeconfig(), &strs(&args));
    assert_eq!(out.code, 1);
    assert!(out.line("login-host").contains("--login-url must be an https:// URL"), "{}", out.stdout);
}

#[tokio::test]
async fn rbac_names_the_permission_a_service_account_lacks() {
    let h = Harness::start_without_operator().await;
    let ns = &h.ns;
    let kubeconfig = h.cp.account_without_status_writes(ns, "restricted");

    let out = check(&kubeconfig, &strs(&emulator_args(&h)));
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_eq!(
        out.lines("rbac"),
        [format!("FAIL rbac        denied: patch passwordresetoperations/status (pwreset.dev) in namespace {ns}")]
    );
    // A service account may not read CRDs: the CRD is found through API discovery instead.
    assert!(out.line("crd").starts_with("ok   crd         passwordresetoperations.pwreset.dev established"));
    assert!(out.line("crd").contains("API discovery"), "{}", out.stdout);

    // Granted, the same account passes; checked cluster-wide, its namespaced Role is not enough.
    h.cp.kubectl_ok(&[
        "-n",
        ns,
        "patch",
        "role",
        "restricted",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/rules/1/verbs/-","value":"patch"}]"#,
    ]);
    let out = check(&kubeconfig, &strs(&emulator_args(&h)));
    assert_eq!(out.code, 0, "{}", out.stdout);
    let everywhere = emulator_args(&h);
    let out = check(&kubeconfig, &strs(&everywhere[..4]));
    assert_eq!(out.code, 1);
    assert!(
        out.lines("rbac")
            .contains(&"FAIL rbac        denied: watch passwordresetoperations (pwreset.dev) in all namespaces"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn a_delegated_secret_gives_a_token_that_is_never_shown() {
    let h = Harness::start_without_operator().await;
    h.emulator
        .admin(
            "POST",
            "/tenants",
            json!({"id": TENANT_ID, "clients": [{"clientId": "app-delegated", "refreshTokens": ["rt-check-5b1e"], "subject": "admin-1"}]}),
        )
        .await;
    create_secret(
        &h.client,
        &h.ns,
        "delegated",
        json!({"tenantId": TENANT_ID, "clientId": "app-delegated", "refreshToken": "rt-check-5b1e"}),
    )
    .await;
    create_secret(
        &h.client,
        &h.ns,
        "revoked",
        json!({"tenantId": TENANT_ID, "clientId": "app-delegated", "refreshToken": "rt-unknown-0000"}),
    )
    .await;

    let mut args = emulator_args(&h);
    args.extend(["--credentials-secret".into(), format!("{}/delegated", h.ns)]);
    let out = check(h.cp.kubeconfig(), &strs(&args));
    assert_eq!(out.code, 0, "{}", out.stdout);
    let line = out.line("credentials");
    let prefix = format!("ok   credentials Secret {}/delegated: token obtained, expires in ", h.ns);
    let seconds: u64 = line
        .strip_prefix(&prefix)
        .and_then(|s| s.strip_suffix('s'))
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .unwrap();
    assert!((3500..=3599).contains(&seconds), "{line}");
    // The operator's own code was used: the rotated refresh token was written back.
    let secret = Api::<Secret>::namespaced(h.client.clone(), &h.ns).get("delegated").await.unwrap();
    let rotated = String::from_utf8(secret.data.unwrap()["refreshToken"].0.clone()).unwrap();
    assert_ne!(rotated, "rt-check-5b1e");
    assert_never_shown(&out, &["rt-check-5b1e".into(), rotated]);

    let mut args = emulator_args(&h);
    args.extend(["--credentials-secret".into(), format!("{}/revoked", h.ns)]);
    let out = check(h.cp.kubeconfig(), &strs(&args));
    assert_eq!(out.code, 1);
    assert!(
        out.line("credentials").starts_with(&format!(
            "FAIL credentials Microsoft Entra rejected the refresh token in Secret {}/revoked",
            h.ns
        )),
        "{}",
        out.stdout
    );
    assert_never_shown(&out, &["rt-unknown-0000".into()]);
}

/// No secret in stdout or stderr, raw, JSON-escaped or base64 (a Secret's own encoding);
/// nor anything the emulator issued (`emu-at-…` access and `emu-rt-…` refresh tokens).
fn assert_never_shown(out: &Outcome, secrets: &[String]) {
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        pwreset_testkit::leaks::assert_no_leak(name, text, &secrets);
        for prefix in ["emu-at-", "emu-rt-"] {
            assert!(!text.contains(prefix), "an emulator-issued token appears in {name}");
        }
    }
}
