//! Creating and opening a repository, and its catalog of backups.
//!
//! Layout (see docs/design.md):
//!
//! ```text
//! config                     plaintext JSON: format, chunker, ciphers; written last by init
//! keys/<hex id>              plaintext JSON: the master key wrapped under a key file's secret
//! data/<2 hex>/<64 hex>      sealed chunk, named by HMAC-SHA256 of its plaintext
//! backups/<backup id>        sealed manifest; its presence is what makes a backup exist
//! locks/<lock id>            plaintext JSON lock records
//! ```

use crate::chunker::{Chunker, ChunkerParams};
use crate::crypto::{Access, KeyObject, MasterKey, ObjectError, ObjectKind};
use crate::{Error, Result};
use bytes::Bytes;
use kmdr_core::{BackupId, Manifest};
use kmdr_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The repository format `repo init` writes; this kmdr reads formats 1 and 2.
pub const REPO_FORMAT: u32 = 2;
/// The formats this kmdr reads.
pub const READ_FORMATS: [u32; 2] = [1, 2];
/// zstd level for chunks and manifests.
pub const ZSTD_LEVEL: i32 = 3;

/// The `config` object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoConfig {
    pub format: u32,
    /// Random repository id (hex).
    pub id: String,
    pub created: chrono::DateTime<chrono::Utc>,
    pub chunker: ChunkerParams,
    pub compression: String,
    pub cipher: String,
    pub chunk_id: String,
    /// Format 2: how objects are sealed to the recipient key (informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// S3 Object Lock: the mode and period of the bucket's default retention
    /// every object gets (object_lock/); absent for other repositories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<crate::object_lock::ObjectLockConfig>,
}

/// How `repo init` makes a repository.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub chunker: ChunkerParams,
    /// 1 or 2 ([`REPO_FORMAT`]).
    pub format: u32,
    /// Recorded in the config: the bucket was prepared by
    /// [`crate::object_lock::prepare_bucket`] first.
    pub object_lock: Option<crate::object_lock::ObjectLockConfig>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions { chunker: ChunkerParams::default(), format: REPO_FORMAT, object_lock: None }
    }
}

/// An open repository: a store plus the master key.
#[derive(Debug, Clone)]
pub struct Repository {
    store: Arc<dyn Store>,
    config: RepoConfig,
    key: MasterKey,
    chunker: Chunker,
    /// The key file, as named in messages.
    key_file: String,
    /// The key object (`keys/<id>`) the key file opened.
    key_object: String,
}

/// The config's `recipient` of format 2.
pub const RECIPIENT: &str = "x25519-hkdf-sha256";

/// Wrap `key` under `secret` and store it as `keys/<id>`; returns the id.
pub(crate) async fn put_key_object(store: &Arc<dyn Store>, key: &MasterKey, secret: &[u8]) -> Result<String> {
    let ko = KeyObject::wrap(key, secret);
    let key_id = key.chunk_id(ko.salt_bytes().as_slice())[..16].to_string();
    store.put(&format!("keys/{key_id}"), Bytes::from(serde_json::to_vec_pretty(&ko).expect("json"))).await?;
    Ok(key_id)
}

/// Key of the object holding a chunk.
pub fn chunk_key(id: &str) -> String {
    format!("data/{}/{}", &id[..2.min(id.len())], id)
}

/// Key of the object holding a backup's manifest.
pub fn manifest_key(id: &BackupId) -> String {
    format!("backups/{id}")
}

impl Repository {
    /// Create a repository of the current format in an empty store, protected by `secret`.
    pub async fn init(store: Arc<dyn Store>, secret: &[u8], chunker: ChunkerParams) -> Result<Self> {
        Self::init_with(store, secret, InitOptions { chunker, ..Default::default() }).await
    }

    /// Create a repository in an empty store, protected by `secret`.
    pub async fn init_with(store: Arc<dyn Store>, secret: &[u8], opts: InitOptions) -> Result<Self> {
        let location = store.location();
        if store.exists("config").await? {
            return Err(Error::AlreadyInitialized { location });
        }
        let InitOptions { chunker, format, object_lock } = opts;
        chunker.validate().map_err(|e| StoreError::Config(e.to_string()))?;
        let key = match format {
            1 => MasterKey::generate(),
            2 => MasterKey::generate_v2(),
            other => return Err(Error::UnsupportedFormat { location, found: other, supported: REPO_FORMAT }),
        };
        let key_id = put_key_object(&store, &key, secret).await?;
        let config = RepoConfig {
            format,
            id: hex::encode(rand::random::<[u8; 16]>()),
            created: chrono::Utc::now(),
            chunker,
            compression: format!("zstd-{ZSTD_LEVEL}"),
            cipher: "xchacha20poly1305".into(),
            chunk_id: "hmac-sha256".into(),
            recipient: (format == 2).then(|| RECIPIENT.to_string()),
            object_lock,
        };
        // The config is written last: a repository without it does not exist yet.
        store.put("config", Bytes::from(serde_json::to_vec_pretty(&config).expect("json"))).await?;
        let chunker = Chunker::new(config.chunker.clone(), key.chunker_seed());
        let key_object = format!("keys/{key_id}");
        Ok(Repository { store, config, key, chunker, key_file: "the key file".into(), key_object })
    }

