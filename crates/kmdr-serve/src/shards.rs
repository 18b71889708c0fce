//! Which shard runs which unit when `kmdr serve --shards N` replicas divide
//! the plan among themselves (coordinator.rs holds one Lease per shard).
//!
//! A unit belongs to shard `fnv1a64(key) mod N`, where the key is the unit's
//! name for the units the plan names (the under-cluster's etcd, the platform
//! release, the volumes) and `datastore <name>` for a datastore: all the
//! tenants of one datastore go together, so that one replica reads the
//! datastore and watches it once. The hash depends on the key alone, not on
//! the rest of the plan, so that replicas running two versions of a plan
//! during a rollout still agree on every unit both versions name.
//!
//! Work on the repository as a whole (retention, Object Lock extension, the
//! drill report on the status page) runs on the holder of shard 0.

use kmdr_plan::plan::{DatastoreSpec, Plan};
use kmdr_plan::unit::{self, Unit};
use std::collections::{BTreeMap, BTreeSet};

/// The shards this replica runs, of how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shards {
    pub count: u32,
    pub held: BTreeSet<u32>,
}

impl Shards {
    /// Whether the unit or datastore of this key (see [`unit_key`],
    /// [`datastore_key`]) is this replica's to run.
    pub fn owns(&self, key: &str) -> bool {
        self.held.contains(&shard_of(key, self.count))
    }

    /// Whether this replica runs what concerns the whole repository.
    pub fn runs_repository_tasks(&self) -> bool {
        self.held.contains(&0)
    }
}

/// FNV-1a, 64 bits: small, and stable across Rust releases (the standard
/// library's hasher is not), which the assignment must be.
fn fnv1a64(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The shard of a key, of `count`.
pub fn shard_of(key: &str, count: u32) -> u32 {
    (fnv1a64(key) % u64::from(count.max(1))) as u32
}

/// The key of a unit the plan names.
pub fn unit_key(u: &Unit) -> String {
    u.name()
}

/// The key of a datastore (every tenant found on it).
pub fn datastore_key(d: &DatastoreSpec) -> String {
    format!("datastore {}", d.name)
}

/// Every shard's units and datastores, for `--dry-run` and for messages.
pub fn assignment(plan: &Plan, count: u32) -> BTreeMap<u32, Vec<String>> {
    let mut out: BTreeMap<u32, Vec<String>> = (0..count.max(1)).map(|i| (i, Vec::new())).collect();
    for spec in &plan.layers {
        let units = unit::named_units(spec).into_iter().filter(|u| !matches!(u, Unit::Tenant { .. }));
        let keys = units.map(|u| unit_key(&u)).chain(unit::datastores(spec).iter().map(datastore_key));
        for key in keys {
            out.entry(shard_of(&key, count)).or_default().push(key);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_answers() {
        // From the FNV reference test vectors (Fowler, Noll, Vo).
        assert_eq!(fnv1a64(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn keys_spread_over_the_shards_and_each_lands_in_one() {
        let mut counts = [0u32; 3];
        for i in 0..3000 {
            let key = format!("datastore ds-{i}");
            let s = shard_of(&key, 3);
            counts[s as usize] += 1;
            let held = |h: u32| Shards { count: 3, held: [h].into() };
            assert_eq!((0..3).filter(|h| held(*h).owns(&key)).count(), 1, "{key} belongs to exactly one shard");
        }
        assert!(counts.iter().all(|c| (800..=1200).contains(c)), "uneven: {counts:?}");
        assert_eq!(shard_of("anything", 1), 0);
        assert_eq!(shard_of("anything", 0), 0, "no shards counts as one");
    }

    #[test]
    fn only_shard_zero_runs_the_repository_tasks() {
        assert!(Shards { count: 2, held: [0].into() }.runs_repository_tasks());
        assert!(!Shards { count: 2, held: [1].into() }.runs_repository_tasks());
    }
}
