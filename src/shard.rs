//! Sharding, Kubernetes-style (as kube-state-metrics does it): with `--total-shards M`,
//! replica `--shard N` owns the resources whose UID hashes to N modulo M.

use kube::ResourceExt;
use kube::runtime::watcher;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    total: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, total: 1 }
    }
}

impl Shard {
    pub fn new(index: u32, total: u32) -> Result<Self, String> {
        if total == 0 || index >= total {
            return Err(format!("--shard must be below --total-shards (got shard {index} of {total})"));
        }
        Ok(Shard { index, total })
    }

    /// Whether this replica owns `uid`. FNV-1a, so every replica (and every version of
    /// the operator) computes the same owner.
    pub fn owns_uid(&self, uid: &str) -> bool {
        if self.total == 1 {
            return true;
        }
        let hash = uid.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        (hash % self.total as u64) as u32 == self.index
    }

    pub fn owns(&self, obj: &impl kube::Resource) -> bool {
        self.owns_uid(&obj.uid().unwrap_or_default())
    }

    /// Keeps watch events about owned objects (and the list markers).
    pub fn owns_event<K: kube::Resource>(&self, event: &Result<watcher::Event<K>, watcher::Error>) -> bool {
        match event {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o)) => self.owns(o),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_uid_has_exactly_one_owner_and_shards_are_balanced() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3).unwrap()).collect();
        let mut counts = [0; 3];
        for n in 0..3000 {
            let uid = format!("6f1c2d3e-{n:04x}-4a5b-8c9d-0e1f2a3b4c5d");
            let owners: Vec<usize> = (0..3).filter(|&i| shards[i].owns_uid(&uid)).collect();
            assert_eq!(owners.len(), 1, "{uid}");
            counts[owners[0]] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        assert!(Shard::new(3, 3).is_err() && Shard::new(0, 0).is_err());
    }
}
