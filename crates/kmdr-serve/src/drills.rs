//! The newest drill report, for the status page: read from the repository
//! (`reports/`, where `kmdr drill` keeps every report) when serve starts and
//! every [`EVERY`] after, so that a page view costs no listing of the store.

use crate::metrics::{DrillState, DrillSummary, Metrics};
use crate::stop::sleep_or_stop;
use kmdr_repo::Repository;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the reports are listed again: drills are quarterly, a few
/// minutes' delay in showing a new one is nothing.
pub const EVERY: Duration = Duration::from_secs(300);

/// Read the newest drill report into `metrics` now, then every [`EVERY`], until `stop`.
pub async fn watch_drills(repo: Repository, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    loop {
        let state = match kmdr_plan::review::last_drill(&repo).await {
            Ok(Some(r)) => DrillState::Found(DrillSummary::of(&r)),
            Ok(None) => DrillState::None,
            Err(e) => {
                tracing::warn!(
                    "cannot read the drill reports (the status page says so), trying again in {EVERY:?}: {e}"
                );
                DrillState::Unreadable(e.to_string())
            }
        };
        metrics.set_drill(state);
        if sleep_or_stop(&mut stop, EVERY).await {
            return;
        }
    }
}
