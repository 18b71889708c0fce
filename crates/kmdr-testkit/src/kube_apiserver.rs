//! A real Kubernetes API server on loopback: kube-apiserver 1.34 (built from
//! its source module by scripts/build-go-tools.sh) in front of an etcd 3.6 of
//! its own, so that what kmdr does through the Kubernetes API (server-side
//! apply, CRD schema validation and defaulting, the status subresource,
//! resourceVersion conflicts, protobuf storage of built-in kinds, encryption at
//! rest) meets the server a platform runs, not an imitation of it.
//!
//! Everything lives under one directory: the certificates (`pki/`), etcd's
//! data, the kubeconfig, the logs. The certificates are made with the openssl
//! command line, as [`crate::make_pki`] does: a CA, a serving certificate for
//! 127.0.0.1 and localhost, a service-account key pair, and an admin client
//! certificate in the group `system:masters`. A client certificate rather than
//! a static token file: it is how kubeadm's admin.conf (and so most operators'
//! kubeconfigs) authenticate, so kmdr's TLS client-certificate path is what the
//! tests exercise; and kube-apiserver's `--token-auth-file` is a legacy flag.
//! Authorization is RBAC, as on a real control plane.
//!
//! Start takes seconds, so a test binary shares one server
//! ([`KubeApiServer::shared`]); tests keep out of each other's way by working
//! in namespaces of their own ([`KubeApiServer::create_namespace`]).
//!
//! Requests the test kit itself makes (readiness, CRDs, namespaces) go through
//! the curl command line with the admin certificate: the test kit stays free of
//! an HTTP/TLS client stack; tests talk to the server with kube-rs through
//! [`KubeApiServer::kubeconfig`], as kmdr does.

use crate::error::or_panic;
use crate::process::{Mode, Process, failure_output, find_bin};
use crate::{Etcd, EtcdOptions, LaunchError, free_port};
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The service-account issuer the server is started with.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The Service IP range (`--service-cluster-ip-range`).
pub const SERVICE_CLUSTER_IP_RANGE: &str = "10.96.0.0/16";
/// The field manager of the test kit's server-side applies.
pub const FIELD_MANAGER: &str = "kmdr-testkit";
/// The context (and cluster) name in the kubeconfig.
pub const CONTEXT: &str = "kmdr-test";

/// How to start kube-apiserver.
#[derive(Debug, Clone)]
pub struct KubeApiServerOptions {
    /// Certificates (`pki/`), etcd's data (`etcd/`), the kubeconfig and the
    /// logs go here (created). Certificates already there are kept, so a
    /// server restarted on the same directory keeps its CA and keys; a CA
    /// and service-account key put back alone are kept and the leaves
    /// issued from them, as `kubeadm init` does.
    pub dir: PathBuf,
    /// Default: `dir/kube-apiserver.log`.
    pub log: Option<PathBuf>,
    /// The HTTPS port; default: a free one.
    pub port: Option<u16>,
    /// Store in this etcd (`http://HOST:PORT`) instead of starting one.
    pub etcd_url: Option<String>,
    /// An EncryptionConfiguration file (`--encryption-provider-config`): the
    /// resources it names are encrypted in etcd.
    pub encryption_config: Option<PathBuf>,
    /// Detached: kube-apiserver's pid goes to the mode's pid file and the etcd
    /// it starts is detached too, its pid in `dir/etcd.pid`.
    pub mode: Mode,
    /// The kube-apiserver binary; default: `kube-apiserver` on PATH
    /// (scripts/tools-env.sh puts it there).
    pub program: Option<PathBuf>,
    /// How long to wait for `/readyz`; default 120s (the first start on a
    /// busy two-core machine takes a while).
    pub ready_timeout: Duration,
}

impl KubeApiServerOptions {
    pub fn new(dir: impl Into<PathBuf>) -> KubeApiServerOptions {
        KubeApiServerOptions {
            dir: dir.into(),
            log: None,
            port: None,
            etcd_url: None,
            encryption_config: None,
            mode: Mode::Owned,
            program: None,
            ready_timeout: Duration::from_secs(120),
        }
    }
}

