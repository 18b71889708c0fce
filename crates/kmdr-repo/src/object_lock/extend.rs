//! `kmdr repo extend-locks`: keep what the repository still needs under
//! retention, as kopia's `extend-object-locks` does.
//!
//! The bucket's default retention locks each object for the period from its
//! PUT; a chunk written a year ago and still referenced by today's backup
//! would otherwise be deletable by anyone with delete rights. So every object
//! still needed (`config`, `keys/`, every manifest, every chunk a manifest
//! references, delta segments, reports, restore proofs) whose retain-until
//! date is within half the period of now gets a new date of now + the
//! period, in the repository's mode (PutObjectRetention on its current
//! version). Chunks no manifest references are left to lapse (prune removes
//! them); when a manifest cannot be read (damaged, or a write-only key) every
//! chunk is treated as needed.

use super::{LockError, Locked};
use crate::Repository;
use crate::lock::RepoLock;
use chrono::{DateTime, Utc};
use kmdr_store::object_lock::Retention;
use serde::Serialize;
use std::collections::HashSet;

/// HEADs and PutObjectRetentions at once.
const PARALLEL: usize = 16;

/// One object whose retention was (or, in a dry run, would be) moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Extended {
    pub object: String,
    /// Its retain-until date before; `None` when it had none.
    pub from: Option<DateTime<Utc>>,
}

/// What an `extend-locks` pass did.
#[derive(Debug, Clone, Serialize)]
pub struct ExtendReport {
    pub dry_run: bool,
    /// Objects still needed, each asked for its retention.
    pub checked: usize,
    /// Objects retained until before this were extended.
    pub threshold: DateTime<Utc>,
    /// Their new retain-until date.
    pub until: DateTime<Utc>,
    pub extended: Vec<Extended>,
    /// Of those, how many had already lapsed (or had no retention): deletable until now.
    pub lapsed: usize,
    /// Needed objects not found (a missing chunk is `verify`'s to report).
    pub missing: Vec<String>,
}

/// Every object the repository still needs, sorted.
pub async fn needed_objects(repo: &Repository) -> crate::Result<Vec<String>> {
    let store = repo.store();
    let mut keys = vec!["config".to_string()];
    for prefix in ["keys/", "backups/", "deltas/", "reports/", "verifications/"] {
        keys.extend(store.list(prefix).await?.into_iter().map(|o| o.key));
    }
    let (mut referenced, mut every_chunk) = (HashSet::new(), false);
    for id in repo.list_backups().await? {
        match repo.load_manifest(&id).await {
            Ok(m) => referenced.extend(m.chunk_ids().map(str::to_string)),
            Err(crate::Error::Store(e)) => return Err(e.into()),
            // Unreadable: its chunks are unknown, so every chunk counts as needed.
            Err(_) => every_chunk = true,
        }
    }
    for o in store.list("data/").await? {
        if every_chunk || referenced.contains(o.key.rsplit('/').next().unwrap_or_default()) {
            keys.push(o.key);
        }
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// The retention of each of `keys`' current version (`None`: not found).
pub(crate) async fn retentions(lock: Locked<'_>, keys: &[String]) -> Result<Vec<Option<Retention>>, LockError> {
    super::each(keys.iter().collect(), PARALLEL, |k: &String| async move { Ok(lock.api.head(k, None).await?) }).await
}

/// Extend the retention of every needed object retained until before now +
/// half the period to now + the period. `progress` hears each step. Under a
/// shared repository lock, so that no forget or prune deletes meanwhile.
pub async fn extend_locks(
    repo: &Repository,
    dry_run: bool,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<ExtendReport, LockError> {
    let lock = super::locked(repo).ok_or_else(|| LockError::NotLocked { location: repo.location() })?;
    let guard = if dry_run {
        None
    } else {
        Some(RepoLock::acquire(repo.store().clone(), false, "kmdr repo extend-locks").await?)
    };
    let result = pass(repo, lock, dry_run, progress).await;
    if let Some(g) = guard {
        g.release().await;
    }
    result
}

async fn pass(
    repo: &Repository,
    lock: Locked<'_>,
    dry_run: bool,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<ExtendReport, LockError> {
    progress("listing what the repository still needs (every manifest is read for its chunks)");
    let keys = needed_objects(repo).await?;
    progress(&format!("reading the retention of {} objects", keys.len()));
    let now = Utc::now();
    let threshold = now + lock.config.extend_within();
    let until = now + lock.config.retention();
    let found = retentions(lock, &keys).await?;
    let (mut todo, mut missing) = (Vec::new(), Vec::new());
    for (key, r) in keys.iter().zip(found) {
        match r {
            None => missing.push(key.clone()),
            Some(r) if r.until.is_none_or(|u| u < threshold) => todo.push((key.clone(), r)),
            Some(_) => {}
        }
    }
    let lapsed = todo.iter().filter(|(_, r)| r.until.is_none_or(|u| u <= now)).count();
    if !dry_run && !todo.is_empty() {
        progress(&format!("extending {} objects to {}", todo.len(), until.format("%Y-%m-%dT%H:%M:%SZ")));
        let mode = lock.config.mode;
        super::each(todo.iter().collect(), PARALLEL, |(key, r): &(String, Retention)| async move {
            Ok::<_, LockError>(lock.api.put_retention(key, &r.version_id, mode, until).await?)
        })
        .await?;
    }
    Ok(ExtendReport {
        dry_run,
        checked: keys.len(),
        threshold,
        until,
        extended: todo.into_iter().map(|(object, r)| Extended { object, from: r.until }).collect(),
        lapsed,
        missing,
    })
}
