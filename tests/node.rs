//! The operator image on a real node: `make image`'s OCI archive imported into containerd,
//! the chart installed with its default security settings, the pods started by kubelet
//! through runc and probed for real, PasswordResetOperations finished through the
//! in-cluster config and the chart's RBAC, one leader of two replicas, a deleted leader
//! pod replaced. Everything is stopped and unmounted at the end.

mod node_cluster;

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use node_cluster::{HostEmulator, NODE_NAME, NodeCluster};
use pwreset_operator::api::PasswordResetOperation;
use pwreset_testkit::harness::{create, create_secret};
use pwreset_testkit::{eventually, repo_root, tool};
use serde_json::json;

const NS: &str = "pwreset-system";
const TEAM: &str = "team-a";
const RELEASE: &str = "rel";
const DEPLOYMENT: &str = "rel-pwreset-operator";
const TENANT: &str = "contoso";

fn helm(cluster: &NodeCluster) -> Command {
    let home = repo_root().join("target/tmp/helm");
    let mut cmd = Command::new(tool("helm"));
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig);
    cmd
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

async fn lease_holder(client: &kube::Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), NS).get_opt(DEPLOYMENT).await.ok()??.spec?.holder_identity
}

async fn wait_succeeded(client: &kube::Client, cluster: &NodeCluster, name: &str) {
    let api: Api<PasswordResetOperation> = Api::namespaced(client.clone(), TEAM);
    eventually(&format!("{TEAM}/{name} status succeeded"), Duration::from_secs(120), || async {
        let obj = api.get(name).await.map_err(|e| e.to_string())?;
        match obj.status.as_ref().and_then(|s| s.status.as_deref()) {
            Some("succeeded") => Ok(()),
            _ => Err(format!(
                "{:?}\npods:\n{}",
                obj.status,
                cluster.kubectl_try(&["get", "pods", "-n", NS, "-o", "wide"]).unwrap_or_default()
            )),
        }
    })
    .await
}

