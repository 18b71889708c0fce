//! A drill's report as one self-contained HTML page, for the operator who
//! opens it after `kmdr drill`: the verdict, the measures against the plan's
//! targets, a timeline of every step (inline SVG), what the recovery lost or
//! changed, the units and the problems with what to do about them.
//!
//! The page loads nothing: the CSS is inline, the chart is inline SVG and
//! there is no script, so it can be attached to a ticket or opened offline.
//! Every piece of text from the report goes through [`E`], which escapes it
//! (keys and names are user data).

use crate::report::{DrillReport, LayerReport, StepRecord, UnitReport, Verdict};
use chrono::{DateTime, Utc};
use kmdr_core::{Layer, human_duration};
use std::fmt::{self, Display, Write};
use std::time::Duration;

/// The report as one HTML page.
pub fn html(r: &DrillReport) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = writeln!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>DR drill: {} — {}</title>\n<style>{CSS}</style>\n</head>\n<body>",
        E(&r.plan),
        verdict_word(r.verdict)
    );
    header(&mut h, r);
    h.push_str("<main>\n");
    layers_table(&mut h, r);
    timeline(&mut h, r);
    diffs(&mut h, r);
    problems(&mut h, r);
    units_table(&mut h, r);
    steps_table(&mut h, r);
    let _ = writeln!(
        h,
        "</main>\n<footer>Written by kmdr {} from report format {}; the JSON next to this page is the record.</footer>\n</body>\n</html>",
        E(&r.kmdr_version),
        r.format
    );
    h
}

/// Text escaped for HTML content and for attribute values in double or
/// single quotes. Control characters (from keys that are not UTF-8 text)
/// become U+FFFD so that they cannot upset the page. Public so that every
/// page kmdr writes (the drill report, `kmdr serve`'s status page) escapes
/// the same way.
pub struct E<'a>(pub &'a str);

impl Display for E<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                '\n' | '\t' => f.write_char(c)?,
                c if c.is_control() => f.write_char('\u{FFFD}')?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Skipped => "SKIPPED",
    }
}

/// The CSS class of a verdict (colours: green, red, grey).
fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Skipped => "skipped",
    }
}

/// A measured duration for people ("1m 12s").
fn dur(s: f64) -> String {
    human_duration(Duration::from_secs_f64(s.max(0.0)))
}

/// Seconds from `from` to `to`, as a float.
fn offset(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).as_seconds_f64()
}

/// A layer's missing, extra and changed keys over its units.
fn diff_totals(l: &LayerReport) -> (u64, u64, u64) {
    l.units.iter().fold((0, 0, 0), |a, u| (a.0 + u.diff.missing, a.1 + u.diff.extra, a.2 + u.diff.changed))
}

fn header(h: &mut String, r: &DrillReport) {
    let v = verdict_class(r.verdict);
    let count = |v: Verdict| r.layers.iter().filter(|l| l.verdict == v).count();
    let _ = write!(
        h,
        "<header class=\"top {v}\">\n<div class=\"badge {v}\">{}</div>\n<div class=\"title\">\n\
         <h1>DR drill: {}</h1>\n<p class=\"summary\">{} layers: {} passed, {} failed, {} skipped</p>\n<dl>",
        verdict_word(r.verdict),
        E(&r.plan),
        r.layers.len(),
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::Skipped),
    );
    let failure = match r.failure_at {
        Some(t) => format!("{} (T+{})", t.format("%H:%M:%S%.3f UTC"), dur(offset(r.started_at, t))),
        None => "never caused".into(),
    };
    let rows = [
        ("Date", r.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
        ("Took", dur(offset(r.started_at, r.finished_at))),
        ("Failure", failure),
        ("kmdr", r.kmdr_version.clone()),
        ("Repository", r.repository.clone()),
        ("Plan file", r.plan_file.clone()),
    ];
    for (k, v) in rows {
        let _ = write!(h, "<div><dt>{k}</dt><dd>{}</dd></div>", E(&v));
    }
    h.push_str("</dl>\n</div>\n</header>\n");
}

