//! The Kubernetes-safe restore, end to end, against a REAL kube-apiserver: a
//! kube-rs watcher (kube::runtime::watcher, as every controller and
//! informer runs one) is connected before the failure; the etcd under the
//! API server is backed up with `kmdr backup etcd`; changes are made after
//! the backup; kube-apiserver and its etcd are stopped (their pids only);
//! the etcd is restored with `kmdr restore etcd`; both are started again on
//! the same directories and ports, and the watcher, never restarted, is
//! watched.
//!
//! With the revision bump (kmdr's default) the watcher's next watch asks for
//! a revision older than anything the restored store has, is told 410 Gone,
//! and relists: its store is the restored state. Without it
//! (`--no-bump-revision`) revisions went backwards, and the watcher never
//! learns (see [`without_the_bump_a_watcher_keeps_a_stale_cache`]).

use crate::common;
use common::Kmdr;
use common::real_kube::{delete, put};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kmdr_kube::client::{KubeClient, KubeTarget};
use kmdr_testkit::{Etcd, EtcdOptions, KubeApiServer, KubeApiServerOptions, free_port};
use kube::Api;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NS: &str = "bump";
const CMS: &str = "/api/v1/namespaces/bump/configmaps";

/// What the watcher has seen: its store (name -> data.v), rebuilt on every
/// relist as a reflector does, how many times it listed, and its errors.
#[derive(Debug, Default, Clone)]
struct Seen {
    store: BTreeMap<String, String>,
    /// The objects of a list in progress (between Init and InitDone).
    listing: Option<BTreeMap<String, String>>,
    lists: usize,
    errors: Vec<String>,
}

fn value_of(cm: &ConfigMap) -> (String, String) {
    let name = cm.metadata.name.clone().unwrap_or_default();
    let v = cm.data.as_ref().and_then(|d| d.get("v")).cloned().unwrap_or_default();
    (name, v)
}

/// Run a watcher on the ConfigMaps of [`NS`] until the test ends, retrying
/// every error after 200 ms (the stream recovers on its next poll).
async fn watch(client: kube::Client) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let api: Api<ConfigMap> = Api::namespaced(client, NS);
    let s = seen.clone();
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            let failed = event.is_err();
            {
                let mut s = s.lock().unwrap();
                match event {
                    Ok(Event::Init) => {
                        s.lists += 1;
                        s.listing = Some(BTreeMap::new());
                    }
                    Ok(Event::InitApply(cm)) => {
                        let (name, v) = value_of(&cm);
                        s.listing.get_or_insert_default().insert(name, v);
                    }
                    Ok(Event::InitDone) => s.store = s.listing.take().unwrap_or_default(),
                    Ok(Event::Apply(cm)) => {
                        let (name, v) = value_of(&cm);
                        s.store.insert(name, v);
                    }
                    Ok(Event::Delete(cm)) => {
                        s.store.remove(&value_of(&cm).0);
                    }
                    Err(ref e) => {
                        let source = std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_default();
                        s.errors.push(format!("{e}: {source}"));
                    }
                }
            }
            if failed {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    seen
}

/// Wait (at most 120 s) until `done` holds for what the watcher has seen.
async fn wait_until(seen: &Arc<Mutex<Seen>>, what: &str, done: impl Fn(&Seen) -> bool) -> Seen {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = seen.lock().unwrap().clone();
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "the watcher never saw {what}: {s:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cm(name: &str, v: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS}, "data": {"v": v}})
}

fn state(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The ConfigMaps of [`NS`] as the API serves them now (name -> data.v).
fn served(s: &KubeApiServer) -> BTreeMap<String, String> {
    s.get(CMS).unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["metadata"]["name"].as_str().unwrap().into(), i["data"]["v"].as_str().unwrap_or("").into()))
        .collect()
}

/// etcd's current revision.
async fn revision(etcd: &Etcd) -> i64 {
    let mut c = etcd.client().await;
    c.get("/registry/namespaces/bump", None).await.unwrap().header().unwrap().revision()
}

