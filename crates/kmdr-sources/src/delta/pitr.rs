//! Point-in-time restore: the newest full backup at or before the point, plus
//! the delta segments after it up to the point, checked for gaps
//! ([`plan_series_point`], [`replay_events`]; any series). A tenant's state is
//! written here ([`restore_point`]); a whole etcd's in `etcd::point`.
//!
//! The state at revision R is computed as a stream, never a copy of the
//! tenant in memory: the net effect of the segments' changes in
//! `(base, R]` (the last change of each key wins) is held as a sorted map,
//! and merged with the full backup's sorted records into a new record
//! stream, which goes to the driver's ordinary import (`TenantStore::import`).
//! Memory grows with the keys changed since the full backup, not with the
//! tenant.

use super::{DeltaEvent, Op, decode};
use crate::tenant::records::{RecordReader, RecordWriter};
use crate::tenant::{KIND, RECORDS_FILE, TenantError, TenantStore, tenant_info};
use chrono::{DateTime, Utc};
use kmdr_core::Manifest;
use kmdr_repo::Repository;
use kmdr_repo::deltas::{SegmentName, plan_chain};
use kmdr_repo::restorer::{FileCheck, restore_file};
use std::collections::BTreeMap;

/// The point to restore to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The newest revision the repository holds.
    Latest,
    /// A revision of the source.
    Revision(i64),
    /// The newest state captured at or before this time.
    Time(DateTime<Utc>),
}

impl std::fmt::Display for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Point::Latest => f.write_str("the latest point"),
            Point::Revision(r) => write!(f, "revision {r}"),
            Point::Time(t) => write!(f, "{}", t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        }
    }
}

/// What a point-in-time restore will read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PointPlan {
    pub series: String,
    /// The full backup it starts from.
    pub base: String,
    pub base_revision: i64,
    /// The revision restored.
    pub revision: i64,
    /// Segments replayed, in order.
    pub segments: Vec<String>,
    #[serde(skip)]
    pub segment_names: Vec<SegmentName>,
}

/// Why no chain reaches the point asked.
#[derive(Debug, thiserror::Error)]
pub enum PointError {
    /// No full backup of the series is old enough.
    #[error(
        "no full backup of {series} at or before {point}: pick a later point, or list the backups with `kmdr backups list`"
    )]
    NoBackupBefore { series: String, point: String },
    /// The delta segments do not reach the point without a hole.
    #[error(transparent)]
    ChainGap(#[from] kmdr_repo::ChainGap),
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] kmdr_repo::Error),
}

/// The full backups of a series that a chain can start from:
/// (revision, manifest), oldest first by start time.
async fn full_backups(repo: &Repository, series: &str) -> Result<Vec<(i64, Manifest)>, kmdr_repo::Error> {
    Ok(super::load_bases(repo, &[]).await?.by_series.remove(series).unwrap_or_default())
}

/// How much earlier than a full backup's start a segment continuing it may
/// have been written (the revision is read just before the backup's clock
/// starts; clocks of two hosts may differ a little).
const CONTINUES_SLACK_MS: i64 = 2000;

/// The segments that can continue the full backup `base` (at `base_rev`):
/// those after its revision written after it started. A segment written
/// before is from another history of the same series: the datastore was
/// restored from a snapshot or replaced since, and its revision numbers
/// mean other changes (`kmdr serve` starts a new chain then).
pub fn continuing_segments(base: &Manifest, base_rev: i64, segments: &[SegmentName]) -> Vec<SegmentName> {
    let from = base.started_at - chrono::Duration::milliseconds(CONTINUES_SLACK_MS);
    segments.iter().filter(|s| s.last > base_rev && s.written >= from).cloned().collect()
}

