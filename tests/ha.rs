//! Two replicas with leader election on a Lease (4 s): only the leader polls Graph; a
//! SIGKILLed leader is replaced within the lease duration and every resource still ends
//! where its operation does; a leader stopped cleanly (SIGTERM) releases the Lease so the
//! follower takes over at once; a leader whose Lease another holder takes stops at its
//! next renewal and does not take it back.
//!
//! Takeover is measured from the kill (or the clean exit) to the first Graph request that
//! reaches the emulator afterwards: with the old leader gone, only the new one can send it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use pwreset_testkit::harness::{HarnessParts, SECRET};
use pwreset_testkit::observe::{History, Seen, Table, metric_sum, now_ms, operation_gets, request_log};
use pwreset_testkit::{Harness, Operator, eventually};
use serde_json::{Value, json};

/// Takeover and hand-over are timed in wall-clock milliseconds: the tests of this file run one at a time, so
/// they do not slow each other down on a 2-core machine (a bound loosened for that would
/// mean nothing).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LEASE_NAME: &str = "pwreset-operator";
const LEASE_SECONDS: i64 = 4;
/// Allowed on top of the lease duration: the follower's own retry step, starting the
/// controller, listing, the first reconcile.
const TAKEOVER_MARGIN_MS: i64 = 3000;
/// "At once" after a clean release: well under the lease duration.
const HANDOVER_MAX_MS: i64 = 1500;

fn replica(h: &HarnessParts, pod: &str) -> Operator {
    let args = [
        "--namespace",
        &h.ns,
        "--graph-url",
        &h.emulator.url,
        "--poll-interval",
        "1s",
        "--leader-elect",
        "--leader-election-namespace",
        &h.ns,
        "--leader-election-lease-duration",
        "4s",
    ];
    Operator::start_with_env(h.cp, &args, &[("POD_NAME", pod)])
}

async fn holder(client: &kube::Client, ns: &str) -> Option<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), ns).get_opt(LEASE_NAME).await.ok()??;
    lease.spec?.holder_identity
}

