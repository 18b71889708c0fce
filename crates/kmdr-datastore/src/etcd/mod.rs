//! Tenants on a shared etcd: tenant `<schema>` is every key in
//! `[/<schema>/, /<schema>0)`, the range Kamaji grants the tenant's role.
//!
//! Export reads that range in pages pinned to one revision (the first page's,
//! or the one `--all` shares, where one scan runs on from tenant to tenant:
//! [`scan`]), fetching the next page while the current one is
//! written. Import writes transactions of at most 128 puts (etcd's default
//! `--max-txn-ops`) and 1 MiB, several in flight. etcd has no transaction big
//! enough for a whole tenant, so an interrupted import leaves part of the keys
//! written; the error says so and `--force` completes it.

pub mod feed;
pub mod hub;
mod scan;

use crate::records::prefix_range;
use crate::records::{RecordReader, RecordWriter};
use crate::store::{ExportInfo, ImportInfo, TenantError, TenantStore};
use crate::url::{DatastoreUrl, Driver};
use etcd_client::{DeleteOptions, GetOptions, GetResponse, KvClient, Txn, TxnOp};
use futures::stream::{FuturesUnordered, StreamExt};
use kmdr_core::TlsFiles;
use kmdr_etcd::EtcdError;
use kmdr_etcd::connection::{EtcdConnection, describe};
use tokio::io::{AsyncRead, AsyncWrite};

/// Keys per range request.
const PAGE: i64 = 1000;
/// Keys per keys-only request when listing tenants.
const LIST_PAGE: i64 = 10_000;
/// Puts per transaction (etcd's default --max-txn-ops).
const TXN_OPS: usize = 128;
/// Bytes per transaction, below etcd's default 1.5 MiB request limit.
const TXN_BYTES: usize = 1 << 20;
/// Transactions in flight.
const IN_FLIGHT: usize = 8;

/// A connected etcd holding tenants under `/<schema>/`.
pub struct EtcdTenants {
    client: etcd_client::Client,
    kv: KvClient,
    shown: String,
    /// The read that exports at a shared read point continue ([`scan`]).
    scan: tokio::sync::Mutex<Option<scan::Scan>>,
    /// The tenants the last listing found, in key order (the scan's look-ahead).
    listed: std::sync::Mutex<Vec<String>>,
}

impl EtcdTenants {
    pub async fn connect(url: &DatastoreUrl, tls: TlsFiles) -> Result<Self, TenantError> {
        let scheme = if url.tls { "https" } else { "http" };
        let endpoints = url.host_ports().into_iter().map(|h| format!("{scheme}://{h}")).collect();
        let mut conn = EtcdConnection::new(endpoints, tls);
        if let Some(user) = &url.user {
            conn.credentials = Some((user.clone(), url.password.clone().unwrap_or_default()));
        }
        let shown = url.redacted();
        let (client, _endpoint) = conn.connect_one().await.map_err(|e| match e {
            EtcdError::Unreachable { detail, .. }
                if detail.contains("authenticat") || detail.contains("invalid auth") =>
            {
                TenantError::Auth { driver: Driver::Etcd, datastore: shown.clone(), detail }
            }
            EtcdError::Unreachable { detail, .. } => {
                TenantError::Unreachable { driver: Driver::Etcd, datastore: shown.clone(), detail }
            }
            other => TenantError::BadUrl(other.to_string()),
        })?;
        Ok(EtcdTenants { kv: client.kv_client(), client, shown, scan: Default::default(), listed: Default::default() })
    }

    /// The connected client (delta capture watches through it).
    pub fn client(&self) -> &etcd_client::Client {
        &self.client
    }

    fn rpc(&self, op: &str, e: etcd_client::Error) -> TenantError {
        TenantError::Datastore {
            driver: Driver::Etcd,
            op: op.into(),
            datastore: self.shown.clone(),
            detail: describe(&e),
        }
    }

