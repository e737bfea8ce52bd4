//! The Helm chart and the image, as users meet them: `helm lint`; what `helm template`
//! renders (hardened pods, least-privilege RBAC, leader election, shards); every rendered
//! object accepted by a real API server; bad values refused with a message naming the
//! field; and, after `helm install`, the operator binary run *as the chart's
//! ServiceAccount* finishing real resources, while `kubectl auth can-i` shows it may do
//! no more than it needs. Also the Dockerfile and the examples.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use pwreset_operator::api::PasswordResetOperation;
use pwreset_testkit::harness::{condition, create, create_secret};
use pwreset_testkit::{ControlPlane, Emulator, Operator, eventually, repo_root, tool, unique_name};
use serde::Deserialize;
use serde_json::{Value, json};

const RELEASE: &str = "rel";
/// The test control plane's version (the Makefile's K8S_VERSION).
const KUBE_VERSION: &str = "v1.36.3";
const TENANT: &str = "contoso";
const TENANT_ID: &str = "11111111-2222-3333-4444-555555555555";
/// Namespaces named by ci/ha-values.yaml and ci/sharded-values.yaml.
const CI_NAMESPACES: [&str; 2] = ["pwreset-ci-team-a", "pwreset-ci-team-b"];

/// The tests that run an operator take turns: one watching every namespace would otherwise
/// reconcile (and write status to) the other test's resources.
static OPERATOR_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn chart() -> PathBuf {
    repo_root().join("charts/pwreset-operator")
}

fn ci_values(name: &str) -> String {
    chart().join("ci").join(name).to_string_lossy().into_owned()
}

/// `helm` with its cache and config under target/, so tests leave nothing in $HOME.
fn helm() -> Command {
    let home = repo_root().join("target/tmp/helm");
    let mut cmd = Command::new(tool("helm"));
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    cmd
}

/// Runs `cmd`, optionally feeding `stdin`; Ok(stdout) or Err(stderr and stdout).
fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<String, String> {
    let (ok, stdout, stderr) = run_full(cmd, stdin);
    if ok { Ok(stdout) } else { Err(format!("{stderr}{stdout}")) }
}

/// Runs `cmd`; (success, stdout, stderr).
fn run_full(cmd: &mut Command, stdin: Option<&str>) -> (bool, String, String) {
    let mut child = cmd
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `helm template rel <chart> -n <ns> <args>`, for the test control plane's Kubernetes
/// version: a helm built with `go install` assumes v1.20 without a cluster, older than
/// the chart's kubeVersion.
fn template(ns: &str, args: &[&str]) -> Result<String, String> {
    run(
        helm()
            .args(["template", RELEASE])
            .arg(chart())
            .args(["--namespace", ns, "--kube-version", KUBE_VERSION])
            .args(args),
        None,
    )
}

fn render(ns: &str, args: &[&str]) -> Vec<Value> {
    objects(&template(ns, args).unwrap_or_else(|e| panic!("helm template {args:?} failed: {e}")))
}

/// The YAML documents of a stream, as JSON values.
fn objects(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn of_kind<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

fn kinds(objs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = objs.iter().map(|o| o["kind"].as_str().unwrap().to_string()).collect();
    k.sort();
    k
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn args_of(deployment: &Value) -> Vec<String> {
    container(deployment)["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().map(|s| s.as_str().unwrap_or_default().to_string()).collect()).unwrap_or_default()
}

/// Every RBAC rule of the rendering, with the kind and namespace of its role.
fn rules(objs: &[Value]) -> Vec<(String, Option<String>, Value)> {
    objs.iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
        .flat_map(|role| {
            let kind = role["kind"].as_str().unwrap().to_string();
            let ns = role["metadata"]["namespace"].as_str().map(String::from);
            role["rules"].as_array().unwrap().iter().map(move |r| (kind.clone(), ns.clone(), r.clone()))
        })
        .collect()
}

/// What any rendering may grant, whatever the values: the resources the operator uses,
/// no wildcards, Secrets never listed or watched, Leases only in the release namespace.
fn assert_least_privilege(objs: &[Value], release_ns: &str) {
    let allowed: BTreeSet<&str> =
        ["passwordresetoperations", "passwordresetoperations/status", "events", "secrets", "leases"].into();
    for (kind, ns, rule) in rules(objs) {
        let verbs = strings(&rule["verbs"]);
        let resources = strings(&rule["resources"]);
        for field in ["verbs", "resources", "apiGroups"] {
            assert!(!strings(&rule[field]).contains(&"*".to_string()), "wildcard {field} in {kind}: {rule}");
        }
        for r in &resources {
            assert!(allowed.contains(r.as_str()), "{kind} grants {r}: {rule}");
        }
        if resources.contains(&"secrets".to_string()) {
            assert!(
                verbs.iter().all(|v| ["get", "patch"].contains(&v.as_str())),
                "secrets verbs {verbs:?}: only get/patch, never update, list or watch"
            );
        }
        if resources.contains(&"leases".to_string()) {
            assert_eq!(
                (kind.as_str(), ns.as_deref()),
                ("Role", Some(release_ns)),
                "leases only in the release namespace"
            );
        }
        if resources.contains(&"passwordresetoperations".to_string()) {
            assert!(
                !verbs.iter().any(|v| ["create", "update", "patch"].contains(&v.as_str())),
                "spec is the user's: {verbs:?}"
            );
        }
    }
}

fn secret_rules(objs: &[Value]) -> Vec<(String, Option<String>, Value)> {
    rules(objs).into_iter().filter(|(_, _, r)| strings(&r["resources"]).contains(&"secrets".to_string())).collect()
}

// ---------------------------------------------------------------------------------------
// helm lint and helm template
// ---------------------------------------------------------------------------------------

#[test]
fn helm_lint_passes_with_default_and_non_default_values() {
    let chart = chart();
    for values in [None, Some(ci_values("ha-values.yaml")), Some(ci_values("sharded-values.yaml"))] {
        let mut cmd = helm();
        cmd.args(["lint", "--strict"]).arg(&chart);
        if let Some(v) = &values {
            cmd.args(["--values", v]);
        }
        let out = run(&mut cmd, None).unwrap_or_else(|e| panic!("helm lint {values:?}: {e}"));
        assert!(out.contains("1 chart(s) linted, 0 chart(s) failed"), "{out}");
    }
}

#[test]
fn chart_versions_match_the_crate() {
    let chart_yaml: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart().join("Chart.yaml")).unwrap()).unwrap();
    assert_eq!(chart_yaml["apiVersion"], "v2");
    assert_eq!(chart_yaml["appVersion"], env!("CARGO_PKG_VERSION"), "appVersion is the operator's version");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(chart().join("values.schema.json")).unwrap()).unwrap();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["additionalProperties"], false, "a misspelt top-level value must fail");
}

/// `v` with every number as a float, so 1 and 1.0 compare equal.
fn numbers_as_f64(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.iter().map(numbers_as_f64).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), numbers_as_f64(v))).collect()),
        other => other.clone(),
    }
}

