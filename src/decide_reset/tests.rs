//! One row per answer and per state: what may be sent again, and what never is.

use super::*;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn http(status: u16) -> Answer {
    answer(status, None, None, false)
}

fn answer(status: u16, location: Option<String>, retry_after: Option<Duration>, app_only: bool) -> Answer {
    let message = format!("Graph answered {status}");
    Answer::Http { status, location, retry_after, message, request_id: None, app_only }
}

fn attempt(number: u32, phase: AttemptPhase) -> PasswordResetStatus {
    let attempt = Attempt {
        number,
        phase,
        started_at: Time(t(0)),
        finished_at: None,
        retry_at: None,
        not_sent_count: 0,
        request_id: None,
        client_request_id: None,
    };
    PasswordResetStatus { attempt: Some(attempt), ..Default::default() }
}

#[test]
fn only_answers_that_prove_graph_did_not_act_may_be_sent_again() {
    let location = Some("https://graph.microsoft.com/v1.0/users/u/authentication/operations/o?aadgdc=x".to_string());
    let accepted = answer(202, location.clone(), None, false);
    let throttled = answer(429, None, Some(Duration::from_secs(7)), false);
    let app_only_403 = answer(403, None, None, true);
    let rows: Vec<(&str, Answer, &str)> = vec![
        ("202 with Location", accepted, "accepted"),
        ("202 without Location", http(202), "accepted"),
        ("429", throttled, "not sent"),
        ("401", http(401), "not sent"),
        ("403", http(403), "not sent"),
        ("403 to an app-only token", app_only_403, "not sent"),
        ("connect error", Answer::NotConnected("refused".into()), "not sent"),
        ("no token", Answer::Unsent { reason: Reason::CredentialsSecretNotFound, message: "m".into() }, "not sent"),
        ("400 complexity", http(400), "rejected"),
        ("404 user", http(404), "rejected"),
        ("408", http(408), "unknown"),
        ("500", http(500), "unknown"),
        ("502", http(502), "unknown"),
        ("503 even with Retry-After", answer(503, None, Some(Duration::from_secs(1)), false), "unknown"),
        ("504", http(504), "unknown"),
        ("timeout or dropped connection", Answer::Lost("timed out".into()), "unknown"),
    ];
    for (what, answer, expected) in rows {
        let got = match verdict(&answer) {
            Verdict::Accepted { .. } => "accepted",
            Verdict::NotSent { .. } => "not sent",
            Verdict::Rejected { .. } => "rejected",
            Verdict::Unknown { .. } => "unknown",
        };
        assert_eq!(got, expected, "{what}");
    }
    match verdict(&answer(429, None, Some(Duration::from_secs(7)), false)) {
        Verdict::NotSent { reason: Reason::Throttled, wait: Some(wait), .. } => {
            assert_eq!(wait, Duration::from_secs(7))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        verdict(&answer(403, None, None, true)),
        Verdict::NotSent { reason: Reason::AppOnlyNotSupported, .. }
    ));
}

#[test]
fn what_happens_next_for_each_state() {
    let sent_at = |phase| attempt(3, phase);
    let mut waiting = sent_at(AttemptPhase::NotSent);
    waiting.attempt.as_mut().unwrap().retry_at = Some(Time(t(10)));
    let mut accepted = sent_at(AttemptPhase::Accepted);
    accepted.location = Some("https://g/v1.0/users/u/authentication/operations/o".into());
    let rows: Vec<(&str, PasswordResetStatus, Option<&str>, Next)> = vec![
        ("new resource", PasswordResetStatus::default(), None, Next::Send { number: 1 }),
        (
            "an annotation on a new resource changes nothing",
            PasswordResetStatus::default(),
            Some("1"),
            Next::Send { number: 1 },
        ),
        ("Sending without an answer", sent_at(AttemptPhase::Sending), None, Next::MarkUnknown),
        ("Sending, even with an annotation", sent_at(AttemptPhase::Sending), Some("3"), Next::MarkUnknown),
        ("NotSent before its time", waiting.clone(), None, Next::Wait { left: Duration::from_secs(5) }),
        ("unknown, no annotation", sent_at(AttemptPhase::OutcomeUnknown), None, Next::AwaitPerson),
        (
            "unknown, annotation for an older attempt",
            sent_at(AttemptPhase::OutcomeUnknown),
            Some("2"),
            Next::AwaitPerson,
        ),
        (
            "unknown, annotation for a later attempt",
            sent_at(AttemptPhase::OutcomeUnknown),
            Some("4"),
            Next::AwaitPerson,
        ),
        ("unknown, garbage annotation", sent_at(AttemptPhase::OutcomeUnknown), Some("yes"), Next::AwaitPerson),
        (
            "unknown, annotation for this attempt",
            sent_at(AttemptPhase::OutcomeUnknown),
            Some("3"),
            Next::Send { number: 4 },
        ),
        (
            "unknown, annotation with spaces",
            sent_at(AttemptPhase::OutcomeUnknown),
            Some(" 3 "),
            Next::Send { number: 4 },
        ),
        (
            "accepted",
            accepted,
            None,
            Next::Track { location: "https://g/v1.0/users/u/authentication/operations/o".into() },
        ),
        ("rejected", sent_at(AttemptPhase::Rejected), None, Next::Finished { ttl_left: None }),
    ];
    for (what, status, allowed, expected) in rows {
        assert_eq!(next(&status, allowed, None, t(5)), expected, "{what}");
    }
    assert_eq!(next(&waiting, None, None, t(10)), Next::Send { number: 3 }, "NotSent at its time: the same attempt");
}

