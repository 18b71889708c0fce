//! The tamper-evident catalog: `verify` names a manifest deleted from the
//! store, a forgotten one put back, a delta segment deleted inside a chain or
//! at its linked end, and a forget record no full key made. Real etcd; the
//! repository is local and, the same steps, on the S3 server: the test
//! deletes and puts raw objects through the store, as an attacker holding the
//! store's credentials would.

use crate::common::{self, Etcd, Kmdr};
use kmdr_repo::deltas::{SegmentName, encode};

/// `verify`'s exit code and stdout.
fn verify(k: &Kmdr) -> (i32, String) {
    let o = k.run(&["verify"]);
    (o.status.code().unwrap(), String::from_utf8_lossy(&o.stdout).to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_deleted_and_put_back_manifests_and_deleted_segments() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    tampered(Kmdr::local(dir.path()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_deleted_and_put_back_manifests_and_deleted_segments_on_s3() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let Some(k) = Kmdr::s3(dir.path(), "tamper") else { return };
    tampered(k, dir.path()).await;
}

async fn tampered(k: Kmdr, dir: &std::path::Path) {
    let etcd = Etcd::start(dir, "src");
    etcd.load("/k/", 200, 100, 3).await;
    let store = k.store();
    k.init();
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(k.json(&["backup", "etcd", "--endpoints", &etcd.client_url])["id"].as_str().unwrap().to_string());
    }
    assert_eq!(verify(&k).0, 0, "a fresh repository is clean");

    // A manifest deleted from the store: the next one linked it.
    let b = format!("backups/{}", ids[1]);
    let saved = store.get(&b).await.unwrap();
    store.delete(&b).await.unwrap();
    let (code, out) = verify(&k);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("TAMPERED backups/{}: deleted from the store", ids[1])), "{out}");
    store.put(&b, saved).await.unwrap();
    assert_eq!(verify(&k).0, 0);

    // forget removes two with a record; putting one back is named.
    let a = format!("backups/{}", ids[0]);
    let saved_a = store.get(&a).await.unwrap();
    k.ok(&["forget", "--keep-last", "2"]);
    assert!(!store.exists(&a).await.unwrap());
    let (code, out) = verify(&k);
    assert_eq!(code, 0, "a forget is not a deletion: {out}");
    store.put(&a, saved_a).await.unwrap();
    let (code, out) = verify(&k);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("backups/{}: put back after `forget`", ids[0])), "{out}");
    store.delete(&a).await.unwrap();

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
    store.delete(&segs[1].key()).await.unwrap();
    let (code, out) = verify(&k);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("revisions {}..={} are missing inside the chain", rev + 11, rev + 20)), "{out}");
    store.delete(&segs[2].key()).await.unwrap();
    let (_, out) = verify(&k);
    assert!(out.contains(&format!("{}: delta segment deleted", segs[2].key())), "{out}");

    // A forget record nobody with the full key made.
    let forged = "catalog/20260101T000000.000Z-forget-000001";
    store.put(forged, b"KMDR junk".to_vec().into()).await.unwrap();
    let (_, out) = verify(&k);
    assert!(out.contains(&format!("{forged}: not a forget record")), "{out}");
}
