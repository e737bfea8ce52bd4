//! For each missed target (and a few things worth knowing even where no target is set):
//! why, from what the run measured, and what would fix it.

use super::report::Finding;
use super::scenarios::{CPU_PER_POLL_TARGET_US, Cfg, P99_INTERVALS_AT_SCALE, PROPAGATION_TARGET_N, ScenarioReport};

fn fig(sc: &ScenarioReport, path: &[&str]) -> Option<f64> {
    let mut v = &sc.figures;
    for key in path {
        v = v.get(key)?;
    }
    v.as_f64()
}

fn api<'a>(sc: &'a ScenarioReport, request: &str) -> Option<&'a crate::apiserver::ApiRequests> {
    sc.apiserver.iter().find(|a| a.request == request)
}

fn api_text(sc: &ScenarioReport) -> String {
    let mut parts = Vec::new();
    if let Some(a) = api(sc, "PATCH passwordresetoperations/status") {
        parts.push(format!("a status PATCH took {:.0} ms of server time on average", a.mean_ms));
    }
    if let Some(a) = api(sc, "POST events (events.k8s.io)") {
        parts.push(format!("an Event POST {:.0} ms", a.mean_ms));
    }
    parts.join(", ")
}

fn finding(
    sc: &ScenarioReport,
    kind: &str,
    figure: &str,
    target: &str,
    measured: String,
    why: String,
    fix: String,
) -> Finding {
    Finding {
        kind: kind.into(),
        scenario: sc.id.clone(),
        figure: figure.into(),
        target: target.into(),
        measured,
        why,
        fix,
    }
}

fn memory_why(sc: &ScenarioReport, all: &[ScenarioReport]) -> String {
    let e = sc.events.writes;
    let mut why = format!(
        "This run peaked at {:.1} MiB with {} resources, having published {e} Events ({:.1} per resource).",
        sc.process.peak_rss_mib,
        sc.n,
        e as f64 / sc.n.max(1) as f64
    );
    if let Some(s) = all.iter().find(|s| s.kind == "startup" && s.n == sc.n) {
        why.push_str(&format!(
            " Holding {} finished resources in the cache without polling or publishing anything (scenario 2) took \
             {:.1} MiB.",
            s.n, s.process.peak_rss_mib
        ));
    }
    if let Some(d) = all.iter().find(|d| d.kind == "active-no-events" && d.n == sc.n) {
        let extra = sc.process.peak_rss_mib - d.process.peak_rss_mib;
        why.push_str(&format!(
            " Scenario 1 with the operator denied writing Events (`{}`) peaked at {:.1} MiB",
            d.id, d.process.peak_rss_mib
        ));
        if e > 0 && extra > 8.0 {
            why.push_str(&format!(
                ", so publishing Events costs about {extra:.0} MiB here, {:.1} KiB per published Event: something \
                 keeps published Events (kube-runtime's `Recorder` caches every Event it published for 6 minutes, \
                 to fold repeats into a series, unless each publish uses a fresh recorder)",
                extra * 1024.0 / e as f64
            ));
            if let (Some(a), Some(b)) = (fig(sc, &["trackingPhaseCores"]), fig(d, &["trackingPhaseCores"])) {
                why.push_str(&format!("; CPU while tracking: {a:.2} cores with Events, {b:.2} without"));
            }
        } else {
            why.push_str(
                ", so Events are not what costs the memory: it goes with the resources and the work in flight",
            );
        }
        why.push('.');
    }
    why
}

const MEMORY_FIX: &str = "Measured with a heap profile (bench/README.md, \"Memory: where it goes\"): with the \
    cache holding each resource's metadata plus its spec and status packed into one buffer (src/cache), the heap at \
    the peak at 10,000 was 17.2 MB in 123,024 blocks (26.6 MB in 352,842 with the full resource cached), 10.9 MB of \
    it the reflector's objects: 1,092 bytes per resource (a 479-byte block around the metadata, 392 bytes of packed \
    spec and status, four metadata strings). Outside the heap, about 12.6 MB of the peak is the binary's code mapped \
    from the page cache (RssFile) and the rest glibc's per-block overhead. Other allocators, glibc arena limits and \
    LTO did not lower the peak; opt-level \"s\" took 3.2 MiB off and added a quarter to the CPU per poll. What would \
    lower it further: the metadata packed too (ObjectMeta is now the largest block per resource), or a smaller binary.";