#[test]
fn an_annotation_opens_exactly_one_more_attempt() {
    // Attempt 1's outcome is unknown; a person sets the annotation to 1.
    let unknown = attempt(1, AttemptPhase::OutcomeUnknown);
    assert_eq!(next(&unknown, Some("1"), None, t(1)), Next::Send { number: 2 });
    // Attempt 2 is recorded, then its outcome is unknown too: the same annotation, still
    // set (or set again to the same value), allows nothing more.
    let second = sending(&unknown, 2, Some(1), t(2));
    assert_eq!(next(&second, Some("1"), None, t(3)), Next::MarkUnknown);
    let second_unknown = mark_unknown(&second, Some(1), t(3));
    assert_eq!(next(&second_unknown, Some("1"), None, t(4)), Next::AwaitPerson);
    assert_eq!(next(&second_unknown, Some("2"), None, t(4)), Next::Send { number: 3 });
}

#[test]
fn answers_become_status_without_losing_the_attempt() {
    let sending_now = sending(&PasswordResetStatus::default(), 1, Some(1), t(0));
    assert_eq!(mirror_reason(&sending_now), Reason::ResetPending);
    let ids = (Some("req".to_string()), Some("client".to_string()));
    let location = "https://g/v1.0/users/u/authentication/operations/op-9?aadgdc=x".to_string();
    let (done, requeue) =
        after_answer(&sending_now, &Verdict::Accepted { location: Some(location.clone()) }, ids.clone(), Some(1), t(1));
    let attempt = done.attempt.clone().unwrap();
    assert_eq!((attempt.number, attempt.phase), (1, AttemptPhase::Accepted));
    assert_eq!(attempt.request_id.as_deref(), Some("req"));
    assert_eq!(done.location.as_deref(), Some(location.as_str()));
    assert_eq!(done.operation_id.as_deref(), Some("op-9"));
    assert_eq!((mirror_reason(&done), requeue), (Reason::ResetAccepted, Some(Duration::ZERO)));

    let (blind, _) = after_answer(&sending_now, &Verdict::Accepted { location: None }, ids.clone(), Some(1), t(1));
    assert_eq!(mirror_reason(&blind), Reason::ResetAcceptedWithoutLocation);
    assert!(conditions::is_finished(&blind.conditions) && blind.completion_time.is_some());

    let throttled =
        Verdict::NotSent { reason: Reason::Throttled, message: "429".into(), wait: Some(Duration::from_secs(2)) };
    let (later, requeue) = after_answer(&sending_now, &throttled, ids.clone(), Some(1), t(1));
    let attempt = later.attempt.clone().unwrap();
    assert_eq!((attempt.phase, attempt.not_sent_count), (AttemptPhase::NotSent, 1));
    assert_eq!(attempt.retry_at, Some(Time(t(3))));
    assert_eq!(requeue, Some(Duration::from_secs(2)));
    assert_eq!(next(&later, None, None, t(3)), Next::Send { number: 1 });
    let again = sending(&later, 1, Some(1), t(3));
    assert_eq!(again.attempt.as_ref().unwrap().retry_at, None, "a new send clears the wait");
    assert_eq!(again.attempt.as_ref().unwrap().not_sent_count, 1);

    let (unknown, requeue) =
        after_answer(&sending_now, &Verdict::Unknown { message: "503".into() }, ids, Some(1), t(1));
    assert_eq!((mirror_reason(&unknown), requeue), (Reason::ResetOutcomeUnknown, None));
    assert!(!conditions::is_finished(&unknown.conditions), "blocked, not finished: a person may allow another");
    let message = &unknown.conditions[0].message;
    assert!(message.contains("pwreset.dev/allow-another-attempt=1"), "{message}");
}

#[test]
fn the_parent_mirrors_the_child_and_the_ttl_counts_from_completion() {
    assert_eq!(mirror(None).reason, Reason::ResetAccepted);
    let now = Time(t(0));
    let child = conditions::conditions_for(&Phase::new(Reason::Succeeded, "done"), Some(1), &now, &[]);
    assert_eq!(mirror(Some(&child)), Phase::new(Reason::Succeeded, "done"));
    let failed = conditions::conditions_for(&Phase::new(Reason::OperationFailed, "policy"), Some(1), &now, &[]);
    assert_eq!(mirror(Some(&failed)).reason, Reason::OperationFailed);

    let finished = with_phase(attempt(1, AttemptPhase::Accepted), &Phase::new(Reason::Succeeded, "ok"), Some(1), t(0));
    assert_eq!(next(&finished, None, None, t(5)), Next::Finished { ttl_left: None });
    assert_eq!(next(&finished, None, Some(60), t(5)), Next::Finished { ttl_left: Some(Duration::from_secs(55)) });
    assert_eq!(next(&finished, None, Some(60), t(99)), Next::Finished { ttl_left: Some(Duration::ZERO) });
    assert_eq!(
        next(&finished, Some("1"), None, t(5)),
        Next::Finished { ttl_left: None },
        "a finished reset is never re-sent"
    );
}

#[test]
fn resend_backoff_doubles_from_five_seconds_to_five_minutes() {
    let waits: Vec<u64> = (1..=9).map(|n| resend_backoff(n).as_secs()).collect();
    assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
}
