//! The `graph-emulator` binary started on a free port, and helpers to talk to it over
//! HTTP, shared by the emulator's test files.
// Each test file uses its own subset of the helpers.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;

pub const TENANT: &str = "11111111-2222-3333-4444-555555555555";
pub const PASSWORD_METHOD: &str = "28c10230-6103-485e-b985-444c60001490";

/// A tenant with one client per credential kind, and two static tokens.
pub const CONFIG: &str = r#"
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

pub struct Emulator {
    pub child: Child,
    pub base: String,
    pub http: reqwest::Client,
    _config: tempfile::NamedTempFile,
}

impl Emulator {
    pub async fn start() -> Emulator {
        Self::start_with(CONFIG).await
    }

    pub async fn start_with(config_yaml: &str) -> Emulator {
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

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
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

    pub async fn token(&self, tenant: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
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

    pub async fn get(&self, url: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(url);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("GET")
    }

    pub fn op_url(&self, user: &str, id: &str) -> String {
        self.url(&format!("/v1.0/users/{user}/authentication/operations/{id}"))
    }

    pub async fn create_op(&self, spec: Value) -> Value {
        let (status, view) = self.admin(Method::POST, "/operations", Some(spec)).await;
        assert_eq!(status, StatusCode::CREATED, "{view}");
        view
    }

    pub async fn log(&self, since: u64) -> Vec<Value> {
        let (status, body) = self.admin(Method::GET, &format!("/requests?since={since}"), None).await;
        assert_eq!(status, StatusCode::OK);
        body["entries"].as_array().expect("entries").clone()
    }
}

pub async fn json_of(resp: reqwest::Response) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body: {text:?}"));
    (status, headers, value)
}

pub fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("missing header {name}"))
}

pub const DELEGATED_SCOPE: &str = "https://graph.microsoft.com/UserAuthenticationMethod.ReadWrite.All offline_access";

pub async fn refresh(emu: &Emulator, token: &str) -> (StatusCode, Value) {
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
