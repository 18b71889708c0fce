//! The Grafana dashboard (deploy/grafana/kmdr-dashboard.json): it is a
//! dashboard Grafana imports (panels with PromQL targets on the `datasource`
//! variable, unique ids), it shows what the issue asks for (RPO against
//! target, restorable age, delta lag, backup durations and bytes, failures),
//! and every metric any panel queries is served by `/metrics` of a running
//! `kmdr serve` (against a real etcd, with a restore proof schedule and the
//! Lease on the test API server, so every family has samples). The metric
//! names come out of the expressions by a small PromQL tokenizer
//! ([`metric_names`]), never from a list kept by hand.

use crate::common;
use crate::serve::{Serve, http_get, runtime, write_plan_for};
use common::real_kube;
use common::{Etcd, Kmdr};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub(crate) fn dashboard_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/kmdr-dashboard.json")
}

fn dashboard() -> Value {
    let path = dashboard_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel, those inside collapsed rows too.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// Every PromQL expression of every panel, with its panel's title.
fn exprs(d: &Value) -> Vec<(String, String)> {
    panels(d)
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap_or_default().to_string()))
        })
        .collect()
}

/// PromQL's aggregation operators: an identifier followed by a grouping
/// clause (`sum by (x) (...)`) before its parenthesis.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
/// Keywords and literals that are not metric names.
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"];

