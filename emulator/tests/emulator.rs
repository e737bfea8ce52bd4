//! Starts the real `graph-emulator` binary on a free port and talks to it
//! over HTTP, the way the operator and the e2e tests do.

use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const PASSWORD_METHOD: &str = "28c10230-6103-485e-b985-444c60001490";

/// A tenant with one client per credential kind, and two static tokens.
const CONFIG: &str = r#"
tenants:
  - id: 11111111-2222-3333-4444-555555555555
    aliases: [contoso.onmicrosoft.com]
    clients:
      - clientId: headless
        refreshTokens: [rt-initial]
        subject: admin-1
        scopes: [UserAuthenticationMethod.ReadWrite.All]
      - clientId: daemon
        clientSecret: daemon-secret
        scopes: [UserAuthenticationMethod.Read.All]
      - clientId: wif
        federatedAssertion: header.payload.signature
      - clientId: anywif
        acceptAnyAssertion: true
tokens:
  - token: static-rw
    tenant: 11111111-2222-3333-4444-555555555555
    subject: admin-1
    scopes: [UserAuthenticationMethod.ReadWrite.All]
  - token: static-read
    tenant: 11111111-2222-3333-4444-555555555555
    scopes: [https://graph.microsoft.com/UserAuthenticationMethod.Read.All]
  - token: static-expired
    tenant: 11111111-2222-3333-4444-555555555555
    expiresAt: "2020-01-01T00:00:00Z"
"#;

struct Emulator {
    child: Child,
    base: String,
    http: reqwest::Client,
    _config: tempfile::NamedTempFile,
}

impl Emulator {
    async fn start() -> Emulator {
        Self::start_with(CONFIG).await
    }

    async fn start_with(config_yaml: &str) -> Emulator {
        let config = tempfile::Builder::new().suffix(".yaml").tempfile().expect("temp config");
        std::fs::write(config.path(), config_yaml).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_graph-emulator"))
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(config.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn graph-emulator");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        timeout(Duration::from_secs(10), BufReader::new(stdout).read_line(&mut line))
            .await
            .expect("emulator announces itself within 10 s")
            .expect("read stdout");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        // reqwest built with `rustls-no-provider` refuses to build a client,
        // even for plain HTTP, until a crypto provider is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().no_proxy().build().expect("http client");
        Emulator { child, base, http, _config: config }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(&format!("/_emulator{path}")));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("admin request");
        let status = resp.status();
        let text = resp.text().await.expect("admin body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("admin JSON: {text}"))
        };
        (status, value)
    }

    async fn token(&self, tenant: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.url(&format!("/{tenant}/oauth2/v2.0/token")))
            .form(form)
            .send()
            .await
            .expect("token request");
        let status = resp.status();
        (status, resp.json().await.expect("token JSON"))
    }

    async fn get(&self, url: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(url);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("GET")
    }

    fn op_url(&self, user: &str, id: &str) -> String {
        self.url(&format!("/v1.0/users/{user}/authentication/operations/{id}"))
    }

    async fn create_op(&self, spec: Value) -> Value {
        let (status, view) = self.admin(Method::POST, "/operations", Some(spec)).await;
        assert_eq!(status, StatusCode::CREATED, "{view}");
        view
    }

    async fn log(&self, since: u64) -> Vec<Value> {
        let (status, body) = self.admin(Method::GET, &format!("/requests?since={since}"), None).await;
        assert_eq!(status, StatusCode::OK);
        body["entries"].as_array().expect("entries").clone()
    }
}

async fn json_of(resp: reqwest::Response) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body: {text:?}"));
    (status, headers, value)
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("missing header {name}"))
}

const DELEGATED_SCOPE: &str = "https://graph.microsoft.com/UserAuthenticationMethod.ReadWrite.All offline_access";

async fn refresh(emu: &Emulator, token: &str) -> (StatusCode, Value) {
    emu.token(
        "contoso.onmicrosoft.com",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "headless"),
            ("refresh_token", token),
            ("scope", DELEGATED_SCOPE),
        ],
    )
    .await
}

