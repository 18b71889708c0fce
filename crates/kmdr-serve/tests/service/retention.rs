//! Retention in `kmdr serve` on a synthetic history: full backups of a real
//! etcd tenant and delta segments between them; the keep policy keeps
//! exactly the backups it names, and exactly the segments a kept backup can
//! still use.

use chrono::Utc;
use kmdr_core::KeepPolicy;
use kmdr_datastore::{self as tenant, DatastoreUrl, TenantBackupOptions};
use kmdr_repo::Repository;
use kmdr_repo::chunker::ChunkerParams;
use kmdr_repo::deltas::SegmentName;
use kmdr_repo::deltas::{DeltaEvent, Op, encode};
use kmdr_repo::point::base_revision;
use kmdr_serve::scheduler::apply_retention;

#[tokio::test]
async fn retention_keeps_exactly_what_the_policy_says() {
    if !kmdr_testkit::need("etcd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = kmdr_testkit::Etcd::start(dir.path(), "e");
    let store = kmdr_store::open(&dir.path().join("repo").display().to_string(), &Default::default()).unwrap();
    let repo = Repository::init(store, b"secret", ChunkerParams::default()).await.unwrap();
    let url = DatastoreUrl::parse(&etcd.client_url.replace("http://", "etcd://")).unwrap();
    let ds = tenant::connect(&url, Default::default()).await.unwrap();
    // History: for each of 4 rounds, 20 changes, a full backup; a segment covering the changes after it.
    let mut bases = Vec::new();
    let mut segments = Vec::new();
    let mut next = None;
    for round in 0..4 {
        etcd.load(&format!("/t1/r{round}/"), 20, 8, round).await;
        let m = tenant::backup_tenant(&repo, &ds, "t1", &TenantBackupOptions::default(), None).await.unwrap();
        let rev = base_revision(&m).unwrap();
        // The chain so far continues to the new backup's revision, then on.
        let first = next.unwrap_or(rev + 1);
        if first <= rev {
            let s = SegmentName::new("tenant/t1", first, rev, Utc::now());
            repo.put_segment(&s, &encode(&[])).await.unwrap();
            segments.push(s);
        }
        let ev = DeltaEvent {
            op: Op::Put,
            key: b"/x".to_vec(),
            value: b"1".to_vec(),
            revision: rev + 1,
            create_revision: rev + 1,
        };
        let s = SegmentName::new("tenant/t1", rev + 1, rev + 1, Utc::now());
        repo.put_segment(&s, &encode(&[ev])).await.unwrap();
        segments.push(s);
        next = Some(rev + 2);
        bases.push((m.id.clone(), rev));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (removed, removed_segments) =
        apply_retention(&repo, KeepPolicy { last: 2, ..Default::default() }).await.unwrap();
    assert_eq!(removed, 2);
    let kept: Vec<_> = repo.list_backups().await.unwrap();
    assert_eq!(kept, vec![bases[2].0.clone(), bases[3].0.clone()], "the two newest full backups stay");
    let oldest_kept = bases[2].1;
    let left = repo.list_segments(Some("tenant/t1")).await.unwrap();
    let expected: Vec<SegmentName> = segments.iter().filter(|s| s.last > oldest_kept).cloned().collect();
    assert_eq!(left, expected, "exactly the segments after the oldest kept backup stay");
    assert_eq!(removed_segments, segments.len() - expected.len());
    assert!(removed_segments > 0);
    // Nothing more goes on a second run.
    assert_eq!(apply_retention(&repo, KeepPolicy { last: 2, ..Default::default() }).await.unwrap(), (0, 0));
}
