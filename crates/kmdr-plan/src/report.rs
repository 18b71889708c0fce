//! A drill's report: what was measured per layer against the plan's targets,
//! the timeline of every step, and what the recovery lost or changed. JSON is
//! the record (also kept in the repository); Markdown is for people and for
//! committing next to the platform's values overlay, as the runbook asks.

use chrono::{DateTime, Utc};
use kmdr_core::{Layer, human_duration};
use kmdr_datastore::inventory::KeyDiff;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::time::Duration;

/// Layout version of the report JSON.
pub const REPORT_FORMAT: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Fail,
    /// The plan names no source for this layer: targets only.
    Skipped,
}

/// One step of the drill, for the timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub layer: Layer,
    /// inventory, backup, failure, restore, run, health, compare
    pub kind: String,
    pub name: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub ok: bool,
    pub detail: String,
}

/// One thing a layer holds: the etcd keyspace, or one tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitReport {
    /// `etcd` or `<datastore>/<schema>`.
    pub name: String,
    pub keys_before: u64,
    pub keys_after: u64,
    pub content_before: String,
    pub content_after: String,
    /// The backup the drill took of it; `None`: the plan does not back it up.
    pub backup: Option<String>,
    pub diff: KeyDiff,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerReport {
    pub layer: Layer,
    pub verdict: Verdict,
    pub rto_target_s: u64,
    pub rpo_target_s: u64,
    /// Failure to healthy.
    pub rto_s: Option<f64>,
    /// Age of the newest backup at the failure (the oldest such age over the layer's units).
    pub rpo_s: Option<f64>,
    pub units: Vec<UnitReport>,
    /// Why the layer failed, each with what to do.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillReport {
    pub format: u32,
    pub plan: String,
    pub plan_file: String,
    pub repository: String,
    pub started_at: DateTime<Utc>,
    /// When the failure was caused (the start of every RTO).
    pub failure_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    pub verdict: Verdict,
    pub layers: Vec<LayerReport>,
    pub steps: Vec<StepRecord>,
    pub kmdr_version: String,
}

impl DrillReport {
    /// The name the report is kept under in the repository.
    pub fn object_name(&self) -> String {
        format!("{}-drill.json", self.started_at.format("%Y%m%dT%H%M%S%.3fZ"))
    }
}

fn secs(s: f64) -> String {
    human_duration(Duration::from_secs_f64(s.max(0.0)))
}

fn target(s: u64) -> String {
    human_duration(Duration::from_secs(s))
}

/// The report as Markdown.
pub fn markdown(r: &DrillReport) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# DR drill: {} — {:?}\n", r.plan, r.verdict);
    let _ = writeln!(
        m,
        "Plan `{}`, repository `{}`, kmdr {}. Started {}, failure caused {}, finished {}.\n",
        r.plan_file,
        r.repository,
        r.kmdr_version,
        r.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        r.failure_at.map(|t| t.format("%H:%M:%S").to_string()).unwrap_or_else(|| "never".into()),
        r.finished_at.format("%H:%M:%S")
    );
    let _ = writeln!(
        m,
        "| layer | verdict | RTO measured | RTO target | RPO measured | RPO target | keys missing / extra / changed |"
    );
    let _ = writeln!(m, "|---|---|---:|---:|---:|---:|---:|");
    for l in &r.layers {
        let (mi, ex, ch) =
            l.units.iter().fold((0, 0, 0), |a, u| (a.0 + u.diff.missing, a.1 + u.diff.extra, a.2 + u.diff.changed));
        let _ = writeln!(
            m,
            "| {} | **{:?}** | {} | {} | {} | {} | {} / {} / {} |",
            l.layer,
            l.verdict,
            l.rto_s.map(secs).unwrap_or_else(|| "—".into()),
            target(l.rto_target_s),
            l.rpo_s.map(secs).unwrap_or_else(|| "—".into()),
            target(l.rpo_target_s),
            mi,
            ex,
            ch
        );
    }
    for l in &r.layers {
        if l.problems.is_empty() && l.units.iter().all(|u| u.diff.is_empty()) {
            continue;
        }
        let _ = writeln!(m, "\n## {}\n", l.layer);
        for p in &l.problems {
            let _ = writeln!(m, "- {p}");
        }
        for u in l.units.iter().filter(|u| !u.diff.is_empty()) {
            let _ = writeln!(
                m,
                "- `{}`: {} keys before, {} after; {} missing, {} extra, {} changed{}",
                u.name,
                u.keys_before,
                u.keys_after,
                u.diff.missing,
                u.diff.extra,
                u.diff.changed,
                if u.backup.is_none() { " (the plan does not back it up)" } else { "" }
            );
            for (what, keys) in
                [("missing", &u.diff.missing_keys), ("extra", &u.diff.extra_keys), ("changed", &u.diff.changed_keys)]
            {
                if !keys.is_empty() {
                    let _ = writeln!(
                        m,
                        "  - {what}: {}",
                        keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                    );
                }
            }
        }
    }
    let _ = writeln!(
        m,
        "\n## Units\n\n| layer | unit | backup | keys before | keys after | content before = after |\n|---|---|---|---:|---:|---|"
    );
    for l in &r.layers {
        for u in &l.units {
            let _ = writeln!(
                m,
                "| {} | `{}` | {} | {} | {} | {} |",
                l.layer,
                u.name,
                u.backup.as_deref().unwrap_or("none"),
                u.keys_before,
                u.keys_after,
                if u.content_before == u.content_after { "yes" } else { "**no**" }
            );
        }
    }
    let _ = writeln!(m, "\n## Timeline\n\n| layer | step | kind | start | took | result |\n|---|---|---|---|---:|---|");
    for s in &r.steps {
        let took = (s.finished_at - s.started_at).to_std().unwrap_or_default();
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | {} |",
            s.layer,
            s.name.replace('|', "\\|"),
            s.kind,
            s.started_at.format("%H:%M:%S%.3f"),
            human_duration(took),
            if s.ok { "ok".to_string() } else { format!("**failed**: {}", s.detail.replace('|', "\\|")) }
        );
    }
    m
}
