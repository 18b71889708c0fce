//! The persistent-data layer (`volumes:` in a plan) against the scripted fake
//! Kubernetes API (scripts/fake-kube-api.py). The fake's rules play each
//! tool's controller, writing the status fields and phases of the tools'
//! published types: external-snapshotter `client/apis/volumesnapshot/v1`
//! (VolumeSnapshot `status.readyToUse`, `boundVolumeSnapshotContentName`;
//! VolumeSnapshotContent `status.snapshotHandle`), Velero
//! `pkg/apis/velero/v1` (`status.phase` New/InProgress/Completed/
//! PartiallyFailed, `errors`, `warnings`), Kasten K10 actions
//! (`status.state` Running/Complete; RestorePoint
//! `spec.restorePointContentRef`).

use crate::common;

use common::Kmdr;
use common::kube::FakeKube;
use serde_json::{Value, json};
use std::path::PathBuf;

const CSI_DRIVER: &str = "hostpath.csi.k8s.io";

pub(crate) struct Setup {
    _tmp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
    pub(crate) kmdr: Kmdr,
}

pub(crate) fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let kmdr = Kmdr::local(&dir);
    kmdr.init();
    Setup { _tmp: tmp, dir, kmdr }
}

/// A plan with only the persistent-data layer and these `volumes:` entries
/// (YAML text, indented under `volumes:`).
pub(crate) fn plan(s: &Setup, kube: &FakeKube, name: &str, entries: &str) -> String {
    let kubeconfig = kube.kubeconfig(&s.dir.join(name).tap_mkdir());
    let entries = entries.replace("KUBECONFIG", &kubeconfig.display().to_string());
    let text = format!(
        "version: 1\nname: pv-test\nrepository:\n  url: {}\n  keyFile: {}\nlayers:\n  persistent-data:\n    rto: 2h\n    rpo: 1h\n    volumes:\n{entries}",
        s.kmdr.repo,
        s.kmdr.key_file.display()
    );
    let path = s.dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

trait TapMkdir {
    fn tap_mkdir(self) -> PathBuf;
}
impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> PathBuf {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

/// A Namespace object (the tools' own namespaces exist where they are installed).
fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

pub(crate) fn pvc(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "db"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "csi-hostpath-sc", "volumeMode": "Filesystem",
                 "resources": {"requests": {"storage": "2Gi"}}, "volumeName": format!("pv-{name}")},
        "status": {"phase": "Bound", "capacity": {"storage": "2Gi"}},
    })
}

/// The snapshot controller: a VolumeSnapshot with a class becomes ready and
/// gets a VolumeSnapshotContent with a handle; a pre-provisioned one (no
/// class, bound by `source.volumeSnapshotContentName`) becomes ready bound to
/// it; a PVC made from a snapshot gets Bound.
pub(crate) fn csi_controller() -> Value {
    json!([
        {"kind": "VolumeSnapshot", "on": "create", "afterMs": 300,
         "match": {"spec.volumeSnapshotClassName": "csi-hostpath-snapclass"},
         "set": {"status.readyToUse": true,
                 "status.boundVolumeSnapshotContentName": "snapcontent-$(metadata.uid)",
                 "status.creationTime": "$(metadata.creationTimestamp)",
                 "status.restoreSize": "2Gi"},
         "create": [{
             "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
             "metadata": {"name": "snapcontent-$(metadata.uid)"},
             "spec": {"deletionPolicy": "Delete", "driver": CSI_DRIVER,
                      "source": {"volumeHandle": "vol-$(spec.source.persistentVolumeClaimName)"},
                      "volumeSnapshotClassName": "$(spec.volumeSnapshotClassName)",
                      "volumeSnapshotRef": {"kind": "VolumeSnapshot", "name": "$(metadata.name)", "namespace": "$(metadata.namespace)", "uid": "$(metadata.uid)"}},
             "status": {"snapshotHandle": "snap-$(metadata.uid)", "readyToUse": true, "restoreSize": 2147483648u64, "creationTime": 1764230400000000000u64}
         }]},
        {"kind": "VolumeSnapshot", "on": "create", "afterMs": 200,
         "match": {"spec.volumeSnapshotClassName": null},
         "set": {"status.readyToUse": true, "status.boundVolumeSnapshotContentName": "$(spec.source.volumeSnapshotContentName)", "status.restoreSize": "2Gi"}},
        {"kind": "PersistentVolumeClaim", "on": "create", "afterMs": 200,
         "match": {"spec.dataSource.kind": "VolumeSnapshot"},
         "set": {"status.phase": "Bound"}}
    ])
}

