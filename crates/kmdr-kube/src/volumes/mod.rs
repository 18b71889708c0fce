//! The persistent-data layer: kmdr drives and times the volume backup tool
//! the operator already runs, through the Kubernetes API. It never copies
//! volume bytes. Three providers sit behind one small trait
//! ([`VolumeProvider`]):
//!
//! | provider | backup                                             | restore                                              |
//! |----------|----------------------------------------------------|------------------------------------------------------|
//! | `csi`    | a `VolumeSnapshot` per selected PVC, until `readyToUse` | a PVC with `dataSource` = the snapshot, until `Bound`; after a rebuild, a pre-provisioned `VolumeSnapshotContent` (`snapshotHandle`, `Retain`) and a `VolumeSnapshot` bound to it first |
//! | `velero` | a `Backup` (or the newest `Completed` one of a `Schedule`), until `Completed` | a `Restore` from it, until `Completed`          |
//! | `kasten` | a `RunAction` of a K10 policy, until `Complete`; then its newest `RestorePoint` | a `RestoreAction` from it (a `RestorePoint` bound to its `RestorePointContent` after a rebuild) |
//!
//! What was taken is recorded as a small backup in the repository
//! ([`kmdr_core::VolumeBackupInfo`]), so that a restore after the cluster was
//! rebuilt knows what to ask the tool for.

pub mod csi;
pub mod kasten;
pub mod velero;

pub use kmdr_core::volume::{ProviderSpec, VolumeEntry};

use crate::client::{KubeClient, KubeError, ResourceKind};
use chrono::{DateTime, Utc};
use kmdr_core::{Classify, ErrorClass};
use kmdr_core::{Layer, Manifest, SourceInfo, VolumeBackupInfo};
use kmdr_repo::backuper::ManifestDraft;
use kmdr_repo::{BackupSession, Repository};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The backup kind of persistent-data records.
pub const KIND: &str = "volumes";
/// The file of a volume backup: the tool's objects as read at backup time.
pub const OBJECTS_FILE: &str = "objects.json";
/// The label kmdr puts on every object it creates: the plan entry.
pub const ENTRY_LABEL: &str = "kmdr.io/entry";

/// What can go wrong driving a volume backup tool. Every message names the
/// object to look at and the tool's own command to inspect it.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// Talking to Kubernetes failed.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// The API does not serve the tool's resource: the tool is not installed.
    #[error(
        "{tool} is not installed at {url}: the Kubernetes API has no {crd} (404). Install {tool}, or fix the provider of volumes entry {entry}; check with `kubectl get crd {crd}`"
    )]
    NotInstalled { tool: String, crd: String, url: String, entry: String },
    /// The tool did not finish within the entry's timeout.
    #[error(
        "{what} was still {state} after {waited}: look at it with `{inspect}`; raise the entry's `timeout:` if {tool} is only slow"
    )]
    TimedOut { what: String, state: String, waited: String, inspect: String, tool: String },
    /// The tool finished, but not successfully.
    #[error("{what} ended {phase}{detail}: look at it with `{inspect}`")]
    Failed { what: String, phase: String, detail: String, inspect: String },
    /// Nothing to back up or restore was found.
    #[error("{0}")]
    NothingFound(String),
    /// A restore would overwrite what exists; kmdr never deletes volumes.
    #[error(
        "{what} already exists: kmdr does not replace volumes; delete it yourself (`{delete}`) or restore elsewhere (`restoreNamespace:`)"
    )]
    Exists { what: String, delete: String },
    /// The backup is not a volume backup of this entry.
    #[error(
        "backup {id} is not a volume backup of entry {entry}: pick one listed by `kmdr backups list --kind volumes`"
    )]
    WrongKind { id: String, entry: String },
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] kmdr_repo::Error),
}

impl Classify for VolumeError {
    fn class(&self) -> ErrorClass {
        match self {
            VolumeError::NotInstalled { .. } | VolumeError::Exists { .. } => ErrorClass::Refused,
            VolumeError::TimedOut { .. } => ErrorClass::Timeout,
            // The tool reported failure; or its API objects could not be read.
            VolumeError::Failed { .. } | VolumeError::Kube(_) => ErrorClass::Source,
            VolumeError::NothingFound(_) | VolumeError::WrongKind { .. } => ErrorClass::NotFound,
            VolumeError::Repo(r) => r.class(),
        }
    }
}

