//! `pwreset-operator login` as a person runs it: the binary, against the Graph emulator's
//! device-code flow and a real control plane. Approvals and refusals come through the
//! emulator's admin API, as a person's browser would give them.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event as CoreEvent, Secret};
use kube::api::{Api, ListParams};
use pwreset_testkit::harness::{condition, create, create_secret, start_operator};
use pwreset_testkit::leaks::assert_no_leak;
use pwreset_testkit::run::{Captured, Finished};
use pwreset_testkit::{ControlPlane, Emulator, eventually};
use serde_json::{Value, json};

const TENANT_ID: &str = "11111111-2222-3333-4444-555555555555";
const TENANT: &str = "contoso.onmicrosoft.com";
const CLIENT: &str = "app-public";
/// A refresh token the tests revoke, as Conditional Access or a password change would.
const REVOKED: &str = "rt-revoked-before-the-test-91c2";
const CLIENT_SECRET: &str = "confidential-app-secret-5d1e";
/// Every run of login ends well within this (the slowest, slow_down, takes about 9 s).
const DEADLINE: Duration = Duration::from_secs(60);

struct World {
    cp: &'static ControlPlane,
    client: kube::Client,
    ns: String,
    emulator: Emulator,
}

/// A namespace and an emulator whose tenant has a public client, with `device_code` as the
/// emulator's `deviceCode` settings.
async fn world(device_code: Value) -> World {
    let cp = ControlPlane::shared();
    let client = cp.client().await;
    let ns = pwreset_testkit::unique_name("login");
    pwreset_testkit::kube::create_namespace(&client, &ns).await.unwrap();
    let emulator = Emulator::start();
    let config = json!({
        "deviceCode": device_code,
        "tenants": [{"id": TENANT_ID, "aliases": [TENANT], "clients": [
            {"clientId": CLIENT, "subject": "admin-1", "refreshTokens": [REVOKED],
             "scopes": ["UserAuthenticationMethod.Read.All", "UserAuthenticationMethod.ReadWrite.All"]},
            {"clientId": "app-confidential", "clientSecret": CLIENT_SECRET, "subject": "admin-1",
             "scopes": ["UserAuthenticationMethod.Read.All"]}
        ]}],
    });
    emulator.admin("PUT", "/config", config).await;
    World { cp, client, ns, emulator }
}

impl World {
    fn login(&self, extra: &[&str]) -> Captured {
        let mut cmd = Command::new(pwreset_testkit::binary("pwreset-operator"));
        let client = if extra.contains(&"--client-secret-file") { "app-confidential" } else { CLIENT };
        cmd.args(["login", "--tenant", TENANT, "--client-id", client, "--login-url", &self.emulator.url])
            .args(["--namespace", &self.ns])
            .args(extra)
            .env("KUBECONFIG", self.cp.kubeconfig())
            .env_remove("AZURE_AUTHORITY_HOST");
        Captured::spawn(cmd)
    }

    async fn secret(&self) -> Option<Secret> {
        Api::<Secret>::namespaced(self.client.clone(), &self.ns).get_opt("graph-credentials").await.unwrap()
    }

    async fn secret_value(&self, key: &str) -> Option<String> {
        let data = self.secret().await?.data?;
        Some(String::from_utf8(data.get(key)?.0.clone()).unwrap())
    }

    /// Every device code the emulator handed out (the admin view shows them to tests).
    async fn device_codes(&self) -> Vec<String> {
        let codes = self.emulator.admin("GET", "/device-codes", Value::Null).await;
        codes.as_array().unwrap().iter().map(|c| c["deviceCode"].as_str().unwrap().to_string()).collect()
    }

    async fn token_polls(&self) -> Vec<Value> {
        self.emulator.requests().await.into_iter().filter(|r| r["kind"] == "token").collect()
    }
}

/// The user code login printed (waits for it).
async fn user_code(login: &Captured) -> String {
    eventually("login to print the user code", Duration::from_secs(20), || async {
        let out = login.stdout();
        let code = out.lines().find_map(|l| l.trim().strip_prefix("code:").map(|c| c.trim().to_string()));
        code.ok_or(format!("stdout: {out:?} stderr: {:?}", login.stderr()))
    })
    .await
}

async fn finish(login: Captured) -> Finished {
    tokio::task::spawn_blocking(move || login.finish(DEADLINE)).await.unwrap()
}

