//! Compaction under `kmdr serve` against real etcd: once the changes after
//! the newest full backup pass `--compact-after-events`, serve synthesises a
//! full backup from it and its delta segments. The synthesised backup holds
//! exactly what a real full backup at its revision holds (a tenant: the same
//! records file, byte for byte; the whole etcd: every key, value, create and
//! mod revision of etcd's `get --rev`), and `--at now` afterwards replays
//! only the segments written after it. Also: a capture that starts far
//! behind (what the compaction benchmark found) catches up.

use crate::common;
use crate::serve::{Serve, full_state, http_get, runtime, tenant_state, write_etcd_plan, write_plan_for};
use common::{Etcd, Kmdr, free_port};
use kmdr_repo::deltas::SegmentName;
use std::time::{Duration, Instant};

/// Poll `/metrics` (90 s) until the metric `name` is at least `at_least`.
fn wait_metric_at_least(serve: &Serve, name: &str, at_least: f64, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let value = http_get(&serve.addr, "/metrics").and_then(|(_, m)| {
            m.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
        });
        if value.is_some_and(|v| v >= at_least) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} stayed below {at_least} for 90 s (now {value:?}); see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The synthesised backups of the repository, oldest first: (id, manifest JSON).
fn synthesised(k: &Kmdr) -> Vec<serde_json::Value> {
    let list = k.json(&["backups", "list"]);
    let mut out = Vec::new();
    for b in list.as_array().expect("a list") {
        let id = b["id"].as_str().unwrap();
        let m = k.json(&["backups", "show", id]);
        if m["tags"].get("synthesised-from").is_some() {
            out.push(m);
        }
    }
    out
}

