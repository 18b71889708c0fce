//! Replicas of `kmdr serve` dividing the plan over Kubernetes Leases: one
//! Lease per shard (shards.rs says which units a shard holds), taken and
//! renewed as lease.rs does for one.
//!
//! - With one shard (`--lease` alone) the Lease is `--lease`'s name and this
//!   is leader election: one replica runs everything, the others stand by.
//! - With `--shards N` the Leases are `<name>-shard-<i>`, and each replica
//!   also renews a member Lease `<name>-member-<identity>` (labelled
//!   `kmdr.dev/serve=<name>`, `kmdr.dev/role=member`) so that the replicas
//!   know how many they are. Every round (a third of the lease duration) a
//!   replica renews what it holds, counts the live members (a member Lease
//!   whose record changed within its duration, by this replica's clock), and
//!   aims at its fair share, `ceil(N / members)`: it takes free or expired
//!   shards while under it, and gives one shard back per round while over
//!   it (after its units stopped). A shard left free for two rounds is taken
//!   by anyone, so that no shard stays unprotected when the count is off.
//! - A replica that dies stops renewing; its shards are free to the others
//!   one lease duration after they last saw them renewed, so they are taken
//!   within a duration and two rounds of the death (under two durations).
//!   A replica that cannot renew a shard for two thirds of the duration
//!   stops that shard's units first, so no unit is ever captured twice.
//! - A change of the held shards restarts this replica's units on the new
//!   set; they resume from the repository as after a restart.
//!
//! Member Leases of replicas gone for ten durations are deleted by the
//! others; a replica stopped with SIGTERM releases its shards (a standby
//! takes them at once) and deletes its member Lease.

use crate::lease::{LeaseConfig, LeaseLock, Seen};
use crate::metrics::Metrics;
use crate::scheduler::{ServeError, ServeOptions, serve};
use crate::shards::Shards;
use kmdr_kube::client::{KubeClient, LEASE};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The labels of the Leases of one group of replicas.
const GROUP_LABEL: &str = "kmdr.dev/serve";
const ROLE_LABEL: &str = "kmdr.dev/role";

/// The Leases of one group of replicas, as one replica sees and holds them.
pub struct ShardLeases {
    kube: KubeClient,
    config: LeaseConfig,
    count: u32,
    shards: Vec<LeaseLock>,
    /// This replica's member Lease (none with one shard: nothing to divide).
    member: Option<LeaseLock>,
    /// The other members' Leases: their record and when it was first seen.
    others: HashMap<String, (String, Instant)>,
    /// Live members as last counted, kept when a listing fails.
    live: u32,
    /// Held shards and when each was last renewed.
    held: BTreeMap<u32, Instant>,
    /// Rounds in a row each shard was seen free and not taken.
    free_rounds: HashMap<u32, u32>,
    /// The shard being given back: its units stop, then it is released.
    shedding: Option<u32>,
    /// When this replica gave each shard back (not to take it again at once).
    shed_at: HashMap<u32, Instant>,
}

impl ShardLeases {
    /// The Leases of `count` shards named after `config.name`, in its namespace.
    pub fn new(kube: KubeClient, config: LeaseConfig, count: u32) -> Self {
        let count = count.max(1);
        let lock = |name: String, role: &str| {
            let mut c = config.clone();
            c.name = name;
            c.labels.insert(GROUP_LABEL.into(), config.name.clone());
            c.labels.insert(ROLE_LABEL.into(), role.into());
            LeaseLock::new(kube.clone(), c)
        };
        let shards = match count {
            1 => vec![LeaseLock::new(kube.clone(), config.clone())],
            _ => (0..count).map(|i| lock(shard_lease_name(&config.name, i), "shard")).collect(),
        };
        let member = (count > 1).then(|| lock(member_lease_name(&config.name, &config.identity), "member"));
        ShardLeases {
            kube,
            config,
            count,
            shards,
            member,
            others: HashMap::new(),
            live: 1,
            held: BTreeMap::new(),
            free_rounds: HashMap::new(),
            shedding: None,
            shed_at: HashMap::new(),
        }
    }

