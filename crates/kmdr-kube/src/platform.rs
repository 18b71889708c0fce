//! The platform layer: the Helm release of the kMetal umbrella chart.
//!
//! The runbook brings the platform back with
//! `helm install kmetal CHART --namespace NS --values kmetal-values.yaml`. The
//! one input of that command that only the cluster knows is the values overlay
//! the release was installed with, so kmdr captures it from the release
//! itself: Helm keeps every revision of a release in a Secret of type
//! `helm.sh/release.v1` named `sh.helm.release.v1.<release>.v<revision>`,
//! labelled `owner=helm,name=<release>,version=<revision>,status=<status>`,
//! whose `data.release` is `base64(gzip(release JSON))` (and the API adds its
//! own base64 on top). The JSON's `config` is what `helm get values` prints.
//!
//! A platform backup holds, as files of one backup:
//!
//! | file                        | what                                            |
//! |-----------------------------|-------------------------------------------------|
//! | `values.yaml`               | the user-supplied values overlay (`config`)     |
//! | `release.json`              | the whole decoded release (chart, manifest, ...) |
//! | `secrets/<ns>/<name>.yaml`  | each `--secret`, as a clean Secret manifest     |
//!
//! The manifest records chart, version, revision, status and times, never a
//! secret value. A restore writes the files into a directory and prints (or
//! runs, with `--execute`) the runbook's commands.

use crate::client::{KubeClient, KubeError};
use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kmdr_core::manifest::HelmReleaseInfo;
use kmdr_core::{Classify, ErrorClass};
use kmdr_core::{Layer, Manifest, SourceInfo};
use kmdr_repo::backuper::ManifestDraft;
use kmdr_repo::restorer::{FileCheck, restore_file};
use kmdr_repo::{BackupSession, Repository};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The backup kind of platform backups.
pub const KIND: &str = "platform";
/// The values overlay inside a platform backup.
pub const VALUES_FILE: &str = "values.yaml";
/// The whole decoded release inside a platform backup.
pub const RELEASE_FILE: &str = "release.json";
/// Where captured Secrets go inside a platform backup (and the restore dir).
pub const SECRETS_DIR: &str = "secrets";
/// The Namespace manifests a restore writes for the captured Secrets.
pub const NAMESPACES_FILE: &str = "namespaces.yaml";
/// The Secret type Helm 3 stores releases in.
pub const HELM_RELEASE_TYPE: &str = "helm.sh/release.v1";
/// `helm install --timeout` used by `--execute`.
pub const HELM_TIMEOUT: &str = "15m";
/// Annotations never copied into a Secret manifest: kubectl's copy of the
/// last applied object repeats the data and pins stale metadata.
pub const DROPPED_ANNOTATIONS: &[&str] = &["kubectl.kubernetes.io/last-applied-configuration"];

/// What can go wrong with the platform layer. Every message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// Talking to Kubernetes failed.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// No release Secret for the release.
    #[error("no Helm release {release:?} in namespace {namespace} at {url}: no Secret of type {HELM_RELEASE_TYPE} labelled owner=helm,name={release}{}. Check --release and -n (`helm list -A` lists releases)", found_note(.others))]
    ReleaseNotFound { release: String, namespace: String, url: String, others: Vec<String> },
    /// The release Secret cannot be decoded.
    #[error(
        "the Helm release Secret {secret} cannot be decoded: {detail}. Is it a Helm 3 release (`helm get values` should read it)?"
    )]
    BadRelease { secret: String, detail: String },
    /// A `--secret` argument is not `namespace/name`.
    #[error("--secret {0:?} is not NAMESPACE/NAME (e.g. kmetal-system/registry-creds)")]
    BadSecretRef(String),
    /// The backup is not a platform backup.
    #[error(
        "backup {id} is not a platform backup (kind {kind}): pick one listed by `kmdr backups list --kind platform`"
    )]
    WrongKind { id: String, kind: String },
    /// A tool `--execute` needs is not installed.
    #[error("{tool} is not installed (not on PATH): install it, or run the restore yourself: {commands}")]
    ToolMissing { tool: String, commands: String },
    /// A command `--execute` ran failed.
    #[error("`{command}` failed: {detail}. The files are in place; fix the cause and run the command again")]
    ToolFailed { command: String, detail: String },
    /// The chart kept in the release lacks the sub-charts it names.
    #[error(
        "the chart of backup {chart} has sub-charts ({}), which Helm does not keep in the release: set the plan's helm.chart (or --chart) to where the chart is published",
        sub_charts.join(", ")
    )]
    SubChartsNotKept { chart: String, sub_charts: Vec<String> },
    /// The restore directory cannot be written.
    #[error("cannot write {path}: {detail}; check --to and the free space there")]
    Local { path: String, detail: String },
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] kmdr_repo::Error),
}

