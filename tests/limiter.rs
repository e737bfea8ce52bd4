//! The adaptive limiter against the throttling Graph really does: a token bucket per app
//! and tenant (the emulator's `throttle`), whose 429s depend on how fast the client sends.
//! The fault suite (tests/chaos.rs) covers the other kind, 429s drawn whatever the rate,
//! where the limiter must not slow down.
//!
//! Demand here is 150 resources polled every second against a bucket refilled at 10/s, with
//! the operator allowed 50/s: Graph's Retry-After pauses (honoured per tenant, with no burst
//! after them) and the adaptive rate together must hold the sending near the refill, and
//! the rate must not collapse while doing it (it fell to 2.4/s, goodput 3.7/s, before).

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::DeleteParams;

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

/// Each operation's GET times (Unix ms) within `[from, to)`, sorted, from the emulator's log.
async fn polls_by_operation(h: &Harness, n: usize, from: i64, to: i64) -> BTreeMap<String, Vec<i64>> {
    let mut by_op: BTreeMap<String, Vec<i64>> = (0..n).map(|i| (format!("op-{i}"), Vec::new())).collect();
    for r in h.emulator.requests().await.iter().filter(|r| r["kind"] == "operationGet") {
        let (Some(t), Some(op)) = (r["timeMs"].as_i64(), r["operationId"].as_str()) else { continue };
        if (from..to).contains(&t) {
            by_op.entry(op.to_string()).or_default().push(t);
        }
    }
    by_op.values_mut().for_each(|times| times.sort_unstable());
    by_op
}

/// The operation that waited longest for a poll within `[from, to]` (its edges included),
/// and that wait in seconds.
fn longest_wait(by_op: &BTreeMap<String, Vec<i64>>, from: i64, to: i64) -> (String, f64) {
    by_op
        .iter()
        .map(|(op, times)| {
            let stops: Vec<i64> =
                std::iter::once(from).chain(times.iter().copied()).chain(std::iter::once(to)).collect();
            let gap = stops.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
            (op.clone(), gap as f64 / 1000.0)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
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

    let by_op = polls_by_operation(&h, FAIR_RESOURCES, from, to).await;
    // Control: polling is limited by the rate (demand is 10 times it), so turns are tested.
    let total: usize = by_op.values().map(Vec::len).sum();
    let sent = total as f64 / FAIR_JUDGED.as_secs_f64();
    assert!(
        (0.7 * FAIR_RATE as f64..=1.3 * FAIR_RATE as f64).contains(&sent),
        "GETs at {sent:.2}/s over the window, expected about the tenant rate {FAIR_RATE}/s"
    );
    // The longest wait of each resource for its next poll within the window (its edges included).
    let fair = FAIR_RESOURCES as f64 / FAIR_RATE as f64;
    let (worst_op, worst_gap) = longest_wait(&by_op, from, to);
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

const GONE_RESOURCES: usize = 36;
const GONE_RATE: u32 = 8;
const GONE_SLOTS: &str = "2";
/// Deleted in batches this far apart, so that whatever the housekeeping's phase (it frees a
/// leaked slot at most 30 s later), a slot held by a deleted resource stalls polling for
/// 20 s or more within the window after one of the batches.
const GONE_BATCHES: usize = 3;
const GONE_PER_BATCH: usize = 4;
const GONE_APART: Duration = Duration::from_secs(10);
const GONE_AFTER_LAST: Duration = Duration::from_secs(30);

/// A resource deleted while it waits its turn (due, queued behind the tenant's rate) is
/// still handed to the controller, which finds it gone: the slot it was counted in must
/// come free then, not at the next housekeeping sweep, or a few deletions stall every
/// other resource (here 2 slots, so two deleted resources would stop all polling).
#[tokio::test]
async fn a_resource_deleted_while_it_waits_its_turn_does_not_hold_its_slot() {
    let rate = GONE_RATE.to_string();
    let args = ["--tenant-rate", &rate, "--tenant-burst", &rate, "--max-concurrent-reconciles", GONE_SLOTS];
    let h = Harness::start(&args).await;
    track_running_operations(&h, GONE_RESOURCES).await;
    // Saturated once every resource was polled: from then on each is due again at once.
    eventually("every operation polled once", Duration::from_secs(60), || async {
        let now = jiff::Timestamp::now().as_millisecond();
        let by_op = polls_by_operation(&h, GONE_RESOURCES, 0, now).await;
        match by_op.iter().find(|(_, times)| times.is_empty()) {
            Some((op, _)) => Err(format!("{op} not polled yet")),
            None => Ok(()),
        }
    })
    .await;

    let from = jiff::Timestamp::now().as_millisecond();
    let deleted = GONE_BATCHES * GONE_PER_BATCH;
    for batch in 0..GONE_BATCHES {
        if batch > 0 {
            // The schedule of deletions is what is tested, not a wait for something.
            tokio::time::sleep(GONE_APART).await;
        }
        for i in batch * GONE_PER_BATCH..(batch + 1) * GONE_PER_BATCH {
            h.api().delete(&format!("r-{i}"), &DeleteParams::default()).await.unwrap();
        }
    }
    let last_batch = jiff::Timestamp::now().as_millisecond();
    tokio::time::sleep(GONE_AFTER_LAST).await;
    let to = jiff::Timestamp::now().as_millisecond();

    let by_op = polls_by_operation(&h, GONE_RESOURCES, from, to).await;
    // Control: the deletions took effect (no deleted operation polled once its resource
    // was gone for a couple of seconds), so the slots they held were really in play.
    let after_deletion: usize =
        (0..deleted).map(|i| by_op[&format!("op-{i}")].iter().filter(|&&t| t > last_batch + 2000).count()).sum();
    assert_eq!(after_deletion, 0, "deleted resources' operations were still polled: {by_op:?}");
    let kept: BTreeMap<String, Vec<i64>> = by_op
        .into_iter()
        .filter(|(op, _)| op.trim_start_matches("op-").parse::<usize>().is_ok_and(|i| i >= deleted))
        .collect();
    let fair = kept.len() as f64 / GONE_RATE as f64;
    let (worst_op, worst_gap) = longest_wait(&kept, from, to);
    let counts: Vec<usize> = kept.values().map(Vec::len).collect();
    println!(
        "{deleted} deleted in {GONE_BATCHES} batches; the other {} polled {}..{} times in {:.0} s, longest wait {worst_gap:.1} s ({worst_op}), fair turn {fair:.1} s",
        kept.len(),
        counts.iter().min().unwrap(),
        counts.iter().max().unwrap(),
        (to - from) as f64 / 1000.0
    );
    assert!(
        worst_gap <= 4.0 * fair,
        "{worst_op} waited {worst_gap:.1} s for a poll after resources waiting their turn were deleted (a turn every \
         {fair:.1} s): a deleted resource's slot was not freed; GETs per resource: {counts:?}"
    );
}
