//! `kmdr serve` with many tenants on one etcd: one Watch for all of them
//! (counted by etcd itself, on its /metrics), idle tenants write no segment
//! while others are written, and after a `kill -9` each tenant's chain
//! resumes exactly where it ended (no revision repeated or skipped) and
//! restores to its source.

use crate::common;
use crate::serve::{Serve, open_repo, runtime, tenant_state};
use common::{Etcd, Kmdr};
use etcd_client::DeleteOptions;
use kmdr_repo::deltas::check_chain;
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const TENANTS: usize = 12;

fn schema(i: usize) -> String {
    format!("t-{i:04}")
}

/// A repository, an etcd holding TENANTS tenants of 20 keys, and a plan with `tenants: all`.
fn setup() -> (tempfile::TempDir, Kmdr, Etcd, tokio::runtime::Runtime, String) {
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let src = Etcd::start(dir.path(), "src");
    let rt = runtime();
    for i in 1..=TENANTS {
        rt.block_on(src.load(&format!("/{}/seed/", schema(i)), 20, 32, i as u64));
    }
    let plan = dir.path().join("kmdr.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: serve-tenants\nrepository:\n  url: {}\n  keyFile: {}\nlayers:\n  tenant-control-planes:\n    rto: 1h\n    rpo: 1h\n    datastores:\n      - name: shared\n        url: {}\n        tenants: all\n",
            k.repo,
            k.key_file.display(),
            src.client_url.replace("http://", "etcd://")
        ),
    )
    .unwrap();
    let plan = plan.display().to_string();
    (dir, k, src, rt, plan)
}

/// A gauge of etcd's own /metrics (HTTP/1.0: no chunked body).
fn etcd_gauge(e: &Etcd, name: &str) -> i64 {
    let addr = e.client_url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let line = out.lines().find(|l| l.split_whitespace().next() == Some(name));
    let value = line.unwrap_or_else(|| panic!("etcd's /metrics has no {name}")).split_whitespace().nth(1).unwrap();
    value.parse::<f64>().unwrap() as i64
}

/// Wait (90 s) until every tenant's capture runs.
fn wait_capturing(s: &Serve, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let up = crate::serve::http_get(&s.addr, "/metrics")
            .map(|(_, m)| m.lines().filter(|l| l.starts_with("kmdr_delta_up{") && l.ends_with(" 1")).count())
            .unwrap_or(0);
        if up == TENANTS {
            return;
        }
        assert!(Instant::now() < deadline, "{up} of {TENANTS} captures running after 90 s; see {}", log.display());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Segments per tenant series.
fn segments_per_tenant(repo: &kmdr_repo::Repository, rt: &tokio::runtime::Runtime) -> BTreeMap<String, usize> {
    let mut out: BTreeMap<String, usize> = (1..=TENANTS).map(|i| (format!("tenant/{}", schema(i)), 0)).collect();
    for s in rt.block_on(repo.list_segments(None)).unwrap() {
        *out.entry(s.series).or_default() += 1;
    }
    out
}

/// A writer of puts, overwrites and deletes into `tenants` until `stop`; the number of changes.
fn writer(url: String, tenants: Vec<usize>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let mut c = etcd_client::Client::connect([url.as_str()], None).await.unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = schema(tenants[n as usize % tenants.len()]);
                let key = format!("/{t}/k/{:04}", (n / tenants.len() as u64) % 100);
                if n % 7 == 3 {
                    c.delete(key, None).await.unwrap();
                } else {
                    c.put(key, format!("v{n}"), None).await.unwrap();
                }
                if n % 97 == 5 {
                    c.delete(format!("/{t}/seed/00000"), Some(DeleteOptions::new().with_prefix())).await.unwrap();
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            n
        })
    })
}

/// Every tenant restored `--at now` into `dst` equals its source.
fn every_tenant_restores_to_its_source(k: &Kmdr, src: &Etcd, dst: &Etcd, rt: &tokio::runtime::Runtime) {
    let to = dst.client_url.replace("http://", "etcd://");
    for i in 1..=TENANTS {
        let s = schema(i);
        k.ok(&["restore", "tenant", "latest", "--source-schema", &s, "--at", "now", "--datastore", &to]);
        assert_eq!(rt.block_on(tenant_state(dst, &s, 0)), rt.block_on(tenant_state(src, &s, 0)), "tenant {s}");
    }
}