/// The newest completed backup the tool holds for an entry, whoever took it.
#[derive(Debug, Clone, Serialize)]
pub struct NewestBackup {
    /// The tool's object (`Backup velero/NAME`, `RestorePoint NS/NAME`, ...).
    pub object: String,
    pub point_in_time: DateTime<Utc>,
    /// `kmdr` or `schedule`.
    pub taken_by: String,
}

/// One object a restore creates (or uses), for `--dry-run` and reports.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedObject {
    /// `create`, `use` (exists already) or `wait`.
    pub action: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    /// Why, in a few words.
    pub note: String,
    /// The manifest created (`create` only).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub manifest: Value,
}

impl PlannedObject {
    /// An object to create: its manifest is [`manifest`]'s.
    pub(crate) fn create(
        kind: &ResourceKind,
        namespace: Option<&str>,
        name: &str,
        entry: &str,
        spec: Value,
        note: String,
    ) -> PlannedObject {
        PlannedObject {
            action: "create".into(),
            kind: kind.kind.into(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
            note,
            manifest: manifest(kind, namespace, name, entry, spec),
        }
    }
}

/// A manifest kmdr creates: apiVersion, kind, name, namespace (when
/// namespaced), the entry label, and `spec`.
pub(crate) fn manifest(kind: &ResourceKind, namespace: Option<&str>, name: &str, entry: &str, spec: Value) -> Value {
    let mut metadata = serde_json::json!({"name": name, "labels": {ENTRY_LABEL: entry}});
    if let Some(ns) = namespace {
        metadata["namespace"] = serde_json::json!(ns);
    }
    serde_json::json!({"apiVersion": kind.api_version, "kind": kind.kind, "metadata": metadata, "spec": spec})
}

/// What a restore of one entry does, computed before anything is written.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeRestorePlan {
    pub entry: String,
    pub provider: String,
    pub objects: Vec<PlannedObject>,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeRestoreOutcome {
    /// Volumes (PVCs) or tool restores that completed.
    pub restored: u64,
    /// The tool's own restore objects (`Restore velero/NAME`, ...).
    pub objects: Vec<String>,
    pub warnings: u64,
}

/// The contract of a volume backup tool. Implementations only talk to the
/// Kubernetes API: create the tool's objects, wait for their status, read
/// back what the tool wrote. They never delete the user's data, and every
/// error names the object and the tool's command to inspect it.
pub trait VolumeProvider {
    /// Take a backup now (or, where the entry says so, pick the newest
    /// completed one the tool's own schedule took) and wait until the tool
    /// reports it complete; return what to record.
    fn backup(
        &self,
        kube: &KubeClient,
        entry: &VolumeEntry,
    ) -> impl Future<Output = Result<(VolumeBackupInfo, Vec<Value>), VolumeError>>;

    /// The newest completed backup the tool holds for this entry, including
    /// those its own schedules took.
    fn newest(
        &self,
        kube: &KubeClient,
        entry: &VolumeEntry,
    ) -> impl Future<Output = Result<Option<NewestBackup>, VolumeError>>;

    /// What a restore of `record` would create, reading the cluster only.
    fn plan_restore(
        &self,
        kube: &KubeClient,
        entry: &VolumeEntry,
        record: &VolumeBackupInfo,
    ) -> impl Future<Output = Result<VolumeRestorePlan, VolumeError>>;

