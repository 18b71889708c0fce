//! `kmdr restore etcd`: fetch and check the snapshot, then let etcd's own tool
//! (`etcdutl snapshot restore`, or `etcdctl snapshot restore` where only etcd
//! 3.4 tools exist) build the member's data dir, exactly as the runbook does
//! by hand.
//!
//! Nothing the user has is lost: the snapshot is written next to the data dir
//! under a temporary name and checked (size, sha256) before the tool sees it;
//! the tool writes into a staging dir; only when it succeeds is an existing
//! data dir moved aside (`--force`) and the staging dir renamed into place.

use crate::EtcdError;
use crate::point::{EtcdServer, PointOutcome, base_snapshot_path, build_point_snapshot};
use crate::snapshotter::{KIND, SNAPSHOT_FILE};
use crate::tool::{RestoreTool, local, run_tool};
use kmdr_core::{BackupId, Manifest, SourceInfo};
use kmdr_repo::point::{Point, PointPlan, plan_series_point};
use kmdr_repo::{Progress, Repository, restorer};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The member to build, as etcd's own restore flags name it.
#[derive(Debug, Clone, Serialize)]
pub struct EtcdRestoreOptions {
    pub data_dir: PathBuf,
    pub name: String,
    pub initial_cluster: String,
    pub initial_advertise_peer_urls: String,
    pub initial_cluster_token: Option<String>,
    /// Move a non-empty data dir aside instead of refusing.
    pub force: bool,
    /// Start the restored store this many revisions above the snapshot's and
    /// mark the old revisions compacted, so that every watcher of the old
    /// cluster is told to relist (Kubernetes). `None`: restore the revisions
    /// as they were (an etcd that nothing watches).
    pub bump_revision: Option<u64>,
}

/// What `restore etcd` will do; `--dry-run` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct EtcdRestorePlan {
    pub backup: BackupId,
    pub revision: i64,
    pub key_count: i64,
    pub etcd_version: String,
    pub snapshot_bytes: u64,
    pub snapshot_sha256: String,
    pub tool: RestoreTool,
    pub data_dir: PathBuf,
    /// `missing`, `empty`, or `not empty`.
    pub data_dir_state: String,
    /// Where the current data dir goes (only with --force and a non-empty dir).
    pub move_aside_to: Option<PathBuf>,
    pub staging_dir: PathBuf,
    pub snapshot_path: PathBuf,
    /// The restore tool's command line.
    pub command: Vec<String>,
    /// The bump applied, if any; the restored store's revision is `revision + bump`.
    pub bump_revision: Option<u64>,
    /// A point-in-time restore: the base is `backup`, these segments are
    /// replayed onto it by a scratch `etcd` before the tool runs.
    pub point: Option<PointRestore>,
}

/// The point-in-time part of a restore plan.
#[derive(Debug, Clone, Serialize)]
pub struct PointRestore {
    #[serde(flatten)]
    pub plan: PointPlan,
    #[serde(skip)]
    pub base_id: BackupId,
    pub etcd: EtcdServer,
    /// Where the scratch member lives while it replays.
    pub work_dir: PathBuf,
}

impl PointRestore {
    /// Plan the point `point` of the series of backup `id` (its cluster).
    pub async fn plan(
        repo: &Repository,
        id: &BackupId,
        point: Point,
        etcd: EtcdServer,
        next_to: &Path,
    ) -> Result<(Self, BackupId), EtcdError> {
        let m = load_snapshot_manifest(repo, id).await?;
        let (plan, base) = plan_series_point(repo, &m.series, point).await?;
        let parent = std::path::absolute(next_to)
            .map_err(local("bad path", next_to))?
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        let work_dir = parent.join(format!(".kmdr-point-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")));
        Ok((PointRestore { plan, base_id: base.id.clone(), etcd, work_dir }, base.id))
    }

    /// Fetch the base snapshot and build the point's snapshot into `out`.
    pub async fn build(
        &self,
        repo: &Repository,
        tool: &RestoreTool,
        out: &Path,
        progress: Option<Progress>,
    ) -> Result<PointOutcome, EtcdError> {
        std::fs::create_dir(&self.work_dir).map_err(local("cannot create the scratch dir", &self.work_dir))?;
        let result = async {
            write_snapshot(repo, &self.base_id, &base_snapshot_path(&self.work_dir), false, false, None).await?;
            build_point_snapshot(repo, &self.plan, tool, &self.etcd, &self.work_dir, out, progress).await
        }
        .await;
        let _ = std::fs::remove_dir_all(&self.work_dir);
        result
    }
}