/// crds/ (installed once by `helm install`) by default; with crds.enabled the same CRD as a
/// template, so `helm upgrade` upgrades it, kept on uninstall unless crds.keep=false.
#[test]
fn the_chart_manages_its_crd_only_when_asked() {
    let read = |p: PathBuf| std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let chart_crd = read(chart().join("crds/passwordresetoperations.pwreset.dev.yaml"));
    assert_eq!(chart_crd, read(repo_root().join("crds/passwordresetoperations.pwreset.dev.yaml")), "make crds");
    let file: Value = serde_yaml::from_str(&chart_crd).unwrap();

    assert!(of_kind(&render("ops", &[]), "CustomResourceDefinition").is_empty(), "not a template by default");
    let objs = render("ops", &["--set", "crds.enabled=true"]);
    let crds = of_kind(&objs, "CustomResourceDefinition");
    assert_eq!(crds.len(), 1);
    let crd = crds[0];
    assert_eq!(crd["metadata"]["name"], file["metadata"]["name"]);
    // Helm's fromYaml/toYaml writes 1.0 as 1: the same JSON number to the API server.
    assert_eq!(numbers_as_f64(&crd["spec"]), numbers_as_f64(&file["spec"]), "the template is the file in crds/");
    assert_eq!(crd["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm");
    assert_eq!(crd["metadata"]["labels"]["app.kubernetes.io/instance"], RELEASE);
    assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep", "crds.keep defaults to true");

    let objs = render("ops", &["--set", "crds.enabled=true", "--set", "crds.keep=false"]);
    let crd = of_kind(&objs, "CustomResourceDefinition")[0];
    assert!(crd["metadata"]["annotations"]["helm.sh/resource-policy"].is_null(), "{}", crd["metadata"]);
}

#[test]
fn default_rendering_is_hardened_and_least_privilege() {
    let objs = render("pwreset-system", &[]);
    assert_eq!(
        kinds(&objs),
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "Deployment",
            "Pod",
            "Service",
            "ServiceAccount"
        ],
        "no leader election, NetworkPolicy, PDB or ServiceMonitor by default (the Pod is the `helm test` hook)"
    );
    assert_least_privilege(&objs, "pwreset-system");

    let deployment = of_kind(&objs, "Deployment")[0];
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate", "one replica without a lease: never two at once");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "rel-pwreset-operator");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let c = container(deployment);
    assert_eq!(c["image"], format!("pwreset-operator:{}", env!("CARGO_PKG_VERSION")), "tag defaults to appVersion");
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert!(c["resources"]["requests"].is_object() && c["resources"]["limits"]["memory"].is_string());
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((e["name"].as_str()?.to_string(), e["valueFrom"]["fieldRef"]["fieldPath"].as_str()?.to_string()))
        })
        .collect();
    assert!(env.contains(&("POD_NAME".into(), "metadata.name".into())), "{env:?}");
    assert!(env.contains(&("POD_NAMESPACE".into(), "metadata.namespace".into())), "{env:?}");

    let args = args_of(deployment);
    assert_eq!(args[0], "run");
    assert!(args.contains(&"--metrics-addr=0.0.0.0:8080".into()), "{args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--leader-elect") || a.starts_with("--namespace")), "{args:?}");
    assert_flags_exist(&args);

    // The Service reaches the pods' metrics port.
    let svc = of_kind(&objs, "Service")[0];
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "Service selector {k}");
    }
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics");

    // Secrets: get/update/patch of the default credentials Secret's name only: no
    // cluster-wide Secret read unless asked for.
    let secrets = secret_rules(&objs);
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0].0, "ClusterRole");
    assert_eq!(strings(&secrets[0].2["verbs"]), ["get", "patch"]);
    assert_eq!(strings(&secrets[0].2["resourceNames"]), ["graph-credentials"]);
}

/// The `helm test` Pod runs `check` with the Deployment's own flags, as the operator's
/// account, hardened the same way; labelled apart so the operator's Service, PDB and
/// NetworkPolicy do not select it.
#[test]
fn the_helm_test_pod_runs_check_like_the_operator() {
    for values in [&[][..], &["--set", "replicaCount=2", "--set", "watchNamespace=team"][..]] {
        let objs = render("pwreset-system", values);
        let deployment = of_kind(&objs, "Deployment")[0];
        let pods = of_kind(&objs, "Pod");
        assert_eq!(pods.len(), 1, "{values:?}");
        let pod = pods[0];
        assert_eq!(pod["metadata"]["annotations"]["helm.sh/hook"], "test");
        assert_eq!(pod["metadata"]["labels"]["app.kubernetes.io/component"], "check");
        let selector = deployment["spec"]["selector"]["matchLabels"].as_object().unwrap();
        assert!(
            selector.iter().any(|(k, v)| &pod["metadata"]["labels"][k] != v),
            "the operator's selectors must not match the test Pod"
        );
        let spec = &pod["spec"];
        let template = &deployment["spec"]["template"]["spec"];
        assert_eq!(spec["restartPolicy"], "Never");
        for field in ["serviceAccountName", "automountServiceAccountToken", "securityContext"] {
            assert_eq!(spec[field], template[field], "{field}");
        }
        let (c, operator) = (&spec["containers"][0], container(deployment));
        for field in ["image", "imagePullPolicy", "env", "securityContext", "resources"] {
            assert_eq!(c[field], operator[field], "{field}");
        }
        assert_eq!(c["volumeMounts"], operator["volumeMounts"]);
        let args = strings(&c["args"]);
        let run_args = args_of(deployment);
        assert_eq!(args[0], "check");
        assert_eq!(args[1..run_args.len()], run_args[1..], "the Deployment's own flags, in order");
        assert!(args.contains(&"--timeout=5s".to_string()), "{args:?}");
        assert!(args.contains(&"--secret-names=graph-credentials".to_string()), "{args:?}");
        assert_flags_exist_in(&args, "check");
    }
    let objs = render("pwreset-system", &["--set", "tests.credentialsSecret=team-a/graph"]);
    let args = strings(&of_kind(&objs, "Pod")[0]["spec"]["containers"][0]["args"]);
    assert!(args.contains(&"--credentials-secret=team-a/graph".to_string()), "{args:?}");
    assert!(of_kind(&render("pwreset-system", &["--set", "tests.enabled=false"]), "Pod").is_empty());
    let err = template("pwreset-system", &["--set", "tests.credentialsSecret=graph"]).unwrap_err();
    assert!(err.contains("tests/credentialsSecret"), "{err}");
}

/// Every `--flag` the chart passes is one `pwreset-operator run` knows.
fn assert_flags_exist(args: &[String]) {
    assert_flags_exist_in(args, "run")
}

fn assert_flags_exist_in(args: &[String], subcommand: &str) {
    let help = run(Command::new(env!("CARGO_BIN_EXE_pwreset-operator")).args([subcommand, "--help"]), None).unwrap();
    for arg in args.iter().filter(|a| a.starts_with("--")) {
        let flag = arg.split('=').next().unwrap();
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "{flag} is not a flag of `{subcommand}`"
        );
    }
}

