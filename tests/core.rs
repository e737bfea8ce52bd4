//! Promises of the reconcile core, end to end on the real control plane: status writes
//! during a Graph outage, and memory that returns to its baseline when resources, Secrets
//! and tenants go away.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams};
use pwreset_testkit::harness::{SECRET, TENANT, create_secret};
use pwreset_testkit::watch::History;
use pwreset_testkit::{Harness, eventually};
use serde_json::json;

/// Every `pwreset_cache_entries{cache}` value on the operator's /metrics.
async fn cache_entries(h: &Harness) -> BTreeMap<String, f64> {
    let (_, body) = h.operator.http_get("/metrics").await.expect("/metrics answers");
    let mut sizes = BTreeMap::new();
    for line in body.lines().filter(|l| l.starts_with("pwreset_cache_entries{")) {
        let (labels, value) = line.rsplit_once(' ').expect("a sample line");
        let cache = labels.split('"').nth(1).expect("the cache label").to_string();
        sizes.insert(cache, value.parse().expect("a number"));
    }
    assert!(sizes.len() >= 6, "pwreset_cache_entries must list every cache: {sizes:?}");
    sizes
}

/// How many resources have each Ready reason (for failure messages).
async fn reasons(h: &Harness) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for obj in h.api().list(&Default::default()).await.map(|l| l.items).unwrap_or_default() {
        let reason = pwreset_testkit::condition(&obj, "Ready").map(|(_, r, _)| r).unwrap_or_default();
        *counts.entry(reason).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn memory_returns_to_its_baseline_after_a_thousand_resources_with_their_own_secrets_and_tenants_go() {
    let n: usize = std::env::var("PWRESET_MEMORY_N").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let parts = Harness::start_without_operator().await;
    // Register N tenants, each with its own delegated client and refresh token.
    stream::iter(0..n)
        .for_each_concurrent(32, |i| {
            let emulator = &parts.emulator;
            async move {
                let tenant = json!({"id": format!("tenant-{i}"), "clients": [
                    {"clientId": "app", "refreshTokens": [format!("rt-{i}")], "subject": "admin"}
                ]});
                emulator.admin("POST", "/tenants", tenant).await;
            }
        })
        .await;
    // Half the operations run (and keep running while the test looks); the other half answer
    // 404, so their resources keep retrying and hold backoff entries.
    let operations: Vec<_> = (0..n)
        .step_by(2)
        .map(|i| json!({"userId": format!("u{i}"), "id": format!("op{i}"), "status": "running"}))
        .collect();
    parts.emulator.add_operation(json!(operations)).await;
    let extra = [
        "--login-url",
        parts.emulator.url.as_str(),
        "--cache-idle",
        "120s",
        "--not-found-grace",
        "10m",
        "--poll-interval",
        "30s",
    ];
    let operator = parts.start_operator(&extra);
    operator.wait_ready().await;
    let h = parts.with_operator(operator);
    let baseline = cache_entries(&h).await;
    assert!(baseline.values().all(|&n| n == 0.0), "nothing cached before any resource: {baseline:?}");

    stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let h = &h;
            async move {
                let secret = format!("cred-{i}");
                let data = json!({"tenantId": format!("tenant-{i}"), "clientId": "app", "refreshToken": format!("rt-{i}")});
                create_secret(&h.client, &h.ns, &secret, data).await;
                let spec = json!({"userId": format!("u{i}"), "operationId": format!("op{i}"), "credentialsSecretRef": {"name": secret}});
                h.create(&format!("r{i}"), spec).await;
            }
        })
        .await;

    // Positive control: the caches really fill up with one entry per Secret and tenant.
    let full = eventually("every resource to have used its credentials", Duration::from_secs(300), || async {
        let sizes = cache_entries(&h).await;
        let filled = sizes["tokens"] >= n as f64
            && sizes["tenants"] >= n as f64
            && sizes["backoff"] >= (n / 2) as f64
            && sizes["wakeups"] >= n as f64
            && sizes["triggers"] >= n as f64;
        if filled { Ok(sizes) } else { Err(format!("{sizes:?}; resources by reason: {:?}", reasons(&h).await)) }
    })
    .await;
    println!("caches while {n} resources live: {full:?}");

    // Everything goes: resources, Secrets, the namespace itself. (The idle time, 120 s, is
    // far longer than the 30 s poll, so nothing in use is forgotten even on a busy machine;
    // what is gone must be.)
    Api::<Namespace>::all(h.client.clone()).delete(&h.ns, &DeleteParams::default()).await.unwrap();
    let after = eventually("every cache back to its baseline", Duration::from_secs(300), || async {
        let sizes = cache_entries(&h).await;
        if sizes == baseline { Ok(sizes) } else { Err(format!("{sizes:?}")) }
    })
    .await;
    println!("caches after the namespace was deleted: {after:?}");
    let (_, body) = h.operator.http_get("/metrics").await.unwrap();
    assert!(!body.contains("tenant=\"tenant-"), "no metric series of a forgotten tenant remains");
}

