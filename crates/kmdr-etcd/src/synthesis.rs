//! Compaction of the whole etcd (`kmdr serve`, docs/design.md section 18):
//! the snapshot a point-in-time restore builds ([`crate::point`]) stored as a
//! new full backup, so that later restores replay only the segments after it.
//! Apart from `point` because it also reads backups as `restorer` does, and
//! `restorer` builds points.

use crate::EtcdError;
use crate::point::{EtcdServer, PointOutcome};
use crate::restorer::{PointRestore, load_snapshot_manifest, snapshot_info};
use crate::snapshotter::{KIND, SNAPSHOT_FILE};
use crate::tool::{RestoreTool, local};
use kmdr_core::{EtcdSnapshotInfo, Layer, Manifest, SourceInfo};
use kmdr_repo::backuper::ManifestDraft;
use kmdr_repo::point::{Point, PointPlan, plan_series_point, synthesis_tags};
use kmdr_repo::{BackupSession, Repository};
use std::collections::BTreeMap;
use std::path::Path;

/// What [`synthesise_backup`] wrote: the new full backup, the chain it was
/// built from and what the replay did.
#[derive(Debug, Clone)]
pub struct Synthesised {
    pub manifest: Manifest,
    pub plan: PointPlan,
    pub outcome: PointOutcome,
}

/// Compaction (`kmdr serve`, docs/design.md section 18): a new etcd backup of
/// `series` (`etcd/<cluster id>`) at the newest point the repository holds,
/// without reading the source etcd: the point's snapshot, built in a scratch
/// etcd under `scratch` as a point-in-time restore builds it, is stored as a
/// new backup with the base's series, cluster and identity, the revision
/// reached, and the tags of [`synthesis_tags`]. `None` when no change
/// follows the base. Refused (nothing committed) when the replay did not
/// land on the source's revisions. Needs the full key.
pub async fn synthesise_backup(
    repo: &Repository,
    series: &str,
    tool: &RestoreTool,
    server: &EtcdServer,
    scratch: &Path,
    tags: &BTreeMap<String, String>,
) -> Result<Option<Synthesised>, EtcdError> {
    // The session starts before the chain is planned: every segment after the
    // point reached is then written after the new backup started, which is
    // what lets it continue the new backup (`continuing_segments`).
    let mut session = BackupSession::start(repo, "kmdr serve (compaction)").await?;
    let dir = scratch.join(format!(".kmdr-compact-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")));
    let built = async {
        std::fs::create_dir_all(&dir).map_err(local("cannot create the scratch dir", &dir))?;
        build_into(repo, series, tool, server, &dir, &mut session).await
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let built = built.map(|b| {
        b.map(|(info, plan, outcome)| {
            let draft = ManifestDraft {
                kind: KIND.into(),
                layer: Layer::UnderCluster,
                series: plan.series.clone(),
                tags: synthesis_tags(tags, &plan),
                source: SourceInfo::EtcdSnapshot(info),
            };
            (draft, (plan, outcome))
        })
    });
    Ok(session.commit_built(built).await?.map(|(manifest, (plan, outcome))| Synthesised { manifest, plan, outcome }))
}

/// The snapshot at the newest point of `series` as file [`SNAPSHOT_FILE`] of `session`.
async fn build_into(
    repo: &Repository,
    series: &str,
    tool: &RestoreTool,
    server: &EtcdServer,
    dir: &Path,
    session: &mut BackupSession,
) -> Result<Option<(EtcdSnapshotInfo, PointPlan, PointOutcome)>, EtcdError> {
    let (plan, base) = plan_series_point(repo, series, Point::Latest).await?;
    if plan.revision <= plan.base_revision {
        return Ok(None);
    }
    let base = load_snapshot_manifest(repo, &base.id).await?;
    let point = PointRestore {
        plan: plan.clone(),
        base_id: base.id.clone(),
        etcd: server.clone(),
        work_dir: dir.join("point"),
    };
    let out = dir.join("snapshot.db");
    let outcome = point.build(repo, tool, &out, None).await?;
    if let Some(rev) = outcome.drift_from.or((outcome.revision != plan.revision).then_some(outcome.revision)) {
        return Err(EtcdError::Scratch {
            detail: format!(
                "replaying {series} onto backup {} landed on other revisions than the source's from revision {rev} on, so no backup was synthesised",
                plan.base
            ),
        });
    }
    let mut file = tokio::fs::File::open(&out).await.map_err(local("cannot open", &out))?;
    session.add_file(SNAPSHOT_FILE, &mut file, None).await?;
    let mut info = snapshot_info(&base).clone();
    info.etcd_version = server.version.clone();
    info.revision = outcome.revision;
    info.key_count = outcome.key_count;
    info.db_size = outcome.bytes as i64;
    info.etcd_sha256 = outcome.sha256.clone();
    Ok(Some((info, plan, outcome)))
}
