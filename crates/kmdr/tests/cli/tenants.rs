//! `kmdr backup tenants` / `kmdr restore tenants` are tested against a real
//! kube-apiserver in tenants_real.rs. What stays here, on the scripted fake
//! API (scripts/fake-kube-api.py), is the KamajiControlPlane: the pinned CRDs
//! (KMDR_CRDS_DIR) hold no KamajiControlPlane, so a real server cannot store
//! one.

use crate::common;
use crate::common::b64;

use common::kube::FakeKube;
use common::{Kmdr, under};
use kmdr_testkit::Etcd;
use serde_json::json;

/// On the fake because a real server here cannot store a KamajiControlPlane
/// (its CRD is not among the pinned ones): the TCP's owning
/// KamajiControlPlane and its Cluster are backed up, and applied after the
/// TCP and before the Cluster.
#[tokio::test]
async fn the_kamaji_control_plane_is_backed_up_and_applied_between_the_tcp_and_the_cluster() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let etcd = Etcd::start(d, "shared");
    etcd.load("/tenants_alpha/pods/default/web-", 50, 100, 1).await;
    let k = Kmdr::local(d);
    k.init();
    let endpoint = etcd.client_url.trim_start_matches("http://").to_string();
    let old = FakeKube::with_fixtures(
        d,
        &json!({"objects": [
            {"apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "DataStore", "metadata": {"name": "shared-etcd"},
             "spec": {"driver": "etcd", "endpoints": [endpoint]}},
            {"apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "TenantControlPlane",
             "metadata": {"name": "alpha", "namespace": "tenants", "labels": {"cluster.x-k8s.io/cluster-name": "alpha"},
                          "ownerReferences": [{"apiVersion": "controlplane.cluster.x-k8s.io/v1alpha1", "kind": "KamajiControlPlane",
                                               "name": "alpha", "uid": "kcp-uid-1", "controller": true}]},
             "spec": {"dataStore": "shared-etcd", "dataStoreSchema": "tenants_alpha", "dataStoreUsername": "tenants_alpha"},
             "status": {"storage": {"setup": {"schema": "tenants_alpha", "user": "tenants_alpha"}},
                        "kubernetesResources": {"version": {"status": "Ready"}}}},
            {"apiVersion": "controlplane.cluster.x-k8s.io/v1alpha1", "kind": "KamajiControlPlane",
             "metadata": {"name": "alpha", "namespace": "tenants", "ownerReferences": [{"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster", "name": "alpha", "uid": "cl-uid-1"}]},
             "spec": {"dataStoreName": "shared-etcd", "version": "v1.33.0", "replicas": 2}},
            {"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster", "metadata": {"name": "alpha", "namespace": "tenants"},
             "spec": {"controlPlaneRef": {"apiVersion": "controlplane.cluster.x-k8s.io/v1alpha1", "kind": "KamajiControlPlane", "name": "alpha"}}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "alpha-ca", "namespace": "tenants"}, "data": {"tls.crt": b64("ca")}},
        ]}),
    );
    let okc = d.join("old");
    std::fs::create_dir_all(&okc).unwrap();
    let okc = old.kubeconfig(&okc).display().to_string();
    let m = k.json(&["backup", "tenants", "--all", "--kubeconfig", &okc]);
    let alpha = &m["source"]["tenants"][0];
    assert_eq!(alpha["kamaji_control_plane"], "alpha");
    assert_eq!(alpha["capi_cluster"], "alpha");
    let files: Vec<&str> = m["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(files.contains(&"tenants/tenants/alpha/kamajicontrolplane.yaml"), "{files:?}");

    etcd.client().await.delete("/tenants_alpha/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
    let fresh = FakeKube::with_fixtures(
        d,
        &json!({"objects": [], "rules": [{"kind": "TenantControlPlane", "on": "apply", "afterMs": 300,
            "set": {"status.kubernetesResources.version.status": "Ready", "status.storage.setup.schema": "$(spec.dataStoreSchema)"}}]}),
    );
    let fkc = d.join("fresh");
    std::fs::create_dir_all(&fkc).unwrap();
    let kc = fresh.kubeconfig(&fkc).display().to_string();
    let dry = k.ok(&["restore", "tenants", "latest", "--dry-run", "--kubeconfig", &kc]);
    let pos = |needle: &str| dry.find(needle).unwrap_or_else(|| panic!("{needle} not in {dry}"));
    assert!(pos("TenantControlPlane tenants/alpha") < pos("KamajiControlPlane tenants/alpha"), "{dry}");
    assert!(pos("KamajiControlPlane tenants/alpha") < pos("Cluster tenants/alpha"), "{dry}");
    assert!(fresh.writes().is_empty(), "--dry-run wrote");

    k.ok(&["restore", "tenants", "latest", "--kubeconfig", &kc, "--interval", "100ms"]);
    assert_eq!(under(&etcd, "/tenants_alpha/").await.len(), 50);
    let order: Vec<String> = fresh
        .writes()
        .iter()
        .map(|w| w.path.rsplit('/').take(2).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("/"))
        .collect();
    let at = |p: &str| order.iter().position(|o| o == p).unwrap_or_else(|| panic!("{p} not applied: {order:?}"));
    assert!(at("tenantcontrolplanes/alpha") < at("kamajicontrolplanes/alpha"), "{order:?}");
    assert!(at("kamajicontrolplanes/alpha") < at("clusters/alpha"), "{order:?}");
    let kcp = fresh.object("KamajiControlPlane", "tenants", "alpha").expect("the KamajiControlPlane is restored");
    assert_eq!(kcp["spec"]["replicas"], 2);
    assert!(kcp["metadata"].get("ownerReferences").is_none(), "{kcp}");
}
