//! The scheduler: every unit of the plan gets a task that takes a full
//! backup whenever its newest one is older than the interval (the layer's
//! RPO unless `--full-every`), retrying failures with exponential backoff.
//! The under-cluster's etcd and every tenant, whatever its datastore's driver
//! (etcd, PostgreSQL, MySQL/MariaDB, NATS), also get a delta capture. A retention task applies the keep
//! policy and removes delta segments no full backup can use any more.
//!
//! State lives only in the repository. On start, each unit's newest full
//! backup is found in the manifests ([`crate::catalog`]) and each capture
//! resumes after the newest segment of its series (or after the full backup
//! when that is newer), so a restart after `kill -9` neither repeats nor
//! skips a revision.
//!
//! On stop (SIGTERM), no new backup starts, captures write what they hold,
//! and a full backup in flight gets `grace` to finish; one that does not is
//! abandoned without its manifest (its chunks go at the next prune).

mod capturer;

use crate::catalog::Catalog;
use crate::compactor::{self, CompactOptions, Compactor};
use crate::metrics::{DeltaState, Metrics};
use crate::pending::Base;
use crate::scheduled::Scheduled;
use crate::stop::sleep_or_stop;
use crate::verifier::{self, Verifier};
use capturer::Sources;
use chrono::{DateTime, Utc};
use kmdr_core::{KeepPolicy, Layer, Manifest};
use kmdr_datastore::capture::{CaptureOptions, DeltaCapture, Stopped};
use kmdr_plan::plan::{DatastoreSpec, Plan, VerifySpec};
use kmdr_plan::unit::{self, Unit, UnitError};
use kmdr_repo::Repository;
use kmdr_repo::point::base_revision;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore, watch};

/// Why `kmdr serve` could not run. Failures of single units are not errors
/// of the service: they are retried, logged and counted in the metrics.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The repository could not be read at start.
    #[error(transparent)]
    Repo(#[from] kmdr_repo::Error),
    #[error("the plan {plan} names nothing kmdr backs up (no etcd:, helm:, datastores: or volumes:)")]
    NothingToBackUp { plan: String },
    /// The thread of the test restores could not be started.
    #[error(
        "cannot start the thread of the restore proofs: {0}; run without `verify:` (and --verify-every) or give the process more threads"
    )]
    Worker(std::io::Error),
}

impl kmdr_core::Classify for ServeError {
    fn class(&self) -> kmdr_core::ErrorClass {
        match self {
            ServeError::Repo(e) => e.class(),
            ServeError::NothingToBackUp { .. } => kmdr_core::ErrorClass::Usage,
            ServeError::Worker(_) => kmdr_core::ErrorClass::Other,
        }
    }
}

/// How `kmdr serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub capture: CaptureOptions,
    /// Full backups this often instead of at each layer's RPO.
    pub full_every: Option<Duration>,
    /// Retention; nothing is removed when empty.
    pub policy: KeepPolicy,
    pub forget_every: Duration,
    pub tags: BTreeMap<String, String>,
    /// How long a full backup in flight may take to finish after a stop.
    pub grace: Duration,
    /// Full backups running at once.
    pub parallel: usize,
    /// Longest wait between retries.
    pub max_backoff: Duration,
    /// Prove each unit's newest backups restorable on this schedule and
    /// budget (`kmdr verify --restore` in the background; see verifier.rs);
    /// off when `None`.
    pub verify: Option<VerifySpec>,
    /// Scratch servers and tools of those test restores.
    pub prove: kmdr_plan::prove::ProveOptions,
    /// When to synthesise a full backup from the newest one and its delta
    /// segments (compactor.rs).
    pub compact: CompactOptions,
    /// With `--shards`: run only the units of these shards (shards.rs).
    pub shards: Option<crate::shards::Shards>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            capture: CaptureOptions::default(),
            full_every: None,
            policy: KeepPolicy::default(),
            forget_every: Duration::from_secs(3600),
            tags: BTreeMap::new(),
            grace: Duration::from_secs(20),
            parallel: 1,
            max_backoff: Duration::from_secs(300),
            verify: None,
            prove: Default::default(),
            compact: CompactOptions::default(),
            shards: None,
        }
    }
}

