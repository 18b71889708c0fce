//! `kmdr restore etcd`, `kmdr restore tenant`.

use crate::cli::{GlobalArgs, RestoreArgs, RestoreCommand, RestoreEtcdArgs, RestoreTenantArgs};
use crate::output::{self, Format};
use anyhow::Result;
use kmdr_core::{human_bytes, human_duration};
use kmdr_etcd::point::{PointOutcome, find_etcd_server};
use kmdr_etcd::restorer::{self, EtcdRestoreOptions, PointRestore};
use kmdr_etcd::snapshotter::{KIND, SNAPSHOT_FILE};
use kmdr_repo::point::{Point, PointPlan};
use serde_json::json;

pub async fn run(g: &GlobalArgs, c: RestoreCommand) -> Result<i32> {
    match c {
        RestoreCommand::Etcd(a) => etcd(g, a).await,
        RestoreCommand::Tenant(a) => tenant(g, a).await,
        RestoreCommand::Platform(a) => platform(g, a).await,
        RestoreCommand::NodeFiles(a) => super::node_files::restore(g, a).await,
        RestoreCommand::Tenants(a) => tenants(g, a).await,
    }
}

/// `--at TIME|now` / `--revision R`, when given.
fn parse_point(at: &Option<String>, revision: Option<i64>) -> Result<Option<Point>> {
    Ok(Some(match (at, revision) {
        (_, Some(r)) if r < 1 => return Err(super::UsageError(format!("--revision {r}: revisions start at 1")).into()),
        (_, Some(r)) => Point::Revision(r),
        (Some(t), _) if t == "now" => Point::Latest,
        (Some(t), _) => Point::Time(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|e| {
                    super::UsageError(format!(
                        "--at {t:?} is not a time ({e}): write RFC 3339, e.g. 2026-11-27T08:15:00Z, or `now`"
                    ))
                })?
                .with_timezone(&chrono::Utc),
        ),
        (None, None) => return Ok(None),
    }))
}

fn print_point(p: &PointPlan, base_keys: i64) {
    println!("  point   revision {} of {}", p.revision, p.series);
    println!("  base    {} (full backup at revision {}, {} keys)", p.base, p.base_revision, base_keys);
    println!("  deltas  {} segments after it, replayed up to revision {}", p.segments.len(), p.revision);
}

fn replay_line(r: &PointOutcome) -> String {
    let drift = match r.drift_from {
        None => "every revision kept".to_string(),
        Some(rev) => format!(
            "WARNING: revisions differ from the source's from revision {rev} on (the API server's resourceVersions change)"
        ),
    };
    format!(
        "replayed {} revisions ({} changes) onto the full backup, up to revision {}: {drift}",
        r.revisions, r.events, r.revision
    )
}

/// `kmdr restore etcd`; once it succeeded, which node-files backup the
/// snapshot needs (after the output, so that a failure stays one line).
async fn etcd(g: &GlobalArgs, a: RestoreEtcdArgs) -> Result<i32> {
    let mut pairing = None;
    let code = etcd_restore(g, a, &mut pairing).await?;
    if let Some(p) = &pairing {
        super::node_files::print_pairing(g, p);
    }
    Ok(code)
}

