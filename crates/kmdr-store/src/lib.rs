//! Object storage for the backup repository. One small trait, [`Store`], and
//! one file per backend: [`LocalStore`] (a directory, the default) and
//! [`S3Store`] (any S3-compatible service, through the `object_store` crate).
//! Fault injection is a wrapper implementing the same trait, so the
//! repository never knows which it talks to. [`conformance`] is the one test
//! suite every backend must pass.

pub mod conformance;
mod error;
pub mod fault;
pub mod local;
pub mod object_lock;
pub mod s3;
mod url;

pub use error::StoreError;
pub use fault::{Fault, FaultStore};
pub use local::LocalStore;
pub use object_lock::{LockMode, ObjectLock};
pub use s3::{S3_CONCURRENCY, S3Options, S3Store};
pub use url::{StoreUrl, open};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

/// [`Store::concurrency`] of a store that does not say otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the store's root, `/`-separated (`data/ab/ab12...`).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time as the backend reports it.
    pub modified: DateTime<Utc>,
}

/// A flat namespace of immutable objects.
///
/// The contract, checked by [`conformance::run`] against every backend:
/// - `put` is atomic: a reader sees either no object or all of it, never a part,
///   even when the writer is killed mid-way. Overwriting an existing key is
///   allowed and also atomic.
/// - `get` of a missing key fails with [`StoreError::NotFound`].
/// - `list(prefix)` returns every complete object whose key starts with
///   `prefix`, recursively, in no particular order, and nothing in flight.
/// - `delete` of a missing key succeeds (deletes are idempotent).
/// - Keys are `/`-separated ASCII: letters, digits, `-`, `_`, `.`; no key
///   segment starts with `.` (the local backend uses such names for temp files).
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Where the store is, for messages (`/srv/backups`, `s3://bucket/prefix`).
    fn location(&self) -> String;
    /// Store `data` under `key`, atomically and durably.
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError>;
    /// Read the whole object.
    async fn get(&self, key: &str) -> Result<Bytes, StoreError>;
    /// List every object under `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;
    /// List the objects under `prefix` whose keys sort after `after` (a
    /// full key, not necessarily of an object). S3 starts its listing there
    /// (`StartAfter`), so the requests follow what is returned, not what the
    /// prefix holds; the default lists the prefix and filters.
    async fn list_after(&self, prefix: &str, after: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        Ok(self.list(prefix).await?.into_iter().filter(|o| o.key.as_str() > after).collect())
    }
    /// Remove an object; missing objects are not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Remove debris of writers killed mid-`put` (temp files) older than
    /// `min_age`; returns how many. Stores with atomic puts have none.
    async fn sweep_incomplete(&self, _min_age: std::time::Duration) -> Result<usize, StoreError> {
        Ok(0)
    }
    /// S3 Object Lock and object versions, on a store that has them (an S3
    /// bucket); `None` for the others.
    fn object_lock(&self) -> Option<&dyn ObjectLock> {
        None
    }
    /// How many requests one stream of objects (a backup's chunk uploads, a
    /// restore's fetch-ahead) keeps in flight to this store. A local disk
    /// gains nothing past a few; a network store hides its per-request
    /// latency behind more. Each one holds a chunk (at most 1 MiB) and its
    /// sealed copy in memory. Wrappers report their inner store's.
    fn concurrency(&self) -> usize {
        DEFAULT_CONCURRENCY
    }
    /// Whether an object exists.
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self.get(key).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Reject keys the contract does not allow, before any backend sees them.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    if ok { Ok(()) } else { Err(StoreError::InvalidKey { key: key.to_string() }) }
}
