//! Writing one backup: stream -> chunk -> (id, compress, encrypt) -> upload,
//! with bounded queues, then the manifest last.
//!
//! Memory is bounded by the chunker's buffer (2 x max chunk) plus
//! `PIPELINE_DEPTH` chunks in flight, whatever the size of the stream.
//! Chunks already in the repository are recognised by id before they are
//! compressed or encrypted and are not uploaded again.

use crate::crypto::ObjectKind;
use crate::lock::RepoLock;
use crate::repository::{ZSTD_LEVEL, chunk_key};
use crate::{Error, Repository, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use kmdr_core::{BackupId, BackupStats, ChunkRef, FileEntry, Layer, MANIFEST_FORMAT, Manifest, SourceInfo};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncRead;

/// Chunks being hashed, sealed or uploaded at once.
pub const PIPELINE_DEPTH: usize = 4;

/// Called with the number of plaintext bytes just processed.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// Everything about a backup except its files, filled in by the source.
#[derive(Debug, Clone)]
pub struct ManifestDraft {
    /// Short kind used in the backup id (`etcd`).
    pub kind: String,
    pub layer: Layer,
    pub series: String,
    pub tags: BTreeMap<String, String>,
    pub source: SourceInfo,
}

/// A backup being written. Files are added one after another; nothing is
/// visible in the repository until [`BackupSession::commit`] writes the manifest.
#[derive(Debug)]
pub struct BackupSession {
    repo: Repository,
    lock: Option<RepoLock>,
    known: Arc<Mutex<HashSet<String>>>,
    stats: Arc<Mutex<BackupStats>>,
    files: Vec<FileEntry>,
    started_at: DateTime<Utc>,
}

impl BackupSession {
    /// Take a shared lock and learn which chunks the repository already has.
    pub async fn start(repo: &Repository, command: &str) -> Result<Self> {
        let started_at = Utc::now();
        let lock = RepoLock::acquire(repo.store().clone(), false, command).await?;
        let known: HashSet<String> = repo
            .store()
            .list("data/")
            .await?
            .into_iter()
            .filter_map(|o| o.key.rsplit('/').next().map(str::to_string))
            .collect();
        Ok(BackupSession {
            repo: repo.clone(),
            lock: Some(lock),
            known: Arc::new(Mutex::new(known)),
            stats: Arc::new(Mutex::new(BackupStats::default())),
            files: Vec::new(),
            started_at,
        })
    }

    /// When the session started: the earliest moment the backup can reflect.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.started_at
    }

    /// Store the whole of `reader` as the file `name`.
    pub async fn add_file<R: AsyncRead + Unpin + Send>(
        &mut self,
        name: &str,
        reader: &mut R,
        progress: Option<Progress>,
    ) -> Result<FileEntry> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(2);
        let chunker = self.repo.chunker().clone();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let producer = async {
            let r = chunker
                .split(reader, |b| {
                    hasher.update(&b);
                    size += b.len() as u64;
                    let tx = tx.clone();
                    async move { tx.send(b).await.map_err(|_| std::io::Error::other("upload pipeline stopped")) }
                })
                .await;
            drop(tx);
            r
        };
        let chunks = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let consumer = chunks
            .map(|chunk| self.store_chunk(chunk, progress.clone()))
            .buffered(PIPELINE_DEPTH)
            .try_collect::<Vec<ChunkRef>>();
        let (produced, consumed) = tokio::join!(producer, consumer);
        // An upload failure stops the producer too; report the upload's error first.
        let chunks = consumed?;
        produced.map_err(Error::Source)?;
        let entry = FileEntry { name: name.to_string(), size, sha256: hex::encode(hasher.finalize()), chunks };
        {
            let mut s = self.stats.lock().expect("stats lock");
            s.bytes += entry.size;
            s.chunks += entry.chunks.len() as u64;
        }
        self.files.push(entry.clone());
        Ok(entry)
    }

    async fn store_chunk(&self, chunk: Bytes, progress: Option<Progress>) -> Result<ChunkRef> {
        let key = self.repo.key().clone();
        let known = self.known.clone();
        let len = chunk.len() as u64;
        let (id, sealed) = tokio::task::spawn_blocking(move || {
            let id = key.chunk_id(&chunk);
            if known.lock().expect("known lock").contains(&id) {
                return (id, None);
            }
            let sealed = key.seal(ObjectKind::Chunk, &chunk_key(&id), &chunk, ZSTD_LEVEL);
            (id, Some(sealed))
        })
        .await
        .expect("chunk task panicked");
        if let Some(sealed) = sealed {
            let stored = sealed.len() as u64;
            self.repo.store().put(&chunk_key(&id), Bytes::from(sealed)).await?;
            let newly = self.known.lock().expect("known lock").insert(id.clone());
            if newly {
                let mut s = self.stats.lock().expect("stats lock");
                s.new_chunks += 1;
                s.new_stored_bytes += stored;
            }
        }
        if let Some(p) = &progress {
            p(len);
        }
        Ok(ChunkRef { id, len })
    }

    /// Write the manifest: from now on the backup exists. Releases the lock.
    pub async fn commit(mut self, draft: ManifestDraft) -> Result<Manifest> {
        // What this writer sees in the store now, for the tamper-evident catalog.
        let links = crate::catalog::links_for(&self.repo, &draft.kind, &draft.series).await?;
        let finished_at = Utc::now();
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            id: BackupId::new(&draft.kind, self.started_at),
            layer: draft.layer,
            series: draft.series,
            hostname: crate::crypto::hostname(),
            kmdr_version: env!("CARGO_PKG_VERSION").to_string(),
            tags: draft.tags,
            started_at: self.started_at,
            finished_at,
            duration_ms: (finished_at - self.started_at).num_milliseconds().max(0) as u64,
            source: draft.source,
            files: std::mem::take(&mut self.files),
            stats: self.stats.lock().expect("stats lock").clone(),
            links: Some(links),
        };
        self.repo.write_manifest(&manifest).await?;
        if let Some(l) = self.lock.take() {
            l.release().await;
        }
        Ok(manifest)
    }

    /// Give up: nothing is committed; uploaded chunks stay until `prune`.
    pub async fn abort(mut self) {
        if let Some(l) = self.lock.take() {
            l.release().await;
        }
    }
}
