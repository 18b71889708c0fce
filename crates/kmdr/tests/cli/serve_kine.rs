//! `kmdr serve` capturing a tenant that writers change through the real kine
//! binary (on PostgreSQL and on NATS JetStream), the way a tenant's API
//! server does (compare-and-swap creates, updates and deletes), at about 500
//! writes a second, while kine compacts on its own timer. Afterwards the
//! tenant is restored at several revisions: each must equal what the writers
//! had acknowledged up to that revision, and the newest, restored into the
//! same driver, must read back through a new kine.

use crate::common::{Etcd, Kmdr};
use crate::serve::{Serve, T1_CAPTURING, open_repo, runtime, tenant_state, write_plan_for};
use kmdr_repo::deltas::check_chain;
use kmdr_testkit::kube_storage::KubeStorage;
use kmdr_testkit::{Kine, Nats, Postgres};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const ROOT: &str = "/registry";
/// Writers, each on its own keys and connection; together about 500 writes/s.
const WRITERS: usize = 4;
const EACH_EVERY: Duration = Duration::from_millis(8);
const WRITE_FOR: Duration = Duration::from_secs(8);

/// One acknowledged write: its revision, key, and value (`None`: deleted).
type Ack = (i64, Vec<u8>, Option<Vec<u8>>);

/// One writer: creates, updates one of its keys, deletes its oldest key, paced
/// at one write per [`EACH_EVERY`], for [`WRITE_FOR`].
async fn writer(url: String, id: usize) -> Vec<Ack> {
    let mut s = KubeStorage::connect(&url).await;
    let mut rng = kmdr_testkit::data::Rng::new(id as u64 + 100);
    let mut mine: std::collections::VecDeque<Vec<u8>> = Default::default();
    let mut acks = Vec::new();
    let mut tick = tokio::time::interval(EACH_EVERY);
    let end = Instant::now() + WRITE_FOR;
    for n in 0u64.. {
        tick.tick().await;
        if Instant::now() > end {
            break;
        }
        let value = kmdr_testkit::data::object_value(&mut rng, 200);
        if n % 5 == 4 && mine.len() > 3 {
            let key = mine.pop_front().unwrap();
            acks.push((s.delete(&key).await.unwrap(), key, None));
        } else if n % 3 == 0 && !mine.is_empty() {
            let key = mine[rng.below(mine.len() as u64) as usize].clone();
            acks.push((s.update(&key, &value).await.unwrap(), key, Some(value)));
        } else {
            let key = format!("{ROOT}/configmaps/writer-{id}/cm-{n:06}").into_bytes();
            acks.push((s.create(&key, &value, 0).await.unwrap(), key.clone(), Some(value)));
            mine.push_back(key);
        }
    }
    acks
}

/// `base` with every acknowledged write up to `rev` applied, keys relative to [`ROOT`].
fn state_at(base: &BTreeMap<Vec<u8>, Vec<u8>>, acks: &[Ack], rev: i64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut state = base.clone();
    for (_, key, value) in acks.iter().take_while(|a| a.0 <= rev) {
        match value {
            Some(v) => state.insert(key.clone(), v.clone()),
            None => state.remove(key),
        };
    }
    state.into_iter().map(|(k, v)| (k[ROOT.len()..].to_vec(), v)).collect()
}

/// The datastore under kine.
enum Server {
    Postgres(Postgres),
    Nats(Nats),
}

impl Server {
    fn url(&self) -> String {
        match self {
            Server::Postgres(p) => p.url(),
            Server::Nats(n) => n.url(),
        }
    }

    fn kine_endpoint(&self, schema: &str) -> String {
        match self {
            Server::Postgres(p) => p.kine_endpoint(schema),
            Server::Nats(n) => n.kine_endpoint(schema),
        }
    }
}

