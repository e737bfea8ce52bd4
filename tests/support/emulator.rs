//! The Graph emulator binary as a real process, driven through its admin API.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub struct Emulator {
    child: Child,
    /// `http://127.0.0.1:PORT`: the Graph root and token authority.
    pub url: String,
}

impl Emulator {
    pub fn start() -> Emulator {
        Self::start_with_args(&[])
    }

    pub fn start_with_args(args: &[&str]) -> Emulator {
        super::init_crypto();
        let mut child = Command::new(env!("CARGO_BIN_EXE_graph-emulator"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start graph-emulator");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(20)).expect("graph-emulator did not print `listening on`");
        Emulator { child, url }
    }

    /// Calls the admin API; panics on a non-2xx answer (a broken test setup).
    pub async fn admin(&self, method: &str, path: &str, body: Value) -> Value {
        let client = reqwest::Client::new();
        let url = format!("{}/_emulator{path}", self.url);
        let req = match method {
            "GET" => client.get(&url),
            "POST" => client.post(&url).json(&body),
            "PUT" => client.put(&url).json(&body),
            "PATCH" => client.patch(&url).json(&body),
            "DELETE" => client.delete(&url),
            other => panic!("unsupported method {other}"),
        };
        let resp = req.send().await.expect("emulator admin request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "emulator {method} {path} -> {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Registers a static bearer token for `tenant`.
    pub async fn add_token(&self, token: &str, tenant: &str) {
        self.admin(
            "POST",
            "/tokens",
            serde_json::json!({
                "token": token,
                "tenant": tenant,
                "scopes": ["UserAuthenticationMethod.Read.All"],
            }),
        )
        .await;
    }

    /// Creates an operation with a scripted progression; returns the emulator's view of it.
    pub async fn add_operation(&self, operation: Value) -> Value {
        self.admin("POST", "/operations", operation).await
    }

    /// Sets an operation's state right now.
    pub async fn set_status(&self, user: &str, op: &str, status: &str) {
        self.admin("PATCH", &format!("/operations/{user}/{op}"), serde_json::json!({ "status": status })).await;
    }

    /// The request log entries (see docs/emulator.md).
    pub async fn requests(&self) -> Vec<Value> {
        let log = self.admin("GET", "/requests", Value::Null).await;
        match log {
            Value::Array(entries) => entries,
            Value::Object(mut o) => match o.remove("requests").or_else(|| o.remove("entries")) {
                Some(Value::Array(entries)) => entries,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// Logged operation GETs for one operation id.
    pub async fn gets_for(&self, operation_id: &str) -> Vec<Value> {
        self.requests().await.into_iter().filter(|e| e["method"] == "GET" && e["operationId"] == operation_id).collect()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
