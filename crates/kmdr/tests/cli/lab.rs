//! `kmdr lab`: a new user's path, end to end with real servers. `lab up` in a
//! temp dir, `lab status` shows it up, `drill --lab` passes with measured RTO
//! and RPO and no differences (the platform reinstalled by real helm and the
//! Kamaji objects re-applied, with the lab's kube-apiserver), and `lab down`
//! leaves none of the lab's processes running; without kube-apiserver the lab
//! says what it left out.

/// Whether `pid` is a live process (a zombie counts as dead: it holds nothing).
fn alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(stat.rsplit_once(')').and_then(|(_, r)| r.trim_start().chars().next()), Some('Z' | 'X')),
        Err(_) => false,
    }
}

/// The pids `lab status -o json` reports.
fn pids(status: &serde_json::Value) -> Vec<u64> {
    status["processes"].as_array().unwrap().iter().filter_map(|p| p["pid"].as_u64()).collect()
}

/// Run kmdr with `args` (and this PATH): no --repo or --key-file, the lab brings its own.
fn kmdr(args: &[&str], path: Option<&str>) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_kmdr"));
    c.args(args).env_remove("KMDR_REPO").env_remove("KMDR_KEY_FILE").env_remove("KMDR_LOG");
    if let Some(p) = path {
        c.env("PATH", p);
    }
    c.stdin(std::process::Stdio::null()).output().unwrap()
}

