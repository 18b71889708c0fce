//! `forget` and `prune`, as plans first (rustic's `PrunePlan`): the plan is
//! computed without changing anything, `--dry-run` prints it, and applying it
//! only deletes what it lists.
//!
//! Forget removes manifests; prune then removes chunks that no remaining
//! manifest references. Both run under an exclusive lock, so no backup can be
//! referencing a chunk that prune is deleting. A manifest that cannot be read
//! makes prune refuse: it cannot know which chunks that backup needs.

use crate::lock::RepoLock;
use crate::{Error, Repository, Result};
use kmdr_core::{BackupId, KeepPolicy, RetentionDecision};
use kmdr_store::ObjectInfo;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

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
}

impl ForgetPlan {
    /// The backups to remove.
    pub fn remove(&self) -> Vec<BackupId> {
        self.series.iter().flat_map(|s| s.decisions.iter().filter(|d| !d.keep).map(|d| d.item.clone())).collect()
    }
}

/// What `prune` would delete.
#[derive(Debug, Clone, Serialize)]
pub struct PrunePlan {
    pub referenced_chunks: usize,
    /// Chunk keys no remaining backup references.
    pub delete: Vec<String>,
    pub delete_bytes: u64,
    pub keep_bytes: u64,
}

/// Apply `policy` to every series (optionally only backups of `kind`).
pub async fn plan_forget(repo: &Repository, policy: KeepPolicy, kind: Option<&str>) -> Result<ForgetPlan> {
    let mut by_series: BTreeMap<String, Vec<(BackupId, chrono::DateTime<chrono::Utc>)>> = BTreeMap::new();
    let mut unreadable = Vec::new();
    for id in repo.list_backups().await? {
        if kind.is_some_and(|k| id.kind() != k) {
            continue;
        }
        match repo.load_manifest(&id).await {
            Ok(m) => by_series.entry(m.series.clone()).or_default().push((id, m.started_at)),
            Err(Error::Damaged { reason, .. }) => unreadable.push(format!("{id}: {reason}")),
            Err(e) => return Err(e),
        }
    }
    let series =
        by_series.into_iter().map(|(series, items)| SeriesPlan { series, decisions: policy.apply(&items) }).collect();
    Ok(ForgetPlan { policy, series, unreadable })
}

/// Which chunks would be unreferenced once `removing` are gone.
pub async fn plan_prune(repo: &Repository, removing: &[BackupId]) -> Result<PrunePlan> {
    let removing: HashSet<&BackupId> = removing.iter().collect();
    let mut referenced: HashSet<String> = HashSet::new();
    for id in repo.list_backups().await? {
        if removing.contains(&id) {
            continue;
        }
        let m = repo.load_manifest(&id).await.map_err(|e| match e {
            Error::Damaged { object, reason } => Error::Damaged {
                object,
                reason: format!("{reason}; prune refuses to run because it cannot tell which data this backup needs (remove it with `kmdr forget` if it is beyond repair)"),
            },
            e => e,
        })?;
        referenced.extend(m.chunk_ids().map(str::to_string));
    }
    let objects: Vec<ObjectInfo> = repo.store().list("data/").await?;
    let (mut delete, mut delete_bytes, mut keep_bytes) = (Vec::new(), 0, 0);
    for o in objects {
        let id = o.key.rsplit('/').next().unwrap_or_default();
        if referenced.contains(id) {
            keep_bytes += o.size;
        } else {
            delete_bytes += o.size;
            delete.push(o.key);
        }
    }
    delete.sort();
    Ok(PrunePlan { referenced_chunks: referenced.len(), delete, delete_bytes, keep_bytes })
}

/// Run forget (and prune when asked) under an exclusive lock. The plans are
/// recomputed under the lock, so what is deleted is exactly what they list.
pub async fn forget(
    repo: &Repository,
    policy: KeepPolicy,
    kind: Option<&str>,
    prune: bool,
) -> Result<(ForgetPlan, Option<PrunePlan>)> {
    let lock = RepoLock::acquire(repo.store().clone(), true, "kmdr forget").await?;
    let result = async {
        let plan = plan_forget(repo, policy, kind).await?;
        let remove = plan.remove();
        // Compute the prune plan before deleting manifests, so that a refusal changes nothing.
        let prune_plan = if prune { Some(plan_prune(repo, &remove).await?) } else { None };
        for id in &remove {
            repo.store().delete(&crate::repository::manifest_key(id)).await?;
            // Its restore proofs go with it (after the manifest: a crash in
            // between leaves proofs of no backup, which nothing lists).
            repo.delete_proofs(id).await?;
        }
        if let Some(p) = &prune_plan {
            delete_chunks(repo, &p.delete).await?;
        }
        Ok((plan, prune_plan))
    }
    .await;
    lock.release().await;
    result
}

/// Run prune alone under an exclusive lock.
pub async fn prune(repo: &Repository) -> Result<PrunePlan> {
    let lock = RepoLock::acquire(repo.store().clone(), true, "kmdr prune").await?;
    let result = async {
        let p = plan_prune(repo, &[]).await?;
        delete_chunks(repo, &p.delete).await?;
        // No writer holds a lock now; temp files older than an hour are debris.
        repo.store().sweep_incomplete(std::time::Duration::from_secs(3600)).await?;
        Ok(p)
    }
    .await;
    lock.release().await;
    result
}

async fn delete_chunks(repo: &Repository, keys: &[String]) -> Result<()> {
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(keys).map(|k| repo.store().delete(k)).buffer_unordered(8).try_collect::<Vec<()>>().await?;
    Ok(())
}
