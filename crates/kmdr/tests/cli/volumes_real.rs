//! The persistent-data layer (`volumes:` in a plan) against a REAL API server:
//! kube-apiserver 1.34 with external-snapshotter v8.7.0's and Velero
//! v1.18.3's own CRDs, so every object kmdr creates meets their schemas and
//! CEL rules (a VolumeSnapshotContent's `volumeSnapshotRef` needs name and
//! namespace, a VolumeSnapshot's source fields are immutable, ...).
//!
//! The test plays each tool's controller on a thread ([`Controller`]),
//! writing the status fields of the tools' published types:
//! - the CSI snapshot controller: a VolumeSnapshot with a class gets a
//!   VolumeSnapshotContent with a `snapshotHandle`, then `readyToUse`; a
//!   pre-provisioned one becomes ready bound to its content; a PVC made from a
//!   snapshot gets Bound. Both snapshot kinds and the PVC have a status
//!   subresource: status goes through it.
//! - Velero: a Backup goes New -> InProgress -> its final phase, a Restore to
//!   its final phase. Velero's CRDs declare no status subresource
//!   (`config/crd/v1/bases`): Velero writes status by updating the object
//!   itself, and so does the test (a merge patch).
//!
//! Each test works in namespaces of its own on the shared server; a test
//! that needs a cluster without Velero starts a server of its own.

use crate::common;
use crate::volumes::{Setup, setup};

use common::Kmdr;
use common::real_kube::{
    self, Controller, Seen, audit_mark, collection, delete, force_delete, get, kmdr_requests, list, merge_patch,
    patch_status, put, writes,
};
use kmdr_testkit::KubeApiServer;
use kmdr_testkit::kube_apiserver::ApiError;
use serde_json::{Value, json};
use std::time::Duration;

const SNAPSHOT_API: &str = "snapshot.storage.k8s.io/v1";
const VELERO_API: &str = "velero.io/v1";
const CSI_DRIVER: &str = "hostpath.csi.k8s.io";
const SNAPSHOT_CLASS: &str = "vr-hostpath-snapclass";
/// 2Gi, as `status.restoreSize` of a VolumeSnapshotContent (bytes).
const SIZE_BYTES: u64 = 2 * 1024 * 1024 * 1024;

fn vs_path(ns: &str) -> String {
    collection(SNAPSHOT_API, "volumesnapshots", Some(ns))
}

fn vsc_path() -> String {
    collection(SNAPSHOT_API, "volumesnapshotcontents", None)
}

fn pvc_path(ns: &str) -> String {
    collection("v1", "persistentvolumeclaims", Some(ns))
}

fn backups_path(ns: &str) -> String {
    collection(VELERO_API, "backups", Some(ns))
}

fn restores_path(ns: &str) -> String {
    collection(VELERO_API, "restores", Some(ns))
}

