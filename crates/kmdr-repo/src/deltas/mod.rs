//! Delta segments: the changes of one series between two revisions, stored
//! as one sealed object each, so that a full backup plus the segments after
//! it give any point in between (docs/design.md, "Delta segments").
//!
//! ```text
//! deltas/<series>/<first rev, 20 digits>-<last rev, 20 digits>-<UTC time>
//! ```
//!
//! The name says everything the chain needs: which series, which revisions
//! it covers (every change in `[first, last]`, also when it holds none), and
//! when it was written. A listing of `deltas/<series>/` alone rebuilds the
//! chain; a segment's `first` is its predecessor's `last + 1`. A segment is
//! one `put` (atomic), so a writer killed at any moment leaves the chain as it
//! was. Segments reference no chunks: prune never needs them and they need no
//! lock (design.md, section 8).

mod stream;

pub use stream::{DeltaDamaged, DeltaEvent, MAGIC, Op, decode, encode};

use crate::crypto::ObjectKind;
use crate::repository::ZSTD_LEVEL;
use crate::{Error, Repository, Result};
use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use kmdr_core::id::ID_TIME_FORMAT;
use kmdr_core::{Classify, ErrorClass};
use kmdr_store::StoreError;
use std::fmt;

/// Where segments live.
pub const PREFIX: &str = "deltas/";

/// A segment, as its object name describes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct SegmentName {
    /// The series of the full backups it continues (`tenant/<schema>`, `etcd/<cluster id>`).
    pub series: String,
    /// First revision covered.
    pub first: i64,
    /// Last revision covered: every change up to it is in this or an earlier segment.
    pub last: i64,
    /// When the segment was written (milliseconds).
    pub written: DateTime<Utc>,
}

impl SegmentName {
    pub fn new(series: &str, first: i64, last: i64, written: DateTime<Utc>) -> Self {
        let written = Utc.timestamp_millis_opt(written.timestamp_millis()).single().expect("whole milliseconds");
        SegmentName { series: series.to_string(), first, last, written }
    }

    /// The object key.
    pub fn key(&self) -> String {
        format!("{PREFIX}{}/{:020}-{:020}-{}", self.series, self.first, self.last, self.written.format(ID_TIME_FORMAT))
    }

    /// Parse an object key; `None` for anything that is not a segment name.
    pub fn parse(key: &str) -> Option<Self> {
        let rest = key.strip_prefix(PREFIX)?;
        let (series, name) = rest.rsplit_once('/')?;
        let mut parts = name.splitn(3, '-');
        let (first, last, time) = (parts.next()?, parts.next()?, parts.next()?);
        if first.len() != 20 || last.len() != 20 || series.is_empty() {
            return None;
        }
        let first: i64 = first.parse().ok()?;
        let last: i64 = last.parse().ok()?;
        let written = NaiveDateTime::parse_from_str(time, ID_TIME_FORMAT).ok()?.and_utc();
        (first >= 1 && last >= first - 1).then(|| SegmentName { series: series.to_string(), first, last, written })
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} revisions {}..={}", self.series, self.first, self.last)
    }
}

/// A chain that does not reach its target: the revisions no segment covers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the delta chain of {series} has a gap: no segment covers revisions {from}..={to} (the full backup is at revision {base}{}). The changes in that range are not in the repository; restore to a point before revision {from}, or from a full backup taken after the gap", match .newest { Some(n) => format!(", the newest segment ends at {n}"), None => String::new() })]
pub struct ChainGap {
    pub series: String,
    pub base: i64,
    pub from: i64,
    pub to: i64,
    pub newest: Option<i64>,
}

/// The segments that take a full backup at revision `base` to `target`, in
/// order. Overlapping segments are allowed (a replayed change is idempotent;
/// readers skip revisions already applied); a revision no segment covers is
/// a [`ChainGap`], never skipped.
pub fn plan_chain(
    segments: &[SegmentName],
    series: &str,
    base: i64,
    target: i64,
) -> Result<Vec<SegmentName>, ChainGap> {
    let mut sorted: Vec<&SegmentName> = segments.iter().filter(|s| s.series == series && s.last > base).collect();
    sorted.sort_by_key(|s| (s.first, std::cmp::Reverse(s.last)));
    let newest = segments.iter().filter(|s| s.series == series).map(|s| s.last).max();
    let mut out = Vec::new();
    let mut next = base + 1;
    while next <= target {
        let best = sorted.iter().filter(|s| s.first <= next && s.last >= next).max_by_key(|s| s.last);
        match best {
            Some(s) => {
                out.push((*s).clone());
                next = s.last + 1;
            }
            None => {
                let to = sorted
                    .iter()
                    .map(|s| s.first)
                    .filter(|f| *f > next)
                    .min()
                    .map(|f| f - 1)
                    .unwrap_or(target)
                    .min(target);
                return Err(ChainGap { series: series.into(), base, from: next, to, newest });
            }
        }
    }
    Ok(out)
}

/// What a listing of one series' segments shows: holes and repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChainCheck {
    pub segments: usize,
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// Revision ranges between segments that no segment covers.
    pub gaps: Vec<(i64, i64)>,
    /// Revision ranges covered by more than one segment.
    pub overlaps: Vec<(i64, i64)>,
}

