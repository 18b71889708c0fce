//! Restore proofs: the sealed record `kmdr verify --restore` leaves for each
//! backup it restored into a scratch server and checked, under
//! `verifications/<backup id>/<time>.json` (object kind 5; docs/design.md,
//! "Restore proofs"). Records are only ever added; a backup's records go
//! with it when it is forgotten.

use crate::crypto::ObjectKind;
use crate::repository::ZSTD_LEVEL;
use crate::{Error, Repository, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use kmdr_core::BackupId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Version of the record's JSON layout.
pub const PROOF_FORMAT: u32 = 1;

/// What a test restore found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Restored into a scratch server, and every check passed.
    Restorable,
    /// Restored (or tried to), and a check failed: the backup does not give back what it recorded.
    Unrestorable,
    /// kmdr cannot test-restore this kind (yet): never counted as restorable.
    NotChecked,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Restorable => "restorable",
            Outcome::Unrestorable => "unrestorable",
            Outcome::NotChecked => "not checked",
        }
    }
}

/// One comparison of what came back with what the backup recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What was compared: `keys`, `content_sha256`, `revision`, ...
    pub what: String,
    /// What the backup recorded (or what must hold).
    pub expected: String,
    /// What the restored server gave back.
    pub found: String,
    pub ok: bool,
}

/// The sealed record of one test restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proof {
    pub format: u32,
    pub backup: String,
    pub kind: String,
    pub outcome: Outcome,
    /// When the test restore started.
    pub checked_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// The scratch server restored into (`etcd 3.6.16 on 127.0.0.1:PORT`).
    pub restored_into: String,
    pub checks: Vec<Check>,
    /// Why it is unrestorable or not checked, in one line.
    #[serde(default)]
    pub reason: Option<String>,
    /// The kmdr that checked.
    pub kmdr_version: String,
}

impl Proof {
    /// The record's object key.
    pub fn key(&self) -> String {
        proof_key(&self.backup, &self.checked_at)
    }
}

/// `verifications/<backup id>/<UTC time, ms>.json`
pub fn proof_key(backup: &str, at: &DateTime<Utc>) -> String {
    format!("verifications/{backup}/{}.json", at.format("%Y%m%dT%H%M%S%.3fZ"))
}

impl Repository {
    /// Seal and store a proof.
    pub async fn put_proof(&self, proof: &Proof) -> Result<()> {
        let key = proof.key();
        let json = serde_json::to_vec(proof).expect("a proof serializes");
        let sealed = self.key().seal(ObjectKind::Proof, &key, &json, ZSTD_LEVEL);
        self.store().put(&key, Bytes::from(sealed)).await?;
        Ok(())
    }

    /// The keys of every proof (of one backup), oldest first per backup.
    pub async fn list_proofs(&self, backup: Option<&BackupId>) -> Result<Vec<String>> {
        let prefix = match backup {
            Some(id) => format!("verifications/{id}/"),
            None => "verifications/".into(),
        };
        let mut keys: Vec<String> = self.store().list(&prefix).await?.into_iter().map(|o| o.key).collect();
        keys.sort();
        Ok(keys)
    }

    /// Open a proof.
    pub async fn get_proof(&self, key: &str) -> Result<Proof> {
        let raw = self.store().get(key).await?;
        let json = self.open_object(ObjectKind::Proof, key, &raw, "restore proofs")?;
        serde_json::from_slice(&json)
            .map_err(|e| Error::Damaged { object: key.into(), reason: format!("not a restore proof: {e}") })
    }

    /// The newest proof of each backup that has one: backup id to proof.
    pub async fn latest_proofs(&self) -> Result<BTreeMap<String, Proof>> {
        self.newest_proofs(self.list_proofs(None).await?, |_| true).await
    }

    /// [`Repository::latest_proofs`] of the backups in `wanted` only. One
    /// listing, which starts at the oldest of them: ids start with their
    /// time, so the proofs of older backups (most of a large repository's)
    /// are not listed. Then those proofs are read several at once.
    pub async fn latest_proofs_of(&self, wanted: &BTreeSet<String>) -> Result<BTreeMap<String, Proof>> {
        let Some(oldest) = wanted.first() else { return Ok(BTreeMap::new()) };
        let listed = self.store().list_after("verifications/", &format!("verifications/{oldest}")).await?;
        self.newest_proofs(listed.into_iter().map(|o| o.key).collect(), |b| wanted.contains(b)).await
    }

    /// The newest of `keys` (proof keys) for each backup `wanted` accepts, read.
    async fn newest_proofs(
        &self,
        mut keys: Vec<String>,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<BTreeMap<String, Proof>> {
        use futures::{StreamExt, TryStreamExt};
        keys.sort();
        let mut newest: BTreeMap<String, String> = BTreeMap::new();
        for key in keys {
            if let Some(backup) = key.strip_prefix("verifications/").and_then(|r| r.split('/').next())
                && wanted(backup)
            {
                // Keys sort by time within a backup: the last one wins.
                newest.insert(backup.to_string(), key.clone());
            }
        }
        futures::stream::iter(newest)
            .map(|(backup, key)| async move { Ok::<_, crate::Error>((backup, self.get_proof(&key).await?)) })
            .buffered(16)
            .try_collect()
            .await
    }

    /// Remove every proof of a backup (it was forgotten).
    pub async fn delete_proofs(&self, backup: &BackupId) -> Result<usize> {
        let keys = self.list_proofs(Some(backup)).await?;
        for k in &keys {
            self.store().delete(k).await?;
        }
        Ok(keys.len())
    }
}
