//! `kmdr verify` on a repository under Object Lock: every object a checked
//! backup needs (its manifest and chunks, and `config` and `keys/`; with all
//! backups checked also delta segments, reports and restore proofs) must
//! still be retained by S3, and the bucket's default retention must still
//! give new objects the period the config records. An object whose
//! retain-until date has passed (or that has none) can be deleted by anyone
//! with delete rights: verify names it and exits 1; `kmdr repo extend-locks`
//! locks it again.

use super::extend::{needed_objects, retentions};
use super::{LockError, Locked};
use crate::Repository;
use chrono::{DateTime, Utc};
use kmdr_core::BackupId;
use serde::Serialize;

/// One object (or the bucket) whose protection is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionProblem {
    pub object: String,
    /// Its retain-until date, when it has one.
    pub until: Option<DateTime<Utc>>,
    pub problem: String,
}

/// What verify found about retention.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionAudit {
    pub checked: usize,
    pub problems: Vec<RetentionProblem>,
    /// Objects retained but within half the period of their date: the next
    /// `extend-locks` moves them (not a problem yet).
    pub due: usize,
    /// The earliest date among those.
    pub due_first: Option<DateTime<Utc>>,
}

/// Check the retention of what the backups `ids` (all when `None`) need;
/// `None` when the repository is not under Object Lock.
pub async fn audit(repo: &Repository, ids: Option<&[BackupId]>) -> Result<Option<RetentionAudit>, LockError> {
    let Some(lock) = super::locked(repo) else { return Ok(None) };
    let keys = match ids {
        None => needed_objects(repo).await?,
        Some(ids) => selected_objects(repo, ids).await?,
    };
    let now = Utc::now();
    let threshold = now + lock.config.extend_within();
    let mut problems = bucket_problems(lock).await?;
    let (mut due, mut due_first) = (0, None::<DateTime<Utc>>);
    for (key, r) in keys.iter().zip(retentions(lock, &keys).await?) {
        // A missing object is damage, which the byte check reports.
        let Some(r) = r else { continue };
        match r.until {
            _ if r.legal_hold => {}
            None => problems.push(RetentionProblem {
                object: key.clone(),
                until: None,
                problem: "no Object Lock retention: anyone allowed to delete can destroy it".into(),
            }),
            Some(u) if u <= now => problems.push(RetentionProblem {
                object: key.clone(),
                until: Some(u),
                problem: format!("retention lapsed at {}", u.format("%Y-%m-%dT%H:%M:%SZ")),
            }),
            Some(u) if u < threshold => {
                due += 1;
                due_first = Some(due_first.map_or(u, |d| d.min(u)));
            }
            Some(_) => {}
        }
    }
    Ok(Some(RetentionAudit { checked: keys.len(), problems, due, due_first }))
}

/// `config`, `keys/`, and the manifests and chunks of `ids`.
async fn selected_objects(repo: &Repository, ids: &[BackupId]) -> crate::Result<Vec<String>> {
    let mut keys = vec!["config".to_string()];
    keys.extend(repo.store().list("keys/").await?.into_iter().map(|o| o.key));
    for id in ids {
        keys.push(crate::repository::manifest_key(id));
        match repo.load_manifest(id).await {
            Ok(m) => keys.extend(m.chunk_ids().map(crate::repository::chunk_key)),
            Err(crate::Error::Store(e)) => return Err(e.into()),
            Err(_) => {}
        }
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// The bucket's default retention must still be the config's mode and at least its period.
async fn bucket_problems(lock: Locked<'_>) -> Result<Vec<RetentionProblem>, LockError> {
    let want = lock.config;
    let state = lock.api.bucket_lock().await?;
    let problem = match state.default {
        Some(d) if d.mode == want.mode && d.days >= want.retention_days => return Ok(Vec::new()),
        Some(d) => format!(
            "the bucket's default retention is {} {} days, not the repository's {} {} days: new objects are less protected",
            d.mode, d.days, want.mode, want.retention_days
        ),
        None => "the bucket has no default retention any more: new objects get none".to_string(),
    };
    Ok(vec![RetentionProblem {
        object: "bucket default retention".into(),
        until: None,
        problem: format!(
            "{problem}; set it again with `aws s3api put-object-lock-configuration` (design.md section 9, Object Lock)"
        ),
    }])
}
