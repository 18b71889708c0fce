//! CSI snapshots (`snapshot.storage.k8s.io/v1`, kubernetes-csi/external-snapshotter).
//!
//! Backup: one `VolumeSnapshot` per selected PVC with the plan's
//! `VolumeSnapshotClass`; wait for `status.readyToUse`; read the bound
//! `VolumeSnapshotContent` (`status.snapshotHandle`, `spec.driver`) and
//! record it with the PVC's shape (class, access modes, size).
//!
//! Restore: a PVC of the same name whose `dataSource` is the snapshot; wait
//! for `Bound`. When the `VolumeSnapshot` is gone (the cluster was rebuilt,
//! or the restore goes to another namespace), first a pre-provisioned
//! `VolumeSnapshotContent` (`source.snapshotHandle`, `deletionPolicy:
//! Retain`, the driver) and a `VolumeSnapshot` bound to it
//! (`source.volumeSnapshotContentName`), as the external-snapshotter documents
//! for importing an existing snapshot.

use super::*;
use kmdr_core::VolumeItem;
pub use kmdr_core::volume::CsiSpec;
use serde_json::json;

pub const VOLUME_SNAPSHOT: ResourceKind = ResourceKind {
    api_version: "snapshot.storage.k8s.io/v1",
    kind: "VolumeSnapshot",
    plural: "volumesnapshots",
    namespaced: true,
};
pub const VOLUME_SNAPSHOT_CONTENT: ResourceKind = ResourceKind {
    api_version: "snapshot.storage.k8s.io/v1",
    kind: "VolumeSnapshotContent",
    plural: "volumesnapshotcontents",
    namespaced: false,
};
pub const PVC: ResourceKind = ResourceKind {
    api_version: "v1",
    kind: "PersistentVolumeClaim",
    plural: "persistentvolumeclaims",
    namespaced: true,
};

const TOOL: &str = "the CSI snapshot controller (external-snapshotter)";

/// The CSI snapshot provider.
pub struct Csi<'a>(pub &'a CsiSpec);

fn describe_vs(ns: &str, name: &str) -> String {
    format!("kubectl describe volumesnapshot {name} -n {ns}")
}

/// A VolumeSnapshot's readiness: ready, or still waiting (with the
/// controller's last error, which it retries).
fn vs_look(v: &Value) -> Look<Value> {
    if v.pointer("/status/readyToUse").and_then(Value::as_bool) == Some(true) {
        return Look::Done(v.clone());
    }
    match text(v, "/status/error/message") {
        Some(m) => Look::Pending(format!("not readyToUse (last error: {m})")),
        None => Look::Pending("not readyToUse".into()),
    }
}

impl Csi<'_> {
    async fn selected_pvcs(&self, kube: &KubeClient) -> Result<Vec<Value>, VolumeError> {
        let s = self.0;
        if s.pvcs.is_empty() {
            let sel = s.selector.clone().unwrap_or_default();
            let found = kube.list_objects(&PVC, Some(&s.namespace), &sel).await?;
            if found.is_empty() {
                return Err(VolumeError::NothingFound(format!(
                    "no PVC in namespace {} matches selector {sel:?}: check with `kubectl get pvc -n {} -l '{sel}'`",
                    s.namespace, s.namespace
                )));
            }
            return Ok(found);
        }
        let mut out = Vec::new();
        for name in &s.pvcs {
            match kube.get_object(&PVC, Some(&s.namespace), name).await? {
                Some(p) => out.push(p),
                None => {
                    return Err(VolumeError::NothingFound(format!(
                        "PVC {}/{name} does not exist: check the entry's `pvcs:` with `kubectl get pvc -n {}`",
                        s.namespace, s.namespace
                    )));
                }
            }
        }
        Ok(out)
    }
}

