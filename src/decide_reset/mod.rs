//! Every decision about a `PasswordReset`, as pure functions (no I/O, no clock, no
//! randomness): what to do next from the status, what a resetPassword answer means for
//! at-most-once, and how the child's conditions show on the parent.
//!
//! The promise: resetPassword is sent for attempt N only while status says attempt N is
//! being sent (`Sending`, written with a resourceVersion precondition before the request
//! leaves) or certainly was not acted on (`NotSent`). Anything that may have reached Graph
//! without a clear answer ends in `OutcomeUnknown`, and only the
//! `pwreset.dev/allow-another-attempt` annotation naming attempt N opens attempt N+1.

#[cfg(test)]
mod tests;

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api_reset::{Attempt, AttemptPhase, PasswordResetStatus};
use crate::conditions::{self, Phase};
use crate::reason::Reason;

/// First wait before sending a NotSent attempt again without Retry-After (Graph: ≥ 5 s).
pub const RESEND_FIRST: Duration = Duration::from_secs(5);
pub const RESEND_MAX: Duration = Duration::from_secs(300);

/// What Graph's answer to one resetPassword said, as the shell saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// An HTTP answer arrived.
    Http {
        status: u16,
        location: Option<String>,
        retry_after: Option<Duration>,
        /// Graph's error code and message (never the password: Graph does not echo it).
        message: String,
        request_id: Option<String>,
        /// The token was app-only (a 403 then means: application permissions unsupported).
        app_only: bool,
    },
    /// The connection failed before any byte of the request was sent.
    NotConnected(String),
    /// The request may have been sent but no answer came (timeout, connection lost).
    Lost(String),
    /// Nothing was sent: no token could be had, or the password Secret check before sending failed.
    Unsent { reason: Reason, message: String },
}

/// What an answer means for the attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Graph accepted the reset.
    Accepted { location: Option<String> },
    /// Graph certainly did not act: send the same attempt again after `wait` (None: backoff).
    NotSent { reason: Reason, message: String, wait: Option<Duration> },
    /// Graph refused for good.
    Rejected { message: String },
    /// Nobody knows whether Graph acted.
    Unknown { message: String },
}

/// The at-most-once classification. Only answers that prove Graph did not act are
/// `NotSent`: a 429 (Graph throttles before acting), a 401/403 (the request was not
/// authorised), a connection that was never made, or no token at all.
pub fn verdict(answer: &Answer) -> Verdict {
    match answer {
        Answer::Http { status, location, retry_after, message, app_only, .. } => match *status {
            200..=299 => Verdict::Accepted { location: location.clone() },
            429 => Verdict::NotSent { reason: Reason::Throttled, message: message.clone(), wait: *retry_after },
            401 => Verdict::NotSent { reason: Reason::CredentialsRejected, message: message.clone(), wait: None },
            403 if *app_only => {
                Verdict::NotSent { reason: Reason::AppOnlyNotSupported, message: message.clone(), wait: None }
            }
            403 => Verdict::NotSent { reason: Reason::PermissionDenied, message: message.clone(), wait: None },
            // 408 and every 5xx: the request arrived and may have been acted on.
            408 | 500..=599 => Verdict::Unknown { message: message.clone() },
            _ => Verdict::Rejected { message: message.clone() },
        },
        Answer::NotConnected(message) => {
            Verdict::NotSent { reason: Reason::GraphUnavailable, message: message.clone(), wait: None }
        }
        Answer::Lost(message) => Verdict::Unknown { message: message.clone() },
        Answer::Unsent { reason, message } => {
            Verdict::NotSent { reason: *reason, message: message.clone(), wait: None }
        }
    }
}

/// What the shell does next for a PasswordReset.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Finished: nothing more, except deleting it after its TTL (`Some(0)`: now).
    Finished { ttl_left: Option<Duration> },
    /// Write the password Secret for attempt `number`, record `Sending`, then send.
    Send { number: u32 },
    /// A NotSent attempt waits for its retry time.
    Wait { left: Duration },
    /// Status says `Sending` but this reconcile did not send it: the operator stopped (or
    /// lost the answer) mid-request. Record `OutcomeUnknown`; never send again on our own.
    MarkUnknown,
    /// OutcomeUnknown and no (matching) annotation: wait for a person.
    AwaitPerson,
    /// Accepted with a Location: make sure the child exists and mirror it.
    Track { location: String },
}