#[test]
fn more_than_one_replica_turns_leader_election_on() {
    for extra in [&["--set", "replicaCount=3"][..], &["--set", "leaderElection.enabled=true"][..]] {
        let objs = render("ops", extra);
        assert_least_privilege(&objs, "ops");
        let deployment = of_kind(&objs, "Deployment")[0];
        let args = args_of(deployment);
        for want in
            ["--leader-elect", "--leader-election-namespace=ops", "--leader-election-lease-name=rel-pwreset-operator"]
        {
            assert!(args.contains(&want.to_string()), "{extra:?}: {want} missing from {args:?}");
        }
        assert_flags_exist(&args);
        assert!(deployment["spec"]["strategy"].is_null(), "rolling updates are safe with a lease");
        let roles = of_kind(&objs, "Role");
        let lease_role =
            roles.iter().find(|r| r["metadata"]["name"] == "rel-pwreset-operator-leader-election").unwrap();
        assert_eq!(lease_role["metadata"]["namespace"], "ops");
        let named = lease_role["rules"].as_array().unwrap().iter().find(|r| r["resourceNames"].is_array()).unwrap();
        assert_eq!(named["resourceNames"], json!(["rel-pwreset-operator"]));
        assert!(
            of_kind(&objs, "RoleBinding")
                .iter()
                .any(|b| b["roleRef"]["name"] == "rel-pwreset-operator-leader-election"
                    && b["subjects"][0]["name"] == "rel-pwreset-operator"
                    && b["subjects"][0]["namespace"] == "ops")
        );
    }
    let objs = render("ops", &["--set", "replicaCount=1"]);
    assert!(!args_of(of_kind(&objs, "Deployment")[0]).contains(&"--leader-elect".to_string()));
    assert!(of_kind(&objs, "Role").is_empty());
}

#[test]
fn rbac_values_narrow_secret_access() {
    // Named Secrets in listed namespaces: Roles there, no cluster-wide Secret rule.
    let objs = render(
        "ops",
        &[
            "--set-json",
            r#"rbac.namespaces=["team-a","team-b"]"#,
            "--set-json",
            r#"rbac.secretNames=["graph-credentials"]"#,
        ],
    );
    assert_least_privilege(&objs, "ops");
    let secrets = secret_rules(&objs);
    assert_eq!(secrets.len(), 2, "{secrets:?}");
    let mut namespaces = Vec::new();
    for (kind, ns, rule) in &secrets {
        assert_eq!(kind, "Role");
        assert_eq!(rule["resourceNames"], json!(["graph-credentials"]));
        namespaces.push(ns.clone().unwrap());
    }
    assert_eq!(namespaces, ["team-a", "team-b"]);
    for b in of_kind(&objs, "RoleBinding") {
        assert_eq!(b["subjects"][0]["namespace"], "ops", "binds the operator's own ServiceAccount");
    }
    // Resources are still watched everywhere.
    assert!(of_kind(&objs, "ClusterRole").iter().any(|r| r["metadata"]["name"] == "rel-pwreset-operator"));

    // One watched namespace: nothing cluster-wide at all; by default still only the named
    // Secret, any name when asked for.
    let objs = render("ops", &["--set", "watchNamespace=team-a"]);
    assert_least_privilege(&objs, "ops");
    assert!(of_kind(&objs, "ClusterRole").is_empty() && of_kind(&objs, "ClusterRoleBinding").is_empty());
    let secrets = secret_rules(&objs);
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0].1.as_deref(), Some("team-a"));
    assert_eq!(strings(&secrets[0].2["resourceNames"]), ["graph-credentials"]);
    let objs = render("ops", &["--set", "watchNamespace=team-a", "--set-json", "rbac.secretNames=[]"]);
    assert!(secret_rules(&objs)[0].2["resourceNames"].is_null(), "any Secret name in the watched namespace");
    let args = args_of(of_kind(&objs, "Deployment")[0]);
    assert!(args.contains(&"--namespace=team-a".to_string()), "{args:?}");

    // rbac.create=false: no RBAC objects at all (the user brings them).
    let objs = render("ops", &["--set", "rbac.create=false"]);
    assert!(rules(&objs).is_empty() && of_kind(&objs, "ClusterRoleBinding").is_empty());
}

#[test]
fn sharding_renders_one_deployment_per_shard() {
    let objs = render("ops", &["--values", &ci_values("sharded-values.yaml")]);
    assert_least_privilege(&objs, "ops");
    let deployments = of_kind(&objs, "Deployment");
    assert_eq!(deployments.len(), 3);
    let mut leases = Vec::new();
    for (i, d) in deployments.iter().enumerate() {
        assert_eq!(d["metadata"]["name"], format!("rel-pwreset-operator-shard-{i}"));
        assert_eq!(d["spec"]["replicas"], 2);
        assert_eq!(d["spec"]["selector"]["matchLabels"]["pwreset.dev/shard"], i.to_string(), "disjoint selectors");
        assert_eq!(d["spec"]["template"]["metadata"]["labels"]["pwreset.dev/shard"], i.to_string());
        let args = args_of(d);
        assert_flags_exist(&args);
        assert!(args.contains(&format!("--shard={i}")) && args.contains(&"--total-shards=3".to_string()), "{args:?}");
        assert!(args.contains(&"--leader-elect".to_string()), "two pods per shard share a lease");
        assert!(args.contains(&"--namespace=pwreset-ci-team-a".to_string()));
        let lease = args.iter().find_map(|a| a.strip_prefix("--leader-election-lease-name=")).unwrap().to_string();
        assert_eq!(lease, format!("rel-pwreset-operator-shard-{i}"));
        leases.push(lease);
        assert_eq!(
            container(d)["image"],
            "registry.example.com/pwreset-operator@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        );
        assert_eq!(d["spec"]["template"]["spec"]["serviceAccountName"], "pwreset-ci-operator");
    }
    let lease_role = of_kind(&objs, "Role")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "rel-pwreset-operator-leader-election")
        .unwrap();
    let named = lease_role["rules"].as_array().unwrap().iter().find(|r| r["resourceNames"].is_array()).unwrap();
    assert_eq!(strings(&named["resourceNames"]), leases);
    assert!(of_kind(&objs, "ServiceAccount").is_empty(), "serviceAccount.create=false");
    assert_eq!(of_kind(&objs, "ServiceMonitor").len(), 1);
    assert_eq!(of_kind(&objs, "NetworkPolicy").len(), 1);
}

