//! Compaction (gardener's compacted snapshots, etcd-druid DEP-02): once the
//! delta events or bytes captured after a unit's newest full backup pass
//! `--compact-after-events` or `--compact-after-bytes`, or the events reach
//! `--compact-after-percent` of that backup's keys (and at least
//! [`MIN_SHARE_EVENTS`]), a new full backup is
//! synthesised from that backup and the segments after it, without reading
//! the datastore again ([`kmdr_plan::synthesis`]). A restore to the latest
//! point then replays only the segments after the synthesised backup, so its
//! cost stays bounded however long serve runs between full backups.
//!
//! What is pending is counted per unit ([`Pending`]) from the segments the
//! capture writes, and after a restart from the repository (the segments
//! after the newest full backup's revision, read until a threshold is
//! passed; one listing per series, no manifest read).
//! One compaction runs at a time across all units, never together with a
//! full backup of the same unit; a chain with a gap is skipped (with a log
//! line) until the next full backup. It needs the full key: a write-only key
//! cannot read the base (serve says so at start and runs none). On a
//! standby nothing runs: serve runs the units only while it leads.

use crate::metrics::{DeltaState, Metrics};
use crate::pending::{Base, Pending};
use crate::scheduled::Scheduled;
use crate::stop::sleep_or_stop;
use kmdr_core::ErrorClass;
use kmdr_plan::synthesis::SynthesisTools;
use kmdr_repo::Repository;
use kmdr_repo::deltas::{SegmentName, decode};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

/// The fewest changes that [`CompactOptions::after_percent`] compacts at:
/// below it, replaying the chain costs less than a synthesis would (a few
/// milliseconds; benchmarks.md, "Compaction"), however small the tenant.
pub const MIN_SHARE_EVENTS: u64 = 10_000;

/// When `kmdr serve` compacts a delta chain.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Once this many changes follow the newest full backup (0: never by count).
    pub after_events: u64,
    /// Or once the segments after it hold this many sealed bytes (0: never by size).
    pub after_bytes: u64,
    /// Or once the changes reach this percentage of the newest full backup's
    /// keys, and at least [`MIN_SHARE_EVENTS`] (0: never by share). A restore
    /// to now merges the changes with the base's keys, so its cost over a
    /// full restore follows this share, whatever the unit's size.
    pub after_percent: u32,
    /// The scratch etcd of the whole-etcd series.
    pub tools: SynthesisTools,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            after_events: 100_000,
            after_bytes: 256 << 20,
            after_percent: 25,
            tools: SynthesisTools::default(),
        }
    }
}

impl CompactOptions {
    /// Whether any threshold is set.
    pub fn enabled(&self) -> bool {
        self.after_events > 0 || self.after_bytes > 0 || self.after_percent > 0
    }

    /// Whether `events` changes in `bytes` of segments after a full backup
    /// of `base_keys` keys call for a compaction.
    pub fn due(&self, events: u64, bytes: u64, base_keys: u64) -> bool {
        let share = u64::from(self.after_percent).saturating_mul(base_keys) / 100;
        (self.after_events > 0 && events >= self.after_events)
            || (self.after_bytes > 0 && bytes >= self.after_bytes)
            || (self.after_percent > 0 && events >= share.max(MIN_SHARE_EVENTS))
    }
}

/// What the compaction tasks of all units share.
pub(crate) struct Compactor {
    pub(crate) repo: Repository,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) opts: CompactOptions,
    pub(crate) tags: BTreeMap<String, String>,
    /// One compaction at a time, across units.
    one: Semaphore,
}

impl Compactor {
    pub(crate) fn new(
        repo: Repository,
        metrics: Arc<Metrics>,
        opts: CompactOptions,
        tags: BTreeMap<String, String>,
    ) -> Self {
        Compactor { repo, metrics, opts, tags, one: Semaphore::new(1) }
    }

    fn report(&self, unit: &str, f: impl FnOnce(&mut DeltaState)) {
        self.metrics.update(unit, |s| f(s.delta.get_or_insert_with(DeltaState::default)));
    }
}

/// Count what follows the newest full backup of `series` in the repository:
/// its segments after the base's revision (one listing, no manifest read),
/// read only until a threshold is passed. A gap is found when the
/// compaction plans its chain.
async fn seed(c: &Compactor, pending: &Pending, series: &str) -> Result<(), kmdr_repo::Error> {
    let (base, base_keys) = {
        let s = pending.lock();
        (s.base, s.base_keys)
    };
    let prefix = format!("{}{series}/", kmdr_repo::deltas::PREFIX);
    let mut after: Vec<(SegmentName, u64)> = c
        .repo
        .store()
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|o| SegmentName::parse(&o.key).map(|n| (n, o.size)))
        .filter(|(n, _)| n.series == series && n.last > base)
        .collect();
    after.sort_by_key(|(n, _)| (n.first, n.last));
    let (mut events, mut bytes) = (0u64, 0u64);
    let mut found = BTreeMap::new();
    for (name, size) in after {
        if c.opts.due(events, bytes, base_keys) {
            break;
        }
        let raw = c.repo.get_segment(&name).await?;
        let n = decode(&raw)
            .map_err(|e| kmdr_repo::Error::Damaged { object: name.key(), reason: e.0 })?
            .iter()
            .filter(|e| e.revision > base)
            .count() as u64;
        found.insert(name.last, (n, size));
        (events, bytes) = (events + n, bytes + size);
    }
    let mut s = pending.lock();
    if s.series.as_deref() == Some(series) {
        let base = s.base;
        for (last, v) in found.into_iter().filter(|(last, _)| *last > base) {
            s.segments.entry(last).or_insert(v);
        }
        s.seeded = true;
    }
    Ok(())
}