/// Decides from the status and the allow-another-attempt annotation.
pub fn next(status: &PasswordResetStatus, allowed: Option<&str>, ttl: Option<i32>, now: Timestamp) -> Next {
    if conditions::is_finished(&status.conditions) {
        let ttl_left = ttl.map(|ttl| {
            let done = status.completion_time.as_ref().map(|t| t.0).unwrap_or(now);
            let due = done + SignedDuration::from_secs(i64::from(ttl.max(0)));
            Duration::try_from(due.duration_since(now)).unwrap_or(Duration::ZERO)
        });
        return Next::Finished { ttl_left };
    }
    let Some(attempt) = &status.attempt else {
        return Next::Send { number: 1 };
    };
    match attempt.phase {
        AttemptPhase::Sending => Next::MarkUnknown,
        AttemptPhase::NotSent => {
            let due = attempt.retry_at.as_ref().map(|t| t.0).unwrap_or(now);
            match Duration::try_from(due.duration_since(now)) {
                Ok(left) if !left.is_zero() => Next::Wait { left },
                _ => Next::Send { number: attempt.number },
            }
        }
        AttemptPhase::OutcomeUnknown => {
            // Only the current attempt's number opens the next one: once attempt N+1 exists,
            // the annotation "N" (still set, or set again) allows nothing.
            if allowed.map(str::trim) == Some(attempt.number.to_string().as_str()) {
                Next::Send { number: attempt.number + 1 }
            } else {
                Next::AwaitPerson
            }
        }
        AttemptPhase::Accepted => match &status.location {
            Some(location) => Next::Track { location: location.clone() },
            // Written together with its terminal conditions; an older status without them.
            None => Next::Finished { ttl_left: None },
        },
        AttemptPhase::Rejected => Next::Finished { ttl_left: None },
    }
}

/// The status to write before sending attempt `number` (conditional on resourceVersion).
pub fn sending(
    current: &PasswordResetStatus,
    number: u32,
    generation: Option<i64>,
    now: Timestamp,
) -> PasswordResetStatus {
    let same = current.attempt.as_ref().filter(|a| a.number == number);
    let attempt = Attempt {
        number,
        phase: AttemptPhase::Sending,
        started_at: Time(now),
        finished_at: None,
        retry_at: None,
        not_sent_count: same.map(|a| a.not_sent_count).unwrap_or(0),
        request_id: None,
        client_request_id: None,
    };
    let phase = Phase::new(Reason::ResetPending, format!("sending resetPassword (attempt {number})"));
    with_phase(PasswordResetStatus { attempt: Some(attempt), ..current.clone() }, &phase, generation, now)
}

