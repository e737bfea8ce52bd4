//! Scenario 3: running operations whose Graph state never changes.

use super::*;

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
