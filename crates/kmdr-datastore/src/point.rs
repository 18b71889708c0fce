//! A tenant at a point in time: the newest full backup at or before the
//! point plus the delta segments after it (planned by
//! `kmdr_repo::point`), written through the driver's ordinary import.
//!
//! The state at revision R is computed as a stream, never a copy of the
//! tenant in memory: the net effect of the segments' changes in
//! `(base, R]` (the last change of each key wins) is held as a sorted map,
//! and merged with the full backup's sorted records into a new record
//! stream, which goes to the driver's ordinary import (`TenantStore::import`).
//! Memory grows with the keys changed since the full backup, not with the
//! tenant.
//!
//! The same stream also becomes a new full backup ([`synthesise_backup`],
//! `kmdr serve`'s compaction), so that later restores replay only the
//! segments after it.

use crate::records::{RECORDS_FILE, RecordReader, RecordSummary, RecordWriter};
use crate::store::{ImportInfo, KIND, TenantError, TenantStore};
use crate::tenant::tenant_info;
use kmdr_core::{Layer, Manifest, SourceInfo, TenantDataInfo};
use kmdr_repo::backuper::ManifestDraft;
use kmdr_repo::deltas::{DeltaEvent, Op};
use kmdr_repo::point::{Point, PointPlan, plan_series_point, replay_events, synthesis_tags};
use kmdr_repo::restorer::{FileCheck, restore_file};
use kmdr_repo::{BackupSession, Repository};
use std::collections::BTreeMap;

/// Choose the full backup and the segments for `point` of tenant `schema`.
pub async fn plan_point(repo: &Repository, schema: &str, point: Point) -> Result<(PointPlan, Manifest), TenantError> {
    let (plan, base) = plan_series_point(repo, &format!("tenant/{schema}"), point).await?;
    if base.id.kind() != KIND {
        return Err(TenantError::WrongKind { id: base.id.to_string(), kind: base.id.kind().to_string() });
    }
    Ok((plan, base))
}

/// Net changes after the base: key -> new value (and revisions), or `None` for deleted.
pub type Overlay = BTreeMap<Vec<u8>, Option<(Vec<u8>, i64, i64)>>;

/// Read the plan's segments into the net changes.
pub async fn load_overlay(repo: &Repository, plan: &PointPlan) -> Result<Overlay, TenantError> {
    let mut overlay = Overlay::new();
    replay_events(repo, plan, async |events: Vec<DeltaEvent>| {
        for e in events {
            let v = match e.op {
                Op::Put => Some((e.value, e.create_revision, e.revision)),
                Op::Delete => None,
            };
            overlay.insert(e.key, v);
        }
        Ok::<_, TenantError>(())
    })
    .await?;
    Ok(overlay)
}

/// Write the state at the plan's revision as a record stream: the base's
/// records merged with the overlay. Returns the records written.
pub async fn write_state<W: tokio::io::AsyncWrite + Unpin + Send>(
    repo: &Repository,
    base: &Manifest,
    overlay: &Overlay,
    out: W,
) -> Result<RecordSummary, TenantError> {
    let entry = base
        .file(RECORDS_FILE)
        .ok_or_else(|| TenantError::WrongKind { id: base.id.to_string(), kind: base.id.kind().to_string() })?;
    let (pipe_w, pipe_r) = tokio::io::duplex(1 << 20);
    let read = async move {
        let mut pipe_w = pipe_w;
        restore_file(repo, entry, &mut pipe_w, FileCheck::ChunksOnly, None).await
    };
    let merge = async move {
        let mut base = RecordReader::new(pipe_r);
        let mut w = RecordWriter::new(out);
        let mut changes = overlay.iter().peekable();
        let mut next_base = base.next().await?;
        loop {
            let take_change = match (&next_base, changes.peek()) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(b), Some((k, _))) => k.as_slice() <= b.key.as_slice(),
            };
            if take_change {
                let (k, v) = changes.next().expect("peeked");
                if next_base.as_ref().is_some_and(|b| &b.key == k) {
                    next_base = base.next().await?;
                }
                if let Some((value, create, rev)) = v {
                    w.write(k, value, *create, *rev).await?;
                }
            } else {
                let b = next_base.take().expect("matched");
                w.write(&b.key, &b.value, b.create_revision, b.mod_revision).await?;
                next_base = base.next().await?;
            }
        }
        Ok::<_, TenantError>(w.finish().await?)
    };
    match tokio::join!(read, merge) {
        (Ok(()), r) => r,
        (Err(kmdr_repo::Error::Destination(_)), Err(e)) => Err(e),
        (Err(e), _) => Err(e.into()),
    }
}

