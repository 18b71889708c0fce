//! `kmdr backup tenants` / `kmdr restore tenants` against a REAL API server
//! (kube-apiserver 1.34 with Kamaji v1.0.0's and Cluster API's own CRDs) and a
//! real etcd holding the tenants' data. The test plays Kamaji's controller: it
//! sets each TenantControlPlane's status through the status subresource, the
//! schema named as Kamaji v1.0.0 names it. What kmdr asked the server for is
//! read from the server's audit log.
//!
//! Kamaji v1.0.0's TenantControlPlane has no `spec.dataStoreSchema`: the
//! server refuses a TCP that carries it, and Kamaji names the schema
//! `NS_NAME` itself. So the restore applies the TCP without it when that is
//! the backed-up schema, and refuses (exit 8, nothing written) when not.

use crate::common;
use crate::common::b64;

use common::real_kube::{self, Audited, audit_mark, delete, get, kmdr_requests, patch_status, put, writes};
use common::{Kmdr, under};
use kmdr_testkit::{Etcd, KubeApiServer};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const NS: &str = "tr-tenants";
const DS: &str = "tr-etcd";
const TCPS: &str = "/apis/kamaji.clastix.io/v1alpha1/namespaces/tr-tenants/tenantcontrolplanes";

fn tcp(name: &str, cluster: bool) -> Value {
    let mut meta = json!({"name": name, "namespace": NS, "labels": {"tenant": name}});
    if cluster {
        meta["labels"]["cluster.x-k8s.io/cluster-name"] = json!(name);
    }
    json!({
        "apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "TenantControlPlane", "metadata": meta,
        "spec": {"dataStore": DS, "controlPlane": {"service": {"serviceType": "ClusterIP"}},
                 "kubernetes": {"version": "v1.34.4", "kubelet": {}}},
    })
}

/// The status Kamaji's controller writes once a TCP is set up and serving.
fn ready_status(schema: &str) -> Value {
    json!({
        "storage": {"driver": "etcd", "dataStoreName": DS, "setup": {"schema": schema, "user": schema}},
        "kubernetesResources": {"version": {"version": "v1.34.4", "status": "Ready"}},
    })
}

fn secret(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}, "type": "Opaque",
           "data": {"tls.crt": b64(&format!("cert of {name}"))}})
}

