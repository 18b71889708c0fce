//! `kmdr drill`: the runbook's DR test, automated.
//!
//! 1. Inventory every layer the plan backs up: the under-cluster's whole etcd
//!    keyspace; every tenant of every datastore (all of them, not only the
//!    ones the plan selects: the documented state is what exists).
//! 2. Take a fresh backup of every layer, as `kmdr backup --plan` does.
//! 3. Cause the failure, at one instant T0 for all layers, top layer first:
//!    the plan's `failure` steps of a layer, or for tenant datastores the
//!    built-in wipe (every inventoried tenant's keys removed through its
//!    driver). The under cluster has no built-in wipe: kmdr does not run etcd,
//!    so the plan says how to stop it and lose its data dir.
//! 4. Recover in layer order: `before-restore` steps, the restore, the
//!    `after-restore` steps, then the health gate (`health-check` steps, run
//!    until they pass or time out, and kmdr's own check). A layer's RTO is
//!    T0 to its health gate passing; its RPO is T0 minus the start of its
//!    oldest newest backup. A layer that does not recover stops the drill.
//! 5. Inventory again and compare key by key.
//! 6. A layer passes when it recovered, nothing is missing, extra or changed,
//!    and both measures are within target.

use crate::plan::{LayerSource, Phase, Plan, TenantSelector};
use crate::report::{DrillReport, LayerReport, StepRecord, UnitReport, Verdict, REPORT_FORMAT};
use crate::steps::{self, connect_datastore, etcd_connection};
use chrono::{DateTime, Utc};
use kmdr_core::Layer;
use kmdr_repo::Repository;
use kmdr_sources::etcd::restorer::{self, EtcdRestoreOptions};
use kmdr_sources::etcd::{snapshotter, SnapshotOptions};
use kmdr_sources::inventory::{self, KeyDigests};
use kmdr_sources::tenant::{self, RecordReader, RecordWriter, TenantBackupOptions, TenantStore};
use std::collections::BTreeMap;

/// Why a drill could not run at all (a drill that runs and finds problems
/// returns a report with verdict FAIL instead).
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("the plan cannot be drilled: {0}")]
    NotDrillable(String),
    #[error("the report could not be stored in the repository: {0}")]
    Store(#[from] kmdr_repo::Error),
}

/// Progress lines for people ("under-cluster: backup ...").
pub type Notify<'a> = &'a (dyn Fn(&str) + Sync);

struct Unit {
    /// `etcd` or `<datastore>/<schema>`.
    name: String,
    /// Index into the layer's datastores (tenants), or none (etcd).
    datastore: Option<usize>,
    schema: String,
    before: KeyDigests,
    after: Option<KeyDigests>,
    backup: Option<(String, DateTime<Utc>)>,
}

struct LayerRun {
    units: Vec<Unit>,
    healthy_at: Option<DateTime<Utc>>,
    problems: Vec<String>,
}

struct Timeline {
    steps: Vec<StepRecord>,
}

