//! Watches numbered resources (`pro-00000`…) and records, per resource, what the operator
//! wrote and when the watch saw it: the resourceVersion changes (status writes), the Graph states in the order
//! they appeared, and when `Finished` became True.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use kube::api::Api;
use kube::runtime::watcher;
use kube::{Resource as _, ResourceExt as _};

use pwreset_operator::api::PasswordResetOperation as Pro;

use super::{index_of, is_finished};
use crate::now_ms;

#[derive(Debug, Clone, Default)]
pub struct Track {
    /// The resourceVersion last seen.
    pub rv: Option<String>,
    /// resourceVersion changes after the baseline: status writes (nothing else writes).
    pub writes: u32,
    /// Graph states (`status.status`) in the order they first appeared, with the time
    /// the watch delivered them (Unix ms). Excludes the baseline's state.
    pub states: Vec<(String, i64)>,
    /// Graph state at the baseline (before the operator started).
    pub baseline_state: Option<String>,
    pub last_state: Option<String>,
    /// When the watch first saw `Finished=True` written (Unix ms).
    pub finished_ms: Option<i64>,
    /// Finished already at the baseline.
    pub finished_at_baseline: bool,
}

impl Track {
    /// Distinct Graph states the resource showed while the operator ran.
    pub fn distinct_states(&self) -> usize {
        let mut seen: Vec<&str> = self.states.iter().map(|(s, _)| s.as_str()).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }
}

#[derive(Default)]
struct Shared {
    tracks: Vec<Track>,
    baseline_done: bool,
    finished: usize,
    with_state: usize,
    writes: u64,
}

pub struct Recorder {
    shared: Arc<Mutex<Shared>>,
    /// Watch (re)starts after the first: each may hide writes that happened meanwhile.
    restarts: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// Watches `ns` for the resources `{prefix}{index}`, index below `n`.
    pub fn start(client: &kube::Client, ns: &str, prefix: &str, n: usize) -> Recorder {
        let shared = Arc::new(Mutex::new(Shared { tracks: vec![Track::default(); n], ..Shared::default() }));
        let restarts = Arc::new(AtomicU32::new(0));
        let api: Api<Pro> = Api::namespaced(client.clone(), ns);
        let (s, r, p) = (shared.clone(), restarts.clone(), prefix.to_string());
        let task = tokio::spawn(async move {
            let mut inits = 0u32;
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = stream.next().await {
                let now = now_ms();
                match event {
                    Ok(watcher::Event::Init) => {
                        inits += 1;
                        if inits > 1 {
                            r.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(watcher::Event::InitApply(o) | watcher::Event::Apply(o)) => {
                        let mut g = s.lock().unwrap();
                        observe(&mut g, &p, &o, now);
                    }
                    Ok(watcher::Event::InitDone) => s.lock().unwrap().baseline_done = true,
                    Ok(watcher::Event::Delete(_)) => {}
                    Err(e) => {
                        eprintln!("watch error (retrying): {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        Recorder { shared, restarts, task }
    }

    /// Waits until the first list is complete: everything seen from now on is a change.
    pub async fn wait_baseline(&self) -> anyhow::Result<()> {
        for _ in 0..1200 {
            if self.shared.lock().unwrap().baseline_done {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the watch did not list the resources within 60 s")
    }

    /// (finished, with a Graph state, status writes) so far.
    pub fn counts(&self) -> (usize, usize, u64) {
        let g = self.shared.lock().unwrap();
        (g.finished, g.with_state, g.writes)
    }

    /// Resources whose current Graph state is `state`.
    pub fn count_state(&self, state: &str) -> usize {
        self.shared.lock().unwrap().tracks.iter().filter(|t| t.last_state.as_deref() == Some(state)).count()
    }

    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }

    pub fn finish(self) -> Vec<Track> {
        self.task.abort();
        std::mem::take(&mut self.shared.lock().unwrap().tracks)
    }
}

fn observe(g: &mut Shared, prefix: &str, o: &Pro, now: i64) {
    let Some(i) = index_of(&o.name_any(), prefix) else { return };
    let baseline = !g.baseline_done;
    let rv = o.meta().resource_version.clone();
    let state = o.status.as_ref().and_then(|s| s.status.clone());
    let finished = is_finished(o);
    let Some(t) = g.tracks.get_mut(i) else { return };
    if baseline {
        t.rv = rv;
        t.baseline_state = state.clone();
        t.last_state = state.clone();
        t.finished_at_baseline = finished;
        if finished {
            g.finished += 1;
        }
        if state.is_some() {
            g.with_state += 1;
        }
        return;
    }
    if t.rv == rv {
        return;
    }
    t.rv = rv;
    t.writes += 1;
    g.writes += 1;
    if state.is_some() && state != t.last_state {
        if t.last_state.is_none() {
            g.with_state += 1;
        }
        let s = state.clone().unwrap_or_default();
        if !t.states.iter().any(|(seen, _)| *seen == s) {
            t.states.push((s, now));
        }
        t.last_state = state;
    }
    if finished && t.finished_ms.is_none() && !t.finished_at_baseline {
        t.finished_ms = Some(now);
        g.finished += 1;
    }
}