async fn etcd_restore(
    g: &GlobalArgs,
    a: RestoreEtcdArgs,
    pairing_out: &mut Option<kmdr_kube::identity::Pairing>,
) -> Result<i32> {
    let point = parse_point(&a.at, a.revision)?;
    let repo = g.open_repo_to_read("backups to restore them").await?;
    let mut id = repo.resolve(&a.id, Some(KIND)).await?;
    let tool = match (&a.to_file, &point) {
        (Some(_), None) => None,
        _ => Some(kmdr_etcd::find_restore_tool(a.etcdutl.as_deref())?),
    };
    let point = match point {
        None => None,
        Some(p) => {
            let server = find_etcd_server(a.etcd.as_deref(), tool.as_ref().expect("found above"))?;
            let next_to = a.to_file.as_deref().or(a.data_dir.as_deref()).expect("clap requires one");
            let (pr, base) = PointRestore::plan(&repo, &id, p, server, next_to).await?;
            id = base;
            Some(pr)
        }
    };
    // Before anything is written: does the repository keep the CA and keys it needs?
    let snapshot = restorer::load_snapshot_manifest(&repo, &id).await?;
    let pairing = super::node_files::pairing(&repo, &snapshot).await?;
    *pairing_out = Some(pairing.clone());
    if let Some(path) = &a.to_file {
        let m = restorer::load_snapshot_manifest(&repo, &id).await?;
        let f = m.file(SNAPSHOT_FILE).expect("etcd backups hold a snapshot");
        if a.dry_run {
            if g.format == Format::Json {
                output::json(
                    &json!({"backup": id, "to_file": path, "bytes": f.size, "sha256": f.sha256, "point": point, "dry_run": true}),
                );
            } else if let Some(p) = &point {
                println!("point-in-time snapshot plan (dry run, nothing changed):");
                print_point(&p.plan, restorer::snapshot_info(&m).key_count);
                println!("  1. replay them in a scratch etcd {} under {}", p.etcd.version, p.work_dir.display());
                println!("  2. write its snapshot to {}", path.display());
            } else {
                println!(
                    "would write snapshot of {id} ({}, sha256 {}) to {}",
                    human_bytes(f.size),
                    f.sha256,
                    path.display()
                );
            }
            return Ok(0);
        }
        if path.exists() && !a.force {
            return Err(kmdr_etcd::EtcdError::Local {
                what: "refusing to overwrite (pass --force)",
                path: path.clone(),
                source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            }
            .into());
        }
        if let Some(p) = &point {
            let pb = output::counter(g.format, g.quiet, "replaying changes");
            let r = p.build(&repo, tool.as_ref().expect("found above"), path, output::progress(&pb)).await?;
            if let Some(pb) = pb {
                pb.finish_and_clear();
            }
            if g.format == Format::Json {
                output::json(&json!({"backup": id, "to_file": path, "point": p, "outcome": r}));
            } else {
                println!("{}", replay_line(&r));
                println!(
                    "wrote the snapshot of {} at revision {} to {} ({}, etcd sha256 {})",
                    p.plan.series,
                    p.plan.revision,
                    path.display(),
                    human_bytes(r.bytes),
                    r.sha256
                );
            }
            return Ok(0);
        }
        let pb = output::bar(g.format, g.quiet, Some(f.size), "fetching snapshot");
        let m = restorer::write_snapshot_file(&repo, &id, path, a.force, output::progress(&pb)).await?;
        if let Some(pb) = pb {
            pb.finish_and_clear();
        }
        let f = &m.files[0];
        if g.format == Format::Json {
            output::json(&json!({"backup": id, "to_file": path, "bytes": f.size, "sha256": f.sha256}));
        } else {
            println!(
                "wrote snapshot of {id} to {} ({}, sha256 {} verified)",
                path.display(),
                human_bytes(f.size),
                f.sha256
            );
        }
        return Ok(0);
    }
    let opts = EtcdRestoreOptions {
        data_dir: a.data_dir.expect("clap requires it without --to-file"),
        name: a.name.expect("required"),
        initial_cluster: a.initial_cluster.expect("required"),
        initial_advertise_peer_urls: a.initial_advertise_peer_urls.expect("required"),
        initial_cluster_token: a.initial_cluster_token,
        force: a.force,
        bump_revision: (!a.no_bump_revision).then_some(a.bump_revision),
    };
    let plan = restorer::plan_restore(&repo, &id, &opts, tool.expect("found above"), point).await?;
    if a.dry_run {
        if g.format == Format::Json {
            output::json(&json!({"dry_run": true, "plan": plan, "node_files": pairing}));
        } else {
            println!("restore plan (dry run, nothing changed):");
            let step = match &plan.point {
                None => {
                    println!(
                        "  backup      {} (etcd {}, revision {}, {} keys)",
                        plan.backup, plan.etcd_version, plan.revision, plan.key_count
                    );
                    println!(
                        "  1. fetch and check the snapshot ({}, sha256 {}) into {}",
                        human_bytes(plan.snapshot_bytes),
                        plan.snapshot_sha256,
                        plan.snapshot_path.display()
                    );
                    2
                }
                Some(p) => {
                    print_point(&p.plan, plan.key_count);
                    println!(
                        "  1. fetch and check the base snapshot ({}) into {}",
                        human_bytes(plan.snapshot_bytes),
                        p.work_dir.display()
                    );
                    println!(
                        "  2. replay the segments in a scratch etcd {} there, write its snapshot to {}",
                        p.etcd.version,
                        plan.snapshot_path.display()
                    );
                    3
                }
            };
            println!("  {step}. run {} {}: {}", plan.tool.flavor, plan.tool.version, plan.command.join(" "));
            println!("     {}", bump_line(&plan));
            match &plan.move_aside_to {
                Some(to) => println!(
                    "  {}. move the current data dir {} aside to {}",
                    step + 1,
                    plan.data_dir.display(),
                    to.display()
                ),
                None => println!(
                    "  {}. data dir {} is {}: nothing to move aside",
                    step + 1,
                    plan.data_dir.display(),
                    plan.data_dir_state
                ),
            }
            println!("  {}. rename {} to {}", step + 2, plan.staging_dir.display(), plan.data_dir.display());
        }
        return Ok(0);
    }
    let pb = match &plan.point {
        None => output::bar(g.format, g.quiet, Some(plan.snapshot_bytes), "fetching snapshot"),
        Some(_) => output::counter(g.format, g.quiet, "replaying changes"),
    };
    let outcome = restorer::execute(&repo, &plan, output::progress(&pb)).await?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    if g.format == Format::Json {
        output::json(&json!({"backup": plan.backup, "plan": plan, "outcome": outcome, "node_files": pairing}));
    } else {
        if let Some(r) = &outcome.replayed {
            println!("{}", replay_line(r));
        }
        println!(
            "restored {} (revision {}, {} keys) into {} in {} with {} {}",
            plan.backup,
            plan.revision,
            plan.key_count,
            outcome.data_dir.display(),
            human_duration(std::time::Duration::from_millis(outcome.duration_ms)),
            plan.tool.flavor,
            plan.tool.version
        );
        println!("{}", bump_line(&plan));
        if let Some(old) = &outcome.moved_aside_to {
            println!("the previous data dir was moved to {}; remove it once the member is healthy", old.display());
        }
        println!(
            "next: start etcd with --data-dir {} --name {} and check `etcdctl endpoint health`",
            outcome.data_dir.display(),
            opts.name
        );
    }
    Ok(0)
}

