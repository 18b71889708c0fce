//! On a repository under S3 Object Lock, `kmdr serve` keeps what the
//! repository still needs retained: an extend-locks pass
//! (`kmdr_repo::object_lock::extend`) at start and then once a day, or every
//! quarter retention period when that is shorter. A pass extends only what
//! is within half the period of its date, so with this schedule nothing
//! needed gets closer than a quarter period to lapsing.
//!
//! It runs only on the replica that leads (it is one of the scheduler's
//! tasks). Extending needs `s3:PutObjectRetention`, which the agent's
//! documented policy leaves out: with that policy a pass that finds work
//! fails, says so in the log, and counts in
//! `kmdr_object_lock_extend_failures_total`; the admin side then runs
//! `kmdr repo extend-locks` (design.md, section 9, "Object Lock").

use crate::metrics::Metrics;
use crate::stop::sleep_or_stop;
use kmdr_repo::Repository;
use kmdr_repo::object_lock::{ObjectLockConfig, extend::extend_locks};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often serve runs a pass: daily, or a quarter of the period if shorter.
pub fn period(c: ObjectLockConfig) -> Duration {
    let quarter = c.retention().to_std().unwrap_or_default() / 4;
    quarter.clamp(Duration::from_secs(60), Duration::from_secs(86400))
}

/// Run passes until `stop`; returns at once on a repository without Object Lock.
pub(crate) async fn keep_locks(repo: Repository, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    let Some(lock) = kmdr_repo::object_lock::locked(&repo) else { return };
    let every = period(lock.config);
    let next = kmdr_core::human_duration(every);
    metrics.update_locks(|_| {});
    loop {
        match extend_locks(&repo, false, &|_| {}).await {
            Ok(r) => {
                tracing::info!(
                    "object lock: extended the retention of {} of {} needed objects to {}{}; next pass in {next}",
                    r.extended.len(),
                    r.checked,
                    r.until.format("%Y-%m-%dT%H:%M:%SZ"),
                    if r.lapsed > 0 { format!(" ({} had lapsed)", r.lapsed) } else { String::new() }
                );
                metrics.update_locks(|l| {
                    l.last_pass = Some(chrono::Utc::now());
                    l.extended += r.extended.len() as u64;
                });
            }
            Err(e) => {
                tracing::warn!("object lock: extending retention failed, trying again in {next}: {e}");
                metrics.update_locks(|l| l.failures += 1);
            }
        }
        if sleep_or_stop(&mut stop, every).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmdr_store::LockMode;

    #[test]
    fn daily_or_a_quarter_period() {
        let c = |days| ObjectLockConfig { mode: LockMode::Compliance, retention_days: days };
        assert_eq!(period(c(30)), Duration::from_secs(86400));
        assert_eq!(period(c(2)), Duration::from_secs(43200));
    }
}
