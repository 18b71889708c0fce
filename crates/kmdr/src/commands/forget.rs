//! `kmdr forget` and `kmdr prune`.

use crate::cli::{ForgetArgs, GlobalArgs, PruneArgs};
use crate::commands::UsageError;
use crate::output::{self, Format};
use anyhow::Result;
use kmdr_core::human_bytes;
use kmdr_repo::{pruner, ForgetPlan, PrunePlan};
use serde_json::json;

fn print_forget(plan: &ForgetPlan, dry: bool) {
    let verb = if dry { "would remove" } else { "removed" };
    for s in &plan.series {
        println!("series {}:", s.series);
        for d in &s.decisions {
            if d.keep {
                println!("  keep   {}  ({})", d.item, d.reasons.join(", "));
            } else {
                println!("  {verb} {}", d.item);
            }
        }
    }
    for u in &plan.unreadable {
        println!("  kept (manifest unreadable) {u}");
    }
}

fn print_prune(p: &PrunePlan, dry: bool) {
    println!(
        "{} {} unreferenced chunks ({}); {} referenced chunks ({}) stay",
        if dry { "would delete" } else { "deleted" },
        p.delete.len(),
        human_bytes(p.delete_bytes),
        p.referenced_chunks,
        human_bytes(p.keep_bytes)
    );
}

pub async fn run_forget(g: &GlobalArgs, a: ForgetArgs) -> Result<i32> {
    let policy = a.keep.policy();
    if policy.is_empty() {
        return Err(UsageError("no retention rule given: pass at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly (forget never removes everything)".into()).into());
    }
    let repo = g.open_repo().await?;
    let (plan, prune) = if a.dry_run {
        let plan = pruner::plan_forget(&repo, policy, a.kind.as_deref()).await?;
        let prune = if a.prune { Some(pruner::plan_prune(&repo, &plan.remove()).await?) } else { None };
        (plan, prune)
    } else {
        pruner::forget(&repo, policy, a.kind.as_deref(), a.prune).await?
    };
    if g.format == Format::Json {
        output::json(&json!({"dry_run": a.dry_run, "forget": plan, "remove": plan.remove(), "prune": prune}));
    } else {
        print_forget(&plan, a.dry_run);
        if let Some(p) = &prune {
            print_prune(p, a.dry_run);
        }
    }
    Ok(0)
}

pub async fn run_prune(g: &GlobalArgs, a: PruneArgs) -> Result<i32> {
    let repo = g.open_repo().await?;
    let plan = if a.dry_run { pruner::plan_prune(&repo, &[]).await? } else { pruner::prune(&repo).await? };
    if g.format == Format::Json {
        output::json(&json!({"dry_run": a.dry_run, "prune": plan}));
    } else {
        print_prune(&plan, a.dry_run);
    }
    Ok(0)
}
