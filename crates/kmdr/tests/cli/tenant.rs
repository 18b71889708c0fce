//! `kmdr backup tenant` and `kmdr restore tenant` as a user runs them, against
//! real servers: every tenant of an etcd, a move to PostgreSQL and back, the
//! refusals and errors, and a datastore killed in the middle.

use crate::common;

use common::{Kmdr, under};
use kmdr_testkit::{Etcd, Postgres};

fn etcd_url(e: &Etcd) -> String {
    e.client_url.replace("http://", "etcd://")
}

#[tokio::test]
async fn every_tenant_of_an_etcd_then_one_moved_to_postgres_and_back() {
    need_etcd!();
    if !kmdr_testkit::need("initdb") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), "shared");
    etcd.load("/tenant1/pods/default/web-", 400, 700, 1).await;
    etcd.load("/tenant2/configmaps/kube-system/cm-", 150, 300, 2).await;
    etcd.load("/tenant10/secrets/default/s-", 50, 100, 3).await;
    let k = Kmdr::local(dir.path());
    k.init();
    let url = etcd_url(&etcd);

    // --all: one backup per tenant, all at one revision.
    let ms = k.json(&["backup", "tenant", "--datastore", &url, "--all"]);
    let ms = ms.as_array().unwrap();
    assert_eq!(ms.len(), 3);
    let revs: Vec<_> = ms.iter().map(|m| m["source"]["revision"].as_i64().unwrap()).collect();
    assert!(revs.iter().all(|r| *r == revs[0]), "one shared revision: {revs:?}");
    let t1 = ms.iter().find(|m| m["source"]["schema"] == "tenant1").unwrap();
    assert_eq!(t1["source"]["key_count"], 400);
    assert_eq!(t1["source"]["driver"], "etcd");
    let t1_hash = t1["source"]["content_sha256"].as_str().unwrap().to_string();
    let before = under(&etcd, "/tenant1/").await;
    let t2_before = under(&etcd, "/tenant2/").await;
    let t10_before = under(&etcd, "/tenant10/").await;

    // Restoring over the live tenant is refused and changes nothing.
    let err = k.fails(&["restore", "tenant", "latest", "--source-schema", "tenant1", "--datastore", &url], 8);
    assert!(err.contains("--force"), "{err}");

    // Dry run names what would happen and changes nothing.
    let plan = k.ok(&[
        "restore",
        "tenant",
        "latest",
        "--source-schema",
        "tenant1",
        "--datastore",
        &url,
        "--force",
        "--dry-run",
    ]);
    assert!(plan.contains("remove the 400 keys") && plan.contains("write 400 keys"), "{plan}");

    // Lose the tenant (as a deleted TCP would), restore it.
    etcd.client().await.delete("/tenant1/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
    k.ok(&["restore", "tenant", "latest", "--source-schema", "tenant1", "--datastore", &url]);
    assert!(under(&etcd, "/tenant1/").await == before, "tenant1 restored key for key");
    assert!(under(&etcd, "/tenant2/").await == t2_before, "tenant2 untouched");
    assert!(under(&etcd, "/tenant10/").await == t10_before, "tenant10 untouched");

    // Move tenant1 to PostgreSQL (kine), back it up there, bring it back to etcd under a new name.
    let pg = Postgres::start(dir.path());
    let id = t1["id"].as_str().unwrap();
    k.ok(&["restore", "tenant", id, "--datastore", &pg.url()]);
    let names = pg.psql("tenant1", "SELECT count(*) FROM kine WHERE name LIKE '/registry/pods/default/web-%'");
    assert_eq!(names.trim(), "400", "keys mapped to /registry/ under kine");
    let m = k.json(&["backup", "tenant", "--datastore", &pg.url(), "--schema", "tenant1"]);
    assert_eq!(m[0]["source"]["driver"], "postgres");
    assert_eq!(m[0]["source"]["content_sha256"].as_str().unwrap(), t1_hash, "same logical content from kine");
    let pg_id = m[0]["id"].as_str().unwrap().to_string();
    k.ok(&["restore", "tenant", &pg_id, "--datastore", &url, "--schema", "tenant1-copy"]);
    let copy: Vec<_> = under(&etcd, "/tenant1-copy/")
        .await
        .into_iter()
        .map(|(k, v)| (k[b"/tenant1-copy".len()..].to_vec(), v))
        .collect();
    let orig: Vec<_> = before.into_iter().map(|(k, v)| (k[b"/tenant1".len()..].to_vec(), v)).collect();
    assert!(copy == orig, "etcd -> postgres -> etcd keeps every key and value");

    // The password never shows, even when it is wrong.
    let bad = pg.url().replace("kmdr-test-pw", "wrong-secret-pw");
    let err = k.fails(&["backup", "tenant", "--datastore", &bad, "--schema", "tenant1"], 6);
    assert!(err.contains("credentials") && !err.contains("wrong-secret-pw"), "{err}");
}

