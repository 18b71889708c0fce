//! The persistent-data layer on the scripted fake Kubernetes API
//! (scripts/fake-kube-api.py): only what has no real API server to run on.
//!
//! Kasten K10 stays here: it is closed source and publishes no CRDs in a Go
//! module (nor anywhere the test kit can read them from), so a real
//! kube-apiserver cannot serve `actions.kio.kasten.io` / `apps.kio.kasten.io`
//! with K10's own schemas; the fake's rules play its controller with the
//! fields of K10's documented v1alpha1 types (RunAction/RestoreAction
//! `status.state` Running/Complete; RestorePoint `spec.restorePointContentRef`).
//!
//! The CSI and Velero tests run against the real server with external-
//! snapshotter's and Velero's own CRDs (`volumes_real.rs`). The CSI fixture
//! below (`csi_cluster`) is `verify_objects.rs`'s, which has not moved yet.

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
