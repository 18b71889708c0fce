//! `kmdr verify --restore`: an etcd snapshot and tenant backups of every
//! driver restored into scratch servers, proven restorable, the proofs sealed
//! in the repository and shown by `backups list` / `backups show`; a backup
//! whose content disagrees with its own manifest passes the byte-level
//! `verify` and fails `verify --restore`; a missing etcd binary is one line.

use crate::common::{self, Etcd, Kmdr};
use kmdr_testkit::{Mariadb, Nats, Postgres};

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_data_backup_is_proven_restorable_and_a_lying_manifest_is_caught() {
    need_etcd!();
    if !kmdr_testkit::need("initdb") || !kmdr_testkit::need("mariadbd") || !kmdr_testkit::need("nats-server") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let etcd = Etcd::start(dir.path(), "src");
    etcd.load("/t1/pods/default/web-", 300, 200, 1).await;
    etcd.load("/registry/configmaps/kube-system/cm-", 200, 300, 2).await;
    let url = etcd.client_url.replace("http://", "etcd://");
    k.ok(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    let t1 = k.json(&["backup", "tenant", "--datastore", &url, "--schema", "t1"])[0].clone();
    let t1_id = t1["id"].as_str().unwrap().to_string();
    // The same tenant on each kine driver, backed up there.
    let (pg, my, nats) = (Postgres::start(dir.path()), Mariadb::start(dir.path()), Nats::start(dir.path()));
    let mut kine_ids = Vec::new();
    for target in [pg.url(), my.url(), nats.url()] {
        k.ok(&["restore", "tenant", &t1_id, "--datastore", &target]);
        let b = k.json(&["backup", "tenant", "--datastore", &target, "--schema", "t1"]);
        kine_ids.push(b[0]["id"].as_str().unwrap().to_string());
    }

    let out = k.json(&["verify", "--restore"]);
    let restores = out["restores"].as_array().unwrap();
    assert_eq!(restores.len(), 5, "{out}");
    for r in restores {
        assert_eq!(r["outcome"], "restorable", "{r}");
        let checks = r["checks"].as_array().unwrap();
        assert!(checks.iter().all(|c| c["ok"] == true && c["expected"] != ""), "{r}");
        assert!(r["restored_into"].as_str().unwrap().starts_with("etcd 3.6"), "{r}");
    }
    let etcd_proof = restores.iter().find(|r| r["kind"] == "etcd").unwrap();
    let keys = etcd_proof["checks"].as_array().unwrap().iter().find(|c| c["what"] == "keys").unwrap();
    assert_eq!(keys["found"], "500", "{etcd_proof}");
    let tenant_keys: Vec<_> = restores
        .iter()
        .filter(|r| r["kind"] == "tenant")
        .map(|r| r["checks"][0]["found"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tenant_keys, vec!["300"; 4], "{out}");

    // Into a scratch server of each backup's own driver.
    let args: Vec<&str> = ["verify", "--restore", "--target-driver", "same"]
        .into_iter()
        .chain(kine_ids.iter().map(String::as_str))
        .collect();
    let same = k.json(&args);
    let into: Vec<String> =
        same["restores"].as_array().unwrap().iter().map(|r| r["restored_into"].as_str().unwrap().to_string()).collect();
    assert!(
        into[0].starts_with("PostgreSQL") && into[1].starts_with("MariaDB") && into[2].starts_with("NATS"),
        "{into:?}"
    );
    assert!(same["restores"].as_array().unwrap().iter().all(|r| r["outcome"] == "restorable"), "{same}");

    // The proofs are in the repository and in the views.
    let list = k.ok(&["backups", "list"]);
    assert_eq!(list.lines().filter(|l| l.contains("yes, ")).count(), 5, "{list}");
    let shown = k.json(&["backups", "show", &t1_id]);
    assert_eq!(shown["restore_proofs"].as_array().unwrap().len(), 1, "{shown}");
    let shown = k.json(&["backups", "show", &kine_ids[0]]);
    assert_eq!(shown["restore_proofs"].as_array().unwrap().len(), 2, "{shown}");
    assert_eq!(k.json(&["verify", "--restore", "--new"])["restores"], serde_json::json!([]), "nothing left unproven");
    // status: the restorable RPO of the plan's tenant.
    let plan = crate::serve::write_plan_for(dir.path(), &k, &url);
    let restorable = |k: &Kmdr| -> Vec<(String, String)> {
        let o = k.run(&["status", "--plan", &plan, "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter(|f| f["check"] == "restorable" && f["subject"] == "tenant-control-planes shared/t1")
            .map(|f| (f["level"].as_str().unwrap().to_string(), f["message"].as_str().unwrap().to_string()))
            .collect()
    };
    let found = restorable(&k);
    assert!(found.len() == 1 && found[0].0 == "OK" && found[0].1.contains(&t1_id), "{found:?}");

    // A manifest that lies about its content (re-sealed with the key): the bytes
    // all check out, the restore does not.
    let m = k
        .reseal_manifest(&t1_id, |m| {
            if let kmdr_core::SourceInfo::TenantData(t) = &mut m.source {
                t.content_sha256 = "0".repeat(64);
            }
        })
        .await;
    let repo = k.open_repo().await;
    k.ok(&["verify", &t1_id]);
    let o = k.run(&["verify", "--restore", &t1_id]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!("UNRESTORABLE {t1_id}")) && stdout.contains("content_sha256"), "{stdout}");
    let list = k.ok(&["backups", "list"]);
    assert!(list.lines().any(|l| l.starts_with(&t1_id) && l.contains("NO, ")), "{list}");
    let found = restorable(&k);
    assert!(found.iter().any(|(l, m)| l == "FAIL" && m.contains("does not restore")), "{found:?}");

    // No etcd for the scratch server: one line, exit 8, no proof sealed.
    let before = repo.list_proofs(None).await.unwrap().len();
    let err = k.fails(&["verify", "--restore", &t1_id, "--etcd", "/nonexistent/etcd"], 8);
    assert!(err.contains("--etcd PATH") && err.contains("/nonexistent/etcd"), "{err}");
    assert_eq!(repo.list_proofs(None).await.unwrap().len(), before);

    // A damaged chunk: the test restore (which skips the byte pass for what it
    // reads itself) names the backup unrestorable rather than failing.
    let chunk = &m.files[0].chunks[0].id;
    let path = std::path::Path::new(&k.repo).join(kmdr_repo::repository::chunk_key(chunk));
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let o = k.run(&["verify", "--restore", &t1_id]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout} {}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains(&format!("UNRESTORABLE {t1_id}")) && stdout.contains("damaged"), "{stdout}");
}

/// The plan's `verify:` block: serve proves the unit's newest backups on
/// schedule, the proofs are sealed, and the metrics move.
#[test]
fn serve_proves_the_newest_backup_on_schedule_and_the_metrics_move() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let etcd = Etcd::start(dir.path(), "src");
    crate::serve::runtime().block_on(etcd.load("/t1/pods/default/web-", 50, 100, 3));
    let plan = crate::serve::write_plan_for(dir.path(), &k, &etcd.client_url.replace("http://", "etcd://"));
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(&plan, format!("{text}verify:\n  every: 1s\n  sample: 2\n  nice: 5\n")).unwrap();
    let dry = k.ok(&["serve", "--plan", &plan, "--dry-run"]);
    assert!(
        dry.contains("restore proofs every 1.0s: up to 2 newest unproven backups per unit, 1 at a time, at nice 5"),
        "{dry}"
    );
    let log = dir.path().join("serve.log");
    let serve = crate::serve::Serve::start_with(&k, &plan, &log, &[]);
    let unit = "{layer=\"tenant-control-planes\",unit=\"shared/t1\"}";
    let metrics = serve.wait_for_metric(&format!("kmdr_verified_restore_timestamp_seconds{unit}"), &log);
    assert!(metrics.contains(&format!("kmdr_verify_failures_total{unit} 0")), "{metrics}");
    assert!(metrics.contains(&format!("kmdr_restorable_rpo_seconds{unit}")), "{metrics}");
    serve.terminate();
    let list = k.ok(&["backups", "list", "--kind", "tenant"]);
    assert!(list.lines().skip(1).all(|l| l.contains("yes, ")) && list.lines().count() >= 2, "{list}");
}