fn found_note(others: &[String]) -> String {
    if others.is_empty() { String::new() } else { format!(" (releases in that namespace: {})", others.join(", ")) }
}

/// A Secret named on the command line as `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

impl SecretRef {
    /// The file of this Secret inside a backup or restore dir.
    pub fn file_name(&self) -> String {
        format!("{SECRETS_DIR}/{}/{}.yaml", self.namespace, self.name)
    }
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl std::str::FromStr for SecretRef {
    type Err = PlatformError;

    /// `namespace/name`, both Kubernetes object names (so neither can climb
    /// out of the restore directory).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = |p: &str| {
            !p.is_empty()
                && p.len() <= 253
                && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
                && !p.starts_with('.')
        };
        match s.split_once('/') {
            Some((ns, name)) if valid(ns) && valid(name) && !ns.contains('.') => {
                Ok(SecretRef { namespace: ns.to_string(), name: name.to_string() })
            }
            _ => Err(PlatformError::BadSecretRef(s.to_string())),
        }
    }
}

/// Decode Helm's `data.release` (the bytes after the API's own base64): a
/// base64 text of gzip of the release JSON. Helm reads un-gzipped JSON too,
/// so that is accepted as well.
pub(crate) fn decode_release(data: &[u8]) -> Result<Value, String> {
    let text: Vec<u8> = data.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&text)
        .map_err(|e| format!("data.release is not base64: {e}"))?;
    let json = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| format!("data.release is not valid gzip: {e}"))?;
        out
    } else {
        raw
    };
    serde_json::from_slice(&json).map_err(|e| format!("the release is not JSON: {e}"))
}

/// The fields of a decoded release that a restore needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseFields {
    pub name: String,
    pub namespace: String,
    pub revision: i64,
    pub status: String,
    pub chart: String,
    pub chart_version: String,
    pub app_version: Option<String>,
    pub first_deployed: Option<String>,
    pub last_deployed: Option<String>,
    /// The user-supplied values overlay (`{}` when none was given).
    pub config: Value,
    /// Every `....enabled` boolean of the chart's values with the overlay
    /// applied: the sub-chart toggles, by dotted path (`kamaji.enabled`).
    pub toggles: BTreeMap<String, bool>,
    /// The namespaces the release deploys into: its own, every
    /// `metadata.namespace` of its rendered manifest and every Namespace it
    /// creates. Sorted.
    pub namespaces: Vec<String>,
}

/// Collect `path.enabled = bool` entries of a values tree into `out`.
fn collect_toggles(v: &Value, path: &str, out: &mut BTreeMap<String, bool>) {
    let Value::Object(map) = v else { return };
    for (k, child) in map {
        let here = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
        match child {
            Value::Bool(b) if k == "enabled" => {
                out.insert(here, *b);
            }
            Value::Object(_) => collect_toggles(child, &here, out),
            _ => {}
        }
    }
}

/// The namespaces a rendered Helm manifest (multi-document YAML) touches.
/// Reading stops at the first document that does not parse (the YAML
/// stream cannot be resynchronised after an error): the manifest is Helm's
/// output, and drift is a report, not a gate.
fn manifest_namespaces(manifest: &str, release_namespace: &str) -> Vec<String> {
    let mut out = std::collections::BTreeSet::from([release_namespace.to_string()]);
    for doc in serde_norway::Deserializer::from_str(manifest) {
        let Ok(v) = <Value as serde::Deserialize>::deserialize(doc) else { break };
        let meta = &v["metadata"];
        if v["kind"] == "Namespace" {
            if let Some(n) = meta["name"].as_str() {
                out.insert(n.to_string());
            }
        } else if let Some(n) = meta["namespace"].as_str() {
            out.insert(n.to_string());
        }
    }
    out.into_iter().collect()
}