fn name_of(o: &Value) -> String {
    o["metadata"]["name"].as_str().unwrap().to_string()
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A controller's write: an object deleted meanwhile is fine (the next round
/// does not see it), anything else the server refused is the test's fault.
fn done(r: Result<Value, ApiError>, what: &str) {
    match r {
        Ok(_) | Err(ApiError::Status { status: 404, .. }) => {}
        Err(e) => panic!("{what}: {e}"),
    }
}

/// A plan with only the persistent-data layer and these `volumes:` entries
/// (YAML text indented under `volumes:`; KUBECONFIG stands for the server's).
fn plan(s: &Setup, server: &KubeApiServer, name: &str, entries: &str) -> String {
    let entries = entries.replace("KUBECONFIG", &server.kubeconfig.display().to_string());
    let text = format!(
        "version: 1\nname: pv-real\nrepository:\n  url: {}\n  keyFile: {}\nlayers:\n  persistent-data:\n    rto: 2h\n    rpo: 1h\n    volumes:\n{entries}",
        s.kmdr.repo,
        s.kmdr.key_file.display()
    );
    let path = s.dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn stored(kmdr: &Kmdr, id: &str) -> Value {
    kmdr.json(&["backups", "show", id])
}

/// What kmdr wrote in `namespaces` (or to the cluster-scoped objects `names`)
/// since `mark`, as `verb resource` (the audit log names no object on create).
fn kmdr_writes(s: &KubeApiServer, mark: usize, namespaces: &[&str], names: &[&str]) -> Vec<String> {
    writes(&kmdr_requests(s, mark, namespaces, names))
        .into_iter()
        .map(|r| format!("{} {}", r.verb, r.object.split('/').next().unwrap_or("")))
        .collect()
}

// --- CSI -------------------------------------------------------------------

/// A Bound PVC of app=db, as the PV controller leaves it.
fn bound_pvc(s: &KubeApiServer, ns: &str, name: &str) {
    put(
        s,
        "persistentvolumeclaims",
        &json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": "db"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "csi-hostpath-sc", "volumeMode": "Filesystem",
                     "resources": {"requests": {"storage": "2Gi"}}, "volumeName": format!("pv-{ns}-{name}")},
        }),
    );
    done(
        patch_status(
            s,
            &format!("{}/{name}", pvc_path(ns)),
            &json!({"phase": "Bound", "capacity": {"storage": "2Gi"}}),
        ),
        "binding a PVC",
    );
}

/// A namespace with PVCs data-db-0 and data-db-1 (app=db), and the snapshot class.
fn csi_namespace(s: &KubeApiServer, ns: &str, pvcs: &[&str]) {
    s.create_namespace(ns).unwrap();
    put(
        s,
        "volumesnapshotclasses",
        &json!({"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshotClass", "metadata": {"name": SNAPSHOT_CLASS},
                "driver": CSI_DRIVER, "deletionPolicy": "Delete"}),
    );
    for p in pvcs {
        bound_pvc(s, ns, p);
    }
}

/// The CSI snapshot controller and provisioner, for `namespaces` only.
fn csi_controller(s: &'static KubeApiServer, namespaces: &[&str]) -> Controller {
    let namespaces: Vec<String> = namespaces.iter().map(|n| n.to_string()).collect();
    let mut seen = Seen::default();
    Controller::spawn(move || {
        for ns in &namespaces {
            for vs in list(s, &vs_path(ns)) {
                if vs["status"]["readyToUse"] == true || !seen.older_than(&vs, Duration::from_millis(300)) {
                    continue;
                }
                let name = name_of(&vs);
                let content = match vs["spec"]["source"]["volumeSnapshotContentName"].as_str() {
                    // Pre-provisioned: bound only to a content that points back at it.
                    Some(c) => {
                        let Some(vsc) = get(s, &format!("{}/{c}", vsc_path())) else { continue };
                        let r = &vsc["spec"]["volumeSnapshotRef"];
                        if r["name"] != name.as_str() || r["namespace"] != ns.as_str() {
                            continue;
                        }
                        let status = json!({"snapshotHandle": vsc["spec"]["source"]["snapshotHandle"],
                                            "readyToUse": true, "restoreSize": SIZE_BYTES});
                        done(patch_status(s, &format!("{}/{c}", vsc_path()), &status), "readying a content");
                        c.to_string()
                    }
                    // Dynamic: the driver cuts a snapshot; its content records the handle.
                    None => {
                        let uid = vs["metadata"]["uid"].as_str().unwrap();
                        let pvc = vs["spec"]["source"]["persistentVolumeClaimName"].as_str().unwrap();
                        let content = format!("snapcontent-{uid}");
                        put(
                            s,
                            "volumesnapshotcontents",
                            &json!({"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshotContent", "metadata": {"name": content},
                                "spec": {"deletionPolicy": "Delete", "driver": CSI_DRIVER,
                                         "source": {"volumeHandle": format!("vol-{ns}-{pvc}")},
                                         "volumeSnapshotClassName": vs["spec"]["volumeSnapshotClassName"],
                                         "volumeSnapshotRef": {"kind": "VolumeSnapshot", "name": name, "namespace": ns, "uid": uid}}}),
                        );
                        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap();
                        let status = json!({"snapshotHandle": format!("snap-{uid}"), "readyToUse": true,
                                            "restoreSize": SIZE_BYTES, "creationTime": nanos});
                        done(patch_status(s, &format!("{}/{content}", vsc_path()), &status), "readying a content");
                        content
                    }
                };
                let status = json!({"readyToUse": true, "boundVolumeSnapshotContentName": content,
                                    "creationTime": now(), "restoreSize": "2Gi"});
                done(patch_status(s, &format!("{}/{name}", vs_path(ns)), &status), "readying a snapshot");
            }
            for pvc in list(s, &pvc_path(ns)) {
                if pvc["spec"]["dataSource"]["kind"] != "VolumeSnapshot"
                    || pvc["status"]["phase"] == "Bound"
                    || !seen.older_than(&pvc, Duration::from_millis(200))
                {
                    continue;
                }
                let status = json!({"phase": "Bound", "capacity": {"storage": "2Gi"}});
                done(patch_status(s, &format!("{}/{}", pvc_path(ns), name_of(&pvc)), &status), "binding a PVC");
            }
        }
    })
}

