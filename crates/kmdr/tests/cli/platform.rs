//! The real-API versions of these tests (kube-apiserver and real helm) live in platform_real.rs.
//!
//! `kmdr backup platform` / `kmdr restore platform` against a scripted fake
//! Kubernetes API (scripts/fake-kube-api.py): the Helm release Secrets of
//! release `kmetal` (v1 superseded, v2 deployed, v3 failed) stored exactly as
//! Helm stores them, and an ordinary Secret `kmetal-system/registry-creds`.

use crate::common;

use common::Kmdr;
use kmdr_kube::platform::values_from_yaml;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

use common::kube::{FakeKube, SCRIPT};

/// What the fake script says about its fixtures (`--print-values`, `--print-secret`).
fn fixture(flag: &str) -> Value {
    let out = Command::new("python3").args([SCRIPT, flag]).output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    kmdr: Kmdr,
    kube: FakeKube,
    kubeconfig: String,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let kmdr = Kmdr::local(&dir);
    kmdr.init();
    let kube = FakeKube::start();
    let kubeconfig = kube.kubeconfig(&dir).display().to_string();
    Setup { _tmp: tmp, dir, kmdr, kube, kubeconfig }
}

fn backup_args<'a>(kubeconfig: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["backup", "platform", "--release", "kmetal", "-n", "kmetal-system", "--kubeconfig", kubeconfig];
    a.extend_from_slice(extra);
    a
}

#[test]
fn backs_up_the_deployed_revision_and_restores_its_values() {
    let s = setup();
    let m = s.kmdr.json(&backup_args(&s.kubeconfig, &["--secret", "kmetal-system/registry-creds", "--tag", "env=lab"]));

    // The manifest: v2 (deployed) was picked over v3 (failed) and v1.
    assert_eq!(m["layer"], "platform");
    assert_eq!(m["series"], "platform/kmetal-system/kmetal");
    assert_eq!(m["tags"]["env"], "lab");
    let src = &m["source"];
    assert_eq!(src["type"], "helm-release");
    assert_eq!(src["chart"], "kmetal");
    assert_eq!(src["chart_version"], "1.4.2");
    assert_eq!(src["app_version"], "v1.4.2");
    assert_eq!(src["release"], "kmetal");
    assert_eq!(src["namespace"], "kmetal-system");
    assert_eq!(src["revision"], 2);
    assert_eq!(src["status"], "deployed");
    assert_eq!(src["release_secret"], "kmetal-system/sh.helm.release.v1.kmetal.v2");
    assert_eq!(src["first_deployed"], "2026-01-10T09:00:00.123456789Z");
    assert_eq!(src["last_deployed"], "2026-01-12T09:30:00.5Z");
    assert_eq!(src["kubernetes_version"], "v1.33.1-fake");
    assert_eq!(src["cluster"], s.kube.url.as_str());
    assert_eq!(src["secrets"], serde_json::json!(["kmetal-system/registry-creds"]));
    let files: Vec<&str> = m["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(files, ["values.yaml", "release.json", "secrets/kmetal-system/registry-creds.yaml"]);

    // No secret value anywhere in the manifest as stored.
    let stored = s.kmdr.ok(&["backups", "show", "latest", "-o", "json"]);
    let secret = fixture("--print-secret");
    let docker = secret["plain"][".dockerconfigjson"].as_str().unwrap();
    let docker_b64 = secret["data"][".dockerconfigjson"].as_str().unwrap();
    for needle in [docker, docker_b64, "dXNlcjpzM2NyZXQtdG9rZW4=", "auths"] {
        assert!(!stored.contains(needle), "the manifest holds a secret value: {needle}");
    }
    assert!(stored.contains("sh.helm.release.v1.kmetal.v2"));

    // --dry-run: what would be written and run, nothing written.
    let to = s.dir.join("restore");
    let to_s = to.display().to_string();
    let dry = s.kmdr.ok(&["restore", "platform", "latest", "--to", &to_s, "--dry-run"]);
    assert!(dry.contains(&format!("would write {}/values.yaml", to_s)), "{dry}");
    assert!(dry.contains(&format!("would write {}/secrets/kmetal-system/registry-creds.yaml", to_s)), "{dry}");
    assert!(dry.contains("would run   helm install kmetal kmetal --version 1.4.2"), "{dry}");
    assert!(!to.exists(), "--dry-run wrote {}", to.display());

    // The restore writes the overlay Helm was given, and prints the runbook.
    let out = s.kmdr.ok(&["restore", "platform", "latest", "--to", &to_s]);
    let values = values_from_yaml(&std::fs::read_to_string(to.join("values.yaml")).unwrap()).unwrap();
    assert_eq!(values, fixture("--print-values"));
    let commands: Vec<&str> = out.lines().filter(|l| l.starts_with("  ")).map(str::trim).collect();
    assert_eq!(
        commands,
        [
            format!("kubectl apply -f {to_s}/namespaces.yaml"),
            format!("kubectl apply --recursive -f {to_s}/secrets/"),
            format!(
                "helm install kmetal kmetal --version 1.4.2 --namespace kmetal-system --create-namespace --values {to_s}/values.yaml --wait --timeout 15m"
            ),
        ],
        "{out}"
    );
    assert!(out.contains("pass --chart"), "{out}");

    // The Secret manifest: clean metadata, the data as the cluster had it.
    let secret_yaml = std::fs::read_to_string(to.join("secrets/kmetal-system/registry-creds.yaml")).unwrap();
    let manifest = values_from_yaml(&secret_yaml).unwrap();
    assert_eq!(manifest["apiVersion"], "v1");
    assert_eq!(manifest["kind"], "Secret");
    assert_eq!(manifest["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(manifest["data"][".dockerconfigjson"], docker_b64);
    let meta = manifest["metadata"].as_object().unwrap();
    assert_eq!(meta.keys().collect::<Vec<_>>(), ["annotations", "labels", "name", "namespace"]);
    assert_eq!(manifest["metadata"]["annotations"], serde_json::json!({"kmetal.io/owner": "platform-team"}));
    let ns = std::fs::read_to_string(to.join("namespaces.yaml")).unwrap();
    assert_eq!(values_from_yaml(&ns).unwrap()["metadata"]["name"], "kmetal-system");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(to.join("values.yaml")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "values.yaml is readable by others: {mode:o}");
    }
}

#[test]
fn execute_runs_kubectl_then_helm_and_needs_helm() {
    let s = setup();
    s.kmdr.ok(&backup_args(&s.kubeconfig, &["--secret", "kmetal-system/registry-creds"]));
    let to = s.dir.join("restore");
    let to_s = to.display().to_string();

    // Fake kubectl and helm that log their arguments.
    let bin = s.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = s.dir.join("tools.log");
    let write_tool = |name: &str| {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\necho \"{name} $*\" >> {}\necho {name} ok\n", log.display())).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    };
    write_tool("kubectl");

    // helm missing: exit 8, one line that names helm and the command; nothing run.
    let only_kubectl = Kmdr { extra_env: vec![("PATH".into(), bin.display().to_string())], ..Kmdr::local(&s.dir) };
    let args = [
        "restore",
        "platform",
        "latest",
        "--to",
        &to_s,
        "--execute",
        "--chart",
        "oci://ghcr.io/clastix/oci/kmetal",
        "--kubeconfig",
        &s.kubeconfig,
        "--context",
        "fake",
    ];
    let err = only_kubectl.fails(&args, 8);
    assert!(err.contains("helm is not installed"), "{err}");
    assert!(err.contains("helm install kmetal oci://ghcr.io/clastix/oci/kmetal --version 1.4.2"), "{err}");
    assert!(!log.exists(), "a command ran although helm is missing");

    write_tool("helm");
    only_kubectl.ok(&args);
    let ran = std::fs::read_to_string(&log).unwrap();
    let kc = &s.kubeconfig;
    assert_eq!(
        ran.lines().collect::<Vec<_>>(),
        [
            format!("kubectl --kubeconfig {kc} --context fake apply -f {to_s}/namespaces.yaml"),
            format!("kubectl --kubeconfig {kc} --context fake apply --recursive -f {to_s}/secrets/"),
            format!(
                "helm install kmetal oci://ghcr.io/clastix/oci/kmetal --version 1.4.2 --namespace kmetal-system --create-namespace --values {to_s}/values.yaml --wait --timeout 15m --kubeconfig {kc} --kube-context fake"
            ),
        ]
    );
    assert_eq!(
        values_from_yaml(&std::fs::read_to_string(to.join("values.yaml")).unwrap()).unwrap(),
        fixture("--print-values")
    );
}

