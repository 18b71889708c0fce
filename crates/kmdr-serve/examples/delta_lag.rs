//! Delta lag benchmark: write acknowledged -> durable in the repository.
//!
//! Puts keys into tenant `bench` at a fixed rate, recording when each put
//! was acknowledged: into an etcd (`http://...`), or as kine's create rows
//! into database `bench` of a PostgreSQL (`postgres://...`, see
//! `pg_server`); meanwhile it polls the repository's listing of
//! `deltas/tenant/bench/` every 50 ms and reading each new segment; a key's
//! lag is the time its segment was first seen listed minus its ack time (the
//! poll adds up to 50 ms). Prints p50, p99 and max. Run by scripts/bench-delta.sh.
//!
//! usage: delta_lag ETCD_OR_POSTGRES_URL REPO KEY_FILE RATE SECONDS

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (url, repo_url, key_file) = (a[1].clone(), a[2].clone(), a[3].clone());
    let rate: u64 = a[4].parse().unwrap();
    let secs: u64 = a[5].parse().unwrap();
    let store = kmdr_store::open(&repo_url, &Default::default()).unwrap();
    let secret = kmdr_repo::crypto::secret_from_file_content(&std::fs::read(&key_file).unwrap()).to_vec();
    let repo = kmdr_repo::Repository::open(store, &secret, &key_file).await.unwrap();
    let writers = 4u64;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut writer = Writer::connect(&url).await;
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 * writers / rate));
            let end = Instant::now() + Duration::from_secs(secs);
            let mut acks = Vec::new();
            let mut n = 0u64;
            while Instant::now() < end {
                tick.tick().await;
                let key = format!("/k/{w}-{n:09}");
                writer.put(&key).await;
                acks.push((key, Instant::now()));
                n += 1;
            }
            acks
        }));
    }
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let mut read: HashSet<String> = HashSet::new();
    let end = Instant::now() + Duration::from_secs(secs + 5);
    while Instant::now() < end {
        let t = Instant::now();
        for s in repo.list_segments(Some("tenant/bench")).await.unwrap() {
            if read.insert(s.key()) {
                for e in kmdr_repo::deltas::decode(&repo.get_segment(&s).await.unwrap()).unwrap() {
                    seen.entry(String::from_utf8_lossy(&e.key).into_owned()).or_insert(t);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut lags = Vec::new();
    let mut total = 0;
    for t in tasks {
        for (k, ack) in t.await.unwrap() {
            total += 1;
            if let Some(s) = seen.get(&k) {
                lags.push(s.saturating_duration_since(ack).as_secs_f64());
            }
        }
    }
    lags.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| lags[((lags.len() as f64 * q) as usize).min(lags.len() - 1)];
    println!(
        "writes {total} ({:.0}/s), durable {}, lag p50 {:.3}s p99 {:.3}s max {:.3}s, segments {}",
        total as f64 / secs as f64,
        lags.len(),
        p(0.5),
        p(0.99),
        lags[lags.len() - 1],
        read.len()
    );
}

/// One writer's connection (four of them for the whole run: their size does not matter).
#[allow(clippy::large_enum_variant)]
enum Writer {
    Etcd(etcd_client::Client),
    Postgres(tokio_postgres::Client),
}

impl Writer {
    async fn connect(url: &str) -> Writer {
        if url.starts_with("postgres://") {
            let (client, conn) = tokio_postgres::connect(&format!("{url}/bench"), tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            Writer::Postgres(client)
        } else {
            Writer::Etcd(etcd_client::Client::connect([url], None).await.unwrap())
        }
    }

    /// Put relative key `key` (`/k/...`) with a 256-byte value, as the tenant's API server would.
    async fn put(&mut self, key: &str) {
        match self {
            Writer::Etcd(c) => {
                c.put(format!("/bench{key}"), vec![b'x'; 256], None).await.unwrap();
            }
            Writer::Postgres(c) => {
                let name = format!("/registry{key}");
                c.execute(
                    "INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value) VALUES ($1, 1, 0, 0, 0, 0, $2)",
                    &[&name, &vec![b'x'; 256]],
                )
                .await
                .unwrap();
            }
        }
    }
}