/// Kamaji v1.0.0's controller, as far as kmdr sees it: every TCP of the
/// namespace not yet Ready is set up on `status.storage.setup` (what it holds
/// already, else `NS_NAME` with `-` made `_`, datastore_storage_config.go)
/// and reported Ready, 300 ms after it is first seen. Stops with the flag.
fn kamaji_controller(s: &'static KubeApiServer, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut seen: std::collections::BTreeMap<String, Instant> = Default::default();
        while !stop.load(Ordering::Relaxed) {
            for t in get(s, TCPS).and_then(|l| l["items"].as_array().cloned()).unwrap_or_default() {
                let name = t["metadata"]["name"].as_str().unwrap().to_string();
                if t["status"]["kubernetesResources"]["version"]["status"] == "Ready" {
                    continue;
                }
                let first =
                    *seen.entry(t["metadata"]["uid"].as_str().unwrap().to_string()).or_insert_with(Instant::now);
                if first.elapsed() < Duration::from_millis(300) {
                    continue;
                }
                let schema = t["status"]["storage"]["setup"]["schema"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{NS}_{name}").replace('-', "_"));
                // A TCP deleted meanwhile: the next round will not see it.
                let _ = patch_status(s, &format!("{TCPS}/{name}"), &ready_status(&schema));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

fn tcp_path(name: &str) -> String {
    format!("{TCPS}/{name}")
}

fn rv(v: &Value) -> String {
    v["metadata"]["resourceVersion"].as_str().unwrap().to_string()
}

fn kmdr_writes(s: &KubeApiServer, mark: usize) -> Vec<Audited> {
    writes(&kmdr_requests(s, mark, &[NS], &[DS]))
}

/// A tenant etcd, a repository, the tenants' namespace and an etcd DataStore
/// in front of that etcd; returns the etcd, kmdr and the kubeconfig.
fn under_cluster(s: &KubeApiServer, d: &std::path::Path, name: &str, ns: &str, ds: &str) -> (Etcd, Kmdr, String) {
    let etcd = Etcd::start(d, name);
    let k = Kmdr::local(d);
    k.init();
    s.create_namespace(ns).unwrap();
    let endpoint = etcd.client_url.trim_start_matches("http://").to_string();
    put(
        s,
        "datastores",
        &json!({"apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "DataStore",
        "metadata": {"name": ds}, "spec": {"driver": "etcd", "endpoints": [endpoint]}}),
    );
    (etcd, k, s.kubeconfig.display().to_string())
}

#[tokio::test]
async fn tenants_round_trip_on_a_real_api_server_with_kamaji_1_0_crds() {
    need_etcd!();
    let Some(s) = real_kube::server() else { return };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // --- the under-cluster as it was
    let (etcd, k, kc) = under_cluster(s, d, "tr-shared", NS, DS);
    // Schemas as Kamaji v1.0.0 named them: NS_NAME, `-` made `_`. gamma's was
    // named otherwise (by a later Kamaji, after its UID): v1.0.0 cannot give it back.
    etcd.load("/tr_tenants_alpha/pods/default/web-", 300, 400, 1).await;
    etcd.load("/tr_tenants_beta/configmaps/kube-system/cm-", 120, 200, 2).await;
    etcd.load("/kamaji_6f1c2a/secrets/default/s-", 40, 100, 3).await;
    for (name, schema, cluster) in
        [("alpha", "tr_tenants_alpha", true), ("beta", "tr_tenants_beta", false), ("gamma", "kamaji_6f1c2a", false)]
    {
        put(s, "tenantcontrolplanes", &tcp(name, cluster));
        patch_status(s, &tcp_path(name), &ready_status(schema)).unwrap();
    }
    put(
        s,
        "clusters",
        &json!({"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster",
        "metadata": {"name": "alpha", "namespace": NS}, "spec": {"paused": true}}),
    );
    for name in ["alpha-ca", "alpha-admin-kubeconfig", "beta-ca", "gamma-ca", "unrelated"] {
        put(s, "secrets", &secret(name));
    }

    // --- backup tenants: everything read through the real API; nothing written.
    let mark = audit_mark(s);
    let t0 = Instant::now();
    let m =
        k.json(&["backup", "tenants", "tr-tenants/alpha", "tr-tenants/beta", "tr-tenants/gamma", "--kubeconfig", &kc]);
    let backup_took = t0.elapsed();
    let tenants = m["source"]["tenants"].as_array().unwrap();
    let alpha = &tenants[0];
    assert_eq!(alpha["name"], "alpha");
    assert_eq!(alpha["schema"], "tr_tenants_alpha", "from status.storage.setup: the CRD has no spec field");
    assert_eq!(alpha["filled_from_status"], json!(["dataStoreSchema", "dataStoreUsername"]));
    assert_eq!(alpha["capi_cluster"], "alpha");
    assert_eq!(alpha["secrets"], json!(["alpha-admin-kubeconfig", "alpha-ca"]));
    assert_eq!(alpha["data"]["key_count"], 300);
    assert_eq!(tenants[2]["schema"], "kamaji_6f1c2a");
    let files: Vec<&str> = m["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(files.contains(&"tenants/tr-tenants/alpha/cluster.yaml"), "{files:?}");
    assert!(!files.iter().any(|f| f.contains("unrelated")), "{files:?}");
    assert_eq!(kmdr_writes(s, mark), vec![], "the backup wrote to the cluster");

    // --- the disaster: alpha and gamma are gone, objects and data; beta lives on and changes.
    let alpha_before = under(&etcd, "/tr_tenants_alpha/").await;
    let mut c = etcd.client().await;
    for p in ["/tr_tenants_alpha/", "/kamaji_6f1c2a/"] {
        c.delete(p, Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
    }
    c.put("/tr_tenants_beta/configmaps/kube-system/new-after-backup", "v", None).await.unwrap();
    let beta_now = under(&etcd, "/tr_tenants_beta/").await;
    for name in ["alpha", "gamma"] {
        delete(s, &tcp_path(name));
    }
    for name in ["alpha-ca", "alpha-admin-kubeconfig", "gamma-ca"] {
        delete(s, &format!("/api/v1/namespaces/{NS}/secrets/{name}"));
    }
    delete(s, &format!("/apis/cluster.x-k8s.io/v1beta1/namespaces/{NS}/clusters/alpha"));
    delete(s, &format!("/apis/kamaji.clastix.io/v1alpha1/datastores/{DS}"));
    let beta_tcp = get(s, &tcp_path("beta")).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let kamaji = kamaji_controller(s, stop.clone());

    // Refused: a TCP alpha exists and Kamaji set it up on another schema (the
    // dashed name of Kamaji before issue 328). Exit 8, nothing written.
    put(s, "tenantcontrolplanes", &tcp("alpha", true));
    patch_status(s, &tcp_path("alpha"), &ready_status("tr-tenants_alpha")).unwrap();
    let squatter = get(s, &tcp_path("alpha")).unwrap();
    let mark = audit_mark(s);
    let err = k.fails(&["restore", "tenants", "latest", "--only", "tr-tenants/alpha", "--kubeconfig", &kc], 8);
    assert!(
        err.contains("refusing to restore TenantControlPlane tr-tenants/alpha")
            && err.contains("\"tr-tenants_alpha\"")
            && err.contains("\"tr_tenants_alpha\""),
        "{err}"
    );
    assert_eq!(kmdr_writes(s, mark), vec![], "a refused restore wrote");
    assert_eq!(rv(&get(s, &tcp_path("alpha")).unwrap()), rv(&squatter), "the TCP there changed");
    assert!(get(s, &format!("/api/v1/namespaces/{NS}/secrets/alpha-ca")).is_none());
    assert!(under(&etcd, "/tr_tenants_alpha/").await.is_empty(), "a refused restore wrote data");
    delete(s, &tcp_path("alpha"));

    // Refused: gamma's schema is not what Kamaji v1.0.0 would name it, and
    // its CRD has no spec.dataStoreSchema to say so. The whole restore stops
    // before any write, alpha's and beta's included.
    let mark = audit_mark(s);
    let err = k.fails(&["restore", "tenants", "latest", "--force", "--kubeconfig", &kc], 8);
    assert!(
        err.contains("refusing to restore TenantControlPlane tr-tenants/gamma")
            && err.contains("has no spec.dataStoreSchema")
            && err.contains("\"tr_tenants_gamma\"")
            && err.contains("\"kamaji_6f1c2a\"")
            && err.contains("Upgrade Kamaji"),
        "{err}"
    );
    assert_eq!(kmdr_writes(s, mark), vec![], "a refused restore wrote");
    assert!(under(&etcd, "/kamaji_6f1c2a/").await.is_empty() && under(&etcd, "/tr_tenants_alpha/").await.is_empty());
    assert_eq!(under(&etcd, "/tr_tenants_beta/").await, beta_now);

    // --dry-run: the plan says the TCP goes without the two fields, and why.
    let mark = audit_mark(s);
    let dry = k.ok(&["restore", "tenants", "latest", "--only", "tr-tenants/alpha", "--dry-run", "--kubeconfig", &kc]);
    let steps: Vec<&str> = dry.lines().filter(|l| l.starts_with("  ")).map(str::trim).collect();
    assert!(steps[0].starts_with("1. data of tr-tenants/alpha: write 300 keys into schema tr_tenants_alpha"), "{dry}");
    let pos =
        |needle: &str| steps.iter().position(|s| s.contains(needle)).unwrap_or_else(|| panic!("{needle} not in {dry}"));
    assert!(pos("apply  DataStore tr-etcd") < pos("Secret tr-tenants/alpha-ca"));
    assert!(pos("Secret tr-tenants/alpha-ca") < pos("TenantControlPlane tr-tenants/alpha"));
    assert!(pos("TenantControlPlane tr-tenants/alpha") < pos("Cluster tr-tenants/alpha"));
    let tcp_step = steps[pos("TenantControlPlane tr-tenants/alpha")];
    assert!(
        tcp_step.contains("without spec.dataStoreSchema/dataStoreUsername")
            && tcp_step.contains("derives schema tr_tenants_alpha"),
        "{tcp_step}"
    );
    let plan =
        k.json(&["restore", "tenants", "latest", "--only", "tr-tenants/alpha", "--dry-run", "--kubeconfig", &kc]);
    assert_eq!(plan["plan"]["tenants"][0]["schema_mode"], "derived-by-kamaji");
    assert_eq!(kmdr_writes(s, mark), vec![], "--dry-run wrote");

    // --- restore tenants --only alpha: data, then the manifests by real
    // server-side apply, then the wait for Kamaji (the test) to report Ready.
    let mark = audit_mark(s);
    let t0 = Instant::now();
    let o = k.run(&[
        "restore",
        "tenants",
        "latest",
        "--only",
        "tr-tenants/alpha",
        "--kubeconfig",
        &kc,
        "--interval",
        "100ms",
    ]);
    let restore_took = t0.elapsed();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(out.contains("restored tenant tr-tenants/alpha: 300 keys into schema tr_tenants_alpha"), "{out}");
    assert!(err.contains("TenantControlPlane tr-tenants/alpha: Ready"), "the wait saw Kamaji report Ready: {err}");
    assert!(under(&etcd, "/tr_tenants_alpha/").await == alpha_before, "alpha's keys came back one for one");
    assert_eq!(under(&etcd, "/tr_tenants_beta/").await, beta_now, "--only alpha touched beta's keys");

    let requests = kmdr_requests(s, mark, &[NS], &[DS]);
    assert!(requests.iter().all(|r| r.verb != "delete"), "a DELETE was sent: {requests:?}");
    let w = writes(&requests);
    let at = |object: &str| {
        w.iter()
            .position(|r| r.object == object && r.verb == "patch" && (200..300).contains(&r.code))
            .unwrap_or_else(|| panic!("{object} not applied: {w:?}"))
    };
    assert!(at(&format!("datastores/{DS}")) < at("secrets/alpha-ca"), "{w:?}");
    assert!(at("secrets/alpha-ca") < at("tenantcontrolplanes/alpha"), "the CA Secret before the TCP: {w:?}");
    assert!(at("secrets/alpha-admin-kubeconfig") < at("tenantcontrolplanes/alpha"), "{w:?}");
    assert!(at("tenantcontrolplanes/alpha") < at("clusters/alpha"), "{w:?}");
    assert!(
        !w.iter().any(|r| r.object.contains("beta") || r.object.contains("gamma")),
        "--only alpha wrote beta or gamma: {w:?}"
    );
    assert!(!w.iter().any(|r| r.object.ends_with("/status")), "kmdr wrote a status: {w:?}");

    // What the server holds: the TCP as applied by kmdr (no schema fields:
    // its CRD has none), set up by Kamaji on the backed-up schema.
    let alpha_tcp = get(s, &tcp_path("alpha")).unwrap();
    assert!(alpha_tcp["spec"].get("dataStoreSchema").is_none() && alpha_tcp["spec"].get("dataStoreUsername").is_none());
    assert_eq!(alpha_tcp["spec"]["dataStore"], DS);
    assert_eq!(alpha_tcp["status"]["storage"]["setup"]["schema"], "tr_tenants_alpha");
    assert_eq!(alpha_tcp["status"]["kubernetesResources"]["version"]["status"], "Ready");
    let managers: Vec<(&str, &str)> = alpha_tcp["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["manager"].as_str().unwrap(), f["operation"].as_str().unwrap()))
        .collect();
    assert!(managers.contains(&("kmdr", "Apply")), "applied by kmdr's field manager: {managers:?}");
    assert!(alpha_tcp["metadata"].get("ownerReferences").is_none());
    let ca = get(s, &format!("/api/v1/namespaces/{NS}/secrets/alpha-ca")).expect("the CA Secret is restored");
    assert_eq!(ca["data"]["tls.crt"], b64("cert of alpha-ca"));
    assert!(get(s, &format!("/apis/cluster.x-k8s.io/v1beta1/namespaces/{NS}/clusters/alpha")).is_some());
    let ds = get(s, &format!("/apis/kamaji.clastix.io/v1alpha1/datastores/{DS}")).unwrap();
    assert_eq!(ds["spec"]["endpoints"], json!([etcd.client_url.trim_start_matches("http://")]));
    assert_eq!(rv(&get(s, &tcp_path("beta")).unwrap()), rv(&beta_tcp), "--only alpha touched beta's TCP");
    assert!(get(s, &tcp_path("gamma")).is_none(), "--only alpha restored gamma");
    assert!(get(s, &format!("/api/v1/namespaces/{NS}/secrets/gamma-ca")).is_none());

    // Restoring alpha again over itself: the TCP there now has the same
    // schema, so it is applied over (no refusal); its data is replaced with --force.
    let o = k.run(&[
        "restore",
        "tenants",
        "latest",
        "--only",
        "tr-tenants/alpha",
        "--force",
        "--kubeconfig",
        &kc,
        "--interval",
        "100ms",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));

    stop.store(true, Ordering::Relaxed);
    kamaji.join().unwrap();
    eprintln!(
        "tenants on the real API server: backup {:.1}s, restore of alpha {:.1}s, whole test {:.1}s",
        backup_took.as_secs_f64(),
        restore_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn a_tenant_control_plane_never_reported_ready_times_out_with_its_manifests_applied() {
    need_etcd!();
    let Some(s) = real_kube::server() else { return };
    const NS2: &str = "tr-stuck";
    const DS2: &str = "tr-stuck-etcd";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (etcd, k, kc) = under_cluster(s, d, "tr-stuck", NS2, DS2);
    etcd.load("/tr_stuck_delta/pods/default/p-", 20, 100, 4).await;
    let mut t = tcp("delta", false);
    t["metadata"]["namespace"] = json!(NS2);
    t["spec"]["dataStore"] = json!(DS2);
    put(s, "tenantcontrolplanes", &t);
    let path = format!("/apis/kamaji.clastix.io/v1alpha1/namespaces/{NS2}/tenantcontrolplanes/delta");
    let mut status = ready_status("tr_stuck_delta");
    status["storage"]["dataStoreName"] = json!(DS2);
    patch_status(s, &path, &status).unwrap();
    k.ok(&["backup", "tenants", "tr-stuck/delta", "--kubeconfig", &kc]);

    delete(s, &path);
    etcd.client()
        .await
        .delete("/tr_stuck_delta/", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    // No Kamaji now: nothing ever reports the TCP Ready.
    let err = k.fails(
        &["restore", "tenants", "latest", "-q", "--kubeconfig", &kc, "--timeout", "2s", "--interval", "200ms"],
        11,
    );
    assert!(err.contains("TenantControlPlanes not Ready after 2") && err.contains("tr-stuck/delta (-)"), "{err}");
    assert_eq!(under(&etcd, "/tr_stuck_delta/").await.len(), 20, "the data is restored");
    let applied = get(s, &path).expect("the TCP is applied");
    assert!(applied["spec"].get("dataStoreSchema").is_none());
    assert_eq!(applied["status"], Value::Null, "no status until a controller sets one");
}

/// A server of the test's own with every CRD of KMDR_CRDS_DIR: `backup
/// tenants --all` reads every TCP of the cluster, and the shared server holds
/// other tests' TCPs.
fn own_server(dir: &std::path::Path) -> Option<KubeApiServer> {
    real_kube::server()?;
    let s = KubeApiServer::start(&dir.join("apiserver"));
    s.apply_crds(std::path::Path::new(&std::env::var_os("KMDR_CRDS_DIR").unwrap())).unwrap();
    Some(s)
}

/// `--all`, a PostgreSQL tenant behind a DataStore whose password is in a
/// Secret, and the guards around the data: data before manifests (an
/// unreachable datastore, damaged records: no manifest applied), no
/// overwrite without --force, --manifests-only (kept data; refused on an
/// empty schema), an unknown TCP, an unreachable API server.
#[tokio::test]
async fn tenants_all_postgres_and_the_data_guards_on_a_real_api_server() {
    need_etcd!();
    if !kmdr_testkit::need("initdb") {
        return;
    }
    const NS3: &str = "tg-tenants";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(server) = own_server(d) else { return };
    let server = Arc::new(server);
    let s: &KubeApiServer = &server;
    let tcps = format!("/apis/kamaji.clastix.io/v1alpha1/namespaces/{NS3}/tenantcontrolplanes");
    let etcd = Etcd::start(d, "tg-shared");
    let pg = kmdr_testkit::Postgres::start(d);
    let k = Kmdr::local(d);
    k.init();
    let kc = s.kubeconfig.display().to_string();
    s.create_namespace(NS3).unwrap();
    etcd.load("/tg_tenants_alpha/pods/default/web-", 60, 200, 1).await;
    etcd.load("/tg_tenants_gamma/secrets/default/s-", 30, 150, 3).await;
    // gamma lives in PostgreSQL (kine): move its keys there.
    let m = k.json(&[
        "backup",
        "tenant",
        "--datastore",
        &etcd.client_url.replace("http://", "etcd://"),
        "--schema",
        "tg_tenants_gamma",
    ]);
    let gamma_hash = m[0]["source"]["content_sha256"].as_str().unwrap().to_string();
    k.ok(&["restore", "tenant", m[0]["id"].as_str().unwrap(), "--datastore", &pg.url()]);
    etcd.client()
        .await
        .delete("/tg_tenants_gamma/", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .unwrap();

    let pg_endpoint = pg.url().rsplit('@').next().unwrap().split('/').next().unwrap().to_string();
    let datastores = [
        json!({"apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "DataStore", "metadata": {"name": "tg-etcd"},
               "spec": {"driver": "etcd", "endpoints": [etcd.client_url.trim_start_matches("http://")]}}),
        json!({"apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "DataStore", "metadata": {"name": "tg-pg"},
               "spec": {"driver": "PostgreSQL", "endpoints": [pg_endpoint],
                        "basicAuth": {"username": {"content": b64("kmdr")},
                                      "password": {"secretReference": {"name": "pg-creds", "namespace": NS3, "keyPath": "password"}}}}}),
    ];
    let put_all = || {
        for ds in &datastores {
            put(s, "datastores", ds);
        }
        put(
            s,
            "secrets",
            &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pg-creds", "namespace": NS3},
                    "data": {"password": b64("kmdr-test-pw")}}),
        );
    };
    put_all();
    let status = |ds: &str, driver: &str, schema: &str| {
        json!({"storage": {"driver": driver, "dataStoreName": ds, "setup": {"schema": schema, "user": schema}},
               "kubernetesResources": {"version": {"version": "v1.34.4", "status": "Ready"}}})
    };
    let tenant = |name: &str, ds: &str| {
        let mut t = tcp(name, false);
        t["metadata"]["namespace"] = json!(NS3);
        t["spec"]["dataStore"] = json!(ds);
        t
    };
    for (name, ds, driver) in [("alpha", "tg-etcd", "etcd"), ("gamma", "tg-pg", "PostgreSQL")] {
        put(s, "tenantcontrolplanes", &tenant(name, ds));
        patch_status(s, &format!("{tcps}/{name}"), &status(ds, driver, &format!("tg_tenants_{name}"))).unwrap();
        let mut sec = secret(&format!("{name}-ca"));
        sec["metadata"]["namespace"] = json!(NS3);
        put(s, "secrets", &sec);
    }
    let requests = |mark: usize| writes(&kmdr_requests(s, mark, &[NS3], &["tg-etcd", "tg-pg"]));

    // --- backup tenants --all
    let mark = audit_mark(s);
    let m = k.json(&["backup", "tenants", "--all", "--kubeconfig", &kc]);
    assert_eq!(requests(mark), vec![], "the backup wrote to the cluster");
    let tenants = m["source"]["tenants"].as_array().unwrap();
    let names: Vec<&str> = tenants.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "gamma"]);
    assert_eq!(tenants[0]["data"]["driver"], "etcd");
    assert_eq!(tenants[1]["data"]["driver"], "postgres");
    assert_eq!(
        tenants[1]["data"]["content_sha256"].as_str().unwrap(),
        gamma_hash,
        "gamma's data read from PostgreSQL through the DataStore's Secret"
    );
    let files: Vec<&str> = m["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    for f in [
        "datastores/tg-pg/datastore.yaml",
        "datastores/tg-pg/secrets/tg-tenants/pg-creds.yaml",
        "datastores/tg-etcd/datastore.yaml",
        "tenants/tg-tenants/alpha/records",
        "tenants/tg-tenants/alpha/secrets/alpha-ca.yaml",
    ] {
        assert!(files.contains(&f), "{f} missing from {files:?}");
    }
    let stored = k.ok(&["backups", "show", "latest", "-o", "json"]);
    assert!(
        !stored.contains("kmdr-test-pw") && !stored.contains(&b64("kmdr-test-pw")),
        "a secret value in the manifest"
    );
    // An unknown TCP: not found, 5, naming the ones there.
    let err = k.fails(&["backup", "tenants", "tg-tenants/nope", "--kubeconfig", &kc], 5);
    assert!(err.contains("tg-tenants/alpha"), "{err}");

    // --- the disaster: a rebuilt cluster without the objects; alpha's and gamma's data gone.
    for name in ["alpha", "gamma"] {
        delete(s, &format!("{tcps}/{name}"));
        delete(s, &format!("/api/v1/namespaces/{NS3}/secrets/{name}-ca"));
    }
    delete(s, &format!("/api/v1/namespaces/{NS3}/secrets/pg-creds"));
    for ds in ["tg-etcd", "tg-pg"] {
        delete(s, &format!("/apis/kamaji.clastix.io/v1alpha1/datastores/{ds}"));
    }
    let alpha_before = under(&etcd, "/tg_tenants_alpha/").await;
    etcd.client()
        .await
        .delete("/tg_tenants_alpha/", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    pg.psql("postgres", "DROP DATABASE tg_tenants_gamma");

    // Data before manifests: the datastore cannot be reached; no manifest applied.
    let mark = audit_mark(s);
    let err = k.fails(
        &[
            "restore",
            "tenants",
            "latest",
            "--only",
            "tg-tenants/alpha",
            "--kubeconfig",
            &kc,
            "--datastore-endpoint",
            "tg-etcd=127.0.0.1:1",
        ],
        6,
    );
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert_eq!(requests(mark), vec![], "a manifest was applied although the data was not written");
    // Data before manifests: alpha's records are damaged in the repository.
    let records = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "tenants/tg-tenants/alpha/records")
        .unwrap()
        .clone();
    let mut saved = Vec::new();
    for c in records["chunks"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        let path = std::path::Path::new(&k.repo).join("data").join(&id[..2]).join(id);
        let orig = std::fs::read(&path).unwrap();
        let mut bad = orig.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        std::fs::write(&path, bad).unwrap();
        saved.push((path, orig));
    }
    let err = k.fails(&["restore", "tenants", "latest", "-q", "--only", "tg-tenants/alpha", "--kubeconfig", &kc], 7);
    assert!(err.contains("tg_tenants_alpha") || err.contains("damaged") || err.contains("failed its checks"), "{err}");
    assert_eq!(requests(mark), vec![], "a manifest was applied although the data was not restored");
    for (path, orig) in saved {
        std::fs::write(path, orig).unwrap();
    }
    // An API server that cannot be reached: 6.
    let dead = d.join("dead-kubeconfig");
    std::fs::write(
        &dead,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: dead\n  cluster: {server: 'http://127.0.0.1:1'}\ncontexts:\n- name: dead\n  context: {cluster: dead, user: u}\ncurrent-context: dead\nusers:\n- name: u\n  user: {token: t}\n",
    )
    .unwrap();
    k.fails(&["restore", "tenants", "latest", "--kubeconfig", &dead.display().to_string()], 6);

    // Kamaji's controller: reports each new TCP Ready on the schema it names.
    let mut seen = real_kube::Seen::default();
    let tcps2 = tcps.clone();
    let s2 = server.clone();
    let kamaji = real_kube::Controller::spawn(move || {
        let s = &*s2;
        for t in real_kube::list(s, &tcps2) {
            if t["status"]["kubernetesResources"]["version"]["status"] == "Ready"
                || !seen.older_than(&t, Duration::from_millis(300))
            {
                continue;
            }
            let name = t["metadata"]["name"].as_str().unwrap();
            let ds = t["spec"]["dataStore"].as_str().unwrap();
            let driver = if ds == "tg-pg" { "PostgreSQL" } else { "etcd" };
            let _ = patch_status(s, &format!("{tcps2}/{name}"), &status(ds, driver, &format!("tg_tenants_{name}")));
        }
    });

    // --- gamma (PostgreSQL): its data through the backed-up DataStore and Secret.
    let mark = audit_mark(s);
    let out = k.ok(&[
        "restore",
        "tenants",
        "latest",
        "--only",
        "tg-tenants/gamma",
        "--kubeconfig",
        &kc,
        "--interval",
        "100ms",
    ]);
    assert!(out.contains("restored tenant tg-tenants/gamma: 30 keys"), "{out}");
    let again = k.json(&["backup", "tenant", "--datastore", &pg.url(), "--schema", "tg_tenants_gamma"]);
    assert_eq!(
        again[0]["source"]["content_sha256"].as_str().unwrap(),
        gamma_hash,
        "gamma round-trips through PostgreSQL"
    );
    let creds = get(s, &format!("/api/v1/namespaces/{NS3}/secrets/pg-creds")).expect("the DataStore's Secret is back");
    assert_eq!(creds["data"]["password"], b64("kmdr-test-pw"));
    assert!(get(s, &format!("{tcps}/alpha")).is_none(), "--only gamma restored alpha");
    assert!(kmdr_requests(s, mark, &[NS3], &["tg-etcd", "tg-pg"]).iter().all(|r| r.verb != "delete"));

    // --- alpha; then again: its data is there now, refused without --force.
    let out = k.ok(&[
        "restore",
        "tenants",
        "latest",
        "--only",
        "tg-tenants/alpha",
        "--kubeconfig",
        &kc,
        "--interval",
        "100ms",
    ]);
    assert!(out.contains("restored tenant tg-tenants/alpha: 60 keys"), "{out}");
    assert!(under(&etcd, "/tg_tenants_alpha/").await == alpha_before);
    let err = k.fails(&["restore", "tenants", "latest", "--only", "tg-tenants/alpha", "--kubeconfig", &kc], 8);
    assert!(err.contains("--force"), "{err}");

    // --- the under cluster rebuilt, the datastore survived with newer keys:
    // --manifests-only keeps the data and applies the manifests.
    etcd.client().await.put("/tg_tenants_alpha/configmaps/default/after-backup", "newer", None).await.unwrap();
    let alpha_now = under(&etcd, "/tg_tenants_alpha/").await;
    delete(s, &format!("{tcps}/alpha"));
    delete(s, &format!("/api/v1/namespaces/{NS3}/secrets/alpha-ca"));
    let only_alpha =
        ["restore", "tenants", "latest", "--only", "tg-tenants/alpha", "--manifests-only", "--kubeconfig", &kc];
    let dry = k.ok(&[&only_alpha[..], &["--dry-run"]].concat());
    assert!(dry.contains("data of tg-tenants/alpha: keep the 61 keys schema tg_tenants_alpha holds"), "{dry}");
    let out = k.ok(&[&only_alpha[..], &["--interval", "100ms"]].concat());
    assert!(out.contains("restored tenant tg-tenants/alpha: kept the 61 keys"), "{out}");
    assert!(under(&etcd, "/tg_tenants_alpha/").await == alpha_now, "--manifests-only changed the data");
    assert_eq!(get(s, &format!("{tcps}/alpha")).expect("the TCP is applied")["spec"]["dataStore"], "tg-etcd");
    assert!(get(s, &format!("/api/v1/namespaces/{NS3}/secrets/alpha-ca")).is_some());
    drop(kamaji);

    // ... refused where the schema holds nothing: the API server would start on an empty datastore.
    delete(s, &format!("{tcps}/alpha"));
    etcd.client()
        .await
        .delete("/tg_tenants_alpha/", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    let mark = audit_mark(s);
    let err = k.fails(&only_alpha, 8);
    assert!(err.contains("holds no keys") && err.contains("Drop --manifests-only"), "{err}");
    assert_eq!(requests(mark), vec![]);
    assert!(get(s, &format!("{tcps}/alpha")).is_none());
    assert_eq!(
        k.run(&["restore", "tenants", "latest", "--manifests-only", "--force", "--kubeconfig", &kc]).status.code(),
        Some(2)
    );
}
