//! The fault suite: many resources against a Graph that fails often, while the operator
//! is SIGKILLed and restarted and the control plane restarts under it.
//!
//! Graph (the emulator) answers 20% 503, 10% 429 with Retry-After 1–3 s, 5% slower than
//! the operator's `--graph-timeout 2s`, 1% truncated JSON. Operations are scripted from a
//! seeded RNG to end in `succeeded` or `failed` a few seconds after they are created.
//! The operator is SIGKILLed 5 times at seeded moments and restarted after a seeded pause;
//! the control plane is restarted once (data and port kept).
//!
//! Pass: every resource ends exactly as its operation does (status.status and the
//! Ready/Stalled/Finished conditions); no GET of an operation came before the Retry-After
//! of the answer before it; a watch running for the whole test never saw a resource's
//! status go back (notStarted < running < succeeded|failed) nor a write after Finished;
//! no operator log says "panicked"; at most B + R Graph requests per tenant in any 1 s window.
//!
//! Size: `CHAOS_SIZE` resources (default 60; `make test` runs 300, `make chaos` 1,000), one
//! tenant (credentials Secret) per 100 of them,
//! `CHAOS_SEED` (default 20260229) picks the scripts, the faults and the kill moments.
//! The summary table is printed to stdout (`-- --nocapture` shows it).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, PostParams};
use pwreset_operator::api::PasswordResetOperation;
use pwreset_testkit::harness::create_secret;
use pwreset_testkit::observe::{
    History, Seen, Table, busiest_window, metric_by_label, metric_min, metric_sum, now_ms, operation_gets, request_log,
    retry_after_violations, secs, status_reason,
};
use pwreset_testkit::{ControlPlane, Emulator, Operator, eventually};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Resources per tenant: a run is spread over `size / 100` tenants (rounded up), each with
/// its own credentials Secret, so Retry-After pauses one tenant while the others go on, as
/// with real tenants.
const PER_TENANT: usize = 100;
const GRAPH_TIMEOUT_MS: i64 = 2000;
const KILLS: usize = 5;
/// The faults' 429s are drawn whatever the rate: the limiter must not chase them. With
/// 10% 429s pausing the tenant for 2 s on average, Retry-After alone holds a tenant to
/// about 5 requests/s; a probe may dip just below the goodput for one window (see
/// src/graph/limiter.rs), never towards the old floor (0.1/s; 0.25/s was seen at 1,000).
const LOWEST_RATE: f64 = 1.0;
/// Longest scripted operation (see `scripts`).
const LONGEST_SCRIPT: Duration = Duration::from_secs(6);

/// Everything a run depends on; printed first so a failure can be replayed.
#[derive(Debug, Clone)]
struct Plan {
    size: usize,
    seed: u64,
    /// Tenants (one credentials Secret each) the resources are spread over.
    tenants: usize,
    /// `--tenant-rate` and `--tenant-burst` (per tenant).
    rate: u32,
    burst: u32,
    /// Resources are created evenly over this long, so some are always in flight.
    spread: Duration,
    /// (pause before it, what) for each disruption, in order.
    disruptions: Vec<(Duration, Disruption)>,
    /// How long the operator stays down after each kill.
    downtimes: Vec<Duration>,
    /// Deadline for every resource to finish after the last disruption.
    drain: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disruption {
    KillOperator,
    RestartControlPlane,
}

impl Plan {
    fn from_env() -> Plan {
        let size: usize = std::env::var("CHAOS_SIZE").ok().and_then(|s| s.parse().ok()).unwrap_or(60).max(1);
        let seed: u64 = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20260229);
        let mut rng = StdRng::seed_from_u64(seed ^ 0x6b69_6c6c);
        let spread = Duration::from_secs_f64(if size <= 100 { 40.0 } else { size as f64 * 0.12 });
        let mut kinds = vec![Disruption::KillOperator; KILLS];
        kinds.push(Disruption::RestartControlPlane);
        kinds.shuffle(&mut rng);
        // The disruptions fall inside the creation window: there is always work in flight.
        let (lo, hi) = (spread.as_secs_f64() / 20.0, spread.as_secs_f64() / 8.0);
        let disruptions = kinds.into_iter().map(|k| (Duration::from_secs_f64(rng.random_range(lo..hi)), k)).collect();
        let downtimes = (0..KILLS).map(|_| Duration::from_secs_f64(rng.random_range(1.0..4.0))).collect();
        let tenants = size.div_ceil(PER_TENANT);
        let rate = (size.div_ceil(tenants) as u32 / 10).max(20);
        Plan {
            size,
            seed,
            tenants,
            rate,
            burst: rate / 2,
            spread,
            disruptions,
            downtimes,
            // Backoff doubles from 5 s up to 300 s: a resource whose GETs fail 6 times in a row
            // (rare, but 1,000 resources roll the dice often) waits ~6 minutes in total.
            drain: Duration::from_secs(if size <= 100 { 420 } else { 1200 }),
        }
    }
}

