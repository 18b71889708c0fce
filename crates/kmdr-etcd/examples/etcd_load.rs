//! Benchmark loader: fill an etcd with `/bench/key-%08d` keys holding
//! pseudo-random (incompressible) values, or rewrite a random share of them.
//!
//! ```text
//! etcd_load --endpoint http://127.0.0.1:24379 --keys 200000 --value-size 1024
//! etcd_load --endpoint http://127.0.0.1:24379 --keys 200000 --value-size 1024 --rewrite-percent 1 --seed 2
//! ```
//!
//! Puts go in transactions of `--batch` puts (default 128, etcd's default
//! `--max-txn-ops`), `--concurrency` transactions in flight (default 8).
//! Values come from kmdr-testkit's generator (`data::Rng`) seeded by (seed,
//! pass, key), so a run is reproducible and a rewrite gives every chosen key
//! a new value.
//! Used by scripts/bench-etcd.sh.

use etcd_client::{Client, Txn, TxnOp};
use futures::StreamExt;
use kmdr_testkit::data::Rng;
use std::process::ExitCode;
use std::time::Instant;

struct Args {
    endpoint: String,
    keys: u64,
    value_size: usize,
    rewrite_percent: Option<f64>,
    seed: u64,
    batch: usize,
    concurrency: usize,
}

const USAGE: &str = "usage: etcd_load --endpoint URL --keys N --value-size BYTES [--rewrite-percent P] [--seed S] [--batch 128] [--concurrency 8]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        endpoint: String::new(),
        keys: 0,
        value_size: 1024,
        rewrite_percent: None,
        seed: 1,
        batch: 128,
        concurrency: 8,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value:?}: {e}");
        match flag.as_str() {
            "--endpoint" => a.endpoint = value,
            "--keys" => a.keys = value.parse().map_err(|e| bad(&e))?,
            "--value-size" => a.value_size = value.parse().map_err(|e| bad(&e))?,
            "--rewrite-percent" => a.rewrite_percent = Some(value.parse().map_err(|e| bad(&e))?),
            "--seed" => a.seed = value.parse().map_err(|e| bad(&e))?,
            "--batch" => a.batch = value.parse().map_err(|e| bad(&e))?,
            "--concurrency" => a.concurrency = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.endpoint.is_empty() || a.keys == 0 {
        return Err("--endpoint and --keys are required".into());
    }
    if a.batch == 0 || a.concurrency == 0 {
        return Err("--batch and --concurrency must be at least 1".into());
    }
    if let Some(p) = a.rewrite_percent
        && !(p > 0.0 && p <= 100.0)
    {
        return Err("--rewrite-percent must be in (0, 100]".into());
    }
    Ok(a)
}

fn key(i: u64) -> String {
    format!("/bench/key-{i:08}")
}

fn value(seed: u64, pass: u64, i: u64, size: usize) -> Vec<u8> {
    Rng::new(seed ^ pass.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ i.wrapping_mul(0xA076_1D64_78BD_642F)).bytes(size)
}

/// The indices to write: all keys, or a random `percent` of them (distinct).
fn pick(a: &Args) -> Vec<u64> {
    match a.rewrite_percent {
        None => (0..a.keys).collect(),
        Some(p) => {
            let n = ((a.keys as f64 * p / 100.0).round() as u64).clamp(1, a.keys);
            let mut all: Vec<u64> = (0..a.keys).collect();
            let mut rng = Rng::new(a.seed.wrapping_add(0x5EED));
            // Partial Fisher-Yates: the first n are a uniform sample.
            for i in 0..n {
                let j = i + rng.below(a.keys - i);
                all.swap(i as usize, j as usize);
            }
            all.truncate(n as usize);
            all.sort_unstable();
            all
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("etcd_load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let client = match Client::connect([a.endpoint.as_str()], None).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("etcd_load: cannot connect to {}: {e}", a.endpoint);
            return ExitCode::FAILURE;
        }
    };
    let indices = pick(&a);
    let pass = if a.rewrite_percent.is_some() { 1 } else { 0 };
    let start = Instant::now();
    let batches: Vec<Vec<u64>> = indices.chunks(a.batch).map(|c| c.to_vec()).collect();
    let (seed, size) = (a.seed, a.value_size);
    let mut results = futures::stream::iter(batches)
        .map(|batch| {
            let mut kv = client.kv_client();
            async move {
                let ops: Vec<TxnOp> =
                    batch.iter().map(|&i| TxnOp::put(key(i), value(seed, pass, i, size), None)).collect();
                let n = ops.len() as u64;
                kv.txn(Txn::new().and_then(ops)).await.map(|r| (n, r.header().map(|h| h.revision()).unwrap_or(0)))
            }
        })
        .buffer_unordered(a.concurrency);
    let (mut written, mut revision) = (0u64, 0i64);
    while let Some(r) = results.next().await {
        match r {
            Ok((n, rev)) => {
                written += n;
                revision = revision.max(rev);
            }
            Err(e) => {
                eprintln!("etcd_load: txn failed after {written} puts: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} {written} keys of {size} bytes in {secs:.2}s ({:.0} keys/s), revision {revision}",
        if pass == 0 { "loaded" } else { "rewrote" },
        written as f64 / secs.max(1e-9)
    );
    ExitCode::SUCCESS
}