    /// Carry out `plan` and wait until the tool reports the restore complete.
    fn restore(
        &self,
        kube: &KubeClient,
        entry: &VolumeEntry,
        plan: &VolumeRestorePlan,
    ) -> impl Future<Output = Result<VolumeRestoreOutcome, VolumeError>>;
}

/// Back up one entry with its provider and record it in the repository as
/// one backup (kind `volumes`, series `volumes/<entry>`). Nothing is stored
/// unless the tool reported success.
pub async fn backup_entry(
    repo: &Repository,
    kube: &KubeClient,
    entry: &VolumeEntry,
    tags: &BTreeMap<String, String>,
) -> Result<Manifest, VolumeError> {
    let (info, objects) = match &entry.provider {
        ProviderSpec::Csi(s) => csi::Csi(s).backup(kube, entry).await?,
        ProviderSpec::Velero(s) => velero::Velero(s).backup(kube, entry).await?,
        ProviderSpec::Kasten(s) => kasten::Kasten(s).backup(kube, entry).await?,
    };
    let json = serde_json::to_vec_pretty(&objects).expect("JSON serializes");
    let mut session = BackupSession::start(repo, "kmdr backup volumes").await?;
    if let Err(e) = session.add_file(OBJECTS_FILE, &mut json.as_slice(), None).await {
        session.abort().await;
        return Err(e.into());
    }
    let draft = ManifestDraft {
        kind: KIND.into(),
        layer: Layer::PersistentData,
        series: series(&entry.name),
        tags: tags.clone(),
        source: SourceInfo::VolumeBackup(info),
    };
    Ok(session.commit(draft).await?)
}

/// The repository series of an entry's records.
pub fn series(entry: &str) -> String {
    format!("volumes/{entry}")
}

/// The record a manifest holds, checked to belong to `entry`.
pub fn record<'m>(m: &'m Manifest, entry: &str) -> Result<&'m VolumeBackupInfo, VolumeError> {
    match &m.source {
        SourceInfo::VolumeBackup(v) if v.entry == entry => Ok(v),
        _ => Err(VolumeError::WrongKind { id: m.id.to_string(), entry: entry.to_string() }),
    }
}

/// The newest completed backup the tool holds for an entry.
pub async fn newest(kube: &KubeClient, entry: &VolumeEntry) -> Result<Option<NewestBackup>, VolumeError> {
    match &entry.provider {
        ProviderSpec::Csi(s) => csi::Csi(s).newest(kube, entry).await,
        ProviderSpec::Velero(s) => velero::Velero(s).newest(kube, entry).await,
        ProviderSpec::Kasten(s) => kasten::Kasten(s).newest(kube, entry).await,
    }
}

/// What restoring `record` would do.
pub async fn plan_restore(
    kube: &KubeClient,
    entry: &VolumeEntry,
    record: &VolumeBackupInfo,
) -> Result<VolumeRestorePlan, VolumeError> {
    match &entry.provider {
        ProviderSpec::Csi(s) => csi::Csi(s).plan_restore(kube, entry, record).await,
        ProviderSpec::Velero(s) => velero::Velero(s).plan_restore(kube, entry, record).await,
        ProviderSpec::Kasten(s) => kasten::Kasten(s).plan_restore(kube, entry, record).await,
    }
}

/// Carry out a restore plan.
pub async fn restore(
    kube: &KubeClient,
    entry: &VolumeEntry,
    plan: &VolumeRestorePlan,
) -> Result<VolumeRestoreOutcome, VolumeError> {
    match &entry.provider {
        ProviderSpec::Csi(s) => csi::Csi(s).restore(kube, entry, plan).await,
        ProviderSpec::Velero(s) => velero::Velero(s).restore(kube, entry, plan).await,
        ProviderSpec::Kasten(s) => kasten::Kasten(s).restore(kube, entry, plan).await,
    }
}

// ---- shared machinery ------------------------------------------------------

/// What a look at an object found while waiting.
pub(crate) enum Look<T> {
    /// Finished well.
    Done(T),
    /// Still going; the text says in what state.
    Pending(String),
    /// Finished badly: (phase, detail).
    Failed(String, String),
}

/// A watched object: how to find it and how to tell the user to inspect it.
pub(crate) struct Watched<'a> {
    pub kind: &'a ResourceKind,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    /// The tool's command to inspect it.
    pub inspect: String,
    /// The tool's name for messages.
    pub tool: &'a str,
}

impl Watched<'_> {
    fn what(&self) -> String {
        format!("{} {}{}", self.kind.kind, self.namespace.map(|n| format!("{n}/")).unwrap_or_default(), self.name)
    }
}

