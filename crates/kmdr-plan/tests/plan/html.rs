//! The drill report's HTML page, from a report built by hand: a passing
//! layer, a failing one whose diff lists a hostile key, a skipped one.
//!
//! Set `KMDR_HTML_SAMPLE=/some/file.html` to also write the sample page
//! there, and its 3-second and 3-hour variants next to it as
//! `file-x1.html` and `file-x3600.html` (to look at them in a browser).

use chrono::{DateTime, Duration, TimeZone, Utc};
use kmdr_core::Layer;
use kmdr_datastore::inventory::KeyDiff;
use kmdr_plan::html::html;
use kmdr_plan::report::{DrillReport, LayerReport, REPORT_FORMAT, StepRecord, UnitReport, Verdict};

const HOSTILE: &str = "/t2/configmaps/<script>alert(1)</script>&\"x'";

fn at(start: DateTime<Utc>, ms: i64) -> DateTime<Utc> {
    start + Duration::milliseconds(ms)
}

/// A step from `from` to `to` milliseconds after `start`.
fn step(
    start: DateTime<Utc>,
    layer: Layer,
    kind: &str,
    name: &str,
    from: i64,
    to: i64,
    detail: Option<&str>,
) -> StepRecord {
    StepRecord {
        layer,
        kind: kind.into(),
        name: name.into(),
        started_at: at(start, from),
        finished_at: at(start, to),
        ok: detail.is_none(),
        detail: detail.unwrap_or_default().into(),
    }
}

fn unit(name: &str, keys: u64, backup: Option<&str>, diff: KeyDiff) -> UnitReport {
    UnitReport {
        name: name.into(),
        keys_before: keys,
        keys_after: keys - diff.missing + diff.extra,
        content_before: "c0ffee".into(),
        content_after: if diff.is_empty() { "c0ffee".into() } else { "deadbeef".into() },
        backup: backup.map(Into::into),
        diff,
    }
}

/// A drill of `scale` times 3 seconds: 12 steps, one failed.
fn report(scale: i64) -> DrillReport {
    let start = Utc.with_ymd_and_hms(2025, 3, 14, 9, 26, 53).unwrap();
    let ms = |v: i64| v * scale;
    let (uc, tcp) = (Layer::UnderCluster, Layer::TenantControlPlanes);
    let steps = vec![
        step(start, uc, "inventory", "etcd keyspace", ms(0), ms(40), None),
        step(start, uc, "backup", "etcd snapshot", ms(40), ms(310), None),
        step(start, tcp, "inventory", "shared-etcd/t1", ms(310), ms(330), None),
        step(start, tcp, "backup", "shared-etcd/t1", ms(330), ms(520), None),
        step(start, tcp, "inventory", "shared-etcd/t2", ms(520), ms(535), None),
        step(start, tcp, "failure", "wipe shared-etcd/t1", ms(600), ms(640), None),
        step(start, uc, "failure", "stop etcd and lose its data dir", ms(650), ms(900), None),
        step(start, uc, "restore", "etcd snapshot", ms(900), ms(1400), None),
        step(start, uc, "run", "start etcd on the restored data dir", ms(1400), ms(1900), None),
        step(start, uc, "health", "etcd answers", ms(1900), ms(1950), None),
        step(
            start,
            tcp,
            "restore",
            "shared-etcd/t1",
            ms(1950),
            ms(2300),
            Some("import into t1: connection reset by peer <eof>"),
        ),
        step(start, tcp, "compare", "shared-etcd/t2", ms(2300), ms(2900), None),
    ];
    let failure_at = at(start, ms(600));
    let hostile = KeyDiff {
        missing: 25,
        extra: 0,
        changed: 1,
        missing_keys: vec![HOSTILE.into(), "/t2/configmaps/kube-system/cm-1".into()],
        extra_keys: vec![],
        changed_keys: vec!["/t2/configmaps/kube-system/cm-7".into()],
    };
    DrillReport {
        format: REPORT_FORMAT,
        plan: "lab <one> & \"two\"".into(),
        plan_file: "kmdr.yaml".into(),
        repository: "s3://dr-backups/lab".into(),
        started_at: start,
        failure_at: Some(failure_at),
        finished_at: at(start, ms(3000)),
        verdict: Verdict::Fail,
        layers: vec![
            LayerReport {
                layer: uc,
                verdict: Verdict::Pass,
                rto_target_s: 300,
                rpo_target_s: 3600,
                rto_s: Some(1.38 * scale as f64),
                rpo_s: Some(0.56 * scale as f64),
                units: vec![unit("etcd", 50, Some("4f1c2a9be07d3c11aa"), KeyDiff::default())],
                problems: vec![],
            },
            LayerReport {
                layer: Layer::Platform,
                verdict: Verdict::Skipped,
                rto_target_s: 7200,
                rpo_target_s: 900,
                rto_s: None,
                rpo_s: None,
                units: vec![],
                problems: vec!["this plan names no source for this layer: add `helm:` (the platform's release) to drill it".into()],
            },
            LayerReport {
                layer: tcp,
                verdict: Verdict::Fail,
                rto_target_s: 600,
                rpo_target_s: 300,
                rto_s: None,
                rpo_s: Some(0.27 * scale as f64),
                units: vec![
                    unit("shared-etcd/t1", 120, Some("9e0d77aa01"), KeyDiff::default()),
                    unit("shared-etcd/t2", 80, None, hostile),
                ],
                problems: vec![
                    "the restore of shared-etcd/t1 failed: import into t1: connection reset by peer <eof>".into(),
                    "shared-etcd/t2: 25 keys missing, 0 extra, 1 changed after the recovery; the plan does not back this tenant up: add it to the datastore's `tenants:`".into(),
                ],
            },
        ],
        steps,
        kmdr_version: "0.1.0".into(),
    }
}

