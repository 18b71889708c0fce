//! Restore proofs on a schedule (`kmdr serve --verify-every`): every period,
//! each etcd and tenant unit's newest full backup is restored into a scratch
//! server and checked ([`kmdr_plan::prove`]) unless it is proven already; the
//! proof is sealed in the repository and the unit's metrics follow
//! (`kmdr_verified_restore_timestamp_seconds`, `kmdr_restorable_rpo_seconds`,
//! `kmdr_verify_failures_total`). One test restore runs at a time across all
//! units, and never holds a backup's permit.

use crate::metrics::Metrics;
use crate::stop::sleep_or_stop;
use kmdr_core::BackupId;
use kmdr_plan::Unit;
use kmdr_plan::prove::{PROVABLE_KINDS, ProveOptions, prove};
use kmdr_repo::Repository;
use kmdr_repo::proofs::{Outcome, Proof};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// What the test-restore tasks of all units share.
pub(crate) struct Verifier {
    pub(crate) repo: Repository,
    pub(crate) metrics: Arc<Metrics>,
    /// One test restore at a time, outside the backups' permits.
    pub(crate) permits: Semaphore,
    pub(crate) prove: ProveOptions,
    pub(crate) every: Duration,
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

/// The unit's newest backup and whether it has a proof, and its newest backup
/// proven restorable (with that proof). Reads backups newest first and stops
/// at the first restorable one: only the manifests and proofs of backups
/// newer than it are opened.
async fn newest_and_proven(
    repo: &Repository,
    unit: &Unit,
) -> Result<(Option<(BackupId, bool)>, Option<(BackupId, Proof)>), kmdr_repo::Error> {
    let mut newest = None;
    for id in repo.list_backups().await?.into_iter().rev().filter(|i| i.kind() == unit.kind()) {
        if !unit.owns(&repo.load_manifest(&id).await?) {
            continue;
        }
        let proof = newest_proof(repo, &id).await?;
        if newest.is_none() {
            newest = Some((id.clone(), proof.is_some()));
        }
        if let Some(p) = proof.filter(|p| p.outcome == Outcome::Restorable) {
            return Ok((newest, Some((id, p))));
        }
    }
    Ok((newest, None))
}

/// Every `every`: show what is proven already, then prove the newest backup
/// if it is not.
pub(crate) async fn prove_newest(ctx: Arc<Verifier>, name: String, unit: Unit, mut stop: watch::Receiver<bool>) {
    let every = ctx.every;
    loop {
        if sleep_or_stop(&mut stop, every).await {
            return;
        }
        let (newest, proven) = match newest_and_proven(&ctx.repo, &unit).await {
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
        let Some((newest, false)) = newest else { continue };
        let Ok(_permit) = ctx.permits.acquire().await else { return };
        if *stop.borrow() {
            return;
        }
        tracing::info!("{}: proving backup {newest} restorable", name);
        match prove(&ctx.repo, &newest, &ctx.prove).await {
            Ok(p) if p.outcome == Outcome::Restorable => {
                tracing::info!("{}: backup {newest} is restorable ({} ms)", name, p.duration_ms);
                ctx.metrics.update(&name, |s| {
                    s.verified_restore = Some(p.checked_at);
                    s.restorable_point = Some(newest.time());
                });
            }
            Ok(p) => {
                let why = p.reason.unwrap_or_else(|| p.outcome.as_str().into());
                tracing::error!("{}: backup {newest} is {}: {why}", name, p.outcome.as_str());
                ctx.metrics.update(&name, |s| s.verify_failures += 1);
            }
            Err(e) => {
                tracing::warn!("{}: the test restore of {newest} could not run: {e}", name);
                ctx.metrics.update(&name, |s| s.verify_failures += 1);
            }
        }
    }
}