/// Read the fields of a decoded release JSON.
pub(crate) fn release_fields(release: &Value) -> Result<ReleaseFields, String> {
    let text = |v: &Value, what: &str| -> Result<String, String> {
        v.as_str().map(str::to_string).ok_or_else(|| format!("the release has no {what}"))
    };
    let opt = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let meta = &release["chart"]["metadata"];
    let namespace = text(&release["namespace"], "namespace")?;
    // Helm writes `null` or leaves it out when no values were supplied.
    let config = match &release["config"] {
        Value::Null => json!({}),
        v => v.clone(),
    };
    let mut toggles = BTreeMap::new();
    collect_toggles(&release["chart"]["values"], "", &mut toggles);
    collect_toggles(&config, "", &mut toggles);
    Ok(ReleaseFields {
        name: text(&release["name"], "name")?,
        namespaces: manifest_namespaces(release["manifest"].as_str().unwrap_or(""), &namespace),
        namespace,
        revision: release["version"].as_i64().ok_or("the release has no version (revision)")?,
        status: text(&release["info"]["status"], "info.status")?,
        chart: text(&meta["name"], "chart.metadata.name")?,
        chart_version: text(&meta["version"], "chart.metadata.version")?,
        app_version: opt(&meta["appVersion"]),
        first_deployed: opt(&release["info"]["first_deployed"]),
        last_deployed: opt(&release["info"]["last_deployed"]),
        config,
        toggles,
    })
}

/// The release Secret to back up: the highest revision whose `status` label
/// is `deployed`; when none is deployed, the highest revision. Secrets of
/// other types or without a numeric `version` label are ignored.
pub fn pick_release_secret(secrets: &[Secret]) -> Option<&Secret> {
    let candidates = secrets.iter().filter(|s| s.type_.as_deref() == Some(HELM_RELEASE_TYPE)).filter_map(|s| {
        let labels = s.metadata.labels.as_ref()?;
        let version: i64 = labels.get("version")?.parse().ok()?;
        Some((labels.get("status").map(String::as_str) == Some("deployed"), version, s))
    });
    // (deployed, version) orders a deployed revision above any other.
    candidates.max_by_key(|(deployed, version, _)| (*deployed, *version)).map(|(_, _, s)| s)
}

/// A Secret as a manifest that `kubectl apply` recreates: apiVersion, kind,
/// name, namespace, labels, annotations, type, data (and `immutable`). No uid,
/// resourceVersion, managedFields, creationTimestamp or owner references.
pub fn clean_secret_manifest(s: &Secret) -> Value {
    let mut metadata = serde_json::Map::new();
    metadata.insert("name".into(), json!(s.metadata.name));
    metadata.insert("namespace".into(), json!(s.metadata.namespace));
    if let Some(labels) = s.metadata.labels.as_ref().filter(|l| !l.is_empty()) {
        metadata.insert("labels".into(), json!(labels));
    }
    let annotations: BTreeMap<&String, &String> =
        s.metadata.annotations.iter().flatten().filter(|(k, _)| !DROPPED_ANNOTATIONS.contains(&k.as_str())).collect();
    if !annotations.is_empty() {
        metadata.insert("annotations".into(), json!(annotations));
    }
    let mut out = serde_json::Map::new();
    out.insert("apiVersion".into(), json!("v1"));
    out.insert("kind".into(), json!("Secret"));
    out.insert("metadata".into(), Value::Object(metadata));
    out.insert("type".into(), json!(s.type_.as_deref().unwrap_or("Opaque")));
    if let Some(immutable) = s.immutable {
        out.insert("immutable".into(), json!(immutable));
    }
    // ByteString serializes as base64, as `data` must be.
    out.insert(
        "data".into(),
        serde_json::to_value(s.data.clone().unwrap_or_default()).expect("Secret data serializes"),
    );
    Value::Object(out)
}