fn throughput_why(sc: &ScenarioReport, cfg: &Cfg) -> String {
    let interval = cfg.poll.as_secs_f64();
    let mut why = format!(
        "The operator fell behind its poll interval. Every new resource costs one status PATCH for its first \
         Graph state (two when Graph takes longer than `FIRST_ANSWER_BOUND`: the 'WaitingForGraph' conditions \
         first) and every state change one PATCH; Events (problems, recovery, the end) are written by a background \
         task (`src/events.rs`) and hold no reconcile slot. A status PATCH is awaited inside the reconcile, which holds \
         one of the {} reconcile slots meanwhile, so polls of unchanged operations queue behind writes while the \
         apiserver is the bottleneck.",
        cfg.operator_extra
            .iter()
            .find_map(|a| a.strip_prefix("--max-concurrent-reconciles="))
            .unwrap_or("16 (default)")
    );
    let api = api_text(sc);
    if !api.is_empty() {
        why.push_str(&format!(" On this machine {api}."));
    }
    if let (Some(rate), Some(cp)) =
        (fig(sc, &["initialSweepResourcesPerSecond"]), fig(sc, &["sweepLoadCores", "control_plane"]))
    {
        why.push_str(&format!(
            " The initial sweep managed {rate:.0} new resources/s while the control plane used {cp:.2} cores (other \
             processes {:.2}).",
            fig(sc, &["sweepLoadCores", "other"]).unwrap_or(0.0)
        ));
    }
    if let Some(rate) = fig(sc, &["initialSweepResourcesPerSecond"]).filter(|r| *r > 0.0) {
        // The script moves every operation to `running` within the first tenth of the spread.
        let burst = cfg.spread.as_secs_f64() / 10.0;
        // For the p99 target, those writes must be done within the burst plus that bound.
        let p99_bound = P99_INTERVALS_AT_SCALE * interval;
        let needed = sc.n as f64 / (burst + p99_bound);
        why.push_str(&format!(
            " At the sweep's rate of one write each, the {} `running` transitions the script puts in the first \
             {burst:.0} s take {:.0} s to write at all; a p99 of {:.0} s would need them written at {needed:.0}/s at least, \
             {:.1}× what this control plane managed.",
            sc.n,
            sc.n as f64 / rate,
            p99_bound,
            needed / rate
        ));
    }
    if let (Some(p50), Some(p99)) = (fig(sc, &["pollGapSeconds", "p50"]), fig(sc, &["pollGapSeconds", "p99"])) {
        why.push_str(&format!(
            " While the operations changed state, one operation was polled every {p50:.1} s (p50; p99 {p99:.1} s) \
             instead of every {interval:.0} s"
        ));
        if let Some(cp) = fig(sc, &["trackingLoadCores", "control_plane"]) {
            why.push_str(&format!(", with the control plane at {cp:.2} cores"));
        }
        why.push('.');
    }
    why
}

const THROUGHPUT_FIX: &str = "Events are already off the reconcile path and only for problems and the end, and a change \
    costs one status write, which the watch needs to show it at all. What is left is the apiserver's write throughput \
    on this machine (the control plane shares its 2 cores with everything else): a control plane that writes faster \
    than the rate named above. More reconcile slots help only while the apiserver has headroom (an earlier run on \
    2026-11-30: --max-concurrent-reconciles=64 instead of 16 gave p99 24.2 s instead of 31.3 s at 10,000, for 6.2 MiB \
    more peak RSS); sharding (`--shard`/`--total-shards`) splits the operator's work, not the apiserver's.";

/// The steady window's gauge of the host: what the emulator spent per GET it served, and
/// what the operator's poll would cost on a host where the gauge allows the target.
fn host_speed(scenarios: &[ScenarioReport]) -> String {
    let Some((poll, served)) = scenarios
        .iter()
        .find_map(|sc| Some((fig(sc, &["cpuMicrosecondsPerPoll"])?, fig(sc, &["emulatorCpuMicrosecondsPerGet"])?)))
    else {
        return String::new();
    };
    if served <= 0.0 {
        return String::new();
    }
    let ratio = poll / served;
    format!(
        " In scenario 3's steady window the Graph emulator spent {served:.0} µs of CPU on each GET it served (the server side \
         of the same HTTP/1 exchange plus its request log, no Kubernetes work): the operator's whole poll cost {ratio:.1}× that. At \
         that ratio the per-poll target ({CPU_PER_POLL_TARGET_US:.0} µs) is met on a host that serves a GET in \
         {:.0} µs or less.",
        CPU_PER_POLL_TARGET_US / ratio
    )
}

