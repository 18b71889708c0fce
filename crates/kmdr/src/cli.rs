//! The command line, as clap definitions. Each command's logic is in
//! `commands/<verb>.rs`, which calls the libraries.

use crate::output::Format;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "kmdr",
    version,
    about = "Disaster recovery for kMetal: back up and restore the under-cluster etcd and tenant control-plane data into an encrypted repository",
    long_about = "kmdr backs up the layers of a kMetal platform into an encrypted, deduplicated repository on a \
local disk or S3-compatible object storage, restores them in the right order, and runs the runbook's DR drill.\n\n\
Try it on a local lab (etcd on 127.0.0.1, tenants, a plan):\n  kmdr lab up && kmdr drill --lab && kmdr lab down\n\n\
Start here on a platform:\n  kmdr repo init --repo /srv/kmdr --key-file /root/kmdr.key\n  \
kmdr backup node-files --repo /srv/kmdr --key-file /root/kmdr.key --encryption-config /etc/kubernetes/enc/enc.yaml\n  \
kmdr backup etcd --repo /srv/kmdr --key-file /root/kmdr.key --endpoints https://10.0.0.1:2379 \\\n      \
--cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/server.crt --key /etc/kubernetes/pki/etcd/server.key\n  \
kmdr backup tenant --datastore etcds://10.0.0.5:2379 --cacert ... --cert ... --key ... --all\n  \
kmdr backups list\n  kmdr verify\n\n\
Or write the runbook as a plan (docs/plan.md) and use kmdr plan check, backup --plan, restore --plan, drill, status \
and runbook check.\n\n\
Set KMDR_REPO and KMDR_KEY_FILE to avoid repeating --repo and --key-file.",
    after_help = crate::exit::EXIT_CODES_HELP.as_str()
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Repository: a directory, file:///abs/path, or s3://bucket/prefix
    #[arg(long, global = true, env = "KMDR_REPO", value_name = "URL")]
    pub repo: Option<String>,
    /// File holding the repository key (created by `repo init` if missing)
    #[arg(long, global = true, env = "KMDR_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// S3 endpoint for s3:// repositories (default: AWS_ENDPOINT_URL, else AWS)
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Use virtual-hosted-style S3 URLs (bucket.host) instead of path-style (host/bucket)
    #[arg(long, global = true)]
    pub s3_virtual_hosted: bool,
    /// Requests in flight to S3 per stream of chunks (uploads of a backup, fetches of a restore)
    #[arg(long, global = true, env = "KMDR_S3_CONCURRENCY", value_name = "N", hide = true,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub s3_concurrency: Option<u16>,
    /// Output format
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// No progress bars or summaries on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More logging on stderr (-v, -vv); KMDR_LOG takes a tracing filter
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or look after a repository
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Add or list the key files that open the repository (write-only keys for agents)
    #[command(subcommand)]
    Key(KeyCommand),
    /// Take a backup: of one source (etcd, node-files, tenant, tenants, platform), or of every layer of a plan (--plan)
    Backup(BackupArgs),
    /// Restore a backup: one source (etcd, node-files, tenant, tenants, platform), or layers of a plan in order (--plan)
    Restore(RestoreArgs),
    /// List and inspect backups
    #[command(subcommand)]
    Backups(BackupsCommand),
    /// Read an under-cluster etcd backup offline: TenantControlPlanes, DataStores, Clusters, Helm releases; one object ready to apply
    #[command(
        long_about = "Read the Kubernetes objects stored in an under-cluster etcd backup (taken by `kmdr backup etcd`) \
without any cluster: the way back when the API server is gone. The snapshot is fetched into a temporary file under TMPDIR \
(every chunk authenticated), read read-only, and deleted.\n\n\
Without --get it lists the TenantControlPlanes (datastore, schema, user, version, status), DataStores (driver, \
endpoints), Cluster API Clusters, KamajiControlPlanes and Helm releases (release, revision, status, chart, version) at \
the snapshot's revision; --kind narrows or widens the list (tcp, datastore, cluster, kcp, helm, secret, configmap, \
any PLURAL or PLURAL.GROUP under /registry/).\n\n\
--get KIND NS/NAME (NAME for cluster-scoped kinds) prints one object as YAML (or -o json) ready for `kubectl apply`: \
status, uid, resourceVersion, managedFields, creationTimestamp, generation, selfLink and ownerReferences removed; a \
TenantControlPlane keeps spec.dataStoreSchema and spec.dataStoreUsername, filled from status.storage.setup when the spec \
lacks them (re-applied without them, Kamaji creates a new, EMPTY control plane).\n\n\
Secrets encrypted at rest (k8s:enc:aescbc|aesgcm|secretbox|kms:...) are listed as encrypted; --encryption-config with \
the API server's EncryptionConfiguration decrypts aescbc, aesgcm and secretbox. KMS values cannot be decrypted \
offline. A key that does not decrypt exits 4.\n\n\
Examples:\n  kmdr inspect latest\n  kmdr inspect latest --kind tcp,datastore -o json\n  \
kmdr inspect 20261127T0400 --get tcp tenants/tenant1 > tenant1.yaml\n  \
kmdr inspect latest --get secret tenants/tenant1-ca --encryption-config /etc/kubernetes/enc.yaml\n  \
kmdr inspect --snapshot-file /root/etcd.db --get datastore default"
    )]
    Inspect(InspectArgs),
    /// Re-read every byte of backups and check it (--restore: prove them restorable); exit 1 if any fails
    #[command(
        long_about = "Re-read every byte of the given backups (all when none is given): each manifest is decrypted \
and each chunk fetched, checksummed, authenticated and matched against its id. Prints each damaged backup and the \
objects at fault, and exits 1 when any is damaged.\n\n\
With --restore, each backup is then restored into a scratch server that kmdr starts on 127.0.0.1 in a temp dir and \
stops afterwards, and what the server serves is compared with what the backup recorded when it was taken: an etcd \
snapshot is restored with etcdutl as `kmdr restore etcd` does (revision bumped), started, and checked for the \
recorded key count, the snapshot's own content and the revision; tenant data (any driver) is restored into a \
scratch etcd (or, with --target-driver same, a scratch server of its own driver) and checked for the recorded key \
count and content hash; a platform backup's Helm release is decoded and matched to what was recorded, its values \
and Secrets parsed, and its chart rendered with `helm template` and the restored values when helm is on PATH \
(every rendered object must be in the release); a `backup tenants` backup has every manifest parsed into its typed \
object and matched to its tenant (the TenantControlPlane's dataStoreSchema above all) and every tenant's data \
restored into a scratch etcd and checked; a volume backup's objects are looked up through the Kubernetes API \
(--kubeconfig/--context): still there and complete, or \"not checked\" when the API cannot be reached. \
Each result is sealed in the repository (verifications/) and shown by `backups list` and `backups show`; a \
backup that does not restore exits 1 and is never deleted.",
        after_help = "Examples:\n  kmdr verify                          every byte of every backup\n  \
kmdr verify --restore --new          prove every backup not proven yet\n  \
kmdr verify --restore --sample 3     three backups at random\n  \
kmdr verify --restore latest --etcd /usr/local/bin/etcd\n  \
kmdr verify --restore --kubeconfig ~/.kube/under-1   volume backups looked up in that cluster"
    )]
    Verify(VerifyArgs),
    /// Remove backups by a retention policy, optionally pruning unreferenced data
    #[command(
        long_about = "Remove backups by a retention policy, per series (one etcd cluster, one tenant, ...), as restic's \
forget does: a backup is kept when any --keep-* rule keeps it. Delta segments that only continued forgotten backups \
(every change they hold is at or before the oldest full backup left in their series) are removed with them. \
--prune also deletes the chunks no remaining backup references. --dry-run prints every decision and changes nothing.\n\n\
On a repository under S3 Object Lock (`repo init --object-lock`), an object is deleted (every version of it, so the \
space is freed) only once its retention has passed; a backup whose manifest or proofs are still retained is kept \
whole, with its chunks. What was held back is printed with the date it can go, and the exit code is then 13: run it \
again after that date. It needs the admin credentials (s3:ListBucketVersions, s3:GetObjectVersion, \
s3:DeleteObjectVersion; deploy/s3/admin-policy.json).\n\n\
Example:\n  kmdr forget --keep-last 24 --keep-daily 14 --keep-monthly 6 --prune --dry-run"
    )]
    Forget(ForgetArgs),
    /// Delete stored data that no backup references (left by interrupted backups or forget)
    #[command(
        long_about = "Delete the chunks no backup references (left by interrupted backups or by forget), under an \
exclusive lock. On a repository under S3 Object Lock only those whose retention has passed go (every version); the \
others are listed with their date and the exit code is 13. --dry-run prints the plan and changes nothing."
    )]
    Prune(PruneArgs),
    /// Check a plan file (kmdr.yaml): every problem with its line and column
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Run the runbook's DR test: inventory, backup, failure, recovery, compare, report
    #[command(long_about = "Run the runbook's disaster-recovery test against the plan's targets, end to end:\n\n  \
