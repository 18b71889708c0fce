//! Reading `kmdr.yaml`, the runbook as code.
//!
//! The file is loaded with `saphyr` into a tree of [`MarkedYaml`] nodes that
//! carry their position, and the tree is walked by hand so that every problem
//! can be reported with its line and column and with advice on what to write
//! instead. Checking does not stop at the first problem: each part of the plan
//! is checked on its own, and the plan is only built when nothing was wrong.
//!
//! The schema is documented key by key in `docs/plan.md`.

use crate::plan::{
    DatastoreSpec, EtcdMember, EtcdSource, HelmSource, KamajiSource, LayerSource, LayerSpec, NodeFilesSpec, Phase,
    Plan, Pos, RepositorySpec, Reviewed, RunStep, TenantSelector, TlsSpec, VerifySpec, VolumeSpec, default_targets,
};
use chrono::NaiveDate;
use kmdr_core::Layer;
use kmdr_core::volume::{self as volumes, ProviderSpec, VolumeEntry};
use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, ScanError, YamlData};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One problem in a plan file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub pos: Pos,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for Problem {
    /// `LINE:COL: message`; see [`render`] for the form with the file name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.pos.line, self.pos.column, self.message)
    }
}

/// The problems as `FILE:LINE:COL: message` lines (each ending in a newline),
/// the form editors and terminals turn into links.
pub fn render(file: &Path, problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("{}:{p}\n", file.display())).collect()
}

/// Parse and check a plan; every problem found (in file order), or the plan.
pub fn parse_plan(file: &Path, text: &str) -> Result<Plan, Vec<Problem>> {
    let docs = match MarkedYaml::load_from_str(text) {
        Ok(docs) => docs,
        Err(e) => return Err(vec![syntax_problem(&e)]),
    };
    // No document, an empty one (`---` alone) or a bare `null`: nothing to check.
    let Some(root) = docs.first().filter(|d| !is_null(d) && !matches!(d.data, YamlData::BadValue)) else {
        return Err(vec![Problem { pos: Pos { line: 1, column: 1 }, message: EMPTY_PLAN.into() }]);
    };

    let mut ck = Checker::default();
    if let Some(second) = docs.get(1) {
        ck.problem(
            pos_of(second),
            "a plan file holds one YAML document: remove this `---` and what follows, or merge it into the first document",
        );
    }
    let plan = ck.plan(file, root);
    let mut problems = ck.problems;
    match plan {
        Some(plan) if problems.is_empty() => Ok(plan),
        _ => {
            if problems.is_empty() {
                // Every path that gives up records why; this would be a bug here.
                problems.push(Problem {
                    pos: pos_of(root),
                    message: "the plan could not be read (a kmdr bug: please report it with the file)".into(),
                });
            }
            // Stable: problems at one position keep the order they were found in.
            problems.sort_by_key(|p| (p.pos.line, p.pos.column));
            Err(problems)
        }
    }
}

const EMPTY_PLAN: &str = "the plan is empty: a plan needs at least `version: 1`, `name:`, `repository:` (with `url:`) \
     and `layers:` with one or more of under-cluster, platform, tenant-control-planes, persistent-data; \
     see examples/kmdr.yaml for a complete plan";

/// The top-level keys.
const TOP_KEYS: &[&str] = &["version", "name", "repository", "layers", "run", "contacts", "credentials", "verify"];
const VERIFY_KEYS: &[&str] = &["every", "sample", "concurrency", "nice", "targetDriver"];
const REPOSITORY_KEYS: &[&str] = &["url", "keyFile", "s3Endpoint"];
const PERSISTENT_KEYS: &[&str] = &["rto", "rpo", "volumes"];
/// Keys every `volumes:` entry may have.
const VOLUME_COMMON_KEYS: &[&str] = &["name", "provider", "timeout", "kubeconfig", "context"];
const CSI_KEYS: &[&str] = &["namespace", "selector", "pvcs", "snapshotClass", "restoreNamespace"];
const VELERO_KEYS: &[&str] = &[
    "namespace",
    "includedNamespaces",
    "labelSelector",
    "snapshotMoveData",
    "ttl",
    "storageLocation",
    "schedule",
    "restoreNamespace",
];
const KASTEN_KEYS: &[&str] = &["namespace", "policy", "appNamespace", "restoreNamespace"];
const PROVIDERS: &[&str] = &["csi", "velero", "kasten"];
/// How long a volume backup or restore may take unless the entry says.
pub const DEFAULT_VOLUME_TIMEOUT: Duration = Duration::from_secs(3600);
/// How often kmdr looks at the tool's objects while it waits.
pub const VOLUME_POLL: Duration = Duration::from_secs(2);
const PLATFORM_KEYS: &[&str] = &["rto", "rpo", "helm"];
const HELM_KEYS: &[&str] = &["release", "namespace", "secrets", "chart", "kubeconfig", "context"];
const UNDER_CLUSTER_KEYS: &[&str] = &["rto", "rpo", "etcd", "nodeFiles"];
const NODE_FILES_KEYS: &[&str] = &["paths", "encryptionConfig", "leafCerts", "root", "restoreTo"];
const TENANT_LAYER_KEYS: &[&str] = &["rto", "rpo", "datastores", "kamaji"];
const KAMAJI_KEYS: &[&str] = &["kubeconfig", "context"];
const ETCD_KEYS: &[&str] = &["endpoints", "cacert", "cert", "key", "restore"];
const RESTORE_KEYS: &[&str] = &["dataDir", "name", "initialCluster", "initialAdvertisePeerUrls"];
const DATASTORE_KEYS: &[&str] = &["name", "url", "cacert", "cert", "key", "passwordFile", "tenants"];
const RUN_KEYS: &[&str] = &["name", "layer", "phase", "command", "timeout"];
const CONTACT_KEYS: &[&str] = &["name", "role", "reviewed", "reviewEvery"];
const CREDENTIAL_KEYS: &[&str] = &["name", "location", "reviewed", "reviewEvery"];

/// The URL schemes a tenant datastore may have.
const DATASTORE_SCHEMES: &[&str] = &["etcd", "etcds", "postgres", "postgresql", "mysql", "nats", "tls"];

/// The phases of a `run:` step, as written.
const PHASES: &[(&str, Phase)] = &[
    ("before-restore", Phase::BeforeRestore),
    ("after-restore", Phase::AfterRestore),
    ("failure", Phase::Failure),
    ("health-check", Phase::HealthCheck),
];

type Node<'y> = MarkedYaml<'y>;

