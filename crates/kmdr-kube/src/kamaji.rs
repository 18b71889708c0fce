//! Kamaji tenants end to end: `kmdr backup tenants` / `kmdr restore tenants`.
//!
//! The runbook brings a tenant back with `kubectl apply -f /backup/tenants/`,
//! which hides three ways to lose it, each guarded here:
//!
//! * a TenantControlPlane applied without `spec.dataStoreSchema` /
//!   `spec.dataStoreUsername` is defaulted by Kamaji's webhook to a NEW schema
//!   (its new UID): an empty control plane beside the real data. kmdr writes
//!   both into every backed-up TCP, from `status.storage.setup.schema/.user`
//!   when the spec lacks them, and refuses to apply over an existing TCP
//!   whose schema differs;
//!   A Kamaji whose TenantControlPlane CRD has no `spec.dataStoreSchema`
//!   (v1.0.0 and before) refuses both fields and names the schema itself,
//!   `NS_NAME` with `-` made `_`: kmdr reads the CRD, applies the TCP without
//!   them when that is the backed-up schema, and refuses otherwise;
//! * deleting a TCP drops its database or prefix: kmdr never deletes;
//! * a tenant restored without its CA Secret (`<tcp>-ca`) gets a new CA and
//!   every worker's certificate stops being trusted: the tenant's Secrets are
//!   applied before its TCP.
//!
//! Two more that `kubectl apply` of a plain `kubectl get -o yaml` would hit:
//! ownerReferences carry the owners' UIDs, which a restore changes, and the
//! garbage collector deletes objects whose owner UID is gone; kmdr drops them
//! (the owning controllers set them again). And the data goes in before any
//! manifest, so Kamaji never starts an API server on an empty schema.
//!
//! Field names follow Kamaji's `api/v1alpha1` (datastore_types.go,
//! tenantcontrolplane_types.go, tenantcontrolplane_status.go).

use crate::client::{KubeClient, KubeError, NAMESPACE, ResourceKind, SECRET, meta_name};
use crate::platform::{to_yaml, values_from_yaml};
use base64::Engine;
use kmdr_core::TlsFiles;
use kmdr_core::{Classify, ErrorClass};
use kmdr_core::{KamajiDataStoreInfo, KamajiTenantInfo, KamajiTenantsInfo, Layer, Manifest, SourceInfo};
use kmdr_datastore::{self as tenant, AnyTenants, DatastoreUrl, Driver, TenantError, TenantStore};
use kmdr_repo::backuper::ManifestDraft;
use kmdr_repo::restorer::{FileCheck, restore_file};
use kmdr_repo::{BackupSession, Progress, Repository};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The backup kind of tenants backups.
pub const KIND: &str = "tenants";

pub const TENANT_CONTROL_PLANE: ResourceKind = ResourceKind {
    api_version: "kamaji.clastix.io/v1alpha1",
    kind: "TenantControlPlane",
    plural: "tenantcontrolplanes",
    namespaced: true,
};
pub const DATA_STORE: ResourceKind = ResourceKind {
    api_version: "kamaji.clastix.io/v1alpha1",
    kind: "DataStore",
    plural: "datastores",
    namespaced: false,
};
pub const KAMAJI_CONTROL_PLANE: ResourceKind = ResourceKind {
    api_version: "controlplane.cluster.x-k8s.io/v1alpha1",
    kind: "KamajiControlPlane",
    plural: "kamajicontrolplanes",
    namespaced: true,
};
/// The CustomResourceDefinition of TenantControlPlanes, read to learn
/// whether the Kamaji there knows `spec.dataStoreSchema`.
pub const CUSTOM_RESOURCE_DEFINITION: ResourceKind = ResourceKind {
    api_version: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    plural: "customresourcedefinitions",
    namespaced: false,
};
pub const CAPI_CLUSTER: ResourceKind =
    ResourceKind { api_version: "cluster.x-k8s.io/v1beta1", kind: "Cluster", plural: "clusters", namespaced: true };

/// The label Cluster API puts on the objects of a cluster.
pub const CAPI_CLUSTER_LABEL: &str = "cluster.x-k8s.io/cluster-name";
/// `status.kubernetesResources.version.status` of a TCP that serves.
pub const READY: &str = "Ready";

/// Files of one tenant inside a tenants backup, under `tenants/NS/NAME/`.
pub const RECORDS: &str = "records";
pub const TCP_FILE: &str = "tenantcontrolplane.yaml";
pub const KCP_FILE: &str = "kamajicontrolplane.yaml";
pub const CLUSTER_FILE: &str = "cluster.yaml";
pub const SECRETS_DIR: &str = "secrets";
/// The DataStore manifest, under `datastores/DS/`.
pub const DATASTORE_FILE: &str = "datastore.yaml";

/// Metadata a server sets, never restored.
const SERVER_FIELDS: &[&str] = &[
    "uid",
    "resourceVersion",
    "managedFields",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
];
use crate::platform::DROPPED_ANNOTATIONS;

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

/// A TenantControlPlane named as `NS/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TcpRef {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for TcpRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl std::str::FromStr for TcpRef {
    type Err = TenantsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = |p: &str| {
            !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        };
        match s.split_once('/') {
            Some((ns, name)) if ok(ns) && ok(name) && !ns.contains('.') => {
                Ok(TcpRef { namespace: ns.into(), name: name.into() })
            }
            _ => Err(TenantsError::BadRef(s.into())),
        }
    }
}

/// The directory of tenant `ns/name` inside a backup.
pub fn tenant_dir(namespace: &str, name: &str) -> String {
    format!("tenants/{namespace}/{name}")
}

fn datastore_dir(name: &str) -> String {
    format!("datastores/{name}")
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

/// A manifest fit to apply: no status, no server-set metadata, no
/// ownerReferences (their UIDs die with the cluster), no kubectl copy of the
/// last applied object.
pub fn clean_manifest(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(map) = o.as_object_mut() {
        map.remove("status");
    }
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in SERVER_FIELDS {
            meta.remove(*f);
        }
        if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            for a in DROPPED_ANNOTATIONS {
                ann.remove(*a);
            }
            if ann.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    o
}

/// `obj` with `apiVersion` and `kind` of `resource` where it has none: the
/// API server leaves them out of a list's items, and an apply needs them.
pub fn with_type(mut obj: Value, resource: &ResourceKind) -> Value {
    if let Some(map) = obj.as_object_mut() {
        for (field, value) in [("apiVersion", resource.api_version), ("kind", resource.kind)] {
            if map.get(field).and_then(Value::as_str).is_none_or(str::is_empty) {
                map.insert(field.into(), json!(value));
            }
        }
    }
    obj
}

/// The schema a TCP in the cluster uses: its spec, else what Kamaji set up
/// (status.storage.setup.schema), else its UID (Kamaji's default for new TCPs).
pub fn effective_schema(tcp: &Value) -> Option<String> {
    effective_schema_with(tcp, SchemaField::Declared)
}

/// [`effective_schema`] where the cluster's CRD says `field`: a Kamaji whose
/// TenantControlPlane has no `spec.dataStoreSchema` names a schema it has not
/// set up yet [`kamaji_derived_schema`], not after the UID.
pub fn effective_schema_with(tcp: &Value, field: SchemaField) -> Option<String> {
    let set = str_at(tcp, &["spec", "dataStoreSchema"])
        .or_else(|| str_at(tcp, &["status", "storage", "setup", "schema"]))
        .map(str::to_string);
    match field {
        SchemaField::Absent => set.or_else(|| {
            let (ns, name) = meta_name(tcp);
            Some(kamaji_derived_schema(&ns, &name))
        }),
        SchemaField::Declared | SchemaField::Unknown => {
            set.or_else(|| str_at(tcp, &["metadata", "uid"]).map(str::to_string))
        }
    }
}

/// Whether the cluster's TenantControlPlane CRD declares `spec.dataStoreSchema`
/// (and with it `spec.dataStoreUsername`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchemaField {
    /// Declared in the served version's schema: kmdr sets both fields.
    Declared,
    /// The served version's schema has no such field (Kamaji before it was
    /// added, e.g. v1.0.0): the server refuses an object that carries it.
    Absent,
    /// The CRD could not be read (not served, not allowed): kmdr sets both
    /// fields, as it always did.
    Unknown,
}