    async fn page(&self, from: Vec<u8>, end: &[u8], rev: i64) -> Result<GetResponse, TenantError> {
        let mut opts = GetOptions::new().with_range(end.to_vec()).with_limit(PAGE);
        if rev > 0 {
            opts = opts.with_revision(rev);
        }
        self.kv.clone().get(from, Some(opts)).await.map_err(|e| self.rpc("range", e))
    }
}

fn root(schema: &str) -> Vec<u8> {
    format!("/{schema}").into_bytes()
}

/// The key after `k` in byte order.
fn successor(k: &[u8]) -> Vec<u8> {
    let mut v = k.to_vec();
    v.push(0);
    v
}

impl TenantStore for EtcdTenants {
    fn driver(&self) -> Driver {
        Driver::Etcd
    }

    fn datastore(&self) -> String {
        self.shown.clone()
    }

    fn key_root(&self, schema: &str) -> String {
        format!("/{schema}")
    }

    /// First path segments, from keys-only pages of [`LIST_PAGE`] keys that
    /// skip past the rest of the last tenant each page reaches. etcd counts
    /// every key from a range's start to its end whatever the limit, so the
    /// fewer requests over the rest of the keyspace the better: 1,000 tenants
    /// of 250 keys take 25 requests, not 1,000 (which cost 20 s on 250,000
    /// keys). The list is kept for the scan's look-ahead ([`scan`]).
    async fn list_tenants(&self) -> Result<Vec<String>, TenantError> {
        let mut found: Vec<String> = Vec::new();
        let mut from = b"/".to_vec();
        let rev = self.shared_read_point().await?.unwrap_or(0);
        loop {
            let opts = GetOptions::new()
                .with_range(scan::SCAN_END.to_vec())
                .with_keys_only()
                .with_limit(LIST_PAGE)
                .with_revision(rev);
            let resp = self.kv.clone().get(from.clone(), Some(opts)).await.map_err(|e| self.rpc("range", e))?;
            let Some(last) = resp.kvs().last() else { break };
            from = successor(last.key());
            for kv in resp.kvs() {
                let key = kv.key();
                if let Some(i) = key[1..].iter().position(|&b| b == b'/').filter(|&i| i > 0)
                    && let Ok(s) = std::str::from_utf8(&key[1..1 + i])
                    && found.last().is_none_or(|l| l != s)
                {
                    found.push(s.to_string());
                }
            }
            // The rest of the last tenant reached holds no other tenant.
            if let Some(l) = found.last() {
                from = from.max(prefix_range(&root(l)).1);
            }
            if !resp.more() {
                break;
            }
        }
        *self.listed.lock().expect("listed lock") = found.clone();
        Ok(found)
    }

    async fn shared_read_point(&self) -> Result<Option<i64>, TenantError> {
        let resp = self
            .kv
            .clone()
            .get(b"/".to_vec(), Some(GetOptions::new().with_count_only()))
            .await
            .map_err(|e| self.rpc("range", e))?;
        Ok(resp.header().map(|h| h.revision()))
    }

    async fn export<W: AsyncWrite + Unpin + Send>(
        &self,
        schema: &str,
        at: Option<i64>,
        out: &mut RecordWriter<W>,
    ) -> Result<ExportInfo, TenantError> {
        let root = root(schema);
        let (start, end) = prefix_range(&root);
        let mut info = ExportInfo::default();
        if let Some(rev) = at {
            // A shared read point: tenants of one run, read by one scan.
            info.revision = rev;
            if self.export_scanned(&start, &end, root.len(), rev, out, &mut info).await? == 0 {
                let found = self.list_tenants().await.unwrap_or_default();
                return Err(TenantError::UnknownSchema { schema: schema.into(), datastore: self.shown.clone(), found });
            }
            return Ok(info);
        }
        let mut resp = self.page(start, &end, 0).await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        info.revision = rev;
        if resp.kvs().is_empty() {
            let found = self.list_tenants().await.unwrap_or_default();
            return Err(TenantError::UnknownSchema { schema: schema.into(), datastore: self.shown.clone(), found });
        }
        loop {
            let next_from = match resp.kvs().last() {
                Some(last) if resp.more() => Some(successor(last.key())),
                _ => None,
            };
            let write = async {
                for kv in resp.kvs() {
                    if kv.lease() != 0 {
                        info.leased_keys += 1;
                    }
                    out.write(&kv.key()[root.len()..], kv.value(), kv.create_revision(), kv.mod_revision()).await?;
                }
                Ok::<_, TenantError>(())
            };
            let fetch = async {
                match next_from {
                    Some(from) => self.page(from, &end, rev).await.map(Some),
                    None => Ok(None),
                }
            };
            let (written, next) = tokio::join!(write, fetch);
            written?;
            match next? {
                Some(r) => resp = r,
                None => break,
            }
        }
        Ok(info)
    }

