//! The storage conformance suite: the contract of [`Store`] as executable
//! checks, run once per backend (restic's backend test suite). Backends call
//! [`run`] from their tests on an empty store.

use crate::{Store, StoreError};
use bytes::Bytes;

/// Check every rule of the [`Store`] contract against an empty store. Panics on
/// the first violation, naming it.
pub async fn run(store: &dyn Store) {
    // A missing object is NotFound, exists() is false, delete() is fine.
    match store.get("config").await {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("get of a missing key must be NotFound, got {other:?}"),
    }
    assert!(!store.exists("config").await.unwrap(), "exists() of a missing key");
    store.delete("config").await.expect("delete of a missing key must succeed");
    assert!(store.list("").await.unwrap().is_empty(), "a new store lists nothing");

    // Round trip, including an empty object and one of several MiB.
    let big: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761u32) >> 24) as u8).collect();
    store.put("config", Bytes::from_static(b"{\"v\":1}")).await.unwrap();
    store.put("keys/empty", Bytes::new()).await.unwrap();
    store.put("data/ab/ab01", Bytes::from(big.clone())).await.unwrap();
    assert_eq!(store.get("config").await.unwrap(), Bytes::from_static(b"{\"v\":1}"));
    assert_eq!(store.get("keys/empty").await.unwrap().len(), 0);
    assert!(store.get("data/ab/ab01").await.unwrap() == big, "large object round trip");
    assert!(store.exists("data/ab/ab01").await.unwrap());

    // Overwrite replaces the whole object.
    store.put("config", Bytes::from_static(b"2")).await.unwrap();
    assert_eq!(store.get("config").await.unwrap(), Bytes::from_static(b"2"));

    // Listing: recursive, prefix-filtered, partial last segment, sizes right.
    store.put("data/cd/cd02", Bytes::from_static(b"xyz")).await.unwrap();
    store.put("backups/20261127T024037.000Z-etcd-aaaaaa", Bytes::from_static(b"m1")).await.unwrap();
    store.put("backups/20261128T000000.000Z-etcd-bbbbbb", Bytes::from_static(b"m2")).await.unwrap();
    let mut data: Vec<_> = store.list("data/").await.unwrap();
    data.sort_by(|a, b| a.key.cmp(&b.key));
    let keys: Vec<_> = data.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["data/ab/ab01", "data/cd/cd02"]);
    assert_eq!(data[0].size, big.len() as u64);
    assert_eq!(data[1].size, 3);
    let nov27: Vec<_> = store.list("backups/20261127").await.unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(nov27, ["backups/20261127T024037.000Z-etcd-aaaaaa"]);
    // A whole key is a prefix of itself; names before and after it in the directory are not listed.
    let whole =
        |k: &'static str| async move { store.list(k).await.unwrap().into_iter().map(|o| o.key).collect::<Vec<_>>() };
    assert_eq!(whole("backups/20261128T000000.000Z-etcd-bbbbbb").await, ["backups/20261128T000000.000Z-etcd-bbbbbb"]);
    assert_eq!(whole("backups/20261127T024037.000Z-etcd-aaaaaa").await, ["backups/20261127T024037.000Z-etcd-aaaaaa"]);
    assert!(whole("backups/20261127T1").await.is_empty(), "between two names");
    assert!(whole("backups/2026112").await.len() == 2 && whole("backups/2").await.len() == 2);
    assert_eq!(store.list("").await.unwrap().len(), 6, "list(\"\") lists everything");
    assert!(store.list("nothing/").await.unwrap().is_empty());
    // Listing after a key: only what sorts after it, under the prefix; the key need not exist.
    let after = |p: &'static str, a: &'static str| async move {
        let mut k: Vec<_> = store.list_after(p, a).await.unwrap().into_iter().map(|o| o.key).collect();
        k.sort();
        k
    };
    assert_eq!(after("backups/", "backups/20261127T9").await, ["backups/20261128T000000.000Z-etcd-bbbbbb"]);
    assert_eq!(after("backups/", "backups/20261127T024037.000Z-etcd-aaaaaa").await.len(), 1, "not the key itself");
    assert_eq!(after("backups/", "backups/").await.len(), 2);
    assert!(after("backups/", "backups/20261129").await.is_empty());
    assert_eq!(after("data/", "backups/zzz").await, ["data/ab/ab01", "data/cd/cd02"], "a key before the prefix");

    // Concurrent writers of different keys.
    let keys: Vec<String> = (0..16).map(|i| format!("data/ef/c{i:02}")).collect();
    let puts = keys.iter().enumerate().map(|(i, k)| store.put(k, Bytes::from(vec![i as u8; 1000])));
    for r in futures::future::join_all(puts).await {
        r.unwrap();
    }
    assert_eq!(store.list("data/ef/").await.unwrap().len(), 16);

    // Deletes.
    store.delete("data/cd/cd02").await.unwrap();
    assert!(!store.exists("data/cd/cd02").await.unwrap());
    assert_eq!(store.list("data/").await.unwrap().len(), 17);

    // Keys outside the grammar never reach the backend.
    for bad in ["", "../escape", "data//x", ".hidden", "a/.tmp", "sp ace"] {
        assert!(
            matches!(store.put(bad, Bytes::new()).await, Err(StoreError::InvalidKey { .. })),
            "key {bad:?} accepted"
        );
    }
}

/// The S3 endpoint for tests, from `KMDR_TEST_S3_ENDPOINT`. When unset, panics
/// if `KMDR_TEST_REQUIRE_SERVERS=1` (CI), else says on stderr that the test is
/// skipped and returns `None`.
pub fn s3_test_endpoint() -> Option<String> {
    match std::env::var("KMDR_TEST_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            if std::env::var("KMDR_TEST_REQUIRE_SERVERS").as_deref() == Ok("1") {
                panic!(
                    "KMDR_TEST_S3_ENDPOINT is not set but KMDR_TEST_REQUIRE_SERVERS=1: start the S3 server (scripts/test.sh does)"
                );
            }
            eprintln!("SKIPPED: KMDR_TEST_S3_ENDPOINT not set (run scripts/test.sh to start an S3 server)");
            None
        }
    }
}

/// The test bucket (`KMDR_TEST_S3_BUCKET`, default `kmdr-test`); combine it
/// with [`unique_prefix`] so that runs never see each other's objects.
pub fn s3_test_bucket() -> String {
    std::env::var("KMDR_TEST_S3_BUCKET").unwrap_or_else(|_| "kmdr-test".into())
}

/// A fresh prefix for one test run.
pub fn unique_prefix(name: &str) -> String {
    format!("{name}-{:016x}", rand::random::<u64>())
}
