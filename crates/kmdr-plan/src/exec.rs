//! Backing up and restoring a plan's layers: what `kmdr backup --plan`,
//! `kmdr restore --plan` and the drill share.
//!
//! A layer's *units* are what it holds: the under-cluster's etcd (one unit,
//! `etcd`), or one tenant of one datastore (`<datastore>/<schema>`).

use crate::plan::{DatastoreSpec, HelmSource, LayerSource, LayerSpec, Phase, Plan, TenantSelector, VolumeSpec};
use crate::steps::{self, connect_datastore, etcd_connection};
use kmdr_core::{Manifest, SourceInfo};
use kmdr_datastore::{self as tenant, DatastoreUrl, TenantBackupOptions, TenantStore};
use kmdr_etcd::restorer::{self, EtcdRestoreOptions};
use kmdr_etcd::{SnapshotOptions, snapshotter};
pub use kmdr_kube::volumes::FailureClass;
use kmdr_kube::volumes::{self, VolumeError};
use kmdr_repo::Repository;
use serde::Serialize;
use std::collections::BTreeMap;

/// Progress lines for people ("tenant-control-planes: backup shared-etcd/t1").
pub type Notify<'a> = &'a (dyn Fn(&str) + Sync);

/// What happened to one unit.
#[derive(Debug, Clone, Serialize)]
pub struct UnitOutcome {
    pub unit: String,
    /// The backup taken or restored.
    pub backup: Option<String>,
    /// `None`: done. Otherwise what went wrong, with what to do.
    pub error: Option<String>,
    /// Keys written (restore) or held (backup), where known.
    pub keys: Option<u64>,
    /// Only for backups: when the backup started (what it protects).
    #[serde(skip)]
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// How the unit failed, where the layer classes its failures (volumes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureClass>,
    /// What a volume restore creates or created, one line per object.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
    /// When kmdr began and finished this unit, for timelines.
    #[serde(skip)]
    pub began: chrono::DateTime<chrono::Utc>,
    #[serde(skip)]
    pub finished: chrono::DateTime<chrono::Utc>,
}

/// The tenants a datastore spec selects, found live (for `all`).
pub async fn selected_tenants(d: &DatastoreSpec, store: &impl TenantStore) -> Result<Vec<String>, String> {
    match &d.tenants {
        TenantSelector::Only(s) => Ok(s.clone()),
        TenantSelector::All => store.list_tenants().await.map_err(|e| format!("datastore {}: {e}", d.name)),
    }
}

