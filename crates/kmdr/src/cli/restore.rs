//! `kmdr restore ...`: one command per layer, each with `--dry-run`.

use super::*;

#[derive(Debug, Subcommand)]
pub enum RestoreCommand {
    /// Restore an etcd snapshot backup into a member data dir (with etcdutl/etcdctl)
    #[command(
        long_about = "Fetch the snapshot of backup ID (or `latest`), check every byte, and build a member data dir \
with etcd's own tool (`etcdutl snapshot restore`, or `etcdctl snapshot restore` where only etcd 3.4 tools exist). \
The flags are the ones of that tool. Then start etcd with --data-dir DIR.\n\n\
An existing non-empty data dir is refused; with --force it is moved aside (to DIR.kmdr-old-<time>), never deleted. \
--dry-run prints the plan and changes nothing. --to-file PATH only writes the checked plain snapshot, for your own \
tooling.\n\n\
Point in time (--at TIME|now, --revision R): the newest full backup of the same cluster at or before the point, plus \
the delta segments `kmdr serve` captured after it, replayed up to the point in a scratch etcd (loopback ports, a temp \
dir next to the data dir or file; needs the `etcd` binary, --etcd) with every revision number kept; a gap in the \
segments is an error (exit 12), never skipped. The result goes through the same restore, or to --to-file. Every \
member of a multi-member cluster is restored from the same point: write it once with --to-file and restore each \
member from that file with etcdutl, or run this command per member.\n\nExample (the runbook's restore step):\n  systemctl stop etcd\n  kmdr restore etcd latest --data-dir /var/lib/etcd \
--force --name cp-1 \\\n      --initial-cluster cp-1=https://10.0.0.1:2380 --initial-advertise-peer-urls https://10.0.0.1:2380\n  \
systemctl start etcd"
    )]
    Etcd(RestoreEtcdArgs),
    /// Restore one tenant's control-plane data into a datastore of any driver
    #[command(
        long_about = "Write the keys of a tenant backup into a Kamaji datastore: the same one or another, of the \
same driver or a different one (etcd, PostgreSQL, MySQL, NATS). Keys are mapped between /SCHEMA/... on etcd and \
/registry/... under kine. Nothing outside the tenant's prefix, database or bucket is written.\n\n\
A target that already holds keys of the tenant is refused; --force replaces them. --dry-run prints what would be \
written and removed. kine targets get kine's table and indexes, revisions above any the table had, and a reset id \
sequence. Leases are not carried over. SQL restores are one transaction; an interrupted etcd or NATS restore says \
how many keys it wrote, and the same command with --force completes it.\n\n\
Examples:\n  kmdr restore tenant latest --source-schema tenant1 --datastore etcd://10.0.0.5:2379 --dry-run\n  \
kmdr restore tenant 20261127T0400 --datastore postgres://kamaji@db:5432 --schema tenant1 --force"
    )]
    Tenant(RestoreTenantArgs),
    /// Write a platform backup's values overlay (and Secrets) to a directory and print, or run, the helm install
    #[command(
        long_about = "Write the values overlay of platform backup ID (or `latest`) to DIR/values.yaml, and each \
captured Secret to DIR/secrets/NS/NAME.yaml (with DIR/namespaces.yaml for their namespaces), every file checked \
against the backup and readable by its owner only. Then print the runbook's commands: `kubectl apply` of the \
Secrets first, then\n\n  helm install RELEASE CHART --version V --namespace NS --create-namespace --values DIR/values.yaml \
--wait --timeout 15m\n\n\
CHART defaults to the chart's name: pass --chart with where it is published (oci://..., or REPO/NAME after \
`helm repo add`). --execute runs the commands (helm and kubectl must be on PATH); --dry-run only prints what would \
be written and run.\n\nExample:\n  kmdr restore platform latest --to /root/kmetal-restore --chart oci://ghcr.io/clastix/oci/kmetal --execute"
    )]
    Platform(RestorePlatformArgs),
    /// Restore Kamaji tenants: data first, then DataStore, Secrets, TenantControlPlane, KamajiControlPlane, Cluster; wait for Ready
    #[command(
        long_about = "Restore the tenants of a `kmdr backup tenants` backup (ID or `latest`), in this order:\n\n  \
1. check: a TenantControlPlane that exists with another dataStoreSchema (its spec, status.storage.setup.schema, \
else its UID) is refused, exit 8, nothing written; a datastore schema that already holds keys is refused unless \
--force;\n  \
2. the data of every tenant into the datastore its backed-up DataStore names (only the tenant's prefix, database or \
bucket: never another tenant's keys);\n  \
3. by server-side apply (field manager kmdr, forced): the DataStore (its credential Secrets created only when \
absent), the tenant's Namespace (when absent), its Secrets (the CA <tcp>-ca among them, all before the TCP), the TCP with \
spec.dataStoreSchema/dataStoreUsername, the KamajiControlPlane, the Cluster;\n  \
4. wait until every restored TCP reports status.kubernetesResources.version.status Ready (--timeout, exit 11).\n\n\
kmdr never deletes anything, and never a TenantControlPlane: deleting one drops its data. --dry-run checks and \
prints the plan and sends no write.\n\n\
Examples:\n  kmdr restore tenants latest --dry-run\n  kmdr restore tenants latest --only tenants/tenant-a --timeout 20m"
    )]
    Tenants(RestoreTenantsArgs),
    /// Put the under-cluster's identity files back (before `kubeadm init`)
    #[command(
        long_about = "Write the files of a node-files backup under --to (`/` on the node itself) with their modes \
and owners (owners when run as root), before `kubeadm init --config /etc/kubernetes/kubeadm-config.yaml` so that \
kubeadm reuses the old CA and keys, then restore etcd. Files that exist and differ from the backup (content, mode or \
owner) are refused, naming each and saying when one holds another CA, unless --force. Every file is written to a \
temporary name first and renamed into place only when all are written. --dry-run prints the plan.\n\n\
Example:\n  kmdr restore node-files latest --to / --dry-run"
    )]
    NodeFiles(RestoreNodeFilesArgs),
}

