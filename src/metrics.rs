//! Prometheus metrics, served on `/metrics` (OpenMetrics text).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

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
struct StateLabels {
    state: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Counts of tracked resources by state, computed at scrape time from the controller's
/// cache so they are right after restarts and deletions.
pub type StateCounter = Box<dyn Fn() -> Vec<(String, i64)> + Send + Sync>;

pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ReasonLabels, Counter>,
    graph_requests: Family<GraphLabels, Counter>,
    graph_latency: HistogramFamily<TenantLabels>,
    status_writes: Counter,
    throttled: Family<TenantLabels, Counter>,
    tenant_rate: Family<TenantLabels, Gauge<f64, AtomicU64>>,
    token_requests: Family<GraphLabels, Counter>,
    events_dropped: Counter,
    states: Arc<OnceLock<StateCounter>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pwreset");
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register("reconciles", "Reconciles run, by result (ok, error)", reconciles.clone());
        let reconcile_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that ended in an error condition, by condition reason",
            reconcile_errors.clone(),
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
        let states: Arc<OnceLock<StateCounter>> = Arc::default();
        registry.register_collector(Box::new(StatesCollector(states.clone())));
        Metrics {
            registry,
            reconciles,
            reconcile_errors,
            graph_requests,
            graph_latency,
            status_writes,
            throttled,
            tenant_rate,
            token_requests,
            events_dropped,
            states,
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reconciles.get_or_create(&ResultLabels { result: result.into() }).inc();
    }

    pub fn reconcile_error(&self, reason: &str) {
        self.reconcile_errors.get_or_create(&ReasonLabels { reason: reason.into() }).inc();
    }

    pub fn graph_request(&self, tenant: &str, code: &str, latency: Duration) {
        self.graph_requests.get_or_create(&GraphLabels { tenant: tenant.into(), code: code.into() }).inc();
        self.graph_latency.get_or_create(&TenantLabels { tenant: tenant.into() }).observe(latency.as_secs_f64());
        if code == "429" {
            self.throttled.get_or_create(&TenantLabels { tenant: tenant.into() }).inc();
        }
    }

    pub fn status_written(&self) {
        self.status_writes.inc();
    }

    pub fn tenant_rate(&self, tenant: &str, per_second: f64) {
        self.tenant_rate.get_or_create(&TenantLabels { tenant: tenant.into() }).set(per_second);
    }

    pub fn token_request(&self, tenant: &str, outcome: &str) {
        self.token_requests.get_or_create(&GraphLabels { tenant: tenant.into(), code: outcome.into() }).inc();
    }

    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    /// Sets where `pwreset_operations{state}` comes from (once, when the cache exists).
    pub fn count_states_with(&self, counter: StateCounter) {
        let _ = self.states.set(counter);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

struct StatesCollector(Arc<OnceLock<StateCounter>>);

impl std::fmt::Debug for StatesCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatesCollector")
    }
}

impl Collector for StatesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(count) = self.0.get() else {
            return Ok(());
        };
        let mut family = encoder.encode_descriptor(
            "operations",
            "PasswordResetOperations by state (notStarted, running, succeeded, failed, unknown, pending, blocked)",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in count() {
            let labels = StateLabels { state };
            ConstGauge::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_counters_and_state_gauges() {
        let m = Metrics::default();
        m.reconciled(true);
        m.graph_request("t1", "429", Duration::from_millis(20));
        m.count_states_with(Box::new(|| vec![("running".into(), 3)]));
        let text = m.encode();
        assert!(text.contains("pwreset_reconciles_total{result=\"ok\"} 1"), "{text}");
        assert!(text.contains("pwreset_graph_requests_total{tenant=\"t1\",code=\"429\"} 1"), "{text}");
        assert!(text.contains("pwreset_graph_throttled_total{tenant=\"t1\"} 1"), "{text}");
        assert!(text.contains("pwreset_operations{state=\"running\"} 3"), "{text}");
    }
}
