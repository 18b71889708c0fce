//! `kmdr drill` end to end against real servers: an under-cluster etcd that
//! the plan's own steps stop, wipe and start again, a shared tenant etcd and a
//! kine PostgreSQL, recovered and compared key by key; then a plan that
//! forgets a tenant, which must FAIL and name it.

use crate::common;

use common::Kmdr;
use kmdr_testkit::{Etcd, Postgres};
use std::path::Path;

/// An etcd the drill's steps control: started by a script that records its
/// pid, so the failure step can kill it and the after-restore step start it
/// again on the restored data dir.
struct StepEtcd {
    dir: std::path::PathBuf,
    client_url: String,
    peer_url: String,
}

impl StepEtcd {
    fn new(dir: &Path) -> StepEtcd {
        let c = common::free_port();
        let p = common::free_port();
        StepEtcd {
            dir: dir.to_path_buf(),
            client_url: format!("http://127.0.0.1:{c}"),
            peer_url: format!("http://127.0.0.1:{p}"),
        }
    }
    fn data_dir(&self) -> String {
        self.dir.join("uc.etcd").display().to_string()
    }
    fn pid_file(&self) -> String {
        self.dir.join("uc.pid").display().to_string()
    }
    /// A shell line that starts the member in the background and waits until it answers.
    fn start_line(&self) -> String {
        format!(
            "nohup etcd --name uc --data-dir {d} --listen-client-urls {c} --advertise-client-urls {c} --listen-peer-urls {p} \
             --initial-advertise-peer-urls {p} --initial-cluster uc={p} --log-level error > {d}.log 2>&1 & echo $! > {pid}; \
             for i in $(seq 100); do etcdctl --endpoints {c} endpoint health >/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1",
            d = self.data_dir(),
            c = self.client_url,
            p = self.peer_url,
            pid = self.pid_file()
        )
    }
    fn stop_line(&self) -> String {
        format!(
            "kill $(cat {pid}); while kill -0 $(cat {pid}) 2>/dev/null; do sleep 0.05; done; rm -rf {d}",
            pid = self.pid_file(),
            d = self.data_dir()
        )
    }
}

impl Drop for StepEtcd {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.pid_file()) {
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        }
    }
}

fn plan(dir: &Path, uc: &StepEtcd, tenants_url: &str, pg_url: &str, selector: &str) -> std::path::PathBuf {
    let yaml = format!(
        r#"version: 1
name: drill-test
repository:
  url: {repo}
  keyFile: {key}
layers:
  under-cluster:
    rto: 5m
    rpo: 1h
    etcd:
      endpoints: [{uc}]
      restore:
        dataDir: {data}
        name: uc
        initialCluster: uc={peer}
        initialAdvertisePeerUrls: {peer}
    nodeFiles:
      root: {node}
      restoreTo: {node}
      encryptionConfig: /etc/kubernetes/enc/enc.yaml
  platform:
    rto: 2h
    rpo: 15m
  tenant-control-planes:
    rto: 10m
    rpo: 5m
    datastores:
      - name: shared-etcd
        url: {tenants}
        tenants: {selector}
      - name: kine-pg
        url: {pg}
        tenants: all
run:
  - name: stop etcd and lose its data dir
    layer: under-cluster
    phase: failure
    command: {stop:?}
    timeout: 30s
  - name: lose the node's files
    layer: under-cluster
    phase: failure
    command: [rm, -rf, "{node}/etc/kubernetes"]
    timeout: 30s
  - name: start etcd on the restored data dir
    layer: under-cluster
    phase: after-restore
    command: {start:?}
    timeout: 60s
  - name: etcd endpoint health
    layer: under-cluster
    phase: health-check
    command: [etcdctl, --endpoints, "{uc}", endpoint, health]
    timeout: 30s
"#,
        repo = dir.join("repo").display(),
        key = dir.join("kmdr.key").display(),
        uc = uc.client_url,
        data = uc.data_dir(),
        peer = uc.peer_url,
        tenants = tenants_url,
        pg = pg_url,
        stop = uc.stop_line(),
        start = uc.start_line(),
        node = dir.join("node").display(),
    );
    let path = dir.join(format!("kmdr-{}.yaml", selector.len()));
    std::fs::write(&path, yaml).unwrap();
    path
}

