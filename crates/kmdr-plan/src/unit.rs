//! The one seam between a plan and the systems it protects. A [`Unit`] is
//! one thing a layer holds: the under-cluster's etcd, one tenant of one
//! datastore, the platform's Helm release, or one persistent-data entry.
//! Each kind implements backup, restore, inventory and delta capture here,
//! once; plan backup and restore ([`crate::exec`]), the drill, the runbook
//! review and `kmdr serve` iterate over units and never match on a layer's
//! source themselves.

use crate::plan::{
    DatastoreSpec, EtcdSource, HelmSource, KamajiSource, LayerSource, LayerSpec, NodeFilesSpec, TenantSelector,
    VolumeSpec,
};
use crate::sources::restore_volume;
pub use crate::sources::{
    KAMAJI_SERIES, KAMAJI_UNIT, helm_series, kamaji_target, kube_target, node_files_options, platform_options,
    volume_target,
};
use crate::steps::{connect_datastore, etcd_connection};
use kmdr_core::{Classify, ErrorClass, Manifest, SourceInfo};
use kmdr_datastore::capture::{ChangeSource, DeltaTarget};
use kmdr_datastore::inventory::{self, KeyDigests};
use kmdr_datastore::{
    self as tenant, AnyTenants, RecordReader, RecordWriter, TenantBackupOptions, TenantError, TenantStore,
};
use kmdr_etcd::restorer::{self, EtcdRestoreOptions};
use kmdr_etcd::{SnapshotOptions, snapshotter};
use kmdr_kube::client::KubeClient;
use kmdr_kube::kamaji::{self, TenantsBackupOptions, TenantsRestoreOptions};
use kmdr_kube::node_files::{self, NodeFilesError};
use kmdr_kube::platform::{self, PlatformError};
use kmdr_kube::reinstall::{self, ReinstallOptions};
use kmdr_kube::volumes::{self, VolumeError};
use kmdr_repo::{BackupRun, BackupSession, Repository};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One thing a plan backs up and restores.
#[derive(Debug, Clone)]
pub enum Unit {
    /// The under-cluster's etcd, whole (and what it needs of the node files,
    /// when the plan names them: recorded with each snapshot).
    Etcd(EtcdSource, Option<NodeFilesSpec>),
    /// The under-cluster's identity files: kubeadm PKI, config, EncryptionConfiguration.
    NodeFiles(NodeFilesSpec),
    /// One tenant's data in one datastore.
    Tenant { datastore: DatastoreSpec, schema: String },
    /// The platform's Helm release (backed up; helm reinstalls it).
    Helm(HelmSource),
    /// The tenants' Kamaji objects (and, in the same backup, their data).
    Kamaji(KamajiSource),
    /// A persistent-data entry: kmdr drives the user's volume backup tool.
    Volume(VolumeSpec),
}

/// Why a unit failed: its class (the exit code and hint follow from it) and
/// the whole message, cause chain included.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct UnitError {
    pub class: ErrorClass,
    pub message: String,
    /// The error itself, for callers that look deeper.
    #[serde(skip)]
    pub source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl UnitError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        UnitError { class, message: message.into(), source: None }
    }

    /// The same error with `context: ` in front of its message.
    pub fn context(mut self, context: impl std::fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl Classify for UnitError {
    fn class(&self) -> ErrorClass {
        self.class
    }
}

impl UnitError {
    /// A classified library error as a unit error; its message carries its causes.
    pub fn of<E: Classify + Send + Sync + 'static>(e: E) -> Self {
        UnitError { class: e.class(), message: kmdr_core::error::one_line(&e), source: Some(Arc::new(e)) }
    }
}

/// The library errors a unit's work can end in.
macro_rules! from_classified {
    ($($t:ty),*) => {$(
        impl From<$t> for UnitError {
            fn from(e: $t) -> Self {
                UnitError::of(e)
            }
        }
    )*};
}
from_classified!(
    kmdr_repo::Error,
    kmdr_etcd::EtcdError,
    kmdr_datastore::TenantError,
    kmdr_kube::client::KubeError,
    PlatformError,
    VolumeError,
    kmdr_kube::kamaji::TenantsError,
    NodeFilesError,
    crate::steps::StepError,
    kmdr_testkit::LaunchError
);

/// How a unit is restored.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions {
    /// Replace what the target holds (a non-empty data dir, a tenant's keys).
    pub force: bool,
    /// Plan only: read the repository and the target, change nothing.
    pub dry_run: bool,
}

