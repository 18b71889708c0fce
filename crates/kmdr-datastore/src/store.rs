//! The contract every tenant datastore driver keeps ([`TenantStore`]), what
//! an export and an import report, and what can go wrong ([`TenantError`]).

use crate::driver::Driver;
use crate::records::{RecordReader, RecordWriter};
use kmdr_core::{Classify, ErrorClass};
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
    /// kine's table is not in a layout kmdr knows (a newer kine's).
    #[error(
        "table kine of tenant {schema:?} on {datastore} has {detail}: it was written by a kine whose schema kmdr does not know (kmdr knows kine's table up to kine v0.17). Nothing was changed; use a kmdr that supports this kine version"
    )]
    KineSchema { schema: String, datastore: String, detail: String },
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
    Records(#[from] crate::records::RecordError),
    /// No chain of a full backup and delta segments reaches the point asked.
    #[error(transparent)]
    Point(#[from] kmdr_repo::point::PointError),
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

impl Classify for TenantError {
    fn class(&self) -> ErrorClass {
        match self {
            TenantError::BadUrl(_) => ErrorClass::Usage,
            TenantError::UnknownSchema { .. } | TenantError::EmptySchema { .. } | TenantError::WrongKind { .. } => {
                ErrorClass::NotFound
            }
            TenantError::TargetNotEmpty { .. } | TenantError::KineSchema { .. } => ErrorClass::Refused,
            TenantError::Point(p) => p.class(),
            TenantError::Records(r) => r.class(),
            TenantError::Interrupted { source, .. } | TenantError::Repo(source) => source.class(),
            TenantError::Unreachable { .. }
            | TenantError::Auth { .. }
            | TenantError::Datastore { .. }
            | TenantError::ImportFailed { .. }
            | TenantError::Unrepresentable(_)
            | TenantError::Spill(_) => ErrorClass::Source,
        }
    }
}
