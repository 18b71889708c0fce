//! The test API server is a real one: kube-apiserver 1.34 on its own etcd,
//! reached with kube-rs through the kubeconfig it writes, with the projects'
//! own CRDs (read from their Go modules by scripts/fetch-crds.sh) installed.
//! Each test shows something an imitation would have to fake: schema
//! defaulting and validation of a TenantControlPlane, the status
//! subresource, Secrets encrypted at rest in etcd, a detached server found
//! and stopped by its pid files.

use kmdr_testkit::process::{running_pid, stop_pid};
use kmdr_testkit::{KubeApiServer, KubeApiServerOptions, LaunchError, Mode, need, require_servers};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::path::PathBuf;

/// Every CRD scripts/fetch-crds.sh pins.
const CRDS: &[&str] = &[
    "backups.velero.io",
    "clusters.cluster.x-k8s.io",
    "datastores.kamaji.clastix.io",
    "restores.velero.io",
    "schedules.velero.io",
    "tenantcontrolplanes.kamaji.clastix.io",
    "volumesnapshotclasses.snapshot.storage.k8s.io",
    "volumesnapshotcontents.snapshot.storage.k8s.io",
    "volumesnapshots.snapshot.storage.k8s.io",
];

/// scripts/fetch-crds.sh's directory (KMDR_CRDS_DIR, set by
/// scripts/tools-env.sh); `None` skips the test, unless servers are required.
fn crds_dir() -> Option<PathBuf> {
    match std::env::var_os("KMDR_CRDS_DIR") {
        Some(d) => Some(d.into()),
        None if require_servers() => {
            panic!(
                "KMDR_CRDS_DIR is not set but KMDR_TEST_REQUIRE_SERVERS=1: run scripts/test.sh (scripts/tools-env.sh sets it)"
            )
        }
        None => {
            eprintln!("SKIPPED: KMDR_CRDS_DIR not set (run scripts/test.sh)");
            None
        }
    }
}

/// The shared server with every CRD installed and Established.
fn server_with_crds() -> Option<&'static KubeApiServer> {
    if !need("kube-apiserver") {
        return None;
    }
    let dir = crds_dir()?;
    let s = KubeApiServer::shared();
    let names = s.apply_crds(&dir).unwrap_or_else(|e| panic!("installing the CRDs of {}: {e}", dir.display()));
    for crd in CRDS {
        assert!(names.iter().any(|n| n == crd), "{crd} is among the CRDs installed from {}", dir.display());
    }
    Some(s)
}

async fn client(s: &KubeApiServer) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = kube::config::Kubeconfig::read_from(&s.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

fn tenant_control_planes(client: kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("kamaji.clastix.io", "v1alpha1", "TenantControlPlane");
    Api::namespaced_with(client, ns, &ApiResource::from_gvk_with_plural(&gvk, "tenantcontrolplanes"))
}

/// The smallest TenantControlPlane Kamaji v1.0.0's schema accepts: the
/// service type and the Kubernetes version, an empty kubelet section.
fn tcp(name: &str, service_type: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "kamaji.clastix.io/v1alpha1",
        "kind": "TenantControlPlane",
        "metadata": {"name": name},
        "spec": {
            "controlPlane": {"service": {"serviceType": service_type}},
            "kubernetes": {"version": "v1.34.4", "kubelet": {}},
        },
    }))
    .unwrap()
}

fn field<'a>(o: &'a DynamicObject, path: &[&str]) -> &'a Value {
    path.iter().fold(&o.data, |v, k| &v[k])
}

#[tokio::test]
async fn a_tenant_control_plane_is_defaulted_by_its_schema_and_its_status_set_through_the_subresource() {
    let Some(s) = server_with_crds() else { return };
    let ns = "tcp-status";
    s.create_namespace(ns).unwrap();
    let tcps = tenant_control_planes(client(s).await, ns);

    let created = tcps.create(&PostParams::default(), &tcp("tenant-a", "ClusterIP")).await.unwrap();
    assert_eq!(
        field(&created, &["spec", "kubernetes", "kubelet", "preferredAddressTypes"]),
        &json!(["Hostname", "InternalIP", "ExternalIP"]),
        "the CRD's schema defaulted the kubelet's address types"
    );
    assert_eq!(field(&created, &["status"]), &Value::Null, "no status until a controller sets one");

    // Kamaji's controller reports the control plane Ready through the status
    // subresource; a write of the main resource cannot set status.
    let ready = json!({"status": {"kubernetesResources": {"version": {"status": "Ready", "version": "v1.34.4"}}}});
    let through_main = tcps.patch("tenant-a", &PatchParams::default(), &Patch::Merge(&ready)).await.unwrap();
    assert_eq!(field(&through_main, &["status"]), &Value::Null, "status is ignored on the main resource");
    tcps.patch_status("tenant-a", &PatchParams::default(), &Patch::Merge(&ready)).await.unwrap();

    let read = tcps.get("tenant-a").await.unwrap();
    assert_eq!(field(&read, &["status", "kubernetesResources", "version", "status"]), "Ready");
    assert_eq!(field(&read, &["status", "kubernetesResources", "version", "version"]), "v1.34.4");
    assert_eq!(field(&read, &["spec", "controlPlane", "service", "serviceType"]), "ClusterIP");
    assert!(read.metadata.uid.is_some() && read.metadata.resource_version.is_some());

    // An enum in the status schema holds there too.
    let bogus = json!({"status": {"kubernetesResources": {"version": {"status": "Sleeping"}}}});
    let err = tcps.patch_status("tenant-a", &PatchParams::default(), &Patch::Merge(&bogus)).await.unwrap_err();
    assert!(matches!(&err, kube::Error::Api(st) if st.code == 422), "{err}");
}

