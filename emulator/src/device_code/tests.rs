use super::*;

fn request() -> NewCode {
    NewCode {
        tenant: "tid".into(),
        client_id: "app".into(),
        permissions: vec!["UserAuthenticationMethod.Read.All".into()],
        oidc: vec!["offline_access".into()],
    }
}

fn timing(auto: Option<u64>) -> Timing {
    Timing {
        expires_in: Duration::from_secs(900),
        interval: Duration::from_secs(5),
        auto_approve_after: auto.map(Duration::from_secs),
        auto_approve_user: None,
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn codes_look_like_microsofts() {
    let mut codes = DeviceCodes::default();
    let (device, user) = codes.issue(request(), &timing(None), Instant::now());
    assert_eq!(user.len(), 9);
    assert!(user.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)), "{user}");
    assert!(device.len() > 60 && device != user);
}

/// Each row: seconds since issue of a poll, and what it must answer; `approve`
/// / `decline` rows act through the admin API at that moment.
#[test]
fn a_poll_answers_by_state_and_timing() {
    enum Step {
        At(u64, &'static str),
        Approve(u64),
        Decline(u64),
    }
    use Step::{Approve, At, Decline};
    let answer = |p: &Poll| match p {
        Poll::Pending => "pending",
        Poll::SlowDown => "slow_down",
        Poll::Declined => "declined",
        Poll::Expired => "expired",
        Poll::BadCode => "bad_code",
        Poll::Redeemed => "redeemed",
        Poll::Approved { .. } => "approved",
    };
    let cases: Vec<(&str, Option<u64>, Vec<Step>)> = vec![
        (
            "pending, then approved, then spent",
            None,
            vec![At(5, "pending"), Approve(7), At(10, "approved"), At(15, "redeemed")],
        ),
        ("too fast while pending", None, vec![At(5, "pending"), At(7, "slow_down"), At(13, "pending")]),
        ("the first poll is never too fast", None, vec![At(0, "pending")]),
        ("declined", None, vec![At(5, "pending"), Decline(6), At(10, "declined")]),
        ("expired after 900 s", None, vec![At(5, "pending"), At(900, "expired"), At(905, "expired")]),
        ("approved too late is still expired", None, vec![At(899, "pending"), At(901, "expired")]),
        ("auto-approved after 3 s", Some(3), vec![At(1, "pending"), At(6, "approved")]),
    ];
    for (name, auto, steps) in cases {
        let mut codes = DeviceCodes::default();
        let t0 = Instant::now();
        let (device, user) = codes.issue(request(), &timing(auto), t0);
        for step in steps {
            match step {
                At(at, expected) => {
                    let got = codes.poll(&device, "TID", "APP", t0 + secs(at));
                    assert_eq!(answer(&got), expected, "{name}: poll at {at} s");
                }
                Approve(at) => codes.approve(&user, Some("admin-2".into()), t0 + secs(at)).map(|_| ()).unwrap(),
                Decline(at) => codes.decline(&user.to_lowercase(), t0 + secs(at)).map(|_| ()).unwrap(),
            }
        }
    }
}

#[test]
fn codes_of_other_clients_and_unknown_codes_are_bad() {
    let mut codes = DeviceCodes::default();
    let t0 = Instant::now();
    let (device, _) = codes.issue(request(), &timing(None), t0);
    assert_eq!(codes.poll(&device, "tid", "other-app", t0), Poll::BadCode);
    assert_eq!(codes.poll(&device, "other-tenant", "app", t0), Poll::BadCode);
    assert_eq!(codes.poll("emu-dc-nope", "tid", "app", t0), Poll::BadCode);
}

#[test]
fn the_approval_names_the_user_and_only_pending_codes_change() {
    let mut codes = DeviceCodes::default();
    let t0 = Instant::now();
    let (device, user) = codes.issue(request(), &timing(None), t0);
    assert_eq!(codes.approve("NOPE-NOPE", None, t0), Err(AdminRefusal::Unknown));
    let view = codes.approve(&user, Some("admin-2".into()), t0).unwrap();
    assert_eq!((view["state"].as_str(), view["userId"].as_str()), (Some("approved"), Some("admin-2")));
    assert_eq!(codes.decline(&user, t0), Err(AdminRefusal::NotPending("approved")));
    match codes.poll(&device, "tid", "app", t0 + secs(5)) {
        Poll::Approved { subject, .. } => assert_eq!(subject.as_deref(), Some("admin-2")),
        other => panic!("{other:?}"),
    }
    let (_, late) = codes.issue(request(), &timing(None), t0);
    assert_eq!(codes.approve(&late, None, t0 + secs(901)), Err(AdminRefusal::NotPending("expired")));
    // Tests find the device code in the admin view, to scan outputs for it.
    assert!(codes.list(t0).iter().any(|v| v["deviceCode"] == device.as_str()));
}

#[test]
fn long_expired_codes_are_forgotten() {
    let mut codes = DeviceCodes::default();
    let t0 = Instant::now();
    let (old, _) = codes.issue(request(), &timing(None), t0);
    codes.issue(request(), &timing(None), t0 + secs(900) + EXPIRED_RETENTION + secs(1));
    assert_eq!(codes.entries.len(), 1);
    assert_eq!(codes.poll(&old, "tid", "app", t0 + secs(2000)), Poll::BadCode);
}