/// A node's start as a 1-based line and column (saphyr's columns are 0-based).
fn pos_of(node: &Node) -> Pos {
    let m = node.span.start;
    Pos { line: m.line(), column: m.col() + 1 }
}

fn syntax_problem(e: &ScanError) -> Problem {
    let m = e.marker();
    let pos = Pos { line: m.line().max(1), column: m.col() + 1 };
    let message = if e.info().contains("duplicated key") {
        "this key appears twice in the same mapping: keep one of the two".to_string()
    } else {
        format!(
            "YAML syntax error: {}: check the indentation (spaces, not tabs) and quote values containing `: ` or `#`",
            e.info()
        )
    };
    Problem { pos, message }
}

fn is_null(node: &Node) -> bool {
    matches!(node.data, YamlData::Value(Scalar::Null))
}

/// What a node is, for "expected X, found Y" messages.
fn describe(node: &Node) -> String {
    match &node.data {
        YamlData::Value(Scalar::Null) => "nothing".into(),
        YamlData::Value(Scalar::Boolean(b)) => format!("the boolean {b}"),
        YamlData::Value(Scalar::Integer(i)) => format!("the number {i}"),
        YamlData::Value(Scalar::FloatingPoint(f)) => format!("the number {f}"),
        YamlData::Value(Scalar::String(s)) => format!("the string {s:?}"),
        YamlData::Sequence(_) => "a list".into(),
        YamlData::Mapping(_) => "a mapping".into(),
        YamlData::Tagged(tag, _) => format!("a value tagged {tag}"),
        YamlData::Representation(s, ..) => format!("{s:?}"),
        YamlData::Alias(_) | YamlData::BadValue => "a value that is not valid YAML for its tag".into(),
    }
}

/// A scalar as written in the file, for messages about strings given as numbers.
fn scalar_text(node: &Node) -> Option<String> {
    match &node.data {
        YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
        YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
        YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
        _ => None,
    }
}

/// A value and where to point at it: its own position, or its key's when the
/// value is empty (an empty value has no useful position of its own).
#[derive(Clone, Copy)]
struct Val<'n, 'y> {
    node: &'n Node<'y>,
    pos: Pos,
}

