//! The NATS driver against a real nats-server with JetStream: buckets seeded
//! the way kine's NATS driver writes them, exported, imported and compared.

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt;
use kmdr_core::TlsFiles;
use kmdr_datastore::nats::{KineEvent, KineKv, NatsTenants, decode_key, decode_value, encode_key, s2_compress};
use kmdr_datastore::{DatastoreUrl, Driver, Record, RecordReader, RecordWriter, TenantError, TenantStore};
use kmdr_testkit::Nats;

/// A raw JetStream client on the test server.
async fn js(n: &Nats) -> jetstream::Context {
    let opts = async_nats::ConnectOptions::new()
        .user_and_password(kmdr_testkit::nats::USER.into(), kmdr_testkit::nats::PASSWORD.into());
    jetstream::new(opts.connect(format!("127.0.0.1:{}", n.port())).await.unwrap())
}

async fn store(n: &Nats) -> NatsTenants {
    NatsTenants::connect(&DatastoreUrl::parse(&n.url()).unwrap(), &TlsFiles::default()).await.unwrap()
}

/// A bucket as kine creates it.
async fn kine_bucket(js: &jetstream::Context, name: &str) -> kv::Store {
    js.create_key_value(kv::Config {
        bucket: name.into(),
        description: "Holds kine key/values".into(),
        history: 10,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .unwrap()
}

fn event(key: &str, value: Option<&[u8]>, create: bool, delete: bool, lease: i64, create_rev: i64) -> Bytes {
    let e = KineEvent {
        kv: Some(KineKv {
            key: key.into(),
            create_revision: create_rev,
            mod_revision: 0,
            value: value.map(<[u8]>::to_vec),
            lease,
        }),
        prev_revision: 0,
        create,
        delete,
    };
    s2_compress(&serde_json::to_vec(&e).unwrap()).into()
}

/// kine's create.
async fn create(b: &kv::Store, key: &str, value: &[u8]) -> u64 {
    b.put(encode_key(key.as_bytes()).unwrap(), event(key, Some(value), true, false, 0, 0)).await.unwrap()
}

/// kine's update: the create revision carried over.
async fn update(b: &kv::Store, key: &str, value: &[u8], create_rev: i64) -> u64 {
    b.put(encode_key(key.as_bytes()).unwrap(), event(key, Some(value), false, false, 0, create_rev)).await.unwrap()
}

/// kine's delete: a Delete:true record, then a KV delete marker.
async fn delete(b: &kv::Store, key: &str) {
    let k = encode_key(key.as_bytes()).unwrap();
    b.put(&k, event(key, None, false, true, 0, 0)).await.unwrap();
    b.delete(&k).await.unwrap();
}

/// Seed bucket `name` with live, updated, deleted, leased, odd and foreign keys;
/// returns the live keys under /registry, relative, sorted.
async fn seed(js: &jetstream::Context, name: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let b = kine_bucket(js, name).await;
    let c = create(&b, "/registry/pods/default/web-0", b"v1").await;
    update(&b, "/registry/pods/default/web-0", b"v2", c as i64).await;
    create(&b, "/registry/pods/default/gone", b"bye").await;
    delete(&b, "/registry/pods/default/gone").await;
    let leased = "/registry/leases/kube-system/lock";
    b.put(encode_key(leased.as_bytes()).unwrap(), event(leased, Some(b"held"), true, false, 60, 0)).await.unwrap();
    create(&b, "/registry/odd/a.b.c", b"dots").await;
    create(&b, "/registry/odd/\u{0}\u{0}zero", b"\x00\xff binary").await;
    create(&b, "/registry/odd/\u{2603} snow", b"").await;
    create(&b, "/registry/configmaps/ns/cm", format!("{name}-cm").as_bytes()).await;
    // Only kine's JSON, deleted as some tool would: a delete marker with no Delete record.
    create(&b, "/registry/events/ns/e1", b"e").await;
    b.delete(encode_key(b"/registry/events/ns/e1").unwrap()).await.unwrap();
    // Not under /registry: skipped.
    create(&b, "/other/thing", b"x").await;
    let mut live: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"/pods/default/web-0".to_vec(), b"v2".to_vec()),
        (b"/leases/kube-system/lock".to_vec(), b"held".to_vec()),
        (b"/odd/a.b.c".to_vec(), b"dots".to_vec()),
        ("/odd/\u{0}\u{0}zero".as_bytes().to_vec(), b"\x00\xff binary".to_vec()),
        ("/odd/\u{2603} snow".as_bytes().to_vec(), b"".to_vec()),
        (b"/configmaps/ns/cm".to_vec(), format!("{name}-cm").into_bytes()),
    ];
    live.sort();
    live
}

