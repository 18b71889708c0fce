//! A repository under S3 Object Lock: backups that whoever holds the
//! agent's credentials (or kmdr itself, with a wrong policy) cannot destroy
//! within the retention period.
//!
//! kmdr relies on the bucket's *default retention* (PutObjectLockConfiguration
//! with `Rule.DefaultRetention`): S3 itself gives every new object version
//! (chunks, manifests, segments, reports, proofs, keys, config, locks) a
//! retain-until date of now + the period, so no write path of kmdr has to
//! remember to ask for one, and an agent cannot write an object without it.
//! `repo init --object-lock` checks the bucket (versioning Enabled, Object
//! Lock enabled), sets that default when the bucket has none, accepts one of
//! the same mode and at least the period, refuses anything else, and
//! records `object_lock: {mode, retention_days}` in the config.
//!
//! - [`removal`]: `forget`/`prune` delete a version only once its retention
//!   has passed (DELETE `?versionId=`, never a plain DELETE, which only adds a
//!   delete marker), and keep a backup whole while any of its objects is held.
//! - [`extend`]: `repo extend-locks` (and `serve`, on a schedule) moves the
//!   retain-until date of every object still needed before it lapses.
//! - [`audit`]: `verify` names the referenced objects whose retention lapsed.
//!
//! The S3 requests are `kmdr_store::ObjectLock`'s. A local directory has no
//! Object Lock: asking for it is a usage error.

pub mod audit;
pub mod extend;
pub mod removal;

use crate::{Error, Repository};
use chrono::{DateTime, Utc};
use kmdr_core::{Classify, ErrorClass};
use kmdr_store::object_lock::{DefaultRetention, Versioning};
use kmdr_store::{LockMode, ObjectLock, Store, StoreError};
use serde::{Deserialize, Serialize};

/// The `object_lock` field of the repository's `config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLockConfig {
    pub mode: LockMode,
    /// The bucket's default retention, in days: what every object gets at its PUT.
    pub retention_days: u32,
}

impl ObjectLockConfig {
    /// The retention period.
    pub fn retention(&self) -> chrono::Duration {
        chrono::Duration::days(self.retention_days.into())
    }

    /// `extend-locks` moves the date of an object whose retention ends
    /// within this (half the period) to now + the period: run at least every
    /// quarter period, nothing needed ever gets closer than a quarter period
    /// to its date.
    pub fn extend_within(&self) -> chrono::Duration {
        self.retention() / 2
    }
}

/// Why an Object Lock operation could not run, or what it held back.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Object Lock asked of a store that has none (a local directory).
    #[error(
        "Object Lock is an S3 feature and {location} is not in S3: drop --object-lock, or use a bucket (s3://BUCKET/PREFIX) created with Object Lock"
    )]
    NotS3 { location: String },
    /// A lock operation on a repository made without `--object-lock`.
    #[error(
        "the repository at {location} is not under Object Lock: only one made by `kmdr repo init --object-lock MODE --retention DURATION` is"
    )]
    NotLocked { location: String },
    /// The bucket is not ready for (or disagrees with) the retention asked for; nothing was written.
    #[error("{problem}: {fix}; nothing was written")]
    Bucket { problem: String, fix: String },
    /// forget/prune removed what retention allows and kept `objects` still under it.
    #[error(
        "{command} kept {objects} objects still under Object Lock retention ({until}): run it again after that date to remove them"
    )]
    HeldBack { command: &'static str, objects: usize, until: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Repo(#[from] Error),
}

impl Classify for LockError {
    fn class(&self) -> ErrorClass {
        match self {
            LockError::NotS3 { .. } => ErrorClass::Usage,
            LockError::Bucket { .. } | LockError::NotLocked { .. } => ErrorClass::Repository,
            LockError::HeldBack { .. } => ErrorClass::HeldBack,
            LockError::Store(e) => e.class(),
            LockError::Repo(e) => e.class(),
        }
    }
}

/// An object (or a backup) kept because S3 still holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    /// The object's key, or for a backup its id.
    pub object: String,
    /// The newest retain-until date among its versions; `None` under a legal hold.
    pub until: Option<DateTime<Utc>>,
}

/// The `HeldBack` error for `command` when anything was held, else `None`.
pub fn held_back(command: &'static str, held: &[&Held]) -> Option<LockError> {
    if held.is_empty() {
        return None;
    }
    let until = if held.iter().any(|h| h.until.is_none()) {
        "some under a legal hold, which only its owner can lift".to_string()
    } else {
        let newest = held.iter().filter_map(|h| h.until).max().expect("dates");
        format!("the last until {}", newest.format("%Y-%m-%dT%H:%M:%SZ"))
    };
    Some(LockError::HeldBack { command, objects: held.len(), until })
}

/// A repository under Object Lock, on a store that has it.
#[derive(Clone, Copy)]
pub struct Locked<'a> {
    pub config: ObjectLockConfig,
    pub api: &'a dyn ObjectLock,
}

