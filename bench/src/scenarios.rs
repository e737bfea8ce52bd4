//! The three scenarios. Each gets a fresh control plane and emulator; setup (creating the
//! resources) is timed apart from the scenario, which starts when the operator is spawned.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use pwreset_operator::conditions::{self, Phase};
use pwreset_operator::reason::Reason;
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;
use serde_json::{Value, json};

use pwreset_testkit::kube::{self as cluster, NewResource};
use pwreset_testkit::process::{cpu_seconds, memory_kib};
use pwreset_testkit::watch::{Recorder, Track};
use pwreset_testkit::{ControlPlane, Emulator, EmulatorClient, Operator, control_plane, emulator, operator};

use crate::apiserver::{self, EventCount};
use crate::collector::{Collector, Log};
use crate::sampler::{self, Sample, Sampler};
use crate::stats::{Distribution, mean};
use crate::{OPERATION_PREFIX, RESOURCE_PREFIX, now_ms};

pub const NS: &str = "bench";
const SECRET: &str = "graph-credentials";
const TOKEN: &str = "bench-static-token";
const TENANT: &str = "bench-tenant";
const MIB: f64 = 1024.0;
pub const RSS_TARGET_MIB: f64 = 40.0;
/// The RSS, CPU, writes-per-reset and N = 10,000 propagation targets are stated for N = 10,000.
pub const RSS_TARGET_N: usize = 10_000;
/// The propagation target is stated for N = 1,000.
pub const PROPAGATION_TARGET_N: usize = 1_000;
/// Status PATCHes + Event writes per reset, scenario 1 at N = 10,000 (issue 17).
pub const WRITES_PER_RESET_TARGET: f64 = 4.0;
/// Operator CPU, average over scenario 1 at N = 10,000 (issue 17).
pub const CPU_TARGET_CORES: f64 = 0.08;
/// Operator CPU per steady-state poll (one Graph GET and its reconcile), in µs (issue 17).
pub const CPU_PER_POLL_TARGET_US: f64 = 60.0;

#[derive(Clone)]
pub struct Cfg {
    pub work: PathBuf,
    pub operator_bin: PathBuf,
    pub emulator_bin: PathBuf,
    pub control_plane_bin: PathBuf,
    pub poll: Duration,
    pub spread: Duration,
    pub steady_window: Duration,
    pub startup_window: Duration,
    pub concurrency: usize,
    pub seed: u64,
    pub keep_data: bool,
    pub operator_extra: Vec<String>,
    pub operator_env: Vec<(String, String)>,
}

/// A target and how this run did against it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub figure: String,
    pub target: String,
    pub measured: String,
    /// None: informational here (the target is stated for another N).
    pub pass: Option<bool>,
}

pub(crate) fn check(id: &'static str, figure: &str, target: &str, measured: String, pass: Option<bool>) -> Check {
    Check { id, figure: figure.into(), target: target.into(), measured, pass }
}

/// What every scenario measures about the operator process.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Process {
    pub ready_seconds: f64,
    /// From spawn to the end of the measurement.
    pub wall_seconds: f64,
    pub cpu_seconds: f64,
    pub average_cores: f64,
    pub peak_cores_10s: f64,
    pub peak_rss_mib: f64,
    pub final_rss_mib: f64,
    /// Average cores of the other processes over the same time (the machine's load).
    pub control_plane_cores: f64,
    pub emulator_cores: f64,
    pub bench_cores: f64,
    /// Processes that are not part of the benchmark (another build on the machine...).
    pub other_cores: f64,
    pub log_warnings: usize,
    pub log_errors: usize,
}

/// The operator's own counters at the end (/metrics).
#[derive(Debug, Clone, Default, Serialize)]
pub struct OpMetrics {
    pub graph_requests: f64,
    pub graph_requests_by_code: BTreeMap<String, f64>,
    pub status_writes: f64,
    pub reconciles_ok: f64,
    pub reconciles_error: f64,
    pub token_requests: f64,
    pub operations: BTreeMap<String, f64>,
    /// Mean Graph request latency as the operator measured it (includes waiting to be polled).
    pub graph_latency_mean_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub id: String,
    pub kind: &'static str,
    pub title: String,
    pub n: usize,
    pub setup_seconds: f64,
    pub setup_per_second: f64,
    /// Scenario-specific figures.
    pub figures: Value,
    /// (figure, value) rows for the report's table.
    pub rows: Vec<(String, String)>,
    pub process: Process,
    pub metrics: OpMetrics,
    pub events: EventCount,
    /// Graph state changes the watch saw (the first state of a resource included): the
    /// operator means to publish one Event for each.
    pub state_changes_seen: u64,
    pub watch_restarts: u32,
    pub emulator_log_lost: u64,
    /// The emulator's own counters (`GET /_emulator/stats`), independent of its log.
    pub emulator_stats: Value,
    /// Operation GETs answered with something else than 200.
    pub graph_gets_not_ok: usize,
    /// Mean time the emulator took to answer an operation GET (its own log).
    pub emulator_latency_mean_ms: f64,
    /// The apiserver's view of the requests made (whole scenario, setup included).
    pub apiserver: Vec<apiserver::ApiRequests>,
    pub checks: Vec<Check>,
    pub samples: Vec<Sample>,
}

pub fn resource_name(i: usize) -> String {
    format!("{RESOURCE_PREFIX}{i:05}")
}

fn operation_id(i: usize) -> String {
    format!("{OPERATION_PREFIX}{i:05}")
}

fn user_id(i: usize) -> String {
    format!("user-{i:05}@bench.example")
}

pub(crate) fn spec(i: usize) -> Value {
    json!({"userId": user_id(i), "operationId": operation_id(i), "credentialsSecretRef": {"name": SECRET}})
}

fn timestamp(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default()
}

/// Control plane with the CRD, namespace and Secret; emulator with the Secret's token.
pub(crate) struct World {
    // Dropped in this order: emulator, then control plane.
    pub emulator: Emulator,
    pub emu: EmulatorClient,
    pub client: kube::Client,
    pub cp: ControlPlane,
    pub dir: PathBuf,
}