async fn export(
    s: &NatsTenants,
    schema: &str,
    at: Option<i64>,
) -> Result<(Vec<Record>, kmdr_datastore::ExportInfo, Vec<u8>), TenantError> {
    let mut buf = Vec::new();
    let mut w = RecordWriter::new(&mut buf);
    let info = s.export(schema, at, &mut w).await?;
    w.finish().await?;
    let mut r = RecordReader::new(&buf[..]);
    let mut recs = Vec::new();
    while let Some(rec) = r.next().await? {
        recs.push(rec);
    }
    Ok((recs, info, buf))
}

fn pairs(recs: &[Record]) -> Vec<(Vec<u8>, Vec<u8>)> {
    recs.iter().map(|r| (r.key.clone(), r.value.clone())).collect()
}

/// Every message of a stream: (sequence, subject, payload).
async fn stream_content(js: &jetstream::Context, stream: &str) -> Vec<(u64, String, Vec<u8>)> {
    let s = js.get_stream(stream).await.unwrap();
    let last = s.get_info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = s.get_raw_message(seq).await {
            out.push((seq, m.subject.to_string(), m.payload.to_vec()));
        }
    }
    out
}

#[tokio::test]
async fn export_reads_exactly_the_live_keys_sorted() {
    if !kmdr_testkit::need("nats-server") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let n = Nats::start(dir.path());
    let js = js(&n).await;
    let want = seed(&js, "t1").await;
    seed(&js, "t2").await;
    let s = store(&n).await;
    assert_eq!(s.driver(), Driver::Nats);
    assert_eq!(s.key_root("t1"), "/registry");
    assert_eq!(s.list_tenants().await.unwrap(), vec!["t1", "t2"]);
    // Every live key of the bucket, /other/thing included: what --force removes.
    assert_eq!(s.count("t1").await.unwrap(), want.len() as u64 + 1);
    assert_eq!(s.count("nope").await.unwrap(), 0);

    let (recs, info, _) = export(&s, "t1", None).await.unwrap();
    assert_eq!(pairs(&recs), want);
    let last = js.get_stream("KV_t1").await.unwrap().get_info().await.unwrap().state.last_sequence;
    assert_eq!(info.revision, last as i64);
    assert_eq!(info.leased_keys, 1);
    assert_eq!(info.skipped_keys, 1);
    assert_eq!(info.first_skipped.as_deref(), Some("/other/thing"));
    // Revisions as kine reports them: mod = sequence, create carried over.
    let web = recs.iter().find(|r| r.key == b"/pods/default/web-0").unwrap();
    assert!(web.create_revision >= 1 && web.create_revision < web.mod_revision, "{web:?}");
}

#[tokio::test]
async fn export_at_an_earlier_sequence_sees_that_state() {
    if !kmdr_testkit::need("nats-server") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let n = Nats::start(dir.path());
    let js = js(&n).await;
    let want = seed(&js, "t1").await;
    let s = store(&n).await;
    let (_, before, buf_before) = export(&s, "t1", None).await.unwrap();
    // Changes after that point: an update, a new key, a deletion.
    let b = js.get_key_value("t1").await.unwrap();
    update(&b, "/registry/pods/default/web-0", b"v3", 1).await;
    create(&b, "/registry/pods/default/web-1", b"new").await;
    delete(&b, "/registry/configmaps/ns/cm").await;
    let (recs, info, buf) = export(&s, "t1", Some(before.revision)).await.unwrap();
    assert_eq!(info.revision, before.revision);
    assert_eq!(pairs(&recs), want);
    assert_eq!(buf, buf_before);
    // And now: the current state.
    let (now, _, _) = export(&s, "t1", None).await.unwrap();
    let keys: Vec<_> = now.iter().map(|r| String::from_utf8_lossy(&r.key).into_owned()).collect();
    assert!(
        keys.contains(&"/pods/default/web-1".to_string()) && !keys.contains(&"/configmaps/ns/cm".to_string()),
        "{keys:?}"
    );
    // Overwritten past the history limit: the old value is gone, and said so.
    for i in 0..12 {
        update(&b, "/registry/odd/a.b.c", format!("v{i}").as_bytes(), 1).await;
    }
    let e = export(&s, "t1", Some(before.revision)).await.unwrap_err();
    assert!(matches!(e, TenantError::Datastore { .. }), "{e}");
}