impl Timeline {
    /// Time `f` as a step of the drill.
    async fn step<T, E: std::fmt::Display>(
        &mut self,
        layer: Layer,
        kind: &str,
        name: &str,
        notify: Notify<'_>,
        f: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, String> {
        notify(&format!("{layer}: {kind} {name}"));
        let started_at = Utc::now();
        let r = f.await;
        let finished_at = Utc::now();
        let (ok, detail) = match &r {
            Ok(_) => (true, String::new()),
            Err(e) => (false, e.to_string()),
        };
        self.steps.push(StepRecord { layer, kind: kind.into(), name: name.into(), started_at, finished_at, ok, detail: detail.clone() });
        r.map_err(|_| detail)
    }
}

/// Check that every layer the plan backs up can be drilled.
fn preflight(plan: &Plan) -> Result<(), DrillError> {
    for l in &plan.layers {
        if let LayerSource::Etcd(e) = &l.source {
            if e.restore.is_none() {
                return Err(DrillError::NotDrillable(format!(
                    "layer under-cluster has no `restore:` (dataDir, name, initialCluster, initialAdvertisePeerUrls): a drill must rebuild the member (plan line {})",
                    l.pos.line
                )));
            }
            if plan.steps(l.layer, Phase::Failure).next().is_none() || plan.steps(l.layer, Phase::AfterRestore).next().is_none() {
                return Err(DrillError::NotDrillable(format!(
                    "layer under-cluster needs `run:` steps with phase failure (stop etcd and lose its data dir) and after-restore (start etcd again): kmdr does not run etcd itself (plan line {})",
                    l.pos.line
                )));
            }
        }
    }
    if !plan.layers.iter().any(|l| !matches!(l.source, LayerSource::Targets)) {
        return Err(DrillError::NotDrillable("no layer names something to back up (etcd: or datastores:)".into()));
    }
    Ok(())
}

/// Run a whole drill; the report is also stored in the repository.
pub async fn drill(plan: &Plan, repo: &Repository, notify: Notify<'_>) -> Result<DrillReport, DrillError> {
    preflight(plan)?;
    let started_at = Utc::now();
    let mut t = Timeline { steps: Vec::new() };
    let mut runs: Vec<LayerRun> = Vec::new();

    // 1-2. Inventory and back up, layer by layer.
    for spec in &plan.layers {
        let mut run = LayerRun { units: Vec::new(), healthy_at: None, problems: Vec::new() };
        match &spec.source {
            LayerSource::Targets => {}
            LayerSource::Etcd(e) => {
                let conn = etcd_connection(e);
                match t.step(spec.layer, "inventory", "etcd keyspace", notify, inventory::etcd_digests(&conn)).await {
                    Ok(before) => {
                        let mut unit = Unit { name: "etcd".into(), datastore: None, schema: String::new(), before, after: None, backup: None };
                        let opts = SnapshotOptions { connection: conn.clone(), tags: BTreeMap::from([("drill".into(), started_at.to_rfc3339())]) };
                        match t.step(spec.layer, "backup", "etcd snapshot", notify, snapshotter::backup_snapshot(repo, &opts, None)).await {
                            Ok(m) => unit.backup = Some((m.id.to_string(), m.started_at)),
                            Err(e) => run.problems.push(format!("the etcd backup failed: {e}")),
                        }
                        run.units.push(unit);
                    }
                    Err(e) => run.problems.push(format!("cannot read the under-cluster etcd: {e}")),
                }
            }
            LayerSource::Tenants(datastores) => {
                for (di, d) in datastores.iter().enumerate() {
                    let store = match connect_datastore(d).await {
                        Ok(s) => s,
                        Err(e) => {
                            run.problems.push(format!("datastore {}: {e}", d.name));
                            continue;
                        }
                    };
                    let found = match store.list_tenants().await {
                        Ok(f) => f,
                        Err(e) => {
                            run.problems.push(format!("datastore {}: {e}", d.name));
                            continue;
                        }
                    };
                    let selected: Vec<String> = match &d.tenants {
                        TenantSelector::All => found.clone(),
                        TenantSelector::Only(s) => s.clone(),
                    };
                    let mut schemas = found.clone();
                    schemas.extend(selected.iter().filter(|s| !found.contains(s)).cloned());
                    let at = store.shared_read_point().await.ok().flatten();
                    for schema in schemas {
                        let name = format!("{}/{schema}", d.name);
                        let Ok(before) = t.step(spec.layer, "inventory", &name, notify, inventory::tenant_digests(&store, &schema)).await else {
                            run.problems.push(format!("cannot read tenant {name}"));
                            continue;
                        };
                        let mut unit = Unit { name: name.clone(), datastore: Some(di), schema: schema.clone(), before, after: None, backup: None };
                        if selected.contains(&schema) {
                            let opts = TenantBackupOptions { tags: BTreeMap::from([("drill".into(), started_at.to_rfc3339())]), at };
                            match t.step(spec.layer, "backup", &name, notify, tenant::backup_tenant(repo, &store, &schema, &opts, None)).await {
                                Ok(m) => unit.backup = Some((m.id.to_string(), m.started_at)),
                                Err(e) => run.problems.push(format!("the backup of tenant {name} failed: {e}")),
                            }
                        }
                        run.units.push(unit);
                    }
                }
            }
        }
        runs.push(run);
    }

    // 3. The failure, top layer first.
    let failure_at = Utc::now();
    for (spec, run) in plan.layers.iter().zip(runs.iter_mut()).rev() {
        if matches!(spec.source, LayerSource::Targets) {
            continue;
        }
        let mut custom = false;
        for step in plan.steps(spec.layer, Phase::Failure) {
            custom = true;
            if let Err(e) = t.step(spec.layer, "failure", &step.name, notify, steps::run_once(step)).await {
                run.problems.push(format!("the failure step failed: {e}"));
            }
        }
        if let (false, LayerSource::Tenants(datastores)) = (custom, &spec.source) {
            for unit in &run.units {
                let d = &datastores[unit.datastore.expect("tenant units have a datastore")];
                let wipe = async {
                    let store = connect_datastore(d).await?;
                    let mut empty = Vec::new();
                    RecordWriter::new(&mut empty).finish().await?;
                    store.import(&unit.schema, &mut RecordReader::new(empty.as_slice()), true).await
                };
                if let Err(e) = t.step(spec.layer, "failure", &format!("wipe {}", unit.name), notify, wipe).await {
                    run.problems.push(format!("the built-in wipe of {} failed: {e}", unit.name));
                }
            }
        }
    }

    // 4-5. Recover in layer order, each through its health gate, then compare.
    let mut stopped = false;
    for (spec, run) in plan.layers.iter().zip(runs.iter_mut()) {
        if matches!(spec.source, LayerSource::Targets) {
            continue;
        }
        if stopped {
            run.problems.push("not recovered: a lower layer did not recover".into());
            continue;
        }
        let layer = spec.layer;
        let mut ok = true;
        for step in plan.steps(layer, Phase::BeforeRestore) {
            if let Err(e) = t.step(layer, "run", &step.name, notify, steps::run_once(step)).await {
                run.problems.push(e);
                ok = false;
            }
        }
        match &spec.source {
            LayerSource::Etcd(e) => {
                let member = e.restore.as_ref().expect("preflight");
                if let Some((id, _)) = run.units.first().and_then(|u| u.backup.clone()) {
                    let restore = async {
                        let opts = EtcdRestoreOptions {
                            data_dir: member.data_dir.clone(),
                            name: member.name.clone(),
                            initial_cluster: member.initial_cluster.clone(),
                            initial_advertise_peer_urls: member.initial_advertise_peer_urls.clone(),
                            initial_cluster_token: None,
                            force: true,
                        };
                        let tool = restorer::find_restore_tool(None)?;
                        let id = repo.resolve(&id, Some(snapshotter::KIND)).await?;
                        let p = restorer::plan_restore(repo, &id, &opts, tool).await?;
                        restorer::execute(repo, &p, None).await
                    };
                    if let Err(e) = t.step(layer, "restore", "etcd snapshot", notify, restore).await {
                        run.problems.push(format!("the etcd restore failed: {e}"));
                        ok = false;
                    }
                } else {
                    run.problems.push("no backup to restore".into());
                    ok = false;
                }
            }
            LayerSource::Tenants(datastores) => {
                for unit in run.units.iter().filter(|u| u.backup.is_some()) {
                    let d = &datastores[unit.datastore.expect("tenant units have a datastore")];
                    let (id, _) = unit.backup.clone().expect("filtered");
                    let restore = async {
                        let store = connect_datastore(d).await?;
                        let m = repo.load_manifest(&repo.resolve(&id, Some(tenant::KIND)).await?).await?;
                        let p = tenant::plan_tenant_restore(&store, &m, Some(&unit.schema), true).await?;
                        tenant::restore_tenant(repo, &store, &m, &p, None).await
                    };
                    if let Err(e) = t.step(layer, "restore", &unit.name, notify, restore).await {
                        run.problems.push(format!("the restore of {} failed: {e}", unit.name));
                        ok = false;
                    }
                }
            }
            LayerSource::Targets => unreachable!("skipped above"),
        }
        for step in plan.steps(layer, Phase::AfterRestore) {
            if let Err(e) = t.step(layer, "run", &step.name, notify, steps::run_once(step)).await {
                run.problems.push(e);
                ok = false;
            }
        }
        // The health gate: the plan's checks, then kmdr's own (it can read the layer).
        for step in plan.steps(layer, Phase::HealthCheck) {
            if let Err(e) = t.step(layer, "health", &step.name, notify, steps::run_until_healthy(step)).await {
                run.problems.push(e);
                ok = false;
            }
        }
        let mut read_back = Vec::new();
        for unit in &run.units {
            let after = match (&spec.source, unit.datastore) {
                (LayerSource::Etcd(e), _) => {
                    let conn = etcd_connection(e);
                    t.step(layer, "health", "etcd answers", notify, wait_for_etcd(&conn, spec.rto)).await
                }
                (LayerSource::Tenants(ds), Some(di)) => {
                    let d = &ds[di];
                    let read = async {
                        let store = connect_datastore(d).await?;
                        inventory::tenant_digests(&store, &unit.schema).await
                    };
                    t.step(layer, "compare", &unit.name, notify, read).await
                }
                _ => unreachable!("units match their layer"),
            };
            read_back.push(after);
        }
        if ok && read_back.iter().all(Result::is_ok) {
            run.healthy_at = Some(Utc::now());
        } else {
            stopped = true;
        }
        for (unit, after) in run.units.iter_mut().zip(read_back) {
            match after {
                Ok(a) => unit.after = Some(a),
                Err(e) => run.problems.push(format!("{} cannot be read after the restore: {e}", unit.name)),
            }
        }
    }

    // 6. Verdicts.
    let mut layers = Vec::new();
    for (spec, run) in plan.layers.iter().zip(runs) {
        let mut problems = run.problems;
        let targets_only = matches!(spec.source, LayerSource::Targets);
        let rto_s = run.healthy_at.map(|h| (h - failure_at).as_seconds_f64());
        let rpo_s = run
            .units
            .iter()
            .filter_map(|u| u.backup.as_ref().map(|(_, at)| (failure_at - *at).as_seconds_f64()))
            .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))));
        let units: Vec<UnitReport> = run
            .units
            .into_iter()
            .map(|u| {
                let after = u.after.unwrap_or_default();
                let diff = u.before.diff(&after);
                UnitReport {
                    name: u.name,
                    keys_before: u.before.keys,
                    keys_after: after.keys,
                    content_before: u.before.content_sha256.clone(),
                    content_after: after.content_sha256,
                    backup: u.backup.map(|b| b.0),
                    diff,
                }
            })
            .collect();
        for u in units.iter().filter(|u| !u.diff.is_empty()) {
            problems.push(format!(
                "{}: {} keys missing, {} extra, {} changed after the recovery{}",
                u.name,
                u.diff.missing,
                u.diff.extra,
                u.diff.changed,
                if u.backup.is_none() { "; the plan does not back this tenant up: add it to the datastore's `tenants:`" } else { "" }
            ));
        }
        if let Some(r) = rto_s.filter(|r| *r > spec.rto.as_secs_f64()) {
            problems.push(format!("RTO {r:.1}s is over the target of {}s", spec.rto.as_secs()));
        }
        if let Some(r) = rpo_s.filter(|r| *r > spec.rpo.as_secs_f64()) {
            problems.push(format!("RPO {r:.1}s is over the target of {}s", spec.rpo.as_secs()));
        }
        let verdict = if targets_only {
            problems.push("kmdr does not back this layer up yet: only its targets are in the plan".into());
            Verdict::Skipped
        } else if problems.is_empty() && rto_s.is_some() {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        layers.push(LayerReport {
            layer: spec.layer,
            verdict,
            rto_target_s: spec.rto.as_secs(),
            rpo_target_s: spec.rpo.as_secs(),
            rto_s,
            rpo_s,
            units,
            problems,
        });
    }
    let verdict = if layers.iter().any(|l| l.verdict == Verdict::Fail) { Verdict::Fail } else { Verdict::Pass };
    let report = DrillReport {
        format: REPORT_FORMAT,
        plan: plan.name.clone(),
        plan_file: plan.file.display().to_string(),
        repository: repo.location(),
        started_at,
        failure_at: Some(failure_at),
        finished_at: Utc::now(),
        verdict,
        layers,
        steps: t.steps,
        kmdr_version: env!("CARGO_PKG_VERSION").into(),
    };
    let json = serde_json::to_vec_pretty(&report).expect("report serializes");
    repo.put_report(&report.object_name(), &json).await?;
    Ok(report)
}

/// etcd's health gate: a status answer, retried until the layer's RTO target.
async fn wait_for_etcd(conn: &kmdr_sources::etcd::EtcdConnection, within: std::time::Duration) -> Result<KeyDigests, String> {
    let deadline = std::time::Instant::now() + within;
    loop {
        match inventory::etcd_digests(conn).await {
            Ok(d) => return Ok(d),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e.to_string()),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    }
}