#[derive(Debug, Args)]
pub struct RestoreTenantsArgs {
    /// Backup id (or a unique prefix), or `latest`
    #[arg(value_name = "ID|latest")]
    pub id: String,
    /// Only this tenant, NAMESPACE/NAME (repeatable)
    #[arg(long, value_name = "NS/NAME")]
    pub only: Vec<String>,
    /// Replace the keys a tenant's schema holds in its datastore now
    #[arg(long)]
    pub force: bool,
    /// The datastore survived with the tenants' data: keep it, restore only the manifests
    /// (refused for a tenant whose schema holds no keys)
    #[arg(long, conflicts_with = "force")]
    pub manifests_only: bool,
    /// Check and print the plan; send no write
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait for the TenantControlPlanes to be Ready
    #[arg(long, value_name = "D", value_parser = parse_duration_arg, default_value = "15m")]
    pub timeout: std::time::Duration,
    /// How often to look while waiting
    #[arg(long, value_name = "D", value_parser = parse_duration_arg, default_value = "2s")]
    pub interval: std::time::Duration,
    /// Reach DataStore DS at HOST:PORT[,HOST:PORT] instead of its spec.endpoints (repeatable)
    #[arg(long = "datastore-endpoint", value_name = "DS=HOST:PORT", value_parser = parse_tag)]
    pub endpoints: Vec<(String, String)>,
    #[command(flatten)]
    pub kube: KubeArgs,
}