#[tokio::test]
async fn import_round_trips_and_writes_kines_format() {
    if !kmdr_testkit::need("nats-server") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let n = Nats::start(dir.path());
    let js = js(&n).await;
    let want = seed(&js, "t1").await;
    let s = store(&n).await;
    let (_, _, buf) = export(&s, "t1", None).await.unwrap();

    let mut r = RecordReader::new(&buf[..]);
    let info = s.import("copy", &mut r, false).await.unwrap();
    assert_eq!((info.written, info.removed), (want.len() as u64, 0));
    let (recs, _, _) = export(&s, "copy", None).await.unwrap();
    assert_eq!(pairs(&recs), want);
    let st = js.get_stream("KV_copy").await.unwrap().get_info().await.unwrap();
    assert_eq!(info.revision, st.state.last_sequence as i64);
    assert_eq!(st.config.max_messages_per_subject, 10);
    assert!(st.config.allow_direct);
    assert_eq!(st.config.description.as_deref(), Some("Holds kine key/values"));

    // Exactly what kine writes, under the base58 key.
    let b = js.get_key_value("copy").await.unwrap();
    let raw = b.get(encode_key(b"/registry/odd/a.b.c").unwrap()).await.unwrap().unwrap();
    assert!(raw.starts_with(b"\xff\x06\x00\x00S2sTwO"));
    let e = decode_value(&raw).unwrap();
    assert_eq!(
        e,
        KineEvent {
            kv: Some(KineKv {
                key: "/registry/odd/a.b.c".into(),
                create_revision: 0,
                mod_revision: 0,
                value: Some(b"dots".to_vec()),
                lease: 0
            }),
            prev_revision: 0,
            create: true,
            delete: false
        }
    );
    let mut keys = b.keys().await.unwrap();
    let mut n_keys = 0;
    while let Some(k) = keys.next().await {
        let k = k.unwrap();
        assert!(decode_key(&k).unwrap().starts_with(b"/registry/"));
        n_keys += 1;
    }
    assert_eq!(n_keys, want.len());
}

#[tokio::test]
async fn import_with_replace_and_isolation() {
    if !kmdr_testkit::need("nats-server") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let n = Nats::start(dir.path());
    let js = js(&n).await;
    let want_a = seed(&js, "a").await;
    seed(&js, "b").await;
    let s = store(&n).await;
    let (_, _, buf_a) = export(&s, "a", None).await.unwrap();
    let b_before = stream_content(&js, "KV_b").await;

    // Replace "b"-like content in a third bucket that holds other keys.
    let target = kine_bucket(&js, "c").await;
    create(&target, "/registry/stale/x", b"old").await;
    create(&target, "/registry/pods/default/web-0", b"older").await;
    let info = s.import("c", &mut RecordReader::new(&buf_a[..]), true).await.unwrap();
    assert_eq!(info.removed, 2);
    assert_eq!(info.written, want_a.len() as u64);
    let (recs, _, _) = export(&s, "c", None).await.unwrap();
    assert_eq!(pairs(&recs), want_a);

    // Over the source bucket itself, too.
    s.import("a", &mut RecordReader::new(&buf_a[..]), true).await.unwrap();
    let (recs, _, _) = export(&s, "a", None).await.unwrap();
    assert_eq!(pairs(&recs), want_a);

    // Bucket b was never touched.
    assert_eq!(stream_content(&js, "KV_b").await, b_before);
}

