//! Scenario 2: a start with resources that finished before the operator started.

use super::*;

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
