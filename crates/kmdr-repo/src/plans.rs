//! The plans of `forget`, `prune` and the removal of unusable delta
//! segments: what they would delete and what S3 Object Lock holds back. Apart
//! from pruner.rs, which computes and applies them, so that
//! object_lock/removal.rs can fill them without importing the pruner.

use crate::SegmentName;
use crate::object_lock::Held;
use kmdr_core::{BackupId, KeepPolicy, RetentionDecision};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// Versions to delete, by group (a backup, a chunk, a segment): (key, version id), in order.
pub(crate) type VersionGroups = Vec<(String, Vec<(String, String)>)>;

/// The retention verdicts for one series.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesPlan {
    pub series: String,
    pub decisions: Vec<RetentionDecision<BackupId>>,
}

/// What `forget` would remove.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetPlan {
    pub policy: KeepPolicy,
    pub series: Vec<SeriesPlan>,
    /// Backups whose manifest cannot be read; always kept, listed for the user.
    pub unreadable: Vec<String>,
    /// Backups the policy drops that S3 Object Lock keeps whole for now
    /// (their decision keeps them, for `object-lock`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<Held>,
    /// Under Object Lock: the versions removing each dropped backup deletes.
    #[serde(skip)]
    pub(crate) versions: BTreeMap<BackupId, Vec<(String, String)>>,
}

impl ForgetPlan {
    /// The backups to remove.
    pub fn remove(&self) -> Vec<BackupId> {
        self.series.iter().flat_map(|s| s.decisions.iter().filter(|d| !d.keep).map(|d| d.item.clone())).collect()
    }

    /// The backups to remove, each with its series.
    pub fn remove_by_series(&self) -> impl Iterator<Item = (&str, &BackupId)> {
        self.series
            .iter()
            .flat_map(|s| s.decisions.iter().filter(|d| !d.keep).map(move |d| (s.series.as_str(), &d.item)))
    }

    /// Keep `id` after all: S3 still holds part of it.
    pub(crate) fn hold(&mut self, id: &BackupId, held: Held) {
        for d in self.series.iter_mut().flat_map(|s| s.decisions.iter_mut()).filter(|d| &d.item == id) {
            d.keep = true;
            d.reasons = vec!["object-lock"];
        }
        self.versions.remove(id);
        self.held.push(held);
    }
}

/// What `prune` would delete.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PrunePlan {
    pub referenced_chunks: usize,
    /// Chunk keys no remaining backup references.
    pub delete: Vec<String>,
    pub delete_bytes: u64,
    pub keep_bytes: u64,
    /// Unreferenced chunks S3 Object Lock still holds (kept, deleted by a later prune).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<Held>,
    /// Under Object Lock: the versions of each chunk in `delete`.
    #[serde(skip)]
    pub(crate) versions: VersionGroups,
}

impl PrunePlan {
    /// Chunks found held while deleting stay.
    pub(crate) fn absorb(&mut self, held: Vec<Held>) {
        let keys: HashSet<&str> = held.iter().map(|h| h.object.as_str()).collect();
        self.delete.retain(|k| !keys.contains(k.as_str()));
        self.held.extend(held);
    }
}

/// The delta segments no remaining full backup can use, and what becomes of them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SegmentPlan {
    /// Removed (in a plan: to be removed).
    pub remove: Vec<SegmentName>,
    /// Under Object Lock: segments S3 still holds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<Held>,
    #[serde(skip)]
    pub(crate) versions: VersionGroups,
}