1. inventory every layer the plan backs up (the under-cluster's etcd keyspace; the platform release's objects; every \
tenant of every datastore, key by key; with `kamaji:`, the tenants' Kamaji objects);\n  \
2. take a fresh backup of every layer;\n  \
3. cause the failure: the plan's `failure` steps (required for the under-cluster, the platform and volumes: kmdr never \
stops etcd, uninstalls a release or deletes volumes itself), or for the tenant layer the built-in wipe (every tenant's \
keys removed; with `kamaji:`, every TenantControlPlane and its Secrets deleted);\n  \
4. recover in layer order (the platform reinstalled by helm), each layer through its health gate (`health-check` steps \
and kmdr's own check);\n  \
5. compare the recovered state with the inventory: missing, extra and changed keys (or objects) per unit;\n  \
6. report per layer the measured RTO (failure to healthy) and RPO (age of the newest backup at the failure) against the \
targets, PASS or FAIL.\n\n\
ONLY RUN IT AGAINST A LAB OR A PLATFORM YOU MAY BREAK: step 3 destroys data. The report is written as JSON and \
Markdown into --report-dir and kept in the repository (reports/). Exit 0 when every drilled layer passes, 1 when one \
fails.\n\nExample:\n  kmdr drill --plan examples/lab.yaml --report-dir drills/")]
    Drill(DrillArgs),
    /// A disposable local lab to drill: `kmdr lab up`, `kmdr drill --lab`, `kmdr lab down`
    #[command(subcommand)]
    Lab(LabCommand),
    /// Per layer and tenant: the newest backup's age against the RPO target, the last drill; exit 1 when breached
    Status(StatusArgs),
    /// The runbook's monthly review, automated
    #[command(subcommand)]
    Runbook(RunbookCommand),
    /// Recovery monitoring on one screen: pods, TenantControlPlanes, DataStores, Clusters, Helm releases
    #[command(
        long_about = "The runbook's recovery monitoring in one screen, refreshed every --interval: pods that are \
not Running or Completed (grouped by namespace; a container waiting in CrashLoopBackOff counts as not running), every \
TenantControlPlane and its status.kubernetesResources.version.status, the DataStores, the Cluster API Clusters and \
their phase, and the newest revision of every Helm release (its sh.helm.release.v1 Secret).\n\n\
Healthy means: no such pod, every TCP Ready, every Cluster Provisioned, every release's newest revision deployed. \
On a terminal the screen is redrawn in place; otherwise a plain snapshot is printed each time it changes. -o json \
prints one snapshot per line (JSON Lines).\n\n\
--until-healthy exits 0 as soon as it is healthy. --timeout ends the watch: with --until-healthy and not healthy by \
then, exit 11. A Kubernetes API that does not answer is exit 6.\n\n\
Examples:\n  kmdr watch\n  kmdr watch --until-healthy --timeout 30m --interval 10s\n  kmdr watch --until-healthy -o json | tail -1"
    )]
    Watch(WatchArgs),
    /// Keep every layer within its RPO: scheduled full backups, delta capture, retention, metrics
    #[command(
        long_about = "Run continuously (the under cluster's Deployment, see deploy/): for every unit of the plan (the \
under-cluster's etcd, each tenant of each datastore, the platform release) take a full backup whenever the \
newest one is older than the layer's RPO (or --full-every), retrying failures with exponential backoff. The \
under-cluster's etcd and every tenant, whatever its datastore (etcd, PostgreSQL, MySQL/MariaDB, NATS), also \
get delta capture: an etcd Watch, a read of kine's table every 200ms, or a consumer of the tenant's NATS \
bucket, from the newest full backup's revision, writes every change into the repository within about \
--flush-every (1s), so a tenant restored with `kmdr restore tenant ... --at TIME|--revision R` loses at most \
the last seconds. With --keep-* rules, retention runs every --forget-every and removes delta segments no full \
backup can use.\n\nkmdr serve keeps no state outside the repository: after a restart (or kill -9) each \
capture resumes right after the newest delta segment, with no revision missing or repeated. SIGTERM: captures \
write what they hold, a full backup in flight gets --grace to finish or is abandoned uncommitted.\n\nSeveral \
replicas: pass --lease NAMESPACE/NAME (and the same plan) to each; the one holding the Lease runs the units, \
the others stand by (ready, kmdr_leader 0) and take over when it goes silent for --lease-duration, resuming \
from the repository like a restart. The Helm chart (deploy/helm/kmdr) runs two replicas on a Lease by default. \
With --shards N the replicas divide the units instead: one Lease per shard (NAME-shard-I), each replica holding \
its share (kmdr_shard_held{shard}), a dead replica's shards taken over by the others within two lease durations.\n\nMetrics \
(Prometheus text format) on --metrics-addr: /metrics (per layer and unit: \
kmdr_last_success_timestamp_seconds, kmdr_rpo_seconds, kmdr_rpo_target_seconds, kmdr_backup_duration_seconds, \
kmdr_backup_bytes, kmdr_backup_failures_total, kmdr_delta_lag_seconds, kmdr_delta_revision, ...), /healthz, \
/readyz (every etcd capture running), and / a status page for people (per layer and unit: newest backup, newest \
proven restorable, RPO against target with late units marked, delta lag and failures, the last drill; plain HTML, \
no script, no external asset).\n\nExamples:\n  kmdr serve --plan /etc/kmdr/kmdr.yaml\n  kmdr serve \
--plan kmdr.yaml --metrics-addr 0.0.0.0:9464 --keep-last 48 --keep-daily 14"
    )]
    Serve(ServeArgs),
    /// Print shell completions (bash, zsh, fish) generated from this command line
    #[command(
        after_help = "Install:\n  kmdr completions bash > /etc/bash_completion.d/kmdr        (or ~/.local/share/bash-completion/completions/kmdr)\n  \
kmdr completions zsh > \"${fpath[1]}/_kmdr\"                 (then restart zsh)\n  \
kmdr completions fish > ~/.config/fish/completions/kmdr.fish"
    )]
    Completions(CompletionsArgs),
    /// Write man pages, one per command and subcommand (kmdr.1, kmdr-backup-etcd.1, ...), into a directory
    #[command(
        after_help = "Example:\n  kmdr man --out /usr/local/share/man/man1 && man kmdr-backup\n  kmdr man --out /tmp/kmdr-man && man -l /tmp/kmdr-man/kmdr-serve.1"
    )]
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Exit 0 as soon as everything is healthy
    #[arg(long)]
    pub until_healthy: bool,
    /// Stop after this long (with --until-healthy: exit 11 if not healthy by then)
    #[arg(long, value_name = "D", value_parser = parse_duration_arg)]
    pub timeout: Option<std::time::Duration>,
    /// How often to look
    #[arg(long, value_name = "D", value_parser = parse_duration_arg, default_value = "5s")]
    pub interval: std::time::Duration,
    #[command(flatten)]
    pub kube: KubeArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The plan (kmdr.yaml): its layers, targets and repository
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
    /// Where to serve /metrics, /healthz and /readyz
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: std::net::SocketAddr,
    /// Write captured changes at least this often (e.g. 1s, 500ms)
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration_arg)]
    pub flush_every: std::time::Duration,
    /// Or as soon as this many MiB of changes are buffered
    #[arg(long, value_name = "MIB", default_value_t = 4)]
    pub flush_mib: usize,
    /// Full backups this often instead of at each layer's RPO (e.g. 1h)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub full_every: Option<std::time::Duration>,
    #[command(flatten)]
    pub keep: KeepArgs,
    /// How often retention runs (with a --keep-* rule)
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration_arg)]
    pub forget_every: std::time::Duration,
    /// On SIGTERM, how long a full backup in flight may take to finish
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_duration_arg)]
    pub grace: std::time::Duration,
    /// Prove each unit's newest backups restorable this often (as `kmdr verify --restore`, into scratch servers on
    /// 127.0.0.1, at a lower CPU priority); overrides the period of the plan's `verify:` block, or turns proofs on
    /// with its defaults (sample 1, concurrency 1, nice 10) (e.g. --verify-every 6h)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub verify_every: Option<std::time::Duration>,
    /// The etcd server binary for the scratch servers of restore proofs [default: etcd on PATH]
    #[arg(long, value_name = "PATH")]
    pub etcd: Option<PathBuf>,
    /// The helm that renders platform backups in restore proofs [default: helm on PATH]
    #[arg(long, value_name = "PATH")]
    pub helm: Option<PathBuf>,
    /// With --verify-every: the etcdutl that restores etcd snapshots
    #[arg(long, value_name = "PATH", env = "KMDR_ETCDUTL")]
    pub etcdutl: Option<PathBuf>,
    /// Run as one of several replicas: only the holder of this Lease (coordination.k8s.io/v1) runs the units;
    /// the others stand by and take over when it is not renewed (e.g. --lease kmdr/kmdr-serve)
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub lease: Option<String>,
    /// How long a standby waits for a silent leader before taking the Lease; the leader renews every third of it
    /// and stops working after two thirds without a renewal
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration_arg, requires = "lease")]
    pub lease_duration: std::time::Duration,
    /// This replica's name in the Lease (default: $POD_NAME, else the host name and pid)
    #[arg(long, value_name = "NAME", requires = "lease")]
    pub lease_identity: Option<String>,
    /// Divide the plan's units among the replicas: N Leases NAME-shard-0..N-1, each replica taking about N divided
    /// by the live replicas (each datastore's tenants stay together; --dry-run shows which unit is in which shard);
    /// a dead replica's shards are taken over within two --lease-duration. Every replica needs the same N
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024), requires = "lease")]
    pub shards: u32,
    /// The cluster that holds the Lease
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Compaction: once this many changes follow a unit's newest full backup, synthesise a new full backup from
    /// it and its delta segments (without reading the datastore), so that a restore to now replays at most about
    /// this many; 0: never by count (needs the full key)
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub compact_after_events: u64,
    /// Or once the delta segments after it hold this much (as stored; e.g. 256MiB, 1GiB); 0: never by size
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size_arg)]
    pub compact_after_bytes: u64,
    /// Or once the changes after it reach this percentage of its keys, and at least 10000: a restore to now merges
    /// them with the base, so this bounds its cost against a full restore whatever the unit's size; 0: never by share
    #[arg(long, value_name = "PERCENT", default_value_t = 25, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub compact_after_percent: u32,
    /// Print the units and schedule, then exit
    #[arg(long)]
    pub dry_run: bool,
}

