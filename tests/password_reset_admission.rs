//! What stands between `kubectl create` and a reset, on the real API server: the
//! PasswordReset CRD (checked in as generated, CEL rules, immutable spec) and the chart's
//! ValidatingAdmissionPolicy (which namespaces may ask, which users may be targeted).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use pwreset_testkit::{ControlPlane, eventually, repo_root, tool};
use serde::Deserialize;
use serde_json::{Value, json};

const CRD_FILE: &str = "crds/passwordresets.pwreset.dev.yaml";
const CHART_CRD_FILE: &str = "charts/pwreset-operator/crds/passwordresets.pwreset.dev.yaml";

#[test]
fn checked_in_password_reset_crd_matches_the_code() {
    let generated = pwreset_operator::api_reset::crd_yaml();
    for file in [CRD_FILE, CHART_CRD_FILE] {
        let on_disk = std::fs::read_to_string(repo_root().join(file)).unwrap_or_default();
        assert!(on_disk == generated, "{file} is out of date: run `make crds` and commit the result");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pwreset-operator")).args(["crd", "password-reset"]).output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), generated);
}

/// `kubectl <args>` with `stdin`; Ok(stdout) or Err(stderr).
fn kubectl(cp: &ControlPlane, args: &[&str], stdin: &str) -> Result<String, String> {
    let mut child = cp
        .kubectl()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if out.status.success() { Ok(text(&out.stdout)) } else { Err(text(&out.stderr)) }
}

fn reset(name: &str, user: &str) -> String {
    json!({"apiVersion": "pwreset.dev/v1alpha1", "kind": "PasswordReset", "metadata": {"name": name},
        "spec": {"userId": user, "passwordSecretName": format!("{name}-password")}})
    .to_string()
}

/// Server-side dry run: admission runs in full, nothing is stored, no operator acts.
fn try_create(cp: &ControlPlane, ns: &str, name: &str, user: &str) -> Result<String, String> {
    kubectl(cp, &["create", "--dry-run=server", "-n", ns, "-f", "-"], &reset(name, user))
}

fn namespace(cp: &ControlPlane, labels: &[(&str, &str)]) -> String {
    let ns = pwreset_testkit::unique_name("vap");
    cp.kubectl_ok(&["create", "namespace", &ns]);
    for (k, v) in labels {
        cp.kubectl_ok(&["label", "namespace", &ns, &format!("{k}={v}")]);
    }
    ns
}

#[test]
fn the_crd_refuses_bad_user_ids_and_spec_changes() {
    let cp = ControlPlane::shared();
    let ns = namespace(cp, &[]);
    let err = try_create(cp, &ns, "slash", "a/b@contoso.com").unwrap_err();
    assert!(err.contains("userId must not contain '/'"), "{err}");
    let err = try_create(cp, &ns, "dots", "..").unwrap_err();
    assert!(err.contains("not '.' or '..'"), "{err}");
    // Positive control, then an edit of the stored spec.
    kubectl(cp, &["create", "-n", &ns, "-f", "-"], &reset("ok", "alice@contoso.com")).unwrap();
    let patch = r#"{"spec":{"userId":"mallory@contoso.com"}}"#;
    let out =
        cp.kubectl().args(["patch", "-n", &ns, "passwordreset", "ok", "--type=merge", "-p", patch]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("spec is immutable"), "{err}");
    let shown = cp.kubectl_ok(&["get", "-n", &ns, "pwr"]);
    assert!(shown.contains("ok") && shown.contains("alice@contoso.com"), "short name pwr and the USER column: {shown}");
    let example = std::fs::read_to_string(repo_root().join("examples/passwordreset.yaml")).unwrap();
    kubectl(cp, &["create", "--dry-run=server", "-n", &ns, "-f", "-"], &example)
        .unwrap_or_else(|e| panic!("the example: {e}"));
    // `pwreset` stays PasswordResetOperation's short name (no shared category).
    let out = cp.kubectl().args(["get", "-n", &ns, "pwreset"]).output().unwrap();
    let listed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(listed.contains("No resources found"), "kubectl get pwreset lists only PasswordResetOperations: {listed}");
    cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// `helm template` of the chart's password-reset objects with `args`.
fn render(args: &[&str]) -> Vec<Value> {
    let home = repo_root().join("target/tmp/helm");
    let out = Command::new(tool("helm"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .args(["template", "rel"])
        .arg(repo_root().join("charts/pwreset-operator"))
        .args(["--namespace", "ops", "--kube-version", "v1.36.3", "--show-only", "templates/password-reset.yaml"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
    serde_yaml::Deserializer::from_str(&String::from_utf8(out.stdout).unwrap())
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

#[tokio::test]
async fn the_admission_policy_limits_namespaces_and_targets_with_readable_messages() {
    let cp = ControlPlane::shared();
    let id = pwreset_testkit::unique_name("t");
    // The policy is cluster-wide: this test's binding only selects its own namespaces, so
    // other tests on the shared control plane are not affected.
    let scope = ("pwreset-test-vap", id.as_str());
    let by_name = namespace(cp, &[scope]);
    // The chart's default label.
    let by_label = namespace(cp, &[scope, ("pwreset.dev/password-reset", "allowed")]);
    let forbidden = namespace(cp, &[scope]);
    let mut objs = render(&[
        "--set",
        "passwordReset.enabled=true",
        "--set",
        &format!("fullnameOverride={id}"),
        "--set",
        &format!("passwordReset.admission.allowedNamespaces={{{by_name}}}"),
        "--set",
        "passwordReset.admission.userPattern=^[^@]+@contoso[.]com$",
        "--set",
        "passwordReset.admission.deniedUsers={Root@Contoso.com}",
    ]);
    objs.retain(|o| o["kind"].as_str().is_some_and(|k| k.starts_with("ValidatingAdmissionPolicy")));
    assert_eq!(objs.len(), 2, "the policy and its binding");
    for obj in &mut objs {
        if obj["kind"] == "ValidatingAdmissionPolicyBinding" {
            obj["spec"]["matchResources"] = json!({"namespaceSelector": {"matchLabels": {scope.0: scope.1}}});
        }
    }
    let manifest = objs.iter().map(|o| serde_json::to_string(o).unwrap()).collect::<Vec<_>>().join("\n");
    kubectl(cp, &["apply", "-f", "-"], &manifest).unwrap_or_else(|e| panic!("apply the policy: {e}"));

    // Policies take effect asynchronously: wait until the forbidden namespace is refused.
    let refused = eventually("the policy to refuse a forbidden namespace", Duration::from_secs(60), || async {
        match try_create(cp, &forbidden, "r", "alice@contoso.com") {
            Err(e) if e.contains("may not create PasswordResets") => Ok(e),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(refused.contains(&format!("namespace {forbidden} may not create PasswordResets")), "{refused}");
    assert!(refused.contains(&by_name), "the message names the allowed namespaces: {refused}");

    // Positive controls: an allowed namespace (by name, by label) and an allowed user.
    try_create(cp, &by_name, "r", "alice@contoso.com").unwrap_or_else(|e| panic!("allowed by name: {e}"));
    try_create(cp, &by_label, "r", "alice@contoso.com").unwrap_or_else(|e| panic!("allowed by label: {e}"));

    let err = try_create(cp, &by_name, "r", "eve@evil.example").unwrap_err();
    assert!(err.contains("userId eve@evil.example may not be targeted: it must match ^[^@]+@contoso[.]com$"), "{err}");
    let err = try_create(cp, &by_name, "r", "root@contoso.com").unwrap_err();
    assert!(err.contains("userId root@contoso.com is on the deny list"), "case-insensitive deny list: {err}");

    kubectl(cp, &["delete", "-f", "-"], &manifest).unwrap();
    for ns in [by_name, by_label, forbidden] {
        cp.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
    }
}

/// Argo CD gets the same health check for PasswordReset (its conditions follow the same
/// vocabulary; tests/argocd_health.rs maps every reason, the new ones included).
#[test]
fn argocd_has_a_health_check_for_password_resets() {
    let cm: Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo_root().join("gitops/argocd/argocd-cm.yaml")).unwrap())
            .unwrap();
    let script = std::fs::read_to_string(repo_root().join("gitops/argocd/health.lua")).unwrap();
    assert_eq!(cm["data"]["resource.customizations.health.pwreset.dev_PasswordReset"].as_str(), Some(script.as_str()));
}

/// `helm template` of the whole chart (default values plus `args`).
fn render_all(args: &[&str]) -> String {
    let home = repo_root().join("target/tmp/helm");
    let out = Command::new(tool("helm"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .args(["template", "rel"])
        .arg(repo_root().join("charts/pwreset-operator"))
        .args(["--namespace", "ops", "--kube-version", "v1.36.3"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_chart_installs_the_reset_controller_only_when_asked() {
    let default = render_all(&[]);
    for absent in ["--enable-password-reset", "passwordresets", "ValidatingAdmissionPolicy", "requester"] {
        assert!(!default.contains(absent), "default values must not render {absent}");
    }
    let enabled = render_all(&["--set", "passwordReset.enabled=true"]);
    assert!(enabled.contains("\"--enable-password-reset\""));
    let objs: Vec<Value> = serde_yaml::Deserializer::from_str(&enabled)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    let named = |kind: &str, suffix: &str| {
        objs.iter().find(|o| o["kind"] == kind && o["metadata"]["name"].as_str().is_some_and(|n| n.ends_with(suffix)))
    };
    let role = named("ClusterRole", "-password-reset").expect("the operator's extra ClusterRole");
    let secrets = role["rules"].as_array().unwrap().iter().find(|r| r["resources"] == json!(["secrets"])).unwrap();
    assert_eq!(secrets["verbs"], json!(["get", "create", "update"]), "no list, watch or delete of Secrets");
    assert!(named("ClusterRoleBinding", "-password-reset").is_some());
    let requester = named("ClusterRole", "-requester").expect("the requester role");
    assert!(requester["metadata"]["labels"].get("rbac.authorization.k8s.io/aggregate-to-edit").is_none(), "opt-in");
    assert!(named("ValidatingAdmissionPolicy", "-password-reset").is_some());
    assert!(named("ValidatingAdmissionPolicyBinding", "-password-reset").is_some());
    let scoped = render_all(&["--set", "passwordReset.enabled=true", "--set", "watchNamespace=team-a"]);
    assert!(
        scoped.contains("kind: Role\nmetadata:\n  name: rel-pwreset-operator-password-reset\n  namespace: team-a"),
        "{scoped}"
    );
    let edit = render_all(&[
        "--set",
        "passwordReset.enabled=true",
        "--set",
        "passwordReset.requesterRole.aggregateToEdit=true",
    ]);
    assert!(edit.contains("rbac.authorization.k8s.io/aggregate-to-edit: \"true\""));
}
