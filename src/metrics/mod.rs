//! Prometheus metrics, served on `/metrics` (OpenMetrics text).
//!
//! Counters and histograms are updated where things happen; gauges about the resources
//! and the operator's own maps are computed at scrape time (`computed`); process figures
//! come from /proc (`process`).

mod computed;
mod process;

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use computed::{Computed, Source};

use crate::reason::Reason;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GraphLabels {
    tenant: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ReasonLabels, Counter>,
    reconcile_duration: Histogram,
    graph_requests: Family<GraphLabels, Counter>,
    graph_latency: HistogramFamily<TenantLabels>,
    status_writes: Counter,
    status_write_failures: Counter,
    throttled: Family<TenantLabels, Counter>,
    tenant_rate: Family<TenantLabels, Gauge<f64, AtomicU64>>,
    token_requests: Family<GraphLabels, Counter>,
    events_dropped: Counter,
    leader: Gauge,
    ready: Gauge,
    computed: computed::ComputedCollector,
    /// The codes seen per tenant, so a forgotten tenant's series can all be removed.
    tenant_codes: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = Registry::default();
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix("pwreset");
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register("reconciles", "Reconciles run, by result (ok, error)", reconciles.clone());
        let reconcile_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that ended in a problem, by condition reason (KubernetesApiError included)",
            reconcile_errors.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took, Graph and Kubernetes calls included",
            reconcile_duration.clone(),
        );
        let graph_requests = Family::<GraphLabels, Counter>::default();
        registry.register(
            "graph_requests",
            "Requests to Graph's operation endpoint, by tenant and HTTP status code (none: no answer)",
            graph_requests.clone(),
        );
        let graph_latency: HistogramFamily<TenantLabels> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 14)));
        registry.register(
            "graph_request_duration_seconds",
            "Latency of requests to Graph's operation endpoint",
            graph_latency.clone(),
        );
        let status_writes = Counter::default();
        registry.register("status_writes", "Status updates written to the Kubernetes API", status_writes.clone());
        let status_write_failures = Counter::default();
        registry.register(
            "status_write_failures",
            "Status updates the Kubernetes API refused or did not answer (conflicts excluded)",
            status_write_failures.clone(),
        );
        let throttled = Family::<TenantLabels, Counter>::default();
        registry.register(
            "graph_throttled",
            "Graph answers that asked to slow down (429, 503 with Retry-After)",
            throttled.clone(),
        );
        let tenant_rate = Family::<TenantLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "tenant_allowed_rate",
            "Requests per second currently allowed to Graph per tenant by the adaptive client-side limit",
            tenant_rate.clone(),
        );
        let token_requests = Family::<GraphLabels, Counter>::default();
        registry.register(
            "token_requests",
            "Requests to the token endpoint, by tenant and outcome code",
            token_requests.clone(),
        );
        let events_dropped = Counter::default();
        registry.register(
            "events_dropped",
            "Kubernetes Events not written because the event queue was full",
            events_dropped.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 when this replica does the work (holds the Lease, or runs without leader election)",
            leader.clone(),
        );
        let ready = Gauge::default();
        registry.register("ready", "1 when /readyz answers ready", ready.clone());
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info.get_or_create(&VersionLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        registry.register("build_info", "The operator's version (always 1)", build_info);
        let computed = computed::ComputedCollector::default();
        registry.register_collector(Box::new(computed.clone()));
        Metrics {
            registry: root,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            graph_requests,
            graph_latency,
            status_writes,
            status_write_failures,
            throttled,
            tenant_rate,
            token_requests,
            events_dropped,
            leader,
            ready,
            computed,
            tenant_codes: Mutex::default(),
        }
    }
}

impl Metrics {
    /// One reconcile, counted once: its result, its duration and, for a problem, its reason.
    pub fn reconciled(&self, reason: Option<Reason>, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.reconciles.get_or_create(&ResultLabels { result: result.into() }).inc();
        self.reconcile_duration.observe(took.as_secs_f64());
        if let Some(reason) = reason.filter(|r| r.is_problem() || !ok) {
            self.reconcile_errors.get_or_create(&ReasonLabels { reason: reason.as_str().into() }).inc();
        }
    }

    fn saw_code(&self, tenant: &str, code: &str) {
        let mut codes = self.tenant_codes.lock().unwrap();
        if !codes.get(tenant).is_some_and(|c| c.contains(code)) {
            codes.entry(tenant.to_string()).or_default().insert(code.to_string());
        }
    }

