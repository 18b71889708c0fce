//! `kmdr status` and `kmdr runbook check`: what the repository says about a
//! plan's targets, without touching the platform (status lists live tenants
//! only to find the ones never backed up).
//!
//! Everything is a [`Finding`]: what was checked, about what, a level, and
//! a message that says what to do when it is not OK.

use crate::exec::{latest_units, latest_units_where};
use crate::findings::finding;
pub use crate::findings::{Finding, Level};
use crate::plan::{LayerSource, Plan, Reviewed, TenantSelector};
use crate::report::{DrillReport, Verdict};
use crate::unit;
use chrono::{DateTime, NaiveDate, Utc};
use kmdr_core::{BackupId, Layer, human_duration};
use kmdr_repo::Repository;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a drill stays current: the runbook asks for one every quarter.
pub const DRILL_PERIOD: Duration = Duration::from_secs(92 * 86400);

/// The "restorable RPO" of each unit of a layer kmdr backs up: the age of
/// its newest backup proven restorable (`kmdr verify --restore`) against the
/// RPO target, and a failure when its newest backup was proven unrestorable.
async fn restorable_rpo(
    repo: &Repository,
    spec: &crate::plan::LayerSpec,
    units: &BTreeMap<String, Option<String>>,
    now: DateTime<Utc>,
) -> Result<Vec<Finding>, kmdr_repo::Error> {
    use kmdr_repo::proofs::Outcome;
    if matches!(spec.source, LayerSource::Targets) {
        return Ok(Vec::new());
    }
    let proofs = repo.latest_proofs().await?;
    let proven = latest_units_where(repo, spec, |id| {
        proofs.get(&id.to_string()).is_some_and(|p| p.outcome == Outcome::Restorable)
    })
    .await?;
    let layer = spec.layer;
    let mut out = Vec::new();
    for (unit, newest) in units {
        let subject = format!("{layer} {unit}");
        if let Some(p) = newest.as_ref().and_then(|id| proofs.get(id)).filter(|p| p.outcome == Outcome::Unrestorable) {
            out.push(finding(
                "restorable",
                subject.clone(),
                Level::Fail,
                format!(
                    "newest backup {} does not restore: {}; take a new backup and prove it (`kmdr verify --restore --new`)",
                    p.backup,
                    p.reason.as_deref().unwrap_or("a check failed")
                ),
            ));
        }
        let Some(id) = proven.get(unit).and_then(|i| i.parse::<BackupId>().ok()) else {
            if newest.is_some() {
                out.push(finding(
                    "restorable",
                    subject,
                    Level::Warn,
                    "no backup of it is proven restorable: run `kmdr verify --restore --new`",
                ));
            }
            continue;
        };
        let a = age(now, id.time());
        let (level, msg) = if a <= spec.rpo {
            (
                Level::Ok,
                format!(
                    "newest backup proven restorable, {id}, is {} old (RPO target {})",
                    human_duration(a),
                    human_duration(spec.rpo)
                ),
            )
        } else {
            (
                Level::Warn,
                format!(
                    "newest backup proven restorable, {id}, is {} old, over the RPO target of {}: prove newer ones (`kmdr verify --restore --new`, or serve's schedule)",
                    human_duration(a),
                    human_duration(spec.rpo)
                ),
            )
        };
        out.push(finding("restorable", subject, level, msg));
    }
    Ok(out)
}

fn age(now: DateTime<Utc>, t: DateTime<Utc>) -> Duration {
    (now - t).to_std().unwrap_or_default()
}

/// The newest stored drill report.
pub async fn last_drill(repo: &Repository) -> Result<Option<DrillReport>, kmdr_repo::Error> {
    let Some(name) = repo.list_reports().await?.into_iter().rev().find(|n| n.ends_with("-drill.json")) else {
        return Ok(None);
    };
    let json = repo.get_report(&name).await?;
    Ok(serde_json::from_slice(&json).ok())
}

