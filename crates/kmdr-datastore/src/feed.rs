//! The contract between a datastore's change feed and the capture core
//! ([`crate::capture`]): what a capture watches ([`DeltaTarget`]), how often
//! it writes ([`CaptureOptions`]), and what a feed hands over ([`Changes`],
//! [`Stopped`]). Each driver's `feed` module implements [`ChangeFeed`]: an
//! etcd Watch ([`crate::etcd::feed`]), a poll of kine's table
//! ([`crate::kine_sql::feed`]), a consumer of a NATS bucket ([`crate::nats::feed`]).

use crate::records::prefix_range;
use kmdr_repo::deltas::DeltaEvent;
use std::time::{Duration, Instant};

/// What a capture watches and where its segments go.
#[derive(Debug, Clone)]
pub struct DeltaTarget {
    /// `tenant/<schema>` or `etcd/<cluster id>`: the series of the full backups it continues.
    pub series: String,
    /// Stripped from every key (`/<schema>` on etcd, `/registry` under kine; empty for a whole etcd).
    pub key_root: Vec<u8>,
    /// The etcd key range watched (unused by the kine sources: the tenant is its database or bucket).
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

    /// One tenant under kine (a SQL database or a NATS bucket): keys under `/registry`.
    pub fn kine(schema: &str) -> Self {
        let root = crate::kine_sql::KEY_ROOT.as_bytes().to_vec();
        let (range_start, range_end) = prefix_range(&root);
        DeltaTarget { series: format!("tenant/{schema}"), key_root: root, range_start, range_end }
    }

    /// Every key of an etcd cluster.
    pub fn whole(cluster_id: &str) -> Self {
        DeltaTarget {
            series: format!("etcd/{cluster_id}"),
            key_root: Vec::new(),
            range_start: vec![0],
            range_end: vec![0],
        }
    }

    /// The key relative to the root; `None` for a key outside it (not captured,
    /// as the full backup does not copy it either).
    pub fn relative<'k>(&self, key: &'k [u8]) -> Option<&'k [u8]> {
        if self.key_root.is_empty() {
            return Some(key);
        }
        crate::records::relative(key, &self.key_root)
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
    /// kine on SQL: how often the table is read for new rows.
    pub poll_every: Duration,
    /// kine on SQL: how long an id that is not visible (its transaction has
    /// not committed yet) holds the coverage back before it counts as never used.
    pub gap_wait: Duration,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            flush_every: Duration::from_secs(1),
            max_bytes: 4 << 20,
            idle_every: Duration::from_secs(3600),
            poll_every: Duration::from_millis(200),
            gap_wait: Duration::from_secs(2),
        }
    }
}

/// Why a capture stopped without an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// Asked to stop; everything received was written.
    Shutdown,
    /// Changes from the revision to start from are gone from the source (etcd
    /// compaction, kine's compaction, messages removed from a NATS stream): a
    /// new full backup is needed.
    Compacted { wanted: i64, compact_revision: i64 },
}

/// What a feed hands over: changes in revision order, and how far they are complete.
#[derive(Debug, Default)]
pub struct Changes {
    /// Whole revisions, in order, all after the feed's previous `covered`.
    pub events: Vec<DeltaEvent>,
    /// Every change up to this revision has been handed over (also when
    /// `events` is empty: a progress proof). `None`: no new proof.
    pub covered: Option<i64>,
    /// The source is idle: nothing it knows of is left to hand over.
    pub idle: bool,
}

/// Why a change feed failed. The capture writes what it received and
/// resumes after it.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The datastore failed: a query, the connection.
    #[error(transparent)]
    Datastore(#[from] crate::TenantError),
    /// The etcd watch or the NATS consumer failed or ended.
    #[error("{0}")]
    Stream(String),
    /// A change that is not kine's or etcd's (a KV value that is not a kine event).
    #[error("{0}")]
    Undecodable(String),
}

/// A source of changes for the core: an etcd Watch, a kine table poll, a
/// NATS consumer. The core calls `next` in a loop; it is dropped only when the
/// capture stops, so a feed may hold a query in flight across an await.
#[allow(async_fn_in_trait)]
pub trait ChangeFeed {
    /// Wait for the next changes, returning at `until` at the latest (with
    /// no changes when none came) so that the core can write a segment.
    /// `Ok(Err(stopped))` ends the capture (compaction); `Err` is a
    /// failure of the source.
    async fn next(&mut self, until: Instant) -> Result<Result<Changes, Stopped>, FeedError>;
}
