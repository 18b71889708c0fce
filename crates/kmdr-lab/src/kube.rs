//! The lab's Kubernetes, when its tools are built (scripts/build-go-tools.sh):
//! kube-apiserver on an etcd of its own (kmdr-testkit's launcher, detached),
//! the projects' CRDs (scripts/fetch-crds.sh, `KMDR_CRDS_DIR`), the platform
//! release installed by real helm from a small chart standing in for kMetal's
//! umbrella chart (`chart/` in this crate, written into the lab), and the
//! Kamaji objects of the shared etcd's tenants: a DataStore in front of that
//! etcd, and per tenant a TenantControlPlane (its status set as Kamaji's
//! controller would: set up on the tenant's schema, Ready) and its CA Secret.
//!
//! The API server stores in its own etcd, not in the under-cluster etcd the
//! drill stops and wipes, so each layer is drilled on its own.

use crate::servers::Skip;
use crate::{LabError, LabProcess, LabState};
use kmdr_testkit::Mode;
use kmdr_testkit::kube_apiserver::{KubeApiServer, KubeApiServerOptions};
use kmdr_testkit::process::find_bin;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The release the lab installs, and where.
pub const RELEASE: &str = "kmetal";
pub const RELEASE_NAMESPACE: &str = "kmetal-system";
/// Where the lab's TenantControlPlanes live.
pub const TENANT_NAMESPACE: &str = "tenants";
/// The Kamaji DataStore in front of the shared tenant etcd.
pub const DATASTORE: &str = "tenant-etcd";

/// The chart, as files relative to its directory.
const CHART: &[(&str, &str)] = &[
    ("Chart.yaml", include_str!("../chart/Chart.yaml")),
    ("values.yaml", include_str!("../chart/values.yaml")),
    ("templates/settings.yaml", include_str!("../chart/templates/settings.yaml")),
    ("templates/identity.yaml", include_str!("../chart/templates/identity.yaml")),
    ("templates/service.yaml", include_str!("../chart/templates/service.yaml")),
];

/// The schema Kamaji gives tenant `name` of [`TENANT_NAMESPACE`] in its
/// datastore when the TCP names none (`<namespace>_<name>`, `-` made `_`): the
/// lab's shared etcd holds its tenants under these.
pub fn schema_of(name: &str) -> String {
    format!("{TENANT_NAMESPACE}_{name}").replace('-', "_")
}

/// The status Kamaji's controller writes once tenant `name` is set up on its
/// schema and serving: the lab writes it, since it runs no Kamaji.
pub fn ready_status(name: &str) -> serde_json::Value {
    json!({"status": {
        "storage": {"driver": "etcd", "dataStoreName": DATASTORE, "setup": {"schema": schema_of(name), "user": schema_of(name)}},
        "kubernetesResources": {"version": {"version": "v1.34.4", "status": "Ready"}},
    }})
}

/// What the lab's Kubernetes offers the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabKube {
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The Kamaji objects were created (the CRDs and kubectl were there).
    pub kamaji: bool,
    /// The TenantControlPlanes (names in [`TENANT_NAMESPACE`]).
    #[serde(default)]
    pub tenants: Vec<String>,
    /// From spawning kube-apiserver until `/readyz`, in seconds.
    pub start_s: f64,
}

/// Start the API server, install the platform release and, with the CRDs,
/// the Kamaji objects of `tenants` (TCP names; their schemas in the shared
/// etcd at `tenant_endpoint`, `HOST:PORT`, are [`schema_of`] them). `Skip` when the tools are not built or a
/// step fails: the lab runs without Kubernetes then.
pub(crate) fn start(
    state: &mut LabState,
    tenants: &[String],
    tenant_endpoint: &str,
    say: &dyn Fn(&str),
) -> Result<LabKube, Skip> {
    for tool in ["kube-apiserver", "helm"] {
        if find_bin(tool, &[]).is_none() {
            return Err(Skip(format!("{tool} is not on PATH (scripts/build-go-tools.sh builds it)")));
        }
    }
    let dir = state.dir.join("kube");
    say("starting kube-apiserver (on an etcd of its own)");
    let pid_file = dir.join("kube-apiserver.pid");
    let o =
        KubeApiServerOptions { mode: Mode::Detached { pid_file: pid_file.clone() }, ..KubeApiServerOptions::new(&dir) };
    let s = KubeApiServer::launch(o).map_err(|source| LabError::Launch { server: "kube-apiserver", source })?;
    if let Some(e) = &s.etcd {
        let etcd = LabProcess {
            name: "kube-etcd".into(),
            program: "etcd".into(),
            pid_file: dir.join("etcd.pid"),
            ports: vec![port_of(&e.client_url)],
            url: e.client_url.clone(),
            log: dir.join("etcd.log"),
            tenants: Vec::new(),
            keys: 0,
        };
        record(state, etcd)?;
    }
    let api = LabProcess {
        name: "kube-apiserver".into(),
        program: "kube-apiserver".into(),
        pid_file,
        ports: vec![port_of(&s.url)],
        url: s.url.clone(),
        log: s.log.clone(),
        tenants: Vec::new(),
        keys: 0,
    };
    record(state, api)?;
    let mut kube = LabKube {
        kubeconfig: s.kubeconfig.clone(),
        url: s.url.clone(),
        kamaji: false,
        tenants: Vec::new(),
        start_s: s.start_time.as_secs_f64(),
    };
    say(&format!("installing the platform release {RELEASE_NAMESPACE}/{RELEASE} with helm"));
    install_release(&state.dir, &kube.kubeconfig, tenants)?;
    let crds = std::env::var_os("KMDR_CRDS_DIR");
    match crds {
        None => state.notes.push(
            "no Kamaji objects: KMDR_CRDS_DIR is not set (scripts/fetch-crds.sh names the CRDs' directory)".into(),
        ),
        // The drill plays Kamaji's controller with kubectl after restoring them.
        Some(_) if find_bin("kubectl", &[]).is_none() => {
            state.notes.push("no Kamaji objects: kubectl is not on PATH (scripts/build-go-tools.sh builds it)".into())
        }
        Some(crds) => {
            say("installing the CRDs and the tenants' Kamaji objects");
            s.apply_crds(Path::new(&crds)).map_err(|e| Skip(format!("installing the CRDs of {crds:?}: {e}")))?;
            kamaji_objects(&s, tenants, tenant_endpoint)
                .map_err(|e| Skip(format!("creating the Kamaji objects: {e}")))?;
            kube.kamaji = true;
            kube.tenants = tenants.to_vec();
        }
    }
    Ok(kube)
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
}

