//! The real Kubernetes API server (kmdr_testkit::KubeApiServer, shared by
//! this test binary) with the projects' own CRDs installed once, and what the
//! tests that play a controller need from it: objects written as the admin,
//! status set through the status subresource, and the audit log of kmdr's
//! requests.

use kmdr_testkit::KubeApiServer;
use serde_json::{Value, json};
use std::sync::OnceLock;

/// The shared server with the CRDs of `KMDR_CRDS_DIR` installed; `None`
/// (the test skips) without kube-apiserver, a panic when
/// KMDR_TEST_REQUIRE_SERVERS=1.
pub fn server() -> Option<&'static KubeApiServer> {
    if !kmdr_testkit::need("kube-apiserver") {
        return None;
    }
    let Some(dir) = std::env::var_os("KMDR_CRDS_DIR") else {
        if kmdr_testkit::require_servers() {
            panic!("KMDR_CRDS_DIR is not set but KMDR_TEST_REQUIRE_SERVERS=1: source scripts/tools-env.sh");
        }
        eprintln!("SKIPPED: KMDR_CRDS_DIR not set (source scripts/tools-env.sh)");
        return None;
    };
    static CRDS: OnceLock<Result<(), String>> = OnceLock::new();
    let s = KubeApiServer::shared();
    if let Err(e) = CRDS.get_or_init(|| s.apply_crds(std::path::Path::new(&dir)).map(|_| ()).map_err(|e| e.to_string()))
    {
        panic!("installing the CRDs of {}: {e}", dir.to_string_lossy());
    }
    Some(s)
}

/// The API path of an object's collection, from its apiVersion and kind's plural.
pub fn collection(api_version: &str, plural: &str, namespace: Option<&str>) -> String {
    let base = if api_version.contains('/') { format!("/apis/{api_version}") } else { format!("/api/{api_version}") };
    match namespace {
        Some(ns) => format!("{base}/namespaces/{ns}/{plural}"),
        None => format!("{base}/{plural}"),
    }
}

/// Server-side apply `object` as the test kit's field manager.
pub fn put(s: &KubeApiServer, plural: &str, object: &Value) {
    let ns = object["metadata"]["namespace"].as_str();
    let name = object["metadata"]["name"].as_str().unwrap();
    let api_version = object["apiVersion"].as_str().unwrap();
    s.apply(&collection(api_version, plural, ns), name, object)
        .unwrap_or_else(|e| panic!("applying {plural} {name}: {e}"));
}

/// The object, `None` when the server says 404.
pub fn get(s: &KubeApiServer, path: &str) -> Option<Value> {
    match s.get(path) {
        Ok(v) => Some(v),
        Err(kmdr_testkit::kube_apiserver::ApiError::Status { status: 404, .. }) => None,
        Err(e) => panic!("GET {path}: {e}"),
    }
}

/// Delete the object at `path` (gone already is fine).
pub fn delete(s: &KubeApiServer, path: &str) {
    match s.request("DELETE", path, None) {
        Ok(_) | Err(kmdr_testkit::kube_apiserver::ApiError::Status { status: 404, .. }) => {}
        Err(e) => panic!("DELETE {path}: {e}"),
    }
}

/// Merge-patch the status subresource of the object at `path`, as its
/// controller would.
pub fn patch_status(
    s: &KubeApiServer,
    path: &str,
    status: &Value,
) -> Result<Value, kmdr_testkit::kube_apiserver::ApiError> {
    let body = json!({ "status": status }).to_string();
    s.request("PATCH", &format!("{path}/status"), Some(("application/merge-patch+json", body.as_bytes())))
}

/// One request kmdr made, from the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audited {
    pub verb: String,
    /// `resource/name` or `resource/name/subresource`.
    pub object: String,
    pub namespace: String,
    pub code: u16,
}

/// The audit log's length now: requests after it are [`kmdr_requests`]'s.
pub fn audit_mark(s: &KubeApiServer) -> usize {
    s.audit_events().len()
}