/// What a unit's restore did (or would do, on a dry run).
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// Keys written, or volume sets restored.
    pub count: Option<u64>,
    /// One line per object a volume restore creates.
    pub objects: Vec<String>,
}

/// Connections shared by the units of one run: one per datastore, with the
/// datastore's one read point (etcd), so N tenants cost one connection.
#[derive(Default)]
pub struct Connections {
    stores: BTreeMap<String, (AnyTenants, Option<i64>)>,
    /// The node-files backup this run took: the etcd snapshot after it records what it needs from it.
    node_files: Option<Manifest>,
    /// The tenants' backups of this run share one lock and one listing of the repository.
    run: Option<BackupRun>,
}

impl Connections {
    /// The tenant units of a datastore, found live through the connection
    /// its backups then use; its read point is taken after the listing, so
    /// every tenant listed exists at it.
    pub async fn datastore_units(&mut self, d: &DatastoreSpec) -> Result<Vec<Unit>, UnitError> {
        let store = connect_datastore(d).await.map_err(|e| UnitError::from(e).context(datastore_label(d)))?;
        let schemas = list_tenants(d, &store).await?;
        let at = store.shared_read_point().await.ok().flatten();
        self.stores.insert(d.name.clone(), (store, at));
        Ok(schemas.into_iter().map(|schema| Unit::Tenant { datastore: d.clone(), schema }).collect())
    }

    /// A new backup of this run's [`BackupRun`] (started by the first).
    async fn session(&mut self, repo: &Repository) -> Result<BackupSession, kmdr_repo::Error> {
        if self.run.is_none() {
            self.run = Some(BackupRun::start(repo, "kmdr backup --plan").await?);
        }
        Ok(self.run.as_ref().expect("just started").session())
    }

    /// Release the run's lock, once its backups are committed.
    pub async fn finish(&mut self) {
        if let Some(run) = self.run.take() {
            run.finish().await;
        }
    }

    async fn tenant_store(&mut self, d: &DatastoreSpec) -> Result<&(AnyTenants, Option<i64>), UnitError> {
        if !self.stores.contains_key(&d.name) {
            let store = connect_datastore(d).await.map_err(|e| UnitError::from(e).context(datastore_label(d)))?;
            let at = store.shared_read_point().await.ok().flatten();
            self.stores.insert(d.name.clone(), (store, at));
        }
        Ok(&self.stores[&d.name])
    }
}

fn datastore_label(d: &DatastoreSpec) -> String {
    format!("datastore {}", d.name)
}

impl Unit {
    /// The unit's name in reports and metrics: `etcd`, `<datastore>/<schema>`,
    /// `helm/<namespace>/<release>`, or the volumes entry's name.
    pub fn name(&self) -> String {
        match self {
            Unit::Etcd(..) => "etcd".into(),
            Unit::NodeFiles(_) => node_files::KIND.into(),
            Unit::Tenant { datastore, schema } => format!("{}/{schema}", datastore.name),
            Unit::Helm(h) => h.unit(),
            Unit::Kamaji(_) => KAMAJI_UNIT.into(),
            Unit::Volume(v) => v.unit(),
        }
    }

