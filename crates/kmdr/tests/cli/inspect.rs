//! Offline inspection against a real etcd holding objects in the encodings
//! the API server writes: JSON custom resources (Kamaji, Cluster API),
//! protobuf Secrets behind `k8s\0` and the runtime.Unknown envelope, a Helm
//! release, Secrets encrypted at rest (aescbc, aesgcm, secretbox, encrypted
//! here by Python's `cryptography` and PyNaCl, independent of kmdr), a
//! deleted key, an overwritten key, and enough keys (plus a value > 4 KiB)
//! that the bbolt tree has branch and overflow pages.

use crate::common;
use base64::Engine;
use common::{Etcd, Kmdr};
use kmdr_etcd::{bbolt::BoltFile, mvcc};
use kmdr_kube::inspect::proto;
use prost::Message;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::Command;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const CBC_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
const GCM_KEY: &str = "Z2NtLWtleS0xNi1ieXRlcw=="; // 16 bytes
const BOX_KEY: &str = "c2VjcmV0Ym94LWtleS0zMi1ieXRlcy1sb25nLi4uLi4="; // 32 bytes

/// Encrypt (or gzip) with Python, the way the API server (or Helm) lays it out.
const PY: &str = r#"
import sys, os, base64, gzip
mode, key, aad, data = sys.argv[1], base64.b64decode(sys.argv[2]), sys.argv[3].encode(), bytes.fromhex(sys.argv[4])
if mode == "aescbc":
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives import padding
    iv = os.urandom(16); p = padding.PKCS7(128).padder(); d = p.update(data) + p.finalize()
    e = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor(); out = iv + e.update(d) + e.finalize()
elif mode == "aesgcm":
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    n = os.urandom(12); out = n + AESGCM(key).encrypt(n, data, aad)
elif mode == "secretbox":
    import nacl.secret
    out = bytes(nacl.secret.SecretBox(key).encrypt(data))
elif mode == "helm":
    out = base64.b64encode(gzip.compress(data))
sys.stdout.write(out.hex())
"#;

fn py(mode: &str, key: &str, aad: &str, data: &[u8]) -> Vec<u8> {
    let o = Command::new("python3").args(["-c", PY, mode, key, aad, &hex::encode(data)]).output().expect("python3");
    assert!(o.status.success(), "python: {}", String::from_utf8_lossy(&o.stderr));
    hex::decode(String::from_utf8(o.stdout).unwrap().trim()).unwrap()
}

fn meta(ns: &str, name: &str) -> proto::ObjectMeta {
    proto::ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        uid: Some(format!("uid-{name}")),
        resource_version: Some(String::new()),
        creation_timestamp: Some(proto::Time { seconds: Some(1_790_000_000), nanos: Some(0) }),
        labels: BTreeMap::from([("kamaji.clastix.io/name".to_string(), "tenant1".to_string())]),
        ..Default::default()
    }
}

/// A Secret as the API server stores it: `k8s\0` + runtime.Unknown{raw: Secret}.
fn secret(ns: &str, name: &str, type_: &str, data: &[(&str, &[u8])], labels: &[(&str, &str)]) -> Vec<u8> {
    let mut m = meta(ns, name);
    m.labels.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let s = proto::Secret {
        metadata: Some(m),
        data: data.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect(),
        type_: Some(type_.into()),
        ..Default::default()
    };
    proto::envelope("v1", "Secret", s.encode_to_vec())
}

fn tcp(name: &str, version: &str, schema_in_spec: Option<&str>) -> Value {
    let mut spec = json!({"dataStore": "default", "controlPlane": {"deployment": {"replicas": 2}, "service": {"serviceType": "LoadBalancer"}},
        "kubernetes": {"version": version, "kubelet": {"cgroupfs": "systemd"}}, "networkProfile": {"port": 6443}});
    if let Some(s) = schema_in_spec {
        spec["dataStoreSchema"] = json!(s);
        spec["dataStoreUsername"] = json!(s);
    }
    json!({
        "apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "TenantControlPlane",
        "metadata": {"name": name, "namespace": "tenants", "uid": format!("uid-{name}"), "resourceVersion": "812", "generation": 3,
            "creationTimestamp": "2026-11-01T10:00:00Z", "finalizers": ["finalizer.kamaji.clastix.io"],
            "labels": {"tenant.clastix.io": name},
            "managedFields": [{"manager": "kamaji", "operation": "Update", "apiVersion": "kamaji.clastix.io/v1alpha1"}],
            "ownerReferences": [{"apiVersion": "controlplane.cluster.x-k8s.io/v1alpha1", "kind": "KamajiControlPlane", "name": name, "uid": "kcp-uid"}]},
        "spec": spec,
        "status": {"controlPlaneEndpoint": "10.0.0.50:6443",
            "storage": {"driver": "etcd", "dataStoreName": "default",
                "setup": {"schema": format!("tenants_{name}"), "user": format!("tenants_{name}"), "checksum": "abc"}},
            "kubernetesResources": {"version": {"version": version, "status": "Ready"}}}
    })
}

