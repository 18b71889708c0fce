//! One etcd Watch shared by the tenants of an etcd (`etcd::hub`), against a
//! real etcd: each subscriber gets exactly the events of its range from the
//! revision it asked for, each once and in order, also when it subscribes at
//! a revision the watch has passed (the watch opens again, and those already
//! further on see nothing twice); an idle subscriber's coverage moves with the
//! others' writes; a subscriber that needs a compacted revision is stopped as
//! `Compacted` while the others go on.

use kmdr_datastore::capture::DeltaTarget;
use kmdr_datastore::etcd::hub::{EtcdWatchHub, HubFeed};
use kmdr_datastore::feed::{ChangeFeed, Stopped};
use kmdr_testkit::Etcd;
use std::time::{Duration, Instant};

/// Read `feed` until it proves coverage up to `upto`: (revision, relative key) of each event.
async fn read_to(feed: &mut HubFeed, upto: i64, covered: &mut i64) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while *covered < upto {
        assert!(Instant::now() < deadline, "coverage stuck at {covered}, waiting for {upto}");
        let got = feed.next(Instant::now() + Duration::from_millis(200)).await.unwrap().unwrap();
        for e in got.events {
            assert!(e.revision > *covered, "revision {} handed over after coverage {covered}", e.revision);
            out.push((e.revision, String::from_utf8(e.key).unwrap()));
        }
        if let Some(c) = got.covered {
            *covered = (*covered).max(c);
        }
    }
    out
}

/// Put one key into each of `tenants` (and one outside any): (tenant, revision, relative key).
async fn round(c: &mut etcd_client::Client, tenants: &[&str], n: usize) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    for t in tenants.iter().chain(&["zz"]) {
        let key = format!("/k/{n:03}");
        let rev = c.put(format!("/{t}{key}"), "v", None).await.unwrap().header().unwrap().revision();
        out.push((t.to_string(), rev, key));
    }
    out
}

fn want(log: &[(String, i64, String)], tenant: &str, from: i64) -> Vec<(i64, String)> {
    log.iter().filter(|(t, r, _)| t == tenant && *r >= from).map(|(_, r, k)| (*r, k.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_watch_hands_each_tenant_its_own_changes_from_its_own_revision() {
    if !kmdr_testkit::need("etcd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let e = Etcd::start(dir.path(), "hub");
    let mut c = e.client().await;
    // "ab" shares the prefix "/a" with "a": the ranges `[/a/, /a0)` keep them apart.
    let tenants = ["a", "b", "ab"];
    let mut log = Vec::new();
    for n in 0..20 {
        log.extend(round(&mut c, &tenants, n).await);
    }
    let mid = log[30].1;
    let hub = EtcdWatchHub::start(c.clone());
    // What each capture holds as covered: the revision before the one it asks for.
    let mut fa = hub.subscribe(&DeltaTarget::tenant("a"), mid).await.unwrap();
    let mut ca = mid - 1;
    let now = log.last().unwrap().1;
    let mut got_a = read_to(&mut fa, now, &mut ca).await;
    // b from the start, which the watch has passed; ab from now on, idle for a while.
    let mut fb = hub.subscribe(&DeltaTarget::tenant("b"), 1).await.unwrap();
    let mut cb = 0;
    let mut fab = hub.subscribe(&DeltaTarget::tenant("ab"), now + 1).await.unwrap();
    let mut cab = now;
    let mut got_b = read_to(&mut fb, now, &mut cb).await;
    for n in 20..30 {
        log.extend(round(&mut c, &["a", "b"], n).await);
    }
    let now2 = log.last().unwrap().1;
    got_a.extend(read_to(&mut fa, now2, &mut ca).await);
    got_b.extend(read_to(&mut fb, now2, &mut cb).await);
    // Idle, and proven complete up to the others' writes.
    let got_ab = read_to(&mut fab, now2, &mut cab).await;
    assert_eq!(got_a, want(&log, "a", mid));
    assert_eq!(got_b, want(&log, "b", 1));
    assert!(got_ab.is_empty(), "{got_ab:?}");

    // Compacted: a subscriber from revision 1 is stopped; a goes on.
    c.compact(now2, None).await.unwrap();
    let mut fzz = hub.subscribe(&DeltaTarget::tenant("zz"), 1).await.unwrap();
    let stopped = loop {
        match fzz.next(Instant::now() + Duration::from_millis(200)).await.unwrap() {
            Ok(ch) => assert!(ch.events.is_empty()),
            Err(s) => break s,
        }
    };
    assert_eq!(stopped, Stopped::Compacted { wanted: 1, compact_revision: now2 });
    log.extend(round(&mut c, &["a"], 30).await);
    let now3 = log.last().unwrap().1;
    let more = read_to(&mut fa, now3, &mut ca).await;
    assert_eq!(more, want(&log, "a", now2 + 1));
    assert!(!hub.failed());
}
