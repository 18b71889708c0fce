//! One etcd Watch for every tenant of a shared etcd: the source of the
//! capture core for tenants on etcd ([`EtcdWatchHub`], a [`HubFeed`] per
//! tenant). A Watch per tenant costs etcd a watcher and kmdr a gRPC stream and
//! a task each; with 1,000 tenants, 1,000 of each. The hub opens one Watch over
//! the smallest key range holding every subscribed tenant's range
//! `[/<schema>/, /<schema>0)` and hands each tenant the events of its range.
//!
//! Each tenant still resumes exactly where its own chain ends. The hub keeps,
//! per subscriber, `high`: every event of its range up to `high` has been
//! handed over (or lies before the revision it asked to start from), and
//! hands over only events above it. One watch position `proven` (the last
//! event's revision, or a progress notification's: etcd sends one only once
//! every earlier event of the watch was sent) is shared by all, since the
//! watch covers every subscriber's range; it is published after the events
//! up to it are in the subscribers' channels, and a feed reads it before
//! draining its channel, so it is a coverage proof for every subscriber.
//!
//! A tenant that subscribes at a revision the watch has passed (a capture
//! resumed, or started after the others) makes the hub open the watch again
//! at that revision; subscribers already further on drop what they have
//! seen. Joins that arrive close together (serve starting 1,000 captures)
//! are taken together, after a short wait, so that the watch reopens once.
//! A watch cancelled with a compact revision stops, with
//! [`Stopped::Compacted`], the subscribers that still need a compacted
//! revision; the others continue. Any other failure of the watch fails every
//! subscriber (each capture writes what it holds and resubscribes with
//! backoff, as after the failure of its own watch) and marks the hub failed,
//! so that its owner connects a new one.
//!
//! Channels to subscribers are unbounded: a capture that cannot write (its
//! repository put retrying) must not stall every other tenant's capture; what
//! it has not taken waits in memory, as its buffered changes do.

use crate::feed::{ChangeFeed, Changes, DeltaTarget, FeedError, Stopped};
use etcd_client::{Client, EventType, WatchOptions, WatchResponse, WatchStream};
use kmdr_etcd::connection::describe;
use kmdr_repo::deltas::{DeltaEvent, Op};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How often the hub asks etcd for a progress notification.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How long joins are collected before the watch is opened again for them.
const JOIN_WAIT: Duration = Duration::from_millis(200);

/// One Watch of a shared etcd, shared by the captures of its tenants.
pub struct EtcdWatchHub {
    joins: mpsc::UnboundedSender<Join>,
    shared: Arc<Shared>,
    client: Client,
}

/// What the hub publishes to every feed.
struct Shared {
    /// Every event up to this revision of every subscriber's range is in its channel.
    proven: AtomicI64,
    /// Milliseconds after `epoch` of the last progress notification (0: none yet).
    synced_ms: AtomicU64,
    epoch: Instant,
    /// The watch failed (other than by compaction): connect a new hub.
    failed: AtomicBool,
    next_id: AtomicU64,
}

struct Join {
    id: u64,
    target: DeltaTarget,
    from: i64,
    tx: mpsc::UnboundedSender<Msg>,
    ack: oneshot::Sender<()>,
}

/// What the hub sends a subscriber, in order.
enum Msg {
    /// Whole revisions of its range, in order.
    Events(Vec<DeltaEvent>),
    Stopped(Stopped),
    Failed(String),
}

/// One subscriber, as the hub holds it.
struct Sub {
    target: DeltaTarget,
    /// Every event of its range up to here was handed over (or is before its start).
    high: i64,
    tx: mpsc::UnboundedSender<Msg>,
}

impl EtcdWatchHub {
    /// Start the hub's task on `client` (it opens the watch when a tenant subscribes).
    pub fn start(client: Client) -> EtcdWatchHub {
        let shared = Arc::new(Shared {
            proven: AtomicI64::new(0),
            synced_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            failed: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
        });
        let (joins, rx) = mpsc::unbounded_channel();
        tokio::spawn(
            Hub { client: client.clone(), shared: shared.clone(), subs: HashMap::new(), routes: BTreeMap::new() }
                .run(rx),
        );
        EtcdWatchHub { joins, shared, client }
    }

