//! The controller: the watch on PasswordResetOperations, the gauges computed from its
//! cache, and the housekeeping that keeps memory bounded. Each reconcile is `reconcile::reconcile`.
//!
//! Terminal states follow the Job controller: once `Finished` is True the operator makes
//! no further Graph call and no further status write; only the TTL may delete the resource.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tracing::debug;

use crate::cache::Cached;
use crate::context::Context;
use crate::graph::OperationState;
use crate::metrics::Computed;
use crate::reason::{Kind, Reason};
use crate::reconcile::{error_policy, reconcile};

/// How often the housekeeping runs at most (and so how long a deleted resource's backoff
/// entry can outlive it).
const SWEEP_EVERY_MAX: Duration = Duration::from_secs(30);

/// Runs the controller until `shutdown` resolves; in-flight reconciles finish first.
/// `on_ready` is called once the cache holds every resource.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    shard: crate::shard::Shard,
    on_ready: impl FnOnce() + Send + 'static,
) {
    // The cache holds `Cached` objects: the resource with spec and status packed (`cache`).
    let api: Api<Cached> = match &ctx.settings.namespace {
        Some(ns) => Api::namespaced(ctx.kube.clone(), ns),
        None => Api::all(ctx.kube.clone()),
    };
    let (reader, writer) = reflector::store();
    let seen = ctx.triggers.clone();
    let fired = ctx.triggers.clone();
    // Status writes do not change metadata.generation, so the operator's own writes do not
    // trigger it again: polls are driven by its wake-ups, a spec change, or one of the two
    // annotations a person sets (neither bumps the generation), nothing else (`triggers`).
    let stream = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        // Only this replica's shard is cached at all.
        .filter(move |event| std::future::ready(shard.owns_event(event)))
        .inspect(move |event| seen.observe(event))
        .reflect(writer)
        .applied_objects()
        .try_filter(move |obj| std::future::ready(fired.fired(obj)));

    let states = reader.clone();
    ctx.metrics.add_source(Box::new(move || resource_gauges(&states)));
    let weak = Arc::downgrade(&ctx);
    ctx.metrics.add_source(Box::new(move || {
        let sizes = weak.upgrade().map(|ctx| ctx.cache_sizes()).unwrap_or_default();
        vec![Computed {
            name: "cache_entries",
            help: "Entries in the operator's in-memory maps (backoff, wakeups, triggers, secrets, secret_reads, tokens, tenants, \
                   tenant_series)",
            label: "cache",
            values: sizes,
        }]
    }));
    tokio::spawn(housekeeping(Arc::downgrade(&ctx), reader.clone()));
    let ready_reader = reader.clone();
    tokio::spawn(async move {
        // kube's readiness future wakes only its most recent waiter (the controller's), so
        // poll it again now and then instead of waiting on it once.
        loop {
            match tokio::time::timeout(Duration::from_millis(100), ready_reader.wait_until_ready()).await {
                Ok(Ok(())) => return on_ready(),
                Ok(Err(_)) => return,
                Err(_elapsed) => {}
            }
        }
    });

    // The same concurrency bounds the wake-ups handed over (`wakeups`: in turn).
    let config = controller::Config::default().concurrency(ctx.settings.max_concurrent_reconciles);
    let wakeups = ctx.wakeups.clone();
    Controller::for_stream(stream, reader)
        .with_config(config)
        .reconcile_on(ctx.wakeups.stream())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            match result {
                // Deleted after its wake-up was handed over: the slot it was counted in is free.
                Err(controller::Error::ObjectNotFound(key)) => wakeups.not_found(key.as_ref()),
                Err(e) => debug!(error = %e, "reconcile did not complete"),
                Ok(_) => {}
            }
            std::future::ready(())
        })
        .await;
}

/// Sweeps the maps now and then, for as long as the controller's context lives.
async fn housekeeping(ctx: std::sync::Weak<Context>, store: Store<Cached>) {
    let every = match ctx.upgrade() {
        Some(ctx) => (ctx.settings.cache_idle / 2).clamp(Duration::from_secs(1), SWEEP_EVERY_MAX),
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(ctx) = ctx.upgrade() else { return };
        ctx.sweep(&store);
    }
}

/// `pwreset_operations{state}` and `pwreset_blocked{reason}` from the cache.
fn resource_gauges(store: &Store<Cached>) -> Vec<Computed> {
    let mut states: HashMap<&'static str, i64> = HashMap::new();
    let mut blocked: HashMap<&'static str, i64> = HashMap::new();
    for obj in store.state() {
        let (graph_state, ready_reason) = obj.state_and_ready_reason();
        let state = match ready_reason.and_then(Reason::parse) {
            Some(r) if r.kind() == Kind::Blocked => {
                *blocked.entry(r.as_str()).or_default() += 1;
                "blocked"
            }
            _ => match graph_state {
                None => "pending",
                s => OperationState::from_graph(s).as_str(),
            },
        };
        *states.entry(state).or_default() += 1;
    }
    let values = |m: HashMap<&'static str, i64>| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    vec![
        Computed {
            name: "operations",
            help: "PasswordResetOperations by state (notStarted, running, succeeded, failed, unknown, pending, blocked)",
            label: "state",
            values: values(states),
        },
        Computed {
            name: "blocked",
            help: "PasswordResetOperations that cannot progress until a person acts, by reason",
            label: "reason",
            values: values(blocked),
        },
    ]
}
