//! One tenant's backup and restore through any [`TenantStore`]: the records
//! stream into a backup of kind [`KIND`]; a restore checks the target is
//! empty (or replaces it) and streams them back.

use crate::records::{RECORDS_FILE, RecordReader, RecordWriter};
use crate::store::{ImportInfo, KIND, TenantError, TenantStore};
use kmdr_core::{Layer, Manifest, SourceInfo, TenantDataInfo};
use kmdr_repo::backuper::ManifestDraft;
use kmdr_repo::restorer::{FileCheck, restore_file};
use kmdr_repo::{BackupSession, Progress, Repository};
use std::collections::BTreeMap;

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
    let session = BackupSession::start(repo, "kmdr backup tenant").await?;
    backup_tenant_in(session, store, schema, opts, progress).await
}

/// [`backup_tenant`] as a backup of a run (`--all`: [`kmdr_repo::BackupRun::session`]),
/// whose lock and repository listings the run's tenants share.
pub async fn backup_tenant_in<S: TenantStore>(
    mut session: BackupSession,
    store: &S,
    schema: &str,
    opts: &TenantBackupOptions,
    progress: Option<Progress>,
) -> Result<Manifest, TenantError> {
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
        (Ok(_), Err(e)) | (Err(TenantError::Records(crate::records::RecordError::Io(_))), Err(e)) => {
            return Err(e.into());
        }
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