    /// Say where, for messages: `Lease ns/name` or `Leases ns/name-shard-0..N`.
    pub fn describe(&self) -> String {
        match self.count {
            1 => format!("Lease {}/{}", self.config.namespace, self.config.name),
            n => format!("Leases {}/{}-shard-0..{}", self.config.namespace, self.config.name, n - 1),
        }
    }

    fn round_every(&self) -> Duration {
        self.config.renew_every()
    }

    /// One round: renew what is held, count the members, take or give back
    /// shards toward the fair share. `running` is what this replica's units
    /// run now; `taking` is false while stopping. Returns the shards whose
    /// units may run.
    async fn round(&mut self, running: &BTreeSet<u32>, taking: bool) -> BTreeSet<u32> {
        // A shard given back is released once its units stopped.
        if let Some(s) = self.shedding.filter(|s| !running.contains(s)) {
            if let Err(e) = self.shards[s as usize].release().await {
                tracing::warn!("releasing shard {s} failed (another replica takes it once it expires): {e}");
            }
            self.held.remove(&s);
            self.shed_at.insert(s, Instant::now());
            self.shedding = None;
            tracing::info!("gave shard {s} of {} back, for a replica holding fewer", self.count);
        }
        let live = self.live_members().await;
        let fair = self.count.div_ceil(live) as usize;
        let mut candidates = Vec::new();
        for i in 0..self.count {
            let lock = &mut self.shards[i as usize];
            let seen = match lock.look().await {
                Ok(seen) => seen,
                Err(e) => {
                    tracing::warn!("reading the Lease of shard {i} failed: {e}");
                    self.check_deadline(i);
                    continue;
                }
            };
            match (seen, self.held.contains_key(&i)) {
                (seen @ Seen::Mine(_), true) => match lock.take(seen).await {
                    Ok(true) => {
                        self.held.insert(i, Instant::now());
                    }
                    Ok(false) => self.lost(i, "held by another replica now (it wrote the Lease first)"),
                    Err(e) => {
                        tracing::warn!("renewing the Lease of shard {i} failed: {e}");
                        self.check_deadline(i);
                    }
                },
                (Seen::Other { holder }, true) => self.lost(i, &format!("held by another replica now ({holder})")),
                (Seen::Other { .. }, false) => {
                    self.free_rounds.remove(&i);
                }
                (seen, _) => candidates.push((i, seen)),
            }
        }
        // Start at a place of this replica's own, so that replicas starting together try different shards first.
        let offset = crate::shards::shard_of(&self.config.identity, self.count);
        candidates.sort_by_key(|(i, _)| (i + self.count - offset) % self.count);
        for (i, seen) in candidates {
            let free_for = self.free_rounds.get(&i).copied().unwrap_or(0);
            let shed_lately = self.shed_at.get(&i).is_some_and(|t| t.elapsed() < self.config.duration * 2);
            let orphan = free_for >= 2;
            if !taking || shed_lately || (self.held.len() >= fair && !orphan) {
                self.free_rounds.insert(i, free_for + 1);
                continue;
            }
            match self.shards[i as usize].take(seen).await {
                Ok(true) => {
                    tracing::info!(
                        "this replica ({}) holds {}: running {}",
                        self.config.identity,
                        self.shards[i as usize].describe(),
                        if self.count == 1 { "the units".to_string() } else { format!("the units of shard {i}") }
                    );
                    self.held.insert(i, Instant::now());
                    self.free_rounds.remove(&i);
                }
                Ok(false) => {
                    self.free_rounds.remove(&i);
                }
                Err(e) => tracing::warn!("cannot take the Lease of shard {i}: {e}"),
            }
        }
        if self.shedding.is_none() && self.held.len() > fair {
            self.shedding = self.held.keys().next_back().copied();
            tracing::info!(
                "{live} replicas share {} shards: this one holds {}, more than its share of {fair}; giving shard {} back",
                self.count,
                self.held.len(),
                self.shedding.unwrap_or_default()
            );
        }
        self.held.keys().copied().filter(|s| Some(*s) != self.shedding).collect()
    }