#[tokio::test]
async fn bad_input_gets_one_line_and_changes_nothing() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), "bad");
    etcd.load("/t1/pods/ns/p-", 20, 50, 1).await;
    let k = Kmdr::local(dir.path());
    k.init();
    let url = etcd_url(&etcd);
    let print = k.fingerprint();
    let e = k.fails(&["backup", "tenant", "--datastore", &url, "--schema", "nope"], 5);
    assert!(e.contains("t1"), "names the tenants that exist: {e}");
    k.fails(&["backup", "tenant", "--datastore", "etcd://127.0.0.1:1", "--schema", "t1"], 6);
    let e =
        k.fails(&["backup", "tenant", "--datastore", "postgres://u:hunter2@127.0.0.1:notaport", "--schema", "t1"], 2);
    assert!(!e.contains("hunter2"), "{e}");
    k.fails(&["backup", "tenant", "--datastore", "redis://127.0.0.1", "--schema", "t1"], 2);
    assert_eq!(k.fingerprint(), print, "failed backups leave the repository as it was");
    assert!(k.json(&["backups", "list"]).as_array().unwrap().is_empty(), "nothing partial listed");
    // A backup of another kind is not tenant data.
    let id = k.ok(&["backup", "etcd", "--endpoints", &etcd.client_url]).trim().to_string();
    k.fails(&["restore", "tenant", &id, "--datastore", &url, "--schema", "x"], 5);
}

/// The datastore dies part way: the backup lists nothing partial; the restore
/// says what it wrote, and `--force` completes it once the datastore is back.
#[tokio::test]
async fn datastore_killed_mid_backup_and_mid_restore() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), "dies");
    etcd.load("/big/pods/ns/p-", 60_000, 1024, 7).await;
    let k = Kmdr::local(dir.path());
    k.init();
    let url = etcd_url(&etcd);
    let good = k.json(&["backup", "tenant", "--datastore", &url, "--schema", "big"]);
    let good_id = good[0]["id"].as_str().unwrap().to_string();

    // Kill etcd 150 ms into a backup.
    let child = k
        .cmd()
        .args(["backup", "tenant", "--datastore", &url, "--schema", "big"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    let data_dir = etcd.data_dir.clone();
    let name = etcd.name.clone();
    let peer = etcd.peer_url.clone();
    etcd.stop();
    let out = child.wait_with_output().unwrap();
    let listed = k.json(&["backups", "list"]).as_array().unwrap().len();
    if out.status.success() {
        assert_eq!(listed, 2, "a backup that finished before the kill is complete");
    } else {
        assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(listed, 1, "no partial backup listed");
    }
    k.ok(&["verify"]);

    // Restore into a fresh etcd, killed 150 ms in.
    std::fs::create_dir_all(dir.path().join("t")).unwrap();
    let target = Etcd::start(&dir.path().join("t"), "target");
    let turl = etcd_url(&target);
    let child = k
        .cmd()
        .args(["restore", "tenant", &good_id, "--datastore", &turl])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    let (tdir, tname, tpeer) = (target.data_dir.clone(), target.name.clone(), target.peer_url.clone());
    target.stop();
    let out = child.wait_with_output().unwrap();
    let target = Etcd::start_on(tdir, &tname, Some(tpeer));
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(6), "{err}");
        assert!(
            err.contains("keys were written under /big/") && err.contains("--force"),
            "says what state the target is in: {err}"
        );
        k.ok(&["restore", "tenant", &good_id, "--datastore", &etcd_url(&target), "--force"]);
    }
    let n = target
        .client()
        .await
        .get("/big/", Some(etcd_client::GetOptions::new().with_prefix().with_count_only()))
        .await
        .unwrap()
        .count();
    assert_eq!(n, 60_000, "the re-run completes the tenant");
    drop(Etcd::start_on(data_dir, &name, Some(peer)));
}