/// Render a value as YAML (serde_norway, a maintained serde_yaml fork).
pub fn to_yaml(v: &Value) -> String {
    serde_norway::to_string(v).expect("JSON values always serialize to YAML")
}

/// Parse a YAML document (a values file) into a JSON value.
pub fn values_from_yaml(text: &str) -> Result<Value, serde_norway::Error> {
    serde_norway::from_str(text)
}

/// Options of one platform backup.
#[derive(Debug, Clone, Default)]
pub struct PlatformBackupOptions {
    /// The Helm release name (`helm list`'s NAME).
    pub release: String,
    /// The release namespace.
    pub namespace: String,
    /// Secrets to copy alongside (external secrets the chart expects).
    pub secrets: Vec<SecretRef>,
    pub tags: BTreeMap<String, String>,
}

/// Everything read from the cluster, before a byte is stored.
struct Captured {
    info: HelmReleaseInfo,
    values_yaml: String,
    release_json: Vec<u8>,
    secrets: Vec<(SecretRef, String)>,
}

/// The release Secret of `release` in `namespace` (the deployed revision, see
/// [`pick_release_secret`]) as `namespace/name`, and the release it holds, decoded.
pub(crate) async fn read_release(
    kube: &KubeClient,
    release: &str,
    namespace: &str,
) -> Result<(String, Value), PlatformError> {
    let selector = format!("owner=helm,name={release}");
    let found = kube.list_secrets(namespace, &selector).await?;
    let Some(secret) = pick_release_secret(&found) else {
        // Name the releases that do exist there, to catch a typo.
        let mut others: Vec<String> = kube
            .list_secrets(namespace, "owner=helm")
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.metadata.labels.as_ref()?.get("name").cloned())
            .collect();
        others.sort();
        others.dedup();
        return Err(PlatformError::ReleaseNotFound {
            release: release.into(),
            namespace: namespace.into(),
            url: kube.url().to_string(),
            others,
        });
    };
    let secret_name = format!("{namespace}/{}", secret.metadata.name.as_deref().unwrap_or("?"));
    let bad = |detail: String| PlatformError::BadRelease { secret: secret_name.clone(), detail };
    let data =
        secret.data.as_ref().and_then(|d| d.get("release")).ok_or_else(|| bad("it has no data.release".into()))?;
    let release = decode_release(&data.0).map_err(bad)?;
    Ok((secret_name, release))
}

/// Read the release and the Secrets from the cluster.
async fn capture(kube: &KubeClient, opts: &PlatformBackupOptions) -> Result<Captured, PlatformError> {
    // The cheapest request first: an unreachable cluster fails here.
    let kubernetes_version = Some(kube.server_version().await?);
    let (secret_name, release) = read_release(kube, &opts.release, &opts.namespace).await?;
    let bad = |detail: String| PlatformError::BadRelease { secret: secret_name.clone(), detail };
    let fields = release_fields(&release).map_err(bad)?;
    if fields.name != opts.release {
        return Err(bad(format!("it holds release {:?}, not {:?}", fields.name, opts.release)));
    }
    let values_yaml = to_yaml(&fields.config);
    let values_keys = fields.config.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    let mut secrets = Vec::new();
    let mut refs = opts.secrets.clone();
    refs.sort();
    refs.dedup();
    for r in refs {
        let s = kube.get_secret(&r.namespace, &r.name).await?;
        secrets.push((r, to_yaml(&clean_secret_manifest(&s))));
    }
    Ok(Captured {
        info: HelmReleaseInfo {
            cluster: kube.url().to_string(),
            kubernetes_version,
            release: fields.name,
            namespace: fields.namespace,
            revision: fields.revision,
            status: fields.status,
            chart: fields.chart,
            chart_version: fields.chart_version,
            app_version: fields.app_version,
            first_deployed: fields.first_deployed,
            last_deployed: fields.last_deployed,
            release_secret: secret_name,
            values_keys,
            toggles: fields.toggles,
            namespaces: fields.namespaces,
            secrets: secrets.iter().map(|(r, _)| r.to_string()).collect(),
        },
        values_yaml,
        release_json: serde_json::to_vec_pretty(&release).expect("JSON value serializes"),
        secrets,
    })
}

