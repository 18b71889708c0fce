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

mod access;
mod backup;
mod error;
mod restore;
#[cfg(test)]
mod tests;

pub use access::*;
pub use backup::*;
pub use error::TenantsError;
pub use restore::*;

use crate::client::{KubeClient, KubeError, ResourceKind, meta_name};
use crate::platform::DROPPED_ANNOTATIONS;
use serde_json::{Value, json};

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