/// The `<svg …>…</svg>` part of the page.
fn svg(page: &str) -> &str {
    let from = page.find("<svg").expect("the page has a chart");
    let to = page[from..].find("</svg>").expect("the chart is closed") + from;
    &page[from..to]
}

#[test]
fn the_page_is_self_contained_escaped_and_complete() {
    let r = report(1);
    let page = html(&r);
    if let Ok(path) = std::env::var("KMDR_HTML_SAMPLE") {
        std::fs::write(&path, &page).unwrap();
    }
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.trim_end().ends_with("</html>"));

    // Self-contained: nothing is loaded from anywhere, no script at all.
    let lower = page.to_lowercase();
    for bad in [
        "src=\"http",
        "src='http",
        "href=\"http",
        "href='http",
        "<script",
        "<link",
        "@import",
        "url(",
        "<iframe",
        "<img",
    ] {
        assert!(!lower.contains(bad), "the page must not contain {bad}");
    }
    assert!(!lower.contains("http://") && !lower.contains("https://"), "no address at all");

    // The hostile key and the plan name are escaped, never raw.
    assert!(!page.contains(HOSTILE));
    assert!(!page.contains("<script>alert"));
    assert!(page.contains("/t2/configmaps/&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;x&#39;"));
    assert!(page.contains("lab &lt;one&gt; &amp; &quot;two&quot;"));
    assert!(!page.contains("lab <one>"));
    assert!(page.contains("connection reset by peer &lt;eof&gt;"));

    // Verdicts and every layer.
    assert!(page.contains("<div class=\"badge fail\">FAIL</div>"));
    for l in &r.layers {
        assert!(page.contains(l.layer.as_str()), "{} appears", l.layer);
    }
    assert!(page.contains(">PASS<") && page.contains(">SKIPPED<"));
    assert!(page.contains("this plan names no source for this layer"), "the skipped layer says why");
    assert!(page.contains("2025-03-14 09:26:53 UTC") && page.contains("s3://dr-backups/lab"));

    // Human durations and "—" for what was not measured.
    assert!(page.contains(">5m 00s<"), "the under-cluster RTO target");
    assert!(page.contains(">1.4s<"), "the under-cluster RTO measured");
    assert!(page.contains("<td class=\"num none\">—</td>"));

    // The diff: counts, listed keys, "and more", the unit not backed up.
    assert!(page.contains("25 missing") && page.contains("1 changed"));
    assert!(page.contains("… and 23 more"));
    assert!(page.contains(
        "<div class=\"unit unbacked\"><div class=\"unit-head\"><code class=\"unit-name\">shared-etcd/t2</code>"
    ));
    assert!(page.contains("the plan does not back this tenant up"), "problems are listed");

    // The chart: one bar per step, the failed one marked, the failure line,
    // an RTO target per recovered-or-failed layer (not the skipped one).
    let chart = svg(&page);
    assert_eq!(chart.matches("<rect class=\"step").count(), r.steps.len());
    assert_eq!(chart.matches("<rect class=\"step failed\"").count(), 1);
    assert!(
        chart.contains("FAILED: import into t1: connection reset by peer &lt;eof&gt;"),
        "the failed step's tooltip"
    );
    assert_eq!(chart.matches("class=\"failure-line\"").count(), 1);
    assert_eq!(chart.matches("class=\"rto-target").count(), 2);
    assert_eq!(chart.matches("class=\"rto-band\"").count(), 2);
    assert!(chart.contains("skipped: this plan names no source for this layer"));
    assert!(chart.contains("healthy after 1.4s"), "the passing layer's healthy marker");
}

/// Bars' widths and the positions of ticks, from the chart.
fn widths(chart: &str) -> Vec<f64> {
    chart
        .split("<rect class=\"step")
        .skip(1)
        .map(|b| {
            let w = b.split("width=\"").nth(1).unwrap();
            w[..w.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

#[test]
fn the_chart_reads_for_a_drill_of_seconds_and_of_hours() {
    // 3 seconds and 3 hours: every bar visible, a handful of ticks.
    for (scale, tick) in [(1, ">500ms<"), (3600, ">1h<")] {
        let r = report(scale);
        let page = html(&r);
        if let Ok(path) = std::env::var("KMDR_HTML_SAMPLE") {
            std::fs::write(path.replace(".html", &format!("-x{scale}.html")), &page).unwrap();
        }
        let chart = svg(&page);
        let w = widths(chart);
        assert_eq!(w.len(), r.steps.len());
        assert!(w.iter().all(|w| *w >= 4.0), "every bar at least 4 units wide at scale {scale}: {w:?}");
        let ticks = chart.matches("class=\"tick\"").count();
        assert!((4..=12).contains(&ticks), "{ticks} ticks at scale {scale}");
        assert!(chart.contains(tick), "a tick {tick} at scale {scale}");
        // At 3 seconds the 5m and 10m targets are far beyond the drill:
        // arrows; at 3 hours they are inside it: dashed lines.
        let beyond = chart.matches("rto-target beyond").count();
        assert_eq!(beyond, if scale == 1 { 2 } else { 0 }, "targets beyond the axis at scale {scale}");
    }
}
