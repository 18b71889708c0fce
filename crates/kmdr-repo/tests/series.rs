//! The series index and runs of backups (`BackupRun`), on a local store: each
//! backup is indexed under its series, the newest of a series is found from
//! the index, a forged or stale marker is passed over, a backup the index does
//! not know is still found, forget removes markers with their backups, and a
//! run of many backups links what it wrote itself.

use kmdr_core::{KeepPolicy, Layer, Manifest, SourceInfo};
use kmdr_repo::backuper::ManifestDraft;
use kmdr_repo::{BackupRun, BackupSession, Repository, pruner};
use kmdr_store::{LocalStore, Store};
use std::collections::BTreeMap;
use std::sync::Arc;

fn draft(series: &str) -> ManifestDraft {
    ManifestDraft {
        kind: "test".into(),
        layer: Layer::TenantControlPlanes,
        series: series.into(),
        tags: BTreeMap::new(),
        source: SourceInfo::Other(serde_json::json!({"type": "test"})),
    }
}

async fn commit(mut s: BackupSession, series: &str) -> Manifest {
    s.add_file("f", &mut &series.as_bytes()[..], None).await.unwrap();
    s.commit(draft(series)).await.unwrap()
}

async fn one(repo: &Repository, series: &str) -> Manifest {
    commit(BackupSession::start(repo, "test").await.unwrap(), series).await
}

async fn new_repo() -> (tempfile::TempDir, Arc<dyn Store>, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(dir.path().join("repo")));
    let repo = Repository::init(store.clone(), b"secret", Default::default()).await.unwrap();
    (dir, store, repo)
}

/// Backup ids have millisecond times: keep them apart.
async fn tick() {
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
}

#[tokio::test]
async fn the_index_finds_the_newest_of_a_series_and_is_never_trusted_alone() {
    let (_d, store, repo) = new_repo().await;
    let mut a = Vec::new();
    for _ in 0..3 {
        a.push(one(&repo, "tenant/a").await);
        tick().await;
        one(&repo, "tenant/b").await;
        tick().await;
    }
    let indexed = repo.indexed_backups("tenant/a", None).await.unwrap();
    assert_eq!(indexed, a.iter().rev().map(|m| m.id.clone()).collect::<Vec<_>>(), "newest first, series a only");
    assert!(repo.series_prefix("tenant/a").starts_with("series/"));
    assert!(!repo.series_prefix("tenant/a").contains("tenant"), "the store does not learn the series' name");
    let newest = |repo: &Repository, s: &'static str| {
        let repo = repo.clone();
        async move { repo.latest_of_series(s, Some("test"), |_| true).await.unwrap().map(|m| m.id) }
    };
    assert_eq!(newest(&repo, "tenant/a").await, Some(a[2].id.clone()));

    // A marker forged under a's tag for b's newer backup: opened, its series compared, passed over.
    tick().await;
    let b_new = one(&repo, "tenant/b").await;
    store.put(&repo.series_marker("tenant/a", &b_new.id), Vec::new().into()).await.unwrap();
    assert_eq!(newest(&repo, "tenant/a").await, Some(a[2].id.clone()));

    // A marker whose backup is gone: passed over.
    store.delete(&kmdr_repo::repository::manifest_key(&a[2].id)).await.unwrap();
    assert_eq!(newest(&repo, "tenant/a").await, Some(a[1].id.clone()));

    // A backup the index does not know (written before it): found by reading manifests.
    tick().await;
    let c = one(&repo, "tenant/c").await;
    store.delete(&repo.series_marker("tenant/c", &c.id)).await.unwrap();
    assert_eq!(newest(&repo, "tenant/c").await, Some(c.id.clone()));
    assert_eq!(newest(&repo, "tenant/none").await, None);
}

#[tokio::test]
async fn forget_removes_the_markers_of_what_it_removes() {
    let (_d, _s, repo) = new_repo().await;
    for _ in 0..3 {
        one(&repo, "tenant/a").await;
        tick().await;
    }
    let keep = one(&repo, "tenant/a").await;
    pruner::forget(&repo, KeepPolicy { last: 1, ..Default::default() }, None, true).await.unwrap();
    assert_eq!(repo.indexed_backups("tenant/a", None).await.unwrap(), vec![keep.id.clone()]);
    // A marker left by a crash before its manifest: prune sweeps it.
    let stale: kmdr_core::BackupId = "20260101T000000.000Z-test-abcdef".parse().unwrap();
    repo.store().put(&repo.series_marker("tenant/a", &stale), Vec::new().into()).await.unwrap();
    pruner::prune(&repo).await.unwrap();
    assert_eq!(repo.indexed_backups("tenant/a", None).await.unwrap(), vec![keep.id]);
}

#[tokio::test]
async fn a_run_lists_once_and_links_what_it_wrote() {
    let (_d, store, repo) = new_repo().await;
    let before = one(&repo, "tenant/x").await;
    let run = BackupRun::start(&repo, "test run").await.unwrap();
    let mut written = Vec::new();
    for i in 0..5 {
        tick().await;
        written.push(commit(run.session(), &format!("tenant/t{i}")).await);
    }
    // While the run holds its lock, a forget (exclusive) is refused.
    let refused = pruner::forget(&repo, KeepPolicy { last: 1, ..Default::default() }, None, false).await;
    assert!(matches!(refused, Err(kmdr_repo::Error::Locked { .. })), "{refused:?}");
    run.finish().await;
    assert!(store.list("locks/").await.unwrap().is_empty(), "finish releases the run's lock");
    let last = written.last().unwrap().links.as_ref().unwrap();
    for m in std::iter::once(&before).chain(&written[..4]) {
        assert!(last.backups.contains(&m.id.to_string()), "{} links {}", written[4].id, m.id);
    }
    // Chunks the run stored once are known to its later backups.
    assert_eq!(written[4].stats.new_chunks, 1);
    let again = BackupRun::start(&repo, "test run").await.unwrap();
    let dup = commit(again.session(), "tenant/t0").await;
    again.finish().await;
    assert_eq!(dup.stats.new_chunks, 0, "the same bytes are deduplicated across runs");
}
