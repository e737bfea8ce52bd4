//! The reconcile loop: read credentials, GET the operation from Graph, mirror it into
//! status (only when something changed), and decide when to look again.
//!
//! Terminal states follow the Job controller: once `Finished` is True the operator makes
//! no further Graph call and no further status write; only the TTL may delete the resource.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Resource, ResourceExt};
use rand::Rng;
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::api::{PasswordResetOperation, PasswordResetOperationStatus};
use crate::conditions::{self, Phase};
use crate::duration::human;
use crate::events::EventPublisher;
use crate::graph::auth::{BearerToken, Credentials};
use crate::graph::client::OperationRef;
use crate::graph::limiter::TenantLimiter;
use crate::graph::{GraphClient, GraphError, GraphErrorKind, LongRunningOperation, OperationState};
use crate::metrics::Metrics;

/// Backoff after errors: first retry at 5 s (Graph asks for at least that), doubling, capped.
const BACKOFF_FIRST: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Longest wait between reads of missing or broken credentials.
const CREDENTIALS_RETRY_MAX: Duration = Duration::from_secs(30);
/// Requeue after an apiserver write conflict: our cache is behind; it catches up quickly.
const CONFLICT_REQUEUE: Duration = Duration::from_secs(1);
/// kubectl keeps a full copy of the object in this annotation; the cache does not need it.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

pub type Pro = PasswordResetOperation;

/// What the controller needs to know from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub default_credentials_secret: Option<String>,
    pub poll_interval: Duration,
    pub not_found_grace: Duration,
    pub max_concurrent_reconciles: u16,
    pub namespace: Option<String>,
}

pub struct Context {
    pub kube: kube::Client,
    pub graph: GraphClient,
    pub credentials: Credentials,
    pub limiter: TenantLimiter,
    pub events: EventPublisher,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    /// Consecutive passing failures per resource, for exponential backoff. In memory
    /// only: after a restart the first retry comes sooner, which is harmless.
    failures: Mutex<HashMap<ObjectRef<Pro>, u32>>,
}

impl Context {
    pub fn new(
        kube: kube::Client,
        graph: GraphClient,
        credentials: Credentials,
        limiter: TenantLimiter,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        let reporter = Reporter { controller: "pwreset-operator".into(), instance: std::env::var("POD_NAME").ok() };
        let events = EventPublisher::start(kube.clone(), reporter, metrics.clone());
        Context { kube, graph, credentials, limiter, events, metrics, settings, failures: Mutex::default() }
    }

    fn backoff(&self, obj: &Pro) -> Duration {
        let n = {
            let mut failures = self.failures.lock().unwrap();
            let n = failures.entry(ObjectRef::from_obj(obj)).or_insert(0);
            *n += 1;
            *n
        };
        let base = BACKOFF_FIRST.saturating_mul(1 << (n - 1).min(10)).min(BACKOFF_MAX);
        with_jitter(base, 0.2)
    }

    fn clear_failures(&self, obj: &Pro) {
        self.failures.lock().unwrap().remove(&ObjectRef::from_obj(obj));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Runs the controller until `shutdown` resolves; in-flight reconciles finish first.
/// `on_ready` is called once the cache holds every resource.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    shard: crate::shard::Shard,
    on_ready: impl FnOnce() + Send + 'static,
) {
    let api: Api<Pro> = match &ctx.settings.namespace {
        Some(ns) => Api::namespaced(ctx.kube.clone(), ns),
        None => Api::all(ctx.kube.clone()),
    };
    let (reader, writer) = reflector::store();
    // Status writes do not change metadata.generation, so the operator's own writes do not
    // trigger it again: polls are driven by the requeue it asks for, nothing else.
    let stream = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|o: &mut Pro| {
            o.managed_fields_mut().clear();
            o.annotations_mut().remove(LAST_APPLIED);
        })
        // Only this replica's shard is cached at all.
        .filter(move |event| std::future::ready(shard.owns_event(event)))
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());

    let states = reader.clone();
    ctx.metrics.count_states_with(Box::new(move || count_states(&states)));
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

    let config = controller::Config::default().concurrency(ctx.settings.max_concurrent_reconciles);
    Controller::for_stream(stream, reader)
        .with_config(config)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "reconcile did not complete");
            }
        })
        .await;
}

