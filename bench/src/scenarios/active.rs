//! Scenario 1: active operations finishing over a spread (and its no-events diagnostic).

use super::*;

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
            &format!(
                "p50 ≤ {interval_s:.0} s, p99 ≤ {:.0} s ({P99_INTERVALS_AT_SCALE:.0} × interval) at N = {RSS_TARGET_N}",
                P99_INTERVALS_AT_SCALE * interval_s
            ),
            format!("p50 {:.2} s, p99 {:.2} s", propagation.p50, propagation.p99),
            (n == RSS_TARGET_N)
                .then_some(propagation.p50 <= interval_s && propagation.p99 <= P99_INTERVALS_AT_SCALE * interval_s),
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
