//! What brings a resource back before its wake-up: a new generation (spec), the pause
//! annotation turning on or off, or a new reconcile request. Other metadata (labels, other
//! annotations, the operator's own status writes) does not cost a Graph poll.
//!
//! Why not kube-runtime's `predicate_filter`: its cache keeps name, namespace and uid as
//! strings per resource, and forgets a deleted resource only after an hour. Here an entry
//! is two integers (the uid's hash, the triggers' hash), and deletions are dropped as seen.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::api;

/// The triggers' hash of every resource seen, by the hash of its uid.
#[derive(Clone, Default)]
pub struct Triggers(Arc<Mutex<HashMap<u64, u64>>>);

impl Triggers {
    /// Whether `obj` (just applied to the cache) brings its resource back: seen for the
    /// first time, or one of its triggers changed.
    pub fn fired(&self, obj: &impl Resource) -> bool {
        let meta = obj.meta();
        let value = hash(&(meta.generation, api::is_paused(meta), api::reconcile_requested_at(meta)));
        self.0.lock().unwrap().insert(uid_key(obj), value) != Some(value)
    }

    /// Forgets a deleted resource as the watch reports it (a later resource of the same name
    /// has another uid, so it is new either way).
    pub fn observe<K: Resource>(&self, event: &Result<watcher::Event<K>, watcher::Error>) {
        if let Ok(watcher::Event::Delete(obj)) = event {
            self.0.lock().unwrap().remove(&uid_key(obj));
        }
    }

    /// Keeps only the resources in `cache` (one deleted while the watch was down is never
    /// reported as deleted; the housekeeping calls this).
    pub fn retain<'a, K: Resource + 'a>(&self, cache: impl IntoIterator<Item = &'a K>) {
        let live: HashSet<u64> = cache.into_iter().map(uid_key).collect();
        self.0.lock().unwrap().retain(|key, _| live.contains(key));
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn uid_key(obj: &impl Resource) -> u64 {
    hash(&obj.uid())
}

fn hash(value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PAUSED, PasswordResetOperationSpec, RECONCILE_REQUESTED_AT};
    use crate::context::Pro;

    fn pro(uid: &str, generation: i64) -> Pro {
        let spec: PasswordResetOperationSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        let mut obj = Pro::new("r", spec);
        obj.metadata.uid = Some(uid.into());
        obj.metadata.generation = Some(generation);
        obj
    }

    #[test]
    fn only_a_new_resource_or_a_changed_trigger_fires() {
        let triggers = Triggers::default();
        let first = pro("u1", 1);
        let cases: Vec<(&str, Pro, bool)> = vec![
            ("new", first.clone(), true),
            ("same again (the operator's own status write)", first.clone(), false),
            (
                "a label",
                {
                    let mut o = first.clone();
                    o.labels_mut().insert("team".into(), "a".into());
                    o
                },
                false,
            ),
            ("a new generation", pro("u1", 2), true),
            (
                "paused",
                {
                    let mut o = pro("u1", 2);
                    o.annotations_mut().insert(PAUSED.into(), "true".into());
                    o
                },
                true,
            ),
            ("unpaused", pro("u1", 2), true),
            (
                "a reconcile request",
                {
                    let mut o = pro("u1", 2);
                    o.annotations_mut().insert(RECONCILE_REQUESTED_AT.into(), "now".into());
                    o
                },
                true,
            ),
            ("another resource", pro("u2", 1), true),
        ];
        for (what, obj, fires) in cases {
            assert_eq!(triggers.fired(&obj), fires, "{what}");
        }
    }

    #[test]
    fn deleted_resources_are_forgotten() {
        let triggers = Triggers::default();
        let (gone, kept, missed) = (pro("gone", 1), pro("kept", 1), pro("missed", 1));
        for obj in [&gone, &kept, &missed] {
            assert!(triggers.fired(obj));
        }
        triggers.observe(&Ok(watcher::Event::Delete(gone.clone())));
        assert_eq!(triggers.len(), 2);
        // Deleted while the watch was down: only the cache says so.
        triggers.retain([&kept]);
        assert_eq!(triggers.len(), 1);
        assert!(!triggers.fired(&kept), "what stays is remembered");
        assert!(triggers.fired(&missed), "what was forgotten is new again");
    }
}