#[tokio::test]
async fn a_graph_outage_rewrites_status_only_when_the_reason_changes() {
    const N: usize = 100;
    let outage =
        Duration::from_secs(std::env::var("PWRESET_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(40));
    let h = Harness::start(&["--poll-interval", "2s"]).await;
    let history = History::start(h.api());
    let operations: Vec<_> = (0..N)
        .map(|i| json!({"userId": format!("u{i}"), "id": format!("op{i}"), "tenant": TENANT, "status": "running"}))
        .collect();
    h.emulator.add_operation(json!(operations)).await;
    stream::iter(0..N)
        .for_each_concurrent(16, |i| {
            let h = &h;
            async move {
                let spec = json!({"userId": format!("u{i}"), "operationId": format!("op{i}"),
                                  "credentialsSecretRef": {"name": SECRET}});
                h.create(&format!("r{i}"), spec).await;
            }
        })
        .await;
    for i in 0..N {
        history
            .wait_for(&format!("r{i}"), "Running", Duration::from_secs(120), |s| s.reason("Ready") == Some("Running"))
            .await;
    }

    let before = history.snapshot();
    h.emulator.admin("PUT", "/faults", json!({"rate503": 1.0})).await;
    tokio::time::sleep(outage).await; // the outage itself is the thing measured, not a wait for something
    h.emulator.admin("PUT", "/faults", json!({})).await;
    for i in 0..N {
        h.emulator.set_status(&format!("u{i}"), &format!("op{i}"), "succeeded").await;
    }
    for i in 0..N {
        history.wait_for(&format!("r{i}"), "Succeeded", Duration::from_secs(400), |s| s.finished()).await;
    }

    let log = h.emulator.requests().await;
    let after = history.snapshot();
    let mut worst = (0, 0, String::new());
    for i in 0..N {
        let name = format!("r{i}");
        let new_versions = &after[&name][before[&name].len()..];
        let writes = new_versions.len();
        let mut reasons: Vec<&str> = new_versions.iter().filter_map(|s| s.reason("Ready")).collect();
        reasons.dedup();
        // Positive control: the outage was seen, and retried more than once without a write.
        assert!(reasons.contains(&"GraphUnavailable"), "{name} never saw the outage: {reasons:?}");
        let failed_gets =
            log.iter().filter(|r| r["status"] == 503 && r["operationId"] == format!("op{i}").as_str()).count();
        assert!(failed_gets >= 2, "{name}: only {failed_gets} GETs during the outage; retries must happen");
        assert!(
            writes <= reasons.len() + 1,
            "{name}: {writes} status writes for {} reason changes ({reasons:?}) across {failed_gets} failed GETs",
            reasons.len()
        );
        if writes > worst.0 {
            worst = (writes, failed_gets, format!("{reasons:?}"));
        }
    }
    println!(
        "outage of {}s: at most {} status writes per resource (reasons {}), with {} failed GETs",
        outage.as_secs(),
        worst.0,
        worst.2,
        worst.1
    );
}