/// Per layer and unit: the newest backup's age against the RPO target; the
/// last drill's result and age, its measured RTO against the target.
pub async fn status(plan: &Plan, repo: &Repository, now: DateTime<Utc>) -> Result<Vec<Finding>, kmdr_repo::Error> {
    let mut out = Vec::new();
    let drill = last_drill(repo).await?;
    for spec in &plan.layers {
        let layer = spec.layer;
        if matches!(spec.source, LayerSource::Targets) {
            out.push(finding(
                "rpo",
                layer.as_str(),
                Level::Warn,
                "this plan names no source for this layer (platform: `helm:`, persistent-data: `volumes:`): its RPO is not measured",
            ));
            continue;
        }
        if let LayerSource::Volumes(entries) = &spec.source {
            let latest = latest_units(repo, spec).await?;
            out.extend(volume_rpo(plan, repo, spec, entries, &latest, now).await?);
            let mut units: BTreeMap<String, Option<String>> = latest.into_iter().map(|(u, id)| (u, Some(id))).collect();
            for v in entries {
                units.entry(v.unit()).or_insert(None);
            }
            out.extend(restorable_rpo(repo, spec, &units, now).await?);
        } else {
            let latest = latest_units(repo, spec).await?;
            let mut units: BTreeMap<String, Option<String>> =
                latest.iter().map(|(u, id)| (u.clone(), Some(id.clone()))).collect();
            for u in unit::named_units(spec) {
                units.entry(u.name()).or_insert(None);
            }
            for d in unit::datastores(spec).iter().filter(|d| matches!(d.tenants, TenantSelector::All)) {
                match tokio::time::timeout(Duration::from_secs(15), unit::datastore_units(d)).await {
                    Ok(Ok(live)) => {
                        for u in live {
                            units.entry(u.name()).or_insert(None);
                        }
                    }
                    Ok(Err(e)) => out.push(finding(
                        "rpo",
                        format!("{}/*", d.name),
                        Level::Warn,
                        format!("cannot list its tenants live ({e}): tenants never backed up are not shown"),
                    )),
                    Err(_) => out.push(finding(
                        "rpo",
                        format!("{}/*", d.name),
                        Level::Warn,
                        "no answer within 15s listing its tenants: tenants never backed up are not shown",
                    )),
                }
            }
            if units.is_empty() {
                units.insert("(no tenant)".into(), None);
            }
            out.extend(restorable_rpo(repo, spec, &units, now).await?);
            for (unit, id) in units {
                let subject = format!("{layer} {unit}");
                match id.and_then(|i| i.parse::<BackupId>().ok()) {
                    None => out.push(finding(
                        "rpo",
                        subject,
                        Level::Fail,
                        format!("no backup at all: run `kmdr backup --plan {} --layer {layer}`", plan.file.display()),
                    )),
                    Some(id) => {
                        let (point, what) = match protected_by_deltas(repo, &id).await? {
                            Ok(Some((t, n))) => (
                                t.max(id.time()),
                                format!("newest point held, {n} delta segments after backup {id}, is"),
                            ),
                            Ok(None) => (id.time(), format!("newest backup {id} is")),
                            Err(gap) => {
                                out.push(finding("delta-chain", subject.clone(), Level::Fail, format!("{gap}; `kmdr serve` resumes the chain only from a new full backup: take one now")));
                                (id.time(), format!("newest backup {id} is"))
                            }
                        };
                        let a = age(now, point);
                        let (level, msg) = if a <= spec.rpo {
                            (
                                Level::Ok,
                                format!("{what} {} old (RPO target {})", human_duration(a), human_duration(spec.rpo)),
                            )
                        } else {
                            (
                                Level::Fail,
                                format!(
                                    "{what} {} old, over the RPO target of {}: back it up now and schedule backups more often (or run `kmdr serve`)",
                                    human_duration(a),
                                    human_duration(spec.rpo)
                                ),
                            )
                        };
                        out.push(finding("rpo", subject, level, msg));
                    }
                }
            }
        }
        match drill.as_ref().and_then(|d| d.layers.iter().find(|l| l.layer == layer).map(|l| (d, l))) {
            None => out.push(finding(
                "rto",
                layer.as_str(),
                Level::Warn,
                format!(
                    "never drilled: run `kmdr drill --plan {}` on a lab or a platform you may break",
                    plan.file.display()
                ),
            )),
            Some((d, l)) => {
                let a = age(now, d.started_at);
                let rto = l
                    .rto_s
                    .map(|s| human_duration(Duration::from_secs_f64(s)))
                    .unwrap_or_else(|| "not measured".into());
                let level = match l.verdict {
                    Verdict::Pass if a <= DRILL_PERIOD => Level::Ok,
                    Verdict::Pass | Verdict::Skipped => Level::Warn,
                    Verdict::Fail => Level::Fail,
                };
                out.push(finding(
                    "rto",
                    layer.as_str(),
                    level,
                    format!(
                        "last drill {:?} {} ago: RTO {rto} (target {}){}",
                        l.verdict,
                        human_duration(a),
                        human_duration(spec.rto),
                        if level == Level::Ok {
                            String::new()
                        } else {
                            ": drill again and fix what the report names".into()
                        }
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// The newest point the delta segments after full backup `id` hold without
/// a gap: (when the newest segment was written, how many segments), `None`
/// when no segment continues it, a [`ChainGap`] when they do with a hole.
async fn protected_by_deltas(
    repo: &Repository,
    id: &BackupId,
) -> Result<Result<Option<(DateTime<Utc>, usize)>, kmdr_repo::ChainGap>, kmdr_repo::Error> {
    let m = repo.load_manifest(id).await?;
    let Some(base) = kmdr_repo::point::base_revision(&m) else { return Ok(Ok(None)) };
    let segments = kmdr_repo::point::continuing_segments(&m, base, &repo.list_segments(Some(&m.series)).await?);
    let Some(last) = segments.iter().map(|s| s.last).max() else { return Ok(Ok(None)) };
    Ok(kmdr_repo::deltas::plan_chain(&segments, &m.series, base, last)
        .map(|chain| chain.iter().map(|s| s.written).max().map(|t| (t, chain.len()))))
}

/// Per volumes entry: the newest completed volume backup, from the
/// repository's records and from the tool itself (its own schedules'
/// backups count), against the layer's RPO.
async fn volume_rpo(
    plan: &Plan,
    repo: &Repository,
    spec: &crate::plan::LayerSpec,
    entries: &[crate::plan::VolumeSpec],
    latest: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Vec<Finding>, kmdr_repo::Error> {
    let layer = spec.layer;
    let mut out = Vec::new();
    for v in entries {
        let subject = format!("{layer} {}", v.unit());
        // (point in time, what, taken by)
        let mut best: Option<(DateTime<Utc>, String, String)> = None;
        if let Some(id) = latest.get(&v.unit()) {
            let m = repo.load_manifest(&repo.resolve(id, Some(kmdr_kube::volumes::KIND)).await?).await?;
            if let Ok(r) = kmdr_kube::volumes::record(&m, &v.entry.name) {
                let what = r
                    .items
                    .first()
                    .map(|i| {
                        format!(
                            "{} {}{}",
                            i.kind,
                            i.namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default(),
                            i.name
                        )
                    })
                    .unwrap_or_default();
                best = Some((r.point_in_time, format!("{what} (recorded in {id})"), r.taken_by.clone()));
            }
        }
        let live = async {
            let kube = kmdr_kube::client::KubeClient::connect(&crate::unit::volume_target(v)).await?;
            kmdr_kube::volumes::newest(&kube, &v.entry).await
        };
        match tokio::time::timeout(Duration::from_secs(15), live).await {
            Ok(Ok(Some(n))) => {
                if best.as_ref().is_none_or(|(t, _, _)| n.point_in_time > *t) {
                    best = Some((n.point_in_time, n.object, n.taken_by));
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => out.push(finding(
                "rpo",
                subject.clone(),
                Level::Warn,
                format!("cannot ask {} for its backups ({e}): only kmdr's records count", v.entry.provider.name()),
            )),
            Err(_) => out.push(finding(
                "rpo",
                subject.clone(),
                Level::Warn,
                "the Kubernetes API did not answer within 15s: only kmdr's records count",
            )),
        }
        match best {
            None => out.push(finding(
                "rpo",
                subject,
                Level::Fail,
                format!(
                    "no completed volume backup at all: run `kmdr backup --plan {} --layer {layer}`",
                    plan.file.display()
                ),
            )),
            Some((t, what, by)) => {
                let a = age(now, t);
                let who = if by == "schedule" { "taken by the tool's own schedule" } else { "taken by kmdr" };
                let (level, msg) = if a <= spec.rpo {
                    (
                        Level::Ok,
                        format!(
                            "newest completed volume backup {what}, {who}, is {} old (RPO target {})",
                            human_duration(a),
                            human_duration(spec.rpo)
                        ),
                    )
                } else {
                    (
                        Level::Fail,
                        format!(
                            "newest completed volume backup {what}, {who}, is {} old, over the RPO target of {}: back it up now and schedule backups more often",
                            human_duration(a),
                            human_duration(spec.rpo)
                        ),
                    )
                };
                out.push(finding("rpo", subject, level, msg));
            }
        }
    }
    Ok(out)
}

/// The runbook's monthly review.
pub async fn runbook_check(
    plan: &Plan,
    repo: &Repository,
    now: DateTime<Utc>,
) -> Result<Vec<Finding>, kmdr_repo::Error> {
    let mut out = Vec::new();
    let drill = last_drill(repo).await?;
    // A drill within the last quarter.
    match &drill {
        None => out.push(finding(
            "drill",
            "plan",
            Level::Fail,
            format!(
                "no drill on record: run `kmdr drill --plan {}` (the runbook asks for one every quarter)",
                plan.file.display()
            ),
        )),
        Some(d) => {
            let a = age(now, d.started_at);
            if a > DRILL_PERIOD {
                out.push(finding(
                    "drill",
                    "plan",
                    Level::Fail,
                    format!(
                        "the last drill is {} old: the runbook asks for one every quarter; schedule it",
                        human_duration(a)
                    ),
                ));
            } else {
                out.push(finding(
                    "drill",
                    "plan",
                    if d.verdict == Verdict::Pass { Level::Ok } else { Level::Fail },
                    format!("last drill {} ago: {:?}", human_duration(a), d.verdict),
                ));
            }
        }
    }
    let ids = repo.list_backups().await?;
    for spec in &plan.layers {
        let layer = spec.layer;
        if matches!(spec.source, LayerSource::Targets) {
            out.push(finding("rpo", layer.as_str(), Level::Warn, "not checked: this plan names no source for this layer (platform: `helm:`, persistent-data: `volumes:`); keep its runbook steps and targets under review by hand"));
            continue;
        }
        // RTO achievable: the last measured RTO against the target.
        if let Some(l) = drill.as_ref().and_then(|d| d.layers.iter().find(|l| l.layer == layer)) {
            match l.rto_s {
                Some(r) if r <= spec.rto.as_secs_f64() => out.push(finding(
                    "rto",
                    layer.as_str(),
                    Level::Ok,
                    format!(
                        "measured {} against a target of {}",
                        human_duration(Duration::from_secs_f64(r)),
                        human_duration(spec.rto)
                    ),
                )),
                Some(r) => out.push(finding(
                    "rto",
                    layer.as_str(),
                    Level::Fail,
                    format!(
                        "measured {} is over the target of {}: make the recovery faster or agree a new target",
                        human_duration(Duration::from_secs_f64(r)),
                        human_duration(spec.rto)
                    ),
                )),
                None => out.push(finding(
                    "rto",
                    layer.as_str(),
                    Level::Fail,
                    "the last drill did not recover this layer: fix what its report names and drill again",
                )),
            }
        } else {
            out.push(finding(
                "rto",
                layer.as_str(),
                Level::Fail,
                "no drill measured this layer's RTO: include it in a drill",
            ));
        }
        // RPO achievable: the spacing of the layer's backups, per series.
        let kind = match &spec.source {
            LayerSource::UnderCluster { .. } => "etcd",
            LayerSource::Helm(_) => "platform",
            LayerSource::Volumes(_) => kmdr_kube::volumes::KIND,
            _ => "tenant",
        };
        let mut by_series: BTreeMap<String, Vec<DateTime<Utc>>> = BTreeMap::new();
        // Each layer has its own kind, so each manifest is read once.
        for id in ids.iter().filter(|i| i.kind() == kind).rev().take(500) {
            if let Ok(m) = repo.load_manifest(id).await {
                by_series.entry(m.series.clone()).or_default().push(m.started_at);
            }
        }
        if by_series.is_empty() {
            out.push(finding(
                "rpo",
                layer.as_str(),
                Level::Fail,
                "no backups: an RPO cannot be met without them; schedule `kmdr backup --plan`",
            ));
        }
        for (series, mut times) in by_series {
            times.sort();
            let newest = *times.last().expect("not empty");
            let gaps: Vec<Duration> = times.windows(2).map(|w| age(w[1], w[0])).collect();
            let worst_recent = gaps.iter().rev().take(10).max().copied();
            let subject = format!("{layer} {series}");
            if age(now, newest) > spec.rpo {
                out.push(finding(
                    "rpo",
                    subject,
                    Level::Fail,
                    format!(
                        "the newest backup is {} old, over the RPO target of {}: back up now and more often",
                        human_duration(age(now, newest)),
                        human_duration(spec.rpo)
                    ),
                ));
            } else if let Some(g) = worst_recent.filter(|g| *g > spec.rpo) {
                out.push(finding("rpo", subject, Level::Fail, format!("backups came up to {} apart recently, so the RPO target of {} is not met between them: schedule them more often", human_duration(g), human_duration(spec.rpo))));
            } else if times.len() < 2 {
                out.push(finding(
                    "rpo",
                    subject,
                    Level::Warn,
                    "only one backup: the interval between backups is not known yet",
                ));
            } else {
                out.push(finding(
                    "rpo",
                    subject,
                    Level::Ok,
                    format!(
                        "backups at most {} apart recently, newest {} old (target {})",
                        human_duration(worst_recent.unwrap_or_default()),
                        human_duration(age(now, newest)),
                        human_duration(spec.rpo)
                    ),
                ));
            }
        }
    }
    // Contacts and credentials reviewed within their period.
    let today = now.date_naive();
    for (kind, list) in [("contact", &plan.contacts), ("credential", &plan.credentials)] {
        for r in list.iter() {
            out.push(review(kind, r, today));
        }
    }
    match plan.layer(Layer::Platform).map(|l| &l.source) {
        Some(LayerSource::Helm(h)) => out.push(platform_drift(repo, h).await?),
        _ => out.push(finding(
            "platform-drift",
            Layer::Platform.as_str(),
            Level::Warn,
            "not checked: the plan's platform layer has no `helm:` source",
        )),
    }
    if let Some(LayerSource::UnderCluster { node_files, .. }) = plan.layer(Layer::UnderCluster).map(|l| &l.source) {
        out.extend(crate::node_check::node_files_findings(repo, now, node_files.as_ref()).await?);
    }
    out.push(plan_in_git(&plan.file));
    Ok(out)
}

fn review(kind: &str, r: &Reviewed, today: NaiveDate) -> Finding {
    let due = r.reviewed + chrono::Duration::from_std(r.review_every).unwrap_or_default();
    let subject = format!("{kind} {}", r.name);
    if today > due {
        finding(
            "review",
            subject,
            Level::Fail,
            format!(
                "last reviewed {}, due every {} (since {due}): review it and update `reviewed:` in the plan (line {})",
                r.reviewed,
                human_duration(r.review_every),
                r.pos.line
            ),
        )
    } else {
        finding("review", subject, Level::Ok, format!("reviewed {}, next by {due}", r.reviewed))
    }
}

/// The plan file is tracked in git with no local changes.
fn plan_in_git(file: &std::path::Path) -> Finding {
    let subject = file.display().to_string();
    let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let git = |args: &[&str]| std::process::Command::new("git").arg("-C").arg(dir).args(args).output();
    match git(&["ls-files", "--error-unmatch", &name]) {
        Err(e) => finding(
            "plan-in-git",
            subject,
            Level::Warn,
            format!("cannot run git ({e}): keep the plan under version control"),
        ),
        Ok(o) if !o.status.success() => finding(
            "plan-in-git",
            subject,
            Level::Fail,
            "the plan is not tracked in git: commit it next to the platform's values overlay, as the runbook asks",
        ),
        Ok(_) => match git(&["status", "--porcelain", "--", &name]) {
            Ok(o) if o.stdout.is_empty() => {
                finding("plan-in-git", subject, Level::Ok, "tracked in git, no local changes")
            }
            Ok(_) => {
                finding("plan-in-git", subject, Level::Fail, "the plan has uncommitted changes: review and commit them")
            }
            Err(e) => finding("plan-in-git", subject, Level::Warn, format!("cannot run git ({e})")),
        },
    }
}

/// What is deployed now against what the newest platform backup recorded:
/// chart, chart version, revision, status and the values' top-level keys.
async fn platform_drift(repo: &Repository, h: &crate::plan::HelmSource) -> Result<Finding, kmdr_repo::Error> {
    use crate::unit::{kube_target, platform_options};
    let subject = h.unit();
    let spec = crate::plan::LayerSpec {
        layer: Layer::Platform,
        rto: Duration::ZERO,
        rpo: Duration::ZERO,
        source: LayerSource::Helm(h.clone()),
        pos: Default::default(),
    };
    let Some(id) = latest_units(repo, &spec).await?.remove(&subject) else {
        return Ok(finding(
            "platform-drift",
            subject,
            Level::Fail,
            "no platform backup to compare with: run `kmdr backup --plan FILE --layer platform`",
        ));
    };
    let m = repo.load_manifest(&id.parse().expect("listed ids parse")).await?;
    let kmdr_core::SourceInfo::HelmRelease(saved) = &m.source else {
        return Ok(finding("platform-drift", subject, Level::Warn, format!("backup {id} holds no Helm release")));
    };
    let live = async {
        let kube = kmdr_kube::client::KubeClient::connect(&kube_target(h)).await?;
        kmdr_kube::platform::live_release(&kube, &platform_options(h, &BTreeMap::new())?).await
    };
    let live = match live.await {
        Ok(l) => l,
        Err(e) => {
            return Ok(finding(
                "platform-drift",
                subject,
                Level::Warn,
                format!("cannot read the deployed release ({e}): drift not checked"),
            ));
        }
    };
    let mut changes = Vec::new();
    let mut diff = |what: &str, a: String, b: String| {
        if a != b {
            changes.push(format!("{what} {a} -> {b}"));
        }
    };
    diff("chart", saved.chart.clone(), live.chart.clone());
    diff("version", saved.chart_version.clone(), live.chart_version.clone());
    diff("revision", saved.revision.to_string(), live.revision.to_string());
    diff("status", saved.status.clone(), live.status.clone());
    diff("values keys", saved.values_keys.join(","), live.values_keys.join(","));
    // Backups written before toggles and namespaces were recorded hold none:
    // compare only what the backup knows.
    if !saved.toggles.is_empty() || !saved.namespaces.is_empty() {
        let keys: std::collections::BTreeSet<&String> = saved.toggles.keys().chain(live.toggles.keys()).collect();
        for k in keys {
            let show = |t: Option<&bool>| t.map_or("unset".to_string(), |b| b.to_string());
            diff(&format!("toggle {k}"), show(saved.toggles.get(k)), show(live.toggles.get(k)));
        }
        diff("namespaces", saved.namespaces.join(","), live.namespaces.join(","));
    }
    Ok(if changes.is_empty() {
        finding(
            "platform-drift",
            subject,
            Level::Ok,
            format!(
                "deployed release matches backup {id} (chart {} {}, revision {})",
                live.chart, live.chart_version, live.revision
            ),
        )
    } else {
        finding(
            "platform-drift",
            subject,
            Level::Fail,
            format!(
                "deployed release differs from backup {id}: {}; back the platform up again and review the runbook's values overlay",
                changes.join("; ")
            ),
        )
    })
}
