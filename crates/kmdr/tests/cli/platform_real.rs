//! `kmdr backup platform` / `kmdr restore platform --execute` against a REAL
//! API server (kube-apiserver 1.34) with real helm 4: a small chart written
//! here (a ConfigMap, a Secret and a ServiceAccount: objects that need no
//! pods, since no kubelet runs), installed with user-supplied values, backed
//! up from the release Secret helm itself wrote, uninstalled, and installed
//! again by kmdr with the restored values overlay.

use crate::common;

use common::Kmdr;
use common::real_kube::{self, audit_mark, get, kmdr_requests, put, writes};
use kmdr_kube::platform::values_from_yaml;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const NS: &str = "pr-platform";
const RELEASE: &str = "pr-kmetal";

/// The test chart: its values have defaults the install overrides.
fn write_chart(dir: &Path) {
    let files = [
        (
            "Chart.yaml",
            "apiVersion: v2\nname: kmdr-test-platform\ndescription: objects without pods, for kmdr's tests\ntype: application\nversion: 0.3.1\nappVersion: \"1.0\"\n",
        ),
        ("values.yaml", "greeting: hello\nlogLevel: info\ntoken: default-token\nextraKey: null\n"),
        (
            "templates/configmap.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\n  labels:\n    app.kubernetes.io/instance: {{ .Release.Name }}\ndata:\n  greeting: {{ .Values.greeting | quote }}\n  logLevel: {{ .Values.logLevel | quote }}\n  {{- with .Values.extraKey }}\n  extra: {{ . | quote }}\n  {{- end }}\n",
        ),
        (
            "templates/secret.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ .Release.Name }}-token\ntype: Opaque\nstringData:\n  token: {{ .Values.token | quote }}\n",
        ),
        (
            "templates/serviceaccount.yaml",
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {{ .Release.Name }}-operator\n",
        ),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn helm(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("helm").args(args).arg("--kubeconfig").arg(kubeconfig).output().expect("run helm");
    assert!(
        out.status.success(),
        "helm {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn configmap(s: &kmdr_testkit::KubeApiServer) -> Option<serde_json::Value> {
    get(s, &format!("/api/v1/namespaces/{NS}/configmaps/{RELEASE}-settings"))
}

fn secret_token(s: &kmdr_testkit::KubeApiServer) -> Option<String> {
    use base64::Engine;
    let secret = get(s, &format!("/api/v1/namespaces/{NS}/secrets/{RELEASE}-token"))?;
    let raw = base64::engine::general_purpose::STANDARD.decode(secret["data"]["token"].as_str()?).ok()?;
    Some(String::from_utf8(raw).unwrap())
}

#[test]
fn platform_reinstalled_by_real_helm_with_the_restored_overlay() {
    if !have("helm") {
        return;
    }
    let Some(s) = real_kube::server() else { return };
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let chart = d.join("chart");
    write_chart(&chart);
    let k = Kmdr::local(d);
    k.init();
    let kc = s.kubeconfig.display().to_string();

    // --- the platform as installed: defaults overridden on the command line
    // (helm keeps them in the release as the user-supplied values).
    let t0 = Instant::now();
    helm(
        &s.kubeconfig,
        &[
            "install",
            RELEASE,
            &chart.display().to_string(),
            "--namespace",
            NS,
            "--create-namespace",
            "--set",
            "greeting=from-the-install",
            "--set",
            "token=s3cr3t-from-install",
            "--set",
            "extraKey=kept",
            "--wait",
            "--timeout",
            "60s",
        ],
    );
    let install_took = t0.elapsed();
    assert_eq!(configmap(s).unwrap()["data"]["greeting"], "from-the-install");

    // --- backup platform: from the release Secret helm wrote; nothing written.
    let mark = audit_mark(s);
    let m = k.json(&["backup", "platform", "--release", RELEASE, "-n", NS, "--kubeconfig", &kc]);
    assert_eq!(writes(&kmdr_requests(s, mark, &[NS], &[])), vec![], "the backup wrote to the cluster");
    let src = &m["source"];
    assert_eq!(src["release"], RELEASE, "{src}");
    assert_eq!(src["namespace"], NS);
    assert_eq!(src["revision"], 1);
    assert_eq!(src["status"], "deployed");
    assert_eq!(src["chart"], "kmdr-test-platform");
    assert_eq!(src["chart_version"], "0.3.1");

    // --- the disaster: the release is gone.
    helm(&s.kubeconfig, &["uninstall", RELEASE, "--namespace", NS, "--wait"]);
    assert!(configmap(s).is_none() && secret_token(s).is_none());

    // --dry-run names the command kmdr will run.
    let to = d.join("restore");
    let to_s = to.display().to_string();
    let chart_s = chart.display().to_string();
    let dry =
        k.ok(&["restore", "platform", "latest", "--to", &to_s, "--chart", &chart_s, "--dry-run", "--kubeconfig", &kc]);
    assert!(
        dry.contains(&format!("would run   helm install {RELEASE} {chart_s} --version 0.3.1 --namespace {NS}")),
        "{dry}"
    );

    // --- restore platform --execute: real helm installs the chart again with
    // the restored overlay; the wait for pods has none to wait for.
    let t0 = Instant::now();
    let out = k.ok(&[
        "restore",
        "platform",
        "latest",
        "--to",
        &to_s,
        "--chart",
        &chart_s,
        "--execute",
        "--kubeconfig",
        &kc,
        "--timeout",
        "60s",
        "--interval",
        "200ms",
    ]);
    let restore_took = t0.elapsed();
    assert!(out.contains(&format!("installed release {NS}/{RELEASE}")), "{out}");
    let overlay = values_from_yaml(&std::fs::read_to_string(to.join("values.yaml")).unwrap()).unwrap();
    assert_eq!(
        overlay,
        json!({"greeting": "from-the-install", "token": "s3cr3t-from-install", "extraKey": "kept"}),
        "the overlay is the user-supplied values, not the chart's defaults"
    );
    let cm = configmap(s).expect("the ConfigMap is back");
    assert_eq!(cm["data"], json!({"greeting": "from-the-install", "logLevel": "info", "extra": "kept"}));
    assert_eq!(secret_token(s).as_deref(), Some("s3cr3t-from-install"));
    assert!(get(s, &format!("/api/v1/namespaces/{NS}/serviceaccounts/{RELEASE}-operator")).is_some());
    let status = helm(&s.kubeconfig, &["status", RELEASE, "--namespace", NS, "-o", "json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["info"]["status"], "deployed");
    assert_eq!(status["version"], 1, "a fresh install, revision 1");

    // The restored release backs up as the original did.
    let again = k.json(&["backup", "platform", "--release", RELEASE, "-n", NS, "--kubeconfig", &kc]);
    assert_eq!(again["source"]["chart_version"], "0.3.1");
    helm(&s.kubeconfig, &["uninstall", RELEASE, "--namespace", NS, "--wait"]);
    eprintln!(
        "platform on the real API server: helm install {:.1}s, kmdr restore platform --execute {:.1}s, whole test {:.1}s",
        install_took.as_secs_f64(),
        restore_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// `kmdr restore --plan --layer platform` (as a drill restores the layer):
/// an installed release is left as it is; an uninstalled one is installed
/// again from the chart Helm kept in the release (the plan names no
/// `helm.chart`), with the backed-up overlay.
#[test]
fn restore_by_plan_reinstalls_from_the_chart_kept_in_the_release() {
    const NS2: &str = "pr-plan";
    const REL2: &str = "pr-plan-kmetal";
    if !have("helm") {
        return;
    }
    let Some(s) = real_kube::server() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let chart = d.join("chart");
    write_chart(&chart);
    let k = Kmdr::local(d);
    k.init();
    helm(
        &s.kubeconfig,
        &["install", REL2, &chart.display().to_string(), "-n", NS2, "--create-namespace", "--set", "greeting=by-plan"],
    );
    let plan = d.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: pr\nrepository:\n  url: {}\n  keyFile: {}\nlayers:\n  platform:\n    rpo: 15m\n    helm:\n      release: {REL2}\n      namespace: {NS2}\n      kubeconfig: {}\n",
            k.repo,
            k.key_file.display(),
            s.kubeconfig.display()
        ),
    )
    .unwrap();
    let p = plan.display().to_string();
    k.ok(&["plan", "check", &p]);
    let out = k.ok(&["backup", "--plan", &p, "--layer", "platform"]);
    assert!(out.contains(&format!("helm/{NS2}/{REL2}")) && out.contains("-platform-"), "{out}");
    // status measures the layer's RPO; runbook check finds the deployed release is the one backed up.
    let status = k.json(&["status", "--plan", &p]);
    let rpo = status.as_array().unwrap().iter().find(|f| f["check"] == "rpo").unwrap().clone();
    assert_eq!(rpo["level"], "OK", "{status}");
    let o = k.run(&["runbook", "check", "--plan", &p, "-o", "json"]);
    let findings: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let drift = findings.as_array().unwrap().iter().find(|f| f["check"] == "platform-drift").unwrap().clone();
    assert_eq!(drift["level"], "OK", "the deployed release is the one backed up: {drift}");
    assert!(drift["message"].as_str().unwrap().contains("revision 1"), "{drift}");
    let cm = || get(s, &format!("/api/v1/namespaces/{NS2}/configmaps/{REL2}-settings"));
    let uid = cm().expect("installed")["metadata"]["uid"].clone();

    // Installed: nothing to do, and nothing is done.
    let out = k.ok(&["restore", "--plan", &p, "--layer", "platform"]);
    assert!(out.contains(&format!("release {NS2}/{REL2} is installed (revision 1, deployed): left as it is")), "{out}");
    assert_eq!(cm().unwrap()["metadata"]["uid"], uid, "the ConfigMap was not replaced");

    // Uninstalled: helm installs the kept chart with the overlay.
    helm(&s.kubeconfig, &["uninstall", REL2, "-n", NS2, "--wait"]);
    assert!(cm().is_none());
    let dry = k.ok(&["restore", "--plan", &p, "--layer", "platform", "--dry-run"]);
    assert!(dry.contains(&format!("helm install {REL2} ")), "{dry}");
    assert!(cm().is_none(), "a dry run installs nothing");
    k.ok(&["restore", "--plan", &p, "--layer", "platform"]);
    let back = cm().expect("reinstalled");
    assert_ne!(back["metadata"]["uid"], uid);
    assert_eq!(back["data"]["greeting"], "by-plan", "the backed-up overlay: {back}");
    let status: serde_json::Value =
        serde_json::from_str(&helm(&s.kubeconfig, &["status", REL2, "-n", NS2, "-o", "json"])).unwrap();
    assert_eq!(status["info"]["status"], "deployed");
    helm(&s.kubeconfig, &["uninstall", REL2, "-n", NS2, "--wait"]);
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Skip (or, with KMDR_TEST_REQUIRE_SERVERS=1, fail) without `bin` (helm 4
/// and kubectl without a server answer no `--version`: looked up on PATH).
fn have(bin: &str) -> bool {
    if kmdr_testkit::process::find_bin(bin, &[]).is_some() {
        return true;
    }
    assert!(!kmdr_testkit::require_servers(), "{bin} is not on PATH but KMDR_TEST_REQUIRE_SERVERS=1");
    eprintln!("SKIPPED: {bin} not on PATH (source scripts/tools-env.sh)");
    false
}

/// A user overlay with YAML specials, as a platform team's values file has them.
const OVERLAY: &str = "global:\n  domain: kmetal.example.com\n  clusterName: under-1\ningress:\n  hosts: [api.kmetal.example.com, ui.kmetal.example.com]\nreplicas: 2\nratio: 0.75\nnote: \"multi\\nline: text # with yaml specials\"\ngreeting: from-v2\n";

/// The registry Secret the platform needs besides its chart.
fn registry_creds(ns: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
           "metadata": {"name": "registry-creds", "namespace": ns, "labels": {"app.kubernetes.io/part-of": "kmetal"},
                        "annotations": {"kmetal.io/owner": "platform-team"}},
           "data": {".dockerconfigjson": common::b64(r#"{"auths":{"ghcr.io":{"auth":"dXNlcjpzM2NyZXQtdG9rZW4="}}}"#)}})
}

/// Three revisions written by real helm: v1 (superseded), v2 (deployed,
/// the overlay), v3 (failed: the server refused its ConfigMap). The backup
/// takes v2; the restore writes v2's overlay, the Secret and the runbook.
#[test]
fn backup_takes_the_deployed_revision_and_restore_writes_its_overlay_and_runbook() {
    const NS3: &str = "pr-rev";
    const REL3: &str = "pr-rev-kmetal";
    if !have("helm") {
        return;
    }
    let Some(s) = real_kube::server() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let chart = d.join("chart");
    write_chart(&chart);
    // The same chart, 0.3.2, whose ConfigMap name the server refuses (422).
    let broken = d.join("broken");
    write_chart(&broken);
    std::fs::write(broken.join("Chart.yaml"), "apiVersion: v2\nname: kmdr-test-platform\nversion: 0.3.2\n").unwrap();
    std::fs::write(
        broken.join("templates/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_A_Valid_Name\ndata: {}\n",
    )
    .unwrap();
    let k = Kmdr::local(d);
    k.init();
    let kc = s.kubeconfig.display().to_string();
    let chart_s = chart.display().to_string();
    let overlay = d.join("overlay.yaml");
    std::fs::write(&overlay, OVERLAY).unwrap();

    // --- errors, before anything is installed: each with its exit code, nothing committed.
    let dead = d.join("dead-kubeconfig");
    std::fs::write(
        &dead,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: dead\n  cluster: {server: 'http://127.0.0.1:1'}\ncontexts:\n- name: dead\n  context: {cluster: dead, user: u}\ncurrent-context: dead\nusers:\n- name: u\n  user: {token: t}\n",
    )
    .unwrap();
    let dead_s = dead.display().to_string();
    let err = k.fails(&["backup", "platform", "--release", REL3, "-n", NS3, "--kubeconfig", &dead_s], 6);
    assert!(
        err.contains("cannot reach the Kubernetes API at http://127.0.0.1:1")
            && err.contains("check --kubeconfig/--context"),
        "{err}"
    );
    let missing = d.join("missing").display().to_string();
    let err = k.fails(&["backup", "platform", "--release", REL3, "-n", NS3, "--kubeconfig", &missing], 6);
    assert!(err.contains("cannot load the Kubernetes configuration"), "{err}");
    k.fails(&["restore", "platform", "latest", "--to", &d.join("r0").display().to_string()], 5);

    helm(&s.kubeconfig, &["install", REL3, &chart_s, "-n", NS3, "--create-namespace", "--set", "greeting=v1"]);
    helm(&s.kubeconfig, &["install", "pr-rev-other", &chart_s, "-n", NS3]);
    helm(&s.kubeconfig, &["upgrade", REL3, &chart_s, "-n", NS3, "--values", &overlay.display().to_string()]);
    let out = Command::new("helm")
        .args(["upgrade", REL3, &broken.display().to_string(), "-n", NS3, "--kubeconfig", &kc])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the server took an invalid ConfigMap name");
    let history = helm(&s.kubeconfig, &["history", REL3, "-n", NS3, "-o", "json"]);
    let history: serde_json::Value = serde_json::from_str(&history).unwrap();
    let states: Vec<&str> = history.as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(states, ["superseded", "deployed", "failed"], "{history}");
    put(s, "secrets", &registry_creds(NS3));

    let backup = |extra: &[&str]| {
        let mut a = vec!["backup", "platform", "--release", REL3, "-n", NS3, "--kubeconfig", &kc];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    // An unknown release: 5, naming the releases there. An unknown --secret: 5. A malformed one: 2.
    let err = k.fails(&["backup", "platform", "--release", "pr-rev-kmetl", "-n", NS3, "--kubeconfig", &kc], 5);
    assert!(err.contains(&format!("no Helm release \"pr-rev-kmetl\" in namespace {NS3}")), "{err}");
    assert!(err.contains(&format!("{REL3}, pr-rev-other")) || err.contains(&format!("pr-rev-other, {REL3}")), "{err}");
    let err = k.fails(&strs(&backup(&["--secret", "pr-rev/nope"])), 5);
    assert!(err.contains("Secret pr-rev/nope not found"), "{err}");
    k.fails(&strs(&backup(&["--secret", "registry-creds"])), 2);
    assert_eq!(k.json(&["backups", "list"]).as_array().map(Vec::len), Some(0), "a failed backup committed");

    // --- the backup: v2, the deployed one, over v3 (failed) and v1.
    let mark = audit_mark(s);
    let m = k.json(&strs(&backup(&["--secret", "pr-rev/registry-creds", "--tag", "env=lab"])));
    assert_eq!(writes(&kmdr_requests(s, mark, &[NS3], &[])), vec![], "the backup wrote to the cluster");
    assert_eq!(m["layer"], "platform");
    assert_eq!(m["series"], format!("platform/{NS3}/{REL3}"));
    assert_eq!(m["tags"]["env"], "lab");
    let src = &m["source"];
    assert_eq!(src["type"], "helm-release");
    assert_eq!(src["chart"], "kmdr-test-platform");
    assert_eq!(src["chart_version"], "0.3.1", "v2's chart, not v3's 0.3.2");
    assert_eq!(src["app_version"], "1.0");
    assert_eq!(src["revision"], 2);
    assert_eq!(src["status"], "deployed");
    assert_eq!(src["release_secret"], format!("{NS3}/sh.helm.release.v1.{REL3}.v2"));
    assert!(src["kubernetes_version"].as_str().unwrap().starts_with("v1.34."), "{src}");
    assert_eq!(src["cluster"], s.url.as_str());
    assert!(src["first_deployed"].as_str().unwrap() < src["last_deployed"].as_str().unwrap(), "{src}");
    assert_eq!(src["secrets"], json!(["pr-rev/registry-creds"]));
    let files: Vec<&str> = m["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(files, ["values.yaml", "release.json", "secrets/pr-rev/registry-creds.yaml"]);
    let stored = k.ok(&["backups", "show", "latest", "-o", "json"]);
    let creds = registry_creds(NS3);
    let docker_b64 = creds["data"][".dockerconfigjson"].as_str().unwrap();
    for needle in [docker_b64, "dXNlcjpzM2NyZXQtdG9rZW4=", "auths"] {
        assert!(!stored.contains(needle), "the manifest holds a secret value: {needle}");
    }
    assert!(stored.contains(&format!("sh.helm.release.v1.{REL3}.v2")));

    // --dry-run: what would be written and run, nothing written.
    let to = d.join("restore");
    let to_s = to.display().to_string();
    let dry = k.ok(&["restore", "platform", "latest", "--to", &to_s, "--dry-run"]);
    assert!(dry.contains(&format!("would write {to_s}/values.yaml")), "{dry}");
    assert!(dry.contains(&format!("would write {to_s}/secrets/pr-rev/registry-creds.yaml")), "{dry}");
    assert!(dry.contains(&format!("would run   helm install {REL3} kmdr-test-platform --version 0.3.1")), "{dry}");
    assert!(!to.exists(), "--dry-run wrote {}", to.display());

    // The restore writes v2's overlay as helm was given it, and the runbook.
    let out = k.ok(&["restore", "platform", "latest", "--to", &to_s]);
    let values = values_from_yaml(&std::fs::read_to_string(to.join("values.yaml")).unwrap()).unwrap();
    assert_eq!(values, values_from_yaml(OVERLAY).unwrap());
    let commands: Vec<&str> = out.lines().filter(|l| l.starts_with("  ")).map(str::trim).collect();
    assert_eq!(
        commands,
        [
            format!("kubectl apply -f {to_s}/namespaces.yaml"),
            format!("kubectl apply --recursive -f {to_s}/secrets/"),
            format!(
                "helm install {REL3} kmdr-test-platform --version 0.3.1 --namespace {NS3} --create-namespace --values {to_s}/values.yaml --wait --timeout 15m"
            ),
        ],
        "{out}"
    );
    assert!(out.contains("pass --chart"), "{out}");
    let manifest =
        values_from_yaml(&std::fs::read_to_string(to.join("secrets/pr-rev/registry-creds.yaml")).unwrap()).unwrap();
    assert_eq!(manifest["kind"], "Secret");
    assert_eq!(manifest["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(manifest["data"][".dockerconfigjson"], docker_b64);
    let meta = manifest["metadata"].as_object().unwrap();
    assert_eq!(
        meta.keys().collect::<Vec<_>>(),
        ["annotations", "labels", "name", "namespace"],
        "server-set metadata kept"
    );
    assert_eq!(manifest["metadata"]["annotations"], json!({"kmetal.io/owner": "platform-team"}));
    let ns = std::fs::read_to_string(to.join("namespaces.yaml")).unwrap();
    assert_eq!(values_from_yaml(&ns).unwrap()["metadata"]["name"], NS3);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(to.join("values.yaml")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "values.yaml is readable by others: {mode:o}");
    }

    // KUBECONFIG instead of --kubeconfig; no --secret: values only.
    let env = Kmdr { extra_env: vec![("KUBECONFIG".into(), kc.clone())], ..Kmdr::local(d) };
    let m = env.json(&["backup", "platform", "--release", REL3, "-n", NS3]);
    assert_eq!(m["source"]["revision"], 2);
    assert_eq!(m["source"]["secrets"], json!([]));
    let r2 = d.join("r2").display().to_string();
    let out = env.ok(&["restore", "platform", "latest", "--to", &r2]);
    let commands: Vec<&str> = out.lines().filter(|l| l.starts_with("  ")).map(str::trim).collect();
    assert_eq!(
        commands,
        [format!(
            "helm install {REL3} kmdr-test-platform --version 0.3.1 --namespace {NS3} --create-namespace --values {r2}/values.yaml --wait --timeout 15m"
        )]
    );
    assert!(!d.join("r2/secrets").exists());
    for r in [REL3, "pr-rev-other"] {
        helm(&s.kubeconfig, &["uninstall", r, "-n", NS3, "--wait"]);
    }
}

/// `--execute` on a server of the test's own (the wait for pods looks at
/// every namespace): without helm on PATH, exit 8 and nothing applied; with
/// real kubectl and helm, the namespace and Secrets are applied before helm
/// installs; then the wait until no pod is outside Running/Completed, and
/// exit 11 naming a pod that never runs.
#[test]
fn execute_needs_helm_applies_secrets_first_and_waits_for_pods() {
    if !have("helm") || !have("kubectl") || !kmdr_testkit::need("kube-apiserver") {
        return;
    }
    const NS4: &str = "pe-kmetal";
    const REL4: &str = "pe-kmetal";
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let s = kmdr_testkit::KubeApiServer::start(&d.join("apiserver"));
    let kc = s.kubeconfig.display().to_string();
    let chart = d.join("chart");
    write_chart(&chart);
    let chart_s = chart.display().to_string();
    let k = Kmdr::local(d);
    k.init();
    helm(&s.kubeconfig, &["install", REL4, &chart_s, "-n", NS4, "--create-namespace", "--set", "greeting=exec"]);
    put(&s, "secrets", &registry_creds(NS4));
    k.ok(&[
        "backup",
        "platform",
        "--release",
        REL4,
        "-n",
        NS4,
        "--secret",
        "pe-kmetal/registry-creds",
        "--kubeconfig",
        &kc,
    ]);
    helm(&s.kubeconfig, &["uninstall", REL4, "-n", NS4, "--wait"]);
    real_kube::delete(&s, &format!("/api/v1/namespaces/{NS4}/secrets/registry-creds"));

    // helm missing: PATH holds kubectl only. Exit 8, one line naming helm and the command.
    let bin = d.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let kubectl = kmdr_testkit::process::find_bin("kubectl", &[]).unwrap();
    std::os::unix::fs::symlink(&kubectl, bin.join("kubectl")).unwrap();
    let only_kubectl = Kmdr { extra_env: vec![("PATH".into(), bin.display().to_string())], ..Kmdr::local(d) };
    let to = d.join("restore").display().to_string();
    let exec = |extra: &[&str]| {
        let mut a =
            vec!["restore", "platform", "latest", "--to", &to, "--chart", &chart_s, "--execute", "--kubeconfig", &kc];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let mark = s.audit_events().len();
    let err = only_kubectl.fails(&strs(&exec(&[])), 8);
    assert!(err.contains("helm is not installed"), "{err}");
    assert!(err.contains(&format!("helm install {REL4} {chart_s} --version 0.3.1")), "{err}");
    assert!(get(&s, &format!("/api/v1/namespaces/{NS4}/secrets/registry-creds")).is_none(), "kubectl ran");
    assert!(
        !s.audit_events().iter().skip(mark).any(|e| !matches!(e["verb"].as_str(), Some("get" | "list" | "watch"))
            && e["user"]["username"] == "kmdr-admin"
            && e["userAgent"].as_str().is_some_and(|a| !a.starts_with("curl/"))),
        "something was written although helm is missing"
    );

    // Pods of the platform: one Pending the kubelet (the test) starts once
    // kmdr has looked, one Completed.
    put(
        &s,
        "serviceaccounts",
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": NS4}}),
    );
    let pod = |name: &str, phase: Option<&str>| {
        put(
            &s,
            "pods",
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS4},
                    "spec": {"nodeName": "node-1", "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]}}),
        );
        if let Some(phase) = phase {
            real_kube::patch_status(&s, &format!("/api/v1/namespaces/{NS4}/pods/{name}"), &json!({"phase": phase}))
                .unwrap();
        }
    };
    pod("kamaji-0", None);
    pod("migrate-1", Some("Succeeded"));
    let mark = s.audit_events().len();
    let done = std::sync::atomic::AtomicBool::new(false);
    let o = std::thread::scope(|scope| {
        let kubelet = scope.spawn(|| {
            // kmdr (kube-rs: neither curl, helm nor kubectl) listed the pods.
            while !s.audit_events().iter().skip(mark).any(|e| {
                e["verb"] == "list"
                    && e["objectRef"]["resource"] == "pods"
                    && e["user"]["username"] == "kmdr-admin"
                    && e["userAgent"]
                        .as_str()
                        .is_none_or(|a| !(a.starts_with("curl/") || a.starts_with("Helm/") || a.starts_with("kubectl")))
            }) {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            real_kube::patch_status(
                &s,
                &format!("/api/v1/namespaces/{NS4}/pods/kamaji-0"),
                &json!({"phase": "Running"}),
            )
            .unwrap();
        });
        let o = k.run(&strs(&exec(&["--interval", "100ms", "--timeout", "60s"])));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        kubelet.join().unwrap();
        o
    });
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("pods: 1 of 2 Running/Completed") && err.contains("pods: 2 of 2 Running/Completed"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("every pod is Running or Completed"));
    // kubectl applied the Secret before helm wrote its release.
    let events = s.audit_events();
    let at = |what: &dyn Fn(&serde_json::Value) -> bool| {
        events.iter().skip(mark).position(what).unwrap_or_else(|| panic!("not in the audit log"))
    };
    let secret_applied = at(&|e| {
        e["objectRef"]["name"] == "registry-creds"
            && e["userAgent"].as_str().is_some_and(|a| a.starts_with("kubectl"))
            && !matches!(e["verb"].as_str(), Some("get" | "list" | "watch"))
    });
    let release_written =
        at(&|e| e["verb"] == "create" && e["objectRef"]["name"] == format!("sh.helm.release.v1.{REL4}.v1").as_str());
    assert!(secret_applied < release_written, "helm ran before kubectl applied the Secrets");
    let creds = get(&s, &format!("/api/v1/namespaces/{NS4}/secrets/registry-creds")).expect("the Secret is back");
    assert_eq!(creds["data"], registry_creds(NS4)["data"]);
    assert_eq!(
        get(&s, &format!("/api/v1/namespaces/{NS4}/configmaps/{REL4}-settings")).unwrap()["data"]["greeting"],
        "exec"
    );

    // A pod that never runs: exit 11 naming it.
    helm(&s.kubeconfig, &["uninstall", REL4, "-n", NS4, "--wait"]);
    pod("stuck", None);
    let err = k.fails(&strs(&exec(&["-q", "--interval", "100ms", "--timeout", "1s"])), 11);
    assert!(err.contains("pe-kmetal/stuck Pending"), "{err}");
}
