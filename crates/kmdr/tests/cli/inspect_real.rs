//! Offline inspection of what a REAL API server wrote: kube-apiserver 1.34
//! with an EncryptionConfiguration (Secrets aescbc, ConfigMaps aesgcm,
//! ServiceAccounts secretbox), objects written through the API, the etcd
//! under it backed up with `kmdr backup etcd`, and `kmdr inspect` reading the
//! backup with no cluster. Unlike `inspect.rs`, nothing here is laid out by
//! the test: the prefixes, nonces, protobuf envelopes and etcd keys are the
//! server's own.
//!
//! The Secrets' key is rotated the way an operator does it: the server is
//! restarted with a new key first in the list and the old one second, so a
//! Secret written before the rotation is still under the old key, the second
//! in the config, and must be decrypted with it.
//!
//! What must come out: Secrets, ConfigMaps, Namespaces and ServiceAccounts as
//! the API serves them (less the server-set fields `--get` removes for
//! apply; the UID and creation time checked through the library, which keeps
//! them); Deployments and Services (protobuf kinds kmdr does not decode)
//! named exactly in one error line, and still listed by name, at the etcd
//! keys kube-apiserver uses for built-in groups (`/registry/deployments/`,
//! `/registry/services/specs/`, `/registry/leases/`).

use crate::common;
use crate::common::b64;
use common::Kmdr;
use common::real_kube::collection;
use kmdr_etcd::{bbolt::BoltFile, mvcc};
use kmdr_kube::inspect::encryption::EncryptionKeys;
use kmdr_kube::inspect::objects::{Stored, decode_value};
use kmdr_testkit::{Etcd, EtcdOptions, KubeApiServer, KubeApiServerOptions};
use serde_json::{Map, Value, json};
use std::path::Path;
use std::time::Instant;

const NS: &str = "inspect-real";
// The keys, as text of the length each provider takes.
const CBC_OLD: &str = "0123456789abcdef0123456789abcdef";
const CBC_NEW: &str = "kmdr-inspect-real-aescbc-key-two";
const GCM: &str = "kmdr-real-aesgcm-key-24b";
const BOX: &str = "kmdr-real-secretbox-key-32-bytes";
const WRONG_32: &str = "not-the-key-the-server-used-32b!";
const WRONG_24: &str = "not-the-key-it-used-24b!";

/// One provider with its keys (name, secret as text), as
/// EncryptionConfiguration writes it.
fn provider(name: &str, keys: &[(&str, &str)]) -> Value {
    let keys: Vec<Value> = keys.iter().map(|(n, s)| json!({"name": n, "secret": b64(s)})).collect();
    Value::Object(Map::from_iter([(name.to_string(), json!({ "keys": keys }))]))
}

/// The server's --encryption-provider-config: Secrets under `secret_keys`
/// (the first encrypts, all decrypt), ConfigMaps under aesgcm,
/// ServiceAccounts under secretbox; each readable as plain too (identity).
fn encryption_config(secret_keys: &[(&str, &str)], gcm: &str, secretbox: &str) -> String {
    let cfg = json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [
            {"resources": ["secrets"], "providers": [provider("aescbc", secret_keys), {"identity": {}}]},
            {"resources": ["configmaps"], "providers": [provider("aesgcm", &[("gcm1", gcm)]), {"identity": {}}]},
            {"resources": ["serviceaccounts"], "providers": [provider("secretbox", &[("box1", secretbox)]), {"identity": {}}]},
        ]
    });
    serde_norway::to_string(&cfg).unwrap()
}

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.display().to_string()
}

/// Apply `object` and return it as the server then serves it.
fn put(s: &KubeApiServer, plural: &str, object: Value) -> Value {
    let ns = object["metadata"]["namespace"].as_str();
    let name = object["metadata"]["name"].as_str().unwrap();
    let coll = collection(object["apiVersion"].as_str().unwrap(), plural, ns);
    s.apply(&coll, name, &object).unwrap_or_else(|e| panic!("applying {plural} {name}: {e}"));
    s.get(&format!("{coll}/{name}")).unwrap()
}