/// One measure against its target: the value (red when over), the target,
/// and a thin gauge of how much of the target it used.
fn measure_cells(h: &mut String, measured: Option<f64>, target_s: u64) {
    match measured {
        None => {
            let _ = write!(h, "<td class=\"num none\">—</td>");
        }
        Some(m) => {
            let over = m > target_s as f64;
            let pct = if target_s == 0 { 100.0 } else { (m / target_s as f64 * 100.0).clamp(1.0, 100.0) };
            let _ = write!(
                h,
                "<td class=\"num{}\" title=\"{:.0}% of the target\">{}<div class=\"gauge\"><div style=\"width:{pct:.1}%\"></div></div></td>",
                if over { " over" } else { " within" },
                if target_s == 0 { 100.0 } else { m / target_s as f64 * 100.0 },
                E(&dur(m)),
            );
        }
    }
    let _ = write!(h, "<td class=\"num target\">{}</td>", E(&dur(target_s as f64)));
}

fn layers_table(h: &mut String, r: &DrillReport) {
    h.push_str(
        "<section id=\"layers\">\n<h2>Layers</h2>\n<table class=\"layers\">\n<thead><tr><th>Layer</th><th>Verdict</th>\
         <th class=\"num\">RTO measured</th><th class=\"num\">RTO target</th><th class=\"num\">RPO measured</th><th class=\"num\">RPO target</th>\
         <th class=\"num\">Keys missing / extra / changed</th><th>Notes</th></tr></thead>\n<tbody>\n",
    );
    for l in &r.layers {
        let v = verdict_class(l.verdict);
        let _ = write!(
            h,
            "<tr class=\"{v}\"><th scope=\"row\">{}</th><td><span class=\"pill {v}\">{}</span></td>",
            E(l.layer.as_str()),
            verdict_word(l.verdict)
        );
        measure_cells(h, l.rto_s, l.rto_target_s);
        measure_cells(h, l.rpo_s, l.rpo_target_s);
        let (mi, ex, ch) = diff_totals(l);
        if l.verdict == Verdict::Skipped {
            let _ =
                writeln!(h, "<td class=\"num none\">—</td><td class=\"note\">{}</td></tr>", E(&l.problems.join("; ")));
        } else {
            let nonzero = |n: u64| if n > 0 { " class=\"bad\"" } else { "" };
            let _ = write!(
                h,
                "<td class=\"num\"><span{}>{mi}</span> / <span{}>{ex}</span> / <span{}>{ch}</span></td>",
                nonzero(mi),
                nonzero(ex),
                nonzero(ch)
            );
            let note = match l.problems.len() {
                0 => format!("{} unit(s), all identical after the recovery", l.units.len()),
                1 => "1 problem, see below".into(),
                n => format!("{n} problems, see below"),
            };
            let _ = writeln!(h, "<td class=\"note\">{}</td></tr>", E(&note));
        }
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
}

/// Step kinds, their colours and what they mean, in drill order.
const KINDS: [(&str, &str, &str); 7] = [
    ("inventory", "#8c9bab", "every key read and digested"),
    ("backup", "#3b75af", "a fresh backup taken"),
    ("failure", "#e8862a", "the failure caused"),
    ("restore", "#2aa198", "the backup restored"),
    ("run", "#d9b43a", "a plan step run"),
    ("health", "#3c9a48", "the health gate"),
    ("compare", "#8e6bb8", "keys read back and compared"),
];

fn kind_colour(kind: &str) -> &'static str {
    KINDS.iter().find(|k| k.0 == kind).map_or("#a0a0a0", |k| k.1)
}

/// A "nice" tick step for an axis spanning `span` seconds: about 5 to 10 ticks.
fn tick_step(span: f64) -> f64 {
    const STEPS: [f64; 28] = [
        0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0,
        300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 43200.0, 86400.0,
    ];
    STEPS.iter().copied().find(|s| span / s <= 10.0).unwrap_or(86400.0 * (span / 86400.0 / 10.0).ceil())
}

