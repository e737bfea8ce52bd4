//! The CRD as users meet it: the checked-in file matches the code, bad resources are
//! refused at admission with a message a person understands, `kubectl explain` and
//! `kubectl get` show what they should.

use std::io::Write;
use std::process::Stdio;

use pwreset_testkit::{ControlPlane, repo_root};

const CRD_FILE: &str = "crds/passwordresetoperations.pwreset.dev.yaml";
const CHART_CRD_FILE: &str = "charts/pwreset-operator/crds/passwordresetoperations.pwreset.dev.yaml";

#[test]
fn checked_in_crd_matches_the_code() {
    let generated = pwreset_operator::api::crd_yaml();
    for file in [CRD_FILE, CHART_CRD_FILE] {
        let on_disk = std::fs::read_to_string(repo_root().join(file)).unwrap_or_default();
        assert!(on_disk == generated, "{file} is out of date: run `make crds` and commit the result");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pwreset-operator")).arg("crd").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), generated, "`pwreset-operator crd` prints the CRD");
}

/// `kubectl apply` of one resource; Ok(stdout) or Err(stderr).
fn apply(cp: &ControlPlane, ns: &str, manifest: &str) -> Result<String, String> {
    let mut child = cp
        .kubectl()
        .args(["apply", "-n", ns, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child.stdin.take().unwrap().write_all(manifest.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn resource(name: &str, spec: &str) -> String {
    format!("apiVersion: pwreset.dev/v1alpha1\nkind: PasswordResetOperation\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

fn new_namespace(cp: &ControlPlane) -> String {
    let ns = pwreset_testkit::unique_name("crd");
    cp.kubectl_ok(&["create", "namespace", &ns]);
    ns
}

#[test]
fn invalid_resources_are_rejected_with_readable_messages() {
    let cp = ControlPlane::shared();
    let ns = new_namespace(cp);
    let long = "a".repeat(300);
    let id = "  userId: alice@contoso.com\n  operationId: op-1\n";
    let graph = "https://graph.microsoft.com/v1.0/users/u1/authentication/operations/op1";
    let cases: Vec<(&str, String, &str)> = vec![
        ("neither form", "  pollInterval: 15s\n".into(), "set userId and operationId, or set location"),
        ("user without operation", "  userId: alice\n".into(), "set userId and operationId, or set location"),
        ("operation without user", "  operationId: op\n".into(), "set userId and operationId, or set location"),
        ("both forms", format!("{id}  location: {graph}\n"), "not both"),
        ("slash in userId", "  userId: a/b\n  operationId: op\n".into(), "userId must not contain '/'"),
        ("dot-dot path in userId", "  userId: ../admin\n  operationId: op\n".into(), "userId must not contain"),
        ("question mark in userId", "  userId: 'a?x=1'\n  operationId: op\n".into(), "userId must not contain"),
        ("hash in operationId", "  userId: alice\n  operationId: 'a#b'\n".into(), "operationId must not contain"),
        ("backslash in userId", "  userId: 'a\\b'\n  operationId: op\n".into(), "userId must not contain"),
        (
            "dot-dot userId",
            "  userId: '..'\n  operationId: op\n".into(),
            "userId must be an object id or userPrincipalName",
        ),
        ("dot operationId", "  userId: alice\n  operationId: '.'\n".into(), "operationId must be the id"),
        ("percent in userId", "  userId: a%2Fb\n  operationId: op\n".into(), "userId must not contain"),
        ("space in userId", "  userId: 'a b'\n  operationId: op\n".into(), "userId must not contain"),
        (
            "control character in userId",
            "  userId: \"a\\u0007b\"\n  operationId: op\n".into(),
            "userId must not contain",
        ),
        ("slash in operationId", "  userId: alice\n  operationId: x/../y\n".into(), "operationId must not contain"),
        (
            "newline in operationId",
            "  userId: alice\n  operationId: \"a\\nb\"\n".into(),
            "operationId must not contain",
        ),
        ("empty userId", "  userId: ''\n  operationId: op\n".into(), "spec.userId"),
        ("over-long userId", format!("  userId: {long}\n  operationId: op\n"), "Too long: may not be more than 256"),
        (
            "over-long operationId",
            format!("  userId: alice\n  operationId: {long}\n"),
            "Too long: may not be more than 128",
        ),
        (
            "plain http location",
            "  location: http://graph.microsoft.com/v1.0/users/u/authentication/operations/o\n".into(),
            "location must be an https:// URL",
        ),
        (
            "non-Graph path",
            "  location: https://graph.microsoft.com/v1.0/me/messages\n".into(),
            "location must be a Graph operation URL",
        ),
        ("location with a fragment", format!("  location: '{graph}#frag'\n"), "location must be a Graph operation URL"),
        (
            "location with a user name",
            "  location: https://x@graph.microsoft.com/v1.0/users/u/authentication/operations/o\n".into(),
            "no user name or password",
        ),
        (
            "location with dot segments",
            "  location: https://graph.microsoft.com/v1.0/users/u/authentication/operations/../../../me\n".into(),
            "location must not contain dot segments",
        ),
        (
            "location with an encoded dot-dot",
            "  location: https://graph.microsoft.com/v1.0/users/u/authentication/operations/%2E%2e\n".into(),
            "location must not contain dot segments",
        ),
        (
            "beta location",
            "  location: https://graph.microsoft.com/beta/users/u/authentication/operations/o\n".into(),
            "location must be a Graph operation URL",
        ),
        ("location with whitespace", format!("  location: '{graph}?a=b c'\n"), "whitespace"),
        ("over-long location", format!("  location: {graph}?q={}\n", "x".repeat(2100)), "Too long"),
        ("poll interval without unit", format!("{id}  pollInterval: '10'\n"), "pollInterval must be a duration"),
        ("poll interval below 1s", format!("{id}  pollInterval: 500ms\n"), "pollInterval must be a duration"),
        ("poll interval above 1h", format!("{id}  pollInterval: 2h\n"), "pollInterval must be a duration"),
        ("zero poll interval", format!("{id}  pollInterval: 0s\n"), "pollInterval must be a duration"),
        ("zero deadline", format!("{id}  activeDeadlineSeconds: 0\n"), "should be greater than or equal to 1"),
        ("negative deadline", format!("{id}  activeDeadlineSeconds: -5\n"), "should be greater than or equal to 1"),
        ("negative ttl", format!("{id}  ttlSecondsAfterFinished: -1\n"), "should be greater than or equal to 0"),
        (
            "invalid Secret name",
            format!("{id}  credentialsSecretRef:\n    name: Bad_Name\n"),
            "spec.credentialsSecretRef.name",
        ),
        (
            "Secret in another namespace",
            format!("{id}  credentialsSecretRef:\n    name: creds\n    namespace: kube-system\n"),
            "unknown field \"spec.credentialsSecretRef.namespace\"",
        ),
    ];
    assert!(cases.len() >= 25);
    let mut failures = Vec::new();
    for (i, (what, spec, expected)) in cases.iter().enumerate() {
        match apply(cp, &ns, &resource(&format!("bad-{i}"), spec)) {
            Ok(out) => failures.push(format!("{what}: accepted ({out})")),
            Err(err) if !err.contains(expected) => failures.push(format!("{what}: message lacks {expected:?}: {err}")),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Loopback http is allowed for a Graph emulator; both valid forms are accepted, and so are
    // a guest's UPN (with #EXT#) and a UPN that starts with '$'.
    apply(cp, &ns, &resource("by-id", &format!("{id}  pollInterval: 1m30s\n  activeDeadlineSeconds: 600\n"))).unwrap();
    apply(
        cp,
        &ns,
        &resource("guest", "  userId: 'bob_fabrikam.com#EXT#@contoso.onmicrosoft.com'\n  operationId: op-1\n"),
    )
    .unwrap();
    apply(cp, &ns, &resource("dollar", "  userId: '$svc@contoso.com'\n  operationId: op-1\n")).unwrap();
    let key_form =
        "  location: \"https://graph.microsoft.com/v1.0/users('$svc@contoso.com')/authentication/operations/o\"\n";
    apply(cp, &ns, &resource("dollar-location", key_form)).unwrap();
    apply(
        cp,
        &ns,
        &resource(
            "by-location",
            "  location: 'http://127.0.0.1:8080/v1.0/users/u1/authentication/operations/op1?aadgdc=DUB02P&aadgsu=ssprprod-a'\n",
        ),
    )
    .unwrap();

    // The spec cannot change after creation.
    let err = apply(cp, &ns, &resource("by-id", "  userId: mallory@contoso.com\n  operationId: op-1\n")).unwrap_err();
    assert!(err.contains("spec is immutable"), "{err}");
}

/// `kubectl explain`, polled: the apiserver publishes a new CRD's OpenAPI schema a moment
/// after the CRD is Established.
fn kubectl_explain(cp: &ControlPlane, what: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = cp.kubectl().args(["explain", what]).output().expect("kubectl");
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kubectl explain {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn kubectl_explain_and_get_show_what_operators_need() {
    let cp = ControlPlane::shared();
    let explain = kubectl_explain(cp, "passwordresetoperation.spec.location");
    assert!(explain.contains("Location header"), "{explain}");
    let explain = kubectl_explain(cp, "pwreset.status.status");
    assert!(explain.contains("exactly as Graph sent it"), "{explain}");
    let explain = kubectl_explain(cp, "pwreset.status.lastHandledReconcileAt");
    assert!(explain.contains("pwreset.dev/reconcile-requested-at"), "{explain}");

    let ns = new_namespace(cp);
    apply(cp, &ns, &resource("shown", "  userId: alice@contoso.com\n  operationId: op-42\n")).unwrap();
    // No operator runs here: the columns are there, their values (from status) are
    // tests/day2.rs's business.
    let table = cp.kubectl_ok(&["get", "pwreset", "-n", &ns]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "REASON", "USER", "LAST", "ACTION", "AGE"], "{table}");
    assert!(table.contains("shown"), "{table}");
    let wide = cp.kubectl_ok(&["get", "pwreset", "-n", &ns, "-o", "wide"]);
    let wide_header = wide.lines().next().unwrap();
    for column in ["STATUS", "OPERATION", "MESSAGE"] {
        assert!(wide_header.contains(column), "{wide}");
    }
}