/// What the restore does to revisions, in one line.
fn bump_line(plan: &restorer::EtcdRestorePlan) -> String {
    match plan.bump_revision {
        Some(b) => format!(
            "revisions start at {} (bumped by {b}), older ones count as compacted: every watcher of the old cluster relists",
            plan.revision.saturating_add(b as i64)
        ),
        None => format!(
            "revisions stay as in the snapshot (up to {}, --no-bump-revision): Kubernetes watchers of the old cluster would keep stale caches",
            plan.revision
        ),
    }
}

/// The tenant backup `a.id` names; `latest` with --source-schema is that tenant's newest.
async fn resolve_tenant(repo: &kmdr_repo::Repository, a: &RestoreTenantArgs) -> Result<kmdr_core::Manifest> {
    use kmdr_datastore::KIND;
    let Some(source) = a.source_schema.as_deref().filter(|_| a.id == "latest") else {
        let id = repo.resolve(&a.id, Some(KIND)).await?;
        return Ok(repo.load_manifest(&id).await?);
    };
    if let Some(m) = repo.latest_of_series(&format!("tenant/{source}"), Some(KIND), |_| true).await? {
        return Ok(m);
    }
    Err(kmdr_repo::Error::BackupNotFound { query: format!("latest (of tenant {source})"), location: repo.location() }
        .into())
}

