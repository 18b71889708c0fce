//! Fault injection: a wrapper that makes a healthy store fail the way real
//! ones do (disk full, a dropped connection, flipped bits), so the repository's
//! promises ("nothing committed, nothing lost") are tested, not assumed.

use crate::{ObjectInfo, Store, StoreError};
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which fault to inject.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Every put after the first `n` fails with `NoSpace`.
    NoSpaceAfterPuts(u64),
    /// Every put after the first `n` fails with `Unavailable` (a dropped upload).
    UnavailableAfterPuts(u64),
    /// Every get of a key starting with the prefix returns the object with one byte flipped.
    CorruptGets(String),
}

/// A store that injects one [`Fault`] into another.
#[derive(Debug)]
pub struct FaultStore {
    inner: Arc<dyn Store>,
    fault: Fault,
    puts: AtomicU64,
}

impl FaultStore {
    pub fn new(inner: Arc<dyn Store>, fault: Fault) -> Self {
        FaultStore { inner, fault, puts: AtomicU64::new(0) }
    }
}

#[async_trait]
impl Store for FaultStore {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn concurrency(&self) -> usize {
        self.inner.concurrency()
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let n = self.puts.fetch_add(1, Ordering::SeqCst);
        let location = self.location();
        match &self.fault {
            Fault::NoSpaceAfterPuts(k) if n >= *k => Err(StoreError::NoSpace { location, key: key.into() }),
            Fault::UnavailableAfterPuts(k) if n >= *k => Err(StoreError::Unavailable {
                location,
                op: "put",
                key: key.into(),
                source: "injected: connection reset".into(),
            }),
            _ => self.inner.put(key, data).await,
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let data = self.inner.get(key).await?;
        match &self.fault {
            Fault::CorruptGets(prefix) if key.starts_with(prefix.as_str()) && !data.is_empty() => {
                let mut v = data.to_vec();
                let mid = v.len() / 2;
                v[mid] ^= 0x01;
                Ok(Bytes::from(v))
            }
            _ => Ok(data),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.inner.list(prefix).await
    }

    async fn list_after(&self, prefix: &str, after: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.inner.list_after(prefix, after).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.exists(key).await
    }

    async fn sweep_incomplete(&self, min_age: std::time::Duration) -> Result<usize, StoreError> {
        self.inner.sweep_incomplete(min_age).await
    }
}
