//! `kmdr verify --restore` of the backups that hold Kubernetes objects: the
//! platform's Helm release (decoded, matched, rendered with helm when it is
//! on PATH), the tenant manifests of `backup tenants` (typed, matched to
//! their tenant, their data restored into a scratch etcd), and volume
//! backups (the tool's objects looked up in the cluster; "not checked" when
//! the API cannot be reached or is another cluster). The Kubernetes side is
//! the scripted fake API (scripts/fake-kube-api.py) until the tests move to
//! the real kube-apiserver (issue 14); the datastore is a real etcd.

use crate::common::b64;
use crate::common::kube::FakeKube;
use crate::common::{self, Kmdr};
use kmdr_testkit::Etcd;
use serde_json::{Value, json};

/// The checks of a proof as `what -> ok`.
fn checks(proof: &Value) -> Vec<(String, bool)> {
    proof["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["what"].as_str().unwrap().to_string(), c["ok"] == true))
        .collect()
}

fn prove(k: &Kmdr, args: &[&str]) -> Value {
    let mut a = vec!["verify", "--restore"];
    a.extend_from_slice(args);
    let out = k.json(&a);
    assert_eq!(out["restores"].as_array().unwrap().len(), 1, "{out}");
    out["restores"][0].clone()
}

#[test]
fn the_platform_release_is_decoded_matched_and_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let kube = FakeKube::start();
    let kc = kube.kubeconfig(dir.path()).display().to_string();
    let m = k.json(&[
        "backup",
        "platform",
        "--release",
        "kmetal",
        "-n",
        "kmetal-system",
        "--kubeconfig",
        &kc,
        "--secret",
        "kmetal-system/registry-creds",
    ]);
    let id = m["id"].as_str().unwrap().to_string();
    drop(kube); // a test restore of a release needs no cluster

    let p = prove(&k, &[&id]);
    assert_eq!(p["outcome"], "restorable", "{p}");
    let found = checks(&p);
    for what in ["release", "values", "secrets"] {
        assert!(found.contains(&(what.to_string(), true)), "{what}: {p}");
    }
    let release = p["checks"].as_array().unwrap().iter().find(|c| c["what"] == "release").unwrap();
    assert_eq!(release["found"], "kmetal-system/kmetal revision 2, chart kmetal 1.4.2", "{p}");
    let helm = kmdr_kube::platform::find_tool("helm");
    assert!(helm.is_some() || !common::require_servers(), "helm is not on PATH: run scripts/test.sh, which builds it");
    if helm.is_some() {
        assert!(found.contains(&("render".to_string(), true)), "{p}");
        assert!(p["restored_into"].as_str().unwrap().starts_with("helm template"), "{p}");
    } else {
        assert!(p["restored_into"].as_str().unwrap().contains("no helm on PATH"), "{p}");
    }
    // A helm that cannot be run is one line, exit 8, no proof.
    let err = k.fails(&["verify", "--restore", &id, "--helm", "/nonexistent/helm"], 8);
    assert!(err.contains("--helm PATH") && err.contains("/nonexistent/helm"), "{err}");
}

/// A release Secret as Helm writes it (un-gzipped JSON, which Helm reads
/// too), of a chart whose one template is `template`.
fn release_secret(template: &str, manifest: &str) -> Value {
    let release = json!({
        "name": "apps", "namespace": "apps", "version": 1,
        "info": {"status": "deployed", "first_deployed": "2026-11-01T00:00:00Z", "last_deployed": "2026-11-01T00:00:00Z"},
        "chart": {"metadata": {"apiVersion": "v2", "name": "apps", "version": "0.3.0"},
                  "templates": [{"name": "templates/cm.yaml", "data": b64(template)}],
                  "values": {"name": "settings"}, "files": []},
        "config": {"replicas": 2},
        "manifest": manifest,
    });
    json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
           "metadata": {"name": "sh.helm.release.v1.apps.v1", "namespace": "apps",
                        "labels": {"owner": "helm", "name": "apps", "version": "1", "status": "deployed"}},
           "data": {"release": b64(&b64(&release.to_string()))}})
}

#[test]
fn a_release_whose_chart_does_not_render_is_unrestorable() {
    let Some(helm) = kmdr_kube::platform::find_tool("helm") else {
        assert!(!common::require_servers(), "helm is not on PATH: run scripts/test.sh, which builds it");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let manifest =
        "---\n# Source: apps/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n";
    let good = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.name }}\n";
    let cases = [
        (good, true, "1 objects rendered, all in the release"),
        // The manifest Helm stored is not what the chart renders.
        (&*good.replace("{{ .Values.name }}", "other"), false, "not in the release (first: ConfigMap /other)"),
        // A template that cannot render.
        ("metadata: {{ .Values.missing.field }}\n", false, "helm template failed"),
    ];
    for (i, (template, ok, says)) in cases.into_iter().enumerate() {
        let sub = dir.path().join(format!("c{i}"));
        std::fs::create_dir_all(&sub).unwrap();
        let kube = FakeKube::with_fixtures(&sub, &json!({"objects": [release_secret(template, manifest)]}));
        let kc = kube.kubeconfig(&sub).display().to_string();
        let m = k.json(&["backup", "platform", "--release", "apps", "-n", "apps", "--kubeconfig", &kc]);
        let id = m["id"].as_str().unwrap().to_string();
        let mut args = vec!["verify", "--restore", id.as_str(), "--helm"];
        let helm_path = helm.display().to_string();
        args.push(&helm_path);
        let o = k.run(&args);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(if ok { 0 } else { 1 }), "case {i}: {stdout}");
        assert!(stdout.contains(says), "case {i}: {stdout}");
    }
}

