//! The I/O shell and the watch for `PasswordReset`; every decision is in `decide_reset`.
//!
//! The attempt protocol (at most one resetPassword per attempt, see `decide_reset`):
//! 1. re-read the PasswordReset from the API server (never act on a cached, older status);
//! 2. write the password into the owned Secret;
//! 3. record `attempt {number, phase: Sending}` with a resourceVersion precondition: if
//!    anything changed meanwhile the write fails and nothing is sent;
//! 4. POST resetPassword once, if the Secret still holds that password (else NotSent);
//! 5. record what the answer means (retrying only the status write, never the POST);
//! 6. on 202 with Location, create the child PasswordResetOperation and mirror it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tracing::{debug, info, warn};

use crate::api::{PasswordResetOperation, PasswordResetOperationSpec, SecretReference};
use crate::api_reset::{PasswordReset, PasswordResetStatus};
use crate::conditions::{self, Phase};
use crate::context::{Context, Error};
use crate::decide_reset::{self as decide, Next, Verdict};
use crate::metrics::Computed;
use crate::reason::Reason;
use crate::reset_secret::{self, SecretProblem};

/// A blocked PasswordReset (missing password source, Secret conflict) looks again this often.
const BLOCKED_RETRY: Duration = Duration::from_secs(30);
/// How often the outcome of a sent request is written again if the write conflicts.
const OUTCOME_WRITES: usize = 10;

/// Runs the PasswordReset controller until `shutdown` resolves. Child changes wake the parent.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let (resets, children): (Api<PasswordReset>, Api<PasswordResetOperation>) = match &ctx.settings.namespace {
        Some(ns) => (Api::namespaced(ctx.kube.clone(), ns), Api::namespaced(ctx.kube.clone(), ns)),
        None => (Api::all(ctx.kube.clone()), Api::all(ctx.kube.clone())),
    };
    let controller = Controller::new(resets, watcher::Config::default()).owns(children, watcher::Config::default());
    let store = controller.store();
    ctx.metrics.add_source(Box::new(move || gauges(Some(&store))));
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, |_, _, _| Action::requeue(Duration::from_secs(5)), ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "PasswordReset reconcile did not complete");
            }
        })
        .await;
}

/// `pwreset_password_resets{reason}`: PasswordResets by the reason of their Ready condition
/// (`Pending` before the first status), so `ResetOutcomeUnknown`, where a person must decide,
/// can page someone. Empty in a process that runs no PasswordReset controller.
pub fn gauges(store: Option<&Store<PasswordReset>>) -> Vec<Computed> {
    let mut by_reason: BTreeMap<String, i64> = BTreeMap::new();
    for obj in store.map(Store::state).unwrap_or_default() {
        let conds = obj.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
        let reason = conditions::reason_of(conds, conditions::READY).unwrap_or("Pending");
        *by_reason.entry(reason.to_string()).or_default() += 1;
    }
    vec![Computed {
        name: "password_resets",
        help: "PasswordResets by the reason of their Ready condition (ResetOutcomeUnknown: a person must decide)",
        label: "reason",
        values: by_reason.into_iter().collect(),
    }]
}