    /// The watch failed: the hub serves no one any more.
    pub fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }

    /// The client the hub watches with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Changes of `target`'s range from revision `from` on.
    pub async fn subscribe(&self, target: &DeltaTarget, from: i64) -> Result<HubFeed, FeedError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ack, acked) = oneshot::channel();
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let gone = || FeedError::Stream("the shared watch of this etcd stopped".into());
        self.joins.send(Join { id, target: target.clone(), from, tx, ack }).map_err(|_| gone())?;
        // The watch is open for it (or it failed, which the channel says).
        let _ = acked.await;
        Ok(HubFeed { rx, shared: self.shared.clone(), held: None })
    }
}

/// The hub's task: the watch, the subscribers, the routing of events.
struct Hub {
    client: Client,
    shared: Arc<Shared>,
    subs: HashMap<u64, Sub>,
    /// Subscribers by the start of their range.
    routes: BTreeMap<Vec<u8>, Vec<u64>>,
}

/// How a watch ended.
enum Ended {
    /// Open it again (joins that need earlier revisions, a compaction).
    Reopen,
    /// Every handle of the hub is gone.
    Closed,
}

impl Hub {
    async fn run(mut self, mut joins: mpsc::UnboundedReceiver<Join>) {
        let mut pending: Vec<Join> = Vec::new();
        loop {
            if self.subs.is_empty() && pending.is_empty() {
                match joins.recv().await {
                    Some(j) => pending.push(j),
                    None => return,
                }
            }
            // Take the joins that come close together: until none came for JOIN_WAIT, 10 x JOIN_WAIT at most.
            let last = Instant::now() + 10 * JOIN_WAIT;
            while let Ok(Some(j)) =
                tokio::time::timeout_at(last.min(Instant::now() + JOIN_WAIT).into(), joins.recv()).await
            {
                pending.push(j);
            }
            let acks = self.admit(std::mem::take(&mut pending));
            self.subs.retain(|_, s| !s.tx.is_closed());
            self.rebuild_routes();
            if self.subs.is_empty() {
                continue;
            }
            let (start, range_start, range_end) = self.span();
            let opts = WatchOptions::new().with_range(range_end).with_start_revision(start).with_progress_notify();
            let opened = self
                .client
                .watch_client()
                .max_decoding_message_size(crate::etcd::feed::MAX_WATCH_RESPONSE)
                .watch(range_start, Some(opts))
                .await;
            let stream = match opened {
                Ok(s) => s,
                Err(e) => {
                    self.fail(&format!("cannot open the shared watch: {}", describe(&e)));
                    return self.drain(joins).await;
                }
            };
            self.shared.proven.store(start - 1, Ordering::Release);
            self.shared.synced_ms.store(0, Ordering::Release); // until this watch proves itself current
            // Only now: a feed must not read the position of the watch it was not part of.
            for ack in acks {
                let _ = ack.send(());
            }
            match self.watch(stream, &mut joins, &mut pending).await {
                Ok(Ended::Reopen) => continue,
                Ok(Ended::Closed) => return,
                Err(why) => {
                    self.fail(&why);
                    return self.drain(joins).await;
                }
            }
        }
    }

    /// Make new subscribers of `joins` (their acknowledgements returned, to send
    /// once the watch is open): those already here have every event up to `proven`.
    fn admit(&mut self, joins: Vec<Join>) -> Vec<oneshot::Sender<()>> {
        let proven = self.shared.proven.load(Ordering::Acquire);
        for s in self.subs.values_mut() {
            s.high = s.high.max(proven);
        }
        let mut acks = Vec::new();
        for j in joins {
            self.subs.insert(j.id, Sub { target: j.target, high: j.from - 1, tx: j.tx });
            acks.push(j.ack);
        }
        acks
    }