fn csi_entry(ns: &str, extra: &str) -> String {
    format!(
        "      - name: db-volumes\n        provider: csi\n        kubeconfig: KUBECONFIG\n        namespace: {ns}\n        selector: app=db\n        snapshotClass: {SNAPSHOT_CLASS}\n        timeout: 20s\n{extra}"
    )
}

#[test]
fn csi_backup_then_restore_of_lost_claims_and_after_a_rebuild() {
    let Some(s) = real_kube::server() else { return };
    const NS: &str = "vr-csi";
    const REBUILT: &str = "vr-csi-rebuilt";
    let t = setup();
    csi_namespace(s, NS, &["data-db-0", "data-db-1"]);
    let _snapshotter = csi_controller(s, &[NS, REBUILT]);
    let file = plan(&t, s, "csi", &csi_entry(NS, ""));

    let mark = audit_mark(s);
    let out = t.kmdr.json(&["backup", "--plan", &file, "--layer", "persistent-data"]);
    let unit = &out[0]["unit"];
    assert_eq!(unit["unit"], "db-volumes");
    assert!(unit["error"].is_null(), "{out}");
    let id = unit["backup"].as_str().unwrap().to_string();
    // One VolumeSnapshot per selected PVC, with the plan's class, and nothing else written.
    assert_eq!(kmdr_writes(s, mark, &[NS], &[]), vec!["create volumesnapshots"; 2]);
    let taken = list(s, &format!("{}?labelSelector=kmdr.io/entry%3Ddb-volumes", vs_path(NS)));
    assert_eq!(taken.len(), 2);
    for vs in &taken {
        assert_eq!(vs["spec"]["volumeSnapshotClassName"], SNAPSHOT_CLASS);
    }

    // The record: names, handles, driver and each PVC's shape.
    let m = stored(&t.kmdr, &id);
    let src = &m["source"];
    assert_eq!(src["type"], "volume-backup");
    assert_eq!(src["provider"], "csi");
    assert_eq!(src["cluster"], s.url.as_str());
    assert_eq!(m["layer"], "persistent-data");
    let items = src["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let mut recorded = Vec::new();
    for it in items {
        let vs = get(s, &format!("{}/{}", vs_path(NS), it["name"].as_str().unwrap())).expect("the snapshot exists");
        let content = vs["status"]["boundVolumeSnapshotContentName"].as_str().unwrap();
        assert_eq!(it["content"], content);
        let vsc = get(s, &format!("{}/{content}", vsc_path())).unwrap();
        assert_eq!(it["handle"], vsc["status"]["snapshotHandle"]);
        assert_eq!(it["driver"], CSI_DRIVER);
        assert_eq!(it["storage_class"], "csi-hostpath-sc");
        assert_eq!(it["request"], "2Gi");
        recorded.push((
            it["source"].as_str().unwrap().to_string(),
            it["name"].as_str().unwrap().to_string(),
            content.to_string(),
            it["handle"].as_str().unwrap().to_string(),
        ));
    }

    // The claims are lost, the snapshots are not: new claims from the snapshots still there.
    for (pvc, ..) in &recorded {
        force_delete(s, &format!("{}/{pvc}", pvc_path(NS)));
    }
    let mark = audit_mark(s);
    let text = t.kmdr.ok(&["restore", "--plan", &file, "--layer", "persistent-data"]);
    assert!(text.contains("restored 2 volume set(s)"), "{text}");
    assert_eq!(kmdr_writes(s, mark, &[NS], &[]), vec!["create persistentvolumeclaims"; 2], "the snapshots were used");
    for (pvc, vs, ..) in &recorded {
        let p = get(s, &format!("{}/{pvc}", pvc_path(NS))).expect("the PVC is recreated");
        assert_eq!(
            p["spec"]["dataSource"],
            json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": vs})
        );
        assert_eq!(p["status"]["phase"], "Bound");
    }

    // The cluster is rebuilt: the snapshots and their contents are gone, the
    // namespace to restore into does not exist. Only the repository knows the handles.
    for (pvc, vs, content, _) in &recorded {
        force_delete(s, &format!("{}/{pvc}", pvc_path(NS)));
        delete(s, &format!("{}/{vs}", vs_path(NS)));
        delete(s, &format!("{}/{content}", vsc_path()));
    }
    assert!(get(s, &format!("/api/v1/namespaces/{REBUILT}")).is_none());
    let file = plan(&t, s, "csi-rebuilt", &csi_entry(NS, &format!("        restoreNamespace: {REBUILT}\n")));
    let imported: Vec<String> =
        recorded.iter().map(|(_, vs, ..)| format!("kmdr-restore-{}", vs.trim_start_matches("kmdr-"))).collect();
    let names: Vec<&str> = imported.iter().map(String::as_str).chain([REBUILT]).collect();
    let mark = audit_mark(s);
    let dry = t.kmdr.ok(&["restore", "--plan", &file, "--layer", "persistent-data", "--dry-run"]);
    assert!(dry.contains("create VolumeSnapshotContent"), "{dry}");
    assert_eq!(kmdr_writes(s, mark, &[NS, REBUILT], &names), Vec::<String>::new(), "a dry run wrote");
    t.kmdr.ok(&["restore", "--plan", &file, "--layer", "persistent-data"]);
    assert!(get(s, &format!("/api/v1/namespaces/{REBUILT}")).is_some(), "the missing namespace is created first");
    for ((pvc, vs, _, handle), content) in recorded.iter().zip(&imported) {
        let snap = get(s, &format!("{}/{vs}", vs_path(REBUILT))).expect("the snapshot is imported");
        assert_eq!(snap["spec"]["source"]["volumeSnapshotContentName"], content.as_str());
        assert_eq!(snap["status"]["readyToUse"], true);
        let vsc = get(s, &format!("{}/{content}", vsc_path())).expect("a pre-provisioned content");
        assert_eq!(vsc["spec"]["source"]["snapshotHandle"], handle.as_str());
        assert_eq!(vsc["spec"]["deletionPolicy"], "Retain");
        assert_eq!(vsc["spec"]["driver"], CSI_DRIVER);
        assert_eq!(vsc["spec"]["volumeSnapshotRef"]["name"], vs.as_str());
        assert_eq!(vsc["spec"]["volumeSnapshotRef"]["namespace"], REBUILT);
        let p = get(s, &format!("{}/{pvc}", pvc_path(REBUILT))).expect("the PVC is recreated");
        assert_eq!(p["spec"]["dataSource"]["name"], vs.as_str());
        assert_eq!(p["spec"]["resources"]["requests"]["storage"], "2Gi");
        assert_eq!(p["spec"]["storageClassName"], "csi-hostpath-sc");
        assert_eq!(p["status"]["phase"], "Bound");
    }
    // Restoring again refuses to touch the PVCs that now exist, and writes nothing.
    let mark = audit_mark(s);
    let err = t.kmdr.fails(&["restore", "--plan", &file, "--layer", "persistent-data", "--quiet"], 8);
    assert!(err.contains("kubectl delete pvc"), "{err}");
    assert_eq!(kmdr_writes(s, mark, &[NS, REBUILT], &names), Vec::<String>::new());
}

#[test]
fn a_volume_snapshot_that_never_becomes_ready_times_out() {
    let Some(s) = real_kube::server() else { return };
    const NS: &str = "vr-csi-stuck";
    let t = setup();
    // No snapshot controller runs for this namespace: the snapshot stays without status.
    csi_namespace(s, NS, &["data-db-0"]);
    let file = plan(&t, s, "stuck-vs", &csi_entry(NS, "").replace("timeout: 20s", "timeout: 2s"));
    let o = t.kmdr.run(&["backup", "--plan", &file, "--layer", "persistent-data"]);
    assert_eq!(o.status.code(), Some(11), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let vs = list(s, &vs_path(NS));
    assert_eq!(vs.len(), 1);
    let name = name_of(&vs[0]);
    assert!(vs[0]["status"].is_null(), "{}", vs[0]);
    assert!(out.contains(&format!("VolumeSnapshot {NS}/{name} was still not readyToUse after 2.0s")), "{out}");
    assert!(out.contains(&format!("kubectl describe volumesnapshot {name} -n {NS}")), "{out}");
    assert!(t.kmdr.json(&["backups", "list"]).as_array().unwrap().is_empty(), "nothing is recorded");
}

// --- Velero ----------------------------------------------------------------

/// Velero's server for Velero namespace `ns`: a new Backup goes InProgress,
/// then (400 ms after it appeared) `backup_final` when given; a new Restore
/// gets `restore_final` as its status.
fn velero_controller(
    s: &'static KubeApiServer,
    ns: &str,
    backup_final: Option<&str>,
    restore_final: Value,
) -> Controller {
    let (ns, backup_final) = (ns.to_string(), backup_final.map(str::to_string));
    let mut seen = Seen::default();
    Controller::spawn(move || {
        for b in list(s, &backups_path(&ns)) {
            let path = format!("{}/{}", backups_path(&ns), name_of(&b));
            let status = match (b["status"]["phase"].as_str(), &backup_final) {
                (None, _) if seen.older_than(&b, Duration::from_millis(100)) => json!({
                    "phase": "InProgress", "startTimestamp": b["metadata"]["creationTimestamp"],
                    "version": 1, "formatVersion": "1.1.0"}),
                (Some("InProgress"), Some(phase)) if seen.older_than(&b, Duration::from_millis(400)) => json!({
                    "phase": phase, "completionTimestamp": now(), "expiration": "2027-01-01T00:00:00Z",
                    "progress": {"totalItems": 12, "itemsBackedUp": 12},
                    "csiVolumeSnapshotsAttempted": 1, "csiVolumeSnapshotsCompleted": 1}),
                _ => continue,
            };
            done(merge_patch(s, &path, &json!({"status": status})), "setting a Backup's status");
        }
        for r in list(s, &restores_path(&ns)) {
            if r["status"]["phase"].is_null() && seen.older_than(&r, Duration::from_millis(300)) {
                let path = format!("{}/{}", restores_path(&ns), name_of(&r));
                done(merge_patch(s, &path, &json!({"status": restore_final})), "setting a Restore's status");
            }
        }
    })
}

fn velero_entry(ns: &str, timeout: &str) -> String {
    format!(
        "      - name: tenant-apps\n        provider: velero\n        kubeconfig: KUBECONFIG\n        namespace: {ns}\n        includedNamespaces: [tenant-a]\n        labelSelector: app=db\n        snapshotMoveData: true\n        ttl: 720h0m0s\n        timeout: {timeout}\n"
    )
}

#[test]
fn velero_backup_then_restore_from_a_backup_velero_synced_back() {
    let Some(s) = real_kube::server() else { return };
    const NS: &str = "vr-velero";
    let t = setup();
    s.create_namespace(NS).unwrap();
    let _velero = velero_controller(s, NS, Some("Completed"), json!({"phase": "Completed", "warnings": 1}));
    let file = plan(&t, s, "velero", &velero_entry(NS, "20s"));

    let mark = audit_mark(s);
    let out = t.kmdr.json(&["backup", "--plan", &file, "--layer", "persistent-data"]);
    let id = out[0]["unit"]["backup"].as_str().unwrap().to_string();
    assert_eq!(kmdr_writes(s, mark, &[NS], &[]), vec!["create backups"]);
    let taken = list(s, &backups_path(NS));
    assert_eq!(taken.len(), 1);
    let backup = &taken[0];
    let spec = &backup["spec"];
    assert_eq!(spec["includedNamespaces"], json!(["tenant-a"]));
    assert_eq!(spec["labelSelector"], json!({"matchLabels": {"app": "db"}}));
    assert_eq!(spec["snapshotMoveData"], true);
    assert_eq!(spec["ttl"], "720h0m0s");
    assert_eq!(backup["metadata"]["labels"]["kmdr.io/entry"], "tenant-apps");
    let name = name_of(backup);
    let src = stored(&t.kmdr, &id)["source"].clone();
    assert_eq!(src["items"][0]["name"], name.as_str());
    assert_eq!(src["phase"], "Completed");
    assert_eq!(src["taken_by"], "kmdr");
    assert_eq!(
        src["point_in_time"].as_str().unwrap()[..19],
        backup["status"]["startTimestamp"].as_str().unwrap()[..19]
    );

    // Rebuilt: the Backup is gone from the API. Velero, reinstalled against
    // the same bucket, syncs it back from object storage a moment after the
    // restore started (its backup-sync controller): Velero's own fields only.
    let path = format!("{}/{name}", backups_path(NS));
    delete(s, &path);
    let dry = t.kmdr.ok(&["restore", "--plan", &file, "--layer", "persistent-data", "--dry-run"]);
    assert!(dry.contains("Velero syncs it from its BackupStorageLocation"), "{dry}");
    let resynced = json!({"apiVersion": VELERO_API, "kind": "Backup",
        "metadata": {"name": name, "namespace": NS, "labels": {"velero.io/storage-location": "default"}},
        "spec": backup["spec"], "status": backup["status"]});
    let sync = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        put(s, "backups", &resynced);
    });
    let mark = audit_mark(s);
    let text = t.kmdr.ok(&["restore", "--plan", &file, "--layer", "persistent-data"]);
    sync.join().unwrap();
    assert!(text.contains("restored 1 volume set(s)"), "{text}");
    assert_eq!(kmdr_writes(s, mark, &[NS], &[]), vec!["create restores"], "only the Restore is written");
    let restores = list(s, &restores_path(NS));
    assert_eq!(restores.len(), 1);
    let restore = &restores[0];
    assert_eq!(restore["spec"]["backupName"], name.as_str());
    assert_eq!(restore["spec"]["restorePVs"], true);
    assert_eq!(restore["spec"]["includedNamespaces"], json!(["tenant-a"]));
    assert_eq!(restore["status"]["phase"], "Completed");
}