/// A size in bytes: `1048576`, `512KiB`, `256MiB`, `1GiB`.
pub fn parse_size_arg(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a size (e.g. 0, 512KiB, 256MiB, 1GiB)");
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mul: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(mul).ok_or_else(bad)
}

/// `--tag KEY=VALUE`.
fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("tag {s:?} is not KEY=VALUE")),
    }
}

/// A duration like 500ms, 1s, 5m, 1h, 7d.
/// `500ms`, or what plans take: `90s`, `15m`, `1h30m`.
pub fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms
            .parse::<u64>()
            .map(std::time::Duration::from_millis)
            .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 1s, 5m, 1h)"));
    }
    kmdr_plan::parse::parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration (e.g. 500ms, 1s, 5m, 1h)"))
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// Back up every layer of this plan (kmdr.yaml) that names a source; for persistent-data `volumes:`,
    /// run each volume backup tool (CSI snapshots, Velero, Kasten K10), wait for it and record what it
    /// took (e.g. `kmdr backup --plan kmdr.yaml --layer persistent-data`; docs/volumes.md)
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Only this layer of the plan
    #[arg(long, requires = "plan", value_name = "LAYER")]
    pub layer: Option<LayerArg>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RestoreArgs {
    #[command(subcommand)]
    pub command: Option<RestoreCommand>,
    /// Restore the newest backups of this plan's layers, in layer order, each through its health gate
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Only this layer of the plan
    #[arg(long, requires = "plan", conflicts_with = "all", value_name = "LAYER")]
    pub layer: Option<LayerArg>,
    /// Every layer of the plan, in recovery order
    #[arg(long, requires = "plan")]
    pub all: bool,
    /// Print what would be restored where; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Replace what the targets hold (restoring into a live datastore, or over a data dir); never
    /// applies to volumes: an existing PVC is refused, kmdr does not delete volumes
    #[arg(long)]
    pub force: bool,
}