/// Nothing secret in what login printed: the given values in every form, and no emulator
/// token of any kind (they all carry a recognisable prefix).
fn assert_quiet(run: &Finished, secrets: &[&str]) {
    let output = format!("{}\n{}", run.stdout, run.stderr);
    assert_no_leak("login's output", &output, secrets);
    for prefix in ["emu-rt-", "emu-at-", "emu-dc-"] {
        assert!(!output.contains(prefix), "an emulator token ({prefix}…) appears in login's output");
    }
}

#[tokio::test]
async fn an_approved_sign_in_lets_the_operator_finish_a_reset() {
    let w = world(json!({"intervalSeconds": 1})).await;
    let login = w.login(&[]);
    let code = user_code(&login).await;
    let out = login.stdout();
    assert!(out.contains("https://microsoft.com/devicelogin"), "{out}");
    assert!(out.contains(&format!("enter the code {code} to authenticate")), "Microsoft's message is shown: {out}");
    w.emulator.admin("POST", &format!("/device-codes/{code}/approve"), json!({"userId": "admin-7"})).await;
    let run = finish(login).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("waiting for sign-in…") && run.stderr.contains(" s left"), "{}", run.stderr);
    assert!(run.stdout.contains(&format!("Secret {}/graph-credentials (created)", w.ns)), "{}", run.stdout);

    let signed_in = w.secret_value("refreshToken").await.expect("refreshToken written");
    assert!(signed_in.starts_with("emu-rt-"), "the emulator's refresh token is stored");
    assert_eq!(w.secret_value("tenantId").await.as_deref(), Some(TENANT));
    assert_eq!(w.secret_value("clientId").await.as_deref(), Some(CLIENT));
    assert_eq!(w.secret_value("scope").await, None, "the default scope is the operator's default too");

    let operator = start_operator(w.cp, &w.ns, &w.emulator.url, &["--login-url", &w.emulator.url]);
    operator.wait_ready().await;
    w.emulator.add_operation(json!({"userId": "bob@contoso.com", "id": "op-login", "status": "succeeded"})).await;
    create(
        &w.client,
        &w.ns,
        "reset-bob",
        json!({"userId": "bob@contoso.com", "operationId": "op-login",
        "credentialsSecretRef": {"name": "graph-credentials"}}),
    )
    .await;
    let api = Api::<pwreset_operator::api::PasswordResetOperation>::namespaced(w.client.clone(), &w.ns);
    eventually("reset-bob Ready=True with the signed-in credentials", Duration::from_secs(60), || async {
        let obj = api.get("reset-bob").await.map_err(|e| e.to_string())?;
        let ready = condition(&obj, "Ready");
        let succeeded = obj.status.as_ref().and_then(|s| s.status.as_deref()) == Some("succeeded");
        if succeeded && ready.as_ref().is_some_and(|r| r.0 == "True") {
            Ok(())
        } else {
            Err(format!("{:?}", obj.status))
        }
    })
    .await;
    let rotated = w.secret_value("refreshToken").await.unwrap();
    assert_ne!(rotated, signed_in, "the operator redeemed the signed-in token and stored the next one");

    let device_codes = w.device_codes().await;
    let mut secrets: Vec<&str> = vec![&signed_in, &rotated];
    secrets.extend(device_codes.iter().map(String::as_str));
    assert_quiet(&run, &secrets);
    let events = Api::<CoreEvent>::namespaced(w.client.clone(), &w.ns).list(&ListParams::default()).await.unwrap();
    let mut seen = operator.logs();
    seen.push_str(&serde_json::to_string(&events.items).unwrap());
    assert_no_leak("operator logs and events", &seen, &secrets);
    assert!(!seen.contains("emu-at-"), "an access token appears in operator logs or events");
}