/// kube-apiserver and, unless given one, its etcd; both stopped when dropped
/// (kube-apiserver first) unless started detached.
#[derive(Debug)]
pub struct KubeApiServer {
    // Declared before `etcd`: dropped, and so stopped, first.
    process: Process,
    /// The etcd it started (none when [`KubeApiServerOptions::etcd_url`] was given).
    pub etcd: Option<Etcd>,
    /// The etcd it stores in.
    pub etcd_url: String,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// A kubeconfig with the admin identity, context [`CONTEXT`], for kmdr
    /// (`--kubeconfig`) and kube-rs.
    pub kubeconfig: PathBuf,
    /// ca.crt, apiserver.{crt,key}, admin.{crt,key}, sa.{key,pub}.
    pub pki: PathBuf,
    pub dir: PathBuf,
    pub log: PathBuf,
    /// From spawning kube-apiserver (etcd already up) until `/readyz` said ok.
    pub start_time: Duration,
    /// The audit log (JSON lines, level Metadata, stage ResponseComplete):
    /// every request the server answered, with its verb, object and user
    /// agent; [`KubeApiServer::audit_events`] reads it.
    pub audit_log: PathBuf,
}

/// A request the test kit made to the API server failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// curl could not be run.
    #[error("cannot run curl (install it: scripts/install-deps.sh does)")]
    Curl(#[source] std::io::Error),
    /// No HTTP answer at all (curl's own error).
    #[error("{method} {url}: no answer: {detail}")]
    Unreachable { method: String, url: String, detail: String },
    /// The server answered with an error status.
    #[error("{method} {path}: HTTP {status}: {message}")]
    Status {
        method: String,
        path: String,
        status: u16,
        /// The Status object's message, or the body.
        message: String,
    },
    /// A CRD file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A CRD file is not the YAML of CustomResourceDefinitions.
    #[error("{}: {detail}", path.display())]
    NotCrd { path: PathBuf, detail: String },
    /// CRDs did not become Established in time.
    #[error("not Established within {secs}s: {names}")]
    NotEstablished { secs: u64, names: String },
}

impl kmdr_core::Classify for ApiError {
    /// The server refused or never answered: `Source`; a missing curl or an
    /// unreadable file here: `Refused`; a wait that ran out: `Timeout`.
    fn class(&self) -> kmdr_core::ErrorClass {
        use kmdr_core::ErrorClass;
        match self {
            ApiError::Curl(_) | ApiError::Read { .. } | ApiError::NotCrd { .. } => ErrorClass::Refused,
            ApiError::Unreachable { .. } | ApiError::Status { .. } => ErrorClass::Source,
            ApiError::NotEstablished { .. } => ErrorClass::Timeout,
        }
    }
}

