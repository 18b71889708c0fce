//! `forget` and `prune` on a repository under Object Lock.
//!
//! In a versioned bucket a plain DELETE removes nothing: it adds a delete
//! marker, hides the object and keeps every byte (and, for a manifest, makes
//! a backup vanish from listings while its data stays billed). So removal
//! here lists the versions of what would go (ListObjectVersions), reads each
//! version's retain-until date (HEAD `?versionId=`), and deletes versions one
//! by one (DELETE `?versionId=`) only when none of the group is still held.
//!
//! Groups go whole or not at all: a backup is its manifest and its restore
//! proofs (a manifest still held keeps its backup listed and restorable, and
//! so its chunks referenced); a chunk or a delta segment is every version of
//! its key. Within a group the older versions go first and the current one
//! last, so an interruption never hides what is still there.

use super::{Held, Locked};
use crate::plans::{ForgetPlan, PrunePlan};
use crate::{Repository, Result};
use chrono::{DateTime, Utc};
use kmdr_store::StoreError;
use kmdr_store::object_lock::ObjectVersion;
use std::collections::{BTreeMap, HashSet};

/// Deletes at once.
const PARALLEL: usize = 8;

/// Every version under some prefixes, by key.
#[derive(Debug, Default)]
pub(crate) struct Survey {
    by_key: BTreeMap<String, Vec<ObjectVersion>>,
}

impl Survey {
    pub(crate) async fn of(lock: Locked<'_>, prefixes: &[&str]) -> Result<Survey> {
        let mut by_key: BTreeMap<String, Vec<ObjectVersion>> = BTreeMap::new();
        for p in prefixes {
            for v in lock.api.list_versions(p).await? {
                by_key.entry(v.key.clone()).or_default().push(v);
            }
        }
        Ok(Survey { by_key })
    }

    /// Keys under `prefix` (every version, delete markers included).
    pub(crate) fn keys_under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.by_key.range(prefix.to_string()..).map(|(k, _)| k).take_while(move |k| k.starts_with(prefix))
    }

    /// The versions of `key`, newest first.
    pub(crate) fn versions(&self, key: &str) -> &[ObjectVersion] {
        self.by_key.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    /// Stored bytes of every version of `key`.
    pub(crate) fn bytes(&self, key: &str) -> u64 {
        self.versions(key).iter().map(|v| v.size).sum()
    }
}

/// What may happen to one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every version may go: these, in the order to delete them.
    Remove(Vec<(String, String)>),
    /// Some version is still held.
    Hold(Held),
}

/// Whether every version of `keys` (one group, named `name`) may go at
/// `now`: delete markers have no retention; every other version is asked
/// for its retain-until date.
pub(crate) async fn judge(
    lock: Locked<'_>,
    survey: &Survey,
    name: String,
    keys: &[String],
    now: DateTime<Utc>,
) -> Result<Verdict> {
    let mut order = Vec::new();
    let (mut held, mut newest, mut legal) = (false, None::<DateTime<Utc>>, false);
    for key in keys {
        // Oldest first, the current version last.
        for v in survey.versions(key).iter().rev() {
            if !v.delete_marker
                && let Some(r) = lock.api.head(key, Some(&v.version_id)).await?
                && r.locked_at(now)
            {
                held = true;
                legal |= r.legal_hold;
                newest = newest.max(r.until);
            }
            order.push((key.clone(), v.version_id.clone()));
        }
    }
    Ok(if held {
        Verdict::Hold(Held { object: name, until: newest.filter(|_| !legal) })
    } else {
        Verdict::Remove(order)
    })
}

