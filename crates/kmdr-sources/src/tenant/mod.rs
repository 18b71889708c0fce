//! Tenant control-plane data: one tenant's keys in a shared Kamaji datastore,
//! backed up and restored without touching any other tenant.
//!
//! Every driver turns its datastore into the same sorted record stream
//! ([`records`]) and back, so a backup taken from one driver restores into any
//! other. Keys are stored relative to the tenant's key root: `/<schema>` on
//! etcd (Kamaji runs the API server with `--etcd-prefix=/<schema>`), `/registry`
//! under kine (database or bucket `<schema>`).
//!
//! | driver   | tenant is                       | point in time                           |
//! |----------|---------------------------------|-----------------------------------------|
//! | etcd     | keys in `[/<schema>/, /<schema>0)` | one revision, paginated reads pinned to it |
//! | postgres | table `kine` of database `<schema>` | one REPEATABLE READ transaction         |
//! | mysql    | table `kine` of database `<schema>` | one transaction WITH CONSISTENT SNAPSHOT |
//! | nats     | JetStream KV bucket `<schema>`  | the stream's last sequence at the start |

pub mod datastore;
pub mod etcd;
pub mod kine_sql;
pub mod mysql;
pub mod nats;
pub mod postgres;
pub mod records;
pub mod spill;

pub use datastore::{DatastoreUrl, Driver, read_password_file};
pub use records::{RECORDS_FILE, Record, RecordReader, RecordSummary, RecordWriter};

use kmdr_core::{Layer, Manifest, SourceInfo, TenantDataInfo};
use kmdr_repo::backuper::ManifestDraft;
use kmdr_repo::restorer::{FileCheck, restore_file};
use kmdr_repo::{BackupSession, Progress, Repository};
use std::collections::BTreeMap;
use tokio::io::{AsyncRead, AsyncWrite};

/// The backup kind of tenant data backups.
pub const KIND: &str = "tenant";

/// What can go wrong with a tenant datastore. Every message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// The --datastore URL cannot be used.
    #[error("invalid --datastore URL: {0}")]
    BadUrl(String),
    /// Nothing answered.
    #[error(
        "cannot reach the {driver} datastore at {datastore}: {detail}. Check the URL and that the server is running"
    )]
    Unreachable { driver: Driver, datastore: String, detail: String },
    /// The server refused the credentials.
    #[error(
        "the {driver} datastore at {datastore} refused the credentials: {detail}. Check the user and password (URL, KMDR_DATASTORE_PASSWORD or --password-file)"
    )]
    Auth { driver: Driver, datastore: String, detail: String },
    /// No such tenant.
    #[error("no tenant {schema:?} on {datastore}{}", found_list(.found))]
    UnknownSchema { schema: String, datastore: String, found: Vec<String> },
    /// The tenant exists but holds nothing.
    #[error(
        "tenant {schema:?} on {datastore} holds no keys: nothing to back up. Check --schema; an API server that never started writes nothing"
    )]
    EmptySchema { schema: String, datastore: String },
    /// The restore target already holds data.
    #[error(
        "{datastore} already holds {keys} keys of tenant {schema:?}: pass --force to replace them, or restore under another --schema"
    )]
    TargetNotEmpty { schema: String, datastore: String, keys: u64 },
    /// A datastore operation failed.
    #[error("{driver} {op} failed on {datastore}: {detail}")]
    Datastore { driver: Driver, op: String, datastore: String, detail: String },
    /// A restore stopped part way; `state` says what the target holds now.
    #[error("restore of tenant {schema:?} into {datastore} stopped: {detail}. {state}")]
    ImportFailed { schema: String, datastore: String, state: String, detail: String },
    /// Reading the backup failed while a restore was writing.
    #[error("{source}. {state}")]
    Interrupted {
        #[source]
        source: kmdr_repo::Error,
        state: String,
    },
    /// A key cannot be placed in the target.
    #[error("{0}")]
    Unrepresentable(String),
    /// The backup is not tenant data.
    #[error("backup {id} is not tenant data (kind {kind}): pick one listed by `kmdr backups list --kind tenant`")]
    WrongKind { id: String, kind: String },
    /// The temporary file that puts rows in key order failed.
    #[error(
        "the temporary file for sorting keys failed: {0}; check the free space in $TMPDIR (or point TMPDIR elsewhere)"
    )]
    Spill(#[from] std::io::Error),
    /// The record stream is damaged or out of order.
    #[error(transparent)]
    Records(#[from] records::RecordError),
    /// No chain of a full backup and delta segments reaches the point asked.
    #[error(transparent)]
    Point(#[from] crate::delta::pitr::PointError),
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] kmdr_repo::Error),
}

