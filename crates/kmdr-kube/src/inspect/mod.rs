//! Offline inspection: read the Kubernetes objects out of an under-cluster
//! etcd snapshot without any cluster, for when the API server is gone.
//!
//! The path: the snapshot comes out of the repository into a temporary file
//! ([`fetch_snapshot`]); `kmdr_etcd::bbolt` reads it read-only; `kmdr_etcd::mvcc` replays bucket
//! `key` into the live keys at the snapshot's revision; [`objects`] decodes
//! values (JSON custom resources, protobuf built-ins, [`encryption`] at
//! rest) and cleans them into manifests ready to apply.

pub mod encryption;
mod error;
pub mod objects;
pub mod proto;

pub use error::InspectError;

use encryption::{EncryptionError, EncryptionKeys};
use kmdr_core::{BackupId, Manifest};
use kmdr_etcd::EtcdError;
use kmdr_etcd::bbolt::BoltFile;
use kmdr_etcd::mvcc;
use kmdr_etcd::restorer::load_snapshot_manifest;
use kmdr_etcd::snapshotter::SNAPSHOT_FILE;
use kmdr_repo::{Progress, Repository, restorer};
use objects::{Listed, ResourceKind, Stored, decode_value, helm_name, summarize, summarize_helm};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The snapshot as a temporary plain file, deleted on drop.
pub struct SnapshotFile {
    pub path: PathBuf,
    pub manifest: Manifest,
}

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Fetch the snapshot of etcd backup `id` into a temp file (under TMPDIR),
/// every chunk authenticated. A backup of another kind is refused with
/// [`EtcdError::WrongKind`].
pub async fn fetch_snapshot(
    repo: &Repository,
    id: &BackupId,
    progress: Option<Progress>,
) -> Result<SnapshotFile, InspectError> {
    let manifest = load_snapshot_manifest(repo, id).await?;
    let path = std::env::temp_dir().join(format!(".kmdr-inspect-{}-{}.db", id, std::process::id()));
    let local = |what| {
        let path = path.clone();
        move |source| InspectError::Local { what, path, source }
    };
    let mut f = tokio::fs::File::create(&path).await.map_err(local("cannot create"))?;
    let snap = SnapshotFile { path: path.clone(), manifest };
    let file = snap.manifest.file(SNAPSHOT_FILE).expect("load_snapshot_manifest checked it");
    // A shared lock: prune must not delete chunks while they are read.
    let lock = kmdr_repo::lock::RepoLock::acquire(repo.store().clone(), false, "kmdr inspect")
        .await
        .map_err(EtcdError::from)?;
    let result = restorer::restore_file(repo, file, &mut f, restorer::FileCheck::ChunksOnly, progress).await;
    lock.release().await;
    result.map_err(EtcdError::from)?;
    Ok(snap)
}

/// What `kmdr inspect` lists.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// The snapshot's newest revision.
    pub revision: i64,
    /// Revision entries read (every version of every key since the last compaction).
    pub entries_scanned: u64,
    pub objects: Vec<Listed>,
}

/// The kinds a listing covers: the default set, or the user's `--kind`s.
pub fn listing_kinds(filter: &[String]) -> Result<Vec<(String, ResourceKind)>, InspectError> {
    let names: Vec<String> =
        if filter.is_empty() { objects::LISTED.iter().map(|s| s.to_string()).collect() } else { filter.to_vec() };
    names
        .iter()
        .map(|n| {
            let low = n.to_ascii_lowercase();
            if ["helm", "helmrelease", "helmreleases", "release", "releases"].contains(&low.as_str()) {
                Ok(("HelmRelease".to_string(), ResourceKind::resolve("secrets")?))
            } else {
                let k = ResourceKind::resolve(n)?;
                Ok((k.kind.clone(), k))
            }
        })
        .collect()
}