/// What is deployed now: the release's fields as a backup would record them
/// (for drift checks), without storing anything.
pub async fn live_release(kube: &KubeClient, opts: &PlatformBackupOptions) -> Result<HelmReleaseInfo, PlatformError> {
    Ok(capture(kube, opts).await?.info)
}

/// Back up the platform's Helm release (and the listed Secrets) into a new
/// backup and commit it. Everything is read from the cluster before the
/// repository is touched, so a failure leaves nothing behind.
pub async fn backup_platform(
    repo: &Repository,
    kube: &KubeClient,
    opts: &PlatformBackupOptions,
) -> Result<Manifest, PlatformError> {
    let captured = capture(kube, opts).await?;
    let mut session = BackupSession::start(repo, "kmdr backup platform").await?;
    let mut files: Vec<(String, &[u8])> = vec![
        (VALUES_FILE.to_string(), captured.values_yaml.as_bytes()),
        (RELEASE_FILE.to_string(), &captured.release_json),
    ];
    files.extend(captured.secrets.iter().map(|(r, yaml)| (r.file_name(), yaml.as_bytes())));
    for (name, mut bytes) in files {
        if let Err(e) = session.add_file(&name, &mut bytes, None).await {
            session.abort().await;
            return Err(e.into());
        }
    }
    let info = captured.info;
    let draft = ManifestDraft {
        kind: KIND.into(),
        layer: Layer::Platform,
        series: format!("platform/{}/{}", info.namespace, info.release),
        tags: opts.tags.clone(),
        source: SourceInfo::HelmRelease(info),
    };
    Ok(session.commit(draft).await?)
}

/// The Helm release a backup holds.
pub fn helm_info(m: &Manifest) -> Result<&HelmReleaseInfo, PlatformError> {
    match &m.source {
        SourceInfo::HelmRelease(h) if m.file(VALUES_FILE).is_some() => Ok(h),
        _ => Err(PlatformError::WrongKind { id: m.id.to_string(), kind: m.id.kind().to_string() }),
    }
}

/// Options of a platform restore.
#[derive(Debug, Clone, Default)]
pub struct PlatformRestoreOptions {
    /// Directory the files are written to.
    pub to: PathBuf,
    /// Chart reference for `helm install` (default: the chart's name, which
    /// the user resolves against their repository, e.g. `oci://.../kmetal`).
    pub chart: Option<String>,
    /// Passed on to helm and kubectl.
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

/// One file a restore writes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedFile {
    /// Where it goes.
    pub path: PathBuf,
    pub bytes: u64,
    /// The backup file it comes from; `None` for files kmdr generates
    /// (`namespaces.yaml`).
    pub from: Option<String>,
}

/// What a platform restore writes and runs, computed from the manifest alone.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlatformRestorePlan {
    pub backup: String,
    pub release: String,
    pub namespace: String,
    pub revision: i64,
    pub status: String,
    pub chart: String,
    pub chart_ref: String,
    pub chart_version: String,
    pub values_file: PathBuf,
    pub files: Vec<PlannedFile>,
    /// The commands, in order, as argv: the runbook's restore.
    pub commands: Vec<Vec<String>>,
    /// The content of `namespaces.yaml` when Secrets were captured.
    #[serde(skip)]
    namespaces_yaml: Option<String>,
}

impl PlatformRestorePlan {
    /// The commands as shell lines (arguments quoted where needed).
    pub fn command_lines(&self) -> Vec<String> {
        self.commands.iter().map(|argv| argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")).collect()
    }
}

/// Quote `s` for a POSIX shell when it needs it.
fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A backup file name as a path under the restore dir, refusing anything
/// that is not plain relative components.
fn local_path(dir: &Path, name: &str) -> Result<PathBuf, PlatformError> {
    let rel = Path::new(name);
    if rel.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(dir.join(rel))
    } else {
        Err(PlatformError::Local {
            path: name.to_string(),
            detail: "the backup names a file outside the restore directory".into(),
        })
    }
}