fn found_list(found: &[String]) -> String {
    if found.is_empty() {
        "; it holds no tenants. Check --datastore".into()
    } else {
        let mut shown: Vec<&str> = found.iter().take(10).map(String::as_str).collect();
        if found.len() > 10 {
            shown.push("...");
        }
        format!(". Tenants there: {}", shown.join(", "))
    }
}

/// What an export saw, besides the records themselves.
#[derive(Debug, Clone, Default)]
pub struct ExportInfo {
    /// The point the copy is consistent at (etcd revision, kine max id, stream sequence).
    pub revision: i64,
    /// Keys that carried a lease.
    pub leased_keys: u64,
    /// Keys not under the key root, not copied.
    pub skipped_keys: u64,
    /// The first skipped key, for the warning.
    pub first_skipped: Option<String>,
}

/// What an import did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ImportInfo {
    /// Keys written.
    pub written: u64,
    /// Keys that were there before and were removed (`--force`).
    pub removed: u64,
    /// The target's revision after the import, where it has one.
    pub revision: i64,
}

/// One datastore driver. Implementations live beside this module; the
/// conformance suite (`tests/tenant.rs`) runs the same cases against each.
#[allow(async_fn_in_trait)]
pub trait TenantStore {
    /// Which driver this is.
    fn driver(&self) -> Driver;

    /// The datastore, without credentials, for messages and manifests.
    fn datastore(&self) -> String;

    /// The key root of `schema` in this datastore (`/<schema>` or `/registry`).
    fn key_root(&self, schema: &str) -> String;

    /// Every tenant found, sorted.
    async fn list_tenants(&self) -> Result<Vec<String>, TenantError>;

    /// A read point several exports can share (`--all` on etcd: one revision
    /// for all tenants); `None` where each tenant has its own.
    async fn shared_read_point(&self) -> Result<Option<i64>, TenantError> {
        Ok(None)
    }

    /// Write the tenant's live keys, relative to its key root and sorted by
    /// key bytes, to `out` (without finishing it), consistent at one point.
    /// A missing tenant is [`TenantError::UnknownSchema`].
    async fn export<W: AsyncWrite + Unpin + Send>(
        &self,
        schema: &str,
        at: Option<i64>,
        out: &mut RecordWriter<W>,
    ) -> Result<ExportInfo, TenantError>;

    /// Live keys the tenant holds now (0 when it does not exist).
    async fn count(&self, schema: &str) -> Result<u64, TenantError>;

    /// Write every record of `input` as the tenant's keys. With `replace`, the
    /// tenant's current keys are removed first; without it the caller has
    /// checked that the tenant is empty. Must read `input` to its end (the
    /// trailer check) before making the result visible where it can.
    async fn import<R: AsyncRead + Unpin + Send>(
        &self,
        schema: &str,
        input: &mut RecordReader<R>,
        replace: bool,
    ) -> Result<ImportInfo, TenantError>;
}

/// Options of one tenant backup.
#[derive(Debug, Clone, Default)]
pub struct TenantBackupOptions {
    pub tags: BTreeMap<String, String>,
    /// Read point shared with other tenants of the same run.
    pub at: Option<i64>,
}

/// Back up one tenant into a new backup and commit it. Nothing is listed
/// unless every record was read and stored.
pub async fn backup_tenant<S: TenantStore>(
    repo: &Repository,
    store: &S,
    schema: &str,
    opts: &TenantBackupOptions,
    progress: Option<Progress>,
) -> Result<Manifest, TenantError> {
    let mut session = BackupSession::start(repo, "kmdr backup tenant").await?;
    let info = match export_into(&mut session, store, schema, opts.at, RECORDS_FILE, progress).await {
        Ok(info) => info,
        Err(e) => {
            session.abort().await;
            return Err(e);
        }
    };
    let draft = ManifestDraft {
        kind: KIND.into(),
        layer: Layer::TenantControlPlanes,
        series: format!("tenant/{schema}"),
        tags: opts.tags.clone(),
        source: SourceInfo::TenantData(info),
    };
    Ok(session.commit(draft).await?)
}

