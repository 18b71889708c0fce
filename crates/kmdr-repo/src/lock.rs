//! Repository locks, as in restic: backups and restores take a shared lock,
//! `prune` takes an exclusive one. Adding a backup never conflicts with another
//! backup (chunk writes are idempotent, manifests have unique names); only
//! deleting chunks does, because a concurrent backup may be about to reference
//! a chunk that looks unreferenced.
//!
//! Acquire = write our lock object, then list `locks/`: if a conflicting lock
//! that is not stale exists, delete ours and fail. Two racing writers both see
//! each other and both back off, so the race is safe. A lock is refreshed every
//! 5 minutes and is stale when not refreshed for 30 minutes, or when it was
//! taken on this host by a process that no longer runs.

use crate::crypto::hostname;
use crate::{Error, Result};
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use kmdr_store::Store;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A lock not refreshed for this long is stale.
pub const STALE_AFTER: Duration = Duration::minutes(30);
const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// The JSON of a `locks/<id>` object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockRecord {
    pub hostname: String,
    pub pid: u32,
    pub exclusive: bool,
    pub command: String,
    pub created: DateTime<Utc>,
    pub refreshed: DateTime<Utc>,
    /// The holder's PID namespace (`/proc/self/ns/pid`), so that a pid is only
    /// judged dead by a process that can see it (containers share host names).
    #[serde(default)]
    pub pid_namespace: String,
}

/// This process's PID namespace, e.g. `pid:[4026531836]`.
pub fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid").map(|p| p.display().to_string()).unwrap_or_default()
}

impl LockRecord {
    /// Whether the lock no longer protects anything.
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        now - self.refreshed > STALE_AFTER
            || (self.hostname == hostname()
                && !self.pid_namespace.is_empty()
                && self.pid_namespace == pid_namespace()
                && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists())
    }

    fn describe(&self) -> String {
        format!(
            "`{}` ({} lock, pid {} on {}, since {})",
            self.command,
            if self.exclusive { "exclusive" } else { "shared" },
            self.pid,
            self.hostname,
            self.created.format("%Y-%m-%d %H:%M:%SZ")
        )
    }
}

/// A held lock; release it with [`RepoLock::release`]. Dropping it without
/// releasing removes it in the background (best effort).
#[derive(Debug)]
pub struct RepoLock {
    store: Arc<dyn Store>,
    key: String,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

/// Every lock in the repository with its key.
pub async fn list_locks(store: &Arc<dyn Store>) -> Result<Vec<(String, LockRecord)>> {
    let mut out = Vec::new();
    for o in store.list("locks/").await? {
        if let Ok(raw) = store.get(&o.key).await
            && let Ok(rec) = serde_json::from_slice::<LockRecord>(&raw)
        {
            out.push((o.key, rec));
        }
    }
    Ok(out)
}

impl RepoLock {
    /// Take a shared (`exclusive = false`) or exclusive lock for `command`.
    pub async fn acquire(store: Arc<dyn Store>, exclusive: bool, command: &str) -> Result<RepoLock> {
        let now = Utc::now();
        let rec = LockRecord {
            hostname: hostname(),
            pid: std::process::id(),
            exclusive,
            command: command.into(),
            created: now,
            refreshed: now,
            pid_namespace: pid_namespace(),
        };
        let key = format!("locks/{}-{:08x}", now.timestamp_millis(), rand::random::<u32>());
        store.put(&key, Bytes::from(serde_json::to_vec(&rec).expect("json"))).await?;
        let conflict = list_locks(&store)
            .await?
            .into_iter()
            .find(|(k, other)| k != &key && (exclusive || other.exclusive) && !other.is_stale(Utc::now()));
        if let Some((_, other)) = conflict {
            let _ = store.delete(&key).await;
            return Err(Error::Locked { holder: other.describe() });
        }
        let (s, k, mut r) = (store.clone(), key.clone(), rec);
        let refresher = tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH_EVERY).await;
                r.refreshed = Utc::now();
                if let Err(e) = s.put(&k, Bytes::from(serde_json::to_vec(&r).expect("json"))).await {
                    tracing::warn!("could not refresh repository lock {k}: {e}");
                }
            }
        });
        Ok(RepoLock { store, key, refresher: Some(refresher) })
    }

    /// Remove the lock.
    pub async fn release(mut self) {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        if let Err(e) = self.store.delete(&self.key).await {
            tracing::warn!("could not remove repository lock {}: {e}", self.key);
        }
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        if let Some(r) = self.refresher.take() {
            r.abort();
            let (s, k) = (self.store.clone(), self.key.clone());
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(async move {
                    let _ = s.delete(&k).await;
                });
            }
        }
    }
}

/// Remove locks: only stale ones, or every lock with `all`. Returns the removed records.
pub async fn unlock(store: &Arc<dyn Store>, all: bool) -> Result<Vec<LockRecord>> {
    let mut removed = Vec::new();
    let now = Utc::now();
    for (k, rec) in list_locks(store).await? {
        if all || rec.is_stale(now) {
            store.delete(&k).await?;
            removed.push(rec);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmdr_store::LocalStore;

    #[tokio::test]
    async fn shared_locks_coexist_exclusive_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(LocalStore::new(dir.path()));
        let a = RepoLock::acquire(store.clone(), false, "backup").await.unwrap();
        let b = RepoLock::acquire(store.clone(), false, "backup").await.unwrap();
        let err = RepoLock::acquire(store.clone(), true, "prune").await.unwrap_err();
        assert!(err.to_string().contains("`backup` (shared lock"), "{err}");
        assert_eq!(list_locks(&store).await.unwrap().len(), 2, "the failed attempt removed its lock");
        a.release().await;
        b.release().await;
        let x = RepoLock::acquire(store.clone(), true, "prune").await.unwrap();
        assert!(RepoLock::acquire(store.clone(), false, "backup").await.is_err());
        x.release().await;
        assert!(list_locks(&store).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn stale_locks_are_ignored_and_unlocked() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(LocalStore::new(dir.path()));
        let old = Utc::now() - Duration::hours(2);
        let dead = LockRecord {
            hostname: "elsewhere".into(),
            pid: 1,
            exclusive: true,
            command: "prune".into(),
            created: old,
            refreshed: old,
            pid_namespace: String::new(),
        };
        store.put("locks/1-dead", Bytes::from(serde_json::to_vec(&dead).unwrap())).await.unwrap();
        let gone = LockRecord {
            hostname: hostname(),
            pid: u32::MAX - 1,
            refreshed: Utc::now(),
            pid_namespace: pid_namespace(),
            ..dead.clone()
        };
        // The same pid seen from another PID namespace (another container) is not judged dead.
        let elsewhere = LockRecord { pid_namespace: "pid:[1]".into(), ..gone.clone() };
        assert!(!elsewhere.is_stale(Utc::now()));
        store.put("locks/2-gone", Bytes::from(serde_json::to_vec(&gone).unwrap())).await.unwrap();
        let l = RepoLock::acquire(store.clone(), false, "backup").await.unwrap();
        l.release().await;
        assert_eq!(unlock(&store, false).await.unwrap().len(), 2);
        assert!(list_locks(&store).await.unwrap().is_empty());
    }
}
