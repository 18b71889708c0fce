//! Repository behaviour end to end on a local store: init/open, round trips,
//! dedup, failures that must commit nothing, damage detection, retention.

use kmdr_core::{KeepPolicy, Layer, SourceInfo};
use kmdr_repo::backuper::ManifestDraft;
use kmdr_repo::chunker::ChunkerParams;
use kmdr_repo::{BackupSession, Error, Repository, checker, pruner, restorer};
use kmdr_store::{Fault, FaultStore, LocalStore, Store};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::Arc;

fn small_chunks() -> ChunkerParams {
    ChunkerParams { min_size: 16 * 1024, avg_size: 64 * 1024, max_size: 256 * 1024, ..Default::default() }
}

fn data(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.r#gen::<u8>()).collect()
}

fn draft() -> ManifestDraft {
    ManifestDraft {
        kind: "test".into(),
        layer: Layer::UnderCluster,
        series: "test/one".into(),
        tags: BTreeMap::new(),
        source: SourceInfo::Other(serde_json::json!({"type": "test"})),
    }
}

async fn backup(repo: &Repository, bytes: &[u8]) -> Result<kmdr_core::Manifest, Error> {
    let mut s = BackupSession::start(repo, "test").await?;
    s.add_file("file.bin", &mut &bytes[..], None).await?;
    s.commit(draft()).await
}

async fn restore(repo: &Repository, m: &kmdr_core::Manifest) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    restorer::restore_file(repo, &m.files[0], &mut out, restorer::FileCheck::Sha256, None).await?;
    Ok(out)
}

async fn new_repo() -> (tempfile::TempDir, Arc<dyn Store>, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(dir.path().join("repo")));
    let repo = Repository::init(store.clone(), b"secret", small_chunks()).await.unwrap();
    (dir, store, repo)
}

#[tokio::test]
async fn init_open_and_wrong_key() {
    let (_d, store, _) = new_repo().await;
    assert!(matches!(
        Repository::init(store.clone(), b"x", small_chunks()).await,
        Err(Error::AlreadyInitialized { .. })
    ));
    Repository::open(store.clone(), b"secret", "k").await.unwrap();
    let err = Repository::open(store.clone(), b"wrong", "k").await.unwrap_err();
    assert!(matches!(err, Error::WrongKey { .. }), "{err}");
    let empty: Arc<dyn Store> = Arc::new(LocalStore::new(_d.path().join("nothing")));
    assert!(matches!(Repository::open(empty, b"secret", "k").await, Err(Error::NotARepository { .. })));
}

#[tokio::test]
async fn round_trip_and_dedup() {
    let (_d, _s, repo) = new_repo().await;
    let a = data(1, 3_000_000);
    let m1 = backup(&repo, &a).await.unwrap();
    assert_eq!(restore(&repo, &m1).await.unwrap(), a);
    assert_eq!(m1.stats.new_chunks, m1.stats.chunks);
    // Change 1 KiB in the middle: only a couple of chunks are new.
    let mut b = a.clone();
    b[1_500_000..1_501_024].copy_from_slice(&data(2, 1024));
    let m2 = backup(&repo, &b).await.unwrap();
    assert_eq!(restore(&repo, &m2).await.unwrap(), b);
    assert!(m2.stats.new_chunks <= 2, "{:?}", m2.stats);
    assert!(m2.stats.new_stored_bytes < 600_000, "{:?}", m2.stats);
    // Both listed, in order, resolvable.
    let ids = repo.list_backups().await.unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(repo.resolve("latest", Some("test")).await.unwrap(), ids[1].clone());
    assert!(matches!(repo.resolve("latest", Some("etcd")).await, Err(Error::BackupNotFound { .. })));
    let report = checker::verify(&repo, None, None).await.unwrap();
    assert!(report.backups.iter().all(|b| b.ok), "{report:?}");
    assert_eq!(report.unreferenced_chunks, 0);
    // Empty files work too.
    let m3 = backup(&repo, &[]).await.unwrap();
    assert!(restore(&repo, &m3).await.unwrap().is_empty());
}

