//! Backing up and restoring a plan's layers: what `kmdr backup --plan`,
//! `kmdr restore --plan`, the drill and the runbook review share. A layer is
//! a list of [`Unit`]s; everything a kind of unit does lives in [`crate::unit`].

use crate::plan::{LayerSpec, Phase, Plan, TenantSelector};
use crate::steps::{self, StepError};
use crate::unit::{self, Connections, RestoreOptions, Unit, UnitError};
use kmdr_core::{BackupId, ErrorClass, Manifest, SourceInfo};
use kmdr_datastore::DatastoreUrl;
use kmdr_repo::Repository;
use serde::Serialize;
use std::collections::BTreeMap;

/// Progress lines for people ("tenant-control-planes: backup shared-etcd/t1").
pub type Notify<'a> = &'a (dyn Fn(&str) + Sync);

type Time = chrono::DateTime<chrono::Utc>;

/// What happened to one unit.
#[derive(Debug, Clone, Serialize)]
pub struct UnitOutcome {
    pub unit: String,
    /// The backup taken or restored.
    pub backup: Option<String>,
    /// `None`: done. Otherwise what went wrong (its class and message, with what to do).
    pub error: Option<UnitError>,
    /// Keys written (restore) or held (backup), or volume sets restored, where known.
    pub keys: Option<u64>,
    /// Only for backups: when the backup started (what it protects).
    #[serde(skip)]
    pub started_at: Option<Time>,
    /// What a volume restore creates or created, one line per object.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
    /// When kmdr began and finished this unit, for timelines.
    #[serde(skip)]
    pub began: Time,
    #[serde(skip)]
    pub finished: Time,
}

impl UnitOutcome {
    fn new(unit: String, backup: Option<String>, began: Time) -> Self {
        UnitOutcome {
            unit,
            backup,
            error: None,
            keys: None,
            started_at: None,
            objects: Vec::new(),
            began,
            finished: chrono::Utc::now(),
        }
    }

    fn failed(unit: String, backup: Option<String>, began: Time, e: UnitError) -> Self {
        UnitOutcome { error: Some(e), ..UnitOutcome::new(unit, backup, began) }
    }

    fn backed_up(unit: String, began: Time, m: &Manifest) -> Self {
        UnitOutcome {
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
            ..UnitOutcome::new(unit, Some(m.id.to_string()), began)
        }
    }
}

/// The units of a layer as they are now: those the plan names, and the
/// tenants each datastore lists. A datastore that cannot be listed is an
/// outcome of its own (`<datastore>/*`).
/// The datastores stay connected in `conns`, for the backups that follow.
pub async fn live_units(spec: &LayerSpec, conns: &mut Connections) -> (Vec<Unit>, Vec<UnitOutcome>) {
    let mut units: Vec<Unit> =
        unit::named_units(spec).into_iter().filter(|u| !matches!(u, Unit::Tenant { .. })).collect();
    let mut failed = Vec::new();
    for d in unit::datastores(spec) {
        let began = chrono::Utc::now();
        match conns.datastore_units(d).await {
            Ok(found) => units.extend(found),
            Err(e) => failed.push(UnitOutcome::failed(format!("{}/*", d.name), None, began, e)),
        }
    }
    (units, failed)
}

/// Back up every unit of a layer, as it is now. Units fail one by one; the others go on.
pub async fn backup_layer(
    repo: &Repository,
    spec: &LayerSpec,
    tags: &BTreeMap<String, String>,
    notify: Notify<'_>,
) -> Vec<UnitOutcome> {
    let mut conns = Connections::default();
    let (units, mut out) = live_units(spec, &mut conns).await;
    out.extend(backup_units(repo, spec, units, tags, &mut conns, notify).await);
    out
}

/// Back up these units of a layer. The tenants of a datastore share one
/// connection and one read point (those `conns` holds, else new ones).
pub async fn backup_units(
    repo: &Repository,
    spec: &LayerSpec,
    units: Vec<Unit>,
    tags: &BTreeMap<String, String>,
    conns: &mut Connections,
    notify: Notify<'_>,
) -> Vec<UnitOutcome> {
    let mut out = Vec::new();
    for u in units {
        let name = u.name();
        notify(&format!("{}: backup {name}", spec.layer));
        let began = chrono::Utc::now();
        out.push(match u.backup_with(repo, tags, conns).await {
            Ok(m) => UnitOutcome::backed_up(name, began, &m),
            Err(e) => UnitOutcome::failed(name, None, began, e),
        });
    }
    conns.finish().await;
    out
}

/// Which backups a restore takes.
pub enum Choice<'a> {
    /// The newest backup of each unit.
    Latest,
    /// These backups, by unit name (the drill's own).
    Exact(&'a BTreeMap<String, String>),
}