/// What the `v1alpha1` version of a TenantControlPlane CRD (`crd`, as the
/// API serves it) says of `spec.dataStoreSchema`.
pub fn schema_field_of(crd: &Value) -> SchemaField {
    let version = TENANT_CONTROL_PLANE.api_version.rsplit('/').next().unwrap_or_default();
    let Some(v) = crd["spec"]["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == version && v["served"] != false))
    else {
        return SchemaField::Unknown;
    };
    let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"];
    if spec["x-kubernetes-preserve-unknown-fields"] == true {
        return SchemaField::Declared;
    }
    match spec["properties"].as_object() {
        Some(p) if p.contains_key("dataStoreSchema") => SchemaField::Declared,
        Some(_) => SchemaField::Absent,
        None => SchemaField::Unknown,
    }
}

/// Read the cluster's TenantControlPlane CRD: [`SchemaField::Unknown`] when it
/// is not served (404) or kmdr may not read CRDs.
pub async fn schema_field(kube: &KubeClient) -> Result<SchemaField, TenantsError> {
    match kube.get_object(&CUSTOM_RESOURCE_DEFINITION, None, &TENANT_CONTROL_PLANE.resource_name()).await {
        Ok(Some(crd)) => Ok(schema_field_of(&crd)),
        Ok(None) | Err(KubeError::NotFound { .. }) | Err(KubeError::Auth { .. }) => Ok(SchemaField::Unknown),
        Err(e) => Err(e.into()),
    }
}

/// The schema a Kamaji without `spec.dataStoreSchema` gives TenantControlPlane
/// `namespace/name` (and the user, but for NATS DataStores): `NS_NAME` with
/// every `-` made `_` (Kamaji v1.0.0,
/// internal/resources/datastore/datastore_storage_config.go, `mutate`'s
/// `coalesceFn`, when status.storage.setup is empty).
pub fn kamaji_derived_schema(namespace: &str, name: &str) -> String {
    format!("{namespace}_{name}").replace('-', "_")
}

/// How the TCP of a restore names its schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TcpSchemaMode {
    /// `spec.dataStoreSchema` / `spec.dataStoreUsername` set to the backup's.
    InSpec,
    /// Without both fields: the Kamaji there derives the backup's schema.
    DerivedByKamaji,
}

/// Decide how to apply the TCP `namespace/name` whose backup names `schema`,
/// where the cluster's CRD says `field`; refused when that Kamaji would name
/// the schema otherwise.
pub fn tcp_schema_mode(
    field: SchemaField,
    namespace: &str,
    name: &str,
    schema: &str,
    url: &str,
) -> Result<TcpSchemaMode, TenantsError> {
    match field {
        SchemaField::Declared | SchemaField::Unknown => Ok(TcpSchemaMode::InSpec),
        SchemaField::Absent => {
            let derived = kamaji_derived_schema(namespace, name);
            if derived == schema {
                Ok(TcpSchemaMode::DerivedByKamaji)
            } else {
                Err(TenantsError::KamajiWithoutSchemaField {
                    tcp: format!("{namespace}/{name}"),
                    url: url.into(),
                    derived,
                    backup: schema.into(),
                })
            }
        }
    }
}

/// The TCP manifest as backed up: cleaned, with `spec.dataStoreSchema` and
/// `spec.dataStoreUsername` always set (from `status.storage.setup` when the
/// spec lacks them). Returns the manifest, schema, username and which fields
/// were filled.
pub fn tcp_manifest(tcp: &Value) -> Result<(Value, String, String, Vec<String>), TenantsError> {
    let (ns, name) = meta_name(tcp);
    let mut filled = Vec::new();
    let mut pick = |spec_field: &str, status_field: &str| -> Result<String, TenantsError> {
        if let Some(v) = str_at(tcp, &["spec", spec_field]) {
            return Ok(v.to_string());
        }
        match str_at(tcp, &["status", "storage", "setup", status_field]) {
            Some(v) => {
                filled.push(spec_field.to_string());
                Ok(v.to_string())
            }
            None => Err(TenantsError::NotSetUp { tcp: format!("{ns}/{name}"), field: format!("spec.{spec_field}") }),
        }
    };
    let schema = pick("dataStoreSchema", "schema")?;
    let username = pick("dataStoreUsername", "user")?;
    let mut m = clean_manifest(tcp);
    if !m["spec"].is_object() {
        m["spec"] = json!({});
    }
    m["spec"]["dataStoreSchema"] = json!(schema);
    m["spec"]["dataStoreUsername"] = json!(username);
    Ok((m, schema, username, filled))
}

/// The DataStore a TCP uses: `spec.dataStore`, else `status.storage.dataStoreName`.
pub fn datastore_of(tcp: &Value) -> Option<String> {
    str_at(tcp, &["spec", "dataStore"])
        .or_else(|| str_at(tcp, &["status", "storage", "dataStoreName"]))
        .map(str::to_string)
}

fn owner_of(obj: &Value, kind: &str) -> Option<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == kind)
        .and_then(|r| r["name"].as_str())
        .map(str::to_string)
}