fn count_states(store: &Store<Pro>) -> Vec<(String, i64)> {
    let mut counts: HashMap<&'static str, i64> = HashMap::new();
    for obj in store.state() {
        let status = obj.status.as_ref();
        let conds = status.map(|s| s.conditions.as_slice()).unwrap_or_default();
        let state = if conditions::reason_of(conds, conditions::STALLED).is_some() && !conditions::is_finished(conds) {
            "blocked"
        } else {
            match status.and_then(|s| s.status.as_deref()) {
                None => "pending",
                s => OperationState::from_graph(s).as_str(),
            }
        };
        *counts.entry(state).or_default() += 1;
    }
    counts.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn error_policy(obj: Arc<Pro>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconciled(false);
    warn!(namespace = obj.namespace().unwrap_or_default(), name = %obj.name_any(), error = %error, "reconcile failed; retrying");
    Action::requeue(ctx.backoff(&obj))
}

/// The outcome of one look at Graph (or of deciding not to look).
struct Observation {
    phase: Phase,
    operation: Option<LongRunningOperation>,
    request_id: Option<String>,
    not_found_since: Option<Time>,
    requeue: Option<Duration>,
}

impl Observation {
    fn phase(phase: Phase, requeue: Option<Duration>) -> Self {
        Observation { phase, operation: None, request_id: None, not_found_since: None, requeue }
    }
}

async fn reconcile(obj: Arc<Pro>, ctx: Arc<Context>) -> Result<Action, Error> {
    let result = reconcile_inner(&obj, &ctx).await;
    ctx.metrics.reconciled(result.is_ok());
    result
}

async fn reconcile_inner(obj: &Pro, ctx: &Context) -> Result<Action, Error> {
    if obj.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let old = obj.status.clone().unwrap_or_default();
    if conditions::is_finished(&old.conditions) {
        return expire_if_due(obj, &old, now, ctx).await;
    }

    // A resource without conditions looks healthy to kstatus: say "in progress" before
    // the first Graph call can take its time.
    let mut current = old.clone();
    let mut resource_version = obj.resource_version();
    if old.conditions.is_empty() || old.observed_generation != obj.metadata.generation {
        let mut first = old.clone();
        first.observed_generation = obj.metadata.generation;
        first.conditions = conditions::conditions_for(
            &Phase::progressing("WaitingForGraph", "Waiting for the first answer from Microsoft Graph"),
            obj.metadata.generation,
            &Time(now),
            &old.conditions,
        );
        match write_status(obj, &old, &first, resource_version.as_deref(), ctx).await? {
            Some(rv) => resource_version = Some(rv),
            None => return Ok(Action::requeue(CONFLICT_REQUEUE)),
        }
        current = first;
    }

    let observation = observe(obj, &current, now, ctx).await;
    let mut next = current.clone();
    next.observed_generation = obj.metadata.generation;
    next.conditions =
        conditions::conditions_for(&observation.phase, obj.metadata.generation, &Time(now), &current.conditions);
    next.not_found_since = observation.not_found_since.clone();
    if let Some(op) = &observation.operation {
        next.status = op.status.clone();
        next.operation_id = op.id.clone();
        next.created_date_time = op.created_date_time.clone();
        next.last_action_date_time = op.last_action_date_time.clone();
        next.resource_location = op.resource_location.clone();
        next.status_detail = op.status_detail.clone();
        next.request_id = None;
    } else if observation.request_id.is_some() {
        next.request_id = observation.request_id.clone();
    }
    if observation.phase.is_terminal() && next.completion_time.is_none() {
        next.completion_time = Some(Time(now));
    }

    if next != current {
        if observation.operation.is_some() {
            next.last_polled_time = Some(Time(now));
        }
        if write_status(obj, &current, &next, resource_version.as_deref(), ctx).await?.is_none() {
            return Ok(Action::requeue(CONFLICT_REQUEUE));
        }
        publish_events(obj, &current, &next, &observation.phase, ctx);
    }

    if observation.phase.is_terminal() {
        ctx.clear_failures(obj);
        return Ok(match obj.spec.ttl_seconds_after_finished {
            Some(ttl) => Action::requeue(Duration::from_secs(ttl.max(0) as u64)),
            None => Action::await_change(),
        });
    }
    let mut wait = observation.requeue.unwrap_or_else(|| poll_interval(obj, ctx));
    if let Some(left) = deadline_left(obj, now) {
        wait = wait.min(left + Duration::from_millis(100));
    }
    Ok(Action::requeue(wait))
}

/// Decides the phase: deadline, target URL, credentials, then one GET.
async fn observe(obj: &Pro, status: &PasswordResetOperationStatus, now: Timestamp, ctx: &Context) -> Observation {
    if let (Some(seconds), Some(left)) = (obj.spec.active_deadline_seconds, deadline_left(obj, now))
        && left.is_zero()
    {
        return Observation::phase(
            Phase::failed(
                "DeadlineExceeded",
                format!("The operation did not finish within activeDeadlineSeconds ({seconds}s); tracking stopped"),
            ),
            None,
        );
    }

    let target = match (&obj.spec.location, &obj.spec.user_id, &obj.spec.operation_id) {
        (Some(location), _, _) => OperationRef::Location(location),
        (None, Some(user), Some(operation)) => OperationRef::ById { user, operation },
        // The CRD's rules make this unreachable; an older CRD version might not.
        _ => {
            return Observation::phase(
                Phase::failed("InvalidSpec", "spec must set userId and operationId, or location"),
                None,
            );
        }
    };
    let url = match ctx.graph.operation_url(&target) {
        Ok(url) => url,
        Err(e) => {
            return Observation::phase(Phase::failed("LocationHostNotAllowed", e.message), None);
        }
    };

    // No Secret named anywhere: the operator's own workload identity, if it has one.
    let secret = obj.secret_name().or(ctx.settings.default_credentials_secret.as_deref());
    let namespace = obj.namespace().unwrap_or_default();
    let BearerToken { token, tenant } = match ctx.credentials.token(&namespace, secret).await {
        Ok(token) => token,
        Err(e) => {
            ctx.metrics.reconcile_error(e.reason());
            let phase = if e.needs_person() {
                Phase::blocked(e.reason(), e.to_string())
            } else {
                Phase::progressing(e.reason(), e.to_string())
            };
            // No Graph call is made while credentials are missing: retry often enough that
            // a fixed Secret is picked up quickly.
            return Observation::phase(phase, Some(ctx.backoff(obj).min(CREDENTIALS_RETRY_MAX)));
        }
    };

    ctx.limiter.acquire(&tenant).await;
    let result = ctx.graph.get_operation(&url, &token, &tenant).await;
    match &result {
        Ok(_) => ctx.limiter.succeeded(&tenant),
        Err(e) if e.kind == GraphErrorKind::Throttled => ctx.limiter.throttled(&tenant, e.retry_after),
        Err(_) => {}
    }
    match result {
        Ok(op) => {
            ctx.clear_failures(obj);
            let state = OperationState::from_graph(op.status.as_deref());
            let detail = op.status_detail.as_deref().filter(|d| !d.trim().is_empty());
            let (phase, requeue) = match state {
                OperationState::Succeeded => {
                    (Phase::Succeeded { message: with_detail("The password reset succeeded", detail) }, None)
                }
                OperationState::Failed => {
                    (Phase::failed("OperationFailed", with_detail("The password reset failed", detail)), None)
                }
                OperationState::NotStarted => {
                    (Phase::progressing("NotStarted", "Graph has not started the password reset yet"), None)
                }
                OperationState::Running => {
                    (Phase::progressing("Running", with_detail("The password reset is running", detail)), None)
                }
                OperationState::Unknown => (
                    Phase::progressing(
                        "UnknownStatus",
                        format!(
                            "Graph reported status {:?}, which this operator does not know; it is treated as \
                             still running and polled with backoff",
                            op.status.as_deref().unwrap_or("")
                        ),
                    ),
                    Some(ctx.backoff(obj).max(poll_interval(obj, ctx))),
                ),
            };
            Observation { phase, operation: Some(op), request_id: None, not_found_since: None, requeue }
        }
        Err(e) => observe_error(obj, status, e, now, &namespace, secret, ctx),
    }
}

fn observe_error(
    obj: &Pro,
    status: &PasswordResetOperationStatus,
    e: GraphError,
    now: Timestamp,
    namespace: &str,
    secret: Option<&str>,
    ctx: &Context,
) -> Observation {
    let request_id = e.request_id.clone();
    let mut not_found_since = None;
    let (phase, requeue) = match e.kind {
        GraphErrorKind::NotFound => {
            let since = status.not_found_since.clone().unwrap_or(Time(now));
            let waited = Duration::try_from(now.duration_since(since.0)).unwrap_or_default();
            let grace = ctx.settings.not_found_grace;
            not_found_since = Some(since);
            if waited >= grace {
                (
                    Phase::failed(
                        "OperationNotFound",
                        format!(
                            "Graph has answered 404 for {}: the operation does not exist or was purged ({})",
                            human(waited),
                            e.message
                        ),
                    ),
                    None,
                )
            } else {
                let left = grace - waited;
                (
                    Phase::progressing(
                        "OperationNotFoundYet",
                        format!(
                            "Graph answered 404; retrying for up to {} in case the operation was only just created",
                            human(grace)
                        ),
                    ),
                    Some(poll_interval(obj, ctx).min(left + Duration::from_millis(100))),
                )
            }
        }
        GraphErrorKind::Unauthorized => {
            ctx.credentials.invalidate(namespace, secret);
            let fix = match secret {
                Some(name) => {
                    format!("update the credentials in Secret {namespace}/{name} (read again on the next attempt)")
                }
                None => "check the operator's workload identity".to_string(),
            };
            (Phase::blocked("CredentialsRejected", format!("{}; {fix}", e.message)), Some(ctx.backoff(obj)))
        }
        GraphErrorKind::Forbidden => (
            Phase::blocked(
                "PermissionDenied",
                format!(
                    "{}; the credentials need UserAuthenticationMethod.Read.All and, for other users, an Entra role \
                     such as Authentication Administrator",
                    e.message
                ),
            ),
            Some(ctx.backoff(obj)),
        ),
        GraphErrorKind::Throttled => {
            // Honour Retry-After exactly (never sooner); without one, back off.
            let wait = match e.retry_after {
                Some(after) => after.max(Duration::from_millis(100)) + jitter_up_to(Duration::from_millis(250)),
                None => ctx.backoff(obj),
            };
            (
                Phase::progressing(
                    "Throttled",
                    "Graph is throttling requests to this tenant; waiting as long as Graph asks (Retry-After)",
                ),
                Some(wait),
            )
        }
        GraphErrorKind::Unavailable | GraphErrorKind::Timeout => {
            (Phase::progressing("GraphUnavailable", e.message.clone()), Some(ctx.backoff(obj)))
        }
        GraphErrorKind::Malformed => {
            (Phase::progressing("InvalidGraphResponse", e.message.clone()), Some(ctx.backoff(obj)))
        }
        GraphErrorKind::Rejected => (Phase::blocked("GraphRequestRejected", e.message.clone()), Some(ctx.backoff(obj))),
        GraphErrorKind::ForeignHost => (Phase::failed("LocationHostNotAllowed", e.message.clone()), None),
    };
    ctx.metrics.reconcile_error(phase.reason());
    Observation { phase, operation: None, request_id, not_found_since, requeue }
}

/// Job-style TTL: delete a finished resource `ttlSecondsAfterFinished` after it finished,
/// also when it finished while the operator was down.
async fn expire_if_due(
    obj: &Pro,
    status: &PasswordResetOperationStatus,
    now: Timestamp,
    ctx: &Context,
) -> Result<Action, Error> {
    let Some(ttl) = obj.spec.ttl_seconds_after_finished else {
        return Ok(Action::await_change());
    };
    let finished_at = status
        .completion_time
        .clone()
        .or_else(|| {
            status.conditions.iter().find(|c| c.type_ == conditions::FINISHED).map(|c| c.last_transition_time.clone())
        })
        .map(|t| t.0)
        .unwrap_or(now);
    let expires = finished_at + jiff::SignedDuration::from_secs(ttl.max(0) as i64);
    if expires > now {
        let left = Duration::try_from(expires.duration_since(now)).unwrap_or_default();
        return Ok(Action::requeue(left + Duration::from_millis(100)));
    }
    let api: Api<Pro> = Api::namespaced(ctx.kube.clone(), &obj.namespace().unwrap_or_default());
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: obj.uid(), resource_version: None }),
        ..DeleteParams::background()
    };
    match api.delete(&obj.name_any(), &params).await {
        Ok(_) => {
            info!(namespace = obj.namespace(), name = %obj.name_any(), "deleted after ttlSecondsAfterFinished")
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

/// Every status field, so a merge patch can remove the ones that became empty.
const STATUS_FIELDS: [&str; 12] = [
    "status",
    "operationId",
    "createdDateTime",
    "lastActionDateTime",
    "resourceLocation",
    "statusDetail",
    "observedGeneration",
    "lastPolledTime",
    "completionTime",
    "notFoundSince",
    "requestId",
    "conditions",
];

fn status_patch(status: &PasswordResetOperationStatus, resource_version: Option<&str>) -> Value {
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
    obj: &Pro,
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
        Err(e) => Err(e.into()),
    }
}

/// One event per change: a Normal event when Graph's status changes, a Warning when a new
/// problem appears, and a single event at the end (Succeeded, or the reason it failed).
/// Repeats of the same problem publish nothing (the condition already says it).
fn publish_events(
    obj: &Pro,
    before: &PasswordResetOperationStatus,
    after: &PasswordResetOperationStatus,
    phase: &Phase,
    ctx: &Context,
) {
    let mut events = Vec::new();
    let new_reason = conditions::reason_of(&before.conditions, conditions::READY) != Some(phase.reason());
    let problem = match phase {
        Phase::Blocked { .. } | Phase::Failed { .. } => true,
        Phase::Progressing { reason, .. } => !matches!(reason.as_str(), "NotStarted" | "Running" | "WaitingForGraph"),
        Phase::Succeeded { .. } => false,
    };
    let status_changed = after.status.is_some() && after.status != before.status;
    if status_changed && !(phase.is_terminal() && new_reason) {
        let note = match &before.status {
            Some(old) => format!("Graph status {} (was {old})", after.status.as_deref().unwrap_or("")),
            None => format!("Graph status {}", after.status.as_deref().unwrap_or("")),
        };
        events.push(Event {
            type_: EventType::Normal,
            reason: "StatusChanged".into(),
            note: Some(note),
            action: format!("Observed{}", camel_word(after.status.as_deref().unwrap_or(""))),
            secondary: None,
        });
    }
    if new_reason && (problem || phase.is_terminal()) {
        events.push(Event {
            type_: if problem { EventType::Warning } else { EventType::Normal },
            reason: phase.reason().to_string(),
            note: Some(truncate_note(phase.message())),
            action: "Poll".into(),
            secondary: None,
        });
    }
    for event in events {
        ctx.events.publish(event, obj.object_ref(&()));
    }
}

/// `notStarted` → `NotStarted`; anything else reduced to ASCII letters and digits.
fn camel_word(s: &str) -> String {
    let mut out: String = s.chars().filter(char::is_ascii_alphanumeric).take(64).collect();
    if let Some(first) = out.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    out
}

fn truncate_note(s: &str) -> String {
    s.chars().take(1000).collect()
}

fn with_detail(text: &str, detail: Option<&str>) -> String {
    match detail {
        Some(d) => format!("{text}: {d}"),
        None => text.to_string(),
    }
}

fn poll_interval(obj: &Pro, ctx: &Context) -> Duration {
    let base = obj
        .spec
        .poll_interval
        .as_deref()
        .and_then(|s| crate::duration::parse(s).ok())
        .unwrap_or(ctx.settings.poll_interval);
    // A little spread so resources created together do not poll in lock-step.
    base + jitter_up_to((base / 20).min(Duration::from_millis(500)))
}

fn deadline_left(obj: &Pro, now: Timestamp) -> Option<Duration> {
    let seconds = obj.spec.active_deadline_seconds?;
    let created = obj.metadata.creation_timestamp.as_ref()?.0;
    let deadline = created + jiff::SignedDuration::from_secs(seconds);
    Some(Duration::try_from(deadline.duration_since(now)).unwrap_or(Duration::ZERO))
}

fn with_jitter(base: Duration, fraction: f64) -> Duration {
    base.mul_f64(1.0 + rand::rng().random_range(0.0..fraction))
}

fn jitter_up_to(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    max.mul_f64(rand::rng().random_range(0.0..1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_patch_clears_every_field_that_became_empty() {
        let full = PasswordResetOperationStatus {
            status: Some("x".into()),
            operation_id: Some("x".into()),
            created_date_time: Some("x".into()),
            last_action_date_time: Some("x".into()),
            resource_location: Some("x".into()),
            status_detail: Some("x".into()),
            observed_generation: Some(1),
            last_polled_time: Some(Time(Timestamp::UNIX_EPOCH)),
            completion_time: Some(Time(Timestamp::UNIX_EPOCH)),
            not_found_since: Some(Time(Timestamp::UNIX_EPOCH)),
            request_id: Some("x".into()),
            conditions: conditions::conditions_for(
                &Phase::progressing("Running", ""),
                Some(1),
                &Time(Timestamp::UNIX_EPOCH),
                &[],
            ),
        };
        let full_keys: Vec<String> =
            serde_json::to_value(&full).unwrap().as_object().unwrap().keys().cloned().collect();
        let mut listed: Vec<String> = STATUS_FIELDS.iter().map(|s| s.to_string()).collect();
        listed.sort();
        let mut full_sorted = full_keys.clone();
        full_sorted.sort();
        assert_eq!(listed, full_sorted, "STATUS_FIELDS must name every status field");

        let patch = status_patch(&PasswordResetOperationStatus::default(), Some("42"));
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
        for key in STATUS_FIELDS {
            assert!(patch["status"][key].is_null(), "{key} must be cleared");
        }
    }

    /// A context whose Kubernetes client is a tower-test mock: every API call the
    /// reconcile makes shows up on the returned handle.
    fn mock_context()
    -> (Arc<Context>, tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>)
    {
        crate::install_crypto_provider();
        let (service, handle) =
            tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
        let kube = kube::Client::new(service, "default");
        let metrics = Arc::new(Metrics::default());
        let graph = GraphClient::new(reqwest::Client::new(), "http://127.0.0.1:9".parse().unwrap(), metrics.clone());
        let auth = crate::graph::auth::AuthSettings {
            login_url: "http://127.0.0.1:9".parse().unwrap(),
            scope_root: "https://graph.microsoft.com".into(),
            federated_token_dir: "/nonexistent".into(),
            workload_identity: None,
        };
        let credentials = Credentials::new(kube.clone(), reqwest::Client::new(), auth, metrics.clone());
        let limiter = TenantLimiter::new(crate::graph::limiter::Limits { rate: 10.0, burst: 10.0 }, metrics.clone());
        let settings = Settings {
            default_credentials_secret: None,
            poll_interval: Duration::from_secs(10),
            not_found_grace: Duration::from_secs(60),
            max_concurrent_reconciles: 1,
            namespace: None,
        };
        (Arc::new(Context::new(kube, graph, credentials, limiter, metrics, settings)), handle)
    }

    fn finished(ttl: Option<i32>, finished_secs_ago: i64) -> Pro {
        let done_at = Timestamp::now() - jiff::SignedDuration::from_secs(finished_secs_ago);
        let mut obj = Pro::new(
            "done",
            crate::api::PasswordResetOperationSpec {
                user_id: Some("u".into()),
                operation_id: Some("o".into()),
                location: None,
                credentials_secret_ref: None,
                poll_interval: None,
                active_deadline_seconds: None,
                ttl_seconds_after_finished: ttl,
            },
        );
        obj.metadata.namespace = Some("ns".into());
        obj.metadata.uid = Some("uid-1".into());
        obj.status = Some(PasswordResetOperationStatus {
            status: Some("succeeded".into()),
            completion_time: Some(Time(done_at)),
            conditions: conditions::conditions_for(
                &Phase::Succeeded { message: String::new() },
                Some(1),
                &Time(done_at),
                &[],
            ),
            ..Default::default()
        });
        obj
    }

    #[tokio::test]
    async fn a_finished_resource_costs_no_api_call() {
        let (ctx, mut handle) = mock_context();
        let action = reconcile_inner(&finished(None, 5), &ctx).await.unwrap();
        assert_eq!(action, Action::await_change());
        let waiting = tokio::time::timeout(Duration::from_millis(50), handle.next_request()).await;
        assert!(waiting.is_err(), "no request may be made for a finished resource");
    }

    #[tokio::test]
    async fn ttl_deletes_with_a_uid_precondition_once_due_and_waits_until_then() {
        let (ctx, mut handle) = mock_context();
        let action = reconcile_inner(&finished(Some(60), 5), &ctx).await.unwrap();
        assert_ne!(action, Action::await_change(), "requeued for when the TTL expires");

        let reconcile = tokio::spawn({
            let ctx = ctx.clone();
            async move { reconcile_inner(&finished(Some(60), 61), &ctx).await.unwrap() }
        });
        let (request, send) = handle.next_request().await.expect("a delete request");
        assert_eq!(request.method(), http::Method::DELETE);
        assert_eq!(request.uri().path(), "/apis/pwreset.dev/v1alpha1/namespaces/ns/passwordresetoperations/done");
        let body = request.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["preconditions"]["uid"], "uid-1", "{body}");
        send.send_response(
            http::Response::builder()
                .status(200)
                .body(kube::client::Body::from(serde_json::to_vec(&finished(Some(60), 61)).unwrap()))
                .unwrap(),
        );
        assert_eq!(reconcile.await.unwrap(), Action::await_change());
    }

    #[test]
    fn backoff_starts_at_five_seconds_and_is_capped() {
        assert!(with_jitter(BACKOFF_FIRST, 0.2) >= Duration::from_secs(5));
        assert!(with_jitter(BACKOFF_MAX, 0.2) <= Duration::from_secs(360));
    }
}
