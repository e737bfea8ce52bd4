//! A collector that pages the Graph emulator's request log while a scenario runs (the log
//! keeps only the newest 200 000 entries) and keeps what the figures need of each entry.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pwreset_testkit::EmulatorClient;
use pwreset_testkit::watch::index_of;
use serde::Deserialize;

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
    client: EmulatorClient,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn drain(client: &EmulatorClient, log: &Mutex<Log>) -> anyhow::Result<()> {
    loop {
        let since = log.lock().unwrap().last_seq;
        let page = client.requests_since(since).await?;
        let entries: Vec<Entry> = page.entries.into_iter().map(serde_json::from_value).collect::<Result<_, _>>()?;
        let mut g = log.lock().unwrap();
        if let Some(first) = entries.first()
            && first.seq > g.last_seq + 1
        {
            g.lost += first.seq - g.last_seq - 1;
        }
        for e in &entries {
            g.last_seq = e.seq;
            if e.kind == "operationGet" {
                let op = e.operation_id.as_deref().and_then(|id| index_of(id, crate::OPERATION_PREFIX));
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
    pub fn start(client: &EmulatorClient) -> Collector {
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