/// The first revision of each segment a point plan names.
fn firsts(point: &serde_json::Value) -> Vec<i64> {
    point["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| SegmentName::parse(s.as_str().unwrap()).expect("a segment name").first)
        .collect()
}

/// A local repository, an etcd `src` whose tenant t1 holds `keys` keys of
/// `size` bytes under `/t1/seed/`, and a serve plan for t1. The servers are
/// dropped before the directory.
struct TenantLab {
    k: Kmdr,
    src: Etcd,
    rt: tokio::runtime::Runtime,
    url: String,
    plan: String,
    log: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl TenantLab {
    fn start(keys: usize, size: usize) -> TenantLab {
        let dir = tempfile::tempdir().unwrap();
        let k = Kmdr::local(dir.path());
        k.init();
        let src = Etcd::start(dir.path(), "src");
        let rt = runtime();
        rt.block_on(src.load("/t1/seed/", keys, size, 1));
        let url = src.client_url.replace("http://", "etcd://");
        let plan = write_plan_for(dir.path(), &k, &url);
        let log = dir.path().join("serve.log");
        TenantLab { k, src, rt, url, plan, log, dir }
    }
}

#[test]
fn a_tenant_compacted_by_serve_equals_a_full_backup_at_its_revision() {
    need_etcd!();
    let lab = TenantLab::start(150, 48);
    let (dir, k, src, rt, url, plan, log) = (&lab.dir, &lab.k, &lab.src, &lab.rt, &lab.url, &lab.plan, &lab.log);
    let args = ["--compact-after-events", "300", "--compact-after-bytes", "0", "--compact-after-percent", "0"];
    let dry = k.ok(&[&["serve", "--plan", plan, "--dry-run"][..], &args].concat());
    assert!(dry.contains("compaction: a full backup synthesised from the newest one and its delta segments once 300 changes follow it"), "{dry}");
    let dry = k.ok(&["serve", "--plan", plan, "--dry-run"]);
    assert!(
        dry.contains(
            "once 100000 changes or 256.0 MiB of segments or changes for 25% of its keys (at least 10000) follow it"
        ),
        "{dry}"
    );
    let dry = k.json(&["serve", "--plan", plan, "--dry-run"]);
    let defaults = serde_json::json!({"after_events": 100_000, "after_bytes": 256u64 << 20, "after_percent": 25, "min_share_events": 10_000});
    assert_eq!(dry["compaction"], defaults, "{dry}");
    let serve = Serve::start_with(k, plan, log, &args);
    let write = |from: u32, to: u32| {
        rt.block_on(async {
            let mut c = src.client().await;
            for n in from..to {
                if n % 5 == 4 {
                    c.delete(format!("/t1/seed/{:04}", n % 150), None).await.unwrap();
                } else {
                    c.put(format!("/t1/k/{:03}", n % 120), format!("v{n}"), None).await.unwrap();
                }
            }
        })
    };
    // Past the threshold: one compaction.
    write(0, 400);
    let unit = "{layer=\"tenant-control-planes\",unit=\"shared/t1\"}";
    wait_metric_at_least(&serve, &format!("kmdr_compactions_total{unit}"), 1.0, log);
    // Below it again: these stay in segments.
    write(400, 460);
    let now_rev = rt.block_on(full_state(&src.client_url, 0)).0;
    wait_metric_at_least(&serve, &format!("kmdr_delta_revision{unit}"), now_rev as f64, log);
    let (_, metrics) = http_get(&serve.addr, "/metrics").unwrap();
    assert!(metrics.contains("# TYPE kmdr_compaction_duration_seconds gauge"), "{metrics}");
    serve.terminate();
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("synthesised backup"), "{text}");

    let synth = synthesised(k);
    let newest = synth.last().expect("serve synthesised a backup");
    let id = newest["id"].as_str().unwrap();
    let rev = newest["source"]["revision"].as_i64().unwrap();
    assert_eq!(newest["series"], "tenant/t1");
    assert!(newest["tags"]["synthesised-deltas"].as_str().unwrap().contains("segments"), "{newest}");
    assert!(rev < now_rev, "the last writes came after the compaction");

    // A real full backup of the tenant at the same revision (read from etcd at
    // that revision, into another repository) holds the same bytes.
    let k2 = Kmdr::local(&dir.path().join("real"));
    std::fs::create_dir_all(dir.path().join("real")).unwrap();
    k2.init();
    let real = rt.block_on(async {
        let repo = k2.open_repo().await;
        let store = kmdr_datastore::connect(&kmdr_datastore::DatastoreUrl::parse(url).unwrap(), Default::default())
            .await
            .unwrap();
        let opts = kmdr_datastore::TenantBackupOptions { at: Some(rev), ..Default::default() };
        kmdr_datastore::backup_tenant(&repo, &store, "t1", &opts, None).await.unwrap()
    });
    let real = serde_json::to_value(&real).unwrap();
    for field in ["revision", "key_count", "bytes", "content_sha256", "datastore", "driver", "key_root", "schema"] {
        assert_eq!(newest["source"][field], real["source"][field], "source.{field}");
    }
    assert_eq!(newest["files"][0]["sha256"], real["files"][0]["sha256"], "the records file, byte for byte");

    // Its restore is the tenant as etcd had it at that revision.
    let dst = Etcd::start(dir.path(), "dst");
    let dst_url = dst.client_url.replace("http://", "etcd://");
    k.ok(&["restore", "tenant", id, "--datastore", &dst_url]);
    assert!(rt.block_on(tenant_state(&dst, "t1", 0)) == rt.block_on(tenant_state(src, "t1", rev)));

    // `--at now` starts from it and replays only the segments written after it.
    let out = k.json(&[
        "restore",
        "tenant",
        "latest",
        "--source-schema",
        "t1",
        "--at",
        "now",
        "--datastore",
        &dst_url,
        "--schema",
        "now",
    ]);
    assert_eq!(out["point"]["base"], id, "{out}");
    assert_eq!(out["point"]["revision"], now_rev, "{out}");
    let after = firsts(&out["point"]);
    assert!(!after.is_empty() && after.iter().all(|f| *f > rev), "segments replayed: {after:?}, base at {rev}");
    let all = rt.block_on(async { k.open_repo().await.list_segments(Some("tenant/t1")).await.unwrap() });
    assert!(after.len() < all.len(), "{} of {} segments replayed", after.len(), all.len());
    assert!(rt.block_on(tenant_state(&dst, "now", 0)) == rt.block_on(tenant_state(src, "t1", 0)));
}

/// `--compact-after-percent`: the threshold follows the base's key count,
/// read from its manifest (20,000 keys at 60 %: 12,000 changes).
#[test]
fn serve_compacts_once_the_changes_reach_a_share_of_the_base() {
    need_etcd!();
    let lab = TenantLab::start(20_000, 16);
    let (k, src, rt, plan, log) = (&lab.k, &lab.src, &lab.rt, &lab.plan, &lab.log);
    let args = ["--compact-after-events", "0", "--compact-after-bytes", "0", "--compact-after-percent", "60"];
    let serve = Serve::start_with(k, plan, log, &args);
    let unit = "{layer=\"tenant-control-planes\",unit=\"shared/t1\"}";
    // The capture runs after the first full backup: every change below follows it.
    let rev = rt.block_on(full_state(&src.client_url, 0)).0;
    wait_metric_at_least(&serve, &format!("kmdr_delta_revision{unit}"), rev as f64, log);
    rt.block_on(src.load("/t1/seed/", 11_000, 16, 2));
    wait_metric_at_least(&serve, &format!("kmdr_delta_events_since_full{unit}"), 11_000.0, log);
    let (_, metrics) = http_get(&serve.addr, "/metrics").unwrap();
    let compactions = format!("kmdr_compactions_total{unit} ");
    assert!(
        metrics.lines().filter(|l| l.starts_with(&compactions)).all(|l| l.ends_with(" 0")),
        "11,000 changes are under 60 % of 20,000 keys: {metrics}"
    );
    rt.block_on(src.load("/t1/more/", 1_500, 16, 3));
    wait_metric_at_least(&serve, &format!("kmdr_compactions_total{unit}"), 1.0, log);
    serve.terminate();
    let newest = synthesised(k).pop().expect("serve synthesised a backup");
    // At least 1,000 of the new keys made the 12,000 changes; perhaps all of them.
    let keys = newest["source"]["key_count"].as_u64().unwrap();
    assert!((21_000..=21_500).contains(&keys), "{newest}");
}

#[test]
fn the_whole_etcd_compacted_by_serve_equals_etcd_at_its_revision() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let src = Etcd::start(dir.path(), "src");
    let rt = runtime();
    rt.block_on(src.load("/registry/seed/", 150, 48, 2));
    let plan = write_etcd_plan(dir.path(), &k, &src.client_url);
    let log = dir.path().join("serve.log");
    let args = ["--compact-after-events", "300", "--compact-after-bytes", "0"];
    let serve = Serve::start_with(&k, &plan, &log, &args);
    let write = |from: u32, to: u32| {
        rt.block_on(async {
            let mut c = src.client().await;
            for n in from..to {
                if n % 13 == 6 {
                    let txn = etcd_client::Txn::new().and_then(vec![
                        etcd_client::TxnOp::put(format!("/registry/pair/a{}", n % 30), format!("a{n}"), None),
                        etcd_client::TxnOp::delete(format!("/registry/seed/{:04}", n % 150), None),
                    ]);
                    c.txn(txn).await.unwrap();
                } else if n % 7 == 3 {
                    c.delete(format!("/registry/k/{:03}", n % 90), None).await.unwrap();
                } else {
                    c.put(format!("/registry/k/{:03}", n % 90), format!("v{n}"), None).await.unwrap();
                }
            }
        })
    };
    write(0, 400);
    let unit = "{layer=\"under-cluster\",unit=\"etcd\"}";
    wait_metric_at_least(&serve, &format!("kmdr_compactions_total{unit}"), 1.0, &log);
    write(400, 460);
    let now_rev = rt.block_on(full_state(&src.client_url, 0)).0;
    wait_metric_at_least(&serve, &format!("kmdr_delta_revision{unit}"), now_rev as f64, &log);
    serve.terminate();

    let synth = synthesised(&k);
    let newest = synth.last().expect("serve synthesised a backup");
    let id = newest["id"].as_str().unwrap();
    let rev = newest["source"]["revision"].as_i64().unwrap();
    assert!(newest["series"].as_str().unwrap().starts_with("etcd/"), "{newest}");
    assert!(rev < now_rev, "the last writes came after the compaction");

    // Its snapshot, restored by etcdutl and served: etcd's own `get --rev` at that revision.
    let file = dir.path().join("synth.db");
    k.ok(&["restore", "etcd", id, "--to-file", file.to_str().unwrap()]);
    let start = |file: &std::path::Path, name: &str| {
        let peer = format!("http://127.0.0.1:{}", free_port());
        let data = dir.path().join(name);
        let st = std::process::Command::new("etcdutl")
            .args(["snapshot", "restore", file.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])
            .args(["--name", name, "--initial-cluster", &format!("{name}={peer}")])
            .args(["--initial-advertise-peer-urls", &peer])
            .output()
            .unwrap();
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
        Etcd::start_on(data, name, Some(peer))
    };
    let restored = start(&file, "synth");
    let (got_rev, got) = rt.block_on(full_state(&restored.client_url, 0));
    let (_, want) = rt.block_on(full_state(&src.client_url, rev));
    assert_eq!(got_rev, rev, "the synthesised snapshot is at its revision");
    assert!(got == want, "state at revision {rev}: {} keys restored, {} expected", got.len(), want.len());
    assert_eq!(newest["source"]["key_count"].as_i64().unwrap(), want.len() as i64);
    restored.stop();

    // `--at now` starts from it and replays only the segments written after it.
    let file = dir.path().join("now.db");
    let out = k.json(&["restore", "etcd", "latest", "--at", "now", "--to-file", file.to_str().unwrap()]);
    assert_eq!(out["point"]["base"], id, "{out}");
    assert_eq!(out["point"]["revision"], now_rev, "{out}");
    let after = firsts(&out["point"]);
    assert!(!after.is_empty() && after.iter().all(|f| *f > rev), "segments replayed: {after:?}, base at {rev}");
    let restored = start(&file, "now");
    assert!(rt.block_on(full_state(&restored.client_url, 0)) == rt.block_on(full_state(&src.client_url, 0)));
    restored.stop();
}