    /// Stop a shard whose renewals failed for two thirds of the duration,
    /// before another replica may take it.
    fn check_deadline(&mut self, i: u32) {
        if self.held.get(&i).is_some_and(|t| t.elapsed() >= self.config.renew_deadline()) {
            self.lost(i, "not renewed for two thirds of its duration");
        }
    }

    fn lost(&mut self, i: u32, why: &str) {
        if self.held.remove(&i).is_some() {
            tracing::warn!(
                "{} is {why}: stopping its units before another replica may take over",
                self.shards[i as usize].describe()
            );
        }
        if self.shedding == Some(i) {
            self.shedding = None;
        }
    }

    /// Renew this replica's member Lease and count the live members, itself included.
    async fn live_members(&mut self) -> u32 {
        let Some(member) = &mut self.member else { return 1 };
        if let Err(e) = member.try_acquire_or_renew().await {
            tracing::warn!("renewing this replica's member {} failed: {e}", member.describe());
        }
        let own = member.config.name.clone();
        let selector = format!("{GROUP_LABEL}={},{ROLE_LABEL}=member", self.config.name);
        let leases = match self.kube.list_objects(&LEASE, Some(&self.config.namespace), &selector).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(
                    "listing the member Leases failed ({e}): counting {} replicas as before; the Role needs list on leases",
                    self.live
                );
                return self.live;
            }
        };
        let mut live = 1;
        let mut listed = Vec::new();
        for lease in leases {
            let name = lease["metadata"]["name"].as_str().unwrap_or("").to_string();
            let spec = &lease["spec"];
            let holder = spec["holderIdentity"].as_str().unwrap_or("");
            if name == own || holder.is_empty() {
                continue;
            }
            let record = format!("{holder}@{}", spec["renewTime"].as_str().unwrap_or(""));
            let seen = self.others.entry(name.clone()).or_insert_with(|| (record.clone(), Instant::now()));
            if seen.0 != record {
                *seen = (record, Instant::now());
            }
            let duration =
                spec["leaseDurationSeconds"].as_u64().map(Duration::from_secs).unwrap_or(self.config.duration);
            let silent = seen.1.elapsed();
            if silent < duration {
                live += 1;
            } else if silent > duration * 10 {
                // A replica gone for good (a Deployment's pods get new names): tidy its Lease away.
                if let Err(e) =
                    self.kube.delete_object(&LEASE, Some(&self.config.namespace), &name, Duration::ZERO).await
                {
                    tracing::debug!("deleting the member Lease {name} of a replica gone failed: {e}");
                }
            }
            listed.push(name);
        }
        self.others.retain(|n, _| listed.contains(n));
        self.live = live;
        live
    }

    /// Release every held shard and delete the member Lease (on stop).
    async fn leave(&mut self) {
        for s in std::mem::take(&mut self.held).into_keys() {
            if let Err(e) = self.shards[s as usize].release().await {
                tracing::warn!("releasing shard {s} failed (another replica takes it once it expires): {e}");
            }
        }
        if let Some(m) = &self.member {
            let c = &m.config;
            if let Err(e) = self.kube.delete_object(&LEASE, Some(&c.namespace), &c.name, Duration::ZERO).await {
                tracing::warn!("deleting this replica's member Lease {} failed: {e}", c.name);
            }
        }
    }
}

/// The Lease of shard `i` of the group `name`.
pub fn shard_lease_name(name: &str, i: u32) -> String {
    format!("{name}-shard-{i}")
}

