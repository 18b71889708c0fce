//! Inventories: what a live system holds, key by key, so that a drill can
//! say what a recovery lost, added or changed. A value is kept as a 16-byte
//! digest (sha256, truncated), so 100,000 keys cost a few MiB whatever their
//! values; the content hash is the one of the tenant record stream
//! ([`crate::tenant::records`]), equal for equal content whatever the driver.

use crate::records::ContentHasher;
use crate::records::{RecordReader, RecordWriter};
use crate::store::{TenantError, TenantStore};
use etcd_client::GetOptions;
use kmdr_etcd::EtcdError;
use kmdr_etcd::connection::{EtcdConnection, describe};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Every key of a unit (a tenant, a keyspace) with a digest of its value.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KeyDigests {
    pub keys: u64,
    pub bytes: u64,
    pub content_sha256: String,
    /// The revision the digests are consistent at, where the source has one.
    pub revision: i64,
    #[serde(skip)]
    pub digests: BTreeMap<Vec<u8>, [u8; 16]>,
}

/// How two inventories of a unit differ.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct KeyDiff {
    /// Keys before, not after.
    pub missing: u64,
    /// Keys after, not before.
    pub extra: u64,
    /// Keys in both with another value.
    pub changed: u64,
    /// Up to [`SHOWN`] keys of each kind, for the report.
    pub missing_keys: Vec<String>,
    pub extra_keys: Vec<String>,
    pub changed_keys: Vec<String>,
}

/// Keys listed per kind in a diff.
pub const SHOWN: usize = 20;