    fn rebuild_routes(&mut self) {
        self.routes.clear();
        for (id, s) in &self.subs {
            self.routes.entry(s.target.range_start.clone()).or_default().push(*id);
        }
    }

    /// Where the watch starts and the key range it covers.
    fn span(&self) -> (i64, Vec<u8>, Vec<u8>) {
        let start = self.subs.values().map(|s| s.high + 1).min().unwrap_or(1);
        let range_start = self.subs.values().map(|s| s.target.range_start.clone()).min().unwrap_or_default();
        let range_end = self.subs.values().map(|s| s.target.range_end.clone()).max().unwrap_or_default();
        (start, range_start, range_end)
    }

    /// Whether the watch covers a new subscriber without opening again.
    fn covers(&self, j: &Join) -> bool {
        let (_, start, end) = self.span();
        j.from > self.shared.proven.load(Ordering::Acquire)
            && j.target.range_start >= start
            && j.target.range_end <= end
    }

    async fn watch(
        &mut self,
        mut stream: WatchStream,
        joins: &mut mpsc::UnboundedReceiver<Join>,
        pending: &mut Vec<Join>,
    ) -> Result<Ended, String> {
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        loop {
            tokio::select! {
                j = joins.recv() => match j {
                    None => return Ok(Ended::Closed),
                    Some(j) if self.covers(&j) => {
                        self.subs.insert(j.id, Sub { target: j.target, high: j.from - 1, tx: j.tx });
                        self.rebuild_routes();
                        let _ = j.ack.send(());
                    }
                    Some(j) => {
                        pending.push(j);
                        return Ok(Ended::Reopen);
                    }
                },
                _ = tick.tick() => {
                    self.subs.retain(|_, s| !s.tx.is_closed());
                    if self.subs.is_empty() {
                        self.routes.clear();
                        return Ok(Ended::Reopen);
                    }
                    // Proves coverage for the tenants without changes.
                    stream.request_progress().await.map_err(|e| describe(&e))?;
                }
                msg = stream.message() => {
                    let resp = match msg {
                        Ok(Some(r)) => r,
                        Ok(None) => return Err("the shared watch stream ended".into()),
                        Err(e) => return Err(describe(&e)),
                    };
                    if resp.canceled() {
                        if resp.compact_revision() > 0 {
                            self.compacted(resp.compact_revision());
                            return Ok(Ended::Reopen);
                        }
                        return Err(format!("etcd cancelled the shared watch: {}", resp.cancel_reason()));
                    }
                    if resp.created() {
                        continue;
                    }
                    self.route(&resp);
                }
            }
        }
    }

