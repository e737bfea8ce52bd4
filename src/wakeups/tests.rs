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

/// The next key, or None if none comes within `wait` (virtual time).
async fn next_within(
    stream: &mut (impl Stream<Item = ObjectRef<ConfigMap>> + Unpin),
    wait: Duration,
) -> Option<String> {
    tokio::time::timeout(wait, stream.next()).await.ok().flatten().map(|k| k.name)
}

#[tokio::test(start_paused = true)]
async fn due_keys_are_handed_over_oldest_first_and_only_as_slots_free_up() {
    let wakeups: Arc<Wakeups<ConfigMap>> = Arc::new(Wakeups::new(2));
    let due = [("e", 5), ("b", 2), ("g", 7), ("a", 1), ("d", 4), ("f", 6), ("c", 3)];
    for (name, secs) in due {
        wakeups.set(key(name), Some(Duration::from_secs(secs)));
    }
    // All due before the first scan: the order they are handed over in is the queue's.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut stream = wakeups.stream();
    let long = Duration::from_secs(60);
    assert_eq!(next_within(&mut stream, long).await.as_deref(), Some("a"));
    assert_eq!(next_within(&mut stream, long).await.as_deref(), Some("b"));
    assert_eq!(next_within(&mut stream, long).await, None, "both slots are taken");
    let a = wakeups.begin(&key("a"));
    assert_eq!(next_within(&mut stream, long).await, None, "a reconciling still takes its slot");
    drop(a);
    let mut rest = Vec::new();
    // Each freed slot goes to the oldest due key; a reconcile the watch started takes one too.
    let watch = wakeups.begin(&key("x"));
    for _ in 0..5 {
        let next = next_within(&mut stream, long).await.expect("a freed slot is handed over");
        drop(wakeups.begin(&key(&next)));
        rest.push(next);
        if rest.len() == 1 {
            drop(wakeups.begin(&key("b")));
        }
    }
    assert_eq!(rest, ["c", "d", "e", "f", "g"]);
    assert_eq!(next_within(&mut stream, long).await, None);
    drop(watch);
    assert!(wakeups.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_key_re_planned_while_it_waits_for_a_slot_keeps_its_new_plan() {
    let wakeups: Arc<Wakeups<ConfigMap>> = Arc::new(Wakeups::new(1));
    let mut stream = wakeups.stream();
    wakeups.set(key("a"), Some(Duration::from_secs(1)));
    wakeups.set(key("b"), Some(Duration::from_secs(2)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(next_within(&mut stream, Duration::from_secs(1)).await.as_deref(), Some("a"));
    assert_eq!(wakeups.remaining(&key("b")), Some(Duration::ZERO), "b is due, waiting");
    // A watch event reconciled b meanwhile and planned its next look for later.
    wakeups.set(key("b"), Some(Duration::from_secs(30)));
    drop(wakeups.begin(&key("a")));
    let start = Instant::now();
    assert_eq!(next_within(&mut stream, Duration::from_secs(60)).await.as_deref(), Some("b"));
    assert!(start.elapsed() >= Duration::from_secs(30), "the old turn was not used: {:?}", start.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_key_handed_over_for_a_deleted_resource_frees_its_slot() {
    let wakeups: Arc<Wakeups<ConfigMap>> = Arc::new(Wakeups::new(1));
    let mut stream = wakeups.stream();
    for (name, secs) in [("gone", 1), ("next", 2), ("last", 3)] {
        wakeups.set(key(name), Some(Duration::from_secs(secs)));
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let long = Duration::from_secs(60);
    assert_eq!(next_within(&mut stream, long).await.as_deref(), Some("gone"));
    assert_eq!(next_within(&mut stream, long).await, None, "the one slot is taken");
    wakeups.not_found(&key("gone"));
    assert_eq!(next_within(&mut stream, long).await.as_deref(), Some("next"));
    // The housekeeping frees it too, if the controller never said.
    wakeups.retain(|k| k.name != "next");
    assert_eq!(next_within(&mut stream, long).await.as_deref(), Some("last"));
}
