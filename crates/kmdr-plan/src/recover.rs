//! Recovery by plan: `kmdr restore --plan`. Layers go in recovery order
//! (under-cluster, platform, tenant control planes, persistent data), each
//! through its before-restore steps, the restore of its units, its
//! after-restore steps and its health gate; a layer that does not recover
//! stops the recovery, because the layers above stand on it.

use crate::exec::{self, Choice, Notify, UnitOutcome};
use crate::plan::{LayerSource, Phase, Plan};
use crate::unit::{RestoreOptions, UnitError};
use kmdr_core::{Classify, ErrorClass, Layer};
use kmdr_repo::Repository;
use serde::Serialize;
use std::time::{Duration, Instant};

/// What happened to one layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerRecovery {
    pub layer: Layer,
    /// Its units, in plan order (empty for a layer kmdr does not restore).
    pub units: Vec<UnitOutcome>,
    /// Why kmdr restored nothing of it, and what to do instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// From its first step to its health gate passing (not on a dry run).
    #[serde(skip)]
    pub healthy_after: Option<Duration>,
}

/// Why a recovery stopped at a layer. Later layers were not restored.
#[derive(Debug, Clone, thiserror::Error)]
#[error("layer {layer} {what}; later layers were not restored")]
pub struct Stopped {
    pub layer: Layer,
    pub class: ErrorClass,
    what: String,
}

impl Classify for Stopped {
    fn class(&self) -> ErrorClass {
        self.class
    }
}

/// Restore the plan's layers (`only` one of them, or all) from their newest
/// backups. Returns every layer dealt with; the error says where it stopped.
pub async fn recover(
    plan: &Plan,
    repo: &Repository,
    only: Option<Layer>,
    opts: RestoreOptions,
    notify: Notify<'_>,
) -> (Vec<LayerRecovery>, Option<Stopped>) {
    let mut done = Vec::new();
    for spec in plan.layers.iter().filter(|s| only.is_none_or(|l| s.layer == l)) {
        let layer = spec.layer;
        let mut rec = LayerRecovery { layer, units: Vec::new(), note: None, healthy_after: None };
        if let LayerSource::Targets = &spec.source {
            notify(&format!("{layer}: this plan names no source for it (targets only); its run steps are yours"));
            continue;
        }
        let started = Instant::now();
        if !opts.dry_run
            && let Err(e) = exec::run_phase(plan, spec, Phase::BeforeRestore, notify).await
        {
            let e = UnitError::from(e);
            done.push(rec);
            return (done, Some(stopped(layer, &e, "stopped in its before-restore steps")));
        }
        rec.units = match exec::restore_units(repo, spec, Choice::Latest, opts, notify).await {
            Ok(u) => u,
            Err(e) => {
                done.push(rec);
                return (done, Some(stopped(layer, &UnitError::from(e), "could not be restored")));
            }
        };
        let failed: Vec<&UnitOutcome> = rec.units.iter().filter(|u| u.error.is_some()).collect();
        if let Some(first) = failed.first().and_then(|u| u.error.clone()) {
            let list: Vec<String> =
                failed.iter().map(|u| format!("{}: {}", u.unit, u.error.as_ref().expect("filtered"))).collect();
            let s = Stopped { layer, class: first.class, what: format!("did not recover ({})", list.join("; ")) };
            done.push(rec);
            return (done, Some(s));
        }
        if !opts.dry_run {
            for phase in [Phase::AfterRestore, Phase::HealthCheck] {
                if let Err(e) = exec::run_phase(plan, spec, phase, notify).await {
                    let e = UnitError::from(e);
                    let what = format!("did not pass its {} steps", exec::phase_name(phase));
                    done.push(rec);
                    return (done, Some(stopped(layer, &e, &what)));
                }
            }
            rec.healthy_after = Some(started.elapsed());
            notify(&format!("{layer}: healthy after {}", kmdr_core::human_duration(started.elapsed())));
        }
        done.push(rec);
    }
    (done, None)
}

fn stopped(layer: Layer, e: &UnitError, what: &str) -> Stopped {
    Stopped { layer, class: e.class, what: format!("{what}: {e}") }
}