/// Choose the full backup and the segments for `point` of `series`
/// (`tenant/<schema>`, `etcd/<cluster id>`): the newest full backup at or
/// before the point, and the segments that continue it up to the point,
/// without a gap. With `--revision R` the newest full backup at a revision
/// at or below R is taken (after a datastore was restored from a snapshot,
/// revision numbers repeat: the newest history wins).
pub async fn plan_series_point(
    repo: &Repository,
    series: &str,
    point: Point,
) -> Result<(PointPlan, Manifest), PointError> {
    let bases = full_backups(repo, series).await?;
    let segments = repo.list_segments(Some(series)).await?;
    let none = || PointError::NoBackupBefore { series: series.into(), point: point.to_string() };
    let chosen = match point {
        Point::Revision(r) => bases.iter().rev().find(|b| b.0 <= r),
        Point::Latest => bases.last(),
        Point::Time(t) => bases.iter().rev().find(|b| b.1.finished_at <= t),
    };
    let (base_rev, base) = chosen.cloned().ok_or_else(none)?;
    let usable = continuing_segments(&base, base_rev, &segments);
    let target = match point {
        Point::Revision(r) => r,
        Point::Latest => usable.iter().map(|s| s.last).max().unwrap_or(base_rev),
        Point::Time(t) => usable.iter().filter(|s| s.written <= t).map(|s| s.last).max().unwrap_or(base_rev),
    };
    let chain = plan_chain(&usable, series, base_rev, target)?;
    Ok((
        PointPlan {
            series: series.into(),
            base: base.id.to_string(),
            base_revision: base_rev,
            revision: target,
            segments: chain.iter().map(|s| s.key()).collect(),
            segment_names: chain,
        },
        base,
    ))
}

/// Choose the full backup and the segments for `point` of tenant `schema`.
pub async fn plan_point(repo: &Repository, schema: &str, point: Point) -> Result<(PointPlan, Manifest), TenantError> {
    let (plan, base) = plan_series_point(repo, &format!("tenant/{schema}"), point).await?;
    if base.id.kind() != KIND {
        return Err(TenantError::WrongKind { id: base.id.to_string(), kind: base.id.kind().to_string() });
    }
    Ok((plan, base))
}

/// Read a plan's segments one by one (each authenticated and checked) and
/// hand `apply` the events in `(base, revision]`, in revision order, each
/// revision once (overlapping segments, from two writers, replay nothing twice).
pub async fn replay_events<E: From<kmdr_repo::Error>>(
    repo: &Repository,
    plan: &PointPlan,
    mut apply: impl AsyncFnMut(Vec<DeltaEvent>) -> Result<(), E>,
) -> Result<(), E> {
    let mut applied = plan.base_revision;
    for name in &plan.segment_names {
        let raw = repo.get_segment(name).await?;
        let events = decode(&raw).map_err(|e| kmdr_repo::Error::Damaged { object: name.key(), reason: e.0 })?;
        let from = applied;
        applied = applied.max(name.last);
        let events: Vec<DeltaEvent> =
            events.into_iter().filter(|e| e.revision > from && e.revision <= plan.revision).collect();
        if !events.is_empty() {
            apply(events).await?;
        }
    }
    Ok(())
}

/// Net changes after the base: key -> new value (and revisions), or `None` for deleted.
pub type Overlay = BTreeMap<Vec<u8>, Option<(Vec<u8>, i64, i64)>>;

/// Read the plan's segments into the net changes.
pub async fn load_overlay(repo: &Repository, plan: &PointPlan) -> Result<Overlay, TenantError> {
    let mut overlay = Overlay::new();
    replay_events(repo, plan, async |events: Vec<DeltaEvent>| {
        for e in events {
            let v = match e.op {
                Op::Put => Some((e.value, e.create_revision, e.revision)),
                Op::Delete => None,
            };
            overlay.insert(e.key, v);
        }
        Ok::<_, TenantError>(())
    })
    .await?;
    Ok(overlay)
}

/// Write the state at the plan's revision as a record stream: the base's
/// records merged with the overlay. Returns the records written.
pub async fn write_state<W: tokio::io::AsyncWrite + Unpin + Send>(
    repo: &Repository,
    base: &Manifest,
    overlay: &Overlay,
    out: W,
) -> Result<crate::tenant::RecordSummary, TenantError> {
    let entry = base
        .file(RECORDS_FILE)
        .ok_or_else(|| TenantError::WrongKind { id: base.id.to_string(), kind: base.id.kind().to_string() })?;
    let (pipe_w, pipe_r) = tokio::io::duplex(1 << 20);
    let read = async move {
        let mut pipe_w = pipe_w;
        restore_file(repo, entry, &mut pipe_w, FileCheck::ChunksOnly, None).await
    };
    let merge = async move {
        let mut base = RecordReader::new(pipe_r);
        let mut w = RecordWriter::new(out);
        let mut changes = overlay.iter().peekable();
        let mut next_base = base.next().await?;
        loop {
            let take_change = match (&next_base, changes.peek()) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(b), Some((k, _))) => k.as_slice() <= b.key.as_slice(),
            };
            if take_change {
                let (k, v) = changes.next().expect("peeked");
                if next_base.as_ref().is_some_and(|b| &b.key == k) {
                    next_base = base.next().await?;
                }
                if let Some((value, create, rev)) = v {
                    w.write(k, value, *create, *rev).await?;
                }
            } else {
                let b = next_base.take().expect("matched");
                w.write(&b.key, &b.value, b.create_revision, b.mod_revision).await?;
                next_base = base.next().await?;
            }
        }
        Ok::<_, TenantError>(w.finish().await?)
    };
    match tokio::join!(read, merge) {
        (Ok(()), r) => r,
        (Err(kmdr_repo::Error::Destination(_)), Err(e)) => Err(e),
        (Err(e), _) => Err(e.into()),
    }
}

