//! Benchmark seeder: fill one tenant of a Kamaji datastore (etcd, PostgreSQL,
//! MySQL/MariaDB or NATS) with Kubernetes-shaped keys.
//!
//! ```text
//! tenant_seed --datastore etcd://127.0.0.1:24479 --schema bench --keys 100000 --value-size 1024
//! tenant_seed --datastore postgres://kmdr:pw@127.0.0.1:25432 --schema bench --keys 100000 --value-size 1024 --seed 7
//! tenant_seed --datastore etcd://127.0.0.1:24479 --schema t --tenants 1000 --keys 250 --value-size 1024
//! ```
//!
//! With `--tenants N`, N tenants `<schema>-0001` .. `<schema>-N` get `--keys` keys
//! each (seeds `--seed`, `--seed + 1`, ...), over one connection.
//!
//! Keys and values come from `kmdr_testkit::data::kube_records(keys, value-size, seed)`
//! (`/<resource>/<namespace>/obj-...`, values of value-size/2 ..= 1.5 x value-size
//! pseudo-random bytes behind a `k8s\0` prefix, about 1% empty). They are written as
//! a record stream and imported with the tenant driver kmdr's restore uses, replacing
//! whatever the tenant held. Prints `keys N seconds S` on stdout.
//! Used by scripts/bench-tenant.sh.

use kmdr_core::TlsFiles;
use kmdr_datastore::{self as tenant, DatastoreUrl, RecordReader, RecordWriter, TenantStore};
use std::process::ExitCode;
use std::time::Instant;

struct Args {
    datastore: String,
    schema: String,
    keys: usize,
    value_size: usize,
    seed: u64,
    tenants: Option<usize>,
}

const USAGE: &str =
    "usage: tenant_seed --datastore URL --schema S --keys N --value-size BYTES [--seed X] [--tenants N]";

fn parse_args() -> Result<Args, String> {
    let mut a =
        Args { datastore: String::new(), schema: String::new(), keys: 0, value_size: 1024, seed: 1, tenants: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value:?}: {e}");
        match flag.as_str() {
            "--datastore" => a.datastore = value,
            "--schema" => a.schema = value,
            "--keys" => a.keys = value.parse().map_err(|e| bad(&e))?,
            "--value-size" => a.value_size = value.parse().map_err(|e| bad(&e))?,
            "--seed" => a.seed = value.parse().map_err(|e| bad(&e))?,
            "--tenants" => a.tenants = Some(value.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.datastore.is_empty() || a.schema.is_empty() || a.keys == 0 {
        return Err("--datastore, --schema and --keys (> 0) are required".into());
    }
    Ok(a)
}

async fn run(a: Args) -> Result<(), String> {
    let t0 = Instant::now();
    let url = DatastoreUrl::parse(&a.datastore).map_err(|e| e.to_string())?;
    let store = tenant::connect(&url, TlsFiles::default()).await.map_err(|e| e.to_string())?;
    let schemas: Vec<(String, u64)> = match a.tenants {
        None => vec![(a.schema.clone(), a.seed)],
        Some(n) => (1..=n).map(|i| (format!("{}-{i:04}", a.schema), a.seed + i as u64 - 1)).collect(),
    };
    let (mut written, mut removed, mut value_bytes) = (0, 0, 0);
    for (schema, seed) in &schemas {
        let records = kmdr_testkit::data::kube_records(a.keys, a.value_size, *seed);
        let mut stream = Vec::with_capacity(records.iter().map(|(k, v)| k.len() + v.len() + 32).sum());
        let mut w = RecordWriter::new(&mut stream);
        for (i, (k, v)) in records.iter().enumerate() {
            w.write(k, v, i as i64 + 1, i as i64 + 1).await.map_err(|e| format!("record stream: {e}"))?;
        }
        w.finish().await.map_err(|e| format!("record stream: {e}"))?;
        value_bytes += records.iter().map(|(_, v)| v.len()).sum::<usize>();
        drop(records);
        let mut reader = RecordReader::new(stream.as_slice());
        let info = store.import(schema, &mut reader, true).await.map_err(|e| e.to_string())?;
        written += info.written;
        removed += info.removed;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "keys {written} seconds {secs:.3} (tenants {}, value bytes {value_bytes}, removed {removed}, {} {})",
        schemas.len(),
        store.driver(),
        store.datastore()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tenant_seed: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tenant_seed: {e}");
            ExitCode::FAILURE
        }
    }
}