/// A tick label: seconds from the drill start, compact ("500ms", "15s", "1m 30s", "2h").
fn tick_label(s: f64, step: f64) -> String {
    if s == 0.0 {
        return "0s".into();
    }
    if step < 1.0 {
        return if s < 1.0 {
            format!("{:.0}ms", s * 1000.0)
        } else {
            format!("{:.*}s", if step < 0.1 { 2 } else { 1 }, s)
        };
    }
    let s = s.round() as u64;
    let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
    match (h, m, sec) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

// Timeline geometry, in SVG user units (the chart scales to the page width).
const SVG_W: f64 = 1120.0;
const LABEL_W: f64 = 200.0;
const RIGHT_PAD: f64 = 24.0;
const TOP: f64 = 34.0;
const BAR_H: f64 = 16.0;
const BAR_GAP: f64 = 4.0;
/// Room at the top of a lane for the RTO target's label, above the bars.
const LANE_TOP: f64 = 16.0;
const LANE_BOTTOM: f64 = 8.0;
const LANE_MIN_H: f64 = 46.0;
const AXIS_H: f64 = 40.0;
/// The narrowest a bar is drawn, so that a step of a few milliseconds in a
/// drill of hours still shows (and still has its tooltip).
const MIN_BAR_W: f64 = 4.0;
/// Sub-rows a lane may grow to before bars are allowed to overlap.
const MAX_ROWS: usize = 6;

/// One lane of the timeline: a layer and its steps, packed into sub-rows so
/// that bars that would overlap on screen (once widened to [`MIN_BAR_W`]) do not.
struct Lane<'a> {
    layer: Layer,
    report: Option<&'a LayerReport>,
    /// Each step with its row and x extent.
    bars: Vec<(&'a StepRecord, usize, f64, f64)>,
    rows: usize,
}

impl Lane<'_> {
    fn height(&self) -> f64 {
        let rows = self.rows.max(1) as f64;
        (LANE_TOP + rows * BAR_H + (rows - 1.0) * BAR_GAP + LANE_BOTTOM).max(LANE_MIN_H)
    }
}

