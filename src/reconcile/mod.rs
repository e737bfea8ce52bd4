//! The I/O shell around the decisions: gather the inputs, ask `decide`, write status only if
//! it changed, publish events, perform effects, requeue. Nothing here decides what a Graph
//! answer means.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use rand::Rng;
use serde_json::{Value, json};
use tracing::{debug, info, warn};
use url::Url;

use crate::api::{self, PasswordResetOperationStatus};
use crate::cache::Cached;
use crate::conditions;
use crate::context::{Context, Error, Pro};
use crate::decide::{self, Effect, Input, Jitter, Requeue, Start};
use crate::graph::Outcome;
use crate::reason::Reason;
use crate::wakeups::key_of;

/// If Graph answers the first poll within this time, the first status write carries both
/// the conditions and Graph's state; otherwise the conditions (`WaitingForGraph`) are
/// written when it passes, so GitOps tools never take a fresh resource for a healthy one.
pub const FIRST_ANSWER_BOUND: Duration = Duration::from_secs(2);
/// Requeue after an apiserver write conflict: our cache is behind; it catches up quickly.
const CONFLICT_REQUEUE: Duration = Duration::from_secs(1);

/// One reconcile, counted once in the metrics whatever its end.
pub async fn reconcile(obj: Arc<Cached>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = key_of(obj.as_ref());
    // Holds the slot until the next plan is set, then lets the next due resource have it.
    let _turn = ctx.wakeups.begin(&key);
    let result = reconcile_inner(&obj, &ctx).await;
    let (reason, ok) = match &result {
        Ok((_, reason)) => (*reason, true),
        Err(_) => (Some(Reason::KubernetesApiError), false),
    };
    ctx.metrics.reconciled(reason, ok, started.elapsed());
    let next = result?.0;
    ctx.wakeups.set(key, next);
    // The wake-up is ours (`wakeups`), not kube-runtime's scheduler's.
    Ok(Action::await_change())
}

/// A reconcile that failed on the Kubernetes API: retry with the same backoff as Graph errors.
/// The status may be what cannot be written (RBAC, an apiserver refusing), so the failure
/// is also a Warning event: the one place left where `kubectl describe` can show it.
pub fn error_policy(obj: Arc<Cached>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = ctx.failures(&obj).saturating_add(1);
    ctx.set_failures(&obj, failures);
    let wait = decide::backoff(failures);
    let reason = Reason::KubernetesApiError;
    warn!(namespace = obj.namespace().unwrap_or_default(), name = %obj.name_any(), reason = reason.as_str(), error = %error, "reconcile failed; retrying");
    let note = format!(
        "the Kubernetes API refused a request: {}; retrying in {} s",
        crate::text::error_chain(error),
        wait.as_secs()
    );
    let event = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Warning,
        reason: reason.as_str().into(),
        note: Some(crate::text::for_people(&note, conditions::MAX_MESSAGE)),
        action: "Reconcile".into(),
        secondary: None,
    };
    ctx.events.publish(event, obj.object_ref(&()));
    ctx.wakeups.set(key_of(obj.as_ref()), next_look(Requeue::After { wait, jitter: Jitter::Backoff }));
    Action::await_change()
}

/// The reconcile proper: when to look next (None: only a change of the resource brings it
/// back) and the reason it ended with.
pub(crate) async fn reconcile_inner(obj: &Cached, ctx: &Context) -> Result<(Option<Duration>, Option<Reason>), Error> {
    if obj.meta().deletion_timestamp.is_some() {
        return Ok((None, None));
    }
    let (spec, status) = obj.unpack();
    let status = status.unwrap_or_default();
    let namespace = obj.namespace().unwrap_or_default();
    let mut input = Input {
        namespace: &namespace,
        secret: spec.secret_name().or(ctx.settings.default_credentials_secret.as_deref()),
        spec: &spec,
        generation: obj.metadata.generation,
        created: obj.metadata.creation_timestamp.as_ref().map(|t| t.0),
        status: &status,
        now: Timestamp::now(),
        failures: ctx.failures(obj),
        policy: &ctx.policy,
        paused: api::is_paused(&obj.metadata),
        reconcile_requested_at: api::reconcile_requested_at(&obj.metadata),
    };
    // Borrowed until a write replaces it: most polls change nothing and copy nothing.
    let mut current = Cow::Borrowed(&status);
    let mut resource_version = obj.resource_version();
    let decision = match decide::start(&input) {
        Start::Decided(decision) => decision,
        Start::Poll { url, waiting } => {
            let outcome = match read(obj, ctx, &input, &url, waiting, &mut current, &mut resource_version).await? {
                Some(outcome) => outcome,
                None => return Ok((Some(CONFLICT_REQUEUE), None)),
            };
            input.now = Timestamp::now();
            if let Outcome::Answer(op) = &outcome
                && let Some(detail) = op.status_detail.as_deref().filter(|d| d.len() > decide::MAX_STATUS_DETAIL)
            {
                // Status and conditions show it shortened; the whole value stays findable here.
                debug!(namespace = input.namespace, name = %obj.name_any(), status_detail = ?detail, "Graph's full statusDetail");
            }
            decide::after(&input, &current, &outcome)
        }
    };

    if decision.status != *current {
        // Boxed, as every rarely taken call in a poll's path (here, credentials): most polls
        // write nothing, and the future kube-runtime allocates for every poll stays as large
        // as the common path (9.9 KB → 4.1 KB: bench/README.md).
        if Box::pin(write_status(obj, &current, &decision.status, resource_version.as_deref(), ctx)).await?.is_none() {
            return Ok((Some(CONFLICT_REQUEUE), decision.reason));
        }
        for event in decision.events {
            ctx.events.publish(event.to_event(), obj.object_ref(&()));
        }
    }
    for effect in &decision.effects {
        match effect {
            Effect::Delete => Box::pin(delete(obj, ctx)).await?,
        }
    }
    ctx.set_failures(obj, decision.failures);
    Ok((next_look(decision.requeue), decision.reason))
}

