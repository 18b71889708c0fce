//! What the scheduler's tasks report, and its rendering in Prometheus' text
//! exposition format (written by hand: a dozen gauges and counters with two
//! labels need no client library).
//!
//! Every series is labelled `layer` and `unit` (`etcd`, `<datastore>/<schema>`,
//! `helm/<namespace>/<release>`). The current RPO of a unit is the age of the
//! newest point the repository holds for it: the start of its newest full
//! backup, or for a unit with delta capture the newest moment the capture
//! proved everything received durable.

use chrono::{DateTime, Utc};
use kmdr_core::Layer;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// The state of one unit.
#[derive(Debug, Clone, Default)]
pub struct UnitState {
    pub layer: Option<Layer>,
    pub rpo_target: Duration,
    /// Start of the newest full backup (what it protects).
    pub last_full: Option<DateTime<Utc>>,
    /// When the newest full backup finished.
    pub last_success: Option<DateTime<Utc>>,
    pub last_duration: Duration,
    pub last_bytes: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    /// Delta capture, when the unit has one.
    pub delta: Option<DeltaState>,
    /// When the newest backup proven restorable was proven (`--verify-every`).
    pub verified_restore: Option<DateTime<Utc>>,
    /// The start of that backup: what a restore of it gives back.
    pub restorable_point: Option<DateTime<Utc>>,
    /// Test restores that found a backup unrestorable, or could not run.
    pub verify_failures: u64,
}

/// A unit's delta capture.
#[derive(Debug, Clone, Default)]
pub struct DeltaState {
    /// Everything received before this is durable.
    pub protected_until: Option<DateTime<Utc>>,
    /// Received -> durable, of the newest segment.
    pub lag: Duration,
    pub segments: u64,
    pub bytes: u64,
    pub events: u64,
    pub revision: i64,
    pub failures: u64,
    pub running: bool,
    /// Full backups taken because the start revision was compacted.
    pub compactions: u64,
}

/// Shared by the tasks and the HTTP server.
#[derive(Debug, Default)]
pub struct Metrics {
    units: Mutex<BTreeMap<String, UnitState>>,
    not_ready: Mutex<Option<String>>,
    /// With a Lease: whether this replica leads.
    leader: Mutex<Option<bool>>,
}

impl Metrics {
    pub fn new() -> Self {
        Metrics { units: Mutex::default(), not_ready: Mutex::new(Some("starting".into())), leader: Mutex::new(None) }
    }

    /// Change one unit's state.
    pub fn update(&self, unit: &str, f: impl FnOnce(&mut UnitState)) {
        let mut units = self.units.lock().expect("metrics lock");
        f(units.entry(unit.to_string()).or_default());
    }

    /// A copy of one unit's state.
    pub fn unit(&self, unit: &str) -> Option<UnitState> {
        self.units.lock().expect("metrics lock").get(unit).cloned()
    }

    /// Why `/readyz` fails, or `None` when ready.
    pub fn not_ready(&self) -> Option<String> {
        self.not_ready.lock().expect("metrics lock").clone()
    }

    pub fn set_not_ready(&self, why: Option<String>) {
        *self.not_ready.lock().expect("metrics lock") = why;
    }

    /// With leader election: whether this replica leads (`kmdr_leader`).
    pub fn set_leader(&self, leads: bool) {
        *self.leader.lock().expect("metrics lock") = Some(leads);
    }

