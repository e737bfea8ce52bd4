//! bench/report.md and bench/report.json.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde::Serialize;

use super::scenarios::{Check, ScenarioReport};

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub date: String,
    pub nproc: String,
    pub memory: String,
    pub cpu_model: String,
    pub kernel: String,
    pub rustc: String,
    pub go: String,
    pub git: String,
}

fn command(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Machine {
    pub fn probe(root: &Path) -> Machine {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or("unknown".into(), |kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0));
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let root = root.to_string_lossy();
        let commit = command("git", &["-C", &root, "rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
        let dirty = command("git", &["-C", &root, "status", "--porcelain", "--untracked-files=no"])
            .is_some_and(|s| !s.is_empty());
        Machine {
            date: jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
            nproc: command("nproc", &[])
                .unwrap_or_else(|| std::thread::available_parallelism().map_or("unknown".into(), |n| n.to_string())),
            memory,
            cpu_model,
            kernel: command("uname", &["-srm"]).unwrap_or_else(|| "unknown".into()),
            rustc: command("rustc", &["--version"]).unwrap_or_else(|| "unknown".into()),
            go: command("go", &["version"]).unwrap_or_else(|| "unknown".into()),
            git: format!("{commit}{}", if dirty { " (with uncommitted changes)" } else { "" }),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub mode: String,
    pub command: String,
    pub operator_command: String,
    pub poll_interval_seconds: f64,
    pub finish_spread_seconds: f64,
    pub steady_window_seconds: f64,
    pub startup_window_seconds: f64,
    pub create_concurrency: usize,
    pub seed: u64,
}

/// A missed target, with what the measurements say about it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// "missed target" or "observation" (no target stated there).
    pub kind: String,
    pub scenario: String,
    pub figure: String,
    pub target: String,
    pub measured: String,
    pub why: String,
    pub fix: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub settings: Settings,
    pub scenarios: Vec<ScenarioReport>,
    /// Scenarios that could not run to the end.
    pub errors: Vec<(String, String)>,
    pub findings: Vec<Finding>,
    pub total_seconds: f64,
}

fn verdict(c: &Check) -> &'static str {
    match c.pass {
        Some(true) => "met",
        Some(false) => "**MISSED**",
        None => "n/a at this N (informational)",
    }
}

pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(s, "# pwreset-operator benchmark\n");
    let _ = writeln!(
        s,
        "Written by `make bench` (`bench/`, see `bench/README.md`) on {}; {} mode, {:.0} min in all.\n",
        m.date,
        r.settings.mode,
        r.total_seconds / 60.0
    );
    let _ = writeln!(s, "## Machine\n\n| | |\n|---|---|");
    for (k, v) in [
        ("Date", &m.date),
        ("nproc", &m.nproc),
        ("Memory", &m.memory),
        ("CPU", &m.cpu_model),
        ("Kernel", &m.kernel),
        ("rustc", &m.rustc),
        ("Go", &m.go),
        ("Commit", &m.git),
    ] {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    let st = &r.settings;
    let _ = writeln!(s, "\n## Settings\n\n| | |\n|---|---|");
    let _ = writeln!(s, "| Bench command | `{}` |", st.command);
    let _ = writeln!(s, "| Operator command | `{}` |", st.operator_command);
    let _ = writeln!(s, "| Poll interval | {} s |", st.poll_interval_seconds);
    let _ = writeln!(
        s,
        "| Scenario 1 finish times | uniform over 0–{} s; running at 10 % of it; 10 % fail |",
        st.finish_spread_seconds
    );
    let _ = writeln!(s, "| Scenario 2 observation after ready | {} s |", st.startup_window_seconds);
    let _ = writeln!(s, "| Scenario 3 steady window | {} s |", st.steady_window_seconds);
    let _ = writeln!(
        s,
        "| Setup | resources created {} at a time through the apiserver, timed apart |",
        st.create_concurrency
    );
    let _ = writeln!(
        s,
        "| Processes | a fresh control plane (etcd, kube-apiserver, kube-controller-manager) and Graph emulator per scenario, all on this machine with the operator and the bench driver |"
    );

    let _ = writeln!(s, "\n## Targets\n\n| Scenario | Figure | Target | Measured | Result |\n|---|---|---|---|---|");
    for sc in &r.scenarios {
        for c in &sc.checks {
            let _ = writeln!(s, "| {} | {} | {} | {} | {} |", sc.id, c.figure, c.target, c.measured, verdict(c));
        }
    }
    for (id, e) in &r.errors {
        let _ = writeln!(
            s,
            "| {id} | scenario did not complete | | {} | **ERROR** |",
            e.replace('\n', " ").replace('|', "\\|")
        );
    }

    let _ = writeln!(s, "\n## Findings\n");
    let missed = r.findings.iter().filter(|f| f.kind == "missed target").count();
    if missed == 0 && r.errors.is_empty() {
        let _ = writeln!(s, "Every applicable target was met.\n");
    }
    for f in &r.findings {
        let _ = writeln!(
            s,
            "### {} — {}: {} (target {}, measured {})\n",
            f.kind, f.scenario, f.figure, f.target, f.measured
        );
        let _ = writeln!(s, "**Why.** {}\n", f.why);
        let _ = writeln!(s, "**Fix.** {}\n", f.fix);
    }

    for sc in &r.scenarios {
        let _ = writeln!(s, "\n## {} (`{}`)\n\n| Figure | Value |\n|---|---|", sc.title, sc.id);
        for (k, v) in &sc.rows {
            let _ = writeln!(s, "| {k} | {} |", v.replace('|', "\\|"));
        }
        if sc.metrics.graph_requests > 0.0 {
            let inside = if sc.emulator_latency_mean_ms < 0.005 {
                "under 1 ms inside the emulator (it logs whole ms)".to_string()
            } else {
                format!("{:.2} ms inside the emulator", sc.emulator_latency_mean_ms)
            };
            let _ = writeln!(
                s,
                "| Graph GET latency | {:.2} ms mean as the operator measured it, {inside} |",
                sc.metrics.graph_latency_mean_ms
            );
        }
        if !sc.apiserver.is_empty() {
            let calls: Vec<String> = sc
                .apiserver
                .iter()
                // A watch's duration is how long it stayed open, not a cost.
                .filter(|a| !a.request.starts_with("WATCH"))
                .map(|a| format!("{} ×{:.0} ({:.1} ms)", a.request, a.count, a.mean_ms))
                .collect();
            let _ = writeln!(
                s,
                "| kube-apiserver requests, count (mean server time), setup included | {} |",
                calls.join(", ")
            );
        }
        if sc.graph_gets_not_ok > 0 {
            let _ = writeln!(s, "| Graph GETs not answered 200 | {} |", sc.graph_gets_not_ok);
        }
        if sc.watch_restarts > 0 || sc.emulator_log_lost > 0 {
            let _ = writeln!(
                s,
                "| Measurement caveats | watch restarted {} times (writes in between count once); {} emulator log entries lost |",
                sc.watch_restarts, sc.emulator_log_lost
            );
        }
    }
    let _ = writeln!(
        s,
        "\n## Definitions\n\n\
- **Scenario 1** runs in two phases. The operator starts with N new resources whose operations are all \
`notStarted`; once every resource shows `notStarted` (the *initial sweep*, timed on its own), the operations' \
scripted clocks start together: `running` at 10 % of the finish time, `succeeded` (90 %) or `failed` (10 %) at \
the finish time, finish times uniform over the spread.\n\
- **Graph GETs per operation**: operation GETs the emulator logged for it from its clock start on. Minimum: \
⌈duration / interval⌉ + 1 with duration = its finish time.\n\
- **GETs after terminal**: GETs logged after the bench's watch saw the terminal status, plus any GET in the tail \
(two intervals after every operation finished).\n\
- **Status writes**: resourceVersion changes seen by a watch over the whole scenario (nothing else writes these \
resources), cross-checked with `pwreset_status_writes_total`. Distinct states: Graph states the resource showed \
(the + 1 allows the operator's 'WaitingForGraph' write when Graph is slow to answer).\n\
- **apiserver writes per reset**: status writes (watch) + Event writes, over N.\n\
- **CPU per poll** (scenario 3): the operator's CPU in the steady window over the operation GETs in it.\n\
- **Bytes per resource**: peak RSS / N, an upper bound (the process's fixed part is charged to the resources).\n\
- **Propagation**: time from a scripted Graph state change (emulator step time) to the watch delivering the status \
with the new state, for every change after the clocks started.\n\
- **Peak RSS**: VmHWM of the operator process; CPU: utime + stime from /proc/PID/stat, averaged from spawn to the \
end of the scenario. *Other processes*: the machine's busy time (/proc/stat) minus the benchmark's processes.\n\
- **Ready**: spawn of `pwreset-operator run` to the first 200 from /readyz (polled every 20 ms).\n\
- **Scenario 3**'s minimum: ⌈window / interval⌉ polls keep every operation at most one interval stale.\n\
- **Diagnostic run without Events**: scenario 1 again with the operator impersonating (kube-rs' \
`KUBE_RS_DEBUG_IMPERSONATE_USER`) a user that may do everything but write Events; its figures explain others and \
it is not judged itself. Impersonation makes every apiserver request a little dearer (RBAC instead of \
system:masters), so only its memory and CPU are comparable."
    );
    s
}

pub fn write(dir: &Path, r: &Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.md"), markdown(r))?;
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(r)? + "\n")?;
    Ok(())
}