#[tokio::test]
async fn tenant_manifests_are_typed_matched_and_their_data_restored() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let etcd = Etcd::start(d, "shared");
    etcd.load("/tenants_alpha/pods/default/web-", 200, 300, 1).await;
    etcd.load("/tenants_beta/configmaps/kube-system/cm-", 50, 200, 2).await;
    let host = etcd.client_url.trim_start_matches("http://").to_string();
    let tcp = |name: &str| {
        let schema = format!("tenants_{name}");
        json!({"apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "TenantControlPlane",
               "metadata": {"name": name, "namespace": "tenants"},
               "spec": {"dataStore": "shared-etcd", "dataStoreSchema": schema, "dataStoreUsername": schema,
                        "kubernetes": {"version": "v1.33.0"}},
               "status": {"kubernetesResources": {"version": {"status": "Ready"}}}})
    };
    let secret = |name: &str| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "tenants"}, "type": "Opaque", "data": {"tls.crt": b64(name)}});
    let kube = FakeKube::with_fixtures(
        d,
        &json!({"objects": [
            {"apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "DataStore", "metadata": {"name": "shared-etcd"},
             "spec": {"driver": "etcd", "endpoints": [host]}},
            tcp("alpha"), tcp("beta"), secret("alpha-ca"), secret("beta-ca"),
        ]}),
    );
    let kc = kube.kubeconfig(d).display().to_string();
    let k = Kmdr::local(d);
    k.init();
    let m = k.json(&["backup", "tenants", "--all", "--kubeconfig", &kc]);
    let id = m["id"].as_str().unwrap().to_string();
    drop(kube);

    let p = prove(&k, &[&id]);
    assert_eq!(p["outcome"], "restorable", "{p}");
    let found = checks(&p);
    for what in
        ["manifests", "tenants/alpha: dataStoreSchema/Username", "tenants/alpha: keys", "tenants/beta: content_sha256"]
    {
        assert!(found.contains(&(what.to_string(), true)), "{what}: {p}");
    }
    let keys = p["checks"].as_array().unwrap().iter().find(|c| c["what"] == "tenants/alpha: keys").unwrap();
    assert_eq!(keys["found"], "200", "{p}");
    let manifests = p["checks"].as_array().unwrap().iter().find(|c| c["what"] == "manifests").unwrap();
    assert_eq!(manifests["expected"], "5 objects", "DataStore, two TCPs, two Secrets: {p}");

    // A manifest that names another schema than the TCP it kept (re-sealed with
    // the key): its bytes check out, its proof does not.
    k.reseal_manifest(&id, |m| {
        if let kmdr_core::SourceInfo::KamajiTenants(t) = &mut m.source {
            t.tenants[0].schema = "tenants_someone_else".into();
            t.tenants[0].data.schema = "tenants_someone_else".into();
        }
    })
    .await;
    k.ok(&["verify", &id]);
    let o = k.run(&["verify", "--restore", &id]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("UNRESTORABLE {id}")) && stdout.contains("tenants/alpha: dataStoreSchema/Username"),
        "{stdout}"
    );
}

#[test]
fn volume_backups_are_looked_up_in_their_cluster() {
    use crate::volumes::{CSI_ENTRY, csi_cluster, plan, setup};
    let s = setup();
    let kube = csi_cluster(&s);
    let file = plan(&s, &kube, "csi", CSI_ENTRY);
    let out = s.kmdr.json(&["backup", "--plan", &file, "--layer", "persistent-data"]);
    let id = out[0]["unit"]["backup"].as_str().unwrap().to_string();
    let kc = kube.kubeconfig(&s.dir).display().to_string();

    let p = prove(&s.kmdr, &[&id, "--kubeconfig", &kc]);
    assert_eq!(p["outcome"], "restorable", "{p}");
    let found = checks(&p);
    assert_eq!(found.len(), 3, "the record and two snapshots: {p}");
    assert!(found.iter().all(|(_, ok)| *ok), "{p}");
    assert!(p["checks"][1]["found"].as_str().unwrap().contains("with VolumeSnapshotContent snapcontent-"), "{p}");

    // The tool lost one snapshot: the backup can no longer be restored.
    let gone = p["checks"][2]["what"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let (code, _) = kube.http(
        "DELETE",
        &format!("/apis/snapshot.storage.k8s.io/v1/namespaces/tenant-a/volumesnapshots/{gone}"),
        None,
    );
    assert_eq!(code, 200);
    let o = s.kmdr.run(&["verify", "--restore", &id, "--kubeconfig", &kc]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!("UNRESTORABLE {id}")) && stdout.contains("gone"), "{stdout}");

    // Another cluster, and no cluster at all: not checked, never restorable.
    std::fs::create_dir_all(s.dir.join("other")).unwrap();
    let other = FakeKube::with_fixtures(&s.dir.join("other"), &json!({"objects": []}));
    let other_kc = other.kubeconfig(&s.dir.join("other")).display().to_string();
    let p = prove(&s.kmdr, &[&id, "--kubeconfig", &other_kc]);
    assert_eq!(p["outcome"], "not-checked", "{p}");
    assert!(p["reason"].as_str().unwrap().contains("was taken in the cluster at"), "{p}");
    drop(other);
    let p = prove(&s.kmdr, &[&id, "--kubeconfig", &other_kc]);
    assert_eq!(p["outcome"], "not-checked", "{p}");
    let list = s.kmdr.ok(&["backups", "list"]);
    assert!(list.lines().any(|l| l.starts_with(&id) && l.contains("not checked")), "{list}");
}