fn capture_under_kine(bin: &str) {
    if !kmdr_testkit::need(bin) || !kmdr_testkit::need("kine") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let server = match bin {
        "initdb" => Server::Postgres(Postgres::start(dir.path())),
        _ => Server::Nats(Nats::start(dir.path())),
    };
    // kine's defaults (keep 1000 revisions), compacting every second: at
    // 500 writes/s it compacts several times while the writers run.
    let kine = Kine::start_compacting(dir.path(), &server.kine_endpoint("t1"), Duration::from_secs(1), 1000);
    let rt = runtime();
    let base = rt.block_on(async {
        let mut s = KubeStorage::connect(&kine.client_url).await;
        s.churn(ROOT, 100, 2, 5).await.unwrap();
        s.list(&format!("{ROOT}/")).await.unwrap()
    });

    let plan = write_plan_for(dir.path(), &k, &server.url());
    let log = dir.path().join("serve.log");
    let serve = Serve::start(&k, &plan, &log);
    serve.wait_for_metric(T1_CAPTURING, &log);

    let started = Instant::now();
    let mut acks: Vec<Ack> = rt.block_on(async {
        let tasks: Vec<_> = (0..WRITERS).map(|i| tokio::spawn(writer(kine.client_url.clone(), i))).collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let rate = acks.len() as f64 / started.elapsed().as_secs_f64();
    acks.sort_by_key(|a| a.0);
    let (first, last) = (acks[0].0, acks.last().unwrap().0);

    // kine compacted while the writers ran: the first write's revision is gone.
    let compacted = rt.block_on(async {
        let mut c = kine.client().await;
        c.get(ROOT, Some(etcd_client::GetOptions::new().with_prefix().with_revision(first))).await
    });
    assert!(
        compacted.as_ref().is_err_and(|e| e.to_string().contains("compacted")),
        "kine did not compact past revision {first} (of {last}) during the test: {compacted:?}"
    );

    // The chain reaches the last acknowledged write, then serve stops.
    let repo = open_repo(&k);
    let deadline = Instant::now() + Duration::from_secs(30);
    let segments = loop {
        let segs = rt.block_on(repo.list_segments(Some("tenant/t1"))).unwrap();
        if segs.iter().map(|s| s.last).max().unwrap_or(0) >= last {
            break segs;
        }
        assert!(
            Instant::now() < deadline,
            "the chain did not reach revision {last} within 30 s; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    serve.terminate();
    let check = check_chain(&segments);
    assert!(check.gaps.is_empty() && check.overlaps.is_empty(), "{check:?}");

    // Several points, restored into etcd and compared with the acknowledged state.
    let dst = Etcd::start(dir.path(), "dst");
    let dst_url = dst.client_url.replace("http://", "etcd://");
    let points = [acks[acks.len() / 4].0, acks[acks.len() / 2].0, acks[acks.len() * 3 / 4].0, last];
    for (i, rev) in points.iter().enumerate() {
        let schema = format!("p{i}");
        let rev_s = rev.to_string();
        let args = ["restore", "tenant", "latest", "--source-schema", "t1", "--revision", &rev_s];
        let out = k.json(&[&args[..], &["--schema", &schema, "--datastore", &dst_url]].concat());
        assert_eq!(out["point"]["revision"], *rev, "{out}");
        let got = rt.block_on(tenant_state(&dst, &schema, 0));
        let want = state_at(&base, &acks, *rev);
        assert_eq!(got.len(), want.len(), "{bin}: key count at revision {rev}");
        assert!(got == want, "{bin}: the state restored at revision {rev} differs from the acknowledged one");
    }

    // The newest point into the same driver, read back through a new kine.
    let rev_s = last.to_string();
    k.ok(&[
        "restore",
        "tenant",
        "latest",
        "--source-schema",
        "t1",
        "--revision",
        &rev_s,
        "--schema",
        "back",
        "--datastore",
        &server.url(),
    ]);
    let kine_back = Kine::start(dir.path(), &server.kine_endpoint("back"));
    let read = rt.block_on(async { KubeStorage::connect(&kine_back.client_url).await.list(&format!("{ROOT}/")).await });
    let read: BTreeMap<Vec<u8>, Vec<u8>> =
        read.unwrap().into_iter().map(|(k, v)| (k[ROOT.len()..].to_vec(), v)).collect();
    assert!(read == state_at(&base, &acks, last), "{bin}: the tenant read back through kine differs");
    eprintln!(
        "{bin}: {} writes through kine at {rate:.0}/s, revisions {first}..{last}, {} segments, {} points restored",
        acks.len(),
        segments.len(),
        points.len() + 1
    );
}

#[test]
fn serve_captures_a_tenant_written_through_kine_on_postgres_while_kine_compacts() {
    capture_under_kine("initdb");
}

#[test]
fn serve_captures_a_tenant_written_through_kine_on_nats_while_kine_compacts() {
    capture_under_kine("nats-server");
}
