//! Kubernetes Events, published off the reconcile path.
//!
//! The controller decides when an event is due (a Graph state change, a new problem), so
//! repeats never reach here. Publishing happens on a background task fed by a bounded
//! queue: a reconcile never waits for an Event write, and under a burst the oldest-first
//! queue drops events rather than memory growing without bound. kube-runtime's `Recorder`
//! keeps every published Event for six minutes to fold repeats into series; with one
//! Event per change there is nothing to fold, so each publish uses a fresh recorder and
//! nothing is kept.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder, Reporter};
use tokio::sync::mpsc;
use tracing::debug;

/// Events waiting to be written; beyond this, new ones are dropped (and logged at debug).
const QUEUE: usize = 4096;

#[derive(Clone)]
pub struct EventPublisher {
    tx: mpsc::Sender<(Event, ObjectReference)>,
}

impl EventPublisher {
    /// Starts the background writer.
    pub fn start(client: kube::Client, reporter: Reporter) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Event, ObjectReference)>(QUEUE);
        tokio::spawn(async move {
            while let Some((event, reference)) = rx.recv().await {
                let recorder = Recorder::new(client.clone(), reporter.clone());
                if let Err(e) = recorder.publish(&event, &reference).await {
                    debug!(error = %e, reason = %event.reason, "publishing an event failed");
                }
            }
        });
        EventPublisher { tx }
    }

    /// Queues `event` about `reference`; never waits.
    pub fn publish(&self, event: Event, reference: ObjectReference) {
        if let Err(e) = self.tx.try_send((event, reference)) {
            debug!(error = %e, "event queue full or closed; event dropped");
        }
    }
}
