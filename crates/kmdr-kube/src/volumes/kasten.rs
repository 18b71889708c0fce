//! Kasten K10 (`actions.kio.kasten.io/v1alpha1`, `apps.kio.kasten.io/v1alpha1`;
//! docs.kasten.io "API: Actions" and "Restore Points").
//!
//! Backup: a `RunAction` in K10's namespace whose `spec.subject` is the
//! plan's `Policy`; wait for `status.state` `Complete` (`Failed` and
//! `Cancelled` are failures, with `status.error.message`); then record the
//! newest `RestorePoint` of the application namespace
//! (`spec.restorePointContentRef.name`, `status.actionTime`).
//!
//! Restore: a `RestoreAction` in the target namespace whose subject is the
//! recorded `RestorePoint` and `spec.targetNamespace` the target; wait for
//! `Complete`. After a rebuild (K10 reinstalled and its catalog restored by
//! K10's own disaster recovery), the `RestorePoint` may be missing while its
//! cluster-scoped `RestorePointContent` is back: kmdr first creates a
//! `RestorePoint` bound to it, as K10's documentation shows.

use super::*;
use kmdr_core::VolumeItem;
pub use kmdr_core::volume::KastenSpec;
use serde_json::json;

pub const RUN_ACTION: ResourceKind = ResourceKind {
    api_version: "actions.kio.kasten.io/v1alpha1",
    kind: "RunAction",
    plural: "runactions",
    namespaced: true,
};
pub const RESTORE_ACTION: ResourceKind = ResourceKind {
    api_version: "actions.kio.kasten.io/v1alpha1",
    kind: "RestoreAction",
    plural: "restoreactions",
    namespaced: true,
};
pub const RESTORE_POINT: ResourceKind = ResourceKind {
    api_version: "apps.kio.kasten.io/v1alpha1",
    kind: "RestorePoint",
    plural: "restorepoints",
    namespaced: true,
};
pub const RESTORE_POINT_CONTENT: ResourceKind = ResourceKind {
    api_version: "apps.kio.kasten.io/v1alpha1",
    kind: "RestorePointContent",
    plural: "restorepointcontents",
    namespaced: false,
};
/// The label K10 puts on RestorePoints: the application's namespace.
pub const APP_NAMESPACE_LABEL: &str = "k10.kasten.io/appNamespace";
/// The label K10 puts on RestorePoints a policy took.
pub const POLICY_LABEL: &str = "k10.kasten.io/policyName";

const TOOL: &str = "Kasten K10";

/// The Kasten K10 provider.
pub struct Kasten<'a>(pub &'a KastenSpec);

fn inspect(plural: &str, ns: &str, name: &str) -> String {
    format!("kubectl get {plural} -n {ns} {name} -o yaml")
}

/// An action's outcome by `status.state`.
fn state_look(v: &Value) -> Look<Value> {
    let state = text(v, "/status/state").unwrap_or_else(|| "Pending".into());
    match state.as_str() {
        "Complete" => Look::Done(v.clone()),
        "Failed" | "Cancelled" => {
            Look::Failed(state, text(v, "/status/error/message").map(|m| format!(": {m}")).unwrap_or_default())
        }
        _ => Look::Pending(format!("state {state}")),
    }
}

fn rp_time(rp: &Value) -> Option<DateTime<Utc>> {
    time(rp, "/status/actionTime").or_else(|| time(rp, "/metadata/creationTimestamp"))
}

impl Kasten<'_> {
    async fn restore_points(&self, kube: &KubeClient, entry: &VolumeEntry) -> Result<Vec<Value>, VolumeError> {
        let s = self.0;
        probe(kube, &RESTORE_POINT, Some(&s.app_namespace), TOOL, entry).await?;
        Ok(kube.list_objects(&RESTORE_POINT, Some(&s.app_namespace), "").await?)
    }
}