#[test]
fn kubeconfig_from_the_environment_and_no_secrets() {
    let s = setup();
    // KUBECONFIG instead of --kubeconfig; no --secret: values only.
    let k = Kmdr { extra_env: vec![("KUBECONFIG".into(), s.kubeconfig.clone())], ..Kmdr::local(&s.dir) };
    let m = k.json(&["backup", "platform", "--release", "kmetal", "-n", "kmetal-system"]);
    assert_eq!(m["source"]["revision"], 2);
    assert_eq!(m["source"]["secrets"], serde_json::json!([]));
    let to_s = s.dir.join("r").display().to_string();
    let out = k.ok(&["restore", "platform", "latest", "--to", &to_s]);
    let commands: Vec<&str> = out.lines().filter(|l| l.starts_with("  ")).map(str::trim).collect();
    assert_eq!(
        commands,
        [format!(
            "helm install kmetal kmetal --version 1.4.2 --namespace kmetal-system --create-namespace --values {to_s}/values.yaml --wait --timeout 15m"
        )]
    );
    assert!(!s.dir.join("r/secrets").exists());
}

#[test]
fn errors_have_their_exit_codes() {
    let s = setup();
    let kc = s.kubeconfig.as_str();
    // Nothing listens at the dead context's URL: source problem, 6.
    let err = s.kmdr.fails(&backup_args(kc, &["--context", "dead"]), 6);
    assert!(err.contains("cannot reach the Kubernetes API at http://127.0.0.1:1"), "{err}");
    assert!(err.contains("check --kubeconfig/--context"), "{err}");
    // An unknown release: not found, 5, naming the releases there.
    let err = s.kmdr.fails(&["backup", "platform", "--release", "kmetl", "-n", "kmetal-system", "--kubeconfig", kc], 5);
    assert!(err.contains("no Helm release \"kmetl\" in namespace kmetal-system"), "{err}");
    assert!(err.contains("kmetal, other"), "{err}");
    // An unknown --secret: 5.
    let err = s.kmdr.fails(&backup_args(kc, &["--secret", "kmetal-system/nope"]), 5);
    assert!(err.contains("Secret kmetal-system/nope not found"), "{err}");
    // A malformed --secret: usage, 2.
    s.kmdr.fails(&backup_args(kc, &["--secret", "registry-creds"]), 2);
    // A missing kubeconfig file: source problem, 6.
    let missing = s.dir.join("missing").display().to_string();
    let err = s.kmdr.fails(&backup_args(&missing, &[]), 6);
    assert!(err.contains("cannot load the Kubernetes configuration"), "{err}");
    // Nothing was committed by any of them.
    assert_eq!(s.kmdr.json(&["backups", "list"]).as_array().map(Vec::len), Some(0));
    // Restoring from an empty repository: not found, 5.
    s.kmdr.fails(&["restore", "platform", "latest", "--to", &s.dir.join("r").display().to_string()], 5);
}

