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
use kmdr_plan::report::{DrillReport, Verdict};
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
    /// Full backups synthesised from the newest one and the segments after it.
    pub synthesised: u64,
    /// How long the newest of them took.
    pub synthesis_duration: Option<Duration>,
    /// Syntheses that failed (they are tried again after a backoff).
    pub synthesis_failures: u64,
    /// Changes captured after the newest full backup (what a restore to now replays).
    pub events_since_full: u64,
    /// Sealed bytes of the segments after the newest full backup.
    pub bytes_since_full: u64,
}

/// `kmdr serve`'s extend-locks passes, on a repository under S3 Object Lock.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LockKeeping {
    /// When the last pass that succeeded finished.
    pub last_pass: Option<DateTime<Utc>>,
    /// Objects whose retention the passes extended.
    pub extended: u64,
    /// Passes that failed (a refused s3:PutObjectRetention among them).
    pub failures: u64,
}

/// What the newest drill report in the repository says, for the status page.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillSummary {
    /// Its name under `reports/` in the repository.
    pub object: String,
    pub started_at: DateTime<Utc>,
    pub verdict: Verdict,
    /// Per layer: verdict, measured RTO and RPO (seconds) and their targets.
    pub layers: Vec<DrillLayer>,
}

/// One layer of a [`DrillSummary`].
#[derive(Debug, Clone, PartialEq)]
pub struct DrillLayer {
    pub layer: Layer,
    pub verdict: Verdict,
    pub rto_s: Option<f64>,
    pub rto_target_s: u64,
    pub rpo_s: Option<f64>,
    pub rpo_target_s: u64,
}

impl DrillSummary {
    pub fn of(r: &DrillReport) -> Self {
        DrillSummary {
            object: r.object_name(),
            started_at: r.started_at,
            verdict: r.verdict,
            layers: r
                .layers
                .iter()
                .map(|l| DrillLayer {
                    layer: l.layer,
                    verdict: l.verdict,
                    rto_s: l.rto_s,
                    rto_target_s: l.rto_target_s,
                    rpo_s: l.rpo_s,
                    rpo_target_s: l.rpo_target_s,
                })
                .collect(),
        }
    }
}

/// Whether serve has read the repository's drill reports yet, and what it found.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum DrillState {
    /// Not read yet (serve is starting, or this replica stands by).
    #[default]
    Unknown,
    /// The repository holds no drill report.
    None,
    Found(DrillSummary),
    /// Reading the reports failed; the message says why.
    Unreadable(String),
}

/// Everything the status page shows, copied at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub plan: Option<String>,
    pub units: BTreeMap<String, UnitState>,
    pub not_ready: Option<String>,
    pub leader: Option<bool>,
    /// With `--shards`: how many, and which this replica runs.
    pub shards: Option<(u32, Vec<u32>)>,
    pub drill: DrillState,
}

/// Shared by the tasks and the HTTP server.
#[derive(Debug, Default)]
pub struct Metrics {
    units: Mutex<BTreeMap<String, UnitState>>,
    not_ready: Mutex<Option<String>>,
    /// With a Lease: whether this replica leads.
    leader: Mutex<Option<bool>>,
    /// With `--shards`: how many, and which this replica runs.
    shards: Mutex<Option<(u32, Vec<u32>)>>,
    /// The plan's name and the newest drill report, for the status page.
    plan: Mutex<Option<String>>,
    drill: Mutex<DrillState>,
    /// On a repository under Object Lock: the extend-locks passes.
    locks: Mutex<Option<LockKeeping>>,
}

impl Metrics {
    pub fn new() -> Self {
        Metrics { not_ready: Mutex::new(Some("starting".into())), ..Default::default() }
    }

    /// The plan's name, shown on the status page.
    pub fn set_plan(&self, name: &str) {
        *self.plan.lock().expect("metrics lock") = Some(name.to_string());
    }