impl Plan {
    /// How long after the last disruption a resource may finish, apart from its own failed
    /// GETs' backoff (added per resource, see [`chain_wait`]): the creations still to come,
    /// the longest script, and the GETs still needed at the rate Retry-After pauses allow
    /// each tenant (1 / (10% × 2 s) = 5 GETs/s; each resource needs about 4 polls, 30% of
    /// GETs fail), tenants in parallel. With 100 resources per tenant that is ~1.5 min, at
    /// 1,000 resources too: the 673 s once seen there (a limiter at 0.25/s) fails it.
    fn drain_bound(&self, disrupted_after: Duration) -> Duration {
        let creating = self.spread.saturating_sub(disrupted_after);
        let per_tenant = self.size.div_ceil(self.tenants) as f64;
        let paced = Duration::from_secs_f64(per_tenant * 4.0 / 0.7 / 5.0);
        creating + LONGEST_SCRIPT + paced.saturating_sub(creating)
    }
}

/// What `failures` GETs in a row may cost one resource: each may take the operator's
/// `--graph-timeout` to fail, then its backoff with up to 20% jitter (`Jitter::Backoff`; a
/// 429's Retry-After, at most 3 s here, is shorter). Faults are drawn per request, so with
/// 1,000 resources some resource fails 6 or more times in a row (0.3^6 × 1,000 ≈ 0.7): the
/// bound follows the run's own dice, resource by resource, instead of a fixed allowance.
/// (A run at 300 waited 1,064.8 s on 8 failures: 915 s of backoff, its jitter and timeouts.)
fn chain_wait(failures: usize) -> Duration {
    let timeout = Duration::from_millis(GRAPH_TIMEOUT_MS as u64);
    (1..=failures as u32).map(|n| pwreset_operator::decide::backoff(n).mul_f64(1.2) + timeout).sum()
}

/// Per operation, the longest run of GETs in a row that failed (not a 200, or answered
/// after the operator's timeout).
fn failure_chains(gets: &[&Value]) -> BTreeMap<String, usize> {
    let mut sorted: Vec<&Value> = gets.to_vec();
    sorted.sort_by_key(|g| g["timeMs"].as_i64().unwrap_or(0));
    let (mut current, mut longest) = (BTreeMap::<String, usize>::new(), BTreeMap::<String, usize>::new());
    for g in sorted {
        let op = g["operationId"].as_str().unwrap_or_default().to_string();
        let failed = g["status"] != 200 || g["durationMs"].as_i64().unwrap_or(0) >= GRAPH_TIMEOUT_MS;
        let run = current.entry(op.clone()).or_default();
        *run = if failed { *run + 1 } else { 0 };
        let run = *run;
        let best = longest.entry(op).or_default();
        *best = (*best).max(run);
    }
    longest
}

/// One scripted operation and the resource that tracks it.
#[derive(Debug, Clone)]
struct Scripted {
    name: String,
    user: String,
    operation: String,
    /// The credentials Secret, and so the tenant.
    secret: String,
    /// `succeeded` or `failed`: where the operation ends.
    outcome: &'static str,
    steps: Value,
}

fn scripts(plan: &Plan) -> Vec<Scripted> {
    let mut rng = StdRng::seed_from_u64(plan.seed);
    (0..plan.size)
        .map(|i| {
            let running_at: u64 = rng.random_range(200..1500);
            let end_at: u64 = rng.random_range(2000..6000);
            let outcome = if rng.random_bool(0.7) { "succeeded" } else { "failed" };
            let detail = if outcome == "failed" { Some("Scripted failure") } else { None };
            Scripted {
                name: format!("chaos-{i:04}"),
                user: format!("user-{i}@contoso.com"),
                operation: format!("op-chaos-{i:04}"),
                secret: secret_name(i % plan.tenants),
                outcome,
                steps: json!([
                    {"status": "notStarted", "afterMs": 0},
                    {"status": "running", "afterMs": running_at},
                    {"status": outcome, "afterMs": end_at, "statusDetail": detail},
                ]),
            }
        })
        .collect()
}

