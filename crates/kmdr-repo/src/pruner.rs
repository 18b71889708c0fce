//! `forget` and `prune`, as plans first (rustic's `PrunePlan`): the plan is
//! computed without changing anything, `--dry-run` prints it, and applying it
//! only deletes what it lists.
//!
//! Forget removes manifests; prune then removes chunks that no remaining
//! manifest references. Both run under an exclusive lock, so no backup can be
//! referencing a chunk that prune is deleting. A manifest that cannot be read
//! makes prune refuse: it cannot know which chunks that backup needs.
//!
//! On a repository under S3 Object Lock the plans also say what S3 still
//! holds: a backup stays whole while its manifest or proofs are held, a
//! chunk or segment while any version is; the rest is deleted version by
//! version (object_lock/removal.rs).

pub use crate::plans::{ForgetPlan, PrunePlan, SegmentPlan, SeriesPlan};

use crate::lock::RepoLock;
use crate::object_lock::{self, removal};
use crate::point::unusable_segments;
use crate::{Error, Repository, Result, SegmentName};
use kmdr_core::{BackupId, KeepPolicy};
use kmdr_store::ObjectInfo;
use std::collections::{BTreeMap, HashSet};

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
    let mut plan = ForgetPlan { policy, series, unreadable, held: Vec::new(), versions: BTreeMap::new() };
    if let Some(lock) = object_lock::locked(repo) {
        removal::hold_backups(repo, lock, &mut plan).await?;
    }
    Ok(plan)
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
    if let Some(lock) = object_lock::locked(repo) {
        return removal::plan_prune(lock, referenced).await;
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
    Ok(PrunePlan { referenced_chunks: referenced.len(), delete, delete_bytes, keep_bytes, ..Default::default() })
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
        let mut plan = plan_forget(repo, policy, kind).await?;
        let remove = plan.remove();
        // Compute the prune plan before deleting manifests, so that a refusal changes nothing.
        let mut prune_plan = if prune { Some(plan_prune(repo, &remove).await?) } else { None };
        let Some(lock) = object_lock::locked(repo) else {
            for (series, id) in plan.remove_by_series() {
                repo.store().delete(&crate::repository::manifest_key(id)).await?;
                // Its series marker after it (a marker of no backup is passed over).
                repo.store().delete(&repo.series_marker(series, id)).await?;
                // Its restore proofs go with it (after the manifest: a crash in
                // between leaves proofs of no backup, which nothing lists).
                repo.delete_proofs(id).await?;
            }
            // What was removed, for the tamper-evident catalog (after the
            // deletes: a crash in between is reported by verify, never hidden).
            crate::catalog::record_forgotten(repo, &remove, &[]).await?;
            if let Some(p) = &prune_plan {
                delete_chunks(repo, &p.delete).await?;
            }
            return Ok((plan, prune_plan));
        };
        // Under Object Lock: each backup's versions, manifest first, then its proofs.
        let mut late = false;
        for id in &remove {
            let versions = plan.versions.get(id).cloned().unwrap_or_default();
            if let Some(h) = removal::delete_group(lock, &id.to_string(), &versions).await? {
                plan.hold(id, h);
                late = true;
            }
        }
        crate::catalog::record_forgotten(repo, &plan.remove(), &[]).await?;
        if let Some(p) = &mut prune_plan {
            if late {
                // A backup S3 kept at the last moment keeps its chunks.
                *p = plan_prune(repo, &plan.remove()).await?;
            }
            let held = removal::delete_groups(lock, &p.versions).await?;
            p.absorb(held);
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
        let mut p = plan_prune(repo, &[]).await?;
        match object_lock::locked(repo) {
            Some(lock) => {
                let held = removal::delete_groups(lock, &p.versions).await?;
                p.absorb(held);
            }
            None => {
                delete_chunks(repo, &p.delete).await?;
                repo.sweep_series_markers().await?;
            }
        }
        // No writer holds a lock now; temp files older than an hour are debris.
        repo.store().sweep_incomplete(std::time::Duration::from_secs(3600)).await?;
        Ok(p)
    }
    .await;
    lock.release().await;
    result
}

/// The delta segments no full backup left (once `forgotten` are gone) can
/// use: those whose `last` is at or before the oldest full backup of their
/// series, or whose series has none; under Object Lock, those S3 holds are
/// listed apart.
pub async fn plan_segments(repo: &Repository, forgotten: &[BackupId]) -> Result<SegmentPlan> {
    let segments = unusable_segments(repo, forgotten).await?;
    let Some(lock) = object_lock::locked(repo) else {
        return Ok(SegmentPlan { remove: segments, ..Default::default() });
    };
    let keys = segments.iter().map(SegmentName::key).collect();
    let (versions, held) = removal::judge_keys(lock, "deltas/", keys).await?;
    let going: HashSet<&str> = versions.iter().map(|(k, _)| k.as_str()).collect();
    let remove = segments.iter().filter(|s| going.contains(s.key().as_str())).cloned().collect();
    Ok(SegmentPlan { remove, held, versions })
}

/// Remove the delta segments no remaining full backup can use (after
/// `forget`); returns what was removed and what S3 still holds.
pub async fn remove_segments(repo: &Repository) -> Result<SegmentPlan> {
    let mut p = plan_segments(repo, &[]).await?;
    match object_lock::locked(repo) {
        None => {
            for s in &p.remove {
                repo.delete_segment(s).await?;
            }
        }
        Some(lock) => {
            let held = removal::delete_groups(lock, &p.versions).await?;
            let keys: HashSet<&str> = held.iter().map(|h| h.object.as_str()).collect();
            p.remove.retain(|s| !keys.contains(s.key().as_str()));
            p.held.extend(held);
        }
    }
    let removed: Vec<String> = p.remove.iter().map(SegmentName::key).collect();
    crate::catalog::record_forgotten(repo, &[], &removed).await?;
    Ok(p)
}

async fn delete_chunks(repo: &Repository, keys: &[String]) -> Result<()> {
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(keys).map(|k| repo.store().delete(k)).buffer_unordered(8).try_collect::<Vec<()>>().await?;
    Ok(())
}
