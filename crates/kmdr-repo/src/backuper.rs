//! Writing one backup: stream -> chunk -> (id, compress, encrypt) -> upload,
//! with bounded queues, then the manifest last.
//!
//! Memory is bounded by the chunker's buffer (2 x max chunk) plus the
//! store's [`kmdr_store::Store::concurrency`] chunks in flight (4 on a local
//! disk, 16 on S3), whatever the size of the stream.
//! Chunks already in the repository are recognised by id before they are
//! compressed or encrypted and are not uploaded again.

use crate::catalog::CatalogView;
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

/// Chunks being hashed, sealed or uploaded at once, on a store that does not say otherwise.
pub const PIPELINE_DEPTH: usize = kmdr_store::DEFAULT_CONCURRENCY;

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

/// What the backups of one run share: one shared lock, one listing of the
/// chunks the repository holds, and one view of the catalog
/// ([`CatalogView`]). `backup tenant --all` over 1,000 tenants takes the lock
/// and lists the repository once, not 1,000 times; each backup still commits
/// on its own ([`BackupRun::session`]). Chunks and manifests other writers
/// add meanwhile are not seen: a chunk is then uploaded twice (same id, same
/// bytes), and a manifest links what the run saw at its start plus what it
/// wrote.
#[derive(Debug, Clone)]
pub struct BackupRun {
    repo: Repository,
    lock: Arc<Mutex<Option<RepoLock>>>,
    known: Arc<Mutex<HashSet<String>>>,
    catalog: Arc<Mutex<CatalogView>>,
}

impl BackupRun {
    /// Take a shared lock and list the chunks, the backups and the delta segments.
    pub async fn start(repo: &Repository, command: &str) -> Result<BackupRun> {
        Self::begin(repo, command, true).await
    }

    async fn begin(repo: &Repository, command: &str, all_segments: bool) -> Result<BackupRun> {
        let lock = RepoLock::acquire(repo.store().clone(), false, command).await?;
        let listed = async {
            let known: HashSet<String> = repo
                .store()
                .list("data/")
                .await?
                .into_iter()
                .filter_map(|o| o.key.rsplit('/').next().map(str::to_string))
                .collect();
            let catalog = CatalogView::read(repo, all_segments).await?;
            Ok::<_, Error>((known, catalog))
        };
        let (known, catalog) = match listed.await {
            Ok(x) => x,
            Err(e) => {
                lock.release().await;
                return Err(e);
            }
        };
        Ok(BackupRun {
            repo: repo.clone(),
            lock: Arc::new(Mutex::new(Some(lock))),
            known: Arc::new(Mutex::new(known)),
            catalog: Arc::new(Mutex::new(catalog)),
        })
    }

    /// A new backup of this run, started now.
    pub fn session(&self) -> BackupSession {
        BackupSession {
            run: self.clone(),
            owns_run: false,
            stats: Arc::new(Mutex::new(BackupStats::default())),
            files: Vec::new(),
            started_at: Utc::now(),
        }
    }

    /// Release the lock; sessions not committed by now are not.
    pub async fn finish(self) {
        let lock = self.lock.lock().expect("run lock").take();
        if let Some(l) = lock {
            l.release().await;
        }
    }
}

/// A backup being written. Files are added one after another; nothing is
/// visible in the repository until [`BackupSession::commit`] writes the manifest.
#[derive(Debug)]
pub struct BackupSession {
    run: BackupRun,
    /// Started alone ([`BackupSession::start`]): commit and abort end the run.
    owns_run: bool,
    stats: Arc<Mutex<BackupStats>>,
    files: Vec<FileEntry>,
    started_at: DateTime<Utc>,
}

impl BackupSession {
    /// One backup alone: take a shared lock and learn which chunks the repository already has.
    pub async fn start(repo: &Repository, command: &str) -> Result<Self> {
        let run = BackupRun::begin(repo, command, false).await?;
        let mut session = run.session();
        session.owns_run = true;
        Ok(session)
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
        let chunker = self.run.repo.chunker().clone();
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
            .buffered(self.run.repo.store().concurrency().max(1))
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
        let key = self.run.repo.key().clone();
        let known = self.run.known.clone();
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
            self.run.repo.store().put(&chunk_key(&id), Bytes::from(sealed)).await?;
            let newly = self.run.known.lock().expect("known lock").insert(id.clone());
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
        let listed = self.run.catalog.lock().expect("catalog lock").links_listed(&draft.kind, &draft.series);
        let links = match listed {
            Some(links) => links,
            None => {
                let view = self.run.catalog.lock().expect("catalog lock").clone();
                view.links_for(&self.run.repo, &draft.kind, &draft.series).await?
            }
        };
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
        // Indexed first: a manifest without its marker would be missed by
        // "the newest of its series" (a marker without a manifest is passed over).
        let written = match self.run.repo.put_series_marker(&manifest.series, &manifest.id).await {
            Ok(()) => self.run.repo.write_manifest(&manifest).await,
            Err(e) => Err(e),
        };
        if written.is_ok() {
            self.run.catalog.lock().expect("catalog lock").written(manifest.id.clone());
        }
        self.end().await;
        written.map(|_| manifest)
    }

    /// Commit what a builder made of this session (its draft, and what it
    /// reports besides), or abort when it made nothing (`None`) or failed.
    pub async fn commit_built<T, E: From<Error>>(
        self,
        built: std::result::Result<Option<(ManifestDraft, T)>, E>,
    ) -> std::result::Result<Option<(Manifest, T)>, E> {
        match built {
            Ok(Some((draft, extra))) => Ok(Some((self.commit(draft).await?, extra))),
            Ok(None) => {
                self.abort().await;
                Ok(None)
            }
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    /// Give up: nothing is committed; uploaded chunks stay until `prune`.
    pub async fn abort(self) {
        self.end().await;
    }

    async fn end(self) {
        if self.owns_run {
            self.run.finish().await;
        }
    }
}
