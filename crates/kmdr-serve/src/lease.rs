//! Leader election with a Kubernetes Lease (`coordination.k8s.io/v1`), so
//! that two or more `kmdr serve` replicas run as one leader and standbys.
//!
//! The protocol is client-go's `leaderelection` with a `LeaseLock`, written
//! here in about 150 lines rather than taken from a crate (the candidates
//! wrap their own kube client versions; see docs/design.md, section 17):
//!
//! - A candidate reads the Lease. Absent: it creates it as its holder (a
//!   concurrent create loses with 409). Held by another: it waits until the
//!   record (holder, renewTime) has not changed for `leaseDurationSeconds`
//!   *as measured by its own monotonic clock* since it first saw that record,
//!   so clock skew between nodes does not matter; then it takes the Lease
//!   with a PUT carrying the resourceVersion it read (a concurrent taker loses
//!   with 409), counting a transition.
//! - The leader renews every `renew_every` (a third of the duration). When it
//!   has not renewed for `renew_deadline` (two thirds of the duration), or a
//!   renewal finds another holder, it stops all work before anyone else may
//!   take over, and stands by again.
//! - On SIGTERM the leader releases the Lease (empty holder, duration 1 s)
//!   so that a standby takes over at once.
//!
//! All state is in the repository, so a new leader starts exactly as a
//! restarted replica does: from the newest full backups and segments.

use chrono::{DateTime, SecondsFormat, Utc};
use kmdr_kube::client::{KubeClient, KubeError, LEASE};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Who takes which Lease, and how long it lasts.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica (the pod name in a Deployment).
    pub identity: String,
    /// `leaseDurationSeconds`: how long a standby waits for a silent leader.
    pub duration: Duration,
}

impl LeaseConfig {
    /// Renew this often.
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    /// Stop working when the last renewal is this old.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }
}

/// A candidate for the Lease.
pub struct LeaseLock {
    kube: KubeClient,
    pub config: LeaseConfig,
    /// The other holder's record as last seen, and when it was first seen.
    observed: Option<(String, Instant)>,
}

fn micro_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl LeaseLock {
    pub fn new(kube: KubeClient, config: LeaseConfig) -> Self {
        LeaseLock { kube, config, observed: None }
    }

    /// The Lease's namespace/name, for messages.
    pub fn describe(&self) -> String {
        format!("Lease {}/{}", self.config.namespace, self.config.name)
    }

    fn spec(&self, acquire: Option<String>, transitions: i64) -> Value {
        let now = micro_time(Utc::now());
        let mut spec = json!({
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": self.config.duration.as_secs().max(1),
            "renewTime": now,
            "leaseTransitions": transitions,
        });
        spec["acquireTime"] = json!(acquire.unwrap_or(now));
        spec
    }

    /// Take or renew the Lease: true when this replica holds it now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, KubeError> {
        let c = &self.config;
        let Some(mut lease) = self.kube.get_object(&LEASE, Some(&c.namespace), &c.name).await? else {
            let object = json!({
                "apiVersion": LEASE.api_version,
                "kind": LEASE.kind,
                "metadata": {"name": c.name, "namespace": c.namespace},
                "spec": self.spec(None, 0),
            });
            return self.kube.create_if_absent(&LEASE, &object).await;
        };
        let spec = lease.get("spec").cloned().unwrap_or_default();
        let holder = spec["holderIdentity"].as_str().unwrap_or("").to_string();
        let transitions = spec["leaseTransitions"].as_i64().unwrap_or(0);
        if holder != c.identity && !holder.is_empty() {
            // Someone else's: expired only once its record stood still for a whole duration, by our clock.
            let duration = spec["leaseDurationSeconds"].as_u64().map(Duration::from_secs).unwrap_or(c.duration);
            let record = format!("{holder}@{}", spec["renewTime"].as_str().unwrap_or(""));
            let since = match &self.observed {
                Some((r, at)) if *r == record => *at,
                _ => {
                    self.observed = Some((record, Instant::now()));
                    return Ok(false);
                }
            };
            if since.elapsed() < duration {
                return Ok(false);
            }
        }
        let (acquire, transitions) = match holder == c.identity {
            true => (spec["acquireTime"].as_str().map(str::to_string), transitions),
            false => (None, transitions + 1),
        };
        lease["spec"] = self.spec(acquire, transitions);
        let held = self.kube.replace_object(&LEASE, &lease).await?.is_some();
        if held {
            self.observed = None;
        }
        Ok(held)
    }

    /// Give the Lease up if this replica holds it, so a standby takes over at once.
    pub async fn release(&mut self) -> Result<(), KubeError> {
        let c = &self.config;
        let Some(mut lease) = self.kube.get_object(&LEASE, Some(&c.namespace), &c.name).await? else { return Ok(()) };
        if lease["spec"]["holderIdentity"].as_str() != Some(c.identity.as_str()) {
            return Ok(());
        }
        lease["spec"]["holderIdentity"] = json!("");
        lease["spec"]["leaseDurationSeconds"] = json!(1);
        lease["spec"]["renewTime"] = json!(micro_time(Utc::now()));
        self.kube.replace_object(&LEASE, &lease).await.map(|_| ())
    }
}

/// Why leading ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadEnd {
    /// Asked to stop (SIGTERM).
    Stopped,
    /// Another replica holds the Lease, or renewals failed past the deadline.
    Lost,
}

/// While leading: renew every `renew_every`; returns when the Lease is lost
/// (after setting `lost` to true) or when `stop` turns true.
pub async fn keep_renewing(
    lock: &mut LeaseLock,
    lost: &tokio::sync::watch::Sender<bool>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> LeadEnd {
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(lock.config.renew_every()) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return LeadEnd::Stopped;
        }
        match tokio::time::timeout(lock.config.renew_every(), lock.try_acquire_or_renew()).await {
            Ok(Ok(true)) => last_ok = Instant::now(),
            Ok(Ok(false)) => {
                tracing::warn!("{} is held by another replica now: stopping all work and standing by", lock.describe());
                let _ = lost.send(true);
                return LeadEnd::Lost;
            }
            Ok(Err(e)) => tracing::warn!("renewing {} failed: {e}", lock.describe()),
            Err(_) => tracing::warn!("renewing {} timed out", lock.describe()),
        }
        if last_ok.elapsed() >= lock.config.renew_deadline() {
            tracing::warn!(
                "{} not renewed for {:?}: stopping all work before another replica may take over, then standing by",
                lock.describe(),
                last_ok.elapsed()
            );
            let _ = lost.send(true);
            return LeadEnd::Lost;
        }
    }
}