/// Describe the restore of `manifest` into `opts.to`: the files and the
/// commands (`kubectl apply` of the Secrets first, then `helm install`).
pub fn plan_platform_restore(
    manifest: &Manifest,
    opts: &PlatformRestoreOptions,
) -> Result<PlatformRestorePlan, PlatformError> {
    let info = helm_info(manifest)?;
    let mut files = Vec::new();
    for f in manifest.files.iter().filter(|f| f.name != RELEASE_FILE) {
        files.push(PlannedFile { path: local_path(&opts.to, &f.name)?, bytes: f.size, from: Some(f.name.clone()) });
    }
    let values_file = local_path(&opts.to, VALUES_FILE)?;
    let kubectl_flags: Vec<String> = kube_flags(opts, "--context");
    let mut commands = Vec::new();
    let has_secrets = manifest.files.iter().any(|f| f.name.starts_with(&format!("{SECRETS_DIR}/")));
    let namespaces_yaml = if has_secrets {
        // The Secrets' namespaces must exist before the Secrets (helm creates
        // only the release namespace, and only later).
        let mut namespaces: Vec<&str> =
            info.secrets.iter().filter_map(|s| s.split_once('/').map(|(ns, _)| ns)).collect();
        namespaces.sort();
        namespaces.dedup();
        let docs: Vec<String> = namespaces
            .iter()
            .map(|ns| to_yaml(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})))
            .collect();
        let yaml = docs.join("---\n");
        let path = opts.to.join(NAMESPACES_FILE);
        files.push(PlannedFile { path: path.clone(), bytes: yaml.len() as u64, from: None });
        let mut apply_ns = vec!["kubectl".to_string()];
        apply_ns.extend(kubectl_flags.iter().cloned());
        apply_ns.extend(["apply".into(), "-f".into(), path.display().to_string()]);
        commands.push(apply_ns);
        let mut apply = vec!["kubectl".to_string()];
        apply.extend(kubectl_flags.iter().cloned());
        apply.extend([
            "apply".into(),
            "--recursive".into(),
            "-f".into(),
            format!("{}/", opts.to.join(SECRETS_DIR).display()),
        ]);
        commands.push(apply);
        Some(yaml)
    } else {
        None
    };
    let chart_ref = opts.chart.clone().unwrap_or_else(|| info.chart.clone());
    let mut helm: Vec<String> = vec!["helm".into(), "install".into(), info.release.clone(), chart_ref.clone()];
    helm.extend([
        "--version".into(),
        info.chart_version.clone(),
        "--namespace".into(),
        info.namespace.clone(),
        "--create-namespace".into(),
        "--values".into(),
        values_file.display().to_string(),
        "--wait".into(),
        "--timeout".into(),
        HELM_TIMEOUT.into(),
    ]);
    helm.extend(kube_flags(opts, "--kube-context"));
    commands.push(helm);
    Ok(PlatformRestorePlan {
        backup: manifest.id.to_string(),
        release: info.release.clone(),
        namespace: info.namespace.clone(),
        revision: info.revision,
        status: info.status.clone(),
        chart: info.chart.clone(),
        chart_ref,
        chart_version: info.chart_version.clone(),
        values_file,
        files,
        commands,
        namespaces_yaml,
    })
}

/// `--kubeconfig F` and the context flag (kubectl `--context`, helm `--kube-context`).
fn kube_flags(opts: &PlatformRestoreOptions, context_flag: &str) -> Vec<String> {
    let mut flags = Vec::new();
    if let Some(k) = &opts.kubeconfig {
        flags.extend(["--kubeconfig".to_string(), k.display().to_string()]);
    }
    if let Some(c) = &opts.context {
        flags.extend([context_flag.to_string(), c.clone()]);
    }
    flags
}