fn helm_release(rev: i64, status: &str) -> Vec<u8> {
    let release = json!({"name": "kmetal", "namespace": "kmetal-system", "version": rev,
        "info": {"status": status, "first_deployed": "2026-10-01T00:00:00Z", "last_deployed": "2026-11-01T00:00:00Z"},
        "chart": {"metadata": {"name": "kmetal", "version": format!("1.{rev}.0"), "appVersion": "2.0"}},
        "config": {"kamaji": {"datastore": "default"}}, "manifest": "---\n"});
    let data = py("helm", "", "", &serde_json::to_vec(&release).unwrap());
    secret(
        "kmetal-system",
        &format!("sh.helm.release.v1.kmetal.v{rev}"),
        "helm.sh/release.v1",
        &[("release", &data)],
        &[("owner", "helm"), ("name", "kmetal"), ("version", &rev.to_string()), ("status", status)],
    )
}

fn enc_config(cbc: &str, gcm: &str, boxk: &str) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      \
- aescbc:\n          keys:\n            - name: key1\n              secret: {cbc}\n      \
- aesgcm:\n          keys:\n            - name: gcm1\n              secret: {gcm}\n      \
- secretbox:\n          keys:\n            - name: box1\n              secret: {boxk}\n      - identity: {{}}\n"
    )
}

