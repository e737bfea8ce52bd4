//! The Graph emulator's admin API, and a collector that pages its request log while a
//! scenario runs (the log keeps only the newest 200 000 entries).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use super::watch::index_of;

#[derive(Clone)]
pub struct EmuClient {
    http: reqwest::Client,
    base: String,
}

impl EmuClient {
    pub fn new(url: &str) -> EmuClient {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("HTTP client");
        EmuClient { http, base: format!("{url}/_emulator") }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
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
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
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

    async fn requests(&self, since: u64) -> anyhow::Result<Page> {
        let v = self.call(reqwest::Method::GET, &format!("/requests?since={since}&limit=50000"), None).await?;
        Ok(serde_json::from_value(v)?)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    entries: Vec<Entry>,
    more: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    seq: u64,
    time_ms: i64,
    kind: String,
    status: u16,
    #[serde(default)]
    duration_ms: u64,
    #[serde(default)]
    operation_id: Option<String>,
}

/// One operation GET the emulator answered.
#[derive(Debug, Clone, Copy)]
pub struct Get {
    pub t_ms: i64,
    /// Index of the operation (`op-00042`: 42); `usize::MAX` when unknown.
    pub op: usize,
    pub status: u16,
    pub duration_ms: u64,
}

#[derive(Default)]
pub struct Log {
    pub gets: Vec<Get>,
    /// Token requests and unknown routes.
    pub other: u64,
    /// Entries that left the emulator's log before the collector read them.
    pub lost: u64,
    last_seq: u64,
}

pub struct Collector {
    log: Arc<Mutex<Log>>,
    client: EmuClient,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn drain(client: &EmuClient, log: &Mutex<Log>) -> anyhow::Result<()> {
    loop {
        let since = log.lock().unwrap().last_seq;
        let page = client.requests(since).await?;
        let mut g = log.lock().unwrap();
        if let Some(first) = page.entries.first()
            && first.seq > g.last_seq + 1
        {
            g.lost += first.seq - g.last_seq - 1;
        }
        for e in &page.entries {
            g.last_seq = e.seq;
            if e.kind == "operationGet" {
                let op = e.operation_id.as_deref().and_then(|id| index_of(id, super::OPERATION_PREFIX));
                g.gets.push(Get {
                    t_ms: e.time_ms,
                    op: op.unwrap_or(usize::MAX),
                    status: e.status,
                    duration_ms: e.duration_ms,
                });
            } else {
                g.other += 1;
            }
        }
        if !page.more {
            return Ok(());
        }
    }
}

impl Collector {
    pub fn start(client: &EmuClient) -> Collector {
        let log: Arc<Mutex<Log>> = Arc::default();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (l, c) = (log.clone(), client.clone());
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = drain(&c, &l).await {
                    eprintln!("bench: reading the emulator's request log: {e:#}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = stopped.changed() => return,
                }
            }
        });
        Collector { log, client: client.clone(), stop, task }
    }

    /// Operation GETs logged so far.
    pub fn gets_so_far(&self) -> usize {
        self.log.lock().unwrap().gets.len()
    }

    /// Reads what is left and returns the whole log.
    pub async fn finish(self) -> anyhow::Result<Log> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        drain(&self.client, &self.log).await?;
        Ok(std::mem::take(&mut *self.log.lock().unwrap()))
    }
}