pub(crate) async fn world(cfg: &Cfg, id: &str) -> anyhow::Result<World> {
    let dir = cfg.work.join(id);
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let cp = ControlPlane::start_with(control_plane::Options {
        binary: Some(cfg.control_plane_bin.clone()),
        data_dir: Some(dir.join("cp")),
        log: Some(dir.join("control-plane.log")),
        keep_data: cfg.keep_data,
    })?;
    let client = cluster::client(cp.kubeconfig()).await?;
    cp.install_crds();
    cluster::create_namespace(&client, NS).await?;
    cluster::create_secret(&client, NS, SECRET, json!({ "token": TOKEN })).await?;
    apiserver::create_no_events_user(&client).await?;
    let emulator = Emulator::start_with(emulator::Options {
        binary: Some(cfg.emulator_bin.clone()),
        args: vec!["--log-format".into(), "json".into()],
        env: vec![("RUST_LOG".into(), "warn".into())],
        log: Some(dir.join("emulator.log")),
        ..emulator::Options::default()
    })?;
    let emu = emulator.client().clone();
    emu.add_token(TOKEN, TENANT).await?;
    say(id, &format!("control plane and emulator ready in {:.1}s", started.elapsed().as_secs_f64()));
    Ok(World { emulator, emu, client, cp, dir })
}

pub(crate) fn say(id: &str, what: &str) {
    println!("[{}] {id}: {what}", jiff::Timestamp::now().strftime("%H:%M:%S"));
}

pub(crate) async fn create(cfg: &Cfg, w: &World, id: &str, resources: Vec<NewResource>) -> anyhow::Result<(f64, f64)> {
    let n = resources.len();
    let writes = if resources.iter().any(|r| r.status.is_some()) { "create + status write" } else { "create" };
    say(id, &format!("setup: {writes} of {n} resources, {} in flight", cfg.concurrency));
    let took = cluster::create_all(&w.client, NS, resources, cfg.concurrency).await?.as_secs_f64();
    let rate = n as f64 / took.max(1e-9);
    say(id, &format!("setup took {took:.1}s ({rate:.0} resources/s)"));
    Ok((took, rate))
}

pub(crate) async fn start_operator(cfg: &Cfg, w: &World) -> anyhow::Result<(Operator, f64)> {
    start_operator_as(cfg, w, &[], "operator.log").await
}

/// One operator process with `extra` flags, logging to `log` in the scenario's directory.
pub(crate) async fn start_operator_as(
    cfg: &Cfg,
    w: &World,
    extra: &[String],
    log: &str,
) -> anyhow::Result<(Operator, f64)> {
    let mut args: Vec<String> = vec![
        "--graph-url".into(),
        w.emulator.url.clone(),
        "--poll-interval".into(),
        format!("{}ms", cfg.poll.as_millis()),
        // The client-side limit must not be what is measured.
        "--tenant-rate".into(),
        "100000".into(),
        "--tenant-burst".into(),
        "100000".into(),
    ];
    args.extend(cfg.operator_extra.iter().cloned());
    args.extend(extra.iter().cloned());
    let op = Operator::start_with(operator::Options {
        binary: Some(cfg.operator_bin.clone()),
        kubeconfig: w.cp.kubeconfig().to_path_buf(),
        args,
        env: cfg.operator_env.clone(),
        log: w.dir.join(log),
        rust_log: "warn".into(),
    })?;
    match op.wait_ready_within(Duration::from_secs(300)).await {
        Ok(ready) => Ok((op, ready.as_secs_f64())),
        Err(e) => bail!("{e}:\n{}", op.log_tail(30)),
    }
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let end = labels[start..].find('"')?;
    Some(&labels[start..start + end])
}

pub async fn scrape(metrics_url: &str) -> anyhow::Result<OpMetrics> {
    let body = reqwest::Client::new()
        .get(format!("{metrics_url}/metrics"))
        .timeout(Duration::from_secs(10))
        .send()
        .await?
        .text()
        .await?;
    let mut m = OpMetrics::default();
    let mut latency = (0.0, 0.0);
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let (name, labels) = key.split_once('{').unwrap_or((key, ""));
        match name {
            "pwreset_graph_requests_total" => {
                m.graph_requests += value;
                *m.graph_requests_by_code.entry(label(labels, "code").unwrap_or("").to_string()).or_default() += value;
            }
            "pwreset_status_writes_total" => m.status_writes += value,
            "pwreset_reconciles_total" => match label(labels, "result") {
                Some("ok") => m.reconciles_ok += value,
                _ => m.reconciles_error += value,
            },
            "pwreset_token_requests_total" => m.token_requests += value,
            "pwreset_graph_request_duration_seconds_sum" => latency.0 += value,
            "pwreset_graph_request_duration_seconds_count" => latency.1 += value,
            "pwreset_operations" => {
                m.operations.insert(label(labels, "state").unwrap_or("").to_string(), value);
            }
            _ => {}
        }
    }
    if latency.1 > 0.0 {
        m.graph_latency_mean_ms = latency.0 / latency.1 * 1000.0;
    }
    Ok(m)
}

/// Reads the operator's CPU, memory and counters while it still runs, then stops it.
pub(crate) async fn finish_operator(
    mut op: Operator,
    sampler: Sampler,
) -> anyhow::Result<(Process, OpMetrics, Vec<Sample>)> {
    let metrics = scrape(&op.metrics_url()).await.context("scraping the operator's /metrics")?;
    let cpu = cpu_seconds(op.pid).context("the operator is gone")?;
    let (rss, hwm) = memory_kib(op.pid).context("the operator is gone")?;
    let wall = op.started.elapsed().as_secs_f64();
    let samples = sampler.finish();
    op.stop();
    let log = std::fs::read_to_string(op.log_path()).unwrap_or_default();
    let mut p = Process {
        wall_seconds: wall,
        cpu_seconds: cpu,
        average_cores: cpu / wall.max(1e-9),
        peak_cores_10s: sampler::peak_operator_cores(&samples, 10.0),
        peak_rss_mib: hwm as f64 / MIB,
        final_rss_mib: rss as f64 / MIB,
        log_warnings: log.lines().filter(|l| l.contains("\"level\":\"WARN\"")).count(),
        log_errors: log.lines().filter(|l| l.contains("\"level\":\"ERROR\"")).count(),
        ..Process::default()
    };
    if let (Some(a), Some(b)) = (samples.first(), samples.last()) {
        let load = sampler::load_between(a, b);
        p.control_plane_cores = load.control_plane;
        p.emulator_cores = load.emulator;
        p.bench_cores = load.bench;
        p.other_cores = load.other;
    }
    Ok((p, metrics, samples))
}

/// Average cores between `from` and `to` seconds after spawn.
fn load_during(samples: &[Sample], from: f64, to: f64) -> sampler::Load {
    match (samples.iter().find(|s| s.t >= from), samples.iter().rev().find(|s| s.t <= to)) {
        (Some(a), Some(b)) if b.t > a.t => sampler::load_between(a, b),
        _ => sampler::Load::default(),
    }
}

