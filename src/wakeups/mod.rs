//! When each resource is looked at next: one entry per resource that waits for a time, in a
//! plain map scanned at most every [`TICK`], feeding the controller's `reconcile_on` in turn.
//!
//! Why not `Action::requeue`: kube-runtime's scheduler keeps each pending requeue in a
//! `DelayQueue` slab plus two hash maps, 830 bytes per resource in a heap profile at 10,000
//! polled resources (bench/README.md), the largest cost after the cache itself. Here an entry
//! is the key and an instant. A wake-up comes at most one tick late, never early.
//!
//! Why in turn: when more resources are due than the controller can reconcile at once (a
//! tenant's rate limit is the usual cause), kube-runtime holds the surplus in a hash set and
//! takes from it in hash order, so the same resources won every free slot and others were
//! not polled for minutes (54 of 80 in a test, tests/limiter.rs). So due entries wait here,
//! oldest first, and are handed over only as slots free up: at most as many as the
//! controller's concurrency are ever handed over and not yet reconciling.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
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
#[derive(PartialEq, Eq, Clone)]
struct Key {
    namespace: Option<Box<str>>,
    name: Box<str>,
}

impl<K: kube::Resource<DynamicType = ()>> From<ObjectRef<K>> for Key {
    /// Takes the strings over: no copy (a reconcile's key is built once, in `key_of`).
    fn from(key: ObjectRef<K>) -> Self {
        Key { namespace: key.namespace.map(String::into_boxed_str), name: key.name.into_boxed_str() }
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

/// A key's strings, borrowed: the maps are searched with an `ObjectRef`'s strings without
/// building a `Key` (two allocations and two frees per lookup, several per poll, showed in
/// a profile as the allocator's free-list work).
trait Parts {
    fn parts(&self) -> (Option<&str>, &str);
}

impl Parts for Key {
    fn parts(&self) -> (Option<&str>, &str) {
        (self.namespace.as_deref(), &self.name)
    }
}

// Any kind: kube-runtime names a resource it did not find with a type-erased key.
impl<K: kube::Resource> Parts for ObjectRef<K> {
    fn parts(&self) -> (Option<&str>, &str) {
        (self.namespace.as_deref(), &self.name)
    }
}

impl<'a> Borrow<dyn Parts + 'a> for Key {
    fn borrow(&self) -> &(dyn Parts + 'a) {
        self
    }
}

// A `Key` and its borrowed parts must hash alike for the borrowed lookups to find it.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state)
    }
}

impl Hash for dyn Parts + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state)
    }
}

impl PartialEq for dyn Parts + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn Parts + '_ {}

/// Where a resource's wake-up stands.
#[derive(Clone, Copy, PartialEq)]
enum Plan {
    At(Instant),
    /// Due, in the queue for a free slot.
    Queued,
}

/// The next wake-up of every resource that has one.
pub struct Wakeups<K: kube::Resource<DynamicType = ()>> {
    state: Mutex<State<K>>,
    /// Woken when an entry is due sooner than the scanner planned to look.
    sooner: Arc<Notify>,
}

struct State<K: kube::Resource<DynamicType = ()>> {
    plans: HashMap<Key, Plan>,
    /// Due keys, oldest first. A key re-planned or dropped meanwhile is skipped when it
    /// comes up (its plan is no longer `Queued`).
    queue: VecDeque<Key>,
    /// Handed over and not yet reconciling (each takes a slot it will get).
    handed: HashSet<Key>,
    /// Reconciles running, whatever brought them (a watch event, a wake-up).
    running: usize,
    /// The controller's concurrency: handed plus running never exceeds it.
    slots: usize,
    tx: Option<mpsc::UnboundedSender<ObjectRef<K>>>,
    kind: PhantomData<fn() -> K>,
    /// When the scanner looks next; kept under the same lock as `plans`, so an entry set
    /// during a scan is either in that scan or compared with the plan the scan made.
    next_scan: Instant,
}

#[cfg(test)]
impl<K: kube::Resource<DynamicType = ()>> Default for Wakeups<K> {
    /// Without a limit on slots (tests of timing alone).
    fn default() -> Self {
        Self::new(usize::MAX)
    }
}

impl<K: kube::Resource<DynamicType = ()>> Wakeups<K> {
    /// Wake-ups for a controller that reconciles at most `slots` resources at once.
    pub fn new(slots: usize) -> Self {
        let state = State {
            plans: HashMap::new(),
            queue: VecDeque::new(),
            handed: HashSet::new(),
            running: 0,
            slots: slots.max(1),
            tx: None,
            next_scan: Instant::now(),
            kind: PhantomData,
        };
        Wakeups { state: Mutex::new(state), sooner: Arc::default() }
    }

