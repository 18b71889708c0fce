//! The driver conformance suite: the same cases against etcd, PostgreSQL,
//! MariaDB and NATS JetStream, each a real server on loopback, then every
//! cross-driver pair. A driver passes when, through `TenantStore` alone:
//!
//! - what it imports it exports again, key for key and byte for byte, with
//!   the same content hash;
//! - it counts, lists and refuses as documented;
//! - `replace` leaves exactly the new set;
//! - a damaged stream is refused and changes nothing it cannot undo;
//! - nothing outside the tenant changes, including a tenant whose name
//!   extends this one's (`tenant-a` / `tenant-ab`);
//! - through kine: on the kine drivers, the kine binary started on a
//!   replaced tenant, and on one whose import was re-run after a damaged
//!   stream, serves exactly what kmdr imported.

use crate::common::servers::Server;
use kmdr_core::TlsFiles;
use kmdr_datastore::{
    self as tenant, self, AnyTenants, DatastoreUrl, Driver, RecordReader, RecordSummary, RecordWriter, TenantError,
    TenantStore,
};
use kmdr_testkit::data::kube_records;
use std::path::Path;

/// The "through kine" mode of a case: on a kine driver, kine itself started
/// on `schema` lists exactly `want` below `/registry` (its own health key
/// aside), so what kmdr wrote is what kine serves.
async fn kine_serves(server: &Server, dir: &Path, schema: &str, want: &[(Vec<u8>, Vec<u8>)]) {
    let Some(endpoint) = server.kine_endpoint(schema) else { return };
    if !kmdr_testkit::need("kine") {
        return;
    }
    let kine = kmdr_testkit::Kine::start(dir, &endpoint);
    let mut s = kmdr_testkit::KubeStorage::connect(&kine.client_url).await;
    let got: Vec<(Vec<u8>, Vec<u8>)> = s
        .list("/registry/")
        .await
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k != b"/registry/health")
        .map(|(k, v)| (k["/registry".len()..].to_vec(), v))
        .collect();
    assert_eq!(got.len(), want.len(), "{schema}: keys kine lists");
    assert!(got == want, "{schema}: what kine serves differs from what kmdr imported");
    // kine wrote its health key on start: take it out again, through kine, so
    // the tenant holds what the suite's later cases expect.
    s.adopt("/registry/health").await.unwrap();
    s.delete(b"/registry/health").await.unwrap();
}

async fn connect(url: &str) -> AnyTenants {
    tenant::connect(&DatastoreUrl::parse(url).unwrap(), TlsFiles::default()).await.unwrap()
}

/// A complete record stream of `records`.
async fn stream_of(records: &[(Vec<u8>, Vec<u8>)]) -> (Vec<u8>, RecordSummary) {
    let mut buf = Vec::new();
    let mut w = RecordWriter::new(&mut buf);
    for (i, (k, v)) in records.iter().enumerate() {
        w.write(k, v, i as i64 + 1, i as i64 + 1).await.unwrap();
    }
    let s = w.finish().await.unwrap();
    (buf, s)
}

async fn import(
    store: &AnyTenants,
    schema: &str,
    stream: &[u8],
    replace: bool,
) -> Result<tenant::ImportInfo, TenantError> {
    let mut r = RecordReader::new(stream);
    store.import(schema, &mut r, replace).await
}

/// Export `schema` and read it back: the records and their summary.
async fn export(store: &AnyTenants, schema: &str) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, RecordSummary), TenantError> {
    let mut buf = Vec::new();
    let mut w = RecordWriter::new(&mut buf);
    store.export(schema, None, &mut w).await?;
    let written = w.finish().await?;
    let mut r = RecordReader::new(buf.as_slice());
    let mut out = Vec::new();
    while let Some(rec) = r.next().await? {
        out.push((rec.key, rec.value));
    }
    assert_eq!(r.summary(), written, "the reader agrees with the writer");
    Ok((out, written))
}