#[test]
fn a_partially_failed_velero_restore_names_its_describe_command() {
    let Some(s) = real_kube::server() else { return };
    const NS: &str = "vr-velero-pf";
    let t = setup();
    s.create_namespace(NS).unwrap();
    let _velero =
        velero_controller(s, NS, Some("Completed"), json!({"phase": "PartiallyFailed", "errors": 2, "warnings": 3}));
    let file = plan(&t, s, "velero-pf", &velero_entry(NS, "20s"));
    t.kmdr.ok(&["backup", "--plan", &file, "--layer", "persistent-data"]);
    let err = t.kmdr.fails(&["restore", "--plan", &file, "--layer", "persistent-data", "--quiet"], 6);
    let restores = list(s, &restores_path(NS));
    assert_eq!(restores.len(), 1);
    let name = name_of(&restores[0]);
    assert_eq!(restores[0]["status"]["phase"], "PartiallyFailed");
    assert!(
        err.contains(&format!("Restore {NS}/{name} ended PartiallyFailed with 2 error(s) and 3 warning(s)")),
        "{err}"
    );
    assert!(err.contains(&format!("velero restore describe {name} -n {NS} --details")), "{err}");
}

#[test]
fn a_stuck_velero_backup_times_out() {
    let Some(s) = real_kube::server() else { return };
    const NS: &str = "vr-velero-stuck";
    let t = setup();
    s.create_namespace(NS).unwrap();
    // The Backup never leaves InProgress.
    let _velero = velero_controller(s, NS, None, json!({}));
    let file = plan(&t, s, "velero-stuck", &velero_entry(NS, "2s"));
    let o = t.kmdr.run(&["backup", "--plan", &file, "--layer", "persistent-data"]);
    assert_eq!(o.status.code(), Some(11), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let b = list(s, &backups_path(NS));
    assert_eq!(b.len(), 1);
    assert_eq!(b[0]["status"]["phase"], "InProgress");
    let name = name_of(&b[0]);
    assert!(out.contains(&format!("Backup {NS}/{name} was still phase InProgress after 2.0s")), "{out}");
    assert!(out.contains(&format!("velero backup describe {name} -n {NS} --details")), "{out}");
    assert!(t.kmdr.json(&["backups", "list"]).as_array().unwrap().is_empty(), "nothing is recorded");
}

#[test]
fn velero_not_installed_on_a_server_without_its_crds() {
    if !kmdr_testkit::need("kube-apiserver") {
        return;
    }
    // A server of its own: the shared one has Velero's CRDs for every test.
    let t = setup();
    let bare = KubeApiServer::start(&t.dir.join("bare-apiserver"));
    let file = plan(&t, &bare, "velero-missing", &velero_entry("velero", "20s"));
    let o = t.kmdr.run(&["backup", "--plan", &file, "--layer", "persistent-data"]);
    assert_eq!(o.status.code(), Some(8), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("Velero is not installed at {}", bare.url)), "{out}");
    assert!(out.contains("kubectl get crd backups.velero.io"), "{out}");
    assert_eq!(kmdr_writes(&bare, 0, &["velero"], &[]), Vec::<String>::new(), "nothing was created");
}