/// One API server and its own etcd, on fixed ports and directories so that
/// both start again where they were.
struct Cluster {
    dir: PathBuf,
    etcd_port: u16,
    peer: String,
    api_port: u16,
}

impl Cluster {
    fn etcd(&self, data_dir: &Path) -> Etcd {
        Etcd::launch(EtcdOptions {
            port: Some(self.etcd_port),
            peer_url: Some(self.peer.clone()),
            log: Some(self.dir.join("etcd.log")),
            ..EtcdOptions::new("kube", data_dir)
        })
        .unwrap()
    }

    fn api(&self, etcd: &Etcd) -> KubeApiServer {
        KubeApiServer::launch(KubeApiServerOptions {
            port: Some(self.api_port),
            etcd_url: Some(etcd.client_url.clone()),
            ..KubeApiServerOptions::new(self.dir.join("api"))
        })
        .unwrap()
    }
}

/// Up to the restore, for both tests: a, b, c before the backup; after it
/// d created, a deleted, b changed, all seen by the watcher; then
/// kube-apiserver and etcd stopped, the etcd restored with `restore_flags`
/// and both started again. Returns the servers, the watcher, and etcd's
/// revision when it was stopped.
async fn fail_and_restore(dir: &Path, restore_flags: &[&str]) -> (Kmdr, Etcd, KubeApiServer, Arc<Mutex<Seen>>, i64) {
    let c = Cluster {
        dir: dir.to_path_buf(),
        etcd_port: free_port(),
        peer: format!("http://127.0.0.1:{}", free_port()),
        api_port: free_port(),
    };
    let etcd = c.etcd(&dir.join("etcd"));
    let s = c.api(&etcd);
    s.create_namespace(NS).unwrap();
    for name in ["a", "b", "c"] {
        put(&s, "configmaps", &cm(name, "1"));
    }
    let target = KubeTarget { kubeconfig: Some(s.kubeconfig.clone()), context: None, log_requests: false };
    let client = KubeClient::connect(&target).await.unwrap().client().clone();
    let seen = watch(client).await;
    let before = state(&[("a", "1"), ("b", "1"), ("c", "1")]);
    wait_until(&seen, "the objects written before the backup", |s| s.store == before).await;

    let k = Kmdr::local(dir);
    k.init();
    let m = k.json(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    let id = m["id"].as_str().unwrap().to_string();

    put(&s, "configmaps", &cm("d", "after-backup"));
    delete(&s, &format!("{CMS}/a"));
    put(&s, "configmaps", &cm("b", "changed-after-backup"));
    let changed = state(&[("b", "changed-after-backup"), ("c", "1"), ("d", "after-backup")]);
    let seen_then = wait_until(&seen, "the changes made after the backup", |s| s.store == changed).await;
    assert_eq!(seen_then.lists, 1, "one list, then watching");
    assert_eq!(served(&s), changed);

    // The failure: kube-apiserver, then its etcd, stopped by their pids.
    let stopped_at = revision(&etcd).await;
    let outage = Instant::now();
    drop(s);
    drop(etcd);
    let restored = dir.join("etcd-restored");
    let cluster = format!("kube={}", c.peer);
    let mut args = vec![
        "restore",
        "etcd",
        id.as_str(),
        "--data-dir",
        restored.to_str().unwrap(),
        "--name",
        "kube",
        "--initial-cluster",
        cluster.as_str(),
        "--initial-advertise-peer-urls",
        c.peer.as_str(),
    ];
    args.extend(restore_flags);
    let out = k.ok(&args);
    eprintln!("{}", out.trim());
    let etcd = c.etcd(&restored);
    let restart = Instant::now();
    let s = c.api(&etcd);
    eprintln!(
        "kube-apiserver restarted on the restored etcd: ready {:.1}s after it was spawned ({:.1}s with the wait for it), \
         {:.1}s after it was stopped (restore included)",
        s.start_time.as_secs_f64(),
        restart.elapsed().as_secs_f64(),
        outage.elapsed().as_secs_f64()
    );
    assert_eq!(served(&s), before, "the API serves the restored state");
    (k, etcd, s, seen, stopped_at)
}

/// With kmdr's default revision bump the watcher relists and its store is
/// exactly the restored state: d (created after the backup) gone, a
/// (deleted after it) back, b as it was; and it goes on watching.
#[tokio::test(flavor = "multi_thread")]
async fn with_the_bump_a_watcher_relists_the_restored_state() {
    if !kmdr_testkit::need("kube-apiserver") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_k, etcd, s, seen, stopped_at) = fail_and_restore(dir.path(), &[]).await;
    assert!(revision(&etcd).await > stopped_at + 999_000_000, "the revisions start far above the old ones");
    let restored = state(&[("a", "1"), ("b", "1"), ("c", "1")]);
    let after = wait_until(&seen, "the restored state", |s| s.lists > 1 && s.store == restored).await;
    eprintln!("watcher errors across the restore: {:#?}", after.errors);
    assert!(
        after.errors.iter().any(|e| e.contains("410") || e.contains("too old")),
        "the watch at the old revision is told it is gone: {:#?}",
        after.errors
    );
    // And it follows the restored cluster from there.
    put(&s, "configmaps", &cm("e", "after-restore"));
    let with_e = state(&[("a", "1"), ("b", "1"), ("c", "1"), ("e", "after-restore")]);
    let last = wait_until(&seen, "an object created after the restore", |s| s.store == with_e).await;
    assert_eq!(last.store, served(&s));
    assert_eq!(last.lists, after.lists, "followed by watching, not by listing again");
}

