//! Capturing etcd's changes into delta segments with one Watch per series:
//! the whole keyspace of the under-cluster's etcd, or one tenant's range
//! `[/<schema>/, /<schema>0)`.
//!
//! The watch starts at the revision after the last one the repository holds
//! (the newest segment's `last`, or the full backup's revision) and asks
//! for progress on every tick. Events are buffered and written as one segment
//! every `flush_every` (default 1 s) or as soon as `max_bytes` are buffered.
//! A segment covers `[next, covered]`, where `covered` is the highest revision
//! the watch has proven complete: the last event's revision, or the revision
//! of a progress notification (etcd sends one only once every earlier event
//! of the watch has been sent). etcd never splits one revision's events over
//! two responses (no `fragment`), so a segment always ends on a whole revision.
//! With no change at all, an empty segment is written every `idle_every` to
//! carry the coverage forward.

use super::{encode, DeltaEvent, Op};
use crate::etcd::connection::describe;
use crate::tenant::records::prefix_range;
use etcd_client::{Client, EventType, WatchOptions};
use kmdr_repo::deltas::SegmentName;
use kmdr_repo::Repository;
use std::time::{Duration, Instant};

/// What a capture watches and where its segments go.
#[derive(Debug, Clone)]
pub struct DeltaTarget {
    /// `tenant/<schema>` or `etcd/<cluster id>`: the series of the full backups it continues.
    pub series: String,
    /// Stripped from every key (`/<schema>`; empty for a whole etcd).
    pub key_root: Vec<u8>,
    pub range_start: Vec<u8>,
    pub range_end: Vec<u8>,
}

impl DeltaTarget {
    /// One tenant on a shared etcd.
    pub fn tenant(schema: &str) -> Self {
        let root = format!("/{schema}").into_bytes();
        let (range_start, range_end) = prefix_range(&root);
        DeltaTarget { series: format!("tenant/{schema}"), key_root: root, range_start, range_end }
    }

    /// Every key of an etcd cluster.
    pub fn whole(cluster_id: &str) -> Self {
        DeltaTarget { series: format!("etcd/{cluster_id}"), key_root: Vec::new(), range_start: vec![0], range_end: vec![0] }
    }

    fn relative<'k>(&self, key: &'k [u8]) -> Option<&'k [u8]> {
        if self.key_root.is_empty() {
            return Some(key);
        }
        crate::tenant::records::relative(key, &self.key_root)
    }
}

/// How often segments are written.
#[derive(Debug, Clone, Copy)]
pub struct CaptureOptions {
    /// Write buffered changes at least this often.
    pub flush_every: Duration,
    /// Write as soon as this many bytes of keys and values are buffered.
    pub max_bytes: usize,
    /// With no change, write an empty segment this often to carry the coverage forward.
    pub idle_every: Duration,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions { flush_every: Duration::from_secs(1), max_bytes: 4 << 20, idle_every: Duration::from_secs(60) }
    }
}

/// A segment that is now durable.
#[derive(Debug, Clone)]
pub struct SegmentWritten {
    pub name: SegmentName,
    pub events: usize,
    /// Sealed bytes stored.
    pub bytes: u64,
    /// From the moment its oldest change was received to the end of the put.
    pub lag: Duration,
    /// Everything received before this moment is in this or an earlier segment.
    pub captured_until: chrono::DateTime<chrono::Utc>,
}

/// What a capture reports while it runs.
#[derive(Debug, Clone)]
pub enum CaptureEvent {
    /// A segment is now durable.
    Segment(SegmentWritten),
    /// etcd proved that nothing up to `revision` is missing, and nothing is
    /// waiting to be written: the repository is current as of now.
    CaughtUp { revision: i64 },
}

/// Called with what a capture does (metrics, logs).
pub type OnCapture = dyn Fn(CaptureEvent) + Send + Sync;

/// Why a capture stopped without an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// Asked to stop; everything received was written.
    Shutdown,
    /// The revision to start from was compacted away: a new full backup is needed.
    Compacted { wanted: i64, compact_revision: i64 },
}

/// What can stop a capture.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// The watch failed (etcd gone, connection lost); what was received is written.
    #[error("watching {series} on etcd failed: {detail}; the capture resumes from revision {next}")]
    Watch { series: String, detail: String, next: i64 },
    /// Writing a segment failed for good.
    #[error("writing a delta segment of {series} failed: {source}")]
    Repo { series: String, #[source] source: kmdr_repo::Error },
}

impl DeltaError {
    /// True when the same capture may work later.
    pub fn is_retryable(&self) -> bool {
        match self {
            DeltaError::Watch { .. } => true,
            DeltaError::Repo { source, .. } => source.is_retryable(),
        }
    }
}

/// One series' capture: where it is, what is buffered.
#[derive(Debug)]
pub struct DeltaCapture {
    pub target: DeltaTarget,
    pub options: CaptureOptions,
    /// The first revision not yet in the repository.
    next: i64,
    /// The highest revision the watch proved complete.
    covered: i64,
    pending: Vec<DeltaEvent>,
    pending_bytes: usize,
    oldest: Option<Instant>,
    last_write: Instant,
}

impl DeltaCapture {
    /// Capture from revision `next` (the one after the last already stored).
    pub fn new(target: DeltaTarget, options: CaptureOptions, next: i64) -> Self {
        DeltaCapture { target, options, next, covered: next - 1, pending: Vec::new(), pending_bytes: 0, oldest: None, last_write: Instant::now() }
    }