#[tokio::test]
async fn a_declined_sign_in_writes_nothing() {
    let w = world(json!({"intervalSeconds": 1})).await;
    let login = w.login(&[]);
    let code = user_code(&login).await;
    w.emulator.admin("POST", &format!("/device-codes/{code}/decline"), Value::Null).await;
    let run = finish(login).await;
    assert_eq!(run.code, Some(3), "declined has its own exit code: {run:?}");
    assert!(
        run.stderr.contains("the sign-in was declined (authorization_declined): nothing was written"),
        "{}",
        run.stderr
    );
    assert!(w.secret().await.is_none(), "no Secret after a declined sign-in");
    let codes = w.device_codes().await;
    assert_quiet(&run, &codes.iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_expired_code_writes_nothing() {
    let w = world(json!({"intervalSeconds": 1, "expiresInSeconds": 3})).await;
    let run = finish(w.login(&[])).await;
    assert_eq!(run.code, Some(4), "expired has its own exit code: {run:?}");
    assert!(run.stderr.contains("the code expired before anyone signed in (expired_token)"), "{}", run.stderr);
    assert!(run.took < Duration::from_secs(15), "gave up soon after the expiry: {:?}", run.took);
    assert!(w.secret().await.is_none());
    // The emulator said so: the last poll was refused after the 3 s.
    let polls = w.token_polls().await;
    assert!(polls.len() >= 2 && polls.iter().all(|p| p["status"] == 400), "{polls:#?}");
}

#[tokio::test]
async fn polling_too_fast_makes_login_slow_down() {
    // The emulator announces 1 s but enforces 3 s (a named deviation): login's second poll
    // comes too soon, and from then on it must wait 1 + 5 = 6 s.
    let w = world(json!({"intervalSeconds": 3, "announcedIntervalSeconds": 1})).await;
    let login = w.login(&[]);
    let code = user_code(&login).await;
    eventually("login to report slow_down", Duration::from_secs(20), || async {
        let err = login.stderr();
        if err.contains("slow_down") { Ok(()) } else { Err(err) }
    })
    .await;
    assert!(login.stderr().contains("every 6 s from now on"), "{}", login.stderr());
    w.emulator.admin("POST", &format!("/device-codes/{code}/approve"), Value::Null).await;
    let run = finish(login).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let times: Vec<i64> = w.token_polls().await.iter().map(|p| p["timeMs"].as_i64().unwrap()).collect();
    assert_eq!(times.len(), 3, "pending, slow_down, then the approved poll: {times:?}");
    assert!(times[1] - times[0] < 3000, "the second poll came too soon (that was the point): {times:?}");
    assert!(times[2] - times[1] >= 5900, "after slow_down the interval grew by 5 s: {times:?}");
    let status = w.emulator.admin("GET", "/device-codes", Value::Null).await;
    assert_eq!(status[0]["slowDowns"], 1, "{status}");
    assert_quiet(&run, &[&w.secret_value("refreshToken").await.unwrap()]);
}

#[tokio::test]
async fn a_second_login_replaces_the_token_and_keeps_the_rest() {
    // Approved by the emulator itself after 1 s (the demo's option).
    let w = world(json!({"intervalSeconds": 1, "autoApproveAfterSeconds": 1})).await;
    create_secret(
        &w.client,
        &w.ns,
        "graph-credentials",
        json!({
        "tenantId": TENANT, "clientId": CLIENT, "refreshToken": "rt-from-an-old-sign-in",
        "token": "a-static-token-that-would-win", "notes": "kept by login"}),
    )
    .await;
    let secrets = Api::<Secret>::namespaced(w.client.clone(), &w.ns);
    let label = json!({"metadata": {"labels": {"team": "a"}, "annotations": {"owner": "ops"}}});
    secrets.patch("graph-credentials", &Default::default(), &kube::api::Patch::Merge(&label)).await.unwrap();

    let first = finish(w.login(&[])).await;
    assert_eq!(first.code, Some(0), "{first:?}");
    assert!(
        first.stdout.contains("updated; removed token (they would override the refresh token)"),
        "{}",
        first.stdout
    );
    let token1 = w.secret_value("refreshToken").await.unwrap();
    assert!(token1.starts_with("emu-rt-"));
    assert_eq!(w.secret_value("token").await, None, "a static token would shadow the refresh token");

    let second = finish(w.login(&[])).await;
    assert_eq!(second.code, Some(0), "{second:?}");
    assert!(second.stdout.contains("updated; other keys kept"), "{}", second.stdout);
    let token2 = w.secret_value("refreshToken").await.unwrap();
    assert_ne!(token2, token1, "the second sign-in's token replaced the first");
    assert_eq!(w.secret_value("notes").await.as_deref(), Some("kept by login"));
    let meta = w.secret().await.unwrap().metadata;
    assert_eq!(meta.labels.unwrap()["team"], "a");
    assert_eq!(meta.annotations.unwrap()["owner"], "ops");
    let codes = w.device_codes().await;
    let mut all: Vec<&str> = vec![&token1, &token2];
    all.extend(codes.iter().map(String::as_str));
    assert_quiet(&first, &all);
    assert_quiet(&second, &all);
}

#[tokio::test]
async fn a_dry_run_prints_placeholders_and_signs_nobody_in() {
    let w = world(json!({})).await;
    let run = finish(w.login(&["--dry-run", "--secret-name", "team-creds"])).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let secret: Secret = serde_yaml::from_str(&run.stdout).expect("the dry run prints a Secret");
    assert_eq!(secret.metadata.name.as_deref(), Some("team-creds"));
    assert_eq!(secret.metadata.namespace.as_deref(), Some(w.ns.as_str()));
    let data = secret.string_data.unwrap();
    assert_eq!(data["tenantId"], TENANT);
    assert!(data["refreshToken"].starts_with('<'), "a placeholder, not a value: {}", data["refreshToken"]);
    assert!(w.emulator.requests().await.is_empty(), "a dry run sends nothing to the identity platform");
    assert!(Api::<Secret>::namespaced(w.client.clone(), &w.ns).get_opt("team-creds").await.unwrap().is_none());
    assert_quiet(&run, &[]);
}

#[tokio::test]
async fn a_confidential_app_signs_in_with_its_secret_and_stores_it() {
    let w = world(json!({"intervalSeconds": 1, "autoApproveAfterSeconds": 1})).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("client-secret");
    std::fs::write(&file, format!("{CLIENT_SECRET}\n")).unwrap();
    let run = finish(w.login(&["--client-secret-file", file.to_str().unwrap()])).await;
    assert_eq!(run.code, Some(0), "the emulator refuses a confidential client without its secret: {run:?}");
    assert_eq!(w.secret_value("clientSecret").await.as_deref(), Some(CLIENT_SECRET));
    assert_eq!(w.secret_value("clientId").await.as_deref(), Some("app-confidential"));
    let token = w.secret_value("refreshToken").await.unwrap();
    assert_quiet(&run, &[CLIENT_SECRET, &token]);
}

#[tokio::test]
async fn a_new_sign_in_unblocks_resources_waiting_for_one() {
    let w = world(json!({"intervalSeconds": 1, "autoApproveAfterSeconds": 1})).await;
    w.emulator.admin("POST", "/refresh-tokens/revoke", json!({"token": REVOKED})).await;
    create_secret(
        &w.client,
        &w.ns,
        "graph-credentials",
        json!({"tenantId": TENANT, "clientId": CLIENT, "refreshToken": REVOKED}),
    )
    .await;
    let operator = start_operator(w.cp, &w.ns, &w.emulator.url, &["--login-url", &w.emulator.url]);
    operator.wait_ready().await;
    w.emulator.add_operation(json!({"userId": "bob@contoso.com", "id": "op-blocked", "status": "succeeded"})).await;
    create(
        &w.client,
        &w.ns,
        "reset-bob",
        json!({"userId": "bob@contoso.com", "operationId": "op-blocked",
        "credentialsSecretRef": {"name": "graph-credentials"}}),
    )
    .await;
    let api = Api::<pwreset_operator::api::PasswordResetOperation>::namespaced(w.client.clone(), &w.ns);
    let wait_for = |what: &'static str, check: fn(&pwreset_operator::api::PasswordResetOperation) -> bool| {
        let api = api.clone();
        async move {
            eventually(what, Duration::from_secs(60), || async {
                let obj = api.get("reset-bob").await.map_err(|e| e.to_string())?;
                if check(&obj) { Ok(()) } else { Err(format!("{:?}", obj.status)) }
            })
            .await
        }
    };
    wait_for("Stalled with ReauthenticationRequired", |o| {
        condition(o, "Stalled")
            .is_some_and(|c| c.1 == "ReauthenticationRequired" && c.2.contains("pwreset-operator login"))
    })
    .await;

    let run = finish(w.login(&[])).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    wait_for("Ready=True after the new sign-in", |o| condition(o, "Ready").is_some_and(|c| c.0 == "True")).await;
    let token = w.secret_value("refreshToken").await.unwrap();
    assert_quiet(&run, &[REVOKED, &token]);
    assert_no_leak("operator logs", &operator.logs(), &[&token]);
}