async fn reconcile(cached: Arc<PasswordReset>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<PasswordReset> = Api::namespaced(ctx.kube.clone(), &cached.namespace().unwrap_or_default());
    let status = cached.status.clone().unwrap_or_default();
    let next =
        decide::next(&status, cached.allowed_attempt(), cached.spec.ttl_seconds_after_finished, Timestamp::now());
    match next {
        Next::Finished { ttl_left: None } => Ok(Action::await_change()),
        Next::Finished { ttl_left: Some(left) } if !left.is_zero() => Ok(Action::requeue(left)),
        Next::Finished { .. } => {
            info!(namespace = cached.namespace(), name = %cached.name_any(), "deleting finished PasswordReset (TTL)");
            match api.delete(&cached.name_any(), &DeleteParams::background()).await {
                Ok(_) => Ok(Action::await_change()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
                Err(e) => Err(e.into()),
            }
        }
        Next::Wait { left } => Ok(Action::requeue(left)),
        Next::AwaitPerson => Ok(Action::await_change()),
        Next::MarkUnknown => {
            let next = decide::mark_unknown(&status, cached.meta().generation, Timestamp::now());
            if write(&api, &cached, next).await?.is_some() {
                warn!(namespace = cached.namespace(), name = %cached.name_any(), "resetPassword outcome unknown");
                publish(
                    &ctx,
                    &cached,
                    EventType::Warning,
                    Reason::ResetOutcomeUnknown,
                    "the operator stopped before Graph's answer arrived; nothing more is sent until a person allows it",
                );
            }
            Ok(Action::await_change())
        }
        Next::Send { .. } => send(&api, &cached, &ctx).await,
        Next::Track { location } => track(&api, &cached, &status, &location, &ctx).await,
    }
}

/// Steps 1 to 5 of the protocol.
async fn send(api: &Api<PasswordReset>, cached: &PasswordReset, ctx: &Context) -> Result<Action, Error> {
    // 1. The cache may be older than our own last write: decide again on the stored object.
    let Some(fresh) = api.get_opt(&cached.name_any()).await? else { return Ok(Action::await_change()) };
    let status = fresh.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let Next::Send { number } = decide::next(&status, fresh.allowed_attempt(), None, now) else {
        return Ok(Action::requeue(Duration::ZERO));
    };
    let generation = fresh.meta().generation;
    // 2. The password is stored before anything is sent.
    let password = match reset_secret::password_for(&ctx.kube, &fresh).await {
        Ok(password) => password,
        Err(problem) => return blocked(api, &fresh, &status, problem).await,
    };
    if let Err(problem) = reset_secret::write(&ctx.kube, &fresh, number, &password).await {
        return blocked(api, &fresh, &status, problem).await;
    }
    // 3. Recorded before sending, conditional on the version just read.
    let Some(recorded) = write(api, &fresh, decide::sending(&status, number, generation, now)).await? else {
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    info!(namespace = fresh.namespace(), name = %fresh.name_any(), attempt = number, "sending resetPassword");
    publish(ctx, &fresh, EventType::Normal, Reason::ResetPending, &format!("sending resetPassword (attempt {number})"));
    // 4. Once, and only if the Secret still holds this password (no other writer replaced it
    //    between steps 2 and 3): Graph and the Secret must never disagree.
    let call = match reset_secret::holds(&ctx.kube, &fresh, &password).await {
        Ok(true) => {
            let secret = fresh.spec.credentials_secret_ref.as_ref().map(|r| r.name.as_str());
            let secret = secret.or(ctx.settings.default_credentials_secret.as_deref());
            let ns = fresh.namespace().unwrap_or_default();
            ctx.graph.reset_password(&ns, secret, &fresh.spec.user_id, &password).await
        }
        // Not sent, and known not to be: recorded as NotSent, tried again later.
        checked => {
            let message = match checked {
                Err(e) => format!("reading the password Secret before sending failed ({e}); not sent"),
                _ => "the password Secret changed before sending; not sent".to_string(),
            };
            let answer = crate::decide_reset::Answer::Unsent { reason: Reason::KubernetesApiError, message };
            crate::graph::reset::ResetCall { answer, request_id: None, client_request_id: None }
        }
    };
    drop(password);
    let verdict = decide::verdict(&call.answer);
    // 5. The outcome must not be lost to a conflicting write (say, a person's annotation).
    let mut current = recorded;
    for _ in 0..OUTCOME_WRITES {
        let status = current.status.clone().unwrap_or_default();
        if status.attempt.as_ref().map(|a| (a.number, a.phase))
            != Some((number, crate::api_reset::AttemptPhase::Sending))
        {
            return Ok(Action::requeue(Duration::ZERO));
        }
        let ids = (call.request_id.clone(), call.client_request_id.clone());
        let (next, requeue) = decide::after_answer(&status, &verdict, ids, generation, Timestamp::now());
        let reason = decide::mirror_reason(&next);
        if write(api, &current, next).await?.is_some() {
            announce(ctx, &current, number, &verdict, reason);
            return Ok(requeue.map(Action::requeue).unwrap_or_else(Action::await_change));
        }
        match api.get_opt(&current.name_any()).await? {
            Some(again) => current = again,
            None => return Ok(Action::await_change()),
        }
    }
    // The status still says Sending: the next reconcile records OutcomeUnknown, never re-sends.
    Ok(Action::requeue(Duration::from_secs(1)))
}

fn announce(ctx: &Context, obj: &PasswordReset, number: u32, verdict: &Verdict, reason: Reason) {
    let (type_, note) = match verdict {
        Verdict::Accepted { location: Some(_) } => (EventType::Normal, format!("Graph accepted attempt {number}")),
        Verdict::Accepted { location: None } => {
            (EventType::Warning, format!("Graph accepted attempt {number} without a Location"))
        }
        Verdict::NotSent { message, .. } => (EventType::Warning, format!("attempt {number} not acted on: {message}")),
        Verdict::Rejected { message } => (EventType::Warning, format!("attempt {number} refused: {message}")),
        Verdict::Unknown { message } => (EventType::Warning, format!("attempt {number}: outcome unknown ({message})")),
    };
    info!(namespace = obj.namespace(), name = %obj.name_any(), attempt = number, reason = %reason, "resetPassword answered");
    publish(ctx, obj, type_, reason, &note);
}

/// Step 6: the child exists (created once, owned by the parent) and the parent mirrors it.
async fn track(
    api: &Api<PasswordReset>,
    obj: &PasswordReset,
    status: &PasswordResetStatus,
    location: &str,
    ctx: &Context,
) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let children: Api<PasswordResetOperation> = Api::namespaced(ctx.kube.clone(), &ns);
    let number = status.attempt.as_ref().map(|a| a.number).unwrap_or(1);
    let name = status.operation_name.clone().unwrap_or_else(|| child_name(&obj.name_any(), number));
    let child = match children.get_opt(&name).await? {
        Some(child) => child,
        None => {
            let child = PasswordResetOperation {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    owner_references: Some(vec![obj.controller_owner_ref(&()).expect("stored objects have a uid")]),
                    ..Default::default()
                },
                spec: PasswordResetOperationSpec {
                    user_id: None,
                    operation_id: None,
                    location: Some(location.to_string()),
                    credentials_secret_ref: obj
                        .spec
                        .credentials_secret_ref
                        .clone()
                        .map(|r| SecretReference { name: r.name }),
                    poll_interval: obj.spec.poll_interval.clone(),
                    active_deadline_seconds: obj.spec.active_deadline_seconds,
                    ttl_seconds_after_finished: None,
                },
                status: None,
            };
            match children.create(&PostParams::default(), &child).await {
                Ok(child) => child,
                Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Action::requeue(Duration::from_secs(1))),
                Err(e) => return Err(e.into()),
            }
        }
    };
    let phase = decide::mirror(child.status.as_ref().map(|s| s.conditions.as_slice()));
    let mut next = PasswordResetStatus { operation_name: Some(name), ..status.clone() };
    next = decide::with_phase(next, &phase, obj.meta().generation, Timestamp::now());
    if &next != status && write(api, obj, next).await?.is_some() && decide::mirror_reason(status) != phase.reason {
        let type_ = if phase.reason.is_problem() { EventType::Warning } else { EventType::Normal };
        publish(ctx, obj, type_, phase.reason, &phase.message);
    }
    Ok(Action::await_change())
}