/// Secrets (`namespace/name`) a DataStore's credentials and certificates come from.
pub fn datastore_secret_refs(ds: &Value) -> Vec<(String, String)> {
    let spec = &ds["spec"];
    let refs = [
        &spec["basicAuth"]["username"],
        &spec["basicAuth"]["password"],
        &spec["tlsConfig"]["certificateAuthority"]["certificate"],
        &spec["tlsConfig"]["certificateAuthority"]["privateKey"],
        &spec["tlsConfig"]["clientCertificate"]["certificate"],
        &spec["tlsConfig"]["clientCertificate"]["privateKey"],
    ];
    let mut out: Vec<(String, String)> = refs
        .iter()
        .filter_map(|r| {
            let s = &r["secretReference"];
            Some((s["namespace"].as_str()?.to_string(), s["name"].as_str()?.to_string()))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Secrets by `(namespace, name)`, for resolving a DataStore's references.
pub type SecretSource = BTreeMap<(String, String), Value>;

/// How to reach a DataStore's data: URL (with credentials), TLS files, and
/// the temporary directory holding them (removed when dropped).
pub struct DatastoreAccess {
    pub url: DatastoreUrl,
    pub tls: TlsFiles,
    _dir: Option<tempfile::TempDir>,
}

impl DatastoreAccess {
    pub async fn connect(&self) -> Result<AnyTenants, TenantError> {
        tenant::connect(&self.url, self.tls.clone()).await
    }
}

/// Kamaji's driver name as kmdr's.
fn driver_of(kamaji: &str) -> Option<Driver> {
    match kamaji {
        "etcd" => Some(Driver::Etcd),
        "PostgreSQL" => Some(Driver::Postgres),
        "MySQL" => Some(Driver::Mysql),
        "NATS" => Some(Driver::Nats),
        _ => None,
    }
}

/// Resolve a ContentRef (`content`, base64, or `secretReference` with `keyPath`).
fn content_ref(ds_name: &str, r: &Value, what: &str, secrets: &SecretSource) -> Result<Option<Vec<u8>>, TenantsError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let bad = |detail: String| TenantsError::DataStore { datastore: ds_name.into(), detail };
    if let Some(c) = r["content"].as_str().filter(|c| !c.is_empty()) {
        return b64.decode(c).map(Some).map_err(|e| bad(format!("{what}.content is not base64: {e}")));
    }
    let s = &r["secretReference"];
    let (Some(ns), Some(name)) = (s["namespace"].as_str(), s["name"].as_str()) else { return Ok(None) };
    let key = s["keyPath"].as_str().unwrap_or_default();
    let secret = secrets
        .get(&(ns.to_string(), name.to_string()))
        .ok_or_else(|| bad(format!("{what} refers to Secret {ns}/{name}, which is neither in the cluster nor in the backup; restore the platform's Secrets first")))?;
    let value =
        secret["data"][key].as_str().ok_or_else(|| bad(format!("{what}: Secret {ns}/{name} has no key {key:?}")))?;
    b64.decode(value).map(Some).map_err(|e| bad(format!("Secret {ns}/{name} key {key}: {e}")))
}

/// How to reach the data of DataStore `ds`: its driver and endpoints (or
/// `endpoint_override`, for a kmdr that runs outside the cluster's network),
/// its basicAuth, and its tlsConfig's CA and client certificate written to
/// private temporary files.
pub fn datastore_access(
    ds: &Value,
    secrets: &SecretSource,
    endpoint_override: Option<&str>,
) -> Result<DatastoreAccess, TenantsError> {
    let name = meta_name(ds).1;
    let bad = |detail: String| TenantsError::DataStore { datastore: name.clone(), detail };
    let spec = &ds["spec"];
    let kamaji_driver = spec["driver"].as_str().unwrap_or_default();
    let driver = driver_of(kamaji_driver)
        .ok_or_else(|| bad(format!("unknown spec.driver {kamaji_driver:?} (etcd, PostgreSQL, MySQL, NATS)")))?;
    let endpoints: Vec<String> = match endpoint_override {
        Some(e) => e.split(',').map(str::to_string).collect(),
        None => spec["endpoints"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
    };
    if endpoints.is_empty() {
        return Err(bad("spec.endpoints is empty".into()));
    }
    let tls_cfg = &spec["tlsConfig"];
    let has_tls = tls_cfg.is_object();
    let scheme = match (driver, has_tls) {
        (Driver::Etcd, true) => "etcds",
        (Driver::Etcd, false) => "etcd",
        (Driver::Postgres, _) => "postgres",
        (Driver::Mysql, _) => "mysql",
        (Driver::Nats, _) => "nats",
    };
    // Kamaji connects SQL and NATS drivers to the first endpoint.
    let hosts = if driver == Driver::Etcd { endpoints.join(",") } else { endpoints[0].clone() };
    let hosts = hosts.trim_start_matches("https://").trim_start_matches("http://").to_string();
    let url = DatastoreUrl::parse(&format!("{scheme}://{hosts}")).map_err(|e| bad(e.to_string()))?;
    let text = |v: Option<Vec<u8>>, what: &str| -> Result<Option<String>, TenantsError> {
        v.map(|b| {
            String::from_utf8(b)
                .map(|s| s.trim_end_matches('\n').to_string())
                .map_err(|_| bad(format!("{what} is not text")))
        })
        .transpose()
    };
    let user =
        text(content_ref(&name, &spec["basicAuth"]["username"], "basicAuth.username", secrets)?, "basicAuth.username")?;
    let password =
        text(content_ref(&name, &spec["basicAuth"]["password"], "basicAuth.password", secrets)?, "basicAuth.password")?;
    let url = url.with_credentials(user, password);
    let ca = content_ref(
        &name,
        &tls_cfg["certificateAuthority"]["certificate"],
        "tlsConfig.certificateAuthority.certificate",
        secrets,
    )?;
    let cert = content_ref(
        &name,
        &tls_cfg["clientCertificate"]["certificate"],
        "tlsConfig.clientCertificate.certificate",
        secrets,
    )?;
    let key = content_ref(
        &name,
        &tls_cfg["clientCertificate"]["privateKey"],
        "tlsConfig.clientCertificate.privateKey",
        secrets,
    )?;
    if ca.is_none() && cert.is_none() {
        return Ok(DatastoreAccess { url, tls: TlsFiles::default(), _dir: None });
    }
    let dir = tempfile::Builder::new().prefix("kmdr-datastore-").tempdir().map_err(TenantsError::Local)?;
    let write = |file: &str, content: Option<Vec<u8>>| -> Result<Option<std::path::PathBuf>, TenantsError> {
        let Some(content) = content else { return Ok(None) };
        let path = dir.path().join(file);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        use std::io::Write;
        opts.open(&path).and_then(|mut f| f.write_all(&content)).map_err(TenantsError::Local)?;
        Ok(Some(path))
    };
    let tls =
        TlsFiles { cacert: write("ca.crt", ca)?, cert: write("client.crt", cert)?, key: write("client.key", key)? };
    Ok(DatastoreAccess { url, tls, _dir: Some(dir) })
}

/// Options of `kmdr backup tenants`.
#[derive(Debug, Clone, Default)]
pub struct TenantsBackupOptions {
    /// The TCPs to back up; empty with `all`.
    pub tenants: Vec<TcpRef>,
    pub all: bool,
    pub tags: BTreeMap<String, String>,
    /// `DATASTORE -> host:port[,host:port]`: reach a DataStore elsewhere than
    /// its spec.endpoints say (kmdr outside the cluster network).
    pub endpoints: BTreeMap<String, String>,
}

/// One tenant as read from the cluster, before its data is copied.
struct CapturedTenant {
    r: TcpRef,
    uid: String,
    datastore: String,
    schema: String,
    username: String,
    filled: Vec<String>,
    kcp: Option<String>,
    cluster: Option<String>,
    /// (file name inside the tenant dir, YAML)
    files: Vec<(String, String)>,
    secrets: Vec<String>,
}

async fn secret_source(
    kube: &KubeClient,
    refs: &[(String, String)],
    fallback: &SecretSource,
) -> Result<SecretSource, TenantsError> {
    let mut out = SecretSource::new();
    for (ns, name) in refs {
        match kube.get_object(&SECRET, Some(ns), name).await? {
            Some(s) => {
                out.insert((ns.clone(), name.clone()), s);
            }
            None => {
                if let Some(s) = fallback.get(&(ns.clone(), name.clone())) {
                    out.insert((ns.clone(), name.clone()), s.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Read one TCP and what belongs to it.
async fn capture_tenant(kube: &KubeClient, tcp: &Value) -> Result<CapturedTenant, TenantsError> {
    let (ns, name) = meta_name(tcp);
    let r = TcpRef { namespace: ns.clone(), name: name.clone() };
    let (tcp_m, schema, username, filled) = tcp_manifest(tcp)?;
    let datastore = datastore_of(tcp).ok_or_else(|| TenantsError::NotSetUp {
        tcp: r.to_string(),
        field: "spec.dataStore (nor status.storage.dataStoreName)".into(),
    })?;
    let mut files = vec![(TCP_FILE.to_string(), to_yaml(&tcp_m))];
    let mut kcp = None;
    let mut cluster_name = tcp["metadata"]["labels"][CAPI_CLUSTER_LABEL].as_str().map(str::to_string);
    if let Some(kcp_name) = owner_of(tcp, KAMAJI_CONTROL_PLANE.kind)
        && let Some(k) = kube.get_object(&KAMAJI_CONTROL_PLANE, Some(&ns), &kcp_name).await?
    {
        cluster_name = owner_of(&k, CAPI_CLUSTER.kind)
            .or(cluster_name)
            .or_else(|| k["metadata"]["labels"][CAPI_CLUSTER_LABEL].as_str().map(str::to_string));
        files.push((KCP_FILE.to_string(), to_yaml(&clean_manifest(&k))));
        kcp = Some(kcp_name);
    }
    let mut cluster = None;
    if let Some(c) = cluster_name
        && let Some(obj) = kube.get_object(&CAPI_CLUSTER, Some(&ns), &c).await?
    {
        files.push((CLUSTER_FILE.to_string(), to_yaml(&clean_manifest(&obj))));
        cluster = Some(c);
    }
    let prefix = format!("{name}-");
    let mut secrets = Vec::new();
    for s in kube.list_objects(&SECRET, Some(&ns), "").await? {
        let sname = meta_name(&s).1;
        if sname.starts_with(&prefix) {
            let s = with_type(s, &SECRET);
            files.push((format!("{SECRETS_DIR}/{sname}.yaml"), to_yaml(&clean_manifest(&s))));
            secrets.push(sname);
        }
    }
    secrets.sort();
    Ok(CapturedTenant {
        r,
        uid: tcp["metadata"]["uid"].as_str().unwrap_or_default().to_string(),
        datastore,
        schema,
        username,
        filled,
        kcp,
        cluster,
        files,
        secrets,
    })
}

/// The manifests a `backup tenants --all` would write now, keyed
/// `tenants/<ns>/<name>/<file>` and `datastores/<name>`: what a drill
/// compares before and after the tenant manifests are restored. Empty when
/// the cluster has no TenantControlPlane.
pub async fn live_manifests(kube: &KubeClient) -> Result<BTreeMap<String, Vec<u8>>, TenantsError> {
    let mut out = BTreeMap::new();
    let mut datastores = std::collections::BTreeSet::new();
    for t in kube.list_objects(&TENANT_CONTROL_PLANE, None, "").await? {
        let t = capture_tenant(kube, &with_type(t, &TENANT_CONTROL_PLANE)).await?;
        for (file, yaml) in t.files {
            out.insert(format!("{}/{file}", tenant_dir(&t.r.namespace, &t.r.name)), yaml.into_bytes());
        }
        datastores.insert(t.datastore);
    }
    for name in datastores {
        if let Some(ds) = kube.get_object(&DATA_STORE, None, &name).await? {
            out.insert(datastore_dir(&name), to_yaml(&clean_manifest(&with_type(ds, &DATA_STORE))).into_bytes());
        }
    }
    Ok(out)
}

/// A drill's built-in failure of the Kamaji objects: every TenantControlPlane
/// deleted, with the Secrets a backup keeps of it (`<name>-*` in its
/// namespace). DataStores stay (other clusters may use them). Returns what
/// was deleted.
pub async fn delete_tenants(kube: &KubeClient) -> Result<Vec<String>, TenantsError> {
    let mut gone = Vec::new();
    let within = Duration::from_secs(60);
    // Each namespace's Secrets listed once, whatever its number of TCPs.
    let mut secrets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in tenant_refs(kube).await? {
        kube.delete_object(&TENANT_CONTROL_PLANE, Some(&r.namespace), &r.name, within).await?;
        gone.push(format!("TenantControlPlane {r}"));
        if !secrets.contains_key(&r.namespace) {
            let names =
                kube.list_objects(&SECRET, Some(&r.namespace), "").await?.iter().map(|s| meta_name(s).1).collect();
            secrets.insert(r.namespace.clone(), names);
        }
        let prefix = format!("{}-", r.name);
        for sname in secrets[&r.namespace].iter().filter(|s| s.starts_with(&prefix)) {
            kube.delete_object(&SECRET, Some(&r.namespace), sname, within).await?;
            gone.push(format!("Secret {}/{sname}", r.namespace));
        }
    }
    Ok(gone)
}

/// Every TenantControlPlane of the cluster.
pub async fn tenant_refs(kube: &KubeClient) -> Result<Vec<TcpRef>, TenantsError> {
    let all = kube.list_objects(&TENANT_CONTROL_PLANE, None, "").await?;
    Ok(all
        .iter()
        .map(|t| {
            let (namespace, name) = meta_name(t);
            TcpRef { namespace, name }
        })
        .collect())
}

/// Back up the selected TenantControlPlanes, data and manifests, into one
/// backup. Everything is read from the cluster and every datastore is
/// connected before the repository is written; a failure leaves nothing.
/// `notify` hears what is being copied.
/// One DataStore of a restore plan: its manifest, its Secrets, where its credentials come from, how to reach it, a connection.
type PlannedDatastore = (Value, Vec<(String, String)>, SecretSource, DatastoreAccess, AnyTenants);

pub async fn backup_tenants(
    repo: &Repository,
    kube: &KubeClient,
    opts: &TenantsBackupOptions,
    progress: Option<Progress>,
    notify: &(dyn Fn(&str) + Sync),
) -> Result<Manifest, TenantsError> {
    let kubernetes_version = Some(kube.server_version().await?);
    let tcps: Vec<Value> = if opts.all {
        let all: Vec<Value> = kube
            .list_objects(&TENANT_CONTROL_PLANE, None, "")
            .await?
            .into_iter()
            .map(|t| with_type(t, &TENANT_CONTROL_PLANE))
            .collect();
        if all.is_empty() {
            return Err(TenantsError::NoTenants { url: kube.url().into() });
        }
        all
    } else {
        let mut out = Vec::new();
        for r in &opts.tenants {
            match kube.get_object(&TENANT_CONTROL_PLANE, Some(&r.namespace), &r.name).await? {
                Some(t) => out.push(t),
                None => {
                    let found = kube
                        .list_objects(&TENANT_CONTROL_PLANE, None, "")
                        .await?
                        .iter()
                        .map(|t| {
                            let (n, m) = meta_name(t);
                            format!("{n}/{m}")
                        })
                        .collect();
                    return Err(TenantsError::TcpNotFound { tcp: r.to_string(), url: kube.url().into(), found });
                }
            }
        }
        out
    };
    let mut tenants = Vec::new();
    for t in &tcps {
        tenants.push(capture_tenant(kube, t).await?);
    }
    tenants.sort_by(|a, b| a.r.cmp(&b.r));
    tenants.dedup_by(|a, b| a.r == b.r);
    // Each DataStore once: its manifest, its Secrets, a connection.
    let mut datastores: BTreeMap<String, PlannedDatastore> = BTreeMap::new();
    for t in &tenants {
        if datastores.contains_key(&t.datastore) {
            continue;
        }
        let ds = kube.get_object(&DATA_STORE, None, &t.datastore).await?.ok_or_else(|| TenantsError::DataStore {
            datastore: t.datastore.clone(),
            detail: format!("not found at {} (TenantControlPlane {} uses it)", kube.url(), t.r),
        })?;
        let refs = datastore_secret_refs(&ds);
        let secrets = secret_source(kube, &refs, &SecretSource::new()).await?;
        let access = datastore_access(&ds, &secrets, opts.endpoints.get(&t.datastore).map(String::as_str))?;
        let store = access.connect().await?;
        datastores.insert(t.datastore.clone(), (ds, refs, secrets, access, store));
    }
    let mut session = BackupSession::start(repo, "kmdr backup tenants").await?;
    match write_tenants(&mut session, &tenants, &datastores, progress, notify).await {
        Ok((infos, ds_infos)) => {
            let series = if opts.all {
                "tenants/all".to_string()
            } else {
                format!("tenants/{}", tenants.iter().map(|t| t.r.to_string()).collect::<Vec<_>>().join(","))
            };
            let draft = ManifestDraft {
                kind: KIND.into(),
                layer: Layer::TenantControlPlanes,
                series,
                tags: opts.tags.clone(),
                source: SourceInfo::KamajiTenants(KamajiTenantsInfo {
                    cluster: kube.url().into(),
                    kubernetes_version,
                    tenants: infos,
                    datastores: ds_infos,
                }),
            };
            Ok(session.commit(draft).await?)
        }
        Err(e) => {
            session.abort().await;
            Err(e)
        }
    }
}

type DataStores = BTreeMap<String, (Value, Vec<(String, String)>, SecretSource, DatastoreAccess, AnyTenants)>;

async fn write_tenants(
    session: &mut BackupSession,
    tenants: &[CapturedTenant],
    datastores: &DataStores,
    progress: Option<Progress>,
    notify: &(dyn Fn(&str) + Sync),
) -> Result<(Vec<KamajiTenantInfo>, Vec<KamajiDataStoreInfo>), TenantsError> {
    let mut ds_infos = Vec::new();
    for (name, (ds, refs, secrets, access, _)) in datastores {
        let dir = datastore_dir(name);
        let yaml = to_yaml(&clean_manifest(ds));
        session.add_file(&format!("{dir}/{DATASTORE_FILE}"), &mut yaml.as_bytes(), None).await?;
        for (ns, sname) in refs {
            if let Some(s) = secrets.get(&(ns.clone(), sname.clone())) {
                let yaml = to_yaml(&clean_manifest(s));
                session.add_file(&format!("{dir}/{SECRETS_DIR}/{ns}/{sname}.yaml"), &mut yaml.as_bytes(), None).await?;
            }
        }
        ds_infos.push(KamajiDataStoreInfo {
            name: name.clone(),
            driver: ds["spec"]["driver"].as_str().unwrap_or_default().into(),
            endpoints: ds["spec"]["endpoints"]
                .as_array()
                .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            url: access.url.redacted(),
            secrets: refs.iter().map(|(n, s)| format!("{n}/{s}")).collect(),
        });
    }
    let mut infos = Vec::new();
    for t in tenants {
        let dir = tenant_dir(&t.r.namespace, &t.r.name);
        let store = &datastores[&t.datastore].4;
        notify(&format!("tenant {}: data of schema {} from {}", t.r, t.schema, store.datastore()));
        let data =
            tenant::export_into(session, store, &t.schema, None, &format!("{dir}/{RECORDS}"), progress.clone()).await?;
        for (file, yaml) in &t.files {
            session.add_file(&format!("{dir}/{file}"), &mut yaml.as_bytes(), None).await?;
        }
        infos.push(KamajiTenantInfo {
            namespace: t.r.namespace.clone(),
            name: t.r.name.clone(),
            uid: t.uid.clone(),
            datastore: t.datastore.clone(),
            schema: t.schema.clone(),
            username: t.username.clone(),
            filled_from_status: t.filled.clone(),
            kamaji_control_plane: t.kcp.clone(),
            capi_cluster: t.cluster.clone(),
            secrets: t.secrets.clone(),
            data,
        });
    }
    Ok((infos, ds_infos))
}

/// The tenants a backup holds.
pub fn tenants_info(m: &Manifest) -> Result<&KamajiTenantsInfo, TenantsError> {
    match &m.source {
        SourceInfo::KamajiTenants(k) => Ok(k),
        _ => Err(TenantsError::WrongKind { id: m.id.to_string(), kind: m.id.kind().to_string() }),
    }
}

/// Options of `kmdr restore tenants`.
#[derive(Debug, Clone, Default)]
pub struct TenantsRestoreOptions {
    /// Only these tenants (all of the backup when empty).
    pub only: Vec<TcpRef>,
    /// Replace keys the tenant's schema holds in the datastore now.
    pub force: bool,
    /// Keep the data the datastore holds (it survived): only the manifests.
    pub manifests_only: bool,
    /// How long to wait for the TCPs to be Ready.
    pub timeout: Duration,
    /// How often to look.
    pub interval: Duration,
    /// Do not wait for the TCPs to be Ready (the caller waits: a drill's health gate).
    pub no_wait: bool,
    /// As for the backup.
    pub endpoints: BTreeMap<String, String>,
}

/// One object a restore applies, in order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedApply {
    pub kind: String,
    pub name: String,
    /// `apply` (server-side apply) or `create-if-absent`.
    pub how: String,
    #[serde(skip)]
    resource: ResourceKind,
    #[serde(skip)]
    object: Value,
}

/// One tenant of a restore plan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedTenant {
    pub namespace: String,
    pub name: String,
    pub datastore: String,
    pub target: String,
    pub schema: String,
    pub username: String,
    pub write_keys: u64,
    pub existing_keys: u64,
    pub replace: bool,
    /// `--manifests-only`: the data the datastore holds stays as it is.
    pub keep_data: bool,
    /// Whether a TCP of that name exists now (with the same schema).
    pub tcp_exists: bool,
    /// How the applied TCP names its schema.
    pub schema_mode: TcpSchemaMode,
    #[serde(skip)]
    records_file: String,
}

/// What `kmdr restore tenants` does, in order, computed before any write.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantsRestorePlan {
    pub backup: String,
    pub cluster: String,
    pub tenants: Vec<PlannedTenant>,
    /// After the data, in this order.
    pub applies: Vec<PlannedApply>,
}

/// The open datastores of a plan, by DataStore name.
pub struct PlanStores {
    stores: BTreeMap<String, (DatastoreAccess, AnyTenants)>,
}

async fn read_yaml(repo: &Repository, m: &Manifest, name: &str) -> Result<Value, TenantsError> {
    let entry = m
        .file(name)
        .ok_or_else(|| TenantsError::BadFile { file: name.into(), detail: "missing from the backup".into() })?;
    let mut buf = Vec::with_capacity(entry.size as usize);
    restore_file(repo, entry, &mut buf, FileCheck::Sha256, None).await?;
    let text =
        String::from_utf8(buf).map_err(|e| TenantsError::BadFile { file: name.into(), detail: e.to_string() })?;
    values_from_yaml(&text).map_err(|e| TenantsError::BadFile { file: name.into(), detail: e.to_string() })
}

/// Check everything and describe the restore; nothing is written. Refuses
/// (before any write) a tenant whose TCP exists with another schema, and a
/// datastore schema that holds keys unless `force`.
pub async fn plan_tenants_restore(
    repo: &Repository,
    kube: &KubeClient,
    m: &Manifest,
    opts: &TenantsRestoreOptions,
) -> Result<(TenantsRestorePlan, PlanStores), TenantsError> {
    let info = tenants_info(m)?;
    let have: Vec<String> = info.tenants.iter().map(|t| format!("{}/{}", t.namespace, t.name)).collect();
    for o in &opts.only {
        if !have.contains(&o.to_string()) {
            return Err(TenantsError::NotInBackup { id: m.id.to_string(), only: o.to_string(), have: have.join(", ") });
        }
    }
    let selected: Vec<&KamajiTenantInfo> = info
        .tenants
        .iter()
        .filter(|t| opts.only.is_empty() || opts.only.iter().any(|o| o.namespace == t.namespace && o.name == t.name))
        .collect();
    kube.server_version().await?;
    // 1. The schema guard, for every tenant before anything else: how the
    // Kamaji there names the schema, and any TCP already there.
    let field = schema_field(kube).await?;
    let mut exists = BTreeSet::new();
    let mut modes = BTreeMap::new();
    for t in &selected {
        let mode = tcp_schema_mode(field, &t.namespace, &t.name, &t.schema, kube.url())?;
        modes.insert((t.namespace.clone(), t.name.clone()), mode);
        if let Some(live) = kube.get_object(&TENANT_CONTROL_PLANE, Some(&t.namespace), &t.name).await? {
            let existing = effective_schema_with(&live, field).unwrap_or_default();
            if existing != t.schema {
                return Err(TenantsError::SchemaMismatch {
                    tcp: format!("{}/{}", t.namespace, t.name),
                    existing,
                    backup: t.schema.clone(),
                });
            }
            exists.insert((t.namespace.clone(), t.name.clone()));
        }
    }
    // 2. The DataStores: the live one when it exists, else the backed-up one;
    // credentials from the live Secrets, else the backed-up copies.
    let mut stores = BTreeMap::new();
    let mut applies = Vec::new();
    let mut ds_names: Vec<&str> = selected.iter().map(|t| t.datastore.as_str()).collect();
    ds_names.sort();
    ds_names.dedup();
    for name in ds_names {
        let dir = datastore_dir(name);
        let backed_up = read_yaml(repo, m, &format!("{dir}/{DATASTORE_FILE}")).await?;
        let mut fallback = SecretSource::new();
        for f in m.files.iter().filter(|f| f.name.starts_with(&format!("{dir}/{SECRETS_DIR}/"))) {
            let s = read_yaml(repo, m, &f.name).await?;
            let (ns, n) = meta_name(&s);
            push_namespace(&mut applies, &ns);
            applies.push(PlannedApply {
                kind: "Secret".into(),
                name: format!("{ns}/{n}"),
                how: "create-if-absent".into(),
                resource: SECRET,
                object: s.clone(),
            });
            fallback.insert((ns, n), s);
        }
        let ds = kube.get_object(&DATA_STORE, None, name).await?.unwrap_or_else(|| backed_up.clone());
        let refs = datastore_secret_refs(&ds);
        let secrets = secret_source(kube, &refs, &fallback).await?;
        let access = datastore_access(&ds, &secrets, opts.endpoints.get(name).map(String::as_str))?;
        let store = access.connect().await?;
        applies.push(PlannedApply {
            kind: "DataStore".into(),
            name: name.into(),
            how: "apply".into(),
            resource: DATA_STORE,
            object: backed_up,
        });
        stores.insert(name.to_string(), (access, store));
    }
    // 3. Per tenant: its data target, then Namespace, Secrets, TCP, KCP, Cluster.
    let mut tenants = Vec::new();
    for t in &selected {
        let (_, store) = &stores[&t.datastore];
        let existing = store.count(&t.schema).await?;
        if opts.manifests_only && existing == 0 {
            return Err(TenantsError::NoDataToKeep {
                tcp: format!("{}/{}", t.namespace, t.name),
                schema: t.schema.clone(),
                datastore: store.datastore(),
                keys: t.data.key_count,
            });
        }
        if existing > 0 && !opts.force && !opts.manifests_only {
            return Err(TenantError::TargetNotEmpty {
                schema: t.schema.clone(),
                datastore: store.datastore(),
                keys: existing,
            }
            .into());
        }
        let dir = tenant_dir(&t.namespace, &t.name);
        tenants.push(PlannedTenant {
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            datastore: t.datastore.clone(),
            target: store.datastore(),
            schema: t.schema.clone(),
            username: t.username.clone(),
            write_keys: t.data.key_count,
            existing_keys: existing,
            replace: existing > 0 && !opts.manifests_only,
            keep_data: opts.manifests_only,
            tcp_exists: exists.contains(&(t.namespace.clone(), t.name.clone())),
            schema_mode: modes[&(t.namespace.clone(), t.name.clone())].clone(),
            records_file: format!("{dir}/{RECORDS}"),
        });
        push_namespace(&mut applies, &t.namespace);
        for s in &t.secrets {
            let obj = read_yaml(repo, m, &format!("{dir}/{SECRETS_DIR}/{s}.yaml")).await?;
            applies.push(PlannedApply {
                kind: "Secret".into(),
                name: format!("{}/{s}", t.namespace),
                how: "apply".into(),
                resource: SECRET,
                object: obj,
            });
        }
        let mut tcp = read_yaml(repo, m, &format!("{dir}/{TCP_FILE}")).await?;
        let mode = modes[&(t.namespace.clone(), t.name.clone())].clone();
        let mut label = format!("{}/{}", t.namespace, t.name);
        if !tcp["spec"].is_object() {
            tcp["spec"] = json!({});
        }
        match mode {
            // The guard of the guard: the manifest applied names the schema.
            TcpSchemaMode::InSpec => {
                tcp["spec"]["dataStoreSchema"] = json!(t.schema);
                tcp["spec"]["dataStoreUsername"] = json!(t.username);
            }
            // Its CRD refuses both fields; it derives the same schema.
            TcpSchemaMode::DerivedByKamaji => {
                if let Some(spec) = tcp["spec"].as_object_mut() {
                    spec.remove("dataStoreSchema");
                    spec.remove("dataStoreUsername");
                }
                label.push_str(&format!(
                    " without spec.dataStoreSchema/dataStoreUsername (its CRD here has neither; this Kamaji derives schema {} itself, as backed up)",
                    t.schema
                ));
            }
        }
        applies.push(PlannedApply {
            kind: "TenantControlPlane".into(),
            name: label,
            how: "apply".into(),
            resource: TENANT_CONTROL_PLANE,
            object: tcp,
        });
        for (file, kind, resource) in
            [(KCP_FILE, "KamajiControlPlane", KAMAJI_CONTROL_PLANE), (CLUSTER_FILE, "Cluster", CAPI_CLUSTER)]
        {
            if m.file(&format!("{dir}/{file}")).is_some() {
                let obj = read_yaml(repo, m, &format!("{dir}/{file}")).await?;
                let (ns, n) = meta_name(&obj);
                applies.push(PlannedApply {
                    kind: kind.into(),
                    name: format!("{ns}/{n}"),
                    how: "apply".into(),
                    resource,
                    object: obj,
                });
            }
        }
    }
    Ok((
        TenantsRestorePlan {
            backup: m.id.to_string(),
            cluster: kube.url().into(),
            tenants,
            applies: typed_applies(applies),
        },
        PlanStores { stores },
    ))
}

/// Every planned object typed after its resource, for backups whose listed
/// objects were stored without apiVersion/kind.
fn typed_applies(applies: Vec<PlannedApply>) -> Vec<PlannedApply> {
    applies.into_iter().map(|a| PlannedApply { object: with_type(a.object, &a.resource), ..a }).collect()
}

/// A Namespace created when absent, once per plan.
fn push_namespace(applies: &mut Vec<PlannedApply>, ns: &str) {
    if applies.iter().any(|a| a.kind == "Namespace" && a.name == ns) {
        return;
    }
    applies.push(PlannedApply {
        kind: "Namespace".into(),
        name: ns.into(),
        how: "create-if-absent".into(),
        resource: NAMESPACE,
        object: json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    });
}

/// What a restore did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantsRestoreOutcome {
    /// Keys written per tenant (`ns/name`).
    pub written: BTreeMap<String, u64>,
    /// Objects applied or created, in order.
    pub applied: Vec<String>,
    /// Objects left as they were (create-if-absent that existed).
    pub kept: Vec<String>,
    /// How long until every TCP was Ready.
    pub ready_after_ms: u64,
}

#[allow(clippy::too_many_arguments)] // each is one input of the restore; a struct would only rename them
/// Carry out a plan: the data of every tenant, then the manifests in plan
/// order, then wait for every TCP to be Ready. Never deletes anything.
pub async fn restore_tenants(
    repo: &Repository,
    kube: &KubeClient,
    m: &Manifest,
    plan: &TenantsRestorePlan,
    stores: &PlanStores,
    opts: &TenantsRestoreOptions,
    progress: Option<Progress>,
    notify: &(dyn Fn(&str) + Sync),
) -> Result<TenantsRestoreOutcome, TenantsError> {
    let mut written = BTreeMap::new();
    for t in plan.tenants.iter().filter(|t| !t.keep_data) {
        let (_, store) = &stores.stores[&t.datastore];
        let entry = m.file(&t.records_file).ok_or_else(|| TenantsError::BadFile {
            file: t.records_file.clone(),
            detail: "missing from the backup".into(),
        })?;
        notify(&format!(
            "tenant {}/{}: writing {} keys of schema {} into {}",
            t.namespace, t.name, t.write_keys, t.schema, t.target
        ));
        let done = tenant::restore_records(repo, store, entry, &t.schema, t.replace, progress.clone()).await?;
        let now = store.count(&t.schema).await?;
        if now != t.write_keys {
            return Err(TenantError::ImportFailed {
                schema: t.schema.clone(),
                datastore: t.target.clone(),
                state: format!("It holds {now} keys, the backup {}; no manifest was applied", t.write_keys),
                detail: "another writer is active (an API server of this tenant?)".into(),
            }
            .into());
        }
        written.insert(format!("{}/{}", t.namespace, t.name), done.written);
    }
    let mut applied = Vec::new();
    let mut kept = Vec::new();
    for a in &plan.applies {
        let label = format!("{} {}", a.kind, a.name);
        if a.how == "apply" {
            kube.apply_object(&a.resource, &a.object).await?;
            notify(&format!("applied {label}"));
            applied.push(label);
        } else if kube.create_if_absent(&a.resource, &a.object).await? {
            notify(&format!("created {label}"));
            applied.push(label);
        } else {
            kept.push(label);
        }
    }
    let started = Instant::now();
    let refs: Vec<TcpRef> =
        plan.tenants.iter().map(|t| TcpRef { namespace: t.namespace.clone(), name: t.name.clone() }).collect();
    if !opts.no_wait {
        wait_ready(kube, &refs, opts.timeout, opts.interval, notify).await?;
    }
    Ok(TenantsRestoreOutcome { written, applied, kept, ready_after_ms: started.elapsed().as_millis() as u64 })
}

/// `status.kubernetesResources.version.status` of a TCP (`Provisioning`,
/// `Ready`, ...), `-` when Kamaji has not written it.
pub fn tcp_status(tcp: &Value) -> String {
    str_at(tcp, &["status", "kubernetesResources", "version", "status"]).unwrap_or("-").to_string()
}

/// Wait until every TCP in `tcps` reports Ready, telling `notify` each
/// change of status; [`TenantsError::NotReady`] after `timeout`.
pub async fn wait_ready(
    kube: &KubeClient,
    tcps: &[TcpRef],
    timeout: Duration,
    interval: Duration,
    notify: &(dyn Fn(&str) + Sync),
) -> Result<(), TenantsError> {
    let deadline = Instant::now() + timeout;
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let mut pending = Vec::new();
        for r in tcps {
            let status = match kube.get_object(&TENANT_CONTROL_PLANE, Some(&r.namespace), &r.name).await? {
                Some(t) => tcp_status(&t),
                None => "absent".into(),
            };
            if last.get(&r.to_string()) != Some(&status) {
                notify(&format!("TenantControlPlane {r}: {status}"));
                last.insert(r.to_string(), status.clone());
            }
            if status != READY {
                pending.push(format!("{r} ({status})"));
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(TenantsError::NotReady {
                timeout: kmdr_core::human_duration(timeout),
                pending: pending.join(", "),
            });
        }
        tokio::time::sleep(
            interval.min(deadline.saturating_duration_since(Instant::now())).max(Duration::from_millis(10)),
        )
        .await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(spec: Value, status: Value) -> Value {
        json!({
            "apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "TenantControlPlane",
            "metadata": {"name": "t1", "namespace": "tenants", "uid": "u-1", "resourceVersion": "9", "generation": 3,
                         "creationTimestamp": "2026-01-01T00:00:00Z", "managedFields": [{}],
                         "ownerReferences": [{"kind": "KamajiControlPlane", "name": "t1", "uid": "k-1"}],
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": spec, "status": status,
        })
    }

    #[test]
    fn fills_schema_and_username_from_status() {
        let t = tcp(
            json!({"dataStore": "default"}),
            json!({"storage": {"setup": {"schema": "tenants_t1", "user": "tenants_t1"}}}),
        );
        let (m, schema, user, filled) = tcp_manifest(&t).unwrap();
        assert_eq!((schema.as_str(), user.as_str()), ("tenants_t1", "tenants_t1"));
        assert_eq!(filled, ["dataStoreSchema", "dataStoreUsername"]);
        assert_eq!(m["spec"]["dataStoreSchema"], "tenants_t1");
        assert_eq!(m["spec"]["dataStoreUsername"], "tenants_t1");
        assert!(m.get("status").is_none());
        assert_eq!(m["metadata"].as_object().unwrap().keys().collect::<Vec<_>>(), ["name", "namespace"]);
    }

    #[test]
    fn the_spec_wins_and_a_tcp_never_set_up_is_refused() {
        let t = tcp(
            json!({"dataStoreSchema": "s", "dataStoreUsername": "u"}),
            json!({"storage": {"setup": {"schema": "x", "user": "y"}}}),
        );
        let (_, schema, user, filled) = tcp_manifest(&t).unwrap();
        assert_eq!((schema.as_str(), user.as_str(), filled.len()), ("s", "u", 0));
        assert!(matches!(tcp_manifest(&tcp(json!({}), json!({}))), Err(TenantsError::NotSetUp { .. })));
    }

    #[test]
    fn effective_schema_falls_back_to_status_then_uid() {
        assert_eq!(effective_schema(&tcp(json!({"dataStoreSchema": "a"}), json!({}))).unwrap(), "a");
        assert_eq!(effective_schema(&tcp(json!({}), json!({"storage": {"setup": {"schema": "b"}}}))).unwrap(), "b");
        assert_eq!(effective_schema(&tcp(json!({}), json!({}))).unwrap(), "u-1");
    }

    #[test]
    fn datastore_access_from_secrets_and_content() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let ds = json!({"metadata": {"name": "pg"}, "spec": {"driver": "PostgreSQL", "endpoints": ["db.kamaji:5432"],
            "basicAuth": {"username": {"content": b64("kamaji")},
                          "password": {"secretReference": {"name": "pg-creds", "namespace": "kamaji-system", "keyPath": "password"}}}}});
        let secrets = SecretSource::from([(
            ("kamaji-system".into(), "pg-creds".into()),
            json!({"data": {"password": b64("s3cret\n")}}),
        )]);
        let a = datastore_access(&ds, &secrets, None).unwrap();
        assert_eq!(a.url.user.as_deref(), Some("kamaji"));
        assert_eq!(a.url.password.as_deref(), Some("s3cret"));
        assert_eq!(a.url.redacted(), "postgres://kamaji@db.kamaji:5432");
        assert!(!a.tls.is_set());
        let a = datastore_access(&ds, &secrets, Some("127.0.0.1:6000")).unwrap();
        assert_eq!(a.url.host_ports(), ["127.0.0.1:6000"]);
        assert!(matches!(datastore_access(&ds, &SecretSource::new(), None), Err(TenantsError::DataStore { .. })));
    }

    fn crd(spec_properties: Value) -> Value {
        json!({"spec": {"versions": [
            {"name": "v1alpha0", "served": false, "schema": {"openAPIV3Schema": {"properties": {"spec": {"properties": {"dataStoreSchema": {}}}}}}},
            {"name": "v1alpha1", "served": true, "schema": {"openAPIV3Schema": {"properties": {"spec": spec_properties}}}},
        ]}})
    }

    #[test]
    fn the_crd_says_whether_kamaji_knows_the_schema_field() {
        let declared = crd(json!({"properties": {"dataStore": {}, "dataStoreSchema": {}, "dataStoreUsername": {}}}));
        assert_eq!(schema_field_of(&declared), SchemaField::Declared);
        // Kamaji v1.0.0: spec has dataStore but not dataStoreSchema.
        assert_eq!(schema_field_of(&crd(json!({"properties": {"dataStore": {}}}))), SchemaField::Absent);
        assert_eq!(schema_field_of(&crd(json!({"x-kubernetes-preserve-unknown-fields": true}))), SchemaField::Declared);
        assert_eq!(schema_field_of(&crd(json!({}))), SchemaField::Unknown);
        assert_eq!(schema_field_of(&json!({"spec": {"versions": []}})), SchemaField::Unknown);
    }

    #[test]
    fn a_kamaji_without_the_field_is_used_only_when_it_derives_the_backed_up_schema() {
        assert_eq!(kamaji_derived_schema("my-tenants", "t-1"), "my_tenants_t_1");
        let url = "https://k";
        for field in [SchemaField::Declared, SchemaField::Unknown] {
            assert_eq!(tcp_schema_mode(field, "tenants", "alpha", "anything", url).unwrap(), TcpSchemaMode::InSpec);
        }
        assert_eq!(
            tcp_schema_mode(SchemaField::Absent, "my-ns", "alpha-1", "my_ns_alpha_1", url).unwrap(),
            TcpSchemaMode::DerivedByKamaji
        );
        // A schema named after the UID (newer Kamaji's default) cannot be had there.
        let err = tcp_schema_mode(SchemaField::Absent, "tenants", "alpha", "4c1f9a", url).unwrap_err();
        assert!(matches!(&err, TenantsError::KamajiWithoutSchemaField { derived, .. } if derived == "tenants_alpha"));
        assert_eq!(err.class(), ErrorClass::Refused);
        assert!(err.to_string().contains("Upgrade Kamaji"), "{err}");
    }

    #[test]
    fn a_live_tcp_of_an_old_kamaji_uses_the_derived_schema_until_set_up() {
        let t = tcp(json!({}), json!({}));
        assert_eq!(effective_schema_with(&t, SchemaField::Absent).unwrap(), "tenants_t1");
        assert_eq!(effective_schema_with(&t, SchemaField::Unknown).unwrap(), "u-1");
        let set_up = tcp(json!({}), json!({"storage": {"setup": {"schema": "other"}}}));
        assert_eq!(effective_schema_with(&set_up, SchemaField::Absent).unwrap(), "other");
    }

    #[test]
    fn listed_objects_get_their_type_back() {
        let listed = json!({"metadata": {"name": "t1-ca", "namespace": "tenants"}, "data": {}});
        let s = with_type(listed, &SECRET);
        assert_eq!((s["apiVersion"].as_str(), s["kind"].as_str()), (Some("v1"), Some("Secret")));
        let kept = with_type(json!({"apiVersion": "v1", "kind": "Secret"}), &TENANT_CONTROL_PLANE);
        assert_eq!(kept["kind"], "Secret");
    }

    #[test]
    fn tcp_refs() {
        assert_eq!("ns/t-1".parse::<TcpRef>().unwrap().to_string(), "ns/t-1");
        for bad in ["t1", "a/b/c", "/x", "NS/x", "../x"] {
            assert!(bad.parse::<TcpRef>().is_err(), "{bad}");
        }
    }
}
