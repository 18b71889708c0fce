//! Exit codes. They are part of the interface: scripts and the drill runner
//! branch on them. Keep `EXIT_CODES_HELP`, README and docs/design.md in step.

use kmdr_datastore::TenantError;
use kmdr_datastore::records::RecordError;
use kmdr_etcd::EtcdError;
use kmdr_kube::client::KubeError;
use kmdr_kube::health::WaitError;
use kmdr_kube::inspect::InspectError;
use kmdr_kube::kamaji::TenantsError;
use kmdr_kube::platform::PlatformError;
use kmdr_repo::Error as RepoError;
use kmdr_repo::point::PointError;
use kmdr_store::StoreError;

pub const OK: i32 = 0;
/// A check found problems (verify found damage).
pub const CHECK_FAILED: i32 = 1;
// 2 is clap's usage error.
pub const REPOSITORY: i32 = 3;
pub const KEY: i32 = 4;
pub const NOT_FOUND: i32 = 5;
pub const SOURCE: i32 = 6;
pub const DAMAGED: i32 = 7;
pub const REFUSED: i32 = 8;
pub const STORAGE: i32 = 9;
pub const OTHER: i32 = 10;
/// A wait ran out: TenantControlPlanes not Ready, pods not Running, not
/// healthy, a volume backup tool still in progress past its timeout.
pub const TIMEOUT: i32 = 11;
/// The delta chain has a gap: a point-in-time restore cannot reach its point.
pub const CHAIN_GAP: i32 = 12;

/// Shown at the end of `kmdr --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  a check failed: verify found damaged backups, a drill failed, plan check found problems
  2  usage error (unknown flag, missing argument)
  3  repository problem: none at --repo, already initialized, or locked
  4  key problem: no key file, unreadable, or not this repository's key; inspect: a Secret is encrypted
     at rest and --encryption-config is missing, lacks its key, holds a key that does not decrypt it, or the
     provider is KMS
  5  not found: unknown or ambiguous backup id, unknown or empty tenant schema,
     unknown Helm release or Secret, an object `inspect --get` cannot find, a backup of the wrong kind
  6  source problem: etcd, a tenant datastore or the Kubernetes API unreachable, credentials refused,
     TLS failure, snapshot failed its checksum, a tenant restore stopped part way,
     the volume backup tool reported failure (Velero PartiallyFailed/Failed, K10 Failed)
  7  damaged data: a stored object failed its checks, or a snapshot inspect cannot read; nothing was restored
  8  refused or local target problem: data dir or tenant not empty (use --force), file exists,
     restore tool (etcdutl, helm, kubectl) missing, cannot write the restore target (e.g. its disk is full),
     a TenantControlPlane exists with another dataStoreSchema (restore tenants),
     volume backup tool not installed (its CRD is missing), a PVC to restore already exists
  9  storage failure: disk full, permission denied, object store unreachable
 10  any other error
 11  timed out waiting: TenantControlPlanes not Ready, pods not Running/Completed, watch --until-healthy,
     a volume backup tool still in progress (a VolumeSnapshot not ready, a PVC not Bound) past its timeout
 12  the delta chain has a gap: no segment covers the revisions named; nothing was restored";

fn repo_code(e: &RepoError) -> i32 {
    match e {
        RepoError::NotARepository { .. }
        | RepoError::AlreadyInitialized { .. }
        | RepoError::Locked { .. }
        | RepoError::UnsupportedFormat { .. } => REPOSITORY,
        RepoError::NoKey | RepoError::KeyFile { .. } | RepoError::WrongKey { .. } => KEY,
        RepoError::BackupNotFound { .. } | RepoError::AmbiguousId { .. } => NOT_FOUND,
        RepoError::Damaged { .. } => DAMAGED,
        RepoError::Store(s) => store_code(s),
        RepoError::Source(io) => match io.get_ref().and_then(|r| r.downcast_ref::<EtcdError>()) {
            Some(e) => etcd_code(e),
            None => SOURCE,
        },
        RepoError::Destination(_) => REFUSED,
    }
}

fn store_code(e: &StoreError) -> i32 {
    match e {
        StoreError::Config(_) => REPOSITORY,
        _ => STORAGE,
    }
}

fn etcd_code(e: &EtcdError) -> i32 {
    match e {
        EtcdError::Repo(r) => repo_code(r),
        EtcdError::Point(p) => point_code(p),
        EtcdError::NoEtcdServer { .. } => REFUSED,
        EtcdError::DataDirNotEmpty { .. } | EtcdError::NoRestoreTool { .. } | EtcdError::Local { .. } => REFUSED,
        EtcdError::WrongKind { .. } => NOT_FOUND,
        EtcdError::ToolFailed { .. } => OTHER,
        _ => SOURCE,
    }
}

fn point_code(e: &PointError) -> i32 {
    match e {
        PointError::NoBackupBefore { .. } => NOT_FOUND,
        PointError::ChainGap(_) => CHAIN_GAP,
        PointError::Repo(r) => repo_code(r),
    }
}

