//! `kmdr watch` against a REAL API server (kube-apiserver 1.34 with Kamaji
//! v1.0.0's and Cluster API's own CRDs). Watch looks at the whole cluster
//! (every pod, TenantControlPlane, DataStore, Cluster and Helm release), so
//! this test runs a server of its own rather than the shared one, where other
//! tests' objects come and go.
//!
//! The test plays the controllers as they would report recovery: the kubelet
//! sets a pod Running through the pod's status subresource, Kamaji reports
//! the TenantControlPlane Ready
//! (`status.kubernetesResources.version.status`), Cluster API the Cluster
//! Provisioned. They act only once kmdr has looked at the cluster once, so
//! the first snapshot kmdr prints is the unhealthy one.

use crate::common;

use common::Kmdr;
use common::real_kube::{get, patch_status, put};
use kmdr_testkit::KubeApiServer;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const KAMAJI_NS: &str = "wr-kamaji-system";
const PLATFORM_NS: &str = "wr-kmetal-system";
const TENANTS_NS: &str = "wr-tenants";

/// A server of this test's own with the Kamaji and Cluster API CRDs of
/// KMDR_CRDS_DIR; `None` (skipped) without kube-apiserver or the CRDs.
fn own_server(dir: &std::path::Path) -> Option<KubeApiServer> {
    if !kmdr_testkit::need("kube-apiserver") {
        return None;
    }
    let Some(crds) = std::env::var_os("KMDR_CRDS_DIR") else {
        if kmdr_testkit::require_servers() {
            panic!("KMDR_CRDS_DIR is not set but KMDR_TEST_REQUIRE_SERVERS=1: source scripts/tools-env.sh");
        }
        eprintln!("SKIPPED: KMDR_CRDS_DIR not set (source scripts/tools-env.sh)");
        return None;
    };
    let only = dir.join("crds");
    std::fs::create_dir_all(&only).unwrap();
    for e in std::fs::read_dir(&crds).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("kamaji.clastix.io_") || name.starts_with("cluster.x-k8s.io_") {
            std::fs::copy(e.path(), only.join(&name)).unwrap();
        }
    }
    let s = KubeApiServer::start(&dir.join("apiserver"));
    let installed = s.apply_crds(&only).unwrap();
    assert!(installed.contains(&"tenantcontrolplanes.kamaji.clastix.io".to_string()), "{installed:?}");
    Some(s)
}

/// A namespace with its `default` ServiceAccount (which the
/// ServiceAccount admission plugin requires of a pod; kube-controller-manager,
/// not running here, would create it).
fn namespace(s: &KubeApiServer, ns: &str) {
    s.create_namespace(ns).unwrap();
    put(
        s,
        "serviceaccounts",
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}}),
    );
}