    /// The newest protected point of a unit.
    pub fn protected_point(s: &UnitState) -> Option<DateTime<Utc>> {
        let delta = s.delta.as_ref().and_then(|d| d.protected_until);
        match (s.last_full, delta) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Everything, in Prometheus text format.
    pub fn render(&self, now: DateTime<Utc>) -> String {
        let units = self.units.lock().expect("metrics lock").clone();
        let mut out = String::new();
        if let Some(leads) = *self.leader.lock().expect("metrics lock") {
            let _ = writeln!(
                out,
                "# HELP kmdr_leader 1 while this replica holds the Lease and runs the units\n# TYPE kmdr_leader gauge\nkmdr_leader {}",
                u8::from(leads)
            );
        }
        let secs = |t: DateTime<Utc>| t.timestamp_millis() as f64 / 1000.0;
        type Get = Box<dyn Fn(&UnitState) -> Option<f64>>;
        let families: Vec<(&str, &str, &str, Get)> = vec![
            (
                "kmdr_last_success_timestamp_seconds",
                "gauge",
                "Unix time the newest full backup of the unit finished",
                Box::new(move |s| s.last_success.map(secs)),
            ),
            (
                "kmdr_rpo_seconds",
                "gauge",
                "Age of the newest point the repository holds for the unit (current RPO)",
                Box::new(move |s| {
                    Metrics::protected_point(s).map(|p| (now - p).num_milliseconds().max(0) as f64 / 1000.0)
                }),
            ),
            (
                "kmdr_rpo_target_seconds",
                "gauge",
                "The unit's RPO target from the plan",
                Box::new(|s| Some(s.rpo_target.as_secs_f64())),
            ),
            (
                "kmdr_backup_duration_seconds",
                "gauge",
                "Duration of the newest full backup",
                Box::new(|s| s.last_success.map(|_| s.last_duration.as_secs_f64())),
            ),
            (
                "kmdr_backup_bytes",
                "gauge",
                "Plaintext bytes of the newest full backup",
                Box::new(|s| s.last_success.map(|_| s.last_bytes as f64)),
            ),
            (
                "kmdr_backup_failures_total",
                "counter",
                "Full backups of the unit that failed",
                Box::new(|s| Some(s.failures as f64)),
            ),
            (
                "kmdr_verified_restore_timestamp_seconds",
                "gauge",
                "Unix time the newest backup of the unit proven restorable was proven (kmdr serve --verify-every)",
                Box::new(move |s| s.verified_restore.map(secs)),
            ),
            (
                "kmdr_restorable_rpo_seconds",
                "gauge",
                "Age of the newest backup of the unit proven restorable (the RPO that can actually be restored)",
                Box::new(move |s| s.restorable_point.map(|p| (now - p).num_milliseconds().max(0) as f64 / 1000.0)),
            ),
            (
                "kmdr_verify_failures_total",
                "counter",
                "Test restores of the unit's backups that found one unrestorable or could not run",
                Box::new(|s| Some(s.verify_failures as f64)),
            ),
            (
                "kmdr_delta_lag_seconds",
                "gauge",
                "Change received -> durable in the repository, newest delta segment",
                Box::new(|s| s.delta.as_ref().map(|d| d.lag.as_secs_f64())),
            ),
            (
                "kmdr_delta_revision",
                "gauge",
                "Last revision the unit's delta chain covers",
                Box::new(|s| s.delta.as_ref().map(|d| d.revision as f64)),
            ),
            (
                "kmdr_delta_segments_total",
                "counter",
                "Delta segments written",
                Box::new(|s| s.delta.as_ref().map(|d| d.segments as f64)),
            ),
            (
                "kmdr_delta_events_total",
                "counter",
                "Changes captured in delta segments",
                Box::new(|s| s.delta.as_ref().map(|d| d.events as f64)),
            ),
            (
                "kmdr_delta_bytes_total",
                "counter",
                "Sealed bytes of delta segments written",
                Box::new(|s| s.delta.as_ref().map(|d| d.bytes as f64)),
            ),
            (
                "kmdr_delta_failures_total",
                "counter",
                "Delta captures that stopped on an error (they resume)",
                Box::new(|s| s.delta.as_ref().map(|d| d.failures as f64)),
            ),
            (
                "kmdr_delta_compactions_total",
                "counter",
                "Full backups taken because the capture's start revision was compacted",
                Box::new(|s| s.delta.as_ref().map(|d| d.compactions as f64)),
            ),
            (
                "kmdr_delta_up",
                "gauge",
                "1 while the unit's delta capture is watching",
                Box::new(|s| s.delta.as_ref().map(|d| if d.running { 1.0 } else { 0.0 })),
            ),
        ];
        for (name, kind, help, get) in &families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (unit, s) in &units {
                if let Some(v) = get(s) {
                    let layer = s.layer.map(|l| l.as_str()).unwrap_or("unknown");
                    let _ = writeln!(out, "{name}{{layer=\"{layer}\",unit=\"{}\"}} {v}", escape(unit));
                }
            }
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_labels() {
        let m = Metrics::new();
        let now = Utc::now();
        m.update("shared/t1", |s| {
            s.layer = Some(Layer::TenantControlPlanes);
            s.rpo_target = Duration::from_secs(300);
            s.last_full = Some(now - chrono::Duration::seconds(100));
            s.last_success = Some(now - chrono::Duration::seconds(90));
            s.delta = Some(DeltaState {
                protected_until: Some(now - chrono::Duration::seconds(2)),
                lag: Duration::from_millis(250),
                revision: 42,
                ..Default::default()
            });
        });
        let text = m.render(now);
        assert!(text.contains("kmdr_rpo_seconds{layer=\"tenant-control-planes\",unit=\"shared/t1\"} 2\n"), "{text}");
        assert!(text.contains("kmdr_rpo_target_seconds{layer=\"tenant-control-planes\",unit=\"shared/t1\"} 300\n"));
        assert!(text.contains("kmdr_delta_lag_seconds{layer=\"tenant-control-planes\",unit=\"shared/t1\"} 0.25\n"));
        assert!(text.contains("# TYPE kmdr_backup_failures_total counter"));
        assert_eq!(m.not_ready().as_deref(), Some("starting"));
    }
}