/// Export tenant `schema` of `store` as file `file` of an open backup
/// session: what [`backup_tenant`] stores, for callers that put several
/// tenants (or other files) into one backup. An empty tenant is
/// [`TenantError::EmptySchema`]. On error the caller aborts the session.
pub async fn export_into<S: TenantStore>(
    session: &mut BackupSession,
    store: &S,
    schema: &str,
    at: Option<i64>,
    file: &str,
    progress: Option<Progress>,
) -> Result<TenantDataInfo, TenantError> {
    let (pipe_w, pipe_r) = tokio::io::duplex(1 << 20);
    let export = async move {
        let mut writer = RecordWriter::new(pipe_w);
        let info = store.export(schema, at, &mut writer).await?;
        let summary = writer.finish().await?;
        Ok::<_, TenantError>((info, summary))
    };
    let store_file = async {
        let mut pipe_r = pipe_r;
        session.add_file(file, &mut pipe_r, progress).await
    };
    let (exported, stored) = tokio::join!(export, store_file);
    let (info, summary) = match (exported, stored) {
        (Ok(x), Ok(_)) => x,
        // The repository failed first; the export only saw its pipe close.
        (Ok(_), Err(e)) | (Err(TenantError::Records(records::RecordError::Io(_))), Err(e)) => return Err(e.into()),
        (Err(e), _) => return Err(e),
    };
    if summary.count == 0 {
        return Err(TenantError::EmptySchema { schema: schema.into(), datastore: store.datastore() });
    }
    if info.skipped_keys > 0 {
        tracing::warn!(
            "{} keys of tenant {schema} are outside {} and were not copied (first: {})",
            info.skipped_keys,
            store.key_root(schema),
            info.first_skipped.as_deref().unwrap_or("?")
        );
    }
    Ok(TenantDataInfo {
        driver: store.driver().to_string(),
        datastore: store.datastore(),
        schema: schema.into(),
        key_root: store.key_root(schema),
        revision: info.revision,
        key_count: summary.count,
        bytes: summary.bytes,
        content_sha256: summary.content_sha256,
        leased_keys: info.leased_keys,
        skipped_keys: info.skipped_keys,
    })
}

/// The tenant data a backup holds.
pub fn tenant_info(m: &Manifest) -> Result<&TenantDataInfo, TenantError> {
    match &m.source {
        SourceInfo::TenantData(t) if m.file(RECORDS_FILE).is_some() => Ok(t),
        _ => Err(TenantError::WrongKind { id: m.id.to_string(), kind: m.id.kind().to_string() }),
    }
}

/// What a restore will do, computed before anything is written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantRestorePlan {
    pub backup: String,
    pub source_schema: String,
    pub source_driver: String,
    pub target: String,
    pub target_driver: String,
    pub schema: String,
    pub key_root: String,
    /// Keys the backup holds (all written).
    pub write_keys: u64,
    pub write_bytes: u64,
    /// Keys the target holds now (removed first when `--force`).
    pub existing_keys: u64,
    pub replace: bool,
}

/// Check the target and describe the restore. Refuses a target that holds
/// data unless `force`.
pub async fn plan_tenant_restore<S: TenantStore>(
    store: &S,
    manifest: &Manifest,
    schema: Option<&str>,
    force: bool,
) -> Result<TenantRestorePlan, TenantError> {
    let info = tenant_info(manifest)?;
    let schema = schema.unwrap_or(&info.schema).to_string();
    let existing = store.count(&schema).await?;
    if existing > 0 && !force {
        return Err(TenantError::TargetNotEmpty { schema, datastore: store.datastore(), keys: existing });
    }
    Ok(TenantRestorePlan {
        backup: manifest.id.to_string(),
        source_schema: info.schema.clone(),
        source_driver: info.driver.clone(),
        target: store.datastore(),
        target_driver: store.driver().to_string(),
        key_root: store.key_root(&schema),
        schema,
        write_keys: info.key_count,
        write_bytes: info.bytes,
        existing_keys: existing,
        replace: force && existing > 0,
    })
}

/// Carry out a plan: stream the backup's records into the target. Every chunk
/// is authenticated before its bytes reach the driver, and the record trailer
/// (count and content hash) is checked at the end.
pub async fn restore_tenant<S: TenantStore>(
    repo: &Repository,
    store: &S,
    manifest: &Manifest,
    plan: &TenantRestorePlan,
    progress: Option<Progress>,
) -> Result<ImportInfo, TenantError> {
    let entry = manifest
        .file(RECORDS_FILE)
        .ok_or_else(|| TenantError::WrongKind { id: manifest.id.to_string(), kind: manifest.id.kind().to_string() })?;
    restore_records(repo, store, entry, &plan.schema, plan.replace, progress).await
}