fn find<'a>(objs: &'a [Value], kind: &str, ns: Option<&str>, name: &str) -> Option<&'a Value> {
    objs.iter().find(|o| o["kind"] == kind && o["name"] == name && o["namespace"].as_str() == ns)
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_lists_and_gets_every_kind_offline() {
    need_etcd!();
    if !kmdr_testkit::need("python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), "uc");
    // Enough keys for branch pages in bucket `key`.
    etcd.load("/registry/pods/default/web-", 3000, 600, 1).await;
    let mut c = etcd.client().await;
    let tcps = "/registry/kamaji.clastix.io/tenantcontrolplanes/tenants/";
    // Overwritten: the older version must not be shown.
    c.put(format!("{tcps}tenant1"), serde_json::to_vec(&tcp("tenant1", "v1.29.0", None)).unwrap(), None).await.unwrap();
    c.put(format!("{tcps}tenant1"), serde_json::to_vec(&tcp("tenant1", "v1.30.2", None)).unwrap(), None).await.unwrap();
    c.put(
        format!("{tcps}tenant2"),
        serde_json::to_vec(&tcp("tenant2", "v1.31.0", Some("custom_schema"))).unwrap(),
        None,
    )
    .await
    .unwrap();
    // Deleted: must be absent.
    c.put(format!("{tcps}gone"), serde_json::to_vec(&tcp("gone", "v1.30.0", None)).unwrap(), None).await.unwrap();
    c.delete(format!("{tcps}gone"), None).await.unwrap();
    let ds = json!({"apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "DataStore",
        "metadata": {"name": "default", "uid": "ds-uid", "resourceVersion": "100"},
        "spec": {"driver": "etcd", "endpoints": ["10.0.0.5:2379", "10.0.0.6:2379"],
            "tlsConfig": {"certificateAuthority": {"certificate": {"secretReference": {"name": "etcd-certs", "namespace": "kamaji-system", "keyPath": "ca.crt"}}}}},
        "status": {"usedBy": ["tenants/tenant1", "tenants/tenant2"]}});
    c.put("/registry/kamaji.clastix.io/datastores/default", serde_json::to_vec(&ds).unwrap(), None).await.unwrap();
    let cluster = json!({"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster",
        "metadata": {"name": "tenant1", "namespace": "tenants", "uid": "c-uid"},
        "spec": {"controlPlaneRef": {"apiVersion": "controlplane.cluster.x-k8s.io/v1alpha1", "kind": "KamajiControlPlane", "name": "tenant1"}},
        "status": {"phase": "Provisioned"}});
    c.put("/registry/cluster.x-k8s.io/clusters/tenants/tenant1", serde_json::to_vec(&cluster).unwrap(), None)
        .await
        .unwrap();
    let kcp = json!({"apiVersion": "controlplane.cluster.x-k8s.io/v1alpha1", "kind": "KamajiControlPlane",
        "metadata": {"name": "tenant1", "namespace": "tenants"}, "spec": {"version": "v1.30.2", "dataStoreName": "default"}, "status": {"ready": true}});
    c.put(
        "/registry/controlplane.cluster.x-k8s.io/kamajicontrolplanes/tenants/tenant1",
        serde_json::to_vec(&kcp).unwrap(),
        None,
    )
    .await
    .unwrap();
    // Protobuf Secrets, one larger than a page (overflow pages).
    let ca_crt = b"-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n".to_vec();
    c.put(
        "/registry/secrets/tenants/tenant1-ca",
        secret("tenants", "tenant1-ca", "kubernetes.io/tls", &[("tls.crt", &ca_crt), ("tls.key", b"key-bytes")], &[]),
        None,
    )
    .await
    .unwrap();
    let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    c.put(
        "/registry/secrets/tenants/tenant1-big",
        secret("tenants", "tenant1-big", "Opaque", &[("blob", &big)], &[]),
        None,
    )
    .await
    .unwrap();
    // A Helm release with two revisions.
    c.put("/registry/secrets/kmetal-system/sh.helm.release.v1.kmetal.v1", helm_release(1, "superseded"), None)
        .await
        .unwrap();
    c.put("/registry/secrets/kmetal-system/sh.helm.release.v1.kmetal.v2", helm_release(2, "deployed"), None)
        .await
        .unwrap();
    // Encrypted at rest.
    let plain_cbc = secret("tenants", "enc-cbc", "Opaque", &[("password", b"cbc-secret")], &[]);
    let plain_gcm = secret("tenants", "enc-gcm", "Opaque", &[("password", b"gcm-secret")], &[]);
    let plain_box = secret("tenants", "enc-box", "Opaque", &[("password", b"box-secret")], &[]);
    let k_cbc = "/registry/secrets/tenants/enc-cbc";
    let k_gcm = "/registry/secrets/tenants/enc-gcm";
    let k_box = "/registry/secrets/tenants/enc-box";
    c.put(k_cbc, [b"k8s:enc:aescbc:v1:key1:".to_vec(), py("aescbc", CBC_KEY, k_cbc, &plain_cbc)].concat(), None)
        .await
        .unwrap();
    c.put(k_gcm, [b"k8s:enc:aesgcm:v1:gcm1:".to_vec(), py("aesgcm", GCM_KEY, k_gcm, &plain_gcm)].concat(), None)
        .await
        .unwrap();
    c.put(k_box, [b"k8s:enc:secretbox:v1:box1:".to_vec(), py("secretbox", BOX_KEY, k_box, &plain_box)].concat(), None)
        .await
        .unwrap();
    let before = etcd.dump().await;

    let k = Kmdr::local(dir.path());
    k.init();
    let m = k.json(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    let id = m["id"].as_str().unwrap().to_string();
    // Later writes are not in the backup.
    c.put(format!("{tcps}after"), serde_json::to_vec(&tcp("after", "v1.30.0", None)).unwrap(), None).await.unwrap();

    // The reader against etcd itself: every live key and value, nothing else.
    let snap = dir.path().join("snap.db");
    k.ok(&["restore", "etcd", &id, "--to-file", &snap.display().to_string()]);
    let db = BoltFile::open(&snap).unwrap();
    let live = mvcc::live_keys(&db, &|_| true).unwrap();
    let got: Vec<(Vec<u8>, Vec<u8>)> = live.keys.into_iter().map(|(k, kv)| (k, kv.value)).collect();
    assert_eq!(got.len(), before.len());
    assert!(got == before, "the bbolt/mvcc reader sees exactly etcd's keys and values");
    assert_eq!(live.revision, m["source"]["revision"].as_i64().unwrap());

    // The listing.
    let inv = k.json(&["inspect", &id]);
    let objs = inv["inventory"]["objects"].as_array().unwrap().clone();
    let t1 = find(&objs, "TenantControlPlane", Some("tenants"), "tenant1").expect("tenant1 listed");
    assert_eq!(t1["details"]["dataStoreSchema"], "tenants_tenant1");
    assert_eq!(t1["details"]["dataStoreUsername"], "tenants_tenant1");
    assert_eq!(t1["details"]["schemaInSpec"], false);
    assert_eq!(t1["details"]["version"], "v1.30.2", "the newest revision of an overwritten key");
    assert_eq!(t1["details"]["status"], "Ready");
    assert_eq!(t1["details"]["dataStore"], "default");
    let t2 = find(&objs, "TenantControlPlane", Some("tenants"), "tenant2").unwrap();
    assert_eq!(t2["details"]["dataStoreSchema"], "custom_schema");
    assert!(find(&objs, "TenantControlPlane", Some("tenants"), "gone").is_none(), "a deleted key is absent");
    assert!(find(&objs, "TenantControlPlane", Some("tenants"), "after").is_none());
    let d = find(&objs, "DataStore", None, "default").unwrap();
    assert_eq!(d["details"]["driver"], "etcd");
    assert_eq!(d["details"]["endpoints"], json!(["10.0.0.5:2379", "10.0.0.6:2379"]));
    let cl = find(&objs, "Cluster", Some("tenants"), "tenant1").unwrap();
    assert_eq!(cl["details"]["controlPlane"], "KamajiControlPlane/tenant1");
    assert_eq!(cl["details"]["phase"], "Provisioned");
    let kc = find(&objs, "KamajiControlPlane", Some("tenants"), "tenant1").unwrap();
    assert_eq!(kc["details"]["version"], "v1.30.2");
    let h2 = find(&objs, "HelmRelease", Some("kmetal-system"), "sh.helm.release.v1.kmetal.v2").unwrap();
    assert_eq!(h2["details"]["release"], "kmetal");
    assert_eq!(h2["details"]["revision"], 2);
    assert_eq!(h2["details"]["status"], "deployed");
    assert_eq!(h2["details"]["chart"], "kmetal");
    assert_eq!(h2["details"]["version"], "1.2.0");
    let h1 = find(&objs, "HelmRelease", Some("kmetal-system"), "sh.helm.release.v1.kmetal.v1").unwrap();
    assert_eq!(h1["details"]["status"], "superseded");
    assert_eq!(objs.len(), 7, "two TCPs, a DataStore, a Cluster, a KamajiControlPlane, two Helm revisions: {objs:#?}");
    assert!(objs.iter().all(|o| o["kind"] != "Secret"), "plain Secrets are not listed by default");

    // Text: a table per kind.
    let text = k.ok(&["inspect", "latest"]);
    for needle in [
        "TenantControlPlane (2)",
        "tenants/tenant1",
        "tenants_tenant1",
        "DataStore (1)",
        "10.0.0.5:2379,10.0.0.6:2379",
        "HelmRelease (2)",
        "kmetal-system/sh.helm.release.v1.kmetal.v2",
    ] {
        assert!(text.contains(needle), "{needle} in:\n{text}");
    }

    // --kind secret: encrypted Secrets are reported as such, with provider and key name.
    let secrets = k.json(&["inspect", &id, "--kind", "secret"]);
    let sobjs = secrets["inventory"]["objects"].as_array().unwrap().clone();
    assert_eq!(
        find(&sobjs, "Secret", Some("tenants"), "enc-cbc").unwrap()["encrypted"],
        json!({"provider": "aescbc", "key_name": "key1"})
    );
    assert_eq!(
        find(&sobjs, "Secret", Some("tenants"), "enc-box").unwrap()["encrypted"],
        json!({"provider": "secretbox", "key_name": "box1"})
    );
    assert_eq!(
        find(&sobjs, "Secret", Some("tenants"), "tenant1-ca").unwrap()["details"]["keys"],
        json!(["tls.crt", "tls.key"])
    );
    assert!(sobjs.iter().all(|o| o["kind"] == "Secret"));

    // --get: the TCP ready to apply, its schema and user filled from status.
    let got = k.json(&["inspect", &id, "--get", "tcp", "tenants/tenant1"]);
    let mut want = tcp("tenant1", "v1.30.2", Some("tenants_tenant1"));
    want.as_object_mut().unwrap().remove("status");
    let wm = want["metadata"].as_object_mut().unwrap();
    for f in ["uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "ownerReferences"] {
        wm.remove(f);
    }
    assert_eq!(got, want, "the TCP as stored, cleaned for apply, with dataStoreSchema/dataStoreUsername");
    // The default output is the same object as YAML.
    let yaml = k.ok(&["inspect", &id, "--get", "tenantcontrolplane", "tenants/tenant1"]);
    let parsed: Value = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(parsed, got);
    let got_ds = k.json(&["inspect", &id, "--get", "datastore", "default"]);
    assert_eq!(got_ds["spec"], ds["spec"]);
    assert!(got_ds.get("status").is_none() && got_ds["metadata"].get("uid").is_none());
    assert_eq!(
        k.json(&["inspect", &id, "--get", "clusters.cluster.x-k8s.io", "tenants/tenant1"])["spec"],
        cluster["spec"]
    );
    assert_eq!(k.json(&["inspect", &id, "--get", "kcp", "tenants/tenant1"])["spec"], kcp["spec"]);

    // --get secret: the protobuf decoded, data as base64, server fields gone.
    let s = k.json(&["inspect", &id, "--get", "secret", "tenants/tenant1-ca"]);
    assert_eq!(s["apiVersion"], "v1");
    assert_eq!(s["kind"], "Secret");
    assert_eq!(s["type"], "kubernetes.io/tls");
    assert_eq!(s["data"]["tls.crt"], B64.encode(&ca_crt));
    assert_eq!(s["data"]["tls.key"], B64.encode(b"key-bytes"));
    assert_eq!(
        s["metadata"],
        json!({"name": "tenant1-ca", "namespace": "tenants", "labels": {"kamaji.clastix.io/name": "tenant1"}})
    );
    let s = k.json(&["inspect", &id, "--get", "secret", "tenants/tenant1-big"]);
    assert_eq!(B64.decode(s["data"]["blob"].as_str().unwrap()).unwrap(), big, "a value spanning overflow pages");
    // Any /registry/ resource by plural.
    let pod = k.run(&["inspect", &id, "--get", "pods", "default/web-000042"]);
    assert_eq!(
        pod.status.code(),
        Some(7),
        "random bytes are neither JSON nor protobuf: {}",
        String::from_utf8_lossy(&pod.stderr)
    );

    // Encrypted: refused without the config, decrypted with it, refused with a wrong key.
    let err = k.fails(&["inspect", &id, "--get", "secret", "tenants/enc-cbc"], 4);
    assert!(err.contains("encrypted at rest") && err.contains("--encryption-config"), "{err}");
    let cfg = dir.path().join("enc.yaml");
    std::fs::write(&cfg, enc_config(CBC_KEY, GCM_KEY, BOX_KEY)).unwrap();
    let cfgs = cfg.display().to_string();
    for (name, pw) in [("enc-cbc", "cbc-secret"), ("enc-gcm", "gcm-secret"), ("enc-box", "box-secret")] {
        let s = k.json(&["inspect", &id, "--get", "secret", &format!("tenants/{name}"), "--encryption-config", &cfgs]);
        assert_eq!(s["data"]["password"], B64.encode(pw), "{name}");
        assert_eq!(s["metadata"]["name"], name);
    }
    let listed = k.json(&["inspect", &id, "--kind", "secret", "--encryption-config", &cfgs]);
    assert!(listed["inventory"]["objects"].as_array().unwrap().iter().all(|o| o["encrypted"].is_null()));
    let wrong = dir.path().join("wrong.yaml");
    std::fs::write(
        &wrong,
        enc_config(
            "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktMzI=",
            "d3Jvbmcta2V5LTE2Ynl0ZQ==",
            "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktMzI=",
        ),
    )
    .unwrap();
    let wrongs = wrong.display().to_string();
    for name in ["enc-cbc", "enc-gcm", "enc-box"] {
        let err = k
            .fails(&["inspect", &id, "--get", "secret", &format!("tenants/{name}"), "--encryption-config", &wrongs], 4);
        assert!(err.contains("does not decrypt"), "{err}");
    }
    std::fs::write(&wrong, "kind: EncryptionConfiguration\nresources: []\n").unwrap();
    k.fails(&["inspect", &id, "--encryption-config", &wrongs], 4);

    // Not found, bad names, the wrong kind of backup.
    let err = k.fails(&["inspect", &id, "--get", "tcp", "tenants/gone"], 5);
    assert!(err.contains("no TenantControlPlane tenants/gone"), "{err}");
    k.fails(&["inspect", &id, "--get", "tcp", "tenant1"], 2);
    k.fails(&["inspect", &id, "--get", "datastore", "ns/default"], 2);
    c.put("/t1/registry/pods/a", "x", None).await.unwrap();
    let tenant =
        k.json(&["backup", "tenant", "--datastore", &etcd.client_url.replace("http://", "etcd://"), "--schema", "t1"]);
    let err = k.fails(&["inspect", tenant[0]["id"].as_str().unwrap()], 5);
    assert!(err.contains("not an etcd snapshot"), "{err}");

    // A plain snapshot file works the same; a file that is not one is one clear error.
    let from_file = k.json(&["inspect", "--snapshot-file", &snap.display().to_string(), "--kind", "tcp"]);
    assert_eq!(from_file["inventory"]["objects"].as_array().unwrap().len(), 2);
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![1u8; 20000]).unwrap();
    let err = k.fails(&["inspect", "--snapshot-file", &junk.display().to_string()], 7);
    assert!(err.contains("not a bbolt database"), "{err}");
    // Nothing is left in TMPDIR.
    assert!(
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().contains(&format!(".kmdr-inspect-{id}")))
    );
}
