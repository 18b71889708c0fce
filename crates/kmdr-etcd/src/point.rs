//! `kmdr restore etcd --at TIME | --revision R`: a snapshot of the whole
//! etcd as it was at a point between two full backups.
//!
//! No bbolt writer exists outside etcd, so etcd builds it, as gardener's
//! etcd-backup-restore does: the base snapshot is restored by etcd's own tool
//! into a scratch single-member cluster under a temporary dir, a scratch
//! `etcd` is started on loopback ports (fsync off: its result is checked and
//! copied, never served), the delta segments are replayed into it, one
//! transaction per source revision, and its snapshot is taken through the
//! Maintenance API with etcd's checksum checked. That snapshot then goes
//! through the ordinary restore (`etcdutl snapshot restore` with the real
//! member's name and peers, for each member) or to `--to-file`.
//!
//! Revisions stay what they were: a whole-keyspace series captures every
//! revision, and each is replayed as one transaction, so the scratch member's
//! revision after replaying source revision r is r again and every key keeps
//! its create and mod revisions (the API server's resourceVersions). The
//! replay checks this on every transaction and reports any drift. Keys are
//! replayed without their lease (delta segments do not record leases): keys
//! written with a lease after the base (Events, leader-election Leases) do
//! not expire by themselves once restored.
//!
//! The same snapshot also becomes a new etcd backup
//! ([`crate::synthesis::synthesise_backup`], `kmdr serve`'s compaction), so
//! that later restores replay only the segments after it.

use crate::EtcdError;
use crate::connection::describe;
use crate::snapshotter::snapshot_into;
use crate::tool::{RestoreTool, last_lines, local};
use etcd_client::{Client, GetOptions, Txn, TxnOp};
use kmdr_repo::deltas::{DeltaEvent, Op};
use kmdr_repo::point::{PointPlan, replay_events};
use kmdr_repo::{Progress, Repository};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The `etcd` server binary that replays the deltas.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EtcdServer {
    pub program: PathBuf,
    pub version: String,
    /// The binary knows `--unsafe-no-fsync` (etcd >= 3.5).
    pub no_fsync: bool,
}

/// Find a working `etcd`: `explicit` if given, else the one next to the
/// restore tool, else on `PATH`.
pub fn find_etcd_server(explicit: Option<&Path>, tool: &RestoreTool) -> Result<EtcdServer, EtcdError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    match explicit {
        Some(p) => candidates.push(p.to_path_buf()),
        None => {
            if let Some(dir) = tool.program.parent().filter(|d| !d.as_os_str().is_empty()) {
                candidates.push(dir.join("etcd"));
            }
            candidates.push("etcd".into());
        }
    }
    let mut tried = Vec::new();
    for c in candidates {
        match std::process::Command::new(&c).arg("--version").stdin(Stdio::null()).output() {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                let version = text
                    .lines()
                    .find_map(|l| l.strip_prefix("etcd Version:").map(|v| v.trim().to_string()))
                    .unwrap_or_else(|| "unknown".into());
                let help = std::process::Command::new(&c)
                    .arg("--help")
                    .stdin(Stdio::null())
                    .output()
                    .map(|o| o.stdout)
                    .unwrap_or_default();
                let no_fsync = String::from_utf8_lossy(&help).contains("unsafe-no-fsync");
                return Ok(EtcdServer { program: c, version, no_fsync });
            }
            Ok(o) => tried.push(format!("{} exited with {}", c.display(), o.status)),
            Err(e) => tried.push(format!("{}: {e}", c.display())),
        }
    }
    Err(EtcdError::NoEtcdServer { tried: tried.join("; ") })
}

/// What building a point-in-time snapshot did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PointOutcome {
    /// Source revisions replayed (one transaction each).
    pub revisions: u64,
    /// Changes replayed.
    pub events: u64,
    /// The scratch member's revision at the end (the point's revision unless revisions drifted).
    pub revision: i64,
    /// The first source revision whose replay landed on another revision, if any.
    pub drift_from: Option<i64>,
    /// Keys at the end.
    pub key_count: i64,
    /// etcd's checksum of the snapshot written.
    pub sha256: String,
    pub bytes: u64,
    pub duration_ms: u64,
}

/// A scratch etcd member: killed (and its dir removed by the caller) when dropped.
struct Scratch {
    child: tokio::process::Child,
    url: String,
    log: PathBuf,
}

