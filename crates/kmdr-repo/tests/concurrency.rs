//! A backup's uploads and a restore's fetches keep as many chunk requests in
//! flight as the store asks for (`Store::concurrency`): 16 on S3, where each
//! request waits on the network, 4 on a local disk.

use async_trait::async_trait;
use bytes::Bytes;
use kmdr_core::{Layer, SourceInfo};
use kmdr_repo::backuper::ManifestDraft;
use kmdr_repo::chunker::ChunkerParams;
use kmdr_repo::{BackupSession, Repository, restorer};
use kmdr_store::{LocalStore, ObjectInfo, Store, StoreError};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A local store that asks for `want` requests in flight, holds every chunk
/// request a while (as a network round trip would), and records the most
/// chunk requests it saw at once.
#[derive(Debug)]
struct SlowStore {
    inner: LocalStore,
    want: usize,
    now: AtomicUsize,
    most: AtomicUsize,
}

impl SlowStore {
    async fn hold(&self, key: &str) {
        if !key.starts_with("data/") {
            return;
        }
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
    }

    fn take_most(&self) -> usize {
        self.most.swap(0, Ordering::SeqCst)
    }
}

#[async_trait]
impl Store for SlowStore {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn concurrency(&self) -> usize {
        self.want
    }
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.hold(key).await;
        self.inner.put(key, data).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.hold(key).await;
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
}

#[tokio::test]
async fn uploads_and_fetches_keep_the_stores_concurrency_in_flight() {
    let small = ChunkerParams { min_size: 16 * 1024, avg_size: 64 * 1024, max_size: 256 * 1024, ..Default::default() };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let bytes: Vec<u8> = (0..6_000_000).map(|_| rng.r#gen::<u8>()).collect();
    for want in [4, 12] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SlowStore {
            inner: LocalStore::new(dir.path().join("repo")),
            want,
            now: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        });
        let repo = Repository::init(store.clone(), b"secret", small.clone()).await.unwrap();
        let mut s = BackupSession::start(&repo, "test").await.unwrap();
        s.add_file("file.bin", &mut &bytes[..], None).await.unwrap();
        let draft = ManifestDraft {
            kind: "test".into(),
            layer: Layer::UnderCluster,
            series: "test/one".into(),
            tags: BTreeMap::new(),
            source: SourceInfo::Other(serde_json::json!({"type": "test"})),
        };
        let m = s.commit(draft).await.unwrap();
        assert!(m.files[0].chunks.len() >= 3 * want, "{} chunks", m.files[0].chunks.len());
        assert_eq!(store.take_most(), want, "uploads in flight");
        let mut out = Vec::new();
        restorer::restore_file(&repo, &m.files[0], &mut out, restorer::FileCheck::Sha256, None).await.unwrap();
        assert_eq!(out, bytes);
        assert_eq!(store.take_most(), want, "fetches in flight");
    }
}