pub(crate) const CSI_ENTRY: &str = "      - name: db-volumes\n        provider: csi\n        kubeconfig: KUBECONFIG\n        namespace: tenant-a\n        selector: app=db\n        snapshotClass: csi-hostpath-snapclass\n        timeout: 20s\n";

fn stored(kmdr: &Kmdr, id: &str) -> Value {
    kmdr.json(&["backups", "show", id])
}

/// A cluster with two PVCs of app=db in tenant-a and the snapshot controller.
pub(crate) fn csi_cluster(s: &Setup) -> FakeKube {
    FakeKube::with_fixtures(
        &s.dir,
        &json!({"objects": [pvc("tenant-a", "data-db-0"), pvc("tenant-a", "data-db-1")], "rules": csi_controller()}),
    )
}

#[test]
fn csi_backup_then_restore_after_a_rebuild() {
    let s = setup();
    let kube = csi_cluster(&s);
    let file = plan(&s, &kube, "csi", CSI_ENTRY);

    let out = s.kmdr.json(&["backup", "--plan", &file, "--layer", "persistent-data"]);
    let unit = &out[0]["unit"];
    assert_eq!(unit["unit"], "db-volumes");
    assert!(unit["error"].is_null(), "{out}");
    let id = unit["backup"].as_str().unwrap().to_string();

    // One VolumeSnapshot per selected PVC, with the plan's class.
    let created: Vec<_> =
        kube.writes().into_iter().filter(|r| r.method == "POST" && r.path.ends_with("/volumesnapshots")).collect();
    assert_eq!(created.len(), 2);
    for r in &created {
        assert_eq!(r.path, "/apis/snapshot.storage.k8s.io/v1/namespaces/tenant-a/volumesnapshots");
        assert_eq!(r.body["spec"]["volumeSnapshotClassName"], "csi-hostpath-snapclass");
    }
    // The record: names, handles, driver and each PVC's shape.
    let m = stored(&s.kmdr, &id);
    let src = &m["source"];
    assert_eq!(src["type"], "volume-backup");
    assert_eq!(src["provider"], "csi");
    assert_eq!(m["layer"], "persistent-data");
    let items = src["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let mut handles = Vec::new();
    for it in items {
        let vs = kube.object("VolumeSnapshot", "tenant-a", it["name"].as_str().unwrap()).expect("the snapshot exists");
        let content = vs["status"]["boundVolumeSnapshotContentName"].as_str().unwrap();
        assert_eq!(it["content"], content);
        let vsc = kube.object("VolumeSnapshotContent", "", content).unwrap();
        assert_eq!(it["handle"], vsc["status"]["snapshotHandle"]);
        assert_eq!(it["driver"], CSI_DRIVER);
        assert_eq!(it["storage_class"], "csi-hostpath-sc");
        assert_eq!(it["request"], "2Gi");
        handles.push((
            it["source"].as_str().unwrap().to_string(),
            it["name"].as_str().unwrap().to_string(),
            it["handle"].as_str().unwrap().to_string(),
        ));
    }

    // The cluster is rebuilt: an empty API with only the snapshot controller.
    // Only the repository knows the handles.
    drop(kube);
    let fresh = FakeKube::with_fixtures(&s.dir, &json!({"rules": csi_controller()}));
    let file = plan(&s, &fresh, "csi-rebuilt", CSI_ENTRY);
    let dry = s.kmdr.ok(&["restore", "--plan", &file, "--layer", "persistent-data", "--dry-run"]);
    assert!(dry.contains("create VolumeSnapshotContent"), "{dry}");
    assert!(fresh.writes().is_empty(), "a dry run writes nothing");
    s.kmdr.ok(&["restore", "--plan", &file, "--layer", "persistent-data"]);
    assert!(fresh.object("Namespace", "", "tenant-a").is_some(), "the missing namespace is created first");
    for (pvc_name, vs_name, handle) in handles {
        let vs = fresh.object("VolumeSnapshot", "tenant-a", &vs_name).expect("the snapshot is imported");
        let content = vs["spec"]["source"]["volumeSnapshotContentName"].as_str().unwrap();
        let vsc = fresh.object("VolumeSnapshotContent", "", content).expect("a pre-provisioned content");
        assert_eq!(vsc["spec"]["source"]["snapshotHandle"], handle.as_str());
        assert_eq!(vsc["spec"]["deletionPolicy"], "Retain");
        assert_eq!(vsc["spec"]["driver"], CSI_DRIVER);
        assert_eq!(vsc["spec"]["volumeSnapshotRef"]["name"], vs_name.as_str());
        let p = fresh.object("PersistentVolumeClaim", "tenant-a", &pvc_name).expect("the PVC is recreated");
        assert_eq!(p["spec"]["dataSource"]["name"], vs_name.as_str());
        assert_eq!(p["spec"]["dataSource"]["apiGroup"], "snapshot.storage.k8s.io");
        assert_eq!(p["spec"]["resources"]["requests"]["storage"], "2Gi");
        assert_eq!(p["status"]["phase"], "Bound");
    }
    // Restoring again refuses to touch the PVCs that now exist.
    let err = s.kmdr.fails(&["restore", "--plan", &file, "--layer", "persistent-data", "--quiet"], 8);
    assert!(err.contains("kubectl delete pvc"), "{err}");
}

#[test]
fn a_volume_snapshot_that_never_becomes_ready_times_out() {
    let s = setup();
    // No controller: the snapshot stays without status.
    let kube = FakeKube::with_fixtures(&s.dir, &json!({"objects": [pvc("tenant-a", "data-db-0")]}));
    let file = plan(&s, &kube, "stuck-vs", &CSI_ENTRY.replace("timeout: 20s", "timeout: 2s"));
    let o = s.kmdr.run(&["backup", "--plan", &file, "--layer", "persistent-data"]);
    assert_eq!(o.status.code(), Some(11), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let vs = kube.objects().into_iter().find(|v| v["kind"] == "VolumeSnapshot").unwrap();
    let name = vs["metadata"]["name"].as_str().unwrap();
    assert!(out.contains(&format!("VolumeSnapshot tenant-a/{name} was still not readyToUse after 2.0s")), "{out}");
    assert!(out.contains(&format!("kubectl describe volumesnapshot {name} -n tenant-a")), "{out}");
    assert!(s.kmdr.json(&["backups", "list"]).as_array().unwrap().is_empty(), "nothing is recorded");
}

fn velero_controller(backup_final: &str, restore_final: Value) -> Value {
    json!([
        {"kind": "Backup", "apiVersion": "velero.io/v1", "on": "create", "afterMs": 100,
         "set": {"status.phase": "InProgress", "status.startTimestamp": "$(metadata.creationTimestamp)", "status.version": 1, "status.formatVersion": "1.1.0"}},
        {"kind": "Backup", "apiVersion": "velero.io/v1", "on": "create", "afterMs": 400,
         "set": {"status.phase": backup_final, "status.completionTimestamp": "$(metadata.creationTimestamp)", "status.expiration": "2027-01-01T00:00:00Z",
                 "status.progress": {"totalItems": 12, "itemsBackedUp": 12}, "status.csiVolumeSnapshotsAttempted": 1, "status.csiVolumeSnapshotsCompleted": 1}},
        {"kind": "Restore", "apiVersion": "velero.io/v1", "on": "create", "afterMs": 300, "set": restore_final}
    ])
}

const VELERO_ENTRY: &str = "      - name: tenant-apps\n        provider: velero\n        kubeconfig: KUBECONFIG\n        includedNamespaces: [tenant-a]\n        labelSelector: app=db\n        snapshotMoveData: true\n        ttl: 720h0m0s\n        timeout: 20s\n";

#[test]
fn velero_backup_then_restore_from_a_resynced_backup() {
    let s = setup();
    let kube = FakeKube::with_fixtures(
        &s.dir,
        &json!({"objects": [namespace("velero")], "rules": velero_controller("Completed", json!({"status.phase": "Completed"}))}),
    );
    let file = plan(&s, &kube, "velero", VELERO_ENTRY);
    let out = s.kmdr.json(&["backup", "--plan", &file, "--layer", "persistent-data"]);
    let id = out[0]["unit"]["backup"].as_str().unwrap().to_string();
    let post = kube.writes().into_iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(post.path, "/apis/velero.io/v1/namespaces/velero/backups");
    let spec = &post.body["spec"];
    assert_eq!(spec["includedNamespaces"], json!(["tenant-a"]));
    assert_eq!(spec["labelSelector"], json!({"matchLabels": {"app": "db"}}));
    assert_eq!(spec["snapshotMoveData"], true);
    assert_eq!(spec["ttl"], "720h0m0s");
    let name = post.body["metadata"]["name"].as_str().unwrap().to_string();
    let src = stored(&s.kmdr, &id)["source"].clone();
    assert_eq!(src["items"][0]["name"], name.as_str());
    assert_eq!(src["phase"], "Completed");
    assert_eq!(src["taken_by"], "kmdr");

    // Rebuilt: Velero reinstalled against the same bucket has synced the
    // Backup back from object storage (as its backup-sync controller does):
    // only Velero's own fields, none of kmdr's state.
    let synced = kube.object("Backup", "velero", &name).unwrap();
    drop(kube);
    let resynced = json!({"apiVersion": "velero.io/v1", "kind": "Backup",
        "metadata": {"name": name, "namespace": "velero", "labels": {"velero.io/storage-location": "default"}},
        "spec": synced["spec"], "status": synced["status"]});
    let fresh = FakeKube::with_fixtures(
        &s.dir,
        &json!({"objects": [namespace("velero"), resynced], "rules": velero_controller("Completed", json!({"status.phase": "Completed", "status.warnings": 1}))}),
    );
    let file = plan(&s, &fresh, "velero-rebuilt", VELERO_ENTRY);
    let text = s.kmdr.ok(&["restore", "--plan", &file, "--layer", "persistent-data"]);
    assert!(text.contains("restored 1 volume set(s)"), "{text}");
    let restore = fresh.writes().into_iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(restore.path, "/apis/velero.io/v1/namespaces/velero/restores");
    assert_eq!(restore.body["spec"]["backupName"], name.as_str());
    assert_eq!(restore.body["spec"]["restorePVs"], true);
}

#[test]
fn a_partially_failed_velero_restore_names_its_describe_command() {
    let s = setup();
    let kube = FakeKube::with_fixtures(
        &s.dir,
        &json!({"objects": [namespace("velero")], "rules": velero_controller("Completed", json!({"status.phase": "PartiallyFailed", "status.errors": 2, "status.warnings": 3}))}),
    );
    let file = plan(&s, &kube, "velero-pf", VELERO_ENTRY);
    s.kmdr.ok(&["backup", "--plan", &file, "--layer", "persistent-data"]);
    let err = s.kmdr.fails(&["restore", "--plan", &file, "--layer", "persistent-data", "--quiet"], 6);
    let restore = kube.objects().into_iter().find(|o| o["kind"] == "Restore").unwrap();
    let name = restore["metadata"]["name"].as_str().unwrap();
    assert!(
        err.contains(&format!("Restore velero/{name} ended PartiallyFailed with 2 error(s) and 3 warning(s)")),
        "{err}"
    );
    assert!(err.contains(&format!("velero restore describe {name} -n velero --details")), "{err}");
}

#[test]
fn a_stuck_velero_backup_times_out_and_a_missing_crd_says_not_installed() {
    let s = setup();
    // The backup never leaves InProgress.
    let kube = FakeKube::with_fixtures(
        &s.dir,
        &json!({"objects": [namespace("velero")], "rules": [velero_controller("Completed", json!({}))[0].clone()]}),
    );
    let file = plan(&s, &kube, "velero-stuck", &VELERO_ENTRY.replace("timeout: 20s", "timeout: 2s"));
    let o = s.kmdr.run(&["backup", "--plan", &file, "--layer", "persistent-data"]);
    assert_eq!(o.status.code(), Some(11));
    let out = String::from_utf8_lossy(&o.stdout);
    let b = kube.objects().into_iter().find(|o| o["kind"] == "Backup").unwrap();
    let name = b["metadata"]["name"].as_str().unwrap();
    assert!(out.contains(&format!("Backup velero/{name} was still phase InProgress after 2.0s")), "{out}");
    assert!(out.contains(&format!("velero backup describe {name} -n velero --details")), "{out}");

    // Velero not installed: its API group is not served.
    let bare = FakeKube::with_fixtures(&s.dir, &json!({"unserved": ["velero.io/v1"]}));
    let file = plan(&s, &bare, "velero-missing", VELERO_ENTRY);
    let o = s.kmdr.run(&["backup", "--plan", &file, "--layer", "persistent-data"]);
    assert_eq!(o.status.code(), Some(8));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Velero is not installed at http://127.0.0.1:"), "{out}");
    assert!(out.contains("kubectl get crd backups.velero.io"), "{out}");
    assert!(bare.writes().is_empty(), "nothing was created");
}

#[test]
fn status_counts_the_backups_a_velero_schedule_took() {
    let s = setup();
    let t = |mins: i64| (chrono::Utc::now() - chrono::Duration::minutes(mins)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let backup = |name: &str, phase: &str, mins: i64| {
        json!({"apiVersion": "velero.io/v1", "kind": "Backup",
            "metadata": {"name": name, "namespace": "velero", "labels": {"velero.io/schedule-name": "daily", "velero.io/storage-location": "default"}},
            "spec": {"includedNamespaces": ["tenant-a"], "ttl": "720h0m0s"},
            "status": {"phase": phase, "startTimestamp": t(mins), "completionTimestamp": t(mins - 1), "version": 1}})
    };
    let kube = FakeKube::with_fixtures(
        &s.dir,
        &json!({"objects": [backup("daily-20261127060000", "Completed", 130), backup("daily-20261127070000", "Completed", 12), backup("daily-20261127080000", "InProgress", 2)]}),
    );
    let entry = "      - name: tenant-apps\n        provider: velero\n        kubeconfig: KUBECONFIG\n        schedule: daily\n";
    let file = plan(&s, &kube, "velero-status", entry);
    let findings = s.kmdr.json(&["status", "--plan", &file]);
    let rpo = findings.as_array().unwrap().iter().find(|f| f["check"] == "rpo").unwrap().clone();
    assert_eq!(rpo["subject"], "persistent-data tenant-apps");
    assert_eq!(rpo["level"], "OK", "{rpo}");
    let msg = rpo["message"].as_str().unwrap();
    assert!(
        msg.contains("Backup velero/daily-20261127070000"),
        "the newest Completed one, not the one in progress: {msg}"
    );
    assert!(msg.contains("taken by the tool's own schedule"), "{msg}");
    assert!(msg.contains("12m"), "{msg}");

    // A backup by plan records the schedule's newest Completed Backup.
    let out = s.kmdr.json(&["backup", "--plan", &file, "--layer", "persistent-data"]);
    let id = out[0]["unit"]["backup"].as_str().unwrap().to_string();
    let src = stored(&s.kmdr, &id)["source"].clone();
    assert_eq!(src["items"][0]["name"], "daily-20261127070000");
    assert_eq!(src["taken_by"], "schedule");
    assert!(kube.writes().is_empty(), "a schedule entry creates nothing");
}

fn kasten_controller() -> Value {
    json!({
        "objects": [namespace("kasten-io"), namespace("tenant-a")],
        "resources": [
            {"apiVersion": "apps.kio.kasten.io/v1alpha1", "kind": "RestorePoint", "plural": "restorepoints", "namespaced": true},
            {"apiVersion": "apps.kio.kasten.io/v1alpha1", "kind": "RestorePointContent", "plural": "restorepointcontents", "namespaced": false}
        ],
        "rules": [
            {"kind": "RunAction", "on": "create", "afterMs": 100, "set": {"status.state": "Running"}},
            {"kind": "RunAction", "on": "create", "afterMs": 400, "set": {"status.state": "Complete"},
             "create": [
                {"apiVersion": "apps.kio.kasten.io/v1alpha1", "kind": "RestorePointContent",
                 "metadata": {"name": "tenant-a-scheduled-$(metadata.uid)", "labels": {"k10.kasten.io/appNamespace": "tenant-a", "k10.kasten.io/policyName": "$(spec.subject.name)"}},
                 "status": {"actionTime": "$(metadata.creationTimestamp)"}},
                {"apiVersion": "apps.kio.kasten.io/v1alpha1", "kind": "RestorePoint",
                 "metadata": {"name": "tenant-a-scheduled-$(metadata.uid)", "namespace": "tenant-a",
                              "labels": {"k10.kasten.io/appName": "tenant-a", "k10.kasten.io/appNamespace": "tenant-a", "k10.kasten.io/policyName": "$(spec.subject.name)"}},
                 "spec": {"restorePointContentRef": {"name": "tenant-a-scheduled-$(metadata.uid)"}},
                 "status": {"actionTime": "$(metadata.creationTimestamp)"}}
             ]},
            {"kind": "RestoreAction", "on": "create", "afterMs": 300, "set": {"status.state": "Complete"}}
        ]
    })
}

const KASTEN_ENTRY: &str = "      - name: tenant-k10\n        provider: kasten\n        kubeconfig: KUBECONFIG\n        policy: tenant-a-backup\n        appNamespace: tenant-a\n        timeout: 20s\n";

#[test]
fn kasten_backup_then_restore_after_the_catalog_came_back() {
    let s = setup();
    let kube = FakeKube::with_fixtures(&s.dir, &kasten_controller());
    let file = plan(&s, &kube, "kasten", KASTEN_ENTRY);
    let out = s.kmdr.json(&["backup", "--plan", &file, "--layer", "persistent-data"]);
    let id = out[0]["unit"]["backup"].as_str().unwrap().to_string();
    let run = kube.writes().into_iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(run.path, "/apis/actions.kio.kasten.io/v1alpha1/namespaces/kasten-io/runactions");
    assert_eq!(
        run.body["spec"]["subject"],
        json!({"apiVersion": "config.kio.kasten.io/v1alpha1", "kind": "Policy", "name": "tenant-a-backup", "namespace": "kasten-io"})
    );
    let rp = kube.objects().into_iter().find(|o| o["kind"] == "RestorePoint").unwrap();
    let rp_name = rp["metadata"]["name"].as_str().unwrap().to_string();
    let item = stored(&s.kmdr, &id)["source"]["items"][0].clone();
    assert_eq!(item["name"], rp_name.as_str());
    assert_eq!(item["content"], rp["spec"]["restorePointContentRef"]["name"]);

    // Rebuilt, K10 reinstalled and its catalog restored: the
    // RestorePointContent is back, the namespaced RestorePoint is not.
    let rpc = kube.object("RestorePointContent", "", item["content"].as_str().unwrap()).unwrap();
    drop(kube);
    let mut fixtures = kasten_controller();
    // Only K10's namespace and the content: the tenant namespace is gone too.
    fixtures["objects"] = json!([namespace("kasten-io"), rpc]);
    let fresh = FakeKube::with_fixtures(&s.dir, &fixtures);
    let file = plan(&s, &fresh, "kasten-rebuilt", KASTEN_ENTRY);
    s.kmdr.ok(&["restore", "--plan", &file, "--layer", "persistent-data"]);
    let bound = fresh.object("RestorePoint", "tenant-a", &rp_name).expect("a RestorePoint bound to the content");
    assert_eq!(bound["spec"]["restorePointContentRef"]["name"], item["content"]);
    let action = fresh.objects().into_iter().find(|o| o["kind"] == "RestoreAction").unwrap();
    assert_eq!(action["metadata"]["namespace"], "tenant-a");
    assert_eq!(action["spec"]["subject"]["name"], rp_name.as_str());
    assert_eq!(action["spec"]["subject"]["kind"], "RestorePoint");
    assert_eq!(action["spec"]["targetNamespace"], "tenant-a");
    assert_eq!(action["status"]["state"], "Complete");
}

#[test]
fn a_drill_measures_the_persistent_data_layer() {
    let s = setup();
    let kube = FakeKube::with_fixtures(
        &s.dir,
        &json!({"objects": [namespace("velero")], "rules": velero_controller("Completed", json!({"status.phase": "Completed"}))}),
    );
    let file = plan(&s, &kube, "velero-drill", VELERO_ENTRY);
    // Without a failure step the drill refuses: kmdr never deletes volumes.
    let err = s.kmdr.fails(&["drill", "--plan", &file, "--yes"], 2);
    assert!(err.contains("phase failure"), "{err}");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("run:\n  - name: lose tenant-a\n    layer: persistent-data\n    phase: failure\n    command: \"true\"\n    timeout: 1m\n");
    std::fs::write(&file, text).unwrap();
    let reports = s.dir.join("reports");
    let o = s.kmdr.run(&["drill", "--plan", &file, "--yes", "--report-dir", reports.to_str().unwrap(), "-o", "json"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_str(&stdout).unwrap();
    let l = r["layers"].as_array().unwrap().iter().find(|l| l["layer"] == "persistent-data").unwrap().clone();
    assert_eq!(l["verdict"], "PASS", "{l}");
    assert!(l["rto_s"].as_f64().unwrap() > 0.0, "{l}");
    assert!(l["rpo_s"].as_f64().is_some(), "{l}");
    assert_eq!(l["units"][0]["name"], "tenant-apps");
    // The drill restored from the Backup it took.
    let backup = kube.objects().into_iter().find(|o| o["kind"] == "Backup").unwrap();
    let restore = kube.objects().into_iter().find(|o| o["kind"] == "Restore").unwrap();
    assert_eq!(restore["spec"]["backupName"], backup["metadata"]["name"]);
    assert_eq!(restore["status"]["phase"], "Completed");
}