impl KubeApiServer {
    /// Make the certificates (unless there), start etcd (unless given one)
    /// and kube-apiserver, and wait until `/readyz` answers ok to the admin.
    pub fn launch(o: KubeApiServerOptions) -> Result<KubeApiServer, LaunchError> {
        let program = match &o.program {
            Some(p) => p.clone(),
            None => find_bin("kube-apiserver", &[])
                .ok_or(LaunchError::NotInstalled { server: "kube-apiserver", programs: "kube-apiserver" })?,
        };
        for tool in ["openssl", "curl"] {
            if find_bin(tool, &[]).is_none() {
                return Err(LaunchError::NotInstalled {
                    server: "the test API server's certificates and probes",
                    programs: tool,
                });
            }
        }
        std::fs::create_dir_all(&o.dir).map_err(LaunchError::io("create", &o.dir))?;
        let pki = o.dir.join("pki");
        make_kube_pki(&pki)?;
        let etcd = match &o.etcd_url {
            Some(_) => None,
            None => {
                let mode = match &o.mode {
                    Mode::Owned => Mode::Owned,
                    Mode::Detached { .. } => Mode::Detached { pid_file: o.dir.join("etcd.pid") },
                };
                let eo = EtcdOptions {
                    mode,
                    log: Some(o.dir.join("etcd.log")),
                    ..EtcdOptions::new("kube", o.dir.join("etcd"))
                };
                Some(Etcd::launch(eo)?)
            }
        };
        let etcd_url = o.etcd_url.clone().or_else(|| etcd.as_ref().map(|e| e.client_url.clone())).unwrap_or_default();
        let port = o.port.unwrap_or_else(free_port);
        let url = format!("https://127.0.0.1:{port}");
        let log = o.log.clone().unwrap_or_else(|| o.dir.join("kube-apiserver.log"));
        let cert_dir = o.dir.join("apiserver-certs");
        std::fs::create_dir_all(&cert_dir).map_err(LaunchError::io("create", &cert_dir))?;
        let p = |f: &str| pki.join(f);
        let mut cmd = Command::new(&program);
        cmd.args(["--etcd-servers", &etcd_url])
            .args(["--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1"])
            .args(["--secure-port", &port.to_string()])
            .arg("--cert-dir")
            .arg(&cert_dir)
            .arg("--tls-cert-file")
            .arg(p("apiserver.crt"))
            .arg("--tls-private-key-file")
            .arg(p("apiserver.key"))
            .arg("--client-ca-file")
            .arg(p("ca.crt"))
            .args(["--authorization-mode", "RBAC"])
            .args(["--service-account-issuer", SERVICE_ACCOUNT_ISSUER])
            .arg("--service-account-key-file")
            .arg(p("sa.pub"))
            .arg("--service-account-signing-key-file")
            .arg(p("sa.key"))
            .args(["--service-cluster-ip-range", SERVICE_CLUSTER_IP_RANGE])
            // No kubelets, no node addresses: the "kubernetes" Service's
            // endpoints would name 127.0.0.1, which nothing here reads.
            .args(["--endpoint-reconciler-type", "none"])
            .args(["--profiling=false", "--v", "1"]);
        if let Some(enc) = &o.encryption_config {
            cmd.arg("--encryption-provider-config").arg(enc);
        }
        // An audit log, so that tests see what a client asked for (the
        // writes, in order), as an operator's cluster would record it.
        let audit_policy = o.dir.join("audit-policy.yaml");
        let audit_log = o.dir.join("audit.log");
        std::fs::write(&audit_policy, AUDIT_POLICY).map_err(LaunchError::io("write", &audit_policy))?;
        cmd.arg("--audit-policy-file").arg(&audit_policy).arg("--audit-log-path").arg(&audit_log).args([
            "--audit-log-format",
            "json",
            "--audit-log-mode",
            "blocking",
            "--audit-log-maxsize",
            "0",
        ]);
        let kubeconfig = o.dir.join("kubeconfig");
        write_kubeconfig(&kubeconfig, &url, &pki)?;
        let start = Instant::now();
        let process = Process::spawn(&mut cmd, "kube-apiserver", &o.mode, &log)?;
        let mut s = KubeApiServer {
            process,
            etcd,
            etcd_url,
            url,
            kubeconfig,
            pki,
            dir: o.dir,
            log,
            start_time: Duration::ZERO,
            audit_log,
        };
        let (url, pki, log) = (s.url.clone(), s.pki.clone(), s.log.clone());
        let ready =
            s.process.wait_ready("kube-apiserver", &log, o.ready_timeout.as_secs(), Duration::from_millis(250), || {
                curl(&url, &pki, "GET", "/readyz", None).is_ok()
            });
        if let Err(e) = ready {
            // A detached etcd has already outlived its handle: stop it too.
            if let (Mode::Detached { .. }, Some(etcd)) = (&o.mode, &s.etcd) {
                crate::process::stop_pid(etcd.pid(), "etcd");
            }
            return Err(e);
        }
        s.start_time = start.elapsed();
        s.process.launched();
        Ok(s)
    }

    /// Start an owned server under `dir`.
    pub fn start(dir: &Path) -> KubeApiServer {
        or_panic(Self::launch(KubeApiServerOptions::new(dir)))
    }

