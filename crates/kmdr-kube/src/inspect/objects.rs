//! Kubernetes objects in the under-cluster's etcd: where each kind lives,
//! how a stored value becomes a JSON object (custom resources are JSON;
//! built-in kinds are protobuf, see [`super::proto`]; either may be encrypted
//! at rest, see [`super::encryption`]), and how an object becomes a manifest
//! that `kubectl apply` recreates.

use crate::inspect::InspectError;
use crate::inspect::encryption::{EncryptedHeader, EncryptionError, EncryptionKeys, parse_encrypted};
use crate::inspect::proto::{self, ObjectMeta};
use base64::Engine;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// A kind of object and where etcd keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceKind {
    /// `TenantControlPlane`, `Secret`, ... (the plural when not known).
    pub kind: String,
    /// API group (empty for the core group).
    pub group: String,
    pub plural: String,
    /// None when kmdr does not know (any `--get PLURAL`).
    pub namespaced: Option<bool>,
}

struct Known {
    kind: &'static str,
    group: &'static str,
    plural: &'static str,
    namespaced: bool,
    names: &'static [&'static str],
}

const KNOWN: &[Known] = &[
    Known {
        kind: "TenantControlPlane",
        group: "kamaji.clastix.io",
        plural: "tenantcontrolplanes",
        namespaced: true,
        names: &["tcp", "tcps", "tenantcontrolplane"],
    },
    Known {
        kind: "DataStore",
        group: "kamaji.clastix.io",
        plural: "datastores",
        namespaced: false,
        names: &["datastore", "ds"],
    },
    Known {
        kind: "Cluster",
        group: "cluster.x-k8s.io",
        plural: "clusters",
        namespaced: true,
        names: &["cluster", "cl"],
    },
    Known {
        kind: "KamajiControlPlane",
        group: "controlplane.cluster.x-k8s.io",
        plural: "kamajicontrolplanes",
        namespaced: true,
        names: &["kcp", "kamajicontrolplane"],
    },
    Known { kind: "Secret", group: "", plural: "secrets", namespaced: true, names: &["secret"] },
    Known { kind: "ConfigMap", group: "", plural: "configmaps", namespaced: true, names: &["configmap", "cm"] },
    Known { kind: "Namespace", group: "", plural: "namespaces", namespaced: false, names: &["namespace", "ns"] },
];

/// The API groups whose resources kube-apiserver itself stores (its
/// storage factory's resource prefix is the plural alone, without the
/// group: `/registry/deployments/NS/NAME`, `/registry/leases/NS/NAME`).
/// `apiextensions.k8s.io` and `apiregistration.k8s.io` are served by the
/// apiextensions and aggregator servers, which prefix the group, as for
/// every custom resource.
pub const BUILTIN_GROUPS: &[&str] = &[
    "admissionregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
];

/// Built-in resources stored under a path other than their plural, as
/// (group, plural, path under `/registry/`), from the REST storage of each
/// (pkg/registry/.../storage: `Store.DefaultQualifiedResource` and its
/// key prefix).
const REGISTRY_PATHS: &[(&str, &str, &str)] = &[
    ("", "services", "services/specs"),
    ("", "endpoints", "services/endpoints"),
    ("", "nodes", "minions"),
    ("networking.k8s.io", "ingresses", "ingress"),
];

/// The kinds `kmdr inspect` lists by default (Helm releases are Secrets of
/// their own type, listed as kind `HelmRelease`).
pub const LISTED: &[&str] = &["TenantControlPlane", "DataStore", "Cluster", "KamajiControlPlane", "HelmRelease"];

impl ResourceKind {
    /// Resolve a user's KIND: a known name (`tcp`, `datastore`, `secret`, ...),
    /// `PLURAL.GROUP`, or a core-group PLURAL as it appears under `/registry/`.
    pub fn resolve(name: &str) -> Result<ResourceKind, InspectError> {
        let n = name.trim().to_ascii_lowercase();
        if n.is_empty() || n.contains('/') {
            return Err(InspectError::BadKind(name.to_string()));
        }
        let known = KNOWN.iter().find(|k| {
            k.names.contains(&n.as_str())
                || k.plural == n
                || k.kind.eq_ignore_ascii_case(&n)
                || (!k.group.is_empty() && format!("{}.{}", k.plural, k.group) == n)
        });
        if let Some(k) = known {
            return Ok(ResourceKind {
                kind: k.kind.into(),
                group: k.group.into(),
                plural: k.plural.into(),
                namespaced: Some(k.namespaced),
            });
        }
        let (plural, group) =
            n.split_once('.').map(|(p, g)| (p.to_string(), g.to_string())).unwrap_or((n.clone(), String::new()));
        Ok(ResourceKind { kind: plural.clone(), group, plural, namespaced: None })
    }

