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
//! are spilled to a temp file as they arrive and only `(key, offset, len)`
//! is kept in memory, so memory is bounded by the keys, not the values. The
//! index is then sorted and the values read back in key order.
//!
//! # Import
//!
//! The bucket is created as kine creates it (history 10, description, direct
//! get allowed), or with `--force` the bucket's stream is purged (that stream
//! only; sequences keep increasing, so kine's revisions stay monotonic). Puts
//! are pipelined: up to [`IN_FLIGHT`] published and awaiting their ack. NATS
//! has no transactions, so an interrupted import leaves part of the keys
//! written; the error says how many and that `--force` completes it.

pub mod feed;

use crate::records::relative;
use crate::records::{RecordReader, RecordWriter};
use crate::store::{ExportInfo, ImportInfo, TenantError, TenantStore};
use crate::url::{DatastoreUrl, Driver};
use async_nats::jetstream::{self, consumer::DeliverPolicy, stream::Stream};
use base64::engine::general_purpose::STANDARD as B64;
use futures::stream::{FuturesUnordered, StreamExt};
use kmdr_core::TlsFiles;
use std::collections::HashMap;
use std::future::IntoFuture;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

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

// ---------------------------------------------------------------------------
// Codec: pure functions, unit tested below.
// ---------------------------------------------------------------------------

/// The KV key kine stores `key` under: segments base58-encoded, joined by `.`.
///
/// Refuses keys kine's encoding cannot give back exactly: not starting with
/// `/`, ending with `/`, or holding an empty segment (`//`).
pub fn encode_key(key: &[u8]) -> Result<String, String> {
    let shown = || String::from_utf8_lossy(key).into_owned();
    let Some(rest) = key.strip_prefix(b"/") else {
        return Err(format!("key {:?} does not start with /", shown()));
    };
    if rest.is_empty() || rest.ends_with(b"/") {
        return Err(format!("key {:?} ends with /, which kine's NATS key encoding drops", shown()));
    }
    let mut out = String::with_capacity(key.len() * 2);
    for (i, seg) in rest.split(|&b| b == b'/').enumerate() {
        if seg.is_empty() {
            return Err(format!(
                "key {:?} has an empty path segment, which kine's NATS key encoding cannot hold",
                shown()
            ));
        }
        if i > 0 {
            out.push('.');
        }
        out.push_str(&bs58::encode(seg).into_string());
    }
    Ok(out)
}

/// The key a KV key stands for: tokens base58-decoded, joined by `/`, with a
/// leading `/`. An empty token or one that is not base58 is an error.
pub fn decode_key(kv_key: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(kv_key.len());
    for tok in kv_key.split('.') {
        if tok.is_empty() {
            return Err(format!("KV key {kv_key:?} has an empty token"));
        }
        let seg = bs58::decode(tok)
            .into_vec()
            .map_err(|e| format!("KV key {kv_key:?} is not kine's base58 encoding: {e}"))?;
        out.push(b'/');
        out.extend_from_slice(&seg);
    }
    Ok(out)
}

/// `data` in the S2 stream format, as klauspost `s2.NewWriter` writes it.
pub fn s2_compress(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 32);
    {
        let mut w = minlz::s2::Writer::new(&mut out);
        // Writing into a Vec cannot fail.
        w.write_all(data).expect("write to Vec");
        w.flush().expect("flush to Vec");
    }
    out
}

/// Decompress an S2 stream (or a Snappy-framed stream).
pub fn s2_decompress(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(data.len() * 2);
    minlz::s2::Reader::new(data).read_to_end(&mut out).map_err(|e| format!("not an S2 stream: {e}"))?;
    Ok(out)
}

/// kine's `KeyValue` (Go field names).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct KineKv {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "CreateRevision")]
    pub create_revision: i64,
    #[serde(rename = "ModRevision")]
    pub mod_revision: i64,
    /// Go `[]byte`: standard base64, `null` for nil.
    #[serde(rename = "Value", with = "go_bytes")]
    pub value: Option<Vec<u8>>,
    #[serde(rename = "Lease")]
    pub lease: i64,
}

/// kine's `Event`, the JSON it stores in every KV value (Go field names).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct KineEvent {
    #[serde(rename = "KV")]
    pub kv: Option<KineKv>,
    #[serde(rename = "PrevRevision")]
    pub prev_revision: i64,
    #[serde(rename = "Create")]
    pub create: bool,
    #[serde(rename = "Delete")]
    pub delete: bool,
}