#[tokio::test]
async fn failed_uploads_commit_nothing() {
    let (_d, store, repo) = new_repo().await;
    let good = backup(&repo, &data(3, 1_000_000)).await.unwrap();
    for fault in [Fault::NoSpaceAfterPuts(5), Fault::UnavailableAfterPuts(3)] {
        let faulty: Arc<dyn Store> = Arc::new(FaultStore::new(store.clone(), fault));
        let frepo = Repository::open(faulty, b"secret", "k").await.unwrap();
        let err = backup(&frepo, &data(4, 2_000_000)).await.unwrap_err();
        assert!(matches!(err, Error::Store(_)), "{err}");
        // Only the good backup is listed, it still restores, and verify is clean.
        assert_eq!(repo.list_backups().await.unwrap(), vec![good.id.clone()]);
        assert_eq!(restore(&repo, &good).await.unwrap(), data(3, 1_000_000));
        let report = checker::verify(&repo, None, None).await.unwrap();
        assert!(report.backups.iter().all(|b| b.ok));
    }
    // Leftover chunks are pruned; the good backup survives.
    let p = pruner::prune(&repo).await.unwrap();
    assert!(!p.delete.is_empty());
    assert_eq!(checker::verify(&repo, None, None).await.unwrap().unreferenced_chunks, 0);
    assert_eq!(restore(&repo, &good).await.unwrap(), data(3, 1_000_000));
}

#[tokio::test]
async fn a_failing_source_commits_nothing() {
    let (_d, _s, repo) = new_repo().await;
    struct Broken(usize);
    impl tokio::io::AsyncRead for Broken {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(Err(std::io::Error::other("connection to etcd lost")));
            }
            self.0 -= 1;
            buf.put_slice(&[7u8; 4096]);
            std::task::Poll::Ready(Ok(()))
        }
    }
    let mut s = BackupSession::start(&repo, "test").await.unwrap();
    let err = s.add_file("f", &mut Broken(300), None).await.unwrap_err();
    assert!(matches!(err, Error::Source(_)), "{err}");
    s.abort().await;
    assert!(repo.list_backups().await.unwrap().is_empty());
}

