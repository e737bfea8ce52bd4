//! Table tests for what goes wrong: Graph's errors and unknown answers, backoff and
//! Retry-After, a missing operation, credentials. The fixtures are in `tests`.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::tests::{at, condition, graph_error, op, round, wait};
use super::*;
use crate::conditions::{FINISHED, READY, STALLED};
use crate::credentials::CredentialError;
use crate::graph::{GraphErrorKind, Outcome};

#[test]
fn an_unknown_status_backs_off_and_the_backoff_grows() {
    let mut status = PasswordResetOperationStatus::default();
    let mut failures = 0;
    let mut waits = Vec::new();
    for i in 0..6 {
        let d = round(&status, &op("partiallySucceeded"), i * 100, failures);
        assert_eq!(d.reason, Some(Reason::UnknownStatus));
        assert!(d.status.completion_time.is_none(), "never taken as an end");
        waits.push(wait(&d).0.as_secs());
        failures = d.failures;
        status = d.status;
    }
    // The poll interval (15 s) is the floor; then 20, 40, 80, 160 s.
    assert_eq!(waits, [15, 15, 20, 40, 80, 160]);
    let d = round(&status, &op("running"), 1000, failures);
    assert_eq!((d.failures, wait(&d).0), (0, Duration::from_secs(15)), "a known status resets the backoff");
}

#[test]
fn backoff_starts_at_five_seconds_doubles_and_is_capped_at_five_minutes() {
    let waits: Vec<u64> = (1..=10).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]);
    assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
}

#[test]
fn passing_graph_errors_back_off_and_keep_the_first_request_id_of_an_episode() {
    let rows = [
        (GraphErrorKind::Unavailable, Reason::GraphUnavailable),
        (GraphErrorKind::Timeout, Reason::GraphUnavailable),
        (GraphErrorKind::Malformed, Reason::InvalidGraphResponse),
        (GraphErrorKind::Unauthorized, Reason::CredentialsRejected),
        (GraphErrorKind::Forbidden, Reason::PermissionDenied),
    ];
    for (kind, reason) in rows {
        let first = round(&PasswordResetOperationStatus::default(), &graph_error(kind, None, "req-1"), 1, 0);
        assert_eq!(first.reason, Some(reason), "{kind:?}");
        assert_eq!(wait(&first), (Duration::from_secs(5), Jitter::Backoff), "{kind:?}");
        assert_eq!(first.status.request_id.as_deref(), Some("req-1"));
        assert_eq!(first.status.client_request_id.as_deref(), Some("ours-req-1"), "both ids Microsoft asks for");
        assert_eq!(first.status.conditions[0].type_, READY);
        let second = round(&first.status, &graph_error(kind, None, "req-2"), 10, first.failures);
        assert_eq!(second.status, first.status, "{kind:?}: a repeat rewrites nothing");
        assert!(second.events.is_empty(), "{kind:?}: a repeat publishes nothing");
        assert_eq!(wait(&second).0, Duration::from_secs(10), "{kind:?}: the backoff grows");
        let recovered = round(&second.status, &op("running"), 30, second.failures);
        assert_eq!((recovered.status.request_id, recovered.status.client_request_id), (None, None), "{kind:?}");
        assert_eq!(recovered.failures, 0);
    }
    // A different problem starts a new episode with its own request id.
    let first =
        round(&PasswordResetOperationStatus::default(), &graph_error(GraphErrorKind::Unavailable, None, "a"), 1, 0);
    let other = round(&first.status, &graph_error(GraphErrorKind::Malformed, None, "b"), 10, 1);
    assert_eq!(other.status.request_id.as_deref(), Some("b"));
}

#[test]
fn a_refused_request_ends_tracking_after_three_identical_answers() {
    let refused = graph_error(GraphErrorKind::Rejected, None, "r1");
    // Another problem before does not count towards the three.
    let outage =
        round(&PasswordResetOperationStatus::default(), &graph_error(GraphErrorKind::Unavailable, None, "u"), 1, 0);
    let first = round(&outage.status, &refused, 10, outage.failures);
    assert_eq!((first.reason, first.failures), (Some(Reason::GraphRequestRejected), 1));
    assert_eq!(condition(&first, FINISHED), Some("False"));
    let second = round(&first.status, &refused, 20, first.failures);
    assert_eq!((second.reason, wait(&second).0), (Some(Reason::GraphRequestRejected), Duration::from_secs(10)));
    let third = round(&second.status, &refused, 40, second.failures);
    assert_eq!(third.reason, Some(Reason::PermanentGraphError));
    assert_eq!((condition(&third, FINISHED), condition(&third, STALLED)), (Some("True"), Some("True")));
    assert_eq!(third.requeue, Requeue::Never);
    assert!(third.status.conditions[0].message.contains("3 times in a row"), "{}", third.status.conditions[0].message);
}

