//! Where each unit stands when serve starts (or a replica starts leading):
//! its newest full backup, read from the repository's manifests, since state
//! lives only there.
//!
//! A unit's backups are those [`Unit::owns`] accepts, as for a restore
//! (`kmdr_plan::exec::latest_units_where`), not those of a series: the etcd
//! unit's series is `etcd/<cluster id>`, known only once it has connected or
//! backed up, and the same schema on two datastores is two tenants. Every
//! manifest is read once, newest first; of each owner (kind, series, and for
//! tenant data its datastore and schema) only the newest is kept, without
//! its file list, so that units found later (the tenants of a datastore with
//! `tenants: all`) are looked up without reading anything again.

use crate::pending::Base;
use chrono::{DateTime, Utc};
use kmdr_core::{Manifest, SourceInfo};
use kmdr_plan::unit::Unit;
use kmdr_repo::Repository;
use std::collections::HashSet;

/// A unit's newest full backup, as the scheduler needs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Newest {
    /// What it protects: the start of the backup.
    pub(crate) started: DateTime<Utc>,
    pub(crate) finished: DateTime<Utc>,
    /// The base a delta chain of its series continues from.
    pub(crate) base: Option<Base>,
}

/// The newest backup of every owner the repository holds, newest first.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    newest: Vec<Manifest>,
}

/// What tells owners apart: two manifests with the same key belong to the same units.
fn owner(m: &Manifest) -> (String, String, String) {
    let source = match &m.source {
        SourceInfo::TenantData(t) => format!("{}\n{}", t.datastore, t.schema),
        _ => String::new(),
    };
    (m.id.kind().to_string(), m.series.clone(), source)
}

impl Catalog {
    /// Read the repository's manifests, newest first, each once. A damaged
    /// manifest is skipped with a warning (the unit takes a backup).
    pub(crate) async fn load(repo: &Repository) -> Result<Catalog, kmdr_repo::Error> {
        let mut seen = HashSet::new();
        let mut c = Catalog::default();
        if repo.access() == kmdr_repo::crypto::Access::WriteOnly {
            tracing::info!(
                "write-only key: earlier backups cannot be read, so every unit takes a backup now and metrics start from it"
            );
            return Ok(c);
        }
        for id in repo.list_backups().await?.iter().rev() {
            let mut m = match repo.load_manifest(id).await {
                Ok(m) => m,
                Err(kmdr_repo::Error::Damaged { object, reason }) => {
                    tracing::warn!("ignoring damaged manifest {object}: {reason}");
                    continue;
                }
                Err(e) => return Err(e),
            };
            // A synthesised backup (compaction) is no reason to postpone the next real one.
            if kmdr_repo::point::is_synthesised(&m) {
                continue;
            }
            if seen.insert(owner(&m)) {
                m.files = Vec::new();
                c.newest.push(m);
            }
        }
        Ok(c)
    }

    /// The catalog of these manifests (any order).
    #[cfg(test)]
    fn of(mut all: Vec<Manifest>) -> Catalog {
        all.sort_by(|a, b| b.id.cmp(&a.id));
        let mut seen = HashSet::new();
        Catalog { newest: all.into_iter().filter(|m| seen.insert(owner(m))).collect() }
    }

