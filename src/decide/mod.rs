//! Every decision of the reconcile, as pure functions: no I/O, no clock, no randomness.
//!
//! A reconcile is two steps around one Graph call:
//! 1. [`start`]: from the spec and the current status, either decide at once (finished,
//!    deadline passed, nothing valid to poll) or name the URL to read and the conditions
//!    to write if Graph is slow to answer;
//! 2. [`after`]: from what the call gave ([`Outcome`]), the next status, when to look
//!    again, the events to publish and how many failures in a row there have been.
//!
//! The shell (`reconcile`) gathers the inputs, performs what is decided and adds jitter.

mod events;
pub use events::Note;
mod outcome;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_annotations;
#[cfg(test)]
mod tests_errors;

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use url::Url;

use crate::api::{PasswordResetOperationSpec, PasswordResetOperationStatus};
use crate::conditions::{self, Phase};
use crate::graph::{GraphErrorKind, OperationRef, ids_in_location, operation_url};
use crate::graph::{LongRunningOperation, Outcome};
use crate::reason::Reason;
use crate::text::for_people;

/// Backoff after errors: first retry at 5 s (Graph asks for at least that), doubling, capped.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(5);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Longest wait between reads of missing or broken credentials: a fixed Secret is picked up
/// within this time.
pub const CREDENTIALS_RETRY_MAX: Duration = Duration::from_secs(30);
/// Bounds of what is mirrored from Graph (bytes, after control characters are escaped):
/// Graph's values are short, but an answer of up to 256 KiB must not reach etcd whole.
pub const MAX_FIELD: usize = 256;
pub const MAX_LOCATION: usize = 2048;
pub const MAX_STATUS_DETAIL: usize = 4096;
/// A wake-up for a deadline or a TTL comes this much after it, never before.
const AFTER_DUE: Duration = Duration::from_millis(100);

/// The operator-wide settings decisions depend on.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The only Graph root a token is sent to.
    pub graph_root: Url,
    /// Poll interval when the spec sets none.
    pub poll_interval: Duration,
    /// How long a 404 is retried before the operation counts as not found.
    pub not_found_grace: Duration,
}

/// Everything a decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub namespace: &'a str,
    /// The credentials Secret the resource uses (its own or the operator's default name).
    pub secret: Option<&'a str>,
    pub spec: &'a PasswordResetOperationSpec,
    pub generation: Option<i64>,
    pub created: Option<Timestamp>,
    /// The status as last written.
    pub status: &'a PasswordResetOperationStatus,
    pub now: Timestamp,
    /// Failed rounds in a row before this one.
    pub failures: u32,
    pub policy: &'a Policy,
    /// The `pwreset.dev/paused` annotation is "true": no Graph polls.
    pub paused: bool,
    /// The `pwreset.dev/reconcile-requested-at` annotation's value: recorded in status once
    /// a poll has acted on it.
    pub reconcile_requested_at: Option<&'a str>,
}

/// How much randomness the shell adds to a requeue, so resources do not move in lock-step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly then (a deadline, a TTL).
    None,
    /// A poll: up to 5% later, at most 500 ms.
    Spread,
    /// An error backoff: up to 20% later.
    Backoff,
    /// Graph's Retry-After: up to 250 ms later, never sooner.
    RetryAfter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// Only a change of the resource brings it back.
    Never,
    After {
        wait: Duration,
        jitter: Jitter,
    },
}

impl Requeue {
    fn after(wait: Duration, jitter: Jitter) -> Self {
        Requeue::After { wait, jitter }
    }
}

/// Something the shell must do besides writing status and publishing events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `ttlSecondsAfterFinished` has passed: delete the resource (with a uid precondition).
    Delete,
}

#[derive(Debug, Clone)]
pub struct Decision {
    /// The status to have; the shell writes it only if it differs from the current one.
    pub status: PasswordResetOperationStatus,
    pub requeue: Requeue,
    pub events: Vec<Note>,
    pub effects: Vec<Effect>,
    /// Failed rounds in a row after this one (0 after a good answer).
    pub failures: u32,
    /// Why, for metrics (None: nothing was looked at, e.g. a finished resource).
    pub reason: Option<Reason>,
}

/// The first step's verdict.
#[derive(Debug, Clone)]
pub enum Start {
    /// Decided without Graph.
    Decided(Decision),
    /// Read `url`; if Graph is slow, write `waiting` first (conditions before the answer).
    Poll { url: Url, waiting: Option<PasswordResetOperationStatus> },
}

/// What one round found, before it becomes a status.
#[derive(Debug, Clone)]
struct Round {
    phase: Phase,
    operation: Option<LongRunningOperation>,
    failures: u32,
    /// None: the phase's default (the poll interval, or the TTL once finished).
    requeue: Option<Requeue>,
    not_found_since: Option<Time>,
    ids: Ids,
}

