//! The under-cluster's identity on a real kube-apiserver (issue 19): an API
//! server with an EncryptionConfiguration keeps Secrets encrypted in its
//! etcd and has issued a ServiceAccount token; `kmdr backup node-files` and
//! `kmdr backup etcd` are taken; the node's PKI, its EncryptionConfiguration
//! and etcd's data dir are destroyed.
//!
//! First the rebuild the runbook used to do: etcd restored, but the node's
//! files made anew (a new CA and service-account key, as `kubeadm init`
//! makes, and a new encryption key). kube-apiserver 1.34 starts and never
//! becomes ready: its Secrets cache cannot list what is stored ("no matching
//! key was found for the provided AES transformer", retried every second),
//! and `/readyz` waits for that cache. Were it ready, every client
//! certificate and the token issued before would be rejected too: the new
//! CA and service-account key did not sign them.
//!
//! Then the rebuild with kmdr: `restore node-files` refuses to replace the
//! new CA without `--force`, and on a clean node puts the old files back;
//! the test kit then issues the leaf certificates from the restored CA as
//! `kubeadm init` does; etcd is restored; the API server started again on
//! them reads every Secret back, equal to what was written, and accepts the
//! old token as the same ServiceAccount.

use crate::common::{self, Kmdr};
use base64::Engine;
use kmdr_testkit::{Etcd, KubeApiServer, KubeApiServerOptions};
use serde_json::{Value, json};
use std::path::Path;

const NS: &str = "vault";
const SA: &str = "robot";

/// An aescbc EncryptionConfiguration for Secrets with one key `name`; returns its secret.
fn write_encryption_config(path: &Path, name: &str, seed: u8) -> String {
    let secret: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(31).wrapping_add(seed)).collect();
    let secret = base64::engine::general_purpose::STANDARD.encode(secret);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        path,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n            - name: {name}\n              secret: {secret}\n      - identity: {{}}\n"
        ),
    )
    .unwrap();
    secret
}

/// How kube-apiserver is started on `node`'s `/etc/kubernetes` (its `pki/`
/// there, as kubeadm's) storing in `etcd_url`, with the EncryptionConfiguration `enc`.
fn api_options(kube_dir: &Path, etcd_url: &str, enc: &Path) -> KubeApiServerOptions {
    KubeApiServerOptions {
        etcd_url: Some(etcd_url.into()),
        encryption_config: Some(enc.into()),
        ..KubeApiServerOptions::new(kube_dir)
    }
}