/// Names of the operator pods that are Running and not being deleted.
fn running_pods(cluster: &NodeCluster) -> Vec<String> {
    let out = cluster
        .kubectl_try(&[
            "get",
            "pods",
            "-n",
            NS,
            "-l",
            "app.kubernetes.io/name=pwreset-operator",
            "-o",
            r#"jsonpath={range .items[?(@.status.phase=="Running")]}{.metadata.name}{" "}{.metadata.deletionTimestamp}{"\n"}{end}"#,
        ])
        .unwrap_or_default();
    out.lines().filter(|l| l.split_whitespace().count() == 1).map(|l| l.trim().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_image_runs_on_a_real_node() {
    pwreset_testkit::init_crypto();
    let mut cluster = NodeCluster::start();
    println!("$ kubectl get nodes -o wide\n{}", cluster.kubectl_ok(&["get", "nodes", "-o", "wide"]));
    let client = cluster.client().await;

    let emulator = HostEmulator::start();
    let token = format!("tok-{}", uuid::Uuid::new_v4());
    emulator
        .admin("/tokens", json!({"token": token, "tenant": TENANT, "scopes": ["UserAuthenticationMethod.Read.All"]}))
        .await;
    for id in ["op-1", "op-2"] {
        emulator.admin("/operations", json!({"userId": "alice@contoso.com", "id": id, "status": "succeeded"})).await;
    }
    cluster.kubectl_ok(&["create", "namespace", TEAM]);
    create_secret(&client, TEAM, "graph-credentials", json!({"token": token})).await;

    // Default values except where the image comes from and where Graph is: the chart's
    // pod security context, read-only root, dropped capabilities and probes all apply.
    run_ok(
        helm(&cluster)
            .args(["install", RELEASE])
            .arg(repo_root().join("charts/pwreset-operator"))
            .args(["--namespace", NS, "--create-namespace"])
            .args(["--set", "image.pullPolicy=Never", "--set", "replicaCount=2", "--set", "pollInterval=1s"])
            .args(["--set", &format!("graphUrl={}", emulator.url), "--set", &format!("loginUrl={}", emulator.url)])
            // The emulator is plain http on the node's bridge, not on loopback: the named exception.
            .args(["--set", "allowPlainHttp=true"])
            // `helm test` also gets a token with this Secret.
            .args(["--set", &format!("tests.credentialsSecret={TEAM}/graph-credentials")]),
    );
    // Available means every pod passed its readiness probe, which kubelet runs.
    run_ok(cluster.kubectl().args(["rollout", "status", "deployment", DEPLOYMENT, "-n", NS, "--timeout=240s"]));
    let pods = cluster.kubectl_ok(&["get", "pods", "-n", NS, "-o", "wide"]);
    println!("$ kubectl get pods -n {NS} -o wide\n{pods}");
    assert_eq!(pods.matches(NODE_NAME).count(), 2, "both replicas run on the node:\n{pods}");
    let image = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        NS,
        "-o",
        "jsonpath={.items[*].status.containerStatuses[0].imageID}",
    ]);
    assert!(image.contains("sha256:"), "containers run the imported image: {image}");

    create(&client, TEAM, "first", json!({"userId": "alice@contoso.com", "operationId": "op-1"})).await;
    wait_succeeded(&client, &cluster, "first").await;

    // One leader of two; deleting its pod gets a replacement pod and a new leader, which
    // finishes the next resource.
    let leader = eventually("a Lease holder", Duration::from_secs(60), || async {
        lease_holder(&client).await.ok_or_else(|| "no holder".to_string())
    })
    .await;
    assert!(running_pods(&cluster).contains(&leader), "the leader {leader} is one of the pods");
    println!("$ kubectl logs {leader}\n{}", cluster.kubectl_ok(&["logs", "-n", NS, &leader]));
    cluster.kubectl_ok(&["delete", "pod", "-n", NS, &leader, "--wait=false"]);
    let new_leader = eventually("a new leader among the running pods", Duration::from_secs(120), || async {
        let holder = lease_holder(&client).await.unwrap_or_default();
        let pods = running_pods(&cluster);
        if holder != leader && pods.contains(&holder) {
            Ok(holder)
        } else {
            Err(format!("holder {holder}, pods {pods:?}"))
        }
    })
    .await;
    run_ok(cluster.kubectl().args(["rollout", "status", "deployment", DEPLOYMENT, "-n", NS, "--timeout=240s"]));
    let pods = running_pods(&cluster);
    assert_eq!(pods.len(), 2, "the deleted pod was replaced: {pods:?}");
    assert!(!pods.contains(&leader), "{pods:?}");
    create(&client, TEAM, "second", json!({"userId": "alice@contoso.com", "operationId": "op-2"})).await;
    wait_succeeded(&client, &cluster, "second").await;
    println!(
        "new leader {new_leader}\n$ kubectl get pods -n {NS} -o wide\n{}",
        cluster.kubectl_ok(&["get", "pods", "-n", NS, "-o", "wide"])
    );

    // `helm test` runs `pwreset-operator check` in a pod of the image, as the operator's
    // ServiceAccount, through the in-cluster config and the pod network: every check passes.
    let tested = run_ok(helm(&cluster).args(["test", RELEASE, "--namespace", NS, "--timeout", "120s", "--logs"]));
    println!("$ helm test {RELEASE} --logs\n{tested}");
    for check in ["crd", "rbac", "graph", "login-host", "credentials"] {
        assert!(tested.lines().any(|l| l.starts_with(&format!("ok   {check} "))), "{check}:\n{tested}");
    }
    assert!(!tested.contains(&token), "the token is never shown");
    // Without the Secret binding the same test fails, naming the permission.
    cluster.kubectl_ok(&["delete", "clusterrolebinding", &format!("{DEPLOYMENT}-secrets")]);
    let out =
        helm(&cluster).args(["test", RELEASE, "--namespace", NS, "--timeout", "120s", "--logs"]).output().unwrap();
    let failed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("$ helm test {RELEASE} --logs (Secret binding deleted)\n{failed}");
    assert!(!out.status.success(), "{failed}");
    assert!(
        failed.contains("FAIL rbac        denied: get secrets named graph-credentials in all namespaces"),
        "{failed}"
    );
    drop(emulator);
    cluster.stop();
}
