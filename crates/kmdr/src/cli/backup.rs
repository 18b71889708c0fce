//! `kmdr backup ...`: one command per layer, and the connection flags
//! (Kubernetes, datastores, etcd TLS) that restores share.

use super::*;

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Snapshot the under-cluster etcd (Maintenance.Snapshot) into the repository
    #[command(
        long_about = "Stream an etcd snapshot (Maintenance.Snapshot) from the first endpoint that answers straight \
into the repository: chunked, deduplicated, compressed and encrypted, in constant memory, never written to local \
disk. etcd's own sha256 of the snapshot is checked as it streams. Prints the backup id (-o json: the manifest)."
    )]
    Etcd(BackupEtcdArgs),
    /// Back up one tenant's control-plane data (or every tenant) from its Kamaji datastore
    #[command(
        long_about = "Copy one tenant's control-plane data out of a shared Kamaji datastore, without touching any \
other tenant, into one backup per tenant. The --datastore URL picks the driver:\n\n  \
etcd://host:port[,host:port]   etcds://... with --cacert/--cert/--key\n      the tenant is every key under /SCHEMA/\n  \
postgres://user:pass@host:port   mysql://user:pass@host:port\n      the kine table of database SCHEMA\n  \
nats://[user:pass@]host:port\n      the JetStream KV bucket SCHEMA (kine's encoded keys and values are decoded)\n\n\
Each copy is consistent at one point: one etcd revision (shared by all tenants with --all), one SQL transaction \
snapshot, one NATS stream sequence. The backup records the driver, schema, revision, key count, bytes and a hash of \
the logical key/value set, equal whatever driver it is later restored into.\n\n\
Credentials: in the URL, or KMDR_DATASTORE_USER / KMDR_DATASTORE_PASSWORD, or --password-file. They never appear in \
output, logs or backups.\n\nExamples:\n  kmdr backup tenant --datastore etcds://10.0.0.5:2379 --cacert ca.crt --cert c.crt --key c.key --all\n  \
KMDR_DATASTORE_PASSWORD=... kmdr backup tenant --datastore postgres://kamaji@db:5432 --schema default_tenant1"
    )]
    Tenant(BackupTenantArgs),
    /// Back up the platform layer: the umbrella chart's Helm release (values overlay) and listed Secrets
    #[command(
        long_about = "Capture what the runbook's `helm install kmetal CHART --namespace NS --values VALUES` needs, \
from the cluster itself: the newest deployed revision of the Helm release (its release Secret \
sh.helm.release.v1.NAME.vN), decoded to the chart name, version, appVersion, revision, status, deploy times and the \
user-supplied values overlay (what `helm get values` prints), stored as values.yaml with the whole release as \
release.json; and each --secret as a clean Secret manifest. When no revision is deployed the newest one is taken \
and a warning says so. The manifest never holds a secret value.\n\n\
The cluster is found as kubectl finds it: --kubeconfig, --context, KUBECONFIG, ~/.kube/config, or the in-cluster \
service account. It needs get/list on Secrets in the release namespace (and get on each --secret).\n\n\
Example:\n  kmdr backup platform --release kmetal -n kmetal-system --secret kmetal-system/registry-creds"
    )]
    Platform(BackupPlatformArgs),
    /// Back up Kamaji tenants end to end: datastore data, TenantControlPlane, DataStore, KamajiControlPlane, Cluster, Secrets
    #[command(
        long_about = "Back up each selected TenantControlPlane (kamaji.clastix.io/v1alpha1) end to end, in one backup:\n\n  \
- its datastore data (the tenant's prefix, database or bucket), read through the DataStore the TCP uses: driver and \
endpoints from the DataStore's spec, the user, password, CA and client certificate from the Secrets (or content) its \
basicAuth and tlsConfig name, the schema from the TCP;\n  \
- the manifests: the DataStore, the TCP, its owning KamajiControlPlane and Cluster API Cluster, and the tenant's \
Secrets (<tcp>-* in its namespace: CAs, certificates, datastore config, kubeconfigs), cleaned of status and \
server-set fields and of ownerReferences.\n\n\
Every TCP manifest carries spec.dataStoreSchema and spec.dataStoreUsername, taken from status.storage.setup when \
the spec lacks them: a TCP re-applied without them gets a new, EMPTY schema.\n\n\
--datastore-endpoint DS=HOST:PORT reaches a DataStore at another address than its spec.endpoints (when kmdr runs \
outside the cluster network, e.g. through a port-forward).\n\n\
Examples:\n  kmdr backup tenants --all\n  kmdr backup tenants tenants/tenant-a tenants/tenant-b --context under-1\n  \
kmdr backup tenants --all --datastore-endpoint default=127.0.0.1:2379"
    )]
    Tenants(BackupTenantsArgs),
    /// Back up the under-cluster's identity: kubeadm PKI, kubeadm config, EncryptionConfiguration
    #[command(
        long_about = "Copy the files a rebuilt under-cluster needs before `kubeadm init` so that a restored etcd \
still belongs to it: the cluster CA, service-account key, front-proxy CA and etcd CA of /etc/kubernetes/pki, the \
kubeadm config (/etc/kubernetes/kubeadm-config.yaml) and, with --encryption-config, the API server's \
EncryptionConfiguration (without it, Secrets encrypted at rest in a restored etcd are lost for good). Modes and \
ownership are kept. The manifest records each certificate's subject, sha256 fingerprint and expiry and the \
encryption keys' providers and names, never key material; the files are encrypted like every backup.\n\n\
A path that cannot be read, or is a socket, device or pipe, is refused in one line and nothing is stored.\n\n\
Examples (on a control-plane node, as root):\n  kmdr backup node-files --encryption-config /etc/kubernetes/enc/enc.yaml\n  \
kmdr backup node-files --leaf-certs --path /etc/kubernetes/admin.conf"
    )]
    NodeFiles(BackupNodeFilesArgs),
}