pub(crate) fn rss_check(n: usize, p: &Process) -> Check {
    check(
        "rss",
        "Operator peak RSS (VmHWM)",
        &format!("≤ {RSS_TARGET_MIB} MiB at N = {RSS_TARGET_N}"),
        format!("{:.1} MiB", p.peak_rss_mib),
        (n == RSS_TARGET_N).then_some(p.peak_rss_mib <= RSS_TARGET_MIB),
    )
}

/// Peak RSS over N: everything the process holds, charged to the resources.
pub fn bytes_per_resource(p: &Process, n: usize) -> f64 {
    p.peak_rss_mib * MIB * 1024.0 / n.max(1) as f64
}

pub(crate) fn process_rows(
    p: &Process,
    m: &OpMetrics,
    events: &EventCount,
    changes: u64,
    n: usize,
) -> Vec<(String, String)> {
    vec![
        ("Operator start → /readyz 200".into(), format!("{:.2} s", p.ready_seconds)),
        (
            "Operator peak RSS (VmHWM) / RSS at the end".into(),
            format!(
                "{:.1} MiB / {:.1} MiB; peak RSS per resource {:.0} bytes (an upper bound on what one cached resource costs)",
                p.peak_rss_mib,
                p.final_rss_mib,
                bytes_per_resource(p, n)
            ),
        ),
        (
            "Operator CPU (utime+stime)".into(),
            format!(
                "{:.1} s over {:.0} s = {:.3} cores on average; peak {:.2} cores (10 s window)",
                p.cpu_seconds, p.wall_seconds, p.average_cores, p.peak_cores_10s
            ),
        ),
        (
            "Machine load meanwhile (cores)".into(),
            format!(
                "control plane {:.2}, emulator {:.2}, bench driver {:.2}, other processes {:.2} (of {} cores)",
                p.control_plane_cores,
                p.emulator_cores,
                p.bench_cores,
                p.other_cores,
                std::thread::available_parallelism().map_or(0, |n| n.get())
            ),
        ),
        (
            "Operator counters (/metrics)".into(),
            format!(
                "graph_requests {} {:?}, status_writes {}, reconciles ok {} / error {}, token_requests {}",
                m.graph_requests,
                m.graph_requests_by_code,
                m.status_writes,
                m.reconciles_ok,
                m.reconciles_error,
                m.token_requests
            ),
        ),
        (
            "Event writes (events.k8s.io, creates + series patches)".into(),
            format!(
                "{} in {} Events = {:.2} per resource (Graph state changes seen: {changes})",
                events.writes,
                events.events,
                events.writes as f64 / n.max(1) as f64
            ),
        ),
        ("Operator log lines at WARN / ERROR".into(), format!("{} / {}", p.log_warnings, p.log_errors)),
    ]
}

/// Where one operation of scenario 1 goes, in ms after its creation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub running_ms: i64,
    pub finish_ms: i64,
    pub failed: bool,
}

impl Plan {
    fn step_ms(&self, state: &str) -> Option<i64> {
        match state {
            "notStarted" => Some(0),
            "running" => Some(self.running_ms),
            "succeeded" | "failed" => Some(self.finish_ms),
            _ => None,
        }
    }
}

pub(crate) fn plans(n: usize, spread: Duration, seed: u64) -> Vec<Plan> {
    let mut rng = StdRng::seed_from_u64(seed ^ n as u64);
    // Finish times spread uniformly over (0, spread], in random order over the names.
    let mut slots: Vec<usize> = (0..n).collect();
    slots.shuffle(&mut rng);
    let spread_ms = spread.as_millis() as f64;
    slots
        .into_iter()
        .map(|slot| {
            let finish_ms = (((slot as f64 + 0.5) / n as f64) * spread_ms).round().max(2.0) as i64;
            Plan { running_ms: (finish_ms / 10).max(1), finish_ms, failed: rng.random_bool(0.1) }
        })
        .collect()
}

pub(crate) fn emulator_operation(i: usize, created_ms: i64, steps: Value) -> Value {
    json!({"userId": user_id(i), "id": operation_id(i), "createdAt": timestamp(created_ms), "steps": steps})
}

fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1).div_euclid(b)
}

fn gets_by_operation(log: &Log, n: usize) -> Vec<Vec<i64>> {
    let mut by_op = vec![Vec::new(); n];
    for g in &log.gets {
        if let Some(v) = by_op.get_mut(g.op) {
            v.push(g.t_ms);
        }
    }
    for v in &mut by_op {
        v.sort_unstable();
    }
    by_op
}

