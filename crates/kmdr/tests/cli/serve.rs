//! `kmdr serve` against real etcd: delta capture through an etcd kill -9 and
//! a serve kill -9, point-in-time restores compared with etcd's own
//! `get --rev`, a gap in the chain, and the metrics endpoint; and against a
//! real PostgreSQL running kine's table: a serve kill -9 loses no write
//! acknowledged more than 2 s before it.

use crate::common;
use common::{Etcd, Kmdr, free_port};
use etcd_client::{DeleteOptions, GetOptions};
use kmdr_repo::deltas::check_chain;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A repository and a source etcd holding `n` keys of `size` bytes under `prefix`.
fn setup(prefix: &str, n: usize, size: usize, seed: u64) -> (tempfile::TempDir, Kmdr, Etcd, tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let src = Etcd::start(dir.path(), "src");
    let rt = runtime();
    rt.block_on(src.load(prefix, n, size, seed));
    (dir, k, src, rt)
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

fn datastore(e: &Etcd) -> String {
    e.client_url.replace("http://", "etcd://")
}

fn write_plan(dir: &Path, k: &Kmdr, e: &Etcd) -> String {
    write_plan_for(dir, k, &datastore(e))
}

/// A plan backing up tenant t1 of the datastore at `url`.
pub(crate) fn write_plan_for(dir: &Path, k: &Kmdr, url: &str) -> String {
    let plan = dir.join("kmdr.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: serve-test\nrepository:\n  url: {}\n  keyFile: {}\nlayers:\n  tenant-control-planes:\n    rto: 1h\n    rpo: 1h\n    datastores:\n      - name: shared\n        url: {}\n        tenants:\n          - t1\n",
            k.repo,
            k.key_file.display(),
            url
        ),
    )
    .unwrap();
    plan.display().to_string()
}

/// A plan backing up the whole etcd at `client_url` (the under-cluster layer).
pub(crate) fn write_etcd_plan(dir: &Path, k: &Kmdr, client_url: &str) -> String {
    let plan = dir.join("kmdr.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: serve-etcd\nrepository:\n  url: {}\n  keyFile: {}\nlayers:\n  under-cluster:\n    rto: 1h\n    rpo: 1h\n    etcd:\n      endpoints: [{}]\n",
            k.repo,
            k.key_file.display(),
            client_url
        ),
    )
    .unwrap();
    plan.display().to_string()
}

