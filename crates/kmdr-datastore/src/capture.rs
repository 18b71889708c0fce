//! The one capture core every source shares: where a series' capture is
//! (`next`, `covered`), what it holds (`pending`), and writing it as delta
//! segments. A source (each driver's `feed`: [`crate::etcd::feed`], or the
//! one Watch the tenants of an etcd share, [`crate::etcd::hub`];
//! [`crate::kine_sql::feed`], [`crate::nats::feed`]) is a [`ChangeFeed`]: it only reads changes, in revision order, and says how
//! far it has proven them complete; the core decides when to write. A feed
//! returns at the next flush time at the latest and is never cancelled
//! in between, so a SQL query or a consumer read is never cut in half.
//!
//! Changes are buffered and written as one segment every `flush_every`
//! (default 1 s) or as soon as `max_bytes` are buffered. A segment covers
//! `[next, covered]`, where `covered` is the highest revision the source
//! proved complete (every change up to it was handed over). A feed hands over
//! whole revisions only, so a segment always ends on a whole revision. With no
//! change at all, an empty segment is written every `idle_every` (1 h) to
//! carry the coverage forward.

use crate::any::AnyTenants;
pub use crate::feed::{CaptureOptions, ChangeFeed, Changes, DeltaTarget, FeedError, Stopped};
use kmdr_core::{Classify, ErrorClass};
use kmdr_repo::Repository;
use kmdr_repo::deltas::DeltaEvent;
use kmdr_repo::deltas::SegmentName;
use std::time::{Duration, Instant};

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
    /// The source proved that nothing up to `revision` is missing, and nothing
    /// is waiting to be written: the repository is current as of now.
    CaughtUp { revision: i64 },
}

/// Called with what a capture does (metrics, logs).
pub type OnCapture = dyn Fn(CaptureEvent) + Send + Sync;

/// What can stop a capture.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// Reading the changes failed (datastore gone, connection lost); what was received is written.
    #[error("reading the changes of {series} failed: {source}; the capture resumes from revision {next}")]
    Watch {
        series: String,
        #[source]
        source: FeedError,
        next: i64,
    },
    /// Writing a segment failed for good.
    #[error("writing a delta segment of {series} failed: {source}")]
    Repo {
        series: String,
        #[source]
        source: kmdr_repo::Error,
    },
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

/// Where a capture reads from: a connected datastore.
// One per running capture, held for its life: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum ChangeSource {
    /// An etcd cluster (the whole keyspace, or a tenant's prefix of a shared etcd).
    Etcd(etcd_client::Client),
    /// A tenant's prefix of a shared etcd, through the one Watch its tenants share.
    EtcdShared(std::sync::Arc<crate::etcd::hub::EtcdWatchHub>),
    /// kine on PostgreSQL: tenant `schema`'s database.
    Postgres { store: crate::postgres::PostgresTenants, schema: String },
    /// kine on MySQL/MariaDB: tenant `schema`'s database.
    Mysql { store: crate::mysql::MysqlTenants, schema: String },
    /// kine on NATS: tenant `schema`'s KV bucket.
    Nats { store: crate::nats::NatsTenants, schema: String },
}

impl ChangeSource {
    /// The source and target of a whole etcd cluster (the under-cluster's):
    /// its series is named by the cluster id.
    pub async fn whole_etcd(
        conn: &kmdr_etcd::EtcdConnection,
    ) -> Result<(ChangeSource, DeltaTarget), kmdr_etcd::EtcdError> {
        let (mut client, endpoint) = conn.connect_one().await?;
        let resp = client
            .get("", Some(etcd_client::GetOptions::new().with_all_keys().with_count_only()))
            .await
            .map_err(|e| kmdr_etcd::EtcdError::Rpc { op: "count keys", endpoint, detail: e.to_string() })?;
        let cluster = resp.header().map(|h| format!("{:x}", h.cluster_id())).unwrap_or_default();
        Ok((ChangeSource::Etcd(client), DeltaTarget::whole(&cluster)))
    }

