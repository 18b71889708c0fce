//! The plan: what `kmdr.yaml` says, as checked Rust values. The file format
//! and its checks are in [`crate::parse`]; this module only holds the result.
//!
//! A plan names the repository, the four layers of the runbook with their
//! RTO and RPO targets and what each backs up, the `run:` steps for what kmdr
//! does not do itself, and the contacts and credentials with review dates.

use chrono::NaiveDate;
use kmdr_core::Layer;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Where a value came from in the plan file, for messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The plan file, as given.
    pub file: PathBuf,
    /// `version: 1`.
    pub version: u32,
    /// A name for reports (e.g. the platform's name).
    pub name: String,
    pub repository: RepositorySpec,
    /// The layers the plan covers, in recovery order (a subset of `Layer::ALL`).
    pub layers: Vec<LayerSpec>,
    pub run: Vec<RunStep>,
    pub contacts: Vec<Reviewed>,
    pub credentials: Vec<Reviewed>,
    /// `verify:`: restore proofs on a schedule (`kmdr serve`); none when absent.
    pub verify: Option<VerifySpec>,
}

/// `verify:`: how `kmdr serve` proves backups restorable (as `kmdr verify
/// --restore`), within a budget that leaves the backups their CPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifySpec {
    /// How often each unit's newest backups are proven.
    #[serde(with = "secs")]
    pub every: Duration,
    /// How many of each unit's newest unproven backups a period proves.
    pub sample: usize,
    /// Test restores at once, across all units (never a backup's permit).
    pub concurrency: usize,
    /// The scheduling niceness (0-19) of the test restores: their threads,
    /// the scratch servers and the restore tools they start.
    pub nice: i32,
    /// Tenant data into a scratch server of its own driver (`same`) rather
    /// than a scratch etcd (`etcd`).
    pub same_driver: bool,
    pub pos: Pos,
}

impl VerifySpec {
    /// The defaults of everything but `every`.
    pub fn every(every: Duration) -> VerifySpec {
        VerifySpec { every, sample: 1, concurrency: 1, nice: 10, same_driver: false, pos: Pos::default() }
    }
}

/// `repository:`.
#[derive(Debug, Clone, Serialize)]
pub struct RepositorySpec {
    /// A directory, `file:///...` or `s3://bucket/prefix`.
    pub url: String,
    pub key_file: Option<PathBuf>,
    pub s3_endpoint: Option<String>,
}

/// One layer: its targets and what it backs up.
#[derive(Debug, Clone, Serialize)]
pub struct LayerSpec {
    pub layer: Layer,
    /// Recovery time objective: failure to healthy.
    #[serde(with = "secs")]
    pub rto: Duration,
    /// Recovery point objective: the most data (in time) the layer may lose.
    #[serde(with = "secs")]
    pub rpo: Duration,
    pub source: LayerSource,
    pub pos: Pos,
}

/// What a layer backs up.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum LayerSource {
    /// `under-cluster:` `etcd:` (and how to rebuild a member, `restore:`)
    /// and, optionally, `nodeFiles:` (the kubeadm PKI, config and
    /// EncryptionConfiguration, restored before etcd and `kubeadm init`).
    UnderCluster { etcd: EtcdSource, node_files: Option<NodeFilesSpec> },
    /// `tenant-control-planes:` `datastores:` and, optionally, `kamaji:` (the
    /// tenants' Kamaji objects through the API).
    Tenants { datastores: Vec<DatastoreSpec>, kamaji: Option<KamajiSource> },
    /// `platform:` `helm:`: the umbrella chart's Helm release. Backed up and
    /// checked for drift; reinstalling it is `kmdr restore platform`'s job.
    Helm(HelmSource),
    /// `persistent-data:` `volumes:`: entries driven through the user's
    /// volume backup tool (CSI snapshots, Velero, Kasten K10).
    Volumes(Vec<VolumeSpec>),
    /// A layer whose backup kmdr does not take (persistent-data without
    /// `volumes:`, or a platform without `helm:`): only targets and `run:` steps.
    Targets,
}

/// TLS files, as etcdctl's `--cacert --cert --key`: the sources' own type.
pub use kmdr_core::TlsFiles as TlsSpec;

/// The under-cluster etcd.
#[derive(Debug, Clone, Serialize)]
pub struct EtcdSource {
    pub endpoints: Vec<String>,
    pub tls: TlsSpec,
    /// How `restore` and a drill rebuild the member; `None`: restore only to a file.
    pub restore: Option<EtcdMember>,
}