fn tenant_code(e: &TenantError) -> i32 {
    match e {
        TenantError::BadUrl(_) => 2,
        TenantError::UnknownSchema { .. } | TenantError::EmptySchema { .. } | TenantError::WrongKind { .. } => {
            NOT_FOUND
        }
        TenantError::TargetNotEmpty { .. } => REFUSED,
        TenantError::Point(p) => point_code(p),
        TenantError::Records(RecordError::Damaged(_)) => DAMAGED,
        TenantError::Interrupted { source, .. } | TenantError::Repo(source) => repo_code(source),
        _ => SOURCE,
    }
}

fn inspect_code(e: &InspectError) -> i32 {
    match e {
        InspectError::Bolt(_) | InspectError::Undecodable { .. } => DAMAGED,
        InspectError::Encryption(_) => KEY,
        InspectError::BadKind(_) | InspectError::BadName { .. } => 2,
        InspectError::NotFound { .. } => NOT_FOUND,
        InspectError::Unsupported { .. } => OTHER,
        InspectError::Local { .. } => REFUSED,
        InspectError::Etcd(x) => etcd_code(x),
    }
}

fn kube_code(e: &KubeError) -> i32 {
    match e {
        KubeError::NotFound { .. } => NOT_FOUND,
        // Unreachable, refused credentials, bad kubeconfig, other API errors.
        _ => SOURCE,
    }
}

fn platform_code(e: &PlatformError) -> i32 {
    match e {
        PlatformError::Kube(k) => kube_code(k),
        PlatformError::ReleaseNotFound { .. } | PlatformError::WrongKind { .. } => NOT_FOUND,
        PlatformError::BadSecretRef(_) => 2,
        PlatformError::BadRelease { .. } => SOURCE,
        PlatformError::ToolMissing { .. } | PlatformError::Local { .. } => REFUSED,
        PlatformError::ToolFailed { .. } => OTHER,
        PlatformError::Repo(r) => repo_code(r),
    }
}

fn tenants_code(e: &TenantsError) -> i32 {
    match e {
        TenantsError::Kube(k) => kube_code(k),
        TenantsError::Tenant(t) => tenant_code(t),
        TenantsError::Repo(r) => repo_code(r),
        TenantsError::TcpNotFound { .. }
        | TenantsError::NoTenants { .. }
        | TenantsError::NotInBackup { .. }
        | TenantsError::WrongKind { .. } => NOT_FOUND,
        TenantsError::SchemaMismatch { .. } | TenantsError::NoDataToKeep { .. } | TenantsError::Local(_) => REFUSED,
        TenantsError::NotReady { .. } => TIMEOUT,
        TenantsError::BadRef(_) => 2,
        TenantsError::BadFile { .. } => DAMAGED,
        TenantsError::NotSetUp { .. } | TenantsError::DataStore { .. } => SOURCE,
    }
}

/// The exit code of a failed persistent-data unit.
pub fn volume_code(c: kmdr_plan::exec::FailureClass) -> i32 {
    use kmdr_plan::exec::FailureClass as F;
    match c {
        F::NotInstalled | F::Refused => REFUSED,
        F::TimedOut => TIMEOUT,
        F::ToolFailed | F::Other => SOURCE,
        F::NotFound => NOT_FOUND,
    }
}

/// The exit code for an error: the first cause kmdr knows decides.
pub fn code_for(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        if let Some(x) = cause.downcast_ref::<TenantsError>() {
            return tenants_code(x);
        }
        if let Some(x) = cause.downcast_ref::<WaitError>() {
            return match x {
                WaitError::Kube(k) => kube_code(k),
                WaitError::Pods(_) => TIMEOUT,
            };
        }
        if cause.is::<crate::commands::NotHealthy>() {
            return TIMEOUT;
        }
        if let Some(x) = cause.downcast_ref::<crate::commands::VolumeFailure>() {
            return volume_code(x.0);
        }
        if let Some(x) = cause.downcast_ref::<InspectError>() {
            return inspect_code(x);
        }
        if cause.is::<kmdr_kube::inspect::encryption::EncryptionError>() {
            return KEY;
        }
        if let Some(x) = cause.downcast_ref::<TenantError>() {
            return tenant_code(x);
        }
        if let Some(x) = cause.downcast_ref::<PointError>() {
            return point_code(x);
        }
        if cause.is::<kmdr_repo::ChainGap>() {
            return CHAIN_GAP;
        }
        if let Some(x) = cause.downcast_ref::<PlatformError>() {
            return platform_code(x);
        }
        if let Some(x) = cause.downcast_ref::<KubeError>() {
            return kube_code(x);
        }
        if let Some(x) = cause.downcast_ref::<EtcdError>() {
            return etcd_code(x);
        }
        if let Some(x) = cause.downcast_ref::<RepoError>() {
            return repo_code(x);
        }
        if let Some(x) = cause.downcast_ref::<StoreError>() {
            return store_code(x);
        }
        if cause.is::<crate::commands::UsageError>() || cause.is::<crate::commands::PlanInvalid>() {
            return 2;
        }
        if let Some(kmdr_plan::drill::DrillError::NotDrillable(_)) = cause.downcast_ref() {
            return 2;
        }
    }
    OTHER
}

/// The whole cause chain on one line, without repeating a cause a message already contains.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut s = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if s.contains(&c) {
            continue;
        }
        if !s.is_empty() {
            s.push_str(": ");
        }
        s.push_str(&c);
    }
    s.replace('\n', " ")
}
