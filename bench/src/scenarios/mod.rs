//! The three scenarios, one file each, and what they share: the world each starts in, the
//! operator process and what is read from it. Each gets a fresh control plane and emulator;
//! setup (creating the resources) is timed apart from the scenario, which starts when the
//! operator is spawned.

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
/// Propagation p99 at N = 10,000, in poll intervals (issue 17; p50 ≤ one interval).
pub const P99_INTERVALS_AT_SCALE: f64 = 2.0;
/// Operator CPU, average over scenario 1 at N = 10,000 (issue 17).
pub const CPU_TARGET_CORES: f64 = 0.08;
/// Operator CPU per steady-state poll (one Graph GET and its reconcile), in µs (issue 17).
pub const CPU_PER_POLL_TARGET_US: f64 = 60.0;

mod active;
mod model;
mod startup;
mod steady;

pub use active::active;
pub(crate) use active::plans;
pub(crate) use model::check;
pub use model::{Check, OpMetrics, Process, ScenarioReport};
pub use startup::startup;
pub use steady::steady;

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
        port: None,
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