    /// The etcd key prefix of this kind, ending in `/`: kube-apiserver keeps
    /// the resources it serves itself (the core group and the built-in
    /// groups, [`BUILTIN_GROUPS`]) under `/registry/PLURAL/`, a few under a
    /// path of their own ([`REGISTRY_PATHS`]); custom resources, CRDs and
    /// APIServices are under `/registry/GROUP/PLURAL/`.
    pub fn prefix(&self) -> String {
        let builtin = self.group.is_empty() || BUILTIN_GROUPS.contains(&self.group.as_str());
        if let Some((_, _, path)) =
            REGISTRY_PATHS.iter().find(|(g, p, _)| builtin && *g == self.group && *p == self.plural)
        {
            format!("/registry/{path}/")
        } else if builtin {
            format!("/registry/{}/", self.plural)
        } else {
            format!("/registry/{}/{}/", self.group, self.plural)
        }
    }

    /// The etcd key of `NS/NAME` (or `NAME` for cluster-scoped kinds).
    pub fn key_of(&self, name: &str) -> Result<String, InspectError> {
        let parts: Vec<&str> = name.split('/').collect();
        let ok = match (self.namespaced, parts.len()) {
            (Some(true), 2) | (Some(false), 1) | (None, 1 | 2) => parts.iter().all(|p| !p.is_empty()),
            _ => false,
        };
        if !ok {
            let want = if self.namespaced == Some(false) { "NAME (it is cluster-scoped)" } else { "NAMESPACE/NAME" };
            return Err(InspectError::BadName { kind: self.kind.clone(), name: name.into(), want: want.into() });
        }
        Ok(format!("{}{}", self.prefix(), name))
    }

    /// `(namespace, name)` of an etcd key under this kind's prefix.
    pub fn name_of(&self, key: &str) -> Option<(Option<String>, String)> {
        let rest = key.strip_prefix(&self.prefix())?;
        match rest.split_once('/') {
            Some((ns, name)) if !name.contains('/') => Some((Some(ns.into()), name.into())),
            None => Some((None, rest.into())),
            _ => None,
        }
    }
}

/// A stored value, decoded as far as the given keys allow.
#[derive(Debug, Clone)]
pub enum Stored {
    /// The object as JSON (decrypted when it was encrypted).
    Object(Value),
    /// Encrypted, and no EncryptionConfiguration was given.
    Encrypted(EncryptedHeader),
}

/// Decode the value stored at etcd key `key`: decrypt it when it is
/// encrypted and `keys` are given, then read JSON or the protobuf envelope.
pub fn decode_value(key: &str, value: &[u8], keys: Option<&EncryptionKeys>) -> Result<Stored, InspectError> {
    let plain;
    let value = match parse_encrypted(value) {
        None => value,
        Some((header, data)) => {
            if header.provider == "identity" {
                data
            } else {
                let Some(keys) = keys else { return Ok(Stored::Encrypted(header)) };
                plain = keys.decrypt(key, &header, data)?;
                // CBC has no authentication: a wrong key with lucky padding
                // gives noise, which is neither encoding.
                if !plain.starts_with(proto::MAGIC) && !plain.starts_with(b"{") {
                    return Err(EncryptionError::WrongKey {
                        key: key.into(),
                        provider: header.provider,
                        name: header.key_name,
                        detail: "the result is not a Kubernetes object".into(),
                    }
                    .into());
                }
                &plain
            }
        }
    };
    if let Some(raw) = value.strip_prefix(proto::MAGIC) {
        return decode_protobuf(key, raw).map(Stored::Object);
    }
    serde_json::from_slice(value).map(Stored::Object).map_err(|e| InspectError::Undecodable {
        key: key.into(),
        detail: format!("neither JSON nor the k8s protobuf envelope ({e})"),
    })
}

fn undecodable(key: &str, detail: impl std::fmt::Display) -> InspectError {
    InspectError::Undecodable { key: key.into(), detail: detail.to_string() }
}