/// Found by scripts/bench-compact.sh: a capture that starts behind (after a
/// full backup, or a restart, while a writer runs) gets etcd's catch-up
/// watch responses of many revisions at once, here 10 MiB, over gRPC's
/// default 4 MiB; it must read them, not fail at every retry.
#[test]
fn a_capture_that_starts_behind_large_transactions_catches_up() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let src = Etcd::start(dir.path(), "src");
    let rt = runtime();
    rt.block_on(src.load("/t1/seed/", 10, 16, 3));
    let url = src.client_url.replace("http://", "etcd://");
    k.ok(&["backup", "tenant", "--datastore", &url, "--schema", "t1"]);
    // 10 revisions of 64 puts of 16 KiB after the backup, before serve watches.
    rt.block_on(async {
        let mut c = src.client().await;
        for r in 0..10u32 {
            let ops = (0..64u32)
                .map(|n| {
                    etcd_client::TxnOp::put(
                        format!("/t1/big/{r:02}-{n:02}"),
                        vec![b'a' + (n % 26) as u8; 16 << 10],
                        None,
                    )
                })
                .collect::<Vec<_>>();
            c.txn(etcd_client::Txn::new().and_then(ops)).await.unwrap();
        }
    });
    // Read with a client that takes 10 MiB responses, as the capture must.
    let state = |e: &Etcd| {
        rt.block_on(async {
            let mut kv = e.client().await.kv_client().max_decoding_message_size(64 << 20);
            let r = kv.get("/t1/", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
            let kvs: Vec<(Vec<u8>, Vec<u8>)> =
                r.kvs().iter().map(|kv| (kv.key().to_vec(), kv.value().to_vec())).collect();
            (r.header().unwrap().revision(), kvs)
        })
    };
    let (now_rev, want) = state(&src);
    assert_eq!(want.len(), 650);
    let plan = write_plan_for(dir.path(), &k, &url);
    let log = dir.path().join("serve.log");
    let serve = Serve::start(&k, &plan, &log);
    let unit = "{layer=\"tenant-control-planes\",unit=\"shared/t1\"}";
    wait_metric_at_least(&serve, &format!("kmdr_delta_revision{unit}"), now_rev as f64, &log);
    serve.terminate();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("delta capture stopped"), "{text}");
    let dst = Etcd::start(dir.path(), "dst");
    let dst_url = dst.client_url.replace("http://", "etcd://");
    k.ok(&["restore", "tenant", "latest", "--source-schema", "t1", "--at", "now", "--datastore", &dst_url]);
    assert!(state(&dst).1 == want, "the tenant restored at the latest point equals the source");
}

