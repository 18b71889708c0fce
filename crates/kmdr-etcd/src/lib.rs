//! The under-cluster's etcd: full snapshots through Maintenance.Snapshot
//! ([`snapshotter`]) and restores through etcd's own tool ([`restorer`],
//! [`tool`]), at a point between full backups through a scratch member
//! ([`point`]). [`bbolt`] and [`mvcc`] read a snapshot's database offline
//! (what Kubernetes stored in it is decoded by `kmdr-kube`'s `inspect`).
//!
//! Depends on the repository (`kmdr-repo`: sessions, delta segments, point
//! planning) and nothing above it.

pub mod bbolt;
pub mod connection;
pub mod mvcc;
pub mod point;
pub mod restorer;
pub mod snapshotter;
pub mod synthesis;
pub mod tool;

pub use connection::{EtcdConnection, TlsFiles};
pub use restorer::{EtcdRestoreOptions, EtcdRestorePlan};
pub use snapshotter::{SnapshotOptions, backup_snapshot};
pub use tool::{DEFAULT_REVISION_BUMP, RestoreTool, find_restore_tool};

use kmdr_core::{Classify, ErrorClass};
use std::path::PathBuf;

/// What can go wrong with etcd. Every message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered.
    #[error(
        "cannot reach etcd at {endpoints}: {detail}. Check --endpoints and that etcd is running; for https endpoints pass --cacert, --cert and --key"
    )]
    Unreachable { endpoints: String, detail: String },
    /// A certificate or key file could not be read.
    #[error("cannot read TLS file {}: {source}; check --cacert/--cert/--key", path.display())]
    TlsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The TLS options are inconsistent.
    #[error("{0}")]
    TlsConfig(String),
    /// etcd answered with an error.
    #[error("etcd {op} failed at {endpoint}: {detail}")]
    Rpc { op: &'static str, endpoint: String, detail: String },
    /// The snapshot stream failed its own integrity check.
    #[error(
        "the snapshot from {endpoint} is corrupt or incomplete: {detail}; nothing was committed, run the backup again"
    )]
    SnapshotIntegrity { endpoint: String, detail: String },
    /// No restore tool was found.
    #[error(
        "no working etcdutl or etcdctl found ({tried}): install etcd's tools (etcdutl from etcd >= 3.5, or etcdctl 3.4) or pass --etcdutl PATH"
    )]
    NoRestoreTool { tried: String },
    /// The restore tool cannot bump the revision (too old).
    #[error(
        "{tool} cannot bump the revision of the restored store (--bump-revision and --mark-compacted need etcdutl from etcd 3.6, or 3.5.10 and later): without it the restored etcd hands out revisions it already handed out, and every Kubernetes watcher silently keeps a stale cache (etcd-io/etcd#16028). Use a newer etcdutl (--etcdutl PATH or KMDR_ETCDUTL; scripts/build-go-tools.sh builds etcd 3.6's), or --no-bump-revision for an etcd that nothing watches"
    )]
    ToolTooOld { tool: String },
    /// No `etcd` binary for a point-in-time restore.
    #[error(
        "no working etcd server binary found ({tried}): a point-in-time restore replays the delta segments in a scratch etcd; install etcd (the same version as the cluster's) or pass --etcd PATH"
    )]
    NoEtcdServer { tried: String },
    /// The scratch etcd of a point-in-time restore failed.
    #[error(
        "the scratch etcd that replays the delta segments failed: {detail}; nothing was changed. Check free disk space next to the data dir, or pass --etcd with the cluster's etcd version"
    )]
    Scratch { detail: String },
    /// No full backup and delta chain reach the point asked.
    #[error(transparent)]
    Point(#[from] kmdr_repo::point::PointError),
    /// The restore tool failed.
    #[error("{tool} snapshot restore failed ({status}): {stderr}")]
    ToolFailed { tool: String, status: String, stderr: String },
    /// The data dir already holds data.
    #[error("data dir {} is not empty: pass --force to move it aside to {}.kmdr-old-<time> and restore, or pick another --data-dir", dir.display(), dir.display())]
    DataDirNotEmpty { dir: PathBuf },
    /// The backup is not an etcd snapshot.
    #[error("backup {id} is not an etcd snapshot (kind {kind}): pick one listed by `kmdr backups list --kind etcd`")]
    WrongKind { id: String, kind: String },
    /// Local file handling during restore failed.
    #[error("{what} {}: {source}", path.display())]
    Local {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] kmdr_repo::Error),
}

impl EtcdError {
    /// True when the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            EtcdError::Unreachable { .. } | EtcdError::SnapshotIntegrity { .. } => true,
            EtcdError::Repo(e) => e.is_retryable(),
            _ => false,
        }
    }
}

impl Classify for EtcdError {
    fn class(&self) -> ErrorClass {
        match self {
            EtcdError::Repo(r) => r.class(),
            EtcdError::Point(p) => p.class(),
            EtcdError::NoEtcdServer { .. }
            | EtcdError::DataDirNotEmpty { .. }
            | EtcdError::NoRestoreTool { .. }
            | EtcdError::ToolTooOld { .. }
            | EtcdError::Local { .. } => ErrorClass::Refused,
            EtcdError::WrongKind { .. } => ErrorClass::NotFound,
            EtcdError::ToolFailed { .. } => ErrorClass::Other,
            EtcdError::Unreachable { .. }
            | EtcdError::TlsFile { .. }
            | EtcdError::TlsConfig(_)
            | EtcdError::Rpc { .. }
            | EtcdError::SnapshotIntegrity { .. }
            | EtcdError::Scratch { .. } => ErrorClass::Source,
        }
    }
}