fn timeline(h: &mut String, r: &DrillReport) {
    h.push_str("<section id=\"timeline\">\n<h2>Timeline</h2>\n");
    // The axis: the drill from its start, extended to show the RTO targets
    // that end a little after it (those far beyond are drawn as arrows).
    let drill_end = r
        .steps
        .iter()
        .map(|s| offset(r.started_at, s.finished_at))
        .fold(offset(r.started_at, r.finished_at), f64::max)
        .max(0.001);
    let fail_x = r.failure_at.map(|t| offset(r.started_at, t));
    let mut end = drill_end;
    if let Some(f) = fail_x {
        for l in r.layers.iter().filter(|l| l.verdict != Verdict::Skipped) {
            let t = f + l.rto_target_s as f64;
            if t <= drill_end * 1.6 {
                end = end.max(t);
            }
        }
    }
    let end = end * 1.03;
    let plot_w = SVG_W - LABEL_W - RIGHT_PAD;
    let x = |s: f64| LABEL_W + (s / end).clamp(0.0, 1.0) * plot_w;

    // Lanes: the report's layers in order, then any layer only a step names.
    let mut lanes: Vec<Lane> =
        r.layers.iter().map(|l| Lane { layer: l.layer, report: Some(l), bars: Vec::new(), rows: 0 }).collect();
    for s in &r.steps {
        if !lanes.iter().any(|l| l.layer == s.layer) {
            lanes.push(Lane { layer: s.layer, report: None, bars: Vec::new(), rows: 0 });
        }
    }
    for lane in &mut lanes {
        let mut steps: Vec<&StepRecord> = r.steps.iter().filter(|s| s.layer == lane.layer).collect();
        steps.sort_by_key(|s| s.started_at);
        // The right edge of the last bar in each row.
        let mut row_ends: Vec<f64> = Vec::new();
        for s in steps {
            let x0 = x(offset(r.started_at, s.started_at));
            let x1 = x(offset(r.started_at, s.finished_at)).max(x0 + MIN_BAR_W);
            // Steps run one after the other: a bar may touch the previous one.
            let row = match row_ends.iter().position(|e| *e <= x0 + 0.5) {
                Some(i) => i,
                None if row_ends.len() < MAX_ROWS => {
                    row_ends.push(f64::MIN);
                    row_ends.len() - 1
                }
                // Too crowded: overlap in the row that frees up first.
                None => (0..row_ends.len()).min_by(|a, b| row_ends[*a].total_cmp(&row_ends[*b])).unwrap_or(0),
            };
            row_ends[row] = row_ends[row].max(x1);
            lane.bars.push((s, row, x0, x1));
        }
        lane.rows = row_ends.len();
    }

    let plot_h: f64 = lanes.iter().map(Lane::height).sum();
    let svg_h = TOP + plot_h + AXIS_H;
    let _ = writeln!(
        h,
        "<svg class=\"timeline\" viewBox=\"0 0 {SVG_W} {svg_h:.0}\" role=\"img\" aria-label=\"Timeline of the drill's {} steps per layer\" font-family=\"system-ui, sans-serif\" font-size=\"12\">",
        r.steps.len()
    );

    // Grid and axis ticks.
    let step = tick_step(end);
    let axis_y = TOP + plot_h;
    let mut t = 0.0;
    while t <= end + 1e-9 {
        let tx = x(t);
        let _ = writeln!(
            h,
            "<line class=\"grid\" x1=\"{tx:.1}\" y1=\"{TOP}\" x2=\"{tx:.1}\" y2=\"{:.1}\"/><text class=\"tick\" x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            axis_y + 4.0,
            axis_y + 17.0,
            E(&tick_label(t, step))
        );
        t += step;
    }
    let _ = writeln!(
        h,
        "<line class=\"axis\" x1=\"{LABEL_W}\" y1=\"{axis_y:.1}\" x2=\"{:.1}\" y2=\"{axis_y:.1}\"/><text class=\"axis-title\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">time since the drill started ({})</text>",
        LABEL_W + plot_w,
        LABEL_W + plot_w / 2.0,
        axis_y + 34.0,
        E(&r.started_at.format("%H:%M:%S UTC").to_string())
    );

    // Lanes: background, label, RTO target band, bars, healthy marker.
    // Text drawn last, over the failure line.
    let mut on_top = String::new();
    let mut y = TOP;
    for (i, lane) in lanes.iter().enumerate() {
        let lh = lane.height();
        let skipped = lane.report.is_some_and(|l| l.verdict == Verdict::Skipped);
        let _ = writeln!(
            h,
            "<rect class=\"lane{}\" x=\"0\" y=\"{y:.1}\" width=\"{SVG_W}\" height=\"{lh:.1}\"/>\n<text class=\"lane-label\" x=\"10\" y=\"{:.1}\">{}</text>",
            if skipped {
                " skipped"
            } else if i % 2 == 1 {
                " odd"
            } else {
                ""
            },
            y + lh / 2.0 - 2.0,
            E(lane.layer.as_str())
        );
        if let Some(l) = lane.report {
            // Under the name: the verdict, and when the layer was healthy.
            let when = match (l.verdict, l.rto_s) {
                (Verdict::Skipped, _) => String::new(),
                (_, Some(rto)) => format!(" · healthy in {}", dur(rto)),
                (_, None) => " · never healthy".into(),
            };
            let _ = writeln!(
                h,
                "<text class=\"lane-sub {}\" x=\"10\" y=\"{:.1}\">{}{}</text>",
                verdict_class(l.verdict),
                y + lh / 2.0 + 13.0,
                verdict_word(l.verdict),
                E(&when)
            );
        }
        if skipped {
            let reason = lane.report.map(|l| l.problems.join("; ")).unwrap_or_default();
            let _ = writeln!(
                on_top,
                "<text class=\"skip-reason\" x=\"{:.1}\" y=\"{:.1}\">skipped: {}</text>",
                LABEL_W + 10.0,
                y + lh / 2.0 + 4.0,
                E(&reason)
            );
        }
        // The RTO target: a band from the failure to the target, so that the
        // healthy marker shows at a glance whether it came in time.
        if let (Some(f), Some(l)) = (fail_x, lane.report.filter(|_| !skipped)) {
            let target = f + l.rto_target_s as f64;
            let (bx0, bx1) = (x(f), x(target));
            let title = format!(
                "RTO target {} from the failure (T+{} to T+{})",
                dur(l.rto_target_s as f64),
                dur(f),
                dur(target)
            );
            let _ = writeln!(
                h,
                "<rect class=\"rto-band\" x=\"{bx0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}</title></rect>",
                y + 2.0,
                (bx1 - bx0).max(1.0),
                lh - 4.0,
                E(&title)
            );
            if target <= end {
                let _ = writeln!(
                    h,
                    "<line class=\"rto-target\" x1=\"{bx1:.1}\" y1=\"{:.1}\" x2=\"{bx1:.1}\" y2=\"{:.1}\"><title>{}</title></line><text class=\"rto-label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">RTO {}</text>",
                    y + 2.0,
                    y + lh - 2.0,
                    E(&title),
                    bx1 - 4.0,
                    y + 12.0,
                    E(&dur(l.rto_target_s as f64))
                );
            } else {
                // Beyond the axis: an arrow at the right edge, in the label strip, says how far.
                let ax = LABEL_W + plot_w;
                let my = y + LANE_TOP / 2.0 + 1.0;
                let _ = writeln!(
                    h,
                    "<path class=\"rto-target beyond\" d=\"M{:.1} {:.1} L{:.1} {my:.1} L{:.1} {:.1} Z\"><title>{}</title></path><text class=\"rto-label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">RTO target {}, beyond the drill</text>",
                    ax - 6.0,
                    my - 5.0,
                    ax + 2.0,
                    ax - 6.0,
                    my + 5.0,
                    E(&format!("{title}: beyond the end of the drill")),
                    ax - 10.0,
                    y + 12.0,
                    E(&dur(l.rto_target_s as f64))
                );
            }
        }
        for (s, row, x0, x1) in &lane.bars {
            // The rows are centred below the label strip (a lane is at least LANE_MIN_H high).
            let rows_h = lane.rows as f64 * BAR_H + (lane.rows as f64 - 1.0) * BAR_GAP;
            let by = y + LANE_TOP + (lh - LANE_TOP - LANE_BOTTOM - rows_h) / 2.0 + *row as f64 * (BAR_H + BAR_GAP);
            let took = offset(s.started_at, s.finished_at);
            let mut title = format!(
                "{} · {}: {}\nT+{}, took {}",
                s.layer,
                s.kind,
                s.name,
                dur(offset(r.started_at, s.started_at)),
                dur(took)
            );
            if !s.ok {
                title.push_str("\nFAILED: ");
                title.push_str(&s.detail);
            }
            let _ = writeln!(
                h,
                "<rect class=\"step{}\" data-kind=\"{}\" x=\"{x0:.1}\" y=\"{by:.1}\" width=\"{:.1}\" height=\"{BAR_H}\" rx=\"2\" fill=\"{}\"><title>{}</title></rect>",
                if s.ok { "" } else { " failed" },
                E(&s.kind),
                x1 - x0,
                kind_colour(&s.kind),
                E(&title)
            );
        }
        // When the layer passed its health gate (the end of its RTO).
        if let (Some(f), Some(l)) = (fail_x, lane.report)
            && let Some(rto) = l.rto_s
        {
            let hx = x(f + rto);
            let over = rto > l.rto_target_s as f64;
            let title = format!(
                "healthy after {} (target {}){}",
                dur(rto),
                dur(l.rto_target_s as f64),
                if over { ": over the target" } else { "" }
            );
            let _ = writeln!(
                h,
                "<g class=\"healthy{}\"><line x1=\"{hx:.1}\" y1=\"{:.1}\" x2=\"{hx:.1}\" y2=\"{:.1}\"/><circle cx=\"{hx:.1}\" cy=\"{:.1}\" r=\"5\"/><title>{}</title></g>",
                if over { " over" } else { "" },
                y + LANE_TOP - 2.0,
                y + lh - 3.0,
                y + lh - 6.0,
                E(&title)
            );
        }
        y += lh;
    }

    // The failure instant, across every lane: the start of every RTO.
    if let Some(f) = fail_x {
        let fx = x(f);
        let _ = writeln!(
            h,
            "<g class=\"failure-line\"><line x1=\"{fx:.1}\" y1=\"{:.1}\" x2=\"{fx:.1}\" y2=\"{axis_y:.1}\"/><text x=\"{fx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">failure T0 · T+{}</text><title>The failure was caused at T+{}: every RTO starts here</title></g>",
            TOP - 14.0,
            TOP - 18.0,
            E(&dur(f)),
            E(&dur(f))
        );
    }
    h.push_str(&on_top);
    h.push_str("</svg>\n<ul class=\"legend\">");
    for (kind, colour, what) in KINDS {
        let _ =
            write!(h, "<li><span class=\"sw\" style=\"background:{colour}\"></span>{kind} <small>{what}</small></li>");
    }
    h.push_str(
        "<li><span class=\"sw failed\"></span>failed step <small>hover for the error</small></li>\
         <li><span class=\"sw fline\"></span>failure instant T0</li>\
         <li><span class=\"sw band\"></span>RTO target from T0</li>\
         <li><span class=\"sw dot\"></span>healthy (red: over target)</li></ul>\n</section>\n",
    );
}