/// `restore tenant ... --at TIME|now | --revision R`: the newest full backup
/// at or before the point plus the delta segments up to it.
/// Read back what a tenant restore left in the target: any other count than
/// `expected` means another writer was active.
async fn read_back(
    store: &impl kmdr_datastore::TenantStore,
    schema: &str,
    target: &impl std::fmt::Display,
    expected: u64,
    expected_is: &str,
) -> Result<()> {
    let now = store.count(schema).await?;
    if now != expected {
        anyhow::bail!(
            "tenant {schema} in {target} holds {now} keys after the restore, {expected_is} {expected}: another writer may be active; stop the tenant's API server and run the restore again with --force"
        );
    }
    Ok(())
}

async fn tenant_at(g: &GlobalArgs, a: RestoreTenantArgs) -> Result<i32> {
    use kmdr_datastore::plan_tenant_restore;
    use kmdr_datastore::point as pitr;
    let point = parse_point(&a.at, a.revision)?.expect("checked by the caller");
    let repo = g.open_repo_to_read("backups to restore them").await?;
    let source = match (&a.source_schema, a.id.as_str()) {
        (Some(s), _) => s.clone(),
        (None, "latest") => {
            return Err(super::UsageError(
                "--at/--revision with `latest` needs --source-schema SCHEMA: which tenant's history".into(),
            )
            .into());
        }
        (None, id) => {
            let m = repo.load_manifest(&repo.resolve(id, Some(kmdr_datastore::KIND)).await?).await?;
            kmdr_datastore::tenant_info(&m)?.schema.clone()
        }
    };
    let (pplan, base) = pitr::plan_point(&repo, &source, point).await?;
    let store = a.datastore.connect().await?;
    let plan = plan_tenant_restore(&store, &base, a.schema.as_deref(), a.force).await?;
    if a.dry_run {
        if g.format == Format::Json {
            output::json(&json!({"dry_run": true, "plan": plan, "point": pplan}));
        } else {
            println!("point-in-time restore plan (dry run, nothing changed):");
            println!("  point   {point}: revision {} of {}", pplan.revision, pplan.series);
            println!(
                "  base    {} (full backup at revision {}, {} keys)",
                pplan.base, pplan.base_revision, plan.write_keys
            );
            println!(
                "  deltas  {} segments after it, replayed up to revision {}",
                pplan.segments.len(),
                pplan.revision
            );
            println!("  target  {} tenant {} (keys under {})", plan.target, plan.schema, plan.key_root);
            if plan.replace {
                println!("  1. remove the {} keys tenant {} holds there now", plan.existing_keys, plan.schema);
            }
            println!("  2. write the state at revision {} under {}", pplan.revision, plan.key_root);
        }
        return Ok(0);
    }
    let started = std::time::Instant::now();
    let outcome = pitr::restore_point(&repo, &store, &base, &pplan, &plan.schema, plan.replace).await?;
    read_back(&store, &plan.schema, &plan.target, outcome.written, "were written").await?;
    let elapsed = started.elapsed();
    if g.format == Format::Json {
        output::json(
            &json!({"plan": plan, "point": pplan, "outcome": outcome, "duration_ms": elapsed.as_millis() as u64}),
        );
    } else {
        println!(
            "restored tenant {} ({} keys) at revision {} ({} + {} delta segments) into {} in {}",
            plan.schema,
            outcome.written,
            pplan.revision,
            pplan.base,
            pplan.segments.len(),
            plan.target,
            human_duration(elapsed)
        );
    }
    Ok(0)
}

