//! `kmdr restore tenants`: the plan (data first, then Secrets, then the
//! TCP), carried out without deleting anything, then waiting for Ready.

use super::backup::secret_source;
use super::*;
use crate::client::{KubeClient, NAMESPACE, ResourceKind, SECRET, meta_name};
use crate::platform::values_from_yaml;
use kmdr_core::{KamajiTenantInfo, KamajiTenantsInfo, Manifest, SourceInfo};
use kmdr_datastore::{self as tenant, AnyTenants, TenantError, TenantStore};
use kmdr_repo::restorer::{FileCheck, restore_file};
use kmdr_repo::{Progress, Repository};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

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
