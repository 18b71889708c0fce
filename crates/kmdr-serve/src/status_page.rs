//! `kmdr serve`'s status page at `/`: what the operator needs on a bad day,
//! per layer and unit, on one page: the newest backup, the newest backup
//! proven restorable, the current RPO against the plan's target (a unit past
//! it is marked late), the delta capture's lag and failures, and the last
//! drill the repository holds.
//!
//! The page is rendered on the server from a [`Snapshot`] of the metrics and
//! refreshes itself with `<meta http-equiv="refresh">`: no script, inline
//! CSS, no external asset, so that it works in an air-gapped cluster and
//! through `kubectl port-forward`. Unit names come from user plans and from
//! the datastores (schemas), error messages from anywhere: every value goes
//! through [`E`], the escaping the drill report uses, and nothing else
//! reaches the page.
//!
//! Gaps in delta chains are not on the page: serve does not look for them
//! (a point-in-time restore refuses a gap with exit 12, and
//! `kmdr backups points` lists them); its delta failures and restarts after
//! compaction are.

use crate::metrics::{DrillState, Metrics, Snapshot, UnitState};
use chrono::{DateTime, Utc};
use kmdr_core::{Layer, human_bytes, human_duration};
use kmdr_plan::html::E;
use kmdr_plan::report::Verdict;
use std::fmt::Write;
use std::time::Duration;

/// Seconds between the page's own reloads.
pub const REFRESH_SECONDS: u32 = 15;

/// How a unit stands against its RPO target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Its newest protected point is no older than the target.
    OnTime,
    /// Its newest protected point is older than the target.
    Late,
    /// The repository holds nothing of it yet.
    NoBackup,
}

impl Standing {
    /// The unit's standing at `now`.
    pub fn of(s: &UnitState, now: DateTime<Utc>) -> Standing {
        match Metrics::rpo(s, now) {
            None => Standing::NoBackup,
            Some(rpo) if rpo > s.rpo_target => Standing::Late,
            Some(_) => Standing::OnTime,
        }
    }

