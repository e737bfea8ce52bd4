//! `make bench`: measures the release build of pwreset-operator against a real control plane
//! and the Graph emulator, and writes bench/report.md and bench/report.json.
//!
//! ```text
//! cargo run --release -p pwreset-bench -- [--quick] [--scenarios active,startup,steady]
//!     [--sizes 1000,10000] [--startup-size N] [--steady-size N] [--poll-interval 10s] ...
//! ```
//!
//! See bench/README.md for what each scenario does and how the figures are computed.

mod apiserver;
mod collector;
mod findings;
mod report;
mod sampler;
mod scenarios;
mod sharded;
mod stats;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};

pub const RESOURCE_PREFIX: &str = "pro-";
pub const OPERATION_PREFIX: &str = "op-";

pub use pwreset_testkit::now_ms;

/// Scenario 2's N in the full run: the issue's 100,000-resource start.
const STARTUP_FULL_N: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// Scenario 1: N active operations finishing over the spread.
    Active,
    /// Scenario 2: start with N already-finished resources.
    Startup,
    /// Scenario 3: N running operations whose Graph state does not change.
    Steady,
    /// Diagnostic: scenario 1 at the largest N with the operator denied writing Events
    /// (tells the memory and CPU of its Event cache apart). In the full run by default.
    NoEvents,
    /// Scenario 4: scenario 1 at the largest N with two operator processes
    /// (--shard 0|1 --total-shards 2), showing the split. In the full run by default.
    Sharded,
}