    async fn count(&self, schema: &str) -> Result<u64, TenantError> {
        let (start, end) = prefix_range(&root(schema));
        let resp = self
            .kv
            .clone()
            .get(start, Some(GetOptions::new().with_range(end).with_count_only()))
            .await
            .map_err(|e| self.rpc("range", e))?;
        Ok(resp.count().max(0) as u64)
    }

    async fn import<R: AsyncRead + Unpin + Send>(
        &self,
        schema: &str,
        input: &mut RecordReader<R>,
        replace: bool,
    ) -> Result<ImportInfo, TenantError> {
        let root = root(schema);
        let (start, end) = prefix_range(&root);
        let mut info = ImportInfo::default();
        let failed = |info: &ImportInfo, detail: String| TenantError::ImportFailed {
            schema: schema.into(),
            datastore: self.shown.clone(),
            state: format!(
                "{} keys were written under /{schema}/ before it stopped{}; no other tenant was touched. Run the same restore with --force to replace them with the complete copy",
                info.written,
                if info.removed > 0 {
                    format!(" ({} keys there before were removed)", info.removed)
                } else {
                    String::new()
                }
            ),
            detail,
        };
        if replace {
            let resp = self
                .kv
                .clone()
                .delete(start, Some(DeleteOptions::new().with_range(end)))
                .await
                .map_err(|e| failed(&info, format!("delete range: {}", describe(&e))))?;
            info.removed = resp.deleted().max(0) as u64;
        }
        let mut inflight = FuturesUnordered::new();
        let mut batch: Vec<TxnOp> = Vec::with_capacity(TXN_OPS);
        let mut batch_bytes = 0usize;
        let send = |ops: Vec<TxnOp>| {
            let mut kv = self.kv.clone();
            let n = ops.len() as u64;
            async move { kv.txn(Txn::new().and_then(ops)).await.map(|r| (n, r.header().map(|h| h.revision()).unwrap_or(0))) }
        };
        loop {
            let next = input.next().await;
            let rec = match next {
                Ok(r) => r,
                Err(e) => {
                    while let Some(Ok((n, _))) = inflight.next().await {
                        info.written += n;
                    }
                    return Err(failed(&info, e.to_string()));
                }
            };
            let done = rec.is_none();
            if let Some(rec) = rec {
                let mut key = root.clone();
                key.extend_from_slice(&rec.key);
                batch_bytes += key.len() + rec.value.len();
                batch.push(TxnOp::put(key, rec.value, None));
            }
            if !batch.is_empty() && (done || batch.len() >= TXN_OPS || batch_bytes >= TXN_BYTES) {
                inflight.push(send(std::mem::take(&mut batch)));
                batch_bytes = 0;
            }
            while inflight.len() >= IN_FLIGHT || (done && !inflight.is_empty()) {
                match inflight.next().await.expect("not empty") {
                    Ok((n, rev)) => {
                        info.written += n;
                        info.revision = info.revision.max(rev);
                    }
                    Err(e) => {
                        let detail = format!("txn: {}", describe(&e));
                        while let Some(Ok((n, _))) = inflight.next().await {
                            info.written += n;
                        }
                        return Err(failed(&info, detail));
                    }
                }
            }
            if done {
                return Ok(info);
            }
        }
    }
}