/// The served object less what `--get` removes for apply: the server-set
/// metadata and the status.
fn for_apply(served: &Value) -> Value {
    let mut o = served.clone();
    o.as_object_mut().unwrap().remove("status");
    let meta = o["metadata"].as_object_mut().unwrap();
    for f in ["uid", "resourceVersion", "creationTimestamp", "managedFields", "generation"] {
        meta.remove(f);
    }
    o
}

fn secret(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
           "metadata": {"name": name, "namespace": NS, "labels": {"app": "db", "written": name}},
           "data": {"tls.crt": b64(&format!("certificate of {name}")), "tls.key": "AAECAwT/+/z9/g=="}})
}

fn listed(k: &Kmdr, id: &str, kind: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["inspect", id, "--kind", kind];
    args.extend(extra);
    k.json(&args)["inventory"]["objects"].as_array().unwrap().clone()
}

fn row<'a>(rows: &'a [Value], ns: &str, name: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["namespace"] == ns && r["name"] == name)
        .unwrap_or_else(|| panic!("{ns}/{name} not listed in {rows:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_reads_what_a_real_api_server_encrypted_and_stored() {
    if !kmdr_testkit::need("kube-apiserver") {
        return;
    }
    for (key, len) in [(CBC_OLD, 32), (CBC_NEW, 32), (GCM, 24), (BOX, 32), (WRONG_32, 32), (WRONG_24, 24)] {
        assert_eq!(key.len(), len, "{key}");
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::launch(EtcdOptions {
        log: Some(dir.path().join("etcd.log")),
        ..EtcdOptions::new("kube", dir.path().join("etcd"))
    })
    .unwrap();
    let before_rotation = write(&dir.path().join("enc-1.yaml"), &encryption_config(&[("key1", CBC_OLD)], GCM, BOX));
    let rotated =
        write(&dir.path().join("enc-2.yaml"), &encryption_config(&[("key2", CBC_NEW), ("key1", CBC_OLD)], GCM, BOX));
    let options = |config: &str| KubeApiServerOptions {
        etcd_url: Some(etcd.client_url.clone()),
        encryption_config: Some(config.into()),
        ..KubeApiServerOptions::new(dir.path().join("api"))
    };

    // Before the rotation: the namespace and a Secret under key1.
    let s = KubeApiServer::launch(options(&before_rotation)).unwrap();
    let ns = put(
        &s,
        "namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": {"team": "dr"}}}),
    );
    let old_secret = put(&s, "secrets", secret("written-before-rotation"));
    drop(s);
    let restart = Instant::now();
    let s = KubeApiServer::launch(options(&rotated)).unwrap();
    eprintln!(
        "kube-apiserver restarted with the rotated key in {:.1}s ({:.1}s to ready)",
        restart.elapsed().as_secs_f64(),
        s.start_time.as_secs_f64()
    );

    // After it: a Secret under key2, and the other kinds.
    let new_secret = put(&s, "secrets", secret("db"));
    let cm = put(
        &s,
        "configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": NS, "labels": {"app": "db"},
               "annotations": {"note": "kept"}},
               "data": {"mode": "replica", "config.yaml": "a: 1\nb: [x, y]\n"}, "binaryData": {"blob": "AP8BAgM="}}),
    );
    let sa = put(
        &s,
        "serviceaccounts",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "backup-agent", "namespace": NS},
               "automountServiceAccountToken": false, "imagePullSecrets": [{"name": "regcred"}]}),
    );
    let deploy = put(
        &s,
        "deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS, "labels": {"app": "web"}},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
    );
    let svc = put(
        &s,
        "services",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
    );
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert!(svc["spec"]["clusterIP"].as_str().is_some_and(|ip| ip.starts_with("10.96.")), "{svc}");
    let leases: Vec<String> = s.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases").unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!leases.is_empty(), "kube-apiserver keeps its identity lease in kube-system");

    // What the server wrote, read straight from etcd: the layout kmdr reads.
    let mut c = etcd.client().await;
    for (key, prefix) in [
        (format!("/registry/secrets/{NS}/written-before-rotation"), &b"k8s:enc:aescbc:v1:key1:"[..]),
        (format!("/registry/secrets/{NS}/db"), b"k8s:enc:aescbc:v1:key2:"),
        (format!("/registry/configmaps/{NS}/settings"), b"k8s:enc:aesgcm:v1:gcm1:"),
        (format!("/registry/serviceaccounts/{NS}/backup-agent"), b"k8s:enc:secretbox:v1:box1:"),
        (format!("/registry/namespaces/{NS}"), b"k8s\0"),
        (format!("/registry/deployments/{NS}/web"), b"k8s\0"),
        (format!("/registry/services/specs/{NS}/web"), b"k8s\0"),
    ] {
        let r = c.get(key.as_str(), None).await.unwrap();
        let value = r.kvs().first().unwrap_or_else(|| panic!("no etcd key {key}")).value();
        assert!(value.starts_with(prefix), "{key}: {:?}", String::from_utf8_lossy(&value[..value.len().min(40)]));
    }

    let k = Kmdr::local(dir.path());
    k.init();
    let m = k.json(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    let id = m["id"].as_str().unwrap().to_string();
    // Written after the backup: not in it.
    put(&s, "secrets", secret("after-backup"));

    // Without the config: each encrypted value named with its provider and key.
    let rows = listed(&k, &id, "secret", &[]);
    assert_eq!(row(&rows, NS, "db")["encrypted"], json!({"provider": "aescbc", "key_name": "key2"}));
    assert_eq!(
        row(&rows, NS, "written-before-rotation")["encrypted"],
        json!({"provider": "aescbc", "key_name": "key1"})
    );
    assert!(rows.iter().all(|r| r["name"] != "after-backup"), "written after the backup");
    let rows = listed(&k, &id, "configmap", &[]);
    assert_eq!(row(&rows, NS, "settings")["encrypted"], json!({"provider": "aesgcm", "key_name": "gcm1"}));
    let rows = listed(&k, &id, "serviceaccounts", &[]);
    assert_eq!(row(&rows, NS, "backup-agent")["encrypted"], json!({"provider": "secretbox", "key_name": "box1"}));
    let text = k.ok(&["inspect", &id, "--kind", "secret"]);
    assert!(
        text.contains("ENCRYPTED") && text.contains("aescbc:key2") && text.contains("--encryption-config"),
        "{text}"
    );
    for (kind, name, what) in [
        ("secret", "db", "aescbc key \"key2\""),
        ("configmap", "settings", "aesgcm key \"gcm1\""),
        ("serviceaccounts", "backup-agent", "secretbox key \"box1\""),
    ] {
        let err = k.fails(&["inspect", &id, "--get", kind, &format!("{NS}/{name}")], 4);
        assert!(
            err.contains("encrypted at rest") && err.contains(what) && err.contains("--encryption-config"),
            "{err}"
        );
    }

    // With the config: each object as the API served it.
    let with = ["--encryption-config", rotated.as_str()];
    let get = |kind: &str, name: &str| {
        let mut args = vec!["inspect", &id, "--get", kind, name];
        args.extend(with);
        k.json(&args)
    };
    assert_eq!(get("secret", &format!("{NS}/db")), for_apply(&new_secret));
    assert_eq!(
        get("secret", &format!("{NS}/written-before-rotation")),
        for_apply(&old_secret),
        "decrypted with key1, the second key of the rotated config"
    );
    assert_eq!(get("configmap", &format!("{NS}/settings")), for_apply(&cm));
    assert_eq!(get("serviceaccounts", &format!("{NS}/backup-agent")), for_apply(&sa));
    let got_ns = get("namespace", NS);
    assert_eq!(got_ns, for_apply(&ns));
    assert_eq!(got_ns["metadata"]["labels"]["kubernetes.io/metadata.name"], NS, "the label the server adds");
    assert_eq!(got_ns["spec"], json!({"finalizers": ["kubernetes"]}));
    // Everything the server encrypted decrypts, its own ConfigMaps and Secrets too.
    for kind in ["secret", "configmap", "serviceaccounts"] {
        let rows = listed(&k, &id, kind, &with);
        assert!(!rows.is_empty() && rows.iter().all(|r| r["encrypted"].is_null()), "{kind}: {rows:#?}");
    }

    // Kinds kmdr does not decode: named exactly, at the built-in groups' keys.
    let err = k.fails(&["inspect", &id, "--get", "deployments.apps", &format!("{NS}/web")], 10);
    assert!(err.contains(&format!("/registry/deployments/{NS}/web")) && err.contains("apps/v1 Deployment"), "{err}");
    let err = k.fails(&["inspect", &id, "--get", "services", &format!("{NS}/web")], 10);
    assert!(
        err.contains(&format!("/registry/services/specs/{NS}/web")) && err.contains("protobuf v1 Service"),
        "{err}"
    );
    // ... and still listed by name.
    let rows = listed(&k, &id, "deployments.apps,services,leases.coordination.k8s.io", &[]);
    assert_eq!(row(&rows, NS, "web")["kind"], "deployments");
    assert!(rows.iter().any(|r| r["kind"] == "services" && r["name"] == "web" && r["namespace"] == NS), "{rows:#?}");
    for lease in &leases {
        assert!(
            rows.iter().any(|r| r["kind"] == "leases" && r["namespace"] == "kube-system" && r["name"] == *lease),
            "lease {lease} in {rows:#?}"
        );
    }

    // The fields --get removes for apply, through the library: the UID and
    // creation time are the server's.
    let snap = dir.path().join("snap.db");
    k.ok(&["restore", "etcd", &id, "--to-file", &snap.display().to_string()]);
    let keys = EncryptionKeys::load(Path::new(&rotated)).unwrap();
    let db = BoltFile::open(&snap).unwrap();
    let live = mvcc::live_keys(&db, &|_| true).unwrap();
    for (key, served) in [
        (format!("/registry/secrets/{NS}/db"), &new_secret),
        (format!("/registry/secrets/{NS}/written-before-rotation"), &old_secret),
        (format!("/registry/configmaps/{NS}/settings"), &cm),
        (format!("/registry/serviceaccounts/{NS}/backup-agent"), &sa),
        (format!("/registry/namespaces/{NS}"), &ns),
    ] {
        let kv = live.keys.get(key.as_bytes()).unwrap_or_else(|| panic!("{key} in the snapshot"));
        let Stored::Object(obj) = decode_value(&key, &kv.value, Some(&keys)).unwrap() else {
            panic!("{key}: decrypted with the config")
        };
        for field in ["uid", "creationTimestamp", "name", "namespace", "labels"] {
            assert_eq!(obj["metadata"][field], served["metadata"][field], "{key}: metadata.{field}");
        }
        // The server stores no resourceVersion: it is etcd's mod_revision.
        assert_eq!(
            kv.mod_revision.to_string(),
            served["metadata"]["resourceVersion"].as_str().unwrap(),
            "{key}: the served resourceVersion"
        );
    }

    // Wrong keys: one line each, exit 4.
    let wrong = write(
        &dir.path().join("wrong.yaml"),
        &encryption_config(&[("key2", WRONG_32), ("key1", WRONG_32)], WRONG_24, WRONG_32),
    );
    for (kind, name) in [("secret", "db"), ("configmap", "settings"), ("serviceaccounts", "backup-agent")] {
        let err = k.fails(&["inspect", &id, "--get", kind, &format!("{NS}/{name}"), "--encryption-config", &wrong], 4);
        assert!(err.contains("does not decrypt") && err.contains(&format!("{NS}/{name}")), "{err}");
    }
    // The config from before the rotation lacks key2.
    let err =
        k.fails(&["inspect", &id, "--get", "secret", &format!("{NS}/db"), "--encryption-config", &before_rotation], 4);
    assert!(err.contains("key \"key2\"") && err.contains("does not hold"), "{err}");
    drop(s);
    drop(etcd);
}
