//! Tenants on NATS JetStream, as kine's NATS driver stores them: tenant
//! `<schema>` is the KV bucket `<schema>` (stream `KV_<schema>`).
//!
//! # kine's format (kine `pkg/drivers/nats/codec.go`, `backend.go`)
//!
//! * **KV key**: the API server key (`/registry/pods/ns/x`) with leading and
//!   trailing `/` trimmed, split on `/`, every segment base58-encoded (Bitcoin
//!   alphabet) and the results joined with `.`; so a segment may hold any
//!   byte, dots included. An empty segment (`/a//b`) or a trailing `/` would
//!   not survive that (empty NATS subject token, or a key that decodes to
//!   something else), so [`encode_key`] refuses such keys and [`decode_key`]
//!   refuses empty tokens: a key either round-trips exactly or is reported.
//! * **KV value**: the S2 *stream* format (framed, starting with the S2 stream
//!   identifier; Snappy-framed streams are read too) of kine's JSON event
//!   `{"KV":{"Key","CreateRevision","ModRevision","Value"(base64),"Lease"},
//!   "PrevRevision","Create","Delete"}` ([`KineEvent`]).
//! * **Live key**: the subject's latest message is a PUT (no `KV-Operation:
//!   DEL|PURGE` header) whose event has `Delete: false`. kine reads the
//!   revision of a key as the message's stream sequence.
//!
//! # Export
//!
//! The bound is the stream's last sequence, read first; it is the export's
//! revision. An ordered push consumer delivering the last message per subject
//! then yields every subject's newest message; a message past the bound means
//! that subject changed after the bound (or was created after it), and its
//! value at the bound is looked up in the subject's history afterwards (if
//! the history no longer holds it, the export starts over at a new bound).
//! The consumer is read until it reports nothing pending or reaches the last
//! sequence seen after it was created.
//!
//! NATS delivers in stream order, the record stream wants key order: values
//! go to the crate's one spill file ([`crate::spill`]) as they arrive, the
//! newest sequence of a key winning, and only the key and where its value is
//! stay in memory, so memory is bounded by the keys, not the values. The
//! spill then hands the values back in key order.
//!
//! # Import
//!
//! The bucket is created as kine creates it (history 10, description, direct
//! get allowed), or with `--force` the bucket's stream is purged (that stream
//! only; sequences keep increasing, so kine's revisions stay monotonic). Puts
//! are pipelined: up to [`IN_FLIGHT`] published and awaiting their ack. NATS
//! has no transactions, so an interrupted import leaves part of the keys
//! written; the error says how many and that `--force` completes it.

mod codec;
pub mod feed;

pub use codec::{
    CodecError, KineEvent, KineKv, decode_key, decode_value, encode_key, encode_value, s2_compress, s2_decompress,
};

use crate::records::{RecordReader, RecordWriter, relative};
use crate::spill::{RowMeta, Spill};
use crate::store::{ExportInfo, ImportInfo, TenantError, TenantStore};
use crate::url::{DatastoreUrl, Driver};
use async_nats::jetstream::{self, consumer::DeliverPolicy, stream::Stream};
use futures::stream::{FuturesUnordered, StreamExt};
use kmdr_core::TlsFiles;
use std::collections::HashMap;
use std::future::IntoFuture;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// kine's key root: the API server's `--etcd-prefix` default.
const KEY_ROOT: &str = "/registry";
/// Description kine gives the buckets it creates.
const BUCKET_DESCRIPTION: &str = "Holds kine key/values";
/// History kine gives the buckets it creates.
const BUCKET_HISTORY: i64 = 10;
/// Puts published and awaiting their ack during an import.
pub const IN_FLIGHT: usize = 256;
/// Connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the next message of an export before giving up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Exports started over when the bucket changed too fast to read at one bound.
const ATTEMPTS: usize = 5;

/// A connected NATS server holding kine buckets.
pub struct NatsTenants {
    js: jetstream::Context,
    shown: String,
}

/// What kind of message a KV subject holds last.
pub(crate) fn is_removal(msg: &async_nats::Message) -> bool {
    let Some(h) = msg.headers.as_ref() else { return false };
    if let Some(op) = h.get("KV-Operation") {
        return matches!(op.as_str(), "DEL" | "PURGE");
    }
    // Server-written markers (subject delete markers, 2.11+).
    h.get("Nats-Marker-Reason").is_some()
}