    /// The backup kind this unit writes.
    pub fn kind(&self) -> &'static str {
        match self {
            Unit::Etcd(..) => snapshotter::KIND,
            Unit::NodeFiles(_) => node_files::KIND,
            Unit::Tenant { .. } => tenant::KIND,
            Unit::Helm(_) => platform::KIND,
            Unit::Kamaji(_) => kamaji::KIND,
            Unit::Volume(_) => volumes::KIND,
        }
    }

    /// The series of its full backups, where it is known without connecting
    /// (etcd's is `etcd/<cluster id>`, found by its first backup; the node
    /// files' is `node-files/<host>`: a rebuilt node may have another name).
    pub fn series(&self) -> Option<String> {
        match self {
            Unit::Tenant { schema, .. } => Some(format!("tenant/{schema}")),
            Unit::Helm(h) => Some(helm_series(h)),
            Unit::Kamaji(_) => Some(KAMAJI_SERIES.into()),
            Unit::Volume(v) => Some(volumes::series(&v.entry.name)),
            Unit::Etcd(..) | Unit::NodeFiles(_) => None,
        }
    }

    /// Whether the backup `m` is one of this unit's.
    pub fn owns(&self, m: &Manifest) -> bool {
        match (self, &m.source) {
            (Unit::Etcd(..), _) => m.id.kind() == snapshotter::KIND,
            (Unit::NodeFiles(_), _) => m.id.kind() == node_files::KIND,
            // The same schema on another datastore is another tenant.
            (Unit::Tenant { datastore, schema }, SourceInfo::TenantData(t)) => {
                &t.schema == schema
                    && kmdr_datastore::DatastoreUrl::parse(&datastore.url)
                        .map(|u| u.redacted())
                        .is_ok_and(|url| t.datastore == url)
            }
            (Unit::Tenant { .. }, _) => false,
            (Unit::Helm(_) | Unit::Kamaji(_) | Unit::Volume(_), _) => self.series().is_some_and(|s| s == m.series),
        }
    }

    /// Whether it has a delta capture between full backups.
    pub fn captures(&self) -> bool {
        matches!(self, Unit::Etcd(..) | Unit::Tenant { .. })
    }

    /// Take a full backup now.
    pub async fn backup(&self, repo: &Repository, tags: &BTreeMap<String, String>) -> Result<Manifest, UnitError> {
        let mut conns = Connections::default();
        let done = self.backup_with(repo, tags, &mut conns).await;
        conns.finish().await;
        done
    }

    /// Take a full backup now, sharing the run's datastore connections.
    pub async fn backup_with(
        &self,
        repo: &Repository,
        tags: &BTreeMap<String, String>,
        conns: &mut Connections,
    ) -> Result<Manifest, UnitError> {
        Ok(match self {
            Unit::Etcd(e, nf) => {
                // What the snapshot needs, from the node files of this run
                // (the plan backs them up just before) or read live.
                let needs = match (nf, &conns.node_files) {
                    (None, _) => None,
                    (Some(_), Some(m)) => kmdr_kube::identity::of_node_files(m),
                    (Some(n), None) => snapshot_needs(repo, n).await?,
                };
                let opts = SnapshotOptions { connection: etcd_connection(e), tags: tags.clone(), needs };
                snapshotter::backup_snapshot(repo, &opts, None).await?
            }
            Unit::NodeFiles(n) => {
                let m = node_files::backup_node_files(repo, &node_files_options(n, tags)).await?;
                conns.node_files = Some(m.clone());
                m
            }
            Unit::Tenant { datastore, schema } => {
                let session = conns.session(repo).await?;
                let (store, at) = conns.tenant_store(datastore).await?;
                let opts = TenantBackupOptions { tags: tags.clone(), at: *at };
                tenant::backup_tenant_in(session, store, schema, &opts, None).await?
            }
            Unit::Helm(h) => {
                let kube = KubeClient::connect(&kube_target(h)).await.map_err(PlatformError::from)?;
                platform::backup_platform(repo, &kube, &platform_options(h, tags)?).await?
            }
            Unit::Kamaji(k) => {
                let kube = KubeClient::connect(&kamaji_target(k)).await?;
                let opts = TenantsBackupOptions { all: true, tags: tags.clone(), ..Default::default() };
                kamaji::backup_tenants(repo, &kube, &opts, None, &|_| {}).await?
            }
            Unit::Volume(v) => {
                let kube = KubeClient::connect(&volume_target(v)).await.map_err(VolumeError::from)?;
                volumes::backup_entry(repo, &kube, &v.entry, tags).await?
            }
        })
    }

    /// Restore the backup `id` into the unit's target. The Helm release is
    /// reinstalled by helm, with the chart the plan names or the one kept in
    /// the release; helm refuses a release that is still installed.
    pub async fn restore(&self, repo: &Repository, id: &str, opts: RestoreOptions) -> Result<Restored, UnitError> {
        match self {
            Unit::NodeFiles(n) => {
                let m = repo.load_manifest(&repo.resolve(id, Some(node_files::KIND)).await?).await?;
                let (planned, contents) = node_files::plan_restore(repo, &m, &n.restore_to, opts.force).await?;
                let objects = planned
                    .iter()
                    .filter(|p| p.action != "same")
                    .map(|p| format!("{} {}", p.action, p.target.display()))
                    .collect();
                let written =
                    if opts.dry_run { planned.len() } else { node_files::write_planned(&planned, &contents)? };
                Ok(Restored { count: Some(written as u64), objects })
            }
            Unit::Etcd(e, _) => {
                let Some(member) = &e.restore else {
                    return Err(UnitError::new(
                        ErrorClass::Usage,
                        "the plan's under-cluster has no `restore:` (dataDir, name, initialCluster, initialAdvertisePeerUrls)",
                    ));
                };
                let ropts = EtcdRestoreOptions {
                    data_dir: member.data_dir.clone(),
                    name: member.name.clone(),
                    initial_cluster: member.initial_cluster.clone(),
                    initial_advertise_peer_urls: member.initial_advertise_peer_urls.clone(),
                    initial_cluster_token: None,
                    force: opts.force,
                    // The under-cluster's etcd is watched by Kubernetes: always Kubernetes-safe.
                    bump_revision: Some(kmdr_etcd::DEFAULT_REVISION_BUMP),
                };
                let tool = kmdr_etcd::find_restore_tool(None)?;
                let bid = repo.resolve(id, Some(snapshotter::KIND)).await?;
                let p = restorer::plan_restore(repo, &bid, &ropts, tool, None).await?;
                if !opts.dry_run {
                    restorer::execute(repo, &p, None).await?;
                }
                Ok(Restored { count: Some(p.key_count.max(0) as u64), objects: Vec::new() })
            }
            Unit::Tenant { datastore, schema } => {
                let store = connect_datastore(datastore).await?;
                let m = repo.load_manifest(&repo.resolve(id, Some(tenant::KIND)).await?).await?;
                let p = tenant::plan_tenant_restore(&store, &m, Some(schema), opts.force).await?;
                if opts.dry_run {
                    return Ok(Restored { count: Some(p.write_keys), objects: Vec::new() });
                }
                let info = tenant::restore_tenant(repo, &store, &m, &p, None).await?;
                Ok(Restored { count: Some(info.written), objects: Vec::new() })
            }
            Unit::Helm(h) => {
                let m = repo.load_manifest(&repo.resolve(id, Some(platform::KIND)).await?).await?;
                // Restored with the under-cluster's etcd, or never lost: left as it is.
                let kube = KubeClient::connect(&kube_target(h)).await.map_err(PlatformError::from)?;
                if let Some((revision, status)) = reinstall::installed(&kube, &h.release, &h.namespace).await? {
                    let note = format!(
                        "release {}/{} is installed (revision {revision}, {status}): left as it is",
                        h.namespace, h.release
                    );
                    return Ok(Restored { count: Some(0), objects: vec![note] });
                }
                let work = tempfile::tempdir().map_err(|e| {
                    UnitError::new(ErrorClass::Refused, format!("cannot make a scratch directory for helm: {e}"))
                })?;
                let o = ReinstallOptions {
                    chart: h.chart.clone(),
                    kubeconfig: h.kubeconfig.clone(),
                    context: h.context.clone(),
                    work: work.path().into(),
                    dry_run: opts.dry_run,
                };
                let done = reinstall::reinstall(repo, &m, &o).await?;
                Ok(Restored { count: Some(done.objects as u64), objects: done.commands })
            }
            Unit::Kamaji(k) => {
                // The manifests only: the data are the datastore units' (restored before).
                let kube = KubeClient::connect(&kamaji_target(k)).await?;
                let m = repo.load_manifest(&repo.resolve(id, Some(kamaji::KIND)).await?).await?;
                let o = TenantsRestoreOptions {
                    force: opts.force,
                    manifests_only: true,
                    no_wait: true,
                    ..Default::default()
                };
                let (plan, stores) = kamaji::plan_tenants_restore(repo, &kube, &m, &o).await?;
                let objects: Vec<String> =
                    plan.applies.iter().map(|a| format!("{} {} {}", a.how, a.kind, a.name)).collect();
                if !opts.dry_run {
                    kamaji::restore_tenants(repo, &kube, &m, &plan, &stores, &o, None, &|_| {}).await?;
                }
                Ok(Restored { count: Some(plan.applies.len() as u64), objects })
            }
            Unit::Volume(v) => {
                let (count, objects) = restore_volume(repo, v, id, opts.dry_run).await?;
                Ok(Restored { count: Some(count), objects })
            }
        }
    }

    /// What the unit holds now, key by key, where kmdr can read it: etcd's
    /// keys, a tenant's keys, the deployed release's objects (`Kind
    /// namespace/name`); `None` for volumes (the tool's restore is their check).
    pub async fn inventory(&self) -> Result<Option<KeyDigests>, UnitError> {
        Ok(match self {
            Unit::Etcd(e, _) => Some(inventory::etcd_digests(&etcd_connection(e)).await?),
            Unit::NodeFiles(n) => Some(node_files_digests(n, &n.root)?),
            Unit::Tenant { datastore, schema } => {
                let store = connect_datastore(datastore).await?;
                Some(inventory::tenant_digests(&store, schema).await?)
            }
            Unit::Helm(h) => {
                let kube = KubeClient::connect(&kube_target(h)).await.map_err(PlatformError::from)?;
                Some(keyed_digests(&reinstall::deployed_objects(&kube, &h.release, &h.namespace).await?)?)
            }
            Unit::Kamaji(k) => {
                let kube = KubeClient::connect(&kamaji_target(k)).await?;
                Some(keyed_digests(&kamaji::live_manifests(&kube).await?)?)
            }
            Unit::Volume(_) => None,
        })
    }

    /// Whether kmdr can read what it holds, key by key ([`Unit::inventory`]).
    pub fn has_inventory(&self) -> bool {
        !matches!(self, Unit::Volume(_))
    }

    /// What it holds after a restore: like [`Unit::inventory`], but a
    /// restarted etcd is given until `within` to answer.
    pub async fn read_back(&self, within: Duration) -> Result<Option<KeyDigests>, UnitError> {
        if let Unit::Kamaji(k) = self {
            // Applied without waiting: Kamaji reports each TCP Ready, within the RTO target.
            let kube = KubeClient::connect(&kamaji_target(k)).await?;
            let tcps = kamaji::tenant_refs(&kube).await?;
            kamaji::wait_ready(&kube, &tcps, within, Duration::from_millis(500), &|_| {}).await?;
            return self.inventory().await;
        }
        if let Unit::NodeFiles(n) = self {
            // Where the restore wrote them.
            return Ok(Some(node_files_digests(n, &n.restore_to)?));
        }
        let Unit::Etcd(e, _) = self else { return self.inventory().await };
        let conn = etcd_connection(e);
        let deadline = Instant::now() + within;
        loop {
            match inventory::etcd_digests(&conn).await {
                Ok(d) => return Ok(Some(d)),
                Err(e) if Instant::now() >= deadline => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Whether a drill without failure steps can break it itself ([`Unit::wipe`]).
    pub fn can_wipe(&self) -> bool {
        matches!(self, Unit::Tenant { .. } | Unit::Kamaji(_))
    }

    /// The drill's built-in failure: a tenant's keys removed (an empty import
    /// with force); the Kamaji objects' TenantControlPlanes and their Secrets deleted.
    pub async fn wipe(&self) -> Result<(), UnitError> {
        if let Unit::Kamaji(k) = self {
            let kube = KubeClient::connect(&kamaji_target(k)).await?;
            kamaji::delete_tenants(&kube).await?;
            return Ok(());
        }
        let Unit::Tenant { datastore, schema } = self else {
            return Err(UnitError::new(ErrorClass::Usage, format!("kmdr does not wipe {} itself", self.name())));
        };
        let store = connect_datastore(datastore).await?;
        let mut empty = Vec::new();
        RecordWriter::new(&mut empty).finish().await.map_err(TenantError::from)?;
        store.import(schema, &mut RecordReader::new(empty.as_slice()), true).await?;
        Ok(())
    }

    /// Connect for capturing changes: the source and the capture target.
    pub async fn change_source(&self) -> Result<(ChangeSource, DeltaTarget), UnitError> {
        match self {
            Unit::Etcd(e, _) => Ok(ChangeSource::whole_etcd(&etcd_connection(e)).await?),
            Unit::NodeFiles(_) => Err(UnitError::new(ErrorClass::Usage, "node files have no delta capture")),
            Unit::Tenant { datastore, schema } => {
                let store = connect_datastore(datastore).await?;
                Ok(ChangeSource::tenant(store, schema))
            }
            Unit::Helm(_) => Err(UnitError::new(ErrorClass::Usage, "the platform release has no delta capture")),
            Unit::Kamaji(_) => Err(UnitError::new(ErrorClass::Usage, "the Kamaji objects have no delta capture")),
            Unit::Volume(_) => Err(UnitError::new(ErrorClass::Usage, "volume backups have no delta capture")),
        }
    }
}

/// The units of a layer the plan names without asking anyone: etcd, the
/// release, each volumes entry, and the tenants a datastore lists by name.
/// Tenants of `tenants: all` are found with [`list_tenants`].
pub fn named_units(spec: &LayerSpec) -> Vec<Unit> {
    match &spec.source {
        LayerSource::Targets => Vec::new(),
        // The node files first: their backup is what the snapshot records it
        // needs, and their restore goes before etcd's and `kubeadm init`.
        LayerSource::UnderCluster { etcd, node_files } => node_files
            .iter()
            .cloned()
            .map(Unit::NodeFiles)
            .chain([Unit::Etcd(etcd.clone(), node_files.clone())])
            .collect(),
        LayerSource::Helm(h) => vec![Unit::Helm(h.clone())],
        LayerSource::Volumes(entries) => entries.iter().cloned().map(Unit::Volume).collect(),
        LayerSource::Tenants { datastores: ds, kamaji } => ds
            .iter()
            .flat_map(|d| match &d.tenants {
                TenantSelector::Only(names) => {
                    names.iter().map(|s| Unit::Tenant { datastore: d.clone(), schema: s.clone() }).collect()
                }
                TenantSelector::All => Vec::new(),
            })
            .chain(kamaji.iter().cloned().map(Unit::Kamaji))
            .collect(),
    }
}

/// The datastores of a layer (none unless it holds tenants).
pub fn datastores(spec: &LayerSpec) -> &[DatastoreSpec] {
    match &spec.source {
        LayerSource::Tenants { datastores: ds, .. } => ds,
        _ => &[],
    }
}

/// The tenant unit `<datastore>/<schema>` of a layer, whether or not the plan names the tenant.
pub fn tenant_unit(spec: &LayerSpec, name: &str) -> Option<Unit> {
    let (dname, schema) = name.split_once('/')?;
    let d = datastores(spec).iter().find(|d| d.name == dname)?;
    Some(Unit::Tenant { datastore: d.clone(), schema: schema.into() })
}

/// The tenants a datastore spec selects, found live (for `all`).
pub async fn list_tenants(d: &DatastoreSpec, store: &impl TenantStore) -> Result<Vec<String>, UnitError> {
    match &d.tenants {
        TenantSelector::Only(s) => Ok(s.clone()),
        TenantSelector::All => store.list_tenants().await.map_err(|e| UnitError::from(e).context(datastore_label(d))),
    }
}

/// The tenant units of one datastore, found live.
pub async fn datastore_units(d: &DatastoreSpec) -> Result<Vec<Unit>, UnitError> {
    Connections::default().datastore_units(d).await
}

/// Every tenant a datastore holds, and any the plan names that is not
/// there (yet): what a drill inventories, so that an unprotected tenant shows.
pub async fn present_units(d: &DatastoreSpec) -> Result<Vec<Unit>, UnitError> {
    let store = connect_datastore(d).await.map_err(|e| UnitError::from(e).context(datastore_label(d)))?;
    let mut all = store.list_tenants().await.map_err(|e| UnitError::from(e).context(datastore_label(d)))?;
    if let TenantSelector::Only(named) = &d.tenants {
        all.extend(named.iter().filter(|s| !all.contains(s)).cloned().collect::<Vec<_>>());
    }
    Ok(all.into_iter().map(|schema| Unit::Tenant { datastore: d.clone(), schema }).collect())
}

/// What an etcd snapshot needs when no node-files backup was taken with it:
/// the files on this node, else (kmdr runs where they cannot be read, in a
/// pod say) what the newest node-files backup holds.
async fn snapshot_needs(
    repo: &Repository,
    n: &NodeFilesSpec,
) -> Result<Option<kmdr_core::ClusterIdentity>, kmdr_repo::Error> {
    use kmdr_kube::identity;
    if let Ok(live) = identity::live(&n.root, Some(identity::CA_PATH), n.encryption_config.as_deref()) {
        return Ok(Some(live));
    }
    if repo.access() == kmdr_repo::crypto::Access::WriteOnly {
        return Ok(None); // the node-files backup is sealed to the full key
    }
    let ids = repo.list_backups().await?;
    match ids.iter().rev().find(|i| i.kind() == node_files::KIND) {
        Some(id) => Ok(identity::of_node_files(&repo.load_manifest(id).await?)),
        None => Ok(None),
    }
}

/// The node files as they are under `root`: path to content, mode and owner.
fn node_files_digests(n: &NodeFilesSpec, root: &std::path::Path) -> Result<KeyDigests, UnitError> {
    let files = node_files::read_files(&node_files::NodeFilesOptions {
        root: root.into(),
        ..node_files_options(n, &BTreeMap::new())
    })?;
    keyed_digests(&files)
}

/// The inventory of objects keyed by name (a release's objects, the Kamaji manifests).
fn keyed_digests(objects: &BTreeMap<String, Vec<u8>>) -> Result<KeyDigests, UnitError> {
    let pairs = objects.iter().map(|(k, v)| (k.as_bytes(), v.as_slice()));
    Ok(inventory::digests_of(pairs).map_err(TenantError::from)?)
}
