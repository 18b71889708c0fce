//! Velero (`velero.io/v1`, vmware-tanzu/velero `pkg/apis/velero/v1`).
//!
//! Backup: a `Backup` in Velero's namespace (`includedNamespaces`,
//! `labelSelector.matchLabels`, `snapshotMoveData`, `ttl`,
//! `storageLocation` as the plan says), waited on until `status.phase` is
//! `Completed`; or, with `schedule:`, the newest `Completed` Backup labelled
//! `velero.io/schedule-name=<schedule>` (taken by Velero's own schedule).
//! `PartiallyFailed`, `Failed` and `FailedValidation` are failures, reported
//! with `status.errors`/`warnings`, `failureReason` and `validationErrors`.
//!
//! Restore: a `Restore` with `spec.backupName`, waited on until `Completed`.
//! After a rebuild, Velero syncs Backups back from its BackupStorageLocation
//! once it is reinstalled against the same bucket; kmdr waits (up to the
//! entry's timeout) for the recorded Backup to appear.

use super::*;
use kmdr_core::VolumeItem;
pub use kmdr_core::volume::VeleroSpec;
use serde_json::json;

pub const BACKUP: ResourceKind =
    ResourceKind { api_version: "velero.io/v1", kind: "Backup", plural: "backups", namespaced: true };
pub const RESTORE: ResourceKind =
    ResourceKind { api_version: "velero.io/v1", kind: "Restore", plural: "restores", namespaced: true };
/// The label Velero puts on the Backups a Schedule creates.
pub const SCHEDULE_LABEL: &str = "velero.io/schedule-name";

const TOOL: &str = "Velero";

/// The Velero provider.
pub struct Velero<'a>(pub &'a VeleroSpec);

fn describe(what: &str, ns: &str, name: &str) -> String {
    format!("velero {what} describe {name} -n {ns} --details")
}

/// The outcome of a Backup or Restore by its `status.phase`.
fn phase_look(v: &Value) -> Look<Value> {
    let phase = text(v, "/status/phase").unwrap_or_else(|| "New".into());
    let count = |f: &str| v.pointer(&format!("/status/{f}")).and_then(Value::as_u64).unwrap_or(0);
    match phase.as_str() {
        "Completed" => Look::Done(v.clone()),
        "PartiallyFailed" => {
            Look::Failed(phase, format!(" with {} error(s) and {} warning(s)", count("errors"), count("warnings")))
        }
        "Failed" => Look::Failed(phase, text(v, "/status/failureReason").map(|r| format!(": {r}")).unwrap_or_default()),
        "FailedValidation" => {
            let errs: Vec<String> = v
                .pointer("/status/validationErrors")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            Look::Failed(phase, if errs.is_empty() { String::new() } else { format!(": {}", errs.join("; ")) })
        }
        _ => Look::Pending(format!("phase {phase}")),
    }
}

fn backup_time(b: &Value) -> Option<DateTime<Utc>> {
    time(b, "/status/startTimestamp").or_else(|| time(b, "/metadata/creationTimestamp"))
}

impl Velero<'_> {
    /// The Backups that protect this entry: those of its schedule, else
    /// those kmdr took for it and those whose namespaces cover the entry's.
    fn covers(&self, entry: &VolumeEntry, b: &Value) -> bool {
        let labels = b.pointer("/metadata/labels");
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str).map(str::to_string);
        if let Some(s) = &self.0.schedule {
            return label(SCHEDULE_LABEL).as_deref() == Some(s.as_str());
        }
        if label(ENTRY_LABEL).as_deref() == Some(entry.name.as_str()) {
            return true;
        }
        let included: Vec<&str> = b
            .pointer("/spec/includedNamespaces")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let all = included.is_empty() || included.contains(&"*");
        !self.0.included_namespaces.is_empty()
            && self.0.included_namespaces.iter().all(|n| all || included.contains(&n.as_str()))
    }

    fn newest_completed<'v>(&self, entry: &VolumeEntry, backups: &'v [Value]) -> Option<&'v Value> {
        backups
            .iter()
            .filter(|b| text(b, "/status/phase").as_deref() == Some("Completed") && self.covers(entry, b))
            .max_by_key(|b| backup_time(b))
    }
}