/// A kine PostgreSQL that only takes TLS with a client certificate, as
/// Kamaji's DataStore `tlsConfig` sets it up: --cacert/--cert/--key work for
/// it as for etcd; without them, or with another CA, a clear refusal.
#[tokio::test]
async fn postgres_over_tls_with_client_certificates() {
    need_etcd!();
    if !kmdr_testkit::need("initdb") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    common::make_pki(&pki);
    let other = dir.path().join("other-pki");
    std::fs::create_dir_all(&other).unwrap();
    common::make_pki(&other);
    let etcd = Etcd::start(dir.path(), "src");
    etcd.load("/t1/pods/ns/p-", 200, 300, 1).await;
    let pg = Postgres::start_tls(dir.path(), &pki);
    let k = Kmdr::local(dir.path());
    k.init();
    let m = k.json(&["backup", "tenant", "--datastore", &etcd_url(&etcd), "--schema", "t1"]);
    let id = m[0]["id"].as_str().unwrap().to_string();
    let p = |f: &str| pki.join(f).display().to_string();
    let tls = [p("ca.crt"), p("client.crt"), p("client.key")];
    let with_tls = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(["--cacert".into(), tls[0].clone(), "--cert".into(), tls[1].clone(), "--key".into(), tls[2].clone()]);
        v
    };
    let run = |v: Vec<String>| k.ok(&v.iter().map(String::as_str).collect::<Vec<_>>());
    run(with_tls(&["restore", "tenant", &id, "--datastore", &pg.url()]));
    let out = run(with_tls(&["backup", "tenant", "--datastore", &pg.url(), "--schema", "t1", "-o", "json"]));
    let back: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(back[0]["source"]["content_sha256"], m[0]["source"]["content_sha256"], "same content over TLS");
    // No client certificate: the server refuses; the message says so in one line.
    let e = k.fails(&["backup", "tenant", "--datastore", &pg.url(), "--schema", "t1"], 6);
    assert!(e.contains("pg_hba") || e.contains("encryption") || e.contains("SSL"), "{e}");
    // A CA that did not sign the server's certificate: refused before any query.
    let oca = other.join("ca.crt").display().to_string();
    let e = k.fails(
        &[
            "backup",
            "tenant",
            "--datastore",
            &pg.url(),
            "--schema",
            "t1",
            "--cacert",
            &oca,
            "--cert",
            &tls[1],
            "--key",
            &tls[2],
        ],
        6,
    );
    assert!(e.to_lowercase().contains("certificate"), "{e}");
}

/// Range requests etcd has served so far (its own counter on `/metrics`).
fn ranges_served(e: &Etcd) -> u64 {
    let (_, m) = crate::serve::http_get(e.client_url.trim_start_matches("http://"), "/metrics").expect("etcd /metrics");
    m.lines()
        .find(|l| {
            l.starts_with("grpc_server_handled_total")
                && l.contains("grpc_method=\"Range\"")
                && l.contains("code=\"OK\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .map(|n| n.parse::<f64>().unwrap() as u64)
        .unwrap_or(0)
}

/// `--all` reads a shared etcd in one scan that runs on from tenant to tenant
/// (kmdr-datastore's etcd/scan.rs): tenants of a few keys and tenants that
/// fill several pages, with names that sort trickily (t1, t10, t100) and a key
/// outside every tenant, come out exactly as a tenant's own backup reads them;
/// and etcd serves fewer range requests than half the tenants (one per
/// tenant or more, before the scan).
#[tokio::test(flavor = "multi_thread")]
async fn every_tenant_of_an_etcd_in_one_scan() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), "shared");
    let tenants = 120;
    let mut keys = 0;
    for i in 0..tenants {
        let n = if i % 40 == 0 { 2_500 } else { 7 };
        keys += n;
        etcd.load(&format!("/t{i}/pods/p-"), n, 64, i as u64).await;
    }
    etcd.client().await.put("/loose", "outside every tenant", None).await.unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let url = etcd_url(&etcd);

    let before = ranges_served(&etcd);
    let ms = k.json(&["backup", "tenant", "--datastore", &url, "--all"]);
    let ranges = ranges_served(&etcd) - before;
    let ms = ms.as_array().unwrap();
    assert_eq!(ms.len(), tenants);
    // Listing: keys-only pages of 10,000; the scan: pages of 1,000 reaching at
    // most 5 tenants (etcd counts a request's whole range). One request per
    // tenant, as before the scan, would be 240 or more.
    assert!(
        ranges <= (tenants / 2) as u64,
        "{ranges} range requests for {tenants} tenants of {keys} keys: the scan does not run on"
    );
    eprintln!("{ranges} range requests for {tenants} tenants of {keys} keys");
    for name in ["t0", "t1", "t10", "t100", "t39", "t40", "t41", "t119"] {
        let scanned = ms.iter().find(|m| m["source"]["schema"] == name).unwrap();
        let alone = &k.json(&["backup", "tenant", "--datastore", &url, "--schema", name])[0];
        assert_eq!(scanned["source"]["key_count"], alone["source"]["key_count"], "{name}");
        assert_eq!(scanned["source"]["content_sha256"], alone["source"]["content_sha256"], "{name}");
    }
    let t40 = ms.iter().find(|m| m["source"]["schema"] == "t40").unwrap();
    assert_eq!(t40["source"]["key_count"], 2_500);
}