#[tokio::test]
async fn a_tenant_control_plane_that_breaks_the_schema_is_refused() {
    let Some(s) = server_with_crds() else { return };
    let ns = "tcp-invalid";
    s.create_namespace(ns).unwrap();
    let tcps = tenant_control_planes(client(s).await, ns);

    let err = tcps.create(&PostParams::default(), &tcp("bad-service", "Bogus")).await.unwrap_err();
    let kube::Error::Api(st) = &err else { panic!("{err}") };
    assert_eq!((st.code, st.reason.as_str()), (422, "Invalid"), "{st:?}");
    assert!(st.message.contains("spec.controlPlane.service.serviceType"), "{}", st.message);

    let mut no_version = tcp("no-version", "ClusterIP");
    no_version.data["spec"]["kubernetes"].as_object_mut().unwrap().remove("version");
    let err = tcps.create(&PostParams::default(), &no_version).await.unwrap_err();
    let kube::Error::Api(st) = &err else { panic!("{err}") };
    assert_eq!(st.code, 422, "{st:?}");
    assert!(st.message.contains("spec.kubernetes.version"), "{}", st.message);

    assert!(tcps.list(&Default::default()).await.unwrap().items.is_empty(), "nothing was stored");
}

#[tokio::test]
async fn secrets_are_encrypted_in_etcd_with_an_aescbc_key() {
    if !need("kube-apiserver") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("encryption.yaml");
    let encryption = json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{
            "resources": ["secrets"],
            "providers": [
                // A fixed test key: 32 bytes, base64.
                {"aescbc": {"keys": [{"name": "key1", "secret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}]}},
                {"identity": {}},
            ],
        }],
    });
    std::fs::write(&config, serde_norway::to_string(&encryption).unwrap()).unwrap();
    let o = KubeApiServerOptions { encryption_config: Some(config), ..KubeApiServerOptions::new(tmp.path().join("k")) };
    let s = KubeApiServer::launch(o).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("kube-apiserver with aescbc ready in {:.1}s", s.start_time.as_secs_f64());

    s.create_namespace("encrypted").unwrap();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client(&s).await, "encrypted");
    let secret = serde_json::from_value(json!({
        "metadata": {"name": "tenant-a-ca"},
        "stringData": {"ca.crt": "not really a certificate"},
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    let read = secrets.get("tenant-a-ca").await.unwrap();
    assert_eq!(read.data.unwrap()["ca.crt"].0, b"not really a certificate", "served in the clear");

    let mut etcd = s.etcd.as_ref().unwrap().client().await;
    let raw = etcd.get("/registry/secrets/encrypted/tenant-a-ca", None).await.unwrap();
    let value = raw.kvs()[0].value();
    assert!(value.starts_with(b"k8s:enc:aescbc:v1:key1:"), "stored encrypted: {:?}", String::from_utf8_lossy(value));
    assert!(!value.windows(8).any(|w| w == b"not real"), "no plaintext in etcd");
}

#[test]
fn a_detached_server_outlives_its_handle_and_stops_by_its_pid_files() {
    if !need("kube-apiserver") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pid_file = tmp.path().join("kube-apiserver.pid");
    let dir = tmp.path().join("k");
    let o =
        KubeApiServerOptions { mode: Mode::Detached { pid_file: pid_file.clone() }, ..KubeApiServerOptions::new(&dir) };
    let s = KubeApiServer::launch(o).unwrap_or_else(|e| panic!("{e}"));
    let (pid, etcd_pid) = (s.pid(), s.etcd.as_ref().unwrap().pid());
    drop(s);
    assert_eq!(running_pid(&pid_file, "kube-apiserver"), Some(pid));
    assert_eq!(running_pid(&dir.join("etcd.pid"), "etcd"), Some(etcd_pid));
    assert!(stop_pid(pid, "kube-apiserver"));
    assert!(stop_pid(etcd_pid, "etcd"));
    assert_eq!(running_pid(&pid_file, "kube-apiserver"), None);
}

#[test]
fn a_server_that_cannot_start_says_so_and_names_its_log() {
    if !need("kube-apiserver") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let o = KubeApiServerOptions {
        encryption_config: Some(tmp.path().join("missing.yaml")),
        ..KubeApiServerOptions::new(tmp.path().join("k"))
    };
    let err = KubeApiServer::launch(o).unwrap_err();
    let LaunchError::Exited { server: "kube-apiserver", log } = &err else { panic!("{err}") };
    assert!(err.to_string().contains(&log.display().to_string()), "{err}");
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("missing.yaml"), "the log says why: {text}");
}