fn digest(value: &[u8]) -> [u8; 16] {
    let d = Sha256::digest(value);
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

impl KeyDigests {
    fn add(&mut self, hasher: &mut ContentHasher, key: &[u8], value: &[u8]) -> Result<(), crate::records::RecordError> {
        hasher.add(key, value)?;
        self.digests.insert(key.to_vec(), digest(value));
        Ok(())
    }

    fn finish(&mut self, hasher: &ContentHasher) {
        let s = hasher.summary();
        (self.keys, self.bytes, self.content_sha256) = (s.count, s.bytes, s.content_sha256);
    }

    /// What `after` lacks, adds or changes against `self`.
    pub fn diff(&self, after: &KeyDigests) -> KeyDiff {
        let mut d = KeyDiff::default();
        let show = |v: &mut Vec<String>, k: &[u8]| {
            if v.len() < SHOWN {
                v.push(String::from_utf8_lossy(k).into_owned());
            }
        };
        for (k, v) in &self.digests {
            match after.digests.get(k) {
                None => {
                    d.missing += 1;
                    show(&mut d.missing_keys, k);
                }
                Some(a) if a != v => {
                    d.changed += 1;
                    show(&mut d.changed_keys, k);
                }
                Some(_) => {}
            }
        }
        for k in after.digests.keys() {
            if !self.digests.contains_key(k) {
                d.extra += 1;
                show(&mut d.extra_keys, k);
            }
        }
        d
    }
}

impl KeyDiff {
    pub fn is_empty(&self) -> bool {
        self.missing == 0 && self.extra == 0 && self.changed == 0
    }
}

/// The inventory of one tenant: its live keys (relative to its key root) as
/// the driver exports them, at one point. An unknown tenant is empty.
pub async fn tenant_digests<S: TenantStore>(store: &S, schema: &str) -> Result<KeyDigests, TenantError> {
    let (pipe_w, pipe_r) = tokio::io::duplex(1 << 20);
    let export = async move {
        let mut w = RecordWriter::new(pipe_w);
        let info = store.export(schema, None, &mut w).await?;
        w.finish().await?;
        Ok::<_, TenantError>(info)
    };
    let read = async move {
        let mut r = RecordReader::new(pipe_r);
        let mut out = KeyDigests::default();
        let mut hasher = ContentHasher::default();
        while let Some(rec) = r.next().await? {
            out.add(&mut hasher, &rec.key, &rec.value)?;
        }
        out.finish(&hasher);
        Ok::<_, TenantError>(out)
    };
    match tokio::join!(export, read) {
        (Ok(info), Ok(mut d)) => {
            d.revision = info.revision;
            Ok(d)
        }
        (Err(TenantError::UnknownSchema { .. }), _) => Ok(KeyDigests::default()),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    }
}

/// The inventory of key/value pairs given in key order (an etcd snapshot
/// read offline, say), hashed as [`etcd_digests`] hashes a live keyspace.
pub fn digests_of<'a>(
    pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<KeyDigests, crate::records::RecordError> {
    let mut out = KeyDigests::default();
    let mut hasher = ContentHasher::default();
    for (k, v) in pairs {
        out.add(&mut hasher, k, v)?;
    }
    out.finish(&hasher);
    Ok(out)
}

/// The inventory of a whole etcd keyspace (the under cluster), read in pages
/// pinned to one revision: the content hash and a digest per key.
pub async fn etcd_digests(conn: &EtcdConnection) -> Result<KeyDigests, EtcdError> {
    etcd_inventory(conn, true).await
}

/// [`etcd_digests`] without the content hash (`content_sha256` is empty):
/// a digest per key, which is all that comparing two keyspaces needs, at half
/// the hashing.
pub async fn etcd_value_digests(conn: &EtcdConnection) -> Result<KeyDigests, EtcdError> {
    etcd_inventory(conn, false).await
}

/// Pages of 1,000 keys, the next one fetched while this one is hashed.
async fn etcd_inventory(conn: &EtcdConnection, content: bool) -> Result<KeyDigests, EtcdError> {
    let (client, endpoint) = conn.connect_one().await?;
    let mut kv = client.kv_client();
    let ep = endpoint.clone();
    let rpc = move |e: etcd_client::Error| EtcdError::Rpc { op: "range", endpoint: ep.clone(), detail: describe(&e) };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<etcd_client::KeyValue>>(2);
    let fetch = tokio::spawn(async move {
        let mut from = vec![0u8];
        let mut rev = 0;
        loop {
            let mut opts = GetOptions::new().with_from_key().with_limit(1000);
            if rev > 0 {
                opts = opts.with_revision(rev);
            }
            let mut resp = kv.get(from.clone(), Some(opts)).await.map_err(&rpc)?;
            if rev == 0 {
                rev = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            let more = resp.more();
            let page = resp.take_kvs();
            let next = page.last().map(|last| {
                let mut k = last.key().to_vec();
                k.push(0);
                k
            });
            if tx.send(page).await.is_err() {
                break;
            }
            match next {
                Some(k) if more => from = k,
                _ => break,
            }
        }
        Ok::<i64, EtcdError>(rev)
    });
    let mut out = KeyDigests::default();
    let mut hasher = ContentHasher::default();
    let bad = |e: crate::records::RecordError| EtcdError::Rpc {
        op: "range",
        endpoint: endpoint.clone(),
        detail: e.to_string(),
    };
    while let Some(page) = rx.recv().await {
        for item in &page {
            if content {
                out.add(&mut hasher, item.key(), item.value()).map_err(bad)?;
            } else {
                out.digests.insert(item.key().to_vec(), digest(item.value()));
                out.keys += 1;
                out.bytes += (item.key().len() + item.value().len()) as u64;
            }
        }
    }
    let rev = fetch.await.map_err(|e| EtcdError::Rpc { op: "range", endpoint, detail: e.to_string() })??;
    if content {
        out.finish(&hasher);
    }
    out.revision = rev;
    Ok(out)
}

/// The live keys of an etcd snapshot file, read offline (kmdr's bbolt
/// reader), each with a digest of its value, as [`etcd_value_digests`] reads
/// a live keyspace: memory holds a digest per key, not the values.
pub fn snapshot_value_digests(db: &kmdr_etcd::bbolt::BoltFile) -> Result<KeyDigests, kmdr_etcd::bbolt::BoltError> {
    let live = kmdr_etcd::mvcc::live_map(db, &|_| true, &|kv| digest(&kv.value))?;
    let mut out = KeyDigests { revision: live.revision, ..Default::default() };
    out.keys = live.keys.len() as u64;
    out.digests = live.keys;
    Ok(out)
}

impl KeyDigests {
    /// A hash of every key and its value's digest, in key order: equal for
    /// equal content, whichever way the digests were read.
    pub fn digests_sha256(&self) -> String {
        let mut h = Sha256::new();
        for (k, d) in &self.digests {
            h.update((k.len() as u32).to_be_bytes());
            h.update(k);
            h.update(d);
        }
        hex::encode(h.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(pairs: &[(&str, &str)]) -> KeyDigests {
        let mut d = KeyDigests::default();
        let mut h = ContentHasher::default();
        for (k, v) in pairs {
            d.add(&mut h, k.as_bytes(), v.as_bytes()).unwrap();
        }
        d.finish(&h);
        d
    }

    #[test]
    fn diff_names_missing_extra_and_changed_keys() {
        let before = inv(&[("/a", "1"), ("/b", "2"), ("/c", "3")]);
        let after = inv(&[("/a", "1"), ("/c", "x"), ("/d", "4")]);
        let d = before.diff(&after);
        assert_eq!((d.missing, d.extra, d.changed), (1, 1, 1));
        assert_eq!(
            (d.missing_keys, d.extra_keys, d.changed_keys),
            (vec!["/b".into()], vec!["/d".into()], vec!["/c".into()])
        );
        assert!(before.diff(&before.clone()).is_empty());
        assert_eq!(before.keys, 3);
    }
}
