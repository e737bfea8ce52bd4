//! The Graph emulator binary as a real process, and a client of its admin API
//! (`/_emulator`, see docs/emulator.md).

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::process::{prepare, wait_for_line};

/// How to start the emulator; `Default` is quiet, on a free port, with no config.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `graph-emulator` of the running build profile when None.
    pub binary: Option<PathBuf>,
    /// Flags after `--listen 127.0.0.1:0`.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Where its logs (stderr) go; discarded when None.
    pub log: Option<PathBuf>,
    /// With `--tls-cert` in `args`: the CA (PEM) the admin client trusts.
    pub ca_pem: Option<String>,
}

pub struct Emulator {
    child: Child,
    /// `http://127.0.0.1:PORT`: the Graph root and token authority.
    pub url: String,
    client: EmulatorClient,
}

impl Emulator {
    pub fn start() -> Emulator {
        Self::start_with_args(&[])
    }

    pub fn start_with_args(args: &[&str]) -> Emulator {
        let options = Options { args: args.iter().map(|a| a.to_string()).collect(), ..Options::default() };
        Self::start_with(options).unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub fn start_with(options: Options) -> anyhow::Result<Emulator> {
        crate::init_crypto();
        let binary = options.binary.unwrap_or_else(|| crate::binary("graph-emulator"));
        let stderr = match &options.log {
            Some(path) => Stdio::from(File::create(path).with_context(|| format!("creating {}", path.display()))?),
            None => Stdio::null(),
        };
        let mut cmd = Command::new(&binary);
        cmd.args(["--listen", "127.0.0.1:0"]).args(&options.args).envs(options.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
        prepare(&mut cmd);
        let mut child = cmd.spawn().with_context(|| format!("starting {}", binary.display()))?;
        let url = wait_for_line(&mut child, Duration::from_secs(20), "graph-emulator", |l| {
            l.strip_prefix("listening on ").map(|u| u.trim().to_string())
        })?;
        let client = match &options.ca_pem {
            Some(pem) => EmulatorClient::trusting(&url, pem)?,
            None => EmulatorClient::new(&url),
        };
        Ok(Emulator { child, url, client })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn client(&self) -> &EmulatorClient {
        &self.client
    }

    /// Calls the admin API; panics on a non-2xx answer (a broken test setup).
    pub async fn admin(&self, method: &str, path: &str, body: Value) -> Value {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        // Admin writes parse a JSON body even when it is `null`; reads take none.
        let body = (!matches!(method, reqwest::Method::GET | reqwest::Method::DELETE)).then_some(&body);
        self.client.call(method, path, body).await.unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Registers a static bearer token for `tenant`.
    pub async fn add_token(&self, token: &str, tenant: &str) {
        self.client.add_token(token, tenant).await.unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Creates an operation with a scripted progression; returns the emulator's view of it.
    pub async fn add_operation(&self, operation: Value) -> Value {
        self.admin("POST", "/operations", operation).await
    }

    /// Sets an operation's state right now.
    pub async fn set_status(&self, user: &str, op: &str, status: &str) {
        self.admin("PATCH", &format!("/operations/{user}/{op}"), json!({ "status": status })).await;
    }

    /// The request log entries (see docs/emulator.md). Panics when the log cannot be read
    /// or has an unexpected shape: an empty list would make "nothing was sent" checks pass.
    pub async fn requests(&self) -> Vec<Value> {
        let log = self.client.request_log().await.expect("the emulator's request log");
        for entry in &log {
            assert!(
                entry["seq"].is_u64() && entry["method"].is_string() && entry["kind"].is_string(),
                "unexpected request log entry: {entry}"
            );
        }
        log
    }

    /// Every credential value the emulator issued or knows (tokens it minted, static tokens,
    /// client secrets): what a leak scan looks for.
    pub async fn credentials(&self) -> Vec<String> {
        let v = self.admin("GET", "/credentials", Value::Null).await;
        let list = v["credentials"].as_array().unwrap_or_else(|| panic!("unexpected credentials answer: {v}"));
        list.iter().map(|c| c.as_str().expect("a string").to_string()).collect()
    }

    /// Logged operation GETs for one operation id.
    pub async fn gets_for(&self, operation_id: &str) -> Vec<Value> {
        self.requests().await.into_iter().filter(|e| e["method"] == "GET" && e["operationId"] == operation_id).collect()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // SIGKILL: its state is in memory only, and a graceful stop would wait for the
        // operator's keep-alive connections.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The admin API; errors are values, for callers that report rather than panic.
#[derive(Clone)]
pub struct EmulatorClient {
    http: reqwest::Client,
    base: String,
}

/// One page of the request log (`GET /_emulator/requests?since=SEQ`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestPage {
    pub entries: Vec<Value>,
    pub more: bool,
}

impl EmulatorClient {
    pub fn new(url: &str) -> EmulatorClient {
        crate::init_crypto();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("HTTP client");
        EmulatorClient { http, base: format!("{url}/_emulator") }
    }

    /// A client of an HTTPS emulator whose certificate `ca_pem` signed (and nothing else:
    /// the test CA is all it trusts).
    pub fn trusting(url: &str, ca_pem: &str) -> anyhow::Result<EmulatorClient> {
        crate::init_crypto();
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).context("parsing the test CA")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .tls_certs_only([ca])
            // The admin API is loopback only: a proxy in the test's environment must not see it.
            .no_proxy()
            .build()
            .context("HTTP client")?;
        Ok(EmulatorClient { http, base: format!("{url}/_emulator") })
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.with_context(|| format!("emulator {method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("emulator {method} {path} -> {status}: {text}");
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("emulator {method} {path} answered no JSON: {text}"))
    }

    pub async fn add_token(&self, token: &str, tenant: &str) -> anyhow::Result<()> {
        let body = json!({"token": token, "tenant": tenant, "scopes": ["UserAuthenticationMethod.Read.All"]});
        self.call(reqwest::Method::POST, "/tokens", Some(&body)).await.map(|_| ())
    }

    /// Creates operations, a few thousand per request.
    pub async fn add_operations(&self, ops: Vec<Value>) -> anyhow::Result<()> {
        for chunk in ops.chunks(2000) {
            self.call(reqwest::Method::POST, "/operations", Some(&Value::Array(chunk.to_vec()))).await?;
        }
        Ok(())
    }

    pub async fn stats(&self) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, "/stats", None).await
    }

    /// Request log entries after `since` (a seq), up to 50,000 per page.
    pub async fn requests_since(&self, since: u64) -> anyhow::Result<RequestPage> {
        let v = self.call(reqwest::Method::GET, &format!("/requests?since={since}&limit=50000"), None).await?;
        Ok(serde_json::from_value(v)?)
    }

    /// The whole request log (admin calls are never in it), read page by page.
    pub async fn request_log(&self) -> anyhow::Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut since = 0u64;
        loop {
            let page = self.requests_since(since).await?;
            if let Some(last) = page.entries.last().and_then(|e| e["seq"].as_u64()) {
                since = last;
            }
            let done = !page.more || page.entries.is_empty();
            all.extend(page.entries);
            if done {
                return Ok(all);
            }
        }
    }
}