/// The repository's Object Lock, when its config has one and its store
/// offers it (a copy of an S3 repository in a local directory has the
/// config field but no retention to honour: it is handled as unlocked).
pub fn locked(repo: &Repository) -> Option<Locked<'_>> {
    let config = repo.config().object_lock?;
    Some(Locked { config, api: repo.store().object_lock()? })
}

/// What [`prepare_bucket`] found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prepared {
    /// What to record in the config (the bucket's default when it was already longer).
    pub config: ObjectLockConfig,
    /// Whether kmdr set the bucket's default retention (else it kept the bucket's own).
    pub set_default: bool,
}

/// The bucket name of an `s3://bucket/prefix` location, for the commands a message suggests.
fn bucket_of(location: &str) -> String {
    let rest = location.strip_prefix("s3://").unwrap_or(location);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// Check the bucket under `store` for a repository locked as `want`:
/// versioning Enabled and Object Lock enabled, then its default retention:
/// none is set to `want`; one of the same mode and at least the period is
/// kept (and recorded); any other is refused. Writes no object.
pub async fn prepare_bucket(store: &dyn Store, want: ObjectLockConfig) -> Result<Prepared, LockError> {
    let location = store.location();
    let api = store.object_lock().ok_or_else(|| LockError::NotS3 { location: location.clone() })?;
    let b = bucket_of(&location);
    let state = api.bucket_lock().await?;
    if !state.lock_enabled {
        let problem = match state.versioning {
            Versioning::Enabled => format!("bucket {b} has versioning but not Object Lock"),
            _ => format!("bucket {b} has neither versioning nor Object Lock"),
        };
        let fix = format!(
            "create the bucket with `aws s3api create-bucket --bucket {b} --object-lock-enabled-for-bucket`, or run `aws s3api put-bucket-versioning --bucket {b} --versioning-configuration Status=Enabled` then `aws s3api put-object-lock-configuration --bucket {b} --object-lock-configuration ObjectLockEnabled=Enabled`"
        );
        return Err(LockError::Bucket { problem, fix });
    }
    if state.versioning != Versioning::Enabled {
        return Err(LockError::Bucket {
            problem: format!("bucket {b} has Object Lock but its versioning is not Enabled"),
            fix: format!(
                "run `aws s3api put-bucket-versioning --bucket {b} --versioning-configuration Status=Enabled`"
            ),
        });
    }
    match state.default {
        None => {
            api.set_default_retention(DefaultRetention { mode: want.mode, days: want.retention_days }).await?;
            Ok(Prepared { config: want, set_default: true })
        }
        Some(d) if d.mode == want.mode && d.days >= want.retention_days => {
            Ok(Prepared { config: ObjectLockConfig { mode: d.mode, retention_days: d.days }, set_default: false })
        }
        Some(d) => Err(LockError::Bucket {
            problem: format!(
                "bucket {b} already has a default retention of {} {} days, not the {} {} days asked for",
                d.mode, d.days, want.mode, want.retention_days
            ),
            fix: format!(
                "ask for --object-lock {} --retention {}d, or change the bucket's with `aws s3api put-object-lock-configuration --bucket {b} --object-lock-configuration '{{\"ObjectLockEnabled\":\"Enabled\",\"Rule\":{{\"DefaultRetention\":{{\"Mode\":\"{}\",\"Days\":{}}}}}}}'`",
                d.mode,
                d.days,
                want.mode.s3_name(),
                want.retention_days
            ),
        }),
    }
}

/// Run `f` over `items`, `n` at a time, keeping their order.
pub(crate) async fn each<T, R, E, F, Fut>(items: Vec<T>, n: usize, f: F) -> Result<Vec<R>, E>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<R, E>>,
{
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(items).map(f).buffered(n).try_collect().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_back_names_the_last_date_or_a_legal_hold() {
        let t = |s: &str| Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc));
        let a = Held { object: "data/aa/aa".into(), until: t("2026-12-01T00:00:00Z") };
        let b = Held { object: "backups/x".into(), until: t("2026-12-24T10:00:00Z") };
        assert!(held_back("prune", &[]).is_none());
        let e = held_back("forget", &[&a, &b]).unwrap();
        assert_eq!(e.class(), ErrorClass::HeldBack);
        assert!(
            e.to_string().contains("forget kept 2 objects") && e.to_string().contains("2026-12-24T10:00:00Z"),
            "{e}"
        );
        let hold = Held { until: None, ..a };
        assert!(held_back("prune", &[&hold]).unwrap().to_string().contains("legal hold"));
        let c = ObjectLockConfig { mode: LockMode::Compliance, retention_days: 30 };
        assert_eq!(c.extend_within(), chrono::Duration::days(15));
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"mode":"compliance","retention_days":30}"#,
            "the config field as design.md shows it"
        );
        assert_eq!(bucket_of("s3://b/p/q"), "b");
    }
}
