//! Restore proofs on a schedule (`kmdr serve --verify-every`): every period,
//! each etcd and tenant unit's newest full backup is restored into a scratch
//! server and checked ([`kmdr_plan::prove`]) unless it is proven already; the
//! proof is sealed in the repository and the unit's metrics follow
//! (`kmdr_verified_restore_timestamp_seconds`, `kmdr_restorable_rpo_seconds`,
//! `kmdr_verify_failures_total`). One test restore runs at a time across all
//! units, and never holds a backup's permit.

use crate::scheduler::{Ctx, Scheduled, sleep_or_stop};
use kmdr_core::BackupId;
use kmdr_plan::Unit;
use kmdr_plan::prove::prove;
use kmdr_repo::Repository;
use kmdr_repo::proofs::Outcome;
use std::sync::Arc;
use std::time::Duration;

/// Whether kmdr can test-restore the unit's backups.
pub(crate) fn provable(unit: &Unit) -> bool {
    matches!(unit, Unit::Etcd(_) | Unit::Tenant { .. })
}

/// The unit's backups, newest first.
async fn backups_of(repo: &Repository, unit: &Unit) -> Result<Vec<BackupId>, kmdr_repo::Error> {
    let mut out = Vec::new();
    for id in repo.list_backups().await?.into_iter().rev().filter(|i| i.kind() == unit.kind()) {
        if unit.owns(&repo.load_manifest(&id).await?) {
            out.push(id);
        }
    }
    Ok(out)
}

/// Every `every`: show what is proven already, then prove the newest backup
/// if it is not.
pub(crate) async fn prove_newest(ctx: Arc<Ctx>, unit: Arc<Scheduled>, every: Duration) {
    let mut stop = ctx.stop.clone();
    loop {
        if sleep_or_stop(&mut stop, every).await {
            return;
        }
        let (backups, proofs) = match (backups_of(&ctx.repo, &unit.unit).await, ctx.repo.latest_proofs().await) {
            (Ok(b), Ok(p)) => (b, p),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("{}: cannot read the backups to prove, trying again in {every:?}: {e}", unit.name);
                continue;
            }
        };
        let restorable =
            backups.iter().find(|id| proofs.get(&id.to_string()).is_some_and(|p| p.outcome == Outcome::Restorable));
        if let Some(id) = restorable {
            let at = proofs[&id.to_string()].checked_at;
            ctx.metrics.update(&unit.name, |s| {
                s.verified_restore = Some(at);
                s.restorable_point = Some(id.time());
            });
        }
        let Some(newest) = backups.first() else { continue };
        if proofs.contains_key(&newest.to_string()) {
            continue;
        }
        let Ok(_permit) = ctx.verify_permits.acquire().await else { return };
        if *ctx.stop.borrow() {
            return;
        }
        tracing::info!("{}: proving backup {newest} restorable", unit.name);
        match prove(&ctx.repo, newest, &ctx.opts.prove).await {
            Ok(p) if p.outcome == Outcome::Restorable => {
                tracing::info!("{}: backup {newest} is restorable ({} ms)", unit.name, p.duration_ms);
                ctx.metrics.update(&unit.name, |s| {
                    s.verified_restore = Some(p.checked_at);
                    s.restorable_point = Some(newest.time());
                });
            }
            Ok(p) => {
                let why = p.reason.unwrap_or_else(|| p.outcome.as_str().into());
                tracing::error!("{}: backup {newest} is {}: {why}", unit.name, p.outcome.as_str());
                ctx.metrics.update(&unit.name, |s| s.verify_failures += 1);
            }
            Err(e) => {
                tracing::warn!("{}: the test restore of {newest} could not run: {e}", unit.name);
                ctx.metrics.update(&unit.name, |s| s.verify_failures += 1);
            }
        }
    }
}
