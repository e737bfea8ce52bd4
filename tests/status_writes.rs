//! Status writes that fail: refused by RBAC (403) and conflicting with another writer
//! (409). The operator says so (`KubernetesApiError`) and, once the cause is gone, writes
//! what Graph said: nothing is lost.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use pwreset_testkit::harness::SECRET;
use pwreset_testkit::operator::Options;
use pwreset_testkit::{Harness, Operator, condition, eventually};
use serde_json::json;

fn spec(user: &str, op: &str) -> serde_json::Value {
    json!({"userId": user, "operationId": op, "credentialsSecretRef": {"name": SECRET}, "pollInterval": "1s"})
}

/// Reconcile errors of one reason, from the operator's metrics.
async fn errors(op: &Operator, reason: &str) -> f64 {
    let (status, body) = op.http_get("/metrics").await.expect("/metrics reachable");
    assert_eq!(status, 200);
    pwreset_testkit::operator::parse_metric(&body, &format!("pwreset_reconcile_errors_total{{reason=\"{reason}\"}}"))
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_status_write_refused_by_rbac_is_reported_and_written_once_allowed() {
    let parts = Harness::start_without_operator().await;
    let ns = parts.ns.clone();
    let mut options = Options::new(parts.cp, &["--namespace", &ns, "--graph-url", &parts.emulator.url]);
    options.kubeconfig = parts.cp.account_without_status_writes(&ns, "no-status");
    let operator = Operator::start_with(options).unwrap();
    operator.wait_ready().await;
    let h = parts.with_operator(operator);

    h.emulator.add_operation(json!({"userId": "u1", "id": "op-rbac", "status": "succeeded"})).await;
    h.create("rbac", spec("u1", "op-rbac")).await;
    // Graph was asked and answered, the write was refused: counted, logged, evented.
    let refused = eventually("the refused write counted", Duration::from_secs(30), || async {
        let n = errors(&h.operator, "KubernetesApiError").await;
        if n >= 1.0 { Ok(n) } else { Err(format!("{n}")) }
    })
    .await;
    assert!(!h.emulator.gets_for("op-rbac").await.is_empty(), "Graph was not asked");
    assert!(h.api().get("rbac").await.unwrap().status.is_none(), "a status was written without the permission");
    let logs = h.operator.logs();
    assert!(logs.contains("KubernetesApiError") && logs.contains("forbidden"), "the refusal is not in the log");
    let events = h.events("rbac").await;
    assert!(events.iter().any(|e| e.1 == "KubernetesApiError"), "no event says so: {events:?}");

    // Granted: the next retry writes what Graph said.
    h.cp.kubectl_ok(&[
        "-n",
        &ns,
        "patch",
        "role",
        "no-status",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/rules/1/verbs/-","value":"patch"}]"#,
    ]);
    let done = h.wait_condition("rbac", "Ready", "True").await;
    assert_eq!(done.status.unwrap().status.as_deref(), Some("succeeded"));
    assert!(errors(&h.operator, "KubernetesApiError").await >= refused);
}

#[tokio::test]
async fn a_status_write_that_conflicts_is_redone_on_the_current_object() {
    let h = Harness::start(&[]).await;
    h.emulator
        .add_operation(json!({"userId": "u1", "id": "op-409", "status": "succeeded",
                              "respond": [{"status": 200, "delayMs": 5000}]}))
        .await;
    h.create("conflict", spec("u1", "op-409")).await;
    // The conditions are written while Graph is slow; then another writer changes the object
    // before Graph answers, so the operator's write (conditional on the version it read)
    // conflicts.
    h.wait_for("conflict", "WaitingForGraph", Duration::from_secs(20), |o| {
        condition(o, "Reconciling").is_some_and(|c| c.1 == "WaitingForGraph")
    })
    .await;
    let label = json!({"metadata": {"labels": {"team": "identity"}}});
    h.api().patch("conflict", &PatchParams::default(), &Patch::Merge(&label)).await.unwrap();

    let done = h.wait_condition("conflict", "Ready", "True").await;
    let status = done.status.unwrap();
    assert_eq!(status.status.as_deref(), Some("succeeded"));
    assert_eq!(done.metadata.labels.unwrap()["team"], "identity", "the other writer's change was kept");
    // The conflict happened (the answer of the held GET could not be written, so Graph was
    // read again for the current object), and it is not an error.
    let gets = h.emulator.gets_for("op-409").await;
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert_eq!(errors(&h.operator, "KubernetesApiError").await, 0.0);
}