async fn tenant(g: &GlobalArgs, a: RestoreTenantArgs) -> Result<i32> {
    use kmdr_datastore::{plan_tenant_restore, restore_tenant};
    if a.at.is_some() || a.revision.is_some() {
        return tenant_at(g, a).await;
    }
    let repo = g.open_repo_to_read("backups to restore them").await?;
    let manifest = resolve_tenant(&repo, &a).await?;
    let store = a.datastore.connect().await?;
    let plan = plan_tenant_restore(&store, &manifest, a.schema.as_deref(), a.force).await?;
    if a.dry_run {
        if g.format == Format::Json {
            output::json(&json!({"dry_run": true, "plan": plan}));
        } else {
            println!("restore plan (dry run, nothing changed):");
            println!(
                "  backup  {} (tenant {} from {}, {} keys, {})",
                plan.backup,
                plan.source_schema,
                plan.source_driver,
                plan.write_keys,
                human_bytes(plan.write_bytes)
            );
            println!("  target  {} tenant {} (keys under {})", plan.target, plan.schema, plan.key_root);
            if plan.replace {
                println!("  1. remove the {} keys tenant {} holds there now", plan.existing_keys, plan.schema);
            } else {
                println!("  1. nothing to remove: the tenant holds no keys there");
            }
            println!("  2. write {} keys under {}", plan.write_keys, plan.key_root);
        }
        return Ok(0);
    }
    let started = std::time::Instant::now();
    let size = manifest.file(kmdr_datastore::RECORDS_FILE).map(|f| f.size);
    let pb = output::bar(g.format, g.quiet, size, &format!("tenant {}", plan.schema));
    let outcome = restore_tenant(&repo, &store, &manifest, &plan, output::progress(&pb)).await?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    read_back(&store, &plan.schema, &plan.target, plan.write_keys, "the backup has").await?;
    let elapsed = started.elapsed();
    if g.format == Format::Json {
        output::json(
            &json!({"backup": plan.backup, "plan": plan, "outcome": outcome, "duration_ms": elapsed.as_millis() as u64}),
        );
    } else {
        println!(
            "restored tenant {} ({} keys) from {} into {} in {}",
            plan.schema,
            outcome.written,
            plan.backup,
            plan.target,
            human_duration(elapsed)
        );
        if outcome.removed > 0 {
            println!("{} keys the tenant held there before were replaced", outcome.removed);
        }
        if g.chatty() {
            eprintln!("leases are not carried over: leased keys (events, leader elections) are recreated without one");
        }
    }
    Ok(0)
}

/// `kmdr restore --plan FILE (--layer L | --all) [--dry-run] [--force]`: the
/// newest backup of every unit, layer by layer in recovery order, each layer
/// through its `before-restore` steps, the restore, its `after-restore` steps
/// and its health gate (`health-check` steps) before the next one starts.
pub async fn by_plan(g: &GlobalArgs, a: RestoreArgs) -> Result<i32> {
    let file = a.plan.clone().expect("checked by the caller");
    let plan = super::plan::load(&file)?;
    let only: Option<kmdr_core::Layer> = a.layer.map(Into::into);
    if only.is_none() && !a.all {
        return Err(super::UsageError(
            "say which layers: --layer LAYER, or --all for every layer in recovery order".into(),
        )
        .into());
    }
    let repo = g.with_plan(&plan).open_repo_to_read("backups to restore them").await?;
    // One line per unit and step; on a terminal, a spinner with the one in progress and its time.
    let notify = super::notifier(g);
    let opts = kmdr_plan::RestoreOptions { force: a.force, dry_run: a.dry_run };
    let (layers, stopped) = kmdr_plan::recover::recover(&plan, &repo, only, opts, &notify).await;
    drop(notify); // the spinner, on a terminal, goes before the table
    if g.format == Format::Json {
        output::json(&layers);
    } else {
        for l in &layers {
            if let Some(note) = &l.note {
                eprintln!("{}: {note}", l.layer);
            }
            for u in &l.units {
                println!(
                    "{:<22} {:<32} {} {}",
                    l.layer.as_str(),
                    u.unit,
                    u.backup.as_deref().unwrap_or("-"),
                    restored(l.layer, u, a.dry_run)
                );
                for line in &u.objects {
                    println!("{:<22}   {line}", "");
                }
            }
        }
    }
    match stopped {
        Some(e) => Err(e.into()),
        None => Ok(0),
    }
}

