//! What a Graph round means: the reason, the message, the wait and the failure count for
//! each answer, Graph error and credential error.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{CREDENTIALS_RETRY_MAX, Ids, Input, Jitter, Requeue, Round, backoff, poll_interval};
use crate::api::PasswordResetOperationStatus;
use crate::conditions::{self, Phase};
use crate::credentials::CredentialError;
use crate::duration::human;
use crate::graph::{GraphError, GraphErrorKind, OperationState, Outcome};
use crate::reason::Reason;

/// Identical refusals (400, 405, 409, 3xx) after which tracking ends.
pub const PERMANENT_AFTER: u32 = 3;
/// Graph's Retry-After is honoured to the letter, but never a busy loop.
const RETRY_AFTER_MIN: Duration = Duration::from_millis(100);

pub(super) fn judge(input: &Input, current: &PasswordResetOperationStatus, outcome: &Outcome) -> Round {
    let failures = input.failures.saturating_add(1);
    let failed = |phase: Phase, requeue: Requeue, not_found_since: Option<Time>, ids: Ids| Round {
        ids: episode_ids(current, phase.reason, ids),
        phase,
        operation: None,
        failures,
        requeue: Some(requeue),
        not_found_since,
    };
    match outcome {
        Outcome::Answer(op) => {
            let detail = op.status_detail.as_deref().filter(|d| !d.trim().is_empty());
            let (phase, requeue, failures) = match OperationState::from_graph(op.status.as_deref()) {
                OperationState::Succeeded => {
                    (Phase::new(Reason::Succeeded, with_detail("The password reset succeeded", detail)), None, 0)
                }
                OperationState::Failed => {
                    (Phase::new(Reason::OperationFailed, with_detail("The password reset failed", detail)), None, 0)
                }
                OperationState::NotStarted => {
                    (Phase::new(Reason::NotStarted, "Graph has not started the password reset yet"), None, 0)
                }
                OperationState::Running => {
                    (Phase::new(Reason::Running, with_detail("The password reset is running", detail)), None, 0)
                }
                // Not a failure of Graph, but polling something we cannot read at full
                // rate helps nobody: back off, and let the backoff grow.
                OperationState::Unknown => {
                    let message = format!(
                        "Graph reported status {:?}, which this operator does not know; it is treated as still \
                         running and polled with backoff",
                        op.status.as_deref().unwrap_or("")
                    );
                    let wait = backoff(failures).max(poll_interval(input));
                    (
                        Phase::new(Reason::UnknownStatus, message),
                        Some(Requeue::After { wait, jitter: Jitter::Backoff }),
                        failures,
                    )
                }
            };
            Round { phase, operation: Some(op.clone()), failures, requeue, not_found_since: None, ids: Ids::default() }
        }
        Outcome::Credentials(e) => {
            let phase = Phase::new(e.reason(), e.to_string());
            let requeue = match e {
                // The token endpoint's Retry-After, to the letter.
                CredentialError::TokenEndpoint { retry_after: Some(after), .. } => {
                    Requeue::After { wait: (*after).max(RETRY_AFTER_MIN), jitter: Jitter::RetryAfter }
                }
                // No Graph call is made while credentials are missing: retry often enough
                // that a fixed Secret is picked up quickly.
                _ => Requeue::After { wait: backoff(failures).min(CREDENTIALS_RETRY_MAX), jitter: Jitter::Backoff },
            };
            failed(phase, requeue, None, Ids::default())
        }
        Outcome::Graph(e) if e.kind == GraphErrorKind::NotFound => not_found(input, current, e, failures),
        Outcome::Graph(e) if e.kind == GraphErrorKind::Rejected => rejected(input, current, e),
        Outcome::Graph(e) => {
            let backoff = Requeue::After { wait: backoff(failures), jitter: Jitter::Backoff };
            let (phase, requeue) = match e.kind {
                GraphErrorKind::NotFound => unreachable!("handled above"),
                GraphErrorKind::Unauthorized => (
                    Phase::new(Reason::CredentialsRejected, format!("{}; {}", e.message, fix_credentials(input))),
                    backoff,
                ),
                GraphErrorKind::Forbidden => (
                    Phase::new(
                        Reason::PermissionDenied,
                        format!(
                            "{}; the credentials need UserAuthenticationMethod.Read.All and, for other users, an \
                             Entra role such as Authentication Administrator",
                            e.message
                        ),
                    ),
                    backoff,
                ),
                GraphErrorKind::AppOnlyForbidden => (
                    Phase::new(
                        Reason::AppOnlyNotSupported,
                        format!(
                            "{}; Microsoft documents application permissions as not supported for reading \
                             password-reset operations: use delegated credentials (tenantId, clientId, refreshToken)",
                            e.message
                        ),
                    ),
                    backoff,
                ),
                GraphErrorKind::Throttled => {
                    // Honour Retry-After exactly (never sooner); without one, back off.
                    let requeue = match e.retry_after {
                        Some(after) => Requeue::After { wait: after.max(RETRY_AFTER_MIN), jitter: Jitter::RetryAfter },
                        None => backoff,
                    };
                    let message = "Graph is throttling requests to this tenant; waiting as long as Graph asks \
                                   (Retry-After)";
                    (Phase::new(Reason::Throttled, message), requeue)
                }
                GraphErrorKind::Unavailable | GraphErrorKind::Timeout => {
                    (Phase::new(Reason::GraphUnavailable, e.message.clone()), backoff)
                }
                GraphErrorKind::Malformed => (Phase::new(Reason::InvalidGraphResponse, e.message.clone()), backoff),
                GraphErrorKind::Rejected => unreachable!("handled above"),
                GraphErrorKind::ForeignHost => (Phase::new(Reason::LocationHostNotAllowed, e.message.clone()), backoff),
                GraphErrorKind::BadLocation => (Phase::new(Reason::InvalidLocation, e.message.clone()), backoff),
            };
            failed(phase, requeue, None, ids_of(e))
        }
    }
}

