//! The tamper-evident catalog: `verify` names a manifest deleted from the
//! store, a forgotten one put back, a delta segment deleted inside a chain or
//! at its linked end, and a forget record no full key made. Real etcd, local
//! repository (the store's own files are what an attacker would touch).

use crate::common::{self, Etcd, Kmdr};
use kmdr_repo::deltas::{SegmentName, encode};
use std::path::PathBuf;

fn object(k: &Kmdr, key: &str) -> PathBuf {
    PathBuf::from(&k.repo).join(key)
}

/// `verify`'s exit code and stdout.
fn verify(k: &Kmdr) -> (i32, String) {
    let o = k.run(&["verify"]);
    (o.status.code().unwrap(), String::from_utf8_lossy(&o.stdout).to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_deleted_and_put_back_manifests_and_deleted_segments() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), "src");
    etcd.load("/k/", 200, 100, 3).await;
    let k = Kmdr::local(dir.path());
    k.init();
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(k.json(&["backup", "etcd", "--endpoints", &etcd.client_url])["id"].as_str().unwrap().to_string());
    }
    assert_eq!(verify(&k).0, 0, "a fresh repository is clean");

    // A manifest deleted from the store: the next one linked it.
    let b = object(&k, &format!("backups/{}", ids[1]));
    let saved = std::fs::read(&b).unwrap();
    std::fs::remove_file(&b).unwrap();
    let (code, out) = verify(&k);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("TAMPERED backups/{}: deleted from the store", ids[1])), "{out}");
    std::fs::write(&b, &saved).unwrap();
    assert_eq!(verify(&k).0, 0);

    // forget removes two with a record; putting one back is named.
    let a = object(&k, &format!("backups/{}", ids[0]));
    let saved_a = std::fs::read(&a).unwrap();
    k.ok(&["forget", "--keep-last", "2"]);
    assert!(!a.exists());
    let (code, out) = verify(&k);
    assert_eq!(code, 0, "a forget is not a deletion: {out}");
    std::fs::write(&a, &saved_a).unwrap();
    let (code, out) = verify(&k);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("backups/{}: put back after `forget`", ids[0])), "{out}");
    std::fs::remove_file(&a).unwrap();

    // A delta chain after the newest backup, as kmdr serve writes it.
    let repo = k.open_repo().await;
    let newest = repo.load_manifest(&ids[3].parse().unwrap()).await.unwrap();
    let rev = kmdr_repo::point::base_revision(&newest).unwrap();
    let now = chrono::Utc::now();
    let segs: Vec<SegmentName> =
        (0..3).map(|i| SegmentName::new(&newest.series, rev + 1 + 10 * i, rev + 10 * (i + 1), now)).collect();
    for s in &segs {
        repo.put_segment(s, &encode(&[])).await.unwrap();
    }
    // A full backup taken now links the newest segment.
    let e = k.json(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    assert_eq!(e["links"]["segments"][0], segs[2].key());
    assert_eq!(verify(&k).0, 0);
    std::fs::remove_file(object(&k, &segs[1].key())).unwrap();
    let (code, out) = verify(&k);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("revisions {}..={} are missing inside the chain", rev + 11, rev + 20)), "{out}");
    std::fs::remove_file(object(&k, &segs[2].key())).unwrap();
    let (_, out) = verify(&k);
    assert!(out.contains(&format!("{}: delta segment deleted", segs[2].key())), "{out}");

    // A forget record nobody with the full key made.
    std::fs::create_dir_all(object(&k, "catalog")).unwrap();
    std::fs::write(object(&k, "catalog/20260101T000000.000Z-forget-000001"), b"KMDR junk").unwrap();
    let (_, out) = verify(&k);
    assert!(out.contains("catalog/20260101T000000.000Z-forget-000001: not a forget record"), "{out}");
}