    /// Look at `key` again after `wait`, replacing any earlier plan (the newest decision
    /// knows best); `None`: only a change of the resource brings it back.
    pub fn set(&self, key: ObjectRef<K>, wait: Option<Duration>) {
        let mut state = self.state.lock().unwrap();
        let Some(wait) = wait else {
            state.plans.remove(&key as &dyn Parts);
            return;
        };
        let at = Instant::now() + wait;
        state.plans.insert(Key::from(key), Plan::At(at));
        if at < state.next_scan {
            self.sooner.notify_one();
        }
    }

    /// A reconcile of `key` starts; its slot is free again when the returned turn is dropped.
    pub fn begin(self: &Arc<Self>, key: &ObjectRef<K>) -> Turn<K> {
        let mut state = self.state.lock().unwrap();
        state.handed.remove(key as &dyn Parts);
        state.running += 1;
        Turn(self.clone())
    }

    /// A key handed over whose resource the controller no longer has: its slot is free.
    pub fn not_found<R: kube::Resource>(&self, key: &ObjectRef<R>) {
        let mut state = self.state.lock().unwrap();
        state.handed.remove(key as &dyn Parts);
        state.hand_over();
    }

    /// How long until `key`'s wake-up, if it has one (zero once due; tests and diagnostics).
    pub fn remaining(&self, key: &ObjectRef<K>) -> Option<Duration> {
        self.state.lock().unwrap().plans.get(key as &dyn Parts).map(|plan| match plan {
            Plan::At(at) => at.saturating_duration_since(Instant::now()),
            Plan::Queued => Duration::ZERO,
        })
    }

    pub fn len(&self) -> usize {
        self.state.lock().unwrap().plans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps only the entries `keep` accepts (the housekeeping drops deleted resources', and
    /// frees the slot of one handed over after it was deleted).
    pub fn retain(&self, mut keep: impl FnMut(&ObjectRef<K>) -> bool) {
        let mut state = self.state.lock().unwrap();
        state.plans.retain(|key, _| keep(&key.to_ref()));
        state.handed.retain(|key| keep(&key.to_ref()));
        state.hand_over();
    }

    /// Queues the entries due by `now` (oldest first), hands over what free slots allow, and
    /// plans the next scan: when the next entry is due, but no sooner than a tick and no
    /// later than the idle scan.
    fn scan(&self, now: Instant) -> Instant {
        let mut guard = self.state.lock().unwrap();
        let state = &mut *guard;
        let mut due: Vec<(Instant, Key)> = Vec::new();
        let mut next = now + IDLE_SCAN;
        for (key, plan) in &mut state.plans {
            match *plan {
                Plan::At(at) if at <= now => {
                    due.push((at, key.clone()));
                    *plan = Plan::Queued;
                }
                Plan::At(at) => next = next.min(at),
                Plan::Queued => {}
            }
        }
        due.sort_unstable_by_key(|(at, _)| *at);
        state.queue.extend(due.into_iter().map(|(_, key)| key));
        state.hand_over();
        state.next_scan = next.max(now + TICK);
        state.next_scan
    }
}

impl<K: kube::Resource<DynamicType = ()>> State<K> {
    /// Hands queued keys to the controller while it has slots no one else will take.
    fn hand_over(&mut self) {
        let Some(tx) = &self.tx else { return };
        while self.running + self.handed.len() < self.slots {
            let Some(key) = self.queue.pop_front() else { return };
            let Some((owned, plan)) = self.plans.remove_entry(&key) else { continue };
            if plan != Plan::Queued {
                self.plans.insert(owned, plan); // re-planned since it was queued: not its turn yet
                continue;
            }
            if tx.unbounded_send(owned.into_ref()).is_err() {
                return;
            }
            self.handed.insert(key);
        }
    }
}

/// A running reconcile's slot: dropping it (the reconcile ended, however) hands the next
/// queued key over.
#[must_use]
pub struct Turn<K: kube::Resource<DynamicType = ()>>(Arc<Wakeups<K>>);

impl<K: kube::Resource<DynamicType = ()>> Drop for Turn<K> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap();
        state.running -= 1;
        state.hand_over();
    }
}

impl<K: kube::Resource<DynamicType = ()> + Send + Sync + 'static> Wakeups<K> {
    /// The keys as they fall due, in turn, for `Controller::reconcile_on`. The scanner holds
    /// only a weak reference: it ends when the wake-ups are dropped or the stream is.
    pub fn stream(self: &Arc<Self>) -> impl Stream<Item = ObjectRef<K>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded();
        let mut state = self.state.lock().unwrap();
        // Keys handed to an earlier stream will never start: their slots are free.
        state.handed.clear();
        state.tx = Some(tx.clone());
        drop(state);
        tokio::spawn(scanner(Arc::downgrade(self), tx));
        rx
    }
}

async fn scanner<K: kube::Resource<DynamicType = ()> + Send + Sync + 'static>(
    wakeups: Weak<Wakeups<K>>,
    tx: mpsc::UnboundedSender<ObjectRef<K>>,
) {
    loop {
        let Some(this) = wakeups.upgrade() else { return };
        let now = Instant::now();
        let wake = this.scan(now);
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
mod tests;
