//! `kmdr drill`: the runbook's DR test, automated.
//!
//! 1. Inventory every layer the plan backs up: the under-cluster's whole etcd
//!    keyspace; every tenant of every datastore (all of them, not only the
//!    ones the plan selects: the documented state is what exists).
//! 2. Take a fresh backup of every layer, as `kmdr backup --plan` does.
//! 3. Cause the failure, at one instant T0 for all layers, top layer first:
//!    the plan's `failure` steps of a layer, or for tenant datastores the
//!    built-in wipe (every inventoried tenant's keys removed through its
//!    driver; with `kamaji:`, every TenantControlPlane and its Secrets
//!    deleted). The under cluster has no built-in wipe: kmdr does not run etcd,
//!    so the plan says how to stop it and lose its data dir.
//! 4. Recover in layer order: `before-restore` steps, the restore, the
//!    `after-restore` steps, then the health gate (`health-check` steps, run
//!    until they pass or time out, and kmdr's own check). A layer's RTO is
//!    T0 to its health gate passing; its RPO is T0 minus the start of its
//!    oldest newest backup. A layer that does not recover stops the drill.
//! 5. Inventory again and compare key by key.
//! 6. A layer passes when it recovered, nothing is missing, extra or changed,
//!    and both measures are within target.

use crate::exec::{self, Choice};
use crate::plan::{LayerSource, Phase, Plan};
use crate::report::{DrillReport, LayerReport, REPORT_FORMAT, StepRecord, UnitReport, Verdict};
use crate::steps;
use crate::unit::{self, RestoreOptions, Unit};
use chrono::{DateTime, Utc};
use kmdr_core::Layer;
use kmdr_datastore::inventory::KeyDigests;
use kmdr_repo::Repository;
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

impl kmdr_core::Classify for DrillError {
    fn class(&self) -> kmdr_core::ErrorClass {
        match self {
            DrillError::NotDrillable(_) => kmdr_core::ErrorClass::Usage,
            DrillError::Store(e) => e.class(),
        }
    }
}

pub use crate::exec::Notify;

/// One unit as the drill sees it: what it held before, what it holds after.
struct Drilled {
    unit: Unit,
    /// `etcd` or `<datastore>/<schema>`.
    name: String,
    before: KeyDigests,
    after: Option<KeyDigests>,
    backup: Option<(String, DateTime<Utc>)>,
}

impl Drilled {
    fn new(unit: Unit, before: KeyDigests) -> Self {
        Drilled { name: unit.name(), unit, before, after: None, backup: None }
    }
}

struct LayerRun {
    units: Vec<Drilled>,
    healthy_at: Option<DateTime<Utc>>,
    problems: Vec<String>,
}

struct Timeline {
    steps: Vec<StepRecord>,
}

impl Timeline {
    /// Record a step that ran elsewhere.
    fn record(
        &mut self,
        layer: Layer,
        kind: &str,
        name: &str,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        error: Option<&str>,
    ) {
        let detail = error.unwrap_or_default().to_string();
        self.steps.push(StepRecord {
            layer,
            kind: kind.into(),
            name: name.into(),
            started_at,
            finished_at,
            ok: error.is_none(),
            detail,
        });
    }

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
        self.steps.push(StepRecord {
            layer,
            kind: kind.into(),
            name: name.into(),
            started_at,
            finished_at,
            ok,
            detail: detail.clone(),
        });
        r.map_err(|_| detail)
    }
}

/// Whether the drill breaks and recovers this layer: every layer that names
/// a source (etcd, the release, datastores, volumes); a layer of targets only is skipped.
fn drilled(spec: &crate::plan::LayerSpec) -> bool {
    !matches!(spec.source, LayerSource::Targets)
}

