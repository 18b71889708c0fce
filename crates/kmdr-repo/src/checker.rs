//! `verify`: re-read every byte of the selected backups. Each manifest is
//! opened, each chunk it references is fetched once (however many backups
//! share it) and checked: checksum, authenticity, id = HMAC(plaintext),
//! length. A backup is damaged when its manifest or any of its chunks is.

use crate::restorer::read_chunk;
use crate::{Error, Progress, Repository, Result};
use futures::StreamExt;
use kmdr_core::{BackupId, Manifest};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Chunks checked at once.
pub const VERIFY_CONCURRENCY: usize = 4;
/// Manifests read at once (small objects: the request is the cost).
const MANIFEST_READS: usize = 16;

/// The verdict on one backup.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BackupCheck {
    pub id: String,
    pub ok: bool,
    /// One line per damaged or missing object.
    pub problems: Vec<String>,
}

/// The result of `verify`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VerifyReport {
    pub backups: Vec<BackupCheck>,
    pub chunks_checked: usize,
    pub bytes_checked: u64,
    /// Chunks no manifest references (left by interrupted backups; `prune` removes them).
    pub unreferenced_chunks: usize,
}

impl VerifyReport {
    /// The backups that failed.
    pub fn damaged(&self) -> impl Iterator<Item = &BackupCheck> {
        self.backups.iter().filter(|b| !b.ok)
    }
}

/// Verify `ids` (every backup when `None`).
pub async fn verify(repo: &Repository, ids: Option<Vec<BackupId>>, progress: Option<Progress>) -> Result<VerifyReport> {
    // A shared lock: prune must not delete chunks while they are being checked.
    let lock = crate::lock::RepoLock::acquire(repo.store().clone(), false, "kmdr verify").await?;
    let report = verify_locked(repo, ids, progress).await;
    lock.release().await;
    report
}

async fn verify_locked(
    repo: &Repository,
    ids: Option<Vec<BackupId>>,
    progress: Option<Progress>,
) -> Result<VerifyReport> {
    let all = repo.list_backups().await?;
    let selected = ids.unwrap_or_else(|| all.clone());
    // Each manifest is read once, several at a time (on S3 one at a time is
    // a round trip each): for the selected backups' chunks and for the set of
    // referenced chunks of the whole repository.
    let mut manifests: HashMap<BackupId, Result<Manifest>> = futures::stream::iter(&all)
        .map(|id| async move { (id.clone(), repo.load_manifest(id).await) })
        .buffered(MANIFEST_READS)
        .collect()
        .await;
    let mut problems: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut needs: HashMap<String, (u64, Vec<String>)> = HashMap::new();
    for id in &selected {
        let p = problems.entry(id.to_string()).or_default();
        let loaded = match manifests.remove(id) {
            Some(r) => r,
            None => repo.load_manifest(id).await,
        };
        // Damage is reported per backup; anything else (storage down) stops verify.
        if let Err(e) = &loaded
            && !matches!(e, Error::Damaged { .. })
        {
            return Err(loaded.expect_err("checked"));
        }
        match &loaded {
            Ok(m) => {
                for f in &m.files {
                    let sum: u64 = f.chunks.iter().map(|c| c.len).sum();
                    if sum != f.size {
                        p.push(format!("file {}: chunks hold {sum} bytes, the manifest says {}", f.name, f.size));
                    }
                    for c in &f.chunks {
                        needs.entry(c.id.clone()).or_insert_with(|| (c.len, Vec::new())).1.push(id.to_string());
                    }
                }
            }
            Err(Error::Damaged { object, reason }) => p.push(format!("{object}: {reason}")),
            Err(_) => {}
        }
        manifests.insert(id.clone(), loaded);
    }
    let mut bytes = 0u64;
    let checks = futures::stream::iter(needs.iter())
        .map(|(cid, (len, _))| async move { (cid, read_chunk(repo, cid, *len, true).await.map(|p| p.len() as u64)) })
        .buffer_unordered(VERIFY_CONCURRENCY)
        .collect::<Vec<_>>();
    let results = checks.await;
    for (cid, r) in results {
        match r {
            Ok(n) => {
                bytes += n;
                if let Some(p) = &progress {
                    p(n);
                }
            }
            Err(Error::Damaged { object, reason }) => {
                for b in &needs[cid].1 {
                    problems.get_mut(b).expect("selected").push(format!("{object}: {reason}"));
                }
            }
            Err(e) => return Err(e),
        }
    }
    // Unreferenced data, relative to every backup (not just the selected ones).
    let mut referenced: HashSet<String> = HashSet::new();
    for m in manifests.values().flatten() {
        referenced.extend(m.chunk_ids().map(str::to_string));
    }
    let unreferenced = repo
        .store()
        .list("data/")
        .await?
        .iter()
        .filter(|o| o.key.rsplit('/').next().is_some_and(|n| !referenced.contains(n)))
        .count();
    Ok(VerifyReport {
        backups: problems
            .into_iter()
            .map(|(id, problems)| BackupCheck { id, ok: problems.is_empty(), problems })
            .collect(),
        chunks_checked: needs.len(),
        bytes_checked: bytes,
        unreferenced_chunks: unreferenced,
    })
}