fn api_server(kube_dir: &Path, etcd_url: &str, enc: &Path) -> KubeApiServer {
    KubeApiServer::launch(api_options(kube_dir, etcd_url, enc)).unwrap_or_else(|e| {
        let log = std::fs::read_to_string(kube_dir.join("kube-apiserver.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        panic!("kube-apiserver: {e}\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
    })
}

/// Who the server takes the bearer `token` for, or the HTTP status it refused it with.
fn whoami(api: &KubeApiServer, token: &str) -> Result<String, u16> {
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let body = serde_json::to_vec(&review).unwrap();
    match api.request_as(
        token,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some(("application/json", &body)),
    ) {
        Ok(v) => Ok(v["status"]["userInfo"]["username"].as_str().unwrap_or_default().to_string()),
        Err(kmdr_testkit::kube_apiserver::ApiError::Status { status, .. }) => Err(status),
        Err(e) => panic!("selfsubjectreview: {e}"),
    }
}

fn post(api: &KubeApiServer, path: &str, object: &Value) -> Value {
    let body = serde_json::to_vec(object).unwrap();
    api.request("POST", path, Some(("application/json", &body))).unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// The Secrets `s0`..`s4` of the test namespace as the API serves them.
fn read_secrets(api: &KubeApiServer) -> Vec<Result<Value, String>> {
    (0..5)
        .map(|i| {
            api.get(&format!("/api/v1/namespaces/{NS}/secrets/s{i}"))
                .map(|s| s["data"].clone())
                .map_err(|e| e.to_string())
        })
        .collect()
}

fn restore_etcd(k: &Kmdr, data_dir: &Path, peer: &str, force: bool) -> std::process::Output {
    let dd = data_dir.display().to_string();
    let cluster = format!("uc={peer}");
    let mut args = vec![
        "restore",
        "etcd",
        "latest",
        "--data-dir",
        &dd,
        "--name",
        "uc",
        "--initial-cluster",
        &cluster,
        "--initial-advertise-peer-urls",
        peer,
    ];
    if force {
        args.push("--force");
    }
    let out = k.run(&args);
    assert!(out.status.success(), "restore etcd: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn node_files_give_a_rebuilt_api_server_its_secrets_and_tokens_back() {
    if !kmdr_testkit::need("kube-apiserver") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node"); // the control-plane node's `/`
    let kube_dir = node.join("etc/kubernetes");
    let enc = kube_dir.join("enc/enc.yaml");
    let etcd_data = dir.path().join("etcd-data");
    let peer = format!("http://127.0.0.1:{}", common::free_port());
    let key1 = write_encryption_config(&enc, "key1", 7);
    let etcd = Etcd::start_on(etcd_data.clone(), "uc", Some(peer.clone()));
    let api = api_server(&kube_dir, &etcd.client_url, &enc);

    // Secrets encrypted at rest, and a ServiceAccount token.
    post(&api, "/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}));
    for i in 0..5 {
        let data = json!({"password": base64::engine::general_purpose::STANDARD.encode(format!("hunter{i}"))});
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("s{i}")}, "data": data});
        post(&api, &format!("/api/v1/namespaces/{NS}/secrets"), &secret);
    }
    post(
        &api,
        &format!("/api/v1/namespaces/{NS}/serviceaccounts"),
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SA}}),
    );
    let request =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}});
    let token = post(&api, &format!("/api/v1/namespaces/{NS}/serviceaccounts/{SA}/token"), &request)["status"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let sa_user = format!("system:serviceaccount:{NS}:{SA}");
    assert_eq!(whoami(&api, &token), Ok(sa_user.clone()));
    let written: Vec<Result<Value, String>> = read_secrets(&api);
    assert!(written.iter().all(Result::is_ok), "{written:?}");
    let stored = etcd.client().await.get(format!("/registry/secrets/{NS}/s0"), None).await.unwrap();
    assert!(stored.kvs()[0].value().starts_with(b"k8s:enc:aescbc:v1:key1:"), "encrypted at rest with key1");

    // The backups: the node files, then etcd (which records what it needs from them).
    let k = Kmdr::local(dir.path());
    k.init();
    let root = node.display().to_string();
    let nf = k.json(&["backup", "node-files", "--root", &root, "--encryption-config", "/etc/kubernetes/enc/enc.yaml"]);
    let nf_id = nf["id"].as_str().unwrap().to_string();
    let snap = k.json(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    let needs = &snap["source"]["needs"];
    assert_eq!(needs["from"], nf_id.as_str(), "{needs}");
    assert_eq!(needs["ca"]["subject"], "CN=kmdr-test-kubernetes-ca");
    assert_eq!(needs["encryption_keys"][0]["name"], "key1");
    for manifest in [&nf, &snap] {
        assert!(!manifest.to_string().contains(&key1), "no key material in a manifest");
    }
    // The key is in the node-files backup: inspect decrypts a Secret of the snapshot with it.
    let snap_id = snap["id"].as_str().unwrap();
    let got = k.ok(&["inspect", snap_id, "--get", "secret", &format!("{NS}/s3"), "--encryption-config-from", &nf_id]);
    assert!(got.contains(&base64::engine::general_purpose::STANDARD.encode("hunter3")), "{got}");

    // The disaster: the node and etcd's data are gone.
    drop(api);
    etcd.stop();
    std::fs::remove_dir_all(&kube_dir).unwrap();
    std::fs::remove_dir_all(&etcd_data).unwrap();

    // Without the node files: etcd restored, the node's files made anew.
    let out = restore_etcd(&k, &etcd_data, &peer, false);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("the cluster CA CN=kmdr-test-kubernetes-ca")
            && said.contains(&format!("kmdr restore node-files {nf_id} --to /")),
        "restore etcd names the node-files backup to restore first: {said}"
    );
    let _ = write_encryption_config(&enc, "key9", 99);
    let etcd = Etcd::start_on(etcd_data.clone(), "uc", Some(peer.clone()));
    let o = KubeApiServerOptions {
        ready_timeout: std::time::Duration::from_secs(30),
        ..api_options(&kube_dir, &etcd.client_url, &enc)
    };
    let never = KubeApiServer::launch(o);
    assert!(never.is_err(), "an API server without the old key is not expected to become ready");
    let log = std::fs::read_to_string(kube_dir.join("kube-apiserver.log")).unwrap();
    assert!(
        log.contains(&format!("unable to transform key \"/registry/secrets/{NS}/s0\""))
            && log.contains("no matching key was found"),
        "the stored Secrets cannot be decrypted: {}",
        log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
    drop(never);
    etcd.stop();

    // Over the new node's files, the restore refuses and names the CA.
    let err = k.fails(&["restore", "node-files", &nf_id, "--to", &root], 8);
    assert!(err.contains("holds another CA than the backup's (CN=kmdr-test-kubernetes-ca)"), "{err}");

    // With kmdr: a clean node, the node files put back, etcd restored.
    std::fs::remove_dir_all(&kube_dir).unwrap();
    let put = k.json(&["restore", "node-files", &nf_id, "--to", &root]);
    assert_eq!(put["written"], 5, "ca.crt, ca.key, sa.key, sa.pub, enc.yaml: {put}");
    let files = nf["source"]["files"].as_array().unwrap();
    let kept = files.iter().find(|f| f["path"] == "/etc/kubernetes/pki/ca.key").unwrap();
    let mode = std::fs::metadata(kube_dir.join("pki/ca.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o7777,
        kept["mode"].as_u64().unwrap() as u32
    );
    restore_etcd(&k, &etcd_data, &peer, true);
    let etcd = Etcd::start_on(etcd_data.clone(), "uc", Some(peer.clone()));
    let api = api_server(&kube_dir, &etcd.client_url, &enc);
    assert_eq!(read_secrets(&api), written, "every Secret reads back as written");
    assert_eq!(whoami(&api, &token), Ok(sa_user), "the token issued before the failure is accepted");
}