/// One unit's compactions: whenever what follows its newest full backup
/// passes a threshold, synthesise a new one.
pub(crate) async fn compact_when_due(c: Arc<Compactor>, unit: Arc<Scheduled>, mut stop: watch::Receiver<bool>) {
    let pending = unit.pending.clone();
    let mut backoff = Duration::from_secs(30);
    loop {
        tokio::select! {
            _ = pending.wake.notified() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        let (series, seeded, held) = {
            let s = pending.lock();
            (s.series.clone(), s.seeded, s.held)
        };
        let Some(series) = series else { continue };
        if !seeded && let Err(e) = seed(&c, &pending, &series).await {
            // Counted from the segments written from now on.
            pending.lock().seeded = true;
            hold_or_back_off(&c, &unit, &pending, &series, &e.to_string(), false);
            continue;
        }
        let (events, bytes) = pending.totals();
        c.report(&unit.name, |d| {
            d.events_since_full = events;
            d.bytes_since_full = bytes;
        });
        if held || !c.opts.due(events, bytes, pending.lock().base_keys) {
            continue;
        }
        let Ok(_one) = c.one.acquire().await else { return };
        let _busy = unit.busy.lock().await;
        if *stop.borrow() {
            return;
        }
        tracing::info!(
            "{}: compacting {series}: {events} changes ({}) after its newest full backup; synthesising a full backup from it and its delta segments",
            unit.name,
            kmdr_core::human_bytes(bytes)
        );
        let began = Instant::now();
        let work = unit.unit.synthesise(&c.repo, &series, &c.tags, &c.opts.tools);
        let result = tokio::select! {
            r = work => r,
            _ = async { while stop.changed().await.is_ok() && !*stop.borrow() {} } => {
                tracing::info!("{}: compaction abandoned at shutdown; nothing was committed", unit.name);
                return;
            }
        };
        match result {
            Ok(Some((m, plan))) => {
                tracing::info!(
                    "{}: synthesised backup {} of {series} at revision {} from {} and {} delta segments in {:.1}s",
                    unit.name,
                    m.id,
                    plan.revision,
                    plan.base,
                    plan.segments.len(),
                    began.elapsed().as_secs_f64()
                );
                backoff = Duration::from_secs(30);
                let keys = Base::of(&m).map_or(0, |b| b.keys);
                let base = Base { series, revision: plan.revision, keys };
                pending.based(&base);
                unit.base.send_replace(Some(base));
                let (events, bytes) = pending.totals();
                c.report(&unit.name, |d| {
                    d.synthesised += 1;
                    d.synthesis_duration = Some(began.elapsed());
                    d.events_since_full = events;
                    d.bytes_since_full = bytes;
                });
            }
            Ok(None) => {}
            Err(e) => {
                let gap = e.class == ErrorClass::ChainGap;
                hold_or_back_off(&c, &unit, &pending, &series, &e.message, gap);
                if !gap {
                    if sleep_or_stop(&mut stop, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(3600));
                    pending.wake.notify_one();
                }
            }
        }
    }
}

/// A gap: no compaction until the next full backup. Anything else: counted, retried.
fn hold_or_back_off(c: &Compactor, unit: &Scheduled, pending: &Pending, series: &str, why: &str, gap: bool) {
    if gap {
        tracing::warn!("{}: compaction of {series} skipped until the next full backup: {why}", unit.name);
        pending.lock().held = true;
    } else {
        tracing::warn!("{}: compaction of {series} failed, trying again later: {why}", unit.name);
        c.report(&unit.name, |d| d.synthesis_failures += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_threshold_calls_for_a_compaction_and_zero_turns_it_off() {
        let o = CompactOptions { after_events: 100, after_bytes: 1000, after_percent: 0, ..Default::default() };
        assert!(!o.due(99, 999, 10) && o.due(100, 0, 10) && o.due(0, 1000, 10));
        let events_only = CompactOptions { after_bytes: 0, ..o.clone() };
        assert!(!events_only.due(99, u64::MAX, 10) && events_only.due(100, 0, 10));
        let off = CompactOptions { after_events: 0, after_bytes: 0, ..o };
        assert!(!off.enabled() && !off.due(u64::MAX, u64::MAX, u64::MAX));
    }

    #[test]
    fn the_share_threshold_follows_the_base_and_has_a_floor() {
        let o = CompactOptions { after_events: 100_000, after_bytes: 0, after_percent: 25, ..Default::default() };
        // A tenant of 100,000 keys: a quarter of them.
        assert!(!o.due(24_999, 0, 100_000) && o.due(25_000, 0, 100_000));
        // A small tenant: the floor, not 25 changes.
        assert!(!o.due(MIN_SHARE_EVENTS - 1, 0, 100) && o.due(MIN_SHARE_EVENTS, 0, 100));
        // A large one: the count threshold comes first.
        assert!(!o.due(99_999, 0, 10_000_000) && o.due(100_000, 0, 10_000_000));
        let share_only = CompactOptions { after_events: 0, ..o };
        assert!(
            share_only.enabled() && share_only.due(25_000, 0, 100_000) && !share_only.due(24_999, u64::MAX, 100_000)
        );
    }
}
