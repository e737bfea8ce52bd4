//! `PasswordReset` end to end on the real control plane with the Graph emulator: the
//! password Secret is written before Graph acts, resetPassword is sent at most once per
//! attempt (a throttled request is sent again, a request whose fate is unknown never is),
//! a person's annotation allows exactly one more attempt, and garbage collection removes
//! the child and the Secret with the parent. The password never shows up anywhere else.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use pwreset_operator::api::PasswordResetOperation;
use pwreset_operator::api_reset::{AttemptPhase, PasswordReset};
use pwreset_testkit::harness::{create_secret, start_operator};
use pwreset_testkit::leaks::assert_no_leak;
use pwreset_testkit::{Harness, eventually};
use serde_json::{Value, json};

const ENABLE: &str = "--enable-password-reset";
const WAIT: Duration = Duration::from_secs(90);

/// The Secret with a delegated token that may reset passwords (the harness's own token
/// only reads operations).
const RESET_CREDENTIALS: &str = "reset-credentials";

async fn start() -> Harness {
    start_with(&[]).await
}

async fn start_with(extra: &[&str]) -> Harness {
    let h = Harness::start(&[&[ENABLE], extra].concat()).await;
    let token = format!("rw-{}", uuid::Uuid::new_v4());
    let grant = json!({"token": token, "tenant": pwreset_testkit::harness::TENANT, "kind": "delegated",
        "scopes": ["UserAuthenticationMethod.ReadWrite.All"], "subject": "admin@contoso.com"});
    h.emulator.admin("POST", "/tokens", grant).await;
    create_secret(&h.client, &h.ns, RESET_CREDENTIALS, json!({ "token": token })).await;
    h
}

fn resets(h: &Harness) -> Api<PasswordReset> {
    Api::namespaced(h.client.clone(), &h.ns)
}