/// Reads the operation; if Graph is slower than [`FIRST_ANSWER_BOUND`] and conditions are
/// due, writes them meanwhile (updating `current` and `resource_version`). None: that write
/// conflicted, our view is stale.
async fn read(
    obj: &Cached,
    ctx: &Context,
    input: &Input<'_>,
    url: &Url,
    waiting: Option<PasswordResetOperationStatus>,
    current: &mut Cow<'_, PasswordResetOperationStatus>,
    resource_version: &mut Option<String>,
) -> Result<Option<Outcome>, Error> {
    let read = ctx.graph.read_operation(input.namespace, input.secret, url);
    let Some(waiting) = waiting else { return Ok(Some(read.await)) };
    // Boxed: only a resource's first poll takes this path; the others' futures stay small.
    Box::pin(read_or_write_waiting(obj, ctx, read, waiting, current, resource_version)).await
}

/// [`read`] when conditions are due: `read`, and `waiting` written if it takes longer than
/// [`FIRST_ANSWER_BOUND`].
async fn read_or_write_waiting(
    obj: &Cached,
    ctx: &Context,
    read: impl Future<Output = Outcome>,
    waiting: PasswordResetOperationStatus,
    current: &mut Cow<'_, PasswordResetOperationStatus>,
    resource_version: &mut Option<String>,
) -> Result<Option<Outcome>, Error> {
    tokio::pin!(read);
    tokio::select! {
        outcome = &mut read => return Ok(Some(outcome)),
        () = tokio::time::sleep(FIRST_ANSWER_BOUND) => {}
    }
    match write_status(obj, current, &waiting, resource_version.as_deref(), ctx).await? {
        Some(rv) => {
            *resource_version = Some(rv);
            *current = Cow::Owned(waiting);
        }
        None => return Ok(None),
    }
    Ok(Some(read.await))
}

fn next_look(requeue: Requeue) -> Option<Duration> {
    match requeue {
        Requeue::Never => None,
        Requeue::After { wait, jitter } => Some(wait + jitter_for(wait, jitter)),
    }
}

fn jitter_for(wait: Duration, jitter: Jitter) -> Duration {
    let max = match jitter {
        Jitter::None => return Duration::ZERO,
        Jitter::Spread => (wait / 20).min(Duration::from_millis(500)),
        Jitter::Backoff => wait.mul_f64(0.2),
        Jitter::RetryAfter => Duration::from_millis(250),
    };
    if max.is_zero() { Duration::ZERO } else { max.mul_f64(rand::rng().random_range(0.0..1.0)) }
}

async fn delete(obj: &Cached, ctx: &Context) -> Result<(), Error> {
    let api: Api<Pro> = Api::namespaced(ctx.kube.clone(), &obj.namespace().unwrap_or_default());
    // The uid precondition: never delete a new resource that took the same name.
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: obj.uid(), resource_version: None }),
        ..DeleteParams::background()
    };
    match api.delete(&obj.name_any(), &params).await {
        Ok(_) => info!(namespace = obj.namespace(), name = %obj.name_any(), "deleted after ttlSecondsAfterFinished"),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Every status field, so a merge patch can remove the ones that became empty.
pub(crate) const STATUS_FIELDS: [&str; 15] = [
    "status",
    "operationId",
    "userId",
    "createdDateTime",
    "lastActionDateTime",
    "resourceLocation",
    "statusDetail",
    "observedGeneration",
    "lastPolledTime",
    "completionTime",
    "notFoundSince",
    "requestId",
    "clientRequestId",
    "lastHandledReconcileAt",
    "conditions",
];

pub(crate) fn status_patch(status: &PasswordResetOperationStatus, resource_version: Option<&str>) -> Value {
    let mut body = serde_json::to_value(status).expect("status serializes");
    let fields = body.as_object_mut().expect("status is an object");
    for key in STATUS_FIELDS {
        fields.entry(key).or_insert(Value::Null);
    }
    // resourceVersion makes the write conditional: a stale view never overwrites a newer status.
    json!({ "metadata": { "resourceVersion": resource_version }, "status": body })
}

/// Writes `next`; returns the new resourceVersion, or None on a conflict (our view is stale).
async fn write_status(
    obj: &Cached,
    current: &PasswordResetOperationStatus,
    next: &PasswordResetOperationStatus,
    resource_version: Option<&str>,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    let api: Api<Pro> = Api::namespaced(ctx.kube.clone(), &obj.namespace().unwrap_or_default());
    let patch = status_patch(next, resource_version);
    match api.patch_status(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(updated) => {
            ctx.metrics.status_written();
            debug!(
                namespace = obj.namespace(),
                name = %obj.name_any(),
                from = current.status.as_deref().unwrap_or(""),
                to = next.status.as_deref().unwrap_or(""),
                reason = conditions::reason_of(&next.conditions, conditions::READY).unwrap_or(""),
                "status written"
            );
            Ok(updated.resource_version())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
        // Deleted while Graph was being asked (its namespace too, maybe): nothing to record,
        // and not an error anyone should be paged for; the watch drops it.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => {
            ctx.metrics.status_write_failed();
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests;