/// Shared by every task.
struct Ctx {
    repo: Repository,
    opts: ServeOptions,
    metrics: Arc<Metrics>,
    permits: Semaphore,
    /// With `verify_every`: what the test-restore tasks share.
    verifier: Option<Arc<Verifier>>,
    /// With a compaction threshold and the full key: what the compaction tasks share.
    compactor: Option<Arc<Compactor>>,
    /// The captures' shared watches and resume points.
    sources: Sources,
    stop: watch::Receiver<bool>,
}

/// Run until `stop` turns true. Errors only when the plan gives nothing to do.
///
/// The tasks run on one `LocalSet` thread (the drivers' futures are not all
/// `Send`); chunk hashing and sealing still run on the blocking pool, and
/// the gRPC and HTTP clients on the runtime's workers.
pub async fn serve(
    repo: Repository,
    plan: Plan,
    opts: ServeOptions,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    tokio::task::LocalSet::new().run_until(serve_local(repo, plan, opts, metrics, stop)).await
}

async fn serve_local(
    repo: Repository,
    plan: Plan,
    opts: ServeOptions,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let catalog = Arc::new(Catalog::load(&repo).await?);
    metrics.set_plan(&plan.name);
    // A write-only key (the agent's) backs up and captures; whatever reads
    // backups (restore proofs, retention, Object Lock extension, drill
    // reports) is for a full key on an admin host.
    let full_key = repo.access() == kmdr_repo::crypto::Access::Full;
    if !full_key {
        tracing::info!(
            "write-only key: backups and delta captures only; restore proofs, retention, compaction, lock extension and drill reports need the full key (kmdr verify --restore, forget, repo extend-locks on an admin host)"
        );
    }
    let ctx = Arc::new(Ctx {
        repo: repo.clone(),
        permits: Semaphore::new(opts.parallel.max(1)),
        verifier: match opts.verify.as_ref().filter(|_| full_key) {
            Some(spec) => Some(Arc::new(
                Verifier::new(repo.clone(), metrics.clone(), opts.prove.clone(), spec.clone())
                    .map_err(ServeError::Worker)?,
            )),
            None => None,
        },
        compactor: (full_key && opts.compact.enabled())
            .then(|| Arc::new(Compactor::new(repo.clone(), metrics.clone(), opts.compact.clone(), opts.tags.clone()))),
        opts,
        metrics: metrics.clone(),
        sources: Sources::default(),
        stop: stop.clone(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    let mut pending_ready: Vec<String> = Vec::new();
    let shards = ctx.opts.shards.clone();
    let owns = |key: String| shards.as_ref().is_none_or(|s| s.owns(&key));
    for spec in &plan.layers {
        let interval = ctx.opts.full_every.unwrap_or(spec.rpo).max(Duration::from_secs(1));
        // The units the plan names start now; each datastore's tenants as they are found.
        let named = unit::named_units(spec).into_iter().filter(|u| !matches!(u, Unit::Tenant { .. }));
        for unit in named.filter(|u| owns(crate::shards::unit_key(u))) {
            let u = new_unit(unit, interval);
            let captures = u.unit.captures();
            metrics.update(&u.name, |s| {
                s.layer = Some(spec.layer);
                s.rpo_target = spec.rpo;
                if captures {
                    s.delta = Some(DeltaState::default());
                }
            });
            if captures {
                pending_ready.push(u.name.clone());
            }
            start_unit(&mut tasks, &ctx, u, &catalog);
        }
        for d in unit::datastores(spec).iter().filter(|d| owns(crate::shards::datastore_key(d))) {
            let (ctx, d, catalog, layer, rpo) = (ctx.clone(), d.clone(), catalog.clone(), spec.layer, spec.rpo);
            tasks.spawn_local(async move { discover(ctx, d, layer, rpo, interval, catalog).await });
        }
    }
    if tasks.is_empty() && shards.is_none() {
        return Err(ServeError::NothingToBackUp { plan: plan.file.display().to_string() });
    }
    let repository_tasks = shards.as_ref().is_none_or(|s| s.runs_repository_tasks());
    if full_key && repository_tasks {
        tasks.spawn_local(crate::drills::watch_drills(repo.clone(), metrics.clone(), stop.clone()));
        tasks.spawn_local(crate::lock_keeper::keep_locks(repo.clone(), metrics.clone(), stop.clone()));
    }
    if !ctx.opts.policy.is_empty() && full_key && repository_tasks {
        let ctx2 = ctx.clone();
        tasks.spawn_local(async move { retention(ctx2).await });
    }
    // Ready once every etcd capture has started (tenants report as they are found).
    let ready_ctx = ctx.clone();
    tasks.spawn_local(async move {
        let mut stop = ready_ctx.stop.clone();
        loop {
            let waiting: Vec<String> = pending_ready
                .iter()
                .filter(|u| !ready_ctx.metrics.unit(u).and_then(|s| s.delta).is_some_and(|d| d.running))
                .cloned()
                .collect();
            ready_ctx.metrics.set_not_ready(if waiting.is_empty() {
                None
            } else {
                Some(format!("delta capture not running yet: {}", waiting.join(", ")))
            });
            if sleep_or_stop(&mut stop, Duration::from_millis(500)).await {
                return;
            }
        }
    });
    while tasks.join_next().await.is_some() {}
    Ok(())
}

fn new_unit(unit: Unit, interval: Duration) -> Arc<Scheduled> {
    Arc::new(Scheduled {
        name: unit.name(),
        interval,
        unit,
        base: watch::channel(None).0,
        busy: Mutex::new(()),
        pending: Arc::default(),
    })
}

fn start_unit(tasks: &mut tokio::task::JoinSet<()>, ctx: &Arc<Ctx>, unit: Arc<Scheduled>, catalog: &Catalog) {
    // The etcd unit's too, though its series is known only once it connects.
    let newest = catalog.newest(&unit.unit);
    if let Some(n) = &newest {
        unit.base.send_replace(n.base.clone());
        ctx.metrics.update(&unit.name, |s| {
            s.last_full = Some(n.started);
            s.last_success = Some(n.finished);
        });
    }
    let captures = unit.unit.captures();
    {
        let (ctx, unit) = (ctx.clone(), unit.clone());
        tasks.spawn_local(supervise(unit.name.clone(), "full backups", ctx.clone(), move || {
            full_backups(ctx.clone(), unit.clone(), newest.as_ref().map(|n| n.started))
        }));
    }
    if captures {
        let (ctx, unit) = (ctx.clone(), unit.clone());
        tasks.spawn_local(supervise(unit.name.clone(), "delta capture", ctx.clone(), move || {
            capture(ctx.clone(), unit.clone())
        }));
    }
    if let Some(c) = ctx.compactor.clone().filter(|_| captures) {
        let (u, stop) = (unit.clone(), ctx.stop.clone());
        tasks.spawn_local(supervise(unit.name.clone(), "compaction", ctx.clone(), move || {
            compactor::compact_when_due(c.clone(), u.clone(), stop.clone())
        }));
    }
    if let Some(v) = ctx.verifier.clone().filter(|_| verifier::provable(&unit.unit)) {
        let (name, u, stop) = (unit.name.clone(), unit.unit.clone(), ctx.stop.clone());
        tasks.spawn_local(supervise(unit.name.clone(), "restore proofs", ctx.clone(), move || {
            verifier::prove_newest(v.clone(), name.clone(), u.clone(), stop.clone())
        }));
    }
}

/// Run a unit's task; when it panics (a bug), say so and start it again after
/// a backoff (it resumes from the repository like after a restart) instead
/// of leaving the unit silently unprotected.
async fn supervise<F, Fut>(unit: String, what: &'static str, ctx: Arc<Ctx>, mut make: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let mut stop = ctx.stop.clone();
    let mut backoff = Duration::from_secs(1);
    loop {
        let err = match tokio::task::spawn_local(make()).await {
            Ok(()) => return,
            Err(e) if e.is_panic() => e.into_panic(),
            Err(_) => return,
        };
        let msg = err
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| err.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!("{unit}: {what} panicked ({msg}): a bug, please report it; starting it again in {backoff:?}");
        ctx.metrics.update(&unit, |s| s.failures += 1);
        if sleep_or_stop(&mut stop, backoff).await {
            return;
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// Find a datastore's tenants (again every interval, for new tenants) and start their units.
async fn discover(
    ctx: Arc<Ctx>,
    d: DatastoreSpec,
    layer: Layer,
    rpo: Duration,
    interval: Duration,
    catalog: Arc<Catalog>,
) {
    let mut stop = ctx.stop.clone();
    let mut started: HashSet<String> = HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut backoff = Duration::from_secs(1);
    loop {
        let found = unit::datastore_units(&d).await;
        let wait = match found {
            Ok(units) => {
                backoff = Duration::from_secs(1);
                let new: Vec<Unit> = units.into_iter().filter(|u| !started.contains(&u.name())).collect();
                for u in new {
                    let name = u.name();
                    let unit = new_unit(u, interval);
                    ctx.metrics.update(&unit.name, |s| {
                        s.layer = Some(layer);
                        s.rpo_target = rpo;
                        s.delta = Some(DeltaState::default());
                    });
                    start_unit(&mut tasks, &ctx, unit, &catalog);
                    started.insert(name);
                }
                interval
            }
            Err(e) => {
                tracing::warn!("datastore {}: cannot list tenants, retrying in {backoff:?}: {e}", d.name);
                backoff = (backoff * 2).min(ctx.opts.max_backoff);
                backoff
            }
        };
        if sleep_or_stop(&mut stop, wait).await {
            break;
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Full backups of one unit on schedule, retried with backoff.
async fn full_backups(ctx: Arc<Ctx>, unit: Arc<Scheduled>, newest: Option<DateTime<Utc>>) {
    let mut stop = ctx.stop.clone();
    let mut due = match newest {
        Some(t) => t + chrono::Duration::from_std(unit.interval).unwrap_or_default(),
        None => Utc::now(),
    };
    let mut backoff = Duration::from_secs(5);
    loop {
        let wait = (due - Utc::now()).to_std().unwrap_or_default();
        if sleep_or_stop(&mut stop, wait).await {
            return;
        }
        match full_backup(&ctx, &unit, "scheduled").await {
            Some(Ok(m)) => {
                backoff = Duration::from_secs(5);
                due = m.started_at + chrono::Duration::from_std(unit.interval).unwrap_or_default();
            }
            Some(Err(_)) => {
                due = Utc::now() + chrono::Duration::from_std(backoff.min(unit.interval)).unwrap_or_default();
                backoff = (backoff * 2).min(ctx.opts.max_backoff);
            }
            None => return,
        }
    }
}

/// Take one full backup of a unit now, recording it. `None` when stopped
/// before it could start or abandoned after the grace period.
async fn full_backup(ctx: &Ctx, unit: &Scheduled, why: &str) -> Option<Result<Manifest, UnitError>> {
    let _busy = unit.busy.lock().await;
    let _permit = ctx.permits.acquire().await.ok()?;
    if *ctx.stop.borrow() {
        return None;
    }
    tracing::info!("{}: full backup ({why})", unit.name);
    let began = std::time::Instant::now();
    let work = unit.unit.backup(&ctx.repo, &ctx.opts.tags);
    tokio::pin!(work);
    let mut stop = ctx.stop.clone();
    let result = tokio::select! {
        r = &mut work => r,
        _ = async { while stop.changed().await.is_ok() && !*stop.borrow() {} } => {
            match tokio::time::timeout(ctx.opts.grace, &mut work).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!("{}: full backup abandoned at shutdown after {:?}; nothing was committed", unit.name, ctx.opts.grace);
                    return None;
                }
            }
        }
    };
    match &result {
        Ok(m) => {
            tracing::info!("{}: backup {} done in {:.1}s", unit.name, m.id, began.elapsed().as_secs_f64());
            let base = Base::of(m);
            if let Some(b) = &base {
                unit.pending.based(b);
            }
            unit.base.send_replace(base);
            ctx.metrics.update(&unit.name, |s| {
                s.last_full = Some(m.started_at);
                s.last_success = Some(m.finished_at);
                s.last_duration = Duration::from_millis(m.duration_ms);
                s.last_bytes = m.stats.bytes;
                s.last_error = None;
            });
        }
        Err(e) => {
            tracing::warn!("{}: full backup failed: {e}", unit.name);
            ctx.metrics.update(&unit.name, |s| {
                s.failures += 1;
                s.last_error = Some(e.message.clone());
            });
        }
    }
    Some(result)
}

/// One unit's delta capture, resumed from the repository and restarted after errors.
async fn capture(ctx: Arc<Ctx>, unit: Arc<Scheduled>) {
    let mut stop = ctx.stop.clone();
    let mut backoff = Duration::from_secs(1);
    let mut state: Option<DeltaCapture> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let began = std::time::Instant::now();
        let attempt: Result<Result<Stopped, Rewound>, String> = async {
            let (source, target) = ctx.sources.source(&unit.unit).await.map_err(|e| e.message)?;
            if state.as_ref().is_none_or(|s| s.target.series != target.series) {
                // Where the repository is: after the newest segment, or after the newest full backup.
                let mut base = ctx.sources.newest_base(&ctx.repo, &target.series).await.map_err(|e| e.to_string())?;
                if base.is_none() {
                    // The scheduled task takes the first full backup at once; wait for it.
                    let mut rx = unit.base.subscribe();
                    let mut stop3 = stop.clone();
                    loop {
                        let newest = rx.borrow_and_update().clone();
                        match newest {
                            Some(b) if b.series == target.series => base = Some(b),
                            // The unit's newest backup is of another series (an etcd restored
                            // from a snapshot has another cluster id): this one needs its own.
                            Some(_) => match full_backup(&ctx, &unit, "no full backup of this series yet").await {
                                Some(Ok(m)) => base = Some(Base::of(&m).ok_or("the full backup has no revision")?),
                                Some(Err(e)) => return Err(e.message),
                                None => return Err("stopped".to_string()),
                            },
                            None => tokio::select! {
                                _ = rx.changed() => continue,
                                _ = stop3.changed() => return Err("stopped".to_string()),
                            },
                        }
                        break;
                    }
                }
                let base = base.ok_or("the full backup has no revision")?;
                let newest_segment = ctx
                    .repo
                    .list_segments(Some(&target.series))
                    .await
                    .map_err(|e| e.to_string())?
                    .iter()
                    .map(|s| s.last)
                    .max();
                let next = newest_segment.unwrap_or(base.revision).max(base.revision) + 1;
                tracing::info!("{}: capturing changes of {} from revision {next}", unit.name, target.series);
                unit.pending.start(&base);
                let rpo = ctx.metrics.unit(&unit.name).map(|s| s.rpo_target);
                state = Some(DeltaCapture::new(target, capturer::options(ctx.opts.capture, rpo), next));
            }
            let cap = state.as_mut().expect("set above");
            // A datastore restored from a snapshot (or replaced) starts below what was captured:
            // its revisions are another history, which the chain must not continue.
            if let Some(now) = capturer::rewound(&source, &cap.target, cap.next()).await? {
                return Ok(Err(Rewound { captured: cap.next() - 1, now }));
            }
            ctx.metrics.update(&unit.name, |s| {
                let d = s.delta.get_or_insert_with(DeltaState::default);
                d.running = true;
                d.revision = cap.next() - 1;
            });
            let on_event = capturer::on_event(ctx.metrics.clone(), unit.name.clone(), unit.pending.clone());
            let mut stop2 = stop.clone();
            cap.run(&source, &ctx.repo, &mut stop2, &on_event).await.map(Ok).map_err(|e| e.to_string())
        }
        .await;
        ctx.metrics.update(&unit.name, |s| {
            if let Some(d) = s.delta.as_mut() {
                d.running = false;
            }
        });
        if began.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        let why = match attempt {
            Ok(Ok(Stopped::Shutdown)) => return,
            Ok(Ok(Stopped::Compacted { wanted, compact_revision })) => {
                tracing::warn!(
                    "{}: revision {wanted} was compacted away (the datastore compacted its history up to revision {compact_revision}): taking a new full backup to restart the delta chain",
                    unit.name
                );
                ctx.metrics.update(&unit.name, |s| {
                    if let Some(d) = s.delta.as_mut() {
                        d.compactions += 1;
                    }
                });
                Some("delta start revision compacted")
            }
            Ok(Err(Rewound { captured, now })) => {
                tracing::warn!(
                    "{}: the datastore is at revision {now}, below revision {captured} already captured: it was restored from a snapshot or replaced, and its revisions are another history. Taking a new full backup to start a new delta chain (points before it restore from the old chain)",
                    unit.name
                );
                Some("datastore revisions went back")
            }
            Err(e) => {
                tracing::warn!("{}: delta capture stopped, retrying in {backoff:?}: {e}", unit.name);
                ctx.metrics.update(&unit.name, |s| {
                    if let Some(d) = s.delta.as_mut() {
                        d.failures += 1;
                    }
                });
                if sleep_or_stop(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(ctx.opts.max_backoff);
                None
            }
        };
        if let Some(why) = why {
            match full_backup(&ctx, &unit, why).await {
                Some(Ok(m)) => {
                    if let (Some(cap), Some(r)) = (state.as_mut(), base_revision(&m)) {
                        cap.restart_at(r);
                    }
                }
                Some(Err(_)) => {
                    if sleep_or_stop(&mut stop, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(ctx.opts.max_backoff);
                }
                None => return,
            }
        }
    }
}

/// The datastore's revision is below what the chain already holds.
struct Rewound {
    captured: i64,
    now: i64,
}

/// Apply the keep policy every `forget_every`, then remove unusable delta segments.
async fn retention(ctx: Arc<Ctx>) {
    let mut stop = ctx.stop.clone();
    loop {
        if sleep_or_stop(&mut stop, ctx.opts.forget_every).await {
            return;
        }
        match apply_retention(&ctx.repo, ctx.opts.policy).await {
            Ok((backups, segments)) => {
                tracing::info!("retention: removed {backups} backups and {segments} delta segments")
            }
            Err(e) => tracing::warn!("retention failed, trying again in {:?}: {e}", ctx.opts.forget_every),
        }
    }
}

/// Forget (and prune) by `policy`, then remove the delta segments no
/// remaining full backup can use. Returns (backups removed, segments removed);
/// under S3 Object Lock what is still retained stays, and is logged.
pub async fn apply_retention(repo: &Repository, policy: KeepPolicy) -> Result<(usize, usize), kmdr_repo::Error> {
    let (plan, prune) = kmdr_repo::pruner::forget(repo, policy, None, true).await?;
    let segments = kmdr_repo::pruner::remove_segments(repo).await?;
    let held = plan.held.len() + prune.map_or(0, |p| p.held.len()) + segments.held.len();
    if held > 0 {
        tracing::info!("retention: {held} objects are still under S3 Object Lock retention and stay until it passes");
    }
    Ok((plan.remove().len(), segments.remove.len()))
}