fn secret_name(tenant: usize) -> String {
    format!("graph-credentials-{tenant}")
}

/// Where a Graph status stands in the scripted order; a watch must never see it drop.
fn rank(status: Option<&str>) -> u8 {
    match status {
        None => 0,
        Some("notStarted") => 1,
        Some("running") => 2,
        Some(_) => 3,
    }
}

/// One operator process: when it started and when it was killed.
struct Incarnation {
    operator: Operator,
    started_ms: i64,
    killed_ms: Option<i64>,
}

fn start_operator(cp: &ControlPlane, ns: &str, emulator: &Emulator, plan: &Plan) -> Incarnation {
    let (rate, burst) = (plan.rate.to_string(), plan.burst.to_string());
    let args = [
        "--namespace",
        ns,
        "--graph-url",
        &emulator.url,
        "--poll-interval",
        "1s",
        "--graph-timeout",
        "2s",
        "--tenant-rate",
        &rate,
        "--tenant-burst",
        &burst,
    ];
    Incarnation { operator: Operator::start(cp, &args), started_ms: now_ms(), killed_ms: None }
}

/// Creates one resource, riding out an apiserver that is restarting.
async fn create_resource(api: &Api<PasswordResetOperation>, s: &Scripted) {
    let obj: PasswordResetOperation = serde_json::from_value(json!({
        "apiVersion": "pwreset.dev/v1alpha1",
        "kind": "PasswordResetOperation",
        "metadata": {"name": s.name},
        "spec": {"userId": s.user, "operationId": s.operation, "credentialsSecretRef": {"name": s.secret}},
    }))
    .unwrap();
    eventually(&format!("create {}", s.name), Duration::from_secs(180), || async {
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => Ok(()),
            // Created, but the answer was lost in a restart.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

/// Scrapes the live operator's /metrics twice a second, so what a killed process counted
/// is known too (its last sample): requests the client abandoned (timeouts) never reach
/// the emulator's request log.
#[derive(Clone, Default)]
struct Sampler {
    /// (process number, metrics address) of the live operator.
    target: Arc<Mutex<Option<(usize, String)>>>,
    /// Last /metrics body of each process.
    bodies: Arc<Mutex<BTreeMap<usize, String>>>,
    lowest_rate: Arc<Mutex<Option<f64>>>,
}

impl Sampler {
    fn follow(&self, process: usize, operator: &Operator) {
        *self.target.lock().unwrap() = Some((process, operator.metrics_addr.clone()));
    }

    fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let Some((process, addr)) = me.target.lock().unwrap().clone() else { continue };
                let Ok(resp) = http.get(format!("http://{addr}/metrics")).send().await else { continue };
                let Ok(body) = resp.text().await else { continue };
                if let Some(rate) = metric_min(&body, "pwreset_tenant_allowed_rate") {
                    let mut lowest = me.lowest_rate.lock().unwrap();
                    *lowest = Some(lowest.map_or(rate, |l: f64| l.min(rate)));
                }
                me.bodies.lock().unwrap().insert(process, body);
            }
        })
    }

    /// Graph requests by status code as the operator processes counted them.
    fn requests_by_code(&self) -> BTreeMap<String, f64> {
        let mut total = BTreeMap::new();
        for body in self.bodies.lock().unwrap().values() {
            for (code, n) in metric_by_label(body, "pwreset_graph_requests_total", "code") {
                *total.entry(code).or_default() += n;
            }
        }
        total
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_resource_ends_as_scripted_through_faults_kills_and_a_control_plane_restart() {
    let began = Instant::now();
    let plan = Plan::from_env();
    println!("chaos plan: {plan:?}");
    let scripted = scripts(&plan);

    let cp = Arc::new(tokio::task::spawn_blocking(ControlPlane::start).await.unwrap());
    {
        let cp = cp.clone();
        tokio::task::spawn_blocking(move || cp.install_crds()).await.unwrap();
    }
    let client = cp.client().await;
    let ns = pwreset_testkit::unique_name("chaos");
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.unwrap();
    let emulator = Arc::new(Emulator::start());
    for tenant in 0..plan.tenants {
        let token = format!("tok-{}", uuid::Uuid::new_v4());
        emulator.add_token(&token, &format!("contoso-{tenant}")).await;
        create_secret(&client, &ns, &secret_name(tenant), json!({"token": token})).await;
    }
    let faults = emulator
        .admin(
            "PUT",
            "/faults",
            json!({
                "seed": plan.seed,
                "rate503": 0.20,
                "rate429": 0.10,
                "retryAfterSeconds": [1, 3],
                "rateSlow": 0.05,
                "slowMs": 3000,
                "rateMalformed": 0.01,
            }),
        )
        .await;
    println!("emulator faults: {faults}");

    let api: Api<PasswordResetOperation> = Api::namespaced(client.clone(), &ns);
    let history = History::start(api.clone());
    let mut incarnations = vec![start_operator(&cp, &ns, &emulator, &plan)];
    let sampler = Sampler::default();
    sampler.follow(0, &incarnations[0].operator);
    let sampling = sampler.spawn();
    let setup_took = began.elapsed();

    // Resources (and their operations) appear evenly over the spread.
    let creator = {
        let (api, emulator, scripted, spread) = (api.clone(), emulator.clone(), scripted.clone(), plan.spread);
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let n = scripted.len() as u32;
            for (i, s) in scripted.iter().enumerate() {
                tokio::time::sleep_until(start + spread * i as u32 / n).await;
                emulator
                    .add_operation(json!({"userId": s.user, "id": s.operation, "steps": s.steps, "statusDetail": null}))
                    .await;
                create_resource(&api, s).await;
            }
        })
    };

    // The disruptions, at the plan's moments (a pause here is the point: a random moment).
    let mut cp_restart: Option<(i64, Duration)> = None;
    let mut downtimes = plan.downtimes.iter();
    for (pause, what) in &plan.disruptions {
        tokio::time::sleep(*pause).await;
        match what {
            Disruption::KillOperator => {
                let current = incarnations.last_mut().unwrap();
                current.killed_ms = Some(now_ms());
                current.operator.kill();
                tokio::time::sleep(*downtimes.next().unwrap()).await;
                incarnations.push(start_operator(&cp, &ns, &emulator, &plan));
                sampler.follow(incarnations.len() - 1, &incarnations.last().unwrap().operator);
            }
            Disruption::RestartControlPlane => {
                let (at, started) = (now_ms(), Instant::now());
                let cp = cp.clone();
                tokio::task::spawn_blocking(move || cp.restart()).await.unwrap();
                cp_restart = Some((at, started.elapsed()));
            }
        }
    }
    let (disrupted_at, disrupted_ms) = (Instant::now(), now_ms());
    creator.await.unwrap();

    // Wait for every resource to finish, from what the watch sees (cheap at any size).
    let names: Vec<String> = scripted.iter().map(|s| s.name.clone()).collect();
    let drained = eventually_finished(&history, &names, plan.drain).await;
    let drain_took = disrupted_at.elapsed();
    // A short quiet period: any write after Finished would show up in the watch.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sampling.abort();

    // What the cluster says now.
    let list = api.list(&ListParams::default()).await.unwrap();
    let by_name: BTreeMap<String, PasswordResetOperation> =
        list.items.into_iter().map(|o| (o.metadata.name.clone().unwrap_or_default(), o)).collect();
    let mut failures: Vec<String> = Vec::new();
    let mut wrong_end = Vec::new();
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &scripted {
        *outcomes.entry(s.outcome).or_default() += 1;
        let Some(obj) = by_name.get(&s.name) else {
            wrong_end.push(format!("{}: missing", s.name));
            continue;
        };
        if let Err(e) = ends_as_scripted(obj, s) {
            wrong_end.push(format!("{}: {e}", s.name));
        }
    }
    if !wrong_end.is_empty() {
        failures.push(format!("{} resources did not end as scripted: {}", wrong_end.len(), first(&wrong_end)));
    }

    // The watch: never backwards, nothing written after Finished.
    let seen = history.snapshot();
    let (mut backwards, mut after_end, mut versions) = (Vec::new(), Vec::new(), 0);
    for (name, seq) in &seen {
        versions += seq.len();
        if let Some(problem) = went_backwards(seq) {
            backwards.push(format!("{name}: {problem}"));
        }
        if let Some(end) = seq.iter().position(Seen::finished) {
            let later: Vec<&Seen> = seq[end + 1..].iter().filter(|v| !v.deleted).collect();
            if !later.is_empty() {
                after_end.push(format!("{name}: {} writes after Finished, e.g. {:?}", later.len(), later[0]));
            }
        }
    }
    if !backwards.is_empty() {
        failures.push(format!("status went back for {} resources: {}", backwards.len(), first(&backwards)));
    }
    if !after_end.is_empty() {
        failures.push(format!(
            "status written after Finished for {} resources: {}",
            after_end.len(),
            first(&after_end)
        ));
    }

    // The request log: Retry-After honoured, rate within limits.
    let log = request_log(&emulator).await;
    let gets = operation_gets(&log, None);
    let kills: Vec<i64> = incarnations.iter().filter_map(|i| i.killed_ms).collect();
    let (checked, violations) = retry_after_violations(&log, GRAPH_TIMEOUT_MS);
    // The operator keeps Retry-After in memory: a request from the next process is not
    // bound by an answer the killed one received. Counted apart, not a failure.
    let (across_kill, within): (Vec<_>, Vec<_>) =
        violations.into_iter().partition(|v| kills.iter().any(|&k| v.answered_at_ms <= k && k <= v.came_at_ms));
    // Across a kill only the new process may be early (it never saw the answer): an early
    // GET before the next process started would be the killed one ignoring Retry-After.
    let starts: Vec<i64> = incarnations.iter().skip(1).map(|i| i.started_ms).collect();
    let unexplained: Vec<_> =
        across_kill.iter().filter(|v| !starts.iter().any(|&s| v.answered_at_ms <= s && s <= v.came_at_ms)).collect();
    if !unexplained.is_empty() {
        failures.push(format!(
            "{} early GETs across a kill did not come from the next process: {}",
            unexplained.len(),
            first(&unexplained)
        ));
    }
    if checked == 0 {
        failures.push("no Retry-After answer was checked: the 429 faults did not happen".into());
    }
    if !within.is_empty() {
        failures.push(format!(
            "{} GETs came before the Retry-After of the answer before them: {}",
            within.len(),
            first(&within)
        ));
    }
    // Over the whole run: the operator is down for at least 1 s after each kill, so no
    // 1 s window holds requests of two processes (each starts with a full bucket).
    let mut times: Vec<i64> = gets.iter().filter_map(|g| g["timeMs"].as_i64()).collect();
    times.sort_unstable();
    let (busiest, busiest_at) = busiest_window(&times, 1000);
    let limit = (plan.rate + plan.burst) as usize * plan.tenants;
    if busiest > limit {
        failures.push(format!("{busiest} Graph requests within one second (at {busiest_at}); limit {limit}"));
    }

    // Operator logs: no panic in any process.
    let panicked: Vec<String> = incarnations
        .iter()
        .enumerate()
        .filter_map(|(n, i)| {
            let logs = i.operator.logs();
            let line = logs.lines().find(|l| l.contains("panicked"))?;
            Some(format!("process {n}: {}", line.chars().take(500).collect::<String>()))
        })
        .collect();
    if !panicked.is_empty() {
        failures.push(format!("operator panicked: {panicked:?}"));
    }
    let last = &incarnations.last().unwrap().operator;
    let healthz = last.http_get("/healthz").await.map(|r| r.0);
    if healthz != Ok(200) {
        failures.push(format!("the last operator process does not answer /healthz: {healthz:?}"));
    }
    let metrics = last.http_get("/metrics").await.map(|r| r.1).unwrap_or_default();

    // GETs after the watch saw the resource finished (with 1 s for the watch to catch up).
    let finished_at: BTreeMap<&str, i64> = scripted
        .iter()
        .filter_map(|s| seen.get(&s.name)?.iter().find(|v| v.finished()).map(|v| (s.operation.as_str(), v.at_ms)))
        .collect();
    let gets_after_end = gets
        .iter()
        .filter(|g| {
            let id = g["operationId"].as_str().unwrap_or("");
            finished_at.get(id).is_some_and(|&at| g["timeMs"].as_i64().unwrap_or(0) > at + 1000)
        })
        .count();
    if gets_after_end > 0 {
        failures.push(format!("{gets_after_end} Graph GETs more than 1 s after the watch saw their resource Finished"));
    }
    if kills.len() != KILLS {
        failures.push(format!("{} operator kills performed, {KILLS} planned", kills.len()));
    }
    if cp_restart.is_none() {
        failures.push("the control plane was never restarted".into());
    }
    let lowest_rate = *sampler.lowest_rate.lock().unwrap();
    match lowest_rate {
        None => failures.push("pwreset_tenant_allowed_rate was never sampled".into()),
        Some(r) if r < LOWEST_RATE => failures.push(format!(
            "the adaptive rate fell to {r:.2}/s (configured {}/s, bound {LOWEST_RATE}/s) under faults that do not depend on the rate",
            plan.rate
        )),
        Some(_) => {}
    }
    // Each resource against the bound plus its own failed GETs' backoff; the worst one is
    // the one that overran its allowance most (or came closest).
    let drain_bound = plan.drain_bound(disrupted_at.duration_since(began).saturating_sub(setup_took));
    let chains = failure_chains(&gets);
    let slowest = scripted
        .iter()
        .filter_map(|s| {
            let took = Duration::from_millis((*finished_at.get(s.operation.as_str())? - disrupted_ms).max(0) as u64);
            let chain = chains.get(&s.operation).copied().unwrap_or(0);
            let allowed = drain_bound + chain_wait(chain);
            Some((took.as_secs_f64() - allowed.as_secs_f64(), &s.name, took, chain, allowed))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let longest_chain = chains.values().copied().max().unwrap_or(0);
    let drain_ok = drained.is_ok() && slowest.as_ref().is_some_and(|w| w.0 <= 0.0);
    if let Some((_, name, took, chain, allowed)) = slowest.filter(|w| w.0 > 0.0) {
        failures.push(format!(
            "{name} finished {} after the last disruption; bound {} ({} scripted + backoff after its {chain} failed GETs in a row)",
            secs(took),
            secs(allowed),
            secs(drain_bound)
        ));
    }

    let count = |status: i64| gets.iter().filter(|g| g["status"] == status).count();
    let slow = gets.iter().filter(|g| g["durationMs"].as_i64().unwrap_or(0) >= GRAPH_TIMEOUT_MS).count();
    let mut table = Table::new(&["check", "observed", "limit / expected", "verdict"]);
    let verdict = |ok: bool| if ok { "ok".to_string() } else { "FAIL".to_string() };
    table.row(vec![
        "resources ended as scripted".into(),
        format!("{}/{}", plan.size - wrong_end.len(), plan.size),
        format!("{outcomes:?}"),
        verdict(wrong_end.is_empty()),
    ]);
    table.row(vec![
        "all finished after last disruption".into(),
        secs(drain_took),
        format!("each <= {} + its own backoff", secs(drain_bound)),
        verdict(drain_ok),
    ]);
    let worst = slowest
        .map_or("-".into(), |(_, name, took, chain, _)| format!("{name}: {} ({chain} failed in a row)", secs(took)));
    let allowed = slowest.map_or("-".into(), |w| format!("<= {}", secs(w.4)));
    table.row(vec!["  closest to its bound".into(), worst, allowed, verdict(drain_ok)]);
    table.row(vec![
        "  longest run of failed GETs".into(),
        longest_chain.to_string(),
        format!("waits up to {}", secs(chain_wait(longest_chain))),
        "-".into(),
    ]);
    table.row(vec![
        "status versions watched".into(),
        versions.to_string(),
        format!("watch (re)lists: {}", history.list_count()),
        "-".into(),
    ]);
    table.row(vec![
        "status went backwards".into(),
        backwards.len().to_string(),
        "0".into(),
        verdict(backwards.is_empty()),
    ]);
    table.row(vec![
        "writes after Finished".into(),
        after_end.len().to_string(),
        "0".into(),
        verdict(after_end.is_empty()),
    ]);
    table.row(vec!["Graph GETs".into(), gets.len().to_string(), "-".into(), "-".into()]);
    table.row(vec![
        "  200 / 429 / 503 / 502".into(),
        format!("{} / {} / {} / {}", count(200), count(429), count(503), count(502)),
        "-".into(),
        "-".into(),
    ]);
    table.row(vec!["  slower than --graph-timeout (logged)".into(), slow.to_string(), "-".into(), "-".into()]);
    let counted: Vec<String> = sampler.requests_by_code().iter().map(|(code, n)| format!("{code}: {n}")).collect();
    table.row(vec![
        "GETs as the operators counted".into(),
        counted.join(", "),
        "none = no answer (timeout)".into(),
        "-".into(),
    ]);
    table.row(vec![
        "lowest tenant_allowed_rate seen".into(),
        sampler.lowest_rate.lock().unwrap().map(|r| format!("{r:.2}/s")).unwrap_or_else(|| "-".into()),
        format!("configured {}/s, >= {LOWEST_RATE}/s", plan.rate),
        verdict(lowest_rate.is_some_and(|r| r >= LOWEST_RATE)),
    ]);
    table.row(vec![
        "  GETs >1 s after seen Finished".into(),
        gets_after_end.to_string(),
        "0".into(),
        verdict(gets_after_end == 0),
    ]);
    table.row(vec!["Retry-After answers checked".into(), checked.to_string(), "-".into(), "-".into()]);
    table.row(vec![
        "  next GET too early (same process)".into(),
        within.len().to_string(),
        "0".into(),
        verdict(within.is_empty()),
    ]);
    table.row(vec![
        "  next GET too early (after a kill)".into(),
        across_kill.len().to_string(),
        "only from the next process".into(),
        verdict(unexplained.is_empty()),
    ]);
    table.row(vec![
        "busiest 1 s window (GETs)".into(),
        busiest.to_string(),
        format!("<= burst {} + rate {}", plan.burst, plan.rate),
        verdict(busiest <= limit),
    ]);
    table.row(vec![
        "operator processes (SIGKILLs)".into(),
        format!("{} ({})", incarnations.len(), kills.len()),
        format!("{} ({KILLS})", KILLS + 1),
        verdict(kills.len() == KILLS),
    ]);
    let per_process: Vec<String> = incarnations
        .iter()
        .map(|i| {
            let end = i.killed_ms.unwrap_or(i64::MAX);
            times.iter().filter(|&&t| t >= i.started_ms && t < end).count().to_string()
        })
        .collect();
    table.row(vec!["  GETs per operator process".into(), per_process.join(" / "), "-".into(), "-".into()]);
    table.row(vec![
        "control plane restart".into(),
        cp_restart.map(|(_, took)| format!("took {}", secs(took))).unwrap_or_else(|| "none".into()),
        "1".into(),
        verdict(cp_restart.is_some()),
    ]);
    table.row(vec![
        "operator logs with \"panicked\"".into(),
        panicked.len().to_string(),
        "0".into(),
        verdict(panicked.is_empty()),
    ]);
    table.row(vec![
        "Graph requests (last process metric)".into(),
        metric_sum(&metrics, "pwreset_graph_requests_total").to_string(),
        "-".into(),
        "-".into(),
    ]);
    table.row(vec![
        "setup / total wall time".into(),
        format!("{} / {}", secs(setup_took), secs(began.elapsed())),
        "-".into(),
        "-".into(),
    ]);
    println!("\nchaos summary (size {}, seed {}):\n{}", plan.size, plan.seed, table.render());

    if let Err(e) = drained {
        failures.push(e);
    }
    assert!(failures.is_empty(), "chaos suite failed:\n- {}", failures.join("\n- "));
}

/// Waits until the watch has seen every resource Finished; Err names the stragglers.
async fn eventually_finished(history: &History, names: &[String], timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let seen = history.snapshot();
        let open: Vec<String> = names
            .iter()
            .filter(|n| !seen.get(*n).and_then(|v| v.last()).is_some_and(Seen::finished))
            .map(|n| {
                let last = seen.get(n).and_then(|v| v.last());
                format!("{n} ({:?}, {:?})", last.and_then(|l| l.status.clone()), last.and_then(|l| l.reason("Ready")))
            })
            .collect();
        if open.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("{} resources not finished after {timeout:?}: {}", open.len(), first(&open)));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The resource ended exactly where its operation does.
fn ends_as_scripted(obj: &PasswordResetOperation, s: &Scripted) -> Result<(), String> {
    let status = obj.status.as_ref().and_then(|st| st.status.as_deref());
    if status != Some(s.outcome) {
        return Err(format!("status.status {status:?}, scripted {}", s.outcome));
    }
    let want: Vec<(&str, Option<(&str, &str)>)> = match s.outcome {
        "succeeded" => vec![
            ("Ready", Some(("True", "Succeeded"))),
            ("Finished", Some(("True", "Succeeded"))),
            ("Stalled", None),
            ("Reconciling", None),
        ],
        _ => vec![
            ("Ready", Some(("False", "OperationFailed"))),
            ("Stalled", Some(("True", "OperationFailed"))),
            ("Finished", Some(("True", "OperationFailed"))),
            ("Reconciling", None),
        ],
    };
    for (type_, expected) in want {
        let got = status_reason(obj, type_);
        let got_ref = got.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
        if got_ref != expected {
            return Err(format!("condition {type_} is {got:?}, expected {expected:?}"));
        }
    }
    Ok(())
}

/// The first place where a watched sequence went back in the scripted order, or
/// un-finished.
fn went_backwards(seq: &[Seen]) -> Option<String> {
    let mut best: Option<&Seen> = None;
    let mut finished = false;
    for v in seq.iter().filter(|v| !v.deleted) {
        if let Some(b) = best {
            if rank(v.status.as_deref()) < rank(b.status.as_deref()) {
                return Some(format!("{:?} after {:?}", v.status, b.status));
            }
            if rank(b.status.as_deref()) == 3 && v.status != b.status {
                return Some(format!("{:?} after {:?}", v.status, b.status));
            }
        }
        if finished && !v.finished() {
            return Some(format!("Finished=True then not finished ({:?})", v.conditions));
        }
        finished |= v.finished();
        if best.is_none_or(|b| rank(v.status.as_deref()) >= rank(b.status.as_deref())) {
            best = Some(v);
        }
    }
    None
}

fn first<T: std::fmt::Debug>(items: &[T]) -> String {
    let shown: Vec<String> = items.iter().take(5).map(|i| format!("{i:?}")).collect();
    format!("{}{}", shown.join("; "), if items.len() > 5 { " ..." } else { "" })
}

/// The checks' own arithmetic, without a cluster.
mod checks {
    use super::{Seen, went_backwards};
    use pwreset_testkit::observe::{SeenCondition, busiest_window, metric_sum, retry_after_violations};
    use serde_json::json;

    fn seen(status: Option<&str>, finished: bool) -> Seen {
        let finished = if finished { "True" } else { "False" };
        Seen {
            at_ms: 0,
            resource_version: String::new(),
            status: status.map(str::to_string),
            conditions: vec![SeenCondition {
                type_: "Finished".into(),
                status: finished.into(),
                reason: "X".into(),
                message: String::new(),
            }],
            completion_ms: None,
            deleted: false,
        }
    }

    #[test]
    fn busiest_window_counts_half_open_windows() {
        assert_eq!(busiest_window(&[], 1000).0, 0);
        assert_eq!(busiest_window(&[0, 500, 999, 1000, 1001], 1000), (4, 500));
        assert_eq!(busiest_window(&[0, 999, 1999], 1000), (2, 0));
        assert_eq!(busiest_window(&[0, 1000, 2000], 1000).0, 1);
    }

    #[test]
    fn retry_after_is_measured_from_when_the_answer_left() {
        let log = vec![
            json!({"seq": 1, "kind": "operationGet", "operationId": "a", "timeMs": 0, "durationMs": 10, "retryAfter": "2"}),
            json!({"seq": 2, "kind": "operationGet", "operationId": "a", "timeMs": 2005, "durationMs": 1}),
            json!({"seq": 3, "kind": "operationGet", "operationId": "b", "timeMs": 0, "durationMs": 3000, "retryAfter": "3"}),
            json!({"seq": 4, "kind": "operationGet", "operationId": "b", "timeMs": 3100, "durationMs": 1}),
            json!({"seq": 5, "kind": "operationGet", "operationId": "c", "timeMs": 0, "durationMs": 0, "retryAfter": "1.5"}),
            json!({"seq": 6, "kind": "operationGet", "operationId": "c", "timeMs": 1500, "durationMs": 1}),
        ];
        let (checked, violations) = retry_after_violations(&log, 2000);
        assert_eq!(checked, 2, "the timed-out answer is not checked");
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!((violations[0].allowed_at_ms, violations[0].came_at_ms), (2010, 2005));
    }

    #[test]
    fn metric_sum_adds_every_label_set() {
        let body = "# HELP x\npwreset_graph_requests_total{tenant=\"a\",code=\"200\"} 3\n\
                    pwreset_graph_requests_total{tenant=\"a\",code=\"429\"} 1\npwreset_graph_requests_totalx 9\n";
        assert_eq!(metric_sum(body, "pwreset_graph_requests_total"), 4.0);
        assert_eq!(metric_sum("", "pwreset_graph_requests_total"), 0.0);
    }

    #[test]
    fn backwards_and_unfinishing_are_caught() {
        let ok = [seen(None, false), seen(Some("notStarted"), false), seen(Some("running"), false)];
        assert!(went_backwards(&ok).is_none());
        let ok_end = [seen(Some("running"), false), seen(Some("failed"), true)];
        assert!(went_backwards(&ok_end).is_none());
        let back = [seen(Some("running"), false), seen(Some("notStarted"), false)];
        assert!(went_backwards(&back).is_some());
        let flip = [seen(Some("succeeded"), true), seen(Some("failed"), true)];
        assert!(went_backwards(&flip).is_some());
        let unfinished = [seen(Some("succeeded"), true), seen(Some("succeeded"), false)];
        assert!(went_backwards(&unfinished).is_some());
    }
}