/// The status after the answer to the attempt recorded in `current` (which says Sending),
/// and how long until the next look (None: only when something changes).
pub fn after_answer(
    current: &PasswordResetStatus,
    verdict: &Verdict,
    ids: (Option<String>, Option<String>),
    generation: Option<i64>,
    now: Timestamp,
) -> (PasswordResetStatus, Option<Duration>) {
    let mut status = current.clone();
    let mut attempt = status.attempt.clone().expect("an answer belongs to a recorded attempt");
    let number = attempt.number;
    attempt.finished_at = Some(Time(now));
    (attempt.request_id, attempt.client_request_id) = ids;
    let (phase, requeue) = match verdict {
        Verdict::Accepted { location: Some(location) } => {
            attempt.phase = AttemptPhase::Accepted;
            status.location = Some(location.clone());
            status.operation_id = crate::graph::ids_in_location(location).map(|(_, op)| op);
            (
                Phase::new(Reason::ResetAccepted, "Graph accepted the reset; tracking the operation"),
                Some(Duration::ZERO),
            )
        }
        Verdict::Accepted { location: None } => {
            attempt.phase = AttemptPhase::Accepted;
            let message = "Graph accepted the reset (202) but sent no Location, so the operation cannot be \
                           tracked: check the user's sign-in and the Entra audit log";
            (Phase::new(Reason::ResetAcceptedWithoutLocation, message), None)
        }
        Verdict::NotSent { reason, message, wait } => {
            attempt.phase = AttemptPhase::NotSent;
            attempt.not_sent_count += 1;
            let wait = wait.unwrap_or_else(|| resend_backoff(attempt.not_sent_count)).max(Duration::from_secs(1));
            attempt.retry_at = Some(Time(now + SignedDuration::try_from(wait).unwrap_or(SignedDuration::MAX)));
            let message =
                format!("attempt {number} was not acted on by Graph ({message}); sent again in {}s", wait.as_secs());
            (Phase::new(*reason, message), Some(wait))
        }
        Verdict::Rejected { message } => {
            attempt.phase = AttemptPhase::Rejected;
            (Phase::new(Reason::ResetRejected, format!("Graph refused the reset: {message}")), None)
        }
        Verdict::Unknown { message } => {
            attempt.phase = AttemptPhase::OutcomeUnknown;
            (unknown_phase(number, message), None)
        }
    };
    status.attempt = Some(attempt);
    (with_phase(status, &phase, generation, now), requeue)
}

/// `Sending` found without an answer: the operator stopped mid-request.
pub fn mark_unknown(current: &PasswordResetStatus, generation: Option<i64>, now: Timestamp) -> PasswordResetStatus {
    let mut status = current.clone();
    let attempt = status.attempt.as_mut().expect("Sending is an attempt");
    attempt.phase = AttemptPhase::OutcomeUnknown;
    attempt.finished_at = Some(Time(now));
    let phase = unknown_phase(attempt.number, "the operator stopped before Graph's answer arrived");
    with_phase(status, &phase, generation, now)
}

fn unknown_phase(number: u32, why: &str) -> Phase {
    Phase::new(
        Reason::ResetOutcomeUnknown,
        format!(
            "attempt {number}: it is not known whether Graph reset the password ({why}); nothing more is sent. \
             Check the Entra audit log; to try once more with a new password, set annotation \
             pwreset.dev/allow-another-attempt={number}"
        ),
    )
}

/// The parent's phase while the child tracks the operation: the child's Ready reason and
/// message (the same vocabulary), or ResetAccepted until the child has conditions.
pub fn mirror(child: Option<&[Condition]>) -> Phase {
    let ready = child.and_then(|c| c.iter().find(|c| c.type_ == conditions::READY));
    match ready.and_then(|c| Reason::parse(&c.reason).map(|r| (r, c.message.clone()))) {
        Some((reason, message)) => Phase::new(reason, message),
        None => Phase::new(Reason::ResetAccepted, "Graph accepted the reset; waiting for the tracking resource"),
    }
}

/// `current` with conditions for `phase` (and completionTime when it becomes terminal).
pub fn with_phase(
    mut status: PasswordResetStatus,
    phase: &Phase,
    generation: Option<i64>,
    now: Timestamp,
) -> PasswordResetStatus {
    let now = Time(now);
    status.conditions = conditions::conditions_for(phase, generation, &now, &status.conditions);
    status.observed_generation = generation;
    if phase.is_terminal() && status.completion_time.is_none() {
        status.completion_time = Some(now);
    }
    status
}

/// 5 s, 10 s, 20 s … capped at 5 minutes.
pub fn resend_backoff(not_sent: u32) -> Duration {
    let factor = 1u32 << not_sent.saturating_sub(1).min(16);
    RESEND_FIRST.saturating_mul(factor).min(RESEND_MAX)
}

/// The Ready reason a status carries (for events and logs).
pub fn mirror_reason(status: &PasswordResetStatus) -> Reason {
    conditions::reason_of(&status.conditions, conditions::READY).and_then(Reason::parse).unwrap_or(Reason::ResetPending)
}