/// Check that the segments of one series follow each other exactly.
pub fn check_chain(segments: &[SegmentName]) -> ChainCheck {
    let mut sorted: Vec<&SegmentName> = segments.iter().collect();
    sorted.sort_by_key(|s| (s.first, s.last));
    let mut c = ChainCheck { segments: sorted.len(), first: sorted.first().map(|s| s.first), ..Default::default() };
    let mut covered: Option<i64> = None;
    for s in sorted {
        if let Some(end) = covered {
            if s.first > end + 1 {
                c.gaps.push((end + 1, s.first - 1));
            } else if s.first <= end && s.last >= s.first {
                c.overlaps.push((s.first, end.min(s.last)));
            }
        }
        covered = Some(covered.map_or(s.last, |e| e.max(s.last)));
    }
    c.last = covered;
    c
}

impl Repository {
    /// Every segment of `series` (or of all series when `None`), sorted by series and first revision.
    pub async fn list_segments(&self, series: Option<&str>) -> Result<Vec<SegmentName>> {
        let prefix = match series {
            Some(s) => format!("{PREFIX}{s}/"),
            None => PREFIX.to_string(),
        };
        let mut out: Vec<SegmentName> = self
            .store()
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|o| SegmentName::parse(&o.key))
            .filter(|s| series.is_none_or(|want| s.series == want))
            .collect();
        out.sort_by(|a, b| (&a.series, a.first, a.last).cmp(&(&b.series, b.first, b.last)));
        Ok(out)
    }

    /// Seal and store a segment's content: one atomic put.
    pub async fn put_segment(&self, name: &SegmentName, content: &[u8]) -> Result<u64> {
        let key = name.key();
        let sealed = self.key().seal(ObjectKind::Delta, &key, content, ZSTD_LEVEL);
        let n = sealed.len() as u64;
        self.store().put(&key, Bytes::from(sealed)).await?;
        Ok(n)
    }

    /// Read and open a segment's content.
    pub async fn get_segment(&self, name: &SegmentName) -> Result<Vec<u8>> {
        let key = name.key();
        let raw = match self.store().get(&key).await {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => {
                return Err(Error::Damaged { object: key, reason: "the segment was listed but is gone".into() });
            }
            Err(e) => return Err(e.into()),
        };
        self.open_object(ObjectKind::Delta, &key, &raw, "delta segments")
    }

    /// Remove a segment (retention).
    pub async fn delete_segment(&self, name: &SegmentName) -> Result<()> {
        self.store().delete(&name.key()).await?;
        Ok(())
    }
}

impl Classify for ChainGap {
    fn class(&self) -> ErrorClass {
        ErrorClass::ChainGap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(first: i64, last: i64) -> SegmentName {
        SegmentName::new("tenant/t1", first, last, Utc.timestamp_millis_opt(1_800_000_000_123).unwrap())
    }

    #[test]
    fn names_round_trip_and_sort_by_revision() {
        let s = seg(11, 2000);
        assert_eq!(s.key(), "deltas/tenant/t1/00000000000000000011-00000000000000002000-20270115T080000.123Z");
        assert_eq!(SegmentName::parse(&s.key()), Some(s.clone()));
        assert!(seg(9, 10).key() < seg(11, 12).key());
        for bad in [
            "deltas/x",
            "deltas/t/1-2-20270115T080000.123Z",
            "backups/x",
            "deltas/t/00000000000000000011-00000000000000002000-now",
        ] {
            assert_eq!(SegmentName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn chain_follows_revisions_and_names_a_gap() {
        let segs = vec![seg(1, 10), seg(11, 20), seg(21, 30), seg(41, 50)];
        let c = plan_chain(&segs, "tenant/t1", 5, 25).unwrap();
        assert_eq!(c, vec![seg(1, 10), seg(11, 20), seg(21, 30)]);
        assert_eq!(plan_chain(&segs, "tenant/t1", 30, 30).unwrap(), vec![]);
        let gap = plan_chain(&segs, "tenant/t1", 5, 45).unwrap_err();
        assert_eq!((gap.from, gap.to), (31, 40));
        assert!(gap.to_string().contains("no segment covers revisions 31..=40"), "{gap}");
        let beyond = plan_chain(&segs, "tenant/t1", 45, 60).unwrap_err();
        assert_eq!((beyond.from, beyond.to), (51, 60));
        assert!(plan_chain(&segs, "tenant/other", 0, 1).is_err());
        // Overlaps are taken through, the longest reach first.
        let over = vec![seg(1, 10), seg(5, 15), seg(16, 20)];
        assert_eq!(plan_chain(&over, "tenant/t1", 0, 20).unwrap(), over);
    }

    #[test]
    fn check_finds_gaps_and_overlaps() {
        let c = check_chain(&[seg(1, 10), seg(11, 20), seg(25, 30), seg(28, 40)]);
        assert_eq!(c.gaps, vec![(21, 24)]);
        assert_eq!(c.overlaps, vec![(28, 30)]);
        assert_eq!((c.first, c.last, c.segments), (Some(1), Some(40), 4));
        assert_eq!(check_chain(&[seg(1, 10), seg(11, 20)]).gaps, vec![]);
    }
}