fn decode_protobuf(key: &str, raw: &[u8]) -> Result<Value, InspectError> {
    use prost::Message;
    let u = proto::Unknown::decode(raw).map_err(|e| undecodable(key, format!("bad runtime.Unknown envelope: {e}")))?;
    let tm = u.type_meta.unwrap_or_default();
    let (api_version, kind) = (tm.api_version.unwrap_or_default(), tm.kind.unwrap_or_default());
    if u.content_encoding.as_deref().is_some_and(|e| !e.is_empty()) {
        return Err(undecodable(
            key,
            format!("content encoding {:?} is not supported", u.content_encoding.unwrap_or_default()),
        ));
    }
    let body = u.raw.unwrap_or_default();
    let b64 = |v: &[u8]| Value::String(base64::engine::general_purpose::STANDARD.encode(v));
    let mut obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Secret") => {
            let s =
                proto::Secret::decode(&body[..]).map_err(|e| undecodable(key, format!("bad Secret protobuf: {e}")))?;
            let mut o = Map::new();
            o.insert("metadata".into(), meta_json(s.metadata.unwrap_or_default()));
            o.insert("type".into(), json!(s.type_.unwrap_or_else(|| "Opaque".into())));
            if let Some(i) = s.immutable {
                o.insert("immutable".into(), json!(i));
            }
            o.insert("data".into(), Value::Object(s.data.iter().map(|(k, v)| (k.clone(), b64(v))).collect()));
            o
        }
        ("v1", "ConfigMap") => {
            let c = proto::ConfigMap::decode(&body[..])
                .map_err(|e| undecodable(key, format!("bad ConfigMap protobuf: {e}")))?;
            let mut o = Map::new();
            o.insert("metadata".into(), meta_json(c.metadata.unwrap_or_default()));
            if let Some(i) = c.immutable {
                o.insert("immutable".into(), json!(i));
            }
            o.insert("data".into(), json!(c.data));
            if !c.binary_data.is_empty() {
                o.insert(
                    "binaryData".into(),
                    Value::Object(c.binary_data.iter().map(|(k, v)| (k.clone(), b64(v))).collect()),
                );
            }
            o
        }
        ("v1", "Namespace") => {
            let n = proto::Namespace::decode(&body[..])
                .map_err(|e| undecodable(key, format!("bad Namespace protobuf: {e}")))?;
            let mut o = Map::new();
            o.insert("metadata".into(), meta_json(n.metadata.unwrap_or_default()));
            let finalizers = n.spec.unwrap_or_default().finalizers;
            o.insert(
                "spec".into(),
                if finalizers.is_empty() { json!({}) } else { json!({ "finalizers": finalizers }) },
            );
            if let Some(phase) = n.status.and_then(|s| s.phase).filter(|p| !p.is_empty()) {
                o.insert("status".into(), json!({ "phase": phase }));
            }
            o
        }
        ("v1", "ServiceAccount") => {
            let sa = proto::ServiceAccount::decode(&body[..])
                .map_err(|e| undecodable(key, format!("bad ServiceAccount protobuf: {e}")))?;
            let mut o = Map::new();
            o.insert("metadata".into(), meta_json(sa.metadata.unwrap_or_default()));
            if !sa.secrets.is_empty() {
                o.insert("secrets".into(), Value::Array(sa.secrets.into_iter().map(reference_json).collect()));
            }
            if !sa.image_pull_secrets.is_empty() {
                let names = sa.image_pull_secrets.into_iter().map(|r| json!({ "name": r.name.unwrap_or_default() }));
                o.insert("imagePullSecrets".into(), Value::Array(names.collect()));
            }
            if let Some(a) = sa.automount_service_account_token {
                o.insert("automountServiceAccountToken".into(), json!(a));
            }
            o
        }
        _ => {
            return Err(InspectError::Unsupported { key: key.into(), kind: format!("{api_version} {kind}") });
        }
    };
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!(kind));
    out.append(&mut obj);
    Ok(Value::Object(out))
}

/// An `ObjectReference` as JSON: the fields it has, in the API's names.
fn reference_json(r: proto::ObjectReference) -> Value {
    let fields = [
        ("kind", r.kind),
        ("namespace", r.namespace),
        ("name", r.name),
        ("uid", r.uid),
        ("apiVersion", r.api_version),
        ("resourceVersion", r.resource_version),
        ("fieldPath", r.field_path),
    ];
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k.to_string(), Value::String(v))))
            .collect(),
    )
}