/// Delete one group's versions in order. A version S3 refuses because it is
/// still held (a clock behind S3's, a legal hold set meanwhile) stops the
/// group and comes back as held; nothing after it is deleted.
pub(crate) async fn delete_group(lock: Locked<'_>, name: &str, versions: &[(String, String)]) -> Result<Option<Held>> {
    for (key, version) in versions {
        match lock.api.delete_version(key, version).await {
            Ok(()) => {}
            Err(StoreError::Retained { .. }) => {
                let r = lock.api.head(key, Some(version)).await.ok().flatten();
                let until = r.filter(|r| !r.legal_hold).and_then(|r| r.until);
                return Ok(Some(Held { object: name.to_string(), until }));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Delete many groups, `PARALLEL` at once; returns those found held.
pub(crate) async fn delete_groups(lock: Locked<'_>, groups: &[(String, Vec<(String, String)>)]) -> Result<Vec<Held>> {
    let held = super::each(groups.iter().collect(), PARALLEL, |g: &(String, Vec<(String, String)>)| {
        delete_group(lock, &g.0, &g.1)
    })
    .await?;
    Ok(held.into_iter().flatten().collect())
}

/// Keep whole every backup `plan` drops whose manifest or restore proofs S3
/// still holds: its decision becomes a keep for `object-lock`, and it is
/// listed in `plan.held`. The versions of the others are recorded for
/// [`crate::pruner::forget`] to delete.
pub(crate) async fn hold_backups(repo: &Repository, lock: Locked<'_>, plan: &mut ForgetPlan) -> Result<()> {
    let remove = plan.remove();
    if remove.is_empty() {
        return Ok(());
    }
    let survey = Survey::of(lock, &["backups/", "verifications/", crate::series::PREFIX]).await?;
    let now = Utc::now();
    let groups: Vec<(String, Vec<String>)> = plan
        .remove_by_series()
        .map(|(series, id)| {
            let proofs = format!("verifications/{id}/");
            let mut keys = vec![crate::repository::manifest_key(id)];
            let marker = repo.series_marker(series, id);
            if !survey.versions(&marker).is_empty() {
                keys.push(marker);
            }
            keys.extend(survey.keys_under(&proofs).cloned());
            (id.to_string(), keys)
        })
        .collect();
    let verdicts = super::each(groups, PARALLEL, |(name, keys)| {
        let survey = &survey;
        async move { judge(lock, survey, name, &keys, now).await }
    })
    .await?;
    for (id, verdict) in remove.into_iter().zip(verdicts) {
        match verdict {
            Verdict::Remove(versions) => {
                plan.versions.insert(id, versions);
            }
            Verdict::Hold(h) => {
                for d in plan.series.iter_mut().flat_map(|s| s.decisions.iter_mut()).filter(|d| d.item == id) {
                    d.keep = true;
                    d.reasons = vec!["object-lock"];
                }
                plan.held.push(h);
            }
        }
    }
    Ok(())
}

/// The prune plan under Object Lock: every key under `data/` (current or
/// hidden behind a delete marker) that `referenced` does not name goes when
/// none of its versions is held.
pub(crate) async fn plan_prune(lock: Locked<'_>, referenced: HashSet<String>) -> Result<PrunePlan> {
    let survey = Survey::of(lock, &["data/"]).await?;
    let (mut candidates, mut keep_bytes) = (Vec::new(), 0);
    for key in survey.keys_under("data/") {
        if referenced.contains(key.rsplit('/').next().unwrap_or_default()) {
            keep_bytes += survey.bytes(key);
        } else {
            candidates.push(key.clone());
        }
    }
    let now = Utc::now();
    let verdicts = super::each(candidates.clone(), PARALLEL, |key| {
        let survey = &survey;
        async move { judge(lock, survey, key.clone(), std::slice::from_ref(&key), now).await }
    })
    .await?;
    let mut p = PrunePlan { referenced_chunks: referenced.len(), keep_bytes, ..Default::default() };
    for (key, verdict) in candidates.into_iter().zip(verdicts) {
        match verdict {
            Verdict::Remove(versions) => {
                p.delete_bytes += survey.bytes(&key);
                p.versions.push((key.clone(), versions));
                p.delete.push(key);
            }
            Verdict::Hold(h) => {
                p.keep_bytes += survey.bytes(&key);
                p.held.push(h);
            }
        }
    }
    Ok(p)
}

/// Which of `keys` (each a group of its own) may go now, and the held rest.
pub(crate) async fn judge_keys(
    lock: Locked<'_>,
    prefix: &str,
    keys: Vec<String>,
) -> Result<(Vec<(String, Vec<(String, String)>)>, Vec<Held>)> {
    if keys.is_empty() {
        return Ok(Default::default());
    }
    let survey = Survey::of(lock, &[prefix]).await?;
    let now = Utc::now();
    let verdicts = super::each(keys.clone(), PARALLEL, |key| {
        let survey = &survey;
        async move { judge(lock, survey, key.clone(), std::slice::from_ref(&key), now).await }
    })
    .await?;
    let (mut go, mut held) = (Vec::new(), Vec::new());
    for (key, v) in keys.into_iter().zip(verdicts) {
        match v {
            Verdict::Remove(versions) => go.push((key, versions)),
            Verdict::Hold(h) => held.push(h),
        }
    }
    Ok((go, held))
}
