//! A Kubernetes client that finds its cluster the way kubectl does:
//! `--kubeconfig FILE`, `--context NAME`, the `KUBECONFIG` variable (a list of
//! files, merged), `~/.kube/config`, and the in-cluster service account when
//! kmdr runs in a pod. Errors say what to check.
//!
//! Built on kube-rs with rustls; plain `http://` cluster URLs (test fakes,
//! `kubectl proxy`) work as well.

use ::kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::{Client, Config};
use k8s_openapi::api::core::v1::Secret;
use kmdr_core::{Classify, ErrorClass};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// How long to wait for the API server to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take (Secret lists are small).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Which cluster to talk to, as kubectl's flags say it.
#[derive(Debug, Clone, Default)]
pub struct KubeTarget {
    /// `--kubeconfig FILE`; else `KUBECONFIG`, `~/.kube/config` or in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// `--context NAME`; else the kubeconfig's current context.
    pub context: Option<String>,
    /// Let kube-rs log its requests. kube-rs logs every transport failure at
    /// ERROR level before returning it; kmdr's own error already says the
    /// same in one line, so callers turn this on only when asked for more
    /// logging (`-v`, `KMDR_LOG`).
    pub log_requests: bool,
}

/// What can go wrong talking to Kubernetes. Every message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No usable configuration.
    #[error("cannot load the Kubernetes configuration{}: {detail}; pass --kubeconfig FILE (or set KUBECONFIG) and --context NAME, or run kmdr inside the cluster", from.as_ref().map(|f| format!(" from {f}")).unwrap_or_default())]
    Config { from: Option<String>, detail: String },
    /// Nothing answered at the cluster URL (or TLS failed).
    #[error("cannot reach the Kubernetes API at {url}: {detail}; check --kubeconfig/--context")]
    Unreachable { url: String, detail: String },
    /// The API server refused the credentials or the permission.
    #[error(
        "the Kubernetes API at {url} refused {op}: {detail}; check the user of --context and that its RBAC allows it"
    )]
    Auth { url: String, op: String, detail: String },
    /// The object does not exist.
    #[error("{what} not found at {url}")]
    NotFound { what: String, url: String },
    /// Any other API error.
    #[error("the Kubernetes API at {url} failed {op}: {detail}")]
    Api { url: String, op: String, detail: String },
}

/// The field manager of every server-side apply kmdr sends.
pub const FIELD_MANAGER: &str = "kmdr";

/// A resource kmdr reads or writes as plain JSON (no typed struct, no
/// discovery: the API path is built from these fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceKind {
    /// `v1` or `GROUP/VERSION`.
    pub api_version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

impl ResourceKind {
    fn resource(&self) -> ApiResource {
        let (group, version) = self.api_version.split_once('/').unwrap_or(("", self.api_version));
        ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: self.api_version.into(),
            kind: self.kind.into(),
            plural: self.plural.into(),
        }
    }

    /// The API group (empty for the core group).
    pub fn group(&self) -> &'static str {
        self.api_version.split_once('/').map_or("", |(g, _)| g)
    }

    /// `plural.group` as kubectl names the resource (`tenantcontrolplanes.kamaji.clastix.io`).
    pub fn resource_name(&self) -> String {
        match self.api_version.split_once('/') {
            Some((group, _)) => format!("{}.{group}", self.plural),
            None => self.plural.to_string(),
        }
    }
}

pub const SECRET: ResourceKind =
    ResourceKind { api_version: "v1", kind: "Secret", plural: "secrets", namespaced: true };
pub const NAMESPACE: ResourceKind =
    ResourceKind { api_version: "v1", kind: "Namespace", plural: "namespaces", namespaced: false };
pub const LEASE: ResourceKind =
    ResourceKind { api_version: "coordination.k8s.io/v1", kind: "Lease", plural: "leases", namespaced: true };
pub const POD: ResourceKind = ResourceKind { api_version: "v1", kind: "Pod", plural: "pods", namespaced: true };