/// The ids Microsoft support asks for, of the failure that started the current problem.
#[derive(Debug, Clone, Default, PartialEq)]
struct Ids {
    request_id: Option<String>,
    client_request_id: Option<String>,
}

impl Ids {
    fn of(status: &PasswordResetOperationStatus) -> Self {
        Ids { request_id: status.request_id.clone(), client_request_id: status.client_request_id.clone() }
    }
}

impl Round {
    /// Decided without asking Graph: nothing new about Graph's side.
    fn without_graph(phase: Phase, current: &PasswordResetOperationStatus) -> Self {
        Round { phase, operation: None, failures: 0, requeue: None, not_found_since: None, ids: Ids::of(current) }
    }
}

/// The condition message of a paused resource.
pub const PAUSED_MESSAGE: &str = "Paused by the pwreset.dev/paused annotation: no Graph polls until it is removed (activeDeadlineSeconds still applies)";

/// Step 1: decide without Graph if possible, else say what to read.
pub fn start(input: &Input) -> Start {
    let status = input.status;
    // Terminal is final, as with a Job: neither a reconcile request nor a pause changes
    // anything (no Graph call, no status write); only the TTL still acts.
    if conditions::is_finished(&status.conditions) {
        return Start::Decided(expire(input));
    }
    let decided = |phase: Phase| Start::Decided(conclude(input, status, Round::without_graph(phase, status)));
    if let Some(seconds) = input.spec.active_deadline_seconds
        && deadline_left(input).is_some_and(|left| left.is_zero())
    {
        let message =
            format!("The operation did not finish within activeDeadlineSeconds ({seconds}s); tracking stopped");
        return decided(Phase::new(Reason::DeadlineExceeded, message));
    }
    let target = match (&input.spec.location, &input.spec.user_id, &input.spec.operation_id) {
        (Some(location), _, _) => OperationRef::Location(location),
        (None, Some(user), Some(operation)) => OperationRef::ById { user, operation },
        // The CRD's rules make this unreachable; an older CRD version might not.
        _ => return decided(Phase::new(Reason::InvalidSpec, "spec must set userId and operationId, or location")),
    };
    let url = match operation_url(&input.policy.graph_root, &target) {
        Ok(url) => url,
        Err(e) if e.kind == GraphErrorKind::ForeignHost => {
            return decided(Phase::new(Reason::LocationHostNotAllowed, e.message));
        }
        Err(e) => return decided(Phase::new(Reason::InvalidLocation, e.message)),
    };
    // After the checks above, so a broken spec or a passed deadline is still reported.
    if input.paused {
        return Start::Decided(paused(input));
    }
    // A resource without conditions looks healthy to kstatus: say "in progress" if the
    // first answer takes its time.
    let waiting = (status.conditions.is_empty() || status.observed_generation != input.generation).then(|| {
        let phase = Phase::new(Reason::WaitingForGraph, "Waiting for the first answer from Microsoft Graph");
        next_status(input, status, &Round::without_graph(phase, status))
    });
    Start::Poll { url, waiting }
}

/// Step 2: what the Graph round gave → the next status, requeue and events. `current` is
/// the status as it stands now (the `waiting` status if that was written).
pub fn after(input: &Input, current: &PasswordResetOperationStatus, outcome: &Outcome) -> Decision {
    let mut decision = conclude(input, current, outcome::judge(input, current, outcome));
    // Graph was asked (whatever it answered): a pending reconcile request has been acted on.
    if let Some(requested) = input.reconcile_requested_at {
        decision.status.last_handled_reconcile_at = Some(for_people(requested, MAX_FIELD));
    }
    decision
}

/// Paused: Reconciling with reason Paused, and no poll. Removing the annotation changes the
/// resource, which brings it back; only a deadline needs a wake-up meanwhile.
fn paused(input: &Input) -> Decision {
    let status = input.status;
    // A 404 episode is not forgotten by pausing: the grace keeps counting from its start.
    let round = Round {
        not_found_since: status.not_found_since.clone(),
        ..Round::without_graph(Phase::new(Reason::Paused, PAUSED_MESSAGE), status)
    };
    let mut decision = conclude(input, status, round);
    decision.requeue = match deadline_left(input) {
        Some(left) => Requeue::after(left + AFTER_DUE, Jitter::None),
        None => Requeue::Never,
    };
    decision
}

/// The user and operation the spec names (ids, or the segments of location), for status.
fn named_ids(spec: &PasswordResetOperationSpec) -> (Option<String>, Option<String>) {
    match (&spec.location, &spec.user_id, &spec.operation_id) {
        (Some(location), _, _) => ids_in_location(location).map_or((None, None), |(u, o)| (Some(u), Some(o))),
        (None, user, operation) => (user.clone(), operation.clone()),
    }
}