impl VolumeProvider for Kasten<'_> {
    async fn backup(
        &self,
        kube: &KubeClient,
        entry: &VolumeEntry,
    ) -> Result<(VolumeBackupInfo, Vec<Value>), VolumeError> {
        let s = self.0;
        let ns = s.namespace.as_str();
        probe(kube, &RUN_ACTION, Some(ns), TOOL, entry).await?;
        let started = Utc::now();
        let name = object_name(&entry.name, started);
        let spec = json!({"subject": {"apiVersion": "config.kio.kasten.io/v1alpha1", "kind": "Policy", "name": s.policy, "namespace": ns}});
        kube.create_object(&RUN_ACTION, Some(ns), &manifest(&RUN_ACTION, Some(ns), &name, &entry.name, spec)).await?;
        let w = Watched {
            kind: &RUN_ACTION,
            namespace: Some(ns),
            name: &name,
            inspect: inspect("runaction", ns, &name),
            tool: TOOL,
        };
        let action = wait_for(kube, entry, &w, state_look).await?;
        // The run's RestorePoint: the newest of the application namespace
        // taken by this policy (K10 labels them) since the run started.
        let rps = self.restore_points(kube, entry).await?;
        let by_policy = |rp: &&Value| {
            rp.pointer("/metadata/labels")
                .and_then(|l| l.get(POLICY_LABEL))
                .and_then(Value::as_str)
                .is_none_or(|p| p == s.policy)
        };
        let Some(rp) = rps.iter().filter(by_policy).max_by_key(|rp| rp_time(rp)) else {
            return Err(VolumeError::NothingFound(format!(
                "RunAction {ns}/{name} completed but namespace {} has no RestorePoint of policy {}: check with `kubectl get restorepoints.apps.kio.kasten.io -n {}` and `{}`",
                s.app_namespace,
                s.policy,
                s.app_namespace,
                inspect("runaction", ns, &name)
            )));
        };
        let content = text(rp, "/spec/restorePointContentRef/name");
        let content_obj = match &content {
            Some(c) => kube.get_object(&RESTORE_POINT_CONTENT, None, c).await?,
            None => None,
        };
        let info = VolumeBackupInfo {
            entry: entry.name.clone(),
            provider: "kasten".into(),
            cluster: kube.url().to_string(),
            taken_by: "kmdr".into(),
            schedule: Some(s.policy.clone()),
            point_in_time: rp_time(rp).unwrap_or(started),
            completed_at: time(&action, "/status/endTime").or_else(|| Some(Utc::now())),
            phase: "Complete".into(),
            warnings: 0,
            items: vec![VolumeItem {
                kind: "RestorePoint".into(),
                namespace: Some(s.app_namespace.clone()),
                name: text(rp, "/metadata/name").unwrap_or_default(),
                source: Some(s.app_namespace.clone()),
                content,
                created_at: rp_time(rp),
                ..Default::default()
            }],
        };
        let mut objects = vec![clean(&action), clean(rp)];
        objects.extend(content_obj.as_ref().map(clean));
        Ok((info, objects))
    }

    async fn newest(&self, kube: &KubeClient, entry: &VolumeEntry) -> Result<Option<NewestBackup>, VolumeError> {
        let rps = self.restore_points(kube, entry).await?;
        Ok(rps.iter().filter_map(|rp| Some((rp_time(rp)?, rp))).max_by_key(|(t, _)| *t).map(|(t, rp)| NewestBackup {
            object: format!("RestorePoint {}/{}", self.0.app_namespace, text(rp, "/metadata/name").unwrap_or_default()),
            point_in_time: t,
            taken_by: if rp.pointer("/metadata/labels").and_then(|l| l.get(POLICY_LABEL)).is_some() {
                "schedule".into()
            } else {
                "kmdr".into()
            },
        }))
    }

    async fn plan_restore(
        &self,
        kube: &KubeClient,
        entry: &VolumeEntry,
        record: &VolumeBackupInfo,
    ) -> Result<VolumeRestorePlan, VolumeError> {
        let s = self.0;
        let target = s.restore_namespace.clone().unwrap_or_else(|| s.app_namespace.clone());
        probe(kube, &RESTORE_ACTION, Some(&target), TOOL, entry).await?;
        let Some(item) = record.items.iter().find(|i| i.kind == "RestorePoint") else {
            return Err(VolumeError::NothingFound(format!(
                "the record of entry {} names no K10 RestorePoint",
                entry.name
            )));
        };
        let rp_ns = item.namespace.clone().unwrap_or_else(|| s.app_namespace.clone());
        let mut objects = Vec::new();
        plan_namespace(kube, &rp_ns, &mut objects).await?;
        plan_namespace(kube, &target, &mut objects).await?;
        if kube.get_object(&RESTORE_POINT, Some(&rp_ns), &item.name).await?.is_some() {
            objects.push(PlannedObject {
                action: "use".into(),
                kind: "RestorePoint".into(),
                namespace: Some(rp_ns.clone()),
                name: item.name.clone(),
                note: "in the cluster".into(),
                manifest: Value::Null,
            });
        } else {
            let Some(content) = &item.content else {
                return Err(VolumeError::NothingFound(format!(
                    "RestorePoint {rp_ns}/{} is gone and the record names no RestorePointContent",
                    item.name
                )));
            };
            if kube.get_object(&RESTORE_POINT_CONTENT, None, content).await?.is_none() {
                return Err(VolumeError::NothingFound(format!(
                    "RestorePoint {rp_ns}/{} and its RestorePointContent {content} are not in the cluster: restore K10's catalog first (K10 disaster recovery, the k10restore chart), then check with `kubectl get restorepointcontents.apps.kio.kasten.io {content}`",
                    item.name
                )));
            }
            let spec = json!({"restorePointContentRef": {"name": content}});
            let note = format!("bound to RestorePointContent {content} (the cluster was rebuilt)");
            let mut o = PlannedObject::create(&RESTORE_POINT, Some(&rp_ns), &item.name, &entry.name, spec, note);
            o.manifest["metadata"]["labels"][APP_NAMESPACE_LABEL] = json!(s.app_namespace);
            objects.push(o);
        }
        let name = object_name(&format!("restore-{}", entry.name), Utc::now());
        let spec = json!({
            "subject": {"apiVersion": RESTORE_POINT.api_version, "kind": "RestorePoint", "name": item.name, "namespace": rp_ns},
            "targetNamespace": target,
        });
        let note = format!("from RestorePoint {rp_ns}/{} into namespace {target}, wait until Complete", item.name);
        objects.push(PlannedObject::create(&RESTORE_ACTION, Some(&target), &name, &entry.name, spec, note));
        Ok(VolumeRestorePlan { entry: entry.name.clone(), provider: "kasten".into(), objects })
    }

    async fn restore(
        &self,
        kube: &KubeClient,
        entry: &VolumeEntry,
        plan: &VolumeRestorePlan,
    ) -> Result<VolumeRestoreOutcome, VolumeError> {
        let mut out = VolumeRestoreOutcome { restored: 0, objects: Vec::new(), warnings: 0 };
        for o in plan.objects.iter().filter(|o| o.action == "create") {
            let ns = o.namespace.as_deref();
            if o.kind == "Namespace" {
                create_namespace(kube, o).await?;
                continue;
            }
            if o.kind == "RestorePoint" {
                kube.create_object(&RESTORE_POINT, ns, &o.manifest).await?;
                continue;
            }
            kube.create_object(&RESTORE_ACTION, ns, &o.manifest).await?;
            let target = ns.unwrap_or_default();
            let w = Watched {
                kind: &RESTORE_ACTION,
                namespace: ns,
                name: &o.name,
                inspect: inspect("restoreaction", target, &o.name),
                tool: TOOL,
            };
            wait_for(kube, entry, &w, state_look).await?;
            out.restored += 1;
            out.objects.push(format!("RestoreAction {target}/{}", o.name));
        }
        Ok(out)
    }
}
