//! What a unit's capture wrote after its newest full backup, counted for
//! the compactor (compactor.rs): the scheduler and the capture report
//! segments and full backups here, the compactor reads the totals.

use kmdr_core::{Manifest, SourceInfo};
use std::collections::BTreeMap;
use std::sync::Mutex;
use tokio::sync::Notify;

/// A full backup as the base of a delta chain: its series, the revision the
/// chain continues from, and how many keys it holds (what the compactor
/// weighs the changes after it against).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Base {
    pub(crate) series: String,
    pub(crate) revision: i64,
    pub(crate) keys: u64,
}

impl Base {
    /// The base `m` is, if it can be one (an etcd snapshot or tenant data).
    pub(crate) fn of(m: &Manifest) -> Option<Base> {
        let (revision, keys) = match &m.source {
            SourceInfo::TenantData(t) => (t.revision, t.key_count),
            SourceInfo::EtcdSnapshot(e) => (e.revision, e.key_count.max(0) as u64),
            _ => return None,
        };
        Some(Base { series: m.series.clone(), revision, keys })
    }

    #[cfg(test)]
    pub(crate) fn at(series: &str, revision: i64, keys: u64) -> Base {
        Base { series: series.into(), revision, keys }
    }
}

/// What a unit's capture wrote after the newest full backup of its series.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    state: Mutex<PendingState>,
    /// Woken at each change.
    pub(crate) wake: Notify,
}

#[derive(Debug, Default)]
pub(crate) struct PendingState {
    pub(crate) series: Option<String>,
    /// The newest full backup's revision.
    pub(crate) base: i64,
    /// And its key count.
    pub(crate) base_keys: u64,
    /// Segments after it: last revision -> (events, sealed bytes).
    pub(crate) segments: BTreeMap<i64, (u64, u64)>,
    /// Counted from the repository already (after a start).
    pub(crate) seeded: bool,
    /// The chain has a gap: no compaction until the next full backup.
    pub(crate) held: bool,
}

impl Pending {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, PendingState> {
        self.state.lock().expect("pending lock")
    }

    /// The capture (re)starts on the series of `base`, its newest full backup.
    pub(crate) fn start(&self, base: &Base) {
        {
            let mut s = self.lock();
            if s.series.as_deref() != Some(&base.series) {
                *s = PendingState { series: Some(base.series.clone()), base: base.revision, ..Default::default() };
            }
        }
        self.based(base);
    }

    /// A segment of `series` ending at `last` is durable.
    pub(crate) fn segment(&self, series: &str, last: i64, events: u64, bytes: u64) {
        {
            let mut s = self.lock();
            if s.series.as_deref() == Some(series) && last > s.base {
                s.segments.insert(last, (events, bytes));
            }
        }
        self.wake.notify_one();
    }

    /// A full backup is committed (taken or synthesised).
    pub(crate) fn based(&self, base: &Base) {
        let revision = base.revision;
        {
            let mut s = self.lock();
            if s.series.as_deref() == Some(&base.series) && revision >= s.base {
                s.base = revision;
                s.base_keys = base.keys;
                s.segments.retain(|last, _| *last > revision);
                s.held = false;
            }
        }
        self.wake.notify_one();
    }

    /// (events, bytes) after the base.
    pub(crate) fn totals(&self) -> (u64, u64) {
        let s = self.lock();
        s.segments.values().fold((0, 0), |(e, b), (se, sb)| (e + se, b + sb))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_counts_the_segments_after_the_newest_full_backup() {
        let p = Pending::default();
        p.segment("tenant/t1", 5, 3, 30); // no series yet: ignored
        p.start(&Base::at("tenant/t1", 10, 100));
        p.segment("tenant/t1", 10, 7, 70); // not after the base
        p.segment("tenant/t1", 20, 4, 40);
        p.segment("tenant/t1", 30, 5, 50);
        p.segment("etcd/x", 40, 9, 90); // another series
        assert_eq!(p.totals(), (9, 90));
        // A full backup at 20 (taken, or synthesised while segment 30 was written).
        p.based(&Base::at("tenant/t1", 20, 120));
        assert_eq!(p.totals(), (5, 50));
        assert_eq!(p.lock().base_keys, 120);
        p.lock().held = true;
        p.based(&Base::at("tenant/t1", 30, 130));
        assert_eq!(p.totals(), (0, 0));
        assert!(!p.lock().held, "a full backup lifts a hold");
        // The capture restarts on another series (an etcd restored from a snapshot).
        p.segment("tenant/t1", 35, 1, 10);
        p.start(&Base::at("tenant/t2", 3, 7));
        assert_eq!(p.totals(), (0, 0));
        assert!(!p.lock().seeded);
    }
}