#[tokio::test]
async fn refresh_grant_rotates_and_revocation_sticks() {
    let emu = Emulator::start().await;
    let (status, first) = refresh(&emu, "rt-initial").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 3599);
    assert_eq!(first["ext_expires_in"], 3599);
    assert_eq!(first["scope"], DELEGATED_SCOPE);
    let rotated = first["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rotated, "rt-initial");

    // As Entra does, the used token stays valid until it expires or is revoked.
    let (status, again) = refresh(&emu, "rt-initial").await;
    assert_eq!(status, StatusCode::OK, "{again}");

    // The new one works and yields a delegated token that reads operations.
    let (status, second) = refresh(&emu, &rotated).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let access = second["access_token"].as_str().unwrap();
    let newest = second["refresh_token"].as_str().unwrap().to_owned();
    emu.create_op(json!({"userId": "u1", "id": "op1", "status": "running"})).await;
    let resp = emu.get(&emu.op_url("u1", "op1"), Some(access)).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Revoked through the admin API: next use fails.
    let (status, _) = emu.admin(Method::POST, "/refresh-tokens/revoke", Some(json!({"token": newest}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = refresh(&emu, &newest).await;
    assert_eq!((status, err["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert_eq!(err["error_codes"], json!([50173]));

    // A client that now needs an interactive sign-in.
    let (status, fresh) = {
        let (s, _) = emu
            .admin(
                Method::POST,
                "/tenants",
                Some(json!({"id": "t2", "clients": [{"clientId": "c", "refreshTokens": ["rt-t2"]}]})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, v) =
            emu.admin(Method::PATCH, "/tenants/t2/clients/c", Some(json!({"interactionRequired": true}))).await;
        (s, v)
    };
    assert_eq!(status, StatusCode::OK, "{fresh}");
    let (status, err) = emu
        .token(
            "t2",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "c"),
                ("refresh_token", "rt-t2"),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_eq!((status, err["error"].as_str()), (StatusCode::BAD_REQUEST, Some("interaction_required")));

    // Unknown tenant and unknown client.
    let (status, err) = emu.token("nowhere", &[("grant_type", "client_credentials"), ("client_id", "x")]).await;
    assert_eq!((status, err["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    let (_, err) = emu.token(TENANT, &[("grant_type", "client_credentials"), ("client_id", "x")]).await;
    assert_eq!(err["error"], "unauthorized_client");

    // The log names grant types but never carries tokens or secrets.
    let log = serde_json::to_string(&emu.log(0).await).unwrap();
    assert!(log.contains(r#""grantType":"refresh_token""#));
    for secret in ["rt-initial", rotated.as_str(), newest.as_str(), access] {
        assert!(!log.contains(secret), "log leaks a token");
    }
}

#[tokio::test]
async fn single_use_refresh_tokens_are_an_opt_in() {
    let emu = Emulator::start_with(&format!("refreshTokenSingleUse: true\n{CONFIG}")).await;
    let (status, first) = refresh(&emu, "rt-initial").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let rotated = first["refresh_token"].as_str().unwrap().to_owned();

    // The used token is dead (overlap 0 s by default).
    let (status, err) = refresh(&emu, "rt-initial").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"], "invalid_grant");
    assert!(err["error_description"].as_str().unwrap().starts_with("AADSTS70000:"));
    assert_eq!(err["error_codes"], json!([70000]));
    for field in ["timestamp", "trace_id", "correlation_id"] {
        assert!(err[field].is_string(), "{field} in {err}");
    }
    let (status, _) = refresh(&emu, &rotated).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn client_credentials_with_secret_and_assertions() {
    let emu = Emulator::start().await;
    let dot_default = "https://graph.microsoft.com/.default";
    let (status, body) = emu
        .token(
            TENANT,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "daemon"),
                ("client_secret", "daemon-secret"),
                ("scope", dot_default),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("refresh_token").is_none());
    let app_token = body["access_token"].as_str().unwrap().to_owned();
    assert!(!app_token.contains("daemon-secret"));

    // Graph documents application permissions as not supported: 403 on the
    // GET and on resetPassword.
    emu.create_op(json!({"userId": "u1", "id": "op1"})).await;
    let (status, _, err) = json_of(emu.get(&emu.op_url("u1", "op1"), Some(&app_token)).await).await;
    assert_eq!((status, err["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("Authorization_RequestDenied")));
    assert!(err["error"]["message"].as_str().unwrap().contains("Application permissions are not supported"));
    let resp = emu
        .http
        .post(emu.url(&format!("/v1.0/users/u1/authentication/methods/{PASSWORD_METHOD}/resetPassword")))
        .bearer_auth(&app_token)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let (status, _, err) = json_of(resp).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["error"]["code"], "Authorization_RequestDenied");

    let (status, err) = emu
        .token(
            TENANT,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "daemon"),
                ("client_secret", "wrong"),
                ("scope", dot_default),
            ],
        )
        .await;
    assert_eq!((status, err["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));

    let assertion = |client: &'static str, assertion: &'static str| {
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion),
            ("scope", dot_default),
        ]
    };
    let (status, body) = emu.token(TENANT, &assertion("wif", "header.payload.signature")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = emu.token(TENANT, &assertion("wif", "other.jwt.value")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = emu.token(TENANT, &assertion("anywif", "eyJh.eyJz.c2ln")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = emu.token(TENANT, &assertion("anywif", "not-a-jwt")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Another cloud's scope.
    let (status, err) = emu
        .token(
            TENANT,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "daemon"),
                ("client_secret", "daemon-secret"),
                ("scope", "https://graph.microsoft.us/.default"),
            ],
        )
        .await;
    assert_eq!((status, err["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")));
}

#[tokio::test]
async fn app_only_tokens_read_operations_with_the_allow_app_only_opt_in() {
    let emu = Emulator::start_with(&format!("allowAppOnly: true\n{CONFIG}")).await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "daemon"),
        ("client_secret", "daemon-secret"),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    let (status, body) = emu.token(TENANT, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let app_token = body["access_token"].as_str().unwrap().to_owned();
    emu.create_op(json!({"userId": "u1", "id": "op1", "status": "running"})).await;
    let resp = emu.get(&emu.op_url("u1", "op1"), Some(&app_token)).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // A tenant's own setting wins over the global one.
    let tenant = json!({"id": "strict", "allowAppOnly": false,
        "clients": [{"clientId": "d2", "clientSecret": "s2"}]});
    let (status, _) = emu.admin(Method::POST, "/tenants", Some(tenant)).await;
    assert_eq!(status, StatusCode::CREATED);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "d2"),
        ("client_secret", "s2"),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    let (_, body) = emu.token("strict", &form).await;
    let strict_token = body["access_token"].as_str().unwrap().to_owned();
    emu.create_op(json!({"userId": "u1", "id": "op2", "tenant": "strict"})).await;
    let resp = emu.get(&emu.op_url("u1", "op2"), Some(&strict_token)).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn graph_calls_need_a_valid_bearer() {
    let emu = Emulator::start().await;
    emu.create_op(json!({"userId": "u1", "id": "op1"})).await;
    let url = emu.op_url("u1", "op1");

    let resp = emu.http.get(&url).header("client-request-id", "my-correlation-id").send().await.unwrap();
    let (status, headers, body) = json_of(resp).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert!(header(&headers, "www-authenticate").starts_with("Bearer "));
    assert_eq!(header(&headers, "client-request-id"), "my-correlation-id");
    let request_id = header(&headers, "request-id");
    assert_eq!(body["error"]["innerError"]["request-id"], request_id);
    assert_eq!(body["error"]["innerError"]["client-request-id"], "my-correlation-id");
    // innerError.date carries no time zone.
    let date = body["error"]["innerError"]["date"].as_str().unwrap();
    assert_eq!(date.len(), "2026-01-02T03:04:05".len(), "{date}");
    assert!(serde_json::from_str::<Value>(header(&headers, "x-ms-ags-diagnostic")).is_ok());
    assert!(header(&headers, "date").ends_with("GMT"));

    for (token, message) in [
        ("unknown", "Access token validation failure."),
        ("static-expired", "Lifetime validation failed, the token is expired."),
    ] {
        let (status, _, body) = json_of(emu.get(&url, Some(token)).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["message"], message);
    }

    // Without client-request-id Graph sends its own.
    let resp = emu.get(&url, Some("static-read")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(!header(resp.headers(), "client-request-id").is_empty());

    let (status, _, body) = json_of(emu.get(&emu.op_url("u1", "nope"), Some("static-read")).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "itemNotFound");
    let (status, _, body) = json_of(emu.get(&emu.url("/v1.0/me/foo"), Some("static-read")).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "BadRequest");
}

#[tokio::test]
async fn operation_progresses_over_time() {
    let emu = Emulator::start().await;
    let view = emu
        .create_op(json!({
            "userId": "alice@contoso.com",
            "id": "2d497bb-57bd-47a6-8749-5ccd0869f2bd",
            "steps": [
                {"status": "running", "afterMs": 200},
                {"status": "succeeded", "afterMs": 600, "statusDetail": "done"}
            ],
            "extraFields": {"percentageComplete": 100, "somethingNew": {"a": 1}}
        }))
        .await;
    let location = view["location"].as_str().unwrap().to_owned();
    assert!(location.ends_with("?aadgdc=DUB02P&aadgsu=ssprprod-a"), "{location}");
    let created: jiff::Timestamp = view["createdAt"].as_str().unwrap().parse().unwrap();

    // Poll as a client would, until terminal or the deadline.
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let last = loop {
        let (status, headers, body) = json_of(emu.get(&location, Some("static-read")).await).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(header(&headers, "content-type").starts_with("application/json"));
        let status = body["status"].as_str().unwrap().to_owned();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if status == "succeeded" {
            break body;
        }
        assert!(Instant::now() < deadline, "no success in time: {seen:?}");
        sleep(Duration::from_millis(50)).await;
    };
    let order = ["notStarted", "running", "succeeded"];
    let positions: Vec<usize> = seen.iter().map(|s| order.iter().position(|o| o == s).expect("known status")).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(last["id"], "2d497bb-57bd-47a6-8749-5ccd0869f2bd");
    assert_eq!(last["statusDetail"], "done");
    assert_eq!(last["percentageComplete"], 100);
    assert_eq!(
        last["@odata.context"],
        "https://graph.microsoft.com/v1.0/$metadata#users('alice@contoso.com')/authentication/operations/$entity"
    );
    let created_text = last["createdDateTime"].as_str().unwrap();
    assert_eq!(created_text.parse::<jiff::Timestamp>().unwrap(), created);
    assert_eq!(created_text.split('.').nth(1).unwrap().len(), 8, "7 digits + Z");
    let last_action: jiff::Timestamp = last["lastActionDateTime"].as_str().unwrap().parse().unwrap();
    assert_eq!((last_action - created).get_milliseconds(), 600);

    // Setting the state through the admin API shows on the next GET.
    let path = "/operations/alice@contoso.com/2d497bb-57bd-47a6-8749-5ccd0869f2bd";
    let (status, view) =
        emu.admin(Method::PATCH, path, Some(json!({"status": "failed", "statusDetail": "policy"}))).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let (_, _, body) = json_of(emu.get(&location, Some("static-read")).await).await;
    assert_eq!((body["status"].as_str(), body["statusDetail"].as_str()), (Some("failed"), Some("policy")));

    let (status, _) = emu.admin(Method::DELETE, path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let resp = emu.get(&location, Some("static-read")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn scripted_429_queue_then_normal_answers() {
    let emu = Emulator::start().await;
    let view = emu
        .create_op(json!({
            "userId": "u1", "id": "op1", "status": "succeeded",
            "respond": [
                {"status": 429, "retryAfter": "2.128"},
                {"status": 503, "retryAfter": 1},
                {"status": 200, "body": "{\"id\":\"op1\",\"status\":\"running\",\"weird\":"}
            ]
        }))
        .await;
    let url = view["location"].as_str().unwrap();
    let (status, headers, body) = json_of(emu.get(url, Some("static-read")).await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&headers, "retry-after"), "2.128");
    assert_eq!(body["error"]["code"], "TooManyRequests");
    let (status, headers, body) = json_of(emu.get(url, Some("static-read")).await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&headers, "retry-after"), "1");
    assert_eq!(body["error"]["code"], "serviceNotAvailable");
    let resp = emu.get(url, Some("static-read")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(serde_json::from_str::<Value>(&resp.text().await.unwrap()).is_err());
    let (status, _, body) = json_of(emu.get(url, Some("static-read")).await).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("succeeded")));

    // The log shows what the client met, Retry-After included.
    let log = emu.log(0).await;
    let statuses: Vec<u64> = log.iter().map(|e| e["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, vec![429, 503, 200, 200]);
    assert_eq!(log[0]["retryAfter"], "2.128");
    assert_eq!(log[0]["query"], "aadgdc=DUB02P&aadgsu=ssprprod-a");
}

#[tokio::test]
async fn reset_password_returns_a_pollable_location() {
    let emu = Emulator::start().await;
    let (status, tokens) = emu
        .token(
            TENANT,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "headless"),
                ("refresh_token", "rt-initial"),
                ("scope", "UserAuthenticationMethod.ReadWrite.All offline_access"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let reset_url = |user: &str, method: &str| {
        emu.url(&format!("/v1.0/users/{user}/authentication/methods/{method}/resetPassword"))
    };

    // Without `Content-Type: application/json` Graph cannot read the body: 400.
    let resp =
        emu.http.post(reset_url("bob%40contoso.com", PASSWORD_METHOD)).bearer_auth(&access).send().await.unwrap();
    let (status, _, body) = json_of(resp).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("BadRequest")), "{body}");

    // Generated password: returned once.
    let resp = emu
        .http
        .post(reset_url("bob%40contoso.com", PASSWORD_METHOD))
        .bearer_auth(&access)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let (status, headers, body) = json_of(resp).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let generated = body["newPassword"].as_str().expect("generated password").to_owned();
    assert!(generated.len() >= 12);
    assert!(body["@odata.context"].as_str().unwrap().ends_with("#microsoft.graph.passwordResetResponse"));
    let location = header(&headers, "location").to_owned();
    assert!(
        location.starts_with(&format!("{}/v1.0/users/bob@contoso.com/authentication/operations/", emu.base)),
        "{location}"
    );
    assert!(location.ends_with("?aadgdc=DUB02P&aadgsu=ssprprod-a"), "{location}");

    // The Location URL, polled as given, works (default progression).
    let (status, _, op) = json_of(emu.get(&location, Some(&access)).await).await;
    assert_eq!(status, StatusCode::OK, "{op}");
    assert_eq!(op["status"], "notStarted");
    assert!(location.contains(op["id"].as_str().unwrap()));

    // Caller-chosen password: not echoed.
    let resp = emu
        .http
        .post(reset_url("carol", PASSWORD_METHOD))
        .bearer_auth(&access)
        .json(&json!({"newPassword": "Chosen-Pa55word!"}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_of(resp).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["newPassword"], Value::Null);

    let refused = |user: &'static str, method: &'static str, token: &'static str, body: &'static str| {
        let request = emu
            .http
            .post(reset_url(user, method))
            .bearer_auth(if token.is_empty() { access.as_str() } else { token })
            .header("content-type", "application/json")
            .body(body);
        async move { json_of(request.send().await.unwrap()).await }
    };
    let (status, _, body) = refused("carol", "00000000-0000-0000-0000-000000000000", "", "").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("itemNotFound")));
    let (status, _, body) = refused("carol", PASSWORD_METHOD, "", "{not json").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("BadRequest")));
    // Read.All is not enough; the caller's own account is refused.
    let (status, _, _) = refused("carol", PASSWORD_METHOD, "static-read", "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, body) = refused("admin-1", PASSWORD_METHOD, "static-rw", "").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("Authorization_RequestDenied")));

    let log = emu.log(0).await;
    let resets: Vec<&Value> = log.iter().filter(|e| e["kind"] == "resetPassword" && e["status"] == 202).collect();
    assert_eq!(resets[0]["userId"], "bob@contoso.com");
    assert_eq!(
        resets[0]["path"],
        format!("/v1.0/users/bob%40contoso.com/authentication/methods/{PASSWORD_METHOD}/resetPassword")
    );
    assert!(resets[0]["operationId"].is_string());
    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains("Chosen-Pa55word!"));
    assert!(!text.contains(&generated));
}

#[tokio::test]
async fn timestamp_styles() {
    let emu = Emulator::start().await;
    let created = "2026-03-19T12:01:03.4567891Z";
    for (style, created_text) in [
        ("iso7", json!("2026-03-19T12:01:03.4567891Z")),
        ("millis", json!("2026-03-19T12:01:03.456Z")),
        ("offset", json!("2026-03-19T12:01:03.4567891+00:00")),
        ("docsMalformed", json!("2026-03-19T12-01-03.45Z")),
        ("null", Value::Null),
    ] {
        emu.create_op(json!({
            "userId": "u1", "id": style, "createdAt": created,
            "timestampStyle": style, "status": "succeeded", "resourceLocation": null
        }))
        .await;
        let (status, _, body) = json_of(emu.get(&emu.op_url("u1", style), Some("static-read")).await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["createdDateTime"], created_text, "{style}");
        assert_eq!(body["lastActionDateTime"], created_text, "{style}");
        assert_eq!(body["resourceLocation"], Value::Null);
    }
}

#[tokio::test]
async fn request_log_and_stats() {
    let emu = Emulator::start().await;
    emu.create_op(json!({"userId": "alice@contoso.com", "id": "op1"})).await;
    let resp = emu
        .http
        .get(emu.url("/v1.0/users/alice%40contoso.com/authentication/operations/op1?aadgdc=X&aadgsu=Y"))
        .bearer_auth("static-read")
        .header("client-request-id", "crid-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let _ = emu.get(&emu.op_url("u9", "missing"), Some("static-read")).await;

    let log = emu.log(0).await;
    assert_eq!(log.len(), 2, "admin calls are not logged: {log:?}");
    let e = &log[0];
    assert_eq!(e["seq"], 1);
    assert_eq!(e["method"], "GET");
    assert_eq!(e["path"], "/v1.0/users/alice%40contoso.com/authentication/operations/op1");
    assert_eq!(e["query"], "aadgdc=X&aadgsu=Y");
    assert_eq!(e["status"], 200);
    assert_eq!(e["kind"], "operationGet");
    assert_eq!(e["userId"], "alice@contoso.com");
    assert_eq!(e["operationId"], "op1");
    assert_eq!(e["tenant"], TENANT);
    assert_eq!(e["clientRequestId"], "crid-1");
    assert!(e["timeMs"].as_i64().unwrap() <= before);
    assert_eq!(log[1]["status"], 404);
    assert!(log[1].get("clientRequestId").is_none());

    let since_one = emu.log(1).await;
    assert_eq!(since_one.len(), 1);
    assert_eq!(since_one[0]["seq"], 2);

    let (_, stats) = emu.admin(Method::GET, "/stats", None).await;
    assert_eq!(stats["byKind"]["operationGet"], 2);
    assert_eq!(stats["byStatus"]["404"], 1);
    assert!(stats["byKind"]["admin"].as_u64().unwrap() >= 3);

    let (status, _) = emu.admin(Method::POST, "/reset", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(emu.log(0).await.is_empty());
    let (_, stats) = emu.admin(Method::GET, "/stats", None).await;
    assert_eq!(stats["operations"], 0);
    // Tenants survive a plain reset.
    let (_, tenants) = emu.admin(Method::GET, "/tenants", None).await;
    assert_eq!(tenants.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn tenant_throttling_and_global_faults() {
    let emu = Emulator::start().await;
    let (status, _) = emu
        .admin(
            Method::POST,
            "/tenants",
            // The test reads with an app-only token: opt in.
            Some(json!({"id": "small", "allowAppOnly": true, "throttle": {"capacity": 3, "refillPerSecond": 0.5}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = emu
        .admin(
            Method::POST,
            "/tokens",
            Some(json!({"token": "small-token", "tenant": "small", "kind": "app",
                        "scopes": ["UserAuthenticationMethod.Read.All"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    emu.create_op(json!({"userId": "u1", "id": "op1"})).await;
    let url = emu.op_url("u1", "op1");

    let mut answers = Vec::new();
    for _ in 0..4 {
        let resp = emu.get(&url, Some("small-token")).await;
        answers.push((resp.status(), resp.headers().clone()));
    }
    assert!(answers[..3].iter().all(|(s, _)| *s == StatusCode::OK));
    assert!(answers[0].1.get("x-ms-throttle-limit-percentage").is_none());
    assert_eq!(header(&answers[2].1, "x-ms-throttle-limit-percentage"), "1.00");
    let (status, headers) = &answers[3];
    assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(headers, "retry-after").parse().unwrap();
    assert!(retry >= 1);
    assert!(header(headers, "x-ms-throttle-scope").contains("small"));
    // Another tenant is not affected.
    assert_eq!(emu.get(&url, Some("static-read")).await.status(), StatusCode::OK);

    // Global faults hit operation GETs but spare the token endpoint.
    let (status, faults) =
        emu.admin(Method::PUT, "/faults", Some(json!({"seed": 7, "rate429": 1.0, "retryAfterSeconds": [3, 4]}))).await;
    assert_eq!((status, faults["seed"].as_u64()), (StatusCode::OK, Some(7)));
    let resp = emu.get(&url, Some("static-read")).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(resp.headers(), "retry-after").parse().unwrap();
    assert!((3..=4).contains(&retry));
    let (status, _) = emu
        .token(
            TENANT,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "daemon"),
                ("client_secret", "daemon-secret"),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    emu.admin(Method::PUT, "/faults", Some(json!({"rateHtml": 1.0}))).await;
    let resp = emu.get(&url, Some("static-read")).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert!(header(resp.headers(), "content-type").starts_with("text/html"));
    emu.admin(Method::PUT, "/faults", Some(json!({}))).await;
    assert_eq!(emu.get(&url, Some("static-read")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn config_round_trips_and_sigterm_stops() {
    let mut emu = Emulator::start().await;
    emu.create_op(json!({"userId": "u1", "id": "op1", "appearAfterMs": 60000})).await;
    assert_eq!(
        emu.get(&emu.op_url("u1", "op1"), Some("static-read")).await.status(),
        StatusCode::NOT_FOUND,
        "not visible right after creation"
    );
    let (status, config) = emu.admin(Method::GET, "/config", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["operations"][0]["appearAfterMs"], 60000);
    assert_eq!(config["tenants"][0]["clients"][0]["refreshTokens"], json!(["rt-initial"]));
    let (status, counts) = emu.admin(Method::PUT, "/config", Some(config)).await;
    assert_eq!(status, StatusCode::OK, "{counts}");
    assert_eq!(counts["operations"], 1);
    let (status, _) = emu.admin(Method::PUT, "/config", Some(json!({"tenantz": []}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let pid = emu.child.id().expect("running");
    let killed = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
    assert!(killed.success());
    let exit =
        timeout(Duration::from_secs(10), emu.child.wait()).await.expect("stops within 10 s").expect("exit status");
    assert!(exit.success(), "{exit:?}");
}