#[test]
fn non_default_values_render_what_they_say() {
    let objs = render("ops", &["--values", &ci_values("ha-values.yaml")]);
    assert_least_privilege(&objs, "ops");
    let d = of_kind(&objs, "Deployment")[0];
    let args = args_of(d);
    assert_flags_exist(&args);
    for want in [
        "--cloud=usgov",
        "--poll-interval=1m30s",
        "--tenant-rate=2.5",
        "--tenant-burst=10",
        "--max-concurrent-reconciles=8",
        "--metrics-addr=0.0.0.0:9090",
        "--log-format=text",
        "--default-credentials-secret=graph-credentials",
        "--leader-elect",
        "--leader-election-lease-duration=20s",
        "--federated-token-dir=/var/run/secrets/azure/tokens",
    ] {
        assert!(args.contains(&want.to_string()), "{want} missing from {args:?}");
    }
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"], "true");
    let sa = of_kind(&objs, "ServiceAccount")[0];
    assert_eq!(
        sa["metadata"]["annotations"]["azure.workload.identity/client-id"],
        "00000000-aaaa-bbbb-cccc-000000000000"
    );

    let np = of_kind(&objs, "NetworkPolicy")[0];
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    let ingress = np["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(ingress[0]["ports"], json!([{"port": "metrics", "protocol": "TCP"}]), "ingress to metrics only");
    let egress_ports: BTreeSet<i64> = np["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["ports"].as_array().unwrap().iter().map(|p| p["port"].as_i64().unwrap()))
        .collect();
    assert_eq!(egress_ports, [53, 443, 6443].into(), "DNS, Graph and the API server only");

    let pdb = of_kind(&objs, "PodDisruptionBudget")[0];
    assert_eq!(pdb["spec"]["minAvailable"], 2);
    assert!(pdb["spec"]["maxUnavailable"].is_null());
    assert!(of_kind(&objs, "ServiceMonitor").is_empty());
}

#[test]
fn bad_values_fail_with_a_message_naming_the_field() {
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "cloud=mars"], "/cloud"),
        (&["--set", "pollInterval=10"], "/pollInterval"),
        (&["--set-string", "pollInterval=10"], "/pollInterval"),
        (&["--set-string", "notFoundGrace=2 minutes"], "/notFoundGrace"),
        (&["--set", "logFormat=xml"], "/logFormat"),
        (&["--set", "replicaCount=-1"], "/replicaCount"),
        (&["--set", "replicaCount=two"], "/replicaCount"),
        (&["--set", "maxConcurrentReconciles=0"], "/maxConcurrentReconciles"),
        (&["--set", "tenantRate=0"], "/tenantRate"),
        (&["--set", "metrics.port=70000"], "/metrics/port"),
        (&["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
        (&["--set", "graphUrl=ftp://graph.example.com"], "/graphUrl"),
        (&["--set-json", r#"rbac.secretNames=["Not_A_Name"]"#], "/rbac/secretNames/0"),
        (&["--set", "leaderElection.enable=true"], "'enable'"),
        (&["--set", "pollIntervall=15s"], "'pollIntervall'"),
        (&["--set", "watchNamespace=team-a", "--set-json", r#"rbac.namespaces=["team-b"]"#], "rbac.namespaces"),
        (&["--set", "sharding.enabled=true", "--set", "sharding.totalShards=1"], "sharding.totalShards"),
        (&["--set", "serviceAccount.create=false"], "serviceAccount.name"),
    ];
    for (args, field) in cases {
        let err = template("ops", args).expect_err(&format!("{args:?} must be refused"));
        assert!(err.contains(field), "{args:?}: the message should name {field}:\n{err}");
    }

    // `helm install` refuses them too, before creating anything.
    let cp = ControlPlane::shared();
    let ns = unique_name("chart-bad");
    let err = run(
        helm()
            .args(["install", "bad", "--namespace", &ns, "--create-namespace", "--kubeconfig"])
            .arg(cp.kubeconfig())
            .arg(chart())
            .args(["--set", "cloud=mars"]),
        None,
    )
    .expect_err("helm install with cloud=mars");
    assert!(err.contains("/cloud") && err.contains("global"), "{err}");
    let out = cp.kubectl().args(["get", "namespace", &ns]).output().unwrap();
    assert!(!out.status.success(), "nothing was created");
}

#[test]
fn extra_ca_certificates_are_mounted_read_only_and_passed_as_a_flag() {
    let default = of_kind(&render("ops", &[]), "Deployment")[0].clone();
    assert!(!args_of(&default).iter().any(|a| a.starts_with("--extra-ca-file")), "off by default");
    assert!(!serde_json::to_string(&default).unwrap().contains("extra-ca"));

    for (source, volume_field, name_field) in
        [("configMapName", "configMap", "name"), ("secretName", "secret", "secretName")]
    {
        let objs = render(
            "ops",
            &["--set", &format!("extraCACertificates.{source}=corp-ca"), "--set", "extraCACertificates.key=bundle.pem"],
        );
        let d = of_kind(&objs, "Deployment")[0];
        let args = args_of(d);
        assert_flags_exist(&args);
        assert!(args.contains(&"--extra-ca-file=/etc/pwreset/extra-ca/ca.crt".to_string()), "{args:?}");
        let mounts = container(d)["volumeMounts"].as_array().unwrap();
        let mount = mounts.iter().find(|m| m["name"] == "extra-ca").expect("extra-ca mount");
        assert_eq!(mount["mountPath"], "/etc/pwreset/extra-ca");
        assert_eq!(mount["readOnly"], true);
        let volumes = d["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
        let volume = volumes.iter().find(|v| v["name"] == "extra-ca").expect("extra-ca volume");
        assert_eq!(volume[volume_field][name_field], "corp-ca", "{source}");
        assert_eq!(volume[volume_field]["items"], json!([{"key": "bundle.pem", "path": "ca.crt"}]), "{source}");
    }

    let err =
        template("ops", &["--set", "extraCACertificates.configMapName=a", "--set", "extraCACertificates.secretName=b"])
            .expect_err("both sources");
    assert!(err.contains("extraCACertificates"), "{err}");
    let err = template("ops", &["--set", "extraCACertificates.configMapName=Corp_CA"]).expect_err("bad name");
    assert!(err.contains("/extraCACertificates/configMapName"), "{err}");
}

// ---------------------------------------------------------------------------------------
// The real API server
// ---------------------------------------------------------------------------------------

fn ensure_namespace(cp: &ControlPlane, ns: &str) {
    let manifest = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n");
    run(cp.kubectl().args(["apply", "-f", "-"]), Some(&manifest)).unwrap();
}

/// Stand-ins for the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs (any spec
/// accepted), so the API server can take the rendered objects' apiVersion and kind.
fn install_monitoring_crds(cp: &ControlPlane) {
    for (kind, plural) in [("ServiceMonitor", "servicemonitors"), ("PrometheusRule", "prometheusrules")] {
        let singular = kind.to_lowercase();
        let crd = format!(
            r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {{kind: {kind}, listKind: {kind}List, plural: {plural}, singular: {singular}}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"#
        );
        run(cp.kubectl().args(["apply", "-f", "-"]), Some(&crd)).unwrap();
        cp.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &format!("crd/{plural}.monitoring.coreos.com"),
        ]);
    }
}

#[test]
fn the_api_server_accepts_every_rendered_object() {
    let cp = ControlPlane::shared();
    let ns = unique_name("chart-dry");
    ensure_namespace(cp, &ns);
    // Pod Security Admission warns about any pod template below the `restricted` level.
    cp.kubectl_ok(&[
        "label",
        "namespace",
        &ns,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    ]);
    for n in CI_NAMESPACES {
        ensure_namespace(cp, n);
    }
    install_monitoring_crds(cp);
    let ha = ci_values("ha-values.yaml");
    let sharded = ci_values("sharded-values.yaml");
    let cases: Vec<Vec<&str>> = vec![
        vec!["--include-crds"],
        vec!["--values", &ha],
        vec!["--values", &sharded],
        vec!["--set", "watchNamespace=pwreset-ci-team-b", "--set", "networkPolicy.enabled=true"],
        vec!["--set", "podDisruptionBudget.enabled=true", "--set", "rbac.create=false", "--set", "logFormat=text"],
        // The CRD as a template, the alerts and the dashboard.
        vec![
            "--set",
            "crds.enabled=true",
            "--set",
            "prometheusRule.enabled=true",
            "--set",
            "prometheusRule.labels.release=prometheus",
            "--set",
            "grafanaDashboard.enabled=true",
        ],
    ];
    let dry_run = |rendered: &str| {
        run_full(
            // --force-conflicts: renderings with crds.enabled re-apply the shared CRD, whose
            // labels another test's release may own; the question here is only whether the
            // API server accepts each object.
            cp.kubectl().args([
                "apply",
                "--server-side",
                "--dry-run=server",
                "--force-conflicts",
                "--field-manager=chart-test",
                "-f",
                "-",
            ]),
            Some(rendered),
        )
    };
    for args in cases {
        let rendered = template(&ns, &args).unwrap();
        let count = objects(&rendered).len();
        let (ok, out, err) = dry_run(&rendered);
        assert!(ok, "the API server refused the rendering of {args:?}:\n{err}{out}");
        let applied = out.lines().filter(|l| l.contains("(server dry run)")).count();
        assert_eq!(applied, count, "{args:?}: every object accepted:\n{out}");
        assert!(!err.contains("PodSecurity"), "{args:?}: the pods are not `restricted`:\n{err}");
    }
    // The check above can see a violation.
    let weaker = template(&ns, &["--set", "securityContext.allowPrivilegeEscalation=true"]).unwrap();
    let (_, _, err) = dry_run(&weaker);
    assert!(err.contains("would violate PodSecurity \"restricted"), "no PodSecurity warning: {err}");
}

#[test]
fn the_examples_are_accepted_by_the_api_server() {
    let cp = ControlPlane::shared();
    let ns = unique_name("chart-examples");
    ensure_namespace(cp, &ns);
    let examples = repo_root().join("examples");
    let out = cp.kubectl_ok(&["apply", "--dry-run=server", "-n", &ns, "-k", examples.to_str().unwrap()]);
    assert_eq!(out.lines().filter(|l| l.contains("(server dry run)")).count(), 3, "{out}");

    let apps = objects(&std::fs::read_to_string(examples.join("argocd-application.yaml")).unwrap());
    assert!(!apps.is_empty());
    for app in &apps {
        assert_eq!(app["apiVersion"], "argoproj.io/v1alpha1");
        assert_eq!(app["kind"], "Application");
    }
    let chart_path = apps[0]["spec"]["source"]["path"].as_str().unwrap();
    assert!(repo_root().join(chart_path).join("Chart.yaml").exists(), "{chart_path} is the chart");
}

// ---------------------------------------------------------------------------------------
// helm install, then the operator as the chart's ServiceAccount
// ---------------------------------------------------------------------------------------

/// `helm install` into `ns`; returns the rendered manifest.
fn install(cp: &ControlPlane, release: &str, ns: &str, args: &[&str]) -> Vec<Value> {
    install_with_notes(cp, release, ns, args).0
}

/// `helm install` into `ns`; returns the rendered manifest and what helm printed (NOTES).
fn install_with_notes(cp: &ControlPlane, release: &str, ns: &str, args: &[&str]) -> (Vec<Value>, String) {
    let printed = run(
        helm()
            .args(["install", release, "--namespace", ns, "--create-namespace", "--kubeconfig"])
            .arg(cp.kubeconfig())
            .arg(chart())
            .args(args),
        None,
    )
    .unwrap_or_else(|e| panic!("helm install {release}: {e}"));
    let manifest =
        run(helm().args(["get", "manifest", release, "--namespace", ns, "--kubeconfig"]).arg(cp.kubeconfig()), None)
            .unwrap();
    (objects(&manifest), printed)
}

fn uninstall(cp: &ControlPlane, release: &str, ns: &str) {
    run(helm().args(["uninstall", release, "--namespace", ns, "--kubeconfig"]).arg(cp.kubeconfig()), None)
        .unwrap_or_else(|e| panic!("helm uninstall {release}: {e}"));
}

/// A kubeconfig for the control plane that authenticates as ServiceAccount `sa` with a
/// token from `kubectl create token`: the identity the chart gives the operator's pods.
fn service_account_kubeconfig(cp: &ControlPlane, ns: &str, sa: &str) -> PathBuf {
    let token = cp.kubectl_ok(&["create", "token", sa, "-n", ns, "--duration=1h"]).trim().to_string();
    let admin: Value = serde_yaml::from_str(&std::fs::read_to_string(cp.kubeconfig()).unwrap()).unwrap();
    let cluster = &admin["clusters"][0]["cluster"];
    let mut cluster_entry = json!({"server": cluster["server"]});
    if let Some(data) = cluster["certificate-authority-data"].as_str() {
        cluster_entry["certificate-authority-data"] = json!(data);
    } else {
        cluster_entry["certificate-authority"] = cluster["certificate-authority"].clone();
    }
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cp", "cluster": cluster_entry}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": "cp", "user": sa, "namespace": ns}}],
        "current-context": sa,
    });
    let path = cp.data_dir().join(format!("{}.kubeconfig", unique_name(sa)));
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

/// Starts the operator with the chart's own container args (its --metrics-addr and
/// --log-format give way to the test's), as `sa`, with the env the pod would have.
fn start_as_chart_pod(cp: &ControlPlane, deployment: &Value, ns: &str, sa: &str) -> Operator {
    let kubeconfig = service_account_kubeconfig(cp, ns, sa);
    let args: Vec<String> = args_of(deployment)
        .into_iter()
        .filter(|a| a != "run" && !a.starts_with("--metrics-addr") && !a.starts_with("--log-format"))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let pod = format!("{}-0", deployment["metadata"]["name"].as_str().unwrap());
    Operator::start_with_env(
        cp,
        &args,
        &[("KUBECONFIG", kubeconfig.to_str().unwrap()), ("POD_NAMESPACE", ns), ("POD_NAME", &pod)],
    )
}

/// `kubectl auth can-i <args> --as=system:serviceaccount:<ns>:<sa>`.
fn can(cp: &ControlPlane, ns: &str, sa: &str, args: &[&str]) -> bool {
    let out = cp
        .kubectl()
        .args(["auth", "can-i"])
        .args(args)
        .arg(format!("--as=system:serviceaccount:{ns}:{sa}"))
        .output()
        .unwrap();
    match String::from_utf8_lossy(&out.stdout).trim() {
        "yes" => true,
        "no" => false,
        other => panic!("kubectl auth can-i {args:?}: {other:?} {}", String::from_utf8_lossy(&out.stderr)),
    }
}

fn assert_can(cp: &ControlPlane, ns: &str, sa: &str, yes: &[&[&str]], no: &[&[&str]]) {
    for args in yes {
        assert!(can(cp, ns, sa, args), "the operator needs: can-i {}", args.join(" "));
    }
    for args in no {
        assert!(!can(cp, ns, sa, args), "the operator must not: can-i {}", args.join(" "));
    }
}

async fn wait_finished(client: &kube::Client, ns: &str, name: &str, operator: &Operator) -> PasswordResetOperation {
    let api: Api<PasswordResetOperation> = Api::namespaced(client.clone(), ns);
    eventually(&format!("{ns}/{name} Finished=True"), Duration::from_secs(90), || async {
        let obj = api.get(name).await.map_err(|e| e.to_string())?;
        if condition(&obj, "Finished").map(|c| c.0).as_deref() == Some("True") {
            Ok(obj)
        } else {
            Err(format!("{:?}\noperator logs:\n{}", obj.status, operator.logs()))
        }
    })
    .await
}

/// rbac.namespaces + rbac.secretNames + 2 replicas (so leader election): the operator,
/// authenticated as the chart's ServiceAccount, finishes resources (token and rotated
/// refresh-token credentials, events, TTL deletion, the Lease), cannot read Secrets
/// outside what the values allow, and `kubectl auth can-i` finds nothing more.
#[tokio::test]
async fn installed_chart_rbac_is_enough_and_no_more() {
    let _turn = OPERATOR_TURN.lock().await;
    let cp = ControlPlane::shared();
    let client = cp.client().await;
    let sys = unique_name("chart-sys");
    let team = unique_name("chart-team");
    let other = unique_name("chart-other");
    for ns in [&team, &other] {
        ensure_namespace(cp, ns);
    }
    let emulator = Emulator::start();
    let token = format!("tok-{}", uuid::Uuid::new_v4());
    emulator.add_token(&token, TENANT).await;
    emulator
        .admin(
            "POST",
            "/tenants",
            json!({"id": TENANT_ID, "clients": [{"clientId": "app-delegated", "refreshTokens": ["rt-chart-1"], "subject": "admin-1"}]}),
        )
        .await;
    for id in ["op-token", "op-refresh", "op-ttl", "op-other"] {
        emulator.add_operation(json!({"userId": "alice@contoso.com", "id": id, "status": "succeeded"})).await;
    }
    create_secret(&client, &team, "graph-token", json!({"token": token})).await;
    create_secret(
        &client,
        &team,
        "graph-delegated",
        json!({"tenantId": TENANT_ID, "clientId": "app-delegated", "refreshToken": "rt-chart-1"}),
    )
    .await;
    create_secret(&client, &team, "unrelated", json!({"password": "not for the operator"})).await;
    create_secret(&client, &other, "graph-token", json!({"token": token})).await;

    let namespaces = format!(r#"rbac.namespaces=["{team}"]"#);
    let objs = install(
        cp,
        "narrow",
        &sys,
        &[
            "--set",
            "replicaCount=2",
            "--set-json",
            &namespaces,
            "--set-json",
            r#"rbac.secretNames=["graph-token","graph-delegated"]"#,
            "--set",
            &format!("graphUrl={}", emulator.url),
            "--set",
            &format!("loginUrl={}", emulator.url),
            "--set",
            "pollInterval=1s",
        ],
    );
    let sa = "narrow-pwreset-operator";
    let deployment = of_kind(&objs, "Deployment")[0];
    assert!(args_of(deployment).contains(&"--leader-elect".to_string()));
    let mut operator = start_as_chart_pod(cp, deployment, &sys, sa);
    operator.wait_ready().await;

    let spec = |op: &str, secret: &str| json!({"userId": "alice@contoso.com", "operationId": op, "credentialsSecretRef": {"name": secret}});
    create(&client, &team, "by-token", spec("op-token", "graph-token")).await;
    create(&client, &team, "by-refresh-token", spec("op-refresh", "graph-delegated")).await;
    let mut ttl = spec("op-ttl", "graph-token");
    ttl["ttlSecondsAfterFinished"] = json!(0);
    create(&client, &team, "deleted-when-done", ttl).await;
    create(&client, &other, "outside-rbac-namespaces", spec("op-other", "graph-token")).await;

    for name in ["by-token", "by-refresh-token"] {
        let obj = wait_finished(&client, &team, name, &operator).await;
        assert_eq!(condition(&obj, "Ready").map(|c| c.0).as_deref(), Some("True"), "{name}: {:?}", obj.status);
    }
    // The rotated refresh token was written back (patch on a named Secret).
    let secret = Api::<Secret>::namespaced(client.clone(), &team).get("graph-delegated").await.unwrap();
    let stored = String::from_utf8(secret.data.unwrap()["refreshToken"].0.clone()).unwrap();
    assert_ne!(stored, "rt-chart-1", "the new refresh token was stored");
    // ttlSecondsAfterFinished: 0 (delete).
    let api: Api<PasswordResetOperation> = Api::namespaced(client.clone(), &team);
    eventually("deleted-when-done is deleted", Duration::from_secs(60), || async {
        match api.get_opt("deleted-when-done").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // Events were recorded.
    let events = cp.kubectl_ok(&["get", "events.events.k8s.io", "-n", &team, "-o", "name"]);
    assert!(!events.trim().is_empty(), "the operator could not record events:\n{}", operator.logs());
    // The Lease is held by this "pod".
    let holder = cp.kubectl_ok(&[
        "get",
        "lease",
        "narrow-pwreset-operator",
        "-n",
        &sys,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder, "narrow-pwreset-operator-0");
    // A Secret outside rbac.namespaces is out of reach: Stalled, and the message says why.
    let api_other: Api<PasswordResetOperation> = Api::namespaced(client.clone(), &other);
    let blocked = eventually("outside-rbac-namespaces is Stalled", Duration::from_secs(60), || async {
        let obj = api_other.get("outside-rbac-namespaces").await.map_err(|e| e.to_string())?;
        match condition(&obj, "Stalled") {
            Some((s, reason, message)) if s == "True" => Ok((reason, message)),
            _ => Err(format!("{:?}", obj.status)),
        }
    })
    .await;
    assert_eq!(blocked.0, "InvalidCredentials");
    assert!(blocked.1.contains("not allowed"), "{blocked:?}");
    assert!(!operator.logs().contains(&token), "the token never appears in logs");
    assert_eq!(operator.stop().and_then(|s| s.code()), Some(0), "clean exit on SIGTERM");

    let lease = ["update", "leases/narrow-pwreset-operator", "-n", &sys];
    assert_can(
        cp,
        &sys,
        sa,
        &[
            &["list", "passwordresetoperations.pwreset.dev", "-A"],
            &["watch", "passwordresetoperations.pwreset.dev", "-A"],
            &["patch", "passwordresetoperations.pwreset.dev/x", "--subresource=status", "-n", &other],
            &["delete", "passwordresetoperations.pwreset.dev", "-n", &team],
            &["create", "events.events.k8s.io", "-n", &team],
            &["create", "events", "-n", &other],
            &["get", "secrets/graph-token", "-n", &team],
            &["patch", "secrets/graph-delegated", "-n", &team],
            &["create", "leases.coordination.k8s.io", "-n", &sys],
            &lease,
        ],
        &[
            &["list", "secrets", "-A"],
            &["watch", "secrets", "-A"],
            &["list", "secrets", "-n", &team],
            &["get", "secrets/graph-token", "-n", &other],
            &["get", "secrets/unrelated", "-n", &team],
            &["delete", "secrets/graph-token", "-n", &team],
            &["update", "secrets/graph-delegated", "-n", &team],
            &["create", "secrets", "-n", &team],
            &["get", "secrets/graph-token", "-n", &sys],
            &["create", "passwordresetoperations.pwreset.dev", "-n", &team],
            &["update", "passwordresetoperations.pwreset.dev/x", "-n", &team],
            &["update", "leases/someone-elses-lease", "-n", &sys],
            &["create", "leases.coordination.k8s.io", "-n", &team],
            &["delete", "deployments", "-n", &sys],
            &["create", "pods", "-n", &team],
            &["get", "configmaps", "-n", &team],
            &["list", "namespaces"],
            &["create", "serviceaccounts", "--subresource=token", "-n", &sys],
        ],
    );

    uninstall(cp, "narrow", &sys);
    let left = cp.kubectl_ok(&[
        "get",
        "clusterroles,clusterrolebindings",
        "-l",
        "app.kubernetes.io/instance=narrow",
        "-o",
        "name",
    ]);
    assert!(left.trim().is_empty(), "helm uninstall leaves nothing cluster-wide: {left}");
}

/// What `helm test` runs, run here as the chart's ServiceAccount (there is no kubelet on
/// this control plane; tests/node.rs runs the real `helm test`): the installed RBAC passes
/// every check, and a missing binding fails by name.
#[tokio::test]
async fn the_helm_test_check_passes_with_the_installed_rbac_and_names_what_is_missing() {
    let cp = ControlPlane::shared();
    let client = cp.client().await;
    let sys = unique_name("chart-test-sys");
    let team = unique_name("chart-test-team");
    ensure_namespace(cp, &team);
    let emulator = Emulator::start();
    let token = format!("tok-{}", uuid::Uuid::new_v4());
    emulator.add_token(&token, TENANT).await;
    create_secret(&client, &team, "graph-credentials", json!({"token": token})).await;
    let release = "tested";
    install(
        cp,
        release,
        &sys,
        &[
            "--set",
            "replicaCount=2",
            "--set-json",
            &format!(r#"rbac.namespaces=["{team}"]"#),
            "--set",
            &format!("graphUrl={}", emulator.url),
            "--set",
            &format!("loginUrl={}", emulator.url),
            "--set",
            &format!("tests.credentialsSecret={team}/graph-credentials"),
        ],
    );
    let hooks =
        run(helm().args(["get", "hooks", release, "--namespace", &sys, "--kubeconfig"]).arg(cp.kubeconfig()), None)
            .unwrap();
    let hooks = objects(&hooks);
    let pod = of_kind(&hooks, "Pod")[0];
    let args = strings(&pod["spec"]["containers"][0]["args"]);
    let kubeconfig = service_account_kubeconfig(cp, &sys, pod["spec"]["serviceAccountName"].as_str().unwrap());
    let check = || {
        let out = Command::new(env!("CARGO_BIN_EXE_pwreset-operator"))
            .args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAMESPACE", &sys)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(!stdout.contains(&token), "the token is never shown");
        (out.status.code(), stdout)
    };
    let (code, report) = check();
    assert_eq!(code, Some(0), "{report}");
    for name in ["crd", "rbac", "graph", "login-host", "credentials"] {
        assert!(report.lines().any(|l| l.starts_with(&format!("ok   {name} "))), "{name}:\n{report}");
    }

    cp.kubectl_ok(&["delete", "rolebinding", &format!("{release}-pwreset-operator-secrets"), "-n", &team]);
    let (code, report) = check();
    assert_eq!(code, Some(1), "{report}");
    let denied = format!("FAIL rbac        denied: get secrets named graph-credentials in namespace {team}");
    assert!(report.lines().any(|l| l == denied), "{report}");
    assert!(report.lines().any(|l| l.starts_with("FAIL credentials") && l.contains("not allowed")), "{report}");
    uninstall(cp, release, &sys);
}

/// crds.enabled on a cluster that already has the CRD (from crds/, as every release had
/// before): Helm refuses to adopt it unless told to with --take-ownership, as the chart
/// README says; then the release owns it, and `helm uninstall` keeps it (crds.keep).
#[test]
fn installed_chart_takes_over_the_crd_and_keeps_it_on_uninstall() {
    let cp = ControlPlane::shared();
    let sys = unique_name("chart-crd");
    let crd = "crd/passwordresetoperations.pwreset.dev";
    let install = |release: &str, extra: &[&str]| {
        run(
            helm()
                .args(["install", release, "--namespace", &sys, "--create-namespace", "--skip-crds", "--kubeconfig"])
                .arg(cp.kubeconfig())
                .arg(chart())
                .args(["--set", "crds.enabled=true"])
                .args(extra),
            None,
        )
    };
    let err = install("crd-refused", &[]).expect_err("Helm must not silently adopt an existing CRD");
    assert!(err.contains("passwordresetoperations.pwreset.dev") && err.contains("ownership"), "{err}");

    install("crd-owner", &["--take-ownership"]).unwrap_or_else(|e| panic!("helm install --take-ownership: {e}"));
    let meta = |path: &str| cp.kubectl_ok(&["get", crd, "-o", &format!("jsonpath={{{path}}}")]);
    assert_eq!(meta(".metadata.annotations.meta\\.helm\\.sh/release-name"), "crd-owner");
    assert_eq!(meta(".metadata.annotations.helm\\.sh/resource-policy"), "keep");
    assert_eq!(meta(".metadata.labels.app\\.kubernetes\\.io/managed-by"), "Helm");

    uninstall(cp, "crd-owner", &sys);
    assert_eq!(
        meta(".metadata.name"),
        "passwordresetoperations.pwreset.dev",
        "helm uninstall kept the CRD, and so everyone's resources"
    );
}

/// watchNamespace: Roles only. The operator (as the chart's ServiceAccount, with the chart's
/// --namespace and --default-credentials-secret) finishes a resource that names no Secret,
/// and has no access anywhere else.
#[tokio::test]
async fn installed_chart_watching_one_namespace_needs_no_cluster_role() {
    let _turn = OPERATOR_TURN.lock().await;
    let cp = ControlPlane::shared();
    let client = cp.client().await;
    let sys = unique_name("chart-sys");
    let team = unique_name("chart-team");
    ensure_namespace(cp, &team);
    let emulator = Emulator::start();
    let token = format!("tok-{}", uuid::Uuid::new_v4());
    emulator.add_token(&token, TENANT).await;
    emulator.add_operation(json!({"userId": "bob@contoso.com", "id": "op-fails", "status": "failed"})).await;
    create_secret(&client, &team, "graph-credentials", json!({"token": token})).await;

    let objs = install(
        cp,
        "scoped",
        &sys,
        &[
            "--set",
            &format!("watchNamespace={team}"),
            "--set",
            "defaultCredentialsSecret=graph-credentials",
            // One team's namespace: any Secret name there is fine.
            "--set-json",
            "rbac.secretNames=[]",
            "--set",
            &format!("graphUrl={}", emulator.url),
            "--set",
            "pollInterval=1s",
        ],
    );
    assert!(of_kind(&objs, "ClusterRole").is_empty());
    let sa = "scoped-pwreset-operator";
    let operator = start_as_chart_pod(cp, of_kind(&objs, "Deployment")[0], &sys, sa);
    operator.wait_ready().await;
    create(&client, &team, "no-secret-named", json!({"userId": "bob@contoso.com", "operationId": "op-fails"})).await;
    let obj = wait_finished(&client, &team, "no-secret-named", &operator).await;
    assert_eq!(condition(&obj, "Stalled").map(|c| c.1).as_deref(), Some("OperationFailed"), "{:?}", obj.status);
    assert_eq!(condition(&obj, "Ready").map(|c| c.0).as_deref(), Some("False"));
    drop(operator);

    assert_can(
        cp,
        &sys,
        sa,
        &[
            &["list", "passwordresetoperations.pwreset.dev", "-n", &team],
            &["watch", "passwordresetoperations.pwreset.dev", "-n", &team],
            &["get", "secrets/anything", "-n", &team],
            &["patch", "secrets/anything", "-n", &team],
        ],
        &[
            &["update", "secrets/anything", "-n", &team],
            &["list", "passwordresetoperations.pwreset.dev", "-A"],
            &["list", "passwordresetoperations.pwreset.dev", "-n", "default"],
            &["get", "secrets/anything", "-n", "default"],
            &["list", "secrets", "-n", &team],
            &["watch", "secrets", "-n", &team],
            &["create", "leases.coordination.k8s.io", "-n", &sys],
            &["create", "events", "-n", "default"],
        ],
    );
}

/// Default values (every namespace watched): only the default credentials Secret's name,
/// in any namespace; nothing else, never listed.
#[test]
fn default_install_reads_named_secrets_everywhere_but_never_lists_them() {
    let cp = ControlPlane::shared();
    let sys = unique_name("chart-sys");
    let (_, notes) = install_with_notes(cp, "defaults", &sys, &[]);
    assert!(notes.contains("graph-credentials in EVERY namespace"), "NOTES say which Secrets:\n{notes}");
    assert!(notes.contains("Graph: https://graph.microsoft.com (cloud: global)"), "{notes}");
    let sa = "defaults-pwreset-operator";
    assert_can(
        cp,
        &sys,
        sa,
        &[
            &["get", "secrets/graph-credentials", "-n", "default"],
            &["patch", "secrets/graph-credentials", "-n", "kube-system"],
            &["list", "passwordresetoperations.pwreset.dev", "-A"],
        ],
        &[
            &["list", "secrets", "-A"],
            &["watch", "secrets", "-A"],
            &["list", "secrets", "-n", "default"],
            &["get", "secrets/other-app-secret", "-n", "default"],
            &["delete", "secrets/graph-credentials", "-n", "default"],
            &["create", "secrets", "-n", "default"],
            &["create", "leases.coordination.k8s.io", "-n", &sys],
            &["delete", "deployments", "-n", &sys],
            &["get", "pods", "-n", &sys],
        ],
    );
    uninstall(cp, "defaults", &sys);
}

// ---------------------------------------------------------------------------------------
// The image
// ---------------------------------------------------------------------------------------

/// The Dockerfile cannot be built here (no container engine); what can be checked is that
/// it builds the binary the tests run, under the name the entrypoint and the chart use,
/// on a base that has what the binary links against.
#[test]
fn dockerfile_builds_the_binary_the_chart_runs() {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let instructions: Vec<String> = dockerfile
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    let bin = Path::new(env!("CARGO_BIN_EXE_pwreset-operator")).file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(bin, "pwreset-operator");

    let froms: Vec<&String> = instructions.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "multi-stage: build, then runtime");
    assert!(froms[0].starts_with("FROM rust:1") && froms[0].contains("bookworm"), "{}", froms[0]);
    assert_eq!(froms[1].as_str(), "FROM gcr.io/distroless/cc-debian12:nonroot");

    let build = instructions.iter().find(|l| l.contains("cargo build")).expect("a cargo build step");
    assert!(build.contains(&format!("cargo build --release --locked --bin {bin}")), "{build}");
    assert!(build.contains(&format!("target/release/{bin}")), "{build}");
    let copy = instructions.iter().find(|l| l.starts_with("COPY --from=")).expect("COPY --from=build");
    assert!(copy.ends_with(&format!(" /{bin}")), "{copy}");
    assert!(instructions.contains(&"USER 65532:65532".to_string()) || instructions.contains(&"USER 65532".to_string()));
    assert!(instructions.contains(&format!(r#"ENTRYPOINT ["/{bin}"]"#)), "{instructions:?}");
    assert!(instructions.contains(&r#"CMD ["run"]"#.to_string()), "{instructions:?}");
    let last_from = instructions.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    assert!(instructions[last_from..].iter().all(|l| !l.starts_with("RUN ")), "no shell in distroless: no RUN there");

    // The chart runs the entrypoint with `run` and a metrics port the image exposes.
    let objs = render("ops", &[]);
    let c = container(of_kind(&objs, "Deployment")[0]);
    assert!(c["command"].is_null(), "the chart keeps the image's ENTRYPOINT");
    assert_eq!(args_of(of_kind(&objs, "Deployment")[0])[0], "run");
    assert!(
        instructions.contains(&format!("EXPOSE {}", c["ports"][0]["containerPort"])),
        "EXPOSE matches the chart's port"
    );
    assert_eq!(
        of_kind(&objs, "Deployment")[0]["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
        65532,
        "the chart's user is the image's"
    );

    // .dockerignore keeps target/ (gigabytes) and .git out of the build context, and
    // nothing the build needs.
    let ignore = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    let ignored: Vec<&str> = ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert!(ignored.contains(&"target") && ignored.contains(&".git"), "{ignored:?}");
    for needed in ["src", "Cargo.toml", "Cargo.lock"] {
        assert!(!ignored.contains(&needed), "{needed} is needed by the build");
    }

    // distroless/cc has glibc (libc, libm) and libgcc_s, and nothing else: the binary
    // must not link anything more (OpenSSL, for instance).
    // A missing ldd fails the test: skipping would pass without having checked anything.
    let out = Command::new("ldd").arg(env!("CARGO_BIN_EXE_pwreset-operator")).output().unwrap_or_else(|e| {
        panic!("cannot run ldd to check the binary's shared libraries ({e}): install it (libc-bin)")
    });
    assert!(out.status.success(), "ldd failed: {}", String::from_utf8_lossy(&out.stderr));
    {
        let text = String::from_utf8_lossy(&out.stdout);
        // Positive control: an empty or unparsed listing would check nothing.
        assert!(text.contains("libc.so"), "ldd listed no libc, so the check saw nothing: {text}");
        for line in text.lines() {
            let lib = line.split_whitespace().next().unwrap_or_default();
            let ok = [
                "linux-vdso",
                "libc.so",
                "libm.so",
                "libgcc_s.so",
                "ld-linux",
                "libdl.so",
                "libpthread.so",
                "librt.so",
            ]
            .iter()
            .any(|p| lib.contains(p));
            assert!(ok, "the binary links {lib}, which gcr.io/distroless/cc-debian12 lacks");
        }
    }
}
