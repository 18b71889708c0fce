//! Writes and reads through the etcd API the way kube-apiserver's storage
//! layer (`k8s.io/apiserver/pkg/storage/etcd3`) does, so that what a test
//! puts through kine is what a tenant's API server puts through it:
//!
//! - create: `If(mod_revision(key) = 0) Then(Put(key, value, lease))`;
//! - update: `If(mod_revision(key) = prev) Then(Put) Else(Get(key))`;
//! - delete: `If(mod_revision(key) = prev) Then(Delete(key)) Else(Get(key))`;
//! - leases granted for objects that expire (Events), attached on create;
//! - lists paged by a limit, every page read at the first page's revision.
//!
//! kine accepts exactly these transaction shapes and no others. The writer
//! keeps the acknowledged state (every key's value and mod_revision), which
//! is what a restore must give back.

use crate::data::{Rng, kube_records};
use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use std::collections::BTreeMap;

/// One acknowledged object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub value: Vec<u8>,
    pub mod_revision: i64,
    /// The lease it was created with (0: none).
    pub lease: i64,
}

/// What a storage call can end in besides success.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The precondition failed: the key exists (create) or changed (update, delete).
    #[error("{op} of {key}: the key's mod_revision is not {expected} (the transaction's compare failed)")]
    Conflict { op: &'static str, key: String, expected: i64 },
    #[error(transparent)]
    Etcd(#[from] etcd_client::Error),
}

/// An etcd-API client writing like kube-apiserver, with the acknowledged state.
pub struct KubeStorage {
    client: Client,
    /// Acknowledged objects by full key.
    objects: BTreeMap<Vec<u8>, Object>,
    /// The newest revision a write returned.
    pub revision: i64,
}

impl KubeStorage {
    pub async fn connect(url: &str) -> KubeStorage {
        let client = Client::connect([url], None).await.expect("connect to the etcd API");
        KubeStorage { client, objects: BTreeMap::new(), revision: 0 }
    }

    /// The acknowledged state: full key to object.
    pub fn objects(&self) -> &BTreeMap<Vec<u8>, Object> {
        &self.objects
    }

    /// The acknowledged state as key and value, sorted.
    pub fn values(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.objects.iter().map(|(k, o)| (k.clone(), o.value.clone())).collect()
    }

    /// Take what the server holds below `prefix` as the acknowledged state
    /// (after a restore the mod_revisions are the restored ones).
    pub async fn adopt(&mut self, prefix: &str) -> Result<(), StorageError> {
        let (listed, revision) = self.list_at(prefix, 0).await?;
        self.objects = listed;
        self.revision = revision;
        Ok(())
    }

    pub async fn grant(&mut self, ttl: i64) -> Result<i64, StorageError> {
        Ok(self.client.lease_grant(ttl, None).await?.id())
    }

    /// Create a key that must not exist.
    ///
    /// A refused create is asked again when the key is in fact absent, as a
    /// client does after a 409 whose GET finds nothing. kine v0.17.5 refuses
    /// one falsely when its compaction runs between the two inserts of its
    /// `LogStructured.Create`: the first insert sees the key's tombstone as
    /// its newest row, compaction then removes the tombstone, and the second
    /// insert (conditioned on that tombstone) finds no row and fails too
    /// (seen in CI on MariaDB, `pkg/logstructured/logstructured.go`).
    pub async fn create(&mut self, key: &[u8], value: &[u8], lease: i64) -> Result<i64, StorageError> {
        let opts = (lease != 0).then(|| PutOptions::new().with_lease(lease));
        let txn =
            Txn::new().when([Compare::mod_revision(key, CompareOp::Equal, 0)]).and_then([TxnOp::put(key, value, opts)]);
        let mut r = self.client.txn(txn.clone()).await?;
        for _ in 0..3 {
            if r.succeeded() || self.client.get(key, None).await?.count() != 0 {
                break;
            }
            r = self.client.txn(txn.clone()).await?;
        }
        if !r.succeeded() {
            return Err(conflict("create", key, 0));
        }
        let rev = r.header().map(|h| h.revision()).unwrap_or_default();
        self.acked(key, Some(Object { value: value.to_vec(), mod_revision: rev, lease }), rev);
        Ok(rev)
    }

    /// Update an acknowledged key on its acknowledged mod_revision.
    pub async fn update(&mut self, key: &[u8], value: &[u8]) -> Result<i64, StorageError> {
        let (prev, lease) = self.objects.get(key).map(|o| (o.mod_revision, o.lease)).unwrap_or((0, 0));
        let opts = (lease != 0).then(|| PutOptions::new().with_lease(lease));
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, prev)])
            .and_then([TxnOp::put(key, value, opts)])
            .or_else([TxnOp::get(key, None)]);
        let r = self.client.txn(txn).await?;
        if !r.succeeded() {
            return Err(conflict("update", key, prev));
        }
        let rev = r.header().map(|h| h.revision()).unwrap_or_default();
        self.acked(key, Some(Object { value: value.to_vec(), mod_revision: rev, lease }), rev);
        Ok(rev)
    }

    /// Delete an acknowledged key on its acknowledged mod_revision.
    pub async fn delete(&mut self, key: &[u8]) -> Result<i64, StorageError> {
        let prev = self.objects.get(key).map(|o| o.mod_revision).unwrap_or(0);
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, prev)])
            .and_then([TxnOp::delete(key, None)])
            .or_else([TxnOp::get(key, None)]);
        let r = self.client.txn(txn).await?;
        if !r.succeeded() {
            return Err(conflict("delete", key, prev));
        }
        let rev = r.header().map(|h| h.revision()).unwrap_or_default();
        self.acked(key, None, rev);
        Ok(rev)
    }

    fn acked(&mut self, key: &[u8], object: Option<Object>, rev: i64) {
        match object {
            Some(o) => self.objects.insert(key.to_vec(), o),
            None => self.objects.remove(key),
        };
        self.revision = self.revision.max(rev);
    }

    /// A tenant's life in miniature below `root` (`/registry`): `keys` objects
    /// created (one in ten an Event on a one-hour lease), then `rounds`
    /// rounds in which every object is updated, except one in seven that is
    /// deleted and, the round after, created again (with its lease). About `keys * (rounds + 1)`
    /// revisions: enough history for kine's compaction to have work.
    pub async fn churn(&mut self, root: &str, keys: usize, rounds: usize, seed: u64) -> Result<(), StorageError> {
        let lease = self.grant(3600).await?;
        let records = kube_records(keys, 300, seed);
        let mut rng = Rng::new(seed ^ 0x5eed);
        let full = |k: &[u8]| [root.as_bytes(), k].concat();
        for (i, (k, v)) in records.iter().enumerate() {
            let key = if i % 10 == 3 { [root.as_bytes(), b"/events", k].concat() } else { full(k) };
            self.create(&key, v, if i % 10 == 3 { lease } else { 0 }).await?;
        }
        let keys: Vec<Vec<u8>> = self.objects.keys().filter(|k| k.starts_with(root.as_bytes())).cloned().collect();
        let mut gone: Vec<(Vec<u8>, i64)> = Vec::new();
        for round in 0..rounds {
            for (key, lease) in std::mem::take(&mut gone) {
                self.create(&key, &crate::data::object_value(&mut rng, 300), lease).await?;
            }
            for (i, key) in keys.iter().enumerate() {
                if !self.objects.contains_key(key) {
                    continue;
                }
                if i % 7 == round % 7 {
                    let lease = self.objects[key].lease;
                    self.delete(key).await?;
                    gone.push((key.clone(), lease));
                } else {
                    self.update(key, &crate::data::object_value(&mut rng, 300)).await?;
                }
            }
        }
        Ok(())
    }

    /// Every key below `prefix` and its object, read as the API server lists:
    /// pages of 500, each at the revision of the first (`revision` 0: the
    /// current one). Returns the objects and the revision read at.
    pub async fn list_at(
        &mut self,
        prefix: &str,
        revision: i64,
    ) -> Result<(BTreeMap<Vec<u8>, Object>, i64), StorageError> {
        let end = prefix_end(prefix.as_bytes());
        let mut from = prefix.as_bytes().to_vec();
        let mut at = revision;
        let mut out = BTreeMap::new();
        loop {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(500);
            if at != 0 {
                opts = opts.with_revision(at);
            }
            let r = self.client.get(from.clone(), Some(opts)).await?;
            if at == 0 {
                at = r.header().map(|h| h.revision()).unwrap_or_default();
            }
            for kv in r.kvs() {
                let o = Object { value: kv.value().to_vec(), mod_revision: kv.mod_revision(), lease: kv.lease() };
                out.insert(kv.key().to_vec(), o);
            }
            match r.kvs().last() {
                Some(last) if r.more() => from = [last.key(), b"\0"].concat(),
                _ => break,
            }
        }
        Ok((out, at))
    }

    /// [`Self::list_at`] the current revision, values only.
    pub async fn list(&mut self, prefix: &str) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StorageError> {
        let (objects, _) = self.list_at(prefix, 0).await?;
        Ok(objects.into_iter().map(|(k, o)| (k, o.value)).collect())
    }

    /// The client, for watches and anything else a test needs.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }
}

fn conflict(op: &'static str, key: &[u8], expected: i64) -> StorageError {
    StorageError::Conflict { op, key: String::from_utf8_lossy(key).into_owned(), expected }
}

/// The end of the range of keys starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