    /// The server this test binary shares: started on first use under the
    /// system's temp directory, stopped (and its directory removed) by a
    /// watchdog once this process has exited, since a static is never dropped.
    /// Panics with the launch error's message when it cannot start.
    pub fn shared() -> &'static KubeApiServer {
        static SHARED: OnceLock<Result<KubeApiServer, String>> = OnceLock::new();
        let shared = SHARED.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("kmdr-kube-apiserver-{}", std::process::id()));
            let start = Instant::now();
            let s = Self::launch(KubeApiServerOptions::new(&dir)).map_err(|e| error_chain(&e))?;
            let mut pids = vec![(s.pid(), "kube-apiserver")];
            if let Some(e) = &s.etcd {
                pids.push((e.pid(), "etcd"));
            }
            watchdog(&pids, &dir);
            eprintln!(
                "kube-apiserver (shared) at {}: ready {:.1}s after it started, {:.1}s with its certificates and etcd",
                s.url,
                s.start_time.as_secs_f64(),
                start.elapsed().as_secs_f64()
            );
            Ok(s)
        });
        match shared {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Kill -9 kube-apiserver now (its etcd stays up).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// A request as the admin: `body` is (content type, bytes). The answer's
    /// JSON (`null` when it is not JSON, e.g. `/readyz`'s `ok`).
    pub fn request(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Result<Value, ApiError> {
        curl(&self.url, &self.pki, method, path, body)
    }

    pub fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.request("GET", path, None)
    }

    /// A request with a bearer token (a ServiceAccount's, say) instead of
    /// the admin certificate; the server's CA still checked.
    pub fn request_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<Value, ApiError> {
        curl_as(&self.url, &self.pki, Some(token), method, path, body)
    }

    /// The audit events of every request answered so far, in order.
    pub fn audit_events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Create namespace `name` (already there is fine).
    pub fn create_namespace(&self, name: &str) -> Result<(), ApiError> {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        self.apply("/api/v1/namespaces", name, &ns)
    }

    /// Server-side apply `object` (as [`FIELD_MANAGER`], forcing conflicts)
    /// at `collection/name`.
    pub fn apply(&self, collection: &str, name: &str, object: &Value) -> Result<(), ApiError> {
        let path = format!("{collection}/{name}?fieldManager={FIELD_MANAGER}&force=true");
        let body = object.to_string();
        self.request("PATCH", &path, Some(("application/apply-patch+yaml", body.as_bytes()))).map(|_| ())
    }

    /// Install (server-side apply) every CustomResourceDefinition in the
    /// `*.yaml` files of `dir` (scripts/fetch-crds.sh's directory) and wait
    /// (60s) until each is Established. Returns their names, sorted.
    pub fn apply_crds(&self, dir: &Path) -> Result<Vec<String>, ApiError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| ApiError::Read { path: dir.into(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        let mut names = Vec::new();
        for file in &files {
            for crd in read_crds(file)? {
                let name = crd["metadata"]["name"].as_str().unwrap_or_default().to_string();
                self.apply("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", &name, &crd)?;
                names.push(name);
            }
        }
        names.sort();
        self.wait_established(&names, Duration::from_secs(60))?;
        Ok(names)
    }

    /// Wait until each named CRD reports the condition Established.
    pub fn wait_established(&self, names: &[String], timeout: Duration) -> Result<(), ApiError> {
        let deadline = Instant::now() + timeout;
        let mut waiting: Vec<&String> = names.iter().collect();
        loop {
            let mut still = Vec::new();
            for name in waiting {
                let crd = self.get(&format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"))?;
                let established = crd["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Established" && c["status"] == "True"));
                if !established {
                    still.push(name);
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let names = still.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
                return Err(ApiError::NotEstablished { secs: timeout.as_secs(), names });
            }
            waiting = still;
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stop(self) {}
}

/// Metadata (verb, object, user, user agent, response code) of every
/// request, once answered; no bodies, so no Secret value is logged.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
- level: Metadata
";

/// The CustomResourceDefinitions in one YAML file (one or more documents).
fn read_crds(path: &Path) -> Result<Vec<Value>, ApiError> {
    let text = std::fs::read_to_string(path).map_err(|source| ApiError::Read { path: path.into(), source })?;
    let not_crd = |detail: String| ApiError::NotCrd { path: path.into(), detail };
    let mut crds = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).map_err(|e| not_crd(e.to_string()))?;
        if v.is_null() {
            continue;
        }
        if v["kind"] != "CustomResourceDefinition" || v["metadata"]["name"].as_str().is_none_or(str::is_empty) {
            return Err(not_crd(format!("a {} document, not a named CustomResourceDefinition", v["kind"])));
        }
        crds.push(v);
    }
    Ok(crds)
}

/// One request with curl as the admin; the answer's JSON, `null` when not JSON.
fn curl(url: &str, pki: &Path, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Result<Value, ApiError> {
    curl_as(url, pki, None, method, path, body)
}

/// [`curl`] as the admin (`token` `None`) or with a bearer token.
fn curl_as(
    url: &str,
    pki: &Path,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> Result<Value, ApiError> {
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", "30", "--request", method])
        .arg("--cacert")
        .arg(pki.join("ca.crt"));
    match token {
        None => cmd.arg("--cert").arg(pki.join("admin.crt")).arg("--key").arg(pki.join("admin.key")),
        Some(t) => cmd.args(["--header", &format!("Authorization: Bearer {t}")]),
    };
    cmd.args(["--write-out", "\n%{http_code}"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some((content_type, _)) = body {
        cmd.args(["--header", &format!("Content-Type: {content_type}"), "--data-binary", "@-"]);
    }
    cmd.arg(format!("{url}{path}"));
    let mut child = cmd.spawn().map_err(ApiError::Curl)?;
    // Dropped at the end of the statement: curl sees the end of its input.
    if let (Some(mut stdin), Some((_, bytes))) = (child.stdin.take(), body) {
        stdin.write_all(bytes).map_err(ApiError::Curl)?;
    }
    let out = child.wait_with_output().map_err(ApiError::Curl)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (text, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let status: u16 = code.trim().parse().unwrap_or(0);
    if !out.status.success() || status == 0 {
        return Err(ApiError::Unreachable {
            method: method.into(),
            url: format!("{url}{path}"),
            detail: failure_output(&out),
        });
    }
    let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        let message = value["message"].as_str().map(str::to_string).unwrap_or_else(|| text.trim().to_string());
        return Err(ApiError::Status { method: method.into(), path: path.into(), status, message });
    }
    Ok(value)
}

/// The CA, the serving certificate, the service-account key pair and the
/// admin client certificate in `pki`, made with openssl unless there.
fn make_kube_pki(pki: &Path) -> Result<(), LaunchError> {
    if pki.join("admin.crt").is_file() {
        return Ok(());
    }
    std::fs::create_dir_all(pki).map_err(LaunchError::io("create", pki))?;
    // As `kubeadm init` does: a CA and a service-account key already there
    // (put back from a backup) are kept, and the leaves issued from them.
    let script = r#"
set -e
[ -s ca.crt ] && [ -s ca.key ] || openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 7 -subj /CN=kmdr-test-kubernetes-ca
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' > apiserver.ext
printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' > admin.ext
openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver
openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 7 -extfile apiserver.ext
[ -s sa.key ] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
[ -s sa.pub ] || openssl pkey -in sa.key -pubout -out sa.pub
openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj /O=system:masters/CN=kmdr-admin
openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt.tmp -days 7 -extfile admin.ext
mv admin.crt.tmp admin.crt
"#;
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(pki)
        .output()
        .map_err(LaunchError::spawn("bash (openssl)"))?;
    if !out.status.success() {
        return Err(LaunchError::Setup { tool: "openssl", output: failure_output(&out) });
    }
    Ok(())
}

/// A kubeconfig naming the server, its CA and the admin certificate by path.
fn write_kubeconfig(path: &Path, url: &str, pki: &Path) -> Result<(), LaunchError> {
    let file = |f: &str| pki.join(f).display().to_string();
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": url, "certificate-authority": file("ca.crt")}}],
        "users": [{"name": "kmdr-admin", "user": {"client-certificate": file("admin.crt"), "client-key": file("admin.key")}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": "kmdr-admin"}}],
        "current-context": CONTEXT,
    });
    let yaml = serde_norway::to_string(&config).expect("a JSON value serializes as YAML");
    std::fs::write(path, yaml).map_err(LaunchError::io("write", path))
}

/// Once process `me` has exited: kill each (pid, program) still running that
/// program, then remove `dir`. For the shared server, which no drop stops.
fn watchdog(pids: &[(u32, &str)], dir: &Path) {
    let script = r#"
me=$1 dir=$2; shift 2
while kill -0 "$me" 2>/dev/null; do sleep 1; done
for p in "$@"; do
  pid=${p%%:*} comm=${p#*:}
  [ "$(cat /proc/$pid/comm 2>/dev/null)" = "$comm" ] && kill -KILL "$pid"
done
sleep 1
rm -rf "$dir"
"#;
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script).arg("kmdr-kube-apiserver-watchdog");
    cmd.arg(std::process::id().to_string()).arg(dir);
    for (pid, program) in pids {
        cmd.arg(format!("{pid}:{program}"));
    }
    // Its own process group: a Ctrl-C to the test run does not stop it
    // before it has stopped the servers.
    use std::os::unix::process::CommandExt;
    cmd.process_group(0).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let _ = cmd.spawn();
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}