/// Waits until every resource shows Graph state `state` (the operator's initial sweep);
/// returns when that was, in Unix ms, or None at the deadline.
pub(crate) async fn wait_for_state(
    id: &str,
    recorder: &Recorder,
    op: &mut Operator,
    state: &str,
    n: usize,
    deadline: Instant,
) -> anyhow::Result<Option<i64>> {
    let mut next_progress = Instant::now() + Duration::from_secs(15);
    loop {
        let count = recorder.count_state(state);
        if count == n {
            return Ok(Some(now_ms()));
        }
        if let Some(status) = op.exited() {
            bail!("the operator exited ({status}):\n{}", op.log_tail(30));
        }
        if Instant::now() > deadline {
            say(id, &format!("only {count} of {n} resources show {state}; going on anyway"));
            return Ok(None);
        }
        if Instant::now() >= next_progress {
            say(id, &format!("initial sweep: {count}/{n} show {state}"));
            next_progress = Instant::now() + Duration::from_secs(15);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Scenario 1: N operations finishing uniformly over the spread, polled every interval.
///
/// The operator first sees every operation as notStarted (its initial sweep over N new
/// resources, timed on its own); then the operations' scripted clocks start together.
///
/// With `no_events`, a diagnostic run: the operator impersonates a user that may do
/// everything but write Events, which tells apart what publishing Events costs.
pub async fn active(cfg: &Cfg, n: usize, no_events: bool) -> anyhow::Result<ScenarioReport> {
    let id = if no_events { format!("active-{n}-no-events") } else { format!("active-{n}") };
    let w = world(cfg, &id).await?;
    let plans = plans(n, cfg.spread, cfg.seed);
    let (setup, setup_rate) = create(
        cfg,
        &w,
        &id,
        (0..n).map(|i| NewResource { name: resource_name(i), spec: spec(i), status: None }).collect(),
    )
    .await?;
    let created = now_ms();
    let waiting =
        (0..n).map(|i| emulator_operation(i, created, json!([{"status": "notStarted", "afterMs": 0}]))).collect();
    w.emu.add_operations(waiting).await?;
    let recorder = Recorder::start(&w.client, NS, RESOURCE_PREFIX, n);
    recorder.wait_baseline().await?;
    let collector = Collector::start(&w.emu);

    let spawn_ms = now_ms();
    let (mut op, ready) = if no_events {
        let mut env = cfg.operator_env.clone();
        env.push(("KUBE_RS_DEBUG_IMPERSONATE_USER".into(), apiserver::NO_EVENTS_USER.into()));
        start_operator(&Cfg { operator_env: env, ..cfg.clone() }, &w).await?
    } else {
        start_operator(cfg, &w).await?
    };
    say(&id, &format!("operator ready after {ready:.2}s; initial sweep over {n} new resources"));
    let sampler = Sampler::start(op.pid, op.started, w.cp.pids(), w.emulator.pid());
    let deadline = Instant::now() + Duration::from_secs(300) + Duration::from_millis(30 * n as u64);
    let swept_ms = wait_for_state(&id, &recorder, &mut op, "notStarted", n, deadline).await?;
    let sweep = swept_ms.map(|t| (t - spawn_ms) as f64 / 1000.0);
    let (_, _, sweep_writes) = recorder.counts();

    // Now the scripted clocks start: same creation time (nothing visible changes), steps
    // shifted to begin at t1. t1 lies a little ahead so that replacing N operations is done first.
    let t1 = now_ms() + 2000;
    let offset = t1 - created;
    let scripted = plans
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut last = json!({"status": "succeeded", "afterMs": offset + p.finish_ms});
            if p.failed {
                last = json!({"status": "failed", "afterMs": offset + p.finish_ms,
                              "statusDetail": "The password does not meet the tenant's complexity requirements."});
            }
            emulator_operation(
                i,
                created,
                json!([{"status": "notStarted", "afterMs": 0}, {"status": "running", "afterMs": offset + p.running_ms}, last]),
            )
        })
        .collect();
    w.emu.add_operations(scripted).await?;
    let sweep_text = sweep.map_or("incomplete".to_string(), |s| format!("done after {s:.1}s"));
    say(&id, &format!("sweep {sweep_text}; operations now finish over {:?}", cfg.spread));
    let cpu_at_t1 = cpu_seconds(op.pid).unwrap_or(0.0);

    let deadline = Instant::now() + cfg.spread + Duration::from_secs(120) + Duration::from_millis(20 * n as u64);
    let mut all_finished_ms = None;
    let mut next_progress = Instant::now();
    loop {
        let (finished, _, writes) = recorder.counts();
        if finished == n {
            all_finished_ms = Some(now_ms());
            break;
        }
        if let Some(status) = op.exited() {
            bail!("the operator exited ({status}):\n{}", op.log_tail(30));
        }
        if Instant::now() > deadline {
            say(&id, &format!("giving up waiting: {finished} of {n} finished"));
            break;
        }
        if Instant::now() >= next_progress {
            say(
                &id,
                &format!(
                    "t1{:+.0}s finished {finished}/{n}, status writes {writes}, Graph GETs {}",
                    (now_ms() - t1) as f64 / 1000.0,
                    collector.gets_so_far()
                ),
            );
            next_progress = Instant::now() + Duration::from_secs(15);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu_at_end = cpu_seconds(op.pid).unwrap_or(0.0);
    let tracking_s = (now_ms() - t1) as f64 / 1000.0;
    // Two more poll intervals: any GET for a finished operation would show up here.
    let tail = cfg.poll * 2 + Duration::from_secs(1);
    say(&id, &format!("all finished; watching {tail:?} more for stray GETs"));
    let tail_from = now_ms();
    tokio::time::sleep(tail).await;
    let (mut process, metrics, samples) = finish_operator(op, sampler).await?;
    process.ready_seconds = ready;
    let log = collector.finish().await?;
    let restarts = recorder.restarts();
    let tracks = recorder.finish();
    let state_changes_seen: u64 = tracks.iter().map(|t| t.states.len() as u64).sum();
    let events = apiserver::count_events(&w.client, NS).await?;
    let emulator_stats = w.emu.stats().await?;
    let apiserver = apiserver::apiserver_requests(&w.client).await.unwrap_or_default();
    drop(w);
    let emulator_latency_mean_ms = mean(log.gets.iter().map(|g| g.duration_ms as f64));
    let graph_gets_not_ok = log.gets.iter().filter(|g| g.status != 200).count();

    let interval = cfg.poll.as_millis() as i64;
    let by_op = gets_by_operation(&log, n);
    let finished: Vec<usize> = (0..n).filter(|&i| tracks[i].finished_ms.is_some()).collect();
    let (mut over_min, mut max_excess) = (0usize, i64::MIN);
    let (mut gets_sum, mut min_sum) = (0i64, 0i64);
    let (mut after_terminal, mut ops_after_terminal) = (0usize, 0usize);
    let (mut over_writes, mut writes_sum, mut bound_sum) = (0usize, 0i64, 0i64);
    let mut latencies = Vec::new();
    let mut terminal_latencies = Vec::new();
    for &i in &finished {
        let (plan, track) = (&plans[i], &tracks[i]);
        // The operation's own GETs: from the start of its scripted clock on.
        let gets: Vec<i64> = by_op[i].iter().copied().filter(|&t| t >= t1).collect();
        let minimum = ceil_div(plan.finish_ms, interval) + 1;
        let count = gets.len() as i64;
        gets_sum += count;
        min_sum += minimum;
        max_excess = max_excess.max(count - minimum);
        if count > minimum + 1 {
            over_min += 1;
        }
        let terminal_ms = track.finished_ms.unwrap_or(i64::MAX);
        let late = gets.iter().filter(|&&t| t > terminal_ms).count();
        after_terminal += late;
        ops_after_terminal += usize::from(late > 0);
        let (writes, bound) = (track.writes as i64, track.distinct_states() as i64 + 1);
        writes_sum += writes;
        bound_sum += bound;
        if writes > bound {
            over_writes += 1;
        }
        // Every state after the first (notStarted, seen in the sweep) is a scripted change.
        for (state, seen) in track.states.iter().skip(1) {
            if let Some(step) = plan.step_ms(state) {
                let latency = (seen - (t1 + step)) as f64 / 1000.0;
                latencies.push(latency);
                if matches!(state.as_str(), "succeeded" | "failed") {
                    terminal_latencies.push(latency);
                }
            }
        }
    }
    let mut gaps = Vec::new();
    for gets in &by_op {
        let after: Vec<i64> = gets.iter().copied().filter(|&t| t >= t1).collect();
        gaps.extend(after.windows(2).map(|p| (p[1] - p[0]) as f64 / 1000.0));
    }
    let gaps = Distribution::of(gaps);
    let at = |ms: i64| (ms - spawn_ms) as f64 / 1000.0;
    let sweep_load = load_during(&samples, 0.0, sweep.unwrap_or(0.0));
    let tracking_load = load_during(&samples, at(t1), all_finished_ms.map_or(f64::MAX, at));
    let gets_before_t1 = log.gets.iter().filter(|g| g.t_ms < t1).count();
    let tail_gets = log.gets.iter().filter(|g| g.t_ms > tail_from).count();
    let nf = finished.len().max(1) as f64;
    let propagation = Distribution::of(latencies);
    let terminal_propagation = Distribution::of(terminal_latencies);
    let all_finished = all_finished_ms.map(|t| (t - t1) as f64 / 1000.0);
    let interval_s = cfg.poll.as_secs_f64();
    // What the apiserver is asked to write per reset: status PATCHes (watch) + Event writes.
    let writes_per_reset = (writes_sum as f64 + events.writes as f64) / nf;
    let tracking_cores = (cpu_at_end - cpu_at_t1) / tracking_s.max(1e-9);

    let figures = json!({
        "operationsFinished": finished.len(),
        "initialSweepSeconds": sweep,
        "initialSweepResourcesPerSecond": sweep.map(|s| n as f64 / s),
        "initialSweepStatusWrites": sweep_writes,
        "graphGetsBeforeClocksStarted": gets_before_t1,
        "graphGetsPerOperation": gets_sum as f64 / nf,
        "minimumPerOperation": min_sum as f64 / nf,
        "operationsOverMinimumPlusOne": over_min,
        "maxGetsOverMinimum": max_excess,
        "graphGetsAfterTerminal": after_terminal,
        "operationsPolledAfterTerminal": ops_after_terminal,
        "graphGetsDuringTail": tail_gets,
        "statusWritesPerOperation": writes_sum as f64 / nf,
        "distinctStatesPlusOnePerOperation": bound_sum as f64 / nf,
        "operationsOverWriteBound": over_writes,
        "statusWritesMetricPerOperation": metrics.status_writes / n as f64,
        "writesPerReset": writes_per_reset,
        "eventWritesPerOperation": events.writes as f64 / nf,
        "peakRssBytesPerResource": bytes_per_resource(&process, n),
        "propagationSeconds": propagation,
        "terminalPropagationSeconds": terminal_propagation,
        "secondsFromClockStartUntilAllFinished": all_finished,
        "trackingPhaseCores": tracking_cores,
        "pollGapSeconds": gaps,
        "sweepLoadCores": sweep_load,
        "trackingLoadCores": tracking_load,
        "otherEmulatorRequests": log.other,
    });
    let fmt_opt = |v: Option<f64>| v.map_or("did not happen".to_string(), |v| format!("{v:.1} s"));
    let mut rows = vec![
        (
            "Setup: create N resources".to_string(),
            format!("{setup:.1} s ({setup_rate:.0}/s, not part of the scenario)"),
        ),
        (
            "Initial sweep: every new resource shows notStarted".into(),
            format!(
                "{} after spawn ({} resources/s; {sweep_writes} status writes, {gets_before_t1} GETs before the clocks started)",
                fmt_opt(sweep),
                sweep.map_or("-".into(), |s| format!("{:.0}", n as f64 / s))
            ),
        ),
        ("Operations finished (Finished=True seen)".into(), format!("{} of {n}", finished.len())),
        (
            "Graph GETs per operation (from its clock start)".into(),
            format!("{:.2} (minimum ⌈duration/interval⌉+1: {:.2})", gets_sum as f64 / nf, min_sum as f64 / nf),
        ),
        (
            "Operations with GETs > minimum + 1".into(),
            format!("{over_min} (largest excess over the minimum: {max_excess})"),
        ),
        (
            "Graph GETs after the terminal status was written".into(),
            format!(
                "{after_terminal} (operations: {ops_after_terminal}); GETs during the {}s tail: {tail_gets}",
                tail.as_secs()
            ),
        ),
        (
            "Status writes per operation (watch, whole scenario)".into(),
            format!(
                "{:.2} (distinct states seen + 1: {:.2}); /metrics: {:.2}",
                writes_sum as f64 / nf,
                bound_sum as f64 / nf,
                metrics.status_writes / n as f64
            ),
        ),
        ("Operations with writes > distinct states + 1".into(), over_writes.to_string()),
        (
            "apiserver writes per reset (status PATCHes + Event writes)".into(),
            format!("{writes_per_reset:.2} ({:.2} + {:.2})", writes_sum as f64 / nf, events.writes as f64 / nf),
        ),
        (
            "Propagation, Graph state change → status seen by a watch".into(),
            format!(
                "p50 {:.2} s, p90 {:.2} s, p99 {:.2} s, max {:.2} s ({} changes)",
                propagation.p50, propagation.p90, propagation.p99, propagation.max, propagation.count
            ),
        ),
        (
            "… of which terminal states".into(),
            format!(
                "p50 {:.2} s, p99 {:.2} s, max {:.2} s ({} changes)",
                terminal_propagation.p50,
                terminal_propagation.p99,
                terminal_propagation.max,
                terminal_propagation.count
            ),
        ),
        (
            "Gap between two GETs of one operation (after clock start)".into(),
            format!("p50 {:.2} s, p90 {:.2} s, p99 {:.2} s, max {:.2} s", gaps.p50, gaps.p90, gaps.p99, gaps.max),
        ),
        ("Clock start → all operations finished".into(), fmt_opt(all_finished)),
        (
            "CPU during the sweep / while tracking (cores)".into(),
            format!(
                "operator {:.2} / {:.2}, control plane {:.2} / {:.2}, other processes {:.2} / {:.2}",
                sweep_load.operator,
                tracking_load.operator,
                sweep_load.control_plane,
                tracking_load.control_plane,
                sweep_load.other,
                tracking_load.other
            ),
        ),
        ("Operator CPU while tracking (clock start → all finished)".into(), format!("{tracking_cores:.3} cores")),
    ];
    rows.extend(process_rows(&process, &metrics, &events, state_changes_seen, n));

    let mut checks = vec![
        check(
            "finished",
            "Every operation reached Finished=True",
            "all",
            format!("{} of {n}", finished.len()),
            Some(finished.len() == n),
        ),
        check(
            "gets-per-op",
            "Graph GETs per operation",
            "≤ minimum + 1 for every operation",
            format!(
                "mean {:.2} vs minimum {:.2}; {over_min} operations over",
                gets_sum as f64 / nf,
                min_sum as f64 / nf
            ),
            Some(over_min == 0),
        ),
        check(
            "gets-after-terminal",
            "Graph GETs after the terminal status",
            "0",
            after_terminal.to_string(),
            Some(after_terminal == 0 && tail_gets == 0),
        ),
        check(
            "writes-per-op",
            "Status writes per operation",
            "≤ distinct states + 1",
            format!(
                "mean {:.2} vs {:.2}; {over_writes} operations over",
                writes_sum as f64 / nf,
                bound_sum as f64 / nf
            ),
            Some(over_writes == 0),
        ),
        check(
            "propagation",
            "Propagation p99",
            &format!("≤ {:.0} s (interval + 1 s) at N = {PROPAGATION_TARGET_N}", interval_s + 1.0),
            format!("{:.2} s", propagation.p99),
            (n <= PROPAGATION_TARGET_N).then_some(propagation.p99 <= interval_s + 1.0),
        ),
        check(
            "propagation-10000",
            "Propagation p50 / p99",
            &format!("p50 ≤ {interval_s:.0} s, p99 ≤ {:.0} s (2 × interval) at N = {RSS_TARGET_N}", 2.0 * interval_s),
            format!("p50 {:.2} s, p99 {:.2} s", propagation.p50, propagation.p99),
            (n == RSS_TARGET_N).then_some(propagation.p50 <= interval_s && propagation.p99 <= 2.0 * interval_s),
        ),
        check(
            "writes-per-reset",
            "apiserver writes per reset (status + Events)",
            &format!("≤ {WRITES_PER_RESET_TARGET:.1} at N = {RSS_TARGET_N}"),
            format!("{writes_per_reset:.2}"),
            (n == RSS_TARGET_N).then_some(writes_per_reset <= WRITES_PER_RESET_TARGET),
        ),
        rss_check(n, &process),
        check(
            "cpu",
            "Operator CPU, average over the scenario",
            &format!("≤ {CPU_TARGET_CORES} cores at N = {RSS_TARGET_N}; < 1 core everywhere"),
            format!("{:.3} cores (tracking phase {tracking_cores:.3})", process.average_cores),
            Some(if n == RSS_TARGET_N {
                process.average_cores <= CPU_TARGET_CORES
            } else {
                process.average_cores < 1.0 && tracking_cores < 1.0
            }),
        ),
    ];
    if no_events {
        // A diagnostic run: its figures explain others, it is not judged itself.
        checks.clear();
    }
    let title = if no_events {
        format!("Diagnostic: scenario 1 at N = {n} with the operator denied writing Events")
    } else {
        format!("Scenario 1: {n} active operations, finishing over {} s", cfg.spread.as_secs())
    };
    Ok(ScenarioReport {
        id,
        kind: if no_events { "active-no-events" } else { "active" },
        title,
        n,
        setup_seconds: setup,
        setup_per_second: setup_rate,
        figures,
        rows,
        process,
        metrics,
        events,
        state_changes_seen,
        watch_restarts: restarts,
        emulator_log_lost: log.lost,
        emulator_stats,
        graph_gets_not_ok,
        emulator_latency_mean_ms,
        apiserver,
        checks,
        samples,
    })
}

fn terminal_status(i: usize, failed: bool, finished_ms: i64) -> Value {
    let phase = if failed {
        Phase::new(
            Reason::OperationFailed,
            "The password reset failed: The password does not meet the complexity requirements.",
        )
    } else {
        Phase::new(Reason::Succeeded, "The password reset succeeded")
    };
    let at = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::from_millisecond(finished_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
    );
    let conditions = conditions::conditions_for(&phase, Some(1), &at, &[]);
    json!({
        "status": if failed { "failed" } else { "succeeded" },
        "operationId": operation_id(i),
        "createdDateTime": timestamp(finished_ms - 60_000),
        "lastActionDateTime": timestamp(finished_ms),
        "observedGeneration": 1,
        "lastPolledTime": timestamp(finished_ms),
        "completionTime": timestamp(finished_ms),
        "conditions": conditions,
    })
}

/// Scenario 2: the operator starts with N resources that finished before it started.
pub async fn startup(cfg: &Cfg, n: usize) -> anyhow::Result<ScenarioReport> {
    let id = format!("startup-{n}");
    let w = world(cfg, &id).await?;
    let finished_ms = now_ms() - 120_000;
    let failed = |i: usize| i % 10 == 3;
    let resources = (0..n)
        .map(|i| NewResource {
            name: resource_name(i),
            spec: spec(i),
            status: Some(terminal_status(i, failed(i), finished_ms)),
        })
        .collect();
    let (setup, setup_rate) = create(cfg, &w, &id, resources).await?;
    // Graph knows them too, so a GET would find them (and show up in the log by id).
    let ops = (0..n)
        .map(|i| {
            let last = if failed(i) { "failed" } else { "succeeded" };
            emulator_operation(i, finished_ms - 60_000, json!([{"status": last, "afterMs": 0}]))
        })
        .collect();
    w.emu.add_operations(ops).await?;
    let recorder = Recorder::start(&w.client, NS, RESOURCE_PREFIX, n);
    recorder.wait_baseline().await?;
    let (finished_at_start, _, _) = recorder.counts();
    if finished_at_start != n {
        bail!("only {finished_at_start} of {n} resources show Finished=True before the operator starts");
    }
    let collector = Collector::start(&w.emu);

    let (op, ready) = start_operator(cfg, &w).await?;
    say(&id, &format!("operator ready after {ready:.2}s"));
    let sampler = Sampler::start(op.pid, op.started, w.cp.pids(), w.emulator.pid());
    // Every resource is reconciled once at start: how long until the last one was?
    let mut swept = None;
    let patience = Duration::from_secs(120) + Duration::from_millis(2 * n as u64);
    while op.started.elapsed() < patience {
        let m = scrape(&op.metrics_url()).await?;
        if m.reconciles_ok + m.reconciles_error >= n as f64 {
            swept = Some(op.started.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let swept_text = swept.map_or(format!("not within {patience:?}"), |s| format!("after {s:.2}s"));
    say(&id, &format!("initial reconciles done {swept_text}; watching {:?} more", cfg.startup_window));
    tokio::time::sleep(cfg.startup_window).await;
    let (mut process, metrics, samples) = finish_operator(op, sampler).await?;
    process.ready_seconds = ready;
    let log = collector.finish().await?;
    let restarts = recorder.restarts();
    let tracks = recorder.finish();
    let state_changes_seen: u64 = tracks.iter().map(|t| t.states.len() as u64).sum();
    let events = apiserver::count_events(&w.client, NS).await?;
    let emulator_stats = w.emu.stats().await?;
    let apiserver = apiserver::apiserver_requests(&w.client).await.unwrap_or_default();
    drop(w);
    let emulator_latency_mean_ms = mean(log.gets.iter().map(|g| g.duration_ms as f64));
    let graph_gets_not_ok = log.gets.iter().filter(|g| g.status != 200).count();

    let writes: u64 = tracks.iter().map(|t| u64::from(t.writes)).sum();
    let gets = log.gets.len();
    let listed_to_reconciled = swept.map(|s| s - ready);
    let figures = json!({
        "readySeconds": ready,
        "secondsFromCacheListedUntilEveryResourceReconciled": listed_to_reconciled,
        "peakRssBytesPerResource": bytes_per_resource(&process, n),
        "secondsUntilEveryResourceReconciled": swept,
        "graphGets": gets,
        "otherEmulatorRequests": log.other,
        "statusWritesWatch": writes,
        "statusWritesMetric": metrics.status_writes,
    });
    let mut rows = vec![
        (
            "Setup: create N resources and write their terminal status".to_string(),
            format!("{setup:.1} s ({setup_rate:.0}/s, not part of the scenario)"),
        ),
        (
            "Every resource reconciled once (pwreset_reconciles_total ≥ N)".into(),
            swept.map_or("not within the deadline".into(), |s| {
                format!("{s:.2} s after spawn, {:.2} s after the cache was listed (/readyz)", s - ready)
            }),
        ),
        (
            "Graph requests".into(),
            format!(
                "{gets} operation GETs, {} token/other requests (emulator log); /metrics: {}",
                log.other, metrics.graph_requests
            ),
        ),
        ("Status writes".into(), format!("{writes} (watch), {} (/metrics)", metrics.status_writes)),
        ("Observed for".into(), format!("{:.0} s after ready", process.wall_seconds - ready)),
    ];
    rows.extend(process_rows(&process, &metrics, &events, state_changes_seen, n));
    let checks = vec![
        check(
            "ready",
            "Start → /readyz 200 (the cache is listed)",
            &format!("≤ 5 s at N = {RSS_TARGET_N}"),
            format!("{ready:.2} s"),
            (n == RSS_TARGET_N).then_some(ready <= 5.0),
        ),
        check(
            "startup-reconciled",
            "Cache listed → every finished resource reconciled once",
            "≤ 10 s",
            listed_to_reconciled.map_or("did not happen".into(), |s| format!("{s:.2} s")),
            Some(listed_to_reconciled.is_some_and(|s| s <= 10.0)),
        ),
        check(
            "startup-graph",
            "Graph calls for finished resources",
            "0",
            format!("{}", gets as u64 + log.other + metrics.graph_requests as u64),
            Some(gets == 0 && log.other == 0 && metrics.graph_requests == 0.0),
        ),
        check(
            "startup-writes",
            "Status writes for finished resources",
            "0",
            format!("{writes}"),
            Some(writes == 0 && metrics.status_writes == 0.0),
        ),
        rss_check(n, &process),
    ];
    Ok(ScenarioReport {
        id,
        kind: "startup",
        title: format!("Scenario 2: start with {n} already-finished resources"),
        n,
        setup_seconds: setup,
        setup_per_second: setup_rate,
        figures,
        rows,
        process,
        metrics,
        events,
        state_changes_seen,
        watch_restarts: restarts,
        emulator_log_lost: log.lost,
        emulator_stats,
        graph_gets_not_ok,
        emulator_latency_mean_ms,
        apiserver,
        checks,
        samples,
    })
}

/// Scenario 3: N running operations whose Graph state never changes.
pub async fn steady(cfg: &Cfg, n: usize) -> anyhow::Result<ScenarioReport> {
    let id = format!("steady-{n}");
    let w = world(cfg, &id).await?;
    let (setup, setup_rate) = create(
        cfg,
        &w,
        &id,
        (0..n).map(|i| NewResource { name: resource_name(i), spec: spec(i), status: None }).collect(),
    )
    .await?;
    let created = now_ms() - 60_000;
    let ops = (0..n).map(|i| emulator_operation(i, created, json!([{"status": "running", "afterMs": 0}]))).collect();
    w.emu.add_operations(ops).await?;
    let recorder = Recorder::start(&w.client, NS, RESOURCE_PREFIX, n);
    recorder.wait_baseline().await?;
    let collector = Collector::start(&w.emu);

    let spawn_ms = now_ms();
    let (mut op, ready) = start_operator(cfg, &w).await?;
    say(&id, &format!("operator ready after {ready:.2}s; waiting until every resource shows running"));
    let sampler = Sampler::start(op.pid, op.started, w.cp.pids(), w.emulator.pid());
    let deadline = Instant::now() + Duration::from_secs(300) + Duration::from_millis(30 * n as u64);
    let swept = wait_for_state(&id, &recorder, &mut op, "running", n, deadline).await?;
    let swept = swept.map(|t| (t - spawn_ms) as f64 / 1000.0);
    // A moment for the last writes of the sweep to land, then the steady window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, _, writes0) = recorder.counts();
    let m0 = scrape(&op.metrics_url()).await?;
    let w0 = now_ms();
    say(&id, &format!("steady window of {:?} starts", cfg.steady_window));
    let window_end = Instant::now() + cfg.steady_window;
    while Instant::now() < window_end {
        if let Some(status) = op.exited() {
            bail!("the operator exited ({status}):\n{}", op.log_tail(30));
        }
        tokio::time::sleep(Duration::from_millis(500).min(window_end.saturating_duration_since(Instant::now()))).await;
    }
    let w1 = now_ms();
    let m1 = scrape(&op.metrics_url()).await?;
    let (_, _, writes1) = recorder.counts();
    let (mut process, metrics, samples) = finish_operator(op, sampler).await?;
    process.ready_seconds = ready;
    let log = collector.finish().await?;
    let restarts = recorder.restarts();
    let tracks: Vec<Track> = recorder.finish();
    let state_changes_seen: u64 = tracks.iter().map(|t| t.states.len() as u64).sum();
    let events = apiserver::count_events(&w.client, NS).await?;
    let emulator_stats = w.emu.stats().await?;
    let apiserver = apiserver::apiserver_requests(&w.client).await.unwrap_or_default();
    drop(w);
    let emulator_latency_mean_ms = mean(log.gets.iter().map(|g| g.duration_ms as f64));
    let graph_gets_not_ok = log.gets.iter().filter(|g| g.status != 200).count();

    let interval = cfg.poll.as_millis() as i64;
    let window_ms = w1 - w0;
    let minimum = ceil_div(window_ms, interval);
    let by_op = gets_by_operation(&log, n);
    let mut per_op = Vec::with_capacity(n);
    let mut over = 0usize;
    let mut max_gaps = Vec::with_capacity(n);
    for gets in &by_op {
        let in_window: Vec<i64> = gets.iter().copied().filter(|&t| t >= w0 && t < w1).collect();
        let count = in_window.len() as i64;
        if count > minimum + 1 {
            over += 1;
        }
        per_op.push(count as f64);
        if let Some(gap) = in_window.windows(2).map(|p| p[1] - p[0]).max() {
            max_gaps.push(gap as f64 / 1000.0);
        }
    }
    let gets_in_window: f64 = per_op.iter().sum();
    let per_op_dist = Distribution::of(per_op.clone());
    let min_per_op = per_op.iter().copied().fold(f64::INFINITY, f64::min);
    let gaps = Distribution::of(max_gaps);
    let writes_window = writes1 - writes0;
    let writes_metric = m1.status_writes - m0.status_writes;
    let t_w0 = (w0 - spawn_ms) as f64 / 1000.0;
    let t_w1 = (w1 - spawn_ms) as f64 / 1000.0;
    let window_load = load_during(&samples, t_w0, t_w1);
    let window_s = window_ms as f64 / 1000.0;
    // Everything the operator spends in the window is for polls (GET + reconcile).
    let cpu_per_poll_us = window_load.operator * window_s / gets_in_window.max(1.0) * 1e6;
    // The emulator serves the very same GETs: its cost per GET gauges this host's speed
    // from the same window, so a per-poll figure can be read against the host it ran on.
    let emulator_per_get_us = window_load.emulator * window_s / gets_in_window.max(1.0) * 1e6;
    let figures = json!({
        "cpuMicrosecondsPerPoll": cpu_per_poll_us,
        "emulatorCpuMicrosecondsPerGet": emulator_per_get_us,
        "peakRssBytesPerResource": bytes_per_resource(&process, n),
        "secondsUntilEveryResourceShowedRunning": swept,
        "windowSeconds": window_s,
        "graphGetsInWindow": gets_in_window,
        "graphGetsPerOperation": per_op_dist,
        "graphGetsPerOperationMean": mean(per_op.iter().copied()),
        "minimumPerOperation": minimum,
        "operationsOverMinimumPlusOne": over,
        "graphGetsPerSecond": gets_in_window / window_s,
        "graphRequestsMetricInWindow": m1.graph_requests - m0.graph_requests,
        "statusWritesInWindowWatch": writes_window,
        "statusWritesInWindowMetric": writes_metric,
        "largestPollGapPerOperationSeconds": gaps,
        "windowLoadCores": window_load,
    });
    let mut rows = vec![
        (
            "Setup: create N resources".to_string(),
            format!("{setup:.1} s ({setup_rate:.0}/s, not part of the scenario)"),
        ),
        (
            "Every resource showed running (initial sweep)".into(),
            swept.map_or("not within the deadline".into(), |s| format!("{s:.1} s after spawn")),
        ),
        ("Steady window".into(), format!("{window_s:.0} s, Graph state unchanged throughout")),
        (
            "Graph GETs per operation in the window".into(),
            format!(
                "mean {:.2}, min {:.0}, max {:.0} (minimum ⌈window/interval⌉ = {minimum}); {:.0} GETs/s in total",
                mean(per_op.iter().copied()),
                min_per_op,
                per_op_dist.max,
                gets_in_window / window_s
            ),
        ),
        ("Operations with GETs > minimum + 1".into(), over.to_string()),
        (
            "Largest gap between two polls of one operation".into(),
            format!("p50 {:.2} s, p99 {:.2} s, max {:.2} s", gaps.p50, gaps.p99, gaps.max),
        ),
        ("Status writes in the window".into(), format!("{writes_window} (watch), {writes_metric} (/metrics)")),
        ("Operator CPU per poll (GET + reconcile) in the window".into(), format!("{cpu_per_poll_us:.0} µs")),
        (
            "Graph emulator CPU per GET it served in the window (the same exchange's server side: this host's speed)"
                .into(),
            format!(
                "{emulator_per_get_us:.0} µs; the operator's poll cost {:.1}× that",
                cpu_per_poll_us / emulator_per_get_us.max(f64::MIN_POSITIVE)
            ),
        ),
        (
            "CPU in the window (cores)".into(),
            format!(
                "operator {:.3}, control plane {:.2}, emulator {:.2}, bench driver {:.2}, other processes {:.2}",
                window_load.operator,
                window_load.control_plane,
                window_load.emulator,
                window_load.bench,
                window_load.other
            ),
        ),
    ];
    rows.extend(process_rows(&process, &metrics, &events, state_changes_seen, n));
    let checks = vec![
        check(
            "steady-gets",
            "Graph GETs per operation (steady window)",
            &format!("≤ minimum + 1 = {}", minimum + 1),
            format!("mean {:.2}, max {:.0}; {over} operations over", mean(per_op.iter().copied()), per_op_dist.max),
            Some(over == 0),
        ),
        check(
            "steady-writes",
            "Status writes for unchanged polls",
            "0",
            format!("{writes_window} (watch), {writes_metric} (/metrics)"),
            Some(writes_window == 0 && writes_metric == 0.0),
        ),
        check(
            "cpu-per-poll",
            "Operator CPU per steady-state poll (GET + reconcile)",
            &format!("≤ {CPU_PER_POLL_TARGET_US:.0} µs"),
            format!("{cpu_per_poll_us:.0} µs"),
            Some(cpu_per_poll_us <= CPU_PER_POLL_TARGET_US),
        ),
        rss_check(n, &process),
    ];
    Ok(ScenarioReport {
        id,
        kind: "steady",
        title: format!(
            "Scenario 3: {n} running operations, Graph state unchanged for {} s",
            cfg.steady_window.as_secs()
        ),
        n,
        setup_seconds: setup,
        setup_per_second: setup_rate,
        figures,
        rows,
        process,
        metrics,
        events,
        state_changes_seen,
        watch_restarts: restarts,
        emulator_log_lost: log.lost,
        emulator_stats,
        graph_gets_not_ok,
        emulator_latency_mean_ms,
        apiserver,
        checks,
        samples,
    })
}
