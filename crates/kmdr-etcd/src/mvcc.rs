//! etcd's MVCC store inside the bbolt file: bucket `key` maps revisions to
//! `mvccpb.KeyValue`s. A revision key is 17 bytes, `main u64 BE, '_', sub u64
//! BE`, with an 18th byte `t` when the entry is a tombstone (the key was
//! deleted at that revision). Keys sort by revision, so a scan in key order
//! replays history; the state at the snapshot is, for each user key, its
//! newest revision, and keys whose newest revision is a tombstone are gone.

use crate::bbolt::{BoltError, BoltFile};
use std::collections::BTreeMap;

/// `mvccpb.KeyValue` (etcd api/mvccpb/kv.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    #[prost(int64, tag = "4")]
    pub version: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "6")]
    pub lease: i64,
}

/// A revision key of bucket `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
    pub tombstone: bool,
}

/// Parse a revision key; None when it is not one.
pub fn parse_revision(k: &[u8]) -> Option<Revision> {
    if (k.len() != 17 && k.len() != 18) || k[8] != b'_' || (k.len() == 18 && k[17] != b't') {
        return None;
    }
    Some(Revision {
        main: i64::from_be_bytes(k[..8].try_into().ok()?),
        sub: i64::from_be_bytes(k[9..17].try_into().ok()?),
        tombstone: k.len() == 18,
    })
}

/// The live keys at the snapshot's revision that a filter asked for, each
/// kept as a `T` (the whole KeyValue, or less).
#[derive(Debug)]
pub struct Live<T> {
    /// The highest revision in the snapshot.
    pub revision: i64,
    /// Every revision entry scanned.
    pub entries: u64,
    /// Live keys that passed the filter, by key.
    pub keys: BTreeMap<Vec<u8>, T>,
}

impl<T> Default for Live<T> {
    fn default() -> Self {
        Live { revision: 0, entries: 0, keys: BTreeMap::new() }
    }
}

/// The live keys with their whole KeyValue.
pub type LiveKeys = Live<KeyValue>;

/// Scan bucket `key` and keep the newest live version of each key for
/// which `want(key)` is true. Memory holds only the wanted keys.
pub fn live_keys(db: &BoltFile, want: &dyn Fn(&[u8]) -> bool) -> Result<LiveKeys, BoltError> {
    live_map(db, want, &|kv| kv)
}

/// Scan bucket `key` and keep, for each live key `want(key)` accepts, what
/// `keep` makes of its newest version (the whole KeyValue, a digest of its
/// value): memory holds only that, whatever the values' size.
pub fn live_map<T>(
    db: &BoltFile,
    want: &dyn Fn(&[u8]) -> bool,
    keep: &dyn Fn(KeyValue) -> T,
) -> Result<Live<T>, BoltError> {
    let bucket = db
        .bucket(b"key")?
        .ok_or_else(|| BoltError("the database has no `key` bucket: it is not an etcd v3 snapshot".into()))?;
    let (mut revision, mut entries, mut keys) = (0i64, 0u64, BTreeMap::new());
    db.for_each(&bucket, &mut |k, v| {
        let rev = parse_revision(k)
            .ok_or_else(|| BoltError(format!("bucket `key` holds {} which is not a revision", hex::encode(k))))?;
        entries += 1;
        revision = revision.max(rev.main);
        let kv = <KeyValue as prost::Message>::decode(v)
            .map_err(|e| BoltError(format!("revision {}: the value is not an mvccpb.KeyValue: {e}", rev.main)))?;
        if !want(&kv.key) {
            return Ok(());
        }
        if rev.tombstone {
            keys.remove(&kv.key);
        } else {
            keys.insert(kv.key.clone(), keep(kv));
        }
        Ok(())
    })?;
    Ok(Live { revision, entries, keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_keys() {
        let mut k = 5i64.to_be_bytes().to_vec();
        k.push(b'_');
        k.extend(2i64.to_be_bytes());
        assert_eq!(parse_revision(&k), Some(Revision { main: 5, sub: 2, tombstone: false }));
        k.push(b't');
        assert_eq!(parse_revision(&k), Some(Revision { main: 5, sub: 2, tombstone: true }));
        k[17] = b'x';
        assert_eq!(parse_revision(&k), None);
        assert_eq!(parse_revision(b"short"), None);
    }
}
