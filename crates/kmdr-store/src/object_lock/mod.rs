//! S3 Object Lock and object versions: the requests `object_store` does not
//! make. A repository under Object Lock lives in a versioned bucket whose
//! default retention gives every PUT a retain-until date; kmdr then needs to
//! read a bucket's versioning and lock configuration (and set its default
//! retention at `repo init`), read an object's retain-until date and version
//! id (HEAD), extend a retention (PutObjectRetention), list versions
//! (ListObjectVersions) and delete one version (DELETE `?versionId=`: the
//! only delete that frees space in a versioned bucket; a plain DELETE only
//! adds a delete marker).
//!
//! [`ObjectLock`] is the contract; [`S3Admin`] (s3.rs) implements it with requests
//! signed by `object_store`'s own SigV4 signer ([`AwsAuthorizer`], with the
//! store's credential provider) and sent with reqwest, the HTTP client
//! `object_store` itself uses. Stores without Object Lock (a local
//! directory) answer `None` to [`crate::Store::object_lock`].
//!
//! A refusal names the S3 action (`s3:DeleteObjectVersion`, ...) and whether
//! it is one of the admin permissions the agent's policy leaves out on
//! purpose (deploy/s3/).

mod s3;

pub use s3::S3Admin;

use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The two S3 retention modes. Compliance: nobody (not even the account's
/// root) can shorten a retention or delete a version before its date.
/// Governance: principals granted `s3:BypassGovernanceRetention` can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    Governance,
    Compliance,
}

impl LockMode {
    /// The name S3 uses (`GOVERNANCE`).
    pub fn s3_name(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    fn from_s3(s: &str) -> Option<LockMode> {
        match s.to_ascii_uppercase().as_str() {
            "GOVERNANCE" => Some(LockMode::Governance),
            "COMPLIANCE" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

impl std::fmt::Display for LockMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        })
    }
}

/// A bucket's default retention: what S3 gives every new object version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRetention {
    pub mode: LockMode,
    /// `Days`, or `Years` × 365.
    pub days: u32,
}

/// A bucket's versioning state (GetBucketVersioning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    /// Never enabled.
    Off,
    Enabled,
    Suspended,
}

/// What GetBucketVersioning and GetObjectLockConfiguration say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketLock {
    pub versioning: Versioning,
    /// `ObjectLockEnabled: Enabled` (set when the bucket was created, or later on AWS).
    pub lock_enabled: bool,
    pub default: Option<DefaultRetention>,
}

/// One version of an object, from ListObjectVersions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// Relative to the store's prefix, like every store key.
    pub key: String,
    pub version_id: String,
    /// The current version (what GET without a version id reads).
    pub latest: bool,
    /// A delete marker: no data, no retention.
    pub delete_marker: bool,
    pub size: u64,
}

/// One object version's lock, from HEAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub version_id: String,
    pub mode: Option<LockMode>,
    pub until: Option<DateTime<Utc>>,
    /// A legal hold keeps the version whatever its date.
    pub legal_hold: bool,
}

impl Retention {
    /// Whether S3 still refuses to delete this version at `now`.
    pub fn locked_at(&self, now: DateTime<Utc>) -> bool {
        self.legal_hold || self.until.is_some_and(|u| u > now)
    }
}

/// Object Lock and versions of one store (same keys as the store's).
///
/// The contract: `head` of a missing object (or one whose current version is
/// a delete marker) is `Ok(None)`; `delete_version` of a version under
/// retention fails with [`StoreError::Retained`]; a request the credentials
/// may not make fails with [`StoreError::Denied`] naming the S3 action.
#[async_trait]
pub trait ObjectLock: Send + Sync + std::fmt::Debug {
    /// The bucket's versioning and Object Lock configuration.
    async fn bucket_lock(&self) -> Result<BucketLock, StoreError>;
    /// Set the bucket's default retention (PutObjectLockConfiguration).
    async fn set_default_retention(&self, r: DefaultRetention) -> Result<(), StoreError>;
    /// The lock of `key`'s current version, or of `version`.
    async fn head(&self, key: &str, version: Option<&str>) -> Result<Option<Retention>, StoreError>;
    /// Set one version's retention (PutObjectRetention); S3 refuses to
    /// shorten one in compliance mode.
    async fn put_retention(
        &self,
        key: &str,
        version: &str,
        mode: LockMode,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Delete one version for good (DELETE `?versionId=`).
    async fn delete_version(&self, key: &str, version: &str) -> Result<(), StoreError>;
    /// Every version and delete marker of every key under `prefix`, newest first per key.
    async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, StoreError>;
}

/// Whether `action` is one of the permissions only admin credentials get.
pub fn is_admin_action(action: &str) -> bool {
    [
        "s3:ListBucketVersions",
        "s3:GetObjectVersion",
        "s3:DeleteObjectVersion",
        "s3:PutObjectRetention",
        "s3:PutBucketObjectLockConfiguration",
    ]
    .contains(&action)
}