async fn create_reset(h: &Harness, name: &str, user: &str, extra: Value) -> PasswordReset {
    let mut spec = json!({
        "userId": user,
        "credentialsSecretRef": {"name": RESET_CREDENTIALS},
        "passwordSecretName": format!("{name}-password"),
        "pollInterval": "1s",
    });
    spec.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    let obj: PasswordReset = serde_json::from_value(json!({
        "apiVersion": "pwreset.dev/v1alpha1", "kind": "PasswordReset",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    resets(h).create(&PostParams::default(), &obj).await.unwrap_or_else(|e| panic!("create {name}: {e}"))
}

/// (status, reason, message) of the parent's Ready condition.
fn ready(obj: &PasswordReset) -> Option<(String, String, String)> {
    let c = obj.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn wait_reset(h: &Harness, name: &str, what: &str, check: impl Fn(&PasswordReset) -> bool) -> PasswordReset {
    let api = resets(h);
    eventually(&format!("{name}: {what}"), WAIT, || async {
        let obj = api.get(name).await.map_err(|e| e.to_string())?;
        if check(&obj) { Ok(obj) } else { Err(format!("{:?}", obj.status)) }
    })
    .await
}

async fn wait_reason(h: &Harness, name: &str, reason: &str) -> PasswordReset {
    wait_reset(h, name, &format!("Ready reason {reason}"), |o| ready(o).is_some_and(|r| r.1 == reason)).await
}

/// resetPasswords the emulator processed for `user` (whatever it answered afterwards).
async fn processed(h: &Harness, user: &str) -> u64 {
    let view = h.emulator.admin("GET", "/reset-password", json!({})).await;
    view["processed"][user].as_u64().unwrap_or(0)
}

async fn script(h: &Harness, faults: Value) {
    h.emulator.admin("PUT", "/reset-password/faults", json!({ "faults": faults })).await;
}

/// resetPassword requests in the emulator's log, for `user`.
async fn posts(h: &Harness, user: &str) -> Vec<Value> {
    h.emulator.requests().await.into_iter().filter(|e| e["kind"] == "resetPassword" && e["userId"] == user).collect()
}

async fn password_in(h: &Harness, secret: &str) -> (String, Secret) {
    let secret = Api::<Secret>::namespaced(h.client.clone(), &h.ns).get(secret).await.unwrap();
    let value = secret.data.as_ref().unwrap()["password"].0.clone();
    (String::from_utf8(value).unwrap(), secret)
}

async fn is_current_password(h: &Harness, user: &str, password: &str) -> bool {
    let answer =
        h.emulator.admin("POST", "/reset-password/verify", json!({"userId": user, "password": password})).await;
    answer["matches"] == true
}

/// Status, events and the operator's log and metrics never show `password`.
async fn assert_not_shown(h: &Harness, name: &str, password: &str) {
    let obj = resets(h).get(name).await.unwrap();
    assert_no_leak("the PasswordReset", &serde_json::to_string(&obj).unwrap(), &[password]);
    let children = Api::<PasswordResetOperation>::namespaced(h.client.clone(), &h.ns).list(&Default::default()).await;
    assert_no_leak("the children", &serde_json::to_string(&children.unwrap().items).unwrap(), &[password]);
    let events = pwreset_testkit::harness::events(&h.client, &h.ns, name).await;
    assert!(!events.is_empty(), "positive control: the PasswordReset has events");
    assert_no_leak("events", &format!("{events:?}"), &[password]);
    assert_no_leak("the operator's log", &h.operator.logs(), &[password]);
    let (_, metrics) = h.operator.http_get("/metrics").await.unwrap();
    assert_no_leak("metrics", &metrics, &[password]);
    assert_no_leak("the emulator's request log", &format!("{:?}", h.emulator.requests().await), &[password]);
}

/// Creates a second PasswordReset for another user and waits until Graph processed it: the
/// operator was running and reconciling this namespace meanwhile (the positive control of
/// every "nothing more was sent" check).
async fn control_reset(h: &Harness, name: &str) {
    let user = format!("{name}@contoso.com");
    create_reset(h, name, &user, json!({})).await;
    eventually(&format!("the control reset {name} to reach Graph"), WAIT, || async {
        let n = processed(h, &user).await;
        if n == 1 { Ok(()) } else { Err(format!("{n} processed")) }
    })
    .await;
    wait_reason(h, name, "Succeeded").await;
}

#[tokio::test]
async fn a_password_reset_stores_the_password_first_sends_once_and_is_collected_with_its_children() {
    let h = start().await;
    let user = "alice@contoso.com";
    // Graph holds the request before acting, so the test can look at what exists before
    // Graph processed anything.
    script(&h, json!([{"fault": "holdBeforeProcessing", "ms": 3000}])).await;
    create_reset(&h, "alice", user, json!({})).await;
    let sending = wait_reset(&h, "alice", "attempt 1 Sending", |o| {
        o.status.as_ref().and_then(|s| s.attempt.as_ref()).is_some_and(|a| a.phase == AttemptPhase::Sending)
    })
    .await;
    let (password, secret) = password_in(&h, "alice-password").await;
    assert_eq!(processed(&h, user).await, 0, "the Secret and the Sending record exist before Graph acted");
    assert_eq!(password.len(), 24);
    let owner = &secret.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("PasswordReset", sending.uid().unwrap().as_str(), Some(true))
    );

    let done = wait_reason(&h, "alice", "Succeeded").await;
    let status = done.status.clone().unwrap();
    assert_eq!(ready(&done).unwrap().0, "True");
    assert!(status.conditions.iter().any(|c| c.type_ == "Finished" && c.status == "True"));
    let attempt = status.attempt.clone().unwrap();
    assert_eq!((attempt.number, attempt.phase), (1, AttemptPhase::Accepted));
    assert_eq!(processed(&h, user).await, 1);
    let sent = posts(&h, user).await;
    assert_eq!(sent.len(), 1, "exactly one resetPassword: {sent:?}");
    assert_eq!(sent[0]["status"], 202);
    assert!(is_current_password(&h, user, &password).await, "the Secret holds the password Graph set");
    // Secret written before the request arrived (creationTimestamp has whole seconds).
    let created = secret.metadata.creation_timestamp.clone().unwrap().0.as_second();
    assert!(
        created * 1000 <= sent[0]["timeMs"].as_i64().unwrap(),
        "Secret created at {created}, POST at {}",
        sent[0]["timeMs"]
    );

    let child_name = status.operation_name.clone().unwrap();
    let children = Api::<PasswordResetOperation>::namespaced(h.client.clone(), &h.ns);
    let child = children.get(&child_name).await.unwrap();
    let owner = &child.owner_references()[0];
    assert_eq!((owner.uid.as_str(), owner.controller), (done.uid().unwrap().as_str(), Some(true)));
    assert_eq!(child.spec.location, status.location, "the child polls the Location Graph gave");
    assert_eq!(status.operation_id.as_deref(), child.status.as_ref().and_then(|s| s.operation_id.as_deref()));
    assert_not_shown(&h, "alice", &password).await;

    // The real garbage collector removes the child and the Secret with the parent.
    resets(&h).delete("alice", &DeleteParams::default()).await.unwrap();
    let secrets = Api::<Secret>::namespaced(h.client.clone(), &h.ns);
    eventually("the child and the password Secret to be garbage-collected", WAIT, || async {
        let child = children.get_opt(&child_name).await.map_err(|e| e.to_string())?;
        let secret = secrets.get_opt("alice-password").await.map_err(|e| e.to_string())?;
        if child.is_none() && secret.is_none() {
            Ok(())
        } else {
            Err(format!("child {}, secret {}", child.is_some(), secret.is_some()))
        }
    })
    .await;
    assert_eq!(processed(&h, user).await, 1, "deleting is not resetting");
}

#[tokio::test]
async fn a_supplied_password_is_the_one_sent_and_stored() {
    let h = start().await;
    let user = "bob@contoso.com";
    let supplied = "Supplied-Pass-4711!";
    create_secret(&h.client, &h.ns, "bob-chosen", json!({"pw": supplied})).await;
    create_reset(&h, "bob", user, json!({"passwordFrom": {"name": "bob-chosen", "key": "pw"}})).await;
    wait_reason(&h, "bob", "Succeeded").await;
    let (stored, _) = password_in(&h, "bob-password").await;
    assert_eq!(stored, supplied);
    assert!(is_current_password(&h, user, supplied).await, "Graph got the supplied password");
    assert_eq!(posts(&h, user).await.len(), 1);
    assert_not_shown(&h, "bob", supplied).await;

    // A weak supplied password: Graph refuses it (400), nothing is retried.
    create_secret(&h.client, &h.ns, "weak", json!({"password": "weakweakweak"})).await;
    create_reset(&h, "carol", "carol@contoso.com", json!({"passwordFrom": {"name": "weak"}})).await;
    let refused = wait_reason(&h, "carol", "ResetRejected").await;
    assert!(ready(&refused).unwrap().2.contains("complexity"), "{:?}", ready(&refused));
    assert_eq!(processed(&h, "carol@contoso.com").await, 0);
    assert_eq!(posts(&h, "carol@contoso.com").await.len(), 1);

    // The supplied password's Secret does not exist yet: nothing is sent until it does (the
    // reason promises it is picked up within 30 s).
    let user = "hank@contoso.com";
    create_reset(&h, "hank", user, json!({"passwordFrom": {"name": "hank-chosen"}})).await;
    let blocked = wait_reason(&h, "hank", "PasswordSourceNotFound").await;
    assert!(ready(&blocked).unwrap().2.contains("hank-chosen"), "{:?}", ready(&blocked));
    assert_eq!(posts(&h, user).await.len(), 0, "something was sent without the password");
    let chosen = "Hank-Chosen-Pass-9!";
    create_secret(&h.client, &h.ns, "hank-chosen", json!({"password": chosen})).await;
    wait_reason(&h, "hank", "Succeeded").await;
    assert_eq!(posts(&h, user).await.len(), 1);
    assert!(is_current_password(&h, user, chosen).await, "Graph got the password from the Secret made later");
}

#[tokio::test]
async fn a_throttled_reset_is_sent_again_after_retry_after_and_accepted_once() {
    let h = start().await;
    let user = "dave@contoso.com";
    script(&h, json!([{"fault": "throttle", "retryAfter": "2"}])).await;
    create_reset(&h, "dave", user, json!({})).await;
    let done = wait_reason(&h, "dave", "Succeeded").await;
    let sent = posts(&h, user).await;
    let statuses: Vec<_> = sent.iter().map(|e| e["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [429, 202], "{sent:?}");
    let gap = sent[1]["timeMs"].as_i64().unwrap() - sent[0]["timeMs"].as_i64().unwrap();
    assert!(gap >= 2000, "Retry-After: 2 honoured, the second POST came {gap} ms later");
    assert_eq!(processed(&h, user).await, 1);
    let attempt = done.status.unwrap().attempt.unwrap();
    assert_eq!((attempt.number, attempt.not_sent_count), (1, 1), "the same attempt, sent again");
    let (password, _) = password_in(&h, "dave-password").await;
    assert!(is_current_password(&h, user, &password).await);
}

#[tokio::test]
async fn an_operator_killed_mid_request_never_sends_again_until_a_person_allows_exactly_one_more() {
    let mut h = start().await;
    let user = "erin@contoso.com";
    // Graph processes the reset, then holds the answer: the operator dies without it.
    script(&h, json!([{"fault": "holdAfterProcessing", "ms": 120000}])).await;
    create_reset(&h, "erin", user, json!({})).await;
    eventually("Graph to process erin's reset", WAIT, || async {
        let n = processed(&h, user).await;
        if n == 1 { Ok(()) } else { Err(format!("{n}")) }
    })
    .await;
    let (first_password, _) = password_in(&h, "erin-password").await;
    h.operator.kill();
    h.operator = start_operator(h.cp, &h.ns, &h.emulator.url, &[ENABLE]);
    h.operator.wait_ready().await;
    let unknown = wait_reason(&h, "erin", "ResetOutcomeUnknown").await;
    let message = ready(&unknown).unwrap().2;
    assert!(message.contains("pwreset.dev/allow-another-attempt=1"), "{message}");
    assert_eq!(unknown.status.as_ref().unwrap().attempt.as_ref().unwrap().phase, AttemptPhase::OutcomeUnknown);
    assert!(is_current_password(&h, user, &first_password).await, "the Secret still has the password Graph set");

    // Another restart, and a control reset that proves the operator works: still one POST.
    h.restart_operator(&[ENABLE]).await;
    control_reset(&h, "control-1").await;
    assert_eq!(processed(&h, user).await, 1, "no second reset across restarts");
    // The held request may still be open in the emulator (it is logged when it ends).
    assert!(posts(&h, user).await.len() <= 1);
    assert_eq!(ready(&resets(&h).get("erin").await.unwrap()).unwrap().1, "ResetOutcomeUnknown");
    // What the alert PwresetPasswordResetOutcomeUnknown reads; the control reset is counted too.
    let gauge = |reason: &'static str| {
        let operator = &h.operator;
        async move { operator.metric(&format!("pwreset_password_resets{{reason=\"{reason}\"}}")).await }
    };
    assert_eq!(gauge("ResetOutcomeUnknown").await, Some(1.0), "{}", h.operator.log_tail(5));
    assert_eq!(gauge("Succeeded").await, Some(1.0), "the control reset");

    // A stale value allows nothing; the current attempt's number allows exactly one more.
    annotate(&h, "erin", Some("0")).await;
    control_reset(&h, "control-2").await;
    assert_eq!(processed(&h, user).await, 1, "an annotation for another attempt allows nothing");
    annotate(&h, "erin", Some("1")).await;
    let done = wait_reason(&h, "erin", "Succeeded").await;
    assert_eq!(processed(&h, user).await, 2, "positive control: the allowed attempt was sent");
    assert_eq!(done.status.unwrap().attempt.unwrap().number, 2);
    let (second_password, _) = password_in(&h, "erin-password").await;
    assert_ne!(second_password, first_password, "a new attempt gets a new password");
    assert!(is_current_password(&h, user, &second_password).await);

    // The same value set again (removed, then re-added) allows no more.
    annotate(&h, "erin", None).await;
    annotate(&h, "erin", Some("1")).await;
    control_reset(&h, "control-3").await;
    assert_eq!(processed(&h, user).await, 2, "the same annotation value never allows a second extra attempt");
    assert_not_shown(&h, "erin", &first_password).await;
    assert_not_shown(&h, "erin", &second_password).await;
}

#[tokio::test]
async fn an_error_or_a_dropped_connection_after_graph_acted_ends_in_outcome_unknown() {
    let h = start().await;
    script(&h, json!([{"fault": "errorAfterProcessing", "status": 503}])).await;
    create_reset(&h, "frank", "frank@contoso.com", json!({})).await;
    let unknown = wait_reason(&h, "frank", "ResetOutcomeUnknown").await;
    assert!(ready(&unknown).unwrap().2.contains("503"), "{:?}", ready(&unknown));
    script(&h, json!([{"fault": "dropAfterProcessing"}])).await;
    create_reset(&h, "grace", "grace@contoso.com", json!({})).await;
    wait_reason(&h, "grace", "ResetOutcomeUnknown").await;
    control_reset(&h, "control").await;
    for user in ["frank@contoso.com", "grace@contoso.com"] {
        assert_eq!(processed(&h, user).await, 1, "{user}: processed once, never sent again");
        assert!(posts(&h, user).await.len() <= 1, "{user}");
    }
    let (password, _) = password_in(&h, "frank-password").await;
    assert_not_shown(&h, "frank", &password).await;
}

/// Sets (Some) or removes (None) the allow-another-attempt annotation.
async fn annotate(h: &Harness, name: &str, value: Option<&str>) {
    let patch = json!({"metadata": {"annotations": {"pwreset.dev/allow-another-attempt": value}}});
    resets(h).patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

#[tokio::test]
async fn a_202_without_location_is_finished_untracked_and_a_foreign_secret_is_never_overwritten() {
    let h = start().await;
    // Graph may leave Location out: the reset happened, but there is nothing to track.
    let mut config = h.emulator.admin("GET", "/config", json!({})).await;
    config["resetPassword"]["omitLocation"] = json!(true);
    h.emulator.admin("PUT", "/config", config.clone()).await;
    create_reset(&h, "ivan", "ivan@contoso.com", json!({})).await;
    let blind = wait_reason(&h, "ivan", "ResetAcceptedWithoutLocation").await;
    let status = blind.status.clone().unwrap();
    assert!(status.conditions.iter().any(|c| c.type_ == "Finished" && c.status == "True"));
    assert!(ready(&blind).unwrap().2.contains("check the user's sign-in"), "{:?}", ready(&blind));
    assert_eq!((status.operation_name, status.location), (None, None), "no child without a Location");
    let (password, _) = password_in(&h, "ivan-password").await;
    assert!(is_current_password(&h, &user_of("ivan"), &password).await, "the Secret has the password Graph set");
    config["resetPassword"]["omitLocation"] = json!(false);
    h.emulator.admin("PUT", "/config", config).await;

    // A Secret of that name that this PasswordReset does not own stops it before anything
    // is sent; once it is gone, the reset goes ahead (positive control).
    create_secret(&h.client, &h.ns, "judy-password", json!({"password": "someone-elses-value"})).await;
    create_reset(&h, "judy", &user_of("judy"), json!({})).await;
    wait_reason(&h, "judy", "PasswordSecretConflict").await;
    control_reset(&h, "control").await;
    assert_eq!(processed(&h, &user_of("judy")).await, 0, "nothing sent while the name is taken");
    assert_eq!(password_in(&h, "judy-password").await.0, "someone-elses-value", "never overwritten");
    Api::<Secret>::namespaced(h.client.clone(), &h.ns).delete("judy-password", &DeleteParams::default()).await.unwrap();
    wait_reason(&h, "judy", "Succeeded").await;
    assert_eq!(processed(&h, &user_of("judy")).await, 1);
    assert_eq!(processed(&h, &user_of("ivan")).await, 1, "a finished reset is never sent again");
}

fn user_of(name: &str) -> String {
    format!("{name}@contoso.com")
}

#[tokio::test]
async fn a_request_that_times_out_is_never_sent_again_and_a_ttl_collects_a_finished_reset() {
    let h = start_with(&["--graph-timeout", "2s"]).await;
    // Graph acts, then answers after the operator stopped waiting.
    script(&h, json!([{"fault": "holdAfterProcessing", "ms": 8000}])).await;
    create_reset(&h, "kim", &user_of("kim"), json!({})).await;
    let unknown = wait_reason(&h, "kim", "ResetOutcomeUnknown").await;
    assert!(ready(&unknown).unwrap().2.contains("timed out"), "{:?}", ready(&unknown));

    // ttlSecondsAfterFinished deletes the finished PasswordReset; the garbage collector
    // takes its Secret and child with it. The control for "kim was not sent again" too.
    create_reset(&h, "lee", &user_of("lee"), json!({"ttlSecondsAfterFinished": 1})).await;
    let secrets = Api::<Secret>::namespaced(h.client.clone(), &h.ns);
    eventually("lee to finish and be deleted with its Secret", WAIT, || async {
        let parent = resets(&h).get_opt("lee").await.map_err(|e| e.to_string())?;
        let secret = secrets.get_opt("lee-password").await.map_err(|e| e.to_string())?;
        if parent.is_none() && secret.is_none() { Ok(()) } else { Err(format!("{:?}", parent.map(|p| p.status))) }
    })
    .await;
    assert_eq!(processed(&h, &user_of("lee")).await, 1, "positive control: lee was reset");
    assert_eq!(processed(&h, &user_of("kim")).await, 1, "kim: processed once, never sent again");
}
