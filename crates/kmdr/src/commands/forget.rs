//! `kmdr forget` and `kmdr prune`.

use crate::cli::{ForgetArgs, GlobalArgs, PruneArgs};
use crate::commands::UsageError;
use crate::output::{self, Format};
use anyhow::Result;
use kmdr_core::human_bytes;
use kmdr_repo::point::unusable_segments;
use kmdr_repo::{ForgetPlan, PrunePlan, SegmentName, pruner};
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
        let segments = unusable_segments(&repo, &plan.remove()).await?;
        (plan, prune, segments)
    } else {
        say("removing what the policy drops, then the chunks only it used");
        let (plan, prune) = pruner::forget(&repo, policy, a.kind.as_deref(), a.prune).await?;
        // Delta segments that only continued the forgotten backups go with them.
        say("removing the delta segments no remaining full backup can use");
        let segments = unusable_segments(&repo, &[]).await?;
        for s in &segments {
            repo.delete_segment(s).await?;
        }
        (plan, prune, segments)
    };
    drop(progress); // the spinner, on a terminal, goes before the summary
    if g.format == Format::Json {
        output::json(
            &json!({"dry_run": a.dry_run, "forget": plan, "remove": plan.remove(), "prune": prune, "segments": segments}),
        );
    } else {
        print_forget(&plan, a.dry_run);
        print_segments(&segments, a.dry_run);
        if let Some(p) = &prune {
            print_prune(p, a.dry_run);
        }
    }
    Ok(0)
}

pub async fn run_prune(g: &GlobalArgs, a: PruneArgs) -> Result<i32> {
    let repo = g.open_repo().await?;
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
        output::json(&json!({"dry_run": a.dry_run, "prune": plan}));
    } else {
        print_prune(&plan, a.dry_run);
    }
    Ok(0)
}