/// A blocked state before sending: recorded (nothing was sent), looked at again later.
async fn blocked(
    api: &Api<PasswordReset>,
    obj: &PasswordReset,
    status: &PasswordResetStatus,
    problem: SecretProblem,
) -> Result<Action, Error> {
    // Nothing was sent either way: say why in status (a Kubernetes refusal such as missing
    // RBAC for Secrets is the usual cause), not only in the operator's log.
    let (reason, message) = match problem {
        SecretProblem::Blocked(reason, message) => (reason, message),
        SecretProblem::Kube(e) => (Reason::KubernetesApiError, format!("writing the password Secret failed: {e}")),
    };
    let next =
        decide::with_phase(status.clone(), &Phase::new(reason, message), obj.meta().generation, Timestamp::now());
    if &next != status {
        write(api, obj, next).await?;
    }
    Ok(Action::requeue(BLOCKED_RETRY))
}

/// Replaces the status, conditional on `obj`'s resourceVersion: Some(stored object), or
/// None on a conflict or if it is gone (our view was stale; the watch brings the new one).
async fn write(
    api: &Api<PasswordReset>,
    obj: &PasswordReset,
    status: PasswordResetStatus,
) -> Result<Option<PasswordReset>, Error> {
    let mut updated = obj.clone();
    updated.status = Some(status);
    updated.metadata.managed_fields = None;
    match api.replace_status(&obj.name_any(), &PostParams::default(), &updated).await {
        Ok(stored) => Ok(Some(stored)),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn publish(ctx: &Context, obj: &PasswordReset, type_: EventType, reason: Reason, note: &str) {
    let event = Event {
        type_,
        reason: reason.as_str().into(),
        note: Some(crate::text::for_people(note, 1024)),
        action: "ResetPassword".into(),
        secondary: None,
    };
    ctx.events.publish(event, obj.object_ref(&()));
}

/// `{parent}-{attempt}`, within the 253 characters of a name.
pub fn child_name(parent: &str, number: u32) -> String {
    let suffix = format!("-{number}");
    let keep = parent.len().min(253 - suffix.len());
    format!("{}{suffix}", &parent[..keep])
}