/// The member Lease of replica `identity` of the group `name`.
pub fn member_lease_name(name: &str, identity: &str) -> String {
    format!("{name}-member-{identity}")
}

/// [`serve`] over the shards this replica holds: stand by while it holds
/// none, run the units of those it holds, restart them on the new set when
/// it changes, release everything on `stop`.
pub async fn serve_sharded(
    repo: kmdr_repo::Repository,
    plan: kmdr_plan::Plan,
    opts: ServeOptions,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
    leases: ShardLeases,
) -> Result<(), ServeError> {
    let (allowed_tx, allowed_rx) = watch::channel(BTreeSet::new());
    let (running_tx, running_rx) = watch::channel(BTreeSet::new());
    metrics.stand_by();
    metrics.set_not_ready(None);
    tracing::info!("standing by: waiting to hold {} as {}", leases.describe(), leases.config.identity);
    let count = leases.count;
    let work = run_units(repo, plan, opts, metrics, stop.clone(), allowed_rx, running_tx, count);
    let coordinate = coordinate(leases, stop, allowed_tx, running_rx);
    let (served, ()) = tokio::join!(work, coordinate);
    served
}

/// The Lease side: a round every third of the duration (or as soon as the
/// units changed), until the units are gone; then leave.
async fn coordinate(
    mut leases: ShardLeases,
    stop: watch::Receiver<bool>,
    allowed: watch::Sender<BTreeSet<u32>>,
    mut running: watch::Receiver<BTreeSet<u32>>,
) {
    loop {
        // Rounds start a third of the duration apart, however long one takes.
        let next = tokio::time::Instant::now() + leases.round_every();
        let now_running = running.borrow_and_update().clone();
        let may = leases.round(&now_running, !*stop.borrow()).await;
        allowed.send_if_modified(|a| {
            let changed = *a != may;
            *a = may;
            changed
        });
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            changed = running.changed() => if changed.is_err() { break },
        }
    }
    leases.leave().await;
}

/// The units' side: run [`serve`] on the allowed shards, restarting it when they change.
#[allow(clippy::too_many_arguments)]
async fn run_units(
    repo: kmdr_repo::Repository,
    plan: kmdr_plan::Plan,
    opts: ServeOptions,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    mut allowed: watch::Receiver<BTreeSet<u32>>,
    running: watch::Sender<BTreeSet<u32>>,
    count: u32,
) -> Result<(), ServeError> {
    type Work = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ServeError>>>>;
    let mut current: Option<(watch::Sender<bool>, Work)> = None;
    let mut now: BTreeSet<u32> = BTreeSet::new();
    loop {
        let want = allowed.borrow_and_update().clone();
        let stopping = *stop.borrow();
        if want != now || stopping {
            if let Some((tx, work)) = current.take() {
                let _ = tx.send(true);
                work.await?;
            }
            metrics.stand_by();
            running.send_replace(BTreeSet::new());
            if stopping {
                return Ok(());
            }
            now = want;
            if now.is_empty() {
                metrics.set_not_ready(None);
                tracing::info!("standing by: this replica holds no shard");
            } else {
                metrics.set_leader(true);
                metrics.set_shards(count, &now);
                metrics.set_not_ready(Some("starting".into()));
                let mut o = opts.clone();
                o.shards = (count > 1).then(|| Shards { count, held: now.clone() });
                let (tx, rx) = watch::channel(false);
                current = Some((tx, Box::pin(serve(repo.clone(), plan.clone(), o, metrics.clone(), rx))));
            }
            running.send_replace(now.clone());
        }
        match &mut current {
            Some((_, work)) => tokio::select! {
                served = work => {
                    served?;
                    current = None;
                }
                _ = allowed.changed() => {}
                _ = stop.changed() => {}
            },
            None => tokio::select! {
                _ = allowed.changed() => {}
                _ = stop.changed() => {}
            },
        }
    }
}