#[test]
fn retry_after_wins_over_the_backoff_in_both_directions() {
    let throttled = |after: Option<u64>, failures: u32| {
        let outcome = graph_error(GraphErrorKind::Throttled, after.map(Duration::from_secs), "r");
        round(&PasswordResetOperationStatus::default(), &outcome, 1, failures)
    };
    // Longer than the backoff: Graph's wait, not 5 s.
    assert_eq!(wait(&throttled(Some(30), 0)), (Duration::from_secs(30), Jitter::RetryAfter));
    // Shorter than a grown backoff: still Graph's wait.
    assert_eq!(wait(&throttled(Some(2), 5)), (Duration::from_secs(2), Jitter::RetryAfter));
    // Zero is never a busy loop.
    assert_eq!(wait(&throttled(Some(0), 0)).0, Duration::from_millis(100));
    // Without Retry-After: the backoff.
    assert_eq!(wait(&throttled(None, 2)), (Duration::from_secs(20), Jitter::Backoff));
    assert_eq!(throttled(None, 0).reason, Some(Reason::Throttled));
}

#[test]
fn a_404_is_retried_for_the_grace_period_then_ends_tracking() {
    let first =
        round(&PasswordResetOperationStatus::default(), &graph_error(GraphErrorKind::NotFound, None, "n"), 10, 0);
    assert_eq!(first.reason, Some(Reason::OperationNotFoundYet));
    assert_eq!(first.status.not_found_since, Some(Time(at(10))));
    // (now, reason, wait): grace 120 s from t=10, poll 15 s.
    let rows = [
        (20, Reason::OperationNotFoundYet, Some(Duration::from_secs(15))),
        (125, Reason::OperationNotFoundYet, Some(Duration::from_millis(5100))),
        (129, Reason::OperationNotFoundYet, Some(Duration::from_millis(1100))),
        (130, Reason::OperationNotFound, None),
        (500, Reason::OperationNotFound, None),
    ];
    for (now, reason, requeue) in rows {
        let d = round(&first.status, &graph_error(GraphErrorKind::NotFound, None, "n2"), now, 1);
        assert_eq!(d.reason, Some(reason), "t={now}");
        assert_eq!(d.status.not_found_since, Some(Time(at(10))), "counted from the first 404");
        match requeue {
            Some(w) => assert_eq!(wait(&d).0, w, "t={now}"),
            None => {
                assert_eq!(d.requeue, Requeue::Never);
                assert_eq!(condition(&d, FINISHED), Some("True"));
            }
        }
    }
    let found = round(&first.status, &op("running"), 30, 1);
    assert_eq!(found.status.not_found_since, None, "cleared once found");
}

#[test]
fn credential_errors_block_or_retry_and_are_retried_within_thirty_seconds() {
    let cases = [
        (CredentialError::NotConfigured { why: "none".into() }, Reason::CredentialsNotConfigured, true),
        (
            CredentialError::SecretNotFound { namespace: "ns".into(), name: "s".into() },
            Reason::CredentialsSecretNotFound,
            true,
        ),
        (
            CredentialError::ReauthenticationRequired { source_name: "s".into(), code: "invalid_grant".into() },
            Reason::ReauthenticationRequired,
            true,
        ),
        (
            CredentialError::TokenEndpoint { source_name: "s".into(), message: "down".into(), retry_after: None },
            Reason::TokenEndpointUnavailable,
            false,
        ),
        (
            CredentialError::ConsentRequired { source_name: "s".into(), code: "invalid_grant".into() },
            Reason::ConsentRequired,
            true,
        ),
    ];
    for (error, reason, blocked) in cases {
        let outcome = Outcome::Credentials(error);
        let d = round(&PasswordResetOperationStatus::default(), &outcome, 1, 9);
        assert_eq!(d.reason, Some(reason));
        assert_eq!(condition(&d, STALLED).is_some(), blocked, "{reason}");
        assert_eq!(condition(&d, FINISHED), Some("False"), "{reason}: not an end");
        assert_eq!(wait(&d).0, Duration::from_secs(30), "{reason}");
        assert!(d.events.iter().any(|e| e.warning && e.reason == reason.as_str()), "{reason}");
    }
}

#[test]
fn the_token_endpoints_retry_after_is_honoured() {
    let error = CredentialError::TokenEndpoint {
        source_name: "s".into(),
        message: "temporarily_unavailable".into(),
        retry_after: Some(Duration::from_secs(45)),
    };
    let d = round(&PasswordResetOperationStatus::default(), &Outcome::Credentials(error), 1, 0);
    assert_eq!(wait(&d), (Duration::from_secs(45), Jitter::RetryAfter), "longer than the 30 s credential retry");
}