    pub fn graph_request(&self, tenant: &str, code: &str, latency: Duration) {
        self.saw_code(tenant, code);
        self.graph_requests.get_or_create(&GraphLabels { tenant: tenant.into(), code: code.into() }).inc();
        self.graph_latency.get_or_create(&TenantLabels { tenant: tenant.into() }).observe(latency.as_secs_f64());
    }

    /// Graph asked this tenant to slow down (whatever status code carried the request).
    pub fn throttled(&self, tenant: &str) {
        self.throttled.get_or_create(&TenantLabels { tenant: tenant.into() }).inc();
    }

    pub fn status_written(&self) {
        self.status_writes.inc();
    }

    pub fn status_write_failed(&self) {
        self.status_write_failures.inc();
    }

    pub fn tenant_rate(&self, tenant: &str, per_second: f64) {
        self.tenant_rate.get_or_create(&TenantLabels { tenant: tenant.into() }).set(per_second);
    }

    pub fn token_request(&self, tenant: &str, outcome: &str) {
        self.saw_code(tenant, outcome);
        self.token_requests.get_or_create(&GraphLabels { tenant: tenant.into(), code: outcome.into() }).inc();
    }

    /// Removes every series labelled with `tenant` (it was forgotten as unused).
    pub fn forget_tenant(&self, tenant: &str) {
        let codes = self.tenant_codes.lock().unwrap().remove(tenant).unwrap_or_default();
        for code in codes {
            let labels = GraphLabels { tenant: tenant.into(), code };
            self.graph_requests.remove(&labels);
            self.token_requests.remove(&labels);
        }
        let labels = TenantLabels { tenant: tenant.into() };
        self.graph_latency.remove(&labels);
        self.throttled.remove(&labels);
        self.tenant_rate.remove(&labels);
    }

    /// Tenants with metric series, for `pwreset_cache_entries`.
    pub fn tenants(&self) -> usize {
        self.tenant_codes.lock().unwrap().len()
    }

    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(leader as i64);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(ready as i64);
    }

    /// Adds gauges computed at scrape time.
    pub fn add_source(&self, source: Source) {
        self.computed.0.lock().unwrap().push(source);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_counters_gauges_and_process_figures() {
        let m = Metrics::default();
        m.reconciled(Some(Reason::Running), true, Duration::from_millis(3));
        m.reconciled(Some(Reason::KubernetesApiError), false, Duration::from_millis(3));
        m.graph_request("t1", "429", Duration::from_millis(20));
        m.throttled("t1");
        m.set_leader(true);
        m.add_source(Box::new(|| {
            vec![Computed { name: "operations", help: "by state", label: "state", values: vec![("running".into(), 3)] }]
        }));
        let text = m.encode();
        for line in [
            "pwreset_reconciles_total{result=\"ok\"} 1",
            "pwreset_reconciles_total{result=\"error\"} 1",
            "pwreset_reconcile_errors_total{reason=\"KubernetesApiError\"} 1",
            "pwreset_reconcile_duration_seconds_count 2",
            "pwreset_graph_requests_total{tenant=\"t1\",code=\"429\"} 1",
            "pwreset_graph_throttled_total{tenant=\"t1\"} 1",
            "pwreset_operations{state=\"running\"} 3",
            "pwreset_leader 1",
            "pwreset_ready 0",
            "pwreset_build_info{version=\"",
            "process_resident_memory_bytes ",
            "process_cpu_seconds_total ",
            "process_open_fds ",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(!text.contains("reason=\"Running\""), "ordinary progress is not an error:\n{text}");
    }

    #[test]
    fn a_forgotten_tenant_leaves_no_series() {
        let m = Metrics::default();
        m.graph_request("gone", "200", Duration::from_millis(1));
        m.graph_request("gone", "503", Duration::from_millis(1));
        m.token_request("gone", "ok");
        m.throttled("gone");
        m.tenant_rate("gone", 5.0);
        m.graph_request("kept", "200", Duration::from_millis(1));
        assert!(m.encode().contains("tenant=\"gone\""));
        m.forget_tenant("gone");
        let text = m.encode();
        assert!(!text.contains("tenant=\"gone\""), "{text}");
        assert!(text.contains("tenant=\"kept\""), "{text}");
        assert_eq!(m.tenants(), 1);
    }
}