fn meta_json(m: ObjectMeta) -> Value {
    let mut o = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            o.insert(k.into(), v);
        }
    };
    put("name", m.name.map(Value::String));
    put("generateName", m.generate_name.filter(|s| !s.is_empty()).map(Value::String));
    put("namespace", m.namespace.filter(|s| !s.is_empty()).map(Value::String));
    put("uid", m.uid.map(Value::String));
    put("resourceVersion", m.resource_version.filter(|s| !s.is_empty()).map(Value::String));
    put("generation", m.generation.filter(|g| *g != 0).map(|g| json!(g)));
    put(
        "creationTimestamp",
        m.creation_timestamp
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds.unwrap_or(0), 0))
            .map(|t| json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())),
    );
    put("labels", (!m.labels.is_empty()).then(|| json!(m.labels)));
    put("annotations", (!m.annotations.is_empty()).then(|| json!(m.annotations)));
    put("finalizers", (!m.finalizers.is_empty()).then(|| json!(m.finalizers)));
    Value::Object(o)
}

/// Turn a stored object into a manifest `kubectl apply` recreates: no
/// status, no server-set metadata; a TenantControlPlane keeps its
/// datastore schema and user (filled from `status.storage.setup` when the
/// spec lacks them: without them Kamaji would create a new, EMPTY control
/// plane).
pub fn clean_for_apply(obj: Value) -> Value {
    // The same cleaning as `backup tenants` (one set of rules): a TCP that
    // Kamaji never set up (no schema in spec or status) is cleaned as is.
    if obj["kind"] == "TenantControlPlane"
        && let Ok((manifest, ..)) = crate::kamaji::tcp_manifest(&obj)
    {
        return manifest;
    }
    crate::kamaji::clean_manifest(&obj)
}

/// One object found in the snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// `TenantControlPlane`, `DataStore`, `Cluster`, `KamajiControlPlane`,
    /// `HelmRelease`, or the kind asked for with `--kind`.
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub etcd_key: String,
    pub mod_revision: i64,
    /// Set when the value is encrypted and no config was given.
    pub encrypted: Option<EncryptedHeader>,
    /// The columns of this kind (see [`summarize`]).
    pub details: BTreeMap<String, Value>,
}

fn s(v: &Value) -> Value {
    match v {
        Value::String(x) if !x.is_empty() => v.clone(),
        Value::Null => Value::Null,
        Value::String(_) => Value::Null,
        other => other.clone(),
    }
}

fn first(a: &Value, b: &Value) -> Value {
    match s(a) {
        Value::Null => s(b),
        v => v,
    }
}

/// The columns shown for an object of `kind`.
pub fn summarize(kind: &str, obj: &Value) -> BTreeMap<String, Value> {
    let mut d = BTreeMap::new();
    let mut put = |k: &str, v: Value| {
        d.insert(k.to_string(), v);
    };
    match kind {
        "TenantControlPlane" => {
            let st = &obj["status"];
            put("dataStore", first(&obj["spec"]["dataStore"], &st["storage"]["dataStoreName"]));
            put("dataStoreSchema", first(&obj["spec"]["dataStoreSchema"], &st["storage"]["setup"]["schema"]));
            put("dataStoreUsername", first(&obj["spec"]["dataStoreUsername"], &st["storage"]["setup"]["user"]));
            put("schemaInSpec", json!(s(&obj["spec"]["dataStoreSchema"]) != Value::Null));
            put(
                "version",
                first(&obj["spec"]["kubernetes"]["version"], &st["kubernetesResources"]["version"]["version"]),
            );
            put("status", s(&st["kubernetesResources"]["version"]["status"]));
            put("endpoint", s(&st["controlPlaneEndpoint"]));
        }
        "DataStore" => {
            put("driver", s(&obj["spec"]["driver"]));
            put("endpoints", obj["spec"]["endpoints"].clone());
        }
        "Cluster" => {
            let cp = &obj["spec"]["controlPlaneRef"];
            put(
                "controlPlane",
                match (cp["kind"].as_str(), cp["name"].as_str()) {
                    (Some(k), Some(n)) => json!(format!("{k}/{n}")),
                    _ => Value::Null,
                },
            );
            put("phase", s(&obj["status"]["phase"]));
        }
        "KamajiControlPlane" => {
            put("version", s(&obj["spec"]["version"]));
            put("dataStoreName", s(&obj["spec"]["dataStoreName"]));
            put("ready", obj["status"]["ready"].clone());
        }
        "Secret" => {
            put("type", s(&obj["type"]));
            put(
                "keys",
                json!(obj["data"].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default()),
            );
        }
        _ => {}
    }
    d
}

