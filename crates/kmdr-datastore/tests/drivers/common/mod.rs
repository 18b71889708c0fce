//! What the delta capture tests of every driver share: a repository in a
//! temp dir, a capture run beside a writer, the chain's checks, and the
//! state the point-in-time path restores at a revision.
#![allow(dead_code)]

pub mod servers;

use kmdr_datastore::capture::{CaptureOptions, ChangeSource, DeltaCapture, DeltaTarget, Stopped};
use kmdr_datastore::point::{load_overlay, plan_point, write_state};
use kmdr_datastore::{RecordReader, TenantBackupOptions, TenantStore, backup_tenant};
use kmdr_repo::Repository;
use kmdr_repo::deltas::check_chain;
use kmdr_repo::deltas::{DeltaEvent, decode};
use kmdr_repo::point::Point;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

pub type State = BTreeMap<Vec<u8>, Vec<u8>>;

pub async fn new_repo(dir: &Path) -> Repository {
    let store = kmdr_store::open(&dir.join("repo").display().to_string(), &kmdr_store::S3Options::default()).unwrap();
    Repository::init(store, b"secret", Default::default()).await.unwrap()
}

/// Options for tests: short ticks, a short wait for invisible ids.
pub fn options() -> CaptureOptions {
    CaptureOptions {
        flush_every: Duration::from_millis(300),
        poll_every: Duration::from_millis(100),
        gap_wait: Duration::from_secs(1),
        ..CaptureOptions::default()
    }
}

/// A full backup of `schema`: its revision.
pub async fn full_backup<S: TenantStore>(repo: &Repository, store: &S, schema: &str) -> i64 {
    let m = backup_tenant(repo, store, schema, &TenantBackupOptions::default(), None).await.unwrap();
    kmdr_repo::point::base_revision(&m).unwrap()
}

/// Where a capture of `schema` resumes: after the newest segment, else after `base`.
pub async fn resume_point(repo: &Repository, schema: &str, base: i64) -> i64 {
    let segs = repo.list_segments(Some(&format!("tenant/{schema}"))).await.unwrap();
    segs.iter().map(|s| s.last).max().unwrap_or(base).max(base) + 1
}

/// Capture `schema` from `from` while `writer` runs, then for `settle` more,
/// then stop; returns how the capture ended.
pub async fn capture_while<F: Future<Output = ()>>(
    repo: &Repository,
    source: &ChangeSource,
    schema: &str,
    from: i64,
    writer: F,
    settle: Duration,
) -> Stopped {
    let mut cap = DeltaCapture::new(DeltaTarget::kine(schema), options(), from);
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let run = cap.run(source, repo, &mut rx, &|_| {});
    let write = async {
        writer.await;
        tokio::time::sleep(settle).await;
        tx.send(true).unwrap();
    };
    let (stopped, ()) = tokio::join!(run, write);
    stopped.unwrap()
}

/// Every event of the series, checking that the segments follow each other
/// exactly and that no revision is captured twice.
pub async fn captured(repo: &Repository, schema: &str, base: i64) -> Vec<DeltaEvent> {
    let segments = repo.list_segments(Some(&format!("tenant/{schema}"))).await.unwrap();
    let check = check_chain(&segments);
    assert!(check.gaps.is_empty() && check.overlaps.is_empty(), "{check:?}");
    assert_eq!(check.first, Some(base + 1), "the chain starts right after the full backup");
    let mut out: Vec<DeltaEvent> = Vec::new();
    for s in &segments {
        for e in decode(&repo.get_segment(s).await.unwrap()).unwrap() {
            assert!(e.revision >= s.first && e.revision <= s.last, "event at {} in segment {s}", e.revision);
            assert!(
                out.last().is_none_or(|p| p.revision < e.revision),
                "revision {} captured twice or out of order",
                e.revision
            );
            out.push(e);
        }
    }
    out
}

/// The newest revision the chain covers.
pub async fn chain_end(repo: &Repository, schema: &str) -> i64 {
    repo.list_segments(Some(&format!("tenant/{schema}"))).await.unwrap().iter().map(|s| s.last).max().unwrap_or(0)
}

/// The state the point-in-time path restores for `schema` at `rev` (full
/// backup + segments), as relative key -> value.
pub async fn restored_state(repo: &Repository, schema: &str, rev: i64) -> State {
    let (plan, base) = plan_point(repo, schema, Point::Revision(rev)).await.unwrap();
    assert_eq!(plan.revision, rev);
    let overlay = load_overlay(repo, &plan).await.unwrap();
    let mut buf = Vec::new();
    write_state(repo, &base, &overlay, &mut buf).await.unwrap();
    let mut r = RecordReader::new(buf.as_slice());
    let mut out = State::new();
    while let Some(rec) = r.next().await.unwrap() {
        out.insert(rec.key, rec.value);
    }
    out
}