/// Check that every layer the plan backs up can be drilled.
fn preflight(plan: &Plan) -> Result<(), DrillError> {
    for l in &plan.layers {
        if let LayerSource::UnderCluster { etcd: e, .. } = &l.source {
            if e.restore.is_none() {
                return Err(DrillError::NotDrillable(format!(
                    "layer under-cluster has no `restore:` (dataDir, name, initialCluster, initialAdvertisePeerUrls): a drill must rebuild the member (plan line {})",
                    l.pos.line
                )));
            }
            if plan.steps(l.layer, Phase::Failure).next().is_none()
                || plan.steps(l.layer, Phase::AfterRestore).next().is_none()
            {
                return Err(DrillError::NotDrillable(format!(
                    "layer under-cluster needs `run:` steps with phase failure (stop etcd and lose its data dir) and after-restore (start etcd again): kmdr does not run etcd itself (plan line {})",
                    l.pos.line
                )));
            }
        }
    }
    for l in &plan.layers {
        let why = match l.source {
            LayerSource::Volumes(_) => "e.g. delete the test namespace's PVCs): kmdr never deletes volumes itself",
            LayerSource::Helm(_) => {
                "e.g. helm uninstall RELEASE -n NAMESPACE --wait): kmdr never uninstalls the platform itself"
            }
            _ => continue,
        };
        if plan.steps(l.layer, Phase::Failure).next().is_none() {
            return Err(DrillError::NotDrillable(format!(
                "layer {} needs `run:` steps with phase failure ({why} (plan line {})",
                l.layer, l.pos.line
            )));
        }
    }
    if !plan.layers.iter().any(drilled) {
        return Err(DrillError::NotDrillable("no layer names something to back up (etcd: or datastores:)".into()));
    }
    Ok(())
}

/// When the drill's etcd snapshot records a cluster identity (the plan names
/// `nodeFiles:`) that no node-files backup holds: what the restored cluster
/// would lack.
async fn pairing_problem(repo: &Repository, run: &LayerRun) -> Option<String> {
    let d = run.units.iter().find(|d| matches!(d.unit, Unit::Etcd(_, Some(_))))?;
    let id = repo.resolve(&d.backup.as_ref()?.0, None).await.ok()?;
    let m = repo.load_manifest(&id).await.ok()?;
    let kmdr_core::SourceInfo::EtcdSnapshot(info) = &m.source else { return None };
    let p = kmdr_kube::identity::pair(repo, info.needs.as_ref()).await.ok()?;
    p.broken().then(|| format!("etcd backup {id}: {}", p.line()))
}

