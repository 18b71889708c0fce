//! Delta lag of many tenants on one etcd: write acknowledged -> durable in a
//! local repository, p50/p99/max over every put.
//!
//! Puts keys at a fixed total rate spread round-robin over tenants
//! `<schema>-0001` .. `<schema>-N` (as `tenant_seed --tenants N` names them),
//! from 32 connections, recording each put's acknowledgement time (wall
//! clock). After the run and a settling time it reads every segment of those
//! tenants written since the start; a key's lag is the ctime of the first
//! segment file holding it (the local store's `rename` into place, after the
//! file's fsync) minus its ack time, so no polling perturbs serve. Also prints
//! the segment objects written per second over the run.
//! Run by scripts/bench-serve-tenants.sh.
//!
//! usage: tenants_lag ETCD_URL REPO_DIR KEY_FILE SCHEMA TENANTS RATE SECONDS

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 8 {
        eprintln!("usage: tenants_lag ETCD_URL REPO_DIR KEY_FILE SCHEMA TENANTS RATE SECONDS");
        std::process::exit(2);
    }
    let (url, repo_dir, key_file, schema) = (a[1].clone(), a[2].clone(), a[3].clone(), a[4].clone());
    let tenants: usize = a[5].parse().unwrap();
    let rate: u64 = a[6].parse().unwrap();
    let secs: u64 = a[7].parse().unwrap();
    let store = kmdr_store::open(&repo_dir, &Default::default()).unwrap();
    let secret = kmdr_repo::crypto::secret_from_file_content(&std::fs::read(&key_file).unwrap()).to_vec();
    let repo = kmdr_repo::Repository::open(store, &secret, &key_file).await.unwrap();
    let began = SystemTime::now();
    let writers = 32u64;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (url, schema) = (url.clone(), schema.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = etcd_client::Client::connect([url], None).await.unwrap();
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 * writers / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let end = Instant::now() + Duration::from_secs(secs);
            let mut acks = Vec::new();
            let mut n = 0u64;
            while Instant::now() < end {
                tick.tick().await;
                let tenant = (n * writers + w) as usize % tenants + 1;
                let key = format!("/{schema}-{tenant:04}/k/{w}-{n:09}");
                c.put(key.clone(), vec![b'x'; 256], None).await.unwrap();
                acks.push((key, SystemTime::now()));
                n += 1;
            }
            acks
        }));
    }
    let mut acks = Vec::new();
    for t in tasks {
        acks.extend(t.await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Every segment of these tenants written since the start.
    let root = format!("/{schema}-");
    let mut first_seen: HashMap<Vec<u8>, SystemTime> = HashMap::new();
    let (mut segments, mut empty) = (0usize, 0usize);
    for s in repo.list_segments(None).await.unwrap() {
        let Some(name) = s.series.strip_prefix("tenant/") else { continue };
        if !name.starts_with(&root[1..]) || s.written < chrono::DateTime::<chrono::Utc>::from(began) {
            continue;
        }
        segments += 1;
        let ctime = {
            let m = std::fs::metadata(std::path::Path::new(&repo_dir).join(s.key())).unwrap();
            UNIX_EPOCH + Duration::new(m.ctime() as u64, m.ctime_nsec() as u32)
        };
        let events = kmdr_repo::deltas::decode(&repo.get_segment(&s).await.unwrap()).unwrap();
        if events.is_empty() {
            empty += 1;
        }
        for e in events {
            let mut key = format!("/{name}").into_bytes();
            key.extend_from_slice(&e.key);
            let t = first_seen.entry(key).or_insert(ctime);
            *t = (*t).min(ctime);
        }
    }
    let mut lags: Vec<f64> = Vec::new();
    for (k, ack) in &acks {
        if let Some(t) = first_seen.get(k.as_bytes()) {
            lags.push(t.duration_since(*ack).unwrap_or_default().as_secs_f64());
        }
    }
    lags.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| lags.get(((lags.len() as f64 * q) as usize).min(lags.len().saturating_sub(1))).copied();
    let f = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.3}s"));
    println!(
        "writes {} ({:.0}/s over {tenants} tenants), durable {}, lag p50 {} p99 {} max {}, segments {segments} ({empty} empty, {:.0}/s)",
        acks.len(),
        acks.len() as f64 / secs as f64,
        lags.len(),
        f(p(0.5)),
        f(p(0.99)),
        f(lags.last().copied()),
        segments as f64 / (secs + 5) as f64,
    );
}
