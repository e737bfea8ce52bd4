//! Upgrades: the current build started on resources exactly as a previous build left them
//! (`tests/upgrade/*.json`, recorded with that build by `record-upgrade-fixture`, see
//! `testkit/src/upgrade.rs`) resumes without extra writes: nothing finished, paused or
//! blocked is asked about or written again, running operations are polled once and not
//! rewritten when Graph says the same. Control: one operation moved on while the operator
//! was away, and that one is written.

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams, PostParams};
use pwreset_operator::api::PasswordResetOperation;
use pwreset_testkit::observe::resource_versions;
use pwreset_testkit::upgrade::{self, Fixture, NAMESPACE, SECRET};
use pwreset_testkit::{ControlPlane, Emulator, Operator, condition, eventually, harness, kube as tk};
use serde_json::json;

/// Loads `fixture` into the namespace: each resource created with its annotations and spec,
/// then its status written through the status subresource, as the previous build wrote it.
async fn load(api: &Api<PasswordResetOperation>, fixture: &Fixture) {
    for saved in &fixture.resources {
        let name = saved["name"].as_str().expect("name");
        let mut obj = tk::resource(name, saved["spec"].clone());
        obj.metadata.annotations = serde_json::from_value(saved["annotations"].clone()).expect("annotations");
        api.create(&PostParams::default(), &obj).await.expect("create");
        let status = json!({"status": saved["status"]});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.expect("status");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_written_by_a_previous_build_resume_without_extra_writes() {
    let fixtures = upgrade::fixtures().expect("tests/upgrade/*.json");
    assert!(!fixtures.is_empty(), "no fixture in {}", upgrade::fixture_dir().display());
    for (file, fixture) in fixtures {
        println!("upgrade from {file} ({}, recorded {})", fixture.build, fixture.recorded);
        let names: Vec<&str> = fixture.resources.iter().filter_map(|r| r["name"].as_str()).collect();
        let mut wanted: Vec<&str> = upgrade::cases().iter().map(|c| c.name).collect();
        wanted.sort();
        assert_eq!(names, wanted, "{file} holds every case of the scenario");
        replay(&file, &fixture).await;
    }
}

async fn replay(file: &str, fixture: &Fixture) {
    let cp = ControlPlane::start();
    cp.install_crds();
    let client = cp.client().await;
    tk::create_namespace(&client, NAMESPACE).await.expect("namespace");
    let emulator = Emulator::start();
    // The same Graph as when recorded (the same operations, created at the same moments),
    // except that `moves-on` finished in the meantime.
    let created = |c: &upgrade::Case| {
        let saved = fixture.resources.iter().find(|r| r["name"] == c.name)?;
        saved["status"]["createdDateTime"].as_str().map(str::to_string)
    };
    let moved = |c: &upgrade::Case| if c.name == "moves-on" { Some("succeeded") } else { c.graph };
    let token = upgrade::script_graph(&emulator, moved, created).await;
    harness::create_secret(&client, NAMESPACE, SECRET, json!({"token": token})).await;
    let api: Api<PasswordResetOperation> = Api::namespaced(client.clone(), NAMESPACE);
    load(&api, fixture).await;
    let before = resource_versions(&api).await;

    let operator = Operator::start(&cp, &["--namespace", NAMESPACE, "--graph-url", &emulator.url]);
    operator.wait_ready().await;
    let n = fixture.resources.len() as f64;
    eventually("every resource reconciled once, moves-on written", Duration::from_secs(60), || async {
        let moved = api.get("moves-on").await.map_err(|e| e.to_string())?;
        let done = condition(&moved, "Ready").is_some_and(|c| c.0 == "True");
        let reconciled = operator.metric("pwreset_reconcile_duration_seconds_count").await.unwrap_or(0.0);
        if done && reconciled >= n { Ok(()) } else { Err(format!("moves-on Ready: {done}, {reconciled} reconciles")) }
    })
    .await;

    // Graph was asked about the unfinished, unpaused operations, once each.
    let mut asked: Vec<String> = emulator
        .requests()
        .await
        .into_iter()
        .filter(|r| r["kind"] == "operationGet")
        .map(|r| r["operationId"].as_str().unwrap_or_default().to_string())
        .collect();
    asked.sort();
    assert_eq!(asked, ["op-moves-on", "op-not-started", "op-running"], "{file}: Graph calls after the upgrade");
    let moved = api.get("moves-on").await.unwrap();
    assert_eq!(moved.status.as_ref().and_then(|s| s.status.clone()).as_deref(), Some("succeeded"));

    // Nothing else was written.
    let after = resource_versions(&api).await;
    let changed: Vec<&String> =
        before.iter().zip(&after).filter(|(b, a)| b != a).map(|(b, _)| &b.0).collect::<Vec<_>>();
    for name in changed.iter().filter(|n| n.as_str() != "moves-on") {
        let saved = fixture.resources.iter().find(|r| r["name"] == name.as_str()).unwrap();
        let now = api.get(name).await.unwrap();
        println!("{name}: saved {}\nnow   {}", saved["status"], serde_json::to_string(&now.status).unwrap());
    }
    assert_eq!(changed, ["moves-on"], "{file}: statuses rewritten by the new build\n{}", operator.log_tail(40));
    assert!(!operator.logs().contains("panicked"), "{file}: the operator panicked\n{}", operator.log_tail(40));
}