#[test]
fn with_a_write_only_key_serve_says_compaction_needs_the_full_key_and_runs_none() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let admin = Kmdr::local(dir.path());
    admin.init();
    let agent_key = dir.path().join("agent.key");
    admin.ok(&["key", "add", "--write-only", "--out", agent_key.to_str().unwrap()]);
    let agent = Kmdr { repo: admin.repo.clone(), key_file: agent_key, extra_env: vec![] };
    let src = Etcd::start(dir.path(), "src");
    let rt = runtime();
    rt.block_on(src.load("/t1/seed/", 20, 16, 4));
    let plan = write_plan_for(dir.path(), &agent, &src.client_url.replace("http://", "etcd://"));
    let log = dir.path().join("serve.log");
    let serve = Serve::start_with(&agent, &plan, &log, &["--compact-after-events", "50", "--compact-after-bytes", "0"]);
    rt.block_on(async {
        let mut c = src.client().await;
        for n in 0..200u32 {
            c.put(format!("/t1/k/{:02}", n % 40), format!("v{n}"), None).await.unwrap();
        }
    });
    let now_rev = rt.block_on(full_state(&src.client_url, 0)).0;
    let unit = "{layer=\"tenant-control-planes\",unit=\"shared/t1\"}";
    wait_metric_at_least(&serve, &format!("kmdr_delta_revision{unit}"), now_rev as f64, &log);
    let (_, metrics) = http_get(&serve.addr, "/metrics").unwrap();
    assert!(metrics.contains(&format!("kmdr_compactions_total{unit} 0\n")), "{metrics}");
    serve.terminate();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("write-only key") && text.contains("compaction"), "{text}");
    assert!(synthesised(&admin).is_empty(), "a write-only serve synthesised a backup");
    // The full key restores the agent's chain to now.
    let dst = Etcd::start(dir.path(), "dst");
    let dst_url = dst.client_url.replace("http://", "etcd://");
    admin.ok(&["restore", "tenant", "latest", "--source-schema", "t1", "--at", "now", "--datastore", &dst_url]);
    assert!(rt.block_on(tenant_state(&dst, "t1", 0)) == rt.block_on(tenant_state(&src, "t1", 0)));
}