/// The keys listed for one kind of difference, with how many more there are.
fn key_list(h: &mut String, what: &str, count: u64, keys: &[String]) {
    if count == 0 && keys.is_empty() {
        return;
    }
    let _ = write!(h, "<div class=\"keys {what}\"><h4>{what} <span class=\"count\">{count}</span></h4><ul>");
    for k in keys {
        let _ = write!(h, "<li><code>{}</code></li>", E(k));
    }
    let more = count.saturating_sub(keys.len() as u64);
    if more > 0 {
        let _ = write!(h, "<li class=\"more\">… and {more} more</li>");
    }
    h.push_str("</ul></div>");
}

fn diffs(h: &mut String, r: &DrillReport) {
    h.push_str("<section id=\"diff\">\n<h2>Key diff per unit</h2>\n");
    let mut any = false;
    for l in r.layers.iter().filter(|l| !l.units.is_empty()) {
        let shown: Vec<&UnitReport> = l.units.iter().filter(|u| !u.diff.is_empty() || u.backup.is_none()).collect();
        let _ = writeln!(
            h,
            "<h3>{} <span class=\"pill {}\">{}</span></h3>",
            E(l.layer.as_str()),
            verdict_class(l.verdict),
            verdict_word(l.verdict)
        );
        for u in &shown {
            any = true;
            let unbacked = u.backup.is_none();
            let _ = write!(
                h,
                "<div class=\"unit{}\"><div class=\"unit-head\"><code class=\"unit-name\">{}</code>{}\
                 <span class=\"chip{}\">{} missing</span><span class=\"chip{}\">{} extra</span><span class=\"chip{}\">{} changed</span>\
                 <span class=\"keys-count\">{} keys before, {} after</span></div>",
                if unbacked { " unbacked" } else { "" },
                E(&u.name),
                if unbacked { "<span class=\"warn\">not backed up by the plan</span>" } else { "" },
                if u.diff.missing > 0 { " bad" } else { "" },
                u.diff.missing,
                if u.diff.extra > 0 { " bad" } else { "" },
                u.diff.extra,
                if u.diff.changed > 0 { " bad" } else { "" },
                u.diff.changed,
                u.keys_before,
                u.keys_after,
            );
            if !u.diff.is_empty() {
                h.push_str("<div class=\"keycols\">");
                key_list(h, "missing", u.diff.missing, &u.diff.missing_keys);
                key_list(h, "extra", u.diff.extra, &u.diff.extra_keys);
                key_list(h, "changed", u.diff.changed, &u.diff.changed_keys);
                h.push_str("</div>");
            }
            h.push_str("</div>\n");
        }
        let same = l.units.len() - shown.len();
        if same > 0 {
            let _ = writeln!(h, "<p class=\"same\">{same} unit(s) identical after the recovery.</p>");
        }
    }
    if !any && r.layers.iter().all(|l| l.units.is_empty()) {
        h.push_str("<p class=\"same\">No unit was inventoried.</p>\n");
    }
    h.push_str("</section>\n");
}