#[test]
fn tenants_of_one_etcd_share_one_watch_and_idle_ones_write_no_segment() {
    need_etcd!();
    let (dir, k, src, rt, plan) = setup();
    let log = dir.path().join("serve.log");
    let serve = Serve::start(&k, &plan, &log);
    wait_capturing(&serve, &log);
    std::thread::sleep(Duration::from_secs(1));
    // Nothing else watches this etcd: one watcher on one stream is serve's, for all twelve.
    assert_eq!(etcd_gauge(&src, "etcd_debugging_mvcc_watcher_total"), 1, "watchers on etcd; see {}", log.display());
    assert_eq!(etcd_gauge(&src, "etcd_debugging_mvcc_watch_stream_total"), 1, "watch streams on etcd");

    // Longer than the 60 s after which an idle capture used to write an empty
    // segment, with three tenants written (so etcd's revision moves for all).
    let repo = open_repo(&k);
    let before = segments_per_tenant(&repo, &rt);
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(src.client_url.clone(), vec![1, 2, 3], stop.clone());
    std::thread::sleep(Duration::from_secs(65));
    stop.store(true, Ordering::Relaxed);
    assert!(w.join().unwrap() > 1000);
    std::thread::sleep(Duration::from_secs(2));
    let after = segments_per_tenant(&repo, &rt);
    for (series, n) in &after {
        let busy = ["tenant/t-0001", "tenant/t-0002", "tenant/t-0003"].contains(&series.as_str());
        if busy {
            assert!(*n >= before[series] + 30, "{series}: {} segments before, {n} after", before[series]);
        } else {
            assert_eq!(*n, before[series], "{series} is idle and wrote segments");
        }
    }
    serve.terminate();
    let dst = Etcd::start(dir.path(), "dst");
    every_tenant_restores_to_its_source(&k, &src, &dst, &rt);
}

#[test]
fn many_tenants_killed_and_restarted_each_resume_without_gap_or_duplicate() {
    need_etcd!();
    let (dir, k, src, rt, plan) = setup();
    let log = dir.path().join("serve.log");
    let stop = Arc::new(AtomicBool::new(false));
    // Half the tenants written all along; the others stay idle, so the
    // captures resume from different revisions after the kill.
    let w = writer(src.client_url.clone(), (1..=TENANTS / 2).collect(), stop.clone());
    let mut first = Serve::start(&k, &plan, &log);
    wait_capturing(&first, &log);
    std::thread::sleep(Duration::from_millis(2500));
    first.child.kill().unwrap(); // kill -9
    let _ = first.child.wait();
    std::thread::sleep(Duration::from_millis(1500));
    let second = Serve::start(&k, &plan, &log);
    wait_capturing(&second, &log);
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Relaxed);
    let writes = w.join().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    second.terminate();
    assert!(writes > 500, "the writer wrote only {writes} changes");

    let repo = open_repo(&k);
    for i in 1..=TENANTS {
        let s = schema(i);
        let segments = rt.block_on(repo.list_segments(Some(&format!("tenant/{s}")))).unwrap();
        let check = check_chain(&segments);
        assert!(check.gaps.is_empty() && check.overlaps.is_empty(), "{s}: {check:?}");
        let mut seen = HashSet::new();
        for seg in &segments {
            for e in kmdr_repo::deltas::decode(&rt.block_on(repo.get_segment(seg)).unwrap()).unwrap() {
                assert!(e.revision >= seg.first && e.revision <= seg.last, "{s}: event at {} in {seg}", e.revision);
                assert!(seen.insert((e.revision, e.key.clone())), "{s}: revision {} captured twice", e.revision);
            }
        }
        if i <= TENANTS / 2 {
            assert!(!seen.is_empty(), "{s} was written and its segments hold nothing");
            let base = rt.block_on(kmdr_datastore::point::plan_point(&repo, &s, kmdr_repo::point::Point::Latest));
            assert_eq!(check.first, Some(base.unwrap().0.base_revision + 1), "{s}: the chain starts after its base");
        }
    }
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(log_text.matches("one watch for the tenants of this etcd").count(), 2, "{log_text}");
    let dst = Etcd::start(dir.path(), "dst");
    every_tenant_restores_to_its_source(&k, &src, &dst, &rt);
}