/// Restore `schema`'s state at the plan's point into `store` (as `target_schema`):
/// the merged stream goes through the driver's ordinary import.
pub async fn restore_point<S: TenantStore>(
    repo: &Repository,
    store: &S,
    base: &Manifest,
    plan: &PointPlan,
    target_schema: &str,
    replace: bool,
) -> Result<ImportInfo, TenantError> {
    tenant_info(base)?;
    let overlay = load_overlay(repo, plan).await?;
    let (pipe_w, pipe_r) = tokio::io::duplex(1 << 20);
    let produce = write_state(repo, base, &overlay, pipe_w);
    let consume = async move {
        let mut reader = RecordReader::new(pipe_r);
        store.import(target_schema, &mut reader, replace).await
    };
    match tokio::join!(produce, consume) {
        (Ok(_), r) => r,
        (Err(e), Ok(_)) => Err(e),
        // The import only saw its input end early; the producer says why.
        (Err(e), Err(TenantError::ImportFailed { .. } | TenantError::Records(_))) => Err(e),
        (Err(_), Err(e)) => Err(e),
    }
}

/// What [`synthesise_backup`] wrote: the new full backup and the chain it
/// was built from.
#[derive(Debug, Clone)]
pub struct Synthesised {
    pub manifest: Manifest,
    pub plan: PointPlan,
}

/// Compaction (`kmdr serve`, docs/design.md section 18): a new full backup
/// of tenant `schema` at the newest point the repository holds, built from
/// its newest full backup and the delta segments after it, without reading
/// the datastore. The merged record stream goes straight into the new
/// backup, which has the base's kind, series and source (datastore, driver,
/// schema, key root) with the revision reached and the content it holds,
/// and the tags of [`synthesis_tags`]. `None` when no change follows the
/// base. Needs the full key (the base and the segments are read).
pub async fn synthesise_backup(
    repo: &Repository,
    schema: &str,
    tags: &BTreeMap<String, String>,
) -> Result<Option<Synthesised>, TenantError> {
    // The session starts before the chain is planned: every segment after the
    // point reached is then written after the new backup started, which is
    // what lets it continue the new backup (`continuing_segments`).
    let mut session = BackupSession::start(repo, "kmdr serve (compaction)").await?;
    let built = build_into(repo, schema, &mut session).await.map(|b| {
        b.map(|(info, plan)| {
            let draft = ManifestDraft {
                kind: KIND.into(),
                layer: Layer::TenantControlPlanes,
                series: plan.series.clone(),
                tags: synthesis_tags(tags, &plan),
                source: SourceInfo::TenantData(info),
            };
            (draft, plan)
        })
    });
    Ok(session.commit_built(built).await?.map(|(manifest, plan)| Synthesised { manifest, plan }))
}

/// The state at the newest point as file [`RECORDS_FILE`] of `session`.
async fn build_into(
    repo: &Repository,
    schema: &str,
    session: &mut BackupSession,
) -> Result<Option<(TenantDataInfo, PointPlan)>, TenantError> {
    let (plan, base) = plan_point(repo, schema, Point::Latest).await?;
    if plan.revision <= plan.base_revision {
        return Ok(None);
    }
    let mut info = tenant_info(&base)?.clone();
    let overlay = load_overlay(repo, &plan).await?;
    let (pipe_w, mut pipe_r) = tokio::io::duplex(1 << 20);
    let (merged, stored) =
        tokio::join!(write_state(repo, &base, &overlay, pipe_w), session.add_file(RECORDS_FILE, &mut pipe_r, None));
    let summary = match (merged, stored) {
        (Ok(s), Ok(_)) => s,
        // The repository failed first; the merge only saw its pipe close.
        (Ok(_), Err(e)) | (Err(TenantError::Records(crate::records::RecordError::Io(_))), Err(e)) => {
            return Err(e.into());
        }
        (Err(e), _) => return Err(e),
    };
    if summary.count == 0 {
        return Err(TenantError::EmptySchema { schema: schema.into(), datastore: info.datastore.clone() });
    }
    info.revision = plan.revision;
    info.key_count = summary.count;
    info.bytes = summary.bytes;
    info.content_sha256 = summary.content_sha256;
    Ok(Some((info, plan)))
}