impl VolumeProvider for Velero<'_> {
    async fn backup(
        &self,
        kube: &KubeClient,
        entry: &VolumeEntry,
    ) -> Result<(VolumeBackupInfo, Vec<Value>), VolumeError> {
        let s = self.0;
        let ns = s.namespace.as_str();
        probe(kube, &BACKUP, Some(ns), TOOL, entry).await?;
        let (backup, taken_by) = match &s.schedule {
            Some(schedule) => {
                let backups = kube.list_objects(&BACKUP, Some(ns), &format!("{SCHEDULE_LABEL}={schedule}")).await?;
                let Some(b) = self.newest_completed(entry, &backups) else {
                    return Err(VolumeError::NothingFound(format!(
                        "Velero schedule {schedule} has no Completed Backup in namespace {ns}: check with `velero schedule describe {schedule} -n {ns}` and `velero backup get -n {ns} -l {SCHEDULE_LABEL}={schedule}`"
                    )));
                };
                (b.clone(), "schedule")
            }
            None => {
                let name = object_name(&entry.name, Utc::now());
                let mut spec = json!({});
                if !s.included_namespaces.is_empty() {
                    spec["includedNamespaces"] = json!(s.included_namespaces);
                }
                if !s.label_selector.is_empty() {
                    spec["labelSelector"] = json!({"matchLabels": s.label_selector});
                }
                if let Some(m) = s.snapshot_move_data {
                    spec["snapshotMoveData"] = json!(m);
                }
                if let Some(t) = &s.ttl {
                    spec["ttl"] = json!(t);
                }
                if let Some(l) = &s.storage_location {
                    spec["storageLocation"] = json!(l);
                }
                kube.create_object(&BACKUP, Some(ns), &manifest(&BACKUP, Some(ns), &name, &entry.name, spec)).await?;
                let w = Watched {
                    kind: &BACKUP,
                    namespace: Some(ns),
                    name: &name,
                    inspect: describe("backup", ns, &name),
                    tool: TOOL,
                };
                (wait_for(kube, entry, &w, phase_look).await?, "kmdr")
            }
        };
        let name = text(&backup, "/metadata/name").unwrap_or_default();
        let included: Vec<String> = backup
            .pointer("/spec/includedNamespaces")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let info = VolumeBackupInfo {
            entry: entry.name.clone(),
            provider: "velero".into(),
            cluster: kube.url().to_string(),
            taken_by: taken_by.into(),
            schedule: s.schedule.clone(),
            point_in_time: backup_time(&backup).unwrap_or_else(Utc::now),
            completed_at: time(&backup, "/status/completionTimestamp"),
            phase: "Completed".into(),
            warnings: backup.pointer("/status/warnings").and_then(Value::as_u64).unwrap_or(0),
            items: vec![VolumeItem {
                kind: "Backup".into(),
                namespace: Some(ns.to_string()),
                name,
                source: Some(if included.is_empty() { "*".into() } else { included.join(",") }),
                class: text(&backup, "/spec/storageLocation"),
                created_at: backup_time(&backup),
                ..Default::default()
            }],
        };
        Ok((info, vec![clean(&backup)]))
    }

    async fn newest(&self, kube: &KubeClient, entry: &VolumeEntry) -> Result<Option<NewestBackup>, VolumeError> {
        let ns = self.0.namespace.as_str();
        probe(kube, &BACKUP, Some(ns), TOOL, entry).await?;
        let backups = kube.list_objects(&BACKUP, Some(ns), "").await?;
        Ok(self.newest_completed(entry, &backups).and_then(|b| {
            let by = if b.pointer("/metadata/labels").and_then(|l| l.get(SCHEDULE_LABEL)).is_some() {
                "schedule"
            } else {
                "kmdr"
            };
            Some(NewestBackup {
                object: format!("Backup {ns}/{}", text(b, "/metadata/name")?),
                point_in_time: backup_time(b)?,
                taken_by: by.into(),
            })
        }))
    }

    async fn plan_restore(
        &self,
        kube: &KubeClient,
        entry: &VolumeEntry,
        record: &VolumeBackupInfo,
    ) -> Result<VolumeRestorePlan, VolumeError> {
        let s = self.0;
        let ns = s.namespace.as_str();
        probe(kube, &RESTORE, Some(ns), TOOL, entry).await?;
        let Some(item) = record.items.iter().find(|i| i.kind == "Backup") else {
            return Err(VolumeError::NothingFound(format!(
                "the record of entry {} names no Velero Backup",
                entry.name
            )));
        };
        let present = kube.get_object(&BACKUP, Some(ns), &item.name).await?.is_some();
        let mut objects = vec![PlannedObject {
            action: if present { "use" } else { "wait" }.into(),
            kind: "Backup".into(),
            namespace: Some(ns.to_string()),
            name: item.name.clone(),
            note: if present {
                "in the cluster".into()
            } else {
                "not in the cluster yet: Velero syncs it from its BackupStorageLocation (`velero backup-location get`)"
                    .into()
            },
            manifest: Value::Null,
        }];
        let name = object_name(item.name.trim_start_matches("kmdr-"), Utc::now());
        let mut spec = json!({"backupName": item.name, "restorePVs": true});
        if !s.included_namespaces.is_empty() {
            spec["includedNamespaces"] = json!(s.included_namespaces);
        }
        if let Some(target) = &s.restore_namespace {
            let map: BTreeMap<&String, &String> = s.included_namespaces.iter().map(|n| (n, target)).collect();
            spec["namespaceMapping"] = json!(map);
        }
        let note = format!("from Backup {}, wait until Completed", item.name);
        objects.push(PlannedObject::create(&RESTORE, Some(ns), &name, &entry.name, spec, note));
        Ok(VolumeRestorePlan { entry: entry.name.clone(), provider: "velero".into(), objects })
    }

    async fn restore(
        &self,
        kube: &KubeClient,
        entry: &VolumeEntry,
        plan: &VolumeRestorePlan,
    ) -> Result<VolumeRestoreOutcome, VolumeError> {
        let ns = self.0.namespace.as_str();
        let mut out = VolumeRestoreOutcome { restored: 0, objects: Vec::new(), warnings: 0 };
        for o in &plan.objects {
            match o.action.as_str() {
                "wait" => {
                    let w = Watched {
                        kind: &BACKUP,
                        namespace: Some(ns),
                        name: &o.name,
                        inspect: format!(
                            "velero backup get {} -n {ns}` and `velero backup-location get -n {ns}",
                            o.name
                        ),
                        tool: TOOL,
                    };
                    wait_for(kube, entry, &w, phase_look).await?;
                }
                "create" => {
                    kube.create_object(&RESTORE, Some(ns), &o.manifest).await?;
                    let w = Watched {
                        kind: &RESTORE,
                        namespace: Some(ns),
                        name: &o.name,
                        inspect: describe("restore", ns, &o.name),
                        tool: TOOL,
                    };
                    let r = wait_for(kube, entry, &w, phase_look).await?;
                    out.warnings += r.pointer("/status/warnings").and_then(Value::as_u64).unwrap_or(0);
                    out.restored += 1;
                    out.objects.push(format!("Restore {ns}/{}", o.name));
                }
                _ => {}
            }
        }
        Ok(out)
    }
}