/// What a unit's restore did, for the text table.
fn restored(layer: kmdr_core::Layer, u: &kmdr_plan::exec::UnitOutcome, dry_run: bool) -> String {
    let n = u.keys.unwrap_or(0);
    let what = if layer == kmdr_core::Layer::PersistentData { "volume set(s)" } else { "keys" };
    match (&u.error, dry_run) {
        (Some(e), _) => format!("FAILED: {e}"),
        (None, true) if what == "keys" => format!("would write {n} keys"),
        (None, true) => format!("would restore {n} {what}"),
        (None, false) => format!("restored {n} {what}"),
    }
}

/// `kmdr restore platform ID|latest --to DIR [--execute] [--dry-run]`: the
/// values overlay and Secrets into DIR, then the runbook's commands.
async fn platform(g: &GlobalArgs, a: crate::cli::RestorePlatformArgs) -> Result<i32> {
    use kmdr_kube::platform::{self as p, PlatformRestoreOptions};
    let repo = g.open_repo_to_read("backups to restore them").await?;
    let id = repo.resolve(&a.id, Some(p::KIND)).await?;
    let manifest = repo.load_manifest(&id).await?;
    let opts = PlatformRestoreOptions {
        to: a.to,
        chart: a.chart,
        kubeconfig: a.kube.kubeconfig.clone(),
        context: a.kube.context.clone(),
    };
    let plan = p::plan_platform_restore(&manifest, &opts)?;
    let lines = plan.command_lines();
    if a.dry_run {
        if g.format == Format::Json {
            output::json(&json!({"dry_run": true, "plan": plan, "command_lines": lines}));
        } else {
            println!("restore plan (dry run, nothing changed):");
            println!(
                "  backup  {} (release {}/{} revision {} {}, chart {} {})",
                plan.backup, plan.namespace, plan.release, plan.revision, plan.status, plan.chart, plan.chart_version
            );
            for f in &plan.files {
                println!("  would write {} ({})", f.path.display(), human_bytes(f.bytes));
            }
            for l in &lines {
                println!("  would run   {l}");
            }
        }
        return Ok(0);
    }
    p::write_restore_files(&repo, &manifest, &plan).await?;
    if a.execute {
        // helm's steps and the wait for the pods; on a terminal, a spinner with the one in progress.
        let notify = super::notifier(g);
        p::execute_restore(&plan, &notify).await?;
        // The runbook's next step: wait until no pod is outside Running/Completed.
        let kube = a.kube.connect(g).await?;
        kmdr_kube::health::wait_pods(&kube, a.timeout, a.interval, &notify).await?;
    } // the spinner goes here, before the summary
    if g.format == Format::Json {
        output::json(&json!({"backup": plan.backup, "plan": plan, "command_lines": lines, "executed": a.execute}));
    } else {
        for f in &plan.files {
            println!("wrote {}", f.path.display());
        }
        if a.execute {
            println!(
                "installed release {}/{} (chart {} {}); every pod is Running or Completed. Next: `kmdr restore tenants latest`",
                plan.namespace, plan.release, plan.chart_ref, plan.chart_version
            );
        } else {
            println!("run, in order (or pass --execute):");
            for l in &lines {
                println!("  {l}");
            }
            if plan.chart_ref == plan.chart {
                println!(
                    "CHART is the chart's name {:?}: replace it (or pass --chart) with where it is published, e.g. oci://REGISTRY/PATH/{}",
                    plan.chart, plan.chart
                );
            }
        }
    }
    Ok(0)
}