/// The newest backup of each unit of a layer, by unit name, from the
/// repository alone (the datastores may be empty: that is why we restore).
/// For a datastore with `tenants: all`, its tenants are those whose backups
/// came from it.
pub async fn latest_units(repo: &Repository, spec: &LayerSpec) -> Result<BTreeMap<String, String>, kmdr_repo::Error> {
    latest_units_where(repo, spec, |_| true).await
}

/// [`latest_units`], counting only the backups `keep` accepts (those proven
/// restorable, say).
pub async fn latest_units_where(
    repo: &Repository,
    spec: &LayerSpec,
    keep: impl Fn(&BackupId) -> bool,
) -> Result<BTreeMap<String, String>, kmdr_repo::Error> {
    let named = unit::named_units(spec);
    let every: Vec<(&str, String)> = unit::datastores(spec)
        .iter()
        .filter(|d| matches!(d.tenants, TenantSelector::All))
        .map(|d| (d.name.as_str(), DatastoreUrl::parse(&d.url).map(|u| u.redacted()).unwrap_or_else(|_| d.url.clone())))
        .collect();
    let kinds: Vec<&str> =
        named.iter().map(Unit::kind).chain((!every.is_empty()).then_some(kmdr_datastore::KIND)).collect();
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    if every.is_empty() {
        // Units with a series of their own: the series index answers each in a listing and a read.
        for u in &named {
            if let Some(series) = u.series()
                && let Some(m) = repo.latest_of_series(&series, Some(u.kind()), &keep).await?
                && u.owns(&m)
            {
                found.insert(u.name(), m.id.to_string());
            }
        }
        if found.len() == named.len() {
            return Ok(found);
        }
    }
    for id in repo.list_backups().await?.iter().rev().filter(|i| kinds.contains(&i.kind()) && keep(i)) {
        let m = repo.load_manifest(id).await?;
        for u in named.iter().filter(|u| u.owns(&m)) {
            found.entry(u.name()).or_insert_with(|| id.to_string());
        }
        if let SourceInfo::TenantData(t) = &m.source {
            for (d, _) in every.iter().filter(|(_, url)| &t.datastore == url) {
                found.entry(format!("{d}/{}", t.schema)).or_insert_with(|| id.to_string());
            }
        }
        if every.is_empty() && found.len() == named.len() {
            break;
        }
    }
    Ok(found)
}

/// Restore a layer's units (without its steps), each from the chosen backup,
/// in plan order (the platform's release through helm).
pub async fn restore_units(
    repo: &Repository,
    spec: &LayerSpec,
    choice: Choice<'_>,
    opts: RestoreOptions,
    notify: Notify<'_>,
) -> Result<Vec<UnitOutcome>, kmdr_repo::Error> {
    let mut chosen = match choice {
        Choice::Latest => latest_units(repo, spec).await?,
        Choice::Exact(m) => m.clone(),
    };
    let mut units: Vec<(Unit, Option<String>)> = Vec::new();
    for u in unit::named_units(spec) {
        let id = chosen.remove(&u.name());
        // A tenant the plan names but never backed up has nothing to restore yet.
        if id.is_some() || !matches!(u, Unit::Tenant { .. }) {
            units.push((u, id));
        }
    }
    // The tenants of `tenants: all` datastores, as the repository knows them.
    for (name, id) in chosen {
        if let Some(u) = unit::tenant_unit(spec, &name) {
            units.push((u, Some(id)));
        }
    }
    // The Kamaji objects after every tenant's data: a TCP applied before its
    // data would start its API server on an empty schema.
    units.sort_by_key(|(u, _)| matches!(u, Unit::Kamaji(_)));
    let mut out = Vec::new();
    for (u, id) in units {
        let name = u.name();
        let began = chrono::Utc::now();
        let Some(id) = id else {
            let e = UnitError::new(
                ErrorClass::NotFound,
                format!(
                    "no backup of {name} in the repository: run `kmdr backup --plan FILE --layer {}` first",
                    spec.layer
                ),
            );
            out.push(UnitOutcome::failed(name, None, began, e));
            continue;
        };
        notify(&format!("{}: restore {name} from {id}{}", spec.layer, if opts.dry_run { " (dry run)" } else { "" }));
        out.push(match u.restore(repo, &id, opts).await {
            Ok(r) => UnitOutcome { keys: r.count, objects: r.objects, ..UnitOutcome::new(name, Some(id), began) },
            Err(e) => UnitOutcome::failed(name, Some(id), began, e),
        });
    }
    Ok(out)
}

/// Run a layer's steps of one phase, in file order; health checks are
/// retried until they pass or time out. The first failure stops the phase.
pub async fn run_phase(plan: &Plan, spec: &LayerSpec, phase: Phase, notify: Notify<'_>) -> Result<(), StepError> {
    for step in plan.steps(spec.layer, phase) {
        notify(&format!("{}: {} {}", spec.layer, phase_name(phase), step.name));
        if phase == Phase::HealthCheck {
            steps::run_until_healthy(step).await?;
        } else {
            steps::run_once(step).await?;
        }
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
