//! Gauges computed when scraped (from the controller's cache and the operator's own maps),
//! so they are right after restarts, deletions and sweeps without bookkeeping on every change.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

/// One gauge family: every value carries one label.
pub struct Computed {
    pub name: &'static str,
    pub help: &'static str,
    pub label: &'static str,
    pub values: Vec<(String, i64)>,
}

/// Produces gauge families at scrape time.
pub type Source = Box<dyn Fn() -> Vec<Computed> + Send + Sync>;

#[derive(Default, Clone)]
pub(super) struct ComputedCollector(pub(super) Arc<Mutex<Vec<Source>>>);

impl std::fmt::Debug for ComputedCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ComputedCollector")
    }
}

impl Collector for ComputedCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sources = self.0.lock().unwrap();
        for family in sources.iter().flat_map(|source| source()) {
            let mut metric = encoder.encode_descriptor(family.name, family.help, None, MetricType::Gauge)?;
            for (value, n) in &family.values {
                let labels = [(family.label, value.as_str())];
                ConstGauge::new(*n).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