#[derive(Debug, Args)]
pub struct BackupTenantsArgs {
    /// TenantControlPlanes as NAMESPACE/NAME
    #[arg(value_name = "NS/NAME", required_unless_present = "all", conflicts_with = "all")]
    pub tenants: Vec<String>,
    /// Every TenantControlPlane in the cluster
    #[arg(long)]
    pub all: bool,
    /// Reach DataStore DS at HOST:PORT[,HOST:PORT] instead of its spec.endpoints (repeatable)
    #[arg(long = "datastore-endpoint", value_name = "DS=HOST:PORT", value_parser = parse_tag)]
    pub endpoints: Vec<(String, String)>,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Label the backup (repeatable): --tag env=prod
    #[arg(long = "tag", value_name = "K=V", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
}

/// How to reach Kubernetes, as kubectl's flags say it.
#[derive(Debug, Args)]
pub struct KubeArgs {
    /// kubeconfig file (default: KUBECONFIG, ~/.kube/config, else in-cluster)
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context (default: its current context)
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

#[derive(Debug, Args)]
pub struct BackupPlatformArgs {
    /// The Helm release of the umbrella chart (`helm list -A` shows it)
    #[arg(long, value_name = "NAME")]
    pub release: String,
    /// The release namespace
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: String,
    /// Also copy this Secret (repeatable): --secret kmetal-system/registry-creds
    #[arg(long = "secret", value_name = "NS/NAME")]
    pub secrets: Vec<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Label the backup (repeatable): --tag env=prod
    #[arg(long = "tag", value_name = "K=V", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct BackupNodeFilesArgs {
    /// A file or directory to take instead of the kubeadm defaults (repeatable; absolute, as on the node)
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
    /// The API server's EncryptionConfiguration (its --encryption-provider-config)
    #[arg(long, value_name = "FILE")]
    pub encryption_config: Option<String>,
    /// Also the PKI's leaf certificates and keys (all of /etc/kubernetes/pki)
    #[arg(long)]
    pub leaf_certs: bool,
    /// Read the paths under this directory instead of / (a node's disk mounted elsewhere)
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Label the backup (repeatable): --tag env=prod
    #[arg(long = "tag", value_name = "K=V", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct RestoreNodeFilesArgs {
    /// The backup id, or `latest`
    pub id: String,
    /// Where the node's / is (`/` on the node itself)
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Replace files that differ from the backup
    #[arg(long)]
    pub force: bool,
    /// Print the plan; write nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DatastoreArgs {
    /// The Kamaji datastore: etcd://, etcds://, postgres://, mysql:// or nats:// URL
    #[arg(long, env = "KMDR_DATASTORE", value_name = "URL")]
    pub datastore: String,
    #[command(flatten)]
    pub tls: EtcdTlsArgs,
    /// Datastore user when the URL has none
    #[arg(long, env = "KMDR_DATASTORE_USER", value_name = "USER")]
    pub user: Option<String>,
    /// File holding the datastore password (default: KMDR_DATASTORE_PASSWORD)
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackupTenantArgs {
    #[command(flatten)]
    pub datastore: DatastoreArgs,
    /// The tenant: etcd prefix /SCHEMA/, database SCHEMA, or bucket SCHEMA (Kamaji's spec.dataStoreSchema)
    #[arg(long, required_unless_present = "all", conflicts_with = "all")]
    pub schema: Option<String>,
    /// Every tenant found in the datastore, one backup each
    #[arg(long)]
    pub all: bool,
    /// Label the backups (repeatable): --tag env=prod
    #[arg(long = "tag", value_name = "K=V", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct EtcdTlsArgs {
    /// CA bundle to verify the etcd server (e.g. /etc/kubernetes/pki/etcd/ca.crt)
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (e.g. /etc/kubernetes/pki/etcd/healthcheck-client.crt)
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Client key for --cert
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackupEtcdArgs {
    /// etcd endpoints, comma-separated (host:port, http://..., https://...)
    #[arg(long, env = "ETCDCTL_ENDPOINTS", value_delimiter = ',', required = true, value_name = "URL,...")]
    pub endpoints: Vec<String>,
    #[command(flatten)]
    pub tls: EtcdTlsArgs,
    /// Label the backup (repeatable): --tag env=prod
    #[arg(long = "tag", value_name = "K=V", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    /// The cluster CA the API server's tokens and client certificates chain to (kubeadm: /etc/kubernetes/pki/ca.crt):
    /// its fingerprint is recorded, so that a restore names the node-files backup it needs.
    /// Without this and --encryption-config: what the newest node-files backup holds
    #[arg(long, value_name = "FILE")]
    pub cluster_ca: Option<String>,
    /// The API server's EncryptionConfiguration: its keys' names and fingerprints are recorded (never the keys)
    #[arg(long, value_name = "FILE")]
    pub encryption_config: Option<String>,
}