/// Without the bump (`--no-bump-revision`) the restored etcd starts again
/// at the backup's revision, below the one the watcher last saw (R'). The
/// watcher is never told: once the API server is back it asks to watch from
/// R' and gets no error at all (observed: only the connection errors of the
/// outage, no 410); the API server holds the watch until its revision
/// reaches R', then delivers only what comes after R'. So its store keeps d,
/// which the restored cluster does not have, and never gets back a (deleted
/// after the backup, restored), nor the old b, nor e (created after the
/// restore but at a revision below R'): a controller acting on this cache
/// would act on a cluster that does not exist. This is what the bump
/// prevents.
#[tokio::test(flavor = "multi_thread")]
async fn without_the_bump_a_watcher_keeps_a_stale_cache() {
    if !kmdr_testkit::need("kube-apiserver") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_k, etcd, s, seen, stopped_at) = fail_and_restore(dir.path(), &["--no-bump-revision"]).await;
    let restored_at = revision(&etcd).await;
    assert!(restored_at < stopped_at, "the revision went backwards: {restored_at} after {stopped_at}");
    put(&s, "configmaps", &cm("e", "after-restore"));
    // Writes elsewhere until the revision passes where it was, then f.
    let mut n = 0;
    while revision(&etcd).await <= stopped_at {
        put(
            &s,
            "configmaps",
            &json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("filler-{n}"), "namespace": "default"}}),
        );
        n += 1;
    }
    put(&s, "configmaps", &cm("f", "after-restore"));
    let now = served(&s);
    assert_eq!(now, state(&[("a", "1"), ("b", "1"), ("c", "1"), ("e", "after-restore"), ("f", "after-restore")]));
    let after = wait_until(&seen, "f, written past the old revision", |s| s.store.contains_key("f")).await;
    eprintln!("watcher errors across the restore: {:#?}", after.errors);
    assert_eq!(
        after.store,
        state(&[("b", "changed-after-backup"), ("c", "1"), ("d", "after-backup"), ("f", "after-restore")]),
        "the stale cache: d kept, a and e missing, b as it was before the restore"
    );
    assert_ne!(after.store, now);
    assert!(
        after.errors.iter().all(|e| !e.contains("too old") && !e.contains("410")),
        "nothing tells the watcher to relist: {:#?}",
        after.errors
    );
    assert_eq!(after.lists, 1, "it never relisted");
}