/// A request Graph refuses (400, 405, 409, a redirect) will be refused again: the spec is
/// immutable. It is retried a few times in case the refusal was a passing fault, then tracking
/// ends, so `kubectl wait --for=condition=Finished` returns.
fn rejected(input: &Input, current: &PasswordResetOperationStatus, e: &GraphError) -> Round {
    let previous = conditions::reason_of(&current.conditions, conditions::READY);
    // Identical answers in a row: count from the first refusal of this episode.
    let refusals = if previous == Some(Reason::GraphRequestRejected.as_str()) { input.failures + 1 } else { 1 };
    let (phase, requeue) = if refusals >= PERMANENT_AFTER {
        let message = format!(
            "Graph refused the request {refusals} times in a row ({}); the spec cannot change, so retrying cannot \
             help: check the ids and create a new resource",
            e.message
        );
        (Phase::new(Reason::PermanentGraphError, message), None)
    } else {
        let message = format!("{}; retried {} more time(s) before giving up", e.message, PERMANENT_AFTER - refusals);
        (
            Phase::new(Reason::GraphRequestRejected, message),
            Some(Requeue::After { wait: backoff(refusals), jitter: Jitter::Backoff }),
        )
    };
    Round {
        ids: episode_ids(current, phase.reason, ids_of(e)),
        phase,
        operation: None,
        failures: refusals,
        requeue,
        not_found_since: None,
    }
}

/// A 404 is retried for the grace period (Graph may not know a just-created operation),
/// counted from the first 404, then it ends tracking.
fn not_found(input: &Input, current: &PasswordResetOperationStatus, e: &GraphError, failures: u32) -> Round {
    let since = current.not_found_since.clone().unwrap_or(Time(input.now));
    let waited = Duration::try_from(input.now.duration_since(since.0)).unwrap_or_default();
    let grace = input.policy.not_found_grace;
    let (phase, requeue) = if waited >= grace {
        let message = format!(
            "Graph has answered 404 for {}: the operation does not exist or was purged ({})",
            human(waited),
            e.message
        );
        (Phase::new(Reason::OperationNotFound, message), None)
    } else {
        let message = format!(
            "Graph answered 404; retrying for up to {} in case the operation was only just created",
            human(grace)
        );
        let wait = poll_interval(input).min(grace - waited + super::AFTER_DUE);
        (Phase::new(Reason::OperationNotFoundYet, message), Some(Requeue::After { wait, jitter: Jitter::None }))
    };
    Round {
        ids: episode_ids(current, phase.reason, ids_of(e)),
        phase,
        operation: None,
        failures,
        requeue,
        not_found_since: Some(since),
    }
}

fn ids_of(e: &GraphError) -> Ids {
    Ids { request_id: e.request_id.clone(), client_request_id: e.client_request_id.clone() }
}

/// The request ids of the first failure of an episode (consecutive failures with the same
/// reason): quoting them to Microsoft support is as good as any later ones, and keeping them
/// means a long outage does not rewrite the status on every retry.
fn episode_ids(current: &PasswordResetOperationStatus, reason: Reason, new: Ids) -> Ids {
    let same_episode = conditions::reason_of(&current.conditions, conditions::READY) == Some(reason.as_str());
    let first = Ids::of(current);
    if same_episode && first != Ids::default() { first } else { new }
}

fn fix_credentials(input: &Input) -> String {
    match input.secret {
        Some(name) => {
            format!("update the credentials in Secret {}/{name} (read again on the next attempt)", input.namespace)
        }
        None => "check the operator's workload identity".to_string(),
    }
}

fn with_detail(text: &str, detail: Option<&str>) -> String {
    match detail {
        Some(d) => format!("{text}: {d}"),
        None => text.to_string(),
    }
}
