//! Scenario 1 with two operator processes side by side (`--shard 0|1 --total-shards 2`):
//! the same N resources and scripted operations, and how the work splits between them.

use std::time::{Duration, Instant};

use anyhow::bail;
use pwreset_testkit::Operator;
use pwreset_testkit::kube::NewResource;
use pwreset_testkit::process::{cpu_seconds, memory_kib};
use pwreset_testkit::watch::Recorder;
use serde_json::json;

use crate::apiserver;
use crate::sampler::Sampler;
use crate::scenarios::{
    Cfg, OpMetrics, Process, ScenarioReport, check, create, emulator_operation, plans, resource_name, say, scrape,
    spec, start_operator_as, world,
};
use crate::stats::mean;
use crate::{RESOURCE_PREFIX, now_ms};

const SHARDS: u32 = 2;
const MIB: f64 = 1024.0;

/// One shard's share, read just before it is stopped.
struct Share {
    shard: u32,
    ready: f64,
    cpu: f64,
    wall: f64,
    peak_rss_mib: f64,
    metrics: OpMetrics,
}

pub async fn sharded(cfg: &Cfg, n: usize) -> anyhow::Result<ScenarioReport> {
    let id = format!("sharded-{n}");
    let w = world(cfg, &id).await?;
    let plans = plans(n, cfg.spread, cfg.seed);
    let resources = (0..n).map(|i| NewResource { name: resource_name(i), spec: spec(i), status: None }).collect();
    let (setup, setup_rate) = create(cfg, &w, &id, resources).await?;
    let created = now_ms();
    let waiting =
        (0..n).map(|i| emulator_operation(i, created, json!([{"status": "notStarted", "afterMs": 0}]))).collect();
    w.emu.add_operations(waiting).await?;
    let recorder = Recorder::start(&w.client, crate::scenarios::NS, RESOURCE_PREFIX, n);
    recorder.wait_baseline().await?;

    let spawn_ms = now_ms();
    let mut ops: Vec<(Operator, f64)> = Vec::new();
    for shard in 0..SHARDS {
        let flags = ["--shard".to_string(), shard.to_string(), "--total-shards".into(), SHARDS.to_string()];
        ops.push(start_operator_as(cfg, &w, &flags, &format!("operator-shard-{shard}.log")).await?);
    }
    // The samplers see the control plane and emulator too: the first one's figures are the
    // machine's load; each gives its own operator's CPU.
    let samplers: Vec<Sampler> =
        ops.iter().map(|(op, _)| Sampler::start(op.pid, op.started, w.cp.pids(), w.emulator.pid())).collect();
    let deadline = Instant::now() + Duration::from_secs(300) + Duration::from_millis(30 * n as u64);
    while recorder.count_state("notStarted") < n && Instant::now() < deadline {
        for (op, _) in &mut ops {
            if let Some(status) = op.exited() {
                bail!("an operator exited ({status}):\n{}", op.log_tail(30));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sweep = (now_ms() - spawn_ms) as f64 / 1000.0;
    say(&id, &format!("both shards ready; sweep done after {sweep:.1}s; operations now finish over {:?}", cfg.spread));

    // The scripted clocks start, as in scenario 1.
    let t1 = now_ms() + 2000;
    let offset = t1 - created;
    let scripted = plans
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let last = if p.failed { "failed" } else { "succeeded" };
            emulator_operation(
                i,
                created,
                json!([{"status": "notStarted", "afterMs": 0}, {"status": "running", "afterMs": offset + p.running_ms},
                       {"status": last, "afterMs": offset + p.finish_ms}]),
            )
        })
        .collect();
    w.emu.add_operations(scripted).await?;
    let deadline = Instant::now() + cfg.spread + Duration::from_secs(120) + Duration::from_millis(20 * n as u64);
    let mut all_finished = None;
    while Instant::now() < deadline {
        if recorder.counts().0 == n {
            all_finished = Some((now_ms() - t1) as f64 / 1000.0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(cfg.poll * 2).await;

    let mut shares = Vec::new();
    let mut samples = Vec::new();
    for (shard, ((mut op, ready), sampler)) in ops.into_iter().zip(samplers).enumerate() {
        let metrics = scrape(&op.metrics_url()).await?;
        let cpu = cpu_seconds(op.pid).unwrap_or(0.0);
        let (_, hwm) = memory_kib(op.pid).unwrap_or((0, 0));
        let wall = op.started.elapsed().as_secs_f64();
        let s = sampler.finish();
        if shard == 0 {
            samples = s;
        }
        op.stop();
        shares.push(Share { shard: shard as u32, ready, cpu, wall, peak_rss_mib: hwm as f64 / MIB, metrics });
    }
    let (finished, _, _) = recorder.counts();
    let restarts = recorder.restarts();
    let tracks = recorder.finish();
    let writes: u64 = tracks.iter().map(|t| u64::from(t.writes)).sum();
    let state_changes_seen: u64 = tracks.iter().map(|t| t.states.len() as u64).sum();
    let events = apiserver::count_events(&w.client, crate::scenarios::NS).await?;
    let emulator_stats = w.emu.stats().await?;
    let apiserver = apiserver::apiserver_requests(&w.client).await.unwrap_or_default();
    drop(w);

    let nf = n.max(1) as f64;
    let reconciled: f64 = shares.iter().map(|s| s.metrics.reconciles_ok + s.metrics.reconciles_error).sum();
    let mut rows = vec![
        (
            "Setup: create N resources".to_string(),
            format!("{setup:.1} s ({setup_rate:.0}/s, not part of the scenario)"),
        ),
        ("Initial sweep (every resource shows notStarted)".into(), format!("{sweep:.1} s after the first spawn")),
        ("Operations finished".into(), format!("{finished} of {n}")),
        (
            "Clock start → all operations finished".into(),
            all_finished.map_or("did not happen".into(), |s| format!("{s:.1} s")),
        ),
        (
            "apiserver writes per reset (status PATCHes + Event writes, both shards)".into(),
            format!(
                "{:.2} ({:.2} + {:.2})",
                (writes + events.writes) as f64 / nf,
                writes as f64 / nf,
                events.writes as f64 / nf
            ),
        ),
    ];
    for s in &shares {
        let m = &s.metrics;
        let share = (m.reconciles_ok + m.reconciles_error) / reconciled.max(1.0);
        rows.push((
            format!("Shard {} of {SHARDS}", s.shard),
            format!(
                "{:.0} % of reconciles ({:.0}); Graph requests {:.0}, status writes {:.0}; CPU {:.1} s = {:.3} cores; \
                 peak RSS {:.1} MiB; ready after {:.2} s",
                share * 100.0,
                m.reconciles_ok + m.reconciles_error,
                m.graph_requests,
                m.status_writes,
                s.cpu,
                s.cpu / s.wall.max(1e-9),
                s.peak_rss_mib,
                s.ready
            ),
        ));
    }
    let shares_pct: Vec<f64> = shares
        .iter()
        .map(|s| (s.metrics.reconciles_ok + s.metrics.reconciles_error) / reconciled.max(1.0) * 100.0)
        .collect();
    let figures = json!({
        "sweepSeconds": sweep,
        "operationsFinished": finished,
        "secondsFromClockStartUntilAllFinished": all_finished,
        "writesPerReset": (writes + events.writes) as f64 / nf,
        "statusWritesPerOperation": writes as f64 / nf,
        "eventWritesPerOperation": events.writes as f64 / nf,
        "shards": shares.iter().zip(&shares_pct).map(|(s, pct)| json!({
            "shard": s.shard, "reconcileSharePercent": pct, "reconciles": s.metrics.reconciles_ok + s.metrics.reconciles_error,
            "graphRequests": s.metrics.graph_requests, "statusWrites": s.metrics.status_writes,
            "cpuSeconds": s.cpu, "averageCores": s.cpu / s.wall.max(1e-9), "peakRssMiB": s.peak_rss_mib, "readySeconds": s.ready,
        })).collect::<Vec<_>>(),
    });
    // What both together cost, for the common part of the report.
    let process = Process {
        ready_seconds: shares.iter().map(|s| s.ready).fold(0.0, f64::max),
        wall_seconds: shares.iter().map(|s| s.wall).fold(0.0, f64::max),
        cpu_seconds: shares.iter().map(|s| s.cpu).sum(),
        average_cores: shares.iter().map(|s| s.cpu / s.wall.max(1e-9)).sum(),
        peak_rss_mib: shares.iter().map(|s| s.peak_rss_mib).fold(0.0, f64::max),
        ..Process::default()
    };
    let mut metrics = OpMetrics::default();
    for s in &shares {
        metrics.graph_requests += s.metrics.graph_requests;
        metrics.status_writes += s.metrics.status_writes;
        metrics.reconciles_ok += s.metrics.reconciles_ok;
        metrics.reconciles_error += s.metrics.reconciles_error;
        metrics.token_requests += s.metrics.token_requests;
    }
    metrics.graph_latency_mean_ms = mean(shares.iter().map(|s| s.metrics.graph_latency_mean_ms));
    let (low, high) =
        (shares_pct.iter().copied().fold(100.0, f64::min), shares_pct.iter().copied().fold(0.0, f64::max));
    rows.push(("Mean peak RSS per shard".into(), format!("{:.1} MiB", mean(shares.iter().map(|s| s.peak_rss_mib)))));
    let checks = vec![
        check(
            "finished",
            "Every operation reached Finished=True",
            "all",
            format!("{finished} of {n}"),
            Some(finished == n),
        ),
        check(
            "shard-split",
            "Reconciles per shard (UID hash)",
            "each shard 40–60 %",
            format!("{low:.0} % / {high:.0} %"),
            Some(low >= 40.0 && high <= 60.0),
        ),
    ];
    Ok(ScenarioReport {
        id,
        kind: "sharded",
        title: format!("Scenario 4: scenario 1 at N = {n} with {SHARDS} operator processes (--shard, --total-shards)"),
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
        emulator_log_lost: 0,
        emulator_stats,
        graph_gets_not_ok: 0,
        emulator_latency_mean_ms: 0.0,
        apiserver,
        checks,
        samples,
    })
}