/// Go's JSON form of `[]byte`.
mod go_bytes {
    use super::B64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&B64.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => B64.decode(s.as_bytes()).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// The KV value kine writes for a new key `key` (absolute) holding `value`.
pub fn encode_value(key: &str, value: &[u8]) -> Vec<u8> {
    let event = KineEvent {
        kv: Some(KineKv {
            key: key.to_string(),
            create_revision: 0,
            mod_revision: 0,
            value: Some(value.to_vec()),
            lease: 0,
        }),
        prev_revision: 0,
        create: true,
        delete: false,
    };
    s2_compress(&serde_json::to_vec(&event).expect("serialize kine event"))
}

/// The event a KV value holds.
pub fn decode_value(data: &[u8]) -> Result<KineEvent, String> {
    let json = s2_decompress(data)?;
    serde_json::from_slice(&json).map_err(|e| format!("not a kine event: {e}"))
}

// ---------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------

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

/// The newest message of one subject at the bound, in memory only by location.
struct Slot {
    seq: u64,
    /// `(offset, len)` of the value in the spill file; `None` when removed.
    at: Option<(u64, u32)>,
    create_revision: i64,
    lease: i64,
    /// The key from kine's JSON, for keys the subject does not decode to.
    fallback_key: Option<Vec<u8>>,
}

/// A temp file holding exported values, removed when dropped.
struct Spill {
    path: PathBuf,
    file: tokio::io::BufWriter<tokio::fs::File>,
    len: u64,
}

impl Spill {
    async fn create() -> std::io::Result<Spill> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("kmdr-nats-export-{}-{nanos}-{n}.tmp", std::process::id()));
        let file = tokio::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).await?;
        Ok(Spill { path, file: tokio::io::BufWriter::with_capacity(1 << 20, file), len: 0 })
    }

    async fn put(&mut self, value: &[u8]) -> std::io::Result<(u64, u32)> {
        let at = (self.len, value.len() as u32);
        self.file.write_all(value).await?;
        self.len += value.len() as u64;
        Ok(at)
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Result of reading a bucket at a bound.
struct Scan {
    slots: HashMap<String, Slot>,
    spill: Option<Spill>,
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
            opts = opts.add_root_certificates(PathBuf::from(ca));
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
    async fn scan(&self, schema: &str, stream: &Stream, bound: u64, spill: bool) -> Result<Scan, ScanError> {
        let mut scan = Scan { slots: HashMap::new(), spill: None };
        if spill {
            scan.spill = Some(Spill::create().await.map_err(|e| self.err("create temp file", e))?);
        }
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
            if scan.slots.get(&kv_key).is_some_and(|s| s.seq <= bound) {
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
        if let Some(s) = &mut scan.spill {
            s.file.flush().await.map_err(|e| self.err("write temp file", e))?;
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
        if scan.slots.get(kv_key).is_some_and(|s| s.seq >= seq) {
            return Ok(());
        }
        let mut slot = Slot { seq, at: None, create_revision: 0, lease: 0, fallback_key: None };
        if !removed {
            let event = decode_value(payload)
                .map_err(|e| self.err("decode", format!("value of KV key {kv_key} (sequence {seq}): {e}")))?;
            if let (false, Some(kv)) = (event.delete, event.kv) {
                let value = kv.value.unwrap_or_default();
                slot.create_revision = if kv.create_revision == 0 { seq as i64 } else { kv.create_revision };
                slot.lease = kv.lease;
                slot.fallback_key = Some(kv.key.into_bytes());
                slot.at = Some(match &mut scan.spill {
                    Some(spill) => spill.put(&value).await.map_err(|e| self.err("write temp file", e))?,
                    None => (0, 0),
                });
            }
        }
        scan.slots.insert(kv_key.to_string(), slot);
        Ok(())
    }

    async fn scan_retrying(
        &self,
        schema: &str,
        stream: &Stream,
        at: Option<i64>,
        spill: bool,
    ) -> Result<(u64, Scan), TenantError> {
        let mut why = String::new();
        for _ in 0..ATTEMPTS {
            let last = self.last_sequence(stream).await?;
            let bound = match at {
                Some(a) if a >= 0 => (a as u64).min(last),
                _ => last,
            };
            match self.scan(schema, stream, bound, spill).await {
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
        // The sorted index: (relative key, slot) of every live key under the root.
        let mut index = Vec::with_capacity(scan.slots.len());
        for (kv_key, slot) in scan.slots {
            if slot.at.is_none() {
                continue;
            }
            // The subject is authoritative; kine's JSON key only names keys
            // that are not kine's encoding, for the warning.
            let key = match decode_key(&kv_key) {
                Ok(k) => k,
                Err(_) => {
                    info.skipped_keys += 1;
                    info.first_skipped.get_or_insert_with(|| kv_key.clone());
                    continue;
                }
            };
            match relative(&key, KEY_ROOT.as_bytes()) {
                Some(rel) => index.push((rel.to_vec(), slot)),
                None => {
                    info.skipped_keys += 1;
                    let shown = slot.fallback_key.as_deref().unwrap_or(&key);
                    info.first_skipped.get_or_insert_with(|| String::from_utf8_lossy(shown).into_owned());
                }
            }
        }
        index.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut spill = scan.spill.expect("export spills");
        // Flushed by `scan`: the buffer is empty, the file can be read directly.
        let file = spill.file.get_mut();
        let mut value = Vec::new();
        for (key, slot) in index {
            let (offset, len) = slot.at.expect("live");
            if slot.lease != 0 {
                info.leased_keys += 1;
            }
            value.resize(len as usize, 0);
            file.seek(std::io::SeekFrom::Start(offset)).await.map_err(|e| self.err("read temp file", e))?;
            file.read_exact(&mut value).await.map_err(|e| self.err("read temp file", e))?;
            out.write(&key, &value, slot.create_revision, slot.seq as i64).await?;
        }
        // The temp file is removed when `spill` drops.
        Ok(info)
    }

    /// Every live key of the bucket, also those outside `/registry`: the
    /// bucket is the tenant, and `--force` removes them all.
    async fn count(&self, schema: &str) -> Result<u64, TenantError> {
        let Some(stream) = self.stream(schema).await? else { return Ok(0) };
        let (_, scan) = self.scan_retrying(schema, &stream, None, false).await?;
        Ok(scan.slots.values().filter(|s| s.at.is_some()).count() as u64)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_segment_by_segment() {
        let k = encode_key(b"/registry/pods/ns/x").unwrap();
        let parts: Vec<String> =
            ["registry", "pods", "ns", "x"].iter().map(|s| bs58::encode(s).into_string()).collect();
        assert_eq!(k, parts.join("."));
        // A dot inside a segment stays inside its base58 token.
        let k = encode_key(b"/registry/a.b/c").unwrap();
        assert_eq!(k.split('.').count(), 3);
        assert_eq!(decode_key(&k).unwrap(), b"/registry/a.b/c");
        // Any bytes, including leading zero bytes base58 keeps as '1's.
        let odd = b"/registry/\x00\x00\xff/\xe2\x98\x83 x/-_=";
        assert_eq!(decode_key(&encode_key(odd).unwrap()).unwrap(), odd);
        for k in [&b"/registry/x"[..], b"/a", b"/registry/configmaps/kube-system/extension-apiserver-authentication"] {
            let e = encode_key(k).unwrap();
            assert!(e.bytes().all(|b| b == b'.' || b.is_ascii_alphanumeric()), "{e}");
            assert_eq!(decode_key(&e).unwrap(), k);
        }
    }

    #[test]
    fn keys_that_cannot_round_trip_are_refused() {
        for bad in [&b"registry/x"[..], b"/", b"/registry/x/", b"/registry//x", b""] {
            assert!(encode_key(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(decode_key("abc..def").is_err());
        assert!(decode_key("").is_err());
        assert!(decode_key("0OIl").is_err()); // not in the Bitcoin alphabet
    }

    #[test]
    fn s2_stream_round_trip() {
        for data in [
            &b"x"[..],
            b"{\"KV\":null}",
            &vec![7u8; 3 << 20],
            &(0..200_000u32).flat_map(|i| i.to_le_bytes()).collect::<Vec<_>>(),
        ] {
            let c = s2_compress(data);
            assert!(c.starts_with(b"\xff\x06\x00\x00S2sTwO"), "S2 stream identifier");
            assert_eq!(s2_decompress(&c).unwrap(), data);
        }
        let mut bad = s2_compress(b"hello hello hello hello");
        let n = bad.len();
        bad[n - 1] ^= 0x55;
        assert!(s2_decompress(&bad).is_err());
        assert!(s2_decompress(b"not s2").is_err());
    }

    /// A Snappy framed stream: identifier, one uncompressed and one compressed chunk.
    #[test]
    fn snappy_framed_streams_are_read() {
        let mut s = b"\xff\x06\x00\x00sNaPpY".to_vec();
        let mut chunk = |kind: u8, crc_of: &[u8], body: &[u8]| {
            let len = body.len() + 4;
            s.push(kind);
            s.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
            s.extend_from_slice(&minlz::crc::crc(crc_of).to_le_bytes());
            s.extend_from_slice(body);
        };
        chunk(0x01, b"plain ", b"plain ");
        let text = b"snappy snappy snappy snappy snappy";
        chunk(0x00, text, &minlz::s2::encode_snappy(text));
        assert_eq!(s2_decompress(&s).unwrap(), b"plain snappy snappy snappy snappy snappy");
    }

    #[test]
    fn json_matches_kines_field_names() {
        let v = encode_value("/registry/pods/ns/x", b"\x00k8s\xff");
        let json = s2_decompress(&v).unwrap();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"KV":{"Key":"/registry/pods/ns/x","CreateRevision":0,"ModRevision":0,"Value":"AGs4c/8=","Lease":0},"PrevRevision":0,"Create":true,"Delete":false}"#
        );
        let e = decode_value(&v).unwrap();
        assert_eq!(e.kv.as_ref().unwrap().value.as_deref(), Some(&b"\x00k8s\xff"[..]));
        // As Go writes a deletion: nil value is null; unknown fields are ignored.
        let go = br#"{"KV":{"Key":"/registry/a","CreateRevision":5,"ModRevision":9,"Value":null,"Lease":60},"PrevKV":null,"PrevRevision":9,"Create":false,"Delete":true}"#;
        let e = decode_value(&s2_compress(go)).unwrap();
        assert!(e.delete && !e.create);
        assert_eq!(
            e.kv,
            Some(KineKv { key: "/registry/a".into(), create_revision: 5, mod_revision: 9, value: None, lease: 60 })
        );
        assert_eq!(serde_json::from_slice::<KineEvent>(&serde_json::to_vec(&e).unwrap()).unwrap(), e);
    }
}