/// The requests kmdr (kube-rs; not the test kit's curl nor helm) made since
/// `mark` that touched `namespaces` or cluster-scoped objects named in `names`.
pub fn kmdr_requests(s: &KubeApiServer, mark: usize, namespaces: &[&str], names: &[&str]) -> Vec<Audited> {
    s.audit_events()
        .into_iter()
        .skip(mark)
        // The admin certificate, but not through curl (the test kit) or helm;
        // kube-rs sends no User-Agent of its own.
        .filter(|e| e["user"]["username"] == "kmdr-admin")
        .filter(|e| !e["userAgent"].as_str().is_some_and(|a| a.starts_with("curl/") || a.starts_with("Helm/")))
        .filter(|e| {
            let r = &e["objectRef"];
            match r["namespace"].as_str() {
                Some(ns) => namespaces.contains(&ns),
                None => r["name"].as_str().is_some_and(|n| names.contains(&n) || namespaces.contains(&n)),
            }
        })
        .map(|e| {
            let r = &e["objectRef"];
            let mut object = format!("{}/{}", r["resource"].as_str().unwrap_or(""), r["name"].as_str().unwrap_or(""));
            if let Some(sub) = r["subresource"].as_str() {
                object.push_str(&format!("/{sub}"));
            }
            Audited {
                verb: e["verb"].as_str().unwrap_or("").into(),
                object,
                namespace: r["namespace"].as_str().unwrap_or("").into(),
                code: e["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
            }
        })
        .collect()
}

/// The writes among `requests` (everything but get, list, watch).
pub fn writes(requests: &[Audited]) -> Vec<Audited> {
    requests.iter().filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch")).cloned().collect()
}

// --- What a test playing a controller needs (volumes_real) ---

/// Merge-patch the object at `path` itself: how a controller sets the status
/// of a CRD without a status subresource (Velero's Backup, Restore and
/// Schedule declare none).
pub fn merge_patch(
    s: &KubeApiServer,
    path: &str,
    patch: &Value,
) -> Result<Value, kmdr_testkit::kube_apiserver::ApiError> {
    s.request("PATCH", path, Some(("application/merge-patch+json", patch.to_string().as_bytes())))
}

/// The items of the collection at `path` (none when the server says 404).
/// A CRD installed moments ago may still answer 429 "storage is
/// (re)initializing": asked again for up to 30 s.
pub fn list(s: &KubeApiServer, path: &str) -> Vec<Value> {
    let t0 = std::time::Instant::now();
    loop {
        match s.get(path) {
            Ok(l) => return l["items"].as_array().cloned().unwrap_or_default(),
            Err(kmdr_testkit::kube_apiserver::ApiError::Status { status: 404, .. }) => return Vec::new(),
            Err(kmdr_testkit::kube_apiserver::ApiError::Status { status: 429, .. })
                if t0.elapsed() < std::time::Duration::from_secs(30) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(200))
            }
            Err(e) => panic!("GET {path}: {e}"),
        }
    }
}

/// Delete the object at `path` after clearing its finalizers, as the
/// controllers that own them would (a PVC's `kubernetes.io/pvc-protection`
/// is removed by kube-controller-manager, which the test server does not run).
pub fn force_delete(s: &KubeApiServer, path: &str) {
    match merge_patch(s, path, &json!({"metadata": {"finalizers": null}})) {
        Ok(_) | Err(kmdr_testkit::kube_apiserver::ApiError::Status { status: 404, .. }) => {}
        Err(e) => panic!("clearing the finalizers of {path}: {e}"),
    }
    delete(s, path);
}

/// A controller played by the test: `round` runs every 100 ms on a thread
/// until the value is dropped.
pub struct Controller {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Controller {
    pub fn spawn(mut round: impl FnMut() + Send + 'static) -> Controller {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                round();
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        Controller { stop, thread: Some(thread) }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // A round that panicked has said why already; do not panic twice.
            let _ = t.join();
        }
    }
}

/// Objects first seen at least `after` ago, by uid: a controller acts on an
/// object some time after it appears, as the real ones do.
#[derive(Default)]
pub struct Seen(std::collections::HashMap<String, std::time::Instant>);

impl Seen {
    pub fn older_than(&mut self, object: &Value, after: std::time::Duration) -> bool {
        let uid = object["metadata"]["uid"].as_str().unwrap_or_default().to_string();
        self.0.entry(uid).or_insert_with(std::time::Instant::now).elapsed() >= after
    }
}
// --- end of the controllers' helpers
