//! The adaptive limiter against the throttling Graph really does: a token bucket per app
//! and tenant (the emulator's `throttle`), whose 429s depend on how fast the client sends.
//! The fault suite (tests/chaos.rs) covers the other kind, 429s drawn whatever the rate,
//! where the limiter must not slow down.
//!
//! Demand here is 150 resources polled every second against a bucket refilled at 10/s, with
//! the operator allowed 50/s: Graph's Retry-After pauses (honoured per tenant, with no burst
//! after them) and the adaptive rate together must hold the sending near the refill, and
//! the rate must not collapse while doing it (it fell to 2.4/s, goodput 3.7/s, before).

use std::time::Duration;

use pwreset_testkit::harness::{SECRET, TENANT};
use pwreset_testkit::observe::metric_sum;
use pwreset_testkit::{Harness, Operator, eventually};
use serde_json::json;

const REFILL: f64 = 10.0;
const CONFIGURED: f64 = 50.0;
const RESOURCES: usize = 150;
/// Time to find the refill (a few windows and a probe or two), then the judged period.
const SETTLE: Duration = Duration::from_secs(30);
const JUDGED: Duration = Duration::from_secs(60);
/// The band, as in the limiter's unit tests (src/graph/limiter/tests.rs), judged on what
/// users get: GETs sent at 0.8–1.5 × the refill (the allowed rate and Graph's Retry-After
/// pauses together), at least 80% of the refill getting through, at most a fifth of the
/// GETs throttled, and the allowed rate never below a third of the refill (no collapse).
const LOWEST: f64 = 1.0 / 3.0;
const SENT: (f64, f64) = (0.8, 1.5);

/// `n` operations that stay running (op-0…), each tracked by a resource (r-0…).
async fn track_running_operations(h: &Harness, n: usize) {
    let ops: Vec<_> = (0..n).map(|i| json!({"userId": "u1", "id": format!("op-{i}"), "status": "running"})).collect();
    h.emulator.client().add_operations(ops).await.unwrap();
    for i in 0..n {
        let spec = json!({"userId": "u1", "operationId": format!("op-{i}"), "credentialsSecretRef": {"name": SECRET}});
        h.create(&format!("r-{i}"), spec).await;
    }
}

async fn allowed_rate(op: &Operator) -> f64 {
    let (status, body) = op.http_get("/metrics").await.expect("/metrics reachable");
    assert_eq!(status, 200);
    let rate = metric_sum(&body, "pwreset_tenant_allowed_rate");
    assert!(rate > 0.0, "no pwreset_tenant_allowed_rate sample: {body}");
    rate
}