/// Restore `schema`'s state at the plan's point into `store` (as `target_schema`):
/// the merged stream goes through the driver's ordinary import.
pub async fn restore_point<S: TenantStore>(
    repo: &Repository,
    store: &S,
    base: &Manifest,
    plan: &PointPlan,
    target_schema: &str,
    replace: bool,
) -> Result<crate::tenant::ImportInfo, TenantError> {
    tenant_info(base)?;
    let overlay = load_overlay(repo, plan).await?;
    let (pipe_w, pipe_r) = tokio::io::duplex(1 << 20);
    let produce = write_state(repo, base, &overlay, pipe_w);
    let consume = async move {
        let mut reader = RecordReader::new(pipe_r);
        store.import(target_schema, &mut reader, replace).await
    };
    match tokio::join!(produce, consume) {
        (Ok(_), r) => r,
        (Err(e), Ok(_)) => Err(e),
        // The import only saw its input end early; the producer says why.
        (Err(e), Err(TenantError::ImportFailed { .. } | TenantError::Records(_))) => Err(e),
        (Err(_), Err(e)) => Err(e),
    }
}

/// One stretch of points a restore can reach: from a full backup to the
/// furthest revision its delta chain covers without a gap.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Window {
    pub base: String,
    pub from_revision: i64,
    pub to_revision: i64,
    /// When the base finished: `--at` earlier than this cannot use it.
    pub from_time: DateTime<Utc>,
    /// When the newest segment of the stretch was written.
    pub to_time: DateTime<Utc>,
}

/// What a series can be restored to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SeriesPoints {
    pub series: String,
    /// Full backups a chain can start from: (id, revision).
    pub bases: Vec<(String, i64)>,
    pub segments: usize,
    pub newest_segment: Option<DateTime<Utc>>,
    /// Revision ranges between segments no segment covers.
    pub gaps: Vec<(i64, i64)>,
    /// Merged where they overlap, oldest first.
    pub windows: Vec<Window>,
}

/// Every series with full backups that have a revision: what its full
/// backups and delta segments let a point-in-time restore reach.
pub async fn restorable_points(repo: &Repository) -> Result<Vec<SeriesPoints>, kmdr_repo::Error> {
    let mut out = Vec::new();
    for (s, bases) in super::load_bases(repo, &[]).await?.by_series {
        let segments = repo.list_segments(Some(&s)).await?;
        let mut windows: Vec<Window> = Vec::new();
        for (rev, m) in &bases {
            let usable = continuing_segments(m, *rev, &segments);
            let reach = match usable.iter().map(|x| x.last).max() {
                None => *rev,
                Some(n) => match plan_chain(&usable, &s, *rev, n) {
                    Ok(_) => n,
                    Err(gap) => gap.from - 1,
                },
            };
            let to_time = usable
                .iter()
                .filter(|x| x.first <= reach)
                .map(|x| x.written)
                .max()
                .unwrap_or(m.finished_at)
                .max(m.finished_at);
            match windows.last_mut() {
                // A later base inside the previous stretch only extends it.
                Some(w) if *rev >= w.from_revision && *rev <= w.to_revision => {
                    if reach > w.to_revision {
                        w.to_revision = reach;
                        w.to_time = to_time;
                    }
                }
                _ => windows.push(Window {
                    base: m.id.to_string(),
                    from_revision: *rev,
                    to_revision: reach,
                    from_time: m.finished_at,
                    to_time,
                }),
            }
        }
        out.push(SeriesPoints {
            series: s.clone(),
            bases: bases.iter().map(|(r, m)| (m.id.to_string(), *r)).collect(),
            segments: segments.len(),
            newest_segment: segments.iter().map(|x| x.written).max(),
            gaps: kmdr_repo::deltas::check_chain(&segments).gaps,
            windows,
        });
    }
    Ok(out)
}