impl Scratch {
    /// The last lines etcd logged, for an error message.
    fn log_tail(&self) -> String {
        last_lines(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

fn free_port() -> Result<u16, std::io::Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn scratch_error(detail: String) -> EtcdError {
    EtcdError::Scratch { detail }
}

/// Restore `snapshot` into `work/data` as a single scratch member and start it.
async fn start_scratch(
    tool: &RestoreTool,
    server: &EtcdServer,
    snapshot: &Path,
    work: &Path,
) -> Result<Scratch, EtcdError> {
    let data = work.join("data");
    let (client_port, peer_port) = (
        free_port().map_err(local("cannot pick a port", work))?,
        free_port().map_err(local("cannot pick a port", work))?,
    );
    let peer = format!("http://127.0.0.1:{peer_port}");
    let url = format!("http://127.0.0.1:{client_port}");
    let cluster = format!("kmdr-point={peer}");
    let args: Vec<String> = vec![
        "snapshot".into(),
        "restore".into(),
        snapshot.display().to_string(),
        "--data-dir".into(),
        data.display().to_string(),
        "--name".into(),
        "kmdr-point".into(),
        "--initial-cluster".into(),
        cluster.clone(),
        "--initial-advertise-peer-urls".into(),
        peer.clone(),
    ];
    crate::tool::run_tool(tool, &args).await?;
    let log = work.join("etcd.log");
    let log_file = std::fs::File::create(&log).map_err(local("cannot create", &log))?;
    let mut cmd = tokio::process::Command::new(&server.program);
    cmd.args(["--name", "kmdr-point", "--data-dir"])
        .arg(&data)
        .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer, "--initial-cluster", &cluster])
        // Large enough for any under-cluster; the scratch member lives minutes.
        .args(["--quota-backend-bytes", &(16u64 << 30).to_string(), "--snapshot-count", "1000000000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .kill_on_drop(true);
    if server.no_fsync {
        cmd.arg("--unsafe-no-fsync");
    }
    let child = cmd.spawn().map_err(local("cannot run", &server.program))?;
    let mut scratch = Scratch { child, url, log };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = scratch.child.try_wait() {
            return Err(scratch_error(format!("the scratch etcd exited with {status}: {}", scratch.log_tail())));
        }
        if let Ok(Ok(mut c)) =
            tokio::time::timeout(Duration::from_secs(2), Client::connect([scratch.url.as_str()], None)).await
            && c.status().await.is_ok()
        {
            return Ok(scratch);
        }
        if Instant::now() > deadline {
            let tail = scratch.log_tail();
            let _ = scratch.child.kill().await;
            return Err(scratch_error(format!("the scratch etcd did not answer within 60 s: {tail}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Apply one source revision's changes as one transaction; returns the revision it landed on.
async fn apply_revision(client: &mut Client, url: &str, events: &[DeltaEvent]) -> Result<i64, EtcdError> {
    let ops: Vec<TxnOp> = events
        .iter()
        .map(|e| match e.op {
            Op::Put => TxnOp::put(e.key.clone(), e.value.clone(), None),
            Op::Delete => TxnOp::delete(e.key.clone(), None),
        })
        .collect();
    let resp = client.txn(Txn::new().and_then(ops)).await.map_err(|e| EtcdError::Rpc {
        op: "txn (replaying a delta)",
        endpoint: url.into(),
        detail: describe(&e),
    })?;
    Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
}

/// The plain snapshot of the base backup, inside the scratch dir `work`.
pub fn base_snapshot_path(work: &Path) -> PathBuf {
    work.join("base.db")
}

/// Build the snapshot of `plan`'s point into `out`. `work` is a fresh dir
/// for the scratch member holding the plain snapshot of the plan's base
/// backup, already written and checked, at [`base_snapshot_path`]; the
/// caller removes it.
pub async fn build_point_snapshot(
    repo: &Repository,
    plan: &PointPlan,
    tool: &RestoreTool,
    server: &EtcdServer,
    work: &Path,
    out: &Path,
    progress: Option<Progress>,
) -> Result<PointOutcome, EtcdError> {
    let started = Instant::now();
    let mut scratch = start_scratch(tool, server, &base_snapshot_path(work), work).await?;
    let url = scratch.url.clone();
    let result = async {
        let mut client = Client::connect([url.as_str()], None)
            .await
            .map_err(|e| EtcdError::Unreachable { endpoints: url.clone(), detail: describe(&e) })?;
        let rpc = |op: &'static str| {
            let url = url.clone();
            move |e: etcd_client::Error| EtcdError::Rpc { op, endpoint: url, detail: describe(&e) }
        };
        let head =
            client.get("", Some(GetOptions::new().with_all_keys().with_count_only())).await.map_err(rpc("range"))?;
        let mut outcome =
            PointOutcome { revision: head.header().map(|h| h.revision()).unwrap_or_default(), ..Default::default() };
        // A snapshot is "at its revision or later": the revisions it holds
        // beyond the manifest's (written while it streamed) are not replayed again.
        let held = outcome.revision;
        if held < plan.base_revision || held > plan.revision {
            outcome.drift_from = Some(plan.base_revision);
        }
        replay_events(repo, plan, async |events: Vec<DeltaEvent>| {
            let events: Vec<DeltaEvent> = events.into_iter().filter(|e| e.revision > held).collect();
            let before = outcome.events;
            let mut at = 0;
            while at < events.len() {
                let rev = events[at].revision;
                let end = at + events[at..].iter().take_while(|e| e.revision == rev).count();
                let landed = apply_revision(&mut client, &url, &events[at..end]).await?;
                if landed != rev && outcome.drift_from.is_none() {
                    outcome.drift_from = Some(rev);
                }
                outcome.revision = landed;
                outcome.revisions += 1;
                outcome.events += (end - at) as u64;
                at = end;
            }
            if let Some(p) = &progress {
                p(outcome.events - before);
            }
            Ok::<_, EtcdError>(())
        })
        .await?;
        let count =
            client.get("", Some(GetOptions::new().with_all_keys().with_count_only())).await.map_err(rpc("range"))?;
        outcome.key_count = count.count();
        let tmp = out.with_extension("kmdr-partial");
        let mut f = tokio::fs::File::create(&tmp).await.map_err(local("cannot create", &tmp))?;
        let written = async {
            outcome.sha256 = snapshot_into(&mut client, &url, &mut f).await?;
            f.sync_all().await.map_err(local("cannot sync", &tmp))?;
            outcome.bytes = f.metadata().await.map(|m| m.len()).unwrap_or_default();
            tokio::fs::rename(&tmp, out).await.map_err(local("cannot rename into place", out))
        }
        .await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        written?;
        Ok::<_, EtcdError>(outcome)
    }
    .await;
    let _ = scratch.child.kill().await;
    let mut outcome = result?;
    outcome.duration_ms = started.elapsed().as_millis() as u64;
    Ok(outcome)
}