/// A mapping of the plan, its keys checked.
struct Map<'n, 'y> {
    /// Where to report keys that are missing.
    at: Pos,
    /// What the mapping is, for messages ("repository", "datastore 2").
    what: String,
    entries: Vec<(&'n str, Pos, Val<'n, 'y>)>,
}

impl<'n, 'y> Map<'n, 'y> {
    fn get(&self, key: &str) -> Option<Val<'n, 'y>> {
        self.entries.iter().find(|(k, ..)| *k == key).map(|(.., v)| *v)
    }
}

/// Collects problems while checking; each check returns `None` once it has
/// recorded why it could not produce a value.
#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn problem(&mut self, pos: Pos, message: impl Into<String>) {
        self.problems.push(Problem { pos, message: message.into() });
    }

    // ---- the plan, part by part -------------------------------------------

    fn plan(&mut self, file: &Path, root: &Node) -> Option<Plan> {
        let top = self.map(Val { node: root, pos: pos_of(root) }, "the plan", TOP_KEYS, "")?;

        let version = self.required(&top, "version", "version: 1").and_then(|v| self.version(v));
        let name = self.required(&top, "name", "name: kmetal-prod").and_then(|v| self.string(v, "name"));
        let repository = self
            .required(&top, "repository", "repository: {url: s3://backups/kmetal}")
            .and_then(|v| self.repository(v));
        let layers =
            self.required(&top, "layers", "layers: {under-cluster: {etcd: {endpoints: [https://10.0.0.1:2379]}}}");
        let layers = layers.and_then(|v| self.layers(v));

        // The optional lists: absent is empty.
        let run = top.get("run").map_or(Some(Vec::new()), |v| self.run_steps(v));
        let contacts =
            top.get("contacts").map_or(Some(Vec::new()), |v| self.reviewed_list(v, "contacts", "role", CONTACT_KEYS));
        let credentials = top
            .get("credentials")
            .map_or(Some(Vec::new()), |v| self.reviewed_list(v, "credentials", "location", CREDENTIAL_KEYS));
        let verify = top.get("verify").map(|v| self.verify(v));

        // Steps may only name layers the plan covers (even when a layer's
        // body had problems of its own: its key was there).
        if let (Some(steps), Some((_, covered))) = (&run, &layers) {
            for (step, layer_pos) in steps {
                if !covered.contains(&step.layer) {
                    self.problem(
                        *layer_pos,
                        format!(
                            "run step {:?} is for layer {}, which the plan does not cover: add `{}:` under `layers:` or remove the step",
                            step.name, step.layer, step.layer
                        ),
                    );
                }
            }
        }

        Some(Plan {
            file: file.to_path_buf(),
            version: version?,
            name: name?,
            repository: repository?,
            layers: layers?.0,
            run: run?.into_iter().map(|(s, _)| s).collect(),
            contacts: contacts?,
            credentials: credentials?,
            verify: verify.map_or(Some(None), |v| v.map(Some))?,
        })
    }

    /// `verify:`: `every:` is required; the rest have defaults.
    fn verify(&mut self, v: Val) -> Option<VerifySpec> {
        let pos = v.pos;
        let m = self.map(v, "verify", VERIFY_KEYS, "e.g. `verify: {every: 6h}`")?;
        let every = self.required(&m, "every", "every: 6h").and_then(|v| self.duration(v, "every", true));
        let mut spec = VerifySpec::every(Duration::ZERO);
        spec.pos = pos;
        let mut ok = true;
        if let Some(v) = m.get("sample") {
            ok &= self.count(v, "sample", 1, 1000).map(|n| spec.sample = n as usize).is_some();
        }
        if let Some(v) = m.get("concurrency") {
            ok &= self.count(v, "concurrency", 1, 64).map(|n| spec.concurrency = n as usize).is_some();
        }
        if let Some(v) = m.get("nice") {
            ok &= self.count(v, "nice", 0, 19).map(|n| spec.nice = n as i32).is_some();
        }
        if let Some(v) = m.get("targetDriver") {
            match self.string(v, "targetDriver").as_deref() {
                Some("etcd") => spec.same_driver = false,
                Some("same") => spec.same_driver = true,
                Some(other) => {
                    self.problem(v.pos, format!("`targetDriver:` {other:?} is not etcd or same: write `targetDriver: etcd` (a scratch etcd for any tenant) or `targetDriver: same` (a scratch server of the tenant's own driver)"));
                    ok = false;
                }
                None => ok = false,
            }
        }
        spec.every = every?;
        ok.then_some(spec)
    }

    /// A whole number in `min..=max`.
    fn count(&mut self, v: Val, what: &str, min: i64, max: i64) -> Option<i64> {
        match &v.node.data {
            YamlData::Value(Scalar::Integer(n)) if (min..=max).contains(n) => Some(*n),
            _ => {
                self.problem(
                    v.pos,
                    format!("expected a whole number from {min} to {max} for `{what}:`, found {}", describe(v.node)),
                );
                None
            }
        }
    }

    fn version(&mut self, v: Val) -> Option<u32> {
        match &v.node.data {
            YamlData::Value(Scalar::Integer(1)) => Some(1),
            YamlData::Value(Scalar::Integer(n)) => {
                self.problem(v.pos, format!("plan version {n} is not supported: this kmdr reads `version: 1`"));
                None
            }
            _ => {
                self.problem(v.pos, format!("expected the number 1, found {}: write `version: 1`", describe(v.node)));
                None
            }
        }
    }

    fn repository(&mut self, v: Val) -> Option<RepositorySpec> {
        let m = self.map(v, "repository", REPOSITORY_KEYS, "")?;
        let url = self.required(&m, "url", "url: s3://backups/kmetal").and_then(|v| self.repository_url(v));
        let key_file = m.get("keyFile").and_then(|v| self.path(v, "keyFile"));
        let s3_endpoint = m.get("s3Endpoint").and_then(|v| self.string(v, "s3Endpoint"));
        Some(RepositorySpec { url: url?, key_file, s3_endpoint })
    }

    /// The same rules as `kmdr --repo`: a path, `file:///abs` or `s3://bucket/prefix`.
    fn repository_url(&mut self, v: Val) -> Option<String> {
        let url = self.string(v, "url")?;
        let bad = if let Some(rest) = url.strip_prefix("s3://") {
            rest.split('/').next().unwrap_or("").is_empty().then(|| {
                format!("repository URL {url:?} names no bucket: write s3://BUCKET/PREFIX, e.g. s3://backups/kmetal")
            })
        } else if let Some(rest) = url.strip_prefix("file://") {
            (!rest.starts_with('/'))
                .then(|| format!("repository URL {url:?} must be file:///absolute/path, e.g. file:///srv/kmdr"))
        } else if let Some((scheme, _)) = url.split_once("://") {
            Some(format!(
                "repository URL scheme {scheme}:// is not supported: write a directory, file:///absolute/path or s3://bucket/prefix"
            ))
        } else {
            None
        };
        match bad {
            Some(message) => {
                self.problem(v.pos, message);
                None
            }
            None => Some(url),
        }
    }

    /// `layers:`: the covered layers in recovery order, and the set of layer
    /// keys present (for checking `run:` steps).
    fn layers(&mut self, v: Val) -> Option<(Vec<LayerSpec>, Vec<Layer>)> {
        let m = self.entries(v, "layers")?;
        if m.entries.is_empty() {
            self.problem(
                m.at,
                "`layers:` names no layer: add at least one of under-cluster, platform, tenant-control-planes, persistent-data",
            );
            return None;
        }
        let names: Vec<&str> = Layer::ALL.iter().map(|l| l.as_str()).collect();
        let mut covered = Vec::new();
        let mut specs: Vec<Option<LayerSpec>> = Vec::new();
        let mut ok = true;
        for &(key, key_pos, val) in &m.entries {
            let Some(layer) = Layer::ALL.iter().copied().find(|l| l.as_str() == key) else {
                self.problem(key_pos, unknown_message("layer", key, &names, "the layers are"));
                ok = false;
                continue;
            };
            covered.push(layer);
            let spec = self.layer(layer, key_pos, val);
            ok &= spec.is_some();
            specs.push(spec);
        }
        if !ok {
            return None;
        }
        let mut specs: Vec<LayerSpec> = specs.into_iter().flatten().collect();
        specs.sort_by_key(|s| Layer::ALL.iter().position(|l| *l == s.layer));
        Some((specs, covered))
    }

    fn layer(&mut self, layer: Layer, key_pos: Pos, v: Val) -> Option<LayerSpec> {
        let (keys, hint) = match layer {
            Layer::UnderCluster => (UNDER_CLUSTER_KEYS, ""),
            Layer::TenantControlPlanes => (TENANT_LAYER_KEYS, ""),
            Layer::Platform => (PLATFORM_KEYS, ""),
            Layer::PersistentData | Layer::Unknown => (PERSISTENT_KEYS, ""),
        };
        let m = self.map(v, &format!("layer {layer}"), keys, hint)?;
        let (default_rto, default_rpo) = default_targets(layer);
        let rto = m.get("rto").map_or(Some(default_rto), |v| self.duration(v, "rto", true));
        let rpo = m.get("rpo").map_or(Some(default_rpo), |v| self.duration(v, "rpo", true));
        let source = match layer {
            Layer::UnderCluster => self
                .required(&m, "etcd", "etcd: {endpoints: [https://10.0.0.1:2379]} (the under-cluster's etcd)")
                .and_then(|v| self.etcd(v))
                .zip(match m.get("nodeFiles") {
                    None => Some(None),
                    Some(v) => self.node_files(v).map(Some),
                })
                .map(|(etcd, node_files)| LayerSource::UnderCluster { etcd, node_files }),
            Layer::TenantControlPlanes => self
                .required(
                    &m,
                    "datastores",
                    "datastores: [{name: shared-etcd, url: etcds://10.0.0.5:2379, tenants: all}]",
                )
                .and_then(|v| self.datastores(v))
                .zip(match m.get("kamaji") {
                    None => Some(None),
                    Some(v) => self.kamaji(v).map(Some),
                })
                .map(|(datastores, kamaji)| LayerSource::Tenants { datastores, kamaji }),
            Layer::Platform => match m.get("helm") {
                None => Some(LayerSource::Targets),
                Some(v) => self.helm(v).map(LayerSource::Helm),
            },
            _ => match m.get("volumes") {
                None => Some(LayerSource::Targets),
                Some(v) => self.volumes(v).map(LayerSource::Volumes),
            },
        };
        Some(LayerSpec { layer, rto: rto?, rpo: rpo?, source: source?, pos: key_pos })
    }

    fn node_files(&mut self, v: Val) -> Option<NodeFilesSpec> {
        let m = self.map(v, "nodeFiles", NODE_FILES_KEYS, "")?;
        let mut ok = true;
        let paths = match m.get("paths") {
            None => Vec::new(),
            Some(v) => {
                let list = self.string_list(v, "paths", false).unwrap_or_default();
                for (p, pos) in &list {
                    if !p.starts_with('/') {
                        self.problem(
                            *pos,
                            format!(
                                "node file path {p:?} is relative: write it as on the node, e.g. /etc/kubernetes/pki"
                            ),
                        );
                        ok = false;
                    }
                }
                list.into_iter().map(|(p, _)| p).collect()
            }
        };
        let encryption_config = m.get("encryptionConfig").and_then(|v| self.string(v, "encryptionConfig"));
        if let (Some(p), Some(v)) = (&encryption_config, m.get("encryptionConfig"))
            && !p.starts_with('/')
        {
            self.problem(
                v.pos,
                format!("encryptionConfig {p:?} is relative: write the API server's --encryption-provider-config path"),
            );
            ok = false;
        }
        let leaf_certs = m.get("leafCerts").map_or(Some(false), |v| self.boolean(v, "leafCerts"));
        let root = m.get("root").map_or(Some(PathBuf::from("/")), |v| self.path(v, "root"));
        let restore_to = m.get("restoreTo").map_or(Some(PathBuf::from("/")), |v| self.path(v, "restoreTo"));
        ok.then_some(())?;
        Some(NodeFilesSpec { paths, encryption_config, leaf_certs: leaf_certs?, root: root?, restore_to: restore_to? })
    }

    fn kamaji(&mut self, v: Val) -> Option<KamajiSource> {
        let m = self.map(v, "kamaji", KAMAJI_KEYS, "")?;
        let kubeconfig = m.get("kubeconfig").and_then(|v| self.path(v, "kubeconfig"));
        let context = m.get("context").and_then(|v| self.string(v, "context"));
        Some(KamajiSource { kubeconfig, context })
    }

    fn helm(&mut self, v: Val) -> Option<HelmSource> {
        let m = self.map(v, "helm", HELM_KEYS, "")?;
        let release = self
            .required(&m, "release", "release: kmetal (the name `helm list -A` shows)")
            .and_then(|v| self.string(v, "release"));
        let namespace =
            self.required(&m, "namespace", "namespace: kmetal-system").and_then(|v| self.string(v, "namespace"));
        let secrets = match m.get("secrets") {
            None => Some(Vec::new()),
            Some(v) => {
                let list = self.string_list(v, "secrets", false);
                list.and_then(|list| {
                    let mut ok = true;
                    for (s, pos) in &list {
                        let valid = s
                            .split_once('/')
                            .is_some_and(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'));
                        if !valid {
                            self.problem(
                                *pos,
                                format!("secret {s:?} is not NAMESPACE/NAME: write e.g. kmetal-system/registry-creds"),
                            );
                            ok = false;
                        }
                    }
                    ok.then(|| list.into_iter().map(|(s, _)| s).collect())
                })
            }
        };
        let kubeconfig = m.get("kubeconfig").and_then(|v| self.path(v, "kubeconfig"));
        let context = m.get("context").and_then(|v| self.string(v, "context"));
        let chart = m.get("chart").and_then(|v| self.string(v, "chart"));
        Some(HelmSource { release: release?, namespace: namespace?, secrets: secrets?, chart, kubeconfig, context })
    }

    fn etcd(&mut self, v: Val) -> Option<EtcdSource> {
        let m = self.map(v, "etcd", ETCD_KEYS, "")?;
        let endpoints =
            self.required(&m, "endpoints", "endpoints: [https://10.0.0.1:2379]").and_then(|v| self.endpoints(v));
        let tls = self.tls(&m);
        let restore = match m.get("restore") {
            None => Some(None),
            Some(v) => self.etcd_member(v).map(Some),
        };
        Some(EtcdSource { endpoints: endpoints?, tls, restore: restore? })
    }

    /// A list of etcd client URLs, or a single one.
    fn endpoints(&mut self, v: Val) -> Option<Vec<String>> {
        let list = self.string_list(v, "endpoints", true)?;
        let mut ok = true;
        for (endpoint, pos) in &list {
            if let Some((scheme, _)) = endpoint.split_once("://")
                && scheme != "http"
                && scheme != "https"
            {
                self.problem(
                    *pos,
                    format!(
                        "etcd endpoint {endpoint:?} has scheme {scheme}://: write http://HOST:PORT or https://HOST:PORT"
                    ),
                );
                ok = false;
            }
        }
        ok.then(|| list.into_iter().map(|(s, _)| s).collect())
    }

    fn tls(&mut self, m: &Map) -> TlsSpec {
        TlsSpec {
            cacert: m.get("cacert").and_then(|v| self.path(v, "cacert")),
            cert: m.get("cert").and_then(|v| self.path(v, "cert")),
            key: m.get("key").and_then(|v| self.path(v, "key")),
        }
    }

    fn etcd_member(&mut self, v: Val) -> Option<EtcdMember> {
        let m = self.map(v, "restore", RESTORE_KEYS, "")?;
        let data_dir = self.required(&m, "dataDir", "dataDir: /var/lib/etcd").and_then(|v| self.path(v, "dataDir"));
        let name = self.required(&m, "name", "name: cp-1").and_then(|v| self.string(v, "name"));
        let initial_cluster = self
            .required(&m, "initialCluster", "initialCluster: cp-1=https://10.0.0.1:2380")
            .and_then(|v| self.string(v, "initialCluster"));
        let peer_urls = self
            .required(&m, "initialAdvertisePeerUrls", "initialAdvertisePeerUrls: https://10.0.0.1:2380")
            .and_then(|v| self.string(v, "initialAdvertisePeerUrls"));
        Some(EtcdMember {
            data_dir: data_dir?,
            name: name?,
            initial_cluster: initial_cluster?,
            initial_advertise_peer_urls: peer_urls?,
        })
    }

    fn datastores(&mut self, v: Val) -> Option<Vec<DatastoreSpec>> {
        let items = self.list(v, "datastores")?;
        if items.is_empty() {
            self.problem(
                v.pos,
                "`datastores:` is empty: list at least one, e.g. `- {name: shared-etcd, url: etcds://10.0.0.5:2379, tenants: all}`",
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        let mut seen: HashMap<String, Pos> = HashMap::new();
        for (i, item) in items.into_iter().enumerate() {
            let Some(ds) = self.datastore(item, i + 1) else {
                ok = false;
                continue;
            };
            if let Some(first) = seen.get(&ds.name) {
                let name_pos = self.map_key_pos(item, "name").unwrap_or(ds.pos);
                self.problem(
                    name_pos,
                    format!(
                        "datastore name {:?} is already used at line {}: give each datastore its own name",
                        ds.name, first.line
                    ),
                );
                ok = false;
                continue;
            }
            seen.insert(ds.name.clone(), ds.pos);
            out.push(ds);
        }
        ok.then_some(out)
    }

    fn volumes(&mut self, v: Val) -> Option<Vec<VolumeSpec>> {
        let items = self.list(v, "volumes")?;
        if items.is_empty() {
            self.problem(v.pos, "`volumes:` is empty: list at least one, e.g. `- {name: db, provider: velero, includedNamespaces: [db]}`");
            return None;
        }
        let mut out: Vec<VolumeSpec> = Vec::new();
        let mut ok = true;
        for (i, item) in items.into_iter().enumerate() {
            let Some(spec) = self.volume(item, i + 1) else {
                ok = false;
                continue;
            };
            if let Some(first) = out.iter().find(|o| o.entry.name == spec.entry.name) {
                let pos = self.map_key_pos(item, "name").unwrap_or(spec.pos);
                self.problem(
                    pos,
                    format!(
                        "volumes entry name {:?} is already used at line {}: give each entry its own name",
                        spec.entry.name, first.pos.line
                    ),
                );
                ok = false;
                continue;
            }
            out.push(spec);
        }
        ok.then_some(out)
    }

    fn volume(&mut self, v: Val, index: usize) -> Option<VolumeSpec> {
        let all: Vec<&str> =
            VOLUME_COMMON_KEYS.iter().chain(CSI_KEYS).chain(VELERO_KEYS).chain(KASTEN_KEYS).copied().collect();
        let m = self.map(v, &format!("volumes entry {index}"), &all, "")?;
        let name = self.required(&m, "name", "name: tenant-db").and_then(|v| self.dns_label(v, "name"));
        let provider_val = self.required(&m, "provider", "provider: velero (or csi, kasten)");
        let provider = provider_val.and_then(|pv| {
            let p = self.string(pv, "provider")?;
            if PROVIDERS.contains(&p.as_str()) {
                Some((p, pv.pos))
            } else {
                self.problem(pv.pos, unknown_message("provider", &p, PROVIDERS, "the providers are"));
                None
            }
        });
        let timeout = m.get("timeout").map_or(Some(DEFAULT_VOLUME_TIMEOUT), |v| self.duration(v, "timeout", true));
        let kubeconfig = m.get("kubeconfig").and_then(|v| self.path(v, "kubeconfig"));
        let context = m.get("context").and_then(|v| self.string(v, "context"));
        let (provider, _) = provider?;
        let own: &[&str] = match provider.as_str() {
            "csi" => CSI_KEYS,
            "velero" => VELERO_KEYS,
            _ => KASTEN_KEYS,
        };
        let mut ok = true;
        for &(key, key_pos, _) in &m.entries {
            if !VOLUME_COMMON_KEYS.contains(&key) && !own.contains(&key) {
                self.problem(
                    key_pos,
                    format!("`{key}:` is not a setting of provider {provider}: its settings are {}", own.join(", ")),
                );
                ok = false;
            }
        }
        let opt_string = |ck: &mut Self, key: &str| m.get(key).and_then(|v| ck.string(v, key));
        let restore_namespace = m.get("restoreNamespace").and_then(|v| self.dns_label(v, "restoreNamespace"));
        let spec = match provider.as_str() {
            "csi" => {
                let namespace = self
                    .required(&m, "namespace", "namespace: tenant-a (the PVCs' namespace)")
                    .and_then(|v| self.dns_label(v, "namespace"));
                let selector = opt_string(self, "selector");
                let pvcs = match m.get("pvcs") {
                    None => Some(Vec::new()),
                    Some(v) => self.string_list(v, "pvcs", true).map(|l| l.into_iter().map(|(s, _)| s).collect()),
                };
                let class = self
                    .required(
                        &m,
                        "snapshotClass",
                        "snapshotClass: csi-hostpath-snapclass (`kubectl get volumesnapshotclass`)",
                    )
                    .and_then(|v| self.string(v, "snapshotClass"));
                if let (Some(p), Some(_)) = (&pvcs, &selector)
                    && !p.is_empty()
                {
                    self.problem(m.at, "give either `selector:` or `pvcs:`, not both");
                    ok = false;
                }
                if pvcs.as_ref().is_some_and(|p| p.is_empty()) && selector.is_none() && m.get("pvcs").is_none() {
                    self.problem(m.at, format!("{} needs `selector:` (e.g. `selector: app=db`) or `pvcs:` (e.g. `pvcs: [data-db-0]`): which PVCs to snapshot", m.what));
                    ok = false;
                }
                ProviderSpec::Csi(volumes::CsiSpec {
                    namespace: namespace?,
                    selector,
                    pvcs: pvcs?,
                    snapshot_class: class?,
                    restore_namespace,
                })
            }
            "velero" => {
                let namespace =
                    m.get("namespace").map_or(Some("velero".to_string()), |v| self.dns_label(v, "namespace"));
                let included = match m.get("includedNamespaces") {
                    None => Some(Vec::new()),
                    Some(v) => {
                        self.string_list(v, "includedNamespaces", true).map(|l| l.into_iter().map(|(s, _)| s).collect())
                    }
                };
                let selector = match m.get("labelSelector") {
                    None => Some(Default::default()),
                    Some(v) => self.match_labels(v),
                };
                let move_data = match m.get("snapshotMoveData") {
                    None => Some(None),
                    Some(v) => self.boolean(v, "snapshotMoveData").map(Some),
                };
                let schedule = opt_string(self, "schedule");
                if schedule.is_some() {
                    for key in ["includedNamespaces", "labelSelector", "snapshotMoveData", "ttl", "storageLocation"] {
                        if let Some(p) = self.map_key_pos(v, key) {
                            self.problem(p, format!("`{key}:` has no effect with `schedule:`: the Schedule's own template decides; remove it, or remove `schedule:` to have kmdr create Backups"));
                            ok = false;
                        }
                    }
                }
                if restore_namespace.is_some() && included.as_ref().is_some_and(|i| i.is_empty()) {
                    self.problem(
                        m.at,
                        "`restoreNamespace:` needs `includedNamespaces:` (Velero maps each included namespace to it)",
                    );
                    ok = false;
                }
                ProviderSpec::Velero(volumes::VeleroSpec {
                    namespace: namespace?,
                    included_namespaces: included?,
                    label_selector: selector?,
                    snapshot_move_data: move_data?,
                    ttl: opt_string(self, "ttl"),
                    storage_location: opt_string(self, "storageLocation"),
                    schedule,
                    restore_namespace,
                })
            }
            _ => {
                let namespace =
                    m.get("namespace").map_or(Some("kasten-io".to_string()), |v| self.dns_label(v, "namespace"));
                let policy = self
                    .required(
                        &m,
                        "policy",
                        "policy: tenant-a-backup (`kubectl get policies.config.kio.kasten.io -n kasten-io`)",
                    )
                    .and_then(|v| self.string(v, "policy"));
                let app = self
                    .required(&m, "appNamespace", "appNamespace: tenant-a (the namespace the policy protects)")
                    .and_then(|v| self.dns_label(v, "appNamespace"));
                ProviderSpec::Kasten(volumes::KastenSpec {
                    namespace: namespace?,
                    policy: policy?,
                    app_namespace: app?,
                    restore_namespace,
                })
            }
        };
        if !ok {
            return None;
        }
        Some(VolumeSpec {
            entry: VolumeEntry { name: name?, provider: spec, timeout: timeout?, poll: VOLUME_POLL.min(timeout? / 4) },
            kubeconfig,
            context,
            pos: v.pos,
        })
    }

    /// A Kubernetes name that is a DNS label (lower case letters, digits, `-`).
    fn dns_label(&mut self, v: Val, what: &str) -> Option<String> {
        let s = self.string(v, what)?;
        let valid = s.len() <= 63
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if valid {
            Some(s)
        } else {
            self.problem(v.pos, format!("`{what}:` {s:?} is not a Kubernetes name: use lower-case letters, digits and `-` (at most 63), e.g. tenant-db"));
            None
        }
    }

    fn boolean(&mut self, v: Val, what: &str) -> Option<bool> {
        match &v.node.data {
            YamlData::Value(Scalar::Boolean(b)) => Some(*b),
            _ => {
                self.problem(v.pos, format!("expected true or false for `{what}:`, found {}", describe(v.node)));
                None
            }
        }
    }

    /// `labelSelector:` as `k=v,k2=v2` or a mapping: Velero's `matchLabels`.
    fn match_labels(&mut self, v: Val) -> Option<std::collections::BTreeMap<String, String>> {
        let mut out = std::collections::BTreeMap::new();
        if let YamlData::Mapping(_) = &v.node.data {
            let m = self.entries(v, "labelSelector")?;
            for &(k, _, val) in &m.entries {
                out.insert(k.to_string(), self.string(val, k)?);
            }
            return Some(out);
        }
        let text = self.string(v, "labelSelector")?;
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            match term.split_once('=') {
                Some((k, val)) if !k.is_empty() && !k.ends_with('!') && !val.contains('=') => {
                    out.insert(k.trim().to_string(), val.trim().to_string());
                }
                _ => {
                    self.problem(v.pos, format!("labelSelector term {term:?} is not KEY=VALUE: Velero's matchLabels takes equality terms only, e.g. `app=db,tier=data`"));
                    return None;
                }
            }
        }
        Some(out)
    }

    fn datastore(&mut self, v: Val, index: usize) -> Option<DatastoreSpec> {
        let m = self.map(v, &format!("datastore {index}"), DATASTORE_KEYS, "")?;
        let name = self.required(&m, "name", "name: shared-etcd").and_then(|v| self.string(v, "name"));
        let url = self.required(&m, "url", "url: etcds://10.0.0.5:2379").and_then(|v| self.datastore_url(v));
        let tls = self.tls(&m);
        let password_file = m.get("passwordFile").and_then(|v| self.path(v, "passwordFile"));
        let tenants = self.required(&m, "tenants", "tenants: all").and_then(|v| self.tenants(v));
        Some(DatastoreSpec { name: name?, url: url?, tls, password_file, tenants: tenants?, pos: v.pos })
    }

    fn datastore_url(&mut self, v: Val) -> Option<String> {
        let url = self.string(v, "url")?;
        let schemes = DATASTORE_SCHEMES.join(", ");
        match url.split_once("://") {
            Some((scheme, _)) if DATASTORE_SCHEMES.contains(&scheme) => Some(url),
            Some((scheme, _)) => {
                let hint = suggest(scheme, DATASTORE_SCHEMES).map(|s| format!("write {s}://...; ")).unwrap_or_default();
                self.problem(
                    v.pos,
                    format!("datastore URL scheme {scheme}:// is not supported: {hint}the schemes are {schemes}"),
                );
                None
            }
            None => {
                self.problem(
                    v.pos,
                    format!(
                        "{url:?} is not a datastore URL: write SCHEME://HOST:PORT, e.g. etcds://10.0.0.5:2379 or \
                         postgres://kamaji@10.0.0.6:5432/kamaji; the schemes are {schemes}"
                    ),
                );
                None
            }
        }
    }

    /// `tenants: all` or a list of schema names.
    fn tenants(&mut self, v: Val) -> Option<TenantSelector> {
        const ADVICE: &str = "write `tenants: all` or a list of schema names, e.g. `tenants: [tenant_a, tenant_b]`";
        match &v.node.data {
            YamlData::Value(Scalar::String(s)) if s == "all" => Some(TenantSelector::All),
            YamlData::Sequence(_) => {
                let names = self.string_list(v, "tenants", false)?;
                if names.is_empty() {
                    self.problem(v.pos, format!("`tenants:` is an empty list: {ADVICE}"));
                    return None;
                }
                let mut seen: Vec<&str> = Vec::new();
                let mut ok = true;
                for (name, pos) in &names {
                    if seen.contains(&name.as_str()) {
                        self.problem(*pos, format!("tenant {name:?} is listed twice: list each schema once"));
                        ok = false;
                    }
                    seen.push(name);
                }
                ok.then(|| TenantSelector::Only(names.into_iter().map(|(s, _)| s).collect()))
            }
            _ => {
                self.problem(
                    v.pos,
                    format!("`tenants:` must be \"all\" or a list, found {}: {ADVICE}", describe(v.node)),
                );
                None
            }
        }
    }

    /// `run:`: the steps, each with the position of its `layer:` value.
    fn run_steps(&mut self, v: Val) -> Option<Vec<(RunStep, Pos)>> {
        let items = self.list(v, "run")?;
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.into_iter().enumerate() {
            match self.run_step(item, i + 1) {
                Some(step) => out.push(step),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn run_step(&mut self, v: Val, index: usize) -> Option<(RunStep, Pos)> {
        let m = self.map(v, &format!("run step {index}"), RUN_KEYS, "")?;
        let name = self.required(&m, "name", "name: provision nodes").and_then(|v| self.string(v, "name"));
        let layer_val = self.required(&m, "layer", "layer: under-cluster");
        let layer = layer_val.and_then(|v| self.layer_name(v));
        let phase = self.required(&m, "phase", "phase: before-restore").and_then(|v| self.phase(v));
        let command =
            self.required(&m, "command", "command: [ansible-playbook, site.yml]").and_then(|v| self.command(v));
        let timeout = self.required(&m, "timeout", "timeout: 30m").and_then(|v| self.duration(v, "timeout", true));
        let step =
            RunStep { name: name?, layer: layer?, phase: phase?, command: command?, timeout: timeout?, pos: v.pos };
        Some((step, layer_val?.pos))
    }

    fn layer_name(&mut self, v: Val) -> Option<Layer> {
        let s = self.string(v, "layer")?;
        let names: Vec<&str> = Layer::ALL.iter().map(|l| l.as_str()).collect();
        match Layer::ALL.iter().copied().find(|l| l.as_str() == s) {
            Some(layer) => Some(layer),
            None => {
                self.problem(v.pos, unknown_message("layer", &s, &names, "the layers are"));
                None
            }
        }
    }

    fn phase(&mut self, v: Val) -> Option<Phase> {
        let s = self.string(v, "phase")?;
        match PHASES.iter().find(|(name, _)| *name == s) {
            Some((_, phase)) => Some(*phase),
            None => {
                let names: Vec<&str> = PHASES.iter().map(|(n, _)| *n).collect();
                self.problem(v.pos, unknown_message("phase", &s, &names, "the phases are"));
                None
            }
        }
    }

    /// argv as a list, or a shell line run with `sh -c`.
    fn command(&mut self, v: Val) -> Option<Vec<String>> {
        const ADVICE: &str = "write a list such as `command: [ansible-playbook, site.yml]` or a shell line such as `command: ./check.sh && echo ok`";
        match &v.node.data {
            YamlData::Value(Scalar::String(s)) if s.trim().is_empty() => {
                self.problem(v.pos, format!("`command:` is empty: {ADVICE}"));
                None
            }
            YamlData::Value(Scalar::String(s)) => Some(vec!["sh".into(), "-c".into(), s.to_string()]),
            YamlData::Sequence(_) => {
                let argv = self.string_list(v, "command", false)?;
                if argv.is_empty() {
                    self.problem(v.pos, format!("`command:` is an empty list: {ADVICE}"));
                    return None;
                }
                Some(argv.into_iter().map(|(s, _)| s).collect())
            }
            _ => {
                self.problem(
                    v.pos,
                    format!("expected a list of strings or a string, found {}: {ADVICE}", describe(v.node)),
                );
                None
            }
        }
    }

    /// `contacts:` or `credentials:`; `detail_key` is what goes to `Reviewed::detail`.
    fn reviewed_list(&mut self, v: Val, what: &str, detail_key: &str, keys: &[&str]) -> Option<Vec<Reviewed>> {
        let items = self.list(v, what)?;
        let singular = what.trim_end_matches('s');
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.into_iter().enumerate() {
            match self.reviewed(item, &format!("{singular} {}", i + 1), detail_key, keys) {
                Some(r) => out.push(r),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn reviewed(&mut self, v: Val, what: &str, detail_key: &str, keys: &[&str]) -> Option<Reviewed> {
        let m = self.map(v, what, keys, "")?;
        let name = self.required(&m, "name", "name: Platform on-call").and_then(|v| self.string(v, "name"));
        let example = if detail_key == "role" { "role: first responder" } else { "location: vault://kv/kmdr" };
        let detail = self.required(&m, detail_key, example).and_then(|v| self.string(v, detail_key));
        let reviewed = self.required(&m, "reviewed", "reviewed: 2026-10-01").and_then(|v| self.date(v));
        let every =
            self.required(&m, "reviewEvery", "reviewEvery: 90d").and_then(|v| self.duration(v, "reviewEvery", true));
        Some(Reviewed { name: name?, detail: detail?, reviewed: reviewed?, review_every: every?, pos: v.pos })
    }

    // ---- generic shapes ----------------------------------------------------

    /// A mapping whose keys are strings; an empty value is an empty mapping.
    fn entries<'n, 'y>(&mut self, v: Val<'n, 'y>, what: &str) -> Option<Map<'n, 'y>> {
        let mapping = match &v.node.data {
            YamlData::Mapping(mapping) => mapping,
            YamlData::Value(Scalar::Null) => {
                return Some(Map { at: v.pos, what: what.into(), entries: Vec::new() });
            }
            _ => {
                self.problem(
                    v.pos,
                    format!("expected a mapping (indented `key: value` lines) for {what}, found {}", describe(v.node)),
                );
                return None;
            }
        };
        let mut entries = Vec::new();
        for (k, value) in mapping {
            let key_pos = pos_of(k);
            let Some(key) = k.data.as_str() else {
                self.problem(key_pos, format!("keys in {what} are names, found {}: write a name", describe(k)));
                continue;
            };
            let pos = if is_null(value) { key_pos } else { pos_of(value) };
            entries.push((key, key_pos, Val { node: value, pos }));
        }
        Some(Map { at: v.pos, what: what.into(), entries })
    }

    /// A mapping with a fixed set of keys: any other key is reported, with
    /// the closest known key when one is close, and `hint` appended.
    fn map<'n, 'y>(&mut self, v: Val<'n, 'y>, what: &str, keys: &[&str], hint: &str) -> Option<Map<'n, 'y>> {
        let mut m = self.entries(v, what)?;
        let mut unknown = Vec::new();
        m.entries.retain(|(key, key_pos, _)| {
            let known = keys.contains(key);
            if !known {
                unknown.push((key.to_string(), *key_pos));
            }
            known
        });
        for (key, pos) in unknown {
            let message = match suggest(&key, keys) {
                Some(s) => format!("unknown key {key:?} in {what}: write {s:?}{hint}"),
                None => format!("unknown key {key:?} in {what}: the keys are {}{hint}", keys.join(", ")),
            };
            self.problem(pos, message);
        }
        Some(m)
    }

    /// A required key's value, or a problem at the mapping that lacks it.
    fn required<'n, 'y>(&mut self, m: &Map<'n, 'y>, key: &str, example: &str) -> Option<Val<'n, 'y>> {
        let v = m.get(key);
        if v.is_none() {
            self.problem(m.at, format!("{} needs `{key}:`: add e.g. `{example}`", m.what));
        }
        v
    }

    /// Where a key of a mapping node is, without checking anything.
    fn map_key_pos(&self, v: Val, key: &str) -> Option<Pos> {
        let YamlData::Mapping(mapping) = &v.node.data else {
            return None;
        };
        mapping.keys().find(|k| k.data.as_str() == Some(key)).map(pos_of)
    }

    /// A list; an empty value is an empty list.
    fn list<'n, 'y>(&mut self, v: Val<'n, 'y>, what: &str) -> Option<Vec<Val<'n, 'y>>> {
        match &v.node.data {
            YamlData::Sequence(items) => Some(
                items.iter().map(|node| Val { node, pos: if is_null(node) { v.pos } else { pos_of(node) } }).collect(),
            ),
            YamlData::Value(Scalar::Null) => Some(Vec::new()),
            _ => {
                self.problem(
                    v.pos,
                    format!("expected a list (lines starting with `- `) for `{what}:`, found {}", describe(v.node)),
                );
                None
            }
        }
    }

    /// A list of strings with their positions; when `single_ok`, one string
    /// stands for a list of one. An empty list is an error when `single_ok`
    /// (callers that allow other shapes check emptiness themselves).
    fn string_list(&mut self, v: Val, what: &str, single_ok: bool) -> Option<Vec<(String, Pos)>> {
        let items = match &v.node.data {
            YamlData::Value(Scalar::String(s)) if single_ok => {
                return Some(vec![(s.to_string(), v.pos)]);
            }
            YamlData::Sequence(items) => items,
            _ => {
                let or_string = if single_ok { " (or a single string)" } else { "" };
                self.problem(
                    v.pos,
                    format!("expected a list of strings{or_string} for `{what}:`, found {}", describe(v.node)),
                );
                return None;
            }
        };
        if items.is_empty() && single_ok {
            self.problem(v.pos, format!("`{what}:` is an empty list: list at least one"));
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for node in items {
            let item = Val { node, pos: pos_of(node) };
            match self.string(item, what) {
                Some(s) => out.push((s, item.pos)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    // ---- scalars -----------------------------------------------------------

    /// A non-empty string. Numbers and booleans are refused with advice to
    /// quote them, so that `name: 010` does not silently become "8".
    fn string(&mut self, v: Val, what: &str) -> Option<String> {
        match &v.node.data {
            YamlData::Value(Scalar::String(s)) if !s.trim().is_empty() => Some(s.to_string()),
            YamlData::Value(Scalar::String(_)) | YamlData::Value(Scalar::Null) => {
                self.problem(v.pos, format!("`{what}:` has no value: write one after the colon"));
                None
            }
            _ => {
                let quote = scalar_text(v.node)
                    .map(|t| format!(": quote it (\"{t}\") if it is meant as text"))
                    .unwrap_or_default();
                self.problem(v.pos, format!("expected a string for `{what}:`, found {}{quote}", describe(v.node)));
                None
            }
        }
    }

    fn path(&mut self, v: Val, what: &str) -> Option<PathBuf> {
        self.string(v, what).map(PathBuf::from)
    }

    fn duration(&mut self, v: Val, what: &str, nonzero: bool) -> Option<Duration> {
        let text = match &v.node.data {
            YamlData::Value(Scalar::String(s)) => s.to_string(),
            _ => match scalar_text(v.node) {
                Some(t) => t,
                None => {
                    self.problem(
                        v.pos,
                        format!(
                            "expected a duration for `{what}:`, found {}: write e.g. 4h, 30m, 90s or 90d",
                            describe(v.node)
                        ),
                    );
                    return None;
                }
            },
        };
        match parse_duration(&text) {
            Some(d) if nonzero && d.is_zero() => {
                self.problem(v.pos, format!("`{what}:` must be more than zero: write e.g. 4h, 30m or 90s"));
                None
            }
            Some(d) => Some(d),
            None => {
                let bare = text
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .map(|n| format!(" ({n} what? e.g. {n}s or {n}m)"))
                    .unwrap_or_default();
                self.problem(v.pos, format!("{text:?} is not a duration{bare}: write e.g. 4h, 30m, 90s or 90d"));
                None
            }
        }
    }

    fn date(&mut self, v: Val) -> Option<NaiveDate> {
        let text = match &v.node.data {
            YamlData::Value(Scalar::String(s)) => s.to_string(),
            _ => scalar_text(v.node).unwrap_or_else(|| describe(v.node)),
        };
        let parsed = (text.len() == 10).then(|| NaiveDate::parse_from_str(&text, "%Y-%m-%d").ok()).flatten();
        if parsed.is_none() {
            self.problem(v.pos, format!("{text:?} is not a date: write YYYY-MM-DD, e.g. 2026-10-01"));
        }
        parsed
    }
}

/// `90s`, `15m`, `4h`, `90d`, `2w`, or several combined (`1h30m`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut secs: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        let mut chars = rest[digits..].chars();
        let unit = match chars.next()? {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return None,
        };
        secs = secs.checked_add(n.checked_mul(unit)?)?;
        rest = chars.as_str();
    }
    Some(Duration::from_secs(secs))
}

/// "unknown layer "x": write "y"" or "...: the layers are a, b, c".
fn unknown_message(kind: &str, got: &str, known: &[&str], list_intro: &str) -> String {
    match suggest(got, known) {
        Some(s) => format!("unknown {kind} {got:?}: write {s:?} ({list_intro} {})", known.join(", ")),
        None => format!("unknown {kind} {got:?}: {list_intro} {}", known.join(", ")),
    }
}

/// The known name closest to `got`, when one is close enough to be what was meant:
/// the same name in another spelling (`key_file` for `keyFile`), a small typo
/// (edit distance up to a third of the name, at least 1), or a known name with
/// something appended (`rpo_target` for `rpo`).
fn suggest<'k>(got: &str, known: &[&'k str]) -> Option<&'k str> {
    let norm = |s: &str| s.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect::<String>();
    let g = norm(got);
    if let Some(k) = known.iter().find(|k| norm(k) == g) {
        return Some(k);
    }
    let best = known
        .iter()
        .map(|k| (edit_distance(&g, &norm(k)), *k))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, k)| *d <= (k.len() / 3).max(1));
    if let Some((_, k)) = best {
        return Some(k);
    }
    known.iter().filter(|k| k.len() >= 3 && g.starts_with(&norm(k))).max_by_key(|k| k.len()).copied()
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2w"), Some(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("0m"), Some(Duration::ZERO));
        for bad in ["", "4", "h", "4 hours", "4H", "1.5h", "-1h", "99999999999999999999w"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("rpo_target", PERSISTENT_KEYS), Some("rpo"));
        assert_eq!(suggest("key_file", REPOSITORY_KEYS), Some("keyFile"));
        assert_eq!(suggest("passwrdFile", DATASTORE_KEYS), Some("passwordFile"));
        assert_eq!(suggest("helm", PERSISTENT_KEYS), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