    /// The source and target of one tenant, whatever its datastore's driver.
    pub fn tenant(store: AnyTenants, schema: &str) -> (ChangeSource, DeltaTarget) {
        let schema_owned = schema.to_string();
        match store {
            AnyTenants::Etcd(t) => (ChangeSource::Etcd(t.client().clone()), DeltaTarget::tenant(schema)),
            AnyTenants::Postgres(store) => {
                (ChangeSource::Postgres { store, schema: schema_owned }, DeltaTarget::kine(schema))
            }
            AnyTenants::Mysql(store) => {
                (ChangeSource::Mysql { store, schema: schema_owned }, DeltaTarget::kine(schema))
            }
            AnyTenants::Nats(store) => (ChangeSource::Nats { store, schema: schema_owned }, DeltaTarget::kine(schema)),
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
    /// The highest revision the source proved complete.
    covered: i64,
    pending: Vec<DeltaEvent>,
    pending_bytes: usize,
    oldest: Option<Instant>,
    last_write: Instant,
}

impl DeltaCapture {
    /// Capture from revision `next` (the one after the last already stored).
    pub fn new(target: DeltaTarget, options: CaptureOptions, next: i64) -> Self {
        DeltaCapture {
            target,
            options,
            next,
            covered: next - 1,
            pending: Vec::new(),
            pending_bytes: 0,
            oldest: None,
            last_write: Instant::now(),
        }
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

    /// Read `source` and write segments until `stop` turns true (pending
    /// changes are written first), the changes from `next` are gone from the
    /// source ([`Stopped::Compacted`]), or the source fails (pending changes
    /// are written first; `next()` says where to resume).
    pub async fn run(
        &mut self,
        source: &ChangeSource,
        repo: &Repository,
        stop: &mut tokio::sync::watch::Receiver<bool>,
        on_event: &OnCapture,
    ) -> Result<Stopped, DeltaError> {
        let from = self.covered + 1;
        let opened = match source {
            ChangeSource::Etcd(client) => match crate::etcd::feed::EtcdFeed::open(client, &self.target, from).await {
                Ok(feed) => return self.run_feed(feed, repo, stop, on_event).await,
                Err(e) => e,
            },
            ChangeSource::EtcdShared(hub) => match hub.subscribe(&self.target, from).await {
                Ok(feed) => return self.run_feed(feed, repo, stop, on_event).await,
                Err(e) => e,
            },
            ChangeSource::Postgres { store, schema } => match store.open_log(schema).await {
                Ok(log) => {
                    return self
                        .run_feed(
                            crate::kine_sql::feed::KineSqlFeed::new(log, &self.target, self.options, from),
                            repo,
                            stop,
                            on_event,
                        )
                        .await;
                }
                Err(e) => e.into(),
            },
            ChangeSource::Mysql { store, schema } => match store.open_log(schema).await {
                Ok(log) => {
                    return self
                        .run_feed(
                            crate::kine_sql::feed::KineSqlFeed::new(log, &self.target, self.options, from),
                            repo,
                            stop,
                            on_event,
                        )
                        .await;
                }
                Err(e) => e.into(),
            },
            ChangeSource::Nats { store, schema } => {
                match crate::nats::feed::NatsFeed::open(store, schema, &self.target, from).await {
                    Ok(Ok(feed)) => return self.run_feed(feed, repo, stop, on_event).await,
                    Ok(Err(stopped)) => return Ok(stopped),
                    Err(e) => e,
                }
            }
        };
        Err(self.watch_error(opened))
    }

    /// The loop every source shares: changes from the feed, a segment every tick.
    pub async fn run_feed<F: ChangeFeed>(
        &mut self,
        mut feed: F,
        repo: &Repository,
        stop: &mut tokio::sync::watch::Receiver<bool>,
        on_event: &OnCapture,
    ) -> Result<Stopped, DeltaError> {
        let mut due = Instant::now() + self.options.flush_every;
        loop {
            tokio::select! {
                got = feed.next(due) => {
                    match got {
                        Ok(Ok(changes)) => self.take(changes, on_event),
                        Ok(Err(stopped)) => {
                            self.flush(repo, on_event, false).await?;
                            return Ok(stopped);
                        }
                        Err(detail) => {
                            // Keep what was received, then report.
                            self.flush(repo, on_event, false).await?;
                            return Err(self.watch_error(detail));
                        }
                    }
                    if Instant::now() >= due {
                        let idle = self.last_write.elapsed() >= self.options.idle_every;
                        self.flush(repo, on_event, idle).await?;
                        due = Instant::now() + self.options.flush_every;
                    } else if self.pending_bytes >= self.options.max_bytes {
                        self.flush(repo, on_event, false).await?;
                    }
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

    /// Buffer what a feed handed over.
    fn take(&mut self, changes: Changes, on_event: &OnCapture) {
        // Several events may share a revision (an etcd transaction), never an earlier one.
        let before = self.covered;
        for e in changes.events {
            debug_assert!(e.revision > before, "a feed handed over revision {} again", e.revision);
            self.covered = self.covered.max(e.revision);
            self.pending_bytes += e.key.len() + e.value.len();
            self.pending.push(e);
            self.oldest.get_or_insert_with(Instant::now);
        }
        if let Some(c) = changes.covered {
            self.covered = self.covered.max(c);
        }
        if changes.idle && self.pending.is_empty() {
            on_event(CaptureEvent::CaughtUp { revision: self.covered });
        }
    }

    fn watch_error(&self, source: FeedError) -> DeltaError {
        DeltaError::Watch { series: self.target.series.clone(), source, next: self.next }
    }

    /// Write what is buffered as one segment `[next, covered]`; with nothing
    /// buffered, only when `empty_ok` and the coverage moved.
    async fn flush(&mut self, repo: &Repository, on_event: &OnCapture, empty_ok: bool) -> Result<(), DeltaError> {
        if self.covered < self.next || (self.pending.is_empty() && !empty_ok) {
            return Ok(());
        }
        let captured_until = chrono::Utc::now();
        let content = kmdr_repo::deltas::encode(&self.pending);
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

impl Classify for DeltaError {
    fn class(&self) -> ErrorClass {
        match self {
            DeltaError::Watch { .. } => ErrorClass::Source,
            DeltaError::Repo { source, .. } => source.class(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmdr_repo::deltas::Op;

    fn ev(key: &str, revision: i64) -> DeltaEvent {
        DeltaEvent { op: Op::Put, key: key.into(), value: b"v".to_vec(), revision, create_revision: revision }
    }

    #[test]
    fn changes_are_buffered_and_coverage_only_grows() {
        let mut cap = DeltaCapture::new(DeltaTarget::kine("t1"), CaptureOptions::default(), 5);
        let caught_up = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = caught_up.clone();
        let on = move |e: CaptureEvent| {
            if let CaptureEvent::CaughtUp { revision } = e {
                seen.lock().unwrap().push(revision);
            }
        };
        // Two events of one revision (an etcd transaction), then a later one.
        cap.take(Changes { events: vec![ev("/a", 5), ev("/b", 5), ev("/c", 7)], covered: Some(7), idle: true }, &on);
        assert_eq!((cap.covered, cap.pending.len(), cap.pending_bytes), (7, 3, 9));
        // Something is buffered: not caught up, whatever the source says.
        assert!(caught_up.lock().unwrap().is_empty());
        // A progress proof never moves the coverage back.
        cap.take(Changes { events: vec![], covered: Some(6), idle: false }, &on);
        assert_eq!(cap.covered, 7);
        cap.restart_at(20);
        assert_eq!((cap.next(), cap.covered, cap.pending.len()), (21, 20, 0));
        cap.take(Changes { events: vec![], covered: Some(25), idle: true }, &on);
        assert_eq!(*caught_up.lock().unwrap(), vec![25]);
    }
}
