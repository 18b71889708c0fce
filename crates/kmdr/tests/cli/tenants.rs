//! The real-API versions (kube-apiserver with the Kamaji and Cluster API CRDs) live in tenants_real.rs.
//!
//! `kmdr backup tenants`, `kmdr restore tenants` and `kmdr watch` against the
//! scripted fake Kubernetes API (scripts/fake-kube-api.py) and REAL tenant
//! datastores: a shared etcd (tenants alpha and beta) and PostgreSQL (tenant
//! gamma, kine). Each trap of the runbook's `kubectl apply` has a test here
//! that fails without its guard.

use crate::common;
use crate::common::b64;

use common::kube::FakeKube;
use common::{Kmdr, under};
use kmdr_testkit::{Etcd, Postgres};
use serde_json::{Value, json};
use std::path::Path;

fn host_port(url: &str) -> String {
    url.rsplit("//").next().unwrap().rsplit('@').next().unwrap().to_string()
}

/// The under-cluster as it was: two DataStores, three TCPs (alpha without
/// schema/username in its spec, only in status; owned by a KamajiControlPlane
/// owned by a Cluster), their Secrets, and an unrelated Secret.
fn cluster_fixtures(etcd: &Etcd, pg: &Postgres) -> Value {
    let tcp = |name: &str, ds: &str, spec_schema: bool, owner: bool| {
        let schema = format!("tenants_{name}");
        let mut spec = json!({"dataStore": ds, "controlPlane": {"deployment": {"replicas": 2}}, "kubernetes": {"version": "v1.33.0"}});
        if spec_schema {
            spec["dataStoreSchema"] = json!(schema);
            spec["dataStoreUsername"] = json!(schema);
        }
        let mut meta = json!({"name": name, "namespace": "tenants", "labels": {"tenant": name}});
        if owner {
            meta["ownerReferences"] = json!([{"apiVersion": "controlplane.cluster.x-k8s.io/v1alpha1", "kind": "KamajiControlPlane", "name": name, "uid": "kcp-uid-1", "controller": true}]);
            meta["labels"]["cluster.x-k8s.io/cluster-name"] = json!(name);
        }
        json!({
            "apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "TenantControlPlane", "metadata": meta, "spec": spec,
            "status": {"storage": {"driver": ds, "dataStoreName": ds, "setup": {"schema": schema, "user": schema}},
                       "kubernetesResources": {"version": {"version": "v1.33.0", "status": "Ready"}}},
        })
    };
    let secret = |name: &str| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "tenants"}, "type": "Opaque", "data": {"tls.crt": b64(&format!("cert of {name}"))}});
    json!({
        "objects": [
            {"apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "DataStore", "metadata": {"name": "shared-etcd"},
             "spec": {"driver": "etcd", "endpoints": [host_port(&etcd.client_url)]}, "status": {"usedBy": ["tenants/alpha", "tenants/beta"]}},
            {"apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "DataStore", "metadata": {"name": "pg"},
             "spec": {"driver": "PostgreSQL", "endpoints": [host_port(&pg.url())],
                      "basicAuth": {"username": {"content": b64("kmdr")},
                                    "password": {"secretReference": {"name": "pg-creds", "namespace": "kamaji-system", "keyPath": "password"}}}}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pg-creds", "namespace": "kamaji-system"}, "data": {"password": b64("kmdr-test-pw")}},
            tcp("alpha", "shared-etcd", false, true),
            tcp("beta", "shared-etcd", true, false),
            tcp("gamma", "pg", true, false),
            {"apiVersion": "controlplane.cluster.x-k8s.io/v1alpha1", "kind": "KamajiControlPlane",
             "metadata": {"name": "alpha", "namespace": "tenants", "ownerReferences": [{"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster", "name": "alpha", "uid": "cl-uid-1"}]},
             "spec": {"dataStoreName": "shared-etcd", "version": "v1.33.0", "replicas": 2}},
            {"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster", "metadata": {"name": "alpha", "namespace": "tenants"},
             "spec": {"controlPlaneRef": {"apiVersion": "controlplane.cluster.x-k8s.io/v1alpha1", "kind": "KamajiControlPlane", "name": "alpha"}},
             "status": {"phase": "Provisioned"}},
            secret("alpha-ca"), secret("alpha-admin-kubeconfig"), secret("alpha-datastore-config"),
            secret("beta-ca"), secret("gamma-ca"), secret("unrelated"),
        ],
        "immutable": [{"kind": "TenantControlPlane", "path": "spec.dataStoreSchema"}, {"kind": "TenantControlPlane", "path": "spec.dataStoreUsername"}],
    })
}