fn record(state: &mut LabState, p: LabProcess) -> Result<(), LabError> {
    state.processes.push(p);
    state.save()
}

/// Write the chart and the values overlay into the lab, then `helm install`.
fn install_release(dir: &Path, kubeconfig: &Path, tenants: &[String]) -> Result<(), Skip> {
    let chart = dir.join("chart");
    for (name, text) in CHART {
        let path = chart.join(name);
        std::fs::create_dir_all(path.parent().expect("in the chart")).map_err(LabError::io("create", &chart))?;
        std::fs::write(&path, text).map_err(LabError::io("write", &path))?;
    }
    let overlay = json!({"environment": "lab", "kamaji": {"datastore": DATASTORE}, "tenants": tenants});
    let values = dir.join("kmetal-values.yaml");
    let yaml = serde_norway::to_string(&overlay).expect("JSON serializes as YAML");
    std::fs::write(&values, yaml).map_err(LabError::io("write", &values))?;
    let out = Command::new("helm")
        .args(["install", RELEASE])
        .arg(&chart)
        .args(["--namespace", RELEASE_NAMESPACE, "--create-namespace", "--wait", "--timeout", "2m", "--values"])
        .arg(&values)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .stdin(Stdio::null())
        .output()
        .map_err(LabError::io("run helm for", &chart))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Skip(format!("helm install failed: {}", err.trim())));
    }
    Ok(())
}

/// The DataStore, and per tenant its namespace's TCP, status and CA Secret.
fn kamaji_objects(
    s: &KubeApiServer,
    tenants: &[String],
    endpoint: &str,
) -> Result<(), kmdr_testkit::kube_apiserver::ApiError> {
    const KAMAJI: &str = "/apis/kamaji.clastix.io/v1alpha1";
    let ds = json!({"apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "DataStore", "metadata": {"name": DATASTORE},
                    "spec": {"driver": "etcd", "endpoints": [endpoint]}});
    s.apply(&format!("{KAMAJI}/datastores"), DATASTORE, &ds)?;
    s.create_namespace(TENANT_NAMESPACE)?;
    let tcps = format!("{KAMAJI}/namespaces/{TENANT_NAMESPACE}/tenantcontrolplanes");
    for t in tenants {
        // Kamaji's CA Secret of the tenant (the lab's holds no real certificate).
        let ca = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "metadata": {"name": format!("{t}-ca"), "namespace": TENANT_NAMESPACE},
                        "stringData": {"ca.crt": format!("the lab's CA of {t}")}});
        s.apply(&format!("/api/v1/namespaces/{TENANT_NAMESPACE}/secrets"), &format!("{t}-ca"), &ca)?;
        let tcp = json!({
            "apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "TenantControlPlane",
            "metadata": {"name": t, "namespace": TENANT_NAMESPACE, "labels": {"tenant": t}},
            "spec": {"dataStore": DATASTORE, "controlPlane": {"service": {"serviceType": "ClusterIP"}},
                     "kubernetes": {"version": "v1.34.4", "kubelet": {}}},
        });
        s.apply(&tcps, t, &tcp)?;
        let body = ready_status(t).to_string();
        s.request("PATCH", &format!("{tcps}/{t}/status"), Some(("application/merge-patch+json", body.as_bytes())))?;
    }
    // As Kamaji records which tenants use the DataStore.
    let used: Vec<String> = tenants.iter().map(|t| format!("{TENANT_NAMESPACE}/{t}")).collect();
    let body = json!({"status": {"usedBy": used}}).to_string();
    let path = format!("{KAMAJI}/datastores/{DATASTORE}/status");
    s.request("PATCH", &path, Some(("application/merge-patch+json", body.as_bytes())))?;
    Ok(())
}