/// A plan whose platform layer names the Helm release: `backup --plan`
/// backs it up, `status` measures its RPO, `runbook check` finds no drift.
#[test]
fn a_plan_with_a_helm_source() {
    let s = setup();
    let plan = s.dir.join("kmdr.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: platform-test\nrepository:\n  url: {repo}\n  keyFile: {key}\nlayers:\n  platform:\n    rpo: 15m\n    helm:\n      release: kmetal\n      namespace: kmetal-system\n      secrets: [kmetal-system/registry-creds]\n      kubeconfig: {kc}\n",
            repo = s.kmdr.repo,
            key = s.kmdr.key_file.display(),
            kc = s.kubeconfig
        ),
    )
    .unwrap();
    let p = plan.to_str().unwrap();
    s.kmdr.ok(&["plan", "check", p]);
    let out = s.kmdr.ok(&["backup", "--plan", p]);
    assert!(out.contains("helm/kmetal-system/kmetal") && out.contains("-platform-"), "{out}");
    let status = s.kmdr.json(&["status", "--plan", p]);
    let rpo = status.as_array().unwrap().iter().find(|f| f["check"] == "rpo").unwrap().clone();
    assert_eq!(rpo["level"], "OK", "{status}");
    let o = s.kmdr.run(&["runbook", "check", "--plan", p, "-o", "json"]);
    let findings: Value = serde_json::from_slice(&o.stdout).unwrap();
    let drift = findings.as_array().unwrap().iter().find(|f| f["check"] == "platform-drift").unwrap().clone();
    assert_eq!(drift["level"], "OK", "the deployed release is the one backed up: {drift}");
    assert!(drift["message"].as_str().unwrap().contains("revision 2"), "{drift}");
}

/// `--execute` waits, after helm, until no pod is outside Running/Completed:
/// it succeeds once the fake's pods start, and exits 11 when one never does.
#[test]
fn execute_waits_for_pods() {
    let s = setup();
    s.kmdr.ok(&backup_args(&s.kubeconfig, &[]));
    let bin = s.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let p = bin.join("helm");
    std::fs::write(&p, "#!/bin/sh\necho helm ok\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let k = Kmdr { extra_env: vec![("PATH".into(), bin.display().to_string())], ..Kmdr::local(&s.dir) };
    s.kube.load(&serde_json::json!({"objects": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kamaji-0", "namespace": "kmetal-system"}, "status": {"phase": "Pending"}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "migrate-1", "namespace": "kmetal-system"}, "status": {"phase": "Succeeded"}},
    ], "rules": [{"kind": "Pod", "on": "start", "match": {"metadata.name": "kamaji-0"}, "afterMs": 800, "set": {"status.phase": "Running"}}]}));
    let to = s.dir.join("restore").display().to_string();
    let args = [
        "restore",
        "platform",
        "latest",
        "--to",
        &to,
        "--execute",
        "--kubeconfig",
        &s.kubeconfig,
        "--interval",
        "100ms",
        "--timeout",
        "30s",
    ];
    let o = k.run(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("pods: 1 of 2 Running/Completed") && err.contains("pods: 2 of 2 Running/Completed"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("every pod is Running or Completed"));
    // A pod that never runs: exit 11 naming it.
    s.kube.load(&serde_json::json!({"objects": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stuck", "namespace": "kmetal-system"}, "status": {"phase": "Pending"}}]}));
    let err = k.fails(
        &[
            "restore",
            "platform",
            "latest",
            "--to",
            &to,
            "--execute",
            "-q",
            "--kubeconfig",
            &s.kubeconfig,
            "--interval",
            "100ms",
            "--timeout",
            "1s",
        ],
        11,
    );
    assert!(err.contains("kmetal-system/stuck Pending"), "{err}");
}