/// GET a path of the metrics server; (status line, body).
pub(crate) fn http_get(addr: &str, path: &str) -> Option<(String, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// The metric line of a running capture of the test plan's tenant.
pub(crate) const T1_CAPTURING: &str = "kmdr_delta_up{layer=\"tenant-control-planes\",unit=\"shared/t1\"} 1";

pub(crate) struct Serve {
    pub(crate) child: Child,
    pub(crate) addr: String,
}

impl Serve {
    pub(crate) fn start(k: &Kmdr, plan: &str, log: &Path) -> Serve {
        Serve::start_with(k, plan, log, &[])
    }

    pub(crate) fn start_with(k: &Kmdr, plan: &str, log: &Path, extra: &[&str]) -> Serve {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = k
            .cmd()
            .args(["serve", "--plan", plan, "--metrics-addr", &addr, "--flush-every", "500ms"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap())
            .spawn()
            .expect("start kmdr serve");
        let s = Serve { child, addr };
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Some((status, _)) = http_get(&s.addr, "/readyz")
                && status.contains("200")
            {
                return s;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("kmdr serve did not become ready; see {}", log.display());
    }

    /// Poll `/metrics` (60 s) until it holds `line`; the metrics then.
    pub(crate) fn wait_for_metric(&self, line: &str, log: &Path) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((_, m)) = http_get(&self.addr, "/metrics").filter(|(_, m)| m.contains(line)) {
                return m;
            }
            assert!(Instant::now() < deadline, "/metrics did not show {line} within 60 s; see {}", log.display());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM and wait: it must exit 0 within 30 s.
    pub(crate) fn terminate(mut self) {
        let st = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(code) = self.child.try_wait().unwrap() {
                assert!(code.success(), "kmdr serve exited with {code:?} after SIGTERM");
                return;
            }
            assert!(Instant::now() < deadline, "kmdr serve did not stop within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keys and values under `/t1/`, relative (`/w/...`), at `rev` (0: now).
pub(crate) async fn tenant_state(e: &Etcd, schema: &str, rev: i64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut c = e.client().await;
    let root = format!("/{schema}");
    let mut o = GetOptions::new().with_range(format!("{root}0"));
    if rev > 0 {
        o = o.with_revision(rev);
    }
    let r = c.get(format!("{root}/"), Some(o)).await.unwrap();
    r.kvs().iter().map(|kv| (kv.key()[root.len()..].to_vec(), kv.value().to_vec())).collect()
}

/// Wait (30 s) until `series`' delta chain reaches revision `at_least`;
/// then its chain check, with no gap nor overlap asserted, and every revision
/// its segments hold, sorted.
pub(crate) fn chain_revisions(
    rt: &tokio::runtime::Runtime,
    repo: &kmdr_repo::Repository,
    series: &str,
    at_least: i64,
) -> (kmdr_repo::deltas::ChainCheck, Vec<i64>) {
    let t0 = Instant::now();
    let segments = loop {
        let segments = rt.block_on(repo.list_segments(Some(series))).unwrap();
        if check_chain(&segments).last.is_some_and(|l| l >= at_least) {
            break segments;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{series}'s chain did not reach revision {at_least}: {:?}",
            check_chain(&segments)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let check = check_chain(&segments);
    assert!(check.gaps.is_empty() && check.overlaps.is_empty(), "{series}: {check:?}");
    let mut revisions: Vec<i64> = segments
        .iter()
        .flat_map(|seg| kmdr_repo::deltas::decode(&rt.block_on(repo.get_segment(seg)).unwrap()).unwrap())
        .map(|e| e.revision)
        .collect();
    revisions.sort();
    (check, revisions)
}

pub(crate) fn open_repo(k: &Kmdr) -> kmdr_repo::Repository {
    runtime().block_on(k.open_repo())
}

#[test]
fn every_write_acknowledged_two_seconds_before_etcd_is_killed_is_restored() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let mut src = Etcd::start(dir.path(), "src");
    let rt = runtime();
    rt.block_on(async {
        src.load("/t1/seed/", 200, 64, 1).await;
        src.load("/t2/other/", 10, 16, 2).await;
    });
    let plan = write_plan(dir.path(), &k, &src);
    let log = dir.path().join("serve.log");
    let serve = Serve::start(&k, &plan, &log);

    // The writer: 4 tasks of 125 puts/s each, unique keys, ack times recorded.
    let started = Instant::now();
    let kill_after = Duration::from_millis(3000 + rand::random::<u64>() % 3000);
    let url = src.client_url.clone();
    let mut tasks = Vec::new();
    for w in 0..4 {
        let url = url.clone();
        tasks.push(rt.spawn(async move {
            let mut c = etcd_client::Client::connect([url.as_str()], None).await.unwrap();
            let mut acks = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(8));
            for n in 0u64.. {
                tick.tick().await;
                let key = format!("/t1/w/{w}-{n:08}");
                match tokio::time::timeout(Duration::from_secs(2), c.put(key.clone(), format!("v{n}"), None)).await {
                    Ok(Ok(_)) => acks.push((key, Instant::now())),
                    _ => break,
                }
            }
            acks
        }));
    }
    std::thread::sleep(kill_after);
    src.kill(); // kill -9 etcd while the writers run
    let killed = Instant::now();
    let acks: Vec<(String, Instant)> = tasks.into_iter().flat_map(|t| rt.block_on(t).unwrap()).collect();
    let rate = acks.len() as f64 / (killed - started).as_secs_f64();
    assert!(acks.len() > 500, "the writer wrote only {} keys", acks.len());
    // Let serve notice the dead etcd and write what it holds, then stop it.
    std::thread::sleep(Duration::from_secs(3));
    let (_, metrics) = http_get(&serve.addr, "/metrics").expect("metrics");
    assert!(
        metrics.contains("kmdr_delta_segments_total{layer=\"tenant-control-planes\",unit=\"shared/t1\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kmdr_rpo_target_seconds{layer=\"tenant-control-planes\",unit=\"shared/t1\"} 3600"),
        "{metrics}"
    );
    serve.terminate();

    let dst = Etcd::start(dir.path(), "dst");
    k.ok(&["restore", "tenant", "latest", "--source-schema", "t1", "--at", "now", "--datastore", &datastore(&dst)]);
    let restored = rt.block_on(tenant_state(&dst, "t1", 0));
    let must = acks.iter().filter(|(_, at)| *at + Duration::from_secs(2) <= killed).collect::<Vec<_>>();
    let missing: Vec<&String> = must
        .iter()
        .filter(|(key, _)| !restored.contains_key(key.strip_prefix("/t1").unwrap().as_bytes()))
        .map(|(k, _)| k)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} writes acknowledged > 2 s before the kill are missing, e.g. {:?}",
        missing.len(),
        must.len(),
        &missing[..missing.len().min(5)]
    );
    let kept_late = acks.len()
        - must.len()
        - acks
            .iter()
            .filter(|(key, at)| {
                *at + Duration::from_secs(2) > killed
                    && !restored.contains_key(key.strip_prefix("/t1").unwrap().as_bytes())
            })
            .count();
    assert_eq!(restored.keys().filter(|k| k.starts_with(b"/seed/")).count(), 200);
    assert!(rt.block_on(tenant_state(&dst, "t2", 0)).is_empty(), "another tenant's keys were restored");
    eprintln!(
        "writer {rate:.0} puts/s, {} acknowledged; {} older than 2 s at the kill all restored; {kept_late} of the last 2 s kept too",
        acks.len(),
        must.len()
    );
}

#[test]
fn serve_killed_and_restarted_resumes_without_gap_or_duplicate_and_restores_any_revision() {
    need_etcd!();
    let (dir, k, src, rt) = setup("/t1/seed/", 100, 32, 3);
    let plan = write_plan(dir.path(), &k, &src);
    let log = dir.path().join("serve.log");

    // A writer of puts, overwrites and deletes, in the background for the whole test.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = src.client_url.clone();
    let stop2 = stop.clone();
    let writer = std::thread::spawn(move || {
        runtime().block_on(async move {
            let mut c = etcd_client::Client::connect([url.as_str()], None).await.unwrap();
            let mut n = 0u64;
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("/t1/k/{:04}", n % 300);
                if n % 7 == 3 {
                    c.delete(key, None).await.unwrap();
                } else {
                    c.put(key, format!("v{n}"), None).await.unwrap();
                }
                if n.is_multiple_of(50) {
                    c.delete("/t1/seed/0000", Some(DeleteOptions::new().with_prefix())).await.unwrap();
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
            n
        })
    });
    let mut first = Serve::start(&k, &plan, &log);
    std::thread::sleep(Duration::from_millis(2500));
    first.child.kill().unwrap(); // kill -9
    let _ = first.child.wait();
    std::thread::sleep(Duration::from_millis(1500));
    let second = Serve::start(&k, &plan, &log);
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.join().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    second.terminate();
    assert!(writes > 200, "the writer wrote only {writes} changes");

    // The chain: one full backup, then segments that follow each other exactly.
    let repo = open_repo(&k);
    let segments = rt.block_on(repo.list_segments(Some("tenant/t1"))).unwrap();
    let check = check_chain(&segments);
    assert!(check.gaps.is_empty() && check.overlaps.is_empty(), "{check:?}");
    let mut seen = std::collections::HashSet::new();
    let mut revisions = Vec::new();
    for s in &segments {
        let events = kmdr_repo::deltas::decode(&rt.block_on(repo.get_segment(s)).unwrap()).unwrap();
        for e in events {
            assert!(e.revision >= s.first && e.revision <= s.last, "event at {} in segment {s}", e.revision);
            assert!(seen.insert((e.revision, e.key.clone())), "revision {} captured twice", e.revision);
            revisions.push(e.revision);
        }
    }
    let base = rt.block_on(kmdr_datastore::point::plan_point(&repo, "t1", kmdr_repo::point::Point::Latest)).unwrap().0;
    assert_eq!(check.first, Some(base.base_revision + 1), "the chain starts right after the full backup");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(log_text.matches("capturing changes of tenant/t1 from revision").count(), 2, "{log_text}");

    let dst = Etcd::start(dir.path(), "dst");
    // Latest: exactly the source now.
    k.ok(&["restore", "tenant", "latest", "--source-schema", "t1", "--at", "now", "--datastore", &datastore(&dst)]);
    assert_eq!(rt.block_on(tenant_state(&dst, "t1", 0)), rt.block_on(tenant_state(&src, "t1", 0)));
    // A revision in the middle (while serve was down, too): exactly etcd's own state at it.
    revisions.sort();
    for r in [revisions[revisions.len() / 2], revisions[revisions.len() / 3] + 1] {
        let out = k.json(&[
            "restore",
            "tenant",
            "latest",
            "--source-schema",
            "t1",
            "--revision",
            &r.to_string(),
            "--schema",
            "mid",
            "--force",
            "--datastore",
            &datastore(&dst),
        ]);
        assert_eq!(out["point"]["revision"], r);
        assert_eq!(
            rt.block_on(tenant_state(&dst, "mid", 0)),
            rt.block_on(tenant_state(&src, "t1", r)),
            "state at revision {r}"
        );
    }
    // A point beyond the chain is a gap, named.
    let beyond = check.last.unwrap() + 10;
    let err = k.fails(
        &[
            "restore",
            "tenant",
            "latest",
            "--source-schema",
            "t1",
            "--revision",
            &beyond.to_string(),
            "--schema",
            "x",
            "--datastore",
            &datastore(&dst),
        ],
        12,
    );
    assert!(err.contains(&format!("no segment covers revisions {}..={beyond}", check.last.unwrap() + 1)), "{err}");
    // `kmdr status` counts the chain: the newest point held is the newest segment, not the full backup.
    let status = k.json(&["status", "--plan", &plan]);
    let rpo = status
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "rpo" && f["subject"] == "tenant-control-planes shared/t1")
        .unwrap()
        .clone();
    assert_eq!(rpo["level"], "OK", "{rpo}");
    assert!(
        rpo["message"]
            .as_str()
            .unwrap()
            .contains(&format!("newest point held, {} delta segments after backup", segments.len())),
        "{rpo}"
    );
    // `kmdr backups points`: one window from the full backup to the newest segment.
    let points = k.json(&["backups", "points"]);
    let t1 = points.as_array().unwrap().iter().find(|p| p["series"] == "tenant/t1").unwrap().clone();
    assert_eq!(t1["windows"].as_array().unwrap().len(), 1, "{t1}");
    assert_eq!(
        (t1["windows"][0]["from_revision"].as_i64(), t1["windows"][0]["to_revision"].as_i64()),
        (Some(base.base_revision), check.last),
        "{t1}"
    );
    // Remove one segment in the middle: a gap, exit 12, naming the revisions, nothing restored.
    let victim = &segments[segments.len() / 2];
    std::fs::remove_file(Path::new(&k.repo).join(victim.key())).unwrap();
    let points = k.json(&["backups", "points"]);
    let t1 = points.as_array().unwrap().iter().find(|p| p["series"] == "tenant/t1").unwrap().clone();
    assert_eq!(t1["gaps"], serde_json::json!([[victim.first, victim.last]]), "{t1}");
    assert_eq!(t1["windows"][0]["to_revision"].as_i64(), Some(victim.first - 1), "{t1}");
    let text = k.ok(&["backups", "points"]);
    assert!(text.contains(&format!("GAP: revisions {}..={}", victim.first, victim.last)), "{text}");
    let o = k.run(&["status", "--plan", &plan]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("delta-chain")
            && out.contains(&format!("no segment covers revisions {}..={}", victim.first, victim.last)),
        "{out}"
    );
    let err = k.fails(
        &[
            "restore",
            "tenant",
            "latest",
            "--source-schema",
            "t1",
            "--at",
            "now",
            "--schema",
            "gap",
            "--datastore",
            &datastore(&dst),
        ],
        12,
    );
    assert!(err.contains(&format!("no segment covers revisions {}..={}", victim.first, victim.last)), "{err}");
    assert!(rt.block_on(tenant_state(&dst, "gap", 0)).is_empty());
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Every key of an etcd at `rev` (0: now) with its create and mod revisions.
pub(crate) async fn full_state(url: &str, rev: i64) -> (i64, BTreeMap<Vec<u8>, (Vec<u8>, i64, i64)>) {
    let mut c = etcd_client::Client::connect([url], None).await.unwrap();
    let mut o = GetOptions::new().with_range(vec![0]);
    if rev > 0 {
        o = o.with_revision(rev);
    }
    let r = c.get(vec![0], Some(o)).await.unwrap();
    let kvs = r
        .kvs()
        .iter()
        .map(|kv| (kv.key().to_vec(), (kv.value().to_vec(), kv.create_revision(), kv.mod_revision())))
        .collect();
    (r.header().unwrap().revision(), kvs)
}

#[test]
fn whole_etcd_restores_to_any_revision_with_every_revision_kept() {
    need_etcd!();
    let (dir, k, src, rt) = setup("/registry/seed/", 200, 64, 5);
    let plan = write_etcd_plan(dir.path(), &k, &src.client_url);
    let log = dir.path().join("serve.log");
    let serve = Serve::start(&k, &plan, &log);
    // Puts, overwrites, deletes, multi-key transactions and prefix deletes, all over the keyspace.
    let mut revisions = Vec::new();
    rt.block_on(async {
        let mut c = src.client().await;
        for n in 0..600u32 {
            let rev = if n % 11 == 5 {
                let txn = etcd_client::Txn::new().and_then(vec![
                    etcd_client::TxnOp::put(format!("/registry/pair/a{}", n % 40), format!("a{n}"), None),
                    etcd_client::TxnOp::put(format!("/registry/pair/b{}", n % 40), format!("b{n}"), None),
                    etcd_client::TxnOp::delete(format!("/registry/seed/{:04}", n % 200), None),
                ]);
                c.txn(txn).await.unwrap().header().unwrap().revision()
            } else if n % 7 == 3 {
                c.delete(format!("/registry/k/{:03}", n % 90), None).await.unwrap().header().unwrap().revision()
            } else if n % 97 == 50 {
                c.delete("/registry/pair/", Some(DeleteOptions::new().with_prefix()))
                    .await
                    .unwrap()
                    .header()
                    .unwrap()
                    .revision()
            } else {
                c.put(format!("/registry/k/{:03}", n % 90), format!("v{n}"), None)
                    .await
                    .unwrap()
                    .header()
                    .unwrap()
                    .revision()
            };
            revisions.push(rev);
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    serve.terminate();
    let (now_rev, now_state) = rt.block_on(full_state(&src.client_url, 0));

    // A dry run names the base and the chain and creates nothing.
    let mid = revisions[revisions.len() / 2];
    let member = |name: &str| {
        let peer = format!("http://127.0.0.1:{}", free_port());
        (dir.path().join(name), peer.clone(), format!("{name}={peer}"))
    };
    let (data, peer, cluster) = member("mid");
    let args = |data: &Path, name: &str, peer: &str, cluster: &str, point: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["restore", "etcd", "latest", "--data-dir"].iter().map(|s| s.to_string()).collect();
        a.extend([
            data.display().to_string(),
            "--name".into(),
            name.into(),
            "--initial-cluster".into(),
            cluster.into(),
        ]);
        a.extend(["--initial-advertise-peer-urls".into(), peer.into()]);
        a.extend(point.iter().map(|s| s.to_string()));
        a
    };
    let out = k.ok(&refs(&args(&data, "mid", &peer, &cluster, &["--revision", &mid.to_string(), "--dry-run"])));
    assert!(out.contains(&format!("point   revision {mid} of etcd/")) && out.contains("scratch etcd"), "{out}");
    assert!(!data.exists());

    // A revision in the middle: every key, value, create and mod revision as etcd had them at it.
    let out = k.ok(&refs(&args(&data, "mid", &peer, &cluster, &["--revision", &mid.to_string()])));
    assert!(out.contains("every revision kept"), "{out}");
    let restored = Etcd::start_on(data.clone(), "mid", Some(peer.clone()));
    let (rev, state) = rt.block_on(full_state(&restored.client_url, 0));
    let (_, want) = rt.block_on(full_state(&src.client_url, mid));
    // Kubernetes-safe: the store starts a bump above the point, the keys keep their revisions.
    assert_eq!(rev, mid + 1_000_000_000, "the restored member starts a bump above the point's revision");
    assert!(state == want, "state at revision {mid}: {} keys restored, {} expected", state.len(), want.len());
    restored.stop();

    // `--at now` to a file: the newest state captured, which is the source now.
    let file = dir.path().join("now.db");
    let out = k.json(&["restore", "etcd", "latest", "--at", "now", "--to-file", file.to_str().unwrap()]);
    assert_eq!(out["point"]["revision"], now_rev, "{out}");
    let (data, peer, cluster) = member("now");
    let st = std::process::Command::new("etcdutl")
        .args(["snapshot", "restore", file.to_str().unwrap(), "--data-dir", data.to_str().unwrap(), "--name", "now"])
        .args(["--initial-cluster", &cluster, "--initial-advertise-peer-urls", &peer])
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let restored = Etcd::start_on(data, "now", Some(peer));
    assert!(
        rt.block_on(full_state(&restored.client_url, 0)) == (now_rev, now_state),
        "the --at now snapshot equals the source"
    );
    restored.stop();
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("kmdr-"))
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "scratch files left: {leftovers:?}");

    // A segment gone: exit 12 naming the revisions; no data dir created.
    let repo = open_repo(&k);
    let segments = rt.block_on(repo.list_segments(None)).unwrap();
    let victim = segments
        .iter()
        .find(|s| s.series.starts_with("etcd/") && s.last >= mid && s.first <= mid)
        .expect("a segment holds the mid revision");
    std::fs::remove_file(Path::new(&k.repo).join(victim.key())).unwrap();
    let (data, peer, cluster) = member("gap");
    let err = k.fails(&refs(&args(&data, "gap", &peer, &cluster, &["--at", "now"])), 12);
    assert!(err.contains(&format!("no segment covers revisions {}..={}", victim.first, victim.last)), "{err}");
    assert!(!data.exists());
}

#[test]
fn forget_removes_the_delta_segments_only_forgotten_backups_could_use() {
    need_etcd!();
    use kmdr_repo::deltas::SegmentName;
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let src = Etcd::start(dir.path(), "src");
    let rt = runtime();
    let repo = open_repo(&k);
    // Three full backups of the whole etcd, each followed by a segment of the changes after it.
    let mut revs: Vec<i64> = Vec::new();
    let mut segments = Vec::new();
    for round in 0..3u64 {
        rt.block_on(src.load(&format!("/r{round}/"), 10, 8, round));
        let m = k.json(&["backup", "etcd", "--endpoints", &src.client_url]);
        let rev = m["source"]["revision"].as_i64().unwrap();
        let series = m["series"].as_str().unwrap().to_string();
        if let Some(prev) = revs.last() {
            // The chain from the previous segment up to this backup.
            let s = SegmentName::new(&series, prev + 2, rev, chrono::Utc::now());
            rt.block_on(repo.put_segment(&s, &kmdr_repo::deltas::encode(&[]))).unwrap();
            segments.push(s);
        }
        let s = SegmentName::new(&series, rev + 1, rev + 1, chrono::Utc::now());
        rt.block_on(repo.put_segment(&s, &kmdr_repo::deltas::encode(&[]))).unwrap();
        segments.push(s);
        revs.push(rev);
        std::thread::sleep(Duration::from_millis(1100));
    }
    let usable: Vec<SegmentName> = segments.iter().filter(|s| s.last > revs[2]).cloned().collect();
    assert_eq!(usable.len(), 1);
    // The dry run names them and removes nothing.
    let dry = k.json(&["forget", "--keep-last", "1", "--dry-run"]);
    assert_eq!(dry["segments"].as_array().unwrap().len(), segments.len() - 1, "{dry}");
    let text = k.ok(&["forget", "--keep-last", "1", "--dry-run"]);
    assert!(text.contains("would remove 4 (revisions"), "{text}");
    assert_eq!(rt.block_on(repo.list_segments(None)).unwrap(), segments);
    // The real run: the two older backups go, and every segment only they could use.
    let out = k.json(&["forget", "--keep-last", "1"]);
    assert_eq!(out["remove"].as_array().unwrap().len(), 2);
    assert_eq!(rt.block_on(repo.list_segments(None)).unwrap(), usable);
    // A restore to the latest point still works from what is left.
    let file = dir.path().join("latest.db");
    let out = k.json(&["restore", "etcd", "latest", "--at", "now", "--to-file", file.to_str().unwrap()]);
    assert_eq!(out["point"]["revision"], revs[2] + 1);
}

#[test]
fn a_compacted_start_revision_takes_a_new_full_backup_and_says_so() {
    need_etcd!();
    let (dir, k, src, rt) = setup("/t1/seed/", 50, 16, 1);
    let plan = write_plan(dir.path(), &k, &src);
    let log = dir.path().join("serve.log");
    let serve = Serve::start(&k, &plan, &log);
    std::thread::sleep(Duration::from_secs(2));
    serve.terminate();
    // While serve is down: changes, then etcd compacts them away.
    let compacted = rt.block_on(async {
        let mut c = src.client().await;
        let mut rev = 0;
        for n in 0..40 {
            rev = c
                .put(format!("/t1/later/{}", n % 10), format!("v{n}"), None)
                .await
                .unwrap()
                .header()
                .unwrap()
                .revision();
        }
        c.compact(rev, None).await.unwrap();
        rev
    });
    let serve = Serve::start(&k, &plan, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    let backups = loop {
        let list = k.json(&["backups", "list", "--kind", "tenant"]);
        let n = list.as_array().unwrap().len();
        if n >= 2 || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    rt.block_on(async { src.client().await.put("/t1/after", "x", None).await.unwrap() });
    std::thread::sleep(Duration::from_secs(2));
    serve.terminate();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(backups, 2, "a second full backup after the compaction; log:\n{text}");
    assert!(text.contains("was compacted away") && text.contains("taking a new full backup"), "{text}");
    // The new chain starts at the new full backup, which is past the compaction, and reaches the latest write.
    let repo = open_repo(&k);
    let (point, _) =
        rt.block_on(kmdr_datastore::point::plan_point(&repo, "t1", kmdr_repo::point::Point::Latest)).unwrap();
    assert!(point.base_revision >= compacted, "{point:?}");
    let dst = Etcd::start(dir.path(), "dst");
    k.ok(&["restore", "tenant", "latest", "--source-schema", "t1", "--at", "now", "--datastore", &datastore(&dst)]);
    assert_eq!(rt.block_on(tenant_state(&dst, "t1", 0)), rt.block_on(tenant_state(&src, "t1", 0)));
    // Restoring into the compacted range is a gap, never a silent skip.
    let err = k.fails(
        &[
            "restore",
            "tenant",
            "latest",
            "--source-schema",
            "t1",
            "--revision",
            &(compacted - 5).to_string(),
            "--schema",
            "x",
            "--datastore",
            &datastore(&dst),
        ],
        12,
    );
    assert!(err.contains("no segment covers revisions"), "{err}");
}

#[test]
fn postgres_tenant_every_write_acknowledged_two_seconds_before_serve_is_killed_is_restored() {
    if !kmdr_testkit::need("initdb") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let pg = kmdr_testkit::Postgres::start(dir.path());
    pg.psql("postgres", "CREATE DATABASE t1");
    for ddl in kmdr_datastore::kine_sql::POSTGRES_DDL {
        pg.psql("t1", ddl);
    }
    pg.psql("t1", "INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value) VALUES ('compact_rev_key', 1, 0, 0, 0, 0, ''), ('/registry/seed/a', 1, 0, 0, 0, 0, 'a')");
    let plan = write_plan_for(dir.path(), &k, &pg.url());
    let log = dir.path().join("serve.log");
    let mut serve = Serve::start(&k, &plan, &log);
    // Wait for the tenant's capture (after its first full backup).
    serve.wait_for_metric(T1_CAPTURING, &log);

    // The writer: kine's create rows, one at a time, ack times recorded; serve is
    // killed with kill -9 while it writes.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop2, pg_dir, port) = (stop.clone(), pg.dir.clone(), pg.port());
    let writer = std::thread::spawn(move || {
        let mut acks = Vec::new();
        for n in 0u64.. {
            if stop2.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let name = format!("/registry/w/{n:06}");
            let sql = format!(
                "INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value) VALUES ('{name}', 1, 0, 0, 0, 0, 'v{n}')"
            );
            let ok = std::process::Command::new(kmdr_testkit::postgres::bin("psql"))
                .args(["-X", "-q", "-h"])
                .arg(pg_dir.join("sock"))
                .args(["-p", &port.to_string(), "-U", kmdr_testkit::postgres::USER, "-d", "t1", "-c", &sql])
                .output()
                .unwrap()
                .status
                .success();
            assert!(ok, "insert {name}");
            acks.push((name, Instant::now()));
        }
        acks
    });
    std::thread::sleep(Duration::from_millis(4000 + rand::random::<u64>() % 2000));
    let (_, metrics) = http_get(&serve.addr, "/metrics").expect("metrics");
    serve.child.kill().unwrap(); // kill -9
    let killed = Instant::now();
    let _ = serve.child.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acks = writer.join().unwrap();
    assert!(acks.len() > 20, "the writer wrote only {} rows", acks.len());
    let segments = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kmdr_delta_segments_total{layer=\"tenant-control-planes\",unit=\"shared/t1\"} "))
        .unwrap_or_else(|| panic!("no segment count for shared/t1: {metrics}"));
    assert!(segments.parse::<f64>().unwrap() > 0.0, "{metrics}");

    // Restore the latest point into another database of the same server.
    k.ok(&[
        "restore",
        "tenant",
        "latest",
        "--source-schema",
        "t1",
        "--at",
        "now",
        "--schema",
        "restored",
        "--datastore",
        &pg.url(),
    ]);
    let restored: std::collections::HashSet<String> =
        pg.psql("restored", "SELECT name FROM kine").lines().map(str::to_string).collect();
    let must: Vec<&String> =
        acks.iter().filter(|(_, at)| *at + Duration::from_secs(2) <= killed).map(|(n, _)| n).collect();
    let missing: Vec<&&String> = must.iter().filter(|n| !restored.contains(**n)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} writes acknowledged > 2 s before the kill are missing, e.g. {:?}",
        missing.len(),
        must.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(restored.contains("/registry/seed/a"));
    let repo = open_repo(&k);
    let segs = runtime().block_on(repo.list_segments(Some("tenant/t1"))).unwrap();
    let check = check_chain(&segs);
    assert!(!segs.is_empty() && check.gaps.is_empty() && check.overlaps.is_empty(), "{check:?}");
    eprintln!(
        "{} rows written, {} acknowledged > 2 s before the kill all restored, {} segments",
        acks.len(),
        must.len(),
        segs.len()
    );
}

#[test]
fn after_the_datastore_was_rewound_a_new_full_backup_never_continues_with_the_old_history() {
    need_etcd!();
    use kmdr_repo::deltas::SegmentName;
    use kmdr_repo::deltas::{DeltaEvent, Op, encode};
    let (dir, k, src, rt) = setup("/t1/seed/", 20, 16, 4);
    let repo = open_repo(&k);
    let url = datastore(&src);
    let put = |key: &str, value: &str, rev: i64| DeltaEvent {
        op: Op::Put,
        key: key.into(),
        value: value.into(),
        revision: rev,
        create_revision: rev,
    };
    let a =
        k.json(&["backup", "tenant", "--datastore", &url, "--schema", "t1"])[0]["source"]["revision"].as_i64().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // The old history: captured far ahead, then the datastore was restored from an older snapshot.
    let old = SegmentName::new("tenant/t1", a + 1, a + 1000, chrono::Utc::now());
    rt.block_on(repo.put_segment(&old, &encode(&[put("/x", "old", a + 10), put("/y", "old", a + 900)]))).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let before_restore = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    std::thread::sleep(Duration::from_millis(1500));
    rt.block_on(async { src.client().await.put("/t1/z", "after the restore", None).await.unwrap() });
    let b =
        k.json(&["backup", "tenant", "--datastore", &url, "--schema", "t1"])[0]["source"]["revision"].as_i64().unwrap();
    assert!(b < a + 1000);
    // The new history, after the new full backup.
    let new = SegmentName::new("tenant/t1", b + 1, b + 2, chrono::Utc::now());
    rt.block_on(repo.put_segment(&new, &encode(&[put("/x", "new", b + 1)]))).unwrap();

    let dst = Etcd::start(dir.path(), "dst");
    let out = k.json(&[
        "restore",
        "tenant",
        "latest",
        "--source-schema",
        "t1",
        "--at",
        "now",
        "--datastore",
        &datastore(&dst),
    ]);
    assert_eq!(out["point"]["revision"], b + 2, "{out}");
    assert_eq!(out["point"]["segments"], serde_json::json!([new.key()]), "{out}");
    let state = rt.block_on(tenant_state(&dst, "t1", 0));
    assert_eq!(state.get(b"/x".as_slice()).map(Vec::as_slice), Some(b"new".as_slice()));
    assert!(!state.contains_key(b"/y".as_slice()), "a change of the old history was replayed");
    // A time of the old history still restores from the old full backup and its chain.
    let out = k.json(&[
        "restore",
        "tenant",
        "latest",
        "--source-schema",
        "t1",
        "--at",
        &before_restore,
        "--schema",
        "old",
        "--datastore",
        &datastore(&dst),
    ]);
    assert_eq!(
        (out["point"]["base_revision"].as_i64(), out["point"]["revision"].as_i64()),
        (Some(a), Some(a + 1000)),
        "{out}"
    );
    let old_state = rt.block_on(tenant_state(&dst, "old", 0));
    assert_eq!(
        (old_state.get(b"/x".as_slice()).map(Vec::as_slice), old_state.get(b"/y".as_slice()).map(Vec::as_slice)),
        (Some(b"old".as_slice()), Some(b"old".as_slice()))
    );
}

/// A serve started on a repository that already holds a recent etcd backup
/// starts from it (issue 18): from its first scrape the etcd unit reports
/// that backup and a small RPO, not "no backup yet", and takes no full backup
/// before its interval. (The etcd unit's series is known only once it has
/// connected: its newest backup is found as a restore finds it.)
#[test]
fn serve_started_on_a_recent_etcd_backup_reports_it_from_the_first_scrape() {
    need_etcd!();
    let (dir, k, src, _rt) = setup("/registry/seed/", 50, 32, 7);
    let backup = k.json(&["backup", "etcd", "--endpoints", &src.client_url]);
    let finished = chrono::DateTime::parse_from_rfc3339(backup["finished_at"].as_str().unwrap()).unwrap();
    let plan = write_etcd_plan(dir.path(), &k, &src.client_url);
    let log = dir.path().join("serve.log");
    let serve = Serve::start(&k, &plan, &log);
    let (_, metrics) = http_get(&serve.addr, "/metrics").expect("/metrics answers");
    let value = |family: &str| -> Option<f64> {
        let prefix = format!("{family}{{layer=\"under-cluster\",unit=\"etcd\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.parse().unwrap())
    };
    let success = value("kmdr_last_success_timestamp_seconds")
        .unwrap_or_else(|| panic!("no newest backup for etcd at the first scrape: {metrics}"));
    assert!(
        (success - finished.timestamp_millis() as f64 / 1000.0).abs() < 0.002,
        "the newest backup is the one in the repository ({}), not a new one: {success}",
        backup["id"]
    );
    let rpo = value("kmdr_rpo_seconds").unwrap_or_else(|| panic!("no kmdr_rpo_seconds for etcd: {metrics}"));
    assert!(rpo < 60.0, "RPO {rpo} s with a backup taken moments ago: {metrics}");
    let (_, page) = http_get(&serve.addr, "/").unwrap();
    assert!(!page.contains("no backup yet"), "{page}");
    // The capture continues that backup's chain; no full backup is due before the RPO.
    serve.wait_for_metric("kmdr_delta_up{layer=\"under-cluster\",unit=\"etcd\"} 1", &log);
    std::thread::sleep(Duration::from_secs(1));
    serve.terminate();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("full backup ("), "a full backup was taken at start: {text}");
    let all = k.json(&["backups", "list"]);
    let ids: Vec<&str> = all.as_array().unwrap().iter().filter_map(|b| b["id"].as_str()).collect();
    assert_eq!(ids, [backup["id"].as_str().unwrap()], "{all}");
}