#[test]
fn status_counts_the_backups_a_velero_schedule_took() {
    let Some(s) = real_kube::server() else { return };
    const NS: &str = "vr-velero-sched";
    let t = setup();
    s.create_namespace(NS).unwrap();
    let at =
        |mins: i64| (chrono::Utc::now() - chrono::Duration::minutes(mins)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    put(
        s,
        "schedules",
        &json!({"apiVersion": VELERO_API, "kind": "Schedule", "metadata": {"name": "daily", "namespace": NS},
                "spec": {"schedule": "0 * * * *", "template": {"includedNamespaces": ["tenant-a"], "ttl": "720h0m0s"}}}),
    );
    // What Velero's schedule controller created and its backup controller completed.
    for (name, phase, mins) in [
        ("daily-20261127060000", "Completed", 130),
        ("daily-20261127070000", "Completed", 12),
        ("daily-20261127080000", "InProgress", 2),
    ] {
        put(
            s,
            "backups",
            &json!({"apiVersion": VELERO_API, "kind": "Backup",
                "metadata": {"name": name, "namespace": NS, "labels": {"velero.io/schedule-name": "daily", "velero.io/storage-location": "default"}},
                "spec": {"includedNamespaces": ["tenant-a"], "ttl": "720h0m0s"},
                "status": {"phase": phase, "startTimestamp": at(mins), "completionTimestamp": at(mins - 1), "version": 1}}),
        );
    }
    let entry = format!(
        "      - name: tenant-apps\n        provider: velero\n        kubeconfig: KUBECONFIG\n        namespace: {NS}\n        schedule: daily\n"
    );
    let file = plan(&t, s, "velero-status", &entry);
    let findings = t.kmdr.json(&["status", "--plan", &file]);
    let rpo = findings.as_array().unwrap().iter().find(|f| f["check"] == "rpo").unwrap().clone();
    assert_eq!(rpo["subject"], "persistent-data tenant-apps");
    assert_eq!(rpo["level"], "OK", "{rpo}");
    let msg = rpo["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("Backup {NS}/daily-20261127070000")),
        "the newest Completed one, not the one in progress: {msg}"
    );
    assert!(msg.contains("taken by the tool's own schedule"), "{msg}");
    assert!(msg.contains("12m"), "{msg}");

    // A backup by plan records the schedule's newest Completed Backup, and creates nothing.
    let mark = audit_mark(s);
    let out = t.kmdr.json(&["backup", "--plan", &file, "--layer", "persistent-data"]);
    let id = out[0]["unit"]["backup"].as_str().unwrap().to_string();
    let src = stored(&t.kmdr, &id)["source"].clone();
    assert_eq!(src["items"][0]["name"], "daily-20261127070000");
    assert_eq!(src["taken_by"], "schedule");
    assert_eq!(src["schedule"], "daily");
    assert_eq!(kmdr_writes(s, mark, &[NS], &[]), Vec::<String>::new(), "a schedule entry creates nothing");
}

#[test]
fn a_drill_measures_the_persistent_data_layer() {
    let Some(s) = real_kube::server() else { return };
    const NS: &str = "vr-velero-drill";
    let t = setup();
    s.create_namespace(NS).unwrap();
    let _velero = velero_controller(s, NS, Some("Completed"), json!({"phase": "Completed"}));
    let file = plan(&t, s, "velero-drill", &velero_entry(NS, "20s"));
    // Without a failure step the drill refuses: kmdr never deletes volumes.
    let err = t.kmdr.fails(&["drill", "--plan", &file, "--yes"], 2);
    assert!(err.contains("phase failure"), "{err}");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("run:\n  - name: lose tenant-a\n    layer: persistent-data\n    phase: failure\n    command: \"true\"\n    timeout: 1m\n");
    std::fs::write(&file, text).unwrap();
    let reports = t.dir.join("reports");
    let o = t.kmdr.run(&["drill", "--plan", &file, "--yes", "--report-dir", reports.to_str().unwrap(), "-o", "json"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_str(&stdout).unwrap();
    let l = r["layers"].as_array().unwrap().iter().find(|l| l["layer"] == "persistent-data").unwrap().clone();
    assert_eq!(l["verdict"], "PASS", "{l}");
    assert!(l["rto_s"].as_f64().unwrap() > 0.0, "{l}");
    assert!(l["rpo_s"].as_f64().is_some(), "{l}");
    assert_eq!(l["units"][0]["name"], "tenant-apps");
    // The drill restored from the Backup it took.
    let backups = list(s, &backups_path(NS));
    let restores = list(s, &restores_path(NS));
    assert_eq!((backups.len(), restores.len()), (1, 1));
    assert_eq!(restores[0]["spec"]["backupName"], backups[0]["metadata"]["name"]);
    assert_eq!(restores[0]["status"]["phase"], "Completed");
}