/// `nodeFiles:` of the under-cluster: what `kmdr backup node-files` takes
/// and where `kmdr restore node-files` puts it back.
#[derive(Debug, Clone, Serialize)]
pub struct NodeFilesSpec {
    /// Absolute paths (files or directories); empty: kubeadm's PKI and config.
    pub paths: Vec<String>,
    /// The API server's EncryptionConfiguration (`--encryption-provider-config`).
    pub encryption_config: Option<String>,
    /// Also the PKI's leaf certificates (all of `/etc/kubernetes/pki`).
    pub leaf_certs: bool,
    /// Where the paths are read (`/`, or a mounted node disk).
    pub root: PathBuf,
    /// Where a restore writes them (`/` on the rebuilt node).
    pub restore_to: PathBuf,
}

/// `restore:` of the under-cluster: the flags of `kmdr restore etcd`.
#[derive(Debug, Clone, Serialize)]
pub struct EtcdMember {
    pub data_dir: PathBuf,
    pub name: String,
    pub initial_cluster: String,
    pub initial_advertise_peer_urls: String,
}

/// The platform's Helm release.
#[derive(Debug, Clone, Serialize)]
pub struct HelmSource {
    pub release: String,
    pub namespace: String,
    /// Secrets to keep with it, as `namespace/name`.
    pub secrets: Vec<String>,
    /// Where the chart is published, for a reinstall (`oci://...`,
    /// `repo/name`, a directory); `None`: the chart kept in the release.
    pub chart: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

impl HelmSource {
    /// The unit name in reports: `helm/<namespace>/<release>`.
    pub fn unit(&self) -> String {
        format!("helm/{}/{}", self.namespace, self.release)
    }
}

/// One `volumes:` entry: a provider and its settings, and the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeSpec {
    pub entry: kmdr_core::volume::VolumeEntry,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub pos: Pos,
}

impl VolumeSpec {
    /// The unit name in reports: the entry's name.
    pub fn unit(&self) -> String {
        self.entry.name.clone()
    }
}

/// `tenant-control-planes:` `kamaji:`: the Kamaji objects of every tenant
/// (TenantControlPlanes, DataStores, KamajiControlPlanes, Clusters, their
/// Secrets), as `kmdr backup tenants --all` takes them.
#[derive(Debug, Clone, Serialize)]
pub struct KamajiSource {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

/// One tenant datastore.
#[derive(Debug, Clone, Serialize)]
pub struct DatastoreSpec {
    /// A name for reports (e.g. the Kamaji DataStore's name).
    pub name: String,
    /// The `--datastore` URL (credentials may be left out and given below).
    pub url: String,
    pub tls: TlsSpec,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    pub tenants: TenantSelector,
    pub pos: Pos,
}

/// Which tenants of a datastore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TenantSelector {
    /// Every tenant found.
    All,
    /// These schemas.
    Only(Vec<String>),
}

/// When a `run:` step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Before the layer is restored (e.g. provision nodes, kubeadm init).
    BeforeRestore,
    /// After the layer is restored (e.g. restart services).
    AfterRestore,
    /// In a drill: how to cause the failure (instead of the built-in wipe).
    Failure,
    /// The layer's health gate: must exit 0 before the next layer starts.
    HealthCheck,
}

/// A command kmdr runs for what it does not do itself.
#[derive(Debug, Clone, Serialize)]
pub struct RunStep {
    pub name: String,
    pub layer: Layer,
    pub phase: Phase,
    /// argv; `["sh", "-c", "..."]` for a shell line.
    pub command: Vec<String>,
    #[serde(with = "secs")]
    pub timeout: Duration,
    pub pos: Pos,
}

/// A contact or credential that must be reviewed periodically.
#[derive(Debug, Clone, Serialize)]
pub struct Reviewed {
    pub name: String,
    /// Role (contacts) or where it is kept (credentials).
    pub detail: String,
    pub reviewed: NaiveDate,
    #[serde(with = "secs")]
    pub review_every: Duration,
    pub pos: Pos,
}

impl Plan {
    /// The layer's spec, when the plan covers it.
    pub fn layer(&self, layer: Layer) -> Option<&LayerSpec> {
        self.layers.iter().find(|l| l.layer == layer)
    }

    /// The `run:` steps of a layer and phase, in file order.
    pub fn steps(&self, layer: Layer, phase: Phase) -> impl Iterator<Item = &RunStep> {
        self.run.iter().filter(move |s| s.layer == layer && s.phase == phase)
    }
}

/// The runbook's targets, used when a layer gives none: (RTO, RPO).
pub fn default_targets(layer: Layer) -> (Duration, Duration) {
    let h = |n: u64| Duration::from_secs(n * 3600);
    let m = |n: u64| Duration::from_secs(n * 60);
    match layer {
        Layer::UnderCluster => (h(4), h(1)),
        Layer::Platform => (h(2), m(15)),
        Layer::TenantControlPlanes => (h(1), m(5)),
        Layer::PersistentData | Layer::Unknown => (h(2), h(1)),
    }
}

/// Durations as seconds in JSON.
mod secs {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}
