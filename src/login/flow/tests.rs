use super::*;

#[test]
fn microsofts_device_code_answer_is_read_and_gaps_are_named() {
    let body = br#"{"user_code":"YZMYLD4K","device_code":"HAQABAAEAAAD--DLA3VO7","verification_uri":"https://www.microsoft.com/link","expires_in":900,"interval":5,"message":"To sign in, use a web browser to open the page https://www.microsoft.com/link and enter the code YZMYLD4K to authenticate."}"#;
    let a = parse_authorization(body).unwrap();
    assert_eq!(
        (a.user_code.as_str(), a.expires_in, a.interval),
        ("YZMYLD4K", Duration::from_secs(900), DEFAULT_INTERVAL)
    );
    assert!(a.message.unwrap().contains("YZMYLD4K"));
    assert!(!format!("{:?}", a.device_code).contains("HAQAB"), "the device code never prints");

    /// Ok((expires_in, interval)) or Err(words of the error).
    type Expected = Result<(u64, u64), &'static str>;
    let cases: &[(&str, Expected)] = &[
        // v1 field name, string numbers, interval missing → 5 s.
        (r#"{"user_code":"U","device_code":"D","verification_url":"https://x","expires_in":"600"}"#, Ok((600, 5))),
        (
            r#"{"user_code":"U","device_code":"D","verification_uri":"https://x","expires_in":30,"interval":"2"}"#,
            Ok((30, 2)),
        ),
        (
            r#"{"user_code":"U","device_code":"D","verification_uri":"https://x","expires_in":30,"interval":0}"#,
            Ok((30, 5)),
        ),
        (r#"{"user_code":"U","verification_uri":"https://x","expires_in":30}"#, Err("no device_code")),
        (r#"{"device_code":"D","verification_uri":"https://x","expires_in":30}"#, Err("no user_code")),
        (r#"{"user_code":"U","device_code":"D","expires_in":30}"#, Err("no verification_uri")),
        (r#"{"user_code":"U","device_code":"D","verification_uri":"https://x"}"#, Err("no expires_in")),
        (r#"<html>"#, Err("not valid JSON")),
    ];
    for (body, expected) in cases {
        match (parse_authorization(body.as_bytes()), expected) {
            (Ok(a), Ok((exp, int))) => {
                assert_eq!((a.expires_in.as_secs(), a.interval.as_secs()), (*exp, *int), "{body}")
            }
            (Err(e), Err(want)) => assert!(e.contains(want), "{body}: {e}"),
            (got, want) => panic!("{body}: {got:?} vs {want:?}"),
        }
    }
}

fn kind(a: &Answer) -> &'static str {
    match a {
        Answer::Tokens { refresh_token: Some(_) } => "tokens",
        Answer::Tokens { refresh_token: None } => "tokens-without-refresh",
        Answer::Pending => "pending",
        Answer::SlowDown => "slow_down",
        Answer::Declined => "declined",
        Answer::Expired => "expired",
        Answer::BadCode => "bad_code",
        Answer::Transient { .. } => "transient",
        Answer::Refused { .. } => "refused",
    }
}

#[test]
fn each_token_answer_is_classified() {
    let err = |e: &str| format!(r#"{{"error":"{e}","error_description":"AADSTS70016: x\r\nTrace ID: t"}}"#);
    let cases: Vec<(u16, String, &str)> = vec![
        (200, r#"{"access_token":"a","refresh_token":"r"}"#.into(), "tokens"),
        (200, r#"{"access_token":"a"}"#.into(), "tokens-without-refresh"),
        (200, "{}".into(), "transient"),
        (400, err("authorization_pending"), "pending"),
        (400, err("slow_down"), "slow_down"),
        (400, err("authorization_declined"), "declined"),
        (400, err("access_denied"), "declined"),
        (400, err("expired_token"), "expired"),
        (400, err("bad_verification_code"), "bad_code"),
        (503, err("temporarily_unavailable"), "transient"),
        (429, "{}".into(), "transient"),
        (502, "<html>bad gateway</html>".into(), "transient"),
        (401, err("invalid_client"), "refused"),
        (400, err("invalid_grant"), "refused"),
        (400, "not json".into(), "refused"),
    ];
    for (status, body, expected) in cases {
        assert_eq!(kind(&classify(status, body.as_bytes(), None)), expected, "{status} {body}");
    }
    match classify(401, err("invalid_client").as_bytes(), None) {
        Answer::Refused { error, description } => {
            assert_eq!(error, "invalid_client");
            assert_eq!(description, "AADSTS70016: x", "only the first line, without trace ids");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_poll_loop_decides_from_each_answer() {
    let s = |interval: u64| PollState { interval: Duration::from_secs(interval), remaining: Duration::from_secs(60) };
    let wait = |wait: u64, interval: u64| Next::Wait { wait: Duration::from_secs(wait), state: s(interval) };
    let transient = |ra: Option<u64>| Answer::Transient { retry_after: ra.map(Duration::from_secs), why: "x".into() };
    let refused = Answer::Refused { error: "invalid_client".into(), description: "AADSTS7000218: x".into() };
    let cases: Vec<(&str, u64, Answer, Next)> = vec![
        ("pending keeps the interval", 5, Answer::Pending, wait(5, 5)),
        ("slow_down adds 5 s, for good", 5, Answer::SlowDown, wait(10, 10)),
        ("slow_down again adds 5 more", 10, Answer::SlowDown, wait(15, 15)),
        ("Retry-After longer than the interval wins", 5, transient(Some(12)), wait(12, 5)),
        ("a short Retry-After never polls sooner", 5, transient(Some(1)), wait(5, 5)),
        ("no Retry-After: the interval", 5, transient(None), wait(5, 5)),
        ("declined ends", 5, Answer::Declined, Next::Fail(Failure::Declined)),
        ("expired ends", 5, Answer::Expired, Next::Fail(Failure::Expired)),
        ("bad code ends", 5, Answer::BadCode, Next::Fail(Failure::BadCode)),
        (
            "other refusals end with their code",
            5,
            refused,
            Next::Fail(Failure::Refused { error: "invalid_client".into(), description: "AADSTS7000218: x".into() }),
        ),
        (
            "tokens without a refresh token",
            5,
            Answer::Tokens { refresh_token: None },
            Next::Fail(Failure::NoRefreshToken),
        ),
        (
            "tokens",
            5,
            Answer::Tokens { refresh_token: Some(SecretString::new("rt")) },
            Next::Done(SecretString::new("rt")),
        ),
    ];
    for (name, interval, answer, expected) in cases {
        assert_eq!(next(&s(interval), answer), expected, "{name}");
    }
}

#[test]
fn failures_have_distinct_exit_codes_and_words() {
    let all = [
        Failure::Declined,
        Failure::Expired,
        Failure::BadCode,
        Failure::Refused { error: "e".into(), description: "d".into() },
        Failure::NoRefreshToken,
    ];
    let mut codes: Vec<u8> = all.iter().map(Failure::exit_code).collect();
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), all.len());
    assert!(codes.iter().all(|c| *c > 2), "0, 1 and 2 mean success, any error, usage");
    for (failure, word) in all.iter().zip(["declined", "expired", "bad_verification_code", "(e)", "offline_access"]) {
        assert!(failure.explain().contains(word), "{failure:?}: {}", failure.explain());
    }
}

#[test]
fn progress_reads_well() {
    assert_eq!(progress(Duration::from_secs(35)), "waiting for sign-in… 35 s left");
    assert_eq!(progress(Duration::from_secs(899)), "waiting for sign-in… 14 min 59 s left");
}