/// List the objects of `kinds` in the snapshot at `path`.
pub fn list(
    path: &Path,
    kinds: &[(String, ResourceKind)],
    keys: Option<&EncryptionKeys>,
) -> Result<Inventory, InspectError> {
    let db = BoltFile::open(path)?;
    let prefixes: Vec<(String, &str, &ResourceKind)> =
        kinds.iter().map(|(label, k)| (k.prefix(), label.as_str(), k)).collect();
    let want = |key: &[u8]| {
        prefixes.iter().any(|(p, label, _)| {
            key.starts_with(p.as_bytes())
                && (*label != "HelmRelease"
                    || key.split(|b| *b == b'/').next_back().is_some_and(|n| n.starts_with(b"sh.helm.release.v1.")))
        })
    };
    let live = mvcc::live_keys(&db, &want)?;
    let mut out = Vec::new();
    for (key, kv) in &live.keys {
        let key = String::from_utf8_lossy(key).into_owned();
        for (prefix, label, kind) in &prefixes {
            if !key.starts_with(prefix.as_str()) {
                continue;
            }
            let Some((namespace, name)) = kind.name_of(&key) else { continue };
            let helm = *label == "HelmRelease";
            if helm && helm_name(&name).is_none() {
                continue;
            }
            let mut row = Listed {
                kind: label.to_string(),
                namespace,
                name,
                etcd_key: key.clone(),
                mod_revision: kv.mod_revision,
                encrypted: None,
                details: Default::default(),
            };
            let stored = match decode_value(&key, &kv.value, keys) {
                // A listing names what is there; only --get needs the whole
                // object, so a protobuf kind kmdr does not decode is listed
                // without its columns.
                Err(InspectError::Unsupported { .. }) if !helm => {
                    out.push(row);
                    continue;
                }
                r => r?,
            };
            match stored {
                Stored::Encrypted(h) => {
                    if let Some((release, revision)) = helm.then(|| helm_name(&row.name)).flatten() {
                        row.details.insert("release".into(), Value::String(release));
                        row.details.insert("revision".into(), revision.into());
                    }
                    row.encrypted = Some(h);
                }
                Stored::Object(obj) if helm => {
                    if obj["type"] != crate::platform::HELM_RELEASE_TYPE {
                        continue;
                    }
                    row.details = summarize_helm(&obj)
                        .map_err(|detail| InspectError::Undecodable { key: key.clone(), detail })?;
                }
                Stored::Object(obj) => row.details = summarize(label, &obj),
            }
            out.push(row);
        }
    }
    // Kinds in the order asked, then by namespace and name.
    let order = |l: &Listed| kinds.iter().position(|(label, _)| *label == l.kind).unwrap_or(usize::MAX);
    out.sort_by(|a, b| (order(a), &a.namespace, &a.name).cmp(&(order(b), &b.namespace, &b.name)));
    Ok(Inventory { revision: live.revision, entries_scanned: live.entries, objects: out })
}

/// One object of the snapshot at `path`, as stored (decrypted) and as a
/// manifest ready to apply.
#[derive(Debug, Clone, Serialize)]
pub struct Got {
    pub etcd_key: String,
    pub mod_revision: i64,
    pub manifest: Value,
}

/// Find `name` (`NS/NAME` or `NAME`) of `kind` and clean it for apply.
/// An encrypted value needs `keys`.
pub fn get(path: &Path, kind: &ResourceKind, name: &str, keys: Option<&EncryptionKeys>) -> Result<Got, InspectError> {
    let key = kind.key_of(name)?;
    let db = BoltFile::open(path)?;
    let live = mvcc::live_keys(&db, &|k: &[u8]| k == key.as_bytes())?;
    let kv = live.keys.get(key.as_bytes()).ok_or_else(|| InspectError::NotFound {
        kind: kind.kind.clone(),
        name: name.into(),
        key: key.clone(),
    })?;
    match decode_value(&key, &kv.value, keys)? {
        Stored::Encrypted(h) => Err(EncryptionError::NoConfig { key, provider: h.provider, name: h.key_name }.into()),
        Stored::Object(obj) => {
            Ok(Got { etcd_key: key, mod_revision: kv.mod_revision, manifest: objects::clean_for_apply(obj) })
        }
    }
}
