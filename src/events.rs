//! Kubernetes Events, published off the reconcile path.
//!
//! The controller decides when an event is due (a new problem, a recovery, the end), so
//! repeats never reach here. Publishing happens on background tasks fed by a bounded
//! queue, a few writes in flight at once: a reconcile never waits for an Event write, and
//! under a burst the queue drops events (counted in `pwreset_events_dropped_total`, logged
//! at warn at most once a minute) rather than memory growing without bound. kube-runtime's
//! `Recorder` keeps every published Event for six minutes to fold repeats into series;
//! with one Event per change there is nothing to fold, so each publish uses a fresh
//! recorder and nothing is kept.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder, Reporter};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};

use crate::metrics::Metrics;

/// Events waiting to be written; beyond this, new ones are dropped.
const QUEUE: usize = 4096;
/// Event writes in flight at once: one writer alone falls behind a busy apiserver.
const WRITERS: usize = 8;
const DROP_WARNING_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct EventPublisher {
    tx: mpsc::Sender<(Event, ObjectReference)>,
    metrics: Arc<Metrics>,
    last_drop_warning: Arc<Mutex<Option<Instant>>>,
}

impl EventPublisher {
    /// Starts the background writers.
    pub fn start(client: kube::Client, reporter: Reporter, metrics: Arc<Metrics>) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Event, ObjectReference)>(QUEUE);
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(WRITERS));
            while let Some((event, reference)) = rx.recv().await {
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                let recorder = Recorder::new(client.clone(), reporter.clone());
                tokio::spawn(async move {
                    if let Err(e) = recorder.publish(&event, &reference).await {
                        debug!(error = %e, reason = %event.reason, "publishing an event failed");
                    }
                    drop(slot);
                });
            }
        });
        EventPublisher { tx, metrics, last_drop_warning: Arc::default() }
    }

    /// Queues `event` about `reference`; never waits.
    pub fn publish(&self, event: Event, reference: ObjectReference) {
        if self.tx.try_send((event, reference)).is_err() {
            self.metrics.event_dropped();
            let mut last = self.last_drop_warning.lock().unwrap();
            if last.is_none_or(|t| t.elapsed() >= DROP_WARNING_EVERY) {
                *last = Some(Instant::now());
                warn!("the event queue is full; events are being dropped (see pwreset_events_dropped_total)");
            }
        }
    }
}
