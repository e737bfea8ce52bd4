//! The watch losing its place: the control plane restarts (data kept), the operator's watch
//! reconnects, finds its resourceVersion gone (410) and lists everything again. Objects that
//! did not change must not trigger anything (the watch's trigger filter: generation, pause
//! and re-poll annotations): no Graph call before a poll is due and no status write. An
//! operator process that never saw the resources (an upgrade, a new pod) polls the running
//! ones once and writes nothing that did not change. Breaking the trigger filter fails it.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, PostParams};
use pwreset_operator::api::PasswordResetOperation;
use pwreset_testkit::harness::create_secret;
use pwreset_testkit::observe::{now_ms, resource_versions};
use pwreset_testkit::{ControlPlane, Emulator, Operator, condition, eventually};
use serde_json::{Value, json};

const SECRET: &str = "graph-credentials";
const RUNNING: usize = 8;
const FINISHED: usize = 8;

fn spec(op: &str) -> Value {
    // Polls a minute apart: any GET of a running resource within the test is one too many.
    json!({"userId": "u1", "operationId": op, "credentialsSecretRef": {"name": SECRET}, "pollInterval": "60s"})
}

async fn gets(emulator: &Emulator) -> Vec<Value> {
    emulator.requests().await.into_iter().filter(|r| r["kind"] == "operationGet").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relist_and_a_restart_cost_no_graph_call_before_it_is_due_and_no_write() {
    let cp = ControlPlane::start();
    cp.install_crds();
    let client = cp.client().await;
    let ns = pwreset_testkit::unique_name("relist");
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.unwrap();
    let emulator = Emulator::start();
    let token = format!("tok-{}", uuid::Uuid::new_v4());
    emulator.add_token(&token, "contoso").await;
    create_secret(&client, &ns, SECRET, json!({"token": token})).await;
    let args = ["--namespace", &ns, "--graph-url", &emulator.url];
    let mut first = Operator::start(&cp, &args);
    first.wait_ready().await;

    let api: Api<PasswordResetOperation> = Api::namespaced(client.clone(), &ns);
    for i in 0..RUNNING {
        emulator.add_operation(json!({"userId": "u1", "id": format!("op-run-{i}"), "status": "running"})).await;
        pwreset_testkit::harness::create(&client, &ns, &format!("run-{i}"), spec(&format!("op-run-{i}"))).await;
    }
    for i in 0..FINISHED {
        emulator.add_operation(json!({"userId": "u1", "id": format!("op-done-{i}"), "status": "succeeded"})).await;
        pwreset_testkit::harness::create(&client, &ns, &format!("done-{i}"), spec(&format!("op-done-{i}"))).await;
    }
    let settled = |want_running: usize, want_done: usize| {
        let api = api.clone();
        async move {
            let list = api.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
            let running =
                list.items.iter().filter(|o| condition(o, "Reconciling").is_some_and(|c| c.1 == "Running")).count();
            let done = list.items.iter().filter(|o| condition(o, "Ready").is_some_and(|c| c.0 == "True")).count();
            if running == want_running && done == want_done {
                Ok(())
            } else {
                Err(format!("{running} running, {done} done"))
            }
        }
    };
    eventually("every resource polled once", Duration::from_secs(60), || settled(RUNNING, FINISHED)).await;
    let before = gets(&emulator).await;
    assert_eq!(before.len(), RUNNING + FINISHED, "one GET each: {before:#?}");
    let written = resource_versions(&api).await;

    // The control plane restarts under the operator; its watch must list again.
    let restarted_at = now_ms();
    let restart = &cp;
    tokio::task::block_in_place(|| restart.restart());
    // Control: the operator works after the restart (a new resource is polled and written),
    // so the silence below is not a dead operator.
    emulator.add_operation(json!({"userId": "u1", "id": "op-after", "status": "succeeded"})).await;
    let new = pwreset_testkit::kube::resource("after", spec("op-after"));
    eventually("the API back", Duration::from_secs(60), || async {
        api.create(&PostParams::default(), &new).await.map(|_| ()).map_err(|e| e.to_string())
    })
    .await;
    eventually("the new resource done", Duration::from_secs(60), || settled(RUNNING, FINISHED + 1)).await;
    let after: Vec<Value> =
        gets(&emulator).await.into_iter().filter(|g| g["timeMs"].as_i64() > Some(restarted_at)).collect();
    assert_eq!(after.len(), 1, "only the new resource was asked about: {after:#?}");
    assert_eq!(after[0]["operationId"], "op-after");
    let logs = first.logs();
    assert!(
        logs.contains("410") || logs.contains("too old") || logs.contains("Expired"),
        "the operator's watch never had to list again: {}",
        first.log_tail(30)
    );
    let unchanged: Vec<_> = resource_versions(&api).await.into_iter().filter(|(name, _)| name != "after").collect();
    assert_eq!(unchanged, written, "a status was written again after the relist");

    // An operator process that never saw these resources (an upgrade, a new pod) polls the
    // running ones once (it does not know when they were last polled) and writes nothing
    // that did not change; the finished ones cost nothing.
    first.kill();
    let second_started = now_ms();
    let second = Operator::start(&cp, &args);
    second.wait_ready().await;
    let polled_again =
        eventually("the running resources polled by the new process", Duration::from_secs(30), || async {
            let polled: Vec<Value> =
                gets(&emulator).await.into_iter().filter(|g| g["timeMs"].as_i64() > Some(second_started)).collect();
            if polled.len() >= RUNNING { Ok(polled) } else { Err(format!("{} GETs", polled.len())) }
        })
        .await;
    assert_eq!(polled_again.len(), RUNNING, "finished resources cost no Graph call: {polled_again:#?}");
    assert!(polled_again.iter().all(|g| g["operationId"].as_str().unwrap().starts_with("op-run-")));
    let written_after = resource_versions(&api).await;
    let now: Vec<_> = written_after.into_iter().filter(|(name, _)| name != "after").collect();
    assert_eq!(now, written, "the new process wrote a status that did not change");
}