/// A connected client and the URL it talks to (for messages and manifests).
#[derive(Clone)]
pub struct KubeClient {
    client: Client,
    url: String,
    log_requests: bool,
}

impl std::fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeClient").field("url", &self.url).finish()
    }
}

impl KubeClient {
    /// Build a client for `target`. Nothing is sent yet: an unreachable
    /// server shows up on the first request.
    pub async fn connect(target: &KubeTarget) -> Result<KubeClient, KubeError> {
        // kube-rs's rustls needs a process-wide crypto provider when more
        // than one is compiled in (other dependencies bring aws-lc-rs): use
        // ring, as the rest of kmdr does. Already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let options = KubeConfigOptions { context: target.context.clone(), ..Default::default() };
        let mut config = match (&target.kubeconfig, &target.context) {
            // An explicit file: only that file, like `kubectl --kubeconfig`.
            (Some(path), _) => {
                let from = Some(path.display().to_string());
                let kc = Kubeconfig::read_from(path)
                    .map_err(|e| KubeError::Config { from: from.clone(), detail: e.to_string() })?;
                Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .map_err(|e| KubeError::Config { from, detail: e.to_string() })?
            }
            // A context without a file: KUBECONFIG (merged) or ~/.kube/config.
            (None, Some(_)) => {
                let kc = Kubeconfig::read().map_err(|e| KubeError::Config { from: None, detail: e.to_string() })?;
                Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .map_err(|e| KubeError::Config { from: None, detail: e.to_string() })?
            }
            // Neither: KUBECONFIG, ~/.kube/config, else the in-cluster service account.
            (None, None) => {
                Config::infer().await.map_err(|e| KubeError::Config { from: None, detail: e.to_string() })?
            }
        };
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        config.read_timeout = Some(READ_TIMEOUT);
        let url = config.cluster_url.to_string().trim_end_matches('/').to_string();
        let client = Client::try_from(config).map_err(|e| KubeError::Config { from: None, detail: e.to_string() })?;
        Ok(KubeClient { client, url, log_requests: target.log_requests })
    }

    /// The API server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The kube-rs client, for callers that need other resources.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The server's version (`/version` gitVersion): the cheapest request, so
    /// an unreachable cluster or refused credentials show up here first.
    pub async fn server_version(&self) -> Result<String, KubeError> {
        let v = self
            .logged(|| self.client.apiserver_version())
            .await
            .map_err(|e| self.classify(e, "GET /version", "the version endpoint"))?;
        Ok(v.git_version)
    }