/// Run a whole drill; the report is also stored in the repository.
pub async fn drill(plan: &Plan, repo: &Repository, notify: Notify<'_>) -> Result<DrillReport, DrillError> {
    preflight(plan)?;
    let started_at = Utc::now();
    let mut t = Timeline { steps: Vec::new() };
    let mut runs: Vec<LayerRun> = Vec::new();

    // 1-2. Inventory every unit, then back up the layer as `kmdr backup --plan` does.
    let tags = BTreeMap::from([("drill".to_string(), started_at.to_rfc3339())]);
    for spec in &plan.layers {
        let mut run = LayerRun { units: Vec::new(), healthy_at: None, problems: Vec::new() };
        let mut conns = unit::Connections::default();
        let (live, failed) = exec::live_units(spec, &mut conns).await;
        let mut units = live.clone();
        for o in failed {
            run.problems.push(o.error.map(|e| e.message).unwrap_or_default());
        }
        // Every tenant a datastore holds, backed up or not: an unprotected tenant shows in the compare.
        for d in unit::datastores(spec) {
            if let Ok(present) = unit::present_units(d).await {
                let known: Vec<String> = units.iter().map(Unit::name).collect();
                units.extend(present.into_iter().filter(|u| !known.contains(&u.name())));
            }
        }
        for u in units.iter().filter(|u| u.has_inventory()) {
            let name = u.name();
            match t.step(spec.layer, "inventory", &name, notify, u.inventory()).await {
                Ok(before) => run.units.push(Drilled::new(u.clone(), before.unwrap_or_default())),
                Err(e) => run.problems.push(format!("cannot read {name}: {e}")),
            }
        }
        for o in exec::backup_units(repo, spec, live, &tags, &mut conns, notify).await {
            t.record(spec.layer, "backup", &o.unit, o.began, o.finished, o.error.as_ref().map(|e| e.message.as_str()));
            match (&o.error, run.units.iter_mut().find(|u| u.name == o.unit)) {
                (Some(e), _) => run.problems.push(format!("the backup of {} failed: {e}", o.unit)),
                (None, Some(u)) => u.backup = o.backup.clone().zip(o.started_at),
                // Volumes: backed up (their RPO counts), not inventoried.
                (None, None) => {
                    if let Some(u) = units.iter().find(|u| u.name() == o.unit) {
                        let mut d = Drilled::new(u.clone(), KeyDigests::default());
                        d.backup = o.backup.clone().zip(o.started_at);
                        run.units.push(d);
                    }
                }
            }
        }
        if let Some(problem) = pairing_problem(repo, &run).await {
            run.problems.push(problem);
        }
        runs.push(run);
    }

    // 3. The failure, top layer first.
    let failure_at = Utc::now();
    for (spec, run) in plan.layers.iter().zip(runs.iter_mut()).rev() {
        if !drilled(spec) {
            continue;
        }
        let mut custom = false;
        for step in plan.steps(spec.layer, Phase::Failure) {
            custom = true;
            if let Err(e) = t.step(spec.layer, "failure", &step.name, notify, steps::run_once(step)).await {
                run.problems.push(format!("the failure step failed: {e}"));
            }
        }
        if !custom {
            for d in run.units.iter().filter(|d| d.unit.can_wipe()) {
                if let Err(e) = t.step(spec.layer, "failure", &format!("wipe {}", d.name), notify, d.unit.wipe()).await
                {
                    run.problems.push(format!("the built-in wipe of {} failed: {e}", d.name));
                }
            }
        }
    }

    // 4-5. Recover in layer order, each through its health gate, then compare.
    let mut stopped = false;
    for (spec, run) in plan.layers.iter().zip(runs.iter_mut()) {
        if !drilled(spec) {
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
        let ours: BTreeMap<String, String> =
            run.units.iter().filter_map(|u| u.backup.as_ref().map(|(id, _)| (u.name.clone(), id.clone()))).collect();
        let force = RestoreOptions { force: true, dry_run: false };
        match exec::restore_units(repo, spec, Choice::Exact(&ours), force, notify).await {
            Ok(outcomes) => {
                for o in outcomes {
                    let error = o.error.as_ref().map(|e| e.message.as_str());
                    t.record(layer, "restore", &o.unit, o.began, o.finished, error);
                    if let Some(e) = o.error {
                        run.problems.push(format!("the restore of {} failed: {e}", o.unit));
                        ok = false;
                    }
                }
            }
            Err(e) => {
                run.problems.push(format!("the repository failed during the restore: {e}"));
                ok = false;
            }
        }
        if ours.is_empty() {
            run.problems.push("no backup to restore".into());
            ok = false;
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
        for d in &run.units {
            // etcd was just started again: its read waits for it, up to the RTO target.
            let (kind, name) = if matches!(d.unit, Unit::Etcd(..)) {
                ("health", "etcd answers")
            } else {
                ("compare", d.name.as_str())
            };
            // Volumes: the restore waited for the tool (PVCs Bound, Restore Completed).
            let after = t.step(layer, kind, name, notify, d.unit.read_back(spec.rto)).await;
            read_back.push(after.map(Option::unwrap_or_default));
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
        let targets_only = !drilled(spec);
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
                if u.backup.is_none() {
                    "; the plan does not back this tenant up: add it to the datastore's `tenants:`"
                } else {
                    ""
                }
            ));
        }
        if let Some(r) = rto_s.filter(|r| *r > spec.rto.as_secs_f64()) {
            problems.push(format!("RTO {r:.1}s is over the target of {}s", spec.rto.as_secs()));
        }
        if let Some(r) = rpo_s.filter(|r| *r > spec.rpo.as_secs_f64()) {
            problems.push(format!("RPO {r:.1}s is over the target of {}s", spec.rpo.as_secs()));
        }
        let verdict = if targets_only {
            problems.push(match spec.layer {
                Layer::Platform => "this plan names no source for this layer: add `helm:` (the platform's release) to drill it".into(),
                Layer::PersistentData => "this plan names no source for this layer: add `volumes:` (the volume backup tool's entries) to drill it".into(),
                _ => "this plan names no source for this layer: only its targets are in the plan".into(),
            });
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