#[tokio::test]
async fn damaged_input_fails_the_import_and_says_what_was_written() {
    if !kmdr_testkit::need("nats-server") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let n = Nats::start(dir.path());
    let js = js(&n).await;
    seed(&js, "t1").await;
    let s = store(&n).await;
    let (_, _, mut buf) = export(&s, "t1", None).await.unwrap();
    let at = buf.windows(4).position(|w| w == b"dots").unwrap();
    buf[at] ^= 0x20;
    let e = s.import("broken", &mut RecordReader::new(&buf[..]), false).await.unwrap_err();
    match &e {
        TenantError::ImportFailed { state, detail, .. } => {
            assert!(detail.contains("content hash"), "{detail}");
            assert!(
                state.contains("bucket broken") && state.contains("--force") && state.contains("no other bucket"),
                "{state}"
            );
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn errors_name_the_problem() {
    if !kmdr_testkit::need("nats-server") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let n = Nats::start(dir.path());
    let js = js(&n).await;
    seed(&js, "t1").await;
    seed(&js, "t2").await;

    let bad = DatastoreUrl::parse(&format!("nats://kmdr:wrong@127.0.0.1:{}", n.port())).unwrap();
    let e = NatsTenants::connect(&bad, &TlsFiles::default()).await.err().expect("wrong password refused");
    assert!(matches!(e, TenantError::Auth { .. }), "{e}");
    assert!(!e.to_string().contains("wrong"), "{e}");

    let closed = DatastoreUrl::parse(&format!("nats://127.0.0.1:{}", kmdr_testkit::free_port())).unwrap();
    let t = std::time::Instant::now();
    let e = NatsTenants::connect(&closed, &TlsFiles::default()).await.err().expect("nothing listening");
    assert!(matches!(e, TenantError::Unreachable { .. }), "{e}");
    assert!(t.elapsed() < std::time::Duration::from_secs(15));

    let s = store(&n).await;
    match export(&s, "t3", None).await.unwrap_err() {
        TenantError::UnknownSchema { schema, found, .. } => {
            assert_eq!(schema, "t3");
            assert_eq!(found, vec!["t1", "t2"]);
        }
        other => panic!("{other}"),
    }
    assert!(matches!(export(&s, "no.such", None).await.unwrap_err(), TenantError::UnknownSchema { .. }));
}

/// Enough keys for many pipelined puts and a consumer with flow control;
/// prints the import and export rates.
#[tokio::test]
async fn many_keys_round_trip_in_key_order() {
    if !kmdr_testkit::need("nats-server") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let n = Nats::start(dir.path());
    let s = store(&n).await;
    // Values of 1 KiB.
    let mut buf = Vec::new();
    let mut w = RecordWriter::new(&mut buf);
    let total = 5000u32;
    for i in 0..total {
        let v: Vec<u8> = (0..1024u32).map(|j| (i.wrapping_mul(31) ^ j) as u8).collect();
        w.write(format!("/configmaps/ns/cm-{i:05}").as_bytes(), &v, 0, 0).await.unwrap();
    }
    let summary = w.finish().await.unwrap();
    let t = std::time::Instant::now();
    let info = s.import("big", &mut RecordReader::new(&buf[..]), false).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    eprintln!("import: {} keys in {secs:.2}s, {:.0} keys/s", info.written, info.written as f64 / secs);
    assert_eq!(info.written, total as u64);
    let t = std::time::Instant::now();
    let (recs, _, out) = export(&s, "big", None).await.unwrap();
    eprintln!("export: {} keys in {:.2}s", recs.len(), t.elapsed().as_secs_f64());
    assert_eq!(recs.len(), total as usize);
    // Same keys and values in the same order: the same content hash (revisions are not content).
    let mut r = RecordReader::new(&out[..]);
    while r.next().await.unwrap().is_some() {}
    assert_eq!(r.summary(), summary);
}

// ---------------------------------------------------------------- delta capture

use crate::common;
use kmdr_datastore::capture::{ChangeSource, Stopped};
use std::collections::BTreeMap;
use std::time::Duration;

/// One change the writer made: (sequence, relative key, value or `None` for a delete).
type Change = (i64, Vec<u8>, Option<Vec<u8>>);

/// 100 kine changes over 100 keys (each key changes once per round, so no
/// key outgrows kine's history of 10): creates, updates, and kine's deletes
/// (a Delete:true record, then a KV delete marker).
async fn churn(b: &kv::Store, round: u32, live: &mut BTreeMap<String, i64>, log: &mut Vec<Change>) {
    for n in 0..100u32 {
        let key = format!("/registry/pods/ns/p{n:03}");
        let rel = key.as_bytes()["/registry".len()..].to_vec();
        if (n + round) % 7 == 3 && live.contains_key(&key) {
            let k = encode_key(key.as_bytes()).unwrap();
            let seq = b.put(&k, event(&key, None, false, true, 0, 0)).await.unwrap() as i64;
            b.delete(&k).await.unwrap();
            live.remove(&key);
            log.push((seq, rel.clone(), None));
            log.push((seq + 1, rel, None));
        } else {
            let v = format!("r{round}-v{n}").into_bytes();
            let seq = match live.get(&key) {
                None => create(b, &key, &v).await,
                Some(cr) => update(b, &key, &v, *cr).await,
            } as i64;
            live.entry(key).or_insert(seq);
            log.push((seq, rel, Some(v)));
        }
        if n % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
}

/// The tenant at sequence `rev` from what the writer did: the seeded keys, then its changes up to `rev`.
fn state_at(seeded: &[(Vec<u8>, Vec<u8>)], log: &[Change], rev: i64) -> common::State {
    let mut s: common::State = seeded.iter().cloned().collect();
    for (_, key, value) in log.iter().filter(|c| c.0 <= rev) {
        match value {
            Some(v) => s.insert(key.clone(), v.clone()),
            None => s.remove(key),
        };
    }
    s
}

#[tokio::test]
async fn delta_capture_restores_any_sequence_and_stops_when_messages_are_gone() {
    if !kmdr_testkit::need("nats-server") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let n = Nats::start(dir.path());
    let js = js(&n).await;
    let seeded = seed(&js, "t1").await;
    let s = store(&n).await;
    let repo = common::new_repo(dir.path()).await;
    let base = common::full_backup(&repo, &s, "t1").await;
    let b = js.get_key_value("t1").await.unwrap();
    let source = ChangeSource::Nats { store: store(&n).await, schema: "t1".into() };
    let (mut live, mut log) = (BTreeMap::new(), Vec::new());

    // Capture, stop, write meanwhile, resume.
    let stopped = common::capture_while(
        &repo,
        &source,
        "t1",
        base + 1,
        async {
            churn(&b, 1, &mut live, &mut log).await;
            churn(&b, 2, &mut live, &mut log).await;
        },
        Duration::from_millis(1200),
    )
    .await;
    assert_eq!(stopped, Stopped::Shutdown);
    let first_end = common::chain_end(&repo, "t1").await;
    churn(&b, 3, &mut live, &mut log).await;
    let from = common::resume_point(&repo, "t1", base).await;
    assert_eq!(from, first_end + 1);
    let stopped = common::capture_while(
        &repo,
        &source,
        "t1",
        from,
        churn(&b, 4, &mut live, &mut log),
        Duration::from_millis(1200),
    )
    .await;
    assert_eq!(stopped, Stopped::Shutdown);

    // Every change exactly once, in order, across both runs; the chain reaches the last one.
    let events = common::captured(&repo, "t1", base).await;
    assert_eq!(events.iter().map(|e| e.revision).collect::<Vec<_>>(), log.iter().map(|c| c.0).collect::<Vec<_>>());
    let last = log.last().unwrap().0;
    assert_eq!(common::chain_end(&repo, "t1").await, last);
    for r in [base, base + 1, first_end, (base + last) / 2, log[log.len() - 7].0, last] {
        assert_eq!(common::restored_state(&repo, "t1", r).await, state_at(&seeded, &log, r), "state at sequence {r}");
    }

    // A message the capture still needs removed from the stream (a key
    // changed past kine's history of 10 while no capture ran): what came
    // before it is written, then Compacted.
    for n in 0..4 {
        create(&b, &format!("/registry/more/m{n}"), b"m").await;
    }
    let hot = "/registry/hot";
    let cr = create(&b, hot, b"0").await as i64;
    assert_eq!(cr, last + 5);
    for n in 1..=10 {
        update(&b, hot, format!("{n}").as_bytes(), cr).await;
    }
    let stream = js.get_stream("KV_t1").await.unwrap();
    assert!(stream.get_raw_message(cr as u64).await.is_err(), "the bucket keeps 10 revisions of a key");
    let stopped = common::capture_while(&repo, &source, "t1", last + 1, async {}, Duration::from_millis(800)).await;
    assert_eq!(stopped, Stopped::Compacted { wanted: last + 5, compact_revision: last + 5 });
    assert_eq!(common::chain_end(&repo, "t1").await, last + 4);
    // Purged past the point to resume from: Compacted before reading anything.
    stream.purge().sequence((last + 20) as u64).await.unwrap();
    let stopped = common::capture_while(&repo, &source, "t1", last + 5, async {}, Duration::from_millis(300)).await;
    assert_eq!(stopped, Stopped::Compacted { wanted: last + 5, compact_revision: last + 19 });
}