/// Load the manifest of an etcd snapshot backup.
pub async fn load_snapshot_manifest(repo: &Repository, id: &BackupId) -> Result<Manifest, EtcdError> {
    let m = repo.load_manifest(id).await?;
    if id.kind() != KIND || !matches!(m.source, SourceInfo::EtcdSnapshot(_)) || m.file(SNAPSHOT_FILE).is_none() {
        return Err(EtcdError::WrongKind { id: id.to_string(), kind: id.kind().to_string() });
    }
    Ok(m)
}

/// The source of a manifest [`load_snapshot_manifest`] returned.
pub fn snapshot_info(m: &Manifest) -> &kmdr_core::EtcdSnapshotInfo {
    match &m.source {
        SourceInfo::EtcdSnapshot(info) => info,
        _ => unreachable!("load_snapshot_manifest checks the kind"),
    }
}

fn dir_state(dir: &Path) -> Result<&'static str, EtcdError> {
    match std::fs::read_dir(dir) {
        Ok(mut rd) => Ok(if rd.next().is_none() { "empty" } else { "not empty" }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok("missing"),
        Err(e) => Err(local("cannot read data dir", dir)(e)),
    }
}

/// Work out the restore without changing anything. With `point`, `id` is
/// the point's base backup.
pub async fn plan_restore(
    repo: &Repository,
    id: &BackupId,
    opts: &EtcdRestoreOptions,
    tool: RestoreTool,
    point: Option<PointRestore>,
) -> Result<EtcdRestorePlan, EtcdError> {
    let m = load_snapshot_manifest(repo, id).await?;
    let SourceInfo::EtcdSnapshot(info) = &m.source else { unreachable!("checked above") };
    let file = m.file(SNAPSHOT_FILE).expect("checked above");
    tool.check_bump(opts.bump_revision)?;
    let data_dir = std::path::absolute(&opts.data_dir).map_err(local("bad data dir", &opts.data_dir))?;
    let state = dir_state(&data_dir)?;
    if state == "not empty" && !opts.force {
        return Err(EtcdError::DataDirNotEmpty { dir: data_dir });
    }
    let parent = data_dir.parent().unwrap_or(Path::new("/")).to_path_buf();
    let base = data_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "etcd".into());
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let staging_dir = parent.join(format!(".{base}.kmdr-restoring-{stamp}"));
    let snapshot_path = parent.join(format!(".{base}.kmdr-snapshot-{stamp}.db"));
    let move_aside_to = (state == "not empty").then(|| parent.join(format!("{base}.kmdr-old-{stamp}")));
    let mut command = vec![
        tool.program.display().to_string(),
        "snapshot".into(),
        "restore".into(),
        snapshot_path.display().to_string(),
        "--data-dir".into(),
        staging_dir.display().to_string(),
        "--name".into(),
        opts.name.clone(),
        "--initial-cluster".into(),
        opts.initial_cluster.clone(),
        "--initial-advertise-peer-urls".into(),
        opts.initial_advertise_peer_urls.clone(),
    ];
    if let Some(t) = &opts.initial_cluster_token {
        command.extend(["--initial-cluster-token".into(), t.clone()]);
    }
    if let Some(bump) = opts.bump_revision {
        command.extend(["--bump-revision".into(), bump.to_string(), "--mark-compacted".into()]);
    }
    Ok(EtcdRestorePlan {
        backup: id.clone(),
        revision: point.as_ref().map_or(info.revision, |p| p.plan.revision),
        key_count: info.key_count,
        etcd_version: info.etcd_version.clone(),
        snapshot_bytes: file.size,
        snapshot_sha256: file.sha256.clone(),
        tool,
        data_dir,
        data_dir_state: state.into(),
        move_aside_to,
        staging_dir,
        snapshot_path,
        command,
        bump_revision: opts.bump_revision,
        point,
    })
}