#[derive(Debug, Args)]
pub struct RestorePlatformArgs {
    /// Backup id (or a unique prefix), or `latest`
    #[arg(value_name = "ID|latest")]
    pub id: String,
    /// Directory to write values.yaml (and secrets/) into
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Chart reference for helm install (default: the chart's name)
    #[arg(long, value_name = "REF")]
    pub chart: Option<String>,
    /// Run kubectl apply and helm install after writing the files
    #[arg(long, conflicts_with = "dry_run")]
    pub execute: bool,
    /// Print what would be written and run; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// With --execute: how long to wait, after helm, for every pod to be Running or Completed
    #[arg(long, value_name = "D", value_parser = parse_duration_arg, default_value = "15m")]
    pub timeout: std::time::Duration,
    /// How often to look while waiting
    #[arg(long, value_name = "D", value_parser = parse_duration_arg, default_value = "5s")]
    pub interval: std::time::Duration,
    #[command(flatten)]
    pub kube: KubeArgs,
}

#[derive(Debug, Args)]
pub struct RestoreTenantArgs {
    /// Backup id (or a unique prefix), or `latest`
    #[arg(value_name = "ID|latest")]
    pub id: String,
    #[command(flatten)]
    pub datastore: DatastoreArgs,
    /// Restore under this schema (default: the backed-up tenant's)
    #[arg(long, value_name = "NEW")]
    pub schema: Option<String>,
    /// With `latest`: the newest backup of this tenant
    #[arg(long, value_name = "SCHEMA")]
    pub source_schema: Option<String>,
    /// Replace the keys the tenant holds in the target
    #[arg(long)]
    pub force: bool,
    /// Print what would be written and removed; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Point in time: the newest state captured at or before TIME (RFC 3339, e.g. 2026-11-27T08:15:00Z), or `now`
    /// for the newest the repository holds. Uses the newest full backup before it plus the delta segments up to it
    #[arg(long, value_name = "TIME|now", conflicts_with = "revision")]
    pub at: Option<String>,
    /// Point in time as a revision of the source etcd: the state right after revision R
    #[arg(long, value_name = "R")]
    pub revision: Option<i64>,
}

#[derive(Debug, Args)]
pub struct RestoreEtcdArgs {
    /// Backup id (or a unique prefix), or `latest`
    #[arg(value_name = "ID|latest")]
    pub id: String,
    /// Data dir to create for the member
    #[arg(long, required_unless_present = "to_file", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Member name (etcd --name)
    #[arg(long, required_unless_present = "to_file")]
    pub name: Option<String>,
    /// Initial cluster configuration, e.g. cp-1=https://10.0.0.1:2380
    #[arg(long, required_unless_present = "to_file", value_name = "NAME=URL,...")]
    pub initial_cluster: Option<String>,
    /// This member's peer URLs, e.g. https://10.0.0.1:2380
    #[arg(long, required_unless_present = "to_file", value_name = "URL")]
    pub initial_advertise_peer_urls: Option<String>,
    /// Initial cluster token (etcd's default when omitted)
    #[arg(long)]
    pub initial_cluster_token: Option<String>,
    /// Move an existing non-empty data dir aside (or overwrite --to-file)
    #[arg(long)]
    pub force: bool,
    /// Print what would be done; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Only write the checked plain snapshot to this file
    #[arg(long, value_name = "PATH", conflicts_with_all = ["data_dir", "name", "initial_cluster", "initial_advertise_peer_urls"])]
    pub to_file: Option<PathBuf>,
    /// The restore tool (default: etcdutl, else etcdctl, on PATH)
    #[arg(long, env = "KMDR_ETCDUTL", value_name = "PATH")]
    pub etcdutl: Option<PathBuf>,
    /// Start the restored store N revisions above the snapshot's and mark the old revisions compacted, so that every
    /// API server, controller and kubelet watching the old cluster relists instead of keeping a stale cache
    /// (etcdutl --bump-revision N --mark-compacted)
    #[arg(long, value_name = "N", default_value_t = kmdr_etcd::DEFAULT_REVISION_BUMP, conflicts_with = "no_bump_revision")]
    pub bump_revision: u64,
    /// Restore the revisions as they were: only for an etcd that no Kubernetes (or other watcher) uses
    #[arg(long)]
    pub no_bump_revision: bool,
    /// Point in time: the newest state captured at or before TIME (RFC 3339, e.g. 2026-11-27T08:15:00Z), or `now`
    /// for the newest the repository holds. Uses the newest full backup of ID's cluster before it plus the delta segments up to it
    #[arg(long, value_name = "TIME|now", conflicts_with = "revision")]
    pub at: Option<String>,
    /// Point in time as a revision of the source etcd: the state right after revision R
    #[arg(long, value_name = "R")]
    pub revision: Option<i64>,
    /// The etcd server binary that replays the deltas of --at/--revision (default: next to the restore tool, else on PATH)
    #[arg(long, env = "KMDR_ETCD", value_name = "PATH")]
    pub etcd: Option<PathBuf>,
}