/// Back up every unit of a layer. Units fail one by one; the others go on.
pub async fn backup_layer(
    repo: &Repository,
    spec: &LayerSpec,
    tags: &BTreeMap<String, String>,
    only: Option<&[String]>,
    notify: Notify<'_>,
) -> Vec<UnitOutcome> {
    let mut out = Vec::new();
    let mut began = chrono::Utc::now();
    let done = |unit: String, began: chrono::DateTime<chrono::Utc>, r: Result<Manifest, String>| match r {
        Ok(m) => UnitOutcome {
            began,
            finished: chrono::Utc::now(),
            unit,
            backup: Some(m.id.to_string()),
            error: None,
            keys: match &m.source {
                SourceInfo::TenantData(t) => Some(t.key_count),
                SourceInfo::EtcdSnapshot(e) => Some(e.key_count.max(0) as u64),
                _ => None,
            },
            started_at: Some(match &m.source {
                // A volume backup protects the tool's point in time (a
                // schedule's backup may be older than this run).
                SourceInfo::VolumeBackup(v) => v.point_in_time,
                _ => m.started_at,
            }),
            failure: None,
            objects: Vec::new(),
        },
        Err(e) => UnitOutcome {
            unit,
            backup: None,
            error: Some(e),
            keys: None,
            started_at: None,
            failure: None,
            objects: Vec::new(),
            began,
            finished: chrono::Utc::now(),
        },
    };
    match &spec.source {
        LayerSource::Targets => {}
        LayerSource::Volumes(entries) => {
            for v in entries.iter().filter(|v| only.is_none_or(|o| o.contains(&v.unit()))) {
                notify(&format!("{}: backup {} ({})", spec.layer, v.unit(), v.entry.provider.name()));
                began = chrono::Utc::now();
                let r = async {
                    let kube = kmdr_kube::client::KubeClient::connect(&volume_target(v)).await?;
                    volumes::backup_entry(repo, &kube, &v.entry, tags).await
                }
                .await;
                let class = r.as_ref().err().map(VolumeError::class);
                let mut o = done(v.unit(), began, r.map_err(|e| e.to_string()));
                o.failure = class;
                out.push(o);
            }
        }
        LayerSource::Helm(h) => {
            notify(&format!("{}: backup {}", spec.layer, h.unit()));
            let r = async {
                let kube = kmdr_kube::client::KubeClient::connect(&kube_target(h)).await?;
                kmdr_kube::platform::backup_platform(repo, &kube, &platform_options(h, tags)?).await
            }
            .await
            .map_err(|e: kmdr_kube::platform::PlatformError| e.to_string());
            out.push(done(h.unit(), began, r));
        }
        LayerSource::Etcd(e) => {
            notify(&format!("{}: backup etcd", spec.layer));
            let opts = SnapshotOptions { connection: etcd_connection(e), tags: tags.clone() };
            out.push(done(
                "etcd".into(),
                began,
                snapshotter::backup_snapshot(repo, &opts, None).await.map_err(|e| e.to_string()),
            ));
        }
        LayerSource::Tenants(datastores) => {
            for d in datastores {
                let store = match connect_datastore(d).await {
                    Ok(s) => s,
                    Err(e) => {
                        out.push(done(format!("{}/*", d.name), began, Err(format!("datastore {}: {e}", d.name))));
                        continue;
                    }
                };
                let schemas = match only {
                    Some(list) => list.to_vec(),
                    None => match selected_tenants(d, &store).await {
                        Ok(s) => s,
                        Err(e) => {
                            out.push(done(format!("{}/*", d.name), began, Err(e)));
                            continue;
                        }
                    },
                };
                // One read point for all tenants of the datastore where it has one (etcd).
                let at = store.shared_read_point().await.ok().flatten();
                let opts = TenantBackupOptions { tags: tags.clone(), at };
                for schema in schemas {
                    let unit = format!("{}/{schema}", d.name);
                    notify(&format!("{}: backup {unit}", spec.layer));
                    began = chrono::Utc::now();
                    let r = tenant::backup_tenant(repo, &store, &schema, &opts, None).await.map_err(|e| e.to_string());
                    out.push(done(unit, began, r));
                }
            }
        }
    }
    out
}

/// Which backups a restore takes.
pub enum Choice<'a> {
    /// The newest backup of each unit.
    Latest,
    /// These backups, by unit name (the drill's own).
    Exact(&'a BTreeMap<String, String>),
}

/// The newest backup of each unit of a layer, from the repository alone (the
/// datastores may be empty: that is why we restore). For a datastore with
/// `tenants: all`, its tenants are those whose backups came from it.
pub async fn latest_units(repo: &Repository, spec: &LayerSpec) -> Result<BTreeMap<String, String>, kmdr_repo::Error> {
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    let ids = repo.list_backups().await?;
    match &spec.source {
        LayerSource::Targets => {}
        LayerSource::Volumes(entries) => {
            for id in ids.iter().rev().filter(|i| i.kind() == volumes::KIND) {
                let m = repo.load_manifest(id).await?;
                if let Some(v) = entries.iter().find(|v| m.series == volumes::series(&v.entry.name)) {
                    found.entry(v.unit()).or_insert_with(|| id.to_string());
                }
                if found.len() == entries.len() {
                    break;
                }
            }
        }
        LayerSource::Helm(h) => {
            let series = format!("platform/{}/{}", h.namespace, h.release);
            for id in ids.iter().rev().filter(|i| i.kind() == kmdr_kube::platform::KIND) {
                if repo.load_manifest(id).await?.series == series {
                    found.insert(h.unit(), id.to_string());
                    break;
                }
            }
        }
        LayerSource::Etcd(_) => {
            if let Some(id) = ids.iter().rev().find(|i| i.kind() == snapshotter::KIND) {
                found.insert("etcd".into(), id.to_string());
            }
        }
        LayerSource::Tenants(datastores) => {
            let shown: Vec<String> = datastores
                .iter()
                .map(|d| DatastoreUrl::parse(&d.url).map(|u| u.redacted()).unwrap_or_else(|_| d.url.clone()))
                .collect();
            for id in ids.iter().rev().filter(|i| i.kind() == tenant::KIND) {
                let m = repo.load_manifest(id).await?;
                let SourceInfo::TenantData(t) = &m.source else { continue };
                for (d, url) in datastores.iter().zip(&shown) {
                    let wanted = match &d.tenants {
                        TenantSelector::All => &t.datastore == url,
                        TenantSelector::Only(list) => list.contains(&t.schema),
                    };
                    if wanted {
                        found.entry(format!("{}/{}", d.name, t.schema)).or_insert_with(|| id.to_string());
                    }
                }
            }
        }
    }
    Ok(found)
}

