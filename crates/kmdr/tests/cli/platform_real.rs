//! `kmdr backup platform` / `kmdr restore platform --execute` against a REAL
//! API server (kube-apiserver 1.34) with real helm 4: a small chart written
//! here (a ConfigMap, a Secret and a ServiceAccount: objects that need no
//! pods, since no kubelet runs), installed with user-supplied values, backed
//! up from the release Secret helm itself wrote, uninstalled, and installed
//! again by kmdr with the restored values overlay.

use crate::common;

use common::Kmdr;
use common::real_kube::{self, audit_mark, get, kmdr_requests, writes};
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
    // helm 4 has no --version flag (kmdr_testkit::need runs it): look it up.
    if kmdr_testkit::process::find_bin("helm", &[]).is_none() {
        assert!(
            !kmdr_testkit::require_servers(),
            "helm is not on PATH but KMDR_TEST_REQUIRE_SERVERS=1: source scripts/tools-env.sh"
        );
        eprintln!("SKIPPED: helm not on PATH (source scripts/tools-env.sh)");
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