    /// Secrets of `namespace` matching `label_selector`.
    pub async fn list_secrets(&self, namespace: &str, label_selector: &str) -> Result<Vec<Secret>, KubeError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let lp = ListParams::default().labels(label_selector);
        let list = self.logged(|| api.list(&lp)).await.map_err(|e| {
            self.classify(e, &format!("listing Secrets in namespace {namespace}"), &format!("namespace {namespace}"))
        })?;
        Ok(list.items)
    }

    /// The Secret `namespace/name`.
    pub async fn get_secret(&self, namespace: &str, name: &str) -> Result<Secret, KubeError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        self.logged(|| api.get(name)).await.map_err(|e| {
            self.classify(e, &format!("reading Secret {namespace}/{name}"), &format!("Secret {namespace}/{name}"))
        })
    }

    fn dynamic(&self, kind: &ResourceKind, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = kind.resource();
        match namespace.filter(|_| kind.namespaced) {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }

    /// The object `namespace/name` (cluster-scoped kinds ignore the
    /// namespace) as JSON, `None` when it does not exist.
    pub async fn get_object(
        &self,
        kind: &ResourceKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, KubeError> {
        let what = object_name(kind, namespace.unwrap_or(""), name);
        let api = self.dynamic(kind, namespace);
        match self.logged(|| api.get_opt(name)).await {
            Ok(o) => Ok(o.map(|o| serde_json::to_value(o).expect("objects serialize"))),
            Err(e) => Err(self.classify(e, &format!("reading {what}"), &what)),
        }
    }

    /// The objects of `kind` in `namespace` (every namespace when `None`)
    /// matching `label_selector`, as JSON. A kind the server does not serve
    /// (its CRD is not installed) is [`KubeError::NotFound`].
    pub async fn list_objects(
        &self,
        kind: &ResourceKind,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<Value>, KubeError> {
        let mut lp = ListParams::default();
        if !label_selector.is_empty() {
            lp = lp.labels(label_selector);
        }
        let where_ = namespace.map(|n| format!(" in namespace {n}")).unwrap_or_default();
        let api = self.dynamic(kind, namespace);
        let list = self.logged(|| api.list(&lp)).await.map_err(|e| {
            self.classify(
                e,
                &format!("listing {}{where_}", kind.resource_name()),
                &format!("the resource {} (is its CRD installed?)", kind.resource_name()),
            )
        })?;
        Ok(list.items.into_iter().map(|o| serde_json::to_value(o).expect("objects serialize")).collect())
    }

    /// Server-side apply of `object` (field manager `kmdr`, forced: kmdr
    /// takes over the fields it restores). Returns the object as stored.
    pub async fn apply_object(&self, kind: &ResourceKind, object: &Value) -> Result<Value, KubeError> {
        let (ns, name) = meta_name(object);
        let what = object_name(kind, &ns, &name);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(object);
        let api = self.dynamic(kind, Some(&ns));
        let o = self
            .logged(|| api.patch(&name, &params, &patch))
            .await
            .map_err(|e| self.classify(e, &format!("applying {what}"), &what))?;
        Ok(serde_json::to_value(o).expect("objects serialize"))
    }

    /// Create `object` unless an object of that name exists (then nothing is
    /// changed). Returns whether it was created.
    pub async fn create_if_absent(&self, kind: &ResourceKind, object: &Value) -> Result<bool, KubeError> {
        let (ns, name) = meta_name(object);
        let what = object_name(kind, &ns, &name);
        let obj = self.typed(object, "creating", &what)?;
        let api = self.dynamic(kind, Some(&ns));
        let wp = write_params();
        match self.logged(|| api.create(&wp, &obj)).await {
            Ok(_) => Ok(true),
            Err(::kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.classify(e, &format!("creating {what}"), &what)),
        }
    }

    /// Replace `object` (PUT) if its `metadata.resourceVersion` is still the
    /// stored one: `None` when another writer changed it first (409).
    pub async fn replace_object(&self, kind: &ResourceKind, object: &Value) -> Result<Option<Value>, KubeError> {
        let (ns, name) = meta_name(object);
        let what = object_name(kind, &ns, &name);
        let obj = self.typed(object, "replacing", &what)?;
        let api = self.dynamic(kind, Some(&ns));
        let wp = write_params();
        match self.logged(|| api.replace(&name, &wp, &obj)).await {
            Ok(o) => Ok(Some(serde_json::to_value(o).expect("objects serialize"))),
            Err(::kube::Error::Api(s)) if s.code == 409 => Ok(None),
            Err(e) => Err(self.classify(e, &format!("replacing {what}"), &what)),
        }
    }

    /// Delete `namespace/name` and wait (up to `within`) until it is gone;
    /// gone already is fine. Only a drill's built-in failure deletes.
    pub async fn delete_object(
        &self,
        kind: &ResourceKind,
        namespace: Option<&str>,
        name: &str,
        within: std::time::Duration,
    ) -> Result<(), KubeError> {
        let what = object_name(kind, namespace.unwrap_or(""), name);
        let api = self.dynamic(kind, namespace);
        let dp = Default::default();
        match self.logged(|| api.delete(name, &dp)).await {
            Ok(_) => {}
            Err(::kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(self.classify(e, &format!("deleting {what}"), &what)),
        }
        let deadline = std::time::Instant::now() + within;
        while self.get_object(kind, namespace, name).await?.is_some() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// Create `object` (a JSON manifest with apiVersion, kind and metadata)
    /// and return it as the API stored it.
    pub async fn create_object(
        &self,
        kind: &ResourceKind,
        namespace: Option<&str>,
        object: &Value,
    ) -> Result<Value, KubeError> {
        let name = object["metadata"]["name"].as_str().unwrap_or("?");
        let what = object_name(kind, namespace.unwrap_or(""), name);
        let obj = self.typed(object, "creating", &what)?;
        let api = self.dynamic(kind, namespace);
        let wp = write_params();
        let created = self.logged(|| api.create(&wp, &obj)).await.map_err(|e| {
            self.classify(e, &format!("creating {what}"), &format!("namespace {}", namespace.unwrap_or("-")))
        })?;
        Ok(serde_json::to_value(created).expect("objects serialize"))
    }

    /// A JSON manifest as the dynamic object kube-rs sends; `op` and `what` name it in the error.
    fn typed(&self, object: &Value, op: &str, what: &str) -> Result<DynamicObject, KubeError> {
        serde_json::from_value(object.clone()).map_err(|e| KubeError::Api {
            url: self.url.clone(),
            op: format!("{op} {what}"),
            detail: e.to_string(),
        })
    }

    /// Run a request, without kube-rs's own logging unless `log_requests`,
    /// again after a pause while the server answers 429 Too Many Requests
    /// (its flow control, or a resource whose storage is still initializing
    /// just after its CRD was installed): up to [`RETRIES_ON_429`] times, as
    /// client-go does. A 429 means the server did not act on the request, so
    /// writes are retried too.
    async fn logged<T, F>(&self, request: impl Fn() -> F) -> Result<T, ::kube::Error>
    where
        F: std::future::Future<Output = Result<T, ::kube::Error>>,
    {
        use tracing::instrument::WithSubscriber;
        retry_on_429(|| async {
            if self.log_requests {
                request().await
            } else {
                request().with_subscriber(tracing::subscriber::NoSubscriber::default()).await
            }
        })
        .await
    }

    /// Turn a kube-rs error into one that says what to check. `what` names the
    /// object for a 404.
    fn classify(&self, e: ::kube::Error, op: &str, what: &str) -> KubeError {
        let url = self.url.clone();
        match e {
            ::kube::Error::Api(s) if s.code == 401 || s.code == 403 => {
                KubeError::Auth { url, op: op.to_string(), detail: format!("{} {}", s.code, status_text(&s)) }
            }
            ::kube::Error::Api(s) if s.code == 404 => KubeError::NotFound { what: what.to_string(), url },
            ::kube::Error::Api(s) => {
                KubeError::Api { url, op: op.to_string(), detail: format!("{} {}", s.code, status_text(&s)) }
            }
            // Connection refused, DNS, TLS, timeouts: the transport failed.
            ::kube::Error::HyperError(_)
            | kube::Error::Service(_)
            | kube::Error::TlsRequired
            | kube::Error::RustlsTls(_) => KubeError::Unreachable { url, detail: error_chain(&e) },
            ::kube::Error::Auth(_) => KubeError::Auth { url, op: op.to_string(), detail: error_chain(&e) },
            other => KubeError::Api { url, op: op.to_string(), detail: error_chain(&other) },
        }
    }
}

/// POST/PUT parameters of every write kmdr sends: its field manager.
fn write_params() -> PostParams {
    PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
}

/// `metadata.namespace` (empty when cluster-scoped) and `metadata.name`.
pub fn meta_name(object: &Value) -> (String, String) {
    let s = |k: &str| object["metadata"][k].as_str().unwrap_or("").to_string();
    (s("namespace"), s("name"))
}

/// `Kind ns/name`, or `Kind name` for cluster-scoped kinds.
pub fn object_name(kind: &ResourceKind, namespace: &str, name: &str) -> String {
    if kind.namespaced && !namespace.is_empty() {
        format!("{} {namespace}/{name}", kind.kind)
    } else {
        format!("{} {name}", kind.kind)
    }
}

/// A Status's message, else its reason.
fn status_text(s: &::kube::core::Status) -> String {
    if s.message.is_empty() { s.reason.clone() } else { s.message.clone() }
}

/// An error and its causes on one line, without repeats (hyper nests them).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out.replace('\n', " ")
}

impl Classify for KubeError {
    fn class(&self) -> ErrorClass {
        match self {
            KubeError::NotFound { .. } => ErrorClass::NotFound,
            // Unreachable, refused credentials, bad kubeconfig, other API errors.
            KubeError::Config { .. }
            | KubeError::Unreachable { .. }
            | KubeError::Auth { .. }
            | KubeError::Api { .. } => ErrorClass::Source,
        }
    }
}

/// How many times a request the server answered 429 is sent again.
pub const RETRIES_ON_429: u32 = 6;
/// The longest pause a 429's `retryAfterSeconds` is obeyed for: a server
/// asking for more is asked again sooner rather than the operator waiting.
pub const MAX_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// `request()` until it does not fail with 429, at most [`RETRIES_ON_429`]
/// more times. Each pause is what the server asked for in the Status's
/// `details.retryAfterSeconds` (its Retry-After, as client-go obeys it), at
/// most [`MAX_RETRY_AFTER`]; without it 100 ms, then twice as long each time
/// (6.3 s in all).
pub async fn retry_on_429<T, F>(request: impl Fn() -> F) -> Result<T, ::kube::Error>
where
    F: std::future::Future<Output = Result<T, ::kube::Error>>,
{
    let mut pause = std::time::Duration::from_millis(100);
    for _ in 0..RETRIES_ON_429 {
        match request().await {
            Err(::kube::Error::Api(s)) if s.code == 429 => {
                let asked = s.details.as_ref().map(|d| d.retry_after_seconds).filter(|&n| n > 0);
                let wait = asked.map_or(pause, |n| std::time::Duration::from_secs(n.into()).min(MAX_RETRY_AFTER));
                tokio::time::sleep(wait).await;
                pause *= 2;
            }
            other => return other,
        }
    }
    request().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn api_error(code: u16) -> ::kube::Error {
        ::kube::Error::Api(Box::new(::kube::core::Status { code, ..Default::default() }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_is_sent_again_and_any_other_answer_is_final() {
        // Two 429s, then an answer: three requests, the answer returned.
        let calls = AtomicU32::new(0);
        let r = retry_on_429(|| async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(api_error(429)),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Another error is not retried.
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = retry_on_429(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(api_error(500))
        })
        .await;
        assert!(matches!(r, Err(::kube::Error::Api(s)) if s.code == 500));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A server that keeps answering 429: the last answer after RETRIES_ON_429 more tries.
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = retry_on_429(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(api_error(429))
        })
        .await;
        assert!(matches!(r, Err(::kube::Error::Api(s)) if s.code == 429));
        assert_eq!(calls.load(Ordering::SeqCst), RETRIES_ON_429 + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_waits_as_long_as_the_server_asks_within_a_bound() {
        let asking = |secs: u32| {
            let details = ::kube::core::response::StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                causes: Vec::new(),
                retry_after_seconds: secs,
            };
            ::kube::Error::Api(Box::new(::kube::core::Status {
                code: 429,
                details: Some(details),
                ..Default::default()
            }))
        };
        // (retryAfterSeconds of the one 429, the pause before the second request)
        for (secs, pause) in [(3, Duration::from_secs(3)), (0, Duration::from_millis(100)), (600, MAX_RETRY_AFTER)] {
            let calls = AtomicU32::new(0);
            let start = tokio::time::Instant::now();
            let r = retry_on_429(|| async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(asking(secs)),
                    _ => Ok(tokio::time::Instant::now()),
                }
            })
            .await;
            assert_eq!(r.unwrap() - start, pause, "retryAfterSeconds {secs}");
        }
    }
}
