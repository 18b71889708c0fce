//! `kmdr verify`.

use crate::cli::{GlobalArgs, VerifyArgs};
use crate::exit;
use crate::output::{self, Format};
use anyhow::Result;
use kmdr_core::human_bytes;

pub async fn run(g: &GlobalArgs, a: VerifyArgs) -> Result<i32> {
    let repo = g.open_repo().await?;
    let ids = if a.ids.is_empty() {
        None
    } else {
        let mut v = Vec::new();
        for q in &a.ids {
            v.push(repo.resolve(q, None).await?);
        }
        Some(v)
    };
    let pb = output::bar(g.format, g.quiet, None, "verifying");
    let report = kmdr_repo::checker::verify(&repo, ids, output::progress(&pb)).await?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let damaged: Vec<_> = report.damaged().collect();
    if g.format == Format::Json {
        output::json(&report);
    } else {
        for b in &damaged {
            println!("DAMAGED {}", b.id);
            for p in &b.problems {
                println!("  {p}");
            }
        }
        println!(
            "checked {} backups, {} chunks, {}: {} damaged",
            report.backups.len(),
            report.chunks_checked,
            human_bytes(report.bytes_checked),
            damaged.len()
        );
        if report.unreferenced_chunks > 0 {
            println!(
                "{} chunks belong to no backup (left by interrupted backups); `kmdr prune` removes them",
                report.unreferenced_chunks
            );
        }
        if !damaged.is_empty() {
            eprintln!("restore from an intact backup; `kmdr forget` the damaged ones once you no longer need them");
        }
    }
    Ok(if damaged.is_empty() { exit::OK } else { exit::CHECK_FAILED })
}
