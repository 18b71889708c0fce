//! The same job on an S3-compatible server (scripts/test.sh starts one and
//! sets KMDR_TEST_S3_ENDPOINT): init, backup, list, verify, restore, forget.

use crate::common;
use common::{Etcd, Kmdr};

#[tokio::test(flavor = "multi_thread")]
async fn etcd_backup_and_restore_through_s3() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let Some(k) = Kmdr::s3(dir.path(), "cli") else { return };
    let etcd = Etcd::start(dir.path(), "src");
    etcd.load("/k/", 5000, 512, 9).await;
    let before = etcd.dump().await;
    k.init();
    let m = k.json(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    k.ok(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    assert_eq!(k.json(&["backups", "list"]).as_array().unwrap().len(), 2);
    k.ok(&["verify", "--all"]);
    let peer = format!("http://127.0.0.1:{}", common::free_port());
    let target = dir.path().join("r.etcd");
    k.ok(&[
        "restore",
        "etcd",
        m["id"].as_str().unwrap(),
        "--data-dir",
        &target.display().to_string(),
        "--name",
        "r",
        "--initial-cluster",
        &format!("r={peer}"),
        "--initial-advertise-peer-urls",
        &peer,
    ]);
    etcd.stop();
    let restored = Etcd::start_on(target, "r", Some(peer));
    assert!(restored.dump().await == before);
    let f = k.json(&["forget", "--keep-last", "1", "--prune"]);
    assert_eq!(f["remove"].as_array().unwrap().len(), 1);
    assert_eq!(k.json(&["backups", "list"]).as_array().unwrap().len(), 1);
    k.ok(&["verify"]);
    // A wrong key fails the same way on S3.
    std::fs::write(dir.path().join("w.key"), "wrong").unwrap();
    let w = Kmdr { key_file: dir.path().join("w.key"), ..k };
    w.fails(&["backups", "list"], 4);
}