/// Every case of the suite against one driver.
async fn conformance(driver: Driver) {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, url)) = Server::start(driver, dir.path()) else { return };
    let store = connect(&url).await;
    assert_eq!(store.driver(), driver);
    assert!(!store.datastore().contains("pw"), "no password in {}", store.datastore());

    // Round trip: what goes in comes out, byte for byte, same content hash.
    let a = kube_records(300, 600, 1);
    let (a_stream, a_sum) = stream_of(&a).await;
    assert_eq!(store.count("tenant-a").await.unwrap(), 0, "{driver}: absent tenant counts 0");
    let info = import(&store, "tenant-a", &a_stream, false).await.unwrap();
    assert_eq!(info.written, a.len() as u64, "{driver}");
    let (back, sum) = export(&store, "tenant-a").await.unwrap();
    assert_eq!(back.len(), a.len(), "{driver}: key count");
    assert!(back == a, "{driver}: exported records differ from the imported ones");
    assert_eq!(sum, a_sum, "{driver}: content hash");
    assert_eq!(store.count("tenant-a").await.unwrap(), a.len() as u64, "{driver}");

    // Neighbours: a tenant whose name extends this one's, and another.
    let ab = kube_records(50, 100, 2);
    let b = kube_records(80, 200, 3);
    import(&store, "tenant-ab", &stream_of(&ab).await.0, false).await.unwrap();
    import(&store, "tenant-b", &stream_of(&b).await.0, false).await.unwrap();
    let tenants = store.list_tenants().await.unwrap();
    for t in ["tenant-a", "tenant-ab", "tenant-b"] {
        assert!(tenants.iter().any(|x| x == t), "{driver}: {t} not listed in {tenants:?}");
    }
    let (_, ab_sum) = export(&store, "tenant-ab").await.unwrap();
    let (_, b_sum) = export(&store, "tenant-b").await.unwrap();

    // Replace: exactly the new set afterwards, neighbours untouched.
    let a2 = kube_records(120, 300, 4);
    let (a2_stream, a2_sum) = stream_of(&a2).await;
    let info = import(&store, "tenant-a", &a2_stream, true).await.unwrap();
    assert_eq!((info.written, info.removed), (a2.len() as u64, a.len() as u64), "{driver}");
    let (back, sum) = export(&store, "tenant-a").await.unwrap();
    assert!(back == a2, "{driver}: replace left other keys ({} keys, expected {})", back.len(), a2.len());
    assert_eq!(sum, a2_sum);
    assert_eq!(export(&store, "tenant-ab").await.unwrap().1, ab_sum, "{driver}: tenant-ab changed");
    assert_eq!(export(&store, "tenant-b").await.unwrap().1, b_sum, "{driver}: tenant-b changed");
    kine_serves(&server, dir.path(), "tenant-a", &a2).await;

    // A damaged stream is refused; neighbours untouched whatever happens.
    // A bit of a value in the middle of the stream (revisions are not content: a
    // flip there is not damage).
    let mut bad = a_stream.clone();
    let v = &a[a.len() / 2..].iter().find(|(_, v)| !v.is_empty()).unwrap().1;
    let at = bad.windows(v.len()).position(|w| w == v.as_slice()).unwrap() + v.len() / 2;
    bad[at] ^= 0x20;
    let e = import(&store, "tenant-c", &bad, false).await.unwrap_err();
    assert!(matches!(e, TenantError::ImportFailed { .. }), "{driver}: {e}");
    let msg = e.to_string();
    assert!(
        msg.contains("tenant-c") && (msg.contains("rolled back") || msg.contains("--force")),
        "{driver}: the message says what state the target is in: {msg}"
    );
    assert_eq!(export(&store, "tenant-b").await.unwrap().1, b_sum, "{driver}: tenant-b changed by a failed import");
    assert_eq!(export(&store, "tenant-a").await.unwrap().1, a2_sum, "{driver}: tenant-a changed by a failed import");
    // Re-running with the good stream and replace completes it.
    import(&store, "tenant-c", &a_stream, true).await.unwrap();
    assert_eq!(export(&store, "tenant-c").await.unwrap().1, a_sum, "{driver}: re-run completes");
    kine_serves(&server, dir.path(), "tenant-c", &a).await;

    // An unknown tenant is named, with what exists.
    match export(&store, "no-such-tenant").await {
        Err(TenantError::UnknownSchema { found, .. }) => {
            assert!(found.iter().any(|t| t == "tenant-b"), "{driver}: {found:?}")
        }
        other => panic!("{driver}: expected UnknownSchema, got {:?}", other.map(|x| x.1)),
    }
}

#[tokio::test]
async fn conformance_etcd() {
    conformance(Driver::Etcd).await;
}

#[tokio::test]
async fn conformance_postgres() {
    conformance(Driver::Postgres).await;
}

#[tokio::test]
async fn conformance_mysql() {
    conformance(Driver::Mysql).await;
}

#[tokio::test]
async fn conformance_nats() {
    conformance(Driver::Nats).await;
}

/// Every ordered pair of drivers: a tenant exported from one and imported
/// into the other has the same logical content (keys mapped between
/// `/<schema>/...` and `/registry/...`).
#[tokio::test]
async fn cross_driver_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = Vec::new();
    let mut servers = Vec::new();
    for d in Driver::ALL {
        let Some((server, url)) = Server::start(d, dir.path()) else { return };
        servers.push(server);
        stores.push(connect(&url).await);
    }
    let data = kube_records(200, 400, 9);
    let (stream, sum) = stream_of(&data).await;
    for src in &stores {
        import(src, "origin", &stream, true).await.unwrap();
    }
    for src in &stores {
        let (records, src_sum) = export(src, "origin").await.unwrap();
        assert_eq!(src_sum, sum, "{} changed the content", src.driver());
        let (moved, _) = stream_of(&records).await;
        for dst in &stores {
            let schema = format!("from-{}", src.driver());
            import(dst, &schema, &moved, true).await.unwrap();
            let (back, dst_sum) = export(dst, &schema).await.unwrap();
            assert!(back == data, "{} -> {}: content differs", src.driver(), dst.driver());
            assert_eq!(dst_sum.content_sha256, sum.content_sha256, "{} -> {}", src.driver(), dst.driver());
        }
    }
}