/// A cluster rebuilt after the disaster: empty, with a Kamaji that makes
/// every applied TCP Ready 300 ms later (unless `ready` is false).
fn fresh_fixtures(ready: bool) -> Value {
    let mut f = json!({
        "objects": [],
        "immutable": [{"kind": "TenantControlPlane", "path": "spec.dataStoreSchema"}],
    });
    if ready {
        f["rules"] = json!([{"kind": "TenantControlPlane", "on": "apply", "afterMs": 300, "set": {"status.kubernetesResources.version.status": "Ready", "status.storage.setup.schema": "$(spec.dataStoreSchema)"}}]);
    }
    f
}

fn kubeconfig(kube: &FakeKube, dir: &Path, name: &str) -> String {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    kube.kubeconfig(&d).display().to_string()
}

fn writes_desc(kube: &FakeKube) -> Vec<String> {
    kube.writes().iter().map(|r| format!("{} {}", r.method, r.path)).collect()
}

#[tokio::test]
async fn tenants_round_trip_with_every_guard() {
    need_etcd!();
    if !kmdr_testkit::need("initdb") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let etcd = Etcd::start(d, "shared");
    etcd.load("/tenants_alpha/pods/default/web-", 300, 500, 1).await;
    etcd.load("/tenants_beta/configmaps/kube-system/cm-", 120, 200, 2).await;
    etcd.load("/tenants_gamma/secrets/default/s-", 80, 300, 3).await;
    let pg = Postgres::start(d);
    let k = Kmdr::local(d);
    k.init();
    // Tenant gamma lives in PostgreSQL (kine): move its keys there.
    let m = k.json(&[
        "backup",
        "tenant",
        "--datastore",
        &etcd.client_url.replace("http://", "etcd://"),
        "--schema",
        "tenants_gamma",
    ]);
    let gamma_hash = m[0]["source"]["content_sha256"].as_str().unwrap().to_string();
    k.ok(&["restore", "tenant", m[0]["id"].as_str().unwrap(), "--datastore", &pg.url()]);
    etcd.client().await.delete("/tenants_gamma/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();

    let old = FakeKube::with_fixtures(d, &cluster_fixtures(&etcd, &pg));
    let old_kc = kubeconfig(&old, d, "old");

    // --- backup tenants --all
    let m = k.json(&["backup", "tenants", "--all", "--kubeconfig", &old_kc]);
    assert_eq!(m["layer"], "tenant-control-planes");
    let src = &m["source"];
    assert_eq!(src["type"], "kamaji-tenants");
    let tenants = src["tenants"].as_array().unwrap();
    let names: Vec<&str> = tenants.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "beta", "gamma"]);
    let alpha = &tenants[0];
    // Trap 1: alpha's spec lacks schema/username; the backup fills them from status.
    assert_eq!(alpha["schema"], "tenants_alpha");
    assert_eq!(alpha["username"], "tenants_alpha");
    assert_eq!(alpha["filled_from_status"], json!(["dataStoreSchema", "dataStoreUsername"]));
    assert_eq!(alpha["kamaji_control_plane"], "alpha");
    assert_eq!(alpha["capi_cluster"], "alpha");
    assert_eq!(alpha["secrets"], json!(["alpha-admin-kubeconfig", "alpha-ca", "alpha-datastore-config"]));
    assert_eq!(alpha["data"]["key_count"], 300);
    assert_eq!(alpha["data"]["driver"], "etcd");
    assert_eq!(tenants[1]["filled_from_status"], json!([]));
    assert_eq!(tenants[2]["data"]["driver"], "postgres");
    assert_eq!(
        tenants[2]["data"]["content_sha256"].as_str().unwrap(),
        gamma_hash,
        "gamma's data read from PostgreSQL through the DataStore's credentials"
    );
    let files: Vec<&str> = m["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    for f in [
        "datastores/pg/datastore.yaml",
        "datastores/pg/secrets/kamaji-system/pg-creds.yaml",
        "datastores/shared-etcd/datastore.yaml",
        "tenants/tenants/alpha/records",
        "tenants/tenants/alpha/tenantcontrolplane.yaml",
        "tenants/tenants/alpha/kamajicontrolplane.yaml",
        "tenants/tenants/alpha/cluster.yaml",
        "tenants/tenants/alpha/secrets/alpha-ca.yaml",
    ] {
        assert!(files.contains(&f), "{f} missing from {files:?}");
    }
    assert!(!files.iter().any(|f| f.contains("unrelated")), "{files:?}");
    // The backup only read: no write went to the cluster.
    assert_eq!(writes_desc(&old), Vec::<String>::new());
    let stored = k.ok(&["backups", "show", "latest", "-o", "json"]);
    assert!(
        !stored.contains("kmdr-test-pw") && !stored.contains(&b64("kmdr-test-pw")),
        "a secret value in the manifest"
    );

    // --- the disaster: a new, empty cluster; the tenants' data is gone
    let alpha_before = under(&etcd, "/tenants_alpha/").await;
    etcd.client().await.delete("/tenants_alpha/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
    pg.psql("postgres", "DROP DATABASE tenants_gamma");
    // beta keeps living, and changes after the backup: --only must not touch it.
    etcd.client().await.put("/tenants_beta/configmaps/kube-system/new-after-backup", "v", None).await.unwrap();
    let beta_now = under(&etcd, "/tenants_beta/").await;

    let fresh = FakeKube::with_fixtures(d, &fresh_fixtures(true));
    let kc = kubeconfig(&fresh, d, "fresh");

    // Trap 2: a TCP that exists with another schema (here: a UID-derived
    // one, Kamaji's default) is refused, and nothing is written.
    fresh.load(&json!({"objects": [{"apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "TenantControlPlane",
        "metadata": {"name": "alpha", "namespace": "tenants"}, "spec": {"dataStore": "shared-etcd"}}]}));
    let err = k.fails(&["restore", "tenants", "latest", "--only", "tenants/alpha", "--kubeconfig", &kc], 8);
    assert!(
        err.contains("refusing to restore TenantControlPlane tenants/alpha") && err.contains("\"tenants_alpha\""),
        "{err}"
    );
    assert_eq!(writes_desc(&fresh), Vec::<String>::new(), "a refused restore wrote");
    assert!(under(&etcd, "/tenants_alpha/").await.is_empty(), "a refused restore wrote data");
    fresh.load(&json!({"rules": [{"kind": "TenantControlPlane", "on": "start", "match": {"metadata.name": "alpha"}, "delete": true}]}));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(fresh.object("TenantControlPlane", "tenants", "alpha").is_none());

    // Data before manifests: when the data cannot be written, no manifest is applied.
    let err = k.fails(
        &[
            "restore",
            "tenants",
            "latest",
            "--only",
            "tenants/alpha",
            "--kubeconfig",
            &kc,
            "--datastore-endpoint",
            "shared-etcd=127.0.0.1:1",
        ],
        6,
    );
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert_eq!(writes_desc(&fresh), Vec::<String>::new());

    // --dry-run: the plan, in order; no write.
    let dry = k.ok(&["restore", "tenants", "latest", "--only", "tenants/alpha", "--dry-run", "--kubeconfig", &kc]);
    let steps: Vec<&str> = dry.lines().filter(|l| l.starts_with("  ")).map(str::trim).collect();
    assert!(steps[0].starts_with("1. data of tenants/alpha: write 300 keys into schema tenants_alpha"), "{dry}");
    let pos =
        |needle: &str| steps.iter().position(|s| s.contains(needle)).unwrap_or_else(|| panic!("{needle} not in {dry}"));
    assert!(pos("apply  DataStore shared-etcd") < pos("Secret tenants/alpha-ca"));
    assert!(pos("Secret tenants/alpha-ca") < pos("TenantControlPlane tenants/alpha"));
    assert!(pos("TenantControlPlane tenants/alpha") < pos("KamajiControlPlane tenants/alpha"));
    assert!(pos("KamajiControlPlane tenants/alpha") < pos("Cluster tenants/alpha"));
    assert!(!dry.contains("beta") && !dry.contains("gamma"), "{dry}");
    assert_eq!(writes_desc(&fresh), Vec::<String>::new(), "--dry-run wrote");

    // --- restore tenants --only alpha
    fresh.clear_requests();
    let out =
        k.ok(&["restore", "tenants", "latest", "--only", "tenants/alpha", "--kubeconfig", &kc, "--interval", "100ms"]);
    assert!(out.contains("restored tenant tenants/alpha: 300 keys"), "{out}");
    assert!(under(&etcd, "/tenants_alpha/").await == alpha_before, "alpha's keys came back one for one");
    assert!(under(&etcd, "/tenants_beta/").await == beta_now, "--only alpha touched beta's keys");
    let writes = fresh.writes();
    assert!(writes.iter().all(|w| w.method != "DELETE"), "a DELETE was sent: {:?}", writes_desc(&fresh));
    let order: Vec<String> = writes
        .iter()
        .map(|w| w.path.rsplit('/').take(2).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("/"))
        .collect();
    let at = |p: &str| order.iter().position(|o| o == p).unwrap_or_else(|| panic!("{p} not applied: {order:?}"));
    // Trap 3: the tenant CA Secret is restored, before the TCP.
    assert!(at("secrets/alpha-ca") < at("tenantcontrolplanes/alpha"), "{order:?}");
    assert!(at("datastores/shared-etcd") < at("secrets/alpha-ca"));
    assert!(
        at("tenantcontrolplanes/alpha") < at("kamajicontrolplanes/alpha")
            && at("kamajicontrolplanes/alpha") < at("clusters/alpha")
    );
    let tcp_apply = writes.iter().find(|w| w.path.ends_with("tenantcontrolplanes/alpha")).unwrap();
    assert_eq!(tcp_apply.method, "PATCH");
    assert_eq!(tcp_apply.content_type, "application/apply-patch+yaml");
    assert_eq!(tcp_apply.query["fieldManager"], "kmdr");
    assert_eq!(tcp_apply.query["force"], "true");
    // Trap 1 again, on the wire: the applied TCP names the old schema; nothing server-set.
    assert_eq!(tcp_apply.body["spec"]["dataStoreSchema"], "tenants_alpha");
    assert_eq!(tcp_apply.body["spec"]["dataStoreUsername"], "tenants_alpha");
    let meta = tcp_apply.body["metadata"].as_object().unwrap();
    for f in ["uid", "resourceVersion", "managedFields", "creationTimestamp", "ownerReferences", "generation"] {
        assert!(!meta.contains_key(f), "applied TCP carries metadata.{f}");
    }
    assert!(tcp_apply.body.get("status").is_none());
    let ca = fresh.object("Secret", "tenants", "alpha-ca").expect("the CA Secret is restored");
    assert_eq!(ca["data"]["tls.crt"], b64("cert of alpha-ca"));
    assert!(fresh.object("Secret", "tenants", "beta-ca").is_none(), "--only alpha restored beta's Secret");
    assert_eq!(
        fresh.object("TenantControlPlane", "tenants", "alpha").unwrap()["status"]["kubernetesResources"]["version"]["status"],
        "Ready"
    );

    // --- gamma (PostgreSQL): data round-trips through the backed-up DataStore and its Secret.
    let out =
        k.ok(&["restore", "tenants", "latest", "--only", "tenants/gamma", "--kubeconfig", &kc, "--interval", "100ms"]);
    assert!(out.contains("restored tenant tenants/gamma: 80 keys"), "{out}");
    let again = k.json(&["backup", "tenant", "--datastore", &pg.url(), "--schema", "tenants_gamma"]);
    assert_eq!(
        again[0]["source"]["content_sha256"].as_str().unwrap(),
        gamma_hash,
        "gamma's data round-trips through PostgreSQL"
    );
    assert!(
        fresh.object("Secret", "kamaji-system", "pg-creds").is_some(),
        "the DataStore's credentials Secret was created"
    );
    assert!(fresh.writes().iter().all(|w| w.method != "DELETE"));

    // Restoring alpha again: its data is there now, refused without --force.
    let err = k.fails(&["restore", "tenants", "latest", "--only", "tenants/alpha", "--kubeconfig", &kc], 8);
    assert!(err.contains("--force"), "{err}");

    // --- the under cluster is rebuilt but the datastore survived, with changes newer than the backup:
    // --manifests-only keeps the data and applies the manifests.
    etcd.client().await.put("/tenants_alpha/configmaps/default/after-backup", "newer", None).await.unwrap();
    let alpha_now = under(&etcd, "/tenants_alpha/").await;
    let rebuilt = FakeKube::with_fixtures(d, &fresh_fixtures(true));
    let rkc = kubeconfig(&rebuilt, d, "rebuilt");
    let dry = k.ok(&[
        "restore",
        "tenants",
        "latest",
        "--only",
        "tenants/alpha",
        "--manifests-only",
        "--dry-run",
        "--kubeconfig",
        &rkc,
    ]);
    assert!(dry.contains("data of tenants/alpha: keep the 301 keys schema tenants_alpha holds"), "{dry}");
    let out = k.ok(&[
        "restore",
        "tenants",
        "latest",
        "--only",
        "tenants/alpha",
        "--manifests-only",
        "--kubeconfig",
        &rkc,
        "--interval",
        "100ms",
    ]);
    assert!(out.contains("restored tenant tenants/alpha: kept the 301 keys"), "{out}");
    assert!(under(&etcd, "/tenants_alpha/").await == alpha_now, "--manifests-only changed the data");
    assert!(
        rebuilt.object("TenantControlPlane", "tenants", "alpha").is_some()
            && rebuilt.object("Secret", "tenants", "alpha-ca").is_some()
    );
    // ... and is refused where the schema holds nothing: the API server would start on an empty datastore.
    let empty = FakeKube::with_fixtures(d, &fresh_fixtures(true));
    let ekc = kubeconfig(&empty, d, "empty");
    etcd.client().await.delete("/tenants_alpha/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
    let err = k.fails(
        &["restore", "tenants", "latest", "--only", "tenants/alpha", "--manifests-only", "--kubeconfig", &ekc],
        8,
    );
    assert!(err.contains("holds no keys") && err.contains("Drop --manifests-only"), "{err}");
    assert_eq!(writes_desc(&empty), Vec::<String>::new());
    assert_eq!(
        k.run(&["restore", "tenants", "latest", "--manifests-only", "--force", "--kubeconfig", &ekc]).status.code(),
        Some(2)
    );
}

#[tokio::test]
async fn wait_for_ready_times_out_and_watch_waits_for_health() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let etcd = Etcd::start(d, "shared");
    etcd.load("/tenants_alpha/pods/default/web-", 50, 100, 1).await;
    let k = Kmdr::local(d);
    k.init();
    let fx = json!({"objects": [
        {"apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "DataStore", "metadata": {"name": "shared-etcd"},
         "spec": {"driver": "etcd", "endpoints": [host_port(&etcd.client_url)]}},
        {"apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "TenantControlPlane", "metadata": {"name": "alpha", "namespace": "tenants"},
         "spec": {"dataStore": "shared-etcd", "dataStoreSchema": "tenants_alpha", "dataStoreUsername": "tenants_alpha"},
         "status": {"kubernetesResources": {"version": {"status": "Ready"}}}},
    ]});
    let old = FakeKube::with_fixtures(d, &fx);
    let old_kc = kubeconfig(&old, d, "old");
    let m = k.json(&["backup", "tenants", "tenants/alpha", "--kubeconfig", &old_kc]);
    // An unknown TCP: not found, 5, naming the ones there.
    let err = k.fails(&["backup", "tenants", "tenants/nope", "--kubeconfig", &old_kc], 5);
    assert!(err.contains("tenants/alpha"), "{err}");
    etcd.client().await.delete("/tenants_alpha/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();

    // A Kamaji that never makes the TCP Ready: exit 11 after --timeout, the data and manifests in place.
    let stuck = FakeKube::with_fixtures(d, &fresh_fixtures(false));
    let kc = kubeconfig(&stuck, d, "stuck");

    // Data before manifests: the tenant's records are damaged in the
    // repository, so writing the data fails after every check passed; no
    // manifest may have been sent.
    let records =
        m["files"].as_array().unwrap().iter().find(|f| f["name"] == "tenants/tenants/alpha/records").unwrap().clone();
    let mut saved = Vec::new();
    for c in records["chunks"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        let path = Path::new(&k.repo).join("data").join(&id[..2]).join(id);
        let orig = std::fs::read(&path).unwrap();
        let mut bad = orig.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        std::fs::write(&path, bad).unwrap();
        saved.push((path, orig));
    }
    let err = k.fails(&["restore", "tenants", "latest", "-q", "--kubeconfig", &kc], 7);
    assert!(err.contains("tenants_alpha") || err.contains("damaged") || err.contains("failed its checks"), "{err}");
    assert_eq!(writes_desc(&stuck), Vec::<String>::new(), "a manifest was applied although the data was not restored");
    for (path, orig) in saved {
        std::fs::write(path, orig).unwrap();
    }
    let err = k.fails(
        &["restore", "tenants", "latest", "-q", "--kubeconfig", &kc, "--timeout", "2s", "--interval", "200ms"],
        11,
    );
    assert!(err.contains("TenantControlPlanes not Ready after 2") && err.contains("tenants/alpha"), "{err}");
    assert_eq!(under(&etcd, "/tenants_alpha/").await.len(), 50);
    assert!(stuck.object("TenantControlPlane", "tenants", "alpha").is_some());

    // watch: a pod Pending, flipped to Running by the fake 1 s later, a TCP not Ready flipped too.
    let watch_fx = json!({"objects": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kamaji-0", "namespace": "kamaji-system"}, "status": {"phase": "Pending"}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "job-1", "namespace": "kmetal-system"}, "status": {"phase": "Succeeded"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sh.helm.release.v1.kmetal.v1", "namespace": "kmetal-system",
         "labels": {"owner": "helm", "name": "kmetal", "version": "1", "status": "deployed"}}, "type": "helm.sh/release.v1"},
        {"apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "TenantControlPlane", "metadata": {"name": "alpha", "namespace": "tenants"},
         "spec": {}, "status": {"kubernetesResources": {"version": {"status": "Provisioning"}}}},
    ], "rules": [
        {"kind": "Pod", "on": "start", "match": {"metadata.name": "kamaji-0"}, "afterMs": 1000, "set": {"status.phase": "Running"}},
        {"kind": "TenantControlPlane", "on": "start", "afterMs": 1200, "set": {"status.kubernetesResources.version.status": "Ready"}},
    ]});
    let w = FakeKube::with_fixtures(d, &watch_fx);
    let wkc = kubeconfig(&w, d, "watch");
    let o = k.run(&[
        "watch",
        "--until-healthy",
        "--timeout",
        "30s",
        "--interval",
        "200ms",
        "--kubeconfig",
        &wkc,
        "-o",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let snaps: Vec<Value> =
        String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(snaps.len() >= 2, "one snapshot per line, several before healthy: {}", snaps.len());
    assert_eq!(snaps[0]["healthy"], false);
    assert_eq!(snaps[0]["pods_not_ready"]["kamaji-system"][0]["name"], "kamaji-0");
    assert!(snaps[0]["pods_not_ready"].get("kmetal-system").is_none(), "a Completed pod counted as not ready");
    let last = snaps.last().unwrap();
    assert_eq!(last["healthy"], true);
    assert_eq!(last["tenant_control_planes"][0]["status"], "Ready");
    assert_eq!(
        last["helm_releases"],
        json!([{"name": "kmetal-system/kmetal", "status": "revision 1 deployed", "healthy": true}])
    );

    // Never healthy: exit 11 at --timeout, naming what is wrong.
    let never = FakeKube::with_fixtures(
        d,
        &json!({"objects": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crash", "namespace": "x"},
        "status": {"phase": "Running", "containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}]}),
    );
    let nkc = kubeconfig(&never, d, "never");
    let err =
        k.fails(&["watch", "--until-healthy", "--timeout", "1s", "--interval", "200ms", "--kubeconfig", &nkc], 11);
    assert!(err.contains("pod x/crash CrashLoopBackOff"), "{err}");
    // A dead API: 6, for watch and for restore tenants.
    let err = k.fails(&["watch", "--until-healthy", "--kubeconfig", &nkc, "--context", "dead"], 6);
    assert!(err.contains("cannot reach the Kubernetes API at http://127.0.0.1:1"), "{err}");
    k.fails(&["restore", "tenants", "latest", "--kubeconfig", &nkc, "--context", "dead"], 6);
    never.go_down();
    k.fails(&["watch", "--kubeconfig", &nkc], 6);
}