    /// The newest backup `unit` owns.
    pub(crate) fn newest(&self, unit: &Unit) -> Option<Newest> {
        self.newest.iter().find(|m| unit.owns(m)).map(|m| Newest {
            started: m.started_at,
            finished: m.finished_at,
            base: Base::of(m),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmdr_core::{BackupId, BackupStats, EtcdSnapshotInfo, Layer, TenantDataInfo};

    fn manifest(kind: &str, series: &str, minutes_ago: i64, source: SourceInfo) -> Manifest {
        let t = Utc::now() - chrono::Duration::minutes(minutes_ago);
        Manifest {
            format: kmdr_core::MANIFEST_FORMAT,
            id: BackupId::new(kind, t),
            layer: Layer::UnderCluster,
            series: series.into(),
            hostname: "h".into(),
            kmdr_version: "test".into(),
            tags: Default::default(),
            started_at: t,
            finished_at: t + chrono::Duration::seconds(3),
            duration_ms: 3000,
            source,
            files: Vec::new(),
            stats: BackupStats::default(),
            links: None,
        }
    }

    fn etcd(cluster: &str, minutes_ago: i64, revision: i64) -> Manifest {
        let info = EtcdSnapshotInfo {
            endpoint: "http://127.0.0.1:2379".into(),
            endpoints: vec!["http://127.0.0.1:2379".into()],
            cluster_id: cluster.into(),
            member_id: "1".into(),
            etcd_version: "3.6.0".into(),
            revision,
            key_count: 1,
            db_size: 1,
            etcd_sha256: String::new(),
            needs: None,
        };
        manifest(kmdr_etcd::snapshotter::KIND, &format!("etcd/{cluster}"), minutes_ago, SourceInfo::EtcdSnapshot(info))
    }

    fn tenant(datastore: &str, schema: &str, minutes_ago: i64, revision: i64) -> Manifest {
        let info = TenantDataInfo {
            driver: "etcd".into(),
            // As backups record it.
            datastore: kmdr_datastore::DatastoreUrl::parse(datastore).unwrap().redacted(),
            schema: schema.into(),
            key_root: format!("/{schema}/"),
            revision,
            key_count: 1,
            bytes: 1,
            content_sha256: String::new(),
            leased_keys: 0,
            skipped_keys: 0,
        };
        manifest(kmdr_datastore::KIND, &format!("tenant/{schema}"), minutes_ago, SourceInfo::TenantData(info))
    }

    /// The units of a plan with the under-cluster's etcd and tenant t1 of two datastores.
    fn units() -> Vec<Unit> {
        let yaml = "version: 1\nname: c\nrepository:\n  url: /r\n  keyFile: /k\nlayers:\n  under-cluster:\n    rto: 1h\n    rpo: 1h\n    etcd:\n      endpoints: [http://127.0.0.1:2379]\n  tenant-control-planes:\n    rto: 1h\n    rpo: 1h\n    datastores:\n      - name: a\n        url: etcd://127.0.0.1:3001\n        tenants: [t1]\n      - name: b\n        url: etcd://127.0.0.1:3002\n        tenants: [t1]\n";
        let plan = kmdr_plan::parse::parse_plan(std::path::Path::new("c.yaml"), yaml).expect("a valid plan");
        plan.layers.iter().flat_map(kmdr_plan::unit::named_units).collect()
    }

    #[test]
    fn each_unit_finds_its_newest_backup_the_etcd_unit_of_any_cluster() {
        let c = Catalog::of(vec![
            etcd("aaa", 90, 10),
            etcd("bbb", 5, 700),
            etcd("bbb", 30, 500),
            tenant("etcd://127.0.0.1:3001", "t1", 20, 40),
            tenant("etcd://127.0.0.1:3002", "t1", 2, 90),
            tenant("etcd://127.0.0.1:3001", "t1", 50, 30),
        ]);
        let by_name: std::collections::BTreeMap<String, Option<Newest>> =
            units().iter().map(|u| (u.name(), c.newest(u))).collect();
        let etcd = by_name["etcd"].clone().expect("the etcd unit owns etcd backups, whatever their cluster");
        assert_eq!(etcd.base.as_ref().map(|b| (b.series.as_str(), b.revision)), Some(("etcd/bbb", 700)));
        assert!(Utc::now() - etcd.started < chrono::Duration::minutes(6), "{etcd:?}");
        // The same schema on two datastores: two units, each with its own newest.
        assert_eq!(by_name["a/t1"].as_ref().and_then(|n| n.base.as_ref()).map(|b| b.revision), Some(40));
        assert_eq!(by_name["b/t1"].as_ref().and_then(|n| n.base.as_ref()).map(|b| b.revision), Some(90));
        assert_eq!(c.newest.len(), 4, "one manifest kept per owner: {:?}", c.newest);
    }

    #[test]
    fn a_repository_without_backups_seeds_nothing() {
        let c = Catalog::of(Vec::new());
        assert!(units().iter().all(|u| c.newest(u).is_none()));
    }
}