/// Write the plan's files: each one checked against the manifest, written to
/// a temporary name and renamed, readable by its owner only (values and
/// Secrets may hold credentials).
pub async fn write_restore_files(
    repo: &Repository,
    manifest: &Manifest,
    plan: &PlatformRestorePlan,
) -> Result<(), PlatformError> {
    for f in &plan.files {
        let content = match &f.from {
            Some(name) => {
                let entry = manifest.file(name).ok_or_else(|| PlatformError::WrongKind {
                    id: manifest.id.to_string(),
                    kind: manifest.id.kind().to_string(),
                })?;
                let mut buf = Vec::with_capacity(entry.size as usize);
                restore_file(repo, entry, &mut buf, FileCheck::Sha256, None).await?;
                buf
            }
            None => plan.namespaces_yaml.clone().unwrap_or_default().into_bytes(),
        };
        write_private(&f.path, &content)
            .map_err(|e| PlatformError::Local { path: f.path.display().to_string(), detail: e.to_string() })?;
    }
    Ok(())
}

/// Write `content` to `path` (mode 0600) through a temporary file.
fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("kmdr-tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts.open(&tmp)?;
    file.write_all(content)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// `name` on PATH, as a shell's lookup finds it.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
        }
        #[cfg(not(unix))]
        {
            p.is_file()
        }
    })
}

/// Run the plan's commands in order (after [`write_restore_files`]). Every
/// tool is looked up before the first runs, so a missing helm changes
/// nothing in the cluster. `notify` hears each command before it runs.
pub async fn execute_restore(plan: &PlatformRestorePlan, notify: &(dyn Fn(&str) + Sync)) -> Result<(), PlatformError> {
    let lines = plan.command_lines();
    let mut tools = Vec::new();
    for argv in &plan.commands {
        match find_tool(&argv[0]) {
            Some(p) => tools.push(p),
            None => return Err(PlatformError::ToolMissing { tool: argv[0].clone(), commands: lines.join(" && ") }),
        }
    }
    for ((argv, tool), line) in plan.commands.iter().zip(tools).zip(&lines) {
        notify(&format!("running: {line}"));
        let out = tokio::process::Command::new(tool)
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| PlatformError::ToolFailed { command: line.clone(), detail: e.to_string() })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).rev().take(3).collect();
            let detail = format!("{} ({})", out.status, tail.into_iter().rev().collect::<Vec<_>>().join(" / "));
            return Err(PlatformError::ToolFailed { command: line.clone(), detail });
        }
        for l in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()) {
            notify(&format!("  {l}"));
        }
    }
    Ok(())
}

