//! What a scenario reports: its checks against the targets and its figures.

use super::*;

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
