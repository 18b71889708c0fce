//! `kmdr serve --lease` with two replicas on a REAL `coordination.k8s.io/v1`
//! Lease (kube-apiserver 1.34): the holder captures a tenant of a real etcd
//! under a writer, the standby captures nothing; the holder is killed with
//! SIGKILL (its pid only); the standby takes the Lease over once it stood
//! still for its duration, and resumes the same chain: every revision the
//! writer made is captured exactly once, and the latest point restored equals
//! the source. The take-over time is measured and printed (`--nocapture`).

use crate::common;
use crate::serve::{Serve, T1_CAPTURING, chain_revisions, http_get, open_repo, runtime, tenant_state, write_plan_for};

use common::real_kube::{self, get};
use common::{Etcd, Kmdr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const NS: &str = "sl-kmdr";
const LEASE_NAME: &str = "kmdr-serve";
/// `--lease-duration`: the standby takes over once the Lease's record stood
/// still this long; the leader renews every third of it.
const LEASE: Duration = Duration::from_secs(4);

fn datastore(e: &Etcd) -> String {
    e.client_url.replace("http://", "etcd://")
}

#[test]
fn two_replicas_on_a_real_lease_the_standby_takes_over_after_a_kill_without_gap_or_duplicate() {
    need_etcd!();
    let Some(s) = real_kube::server() else { return };
    s.create_namespace(NS).unwrap();
    let lease_path = format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{LEASE_NAME}");
    let lease = || get(s, &lease_path);
    let holder = || lease().map(|l| l["spec"]["holderIdentity"].as_str().unwrap_or("").to_string());
    let wait_holder = |who: &str, within: Duration| {
        let t0 = Instant::now();
        while holder().as_deref() != Some(who) {
            assert!(t0.elapsed() < within, "{who} did not hold the Lease within {within:?}: {:?}", lease());
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let src = Etcd::start(dir.path(), "src");
    let rt = runtime();
    rt.block_on(src.load("/t1/seed/", 50, 16, 2));
    let plan = write_plan_for(dir.path(), &k, &datastore(&src));
    let kubeconfig = s.kubeconfig.display().to_string();
    let duration = format!("{}s", LEASE.as_secs());
    let replica = |id: &str| {
        let log = dir.path().join(format!("serve-{id}.log"));
        let args = [
            "--lease",
            &format!("{NS}/{LEASE_NAME}"),
            "--lease-duration",
            &duration,
            "--lease-identity",
            id,
            "--kubeconfig",
            &kubeconfig,
        ];
        (Serve::start_with(&k, &plan, &log, &args), log)
    };

    // --- a holds the Lease and captures; b stands by.
    let (mut a, log_a) = replica("a");
    wait_holder("a", Duration::from_secs(30));
    a.wait_for_metric(T1_CAPTURING, &log_a);
    let (b, log_b) = replica("b");
    assert!(http_get(&a.addr, "/metrics").unwrap().1.contains("\nkmdr_leader 1\n"));
    assert!(http_get(&b.addr, "/metrics").unwrap().1.contains("\nkmdr_leader 0\n"), "a standby says so");
    let spec = lease().unwrap()["spec"].clone();
    assert_eq!(spec["leaseDurationSeconds"], LEASE.as_secs());
    let transitions = spec["leaseTransitions"].as_i64().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (url, stop2) = (src.client_url.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        runtime().block_on(async move {
            let mut c = etcd_client::Client::connect([url.as_str()], None).await.unwrap();
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                c.put(format!("/t1/k/{:03}", n % 200), format!("v{n}"), None).await.unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    });
    // Two renewal periods and more under the writer: a keeps the Lease, b captures nothing.
    std::thread::sleep(LEASE);
    let renewed = lease().unwrap()["spec"].clone();
    assert_eq!(renewed["holderIdentity"], "a", "the leader keeps renewing");
    assert_ne!(renewed["renewTime"], spec["renewTime"], "the leader renews");
    assert!(!std::fs::read_to_string(&log_b).unwrap().contains("capturing changes"), "the standby captured");
    assert!(!http_get(&b.addr, "/metrics").unwrap().1.contains("kmdr_delta_up{"), "the standby runs a capture");

    // --- a dies without a word (SIGKILL to its pid only).
    a.child.kill().unwrap();
    let killed = Instant::now();
    let _ = a.child.wait();
    wait_holder("b", LEASE * 4);
    let took = killed.elapsed();
    eprintln!(
        "serve --lease on kube-apiserver: take-over {:.2}s after SIGKILL of the holder (lease {}s, renewed every {:.2}s)",
        took.as_secs_f64(),
        LEASE.as_secs(),
        (LEASE / 3).as_secs_f64()
    );
    // The record stood still from a's last renewal, at most a renewal period
    // before the kill; b takes over once it has seen it still for a whole
    // lease, and looks every renewal period: within two lease periods, and
    // never before the lease ran out.
    assert!(took < LEASE * 2, "taken over {took:?} after the kill: more than two lease periods");
    assert!(took >= LEASE - LEASE / 3, "taken over {took:?} after the kill: before the Lease expired");
    assert_eq!(lease().unwrap()["spec"]["leaseTransitions"], transitions + 1);

    // b resumes the chain under the writer, then catches up with the last write.
    b.wait_for_metric(T1_CAPTURING, &log_b);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(written > 100, "the writer wrote only {written} keys");
    let head = rt.block_on(async { src.client().await.get("/", None).await.unwrap().header().unwrap().revision() });
    let repo = open_repo(&k);
    let (check, revisions) = chain_revisions(&rt, &repo, "tenant/t1", head);
    assert!(http_get(&b.addr, "/metrics").unwrap().1.contains("\nkmdr_leader 1\n"));
    b.terminate();
    assert_eq!(holder().as_deref(), Some(""), "released on SIGTERM");
    assert!(std::fs::read_to_string(&log_a).unwrap().contains(&format!("holds Lease {NS}/{LEASE_NAME}")));
    assert!(std::fs::read_to_string(&log_b).unwrap().contains(&format!("holds Lease {NS}/{LEASE_NAME}")));

    // --- one chain across both leaders: no hole, no overlap, and every
    // revision (each is one write under /t1/ on this etcd) in it exactly once.
    let (first, last) = (check.first.unwrap(), check.last.unwrap());
    assert_eq!(revisions, (first..=last).collect::<Vec<_>>(), "a revision captured twice or missed");
    let dst = Etcd::start(dir.path(), "dst");
    k.ok(&["restore", "tenant", "latest", "--source-schema", "t1", "--at", "now", "--datastore", &datastore(&dst)]);
    assert_eq!(rt.block_on(tenant_state(&dst, "t1", 0)), rt.block_on(tenant_state(&src, "t1", 0)));
}

/// A replica that loses the Lease while it runs the units (another holder
/// took it over, as after a partition) stops them and stands by with no unit
/// (issue 18): its /metrics has no `kmdr_rpo_seconds` that keeps growing nor
/// a capture down, and its status page says it stands by, with no unit late.
#[test]
fn a_replica_that_loses_the_lease_stands_by_without_its_units_state() {
    need_etcd!();
    let Some(s) = real_kube::server() else { return };
    const LOST_NS: &str = "sl-kmdr-lost";
    s.create_namespace(LOST_NS).unwrap();
    let lease_path = format!("/apis/coordination.k8s.io/v1/namespaces/{LOST_NS}/leases/{LEASE_NAME}");
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let src = Etcd::start(dir.path(), "src");
    runtime().block_on(src.load("/t1/seed/", 20, 16, 3));
    let plan = write_plan_for(dir.path(), &k, &datastore(&src));
    let log = dir.path().join("serve-a.log");
    let kubeconfig = s.kubeconfig.display().to_string();
    let duration = format!("{}s", LEASE.as_secs());
    let lease = format!("{LOST_NS}/{LEASE_NAME}");
    let args = ["--lease", &lease, "--lease-duration", &duration, "--lease-identity", "a", "--kubeconfig", &kubeconfig];
    let a = Serve::start_with(&k, &plan, &log, &args);
    let led = a.wait_for_metric(T1_CAPTURING, &log);
    assert!(led.contains("\nkmdr_leader 1\n") && led.contains("kmdr_rpo_seconds{"), "{led}");

    // Another holder, renewing now: a finds it at its next renewal.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    real_kube::merge_patch(s, &lease_path, &serde_json::json!({"spec": {"holderIdentity": "b", "renewTime": now}}))
        .unwrap();
    let t0 = Instant::now();
    let standby = loop {
        let (_, m) = http_get(&a.addr, "/metrics").expect("/metrics answers");
        if m.contains("\nkmdr_leader 0\n") {
            break m;
        }
        assert!(t0.elapsed() < LEASE * 2, "a did not stand by after losing the Lease: {m}\nsee {}", log.display());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!standby.contains("kmdr_rpo_seconds{"), "a standby reports the units' RPO: {standby}");
    assert!(!standby.contains("kmdr_delta_up{"), "a standby reports captures: {standby}");
    let (_, page) = http_get(&a.addr, "/").unwrap();
    if page.contains("Standing by") {
        // (b never renews: a takes the Lease back a lease period later, and the page follows.)
        assert!(!page.contains("shared/t1") && page.contains("0 units: 0 on time, 0 late"), "{page}");
    }
    assert!(std::fs::read_to_string(&log).unwrap().contains("held by another replica now"));
    a.terminate();
}
