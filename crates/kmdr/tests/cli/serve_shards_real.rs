//! `kmdr serve --lease --shards 3` with three replicas on a REAL API server
//! (kube-apiserver 1.34, `coordination.k8s.io/v1` Leases): the replicas
//! divide six tenant datastores of a real etcd, one shard each, every unit
//! captured by exactly one replica; the holder of shard 0 is killed with
//! SIGKILL (its pid only) under a writer; the other two take its shard over
//! within two lease durations and resume its chains: every revision written
//! to a tenant is in its chain exactly once, and each tenant's latest point
//! restored equals its source. The take-over time is printed (`--nocapture`).

use crate::common;
use crate::serve::{Serve, chain_revisions, http_get, open_repo, runtime, tenant_state};

use common::real_kube::{self, get};
use common::{Etcd, Kmdr};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const NS: &str = "ss-kmdr";
const GROUP: &str = "kmdr-serve";
const SHARDS: u32 = 3;
/// `--lease-duration`: a shard is taken over once its Lease stood still this
/// long; the replicas renew (and count each other) every third of it.
const LEASE: Duration = Duration::from_secs(4);
/// Datastores ds1..ds6 (tenants t1..t6): FNV-1a puts two in each of the
/// three shards, which the dry run below checks.
const TENANTS: u32 = 6;

fn datastore(e: &Etcd) -> String {
    e.client_url.replace("http://", "etcd://")
}

/// Six datastores on one etcd, each naming its own tenant.
fn write_plan(dir: &Path, k: &Kmdr, url: &str) -> String {
    let plan = dir.join("kmdr.yaml");
    let datastores: String = (1..=TENANTS)
        .map(|i| format!("      - name: ds{i}\n        url: {url}\n        tenants:\n          - t{i}\n"))
        .collect();
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: shards-test\nrepository:\n  url: {}\n  keyFile: {}\nlayers:\n  tenant-control-planes:\n    rto: 1h\n    rpo: 1h\n    datastores:\n{datastores}",
            k.repo,
            k.key_file.display()
        ),
    )
    .unwrap();
    plan.display().to_string()
}

/// The units a replica's /metrics shows capturing.
fn capturing(s: &Serve) -> BTreeSet<String> {
    let Some((_, m)) = http_get(&s.addr, "/metrics") else { return BTreeSet::new() };
    m.lines()
        .filter(|l| l.starts_with("kmdr_delta_up{") && l.ends_with("} 1"))
        .filter_map(|l| l.split("unit=\"").nth(1)?.split('"').next().map(str::to_string))
        .collect()
}

