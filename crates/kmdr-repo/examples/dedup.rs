//! Measure how much a second snapshot adds to a repository for a given chunk
//! size, without a repository: `dedup OLD NEW AVG_KIB [SEED]`. Prints chunk
//! counts and the zstd-3 size of the chunks NEW has that OLD does not.
//! Used to choose the default chunk size (docs/design.md, "Chunk size").

use kmdr_repo::chunker::{Chunker, ChunkerParams};
use std::collections::HashSet;

async fn chunks(c: &Chunker, path: &str) -> Vec<bytes::Bytes> {
    let mut f = tokio::fs::File::open(path).await.expect("open");
    let mut out = Vec::new();
    c.split(&mut f, |b| {
        out.push(b);
        async { Ok(()) }
    })
    .await
    .expect("read");
    out
}

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 4 {
        eprintln!("usage: dedup OLD NEW AVG_KIB [SEED]");
        std::process::exit(2);
    }
    let avg: u32 = a[3].parse::<u32>().expect("AVG_KIB") * 1024;
    let seed: u64 = a.get(4).map(|s| s.parse().expect("SEED")).unwrap_or(12345);
    let p = ChunkerParams { min_size: avg / 4, avg_size: avg, max_size: avg * 4, ..Default::default() };
    let c = Chunker::new(p, seed);
    let old = chunks(&c, &a[1]).await;
    let new = chunks(&c, &a[2]).await;
    let known: HashSet<&[u8]> = old.iter().map(|b| &b[..]).collect();
    let mut added = 0usize;
    let mut added_chunks = 0;
    for ch in &new {
        if !known.contains(&ch[..]) {
            added_chunks += 1;
            let z = zstd::bulk::compress(ch, 3).unwrap();
            added += z.len().min(ch.len());
        }
    }
    println!(
        "avg {} KiB: old {} chunks, new {} chunks, {} new, {:.2} MiB added",
        avg / 1024,
        old.len(),
        new.len(),
        added_chunks,
        added as f64 / 1048576.0
    );
}
