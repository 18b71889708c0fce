//! `kmdr status --plan FILE` and `kmdr runbook check --plan FILE`.

use crate::cli::{GlobalArgs, RunbookCheckArgs, RunbookCommand, StatusArgs};
use crate::output::{self, Format};
use anyhow::Result;
use kmdr_plan::review::{self, Finding, Level};

fn print(g: &GlobalArgs, findings: &[Finding]) -> i32 {
    if g.format == Format::Json {
        output::json(&findings);
    } else {
        for f in findings {
            println!("{:<5} {:<14} {:<44} {}", format!("{:?}", f.level).to_uppercase(), f.check, f.subject, f.message);
        }
    }
    let fails = findings.iter().filter(|f| f.level == Level::Fail).count();
    if fails > 0 {
        if g.chatty() {
            eprintln!("{fails} finding(s) need action (FAIL above)");
        }
        crate::exit::CHECK_FAILED
    } else {
        0
    }
}

pub async fn status(g: &GlobalArgs, a: StatusArgs) -> Result<i32> {
    let plan = super::plan::load(&a.plan)?;
    let repo = g.with_plan(&plan).open_repo_to_read("backups to report their status").await?;
    let findings = review::status(&plan, &repo, chrono::Utc::now()).await?;
    Ok(print(g, &findings))
}

pub async fn runbook(g: &GlobalArgs, c: RunbookCommand) -> Result<i32> {
    let RunbookCommand::Check(RunbookCheckArgs { plan: file }) = c;
    let plan = super::plan::load(&file)?;
    let repo = g.with_plan(&plan).open_repo_to_read("backups to report their status").await?;
    let findings = review::runbook_check(&plan, &repo, chrono::Utc::now()).await?;
    Ok(print(g, &findings))
}