impl VolumeProvider for Csi<'_> {
    async fn backup(
        &self,
        kube: &KubeClient,
        entry: &VolumeEntry,
    ) -> Result<(VolumeBackupInfo, Vec<Value>), VolumeError> {
        let s = self.0;
        probe(kube, &VOLUME_SNAPSHOT, Some(&s.namespace), TOOL, entry).await?;
        let pvcs = self.selected_pvcs(kube).await?;
        let started = Utc::now();
        // Create every snapshot first (they are taken as close together as
        // the driver allows), then wait for each.
        let mut created = Vec::new();
        for pvc in &pvcs {
            let pvc_name = text(pvc, "/metadata/name").unwrap_or_default();
            let name = object_name(&pvc_name, started);
            let spec =
                json!({"volumeSnapshotClassName": s.snapshot_class, "source": {"persistentVolumeClaimName": pvc_name}});
            kube.create_object(
                &VOLUME_SNAPSHOT,
                Some(&s.namespace),
                &manifest(&VOLUME_SNAPSHOT, Some(&s.namespace), &name, &entry.name, spec),
            )
            .await?;
            created.push((pvc.clone(), pvc_name, name));
        }
        let mut items = Vec::new();
        let mut objects = Vec::new();
        for (pvc, pvc_name, name) in created {
            let w = Watched {
                kind: &VOLUME_SNAPSHOT,
                namespace: Some(&s.namespace),
                name: &name,
                inspect: describe_vs(&s.namespace, &name),
                tool: TOOL,
            };
            let vs = wait_for(kube, entry, &w, vs_look).await?;
            let content_name = text(&vs, "/status/boundVolumeSnapshotContentName");
            let content = match &content_name {
                Some(c) => kube.get_object(&VOLUME_SNAPSHOT_CONTENT, None, c).await?,
                None => None,
            };
            let Some(content) = content else {
                return Err(VolumeError::Failed {
                    what: format!("VolumeSnapshot {}/{name}", s.namespace),
                    phase: "readyToUse without a bound VolumeSnapshotContent".into(),
                    detail: format!(
                        " ({})",
                        content_name.unwrap_or_else(|| "status.boundVolumeSnapshotContentName is empty".into())
                    ),
                    inspect: describe_vs(&s.namespace, &name),
                });
            };
            let handle = text(&content, "/status/snapshotHandle");
            if handle.is_none() {
                return Err(VolumeError::Failed {
                    what: format!("VolumeSnapshotContent {}", content_name.clone().unwrap_or_default()),
                    phase: "without status.snapshotHandle".into(),
                    detail: String::new(),
                    inspect: format!("kubectl describe volumesnapshotcontent {}", content_name.unwrap_or_default()),
                });
            }
            items.push(VolumeItem {
                kind: "VolumeSnapshot".into(),
                namespace: Some(s.namespace.clone()),
                name: name.clone(),
                source: Some(pvc_name),
                content: content_name,
                handle,
                driver: text(&content, "/spec/driver"),
                class: Some(s.snapshot_class.clone()),
                restore_size: text(&vs, "/status/restoreSize")
                    .or_else(|| content.pointer("/status/restoreSize").and_then(Value::as_i64).map(|b| b.to_string())),
                created_at: time(&vs, "/status/creationTime"),
                storage_class: text(&pvc, "/spec/storageClassName"),
                access_modes: pvc
                    .pointer("/spec/accessModes")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|m| m.as_str().map(str::to_string)).collect())
                    .unwrap_or_default(),
                volume_mode: text(&pvc, "/spec/volumeMode"),
                request: text(&pvc, "/spec/resources/requests/storage"),
            });
            objects.push(clean(&vs));
            objects.push(clean(&content));
            objects.push(clean(&pvc));
        }
        // The point in time protected is the oldest snapshot's.
        let point = items.iter().filter_map(|i| i.created_at).min().unwrap_or(started);
        let info = VolumeBackupInfo {
            entry: entry.name.clone(),
            provider: "csi".into(),
            cluster: kube.url().to_string(),
            taken_by: "kmdr".into(),
            schedule: None,
            point_in_time: point,
            completed_at: Some(Utc::now()),
            phase: "readyToUse".into(),
            warnings: 0,
            items,
        };
        Ok((info, objects))
    }

    async fn newest(&self, kube: &KubeClient, entry: &VolumeEntry) -> Result<Option<NewestBackup>, VolumeError> {
        let s = self.0;
        probe(kube, &VOLUME_SNAPSHOT, Some(&s.namespace), TOOL, entry).await?;
        // Any ready snapshot of a selected PVC counts, whoever took it; the
        // entry is as old as its stalest PVC's newest snapshot.
        let pvcs: Vec<String> =
            self.selected_pvcs(kube).await?.iter().filter_map(|p| text(p, "/metadata/name")).collect();
        let snaps = kube.list_objects(&VOLUME_SNAPSHOT, Some(&s.namespace), "").await?;
        let mut oldest: Option<(DateTime<Utc>, String, String)> = None;
        for pvc in &pvcs {
            let best = snaps
                .iter()
                .filter(|v| text(v, "/spec/source/persistentVolumeClaimName").as_deref() == Some(pvc.as_str()))
                .filter(|v| v.pointer("/status/readyToUse").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| {
                    Some((time(v, "/status/creationTime").or_else(|| time(v, "/metadata/creationTimestamp"))?, v))
                })
                .max_by_key(|(t, _)| *t);
            let Some((t, v)) = best else { return Ok(None) };
            let by = if v.pointer(&format!("/metadata/labels/{}", ENTRY_LABEL.replace('/', "~1"))).is_some() {
                "kmdr"
            } else {
                "schedule"
            };
            if oldest.as_ref().is_none_or(|(o, _, _)| t < *o) {
                oldest = Some((
                    t,
                    format!("VolumeSnapshot {}/{}", s.namespace, text(v, "/metadata/name").unwrap_or_default()),
                    by.into(),
                ));
            }
        }
        Ok(oldest.map(|(t, object, taken_by)| NewestBackup { object, point_in_time: t, taken_by }))
    }

    async fn plan_restore(
        &self,
        kube: &KubeClient,
        entry: &VolumeEntry,
        record: &VolumeBackupInfo,
    ) -> Result<VolumeRestorePlan, VolumeError> {
        let s = self.0;
        let target = s.restore_namespace.clone().unwrap_or_else(|| s.namespace.clone());
        probe(kube, &VOLUME_SNAPSHOT, Some(&target), TOOL, entry).await?;
        let mut objects = Vec::new();
        plan_namespace(kube, &target, &mut objects).await?;
        for item in &record.items {
            let pvc_name = item.source.clone().unwrap_or_else(|| item.name.clone());
            if kube.get_object(&PVC, Some(&target), &pvc_name).await?.is_some() {
                return Err(VolumeError::Exists {
                    what: format!("PVC {target}/{pvc_name}"),
                    delete: format!("kubectl delete pvc {pvc_name} -n {target}"),
                });
            }
            let vs_ready = kube
                .get_object(&VOLUME_SNAPSHOT, Some(&target), &item.name)
                .await?
                .is_some_and(|v| v.pointer("/status/readyToUse").and_then(Value::as_bool) == Some(true));
            if vs_ready {
                objects.push(PlannedObject {
                    action: "use".into(),
                    kind: "VolumeSnapshot".into(),
                    namespace: Some(target.clone()),
                    name: item.name.clone(),
                    note: "still in the cluster and readyToUse".into(),
                    manifest: Value::Null,
                });
            } else {
                // Rebuilt cluster (or another namespace): import the snapshot by its handle.
                let (Some(handle), Some(driver)) = (&item.handle, &item.driver) else {
                    return Err(VolumeError::NothingFound(format!(
                        "VolumeSnapshot {target}/{} is gone and the record has no snapshotHandle/driver to import it by",
                        item.name
                    )));
                };
                let content = format!("kmdr-restore-{}", item.name.trim_start_matches("kmdr-"));
                let content: String = content.chars().take(253).collect();
                let mut spec = json!({
                    "deletionPolicy": "Retain",
                    "driver": driver,
                    "source": {"snapshotHandle": handle},
                    "volumeSnapshotRef": {"name": item.name, "namespace": target},
                });
                if let Some(c) = &item.class {
                    spec["volumeSnapshotClassName"] = json!(c);
                }
                let note = format!("pre-provisioned from snapshotHandle {handle} (Retain)");
                objects.push(PlannedObject::create(&VOLUME_SNAPSHOT_CONTENT, None, &content, &entry.name, spec, note));
                let spec = json!({"source": {"volumeSnapshotContentName": content}});
                let note = format!("bound to VolumeSnapshotContent {content}");
                objects.push(PlannedObject::create(
                    &VOLUME_SNAPSHOT,
                    Some(&target),
                    &item.name,
                    &entry.name,
                    spec,
                    note,
                ));
            }
            let mut pvc_spec = json!({
                "accessModes": if item.access_modes.is_empty() { vec!["ReadWriteOnce".to_string()] } else { item.access_modes.clone() },
                "dataSource": {"apiGroup": VOLUME_SNAPSHOT.group(), "kind": "VolumeSnapshot", "name": item.name},
                "resources": {"requests": {"storage": item.request.clone().or_else(|| item.restore_size.clone()).unwrap_or_else(|| "1Gi".into())}},
            });
            if let Some(sc) = &item.storage_class {
                pvc_spec["storageClassName"] = json!(sc);
            }
            if let Some(m) = &item.volume_mode {
                pvc_spec["volumeMode"] = json!(m);
            }
            let note = format!("from VolumeSnapshot {}, wait until Bound", item.name);
            objects.push(PlannedObject::create(&PVC, Some(&target), &pvc_name, &entry.name, pvc_spec, note));
        }
        Ok(VolumeRestorePlan { entry: entry.name.clone(), provider: "csi".into(), objects })
    }

    async fn restore(
        &self,
        kube: &KubeClient,
        entry: &VolumeEntry,
        plan: &VolumeRestorePlan,
    ) -> Result<VolumeRestoreOutcome, VolumeError> {
        let mut pvcs = Vec::new();
        for o in plan.objects.iter().filter(|o| o.action == "create") {
            if o.kind == "Namespace" {
                create_namespace(kube, o).await?;
                continue;
            }
            let kind = match o.kind.as_str() {
                "VolumeSnapshotContent" => &VOLUME_SNAPSHOT_CONTENT,
                "VolumeSnapshot" => &VOLUME_SNAPSHOT,
                _ => &PVC,
            };
            let ns = o.namespace.as_deref();
            if kind == &PVC {
                // The snapshot must be usable before a volume is made from it.
                let vs = o.manifest.pointer("/spec/dataSource/name").and_then(Value::as_str).unwrap_or_default();
                let w = Watched {
                    kind: &VOLUME_SNAPSHOT,
                    namespace: ns,
                    name: vs,
                    inspect: describe_vs(ns.unwrap_or_default(), vs),
                    tool: TOOL,
                };
                wait_for(kube, entry, &w, vs_look).await?;
            }
            kube.create_object(kind, ns, &o.manifest).await?;
            if kind == &PVC {
                pvcs.push((ns.unwrap_or_default().to_string(), o.name.clone()));
            }
        }
        for (ns, name) in &pvcs {
            let w = Watched {
                kind: &PVC,
                namespace: Some(ns),
                name,
                inspect: format!("kubectl describe pvc {name} -n {ns}"),
                tool: "the CSI provisioner",
            };
            wait_for(kube, entry, &w, |p| match text(p, "/status/phase").as_deref() {
                Some("Bound") => Look::Done(()),
                Some("Lost") => Look::Failed("Lost".into(), String::new()),
                Some(other) => Look::Pending(format!(
                    "{other} (a WaitForFirstConsumer storage class binds only once a pod uses the claim)"
                )),
                None => Look::Pending("without a phase".into()),
            })
            .await?;
        }
        Ok(VolumeRestoreOutcome {
            restored: pvcs.len() as u64,
            objects: pvcs.iter().map(|(ns, n)| format!("PersistentVolumeClaim {ns}/{n}")).collect(),
            warnings: 0,
        })
    }
}