#[tokio::test]
async fn the_limiter_settles_near_a_token_buckets_refill_without_collapsing() {
    let rate = CONFIGURED.to_string();
    let h = Harness::start(&["--tenant-rate", &rate, "--tenant-burst", &rate]).await;
    h.emulator
        .admin("POST", "/tenants", json!({"id": TENANT, "throttle": {"capacity": 20, "refillPerSecond": REFILL}}))
        .await;
    track_running_operations(&h, RESOURCES).await;
    // Control: Graph does throttle this demand (the bucket is real), so the limiter is tested.
    eventually("Graph throttling the tenant", Duration::from_secs(30), || async {
        let stats = h.emulator.client().stats().await.map_err(|e| e.to_string())?;
        let throttled = stats["byStatus"]["429"].as_u64().unwrap_or(0);
        if throttled > 0 { Ok(()) } else { Err(stats.to_string()) }
    })
    .await;
    let started = jiff::Timestamp::now().as_millisecond();

    // Sampling at a fixed cadence is the measurement itself, not a wait for something.
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while samples.len() < ((SETTLE + JUDGED).as_millis() / 500) as usize {
        tick.tick().await;
        samples.push(allowed_rate(&h.operator).await);
    }
    let judged = &samples[(SETTLE.as_millis() / 500) as usize..];
    let (lowest, highest) = judged.iter().fold((f64::MAX, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    let mean = judged.iter().sum::<f64>() / judged.len() as f64;

    // What got through, from Graph's side, over the judged period.
    let from = started + SETTLE.as_millis() as i64;
    let log = h.emulator.requests().await;
    let judged_gets: Vec<_> =
        log.iter().filter(|r| r["kind"] == "operationGet" && r["timeMs"].as_i64().is_some_and(|t| t >= from)).collect();
    let ok = judged_gets.iter().filter(|r| r["status"] == 200).count() as f64;
    let throttled = judged_gets.iter().filter(|r| r["status"] == 429).count() as f64;
    let seconds = JUDGED.as_secs_f64();
    println!(
        "allowed rate over {seconds} s: lowest {lowest:.2}/s, mean {mean:.2}/s, highest {highest:.2}/s; \
         sent {:.2}/s, goodput {:.2}/s; 429 share {:.1}%",
        (ok + throttled) / seconds,
        ok / seconds,
        100.0 * throttled / (ok + throttled).max(1.0)
    );
    let sent = (ok + throttled) / seconds;
    assert!(lowest >= LOWEST * REFILL, "the rate collapsed to {lowest:.2}/s (refill {REFILL}/s): {judged:?}");
    assert!(
        (SENT.0 * REFILL..=SENT.1 * REFILL).contains(&sent),
        "GETs sent at {sent:.2}/s (refill {REFILL}/s), allowed rate mean {mean:.2}/s: {judged:?}"
    );
    assert!(ok / seconds >= 0.8 * REFILL, "goodput {:.2}/s of a {REFILL}/s refill", ok / seconds);
    assert!(throttled / (ok + throttled) <= 0.2, "{throttled} of {} GETs throttled", ok + throttled);
}

const FAIR_RESOURCES: usize = 80;
const FAIR_RATE: u32 = 8;
/// Judged after the first round (every resource polled once) has long passed.
const FAIR_SETTLE: Duration = Duration::from_secs(20);
const FAIR_JUDGED: Duration = Duration::from_secs(40);

/// When the tenant's rate is what limits polling (80 resources due every second, 8 GETs/s
/// allowed), each resource waits its turn: about 80 / 8 = 10 s between its polls. None may
/// wait far longer while others are polled again and again (kube-runtime's scheduler hands
/// out held requests in hash order, which starved some resources for minutes).
#[tokio::test]
async fn when_the_tenant_rate_is_the_bottleneck_every_resource_still_gets_its_turn() {
    let rate = FAIR_RATE.to_string();
    let h = Harness::start(&["--tenant-rate", &rate, "--tenant-burst", &rate]).await;
    track_running_operations(&h, FAIR_RESOURCES).await;
    let from = jiff::Timestamp::now().as_millisecond() + FAIR_SETTLE.as_millis() as i64;
    let to = from + FAIR_JUDGED.as_millis() as i64;
    // Waiting out the window is the measurement itself.
    tokio::time::sleep(FAIR_SETTLE + FAIR_JUDGED).await;

    let log = h.emulator.requests().await;
    let mut by_op: std::collections::BTreeMap<String, Vec<i64>> =
        (0..FAIR_RESOURCES).map(|i| (format!("op-{i}"), Vec::new())).collect();
    for r in log.iter().filter(|r| r["kind"] == "operationGet") {
        let (Some(t), Some(op)) = (r["timeMs"].as_i64(), r["operationId"].as_str()) else { continue };
        if (from..to).contains(&t) {
            by_op.entry(op.to_string()).or_default().push(t);
        }
    }
    // Control: polling is limited by the rate (demand is 10 times it), so turns are tested.
    let total: usize = by_op.values().map(Vec::len).sum();
    let sent = total as f64 / FAIR_JUDGED.as_secs_f64();
    assert!(
        (0.7 * FAIR_RATE as f64..=1.3 * FAIR_RATE as f64).contains(&sent),
        "GETs at {sent:.2}/s over the window, expected about the tenant rate {FAIR_RATE}/s"
    );
    // The longest wait of each resource for its next poll within the window (its edges included).
    let fair = FAIR_RESOURCES as f64 / FAIR_RATE as f64;
    let (worst_op, worst_gap) = by_op
        .iter_mut()
        .map(|(op, times)| {
            times.sort_unstable();
            let edges = std::iter::once(from).chain(times.iter().copied()).chain(std::iter::once(to));
            let stops: Vec<i64> = edges.collect();
            let gap = stops.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
            (op.clone(), gap as f64 / 1000.0)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    let counts: Vec<usize> = by_op.values().map(Vec::len).collect();
    println!(
        "{total} GETs in {} s ({sent:.2}/s); per resource {}..{}; longest wait {worst_gap:.1} s ({worst_op}), fair turn {fair:.0} s",
        FAIR_JUDGED.as_secs(),
        counts.iter().min().unwrap(),
        counts.iter().max().unwrap()
    );
    assert!(
        worst_gap <= 2.5 * fair,
        "{worst_op} waited {worst_gap:.1} s for a poll while the tenant's {FAIR_RATE} GETs/s went round \
         {FAIR_RESOURCES} resources (a turn every {fair:.0} s); GETs per resource: {counts:?}"
    );
}