fn pod(s: &KubeApiServer, ns: &str, name: &str, status: Option<Value>) {
    put(
        s,
        "pods",
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
                "spec": {"nodeName": "node-1", "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]}}),
    );
    if let Some(status) = status {
        patch_status(s, &format!("/api/v1/namespaces/{ns}/pods/{name}"), &status).unwrap();
    }
}

/// Whether kmdr (not the test kit's curl) has listed the cluster's Secrets
/// since audit event `mark`: the last read of a health snapshot.
fn kmdr_looked(s: &KubeApiServer, mark: usize) -> bool {
    s.audit_events().iter().skip(mark).any(|e| {
        e["verb"] == "list"
            && e["objectRef"]["resource"] == "secrets"
            && e["user"]["username"] == "kmdr-admin"
            && !e["userAgent"].as_str().is_some_and(|a| a.starts_with("curl/"))
    })
}

fn watch(k: &Kmdr, kubeconfig: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["watch", "--kubeconfig", kubeconfig];
    args.extend_from_slice(extra);
    k.run(&args)
}

#[test]
fn watch_until_healthy_on_a_real_api_server_then_a_crashing_pod_and_a_dead_server() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut server) = own_server(dir.path()) else { return };
    let s: &KubeApiServer = &server;
    let k = Kmdr::local(dir.path());
    let kc = s.kubeconfig.display().to_string();

    // --- the platform after a restore, still coming up
    for ns in [KAMAJI_NS, PLATFORM_NS, TENANTS_NS] {
        namespace(s, ns);
    }
    pod(s, KAMAJI_NS, "kamaji-0", None); // Pending: a new pod's phase
    pod(s, PLATFORM_NS, "job-1", Some(json!({"phase": "Succeeded"})));
    for (version, status) in [("1", "superseded"), ("2", "deployed")] {
        put(
            s,
            "secrets",
            &json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
                "metadata": {"name": format!("sh.helm.release.v1.kmetal.v{version}"), "namespace": PLATFORM_NS,
                             "labels": {"owner": "helm", "name": "kmetal", "version": version, "status": status}},
                "data": {"release": common::b64("H4sI")}}),
        );
    }
    put(
        s,
        "datastores",
        &json!({"apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "DataStore", "metadata": {"name": "wr-etcd"},
                "spec": {"driver": "etcd", "endpoints": ["127.0.0.1:2379"]}}),
    );
    let tcp_path = format!("/apis/kamaji.clastix.io/v1alpha1/namespaces/{TENANTS_NS}/tenantcontrolplanes/alpha");
    put(
        s,
        "tenantcontrolplanes",
        &json!({"apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "TenantControlPlane",
                "metadata": {"name": "alpha", "namespace": TENANTS_NS},
                "spec": {"dataStore": "wr-etcd", "controlPlane": {"service": {"serviceType": "ClusterIP"}},
                         "kubernetes": {"version": "v1.34.4", "kubelet": {}}}}),
    );
    patch_status(
        s,
        &tcp_path,
        &json!({"kubernetesResources": {"version": {"version": "v1.34.4", "status": "Provisioning"}}}),
    )
    .unwrap();
    let cluster_path = format!("/apis/cluster.x-k8s.io/v1beta1/namespaces/{TENANTS_NS}/clusters/alpha");
    put(
        s,
        "clusters",
        &json!({"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster",
                "metadata": {"name": "alpha", "namespace": TENANTS_NS}, "spec": {"paused": true}}),
    );
    patch_status(s, &cluster_path, &json!({"phase": "Provisioning"})).unwrap();

    // --- the controllers: once kmdr has looked, the kubelet starts kamaji-0;
    // 300 ms later Kamaji reports alpha Ready and Cluster API the Cluster Provisioned.
    let mark = s.audit_events().len();
    let stop = AtomicBool::new(false);
    let o = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !kmdr_looked(s, mark) {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            patch_status(s, &format!("/api/v1/namespaces/{KAMAJI_NS}/pods/kamaji-0"), &json!({"phase": "Running"}))
                .unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let ready = json!({"kubernetesResources": {"version": {"version": "v1.34.4", "status": "Ready"}}});
            patch_status(s, &tcp_path, &ready).unwrap();
            patch_status(s, &cluster_path, &json!({"phase": "Provisioned"})).unwrap();
        });
        let o = watch(&k, &kc, &["--until-healthy", "--timeout", "60s", "--interval", "200ms", "-o", "json"]);
        stop.store(true, Ordering::Relaxed);
        o
    });
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let snaps: Vec<Value> =
        String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(snaps.len() >= 2, "one snapshot per line, several before healthy: {}", snaps.len());
    let first = &snaps[0];
    assert_eq!(first["healthy"], false);
    assert_eq!(first["pods"], 2);
    assert_eq!(
        first["pods_not_ready"],
        json!({KAMAJI_NS: [{"name": "kamaji-0", "state": "Pending"}]}),
        "a Completed pod counted as not ready"
    );
    assert_eq!(
        first["tenant_control_planes"],
        json!([{"name": "wr-tenants/alpha", "status": "Provisioning", "healthy": false}])
    );
    assert_eq!(first["clusters"], json!([{"name": "wr-tenants/alpha", "status": "Provisioning", "healthy": false}]));
    let last = snaps.last().unwrap();
    assert_eq!(last["healthy"], true, "{last}");
    assert_eq!(last["pods_not_ready"], json!({}));
    assert_eq!(
        last["tenant_control_planes"],
        json!([{"name": "wr-tenants/alpha", "status": "Ready", "healthy": true}])
    );
    assert_eq!(last["clusters"], json!([{"name": "wr-tenants/alpha", "status": "Provisioned", "healthy": true}]));
    assert_eq!(last["datastores"], json!([{"name": "wr-etcd", "status": "etcd used by 0", "healthy": true}]));
    assert_eq!(
        last["helm_releases"],
        json!([{"name": "wr-kmetal-system/kmetal", "status": "revision 2 deployed", "healthy": true}]),
        "the newest revision of the release"
    );

    // --- a pod crash-looping: never healthy, exit 11 at --timeout, naming it.
    namespace(s, "wr-x");
    pod(
        s,
        "wr-x",
        "crash",
        Some(json!({"phase": "Running", "containerStatuses": [{"name": "main", "image": "registry.k8s.io/pause:3.10",
            "imageID": "", "ready": false, "restartCount": 5, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})),
    );
    let err = k.fails(&["watch", "--until-healthy", "--timeout", "1s", "--interval", "200ms", "--kubeconfig", &kc], 11);
    assert!(err.contains("not healthy after 1.0s") && err.contains("pod wr-x/crash CrashLoopBackOff"), "{err}");
    // Without --until-healthy, --timeout only ends the watch.
    let o = watch(&k, &kc, &["--timeout", "1s", "--interval", "200ms"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("NOT HEALTHY (1 problems)"));
    assert!(get(s, "/api/v1/namespaces/wr-x/pods/crash").is_some());

    // --- the API server dies (kill -9): 6, the server named.
    let url = s.url.clone();
    server.kill();
    let err = k.fails(&["watch", "--until-healthy", "--timeout", "5s", "--kubeconfig", &kc], 6);
    assert!(err.contains(&format!("cannot reach the Kubernetes API at {url}")), "{err}");
}
