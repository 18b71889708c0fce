//! The under-cluster layer against real etcd: backup, restore into a new data
//! dir, start etcd on it and compare every key and value; a second backup
//! that shares data; kill -9 during backups; damaged objects.

use crate::common;
use common::{Etcd, Kmdr};
use std::process::Stdio;
use std::time::Duration;

fn restore_args<'a>(id: &'a str, dir: &'a str, peer: &'a str, cluster: &'a str) -> Vec<&'a str> {
    vec![
        "restore",
        "etcd",
        id,
        "--data-dir",
        dir,
        "--name",
        "restored",
        "--initial-cluster",
        cluster,
        "--initial-advertise-peer-urls",
        peer,
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_restore_start_and_compare_every_key() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), "src");
    etcd.load("/registry/pods/ns/", 3000, 700, 1).await;
    etcd.load("/kamaji/tenant-a/", 500, 2000, 2).await;
    let mut c = etcd.client().await;
    c.put(vec![0xffu8, 0, 1], vec![0u8, 1, 2, 255], None).await.unwrap();
    c.put("/empty-value", "", None).await.unwrap();
    let before = etcd.dump().await;

    let k = Kmdr::local(dir.path());
    k.init();
    let m = k.json(&["backup", "etcd", "--endpoints", &etcd.client_url, "--tag", "env=test"]);
    assert_eq!(m["source"]["type"], "etcd-snapshot");
    assert_eq!(m["source"]["key_count"], before.len() as i64);
    assert!(m["source"]["revision"].as_i64().unwrap() >= 37);
    assert!(m["source"]["etcd_version"].as_str().unwrap().starts_with('3'));
    assert_eq!(m["tags"]["env"], "test");
    assert_eq!(m["layer"], "under-cluster");
    for field in ["started_at", "finished_at", "duration_ms"] {
        assert!(!m[field].is_null(), "{field}");
    }
    let id = m["id"].as_str().unwrap().to_string();

    // Writes after the backup must not appear in the restore.
    c.put("/after-backup", "x", None).await.unwrap();

    let peer = format!("http://127.0.0.1:{}", common::free_port());
    let cluster = format!("restored={peer}");
    let target = dir.path().join("restored.etcd");
    let t = target.display().to_string();
    // Dry run changes nothing.
    let plan = k.json(&[restore_args(&id, &t, &peer, &cluster), vec!["--dry-run"]].concat());
    assert_eq!(plan["plan"]["data_dir_state"], "missing");
    assert_eq!(plan["plan"]["bump_revision"], 1_000_000_000, "Kubernetes-safe by default");
    let command = plan["plan"]["command"].to_string();
    assert!(command.contains("--bump-revision") && command.contains("--mark-compacted"), "{command}");
    assert!(!target.exists());
    let out = k.ok(&restore_args(&id[..20], &t, &peer, &cluster));
    assert!(out.contains("revisions start at") && out.contains("etcdutl"), "{out}");
    etcd.stop();
    let restored = Etcd::start_on(target.clone(), "restored", Some(peer.clone()));
    let after = restored.dump().await;
    assert_eq!(after.len(), before.len());
    assert!(after == before, "every key and value comes back");
    // The restored store starts far above every revision the old cluster handed
    // out, and a read (or a watch) at an old revision is told it is compacted:
    // every watcher relists instead of keeping a stale cache.
    let backup_rev = m["source"]["revision"].as_i64().unwrap();
    let mut rc = restored.client().await;
    let head = rc.get("/empty-value", None).await.unwrap().header().unwrap().revision();
    assert!(head >= backup_rev + 1_000_000_000, "revision {head} after a restore of revision {backup_rev}");
    let old = rc.get("/empty-value", Some(etcd_client::GetOptions::new().with_revision(backup_rev))).await;
    let err = old.expect_err("a read at the backup's revision must be refused").to_string();
    assert!(err.contains("compacted"), "{err}");
    restored.stop();

    // --no-bump-revision keeps the revisions (an etcd nothing watches).
    let plain = dir.path().join("plain.etcd");
    let p = plain.display().to_string();
    k.ok(&[restore_args(&id, &p, &peer, &cluster), vec!["--no-bump-revision"]].concat());
    let kept = Etcd::start_on(plain.clone(), "restored", Some(peer.clone()));
    let mut kc = kept.client().await;
    let head = kc.get("/empty-value", None).await.unwrap().header().unwrap().revision();
    assert_eq!(head, backup_rev, "the snapshot's own revision");
    kept.stop();

    // A non-empty data dir is refused without --force and moved aside with it.
    k.fails(&restore_args("latest", &t, &peer, &cluster), 8);
    let out = k.ok(&[restore_args("latest", &t, &peer, &cluster), vec!["--force"]].concat());
    assert!(out.contains("moved to"), "{out}");
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".kmdr-old-"))
        .collect();
    assert_eq!(aside.len(), 1, "the old data dir is kept");

    // --to-file writes the checked snapshot; etcdutl agrees on its revision.
    let snap = dir.path().join("plain.db");
    k.ok(&["restore", "etcd", &id, "--to-file", &snap.display().to_string()]);
    let bytes = std::fs::read(&snap).unwrap();
    let sum = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    assert_eq!(sum, m["files"][0]["sha256"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn second_backup_shares_unchanged_data() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), "src");
    etcd.load("/k/", 20_000, 1024, 3).await;
    let k = Kmdr::local(dir.path());
    k.init();
    let m1 = k.json(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    // Rewrite 1% of the keys.
    let mut c = etcd.client().await;
    for i in (0..20_000).step_by(100) {
        c.put(format!("/k/{i:06}"), vec![7u8; 1024], None).await.unwrap();
    }
    let m2 = k.json(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    let (b1, a2) =
        (m1["stats"]["new_stored_bytes"].as_u64().unwrap(), m2["stats"]["new_stored_bytes"].as_u64().unwrap());
    assert!(a2 * 3 < b1, "second backup added {a2} bytes, the first {b1}");
    let list = k.json(&["backups", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    k.ok(&["verify"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_backup_leaves_a_clean_repository() {
    need_etcd!();
    use rand::Rng;
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), "src");
    etcd.load("/big/", 40_000, 1024, 4).await;
    let k = Kmdr::local(dir.path());
    k.init();
    let first = k.json(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    let took = first["duration_ms"].as_u64().unwrap().max(50);
    let mut rng = rand::thread_rng();
    let mut killed_mid_way = 0;
    // The window shrinks each time a backup finished before its kill, so a
    // fast machine still gets kills in the middle (at least one is required).
    let mut window = took + 150;
    for attempt in 0..12 {
        if attempt >= 6 && killed_mid_way >= 1 {
            break;
        }
        let mut child = k
            .cmd()
            .args(["backup", "etcd", "--endpoints", &etcd.client_url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Somewhere between connecting and finishing.
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..window)));
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        if finished {
            window = (window / 2).max(5);
        } else {
            killed_mid_way += 1;
        }
        // Whatever the moment: only complete backups are listed, and they verify.
        let list = k.json(&["backups", "list"]);
        for b in list.as_array().unwrap() {
            assert!(b.get("damaged").is_none(), "{b}");
        }
        let v = k.json(&["verify"]);
        assert!(v["backups"].as_array().unwrap().iter().all(|b| b["ok"] == true), "{v}");
    }
    assert!(killed_mid_way >= 1, "at least one kill hit a running backup");
    // The next backup works, and the leftovers are pruned without touching complete backups.
    k.ok(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    k.ok(&["prune"]);
    let v = k.json(&["verify"]);
    assert_eq!(v["unreferenced_chunks"], 0);
    assert!(v["backups"].as_array().unwrap().iter().all(|b| b["ok"] == true));
    let snap = dir.path().join("s.db");
    k.ok(&["restore", "etcd", "latest", "--to-file", &snap.display().to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_byte_is_named_by_verify_and_refused_by_restore() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), "src");
    etcd.load("/k/", 3000, 1024, 5).await;
    let k = Kmdr::local(dir.path());
    k.init();
    let m = k.json(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    let id = m["id"].as_str().unwrap();
    let chunk = m["files"][0]["chunks"][0]["id"].as_str().unwrap();
    let path = std::path::Path::new(&k.repo).join("data").join(&chunk[..2]).join(chunk);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let o = k.run(&["verify"]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("DAMAGED {id}")) && out.contains(chunk), "{out}");

    let target = dir.path().join("r.etcd");
    let peer = "http://127.0.0.1:2380";
    let err = k.fails(&restore_args(id, &target.display().to_string(), peer, "restored=http://127.0.0.1:2380"), 7);
    assert!(err.contains("damaged object") && err.contains(chunk), "{err}");
    assert!(!target.exists(), "nothing restored");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("kmdr-"))
        .collect();
    assert!(leftovers.is_empty(), "temp files cleaned: {leftovers:?}");
    k.fails(&["restore", "etcd", id, "--to-file", &dir.path().join("x.db").display().to_string()], 7);
    assert!(!dir.path().join("x.db").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_over_mutual_tls_as_on_kubeadm() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    common::make_pki(&pki);
    let etcd = Etcd::start_tls(dir.path(), "tls", &pki);
    let p = |f: &str| pki.join(f).display().to_string();
    let st = std::process::Command::new("etcdctl")
        .args([
            "--endpoints",
            &etcd.client_url,
            "--cacert",
            &p("ca.crt"),
            "--cert",
            &p("client.crt"),
            "--key",
            &p("client.key"),
            "put",
            "/tls/key",
            "secret-value",
        ])
        .output()
        .unwrap();
    assert!(st.status.success());
    let k = Kmdr::local(dir.path());
    k.init();
    // The scheme comes from the endpoint, or from the TLS flags when it has none.
    let host_port = etcd.client_url.trim_start_matches("https://").to_string();
    let m = k.json(&[
        "backup",
        "etcd",
        "--endpoints",
        &host_port,
        "--cacert",
        &p("ca.crt"),
        "--cert",
        &p("client.crt"),
        "--key",
        &p("client.key"),
    ]);
    assert_eq!(m["source"]["endpoint"], etcd.client_url);
    assert!(m["source"]["key_count"].as_i64().unwrap() >= 1);
    // Without a client certificate the server refuses; with a CA that did not sign it, kmdr does.
    k.fails(&["backup", "etcd", "--endpoints", &etcd.client_url, "--cacert", &p("ca.crt")], 6);
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    common::make_pki(&other);
    let o = |f: &str| other.join(f).display().to_string();
    k.fails(
        &[
            "backup",
            "etcd",
            "--endpoints",
            &etcd.client_url,
            "--cacert",
            &o("ca.crt"),
            "--cert",
            &p("client.crt"),
            "--key",
            &p("client.key"),
        ],
        6,
    );
    assert_eq!(k.json(&["backups", "list"]).as_array().unwrap().len(), 1);
}

/// The bin directory of another etcd version (scripts/tools-env.sh exports
/// them); `None` skips, or fails the test in CI.
fn other_etcd(var: &str) -> Option<std::path::PathBuf> {
    match std::env::var_os(var).map(std::path::PathBuf::from).filter(|d| d.join("etcd").exists()) {
        Some(d) => Some(d),
        None if common::require_servers() => {
            panic!("{var} names no etcd bin dir but KMDR_TEST_REQUIRE_SERVERS=1: run scripts/test.sh")
        }
        None => {
            eprintln!("SKIPPED: {var} not set (source scripts/tools-env.sh)");
            None
        }
    }
}

/// Snapshots taken from etcd 3.4, 3.5 and 3.6 are each backed up, restored
/// with etcd 3.6's etcdutl (revision bumped), started on etcd 3.6 and read
/// back key by key; offline inspect reads each backup.
#[tokio::test(flavor = "multi_thread")]
async fn snapshots_of_etcd_3_4_3_5_and_3_6_restore_on_3_6() {
    need_etcd!();
    let versions = [("3.4", other_etcd("KMDR_ETCD34_BIN")), ("3.5", other_etcd("KMDR_ETCD35_BIN")), ("3.6", None)];
    for (version, bin) in versions {
        if version != "3.6" && bin.is_none() {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let o = kmdr_testkit::etcd::EtcdOptions {
            program: bin.map(|b| b.join("etcd")),
            ..kmdr_testkit::etcd::EtcdOptions::new("src", dir.path().join("src.etcd"))
        };
        let src = Etcd::launch(o).unwrap_or_else(|e| panic!("etcd {version}: {e}"));
        src.load("/registry/configmaps/ns/", 400, 300, 7).await;
        let before = src.dump().await;
        let k = Kmdr::local(dir.path());
        k.init();
        let m = k.json(&["backup", "etcd", "--endpoints", &src.client_url]);
        let server = m["source"]["etcd_version"].as_str().unwrap().to_string();
        assert!(server.starts_with(version), "backed up etcd {server}, wanted {version}");
        let id = m["id"].as_str().unwrap().to_string();
        src.stop();

        // Offline: the snapshot's own database read without any etcd.
        let inv = k.json(&["inspect", &id]);
        assert_eq!(inv["inventory"]["revision"], m["source"]["revision"], "etcd {version}: {inv}");
        assert!(inv["inventory"]["entries_scanned"].as_u64().unwrap() >= before.len() as u64, "{inv}");

        let peer = format!("http://127.0.0.1:{}", common::free_port());
        let target = dir.path().join("restored.etcd");
        k.ok(&restore_args(&id, &target.display().to_string(), &peer, &format!("restored={peer}")));
        let restored = Etcd::start_on(target, "restored", Some(peer));
        assert!(restored.dump().await == before, "etcd {version}: every key and value comes back on 3.6");
        let mut c = restored.client().await;
        let head = c.get("/", None).await.unwrap().header().unwrap().revision();
        assert!(head > 1_000_000_000, "etcd {version}: revision {head} was bumped");
    }
}

/// An etcdutl that cannot bump the revision (3.5.1) or etcd 3.4's etcdctl is
/// refused with the version needed, nothing written, as is a machine without
/// any restore tool; `--no-bump-revision` lets the old one restore.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_tool_too_old_to_bump_the_revision_is_refused() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), "src");
    etcd.load("/k/", 50, 100, 1).await;
    let k = Kmdr::local(dir.path());
    k.init();
    let id = k.json(&["backup", "etcd", "--endpoints", &etcd.client_url])["id"].as_str().unwrap().to_string();
    let peer = format!("http://127.0.0.1:{}", common::free_port());
    let cluster = format!("restored={peer}");
    let target = dir.path().join("restored.etcd");
    let t = target.display().to_string();
    let old: Vec<std::path::PathBuf> = [
        other_etcd("KMDR_ETCD35_BIN").map(|d| d.join("etcdutl")),
        other_etcd("KMDR_ETCD34_BIN").map(|d| d.join("etcdctl")),
    ]
    .into_iter()
    .flatten()
    .collect();
    for tool in &old {
        let tool = tool.display().to_string();
        let err = k.fails(&[restore_args(&id, &t, &peer, &cluster), vec!["--etcdutl", &tool]].concat(), 8);
        assert!(err.contains("cannot bump the revision") && err.contains("--no-bump-revision"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!target.exists(), "nothing restored");
    }
    // No restore tool at all: one line naming what to install, nothing written.
    let bare = Kmdr { extra_env: vec![("PATH".into(), "/nonexistent".into())], ..Kmdr::local(dir.path()) };
    let err = bare.fails(&restore_args(&id, &t, &peer, &cluster), 8);
    assert!(err.contains("no working etcdutl or etcdctl found") && err.contains("--etcdutl PATH"), "{err}");
    assert!(!target.exists(), "nothing restored");
    if let Some(tool) = old.first() {
        let tool = tool.display().to_string();
        k.ok(&[restore_args(&id, &t, &peer, &cluster), vec!["--etcdutl", &tool, "--no-bump-revision"]].concat());
        assert!(target.join("member").exists());
    }
}

/// `backups list --kind` and `--unit` (issue 18): by kind, by series, by the
/// name in the series and by `etcd`; an unknown kind is a usage error that
/// lists the kinds, a unit with no backup names the units there are.
#[tokio::test(flavor = "multi_thread")]
async fn backups_list_filters_by_kind_and_unit() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), "src");
    etcd.load("/t1/pods/", 10, 32, 1).await;
    etcd.load("/t2/pods/", 10, 32, 2).await;
    let k = Kmdr::local(dir.path());
    k.init();
    let snap = k.json(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    let tenants = k.json(&["backup", "tenant", "--datastore", &etcd.client_url.replace("http://", "etcd://"), "--all"]);
    assert_eq!(tenants.as_array().unwrap().len(), 2, "{tenants}");
    let list = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["backups", "list"];
        a.extend(args);
        k.json(&a).as_array().unwrap().iter().map(|m| m["series"].as_str().unwrap().to_string()).collect()
    };
    let etcd_series = snap["series"].as_str().unwrap().to_string();
    assert_eq!(list(&[]).len(), 3);
    assert_eq!(list(&["--kind", "etcd"]), [etcd_series.as_str()]);
    assert_eq!(list(&["--kind", "tenant"]), ["tenant/t1", "tenant/t2"]);
    assert_eq!(list(&["--unit", "etcd"]), [etcd_series.as_str()]);
    assert_eq!(list(&["--unit", &etcd_series]), [etcd_series.as_str()]);
    assert_eq!(list(&["--unit", "t1"]), ["tenant/t1"]);
    assert_eq!(list(&["--unit", "tenant/t2", "--kind", "tenant"]), ["tenant/t2"]);
    assert!(list(&["--unit", "t1", "--kind", "etcd"]).is_empty());

    // The text table: the header and the one backup.
    let out = k.ok(&["backups", "list", "--unit", "t2"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("tenant t2"), "{out}");
    // A unit with no backup: said on stderr with the units there are (exit 0: an empty list is an answer).
    let o = k.run(&["backups", "list", "--unit", "t9"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && o.stdout.is_empty(), "{err}");
    assert!(err.contains("no backups of unit t9") && err.contains("tenant/t1, tenant/t2"), "{err}");
    assert!(err.contains("pass one of these to --unit"), "{err}");
    // An unknown kind is a usage error listing the kinds.
    let err = k.fails(&["backups", "list", "--kind", "snapshot"], 2);
    assert!(err.contains("\"snapshot\" is not a kind of backup"), "{err}");
    assert!(err.contains("etcd, tenant, tenants, platform, volumes, node-files"), "{err}");

    // --last N: the newest N, oldest first; the older ones counted on stderr, not read.
    assert_eq!(list(&["--last", "2"]), ["tenant/t1", "tenant/t2"]);
    let o = k.run(&["backups", "list", "--last", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    // Only the newest ids were listed (all three, taken within the last minute):
    // older ones may exist.
    assert!(err.contains("the newest 1 shown; 2 or more older backups not read: --last N or --all for more"), "{err}");
    // With -o json too, on stderr: stdout stays one JSON array.
    let o = k.run(&["-o", "json", "backups", "list", "--last", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the newest 1 shown; 2 or more older backups not read"), "{err}");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap().as_array().unwrap().len(), 1);
    assert_eq!(list(&["--all"]).len(), 3);
    let tenant_again =
        k.json(&["backup", "tenant", "--datastore", &etcd.client_url.replace("http://", "etcd://"), "--all"]);
    assert_eq!(tenant_again.as_array().unwrap().len(), 2);
    let ids = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["backups", "list"];
        a.extend(args);
        k.json(&a).as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
    };
    // A series named in full is looked up in the series index: its newest, whatever else is newer.
    let t1_newest = tenant_again.as_array().unwrap().iter().find(|m| m["series"] == "tenant/t1").unwrap()["id"].clone();
    assert_eq!(ids(&["--unit", "tenant/t1", "--last", "1"]), [t1_newest.as_str().unwrap()]);
    assert_eq!(ids(&["--unit", "tenant/t1"]).len(), 2);
}
