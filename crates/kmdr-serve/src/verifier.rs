//! Restore proofs on a schedule (the plan's `verify:` block, or `kmdr serve
//! --verify-every`): every period, each unit's newest backups that have no
//! proof yet (up to `sample` of them, newest first) are test-restored and
//! checked ([`kmdr_plan::prove`]); the proofs are sealed in the repository
//! and the unit's metrics follow (`kmdr_verified_restore_timestamp_seconds`,
//! `kmdr_restorable_rpo_seconds`, `kmdr_verify_failures_total`).
//!
//! The budget: at most `concurrency` test restores at once across all
//! units, never holding a backup's permit, all on one worker thread at
//! niceness `nice` ([`crate::niced`]) whose scratch servers and restore
//! tools inherit it, so that a backup that starts meanwhile gets the CPU first.

use crate::metrics::Metrics;
use crate::niced::Niced;
use crate::stop::sleep_or_stop;
use kmdr_core::BackupId;
use kmdr_plan::prove::{PROVABLE_KINDS, ProveOptions, prove};
use kmdr_plan::{Unit, VerifySpec};
use kmdr_repo::Repository;
use kmdr_repo::proofs::{Outcome, Proof};
use std::sync::Arc;
use tokio::sync::{Semaphore, watch};

/// What the test-restore tasks of all units share.
pub(crate) struct Verifier {
    pub(crate) repo: Repository,
    pub(crate) metrics: Arc<Metrics>,
    /// `concurrency` test restores at once, outside the backups' permits.
    pub(crate) permits: Semaphore,
    pub(crate) prove: ProveOptions,
    pub(crate) spec: VerifySpec,
    /// The thread the test restores run on, at the spec's niceness.
    pub(crate) worker: Niced,
}

impl Verifier {
    pub(crate) fn new(
        repo: Repository,
        metrics: Arc<Metrics>,
        prove: ProveOptions,
        spec: VerifySpec,
    ) -> std::io::Result<Verifier> {
        Ok(Verifier {
            repo,
            metrics,
            permits: Semaphore::new(spec.concurrency.max(1)),
            prove,
            worker: Niced::start("kmdr-verify", spec.nice)?,
            spec,
        })
    }
}

/// Whether kmdr can test-restore the unit's backups.
pub(crate) fn provable(unit: &Unit) -> bool {
    PROVABLE_KINDS.contains(&unit.kind())
}

/// The newest proof of one backup.
async fn newest_proof(repo: &Repository, id: &BackupId) -> Result<Option<Proof>, kmdr_repo::Error> {
    match repo.list_proofs(Some(id)).await?.last() {
        Some(key) => Ok(Some(repo.get_proof(key).await?)),
        None => Ok(None),
    }
}

/// What a period finds of a unit: up to `sample` of its newest backups that
/// have no proof (newest first), and its newest backup proven restorable
/// (with that proof). Reads backups newest first and stops at the first
/// restorable one: only the manifests and proofs of backups newer than it
/// are opened, and older backups are not proven again.
async fn unproven_and_proven(
    repo: &Repository,
    unit: &Unit,
    sample: usize,
) -> Result<(Vec<BackupId>, Option<(BackupId, Proof)>), kmdr_repo::Error> {
    let mut unproven = Vec::new();
    for id in repo.list_backups().await?.into_iter().rev().filter(|i| i.kind() == unit.kind()) {
        if !unit.owns(&repo.load_manifest(&id).await?) {
            continue;
        }
        match newest_proof(repo, &id).await? {
            Some(p) if p.outcome == Outcome::Restorable => return Ok((unproven, Some((id, p)))),
            Some(_) => {}
            None if unproven.len() < sample => unproven.push(id),
            None => {}
        }
    }
    Ok((unproven, None))
}

/// The options of one unit's test restores: a volume entry's own cluster.
fn options_for(base: &ProveOptions, unit: &Unit) -> ProveOptions {
    let mut o = base.clone();
    if let Unit::Volume(v) = unit {
        o.kube = kmdr_plan::unit::volume_target(v);
    }
    o
}

/// Every period: show what is proven already, then prove what is not.
pub(crate) async fn prove_newest(ctx: Arc<Verifier>, name: String, unit: Unit, mut stop: watch::Receiver<bool>) {
    let every = ctx.spec.every;
    let opts = options_for(&ctx.prove, &unit);
    loop {
        if sleep_or_stop(&mut stop, every).await {
            return;
        }
        let (unproven, proven) = match unproven_and_proven(&ctx.repo, &unit, ctx.spec.sample).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!("{}: cannot read the backups to prove, trying again in {every:?}: {e}", name);
                continue;
            }
        };
        if let Some((id, p)) = proven {
            ctx.metrics.update(&name, |s| {
                s.verified_restore = Some(p.checked_at);
                s.restorable_point = Some(id.time());
            });
        }
        for id in unproven {
            let Ok(_permit) = ctx.permits.acquire().await else { return };
            if *stop.borrow() {
                return;
            }
            tracing::info!("{}: proving backup {id} restorable", name);
            let (repo, o, job_id) = (ctx.repo.clone(), opts.clone(), id.clone());
            let proved = ctx.worker.run(move || async move { prove(&repo, &job_id, &o).await }).await;
            match proved {
                Some(Ok(p)) if p.outcome == Outcome::Restorable => {
                    tracing::info!("{}: backup {id} is restorable ({} ms)", name, p.duration_ms);
                    ctx.metrics.update(&name, |s| {
                        if s.restorable_point.is_none_or(|t| t < id.time()) {
                            s.verified_restore = Some(p.checked_at);
                            s.restorable_point = Some(id.time());
                        }
                    });
                }
                Some(Ok(p)) if p.outcome == Outcome::NotChecked => {
                    tracing::warn!("{}: backup {id} was not checked: {}", name, p.reason.unwrap_or_default());
                }
                Some(Ok(p)) => {
                    let why = p.reason.unwrap_or_else(|| p.outcome.as_str().into());
                    tracing::error!("{}: backup {id} is {}: {why}", name, p.outcome.as_str());
                    ctx.metrics.update(&name, |s| s.verify_failures += 1);
                }
                Some(Err(e)) => {
                    tracing::warn!("{}: the test restore of {id} could not run: {e}", name);
                    ctx.metrics.update(&name, |s| s.verify_failures += 1);
                }
                None => {
                    tracing::error!("{}: the test-restore worker is gone; restore proofs stop", name);
                    return;
                }
            }
        }
    }
}