    /// Open an existing repository with the secret from `key_file` (named in errors).
    pub async fn open(store: Arc<dyn Store>, secret: &[u8], key_file: &str) -> Result<Self> {
        let location = store.location();
        let raw = match store.get("config").await {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => return Err(Error::NotARepository { location }),
            Err(e) => return Err(e.into()),
        };
        let config: RepoConfig = serde_json::from_slice(&raw).map_err(|e| Error::Damaged {
            object: format!("{location}/config"),
            reason: format!("not a valid repository config: {e}"),
        })?;
        if !READ_FORMATS.contains(&config.format)
            || config.cipher != "xchacha20poly1305"
            || config.chunk_id != "hmac-sha256"
            || !config.compression.starts_with("zstd")
        {
            return Err(Error::UnsupportedFormat { location, found: config.format, supported: REPO_FORMAT });
        }
        // Every key object is tried: after `repo upgrade` the same secret may
        // also open the format-1 key it replaced (kept while Object Lock holds it).
        let mut key = None;
        for obj in store.list("keys/").await? {
            let raw = store.get(&obj.key).await?;
            let Ok(ko) = serde_json::from_slice::<KeyObject>(&raw) else { continue };
            let s = secret.to_vec();
            let Some(k) = tokio::task::spawn_blocking(move || ko.unwrap(&s)).await.expect("kdf task") else { continue };
            // A format-2 key on a format-1 repository is a `repo upgrade`
            // stopped before its config was written: it keeps sealing format 1.
            let usable = match config.format {
                1 => k.as_format_1(),
                _ => Some(k).filter(|k| k.format() == 2),
            };
            if let Some(k) = usable {
                key = Some((k, obj.key));
                break;
            }
        }
        let (key, key_object) =
            key.ok_or_else(|| Error::WrongKey { location: location.clone(), key_file: key_file.to_string() })?;
        let chunker = Chunker::new(config.chunker.clone(), key.chunker_seed());
        Ok(Repository { store, config, key, chunker, key_file: key_file.to_string(), key_object })
    }

    /// The key object (`keys/<id>`) the key file opened.
    pub fn key_object(&self) -> &str {
        &self.key_object
    }

    /// What the key this repository was opened with may do.
    pub fn access(&self) -> Access {
        self.key.access()
    }

    /// Fail with the key exit code unless the key can read: `what` names what was asked.
    pub fn require_full_key(&self, what: &str) -> Result<()> {
        match self.key.access() {
            Access::Full => Ok(()),
            Access::WriteOnly => Err(Error::WriteOnlyKey { key_file: self.key_file.clone(), what: what.to_string() }),
        }
    }

    /// Open a sealed object read from `name`: a write-only key's refusal is a
    /// key error, anything else damage.
    pub(crate) fn open_object(&self, kind: ObjectKind, name: &str, raw: &[u8], what: &str) -> Result<Vec<u8>> {
        self.opened(name, self.key.open(kind, name, raw), what)
    }

