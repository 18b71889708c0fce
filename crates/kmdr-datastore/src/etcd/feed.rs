//! The etcd source of the capture core: one Watch per series (the whole
//! keyspace of the under-cluster's etcd, or one tenant's range
//! `[/<schema>/, /<schema>0)`; `kmdr serve` shares one Watch between the
//! tenants of an etcd instead, [`super::hub`]), from the revision after the last one the
//! repository holds, with a progress notification asked for at every flush.
//!
//! Coverage: the last event's revision, or the revision of a progress
//! notification (etcd sends one only once every earlier event of the watch
//! has been sent). etcd never splits one revision's events over two
//! responses (no `fragment`), so a response holds whole revisions. A watch
//! cancelled with a compact revision is [`Stopped::Compacted`].

use crate::feed::{ChangeFeed, Changes, DeltaTarget, FeedError, Stopped};
use etcd_client::{Client, EventType, WatchOptions, WatchResponse, WatchStream};
use kmdr_etcd::connection::describe;
use kmdr_repo::deltas::{DeltaEvent, Op};
use std::time::Instant;

/// An open Watch of one series.
pub struct EtcdFeed {
    target: DeltaTarget,
    stream: WatchStream,
    /// The revision the watch started at, for a compaction report.
    from: i64,
}

/// The largest watch response read. A watch that starts behind (a capture
/// resumed after a full backup, or after a restart) gets etcd's catch-up
/// batches of up to 1,000 revisions in one response, tens of MiB with
/// transactions of many puts, far over gRPC's default 4 MiB limit, which
/// would fail the capture again at every retry.
pub(crate) const MAX_WATCH_RESPONSE: usize = 1 << 30;

impl EtcdFeed {
    /// Start watching `target` at revision `from`.
    pub async fn open(client: &Client, target: &DeltaTarget, from: i64) -> Result<EtcdFeed, FeedError> {
        let opts =
            WatchOptions::new().with_range(target.range_end.clone()).with_start_revision(from).with_progress_notify();
        let stream = client
            .watch_client()
            .max_decoding_message_size(MAX_WATCH_RESPONSE)
            .watch(target.range_start.clone(), Some(opts))
            .await
            .map_err(|e| FeedError::Stream(describe(&e)))?;
        Ok(EtcdFeed { target: target.clone(), stream, from })
    }

    fn changes(&self, resp: &WatchResponse) -> Result<Changes, Stopped> {
        let mut out = Changes::default();
        if resp.events().is_empty() {
            // A progress notification: every event up to its revision was sent.
            out.covered = resp.header().map(|h| h.revision());
            out.idle = out.covered.is_some();
            return Ok(out);
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            out.covered = Some(out.covered.unwrap_or(0).max(kv.mod_revision()));
            let Some(key) = self.target.relative(kv.key()) else { continue };
            let (op, value, create) = match ev.event_type() {
                EventType::Put => (Op::Put, kv.value().to_vec(), kv.create_revision()),
                EventType::Delete => (Op::Delete, Vec::new(), 0),
            };
            out.events.push(DeltaEvent {
                op,
                key: key.to_vec(),
                value,
                revision: kv.mod_revision(),
                create_revision: create,
            });
        }
        Ok(out)
    }
}

impl ChangeFeed for EtcdFeed {
    async fn next(&mut self, until: Instant) -> Result<Result<Changes, Stopped>, FeedError> {
        loop {
            let resp = tokio::select! {
                msg = self.stream.message() => match msg {
                    Ok(Some(r)) => r,
                    Ok(None) => return Err(FeedError::Stream("the watch stream ended".into())),
                    Err(e) => return Err(FeedError::Stream(describe(&e))),
                },
                _ = tokio::time::sleep_until(until.into()) => {
                    // Ask for progress so that the next flush can prove coverage without changes.
                    let _ = self.stream.request_progress().await;
                    return Ok(Ok(Changes::default()));
                }
            };
            if resp.canceled() {
                if resp.compact_revision() > 0 {
                    return Ok(Err(Stopped::Compacted {
                        wanted: self.from,
                        compact_revision: resp.compact_revision(),
                    }));
                }
                return Err(FeedError::Stream(format!("etcd cancelled the watch: {}", resp.cancel_reason())));
            }
            if resp.created() {
                continue;
            }
            return Ok(self.changes(&resp));
        }
    }
}