#[derive(Debug, Parser)]
#[command(name = "bench", about = "Benchmark of pwreset-operator (see bench/README.md)")]
struct Args {
    /// Short run: N = 200 everywhere, finish spread 60 s, steady window 60 s.
    #[arg(long)]
    quick: bool,
    /// Scenarios to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Option<Vec<Kind>>,
    /// N for scenario 1 (default 1000,10000; quick: 200).
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// N for scenario 2, comma-separated (default: the largest of --sizes, where "ready ≤ 5 s"
    /// is judged, and 100000, issue 17's start; quick: 200).
    #[arg(long, value_delimiter = ',')]
    startup_size: Option<Vec<usize>>,
    /// N for scenario 3 (default: the largest of --sizes).
    #[arg(long)]
    steady_size: Option<usize>,
    /// The operator's --poll-interval.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    /// Scenario 1: operations finish uniformly over this long (default 120s; quick: 60s).
    #[arg(long, value_parser = humantime::parse_duration)]
    finish_spread: Option<Duration>,
    /// Scenario 3: how long the unchanged state is observed (default 5m; quick: 60s).
    #[arg(long, value_parser = humantime::parse_duration)]
    steady_window: Option<Duration>,
    /// Scenario 2: how long the operator is watched after its startup reconciles (default 30s; quick: 15s).
    #[arg(long, value_parser = humantime::parse_duration)]
    startup_window: Option<Duration>,
    /// Resources created at the same time during setup.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seed of the finish-time order and of which operations fail.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where report.md and report.json go.
    #[arg(long, default_value = "bench")]
    out_dir: PathBuf,
    /// Scratch space (control plane data, operator and emulator logs).
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
    /// Keep the control planes' data directories.
    #[arg(long)]
    keep_data: bool,
    /// Extra flag for `pwreset-operator run` (repeatable), e.g. --operator-arg=--max-concurrent-reconciles=32.
    #[arg(long = "operator-arg", allow_hyphen_values = true)]
    operator_args: Vec<String>,
    /// Extra environment variable for the operator (repeatable), e.g. --operator-env MALLOC_ARENA_MAX=2.
    #[arg(long = "operator-env", value_parser = key_value)]
    operator_env: Vec<(String, String)>,
    /// The operator binary to measure instead of target/release/pwreset-operator, e.g. one built
    /// with `--features dhat-heap` (heap profile).
    #[arg(long)]
    operator_bin: Option<PathBuf>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    pwreset_operator::install_crypto_provider();
    // Every child is spawned from this (the `block_on`) thread, so tying them to it means
    // nothing outlives the bench, however it ends.
    pwreset_testkit::process::kill_children_with_spawning_thread();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let root = pwreset_testkit::repo_root().canonicalize().context("locating the repository")?;
    // The binaries of the bench's own build profile: `make bench` builds them all release.
    let release = pwreset_testkit::profile_dir();
    let target = release.parent().context("locating the target directory")?.to_path_buf();
    let absolute = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { root.join(p) };
    let sizes = args.sizes.clone().unwrap_or_else(|| if args.quick { vec![200] } else { vec![1000, 10_000] });
    let largest = sizes.iter().copied().max().unwrap_or(200);
    let kinds = args.scenarios.clone().unwrap_or_else(|| {
        let mut all = vec![Kind::Active, Kind::Startup, Kind::Steady];
        if !args.quick {
            all.push(Kind::NoEvents);
            all.push(Kind::Sharded);
        }
        all
    });
    let pick = |given: Option<Duration>, full: u64, quick: u64| {
        given.unwrap_or(Duration::from_secs(if args.quick { quick } else { full }))
    };
    let cfg = scenarios::Cfg {
        operator_bin: args.operator_bin.as_deref().map_or_else(|| release.join("pwreset-operator"), absolute),
        emulator_bin: release.join("graph-emulator"),
        control_plane_bin: target.join("control-plane/kube-control-plane"),
        work: absolute(&args.work_dir),
        poll: args.poll_interval,
        spread: pick(args.finish_spread, 120, 60),
        steady_window: pick(args.steady_window, 300, 60),
        startup_window: pick(args.startup_window, 30, 15),
        concurrency: args.concurrency.max(1),
        seed: args.seed,
        keep_data: args.keep_data,
        operator_extra: args.operator_args.clone(),
        operator_env: args.operator_env.clone(),
    };
    for (what, path, how) in [
        ("operator", &cfg.operator_bin, "cargo build --release --workspace --bins"),
        ("Graph emulator", &cfg.emulator_bin, "cargo build --release --workspace --bins"),
        ("control plane", &cfg.control_plane_bin, "make control-plane"),
        ("kubectl", &target.join("tools/bin/kubectl"), "make control-plane"),
    ] {
        anyhow::ensure!(path.exists(), "the {what} {} is missing: run `{how}` (or `make bench`)", path.display());
    }
    let out = absolute(&args.out_dir);
    let mut report = report::Report {
        machine: report::Machine::probe(&root),
        settings: report::Settings {
            mode: if args.quick { "quick" } else { "full" }.into(),
            command: std::iter::once("bench".to_string()).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" "),
            operator_command: format!(
                "RUST_LOG=warn KUBECONFIG=… target/release/pwreset-operator run --graph-url http://127.0.0.1:PORT \
                 --poll-interval {}ms --tenant-rate 100000 --tenant-burst 100000 --log-format json \
                 --metrics-addr 127.0.0.1:PORT{}{}",
                cfg.poll.as_millis(),
                if cfg.operator_extra.is_empty() { "" } else { " " },
                cfg.operator_extra.join(" ")
            ),
            poll_interval_seconds: cfg.poll.as_secs_f64(),
            finish_spread_seconds: cfg.spread.as_secs_f64(),
            steady_window_seconds: cfg.steady_window.as_secs_f64(),
            startup_window_seconds: cfg.startup_window.as_secs_f64(),
            create_concurrency: cfg.concurrency,
            seed: cfg.seed,
        },
        scenarios: Vec::new(),
        errors: Vec::new(),
        findings: Vec::new(),
        total_seconds: 0.0,
    };

    let mut plan: Vec<(Kind, usize)> = Vec::new();
    for kind in &kinds {
        match kind {
            Kind::Active => plan.extend(sizes.iter().map(|&n| (Kind::Active, n))),
            Kind::Startup => plan.extend(
                args.startup_size
                    .clone()
                    .unwrap_or(if args.quick { vec![largest] } else { vec![largest, STARTUP_FULL_N] })
                    .into_iter()
                    .map(|n| (Kind::Startup, n)),
            ),
            Kind::Steady => plan.push((Kind::Steady, args.steady_size.unwrap_or(largest))),
            Kind::NoEvents => plan.push((Kind::NoEvents, largest)),
            Kind::Sharded => plan.push((Kind::Sharded, largest)),
        }
    }
    println!("bench: {} run; scenarios: {plan:?}; reports go to {}", report.settings.mode, out.display());
    for (kind, n) in plan {
        let result = match kind {
            Kind::Active => scenarios::active(&cfg, n, false).await,
            Kind::NoEvents => scenarios::active(&cfg, n, true).await,
            Kind::Startup => scenarios::startup(&cfg, n).await,
            Kind::Steady => scenarios::steady(&cfg, n).await,
            Kind::Sharded => sharded::sharded(&cfg, n).await,
        };
        let id = match kind {
            Kind::NoEvents => format!("active-{n}-no-events"),
            _ => format!("{kind:?}-{n}").to_lowercase(),
        };
        match result {
            Ok(r) => {
                for c in &r.checks {
                    println!("  {:<8} {:<45} {:<35} {}", format!("{:?}", c.pass), c.figure, c.target, c.measured);
                }
                report.scenarios.push(r);
            }
            Err(e) => {
                eprintln!("bench: scenario {id} failed: {e:#}");
                report.errors.push((id, format!("{e:#}")));
            }
        }
        report.findings = findings::explain(&report.scenarios, &cfg);
        report.total_seconds = started.elapsed().as_secs_f64();
        // Written after every scenario, so a long run that breaks keeps what it measured.
        report::write(&out, &report)?;
    }
    println!("bench: wrote {} and {}", out.join("report.md").display(), out.join("report.json").display());
    if !report.errors.is_empty() {
        anyhow::bail!("{} scenario(s) did not complete", report.errors.len());
    }
    Ok(())
}
