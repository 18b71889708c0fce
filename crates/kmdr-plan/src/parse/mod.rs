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

mod layers;
mod persistent;
mod plan;
mod shapes;

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
