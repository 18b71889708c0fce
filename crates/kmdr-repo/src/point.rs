//! Point-in-time planning for any series: the full backups a delta chain can
//! start from ([`load_bases`]), the newest full backup at or before a point
//! plus the delta segments after it up to the point, checked for gaps
//! ([`plan_series_point`]), replaying them in order ([`replay_events`]), what
//! each series can reach ([`restorable_points`]), and which segments no full
//! backup can use any more ([`unusable_segments`], for retention).
//!
//! Writing the state at the point is the sources' business: a tenant's in
//! `kmdr-datastore` (`point`), a whole etcd's in `kmdr-etcd` (`point`).

use crate::Repository;
use crate::deltas::{DeltaEvent, SegmentName, decode, plan_chain};
use chrono::{DateTime, Utc};
use kmdr_core::Manifest;
use kmdr_core::{Classify, ErrorClass};

/// The revision a full backup is consistent at, where its source has one:
/// the base a delta chain starts from.
pub fn base_revision(m: &kmdr_core::Manifest) -> Option<i64> {
    match &m.source {
        kmdr_core::SourceInfo::TenantData(t) => Some(t.revision),
        kmdr_core::SourceInfo::EtcdSnapshot(e) => Some(e.revision),
        _ => None,
    }
}

/// Tag of a full backup that `kmdr serve` synthesised from an older one plus
/// the delta segments after it (compaction, docs/design.md section 18): the
/// id of that older backup.
pub const SYNTHESISED_FROM_TAG: &str = "synthesised-from";
/// Tag of a synthesised backup: the revisions its delta segments covered,
/// `<first>..=<last> (<n> segments)`.
pub const SYNTHESISED_DELTAS_TAG: &str = "synthesised-deltas";

/// Whether `m` was synthesised from a base and delta segments rather than
/// read from its source.
pub fn is_synthesised(m: &Manifest) -> bool {
    m.tags.contains_key(SYNTHESISED_FROM_TAG)
}

/// `tags` plus the two tags that say a backup was synthesised by `plan`.
pub fn synthesis_tags(
    tags: &std::collections::BTreeMap<String, String>,
    plan: &PointPlan,
) -> std::collections::BTreeMap<String, String> {
    let mut t = tags.clone();
    t.insert(SYNTHESISED_FROM_TAG.into(), plan.base.clone());
    t.insert(
        SYNTHESISED_DELTAS_TAG.into(),
        format!("{}..={} ({} segments)", plan.base_revision + 1, plan.revision, plan.segments.len()),
    );
    t
}

/// The full backups a delta chain can start from (those whose source has a
/// revision), by series, each series oldest first by start time; backups in
/// `skip` left out. Each manifest is read once. Manifests that cannot be
/// read are returned apart: a restore can do without them, retention must not.
pub struct Bases {
    pub by_series: std::collections::BTreeMap<String, Vec<(i64, kmdr_core::Manifest)>>,
    pub unreadable: Vec<kmdr_core::BackupId>,
}

/// Read every manifest once into [`Bases`].
pub async fn load_bases(repo: &Repository, skip: &[kmdr_core::BackupId]) -> Result<Bases, crate::Error> {
    let mut bases = Bases { by_series: Default::default(), unreadable: Vec::new() };
    for id in repo.list_backups().await?.into_iter().filter(|id| !skip.contains(id)) {
        let m = match repo.load_manifest(&id).await {
            Ok(m) => m,
            Err(crate::Error::Damaged { object, reason }) => {
                tracing::warn!("ignoring damaged manifest {object}: {reason}");
                bases.unreadable.push(id);
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(rev) = base_revision(&m) {
            bases.by_series.entry(m.series.clone()).or_default().push((rev, m));
        }
    }
    for list in bases.by_series.values_mut() {
        list.sort_by_key(|(rev, m)| (m.started_at, *rev));
    }
    Ok(bases)
}

/// Segments no full backup can use any more once the backups `forgotten`
/// are gone: every change they hold is at or before the oldest full backup
/// left in their series (or their series has no full backup left). Applied
/// after `forget` (with nothing in `forgotten`: they are gone already).
/// Refuses when a manifest cannot be read: it may be the base that needs them.
pub async fn unusable_segments(
    repo: &Repository,
    forgotten: &[kmdr_core::BackupId],
) -> Result<Vec<SegmentName>, crate::Error> {
    let segments = repo.list_segments(None).await?;
    if segments.is_empty() {
        return Ok(Vec::new());
    }
    let bases = load_bases(repo, forgotten).await?;
    if let Some(id) = bases.unreadable.first() {
        return Err(crate::Error::Damaged {
            object: id.to_string(),
            reason: "its manifest cannot be read, so the delta segments it may need are kept; run `kmdr verify` and forget it".into(),
        });
    }
    let oldest = |series: &str| bases.by_series.get(series).and_then(|l| l.iter().map(|b| b.0).min());
    Ok(segments.into_iter().filter(|s| oldest(&s.series).is_none_or(|base| s.last <= base)).collect())
}

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
    ChainGap(#[from] crate::ChainGap),
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] crate::Error),
}

/// The full backups of a series that a chain can start from:
/// (revision, manifest), oldest first by start time.
async fn full_backups(repo: &Repository, series: &str) -> Result<Vec<(i64, Manifest)>, crate::Error> {
    Ok(load_bases(repo, &[]).await?.by_series.remove(series).unwrap_or_default())
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

/// Read a plan's segments one by one (each authenticated and checked) and
/// hand `apply` the events in `(base, revision]`, in revision order, each
/// revision once (overlapping segments, from two writers, replay nothing twice).
pub async fn replay_events<E: From<crate::Error>>(
    repo: &Repository,
    plan: &PointPlan,
    mut apply: impl AsyncFnMut(Vec<DeltaEvent>) -> Result<(), E>,
) -> Result<(), E> {
    let mut applied = plan.base_revision;
    for name in &plan.segment_names {
        let raw = repo.get_segment(name).await?;
        let events = decode(&raw).map_err(|e| crate::Error::Damaged { object: name.key(), reason: e.0 })?;
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
pub async fn restorable_points(repo: &Repository) -> Result<Vec<SeriesPoints>, crate::Error> {
    let mut out = Vec::new();
    for (s, bases) in load_bases(repo, &[]).await?.by_series {
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
            gaps: crate::deltas::check_chain(&segments).gaps,
            windows,
        });
    }
    Ok(out)
}

impl Classify for PointError {
    fn class(&self) -> ErrorClass {
        match self {
            PointError::NoBackupBefore { .. } => ErrorClass::NotFound,
            PointError::ChainGap(_) => ErrorClass::ChainGap,
            PointError::Repo(r) => r.class(),
        }
    }
}