fn valid_bucket(schema: &str) -> bool {
    !schema.is_empty() && schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A subject that is not a key under the root (its name is not kine's
/// encoding, or the key is outside `/registry`): counted, never exported.
struct Skipped {
    seq: u64,
    live: bool,
    /// How to show it in the warning: kine's JSON key, or the subject.
    shown: String,
}

/// Result of reading a bucket at a bound: every subject's newest message at
/// or before the bound. Keys under the root go to the spill (the value on
/// disk when the scan keeps values, the key and its sequence in memory).
struct Scan {
    keys: Spill,
    skipped: HashMap<String, Skipped>,
    /// Whether values are written to the spill (export) or only counted.
    values: bool,
}

impl Scan {
    /// The sequence of the newest message seen of a subject.
    fn seq_of(&self, kv_key: &str) -> Option<u64> {
        match decode_key(kv_key).ok().as_deref().and_then(|k| relative(k, KEY_ROOT.as_bytes())) {
            Some(rel) => self.keys.newest(rel).map(|id| id as u64),
            None => self.skipped.get(kv_key).map(|s| s.seq),
        }
    }
}

/// Why a scan stopped without a result.
enum ScanError {
    /// Start over at a newer bound.
    Retry(String),
    Fail(TenantError),
}

impl From<TenantError> for ScanError {
    fn from(e: TenantError) -> Self {
        ScanError::Fail(e)
    }
}

impl NatsTenants {
    /// Connect with the URL's user and password; `tls://` requires TLS.
    /// `--cacert` adds a CA and requires TLS; `--cert`/`--key` present a client certificate.
    pub async fn connect(url: &DatastoreUrl, tls: &TlsFiles) -> Result<Self, TenantError> {
        let shown = url.redacted();
        let scheme = if url.tls { "tls" } else { "nats" };
        let addr = format!("{scheme}://{}", url.host_ports().join(","));
        let mut opts = async_nats::ConnectOptions::new()
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(Duration::from_secs(10)))
            .name("kmdr")
            // The export's ordered consumer is flow-controlled, but the
            // client's default 65,536-message queue let it buffer ~90 MiB of
            // values ahead of the spill: 4,096 keeps the peak RSS of a
            // 100,000-key export at 77 MiB instead of 137 MiB (same content hash).
            .subscription_capacity(4096)
            .require_tls(url.tls || tls.is_set());
        if let Some(ca) = &tls.cacert {
            opts = opts.add_root_certificates(ca.clone());
        }
        match (&tls.cert, &tls.key) {
            (Some(c), Some(k)) => opts = opts.add_client_certificate(c.clone(), k.clone()),
            (None, None) => {}
            _ => return Err(TenantError::BadUrl("--cert and --key go together: pass both or neither".into())),
        }
        if let Some(ca) = url.param("tls_ca").or_else(|| url.param("ca")) {
            opts = opts.add_root_certificates(std::path::PathBuf::from(ca));
        }
        if let Some(user) = &url.user {
            opts = opts.user_and_password(user.clone(), url.password.clone().unwrap_or_default());
        }
        let client = match tokio::time::timeout(CONNECT_TIMEOUT * 2, opts.connect(addr)).await {
            Err(_) => {
                return Err(TenantError::Unreachable {
                    driver: Driver::Nats,
                    datastore: shown,
                    detail: "connect timed out".into(),
                });
            }
            Ok(Err(e)) => {
                use async_nats::ConnectErrorKind as K;
                let detail = e.to_string();
                return Err(match e.kind() {
                    K::AuthorizationViolation | K::Authentication => {
                        TenantError::Auth { driver: Driver::Nats, datastore: shown, detail }
                    }
                    K::ServerParse => TenantError::BadUrl(format!("{shown}: {detail}")),
                    _ => TenantError::Unreachable { driver: Driver::Nats, datastore: shown, detail },
                });
            }
            Ok(Ok(c)) => c,
        };
        Ok(NatsTenants { js: jetstream::new(client), shown })
    }

    /// The JetStream context (the delta capture's consumer).
    pub(crate) fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    pub(crate) fn err(&self, op: &str, e: impl std::fmt::Display) -> TenantError {
        TenantError::Datastore {
            driver: Driver::Nats,
            op: op.into(),
            datastore: self.shown.clone(),
            detail: e.to_string(),
        }
    }

    /// The bucket's stream, `None` when it does not exist.
    pub(crate) async fn stream(&self, schema: &str) -> Result<Option<Stream>, TenantError> {
        if !valid_bucket(schema) {
            return Ok(None);
        }
        match self.js.get_stream(format!("KV_{schema}")).await {
            Ok(s) => Ok(Some(s)),
            Err(e) => match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(self.err("stream info", e)),
            },
        }
    }

    async fn last_sequence(&self, stream: &Stream) -> Result<u64, TenantError> {
        Ok(stream.get_info().await.map_err(|e| self.err("stream info", e))?.state.last_sequence)
    }

    /// Read the newest message of every subject as of sequence `bound`,
    /// spilling live values when `spill` is set.
    async fn scan(&self, schema: &str, stream: &Stream, bound: u64, values: bool) -> Result<Scan, ScanError> {
        let keys = Spill::new().map_err(|e| self.err("create temp file", e))?;
        let mut scan = Scan { keys, skipped: HashMap::new(), values };
        if bound == 0 {
            return Ok(scan);
        }
        let prefix = format!("$KV.{schema}.");
        let consumer = stream
            .create_consumer(jetstream::consumer::push::OrderedConfig {
                deliver_subject: self.js.client().new_inbox(),
                description: Some("kmdr export".into()),
                filter_subject: format!("{prefix}>"),
                deliver_policy: DeliverPolicy::LastPerSubject,
                replay_policy: jetstream::consumer::ReplayPolicy::Instant,
                ..Default::default()
            })
            .await
            .map_err(|e| self.err("create consumer", e))?;
        let initial = consumer.cached_info().num_pending;
        // Every message of the initial set is at or before this sequence.
        let end = self.last_sequence(stream).await?;
        // Subjects whose newest message is past the bound.
        let mut late: Vec<String> = Vec::new();
        if initial > 0 {
            let mut messages = consumer.messages().await.map_err(|e| self.err("consume", e))?;
            loop {
                let msg = match tokio::time::timeout(IDLE_TIMEOUT, messages.next()).await {
                    Err(_) => {
                        return Err(self.err("consume", format!("no message for {}s", IDLE_TIMEOUT.as_secs())).into());
                    }
                    Ok(None) => return Err(self.err("consume", "the consumer ended early").into()),
                    Ok(Some(Err(e))) => return Err(self.err("consume", e).into()),
                    Ok(Some(Ok(m))) => m,
                };
                let info = msg.info().map_err(|e| self.err("consume", e))?;
                let (seq, pending) = (info.stream_sequence, info.pending);
                let Some(kv_key) = msg.subject.as_str().strip_prefix(&prefix) else { continue };
                if seq > bound {
                    late.push(kv_key.to_string());
                } else {
                    let removed = is_removal(&msg.message);
                    self.record(&mut scan, kv_key, seq, removed, &msg.payload).await?;
                }
                if pending == 0 || seq >= end {
                    break;
                }
            }
        }
        // Subjects changed after the bound: their value at the bound, from history.
        let max_per_subject = stream.cached_info().config.max_messages_per_subject;
        let kv = self.js.get_key_value(schema).await.map_err(|e| self.err("open bucket", e))?;
        for kv_key in late {
            if scan.seq_of(&kv_key).is_some_and(|seq| seq <= bound) {
                continue;
            }
            let mut history = kv.history(&kv_key).await.map_err(|e| self.err("history", e))?;
            let (mut at_bound, mut kept, mut purged) = (None, 0i64, false);
            while let Some(entry) = history.next().await {
                let entry = entry.map_err(|e| self.err("history", e))?;
                kept += 1;
                purged |= entry.operation == async_nats::jetstream::kv::Operation::Purge;
                if entry.revision <= bound {
                    at_bound = Some(entry);
                }
            }
            match at_bound {
                Some(e) => {
                    let removed = e.operation != async_nats::jetstream::kv::Operation::Put;
                    self.record(&mut scan, &kv_key, e.revision, removed, &e.value).await?;
                }
                // Never overwritten past the history limit nor purged: created after the bound.
                None if !purged && (max_per_subject <= 0 || kept < max_per_subject) => {}
                None => {
                    return Err(ScanError::Retry(format!(
                        "the value of {kv_key} at sequence {bound} is no longer kept"
                    )));
                }
            }
        }
        Ok(scan)
    }

    /// Note the newest message of a subject.
    async fn record(
        &self,
        scan: &mut Scan,
        kv_key: &str,
        seq: u64,
        removed: bool,
        payload: &[u8],
    ) -> Result<(), TenantError> {
        let mut put = None;
        if !removed {
            let event = decode_value(payload)
                .map_err(|e| self.err("decode", format!("value of KV key {kv_key} (sequence {seq}): {e}")))?;
            if let (false, Some(kv)) = (event.delete, event.kv) {
                put = Some(kv);
            }
        }
        let key = decode_key(kv_key).ok();
        let Some(rel) = key.as_deref().and_then(|k| relative(k, KEY_ROOT.as_bytes())) else {
            if scan.skipped.get(kv_key).is_none_or(|s| s.seq < seq) {
                let shown = match (&put, &key) {
                    (Some(kv), Some(_)) => kv.key.clone(),
                    _ => kv_key.to_string(),
                };
                scan.skipped.insert(kv_key.to_string(), Skipped { seq, live: put.is_some(), shown });
            }
            return Ok(());
        };
        match put {
            None => {
                scan.keys.remove_if_newer(rel, seq as i64);
            }
            Some(kv) => {
                let create_revision = if kv.create_revision == 0 { seq as i64 } else { kv.create_revision };
                let meta = RowMeta { id: seq as i64, created: 0, create_revision, lease: kv.lease };
                let value = if scan.values { kv.value.as_deref().unwrap_or_default() } else { &[] };
                scan.keys.put_if_newer(rel, meta, value).map_err(|e| self.err("write temp file", e))?;
            }
        }
        Ok(())
    }

    async fn scan_retrying(
        &self,
        schema: &str,
        stream: &Stream,
        at: Option<i64>,
        values: bool,
    ) -> Result<(u64, Scan), TenantError> {
        let mut why = String::new();
        for _ in 0..ATTEMPTS {
            let last = self.last_sequence(stream).await?;
            let bound = match at {
                Some(a) if a >= 0 => (a as u64).min(last),
                _ => last,
            };
            match self.scan(schema, stream, bound, values).await {
                Ok(s) => return Ok((bound, s)),
                Err(ScanError::Fail(e)) => return Err(e),
                Err(ScanError::Retry(w)) if at.is_none() => why = w,
                Err(ScanError::Retry(w)) => return Err(self.err("export", w)),
            }
        }
        Err(self.err(
            "export",
            format!("bucket {schema} changed too fast to read at one sequence ({why}); retry when it is quieter"),
        ))
    }
}

