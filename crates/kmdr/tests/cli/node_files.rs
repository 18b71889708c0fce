//! `kmdr backup node-files` / `kmdr restore node-files`: a kubeadm node's PKI
//! (certificates made here by openssl), kubeadm config and
//! EncryptionConfiguration under a test root, backed up with modes kept and
//! what each certificate says recorded (never key material), restored into
//! an empty root, refused over another CA without --force, and bad paths
//! refused in one line with nothing stored.

use crate::common::{self, Kmdr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const ENC_SECRET: &str = "c2VjcmV0LWtleS1vZi0zMi1ieXRlcy0tLS0tLS0tLS0=";

/// A CA certificate and key made by openssl with subject `/CN=cn`, valid for ten years.
fn make_ca(dir: &Path, name: &str, cn: &str) {
    make_ca_for(dir, name, cn, 3650)
}

fn make_ca_for(dir: &Path, name: &str, cn: &str, days: u32) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            &days.to_string(),
            "-subj",
            &format!("/CN={cn}"),
        ])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(dir.join(format!("{name}.crt")))
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::set_permissions(dir.join(format!("{name}.key")), std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A kubeadm node's files under `root`.
pub(crate) fn node(root: &Path) {
    let pki = root.join("etc/kubernetes/pki");
    std::fs::create_dir_all(pki.join("etcd")).unwrap();
    make_ca(&pki, "ca", "kubernetes");
    make_ca(&pki, "front-proxy-ca", "front-proxy-ca");
    make_ca(&pki.join("etcd"), "ca", "etcd-ca");
    std::fs::write(pki.join("sa.key"), "a service-account signing key").unwrap();
    std::fs::set_permissions(pki.join("sa.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(pki.join("sa.pub"), "its public half").unwrap();
    std::fs::write(root.join("etc/kubernetes/kubeadm-config.yaml"), "kind: ClusterConfiguration\n").unwrap();
    std::fs::create_dir_all(root.join("etc/kubernetes/enc")).unwrap();
    write_keys(&root.join("etc/kubernetes/enc/enc.yaml"), &[("key1", ENC_SECRET)]);
}

/// A repository and a kubeadm node's files under a temp dir: (dir, kmdr, node root).
fn with_node() -> (tempfile::TempDir, Kmdr, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let k = Kmdr::local(tmp.path());
    k.init();
    let root = tmp.path().join("node");
    node(&root);
    (tmp, k, root)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn node_files_backed_up_and_put_back_before_kubeadm_init() {
    let (tmp, k, root) = with_node();
    let d = tmp.path();
    let root_s = root.display().to_string();

    let out = k.run(&[
        "backup",
        "node-files",
        "--root",
        &root_s,
        "--encryption-config",
        "/etc/kubernetes/enc/enc.yaml",
        "-o",
        "json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains(ENC_SECRET), "the manifest holds no key material");
    let m: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let src = &m["source"];
    let paths: Vec<&str> = src["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths.len(), 10, "{paths:?}");
    assert!(paths.contains(&"/etc/kubernetes/pki/etcd/ca.key") && paths.contains(&"/etc/kubernetes/enc/enc.yaml"));
    let ca_key = src["files"].as_array().unwrap().iter().find(|f| f["path"] == "/etc/kubernetes/pki/ca.key").unwrap();
    assert_eq!(ca_key["mode"], 0o600);
    let subjects: Vec<&str> =
        src["certificates"].as_array().unwrap().iter().map(|c| c["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects, ["CN=kubernetes", "CN=etcd-ca", "CN=front-proxy-ca"]);
    assert!(
        src["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ca"] == true && c["sha256"].as_str().unwrap().len() == 64)
    );
    // The key's fingerprint (tells a rotated key of the same name apart), never the key.
    let fingerprint = src["encryption_keys"][0]["fingerprint"].as_str().unwrap().to_string();
    assert!(fingerprint.len() == 16 && fingerprint.chars().all(|c| c.is_ascii_hexdigit()), "{fingerprint}");
    assert_eq!(
        src["encryption_keys"],
        serde_json::json!([{"path": "/etc/kubernetes/enc/enc.yaml", "provider": "aescbc", "name": "key1", "fingerprint": fingerprint}])
    );

    // Into an empty root: every file, byte for byte, with its mode.
    let to = d.join("rebuilt");
    let to_s = to.display().to_string();
    let dry = k.ok(&["restore", "node-files", "latest", "--to", &to_s, "--dry-run"]);
    assert!(dry.contains("would create") && !to.exists(), "{dry}");
    let done = k.ok(&["restore", "node-files", "latest", "--to", &to_s]);
    assert!(done.contains("restored 10 file(s)"), "{done}");
    for p in &paths {
        let rel = p.trim_start_matches('/');
        assert_eq!(std::fs::read(to.join(rel)).unwrap(), std::fs::read(root.join(rel)).unwrap(), "{p}");
        assert_eq!(mode(&to.join(rel)), mode(&root.join(rel)), "{p}");
    }
    assert!(
        std::fs::read_dir(to.join("etc/kubernetes/pki")).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with("kmdr-tmp"))
    );
    // Again: every file is the same, nothing to do.
    assert!(k.ok(&["restore", "node-files", "latest", "--to", &to_s]).contains("restored 0 file(s)"));

    // A node where `kubeadm init` already made a new CA: refused, naming it, nothing written.
    let fresh = d.join("fresh");
    std::fs::create_dir_all(fresh.join("etc/kubernetes/pki")).unwrap();
    make_ca(&fresh.join("etc/kubernetes/pki"), "ca", "kubernetes");
    let fresh_s = fresh.display().to_string();
    let new_ca = std::fs::read(fresh.join("etc/kubernetes/pki/ca.crt")).unwrap();
    let err = k.fails(&["restore", "node-files", "latest", "--to", &fresh_s], 8);
    assert!(err.contains("holds another CA than the backup's (CN=kubernetes)") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(fresh.join("etc/kubernetes/pki/ca.crt")).unwrap(), new_ca);
    assert!(!fresh.join("etc/kubernetes/pki/sa.key").exists(), "nothing written");
    k.ok(&["restore", "node-files", "latest", "--to", &fresh_s, "--force"]);
    assert_eq!(
        std::fs::read(fresh.join("etc/kubernetes/pki/ca.crt")).unwrap(),
        std::fs::read(root.join("etc/kubernetes/pki/ca.crt")).unwrap()
    );
}

#[test]
fn bad_node_file_paths_are_refused_and_nothing_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let k = Kmdr::local(d);
    k.init();
    let root = d.join("node");
    std::fs::create_dir_all(root.join("run")).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(root.join("run/api.sock")).unwrap();
    let root_s = root.display().to_string();
    let before = k.ok(&["backups", "list"]);
    let err = k.fails(&["backup", "node-files", "--root", &root_s, "--path", "/run/api.sock"], 2);
    assert!(err.contains("/run/api.sock is a socket, not a file"), "{err}");
    let err = k.fails(&["backup", "node-files", "--root", &root_s, "--path", "/etc/missing.yaml"], 6);
    assert!(err.contains("cannot read /etc/missing.yaml"), "{err}");
    let err = k.fails(&["backup", "node-files", "--root", &root_s], 2);
    assert!(err.contains("is this a kubeadm control-plane node?"), "{err}");
    assert_eq!(k.ok(&["backups", "list"]), before, "nothing stored");
    // An id the repository does not hold: not found, named.
    let err = k.fails(&["restore", "node-files", "no-such-backup", "--to", &root_s], 5);
    assert!(err.contains("no-such-backup"), "{err}");
}

/// `runbook check` on a plan with an under-cluster: a missing node-files
/// backup is a warning; then a cluster CA expiring within 90 days is one too.
#[test]
fn runbook_check_wants_node_files_and_names_a_ca_expiring_soon() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let k = Kmdr::local(d);
    k.init();
    let plan = d.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: nf\nrepository:\n  url: {}\n  keyFile: {}\nlayers:\n  under-cluster:\n    etcd:\n      endpoints: [http://127.0.0.1:1]\n",
            k.repo,
            k.key_file.display()
        ),
    )
    .unwrap();
    let p = plan.display().to_string();
    let check = |name: &str| -> Vec<serde_json::Value> {
        let o = k.run(&["runbook", "check", "--plan", &p, "-o", "json"]);
        let all: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        all.as_array().unwrap().iter().filter(|f| f["check"] == name).cloned().collect()
    };
    let nf = check("node-files");
    assert_eq!(nf.len(), 1);
    assert_eq!(nf[0]["level"], "WARN");
    assert!(nf[0]["message"].as_str().unwrap().contains("run `kmdr backup node-files"), "{}", nf[0]);

    let root = d.join("node");
    node(&root);
    make_ca_for(&root.join("etc/kubernetes/pki"), "ca", "kubernetes", 30);
    k.ok(&["backup", "node-files", "--root", &root.display().to_string()]);
    assert_eq!(check("node-files")[0]["level"], "OK");
    let ca = check("ca-expiry");
    let by_path = |p: &str| ca.iter().find(|f| f["subject"] == p).unwrap_or_else(|| panic!("{p}: {ca:?}")).clone();
    let soon = by_path("/etc/kubernetes/pki/ca.crt");
    assert_eq!(soon["level"], "WARN", "{soon}");
    assert!(soon["message"].as_str().unwrap().starts_with("CN=kubernetes expires in 29d"), "{soon}");
    assert_eq!(by_path("/etc/kubernetes/pki/etcd/ca.crt")["level"], "OK");
}

/// An EncryptionConfiguration with these aescbc keys (name, base64 secret), newest first.
fn write_keys(path: &Path, keys: &[(&str, &str)]) {
    let keys: String = keys.iter().map(|(n, s)| format!("      - name: {n}\n        secret: {s}\n")).collect();
    std::fs::write(
        path,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n{keys}  - identity: {{}}\n"
        ),
    )
    .unwrap();
}

/// `runbook check` with the plan's `nodeFiles.encryptionConfig`: a key of
/// the live file that no node-files backup holds fails the check (a
/// rotation not backed up), a rotated key that kept its name is caught by
/// its fingerprint, a file changed after the newest backup warns, and a
/// backed-up file is OK.
#[test]
fn runbook_check_fails_a_live_encryption_key_no_backup_holds() {
    let (tmp, k, root) = with_node();
    let d = tmp.path();
    let root_s = root.display().to_string();
    let plan = d.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: nf\nrepository:\n  url: {}\n  keyFile: {}\nlayers:\n  under-cluster:\n    etcd:\n      endpoints: [http://127.0.0.1:1]\n    nodeFiles:\n      root: {root_s}\n      encryptionConfig: /etc/kubernetes/enc/enc.yaml\n",
            k.repo,
            k.key_file.display()
        ),
    )
    .unwrap();
    let p = plan.display().to_string();
    let check = || -> serde_json::Value {
        let o = k.run(&["runbook", "check", "--plan", &p, "-o", "json"]);
        let all: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let found: Vec<_> =
            all.as_array().unwrap().iter().filter(|f| f["check"] == "encryption-keys").cloned().collect();
        assert_eq!(found.len(), 1, "{all}");
        found[0].clone()
    };
    let f = check();
    assert_eq!(
        (f["level"].as_str(), f["subject"].as_str()),
        (Some("FAIL"), Some("/etc/kubernetes/enc/enc.yaml")),
        "{f}"
    );
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("key(s) aescbc/key1 of the live EncryptionConfiguration are in no node-files backup"),
        "{f}"
    );

    k.ok(&["backup", "node-files", "--root", &root_s, "--encryption-config", "/etc/kubernetes/enc/enc.yaml"]);
    assert_eq!(check()["level"], "OK");

    // A rotation: key2 added in front (written after the backup).
    let enc = root.join("etc/kubernetes/enc/enc.yaml");
    let key2 = "a2V5LXR3by1vZi0zMi1ieXRlcy0tLS0tLS0tLS0tLS0=";
    write_keys(&enc, &[("key2", key2), ("key1", ENC_SECRET)]);
    let f = check();
    assert_eq!(f["level"], "FAIL", "{f}");
    assert!(f["message"].as_str().unwrap().contains("key(s) aescbc/key2 of"), "only the new key is named: {f}");
    k.ok(&["backup", "node-files", "--root", &root_s, "--encryption-config", "/etc/kubernetes/enc/enc.yaml"]);
    assert_eq!(check()["level"], "OK");

    // key1's secret replaced under the same name: its fingerprint differs.
    write_keys(&enc, &[("key2", key2), ("key1", "b3RoZXItc2VjcmV0LW9mLTMyLWJ5dGVzLS0tLS0tLS0=")]);
    let f = check();
    assert_eq!(f["level"], "FAIL", "{f}");
    assert!(f["message"].as_str().unwrap().contains("key(s) aescbc/key1 of"), "{f}");

    // The same keys in another order, after the newest backup: a warning.
    write_keys(&enc, &[("key1", ENC_SECRET), ("key2", key2)]);
    let f = check();
    assert_eq!(f["level"], "WARN", "{f}");
    assert!(f["message"].as_str().unwrap().contains("after the newest node-files backup"), "{f}");
}

/// An etcd snapshot records the CA and keys it needs, read from the files
/// named on the command line (no key material); `restore etcd` names the
/// node-files backup that holds them, and warns when none does.
#[tokio::test(flavor = "multi_thread")]
async fn restore_etcd_names_the_node_files_its_snapshot_needs() {
    need_etcd!();
    let (tmp, k, root) = with_node();
    let d = tmp.path();
    let etcd = common::Etcd::start(d, "uc");
    let ca = root.join("etc/kubernetes/pki/ca.crt").display().to_string();
    let enc = root.join("etc/kubernetes/enc/enc.yaml").display().to_string();
    let snap =
        k.json(&["backup", "etcd", "--endpoints", &etcd.client_url, "--cluster-ca", &ca, "--encryption-config", &enc]);
    let needs = &snap["source"]["needs"];
    assert_eq!(
        (needs["from"].as_str(), needs["ca"]["subject"].as_str()),
        (Some("live"), Some("CN=kubernetes")),
        "{needs}"
    );
    assert_eq!(needs["encryption_keys"][0]["name"], "key1");
    assert!(!snap.to_string().contains(ENC_SECRET));
    let id = snap["id"].as_str().unwrap();
    let peer = format!("http://127.0.0.1:{}", common::free_port());
    let cluster = format!("r={peer}");
    let dd = d.join("restored").display().to_string();
    let restore = [
        "restore",
        "etcd",
        id,
        "--data-dir",
        &dd,
        "--name",
        "r",
        "--initial-cluster",
        &cluster,
        "--initial-advertise-peer-urls",
        &peer,
        "--dry-run",
    ];

    // No node-files backup yet: a warning naming what is missing (the dry run goes on).
    let o = k.run(&restore);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning: it needs the cluster CA CN=kubernetes")
            && err.contains("no node-files backup in this repository holds the cluster CA CN=kubernetes")
            && err.contains("encryption key aescbc/key1"),
        "{err}"
    );
    let mut json_args = restore.to_vec();
    json_args.extend(["-o", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&k.ok(&json_args)).unwrap();
    assert!(plan["node_files"]["holder"].is_null() && plan["node_files"]["missing"].as_array().unwrap().len() == 2);

    // A node-files backup of these files: it is named, no warning.
    let nf = k.json(&[
        "backup",
        "node-files",
        "--root",
        &root.display().to_string(),
        "--encryption-config",
        "/etc/kubernetes/enc/enc.yaml",
    ]);
    let o = k.run(&restore);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("warning"), "{err}");
    assert!(err.contains(&format!("node-files backup {} holds them", nf["id"].as_str().unwrap())), "{err}");
    assert!(!Path::new(&dd).exists(), "a dry run writes nothing");
}