/// A runbook layer on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LayerArg {
    UnderCluster,
    Platform,
    TenantControlPlanes,
    PersistentData,
}

impl From<LayerArg> for kmdr_core::Layer {
    fn from(l: LayerArg) -> Self {
        match l {
            LayerArg::UnderCluster => kmdr_core::Layer::UnderCluster,
            LayerArg::Platform => kmdr_core::Layer::Platform,
            LayerArg::TenantControlPlanes => kmdr_core::Layer::TenantControlPlanes,
            LayerArg::PersistentData => kmdr_core::Layer::PersistentData,
        }
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The plan file (kmdr.yaml)
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum RunbookCommand {
    /// Check that the runbook still holds: targets achievable, a recent drill, reviews done, the plan in git
    #[command(
        long_about = "The runbook's monthly review: for each layer, whether its RTO is achievable (the last drill's \
measured RTO against the target) and its RPO (the interval between successive backups and the newest backup's age); \
whether a drill ran within the last quarter; whether every contact and credential was reviewed within its period; \
whether the plan file is tracked in git with no local changes. Each finding says what to do. Exit 1 when any fails."
    )]
    Check(RunbookCheckArgs),
}

#[derive(Debug, Args)]
pub struct RunbookCheckArgs {
    /// The plan file (kmdr.yaml)
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Check a plan file; print every problem as FILE:LINE:COLUMN: what to write instead
    Check(PlanCheckArgs),
}