impl TenantStore for NatsTenants {
    fn driver(&self) -> Driver {
        Driver::Nats
    }

    fn datastore(&self) -> String {
        self.shown.clone()
    }

    fn key_root(&self, _schema: &str) -> String {
        KEY_ROOT.into()
    }

    async fn list_tenants(&self) -> Result<Vec<String>, TenantError> {
        let mut names = self.js.stream_names();
        let mut found = Vec::new();
        while let Some(name) = names.next().await {
            let name = name.map_err(|e| self.err("list streams", e))?;
            if let Some(bucket) = name.strip_prefix("KV_") {
                found.push(bucket.to_string());
            }
        }
        found.sort();
        Ok(found)
    }

    async fn export<W: AsyncWrite + Unpin + Send>(
        &self,
        schema: &str,
        at: Option<i64>,
        out: &mut RecordWriter<W>,
    ) -> Result<ExportInfo, TenantError> {
        let Some(stream) = self.stream(schema).await? else {
            let found = self.list_tenants().await.unwrap_or_default();
            return Err(TenantError::UnknownSchema { schema: schema.into(), datastore: self.shown.clone(), found });
        };
        let (bound, scan) = self.scan_retrying(schema, &stream, at, true).await?;
        let mut info = ExportInfo { revision: bound as i64, ..Default::default() };
        for skipped in scan.skipped.into_values().filter(|s| s.live) {
            info.skipped_keys += 1;
            info.first_skipped.get_or_insert(skipped.shown);
        }
        let leased = &mut info.leased_keys;
        // Key order from the spill; the temp file goes with it.
        scan.keys
            .sorted(async |key: &[u8], meta: RowMeta, value: &[u8]| {
                if meta.lease != 0 {
                    *leased += 1;
                }
                out.write(key, value, meta.create_revision, meta.id).await.map_err(TenantError::from)
            })
            .await?;
        Ok(info)
    }