/// Stream the records file `entry` into tenant `schema` of `store` (its
/// current keys removed first with `replace`): the write half of
/// [`restore_tenant`], for any backup file in the records format.
pub async fn restore_records<S: TenantStore>(
    repo: &Repository,
    store: &S,
    entry: &kmdr_core::FileEntry,
    schema: &str,
    replace: bool,
    progress: Option<Progress>,
) -> Result<ImportInfo, TenantError> {
    let (pipe_w, pipe_r) = tokio::io::duplex(1 << 20);
    let read = async move {
        let mut pipe_w = pipe_w;
        restore_file(repo, entry, &mut pipe_w, FileCheck::ChunksOnly, progress).await
    };
    let write = async move {
        let mut reader = RecordReader::new(pipe_r);
        store.import(schema, &mut reader, replace).await
    };
    match tokio::join!(read, write) {
        (Ok(()), written) => written,
        // The driver stopped reading first (its datastore failed): its error says why.
        (Err(kmdr_repo::Error::Destination(_)), Err(e)) => Err(e),
        // The driver only saw the stream end early; the repository says why.
        (Err(source), Err(TenantError::ImportFailed { state, .. })) => Err(TenantError::Interrupted { source, state }),
        (Err(source), _) => Err(source.into()),
    }
}

/// Any driver, chosen by the `--datastore` URL's scheme.
pub enum AnyTenants {
    Etcd(etcd::EtcdTenants),
    Postgres(postgres::PostgresTenants),
    Mysql(mysql::MysqlTenants),
    Nats(nats::NatsTenants),
}

/// Connect to the datastore `url` names. `tls` (`--cacert/--cert/--key`)
/// applies to every driver: etcds://, PostgreSQL (verify-full), MySQL, NATS.
pub async fn connect(url: &DatastoreUrl, tls: crate::etcd::TlsFiles) -> Result<AnyTenants, TenantError> {
    Ok(match url.driver {
        Driver::Postgres => AnyTenants::Postgres(postgres::PostgresTenants::connect(url, &tls).await?),
        Driver::Mysql => AnyTenants::Mysql(mysql::MysqlTenants::connect(url, &tls).await?),
        Driver::Etcd => AnyTenants::Etcd(etcd::EtcdTenants::connect(url, tls).await?),
        Driver::Nats => AnyTenants::Nats(nats::NatsTenants::connect(url, &tls).await?),
    })
}

/// Forward a call to whichever driver `AnyTenants` holds.
macro_rules! each_driver {
    ($self:expr, $s:ident => $body:expr) => {
        match $self {
            AnyTenants::Etcd($s) => $body,
            AnyTenants::Postgres($s) => $body,
            AnyTenants::Mysql($s) => $body,
            AnyTenants::Nats($s) => $body,
        }
    };
}

impl TenantStore for AnyTenants {
    fn driver(&self) -> Driver {
        each_driver!(self, s => s.driver())
    }
    fn datastore(&self) -> String {
        each_driver!(self, s => s.datastore())
    }
    fn key_root(&self, schema: &str) -> String {
        each_driver!(self, s => s.key_root(schema))
    }
    async fn list_tenants(&self) -> Result<Vec<String>, TenantError> {
        each_driver!(self, s => s.list_tenants().await)
    }
    async fn shared_read_point(&self) -> Result<Option<i64>, TenantError> {
        each_driver!(self, s => s.shared_read_point().await)
    }
    async fn export<W: AsyncWrite + Unpin + Send>(
        &self,
        schema: &str,
        at: Option<i64>,
        out: &mut RecordWriter<W>,
    ) -> Result<ExportInfo, TenantError> {
        each_driver!(self, s => s.export(schema, at, out).await)
    }
    async fn count(&self, schema: &str) -> Result<u64, TenantError> {
        each_driver!(self, s => s.count(schema).await)
    }
    async fn import<R: AsyncRead + Unpin + Send>(
        &self,
        schema: &str,
        input: &mut RecordReader<R>,
        replace: bool,
    ) -> Result<ImportInfo, TenantError> {
        each_driver!(self, s => s.import(schema, input, replace).await)
    }
}