#[derive(Debug, Args)]
pub struct PlanCheckArgs {
    /// The plan file (kmdr.yaml); see docs/plan.md and examples/kmdr.yaml
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The plan file (kmdr.yaml); required unless --lab
    #[arg(long, value_name = "FILE", required_unless_present = "lab", conflicts_with = "lab")]
    pub plan: Option<PathBuf>,
    /// Where to write the report as <time>-drill.json, .md and .html (with --lab: DIR/reports); -o json names the files
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub report_dir: PathBuf,
    /// Run without asking (the drill destroys the data it then recovers)
    #[arg(long)]
    pub yes: bool,
    /// Drill the local lab (see `kmdr lab up`; brought up first when it is not): no --plan or --yes needed
    #[arg(long)]
    pub lab: bool,
    /// The lab's directory, with --lab
    #[arg(long, value_name = "DIR", default_value = ".kmdr-lab")]
    pub dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Start the lab's servers on 127.0.0.1, seed them and write its plan (DIR/kmdr.yaml)
    #[command(long_about = "Start a disposable lab from the server binaries on PATH, on free ports of 127.0.0.1: \
an under-cluster etcd (started by the same shell line the plan's drill steps use, pid in DIR/uc.pid), a shared \
tenant etcd with --tenants tenants of --keys Kubernetes-shaped keys each, and when PostgreSQL (initdb, postgres, \
pg_isready) or MariaDB (mariadbd) is installed one kine tenant on each. When kube-apiserver and helm are built \
(scripts/build-go-tools.sh), also a Kubernetes API server (kubeconfig DIR/kube/kubeconfig) with the platform's Helm \
release kmetal-system/kmetal installed by helm and, with the projects' CRDs (KMDR_CRDS_DIR, scripts/fetch-crds.sh), \
a Kamaji DataStore and a Ready TenantControlPlane per shared-etcd tenant. Creates a repository in DIR/repo with the key \
DIR/kmdr.key (kept across runs) and writes the plan DIR/kmdr.yaml, which `kmdr plan check` accepts. What was \
started is recorded in DIR/lab.json. Running it again while the lab is up changes nothing.\n\n\
Then:\n  kmdr drill --lab\n  kmdr lab down")]
    Up(LabUpArgs),
    /// Show what the lab runs: processes, pids, ports, the plan
    Status(LabDirArgs),
    /// Stop the lab's processes (by their recorded pids) and remove DIR unless --keep
    Down(LabDownArgs),
}

#[derive(Debug, Args)]
pub struct LabDirArgs {
    /// The lab's directory
    #[arg(long, value_name = "DIR", default_value = ".kmdr-lab")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct LabUpArgs {
    #[command(flatten)]
    pub dir: LabDirArgs,
    /// Tenants on the shared tenant etcd
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub tenants: usize,
    /// Keys per tenant
    #[arg(long, default_value_t = 500, value_name = "K")]
    pub keys: usize,
}

#[derive(Debug, Args)]
pub struct LabDownArgs {
    #[command(flatten)]
    pub dir: LabDirArgs,
    /// Keep DIR (repository, key, reports); only stop the processes
    #[arg(long)]
    pub keep: bool,
}

mod backup;
mod backups;
mod keys;
mod restore;
pub use backup::*;
pub use backups::*;
pub use keys::{KeyAddArgs, KeyCommand, UpgradeArgs};
pub use restore::*;

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Create a new repository (and a new key file if --key-file does not exist)
    #[command(
        long_about = "Create a new, empty repository at --repo. If the --key-file does not exist, a new random key \
is written there (mode 0600): keep a copy of it somewhere safe and apart from the repository, because without it \
no backup can be read. An existing key file is used as it is (its content is the secret).\n\n\
--object-lock compliance|governance --retention DURATION (S3 only) makes a repository whose objects nobody can \
delete before their retention ends: the bucket must have versioning and Object Lock enabled (it is refused otherwise, \
with the command that enables them, and nothing is written). kmdr sets the bucket's default retention to the mode \
and period (whole days) when it has none, so that S3 locks every object kmdr writes at its PUT; a default of the same \
mode and at least the period is kept; another is refused. Needs the admin credentials (deploy/s3/admin-policy.json).\n\n\
Examples:\n  kmdr repo init\n  kmdr repo init --repo s3://backups/kmetal --object-lock compliance --retention 30d"
    )]
    Init(InitArgs),
    /// Show the repository's format, settings and size
    Info,
    /// Move the S3 Object Lock retention of everything still needed before it lapses
    #[command(long_about = "On a repository under S3 Object Lock (`repo init --object-lock`), give every object the \
