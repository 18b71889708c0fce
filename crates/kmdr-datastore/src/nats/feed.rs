//! The kine-on-NATS source of the capture core: an ordered consumer of the
//! tenant's bucket (stream `KV_<schema>`) from the sequence after the last
//! one captured. kine's revision is the stream sequence.
//!
//! Messages become events as the export reads them (`tenant::nats`): the
//! subject's base58 tokens decoded to the key, relative to `/registry`; a
//! `KV-Operation: DEL|PURGE` message or a `Delete: true` event is a delete;
//! otherwise the event's value, its create revision (or the message's own
//! sequence for a create). Subjects outside `/registry` or not in kine's
//! encoding move the coverage only.
//!
//! **Coverage.** An ordered consumer delivers the stream's messages in
//! sequence order and recreates itself after any missed delivery, so a
//! delivered message at sequence `s` proves that everything of the bucket
//! before `s` was delivered: the coverage is the last delivered sequence.
//!
//! **Removed messages are a compaction.** A KV bucket drops messages: the
//! oldest revision of a key past its history (kine: 10), everything before a
//! purge, or a stream limit. If a message the capture still needs is gone
//! (the stream's first sequence is past the one to resume from, or the
//! consumer's next message skips a sequence) the chain cannot hold every
//! change any more: [`Stopped::Compacted`], and serve takes a new full
//! backup, as for an etcd compaction. Resuming past the hole instead would
//! make every point in it restore a wrong state.

use crate::feed::{ChangeFeed, Changes, DeltaTarget, FeedError, Stopped};
use crate::nats::{NatsTenants, decode_key, decode_value, is_removal};
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy, push};
use futures::StreamExt;
use kmdr_repo::deltas::{DeltaEvent, Op};
use std::time::Instant;

/// An ordered consumer of one bucket.
pub struct NatsFeed {
    target: DeltaTarget,
    messages: push::Ordered,
    /// `$KV.<schema>.`
    prefix: String,
    /// The last sequence delivered (or the one before the start).
    covered: i64,
    /// The consumer said nothing was pending after the last message.
    caught_up: bool,
    /// Found while a batch was being taken: reported at the next call.
    gone: Option<Stopped>,
}

impl NatsFeed {
    /// Consume bucket `schema` from sequence `from`; `Ok(Err(..))` when messages from `from` on are gone.
    pub async fn open(
        store: &NatsTenants,
        schema: &str,
        target: &DeltaTarget,
        from: i64,
    ) -> Result<Result<NatsFeed, Stopped>, FeedError> {
        let stream = match store.stream(schema).await? {
            Some(s) => s,
            None => return Err(FeedError::Stream(format!("there is no KV bucket {schema} (stream KV_{schema})"))),
        };
        let first = stream.cached_info().state.first_sequence as i64;
        if first > from.max(1) {
            return Ok(Err(Stopped::Compacted { wanted: from, compact_revision: first - 1 }));
        }
        let prefix = format!("$KV.{schema}.");
        let consumer = stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: store.jetstream().client().new_inbox(),
                description: Some("kmdr delta capture".into()),
                filter_subject: format!("{prefix}>"),
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from.max(1) as u64 },
                replay_policy: ReplayPolicy::Instant,
                ..Default::default()
            })
            .await
            .map_err(|e| store.err("create consumer", e))?;
        let caught_up = consumer.cached_info().num_pending == 0;
        let messages = consumer.messages().await.map_err(|e| store.err("consume", e))?;
        Ok(Ok(NatsFeed { target: target.clone(), messages, prefix, covered: from - 1, caught_up, gone: None }))
    }

    /// One message as a change; `None` when it is not tenant data.
    fn event(&self, msg: &async_nats::Message, seq: i64) -> Result<Option<DeltaEvent>, FeedError> {
        let Some(kv_key) = msg.subject.as_str().strip_prefix(&self.prefix) else { return Ok(None) };
        let Ok(key) = decode_key(kv_key) else { return Ok(None) };
        let Some(key) = self.target.relative(&key).map(<[u8]>::to_vec) else { return Ok(None) };
        if is_removal(msg) {
            return Ok(Some(DeltaEvent { op: Op::Delete, key, value: Vec::new(), revision: seq, create_revision: 0 }));
        }
        let event = decode_value(&msg.payload)
            .map_err(|e| FeedError::Undecodable(format!("value of KV key {kv_key} (sequence {seq}): {e}")))?;
        Ok(Some(match (event.delete, event.kv) {
            (false, Some(kv)) => {
                let create_revision = if kv.create_revision == 0 { seq } else { kv.create_revision };
                DeltaEvent { op: Op::Put, key, value: kv.value.unwrap_or_default(), revision: seq, create_revision }
            }
            _ => DeltaEvent { op: Op::Delete, key, value: Vec::new(), revision: seq, create_revision: 0 },
        }))
    }
}

impl ChangeFeed for NatsFeed {
    async fn next(&mut self, until: Instant) -> Result<Result<Changes, Stopped>, FeedError> {
        if let Some(stopped) = self.gone.take() {
            return Ok(Err(stopped));
        }
        let mut out = Changes::default();
        // Take what is there now (up to a batch), without waiting past `until`.
        while out.events.len() < 1024 {
            let wait = if out.covered.is_some() { Instant::now() } else { until };
            let msg = match tokio::time::timeout_at(wait.into(), self.messages.next()).await {
                Err(_) => break,
                Ok(None) => return Err(FeedError::Stream("the consumer ended".into())),
                Ok(Some(Err(e))) => return Err(FeedError::Stream(format!("consume: {e}"))),
                Ok(Some(Ok(m))) => m,
            };
            let info = msg.info().map_err(|e| FeedError::Stream(format!("consume: {e}")))?;
            let (seq, pending) = (info.stream_sequence as i64, info.pending);
            if seq <= self.covered {
                continue;
            }
            if seq > self.covered + 1 {
                // Messages between are gone from the stream: hand over what came before first.
                self.gone = Some(Stopped::Compacted { wanted: self.covered + 1, compact_revision: seq - 1 });
                break;
            }
            if let Some(e) = self.event(&msg.message, seq)? {
                out.events.push(e);
            }
            self.covered = seq;
            self.caught_up = pending == 0;
            out.covered = Some(seq);
        }
        out.idle = self.caught_up;
        Ok(Ok(out))
    }
}
