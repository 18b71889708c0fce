//! One Kubernetes Lease (`coordination.k8s.io/v1`) taken and renewed, the
//! building block of coordinator.rs: a leader and standbys on one Lease, or
//! replicas dividing the units over one Lease per shard.
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
//! - The holder renews every `renew_every` (a third of the duration). When it
//!   has not renewed for `renew_deadline` (two thirds of the duration), or a
//!   renewal finds another holder, it stops the Lease's work before anyone
//!   else may take over (coordinator.rs).
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
    /// Labels of the Lease when this replica creates it (how the member
    /// Leases of sharded replicas are listed; see coordinator.rs).
    pub labels: std::collections::BTreeMap<String, String>,
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

/// What a candidate saw of a Lease.
#[derive(Debug, Clone)]
pub enum Seen {
    /// No such Lease: the first to create it holds it.
    Absent,
    /// This replica holds it (the Lease as read, to renew).
    Mine(Value),
    /// Released (no holder), or its holder's record stood still for the
    /// whole duration by this replica's clock: anyone may take it.
    Free(Value),
    /// Another replica holds it and renewed it within its duration.
    Other { holder: String },
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

    /// Read the Lease and say who may hold it now, by this replica's clock.
    pub async fn look(&mut self) -> Result<Seen, KubeError> {
        let c = &self.config;
        let Some(lease) = self.kube.get_object(&LEASE, Some(&c.namespace), &c.name).await? else {
            return Ok(Seen::Absent);
        };
        let spec = &lease["spec"];
        let holder = spec["holderIdentity"].as_str().unwrap_or("").to_string();
        if holder == c.identity {
            return Ok(Seen::Mine(lease));
        }
        if holder.is_empty() {
            return Ok(Seen::Free(lease));
        }
        // Someone else's: expired only once its record stood still for a whole duration, by our clock.
        let duration = spec["leaseDurationSeconds"].as_u64().map(Duration::from_secs).unwrap_or(c.duration);
        let record = format!("{holder}@{}", spec["renewTime"].as_str().unwrap_or(""));
        match &self.observed {
            Some((r, at)) if *r == record && at.elapsed() >= duration => Ok(Seen::Free(lease)),
            Some((r, _)) if *r == record => Ok(Seen::Other { holder }),
            _ => {
                self.observed = Some((record, Instant::now()));
                Ok(Seen::Other { holder })
            }
        }
    }

    /// Hold the Lease as `look` saw it (renew it when [`Seen::Mine`], take it
    /// when absent or free): true when this replica holds it now. A
    /// concurrent writer wins with 409 and this returns false.
    pub async fn take(&mut self, seen: Seen) -> Result<bool, KubeError> {
        let mut lease = match seen {
            Seen::Other { .. } => return Ok(false),
            Seen::Absent => {
                let c = &self.config;
                let mut metadata = json!({"name": c.name, "namespace": c.namespace});
                if !c.labels.is_empty() {
                    metadata["labels"] = json!(c.labels);
                }
                let object = json!({
                    "apiVersion": LEASE.api_version,
                    "kind": LEASE.kind,
                    "metadata": metadata,
                    "spec": self.spec(None, 0),
                });
                return self.kube.create_if_absent(&LEASE, &object).await;
            }
            Seen::Mine(lease) | Seen::Free(lease) => lease,
        };
        let spec = &lease["spec"];
        let transitions = spec["leaseTransitions"].as_i64().unwrap_or(0);
        let (acquire, transitions) = match spec["holderIdentity"].as_str() == Some(self.config.identity.as_str()) {
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

    /// Take or renew the Lease: true when this replica holds it now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, KubeError> {
        let seen = self.look().await?;
        self.take(seen).await
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