/// The status, events and requeue for a round; a terminal phase also gets its completion
/// time and the TTL's wake-up.
fn conclude(input: &Input, current: &PasswordResetOperationStatus, round: Round) -> Decision {
    let next = next_status(input, current, &round);
    let events = events::for_change(current, &round.phase);
    let requeue = match (round.phase.is_terminal(), input.spec.ttl_seconds_after_finished) {
        (true, Some(ttl)) => Requeue::after(Duration::from_secs(ttl.max(0) as u64), Jitter::None),
        (true, None) => Requeue::Never,
        (false, _) => {
            clamp_to_deadline(input, round.requeue.unwrap_or(Requeue::after(poll_interval(input), Jitter::Spread)))
        }
    };
    Decision {
        status: next,
        requeue,
        events,
        effects: Vec::new(),
        failures: round.failures,
        reason: Some(round.phase.reason),
    }
}

fn next_status(input: &Input, current: &PasswordResetOperationStatus, round: &Round) -> PasswordResetOperationStatus {
    let now = Time(input.now);
    let mut next = current.clone();
    next.observed_generation = input.generation;
    next.conditions = conditions::conditions_for(&round.phase, input.generation, &now, &current.conditions);
    next.not_found_since = round.not_found_since.clone();
    next.request_id = round.ids.request_id.clone();
    next.client_request_id = round.ids.client_request_id.clone();
    let shown = |v: &Option<String>, max: usize| v.as_deref().map(|s| for_people(s, max));
    // So that every row of `kubectl get` names its user and operation, location or not.
    let (user, operation) = named_ids(input.spec);
    next.user_id = shown(&user, MAX_FIELD);
    if next.operation_id.is_none() {
        next.operation_id = shown(&operation, MAX_FIELD);
    }
    if let Some(op) = &round.operation {
        next.status = shown(&op.status, MAX_FIELD);
        next.operation_id = shown(&op.id, MAX_FIELD).or_else(|| shown(&operation, MAX_FIELD));
        next.created_date_time = shown(&op.created_date_time, MAX_FIELD);
        next.last_action_date_time = shown(&op.last_action_date_time, MAX_FIELD);
        next.resource_location = shown(&op.resource_location, MAX_LOCATION);
        next.status_detail = shown(&op.status_detail, MAX_STATUS_DETAIL);
    }
    if round.phase.is_terminal() && next.completion_time.is_none() {
        next.completion_time = Some(now.clone());
    }
    // Only together with another change, so an unchanged poll costs no write.
    if round.operation.is_some() && next != *current {
        next.last_polled_time = Some(now);
    }
    next
}

/// Job-style TTL for a finished resource: nothing to do, wait, or delete.
fn expire(input: &Input) -> Decision {
    let status = input.status;
    let mut decision = Decision {
        status: status.clone(),
        requeue: Requeue::Never,
        events: Vec::new(),
        effects: Vec::new(),
        failures: 0,
        reason: None,
    };
    let Some(ttl) = input.spec.ttl_seconds_after_finished else { return decision };
    let finished_at = status
        .completion_time
        .as_ref()
        .or_else(|| status.conditions.iter().find(|c| c.type_ == conditions::FINISHED).map(|c| &c.last_transition_time))
        .map(|t| t.0)
        .unwrap_or(input.now);
    let expires = finished_at + SignedDuration::from_secs(ttl.max(0) as i64);
    if expires > input.now {
        let left = Duration::try_from(expires.duration_since(input.now)).unwrap_or_default();
        decision.requeue = Requeue::after(left + AFTER_DUE, Jitter::None);
    } else {
        decision.effects.push(Effect::Delete);
    }
    decision
}

/// The poll interval of this resource: its spec's, else the operator's.
pub fn poll_interval(input: &Input) -> Duration {
    input
        .spec
        .poll_interval
        .as_deref()
        .and_then(|s| crate::duration::parse(s).ok())
        .unwrap_or(input.policy.poll_interval)
}

/// The wait before retry number `failures` (1-based): 5 s, 10 s, 20 s … capped at 5 min.
pub fn backoff(failures: u32) -> Duration {
    BACKOFF_FIRST.saturating_mul(1 << failures.saturating_sub(1).min(10)).min(BACKOFF_MAX)
}

fn deadline_left(input: &Input) -> Option<Duration> {
    let seconds = input.spec.active_deadline_seconds?;
    let deadline = input.created? + SignedDuration::from_secs(seconds);
    Some(Duration::try_from(deadline.duration_since(input.now)).unwrap_or(Duration::ZERO))
}

/// Never sleep past the deadline: wake just after it to end tracking on time.
fn clamp_to_deadline(input: &Input, requeue: Requeue) -> Requeue {
    match (requeue, deadline_left(input)) {
        (Requeue::After { wait, .. }, Some(left)) if left + AFTER_DUE < wait => {
            Requeue::after(left + AFTER_DUE, Jitter::None)
        }
        (requeue, _) => requeue,
    }
}