#[tokio::test]
async fn damage_is_named_and_restore_refuses() {
    let (d, store, repo) = new_repo().await;
    let a = data(5, 1_000_000);
    let m1 = backup(&repo, &a).await.unwrap();
    let m2 = backup(&repo, &data(6, 500_000)).await.unwrap();
    // Flip one byte of one chunk of the first backup on disk.
    let victim = kmdr_repo::repository::chunk_key(&m1.files[0].chunks[2].id);
    let path = d.path().join("repo").join(&victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let report = checker::verify(&repo, None, None).await.unwrap();
    let damaged: Vec<_> = report.damaged().map(|b| b.id.clone()).collect();
    assert_eq!(damaged, vec![m1.id.to_string()]);
    assert!(report.backups.iter().find(|b| b.id == m1.id.to_string()).unwrap().problems[0].contains(&victim));
    let err = restore(&repo, &m1).await.unwrap_err();
    assert!(matches!(err, Error::Damaged { .. }), "{err}");
    assert_eq!(restore(&repo, &m2).await.unwrap(), data(6, 500_000));
    // A damaged manifest is named too, and prune refuses to guess.
    let mpath = d.path().join("repo").join(format!("backups/{}", m2.id));
    let mut mb = std::fs::read(&mpath).unwrap();
    mb[40] ^= 1;
    std::fs::write(&mpath, &mb).unwrap();
    assert!(matches!(repo.load_manifest(&m2.id).await, Err(Error::Damaged { .. })));
    assert_eq!(checker::verify(&repo, None, None).await.unwrap().damaged().count(), 2);
    let before = store.list("").await.unwrap().len();
    assert!(matches!(pruner::prune(&repo).await, Err(Error::Damaged { .. })));
    assert_eq!(store.list("").await.unwrap().len(), before, "a refused prune deletes nothing");
}

#[tokio::test]
async fn forget_keeps_policy_and_prunes_only_unreferenced() {
    let (_d, _s, repo) = new_repo().await;
    let mut ms = Vec::new();
    for i in 0..4 {
        ms.push(backup(&repo, &data(10 + i, 400_000)).await.unwrap());
    }
    let policy = KeepPolicy { last: 2, ..Default::default() };
    let plan = pruner::plan_forget(&repo, policy, None).await.unwrap();
    assert_eq!(plan.remove().len(), 2);
    let dry = pruner::plan_prune(&repo, &plan.remove()).await.unwrap();
    assert_eq!(repo.list_backups().await.unwrap().len(), 4, "planning changes nothing");
    let (_, pruned) = pruner::forget(&repo, policy, None, true).await.unwrap();
    let pruned = pruned.unwrap();
    assert_eq!(pruned.delete, dry.delete);
    let left = repo.list_backups().await.unwrap();
    assert_eq!(left.len(), 2);
    for m in &ms {
        if left.contains(&m.id) {
            assert_eq!(restore(&repo, m).await.unwrap().len(), 400_000);
        }
    }
    let report = checker::verify(&repo, None, None).await.unwrap();
    assert!(report.backups.iter().all(|b| b.ok));
    assert_eq!(report.unreferenced_chunks, 0);
}

#[tokio::test]
async fn concurrent_writers_do_not_corrupt() {
    let (_d, _s, repo) = new_repo().await;
    let shared = data(20, 1_500_000);
    let mut b = shared.clone();
    b.extend_from_slice(&data(21, 300_000));
    let (r1, r2) = tokio::join!(backup(&repo, &shared), backup(&repo, &b));
    let (m1, m2) = (r1.unwrap(), r2.unwrap());
    assert_eq!(restore(&repo, &m1).await.unwrap(), shared);
    assert_eq!(restore(&repo, &m2).await.unwrap(), b);
    assert!(checker::verify(&repo, None, None).await.unwrap().backups.iter().all(|c| c.ok));
}

#[tokio::test]
async fn newest_backups_lists_only_the_newest_ids() {
    let (_dir, store, repo) = new_repo().await;
    let now = chrono::Utc::now();
    let ago = |secs: i64, kind: &str| kmdr_core::BackupId::new(kind, now - chrono::Duration::seconds(secs));
    // Only names are listed: the objects need not be manifests.
    let ids = [ago(2 * 86_400, "etcd"), ago(86_400 / 2, "tenant"), ago(1800, "etcd"), ago(2, "tenant")];
    for id in &ids {
        store.put(&format!("backups/{id}"), bytes::Bytes::from_static(b"m")).await.unwrap();
    }
    // A minute holds one; an hour holds two: more than wanted, older ones not listed.
    let (got, complete) = repo.newest_backups(1, |_| true).await.unwrap();
    assert_eq!(got, [ids[2].clone(), ids[3].clone()]);
    assert!(!complete);
    // No window holds more than 10: every id, oldest first, and the list is complete.
    let (got, complete) = repo.newest_backups(10, |_| true).await.unwrap();
    assert_eq!(got, ids);
    assert!(complete);
    // The filter counts: a week holds the two etcd backups, more than one.
    let etcd = |i: &kmdr_core::BackupId| i.kind() == "etcd";
    let (got, complete) = repo.newest_backups(1, etcd).await.unwrap();
    assert_eq!(got, [ids[0].clone(), ids[2].clone()]);
    assert!(!complete);
    // Not more than two: the full listing says so.
    assert_eq!(repo.newest_backups(2, etcd).await.unwrap(), (vec![ids[0].clone(), ids[2].clone()], true));
}

#[tokio::test]
async fn resolve_lists_only_what_the_query_names() {
    let (_dir, store, repo) = new_repo().await;
    let now = chrono::Utc::now();
    let ago = |secs: i64, kind: &str| kmdr_core::BackupId::new(kind, now - chrono::Duration::seconds(secs));
    // Only names are resolved: the objects need not be manifests. The oldest
    // etcd backup is 40 days old, beyond the newest windows.
    let ids =
        [ago(40 * 86_400, "node-files"), ago(86_400, "etcd"), ago(60, "etcd"), ago(61, "tenant"), ago(2, "tenant")];
    for id in &ids {
        store.put(&format!("backups/{id}"), bytes::Bytes::from_static(b"m")).await.unwrap();
    }
    assert_eq!(repo.resolve("latest", None).await.unwrap(), ids[4]);
    assert_eq!(repo.resolve("latest", Some("etcd")).await.unwrap(), ids[2]);
    // Found by the full listing once no window holds one.
    assert_eq!(repo.resolve("latest", Some("node-files")).await.unwrap(), ids[0]);
    assert!(matches!(repo.resolve("latest", Some("volumes")).await, Err(Error::BackupNotFound { .. })));
    // A whole id, and a prefix that names one.
    for id in &ids {
        assert_eq!(&repo.resolve(&id.to_string(), None).await.unwrap(), id);
        let s = id.to_string();
        assert_eq!(&repo.resolve(&s[..s.len() - 2], Some(id.kind())).await.unwrap(), id);
    }
    // A prefix of several, and one of no kind that matches.
    let year = &ids[4].to_string()[..4];
    match repo.resolve(year, Some("tenant")).await {
        Err(Error::AmbiguousId { count: 2, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(repo.resolve(&ids[1].to_string(), Some("tenant")).await, Err(Error::BackupNotFound { .. })));
    // Not an id: nothing listed outside backups/.
    for q in ["", "../config", "keys/", "latest/"] {
        assert!(matches!(repo.resolve(q, None).await, Err(Error::BackupNotFound { .. })), "{q:?}");
    }
}