#[tokio::test]
async fn a_lab_drill_passes_and_a_forgotten_tenant_fails_it() {
    need_etcd!();
    if !kmdr_testkit::need("initdb") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();

    // The under cluster, started the way the plan's step will start it again.
    let uc = StepEtcd::new(dir.path());
    let st = std::process::Command::new("sh").arg("-c").arg(uc.start_line()).status().unwrap();
    assert!(st.success(), "the under-cluster etcd starts");
    let ucc = etcd_client::Client::connect([uc.client_url.as_str()], None).await.unwrap();
    let mut kv = ucc.kv_client();
    for i in 0..50 {
        kv.put(format!("/registry/namespaces/ns-{i}"), format!("ns {i}"), None).await.unwrap();
    }

    // Tenants: three on a shared etcd, one on kine PostgreSQL (moved there by kmdr itself).
    let shared = Etcd::start(dir.path(), "shared");
    shared.load("/t1/pods/default/web-", 120, 300, 1).await;
    shared.load("/t2/configmaps/kube-system/cm-", 80, 200, 2).await;
    shared.load("/t3/secrets/default/s-", 40, 100, 3).await;
    let shared_url = shared.client_url.replace("http://", "etcd://");
    let pg = Postgres::start(dir.path());
    let m = k.json(&["backup", "tenant", "--datastore", &shared_url, "--schema", "t1"]);
    k.ok(&["restore", "tenant", m[0]["id"].as_str().unwrap(), "--datastore", &pg.url(), "--schema", "pg1"]);

    // The node's identity files (the plan's nodeFiles), lost and put back by the drill.
    crate::node_files::node(&dir.path().join("node"));
    let ca_key = dir.path().join("node/etc/kubernetes/pki/ca.key");
    let ca_key_before = std::fs::read(&ca_key).unwrap();

    // A plan check first.
    let good = plan(dir.path(), &uc, &shared_url, &pg.url(), "all");
    let out = k.ok(&["plan", "check", good.to_str().unwrap()]);
    assert!(out.contains("ok"), "{out}");
    // The drill refuses to run without --yes.
    k.fails(&["drill", "--plan", good.to_str().unwrap()], 2);

    let reports = dir.path().join("reports");
    let o = k.run(&[
        "drill",
        "--plan",
        good.to_str().unwrap(),
        "--yes",
        "--report-dir",
        reports.to_str().unwrap(),
        "-o",
        "json",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "drill passes: {stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["verdict"], "PASS");
    let layers = r["layers"].as_array().unwrap();
    let get = |name: &str| layers.iter().find(|l| l["layer"] == name).unwrap().clone();
    for name in ["under-cluster", "tenant-control-planes"] {
        let l = get(name);
        assert_eq!(l["verdict"], "PASS", "{l}");
        assert!(l["rto_s"].as_f64().unwrap() > 0.0 && l["rpo_s"].as_f64().unwrap() > 0.0, "measured: {l}");
        for u in l["units"].as_array().unwrap() {
            assert_eq!(u["diff"]["missing"], 0, "{u}");
            assert_eq!(u["keys_before"], u["keys_after"], "{u}");
            assert_eq!(u["content_before"], u["content_after"], "{u}");
        }
    }
    assert_eq!(get("platform")["verdict"], "SKIPPED");
    let units: Vec<String> = get("tenant-control-planes")["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(units, ["shared-etcd/t1", "shared-etcd/t2", "shared-etcd/t3", "kine-pg/pg1"]);
    let uc_units = get("under-cluster")["units"].as_array().unwrap().clone();
    let names: Vec<&str> = uc_units.iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["node-files", "etcd"], "the node files first, as they are restored");
    assert_eq!(uc_units[1]["keys_before"], 50);
    assert_eq!(uc_units[0]["keys_before"], 10, "kubeadm's PKI and config, and the EncryptionConfiguration");
    assert_eq!(std::fs::read(&ca_key).unwrap(), ca_key_before, "the CA key is back");
    let etcd_backup = uc_units[1]["backup"].as_str().unwrap();
    let snap = k.json(&["backups", "show", etcd_backup]);
    assert_eq!(
        snap["source"]["needs"]["from"], uc_units[0]["backup"],
        "the snapshot records the node files taken with it"
    );
    // The reports: JSON and Markdown on disk, and kept in the repository.
    let files: Vec<_> =
        std::fs::read_dir(&reports).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(files.iter().any(|f| f.ends_with(".md")) && files.iter().any(|f| f.ends_with(".json")), "{files:?}");
    assert_eq!(std::fs::read_dir(dir.path().join("repo/reports")).unwrap().count(), 1);

    // The same drill with a plan that only backs up t1 and t2: t3 is lost, the drill fails and says so.
    let forgetful = plan(dir.path(), &uc, &shared_url, &pg.url(), "[t1, t2]");
    let o =
        k.run(&["drill", "--plan", forgetful.to_str().unwrap(), "--yes", "--report-dir", reports.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "a lost tenant fails the drill: {stdout}");
    assert!(stdout.contains("FAIL") && stdout.contains("shared-etcd/t3: 40 keys missing"), "{stdout}");
    assert!(stdout.contains("does not back this tenant up"), "{stdout}");

    // Status: every unit's newest backup within its RPO, the last drill (the failed one) named.
    let o = k.run(&["status", "--plan", good.to_str().unwrap(), "-o", "json"]);
    let findings: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = findings.as_array().unwrap();
    assert!(
        f.iter().any(|x| x["check"] == "rpo"
            && x["subject"] == "tenant-control-planes shared-etcd/t1"
            && x["level"] == "OK"),
        "{findings}"
    );
    assert!(
        f.iter().any(|x| x["check"] == "rto" && x["subject"] == "tenant-control-planes" && x["level"] == "FAIL"),
        "the last drill failed: {findings}"
    );
    assert_eq!(o.status.code(), Some(1));

    // Restore by plan: lose t2 by hand, bring the layer back from the newest backups.
    shared.client().await.delete("/t2/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
    let dry = k.ok(&[
        "restore",
        "--plan",
        good.to_str().unwrap(),
        "--layer",
        "tenant-control-planes",
        "--force",
        "--dry-run",
    ]);
    assert!(dry.contains("shared-etcd/t2") && dry.contains("would write 80 keys"), "{dry}");
    k.ok(&["restore", "--plan", good.to_str().unwrap(), "--layer", "tenant-control-planes", "--force"]);
    let n = shared
        .client()
        .await
        .get("/t2/", Some(etcd_client::GetOptions::new().with_prefix().with_count_only()))
        .await
        .unwrap()
        .count();
    assert_eq!(n, 80, "t2 restored by plan");
    // Backup by plan: one line per unit.
    let out = k.ok(&["backup", "--plan", good.to_str().unwrap(), "--layer", "tenant-control-planes"]);
    assert_eq!(out.lines().count(), 4, "{out}");

    // The monthly review: a plan outside git is a finding that says what to do.
    let o = k.run(&["runbook", "check", "--plan", good.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("not tracked in git"), "{text}");
}

/// A drill of one tenant layer (the built-in wipe, no steps): its report's paths.
fn tenants_only_plan(dir: &Path, url: &str) -> String {
    let path = dir.join("tenants-only.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nname: tenants-only\nrepository:\n  url: {}\n  keyFile: {}\nlayers:\n  tenant-control-planes:\n    rto: 10m\n    rpo: 1h\n    datastores:\n      - name: shared\n        url: {url}\n        tenants: all\n",
            dir.join("repo").display(),
            dir.join("kmdr.key").display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// `drill -o json` names the files it wrote (issue 18); its progress is
/// plain lines off a terminal and a spinner on one (script(1) gives it a pty).
#[tokio::test]
async fn drill_json_names_its_report_files_and_progress_shows_only_on_a_terminal() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let shared = Etcd::start(dir.path(), "shared");
    shared.load("/t1/pods/default/web-", 20, 100, 1).await;
    let plan = tenants_only_plan(dir.path(), &shared.client_url.replace("http://", "etcd://"));
    let reports = dir.path().join("reports");
    let reports_s = reports.to_str().unwrap();

    let o = k.run(&["drill", "--plan", &plan, "--yes", "--report-dir", reports_s, "-o", "json"]);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{}\n{stderr}", String::from_utf8_lossy(&o.stdout));
    assert!(!stderr.contains("drill:"), "-o json prints no progress: {stderr}");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["verdict"], "PASS", "{r}");
    let files = &r["report_files"];
    let mut written = Vec::new();
    for (key, ext) in [("json", ".json"), ("markdown", ".md"), ("html", ".html")] {
        let p =
            std::path::PathBuf::from(files[key].as_str().unwrap_or_else(|| panic!("no report_files.{key}: {files}")));
        assert!(p.starts_with(&reports) && p.to_str().unwrap().ends_with(ext), "{key}: {}", p.display());
        assert!(p.is_file(), "{} was not written", p.display());
        written.push(p);
    }
    // The JSON file is the report printed, less the list of files.
    let mut printed = r.clone();
    printed.as_object_mut().unwrap().remove("report_files");
    let on_disk: serde_json::Value = serde_json::from_slice(&std::fs::read(&written[0]).unwrap()).unwrap();
    assert_eq!(on_disk, printed);
    assert!(std::fs::read_to_string(&written[2]).unwrap().starts_with("<!DOCTYPE html>"));
    let kept = files["repository"].as_str().unwrap();
    assert_eq!(kept, format!("reports/{}", written[0].file_name().unwrap().to_str().unwrap()));
    assert!(dir.path().join("repo").join(kept).exists(), "{kept} is not in the repository");

    // Off a terminal (a pipe here): plain lines, no spinner, no control characters.
    let o = k.run(&["drill", "--plan", &plan, "--yes", "--report-dir", reports_s]);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("drill: tenant-control-planes: ")), "{stderr}");
    assert!(!stderr.contains('\r') && !stderr.contains('\x1b'), "control characters off a terminal: {stderr:?}");

    // On a terminal: the same lines, and a spinner redrawn in place.
    if kmdr_testkit::need("script") {
        let line = format!("{} drill --plan {plan} --yes --report-dir {reports_s}", env!("CARGO_BIN_EXE_kmdr"));
        let o = std::process::Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env_remove("KMDR_REPO")
            .env_remove("KMDR_KEY_FILE")
            .env("TERM", "xterm")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let tty = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(o.status.success(), "{tty}");
        assert!(tty.contains("drill: tenant-control-planes: "), "{tty}");
        // The spinner: the step in progress with its elapsed time, the line cleared before each redraw.
        assert!(
            tty.contains("\r\x1b[2K") && tty.contains("drill: tenant-control-planes: inventory shared/t1 ["),
            "no spinner on a terminal: {tty:?}"
        );
    }
}

/// Run `kmdr ARGS` on a terminal (script(1) gives it a pty, as the drill's
/// test above does); what the terminal showed. `None` without script(1).
fn on_a_terminal(args: &str) -> Option<String> {
    if !kmdr_testkit::need("script") {
        return None;
    }
    let line = format!("{} {args}", env!("CARGO_BIN_EXE_kmdr"));
    let o = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("KMDR_REPO")
        .env_remove("KMDR_KEY_FILE")
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "kmdr {args}: {tty}");
    Some(tty)
}

/// Off a terminal: progress lines are plain lines (no spinner, no control characters).
fn assert_plain(stderr: &str, line: &str) {
    assert!(stderr.lines().any(|l| l.starts_with(line)), "no {line:?} line: {stderr}");
    assert!(!stderr.contains('\r') && !stderr.contains('\x1b'), "control characters off a terminal: {stderr:?}");
}

/// On a terminal: the same lines, and a spinner redrawn in place showing the
/// step in progress and its elapsed time.
fn assert_spinner(tty: &str, step: &str) {
    assert!(tty.contains(step), "{tty}");
    assert!(tty.contains("\r\x1b[2K") && tty.contains(&format!("{step} [")), "no spinner on a terminal: {tty:?}");
}

/// `backup --plan` and `forget --prune` (issue 18): progress through the
/// shared notifier, a spinner on a terminal and plain lines off it; nothing
/// with -o json or -q. Their stdout is the same either way.
#[tokio::test]
async fn backup_plan_and_forget_prune_show_a_spinner_on_a_terminal_and_plain_lines_off_it() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let shared = Etcd::start(dir.path(), "shared");
    shared.load("/t1/pods/default/web-", 20, 100, 1).await;
    let plan = tenants_only_plan(dir.path(), &shared.client_url.replace("http://", "etcd://"));
    let backups = || k.json(&["backups", "list"]).as_array().unwrap().len();

    // backup --plan, off a terminal: a line per unit, the table on stdout.
    let o = k.run(&["backup", "--plan", &plan]);
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert_plain(&stderr, "tenant-control-planes: backup shared/t1");
    assert!(stdout.starts_with("tenant-control-planes") && stdout.contains("shared/t1"), "{stdout}");
    for quiet in [&["-o", "json"][..], &["-q"]] {
        let o = k.run(&[&["backup", "--plan", &plan][..], quiet].concat());
        assert!(o.status.success() && o.stderr.is_empty(), "{quiet:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(backups(), 3);

    // backup --plan, on a terminal.
    if let Some(tty) = on_a_terminal(&format!("backup --plan {plan}")) {
        assert_spinner(&tty, "tenant-control-planes: backup shared/t1");
        // The table after the spinner was cleared, on a line of its own.
        let table =
            |l: &str| l.starts_with("tenant-control-planes") && l.contains("shared/t1 ") && l.contains("-tenant-");
        assert!(tty.split(['\n', '\r']).any(|l| table(l.trim_start_matches("\x1b[2K"))), "{tty:?}");
        assert_eq!(backups(), 4);
    }

    // forget --prune, off a terminal: a line per step, the decisions on stdout.
    let o = k.run(&["forget", "--keep-last", "3", "--prune"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert_plain(&stderr, "forget: removing what the policy drops, then the chunks only it used");
    assert_plain(&stderr, "forget: removing the delta segments");
    assert!(stdout.contains("  removed ") && stdout.contains("unreferenced chunks"), "{stdout}");
    assert_eq!(backups(), 3);
    let o = k.run(&["forget", "--keep-last", "3", "--prune", "-o", "json"]);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));

    // forget --prune, on a terminal.
    let repo = format!("--repo {} --key-file {}", k.repo, k.key_file.display());
    if let Some(tty) = on_a_terminal(&format!("forget --keep-last 1 --prune {repo}")) {
        assert_spinner(&tty, "forget: removing what the policy drops, then the chunks only it used");
        assert_spinner(&tty, "forget: removing the delta segments no remaining full backup can use");
        assert!(tty.contains("  removed ") && tty.contains("unreferenced chunks"), "{tty}");
        assert_eq!(backups(), 1);
    }
}
