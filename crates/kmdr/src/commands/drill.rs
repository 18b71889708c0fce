//! `kmdr drill --plan FILE`.

use crate::cli::{DrillArgs, GlobalArgs};
use crate::commands::UsageError;
use crate::output::{self, Format};
use anyhow::{Context, Result};
use kmdr_plan::report::{self, Verdict};

fn human(secs: u64) -> String {
    kmdr_core::human_duration(std::time::Duration::from_secs(secs))
}

pub async fn run(g: &GlobalArgs, mut a: DrillArgs) -> Result<i32> {
    // --lab: the lab's plan (the lab is brought up first when it is not); it is disposable, so no --yes.
    if a.lab {
        a.plan = Some(super::lab::ensure_up(g, &a.dir).await?);
        a.yes = true;
        if a.report_dir == std::path::Path::new(".") {
            a.report_dir = a.dir.join("reports");
        }
    }
    let plan_path = a.plan.clone().expect("clap requires --plan unless --lab");
    let plan = super::plan::load(&plan_path)?;
    if !a.yes {
        return Err(UsageError(format!(
            "a drill destroys the data of the layers in {} before recovering it: run it only against a lab or a platform you may break, and pass --yes",
            plan_path.display()
        ))
        .into());
    }
    let repo = g.with_plan(&plan).open_repo_to_read("backups to drill them").await?;
    std::fs::create_dir_all(&a.report_dir)
        .with_context(|| format!("cannot create --report-dir {}", a.report_dir.display()))?;
    let notify = super::prefixed_notifier(g, "drill: ");
    let r = kmdr_plan::drill::drill(&plan, &repo, &notify).await?;
    drop(notify); // the spinner, on a terminal, goes before the summary
    // `<time to the ms>-drill.{json,md,html}`: the name the repository keeps it under.
    let stem = r.object_name().trim_end_matches(".json").to_string();
    let json_path = a.report_dir.join(format!("{stem}.json"));
    let md_path = a.report_dir.join(format!("{stem}.md"));
    let html_path = a.report_dir.join(format!("{stem}.html"));
    std::fs::write(&json_path, serde_json::to_vec_pretty(&r)?)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    std::fs::write(&md_path, report::markdown(&r)).with_context(|| format!("cannot write {}", md_path.display()))?;
    std::fs::write(&html_path, kmdr_plan::html::html(&r))
        .with_context(|| format!("cannot write {}", html_path.display()))?;
    if g.format == Format::Json {
        // The report, and where it was written (the same report in three forms, and the repository's copy).
        let mut v = serde_json::to_value(&r)?;
        v["report_files"] = serde_json::json!({
            "json": json_path,
            "markdown": md_path,
            "html": html_path,
            "repository": format!("reports/{}", r.object_name()),
        });
        output::json(&v);
    } else {
        for l in &r.layers {
            let f = |s: Option<f64>| s.map(|s| format!("{s:.1}s")).unwrap_or_else(|| "-".into());
            println!(
                "{:<22} {:<7} RTO {:>8} (target {:>7})  RPO {:>8} (target {:>7})",
                l.layer.as_str(),
                format!("{:?}", l.verdict).to_uppercase(),
                f(l.rto_s),
                human(l.rto_target_s),
                f(l.rpo_s),
                human(l.rpo_target_s)
            );
            for p in &l.problems {
                println!("    {p}");
            }
        }
        println!(
            "drill {}: report {}, {} and {} (also kept in the repository as reports/{})",
            format!("{:?}", r.verdict).to_uppercase(),
            html_path.display(),
            md_path.display(),
            json_path.display(),
            r.object_name()
        );
    }
    Ok(if r.verdict == Verdict::Fail { crate::exit::CHECK_FAILED } else { 0 })
}