impl Classify for PlatformError {
    fn class(&self) -> ErrorClass {
        match self {
            PlatformError::Kube(k) => k.class(),
            PlatformError::ReleaseNotFound { .. } | PlatformError::WrongKind { .. } => ErrorClass::NotFound,
            PlatformError::BadSecretRef(_) | PlatformError::SubChartsNotKept { .. } => ErrorClass::Usage,
            PlatformError::BadRelease { .. } => ErrorClass::Source,
            PlatformError::ToolMissing { .. } | PlatformError::Local { .. } => ErrorClass::Refused,
            PlatformError::ToolFailed { .. } => ErrorClass::Other,
            PlatformError::Repo(r) => r.class(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::io::Write;

    /// A release Secret as Helm writes it (before the API's base64).
    fn helm_secret(version: i64, status: &str, release: &Value) -> Secret {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&serde_json::to_vec(release).unwrap()).unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
        Secret {
            metadata: ObjectMeta {
                name: Some(format!("sh.helm.release.v1.kmetal.v{version}")),
                namespace: Some("kmetal-system".into()),
                labels: Some(BTreeMap::from([
                    ("owner".into(), "helm".into()),
                    ("name".into(), "kmetal".into()),
                    ("version".into(), version.to_string()),
                    ("status".into(), status.into()),
                ])),
                ..Default::default()
            },
            type_: Some(HELM_RELEASE_TYPE.into()),
            data: Some(BTreeMap::from([("release".into(), ByteString(encoded.into_bytes()))])),
            ..Default::default()
        }
    }

    #[test]
    fn toggles_and_namespaces_come_from_values_and_manifest() {
        let r = json!({
            "name": "kmetal", "namespace": "kmetal-system", "version": 3,
            "info": {"status": "deployed"},
            "chart": {"metadata": {"name": "kmetal", "version": "1.4.2"},
                      "values": {"kamaji": {"enabled": true, "etcd": {"enabled": false}}, "monitoring": {"enabled": false}, "replicas": 1}},
            "config": {"monitoring": {"enabled": true}, "extra": {"enabled": "yes"}},
            "manifest": "---\nkind: Namespace\nmetadata:\n  name: kamaji-system\n---\nkind: Deployment\nmetadata:\n  name: x\n  namespace: monitoring\n---\nkind: ClusterRole\nmetadata:\n  name: y\n---\n: not yaml [\n",
        });
        let f = release_fields(&r).unwrap();
        // The overlay wins over the chart default; non-booleans are not toggles.
        assert_eq!(
            f.toggles,
            BTreeMap::from([
                ("kamaji.enabled".into(), true),
                ("kamaji.etcd.enabled".into(), false),
                ("monitoring.enabled".into(), true)
            ])
        );
        assert_eq!(f.namespaces, ["kamaji-system", "kmetal-system", "monitoring"]);
    }

    fn release(version: i64, status: &str) -> Value {
        json!({
            "name": "kmetal", "namespace": "kmetal-system", "version": version,
            "info": {"status": status, "first_deployed": "2026-01-01T00:00:00Z", "last_deployed": "2026-02-01T00:00:00Z"},
            "chart": {"metadata": {"name": "kmetal", "version": "1.4.2", "appVersion": "v1.4.2"}},
            "config": {"kamaji": {"enabled": true}, "replicas": version},
        })
    }

    #[test]
    fn decodes_what_helm_writes() {
        let s = helm_secret(2, "deployed", &release(2, "deployed"));
        let v = decode_release(&s.data.unwrap()["release"].0).unwrap();
        let f = release_fields(&v).unwrap();
        assert_eq!((f.name.as_str(), f.revision, f.chart_version.as_str()), ("kmetal", 2, "1.4.2"));
        assert_eq!(f.config, json!({"kamaji": {"enabled": true}, "replicas": 2}));
        assert_eq!(f.app_version.as_deref(), Some("v1.4.2"));
    }

    #[test]
    fn picks_the_newest_deployed_revision_else_the_newest() {
        let s = vec![
            helm_secret(1, "superseded", &release(1, "superseded")),
            helm_secret(2, "deployed", &release(2, "deployed")),
            helm_secret(3, "failed", &release(3, "failed")),
        ];
        assert_eq!(pick_release_secret(&s).unwrap().metadata.name.as_deref(), Some("sh.helm.release.v1.kmetal.v2"));
        let none_deployed = vec![s[0].clone(), s[2].clone()];
        assert_eq!(
            pick_release_secret(&none_deployed).unwrap().metadata.name.as_deref(),
            Some("sh.helm.release.v1.kmetal.v3")
        );
        assert!(pick_release_secret(&[]).is_none());
    }

    #[test]
    fn null_config_is_an_empty_overlay() {
        let mut r = release(1, "deployed");
        r["config"] = Value::Null;
        assert_eq!(release_fields(&r).unwrap().config, json!({}));
        assert_eq!(values_from_yaml(&to_yaml(&json!({}))).unwrap(), json!({}));
    }

    #[test]
    fn secret_refs_cannot_escape() {
        assert!("kmetal-system/registry-creds".parse::<SecretRef>().is_ok());
        for bad in ["registry-creds", "../x/y", "ns/../x", "a/b/c", "/x", "ns/", "Ns/x"] {
            assert!(bad.parse::<SecretRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn clean_secret_drops_server_fields() {
        let mut s = helm_secret(1, "deployed", &release(1, "deployed"));
        s.metadata.uid = Some("u".into());
        s.metadata.resource_version = Some("7".into());
        s.metadata.annotations = Some(BTreeMap::from([
            ("kubectl.kubernetes.io/last-applied-configuration".into(), "{...}".into()),
            ("team".into(), "platform".into()),
        ]));
        let m = clean_secret_manifest(&s);
        assert_eq!(
            m["metadata"].as_object().unwrap().keys().collect::<Vec<_>>(),
            ["annotations", "labels", "name", "namespace"]
        );
        assert_eq!(m["metadata"]["annotations"], json!({"team": "platform"}));
        assert!(m["data"]["release"].is_string());
    }
}
