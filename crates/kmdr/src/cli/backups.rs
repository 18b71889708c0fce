//! `kmdr backups`, `verify`, `forget` and `prune`: reading the catalog,
//! proving backups restorable, and retention.

use super::*;

#[derive(Debug, Subcommand)]
pub enum BackupsCommand {
    /// List backups, oldest first
    List(ListArgs),
    /// Show one backup's manifest
    Show(ShowArgs),
    /// What a point-in-time restore can reach: per series, its full backups, delta segments, gaps and windows
    #[command(
        long_about = "Per series (the whole etcd of a cluster, each tenant): the full backups a delta chain can \
start from, the delta segments `kmdr serve` captured, the revision ranges no segment covers (gaps), and the windows \
of revisions and times that `kmdr restore etcd|tenant --at TIME | --revision R` can reach without a gap. Reads the \
repository only.\n\nExample:\n  kmdr backups points\n  kmdr backups points -o json"
    )]
    Points,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only backups of this kind: etcd, tenant, tenants, platform, volumes or node-files
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Only backups of this unit: its series (tenant/t1, etcd/CLUSTER-ID, platform/NS/RELEASE), the name in
    /// it (t1, NS/RELEASE), or `etcd` for the under-cluster's etcd
    #[arg(long, value_name = "UNIT")]
    pub unit: Option<String>,
    /// Show the newest N backups (of the kind and unit asked for); older ones are counted, not read
    #[arg(long, value_name = "N", default_value_t = 100, conflicts_with = "all")]
    pub last: usize,
    /// Show every backup (reads every manifest: slow with many thousands)
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Backup id (or a unique prefix), or `latest`
    #[arg(value_name = "ID|latest")]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Backups to verify (ids, prefixes or `latest`); all when none is given
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    /// Verify every backup (the default when no id is given)
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    /// Also prove each backup restorable: restore it into a scratch server
    /// that kmdr starts on 127.0.0.1 in a temp dir (etcd snapshots with
    /// etcdutl, tenant data into a scratch etcd), compare what the server
    /// serves with what the backup recorded, and seal the result in the
    /// repository (`backups list` shows it)
    #[arg(long)]
    pub restore: bool,
    /// With --restore: only backups that have no restore proof yet
    #[arg(long, requires = "restore", conflicts_with = "ids")]
    pub new: bool,
    /// With --restore: N of the selected backups, picked at random
    #[arg(long, requires = "restore", value_name = "N")]
    pub sample: Option<usize>,
    /// With --restore: where tenant data is restored: a scratch etcd (any driver's backup), or a scratch
    /// server of the backup's own driver (PostgreSQL, MariaDB, NATS; their servers must be installed)
    #[arg(long, value_name = "etcd|same", default_value = "etcd", value_parser = ["etcd", "same"])]
    pub target_driver: String,
    /// With --restore: the etcd server binary for scratch servers [default: etcd on PATH]
    #[arg(long, requires = "restore", value_name = "PATH")]
    pub etcd: Option<std::path::PathBuf>,
    /// With --restore: the etcdutl that restores etcd snapshots [default: found as `restore etcd` finds it]
    #[arg(long, value_name = "PATH", env = "KMDR_ETCDUTL")]
    pub etcdutl: Option<std::path::PathBuf>,
    /// With --restore: the helm that renders platform backups [default: helm on PATH; without one the release
    /// is decoded and checked, not rendered]
    #[arg(long, requires = "restore", value_name = "PATH")]
    pub helm: Option<std::path::PathBuf>,
    /// With --restore: the cluster whose volume backup tool holds what volume backups recorded
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Retention rules (as restic's): what `forget` and `serve` keep per series.
#[derive(Debug, Args)]
pub struct KeepArgs {
    /// Keep the N newest backups
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_last: u32,
    /// Keep the newest backup of each of the last N hours that have one
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_hourly: u32,
    /// Keep the newest backup of each of the last N days that have one
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_daily: u32,
    /// Keep the newest backup of each of the last N ISO weeks that have one
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_weekly: u32,
    /// Keep the newest backup of each of the last N months that have one
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep_monthly: u32,
}

impl KeepArgs {
    pub fn policy(&self) -> kmdr_core::KeepPolicy {
        kmdr_core::KeepPolicy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
        }
    }
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub keep: KeepArgs,
    /// Only consider backups of this kind (e.g. etcd)
    #[arg(long)]
    pub kind: Option<String>,
    /// Also delete the data no remaining backup references
    #[arg(long)]
    pub prune: bool,
    /// Print what would be removed; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Print what would be deleted; change nothing
    #[arg(long)]
    pub dry_run: bool,
}
