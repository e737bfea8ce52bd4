//! What every reconcile shares: clients, settings, the decision policy, and the per-resource
//! failure counts that drive backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::events::Reporter;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::PasswordResetOperation;
use crate::cache::Cached;
use crate::decide::Policy;
use crate::events::EventPublisher;
use crate::graph::Graph;
use crate::metrics::Metrics;
use crate::triggers::Triggers;
use crate::wakeups::{Wakeups, key_of};

pub type Pro = PasswordResetOperation;

/// What the controller needs to know from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub default_credentials_secret: Option<String>,
    pub max_concurrent_reconciles: u16,
    pub namespace: Option<String>,
    /// Credentials and tenants unused for this long are forgotten.
    pub cache_idle: Duration,
}

pub struct Context {
    pub kube: kube::Client,
    pub graph: Graph,
    pub events: EventPublisher,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub policy: Policy,
    /// Consecutive failed rounds per resource, for exponential backoff. In memory only:
    /// after a restart the first retry comes sooner, which is harmless.
    failures: Mutex<HashMap<ObjectRef<Cached>, u32>>,
    /// When each resource is looked at next (instead of `Action::requeue`; see `wakeups`).
    pub wakeups: Arc<Wakeups<Cached>>,
    /// What each resource's triggers were when last seen (what brings it back sooner).
    pub triggers: Triggers,
}

impl Context {
    pub fn new(kube: kube::Client, graph: Graph, metrics: Arc<Metrics>, settings: Settings, policy: Policy) -> Self {
        let reporter = Reporter { controller: "pwreset-operator".into(), instance: std::env::var("POD_NAME").ok() };
        let events = EventPublisher::start(kube.clone(), reporter, metrics.clone());
        let wakeups = Arc::new(Wakeups::new(settings.max_concurrent_reconciles.into()));
        Context {
            wakeups,
            kube,
            graph,
            events,
            metrics,
            settings,
            policy,
            failures: Mutex::default(),
            triggers: Triggers::default(),
        }
    }

    // Both run on every poll, and most often nothing failed: an empty map is answered
    // without building a key (two allocations each).
    pub(crate) fn failures(&self, obj: &Cached) -> u32 {
        let failures = self.failures.lock().unwrap();
        if failures.is_empty() {
            return 0;
        }
        failures.get(&key_of(obj)).copied().unwrap_or(0)
    }

    pub(crate) fn set_failures(&self, obj: &Cached, n: u32) {
        let mut failures = self.failures.lock().unwrap();
        if n == 0 {
            if !failures.is_empty() {
                failures.remove(&key_of(obj));
            }
        } else {
            failures.insert(key_of(obj), n);
        }
    }

    /// Forgets what belongs to deleted resources and unused credentials and tenants.
    pub(crate) fn sweep(&self, store: &Store<Cached>) {
        self.failures.lock().unwrap().retain(|key, _| store.get(key).is_some());
        self.wakeups.retain(|key| store.get(key).is_some());
        self.triggers.retain(store.state().iter().map(|o| o.as_ref()));
        self.graph.credentials.sweep(self.settings.cache_idle);
        self.graph.limiter.sweep(self.settings.cache_idle);
    }

    pub(crate) fn cache_sizes(&self) -> Vec<(String, i64)> {
        let mut sizes = vec![
            ("backoff".to_string(), self.failures.lock().unwrap().len() as i64),
            ("wakeups".to_string(), self.wakeups.len() as i64),
            ("triggers".to_string(), self.triggers.len() as i64),
            ("tenants".to_string(), self.graph.limiter.len() as i64),
            ("tenant_series".to_string(), self.metrics.tenants() as i64),
        ];
        sizes.extend(self.graph.credentials.sizes().iter().map(|(name, n)| (name.to_string(), *n as i64)));
        sizes
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}