/// `kmdr restore tenants ID|latest [--only NS/NAME] [--dry-run]`: data, then
/// manifests by server-side apply, then wait for Ready.
async fn tenants(g: &GlobalArgs, a: crate::cli::RestoreTenantsArgs) -> Result<i32> {
    use kmdr_kube::kamaji::{self as k, TcpRef, TenantsRestoreOptions};
    let only = a.only.iter().map(|t| t.parse::<TcpRef>()).collect::<Result<Vec<_>, _>>()?;
    let repo = g.open_repo_to_read("backups to restore them").await?;
    let id = repo.resolve(&a.id, Some(k::KIND)).await?;
    let manifest = repo.load_manifest(&id).await?;
    let kube = a.kube.connect(g).await?;
    let opts = TenantsRestoreOptions {
        only,
        force: a.force,
        manifests_only: a.manifests_only,
        timeout: a.timeout,
        interval: a.interval,
        no_wait: false,
        endpoints: a.endpoints.into_iter().collect(),
    };
    let (plan, stores) = k::plan_tenants_restore(&repo, &kube, &manifest, &opts).await?;
    if a.dry_run {
        if g.format == Format::Json {
            output::json(&json!({"dry_run": true, "plan": plan}));
        } else {
            println!("restore plan (dry run, nothing changed) of {} into {}:", plan.backup, plan.cluster);
            let mut n = 1;
            for t in &plan.tenants {
                if t.keep_data {
                    println!(
                        "  {n}. data of {}/{}: keep the {} keys schema {} holds in {} (--manifests-only)",
                        t.namespace, t.name, t.existing_keys, t.schema, t.target
                    );
                } else {
                    let replace = if t.replace {
                        format!(", replacing the {} keys there now", t.existing_keys)
                    } else {
                        String::new()
                    };
                    println!(
                        "  {n}. data of {}/{}: write {} keys into schema {} of {}{replace}",
                        t.namespace, t.name, t.write_keys, t.schema, t.target
                    );
                }
                n += 1;
            }
            for x in &plan.applies {
                let how = if x.how == "apply" { "apply " } else { "create" };
                println!("  {n}. {how} {} {}", x.kind, x.name);
                n += 1;
            }
            let names: Vec<String> = plan.tenants.iter().map(|t| format!("{}/{}", t.namespace, t.name)).collect();
            println!(
                "  {n}. wait up to {} for TenantControlPlanes {} to be Ready",
                human_duration(a.timeout),
                names.join(", ")
            );
        }
        return Ok(0);
    }
    let notify = super::notifier(g);
    let pb = output::bar(g.format, g.quiet, None, "tenant data");
    let outcome =
        k::restore_tenants(&repo, &kube, &manifest, &plan, &stores, &opts, output::progress(&pb), &notify).await;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let outcome = outcome?;
    if g.format == Format::Json {
        output::json(&json!({"backup": plan.backup, "plan": plan, "outcome": outcome}));
    } else {
        for t in &plan.tenants {
            if t.keep_data {
                println!(
                    "restored tenant {}/{}: kept the {} keys of schema {} in {}, manifests applied, Ready",
                    t.namespace, t.name, t.existing_keys, t.schema, t.target
                );
                continue;
            }
            println!(
                "restored tenant {}/{}: {} keys into schema {} of {}, manifests applied, Ready",
                t.namespace,
                t.name,
                outcome.written.get(&format!("{}/{}", t.namespace, t.name)).copied().unwrap_or(0),
                t.schema,
                t.target
            );
        }
    }
    Ok(0)
}
