//! Measure how much a second snapshot adds to a repository for given chunker
//! parameters, without a repository: `dedup OLD NEW AVG_KIB [SEED] [ALIGN]`.
//! Chunks both files (min AVG/4, max AVG*4), then seals every chunk NEW has
//! that OLD does not exactly as a backup stores it (zstd-3, encrypted, with
//! its header: the object's size on disk), and the manifest's list of NEW's
//! chunks (one id and length per chunk), which every backup writes whole.
//! ALIGN (bytes, e.g. 4096 for bbolt's pages) moves each cut point down to a
//! multiple of ALIGN where that keeps the chunk at least the minimum: an
//! experiment only, the repository's chunker does not do it.
//! Used to choose the default chunk size (docs/design.md, "Chunk size") by
//! scripts/bench-dedup.sh. Prints one line of `key=value` fields.

use kmdr_core::ChunkRef;
use kmdr_repo::chunker::{Chunker, ChunkerParams};
use kmdr_repo::crypto::{MasterKey, ObjectKind};
use std::collections::HashSet;

/// Cut `data` into chunks; with `align` > 1, cut points move down to a multiple of it.
fn chunks<'a>(c: &Chunker, min: usize, align: usize, data: &'a [u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let end = (at + c.max_size()).min(data.len());
        let mut n = c.cut(&data[at..end]);
        if align > 1 && at + n < data.len() {
            let aligned = (at + n) / align * align - at;
            if aligned >= min {
                n = aligned;
            }
        }
        out.push(&data[at..at + n]);
        at += n;
    }
    out
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 4 {
        eprintln!("usage: dedup OLD NEW AVG_KIB [SEED] [ALIGN]");
        std::process::exit(2);
    }
    let avg: u32 = a[3].parse::<u32>().expect("AVG_KIB") * 1024;
    let seed: u64 = a.get(4).map(|s| s.parse().expect("SEED")).unwrap_or(12345);
    let align: usize = a.get(5).map(|s| s.parse().expect("ALIGN")).unwrap_or(1);
    let p = ChunkerParams { min_size: avg / 4, avg_size: avg, max_size: avg * 4, ..Default::default() };
    let c = Chunker::new(p, seed);
    let (old_data, new_data) = (std::fs::read(&a[1]).expect("read OLD"), std::fs::read(&a[2]).expect("read NEW"));
    let old = chunks(&c, (avg / 4) as usize, align, &old_data);
    let new = chunks(&c, (avg / 4) as usize, align, &new_data);
    let known: HashSet<&[u8]> = old.iter().copied().collect();
    let key = MasterKey::generate();
    let (mut added, mut added_chunks, mut seen) = (0usize, 0usize, HashSet::new());
    let mut refs = Vec::with_capacity(new.len());
    for ch in &new {
        let id = key.chunk_id(ch);
        refs.push(ChunkRef { id: id.clone(), len: ch.len() as u64 });
        if !known.contains(ch) && seen.insert(*ch) {
            added_chunks += 1;
            added += key.seal(ObjectKind::Chunk, &format!("chunks/{id}"), ch, 3).len();
        }
    }
    let list = serde_json::to_vec(&refs).expect("json");
    let manifest = key.seal(ObjectKind::Manifest, "backups/x", &list, 3).len();
    println!(
        "avg_kib={} seed={seed} align={align} old_chunks={} new_chunks={} added_chunks={added_chunks} added_bytes={added} manifest_bytes={manifest}",
        avg / 1024,
        old.len(),
        new.len(),
    );
}