#[test]
fn three_replicas_divide_the_shards_and_take_a_killed_ones_over_within_two_lease_periods() {
    need_etcd!();
    let Some(s) = real_kube::server() else { return };
    s.create_namespace(NS).unwrap();
    let holder = |i: u32| {
        get(s, &format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{GROUP}-shard-{i}"))
            .map(|l| l["spec"]["holderIdentity"].as_str().unwrap_or("").to_string())
    };
    let holders = || (0..SHARDS).map(|i| holder(i).unwrap_or_default()).collect::<Vec<_>>();

    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let src = Etcd::start(dir.path(), "src");
    let rt = runtime();
    for i in 1..=TENANTS {
        rt.block_on(src.load(&format!("/t{i}/seed/"), 20, 16, 2));
    }
    let plan = write_plan(dir.path(), &k, &datastore(&src));
    let group = format!("{NS}/{GROUP}");

    // The dry run says which datastore each shard holds: two each.
    let o = k.ok(&["serve", "--plan", &plan, "--dry-run", "--lease", &group, "--shards", "3", "-o", "json"]);
    let dry: serde_json::Value = serde_json::from_str(&o).unwrap();
    let mut shard_units: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for sh in dry["shards"]["units"].as_array().unwrap() {
        let units = sh["units"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().replace("datastore ", ""));
        let units = units.map(|d| format!("{d}/t{}", &d[2..])).collect::<BTreeSet<_>>();
        assert_eq!(units.len(), 2, "{dry}");
        shard_units.insert(sh["shard"].as_u64().unwrap() as u32, units);
    }
    let all: BTreeSet<String> = (1..=TENANTS).map(|i| format!("ds{i}/t{i}")).collect();
    assert_eq!(shard_units.values().flatten().cloned().collect::<BTreeSet<_>>(), all);

    let kubeconfig = s.kubeconfig.display().to_string();
    let duration = format!("{}s", LEASE.as_secs());
    let replica = |id: &str| {
        let log = dir.path().join(format!("serve-{id}.log"));
        let args = [
            "--lease",
            &group,
            "--shards",
            "3",
            "--lease-duration",
            &duration,
            "--lease-identity",
            id,
            "--kubeconfig",
            &kubeconfig,
        ];
        (id.to_string(), Serve::start_with(&k, &plan, &log, &args), log)
    };
    let mut replicas = vec![replica("a"), replica("b"), replica("c")];

    // Each replica ends up with one shard and captures exactly its units.
    let balanced = |replicas: &[(String, Serve, std::path::PathBuf)], within: Duration| {
        let t0 = Instant::now();
        loop {
            let h = holders();
            let per: Vec<BTreeSet<String>> = replicas.iter().map(|(_, r, _)| capturing(r)).collect();
            let ok = replicas.iter().zip(&per).all(|((id, _, _), units)| {
                let mine: BTreeSet<String> = (0..SHARDS)
                    .filter(|i| h[*i as usize] == *id)
                    .flat_map(|i| shard_units[&i].iter().cloned())
                    .collect();
                !mine.is_empty() && *units == mine
            }) && h.iter().all(|x| replicas.iter().any(|(id, _, _)| id == x));
            if ok {
                return (h, per);
            }
            assert!(t0.elapsed() < within, "not balanced within {within:?}: holders {h:?}, capturing {per:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (h, per) = balanced(&replicas, Duration::from_secs(60));
    assert_eq!(h.iter().collect::<BTreeSet<_>>().len(), 3, "one shard each: {h:?}");
    assert_eq!(per.iter().map(BTreeSet::len).sum::<usize>(), all.len(), "a unit captured twice: {per:?}");
    let metrics = http_get(&replicas[0].1.addr, "/metrics").unwrap().1;
    assert!(metrics.contains("\nkmdr_shards 3\n") && metrics.contains("kmdr_shard_held{shard="), "{metrics}");

    // A writer over the six tenants; it records each put's revision.
    let stop = Arc::new(AtomicBool::new(false));
    let (url, stop2) = (src.client_url.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        runtime().block_on(async move {
            let mut c = etcd_client::Client::connect([url.as_str()], None).await.unwrap();
            let mut written: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
            let mut n = 0u32;
            while !stop2.load(Ordering::Relaxed) {
                let t = n % TENANTS + 1;
                let r = c.put(format!("/t{t}/k/{:03}", n % 97), format!("v{n}"), None).await.unwrap();
                written.entry(t).or_default().push(r.header().unwrap().revision());
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            written
        })
    });
    // Rounds pass under the writer: nobody moves.
    std::thread::sleep(LEASE);
    assert_eq!(holders(), h, "the shards moved with every replica alive");

    // --- the holder of shard 0 (and of retention) dies without a word.
    let victim = replicas.iter().position(|(id, _, _)| *id == h[0]).unwrap();
    let (dead, mut killed_serve, _) = replicas.remove(victim);
    killed_serve.child.kill().unwrap();
    let killed = Instant::now();
    let _ = killed_serve.child.wait();
    let took = loop {
        let now = holder(0).unwrap_or_default();
        if !now.is_empty() && now != dead {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < LEASE * 4, "shard 0 not taken over: holders {:?}", holders());
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "serve --shards 3 on kube-apiserver: shard 0 taken over {:.2}s after SIGKILL of its holder (lease {}s, rounds every {:.2}s)",
        took.as_secs_f64(),
        LEASE.as_secs(),
        (LEASE / 3).as_secs_f64()
    );
    assert!(took < LEASE * 2, "taken over {took:?} after the kill: more than two lease periods");
    // (Its last renewal was at most a round before the kill, a round being a
    // third of the duration plus its requests: half the duration is a safe floor.)
    assert!(took >= LEASE / 2, "taken over {took:?} after the kill: before the Lease expired");
    // The two left run every unit between them, each once.
    let t0 = Instant::now();
    loop {
        let per: Vec<BTreeSet<String>> = replicas.iter().map(|(_, r, _)| capturing(r)).collect();
        let union: BTreeSet<String> = per.iter().flatten().cloned().collect();
        if union == all {
            assert_eq!(per.iter().map(BTreeSet::len).sum::<usize>(), all.len(), "a unit captured twice: {per:?}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the survivors do not run every unit: {per:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();

    // --- every tenant's chain holds each revision written to it exactly once.
    let repo = open_repo(&k);
    for t in 1..=TENANTS {
        let mine = &written[&t];
        let last = *mine.last().unwrap();
        let (check, revisions) = chain_revisions(&rt, &repo, &format!("tenant/t{t}"), last);
        let (first, last) = (check.first.unwrap(), check.last.unwrap());
        let expected: Vec<i64> = mine.iter().copied().filter(|r| (first..=last).contains(r)).collect();
        assert_eq!(revisions, expected, "t{t}: a revision captured twice or missed");
    }
    let dst = Etcd::start(dir.path(), "dst");
    for t in 1..=TENANTS {
        let schema = format!("t{t}");
        k.ok(&[
            "restore",
            "tenant",
            "latest",
            "--source-schema",
            &schema,
            "--at",
            "now",
            "--datastore",
            &datastore(&dst),
        ]);
        assert_eq!(
            rt.block_on(tenant_state(&dst, &schema, 0)),
            rt.block_on(tenant_state(&src, &schema, 0)),
            "{schema}"
        );
    }

    // --- SIGTERM: the shards are released and the member Leases deleted.
    for (_, r, _) in replicas {
        r.terminate();
    }
    assert!(holders().iter().all(String::is_empty), "not released: {:?}", holders());
    let members = get(s, &format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases")).unwrap();
    let names: Vec<&str> =
        members["items"].as_array().unwrap().iter().filter_map(|l| l["metadata"]["name"].as_str()).collect();
    let live_members: Vec<&&str> =
        names.iter().filter(|n| n.contains("-member-") && !n.ends_with(&format!("-{dead}"))).collect();
    assert!(live_members.is_empty(), "member Leases left after SIGTERM: {names:?}");
}
