//! Every version of every resource a watch delivers, for the suites that check what the
//! operator wrote and in which order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use pwreset_operator::api::PasswordResetOperation;

use crate::now_ms;

/// What a watch saw of one resource at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub at_ms: i64,
    pub resource_version: String,
    pub status: Option<String>,
    pub conditions: Vec<SeenCondition>,
    /// status.completionTime (whole seconds, as the API stores it) in Unix ms.
    pub completion_ms: Option<i64>,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeenCondition {
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

impl Seen {
    pub fn finished(&self) -> bool {
        self.condition("Finished").is_some_and(|c| c.status == "True")
    }

    pub fn condition(&self, type_: &str) -> Option<&SeenCondition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    pub fn reason(&self, type_: &str) -> Option<&str> {
        self.condition(type_).map(|c| c.reason.as_str())
    }

    /// Whether condition `type_` has `status` and `reason`.
    pub fn has(&self, type_: &str, status: &str, reason: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == status && c.reason == reason)
    }
}

/// Records every version of every resource a watch on `api` delivers, from start until
/// dropped, across watch restarts (an apiserver restart included).
pub struct History {
    seen: Arc<Mutex<BTreeMap<String, Vec<Seen>>>>,
    restarts: Arc<Mutex<u32>>,
    task: tokio::task::JoinHandle<()>,
}

impl History {
    pub fn start(api: Api<PasswordResetOperation>) -> History {
        let seen: Arc<Mutex<BTreeMap<String, Vec<Seen>>>> = Arc::default();
        let restarts: Arc<Mutex<u32>> = Arc::default();
        let (s, r) = (seen.clone(), restarts.clone());
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default()).default_backoff().boxed();
            while let Some(event) = stream.next().await {
                let (obj, deleted) = match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => (o, false),
                    Ok(watcher::Event::Delete(o)) => (o, true),
                    Ok(watcher::Event::Init) => {
                        *r.lock().unwrap() += 1;
                        continue;
                    }
                    Ok(watcher::Event::InitDone) | Err(_) => continue,
                };
                let status = obj.status.as_ref();
                let entry = Seen {
                    at_ms: now_ms(),
                    resource_version: obj.resource_version().unwrap_or_default(),
                    status: status.and_then(|s| s.status.clone()),
                    conditions: status
                        .map(|s| {
                            s.conditions
                                .iter()
                                .map(|c| SeenCondition {
                                    type_: c.type_.clone(),
                                    status: c.status.clone(),
                                    reason: c.reason.clone(),
                                    message: c.message.clone(),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    completion_ms: status.and_then(|s| s.completion_time.as_ref()).map(|t| t.0.as_millisecond()),
                    deleted,
                };
                let mut map = s.lock().unwrap();
                let versions = map.entry(obj.name_any()).or_default();
                // A relist repeats the version already seen: keep one copy.
                if versions.last().is_none_or(|last| last.resource_version != entry.resource_version || deleted) {
                    versions.push(entry);
                }
            }
        });
        History { seen, restarts, task }
    }

    /// Everything seen so far, by resource name, oldest first.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<Seen>> {
        self.seen.lock().unwrap().clone()
    }

    pub fn of(&self, name: &str) -> Vec<Seen> {
        self.seen.lock().unwrap().get(name).cloned().unwrap_or_default()
    }

    /// The first version of `name` that satisfies `check`, waiting for it up to `timeout`.
    pub async fn wait_for(&self, name: &str, what: &str, timeout: Duration, check: impl Fn(&Seen) -> bool) -> Seen {
        crate::eventually(&format!("{name}: {what}"), timeout, || async {
            let versions = self.of(name);
            versions.iter().find(|v| check(v)).cloned().ok_or_else(|| format!("{:?}", versions.last()))
        })
        .await
    }

    /// How often the watch (re)started listing: 1 without interruptions.
    pub fn list_count(&self) -> u32 {
        *self.restarts.lock().unwrap()
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.task.abort();
    }
}