/// The metric names a PromQL expression selects: every identifier that is not
/// a function or aggregation, a keyword, a label name (inside `{...}` or in
/// the list after `by`, `on`, `group_left`...), inside a range `[...]`, a
/// string, a number or duration, or a Grafana variable (`$unit`,
/// `${datasource}`, `$__rate_interval`).
pub(crate) fn metric_names(expr: &str) -> BTreeSet<String> {
    let s: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // The index just past the bracket closing the one at `open`, skipping strings.
    let skip_group = |open: usize, close: char| -> usize {
        let opening = s[open];
        let (mut depth, mut j) = (0usize, open);
        while j < s.len() {
            match s[j] {
                '"' | '\'' | '`' => j = skip_string(&s, j) - 1,
                c if c == opening => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return j + 1;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        panic!("unbalanced {opening} in {expr}");
    };
    let next_non_space = |from: usize| (from..s.len()).find(|&j| !s[j].is_whitespace());
    while i < s.len() {
        let c = s[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&s, i);
        } else if c == '{' {
            i = skip_group(i, '}');
        } else if c == '[' {
            i = skip_group(i, ']');
        } else if c == '#' {
            i = (i..s.len()).find(|&j| s[j] == '\n').unwrap_or(s.len());
        } else if c == '$' {
            i += 1;
            if s.get(i) == Some(&'{') {
                i = skip_group(i, '}');
            } else {
                while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || (c == '.' && s.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            // A number, or a duration such as 5m or 1h30m.
            while i < s.len() && (s[i].is_alphanumeric() || s[i] == '.' || s[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '_' || s[i] == ':') {
                i += 1;
            }
            let word: String = s[start..i].iter().collect();
            let next = next_non_space(i);
            let paren_next = next.is_some_and(|j| s[j] == '(');
            if LABEL_LISTS.contains(&word.as_str()) {
                if let Some(j) = next.filter(|_| paren_next) {
                    i = skip_group(j, ')');
                }
            } else if KEYWORDS.contains(&word.as_str()) || AGGREGATIONS.contains(&word.as_str()) || paren_next {
                // A keyword, an aggregation or a function call.
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The index just past the string literal starting at `open`.
fn skip_string(s: &[char], open: usize) -> usize {
    let quote = s[open];
    let mut j = open + 1;
    while j < s.len() {
        if s[j] == '\\' && quote != '`' {
            j += 2;
            continue;
        }
        if s[j] == quote {
            return j + 1;
        }
        j += 1;
    }
    s.len()
}

#[test]
fn the_tokenizer_finds_metric_names_and_nothing_else() {
    let expr = r#"sum by (layer, unit) (rate(kmdr_a_total{layer=~"$layer", unit="x{y}]"}[$__rate_interval]))
        / on(instance) group_left(pod) kmdr_b unless on(instance) (kmdr_leader == 0) or vector(0)
        + 2 * max without (x) (kmdr_c offset 5m) > bool 1e3 and time() - ns:recorded:rule
        # a comment naming not_a_metric
        and topk(3, kmdr_d) and count_values("v", kmdr_e) and ${datasource_like}"#;
    let got: Vec<String> = metric_names(expr).into_iter().collect();
    assert_eq!(got, ["kmdr_a_total", "kmdr_b", "kmdr_c", "kmdr_d", "kmdr_e", "kmdr_leader", "ns:recorded:rule"]);
    assert!(metric_names("vector(1) * 2").is_empty());
}

#[test]
fn the_dashboard_is_grafana_json_with_the_panels_an_operator_needs() {
    let d = dashboard();
    assert!(d["title"].as_str().is_some_and(|t| t.contains("kmdr")));
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty() && u.len() <= 40), "a stable uid: {}", d["uid"]);
    // The data source is a variable, so the sidecar-loaded dashboard works on any Prometheus.
    let vars = d["templating"]["list"].as_array().expect("templating variables");
    assert!(vars.iter().any(|v| v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"));
    let mut ids = BTreeSet::new();
    for p in panels(&d) {
        assert!(ids.insert(p["id"].as_u64().expect("panel id")), "panel id {} twice", p["id"]);
        assert!(p["gridPos"]["w"].as_u64().is_some_and(|w| w > 0 && w <= 24), "{}", p["title"]);
        if p["type"] == "row" {
            continue;
        }
        assert!(p["description"].as_str().is_some_and(|t| !t.is_empty()), "panel {} says what it shows", p["title"]);
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("panel {} has no targets", p["title"]));
        assert!(!targets.is_empty(), "panel {} has no targets", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "panel {}", p["title"]);
            assert!(t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()), "panel {}", p["title"]);
        }
    }
    // What the issue asks the dashboard to show, by the metrics that carry it.
    let queried: BTreeSet<String> = exprs(&d).iter().flat_map(|(_, e)| metric_names(e)).collect();
    for (what, metric) in [
        ("RPO per unit", "kmdr_rpo_seconds"),
        ("against target", "kmdr_rpo_target_seconds"),
        ("newest restorable backup age", "kmdr_restorable_rpo_seconds"),
        ("delta lag", "kmdr_delta_lag_seconds"),
        ("backup durations", "kmdr_backup_duration_seconds"),
        ("backup bytes", "kmdr_backup_bytes"),
        ("failed full backups", "kmdr_backup_failures_total"),
        ("failed restore proofs", "kmdr_verify_failures_total"),
        ("failed delta captures", "kmdr_delta_failures_total"),
    ] {
        assert!(queried.contains(metric), "no panel shows {what} ({metric}); queried: {queried:?}");
    }
    // Per layer and unit: the series the RPO panels draw keep both labels.
    let rpo = exprs(&d).into_iter().find(|(t, _)| t == "RPO per unit").expect("panel RPO per unit").1;
    assert!(rpo.contains("by (layer, unit)"), "{rpo}");
}

/// A metric with at least one sample line in a Prometheus text exposition.
fn has_sample(metrics: &str, name: &str) -> bool {
    metrics.lines().any(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
}

#[test]
fn every_metric_the_dashboard_queries_is_served_by_a_running_serve() {
    need_etcd!();
    let Some(s) = real_kube::server() else { return };
    const NS: &str = "db-kmdr";
    s.create_namespace(NS).unwrap();
    let d = dashboard();
    let queried: BTreeSet<String> = exprs(&d).iter().flat_map(|(_, e)| metric_names(e)).collect();
    assert!(queried.len() >= 10, "the tokenizer found only {queried:?}");

    // A tenant of a real etcd (full backups and delta capture), restore
    // proofs every second, and the Lease: every family then has samples.
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let etcd = Etcd::start(dir.path(), "src");
    runtime().block_on(etcd.load("/t1/pods/default/web-", 20, 64, 7));
    let plan = write_plan_for(dir.path(), &k, &etcd.client_url.replace("http://", "etcd://"));
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(&plan, format!("{text}verify:\n  every: 1s\n  sample: 1\n")).unwrap();
    let log = dir.path().join("serve.log");
    let kubeconfig = s.kubeconfig.display().to_string();
    let lease = format!("{NS}/kmdr-serve");
    let serve =
        Serve::start_with(&k, &plan, &log, &["--lease", &lease, "--lease-identity", "db", "--kubeconfig", &kubeconfig]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let missing = loop {
        let metrics = http_get(&serve.addr, "/metrics").map(|(_, m)| m).unwrap_or_default();
        let missing: Vec<&String> = queried.iter().filter(|m| !has_sample(&metrics, m)).collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let which: Vec<String> = exprs(&d)
        .into_iter()
        .filter(|(_, e)| metric_names(e).iter().any(|m| missing.contains(&m)))
        .map(|(t, e)| format!("{t}: {e}"))
        .collect();
    assert!(
        missing.is_empty(),
        "kmdr serve does not serve {missing:?}, queried by\n{}\n(serve log: {})",
        which.join("\n"),
        log.display()
    );
    serve.terminate();
}