pub fn explain(scenarios: &[ScenarioReport], cfg: &Cfg) -> Vec<Finding> {
    let mut out = Vec::new();
    let interval = cfg.poll.as_secs_f64();
    for sc in scenarios {
        for c in sc.checks.iter().filter(|c| c.pass == Some(false)) {
            let (why, fix) = match c.id {
                "rss" => (memory_why(sc, scenarios), MEMORY_FIX.to_string()),
                "propagation" | "propagation-10000" | "gets-per-op" | "steady-gets" => {
                    (throughput_why(sc, cfg), THROUGHPUT_FIX.to_string())
                }
                "writes-per-reset" => (
                    format!(
                        "{} Event writes and {:.2} status writes per resource (watch).",
                        sc.events.writes,
                        fig(sc, &["statusWritesPerOperation"]).unwrap_or(0.0)
                    ),
                    "Check which Events were published (README, \"Events\": problems, recovery, the end) and \
                     whether a status write carries no change."
                        .to_string(),
                ),
                "cpu" | "cpu-per-poll" => (
                    format!(
                        "The operator used {:.2} cores on average ({:.1} CPU seconds over {:.0} s).{}",
                        sc.process.average_cores,
                        sc.process.cpu_seconds,
                        sc.process.wall_seconds,
                        host_speed(scenarios)
                    ),
                    "Profiled (bench/README.md, \"CPU per poll\"): most of a steady poll is the HTTP/1 GET itself \
                     (reqwest, hyper, the socket syscalls and the loopback delivery the kernel charges to the \
                     sender) and the allocations and copies around it; the decisions and the per-resource turns are \
                     about 5 % each. In scenario 1 the initial sweep costs most (a status PATCH over TLS per new \
                     resource). What would change it: a faster host (the gauge above), or fewer requests per poll \
                     (HTTP/2 to Graph, or reads batched with Graph's `$batch`)."
                        .to_string(),
                ),
                "ready" | "startup-reconciled" => (
                    format!(
                        "Readiness waits for the controller's first LIST of all {} resources (`controller::run`, \
                         `wait_until_ready`); it took {:.2} s with the control plane at {:.2} cores and other \
                         processes at {:.2}.",
                        sc.n, sc.process.ready_seconds, sc.process.control_plane_cores, sc.process.other_cores
                    ),
                    "List in larger pages (`watcher::Config::page_size`) or with streaming lists; check the control \
                     plane's load."
                        .to_string(),
                ),
                _ => (
                    format!(
                        "Not expected from the code: see target/bench/{}/operator.log and the scenario's figures.",
                        sc.id
                    ),
                    "Investigate with the operator's debug logs (RUST_LOG=pwreset_operator=debug).".to_string(),
                ),
            };
            out.push(finding(sc, "missed target", &c.figure, &c.target, c.measured.clone(), why, fix));
        }
        // No target is stated above N = 1,000, but falling behind the interval is worth knowing.
        if sc.kind == "active"
            && sc.n > PROPAGATION_TARGET_N
            && let Some(p99) = fig(sc, &["propagationSeconds", "p99"])
            && p99 > interval + 1.0
        {
            out.push(finding(
                sc,
                "observation",
                "Propagation p99",
                &format!("(stated for N = {PROPAGATION_TARGET_N}: ≤ {:.0} s)", interval + 1.0),
                format!("{p99:.1} s"),
                throughput_why(sc, cfg),
                THROUGHPUT_FIX.to_string(),
            ));
        }
        // Every finished resource gets one Event at the end (README, "Events"): fewer means some
        // were lost. (The diagnostic run is denied Events on purpose.)
        let finished = fig(sc, &["operationsFinished"]).unwrap_or(0.0) as u64;
        if matches!(sc.kind, "active" | "sharded") && sc.events.writes < finished {
            let missing = finished - sc.events.writes;
            out.push(finding(
                sc,
                "observation",
                "Events published",
                "at least one per finished operation (its end)",
                format!("{} Events for {finished} finished operations: {missing} missing at least", sc.events.writes),
                "Events that never reached the apiserver: `src/events.rs` drops Events when its bounded queue \
                 (4096) is full, counted in `pwreset_events_dropped_total` and logged at warn once a minute."
                    .into(),
                "See the operator's log for 'the event queue is full'; more writers or a larger queue.".into(),
            ));
        }
    }
    // Once for the whole run: the same code path in every scenario.
    let reads: Vec<(String, f64, f64)> = scenarios
        .iter()
        .filter(|sc| sc.kind != "startup")
        .filter_map(|sc| api(sc, "GET secrets").map(|g| (sc.id.clone(), g.count, sc.process.wall_seconds)))
        .filter(|(_, count, wall)| *count > 3.0 * (wall / 10.0).max(1.0))
        .collect();
    if let Some(first) = scenarios.iter().find(|sc| reads.first().is_some_and(|r| r.0 == sc.id)) {
        let measured =
            reads.iter().map(|(id, count, wall)| format!("{id}: {count:.0} GETs in {wall:.0} s")).collect::<Vec<_>>();
        out.push(finding(
            first,
            "observation",
            "Reads of the one credentials Secret",
            "about one per 10 s (SECRET_CACHE_TTL)",
            measured.join("; "),
            "The Secret is cached for 10 s, but when the entry expires every reconcile running meanwhile (up to \
             --max-concurrent-reconciles) reads it again from the apiserver: no single flight in \
             `Credentials::read_secret` (src/graph/auth.rs)."
                .into(),
            "Hold a per-Secret async lock across the read, or serve Secrets from a watch-backed cache. Small cost \
             today, grows with the reconcile concurrency."
                .into(),
        ));
    }
    out
}