repository still needs (config, keys, every manifest, every chunk a manifest references, delta segments, reports, \
restore proofs) whose retain-until date is less than half the retention period away a new date of now + the period \
(PutObjectRetention on its current version, in the repository's mode). Chunks no backup references are left to \
lapse, so that prune can remove them. Run it at least every quarter period (`kmdr serve` does, daily); it needs \
s3:PutObjectRetention, an admin permission (deploy/s3/admin-policy.json). --dry-run lists what it would extend.\n\n\
Example:\n  kmdr repo extend-locks --dry-run")]
    ExtendLocks(ExtendLocksArgs),
    /// Remove stale locks (left by killed processes), or all locks with --all
    Unlock(UnlockArgs),
    /// Move a format-1 repository to format 2 (write-only keys), keeping every backup
    #[command(
        long_about = "Move a repository of format 1 (one symmetric key) to format 2, whose objects are sealed to a public recipient key so that write-only agent keys (`kmdr key add --write-only`) can back up without being able to read. Every backup is kept and nothing is rewritten: the key file you pass gets a format-2 key (a new recipient key, the same chunk-naming key, so deduplication carries on, and the old key for the older objects) under the same secret, then the config says format 2, then the old key object is deleted. New objects are format 2; older ones stay readable with this key file. Other key files of the repository are listed: add their users again with `kmdr key add`. kmdr releases before format 2 cannot open the repository afterwards. --dry-run prints the plan.

Example:
  kmdr repo upgrade --dry-run && kmdr repo upgrade"
    )]
    Upgrade(UpgradeArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Average chunk size in KiB (min = avg/4, max = avg*4); fixed for the repository's life
    #[arg(long, default_value_t = 256, value_name = "KIB", hide = true)]
    pub chunk_avg_kib: u32,
    /// Repository format: 2 (sealed to a recipient key: write-only agent keys) or 1 (one symmetric key,
    /// for kmdr releases before format 2); `repo upgrade` moves 1 to 2
    #[arg(id = "repo_format", long = "format", default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=2), hide = true)]
    pub repo_format: u32,
    /// S3 only: keep every object under Object Lock in this mode (compliance: nobody can delete it early;
    /// governance: only principals allowed s3:BypassGovernanceRetention)
    #[arg(long, value_name = "MODE", value_parser = ["compliance", "governance"], requires = "retention")]
    pub object_lock: Option<String>,
    /// With --object-lock: how long each object stays locked from its write, in whole days (30d, 720h)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, requires = "object_lock")]
    pub retention: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct ExtendLocksArgs {
    /// List what would be extended; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Remove every lock, not only stale ones (only when you are sure nothing else runs)
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Backup id (or a unique prefix), or `latest` (the newest etcd backup)
    #[arg(value_name = "ID|latest", required_unless_present = "snapshot_file")]
    pub id: Option<String>,
    /// Read this plain etcd snapshot file instead of a backup (from `restore etcd --to-file` or `etcdctl snapshot save`)
    #[arg(long, value_name = "FILE", conflicts_with = "id")]
    pub snapshot_file: Option<std::path::PathBuf>,
    /// Only these kinds (repeat or comma-separate): tcp, datastore, cluster, kcp, helm, secret, configmap, PLURAL, PLURAL.GROUP
    #[arg(long, value_delimiter = ',', value_name = "KIND")]
    pub kind: Vec<String>,
    /// Print one object ready for `kubectl apply`: KIND and NS/NAME (NAME for cluster-scoped kinds)
    #[arg(long, num_args = 2, value_names = ["KIND", "NS/NAME"], conflicts_with = "kind")]
    pub get: Option<Vec<String>>,
    /// The API server's EncryptionConfiguration (its --encryption-provider-config), to decrypt Secrets encrypted at rest
    #[arg(long, value_name = "FILE")]
    pub encryption_config: Option<PathBuf>,
    /// The EncryptionConfiguration kept in this node-files backup (an id, or `latest`) instead of --encryption-config
    #[arg(long, value_name = "ID", conflicts_with = "encryption_config")]
    pub encryption_config_from: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing; pages there are replaced)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}