#[test]
fn lab_up_drill_down() {
    if !kmdr_testkit::need("etcd") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let d = dir.to_str().unwrap();
    let run = |args: &[&str]| kmdr(args, None);

    // Up, on few keys so the test is quick.
    let o = run(&["lab", "up", "--dir", d, "--tenants", "2", "--keys", "200"]);
    assert!(
        o.status.success(),
        "lab up: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // A second `up` changes nothing and says so.
    let o = run(&["lab", "up", "--dir", d]);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("already up"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    let o = run(&["lab", "status", "--dir", d, "-o", "json"]);
    assert!(o.status.success());
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["up"], true, "{st}");
    let procs = st["processes"].as_array().unwrap();
    assert!(procs.len() >= 2, "{st}");
    assert!(procs.iter().all(|p| p["alive"] == true && p["pid"].as_u64().is_some_and(alive)), "{st}");
    let plan = st["plan"].as_str().unwrap().to_string();
    let o = run(&["plan", "check", &plan]);
    assert!(o.status.success(), "the lab's plan passes its check: {}", String::from_utf8_lossy(&o.stdout));

    // The drill: no --plan, no --yes.
    let o = run(&["drill", "--lab", "--dir", d, "-o", "json"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "drill --lab passes: {stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["verdict"], "PASS", "{r}");
    let mut drilled = 0;
    for l in r["layers"].as_array().unwrap().iter().filter(|l| l["verdict"] != "SKIPPED") {
        drilled += 1;
        assert_eq!(l["verdict"], "PASS", "{l}");
        assert!(
            l["rto_s"].as_f64().is_some_and(|s| s > 0.0) && l["rpo_s"].as_f64().is_some_and(|s| s > 0.0),
            "measured: {l}"
        );
        let units = l["units"].as_array().unwrap();
        assert!(!units.is_empty(), "{l}");
        for u in units {
            assert!(u["keys_before"].as_u64().unwrap() > 0, "{u}");
            assert_eq!(u["diff"]["missing"], 0, "{u}");
            assert_eq!(u["diff"]["extra"], 0, "{u}");
            assert_eq!(u["diff"]["changed"], 0, "{u}");
            assert_eq!(u["keys_before"], u["keys_after"], "{u}");
            assert_eq!(u["content_before"], u["content_after"], "{u}");
        }
    }
    let kube = kmdr_testkit::need("kube-apiserver") && kmdr_testkit::need("helm");
    if kube {
        // helm uninstalled the release in the failure, kmdr reinstalled it from the backup.
        let platform = r["layers"].as_array().unwrap().iter().find(|l| l["layer"] == "platform").unwrap();
        let u = &platform["units"][0];
        assert_eq!(u["name"], "helm/kmetal-system/kmetal", "{platform}");
        assert_eq!(u["keys_before"], 5, "the chart's five objects: {u}");
        let steps: Vec<&str> = r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["layer"] == "platform")
            .map(|s| s["kind"].as_str().unwrap())
            .collect();
        assert_eq!(steps, ["inventory", "backup", "failure", "restore", "health", "compare"], "{r}");
        // The tenants' Kamaji objects: two TCPs, their CA Secrets and the DataStore,
        // deleted by the drill and applied again after the tenants' data.
        let tcp = r["layers"].as_array().unwrap().iter().find(|l| l["layer"] == "tenant-control-planes").unwrap();
        let kamaji = tcp["units"].as_array().unwrap().iter().find(|u| u["name"] == "kamaji").expect("a kamaji unit");
        assert_eq!(kamaji["keys_before"], 5, "{kamaji}");
        let order: Vec<&str> = r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["layer"] == "tenant-control-planes" && s["kind"] == "restore")
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(order.last(), Some(&"kamaji"), "the manifests after the data: {order:?}");
    }
    let uc = r["layers"].as_array().unwrap().iter().find(|l| l["layer"] == "under-cluster").unwrap();
    let uc_units: Vec<&str> = uc["units"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    let want: &[&str] = if kube { &["node-files", "etcd"] } else { &["etcd"] };
    assert_eq!(uc_units, want, "the lab API server's CA and keys with the under-cluster: {uc}");
    assert_eq!(
        drilled,
        if kube { 3 } else { 2 },
        "under-cluster, platform (with Kubernetes) and tenant-control-planes are drilled"
    );
    let reports: Vec<String> = std::fs::read_dir(dir.join("reports"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(reports.iter().any(|f| f.ends_with(".md")), "{reports:?}");

    // After the drill the under cluster runs under a new pid: status follows it.
    let o = run(&["lab", "status", "--dir", d, "-o", "json"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["up"], true, "{st}");
    let running = pids(&st);
    assert_eq!(running.len(), st["processes"].as_array().unwrap().len());

    // The lab's Kubernetes as scripts/e2e-cluster.sh sees it is the CI script's
    // (scripts/test-e2e-cluster.sh); here: the release and Kamaji objects exist.
    if kube {
        assert!(st["kube"]["kamaji"] == true, "{st}");
    }

    // Down: every process of the lab is gone, and so is the directory.
    let o = run(&["lab", "down", "--dir", d]);
    assert!(o.status.success(), "lab down: {}", String::from_utf8_lossy(&o.stderr));
    for pid in running {
        assert!(!alive(pid), "pid {pid} of the lab still runs");
    }
    assert!(!dir.exists());
    let o = run(&["lab", "status", "--dir", d, "-o", "json"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["up"], false);
}

/// PATH without the directories holding `bin`.
fn path_without(bin: &str) -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let kept: Vec<_> = std::env::split_paths(&path).filter(|d| !d.join(bin).exists()).collect();
    std::env::join_paths(kept).unwrap().into_string().unwrap()
}

#[test]
fn a_lab_without_kube_apiserver_runs_and_says_what_it_left_out() {
    if !kmdr_testkit::need("etcd") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("lab");
    let d = d.to_str().unwrap();
    let path = path_without("kube-apiserver");
    let run = |args: &[&str]| kmdr(args, Some(&path));
    let o = run(&["lab", "up", "--dir", d, "--tenants", "1", "--keys", "20"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("note: no Kubernetes (platform release, Kamaji objects): kube-apiserver is not on PATH (scripts/build-go-tools.sh builds it)"),
        "{out}"
    );
    let plan = std::fs::read_to_string(tmp.path().join("lab/kmdr.yaml")).unwrap();
    assert!(!plan.contains("  helm:") && !plan.contains("uninstall the platform release"), "{plan}");
    let o = run(&["drill", "--lab", "--dir", d, "-o", "json"]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["verdict"], "PASS", "{r}");
    let platform = r["layers"].as_array().unwrap().iter().find(|l| l["layer"] == "platform").unwrap();
    assert_eq!(platform["verdict"], "SKIPPED");
    assert_eq!(
        platform["problems"][0],
        "this plan names no source for this layer: add `helm:` (the platform's release) to drill it"
    );
    assert!(run(&["lab", "down", "--dir", d]).status.success());
}
