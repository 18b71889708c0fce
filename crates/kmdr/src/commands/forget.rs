//! `kmdr forget` and `kmdr prune`.

use crate::cli::{ForgetArgs, GlobalArgs, PruneArgs};
use crate::commands::UsageError;
use crate::output::{self, Format};
use anyhow::Result;
use kmdr_core::human_bytes;
use kmdr_repo::object_lock::{Held, held_back};
use kmdr_repo::{ForgetPlan, PrunePlan, SegmentName, SegmentPlan, pruner};
use serde_json::json;

fn print_forget(plan: &ForgetPlan, dry: bool) {
    let verb = if dry { "would remove" } else { "removed" };
    for s in &plan.series {
        println!("series {}:", s.series);
        for d in &s.decisions {
            if let Some(h) = plan.held.iter().find(|h| h.object == d.item.to_string()) {
                println!("  held   {}  (the policy drops it; S3 Object Lock keeps it {})", d.item, until(h));
            } else if d.keep {
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

fn print_segments(segments: &[SegmentName], dry: bool) {
    let mut by_series: std::collections::BTreeMap<&str, (usize, i64, i64)> = Default::default();
    for s in segments {
        let e = by_series.entry(&s.series).or_insert((0, s.first, s.last));
        *e = (e.0 + 1, e.1.min(s.first), e.2.max(s.last));
    }
    for (series, (n, first, last)) in by_series {
        println!(
            "delta segments {series}: {} {n} (revisions {first}..={last}), no remaining full backup can use them",
            if dry { "would remove" } else { "removed" }
        );
    }
}

fn until(h: &Held) -> String {
    match h.until {
        Some(u) => format!("until {}", u.format("%Y-%m-%dT%H:%M:%SZ")),
        None => "under a legal hold".into(),
    }
}

/// One line per kind of object S3 Object Lock kept, with the last date.
fn print_held(what: &str, held: &[Held]) {
    if held.is_empty() {
        return;
    }
    let last = held.iter().filter_map(|h| h.until).max();
    println!(
        "held back under Object Lock: {} {what}{}",
        held.len(),
        match (last, held.iter().any(|h| h.until.is_none())) {
            (_, true) => ", some under a legal hold".to_string(),
            (Some(u), false) => format!(", the last until {}", u.format("%Y-%m-%dT%H:%M:%SZ")),
            (None, false) => String::new(),
        }
    );
}

/// Everything held back, for `-o json` and the exit code.
fn held_json(plan: &ForgetPlan, prune: Option<&PrunePlan>, segments: &SegmentPlan) -> serde_json::Value {
    let all: Vec<&Held> =
        plan.held.iter().chain(prune.map(|p| p.held.as_slice()).unwrap_or_default()).chain(&segments.held).collect();
    json!({
        "backups": plan.held, "chunks": prune.map(|p| &p.held), "segments": segments.held,
        "until": all.iter().filter_map(|h| h.until).max(),
    })
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
    let repo = g.open_repo_to_read("backups to apply a keep policy").await?;
    // With --prune it reads every manifest and lists every chunk: `forget: ...`
    // lines, and on a terminal a spinner with the step in progress and its
    // time (each line short enough for 80 columns with it).
    let progress = a.prune.then(|| super::prefixed_notifier(g, "forget: "));
    let say = |line: &str| {
        if let Some(p) = &progress {
            p(line)
        }
    };
    let (plan, prune, segments) = if a.dry_run {
        say("reading every manifest to apply the policy (dry run)");
        let plan = pruner::plan_forget(&repo, policy, a.kind.as_deref()).await?;
        let prune = if a.prune {
            say("finding the chunks no kept backup references");
            Some(pruner::plan_prune(&repo, &plan.remove()).await?)
        } else {
            None
        };
        say("finding the delta segments no kept full backup can use");
        let segments = pruner::plan_segments(&repo, &plan.remove()).await?;
        (plan, prune, segments)
    } else {
        say("removing what the policy drops, then the chunks only it used");
        let (plan, prune) = pruner::forget(&repo, policy, a.kind.as_deref(), a.prune).await?;
        // Delta segments that only continued the forgotten backups go with them.
        say("removing the delta segments no remaining full backup can use");
        let segments = pruner::remove_segments(&repo).await?;
        (plan, prune, segments)
    };
    drop(progress); // the spinner, on a terminal, goes before the summary
    if g.format == Format::Json {
        output::json(&json!({"dry_run": a.dry_run, "forget": plan, "remove": plan.remove(), "prune": prune,
            "segments": segments.remove, "held_back": held_json(&plan, prune.as_ref(), &segments)}));
    } else {
        print_forget(&plan, a.dry_run);
        print_segments(&segments.remove, a.dry_run);
        if let Some(p) = &prune {
            print_prune(p, a.dry_run);
        }
        print_held("backups (kept whole, with their chunks)", &plan.held);
        print_held("unreferenced chunks", prune.as_ref().map(|p| p.held.as_slice()).unwrap_or_default());
        print_held("delta segments", &segments.held);
    }
    // What Object Lock kept is exit 13 (a dry run only shows it).
    let held: Vec<&Held> = plan
        .held
        .iter()
        .chain(prune.as_ref().map(|p| p.held.as_slice()).unwrap_or_default())
        .chain(&segments.held)
        .collect();
    match held_back(if a.prune { "forget --prune" } else { "forget" }, &held) {
        Some(e) if !a.dry_run => Err(e.into()),
        _ => Ok(0),
    }
}

pub async fn run_prune(g: &GlobalArgs, a: PruneArgs) -> Result<i32> {
    let repo = g.open_repo_to_read("backups to apply a keep policy").await?;
    // It reads every manifest and lists every chunk: a `prune: ...` line, and
    // on a terminal a spinner with its time.
    let progress = super::prefixed_notifier(g, "prune: ");
    let plan = if a.dry_run {
        progress("finding the chunks no backup references (dry run)");
        pruner::plan_prune(&repo, &[]).await?
    } else {
        progress("deleting the chunks no backup references");
        pruner::prune(&repo).await?
    };
    drop(progress); // the spinner, on a terminal, goes before the summary
    if g.format == Format::Json {
        output::json(&json!({"dry_run": a.dry_run, "prune": plan, "held_back": {"chunks": plan.held,
            "until": plan.held.iter().filter_map(|h| h.until).max()}}));
    } else {
        print_prune(&plan, a.dry_run);
        print_held("unreferenced chunks", &plan.held);
    }
    match held_back("prune", &plan.held.iter().collect::<Vec<_>>()) {
        Some(e) if !a.dry_run => Err(e.into()),
        _ => Ok(0),
    }
}