fn problems(h: &mut String, r: &DrillReport) {
    h.push_str("<section id=\"problems\">\n<h2>Problems</h2>\n");
    let with: Vec<&LayerReport> = r.layers.iter().filter(|l| !l.problems.is_empty()).collect();
    if with.is_empty() {
        h.push_str("<p class=\"same\">None: every layer recovered in time with every key.</p>\n");
    }
    for l in with {
        let v = verdict_class(l.verdict);
        let _ = write!(
            h,
            "<div class=\"problems {v}\"><h3>{} <span class=\"pill {v}\">{}</span></h3><ul>",
            E(l.layer.as_str()),
            verdict_word(l.verdict)
        );
        for p in &l.problems {
            let _ = write!(h, "<li>{}</li>", E(p));
        }
        h.push_str("</ul></div>\n");
    }
    h.push_str("</section>\n");
}

fn units_table(h: &mut String, r: &DrillReport) {
    h.push_str(
        "<section id=\"units\">\n<h2>Units</h2>\n<table>\n<thead><tr><th>Layer</th><th>Unit</th><th>Backup</th>\
         <th class=\"num\">Keys before</th><th class=\"num\">Keys after</th><th>Content before = after</th></tr></thead>\n<tbody>\n",
    );
    for l in &r.layers {
        for u in &l.units {
            let same = u.content_before == u.content_after;
            let backup = match &u.backup {
                Some(b) => format!("<code>{}</code>", E(b)),
                None => "<span class=\"warn\">none: not in the plan</span>".into(),
            };
            let _ = writeln!(
                h,
                "<tr{}><td>{}</td><td><code>{}</code></td><td>{backup}</td><td class=\"num\">{}</td><td class=\"num{}\">{}</td>\
                 <td class=\"{}\" title=\"before {}&#10;after {}\">{}</td></tr>",
                if u.backup.is_none() { " class=\"unbacked\"" } else { "" },
                E(l.layer.as_str()),
                E(&u.name),
                u.keys_before,
                if u.keys_after != u.keys_before { " bad" } else { "" },
                u.keys_after,
                if same { "ok" } else { "bad" },
                E(&u.content_before),
                E(&u.content_after),
                if same { "yes" } else { "no" }
            );
        }
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
}

fn steps_table(h: &mut String, r: &DrillReport) {
    let failed = r.steps.iter().filter(|s| !s.ok).count();
    let _ = writeln!(
        h,
        "<section id=\"steps\">\n<details{}><summary>All {} steps ({failed} failed)</summary>\n<table>\n<thead><tr><th>Layer</th><th>Kind</th><th>Step</th>\
         <th class=\"num\">Start</th><th class=\"num\">Took</th><th>Result</th></tr></thead>\n<tbody>",
        if failed > 0 { " open" } else { "" },
        r.steps.len()
    );
    for s in &r.steps {
        let _ = writeln!(
            h,
            "<tr{}><td>{}</td><td><span class=\"sw\" style=\"background:{}\"></span>{}</td><td>{}</td><td class=\"num\">T+{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            if s.ok { "" } else { " class=\"failed\"" },
            E(s.layer.as_str()),
            kind_colour(&s.kind),
            E(&s.kind),
            E(&s.name),
            E(&dur(offset(r.started_at, s.started_at))),
            E(&dur(offset(s.started_at, s.finished_at))),
            if s.ok { "ok".to_string() } else { format!("<strong>failed</strong>: {}", E(&s.detail)) }
        );
    }
    h.push_str("</tbody>\n</table>\n</details>\n</section>\n");
}