    /// What the repository's newest drill report says.
    pub fn set_drill(&self, d: DrillState) {
        *self.drill.lock().expect("metrics lock") = d;
    }

    /// Change what the extend-locks passes report (starts reporting them).
    pub fn update_locks(&self, f: impl FnOnce(&mut LockKeeping)) {
        f(self.locks.lock().expect("metrics lock").get_or_insert_with(Default::default));
    }

    /// What the extend-locks passes reported, if any ran.
    pub fn locks(&self) -> Option<LockKeeping> {
        self.locks.lock().expect("metrics lock").clone()
    }

    /// A copy of everything, for the status page.
    pub fn snapshot(&self) -> Snapshot {
        // The leader before the units (see `stand_by`).
        let leader = *self.leader.lock().expect("metrics lock");
        Snapshot {
            plan: self.plan.lock().expect("metrics lock").clone(),
            units: self.units.lock().expect("metrics lock").clone(),
            not_ready: self.not_ready(),
            leader,
            shards: self.shards.lock().expect("metrics lock").clone(),
            drill: self.drill.lock().expect("metrics lock").clone(),
        }
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

    /// With `--shards N` (N > 1): the shards this replica runs
    /// (`kmdr_shards`, `kmdr_shard_held{shard}`).
    pub fn set_shards(&self, count: u32, held: &std::collections::BTreeSet<u32>) {
        if count > 1 {
            *self.shards.lock().expect("metrics lock") = Some((count, held.iter().copied().collect()));
        }
    }

    /// With leader election: this replica stands by (`kmdr_leader 0`) and
    /// shows no unit. What it knew of the units while it led goes: kept, it
    /// would age (`kmdr_rpo_seconds` growing, `kmdr_delta_up 0`) while the
    /// leader protects them, and alert on a replica that runs nothing. The
    /// drill report is read again when it leads again.
    pub fn stand_by(&self) {
        // Units first: `render` reads the leader first, so a scrape that sees
        // `kmdr_leader 0` never sees the units of before.
        self.units.lock().expect("metrics lock").clear();
        *self.locks.lock().expect("metrics lock") = None;
        *self.drill.lock().expect("metrics lock") = DrillState::Unknown;
        if let Some((_, held)) = self.shards.lock().expect("metrics lock").as_mut() {
            held.clear();
        }
        self.set_leader(false);
    }

    /// The current RPO of a unit: the age of its newest protected point.
    pub fn rpo(s: &UnitState, now: DateTime<Utc>) -> Option<Duration> {
        Metrics::protected_point(s).map(|p| (now - p).to_std().unwrap_or_default())
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
        // The leader before the units (see `stand_by`).
        let leader = *self.leader.lock().expect("metrics lock");
        let units = self.units.lock().expect("metrics lock").clone();
        let mut out = String::new();
        if let Some(leads) = leader {
            let _ = writeln!(
                out,
                "# HELP kmdr_leader 1 while this replica holds the Lease and runs the units\n# TYPE kmdr_leader gauge\nkmdr_leader {}",
                u8::from(leads)
            );
        }
        if let Some((count, held)) = self.shards.lock().expect("metrics lock").clone() {
            let _ = writeln!(
                out,
                "# HELP kmdr_shards Shards the replicas divide the plan's units into (--shards)\n# TYPE kmdr_shards gauge\nkmdr_shards {count}"
            );
            let _ = writeln!(
                out,
                "# HELP kmdr_shard_held 1 for each shard whose Lease this replica holds and whose units it runs\n# TYPE kmdr_shard_held gauge"
            );
            for s in 0..count {
                let _ = writeln!(out, "kmdr_shard_held{{shard=\"{s}\"}} {}", u8::from(held.contains(&s)));
            }
        }
        let secs = |t: DateTime<Utc>| t.timestamp_millis() as f64 / 1000.0;
        if let Some(l) = self.locks() {
            for (name, kind, help, v) in [
                (
                    "kmdr_object_lock_extend_timestamp_seconds",
                    "gauge",
                    "Unix time the last extend-locks pass of the repository under S3 Object Lock succeeded",
                    l.last_pass.map(secs),
                ),
                (
                    "kmdr_object_lock_extended_total",
                    "counter",
                    "Objects whose S3 Object Lock retention serve extended",
                    Some(l.extended as f64),
                ),
                (
                    "kmdr_object_lock_extend_failures_total",
                    "counter",
                    "extend-locks passes that failed (s3:PutObjectRetention refused, store unreachable)",
                    Some(l.failures as f64),
                ),
            ] {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                if let Some(v) = v {
                    let _ = writeln!(out, "{name} {v}");
                }
            }
        }
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
                "kmdr_compactions_total",
                "counter",
                "Full backups synthesised from the newest full backup and the delta segments after it (compaction)",
                Box::new(|s| s.delta.as_ref().map(|d| d.synthesised as f64)),
            ),
            (
                "kmdr_compaction_duration_seconds",
                "gauge",
                "Duration of the newest compaction",
                Box::new(|s| s.delta.as_ref().and_then(|d| d.synthesis_duration).map(|t| t.as_secs_f64())),
            ),
            (
                "kmdr_compaction_failures_total",
                "counter",
                "Compactions that failed (tried again after a backoff)",
                Box::new(|s| s.delta.as_ref().map(|d| d.synthesis_failures as f64)),
            ),
            (
                "kmdr_delta_events_since_full",
                "gauge",
                "Changes captured after the newest full backup: what a restore to the latest point replays",
                Box::new(|s| s.delta.as_ref().map(|d| d.events_since_full as f64)),
            ),
            (
                "kmdr_delta_bytes_since_full",
                "gauge",
                "Sealed bytes of the delta segments after the newest full backup",
                Box::new(|s| s.delta.as_ref().map(|d| d.bytes_since_full as f64)),
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

    /// A replica that loses the Lease shows no unit: no RPO that keeps
    /// growing, no capture down, while the new leader protects them.
    #[test]
    fn a_replica_that_stands_by_again_forgets_its_units() {
        let m = Metrics::new();
        let now = Utc::now();
        m.set_leader(true);
        m.update("etcd", |s| {
            s.layer = Some(Layer::UnderCluster);
            s.rpo_target = Duration::from_secs(3600);
            s.last_full = Some(now - chrono::Duration::seconds(600));
            s.failures = 2;
            s.delta = Some(DeltaState { running: true, ..Default::default() });
        });
        m.set_drill(DrillState::None);
        let led = m.render(now);
        assert!(
            led.contains("kmdr_leader 1\n")
                && led.contains("kmdr_rpo_seconds{layer=\"under-cluster\",unit=\"etcd\"} 600\n"),
            "{led}"
        );

        m.stand_by();
        let text = m.render(now + chrono::Duration::seconds(3600));
        assert!(text.contains("kmdr_leader 0\n"), "{text}");
        for family in ["kmdr_rpo_seconds", "kmdr_delta_up", "kmdr_backup_failures_total", "kmdr_rpo_target_seconds"] {
            assert!(!text.contains(&format!("{family}{{")), "a standby reports {family}: {text}");
            // The families stay declared: a scrape of a standby is not malformed.
            assert!(text.contains(&format!("# TYPE {family} ")), "{text}");
        }
        let snap = m.snapshot();
        assert!(snap.units.is_empty() && snap.leader == Some(false), "{snap:?}");
        assert_eq!(snap.drill, DrillState::Unknown);
        assert!(m.unit("etcd").is_none());

        // Leading again, units come back as the scheduler reports them.
        m.set_leader(true);
        m.update("etcd", |s| s.layer = Some(Layer::UnderCluster));
        assert!(m.render(now).contains("kmdr_rpo_target_seconds{layer=\"under-cluster\",unit=\"etcd\"} 0\n"));
    }
}