/// Write the plain snapshot of backup `id` to `path` (checked, then renamed into place).
pub async fn write_snapshot_file(
    repo: &Repository,
    id: &BackupId,
    path: &Path,
    force: bool,
    progress: Option<Progress>,
) -> Result<Manifest, EtcdError> {
    write_snapshot(repo, id, path, force, true, progress).await
}

/// As [`write_snapshot_file`]; `durable` fsyncs the file before the rename
/// and hashes the whole file against the manifest. The restore's own temp
/// copy skips both: the tool reads it at once, checks etcd's sha256 trailer
/// over the whole file itself, fsyncs what it writes, and the copy is deleted
/// afterwards. Every chunk is still authenticated and matched to its id.
async fn write_snapshot(
    repo: &Repository,
    id: &BackupId,
    path: &Path,
    force: bool,
    durable: bool,
    progress: Option<Progress>,
) -> Result<Manifest, EtcdError> {
    let m = load_snapshot_manifest(repo, id).await?;
    if path.exists() && !force {
        return Err(EtcdError::Local {
            what: "refusing to overwrite (pass --force)",
            path: path.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        });
    }
    let tmp = path.with_file_name(format!(
        ".{}.kmdr-partial",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "snapshot".into())
    ));
    let lock = kmdr_repo::lock::RepoLock::acquire(repo.store().clone(), false, "kmdr restore etcd").await?;
    let result = async {
        let mut f = tokio::fs::File::create(&tmp).await.map_err(local("cannot create", &tmp))?;
        let check = if durable { restorer::FileCheck::Sha256 } else { restorer::FileCheck::ChunksOnly };
        restorer::restore_file(repo, m.file(SNAPSHOT_FILE).expect("checked"), &mut f, check, progress).await?;
        if durable {
            f.sync_all().await.map_err(local("cannot sync", &tmp))?;
        }
        tokio::fs::rename(&tmp, path).await.map_err(local("cannot rename into place", path))
    }
    .await;
    lock.release().await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result.map(|_| m)
}

/// What a finished restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    pub data_dir: PathBuf,
    pub moved_aside_to: Option<PathBuf>,
    pub duration_ms: u64,
    /// A point-in-time restore: what the replay did.
    pub replayed: Option<PointOutcome>,
}

/// Carry out a plan made by [`plan_restore`].
pub async fn execute(
    repo: &Repository,
    plan: &EtcdRestorePlan,
    progress: Option<Progress>,
) -> Result<RestoreOutcome, EtcdError> {
    let start = std::time::Instant::now();
    let cleanup = |p: &EtcdRestorePlan| {
        let _ = std::fs::remove_file(&p.snapshot_path);
        let _ = std::fs::remove_dir_all(&p.staging_dir);
    };
    let mut replayed = None;
    let result = async {
        match &plan.point {
            None => {
                write_snapshot(repo, &plan.backup, &plan.snapshot_path, false, false, progress).await.map(|_| ())?
            }
            Some(p) => replayed = Some(p.build(repo, &plan.tool, &plan.snapshot_path, progress).await?),
        }
        run_tool(&plan.tool, &plan.command[1..]).await?;
        // The data dir may have changed since planning: check again.
        match dir_state(&plan.data_dir)? {
            "missing" => {}
            "empty" => {
                std::fs::remove_dir(&plan.data_dir).map_err(local("cannot replace empty data dir", &plan.data_dir))?
            }
            _ => match &plan.move_aside_to {
                Some(to) => std::fs::rename(&plan.data_dir, to)
                    .map_err(local("cannot move the old data dir aside", &plan.data_dir))?,
                None => return Err(EtcdError::DataDirNotEmpty { dir: plan.data_dir.clone() }),
            },
        }
        if let Err(e) = std::fs::rename(&plan.staging_dir, &plan.data_dir) {
            // Put the old data dir back rather than leave none.
            if let Some(to) = &plan.move_aside_to {
                let _ = std::fs::rename(to, &plan.data_dir);
            }
            return Err(local("cannot move the restored data dir into place", &plan.data_dir)(e));
        }
        Ok(())
    }
    .await;
    cleanup(plan);
    result?;
    Ok(RestoreOutcome {
        data_dir: plan.data_dir.clone(),
        moved_aside_to: plan.move_aside_to.clone(),
        duration_ms: start.elapsed().as_millis() as u64,
        replayed,
    })
}