    /// The CSS class of the unit's row (and the word people read, for `late`).
    fn class(self) -> &'static str {
        match self {
            Standing::OnTime => "ok",
            Standing::Late | Standing::NoBackup => "late",
        }
    }

    fn words(self) -> &'static str {
        match self {
            Standing::OnTime => "on time",
            Standing::Late => "late",
            Standing::NoBackup => "late: no backup yet",
        }
    }
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2125;background:#f6f7f9}\
header{padding:1em 1.5em;border-bottom:4px solid #2e7d32;background:#fff}header.late{border-color:#c62828}\
h1{margin:0 0 .3em;font-size:1.4em}h2{font-size:1.15em;margin:1.5em 0 .5em}main{padding:0 1.5em 1.5em}\
p{margin:.3em 0}.summary{font-weight:600}\
table{border-collapse:collapse;width:100%;background:#fff;font-size:.92em}\
th,td{text-align:left;padding:.4em .6em;border-bottom:1px solid #e3e6ea;vertical-align:top}\
thead th{background:#eef0f3;font-weight:600}tr.layer th{background:#dde3ea;font-size:1.02em}\
tr.late{background:#fdecea}tr.late td.state{color:#b71c1c;font-weight:700}tr.ok td.state{color:#2e7d32;font-weight:600}\
td.name{font-family:ui-monospace,monospace;word-break:break-all}td.state,td.rpo{white-space:nowrap}.muted{color:#6b737b}.warn{color:#b26a00;font-weight:600}\
.verdict{font-weight:700}.verdict.pass{color:#2e7d32}.verdict.fail{color:#b71c1c}.verdict.skipped{color:#6b737b}\
footer{padding:1em 1.5em;color:#6b737b;font-size:.85em}";

/// The page, for the state in `s` at `now`.
pub fn render(s: &Snapshot, now: DateTime<Utc>) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let standings: Vec<Standing> = s.units.values().map(|u| Standing::of(u, now)).collect();
    let late = standings.iter().filter(|st| **st != Standing::OnTime).count();
    let plan = s.plan.as_deref().unwrap_or("(plan not loaded yet)");
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>kmdr serve: {} — {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        E(plan),
        if late == 0 { "all on time".to_string() } else { format!("{late} late") }
    );
    let _ = write!(
        h,
        "<header class=\"{}\">\n<h1>kmdr serve: {}</h1>\n<p class=\"summary\" id=\"summary\">{} units: {} on time, {} late</p>\n",
        if late == 0 { "ok" } else { "late" },
        E(plan),
        s.units.len(),
        s.units.len() - late,
        late
    );
    match &s.not_ready {
        None => h.push_str("<p id=\"ready\">Ready: every delta capture is running.</p>\n"),
        Some(why) => {
            let _ = writeln!(h, "<p id=\"ready\" class=\"warn\">Not ready: {}</p>", E(why));
        }
    }
    match (s.leader, &s.shards) {
        (Some(true), Some((count, held))) => {
            let held: Vec<String> = held.iter().map(u32::to_string).collect();
            let _ = writeln!(
                h,
                "<p>This replica holds shard{} {} of {count} and runs their units; the other replicas' pages show the rest.</p>",
                if held.len() == 1 { "" } else { "s" },
                held.join(", ")
            );
        }
        (Some(true), None) => h.push_str("<p>This replica holds the Lease and runs the units.</p>\n"),
        (Some(false), _) => h.push_str(
            "<p class=\"warn\">Standing by: another replica holds the Lease and runs the units; its page shows them.</p>\n",
        ),
        (None, _) => {}
    }
    h.push_str("</header>\n<main>\n");
    units_table(&mut h, s, now);
    drill_section(&mut h, &s.drill, now);
    let _ = write!(
        h,
        "</main>\n<footer>Rendered {} by kmdr {}; reloads every {REFRESH_SECONDS} s. \
         Gaps in delta chains are not shown here: <code>kmdr backups points</code> lists them. \
         For machines: <a href=\"/metrics\">/metrics</a>, <a href=\"/healthz\">/healthz</a>, \
         <a href=\"/readyz\">/readyz</a>.</footer>\n</body>\n</html>\n",
        E(&time(now)),
        E(env!("CARGO_PKG_VERSION"))
    );
    h
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    human_duration((now - t).to_std().unwrap_or_default())
}

fn units_table(h: &mut String, s: &Snapshot, now: DateTime<Utc>) {
    h.push_str("<section id=\"units\">\n<h2>Units</h2>\n");
    if s.units.is_empty() {
        h.push_str(
            "<p class=\"muted\">No unit yet: serve is starting, its tenants are not discovered yet, or this replica stands by.</p>\n</section>\n",
        );
        return;
    }
    h.push_str(
        "<table>\n<thead><tr><th>Unit</th><th>State</th><th>RPO now / target</th><th>Newest backup</th>\
         <th>Newest proven restorable</th><th>Delta capture</th><th>Failures</th></tr></thead>\n",
    );
    let mut layers: Vec<Layer> = s.units.values().map(|u| u.layer.unwrap_or(Layer::Unknown)).collect();
    layers.sort();
    layers.dedup();
    for layer in layers {
        let _ = writeln!(
            h,
            "<tbody data-layer=\"{0}\">\n<tr class=\"layer\"><th colspan=\"7\">{0}</th></tr>",
            E(layer.as_str())
        );
        for (name, u) in s.units.iter().filter(|(_, u)| u.layer.unwrap_or(Layer::Unknown) == layer) {
            unit_row(h, name, u, now);
        }
        h.push_str("</tbody>\n");
    }
    h.push_str("</table>\n</section>\n");
}

fn unit_row(h: &mut String, name: &str, u: &UnitState, now: DateTime<Utc>) {
    let st = Standing::of(u, now);
    let rpo = Metrics::rpo(u, now).map(human_duration).unwrap_or_else(|| "—".into());
    let _ = write!(
        h,
        "<tr class=\"unit {}\" data-unit=\"{}\"><td class=\"name\">{}</td><td class=\"state\">{}</td><td class=\"rpo\">{} / {}</td>",
        st.class(),
        E(name),
        E(name),
        st.words(),
        E(&rpo),
        E(&human_duration(u.rpo_target))
    );
    let newest = match (u.last_full, u.last_success) {
        (Some(start), finished) => format!(
            "{} ({} ago){}",
            time(start),
            ago(now, start),
            finished
                .map(|_| format!(", took {}, {}", human_duration(u.last_duration), human_bytes(u.last_bytes)))
                .unwrap_or_default()
        ),
        (None, _) => "none yet".into(),
    };
    let _ = write!(h, "<td class=\"newest\">{}</td>", E(&newest));
    let restorable = match (u.restorable_point, u.verified_restore) {
        (Some(point), Some(proven)) => {
            format!("{} ({} ago), proven {} ago", time(point), ago(now, point), ago(now, proven))
        }
        _ => "not proven yet".into(),
    };
    let stale = u.restorable_point.is_some_and(|p| (now - p).to_std().unwrap_or_default() > u.rpo_target);
    let _ = write!(
        h,
        "<td class=\"restorable{}\">{}</td>",
        if stale || u.restorable_point.is_none() { " muted" } else { "" },
        E(&restorable)
    );
    let delta = match &u.delta {
        None => "none (full backups only)".to_string(),
        Some(d) => {
            let mut t = format!(
                "{}, lag {}, revision {}, {} segments",
                if d.running { "running" } else { "stopped" },
                human_duration(d.lag),
                d.revision,
                d.segments
            );
            if d.failures > 0 {
                let _ = write!(t, "; {} failure{} (it resumes)", d.failures, plural(d.failures));
            }
            if d.compactions > 0 {
                let _ = write!(t, "; {} restart{} after compaction", d.compactions, plural(d.compactions));
            }
            t
        }
    };
    let delta_class = match &u.delta {
        Some(d) if !d.running || d.failures > 0 => "delta warn",
        _ => "delta",
    };
    let _ = write!(h, "<td class=\"{delta_class}\">{}</td>", E(&delta));
    let mut failures = Vec::new();
    if u.failures > 0 {
        failures.push(format!("{} backup{} failed", u.failures, plural(u.failures)));
    }
    if let Some(e) = &u.last_error {
        failures.push(format!("last: {e}"));
    }
    if u.verify_failures > 0 {
        failures.push(format!("{} restore proof{} failed", u.verify_failures, plural(u.verify_failures)));
    }
    match failures.is_empty() {
        true => h.push_str("<td class=\"failures muted\">none</td></tr>\n"),
        false => {
            let _ = writeln!(h, "<td class=\"failures warn\">{}</td></tr>", E(&failures.join("; ")));
        }
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn verdict(v: Verdict) -> (&'static str, &'static str) {
    match v {
        Verdict::Pass => ("pass", "PASS"),
        Verdict::Fail => ("fail", "FAIL"),
        Verdict::Skipped => ("skipped", "SKIPPED"),
    }
}

fn secs(s: Option<f64>) -> String {
    s.map(|s| human_duration(Duration::from_secs_f64(s.max(0.0)))).unwrap_or_else(|| "—".into())
}

fn drill_section(h: &mut String, d: &DrillState, now: DateTime<Utc>) {
    h.push_str("<section id=\"drill\">\n<h2>Last drill</h2>\n");
    match d {
        DrillState::Unknown => h.push_str(
            "<p class=\"muted\">Not read yet: serve reads the repository's drill reports once its units run.</p>\n",
        ),
        DrillState::None => h.push_str(
            "<p class=\"warn\">No drill report in the repository: run <code>kmdr drill --plan FILE --yes</code> against a platform you may break (the runbook asks for one every quarter).</p>\n",
        ),
        DrillState::Unreadable(why) => {
            let _ = writeln!(
                h,
                "<p class=\"warn\">Cannot read the repository's drill reports: {}. <code>kmdr status --plan FILE</code> reads them too.</p>",
                E(why)
            );
        }
        DrillState::Found(r) => {
            let (class, word) = verdict(r.verdict);
            let _ = writeln!(
                h,
                "<p><span class=\"verdict {class}\">{word}</span>, started {} ({} ago); report <code>reports/{}</code> in the repository.</p>",
                E(&time(r.started_at)),
                E(&ago(now, r.started_at)),
                E(&r.object)
            );
            h.push_str("<table>\n<thead><tr><th>Layer</th><th>Verdict</th><th>RTO measured / target</th><th>RPO measured / target</th></tr></thead>\n<tbody>\n");
            for l in &r.layers {
                let (class, word) = verdict(l.verdict);
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td class=\"verdict {class}\">{word}</td><td>{} / {}</td><td>{} / {}</td></tr>",
                    E(l.layer.as_str()),
                    E(&secs(l.rto_s)),
                    E(&human_duration(Duration::from_secs(l.rto_target_s))),
                    E(&secs(l.rpo_s)),
                    E(&human_duration(Duration::from_secs(l.rpo_target_s)))
                );
            }
            h.push_str("</tbody>\n</table>\n");
        }
    }
    h.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{DeltaState, DrillLayer, DrillSummary};

    const HOSTILE: &str = "<script>alert('x')</script><b onclick=\"y\">&amp;</b>";

    fn snapshot(now: DateTime<Utc>) -> Snapshot {
        let mut s = Snapshot { plan: Some(format!("plan {HOSTILE}")), ..Default::default() };
        s.units.insert(
            "etcd".into(),
            UnitState {
                layer: Some(Layer::UnderCluster),
                rpo_target: Duration::from_secs(60),
                last_full: Some(now - chrono::Duration::seconds(600)),
                last_success: Some(now - chrono::Duration::seconds(590)),
                last_error: Some(format!("connection refused to {HOSTILE}")),
                failures: 3,
                delta: Some(DeltaState::default()),
                ..Default::default()
            },
        );
        s.units.insert(
            format!("{HOSTILE}/t1"),
            UnitState {
                layer: Some(Layer::TenantControlPlanes),
                rpo_target: Duration::from_secs(3600),
                last_full: Some(now - chrono::Duration::seconds(100)),
                last_success: Some(now - chrono::Duration::seconds(99)),
                delta: Some(DeltaState {
                    protected_until: Some(now - chrono::Duration::seconds(1)),
                    lag: Duration::from_millis(250),
                    running: true,
                    revision: 42,
                    ..Default::default()
                }),
                restorable_point: Some(now - chrono::Duration::seconds(100)),
                verified_restore: Some(now - chrono::Duration::seconds(30)),
                ..Default::default()
            },
        );
        s.not_ready = Some(format!("delta capture not running yet: {HOSTILE}"));
        s
    }

    #[test]
    fn escapes_every_value_from_plans_datastores_and_errors() {
        let now = Utc::now();
        let page = render(&snapshot(now), now);
        let escaped =
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&lt;b onclick=&quot;y&quot;&gt;&amp;amp;&lt;/b&gt;";
        // The plan name (title and heading), the unit (cell and attribute), the error, the readiness.
        assert!(page.matches(escaped).count() >= 6, "{page}");
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<b "), "{page}");
        assert!(!page.contains("alert('x')"), "{page}");
    }

    #[test]
    fn marks_a_unit_past_its_target_late_and_one_within_on_time() {
        let now = Utc::now();
        let page = render(&snapshot(now), now);
        assert!(page.contains("<tr class=\"unit late\" data-unit=\"etcd\"><td class=\"name\">etcd</td><td class=\"state\">late</td><td class=\"rpo\">10m 00s / 1m 00s</td>"), "{page}");
        assert!(page.contains("<td class=\"state\">on time</td><td class=\"rpo\">1.0s / 1h 00m</td>"), "{page}");
        assert!(page.contains("<p class=\"summary\" id=\"summary\">2 units: 1 on time, 1 late</p>"), "{page}");
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"15\">"));
        assert!(page.contains("lag 250ms, revision 42"), "{page}");
        assert!(page.contains("3 backups failed"), "{page}");
    }

    #[test]
    fn a_unit_without_any_backup_is_late() {
        let now = Utc::now();
        let u = UnitState { rpo_target: Duration::from_secs(3600), ..Default::default() };
        assert_eq!(Standing::of(&u, now), Standing::NoBackup);
        let mut s = Snapshot::default();
        s.units.insert("fresh".into(), u);
        assert!(render(&s, now).contains("<td class=\"state\">late: no backup yet</td>"));
    }

    #[test]
    fn shows_the_last_drill_or_why_not() {
        let now = Utc::now();
        let mut s = snapshot(now);
        s.drill = DrillState::Found(DrillSummary {
            object: "20260101T000000.000Z-drill.json".into(),
            started_at: now - chrono::Duration::days(2),
            verdict: Verdict::Fail,
            layers: vec![DrillLayer {
                layer: Layer::TenantControlPlanes,
                verdict: Verdict::Fail,
                rto_s: Some(75.0),
                rto_target_s: 60,
                rpo_s: None,
                rpo_target_s: 3600,
            }],
        });
        let page = render(&s, now);
        assert!(page.contains("<span class=\"verdict fail\">FAIL</span>"), "{page}");
        assert!(page.contains("<td>1m 15s / 1m 00s</td><td>— / 1h 00m</td>"), "{page}");
        s.drill = DrillState::None;
        assert!(render(&s, now).contains("No drill report in the repository"));
        s.drill = DrillState::Unreadable(HOSTILE.into());
        let page = render(&s, now);
        assert!(page.contains("Cannot read the repository's drill reports: &lt;script&gt;"), "{page}");
        assert!(!page.contains("<script"));
    }
}
