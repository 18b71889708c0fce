//! `kmdr serve`: the long-running service of continuous protection.
//!
//! Kept apart from the request/response code of the other commands (as
//! kube-rs keeps `kube-runtime` apart from `kube-client`):
//!
//! - [`scheduler`]: one task per unit (the under-cluster's etcd, each tenant,
//!   the platform release) taking full backups to meet the layer's RPO, with
//!   retries and backoff; one delta capture per etcd-backed unit; retention.
//!   No state outside the repository: on start every task reads where it is
//!   from the repository's listings (catalog.rs: each unit's newest full
//!   backup, found as a restore finds it).
//! - [`metrics`]: what the tasks report, rendered in Prometheus' text format.
//! - [`http`]: `/` (the status page, [`status_page`]), `/metrics`,
//!   `/healthz`, `/readyz`; the page's last drill is read from the
//!   repository by [`drills`].
//! - restore proofs on the plan's `verify:` schedule (verifier.rs), run on a
//!   worker thread at a lower priority (niced.rs).
//! - [`lock_keeper`]: on a repository under S3 Object Lock, the scheduled
//!   extend-locks pass that keeps what is still needed retained.
//! - [`compactor`]: when the changes after a unit's newest full backup pass
//!   a threshold, a new full backup synthesised from it and its delta
//!   segments (compaction), so that restores to now stay bounded.
//! - [`lease`]: leader election with a Kubernetes Lease, for running more
//!   than one replica; [`serve_leading`] runs the scheduler only while leading.

mod catalog;
pub mod compactor;
pub mod drills;
pub mod http;
pub mod lease;
pub mod lock_keeper;
pub mod metrics;
mod niced;
mod pending;
mod scheduled;
pub mod scheduler;
pub mod status_page;
mod stop;
mod verifier;

pub use compactor::CompactOptions;
pub use metrics::Metrics;
pub use scheduler::{ServeError, ServeOptions, serve};

use lease::{LeadEnd, LeaseLock, keep_renewing};
use std::sync::Arc;
use tokio::sync::watch;

/// [`serve`] behind a Lease: stand by until this replica holds it, run the
/// units while it does, stop them when it is lost (and stand by again),
/// release it on `stop`.
pub async fn serve_leading(
    repo: kmdr_repo::Repository,
    plan: kmdr_plan::Plan,
    opts: ServeOptions,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    mut lock: LeaseLock,
) -> Result<(), ServeError> {
    loop {
        // A replica that led and lost the Lease forgets its units: the leader reports them now.
        metrics.stand_by();
        // A standby is ready: it does what it should (waits), and a rollout must not wait for it.
        metrics.set_not_ready(None);
        tracing::info!("standing by: waiting to hold {} as {}", lock.describe(), lock.config.identity);
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            match lock.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!("cannot take {}: {e}", lock.describe()),
            }
            tokio::select! {
                _ = tokio::time::sleep(lock.config.renew_every()) => {}
                _ = stop.changed() => {}
            }
        }
        tracing::info!("this replica ({}) holds {}: running the units", lock.config.identity, lock.describe());
        metrics.set_leader(true);
        metrics.set_not_ready(Some("starting".into()));
        let (work_tx, work_rx) = watch::channel(false);
        let end = {
            let mut stop2 = stop.clone();
            let renew = async {
                let end = keep_renewing(&mut lock, &work_tx, &mut stop2).await;
                let _ = work_tx.send(true);
                end
            };
            let work = serve(repo.clone(), plan.clone(), opts.clone(), metrics.clone(), work_rx);
            tokio::pin!(renew, work);
            tokio::select! {
                end = &mut renew => {
                    work.await?;
                    end
                }
                served = &mut work => {
                    served?;
                    renew.await
                }
            }
        };
        if end == LeadEnd::Stopped {
            if let Err(e) = lock.release().await {
                tracing::warn!("releasing {} failed (a standby takes over once it expires): {e}", lock.describe());
            }
            return Ok(());
        }
    }
}
