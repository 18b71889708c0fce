//! `kmdr lab`: a new user's path, end to end with real servers. `lab up` in a
//! temp dir, `lab status` shows it up, `drill --lab` passes with measured RTO
//! and RPO and no differences, and `lab down` leaves none of the lab's
//! processes running.

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

#[test]
fn lab_up_drill_down() {
    if !kmdr_testkit::need("etcd") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let d = dir.to_str().unwrap();
    // No --repo or --key-file: the lab brings its own.
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_kmdr"));
        c.args(args)
            .env_remove("KMDR_REPO")
            .env_remove("KMDR_KEY_FILE")
            .env_remove("KMDR_LOG")
            .stdin(std::process::Stdio::null());
        c.output().unwrap()
    };

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
    assert_eq!(drilled, 2, "under-cluster and tenant-control-planes are drilled");
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