/// Restore a layer's units (without its steps), each from the chosen backup.
pub async fn restore_units(
    repo: &Repository,
    spec: &LayerSpec,
    choice: Choice<'_>,
    force: bool,
    dry_run: bool,
    notify: Notify<'_>,
) -> Result<Vec<UnitOutcome>, kmdr_repo::Error> {
    let chosen = match choice {
        Choice::Latest => latest_units(repo, spec).await?,
        Choice::Exact(m) => m.clone(),
    };
    let mut out = Vec::new();
    let mut began = chrono::Utc::now();
    let outcome = |unit: &str,
                   id: Option<&str>,
                   began: chrono::DateTime<chrono::Utc>,
                   r: Result<Option<u64>, String>| UnitOutcome {
        unit: unit.into(),
        backup: id.map(Into::into),
        keys: r.as_ref().ok().copied().flatten(),
        error: r.err(),
        started_at: None,
        failure: None,
        objects: Vec::new(),
        began,
        finished: chrono::Utc::now(),
    };
    match &spec.source {
        // Reinstalling the platform is helm's job: `kmdr restore platform`.
        LayerSource::Targets | LayerSource::Helm(_) => {}
        LayerSource::Volumes(entries) => {
            for v in entries {
                let unit = v.unit();
                began = chrono::Utc::now();
                let Some(id) = chosen.get(&unit) else {
                    let mut o = outcome(
                        &unit,
                        None,
                        began,
                        Err(format!(
                            "no volume backup of entry {unit} in the repository: run `kmdr backup --plan FILE --layer persistent-data` first"
                        )),
                    );
                    o.failure = Some(FailureClass::NotFound);
                    out.push(o);
                    continue;
                };
                notify(&format!("{}: restore {unit} from {id}{}", spec.layer, if dry_run { " (dry run)" } else { "" }));
                let r = restore_volume(repo, v, id, dry_run).await;
                let mut o =
                    outcome(&unit, Some(id), began, r.as_ref().map(|(n, _)| Some(*n)).map_err(|e| e.to_string()));
                o.failure = r.as_ref().err().map(VolumeError::class);
                o.objects = r.map(|(_, lines)| lines).unwrap_or_default();
                out.push(o);
            }
        }
        LayerSource::Etcd(e) => {
            let Some(id) = chosen.get("etcd") else {
                out.push(outcome(
                    "etcd",
                    None,
                    began,
                    Err("no etcd backup in the repository: run `kmdr backup --plan` first".into()),
                ));
                return Ok(out);
            };
            let Some(member) = &e.restore else {
                out.push(outcome("etcd", Some(id), began, Err("the plan's under-cluster has no `restore:` (dataDir, name, initialCluster, initialAdvertisePeerUrls)".into())));
                return Ok(out);
            };
            notify(&format!("{}: restore etcd from {id}{}", spec.layer, if dry_run { " (dry run)" } else { "" }));
            let r = async {
                let opts = EtcdRestoreOptions {
                    data_dir: member.data_dir.clone(),
                    name: member.name.clone(),
                    initial_cluster: member.initial_cluster.clone(),
                    initial_advertise_peer_urls: member.initial_advertise_peer_urls.clone(),
                    initial_cluster_token: None,
                    force,
                };
                let tool = kmdr_etcd::find_restore_tool(None)?;
                let bid = repo.resolve(id, Some(snapshotter::KIND)).await?;
                let p = restorer::plan_restore(repo, &bid, &opts, tool, None).await?;
                if !dry_run {
                    restorer::execute(repo, &p, None).await?;
                }
                Ok::<_, kmdr_etcd::EtcdError>(Some(p.key_count.max(0) as u64))
            }
            .await
            .map_err(|e| e.to_string());
            out.push(outcome("etcd", Some(id), began, r));
        }
        LayerSource::Tenants(datastores) => {
            for (unit, id) in &chosen {
                let Some((dname, schema)) = unit.split_once('/') else { continue };
                let Some(d) = datastores.iter().find(|d| d.name == dname) else { continue };
                notify(&format!("{}: restore {unit} from {id}{}", spec.layer, if dry_run { " (dry run)" } else { "" }));
                began = chrono::Utc::now();
                let r = async {
                    let store = connect_datastore(d).await?;
                    let m = repo.load_manifest(&repo.resolve(id, Some(tenant::KIND)).await?).await?;
                    let p = tenant::plan_tenant_restore(&store, &m, Some(schema), force).await?;
                    if dry_run {
                        return Ok(Some(p.write_keys));
                    }
                    let info = tenant::restore_tenant(repo, &store, &m, &p, None).await?;
                    Ok::<_, tenant::TenantError>(Some(info.written))
                }
                .await
                .map_err(|e| e.to_string());
                out.push(outcome(unit, Some(id), began, r));
            }
        }
    }
    Ok(out)
}