#[test]
fn after_a_restart_serve_counts_the_changes_already_in_the_repository() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let src = Etcd::start(dir.path(), "src");
    let rt = runtime();
    rt.block_on(src.load("/t1/seed/", 20, 16, 5));
    let plan = write_plan_for(dir.path(), &k, &src.client_url.replace("http://", "etcd://"));
    let log = dir.path().join("serve.log");
    let args = ["--compact-after-events", "300", "--compact-after-bytes", "0"];
    let unit = "{layer=\"tenant-control-planes\",unit=\"shared/t1\"}";
    let write = |from: u32, to: u32| {
        rt.block_on(async {
            let mut c = src.client().await;
            for n in from..to {
                c.put(format!("/t1/k/{:02}", n % 40), format!("v{n}"), None).await.unwrap();
            }
        });
        rt.block_on(full_state(&src.client_url, 0)).0
    };
    // 200 changes, below the threshold; serve stops.
    let serve = Serve::start_with(&k, &plan, &log, &args);
    let rev = write(0, 200);
    wait_metric_at_least(&serve, &format!("kmdr_delta_revision{unit}"), rev as f64, &log);
    serve.terminate();
    assert!(synthesised(&k).is_empty());
    // Started again, it counts those 200 from the repository: 150 more pass 300.
    let serve = Serve::start_with(&k, &plan, &log, &args);
    wait_metric_at_least(&serve, &format!("kmdr_delta_events_since_full{unit}"), 200.0, &log);
    write(200, 350);
    wait_metric_at_least(&serve, &format!("kmdr_compactions_total{unit}"), 1.0, &log);
    serve.terminate();
    assert_eq!(synthesised(&k).len(), 1);
}
