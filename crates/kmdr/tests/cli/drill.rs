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
    assert_eq!(get("under-cluster")["units"][0]["keys_before"], 50);
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