    /// The first revision not yet in the repository.
    pub fn next(&self) -> i64 {
        self.next
    }

    /// Start the chain over at a full backup taken at `revision`.
    pub fn restart_at(&mut self, revision: i64) {
        self.pending.clear();
        self.pending_bytes = 0;
        self.oldest = None;
        self.next = revision + 1;
        self.covered = revision;
    }

    /// Watch and write segments until `stop` turns true (pending changes are
    /// written first), the start revision is compacted, or the watch fails
    /// (pending changes are written first; `next()` says where to resume).
    pub async fn run(
        &mut self,
        client: &Client,
        repo: &Repository,
        stop: &mut tokio::sync::watch::Receiver<bool>,
        on_event: &OnCapture,
    ) -> Result<Stopped, DeltaError> {
        let opts = WatchOptions::new()
            .with_range(self.target.range_end.clone())
            .with_start_revision(self.next)
            .with_progress_notify();
        let mut watch = match client.clone().watch(self.target.range_start.clone(), Some(opts)).await {
            Ok(w) => w,
            Err(e) => return Err(self.watch_error(describe(&e))),
        };
        let mut tick = tokio::time::interval(self.options.flush_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = watch.message() => {
                    let resp = match msg {
                        Ok(Some(r)) => r,
                        Ok(None) => return self.fail(repo, on_event, "the watch stream ended".into()).await,
                        Err(e) => return self.fail(repo, on_event, describe(&e)).await,
                    };
                    if resp.canceled() {
                        if resp.compact_revision() > 0 {
                            self.flush(repo, on_event, false).await?;
                            return Ok(Stopped::Compacted { wanted: self.next, compact_revision: resp.compact_revision() });
                        }
                        return self.fail(repo, on_event, format!("etcd cancelled the watch: {}", resp.cancel_reason())).await;
                    }
                    if resp.created() {
                        continue;
                    }
                    if resp.events().is_empty() {
                        // A progress notification: every event up to its revision was sent.
                        if let Some(h) = resp.header() {
                            self.covered = self.covered.max(h.revision());
                            if self.pending.is_empty() {
                                on_event(CaptureEvent::CaughtUp { revision: self.covered });
                            }
                        }
                        continue;
                    }
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        self.covered = self.covered.max(kv.mod_revision());
                        let Some(key) = self.target.relative(kv.key()) else { continue };
                        let (op, value, create) = match ev.event_type() {
                            EventType::Put => (Op::Put, kv.value().to_vec(), kv.create_revision()),
                            EventType::Delete => (Op::Delete, Vec::new(), 0),
                        };
                        self.pending_bytes += key.len() + value.len();
                        self.pending.push(DeltaEvent { op, key: key.to_vec(), value, revision: kv.mod_revision(), create_revision: create });
                        self.oldest.get_or_insert_with(Instant::now);
                    }
                    if self.pending_bytes >= self.options.max_bytes {
                        self.flush(repo, on_event, false).await?;
                    }
                }
                _ = tick.tick() => {
                    let idle = self.last_write.elapsed() >= self.options.idle_every;
                    self.flush(repo, on_event, idle).await?;
                    // Ask for progress so that the next tick can prove coverage without changes.
                    let _ = watch.request_progress().await;
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        self.flush(repo, on_event, false).await?;
                        return Ok(Stopped::Shutdown);
                    }
                }
            }
        }
    }

    fn watch_error(&self, detail: String) -> DeltaError {
        DeltaError::Watch { series: self.target.series.clone(), detail, next: self.next }
    }

    /// The watch failed: keep what was received, then report.
    async fn fail(&mut self, repo: &Repository, on_event: &OnCapture, detail: String) -> Result<Stopped, DeltaError> {
        self.flush(repo, on_event, false).await?;
        Err(self.watch_error(detail))
    }

    /// Write what is buffered as one segment `[next, covered]`; with nothing
    /// buffered, only when `empty_ok` and the coverage moved.
    async fn flush(&mut self, repo: &Repository, on_event: &OnCapture, empty_ok: bool) -> Result<(), DeltaError> {
        if self.covered < self.next || (self.pending.is_empty() && !empty_ok) {
            return Ok(());
        }
        let captured_until = chrono::Utc::now();
        let content = encode(&self.pending);
        let name = SegmentName::new(&self.target.series, self.next, self.covered, chrono::Utc::now());
        let mut delay = Duration::from_millis(100);
        let bytes = loop {
            match repo.put_segment(&name, &content).await {
                Ok(n) => break n,
                Err(e) if e.is_retryable() && delay < Duration::from_secs(30) => {
                    tracing::warn!("writing delta segment {name} failed, retrying in {delay:?}: {e}");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(source) => return Err(DeltaError::Repo { series: self.target.series.clone(), source }),
            }
        };
        let written = SegmentWritten {
            name,
            events: self.pending.len(),
            bytes,
            lag: self.oldest.map(|o| o.elapsed()).unwrap_or_default(),
            captured_until,
        };
        self.next = self.covered + 1;
        self.pending.clear();
        self.pending_bytes = 0;
        self.oldest = None;
        self.last_write = Instant::now();
        on_event(CaptureEvent::Segment(written));
        Ok(())
    }
}