/// Restore one volumes entry from the record `id`: plan it (reading the
/// cluster only), then, unless `dry_run`, carry it out. Returns the volumes
/// or tool restores completed (planned, on a dry run) and one line per object.
async fn restore_volume(
    repo: &Repository,
    v: &VolumeSpec,
    id: &str,
    dry_run: bool,
) -> Result<(u64, Vec<String>), VolumeError> {
    let m = repo.load_manifest(&repo.resolve(id, Some(volumes::KIND)).await?).await?;
    let record = volumes::record(&m, &v.entry.name)?;
    let kube = kmdr_kube::client::KubeClient::connect(&volume_target(v)).await?;
    let plan = volumes::plan_restore(&kube, &v.entry, record).await?;
    let lines: Vec<String> = plan
        .objects
        .iter()
        .map(|o| {
            format!(
                "{} {} {}{}: {}",
                o.action,
                o.kind,
                o.namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default(),
                o.name,
                o.note
            )
        })
        .collect();
    if dry_run {
        let n = plan
            .objects
            .iter()
            .filter(|o| {
                o.action == "create" && matches!(o.kind.as_str(), "PersistentVolumeClaim" | "Restore" | "RestoreAction")
            })
            .count();
        return Ok((n as u64, lines));
    }
    let done = volumes::restore(&kube, &v.entry, &plan).await?;
    Ok((done.restored, lines))
}

/// How to reach a volumes entry's cluster.
pub fn volume_target(v: &VolumeSpec) -> kmdr_kube::client::KubeTarget {
    kmdr_kube::client::KubeTarget { kubeconfig: v.kubeconfig.clone(), context: v.context.clone(), ..Default::default() }
}

/// Run a layer's steps of one phase, in file order; health checks are
/// retried until they pass or time out. The first failure stops the phase.
pub async fn run_phase(plan: &Plan, spec: &LayerSpec, phase: Phase, notify: Notify<'_>) -> Result<(), String> {
    for step in plan.steps(spec.layer, phase) {
        notify(&format!("{}: {} {}", spec.layer, phase_name(phase), step.name));
        let r = if phase == Phase::HealthCheck {
            steps::run_until_healthy(step).await
        } else {
            steps::run_once(step).await
        };
        r.map_err(|e| e.to_string())?;
    }
    Ok(())
}

pub fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::BeforeRestore => "before-restore",
        Phase::AfterRestore => "after-restore",
        Phase::Failure => "failure",
        Phase::HealthCheck => "health-check",
    }
}

/// How to reach the platform's cluster.
pub fn kube_target(h: &HelmSource) -> kmdr_kube::client::KubeTarget {
    kmdr_kube::client::KubeTarget { kubeconfig: h.kubeconfig.clone(), context: h.context.clone(), ..Default::default() }
}

/// The backup options of a plan's `helm:` source.
pub fn platform_options(
    h: &HelmSource,
    tags: &BTreeMap<String, String>,
) -> Result<kmdr_kube::platform::PlatformBackupOptions, kmdr_kube::platform::PlatformError> {
    Ok(kmdr_kube::platform::PlatformBackupOptions {
        release: h.release.clone(),
        namespace: h.namespace.clone(),
        secrets: h.secrets.iter().map(|s| s.parse()).collect::<Result<_, _>>()?,
        tags: tags.clone(),
    })
}
