//! When each resource is looked at next: one entry per resource that waits for a time, in a
//! plain map scanned at most every [`TICK`], feeding the controller's `reconcile_on`.
//!
//! Why not `Action::requeue`: kube-runtime's scheduler keeps each pending requeue in a
//! `DelayQueue` slab plus two hash maps, 830 bytes per resource in a heap profile at 10,000
//! polled resources (bench/README.md), the largest cost after the cache itself. Here an entry
//! is the key and an instant. A wake-up comes at most one tick late, never early.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::Stream;
use futures::channel::mpsc;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The scan's granularity: due entries are gathered at most this often, so a scan of the
/// whole map runs at most 4 times a second however many are due (at 50 ms the scans were
/// 12 % of the operator's CPU in a profile at 10,000 resources polled every 10 s). A poll
/// is spread by up to 500 ms anyway; Retry-After and deadlines are never cut short.
pub const TICK: Duration = Duration::from_millis(250);
/// Longest sleep between scans when nothing is due sooner (an entry set earlier wakes it).
const IDLE_SCAN: Duration = Duration::from_secs(5);

/// A key naming `obj` by namespace and name only: `ObjectRef::from_obj` also copies its uid
/// and resourceVersion, two more strings per entry that equality ignores anyway.
pub fn key_of<K: kube::Resource<DynamicType = ()>>(obj: &K) -> ObjectRef<K> {
    let meta = obj.meta();
    object_ref(meta.namespace.as_deref(), meta.name.as_deref().unwrap_or_default())
}

fn object_ref<K: kube::Resource<DynamicType = ()>>(namespace: Option<&str>, name: &str) -> ObjectRef<K> {
    let key = ObjectRef::new(name);
    match namespace {
        Some(ns) => key.within(ns),
        None => key,
    }
}

/// A map key: namespace and name, 32 bytes where an `ObjectRef` takes 96 (the map's table
/// is most of its size: 1.8 MB at 10,000 entries with `ObjectRef`s).
#[derive(PartialEq, Eq, Hash)]
struct Key {
    namespace: Option<Box<str>>,
    name: Box<str>,
}

impl<K: kube::Resource<DynamicType = ()>> From<&ObjectRef<K>> for Key {
    fn from(key: &ObjectRef<K>) -> Self {
        Key { namespace: key.namespace.as_deref().map(Box::from), name: key.name.as_str().into() }
    }
}

impl Key {
    fn to_ref<K: kube::Resource<DynamicType = ()>>(&self) -> ObjectRef<K> {
        object_ref(self.namespace.as_deref(), &self.name)
    }

    fn into_ref<K: kube::Resource<DynamicType = ()>>(self) -> ObjectRef<K> {
        let mut key = ObjectRef::new("");
        key.name = self.name.into();
        key.namespace = self.namespace.map(String::from);
        key
    }
}

/// The next wake-up of every resource that has one.
pub struct Wakeups<K: kube::Resource<DynamicType = ()>> {
    state: Mutex<State<K>>,
    /// Woken when an entry is due sooner than the scanner planned to look.
    sooner: Arc<Notify>,
}

struct State<K: kube::Resource<DynamicType = ()>> {
    due: HashMap<Key, Instant>,
    kind: PhantomData<fn() -> K>,
    /// When the scanner looks next; kept under the same lock as `due`, so an entry set
    /// during a scan is either in that scan or compared with the plan the scan made.
    next_scan: Instant,
}

impl<K: kube::Resource<DynamicType = ()>> Default for Wakeups<K> {
    fn default() -> Self {
        let state = State { due: HashMap::new(), next_scan: Instant::now(), kind: PhantomData };
        Wakeups { state: Mutex::new(state), sooner: Arc::default() }
    }
}

impl<K: kube::Resource<DynamicType = ()>> Wakeups<K> {
    /// Look at `key` again after `wait`, replacing any earlier plan (the newest decision
    /// knows best); `None`: only a change of the resource brings it back.
    pub fn set(&self, key: ObjectRef<K>, wait: Option<Duration>) {
        let mut state = self.state.lock().unwrap();
        let Some(wait) = wait else {
            state.due.remove(&Key::from(&key));
            return;
        };
        let at = Instant::now() + wait;
        state.due.insert(Key::from(&key), at);
        if at < state.next_scan {
            self.sooner.notify_one();
        }
    }

    /// How long until `key`'s wake-up, if it has one (tests and diagnostics).
    pub fn remaining(&self, key: &ObjectRef<K>) -> Option<Duration> {
        self.state.lock().unwrap().due.get(&Key::from(key)).map(|at| at.saturating_duration_since(Instant::now()))
    }

