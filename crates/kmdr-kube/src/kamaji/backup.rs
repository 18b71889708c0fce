//! `kmdr backup tenants`: every TCP's data, manifests and Secrets, read
//! from the cluster and its DataStores.

use super::access::owner_of;
use super::*;
use crate::client::{KubeClient, SECRET, meta_name};
use crate::platform::to_yaml;
use kmdr_core::{KamajiDataStoreInfo, KamajiTenantInfo, KamajiTenantsInfo, Layer, Manifest, SourceInfo};
use kmdr_datastore::{self as tenant, AnyTenants, TenantStore};
use kmdr_repo::backuper::ManifestDraft;
use kmdr_repo::{BackupSession, Progress, Repository};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

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

pub(super) async fn secret_source(
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