    /// Hand each subscriber the events of its range, then publish the new position.
    fn route(&mut self, resp: &WatchResponse) {
        if resp.events().is_empty() {
            // A progress notification: every event up to its revision was sent.
            if let Some(r) = resp.header().map(|h| h.revision()) {
                self.shared.proven.fetch_max(r, Ordering::AcqRel);
                let ms = self.shared.epoch.elapsed().as_millis() as u64;
                self.shared.synced_ms.store(ms.max(1), Ordering::Release);
            }
            return;
        }
        let mut batches: HashMap<u64, Vec<DeltaEvent>> = HashMap::new();
        let mut top = 0;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let rev = kv.mod_revision();
            top = top.max(rev);
            let key = kv.key();
            let Some((_, ids)) = self.routes.range::<[u8], _>((Bound::Unbounded, Bound::Included(key))).next_back()
            else {
                continue;
            };
            for id in ids {
                let sub = &self.subs[id];
                if rev <= sub.high || key >= sub.target.range_end.as_slice() {
                    continue;
                }
                let Some(rel) = sub.target.relative(key) else { continue };
                let (op, value, create) = match ev.event_type() {
                    EventType::Put => (Op::Put, kv.value().to_vec(), kv.create_revision()),
                    EventType::Delete => (Op::Delete, Vec::new(), 0),
                };
                batches.entry(*id).or_default().push(DeltaEvent {
                    op,
                    key: rel.to_vec(),
                    value,
                    revision: rev,
                    create_revision: create,
                });
            }
        }
        for (id, events) in batches {
            let sub = self.subs.get_mut(&id).expect("routed to a subscriber");
            sub.high = sub.high.max(events.last().map_or(0, |e| e.revision));
            let _ = sub.tx.send(Msg::Events(events));
        }
        self.shared.proven.fetch_max(top, Ordering::AcqRel);
    }

    /// The watch started at a compacted revision: stop the subscribers that need one.
    fn compacted(&mut self, compact_revision: i64) {
        let proven = self.shared.proven.load(Ordering::Acquire);
        self.subs.retain(|_, s| {
            let next = s.high.max(proven) + 1;
            if next <= compact_revision {
                let _ = s.tx.send(Msg::Stopped(Stopped::Compacted { wanted: next, compact_revision }));
                return false;
            }
            true
        });
        self.rebuild_routes();
    }

    fn fail(&mut self, why: &str) {
        tracing::warn!("the shared watch of {} tenants failed: {why}", self.subs.len());
        self.shared.failed.store(true, Ordering::Release);
        for (_, s) in self.subs.drain() {
            let _ = s.tx.send(Msg::Failed(why.to_string()));
        }
        self.routes.clear();
    }

    /// Failed: tell whoever still subscribes, until the last handle is gone.
    async fn drain(self, mut joins: mpsc::UnboundedReceiver<Join>) {
        while let Some(j) = joins.recv().await {
            let _ = j.tx.send(Msg::Failed("the shared watch of this etcd failed".into()));
            let _ = j.ack.send(());
        }
    }
}

/// One tenant's share of the hub's watch: its changes, and coverage proofs.
pub struct HubFeed {
    rx: mpsc::UnboundedReceiver<Msg>,
    shared: Arc<Shared>,
    /// A stop or failure read behind events, reported at the next call.
    held: Option<Msg>,
}

impl HubFeed {
    /// Whether the hub's watch proved itself current lately.
    fn synced(&self) -> bool {
        let at = self.shared.synced_ms.load(Ordering::Acquire);
        let now = self.shared.epoch.elapsed().as_millis() as u64;
        at > 0 && now.saturating_sub(at) < 3 * PROGRESS_EVERY.as_millis() as u64
    }

    fn end(msg: Msg) -> Result<Result<Changes, Stopped>, FeedError> {
        match msg {
            Msg::Stopped(s) => Ok(Err(s)),
            Msg::Failed(why) => Err(FeedError::Stream(why)),
            Msg::Events(_) => unreachable!("events are handed over, never held"),
        }
    }
}

impl ChangeFeed for HubFeed {
    async fn next(&mut self, until: Instant) -> Result<Result<Changes, Stopped>, FeedError> {
        if let Some(m) = self.held.take() {
            return Self::end(m);
        }
        let mut out = Changes::default();
        let first = tokio::select! {
            m = self.rx.recv() => Some(m.ok_or_else(|| FeedError::Stream("the shared watch of this etcd stopped".into()))?),
            _ = tokio::time::sleep_until(until.into()) => None,
        };
        // The position first, then the channel: every event up to it is in there.
        let proven = self.shared.proven.load(Ordering::Acquire);
        let mut next = first;
        loop {
            match next {
                Some(Msg::Events(evs)) => out.events.extend(evs),
                Some(m) => {
                    if out.events.is_empty() {
                        return Self::end(m);
                    }
                    self.held = Some(m);
                    break;
                }
                None => {}
            }
            match self.rx.try_recv() {
                Ok(m) => next = Some(m),
                Err(_) => break,
            }
        }
        let last = out.events.last().map(|e| e.revision);
        out.covered = Some(last.unwrap_or(proven).max(proven));
        out.idle = out.events.is_empty() && self.synced();
        Ok(Ok(out))
    }
}