    pub fn len(&self) -> usize {
        self.state.lock().unwrap().due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps only the entries `keep` accepts (the housekeeping drops deleted resources').
    pub fn retain(&self, mut keep: impl FnMut(&ObjectRef<K>) -> bool) {
        self.state.lock().unwrap().due.retain(|key, _| keep(&key.to_ref()));
    }

    /// Removes and returns the entries due by `now`, and plans the next scan: when the next
    /// entry is due, but no sooner than a tick and no later than the idle scan.
    fn take_due(&self, now: Instant) -> (Vec<ObjectRef<K>>, Instant) {
        let mut state = self.state.lock().unwrap();
        let ready: Vec<ObjectRef<K>> =
            state.due.extract_if(|_, at| *at <= now).map(|(key, _)| key.into_ref()).collect();
        let next = state.due.values().copied().min().unwrap_or(now + IDLE_SCAN).min(now + IDLE_SCAN);
        state.next_scan = next.max(now + TICK);
        (ready, state.next_scan)
    }
}

impl<K: kube::Resource<DynamicType = ()> + Send + Sync + 'static> Wakeups<K> {
    /// The keys as they fall due, for `Controller::reconcile_on`. The scanner holds only a
    /// weak reference: it ends when the wake-ups are dropped or the stream is.
    pub fn stream(self: &Arc<Self>) -> impl Stream<Item = ObjectRef<K>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded();
        tokio::spawn(scan(Arc::downgrade(self), tx));
        rx
    }
}

async fn scan<K: kube::Resource<DynamicType = ()> + Send + Sync + 'static>(
    wakeups: Weak<Wakeups<K>>,
    tx: mpsc::UnboundedSender<ObjectRef<K>>,
) {
    loop {
        let Some(this) = wakeups.upgrade() else { return };
        let now = Instant::now();
        let (ready, wake) = this.take_due(now);
        for key in ready {
            if tx.unbounded_send(key).is_err() {
                return;
            }
        }
        let notify = this.sooner.clone();
        drop(this);
        if tx.is_closed() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = notify.notified() => tokio::time::sleep_until(now + TICK).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector::ObjectRef;
    use tokio::time::Instant;

    use super::*;

    fn key(name: &str) -> ObjectRef<ConfigMap> {
        ObjectRef::new(name).within("ns")
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_up_comes_when_due_never_before_and_at_most_a_tick_late() {
        let wakeups: Arc<Wakeups<ConfigMap>> = Arc::default();
        let mut stream = wakeups.stream();
        let start = Instant::now();
        wakeups.set(key("later"), Some(Duration::from_secs(10)));
        wakeups.set(key("sooner"), Some(Duration::from_millis(1500)));
        let first = stream.next().await.unwrap();
        let at = start.elapsed();
        assert_eq!(first, key("sooner"));
        assert!(at >= Duration::from_millis(1500) && at <= Duration::from_millis(1500) + TICK, "{at:?}");
        let second = stream.next().await.unwrap();
        let at = start.elapsed();
        assert_eq!(second, key("later"));
        assert!(at >= Duration::from_secs(10) && at <= Duration::from_secs(10) + TICK, "{at:?}");
        assert!(wakeups.is_empty(), "an entry is gone once it fired");
    }

    #[tokio::test(start_paused = true)]
    async fn the_newest_plan_replaces_the_old_and_none_cancels_it() {
        let wakeups: Arc<Wakeups<ConfigMap>> = Arc::default();
        let mut stream = wakeups.stream();
        let start = Instant::now();
        wakeups.set(key("a"), Some(Duration::from_secs(1)));
        wakeups.set(key("a"), Some(Duration::from_secs(3)));
        wakeups.set(key("b"), Some(Duration::from_secs(2)));
        wakeups.set(key("b"), None);
        // Positive control: an entry that stays does fire, so a missing one is not a dead scanner.
        wakeups.set(key("c"), Some(Duration::from_secs(4)));
        assert_eq!(wakeups.len(), 2);
        assert_eq!(stream.next().await.unwrap(), key("a"));
        assert!(start.elapsed() >= Duration::from_secs(3), "the replaced 1 s plan did not fire");
        assert_eq!(stream.next().await.unwrap(), key("c"), "b was cancelled");
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_sooner_than_the_idle_scan_wakes_the_scanner() {
        let wakeups: Arc<Wakeups<ConfigMap>> = Arc::default();
        let mut stream = wakeups.stream();
        // Let the scanner go idle first (nothing due: it plans to look again in IDLE_SCAN).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let start = Instant::now();
        wakeups.set(key("soon"), Some(Duration::from_millis(200)));
        assert_eq!(stream.next().await.unwrap(), key("soon"));
        assert!(start.elapsed() <= Duration::from_millis(200) + TICK, "{:?}", start.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn retain_drops_entries_and_the_scanner_ends_with_the_wakeups() {
        let wakeups: Arc<Wakeups<ConfigMap>> = Arc::default();
        let mut stream = wakeups.stream();
        wakeups.set(key("gone"), Some(Duration::from_secs(1)));
        wakeups.set(key("kept"), Some(Duration::from_secs(2)));
        wakeups.retain(|k| k.name != "gone");
        assert_eq!(wakeups.remaining(&key("gone")), None);
        assert_eq!(stream.next().await.unwrap(), key("kept"));
        drop(wakeups);
        tokio::time::sleep(IDLE_SCAN * 2).await;
        assert_eq!(stream.next().await, None, "the stream ends once nobody can set a wake-up");
    }
}