/// The page's style: readable on screen and on paper, no external fonts.
const CSS: &str = r#"
:root { --pass:#1a7f37; --fail:#cf222e; --skip:#8b949e; --ink:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg:#f6f8fa; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color:var(--ink); background:#fff; }
main { max-width: 1180px; margin: 0 auto; padding: 0 24px 32px; }
header.top { display:flex; gap:28px; align-items:center; padding:24px max(24px, calc((100% - 1132px) / 2)); border-bottom:1px solid var(--line); background:var(--bg); }
header.top.pass { border-top:6px solid var(--pass); }
header.top.fail { border-top:6px solid var(--fail); }
.badge { font-size:44px; font-weight:800; letter-spacing:2px; color:#fff; padding:14px 30px; border-radius:12px; min-width:170px; text-align:center; }
.badge.pass { background:var(--pass); } .badge.fail { background:var(--fail); } .badge.skipped { background:var(--skip); }
h1 { margin:0 0 2px; font-size:26px; }
.summary { margin:0 0 10px; color:var(--muted); }
dl { display:flex; flex-wrap:wrap; gap:6px 28px; margin:0; }
dl div { min-width:0; } dt { font-size:11px; text-transform:uppercase; letter-spacing:.06em; color:var(--muted); } dd { margin:0; font-weight:500; overflow-wrap:anywhere; }
h2 { font-size:19px; margin:30px 0 10px; padding-bottom:4px; border-bottom:1px solid var(--line); }
h3 { font-size:15px; margin:16px 0 8px; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:7px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
thead th { font-size:12px; color:var(--muted); font-weight:600; background:var(--bg); }
.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.none { color:var(--skip); }
td.target { color:var(--muted); }
td.over { color:var(--fail); font-weight:700; } td.within { color:var(--pass); font-weight:600; }
.gauge { height:4px; background:#e6e9ed; border-radius:2px; margin-top:3px; min-width:70px; }
.gauge div { height:100%; border-radius:2px; background:var(--pass); } td.over .gauge div { background:var(--fail); }
table.layers th[scope=row] { white-space:nowrap; }
tr.skipped th, tr.skipped td { color:var(--skip); background:#fafbfc; }
tr.skipped td.note { font-style:italic; }
td.note { color:var(--muted); font-size:13px; }
.bad { color:var(--fail); font-weight:700; } .ok { color:var(--pass); }
.pill { display:inline-block; font-size:11px; font-weight:700; letter-spacing:.05em; padding:2px 9px; border-radius:10px; color:#fff; vertical-align:middle; }
.pill.pass { background:var(--pass); } .pill.fail { background:var(--fail); } .pill.skipped { background:var(--skip); }
svg.timeline { width:100%; height:auto; display:block; border:1px solid var(--line); border-radius:6px; background:#fff; }
svg .lane { fill:#fff; } svg .lane.odd { fill:#f6f8fa; } svg .lane.skipped { fill:#eef0f2; }
svg .lane-label { font-weight:600; font-size:13px; fill:var(--ink); }
svg .lane-sub { font-size:11px; font-weight:700; } svg .lane-sub.pass { fill:var(--pass); } svg .lane-sub.fail { fill:var(--fail); } svg .lane-sub.skipped { fill:var(--skip); }
svg .skip-reason { fill:var(--skip); font-style:italic; paint-order:stroke; stroke:#eef0f2; stroke-width:5px; stroke-linejoin:round; }
svg .grid { stroke:#e3e7eb; stroke-width:1; } svg .axis { stroke:#8c959f; stroke-width:1; }
svg .tick { fill:var(--muted); font-size:11px; } svg .axis-title { fill:var(--muted); font-size:11px; }
svg .step { stroke:rgba(0,0,0,.25); stroke-width:.5; } svg .step:hover { stroke:#000; stroke-width:1.5; }
svg .step.failed { stroke:var(--fail); stroke-width:2.5; }
svg .rto-band { fill:rgba(26,127,55,.08); }
svg .rto-target { stroke:var(--pass); stroke-width:2; stroke-dasharray:5 3; } svg path.rto-target { fill:var(--pass); stroke:none; }
svg .rto-label { fill:var(--pass); font-size:11px; font-weight:600; }
svg .healthy line { stroke:var(--pass); stroke-width:2; } svg .healthy circle { fill:var(--pass); stroke:#fff; stroke-width:1.5; }
svg .healthy.over line { stroke:var(--fail); } svg .healthy.over circle { fill:var(--fail); }
svg .failure-line line { stroke:var(--fail); stroke-width:2; stroke-dasharray:6 3; }
svg .failure-line text { fill:var(--fail); font-weight:700; font-size:12px; }
.legend { list-style:none; display:flex; flex-wrap:wrap; gap:6px 18px; padding:0; margin:10px 0 0; font-size:13px; }
.legend small { color:var(--muted); }
.sw { display:inline-block; width:14px; height:12px; border-radius:2px; margin-right:6px; vertical-align:-1px; }
.sw.failed { background:#fff; border:2.5px solid var(--fail); }
.sw.fline { width:0; height:14px; border-left:2px dashed var(--fail); border-radius:0; }
.sw.band { background:rgba(26,127,55,.15); border-right:2px dashed var(--pass); }
.sw.dot { width:10px; height:10px; border-radius:50%; background:var(--pass); }
.unit { border:1px solid var(--line); border-radius:6px; padding:10px 12px; margin:8px 0; }
.unit.unbacked { border-color:#d4a72c; background:#fff8c5; border-left:5px solid #d4a72c; }
.unit-head { display:flex; flex-wrap:wrap; gap:8px; align-items:center; }
.unit-name { font-weight:700; font-size:14px; }
.warn { background:#d4a72c; color:#fff; font-size:11px; font-weight:700; padding:2px 8px; border-radius:10px; }
.chip { font-size:12px; padding:1px 8px; border-radius:10px; background:#eef1f4; color:var(--muted); }
.chip.bad { background:#ffebe9; color:var(--fail); }
.keys-count { color:var(--muted); font-size:12px; margin-left:auto; }
.keycols { display:grid; grid-template-columns:repeat(auto-fit, minmax(280px, 1fr)); gap:10px; margin-top:8px; }
.keys h4 { margin:0 0 4px; font-size:12px; text-transform:uppercase; letter-spacing:.05em; color:var(--muted); }
.keys .count { color:var(--fail); }
.keys ul { margin:0; padding-left:18px; max-height:260px; overflow:auto; }
.keys li { margin:1px 0; } .keys li.more { color:var(--muted); list-style:none; margin-left:-18px; }
code { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; overflow-wrap:anywhere; }
.problems { border-left:4px solid var(--fail); padding:2px 14px; margin:10px 0; background:#fff5f5; border-radius:0 6px 6px 0; }
.problems.skipped { border-left-color:var(--skip); background:var(--bg); color:var(--muted); }
.problems.pass { border-left-color:var(--pass); background:#f2fbf4; }
.problems ul { margin:0 0 10px; padding-left:20px; } .problems li { margin:4px 0; }
tr.unbacked td { background:#fff8c5; }
tr.failed td { background:#fff5f5; }
p.same { color:var(--muted); margin:6px 0; }
details summary { cursor:pointer; font-size:19px; font-weight:600; margin:30px 0 10px; padding-bottom:4px; border-bottom:1px solid var(--line); }
footer { max-width:1180px; margin:0 auto; padding:16px 24px 28px; color:var(--muted); font-size:12px; border-top:1px solid var(--line); }
@media print { header.top { background:none; } .keys ul { max-height:none; } details:not([open]) { display:none; } }
"#;