    /// Every live key of the bucket, also those outside `/registry`: the
    /// bucket is the tenant, and `--force` removes them all.
    async fn count(&self, schema: &str) -> Result<u64, TenantError> {
        let Some(stream) = self.stream(schema).await? else { return Ok(0) };
        let (_, scan) = self.scan_retrying(schema, &stream, None, false).await?;
        Ok((scan.keys.len() + scan.skipped.values().filter(|s| s.live).count()) as u64)
    }

    async fn import<R: AsyncRead + Unpin + Send>(
        &self,
        schema: &str,
        input: &mut RecordReader<R>,
        replace: bool,
    ) -> Result<ImportInfo, TenantError> {
        let mut info = ImportInfo::default();
        let failed = |info: &ImportInfo, detail: String| TenantError::ImportFailed {
            schema: schema.into(),
            datastore: self.shown.clone(),
            state: format!(
                "{} keys were written into bucket {schema} before it stopped{}; no other bucket was touched. Run the same restore with --force to replace them with the complete copy",
                info.written,
                if info.removed > 0 {
                    format!(" ({} keys there before were removed)", info.removed)
                } else {
                    String::new()
                }
            ),
            detail,
        };
        if !valid_bucket(schema) {
            return Err(TenantError::Unrepresentable(format!(
                "{schema:?} cannot name a NATS KV bucket: use letters, digits, '-' and '_'"
            )));
        }
        // The bucket, as kine creates it or with direct get turned on as kine does.
        let stream = match self.stream(schema).await.map_err(|e| failed(&info, e.to_string()))? {
            Some(stream) => {
                let mut config = stream.cached_info().config.clone();
                if !config.allow_direct {
                    config.allow_direct = true;
                    self.js
                        .update_stream(config)
                        .await
                        .map_err(|e| failed(&info, format!("enable direct get: {e}")))?;
                }
                stream
            }
            None => {
                let kv = self
                    .js
                    .create_key_value(jetstream::kv::Config {
                        bucket: schema.into(),
                        description: BUCKET_DESCRIPTION.into(),
                        history: BUCKET_HISTORY,
                        num_replicas: 1,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| failed(&info, format!("create bucket: {e}")))?;
                kv.stream
            }
        };
        if replace {
            let live = self.count(schema).await.map_err(|e| failed(&info, e.to_string()))?;
            stream.purge().await.map_err(|e| failed(&info, format!("purge bucket: {e}")))?;
            info.removed = live;
        }
        let prefix = format!("$KV.{schema}.");
        let mut inflight = FuturesUnordered::new();
        let mut error: Option<String> = None;
        loop {
            let rec = match input.next().await {
                Ok(Some(rec)) => rec,
                Ok(None) => break,
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            };
            let mut key = KEY_ROOT.as_bytes().to_vec();
            key.extend_from_slice(&rec.key);
            let (kv_key, key) = match (encode_key(&key), String::from_utf8(key)) {
                (Ok(k), Ok(s)) => (k, s),
                (Err(e), _) => {
                    error = Some(format!("key cannot be stored: {e}"));
                    break;
                }
                (_, Err(e)) => {
                    error = Some(format!(
                        "key {:?} is not UTF-8, which kine's JSON cannot hold",
                        String::from_utf8_lossy(e.as_bytes())
                    ));
                    break;
                }
            };
            let payload = encode_value(&key, &rec.value);
            match self.js.publish(format!("{prefix}{kv_key}"), payload.into()).await {
                Ok(ack) => inflight.push(ack.into_future()),
                Err(e) => {
                    error = Some(format!("publish {key}: {e}"));
                    break;
                }
            }
            while inflight.len() >= IN_FLIGHT {
                match inflight.next().await.expect("not empty") {
                    Ok(ack) => {
                        info.written += 1;
                        info.revision = info.revision.max(ack.sequence as i64);
                    }
                    Err(e) => {
                        error = Some(format!("put: {e}"));
                        break;
                    }
                }
            }
            if error.is_some() {
                break;
            }
        }
        while let Some(ack) = inflight.next().await {
            match ack {
                Ok(ack) => {
                    info.written += 1;
                    info.revision = info.revision.max(ack.sequence as i64);
                }
                Err(e) => {
                    error.get_or_insert_with(|| format!("put: {e}"));
                }
            }
        }
        if let Some(detail) = error {
            return Err(failed(&info, detail));
        }
        info.revision = self.last_sequence(&stream).await.map_err(|e| failed(&info, e.to_string()))? as i64;
        Ok(info)
    }
}