async fn wait_holder(client: &kube::Client, ns: &str, pod: &str) {
    eventually(&format!("Lease held by {pod}"), Duration::from_secs(30), || async {
        match holder(client, ns).await {
            Some(h) if h == pod => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// Graph requests a replica has counted (0 when it never made one: the family is absent).
/// An unreachable `/metrics` fails the test: read as 0 it would pass "the follower sent
/// nothing" checks for a replica that is not even running.
async fn graph_requests(op: &Operator) -> f64 {
    match op.http_get("/metrics").await {
        Ok((200, body)) => metric_sum(&body, "pwreset_graph_requests_total"),
        Ok((status, body)) => panic!("/metrics answered {status}: {body}"),
        Err(e) => panic!("/metrics unreachable: {e:#}"),
    }
}

/// The first operation GET that reached the emulator after `after_ms`.
async fn first_get_after(h: &HarnessParts, after_ms: i64, timeout: Duration) -> i64 {
    eventually("a Graph request from the new leader", timeout, || async {
        let log = request_log(&h.emulator).await;
        operation_gets(&log, None)
            .iter()
            .filter_map(|g| g["timeMs"].as_i64())
            .find(|&t| t > after_ms)
            .ok_or_else(|| "none yet".to_string())
    })
    .await
}

fn by_id(user: &str, op: &str) -> Value {
    json!({"userId": user, "operationId": op, "credentialsSecretRef": {"name": SECRET}})
}

/// Watches the follower for `window` while the leader works: it must send nothing.
async fn follower_stays_idle(leader: &Operator, follower: &Operator, window: Duration) -> (f64, f64) {
    let until = now_ms() + window.as_millis() as i64;
    while now_ms() < until {
        let sent = graph_requests(follower).await;
        assert_eq!(sent, 0.0, "the follower polled Graph while the leader lives");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (graph_requests(leader).await, graph_requests(follower).await)
}

#[tokio::test]
async fn only_the_leader_polls_and_a_killed_leader_is_replaced_within_the_lease() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let parts = Harness::start_without_operator().await;
    let mut a = replica(&parts, "replica-a");
    wait_holder(&parts.client, &parts.ns, "replica-a").await;
    let b = replica(&parts, "replica-b");
    b.wait_ready().await;

    // Operations that end over the next 6–24 s: some are still running at the kill.
    let ends: Vec<(String, &str)> =
        (0..12).map(|i| (format!("op-ha-{i}"), if i % 3 == 0 { "failed" } else { "succeeded" })).collect();
    for (i, (id, end)) in ends.iter().enumerate() {
        parts
            .emulator
            .add_operation(json!({"userId": "hal", "id": id, "steps": [
                {"status": "notStarted", "afterMs": 0},
                {"status": "running", "afterMs": 500},
                {"status": end, "afterMs": 6000 + 1500 * i as u64},
            ]}))
            .await;
    }
    let h = parts;
    let api = Api::namespaced(h.client.clone(), &h.ns);
    let history = History::start(api);
    for (i, (id, _)) in ends.iter().enumerate() {
        pwreset_testkit::harness::create(&h.client, &h.ns, &format!("ha-{i}"), by_id("hal", id)).await;
    }

    // While the leader lives, only it polls.
    eventually("the leader polls", Duration::from_secs(20), || async {
        let n = graph_requests(&a).await;
        if n >= 5.0 { Ok(()) } else { Err(format!("{n} requests")) }
    })
    .await;
    let (leader_sent, follower_sent) = follower_stays_idle(&a, &b, Duration::from_secs(3)).await;
    assert!(leader_sent > 0.0 && follower_sent == 0.0);
    let finished_before = history.snapshot().values().filter(|v| v.last().is_some_and(Seen::finished)).count();
    assert!(finished_before < ends.len(), "everything finished before the kill: nothing left to take over");

    let killed_ms = now_ms();
    a.kill();
    let gone_ms = now_ms();
    let first = first_get_after(&h, gone_ms, Duration::from_secs(LEASE_SECONDS as u64 + 20)).await;
    let takeover = first - killed_ms;
    assert!(graph_requests(&b).await > 0.0, "the new leader counts its requests");
    wait_holder(&h.client, &h.ns, "replica-b").await;

    // Every resource still ends where its operation does.
    for (i, (_, end)) in ends.iter().enumerate() {
        let name = format!("ha-{i}");
        let last = history.wait_for(&name, "Finished", Duration::from_secs(60), Seen::finished).await;
        assert_eq!(last.status.as_deref(), Some(*end), "{name}");
        let (type_, reason) = if *end == "succeeded" { ("Ready", "Succeeded") } else { ("Stalled", "OperationFailed") };
        assert!(last.has(type_, "True", reason), "{name}: {:?}", last.conditions);
    }
    // Nothing went back while two processes took turns.
    for (name, versions) in history.snapshot() {
        let ranks: Vec<u8> = versions
            .iter()
            .map(|v| match v.status.as_deref() {
                None => 0,
                Some("notStarted") => 1,
                Some("running") => 2,
                Some(_) => 3,
            })
            .collect();
        assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{name} went back: {versions:?}");
    }
    for op in [&a, &b] {
        assert!(!op.logs().contains("panicked"), "{}", op.log_path().display());
    }

    let mut table = Table::new(&["measure", "value", "limit"]);
    table.row(vec!["leader GETs before the kill".into(), leader_sent.to_string(), "> 0".into()]);
    table.row(vec!["follower GETs while the leader lived".into(), follower_sent.to_string(), "0".into()]);
    table.row(vec!["resources finished at the kill".into(), format!("{finished_before}/{}", ends.len()), "-".into()]);
    table.row(vec![
        "SIGKILL -> first GET of the new leader".into(),
        format!("{:.2}s", takeover as f64 / 1e3),
        format!("<= lease {LEASE_SECONDS}s + {:.1}s", TAKEOVER_MARGIN_MS as f64 / 1e3),
    ]);
    println!("\n{}", table.render());
    assert!(
        takeover <= LEASE_SECONDS * 1000 + TAKEOVER_MARGIN_MS,
        "the follower took {takeover} ms to take over after the leader was killed (lease {LEASE_SECONDS} s)"
    );
}

#[tokio::test]
async fn a_clean_sigterm_releases_the_lease_and_the_follower_takes_over_at_once() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let parts = Harness::start_without_operator().await;
    let mut a = replica(&parts, "replica-a");
    wait_holder(&parts.client, &parts.ns, "replica-a").await;
    let b = replica(&parts, "replica-b");
    b.wait_ready().await;
    // Operations that never end: there is always something to poll.
    for i in 0..4 {
        parts.emulator.add_operation(json!({"userId": "hal", "id": format!("op-run-{i}"), "status": "running"})).await;
    }
    let h = parts;
    for i in 0..4 {
        pwreset_testkit::harness::create(&h.client, &h.ns, &format!("run-{i}"), by_id("hal", &format!("op-run-{i}")))
            .await;
    }
    eventually("the leader polls", Duration::from_secs(20), || async {
        let n = graph_requests(&a).await;
        if n >= 4.0 { Ok(()) } else { Err(format!("{n} requests")) }
    })
    .await;
    let (leader_sent, follower_sent) = follower_stays_idle(&a, &b, Duration::from_secs(2)).await;

    let stop_ms = now_ms();
    let status = a.stop().expect("replica-a was running");
    let exited_ms = now_ms();
    assert!(status.success(), "SIGTERM must end the leader cleanly: {status:?}\n{}", a.logs());
    assert!(a.logs().contains("released the lease"), "the leader did not release the Lease:\n{}", a.logs());
    let first = first_get_after(&h, exited_ms, Duration::from_secs(LEASE_SECONDS as u64 + 20)).await;
    let handover = first - exited_ms;
    wait_holder(&h.client, &h.ns, "replica-b").await;
    assert!(!b.logs().contains("panicked"));

    let mut table = Table::new(&["measure", "value", "limit"]);
    table.row(vec!["leader GETs before SIGTERM".into(), leader_sent.to_string(), "> 0".into()]);
    table.row(vec!["follower GETs while the leader lived".into(), follower_sent.to_string(), "0".into()]);
    table.row(vec![
        "SIGTERM -> exit (status 0)".into(),
        format!("{:.2}s", (exited_ms - stop_ms) as f64 / 1e3),
        "-".into(),
    ]);
    table.row(vec![
        "exit -> first GET of the new leader".into(),
        format!("{:.2}s", handover as f64 / 1e3),
        format!("<= {:.1}s (lease {LEASE_SECONDS}s)", HANDOVER_MAX_MS as f64 / 1e3),
    ]);
    println!("\n{}", table.render());
    assert!(
        handover <= HANDOVER_MAX_MS,
        "after a clean release the follower took {handover} ms to take over; it should not wait for the {LEASE_SECONDS} s \
         lease to run out"
    );
}

#[tokio::test]
async fn a_leader_whose_lease_is_taken_stops_at_once() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let parts = Harness::start_without_operator().await;
    let mut a = replica(&parts, "pod-a");
    a.wait_ready().await;
    wait_holder(&parts.client, &parts.ns, "pod-a").await;
    parts.emulator.add_operation(json!({"userId": "hal", "id": "op-steal", "status": "running"})).await;
    pwreset_testkit::harness::create(&parts.client, &parts.ns, "steal", by_id("hal", "op-steal")).await;
    // Control: the leader polls about every second.
    eventually("the leader polls", Duration::from_secs(20), || async {
        let n = parts.emulator.gets_for("op-steal").await.len();
        if n >= 3 { Ok(()) } else { Err(format!("{n} GETs")) }
    })
    .await;

    // Another holder takes the Lease (as a replica whose clock ran ahead, or a person).
    // MicroTime: microseconds, as the apiserver parses it.
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let steal = json!({"spec": {"holderIdentity": "intruder", "acquireTime": now, "renewTime": now,
                                "leaseDurationSeconds": 60}});
    Api::<Lease>::namespaced(parts.client.clone(), &parts.ns)
        .patch(LEASE_NAME, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&steal))
        .await
        .unwrap();
    let stolen_ms = now_ms();
    let exit = eventually("the old leader stopped", Duration::from_secs(LEASE_SECONDS as u64 + 10), || async {
        a.exited().ok_or_else(|| "still running".to_string())
    })
    .await;
    let stopped_ms = now_ms();
    assert!(!exit.success(), "a lost lease is a failure the kubelet restarts: {exit:?}");
    assert!(a.logs().contains("lost the leader lease"), "{}", a.log_tail(20));
    // It noticed at its next renewal, within the lease duration, and did not take it back.
    assert!(stopped_ms - stolen_ms <= LEASE_SECONDS * 1000 + 1000, "stopped {} ms after", stopped_ms - stolen_ms);
    assert_eq!(holder(&parts.client, &parts.ns).await.as_deref(), Some("intruder"));
    // No Graph call after it stopped (the intruder is not a replica: nobody polls now).
    let late: Vec<Value> = parts
        .emulator
        .gets_for("op-steal")
        .await
        .into_iter()
        .filter(|g| g["timeMs"].as_i64() > Some(stopped_ms))
        .collect();
    assert!(late.is_empty(), "{late:#?}");
    a.kill();
}