/// The columns of a Helm release Secret: release, revision, status, chart
/// and version, decoded from `data.release` (base64 of gzip of JSON).
pub fn summarize_helm(secret: &Value) -> Result<BTreeMap<String, Value>, String> {
    let data = secret["data"]["release"].as_str().ok_or("the Secret has no data.release")?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(data).map_err(|e| e.to_string())?;
    let release = crate::platform::decode_release(&bytes)?;
    let f = crate::platform::release_fields(&release)?;
    Ok(BTreeMap::from([
        ("release".to_string(), json!(f.name)),
        ("revision".to_string(), json!(f.revision)),
        ("status".to_string(), json!(f.status)),
        ("chart".to_string(), json!(f.chart)),
        ("version".to_string(), json!(f.chart_version)),
        ("appVersion".to_string(), json!(f.app_version)),
    ]))
}

/// `(release, revision)` from a Helm release Secret's name
/// `sh.helm.release.v1.NAME.vN`.
pub fn helm_name(secret_name: &str) -> Option<(String, i64)> {
    let rest = secret_name.strip_prefix("sh.helm.release.v1.")?;
    let (name, rev) = rest.rsplit_once(".v")?;
    Some((name.to_string(), rev.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_resolve_to_etcd_prefixes() {
        let p = |k: &str| ResourceKind::resolve(k).unwrap().prefix();
        assert_eq!(p("tcp"), "/registry/kamaji.clastix.io/tenantcontrolplanes/");
        assert_eq!(p("TenantControlPlane"), "/registry/kamaji.clastix.io/tenantcontrolplanes/");
        assert_eq!(p("datastores"), "/registry/kamaji.clastix.io/datastores/");
        assert_eq!(p("clusters.cluster.x-k8s.io"), "/registry/cluster.x-k8s.io/clusters/");
        assert_eq!(p("kcp"), "/registry/controlplane.cluster.x-k8s.io/kamajicontrolplanes/");
        assert_eq!(p("secret"), "/registry/secrets/");
        // Built-in groups are stored without the group, as kube-apiserver does.
        assert_eq!(p("leases.coordination.k8s.io"), "/registry/leases/");
        assert_eq!(p("deployments.apps"), "/registry/deployments/");
        assert_eq!(p("services"), "/registry/services/specs/");
        assert_eq!(p("ingresses.networking.k8s.io"), "/registry/ingress/");
        assert_eq!(
            p("customresourcedefinitions.apiextensions.k8s.io"),
            "/registry/apiextensions.k8s.io/customresourcedefinitions/"
        );
        assert_eq!(p("widgets.example.com"), "/registry/example.com/widgets/");
        assert_eq!(p("pods"), "/registry/pods/");
        let ds = ResourceKind::resolve("datastore").unwrap();
        assert_eq!(ds.key_of("default").unwrap(), "/registry/kamaji.clastix.io/datastores/default");
        assert!(ds.key_of("ns/default").is_err());
        assert!(ResourceKind::resolve("tcp").unwrap().key_of("tenant1").is_err());
        assert_eq!(ds.name_of("/registry/kamaji.clastix.io/datastores/default"), Some((None, "default".into())));
    }

    #[test]
    fn tcp_manifest_keeps_its_schema() {
        let tcp = json!({
            "apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "TenantControlPlane",
            "metadata": {"name": "t1", "namespace": "ns", "uid": "u", "resourceVersion": "5", "generation": 2,
                         "creationTimestamp": "2026-01-01T00:00:00Z", "managedFields": [], "labels": {"a": "b"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"dataStore": "default", "kubernetes": {"version": "v1.30.0"}},
            "status": {"storage": {"setup": {"schema": "ns_t1", "user": "ns_t1"}}}
        });
        let m = clean_for_apply(tcp);
        assert_eq!(m["spec"]["dataStoreSchema"], "ns_t1");
        assert_eq!(m["spec"]["dataStoreUsername"], "ns_t1");
        assert!(m.get("status").is_none());
        let meta = m["metadata"].as_object().unwrap();
        assert_eq!(meta.keys().collect::<Vec<_>>(), ["labels", "name", "namespace"]);
        // A schema already in the spec wins.
        let kept = clean_for_apply(
            json!({"kind": "TenantControlPlane", "spec": {"dataStoreSchema": "old"}, "status": {"storage": {"setup": {"schema": "new"}}}}),
        );
        assert_eq!(kept["spec"]["dataStoreSchema"], "old");
    }

    #[test]
    fn helm_secret_names() {
        assert_eq!(helm_name("sh.helm.release.v1.kmetal.v12"), Some(("kmetal".into(), 12)));
        assert_eq!(helm_name("sh.helm.release.v1.a.vb.v3"), Some(("a.vb".into(), 3)));
        assert_eq!(helm_name("other"), None);
    }
}