/// Look at `w` every `entry.poll` until `look` says done or failed, or the
/// entry's timeout passes. An object that is absent counts as pending.
pub(crate) async fn wait_for<T>(
    kube: &KubeClient,
    entry: &VolumeEntry,
    w: &Watched<'_>,
    look: impl Fn(&Value) -> Look<T>,
) -> Result<T, VolumeError> {
    let started = std::time::Instant::now();
    loop {
        let state = match kube.get_object(w.kind, w.namespace, w.name).await? {
            None => "absent".to_string(),
            Some(obj) => match look(&obj) {
                Look::Done(t) => return Ok(t),
                Look::Failed(phase, detail) => {
                    return Err(VolumeError::Failed { what: w.what(), phase, detail, inspect: w.inspect.clone() });
                }
                Look::Pending(s) => s,
            },
        };
        if started.elapsed() >= entry.timeout {
            return Err(VolumeError::TimedOut {
                what: w.what(),
                state,
                waited: kmdr_core::human_duration(entry.timeout),
                inspect: w.inspect.clone(),
                tool: w.tool.to_string(),
            });
        }
        tokio::time::sleep(entry.poll).await;
    }
}

/// Map a 404 on the tool's collection to "not installed".
pub(crate) async fn probe(
    kube: &KubeClient,
    kind: &ResourceKind,
    namespace: Option<&str>,
    tool: &str,
    entry: &VolumeEntry,
) -> Result<(), VolumeError> {
    match kube.list_objects(kind, namespace, "kmdr.io/probe=1").await {
        Ok(_) => Ok(()),
        Err(KubeError::NotFound { .. }) => Err(VolumeError::NotInstalled {
            tool: tool.to_string(),
            crd: kind.resource_name(),
            url: kube.url().to_string(),
            entry: entry.name.clone(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// The Namespace kind (core v1).
pub const NAMESPACE: ResourceKind =
    ResourceKind { api_version: "v1", kind: "Namespace", plural: "namespaces", namespaced: false };

/// Plan the creation of namespace `ns` when the (rebuilt) cluster lacks it:
/// PVCs, RestorePoints and RestoreActions cannot be created without it.
pub(crate) async fn plan_namespace(
    kube: &KubeClient,
    ns: &str,
    objects: &mut Vec<PlannedObject>,
) -> Result<(), VolumeError> {
    if objects.iter().any(|o| o.kind == "Namespace" && o.name == ns)
        || kube.get_object(&NAMESPACE, None, ns).await?.is_some()
    {
        return Ok(());
    }
    objects.push(PlannedObject {
        action: "create".into(),
        kind: "Namespace".into(),
        namespace: None,
        name: ns.to_string(),
        note: "missing in this cluster".into(),
        manifest: serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    });
    Ok(())
}

/// Create a planned Namespace (the other kinds are each provider's).
pub(crate) async fn create_namespace(kube: &KubeClient, o: &PlannedObject) -> Result<(), VolumeError> {
    kube.create_object(&NAMESPACE, None, &o.manifest).await?;
    Ok(())
}

/// A name for an object kmdr creates: `kmdr-<base>-<UTC yyyymmddhhmmss>`,
/// cut to 63 characters (a DNS label).
pub(crate) fn object_name(base: &str, at: DateTime<Utc>) -> String {
    let stamp = at.format("%Y%m%d%H%M%S").to_string();
    let keep = 63 - "kmdr--".len() - stamp.len();
    let base: String = base.chars().take(keep).collect();
    format!("kmdr-{}-{stamp}", base.trim_end_matches('-'))
}

/// A string field at a JSON pointer.
pub(crate) fn text(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

/// An RFC 3339 time at a JSON pointer.
pub(crate) fn time(v: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    text(v, pointer).and_then(|s| DateTime::parse_from_rfc3339(&s).ok()).map(|t| t.with_timezone(&Utc))
}

/// The object without server-owned metadata, for the record file.
pub(crate) fn clean(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn object_names_are_dns_labels() {
        let t = Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 5).unwrap();
        assert_eq!(object_name("db-data", t), "kmdr-db-data-20261127080005");
        let long = object_name(&"x".repeat(100), t);
        assert!(long.len() <= 63, "{long}");
        assert!(long.ends_with("-20261127080005"));
    }
}