    /// Map the result of opening `name`.
    pub(crate) fn opened<T>(&self, name: &str, r: Result<T, ObjectError>, what: &str) -> Result<T> {
        r.map_err(|e| match e {
            ObjectError::WriteOnly => Error::WriteOnlyKey { key_file: self.key_file.clone(), what: what.to_string() },
            other => Error::Damaged { object: name.to_string(), reason: other.to_string() },
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }

    /// Where the repository is, for messages.
    pub fn location(&self) -> String {
        self.store.location()
    }

    /// Ids of every committed backup, oldest first. Names under `backups/`
    /// that are not backup ids are ignored.
    pub async fn list_backups(&self) -> Result<Vec<BackupId>> {
        Ok(backup_ids(self.store.list("backups/").await?, |_| true))
    }

    /// At least the newest `want` backups that `keep` accepts, oldest first,
    /// without listing all of `backups/` when the repository is large: ids
    /// start with their UTC time, so a listing that starts after "a minute
    /// ago", then an hour, a day, a week, a month, returns only the newest
    /// (each try one request on S3 while it returns under 1,000). The flag
    /// says whether the list is every backup `keep` accepts (the last try
    /// lists them all); when it is not, more than `want` were found and
    /// older ones were not listed.
    pub async fn newest_backups(&self, want: usize, keep: impl Fn(&BackupId) -> bool) -> Result<(Vec<BackupId>, bool)> {
        const WINDOWS_S: [i64; 5] = [60, 3600, 86_400, 7 * 86_400, 31 * 86_400];
        let now = chrono::Utc::now();
        for secs in WINDOWS_S {
            let since = (now - chrono::Duration::seconds(secs)).format(kmdr_core::id::ID_TIME_FORMAT);
            let ids = backup_ids(self.store.list_after("backups/", &format!("backups/{since}")).await?, &keep);
            if ids.len() > want {
                return Ok((ids, false));
            }
        }
        Ok((backup_ids(self.store.list("backups/").await?, &keep), true))
    }

    /// Read and decrypt one manifest.
    pub async fn load_manifest(&self, id: &BackupId) -> Result<Manifest> {
        let name = manifest_key(id);
        let raw = match self.store.get(&name).await {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => {
                return Err(Error::BackupNotFound { query: id.to_string(), location: self.location() });
            }
            Err(e) => return Err(e.into()),
        };
        let damaged = |reason: String| Error::Damaged { object: name.clone(), reason };
        let plain = self.open_object(ObjectKind::Manifest, &name, &raw, "backup manifests")?;
        let m: Manifest = serde_json::from_slice(&plain).map_err(|e| damaged(format!("manifest JSON: {e}")))?;
        if &m.id != id {
            return Err(damaged(format!("manifest names backup {} instead", m.id)));
        }
        if m.format > kmdr_core::MANIFEST_FORMAT {
            return Err(Error::UnsupportedFormat {
                location: format!("{}/{name}", self.location()),
                found: m.format,
                supported: kmdr_core::MANIFEST_FORMAT,
            });
        }
        Ok(m)
    }

    /// Seal and store a manifest: the commit point of a backup.
    pub(crate) async fn write_manifest(&self, m: &Manifest) -> Result<()> {
        let name = manifest_key(&m.id);
        let json = serde_json::to_vec(m).expect("manifest serializes");
        let sealed = self.key.seal(ObjectKind::Manifest, &name, &json, ZSTD_LEVEL);
        self.store.put(&name, Bytes::from(sealed)).await?;
        Ok(())
    }

    /// Seal and store a report (a drill's result) as `reports/<name>`, so its
    /// history lives with the backups and survives the cluster.
    pub async fn put_report(&self, name: &str, json: &[u8]) -> Result<()> {
        let key = format!("reports/{name}");
        let sealed = self.key.seal(ObjectKind::Report, &key, json, ZSTD_LEVEL);
        self.store.put(&key, Bytes::from(sealed)).await?;
        Ok(())
    }

    /// Names of the stored reports, sorted (they start with their time).
    pub async fn list_reports(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .store
            .list("reports/")
            .await?
            .into_iter()
            .filter_map(|o| o.key.strip_prefix("reports/").map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// A stored report's JSON.
    pub async fn get_report(&self, name: &str) -> Result<Vec<u8>> {
        let key = format!("reports/{name}");
        let raw = self.store.get(&key).await?;
        self.open_object(ObjectKind::Report, &key, &raw, "drill reports")
    }

    /// Find a backup by full id, unique prefix, or `latest` (optionally of one kind).
    /// Neither lists all of `backups/` on a large repository: `latest` lists the
    /// newest ids ([`Repository::newest_backups`]), and an id or prefix lists
    /// the names that start with it (one request on S3).
    pub async fn resolve(&self, query: &str, kind: Option<&str>) -> Result<BackupId> {
        let of_kind = |i: &BackupId| kind.is_none_or(|k| i.kind() == k);
        let not_found = || Error::BackupNotFound {
            query: match kind {
                Some(k) => format!("{query} (of kind {k})"),
                None => query.to_string(),
            },
            location: self.location(),
        };
        if query == "latest" {
            return self.newest_backups(0, of_kind).await?.0.pop().ok_or_else(not_found);
        }
        // An id is made of these characters; anything else (a `/`) names no backup.
        if query.is_empty() || !query.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
            return Err(not_found());
        }
        let matches = backup_ids(self.store.list(&format!("backups/{query}")).await?, of_kind);
        match matches.as_slice() {
            [] => Err(not_found()),
            [one] => Ok(one.clone()),
            many => {
                if let Some(exact) = many.iter().find(|i| i.to_string() == query) {
                    return Ok(exact.clone());
                }
                Err(Error::AmbiguousId {
                    query: query.to_string(),
                    count: many.len(),
                    examples: many.iter().take(3).map(|i| i.to_string()).collect::<Vec<_>>().join(", "),
                })
            }
        }
    }
}

/// The backup ids a listing of `backups/` holds that `keep` accepts, oldest
/// first; names that are not backup ids are ignored.
fn backup_ids(listed: Vec<kmdr_store::ObjectInfo>, keep: impl Fn(&BackupId) -> bool) -> Vec<BackupId> {
    let mut ids: Vec<BackupId> = listed
        .into_iter()
        .filter_map(|o| o.key.strip_prefix("backups/").and_then(|n| n.parse().ok()))
        .filter(|id| keep(id))
        .collect();
    ids.sort();
    ids
}
