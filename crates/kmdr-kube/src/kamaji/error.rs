//! What can go wrong with Kamaji tenants, and how each is classed.

use crate::client::KubeError;
use kmdr_core::{Classify, ErrorClass};
use kmdr_datastore::TenantError;

/// What can go wrong with Kamaji tenants. Every message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum TenantsError {
    /// Talking to Kubernetes failed.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// The tenant datastore failed.
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] kmdr_repo::Error),
    /// A named TCP does not exist.
    #[error("no TenantControlPlane {tcp} at {url}{}", listed(.found))]
    TcpNotFound { tcp: String, url: String, found: Vec<String> },
    /// `--all` found none.
    #[error(
        "no TenantControlPlane at {url}: nothing to back up. Check --kubeconfig/--context (`kubectl get tcp -A` lists them)"
    )]
    NoTenants { url: String },
    /// A TCP Kamaji never set up: no schema to back up.
    #[error("TenantControlPlane {tcp} has no {field} in its spec nor in status.storage.setup: Kamaji has not set it up yet; wait until `kubectl get tcp -n {ns}` shows it Ready and back up again", ns = .tcp.split('/').next().unwrap_or_default())]
    NotSetUp { tcp: String, field: String },
    /// The DataStore cannot be used to reach the data.
    #[error("DataStore {datastore}: {detail}")]
    DataStore { datastore: String, detail: String },
    /// The restore would apply over a TCP that uses another schema.
    #[error(
        "refusing to restore TenantControlPlane {tcp}: the one in the cluster uses dataStoreSchema {existing:?}, the backup {backup:?}; its schema is immutable, so applying over it would leave the restored data unused. Nothing was written. Restore where no such TCP exists, or only the data with `kmdr restore tenant`; kmdr never deletes a TCP (that drops its data)"
    )]
    SchemaMismatch { tcp: String, existing: String, backup: String },
    /// The cluster's Kamaji predates `spec.dataStoreSchema` and would name the
    /// tenant's schema otherwise than the backup did.
    #[error(
        "refusing to restore TenantControlPlane {tcp}: the TenantControlPlane CRD at {url} has no spec.dataStoreSchema, so its Kamaji names the schema itself ({derived:?}), not as the backup's {backup:?}: the tenant would get a new empty schema beside its data. Nothing was written. Upgrade Kamaji there to a release whose TenantControlPlane has spec.dataStoreSchema, then restore again"
    )]
    KamajiWithoutSchemaField { tcp: String, url: String, derived: String, backup: String },
    /// `--manifests-only` where the datastore holds no data of the tenant.
    #[error(
        "refusing to restore only the manifests of TenantControlPlane {tcp}: schema {schema} holds no keys in {datastore}, so its API server would start empty (a blank cluster, its nodes orphaned). Nothing was written. Drop --manifests-only to write the backup's {keys} keys first"
    )]
    NoDataToKeep { tcp: String, schema: String, datastore: String, keys: u64 },
    /// A TCP did not become Ready in time.
    #[error(
        "TenantControlPlanes not Ready after {timeout}: {pending}. The manifests and data are restored; check `kubectl describe tcp` and the Kamaji controller's log, then `kmdr watch --until-healthy`"
    )]
    NotReady { timeout: String, pending: String },
    /// `--only` names a tenant the backup lacks.
    #[error("backup {id} holds no tenant {only}: it holds {have}")]
    NotInBackup { id: String, only: String, have: String },
    /// The backup is not a tenants backup.
    #[error("backup {id} is not a tenants backup (kind {kind}): pick one listed by `kmdr backups list --kind tenants`")]
    WrongKind { id: String, kind: String },
    /// A `NS/NAME` argument is malformed.
    #[error("{0:?} is not NAMESPACE/NAME (e.g. tenants/tenant-a)")]
    BadRef(String),
    /// A backed-up manifest cannot be read back.
    #[error("backup file {file} is not a manifest: {detail}")]
    BadFile { file: String, detail: String },
    /// Temporary certificate files could not be written.
    #[error("cannot write the DataStore's certificates to a temporary directory: {0}; check $TMPDIR")]
    Local(std::io::Error),
}

fn listed(found: &[String]) -> String {
    if found.is_empty() {
        "; there is none. Check --kubeconfig/--context".into()
    } else {
        format!(". TenantControlPlanes there: {}", found.join(", "))
    }
}

impl Classify for TenantsError {
    fn class(&self) -> ErrorClass {
        match self {
            TenantsError::Kube(k) => k.class(),
            TenantsError::Tenant(t) => t.class(),
            TenantsError::Repo(r) => r.class(),
            TenantsError::TcpNotFound { .. }
            | TenantsError::NoTenants { .. }
            | TenantsError::NotInBackup { .. }
            | TenantsError::WrongKind { .. } => ErrorClass::NotFound,
            TenantsError::SchemaMismatch { .. }
            | TenantsError::KamajiWithoutSchemaField { .. }
            | TenantsError::NoDataToKeep { .. }
            | TenantsError::Local(_) => ErrorClass::Refused,
            TenantsError::NotReady { .. } => ErrorClass::Timeout,
            TenantsError::BadRef(_) => ErrorClass::Usage,
            TenantsError::BadFile { .. } => ErrorClass::Damaged,
            TenantsError::NotSetUp { .. } | TenantsError::DataStore { .. } => ErrorClass::Source,
        }
    }
}
