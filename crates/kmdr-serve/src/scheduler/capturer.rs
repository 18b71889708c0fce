//! What the captures of `kmdr serve` share, apart from the scheduler's loop
//! (scheduler.rs, `capture`): where each capture reads from, where it
//! resumes, and what it reports.
//!
//! - One etcd Watch per datastore: the tenants of a shared etcd all read
//!   through one [`EtcdWatchHub`] (kmdr-datastore, `etcd::hub`), connected by
//!   the first tenant's capture and replaced when its watch fails, instead of
//!   a connection and a Watch each. The under-cluster's etcd keeps its own
//!   Watch. kine tenants keep one source each: on PostgreSQL each tenant is its
//!   own database, which no query can read across; on NATS, its own stream.
//! - The resume point: the newest full backup of each series is read from the
//!   manifests once for every capture that starts (not once per capture:
//!   1,000 tenants would read 1,000 manifests 1,000 times).
//! - The heartbeat: an idle series writes an empty segment (which carries the
//!   chain's coverage forward, so that reviews see the unit protected) every
//!   half its layer's RPO, at most every `idle_every` (1 h): one or two
//!   objects an hour per idle tenant, not sixty.

use crate::metrics::{DeltaState, Metrics};
use crate::pending::{Base, Pending};
use chrono::Utc;
use kmdr_datastore::capture::{CaptureEvent, CaptureOptions, ChangeSource};
use kmdr_datastore::etcd::hub::EtcdWatchHub;
use kmdr_datastore::feed::DeltaTarget;
use kmdr_plan::unit::{Unit, UnitError};
use kmdr_repo::Repository;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The change sources the captures share, and the bases they resume from.
#[derive(Default)]
pub(crate) struct Sources {
    /// One hub per etcd datastore (by name and URL).
    hubs: Mutex<HashMap<(String, String), Arc<EtcdWatchHub>>>,
    /// Every series' newest base, as read last, and when.
    bases: Mutex<Option<(Instant, Arc<kmdr_repo::point::Bases>)>>,
}

/// How long one reading of the bases serves captures that start.
const BASES_FRESH: Duration = Duration::from_secs(10);

impl Sources {
    /// The change source and target of a unit's capture: for a tenant on etcd,
    /// its datastore's shared watch; otherwise its own.
    pub(crate) async fn source(&self, unit: &Unit) -> Result<(ChangeSource, DeltaTarget), UnitError> {
        let Unit::Tenant { datastore, schema } = unit else { return unit.change_source().await };
        let key = (datastore.name.clone(), datastore.url.clone());
        if let Some(hub) = self.hubs.lock().await.get(&key).filter(|h| !h.failed()) {
            return Ok((ChangeSource::EtcdShared(hub.clone()), DeltaTarget::tenant(schema)));
        }
        let client = match unit.change_source().await? {
            (ChangeSource::Etcd(client), _) => client,
            other => return Ok(other),
        };
        let mut hubs = self.hubs.lock().await;
        let hub = match hubs.get(&key).filter(|h| !h.failed()) {
            Some(h) => h.clone(), // another capture connected meanwhile
            None => {
                tracing::info!("{}: one watch for the tenants of this etcd", datastore.name);
                let h = Arc::new(EtcdWatchHub::start(client));
                hubs.insert(key, h.clone());
                h
            }
        };
        Ok((ChangeSource::EtcdShared(hub), DeltaTarget::tenant(schema)))
    }

    /// The newest full backup of a series, as a chain's base. One reading of every
    /// manifest serves the captures that start within [`BASES_FRESH`]; a base
    /// older than the newest only makes the capture start earlier (the overlap
    /// is allowed and replays idempotently), never later.
    pub(crate) async fn newest_base(&self, repo: &Repository, series: &str) -> Result<Option<Base>, kmdr_repo::Error> {
        if repo.access() == kmdr_repo::crypto::Access::WriteOnly {
            return Ok(None); // the capture starts after the full backup this run takes
        }
        let mut cached = self.bases.lock().await;
        let bases = match cached.as_ref().filter(|(at, _)| at.elapsed() < BASES_FRESH) {
            Some((_, b)) => b.clone(),
            None => {
                let b = Arc::new(kmdr_repo::point::load_bases(repo, &[]).await?);
                *cached = Some((Instant::now(), b.clone()));
                b
            }
        };
        Ok(bases.by_series.get(series).and_then(|l| l.last()).and_then(|b| Base::of(&b.1)))
    }
}

/// The capture options of one unit: its heartbeat at most half its RPO.
pub(crate) fn options(base: CaptureOptions, rpo: Option<Duration>) -> CaptureOptions {
    let idle_every = match rpo.filter(|r| !r.is_zero()) {
        Some(rpo) => base.idle_every.min(rpo / 2),
        None => base.idle_every,
    };
    CaptureOptions { idle_every, ..base }
}

/// The datastore's revision now, when it is below what the chain holds
/// (`next - 1`): restored from a snapshot or replaced.
pub(crate) async fn rewound(source: &ChangeSource, target: &DeltaTarget, next: i64) -> Result<Option<i64>, String> {
    let (mut client, opts) = match source {
        ChangeSource::Etcd(c) => (c.clone(), etcd_client::GetOptions::new().with_all_keys().with_count_only()),
        // Any read says the revision: the tenant's own range is the cheapest.
        ChangeSource::EtcdShared(hub) => (
            hub.client().clone(),
            etcd_client::GetOptions::new().with_range(target.range_end.clone()).with_count_only(),
        ),
        _ => return Ok(None),
    };
    let key = if matches!(source, ChangeSource::Etcd(_)) { Vec::new() } else { target.range_start.clone() };
    let head = client.get(key, Some(opts)).await.map_err(|e| e.to_string())?;
    let now = head.header().map(|h| h.revision()).unwrap_or_default();
    Ok((now < next - 1).then_some(now))
}

/// What a capture reports: segments into the compactor's count and the
/// metrics, coverage into the metrics.
pub(crate) fn on_event(
    metrics: Arc<Metrics>,
    name: String,
    pending: Arc<Pending>,
) -> impl Fn(CaptureEvent) + Send + Sync + 'static {
    move |ev: CaptureEvent| {
        if let CaptureEvent::Segment(w) = &ev {
            pending.segment(&w.name.series, w.name.last, w.events as u64, w.bytes);
        }
        metrics.update(&name, |s| {
            let d = s.delta.get_or_insert_with(DeltaState::default);
            match ev {
                CaptureEvent::Segment(w) => {
                    d.segments += 1;
                    d.bytes += w.bytes;
                    d.events += w.events as u64;
                    d.revision = w.name.last;
                    if w.events > 0 {
                        d.lag = w.lag;
                    }
                    d.protected_until = Some(d.protected_until.map_or(w.captured_until, |p| p.max(w.captured_until)));
                }
                CaptureEvent::CaughtUp { revision } => {
                    d.revision = d.revision.max(revision);
                    d.protected_until = Some(Utc::now());
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_is_half_the_rpo_at_most_the_default() {
        let base = CaptureOptions::default();
        assert_eq!(options(base, Some(Duration::from_secs(3600))).idle_every, Duration::from_secs(1800));
        assert_eq!(options(base, Some(Duration::from_secs(60))).idle_every, Duration::from_secs(30));
        assert_eq!(options(base, Some(Duration::from_secs(24 * 3600))).idle_every, base.idle_every);
        assert_eq!(options(base, None).idle_every, base.idle_every);
    }
}
