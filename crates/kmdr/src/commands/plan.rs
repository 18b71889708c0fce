//! `kmdr plan check`, and reading a plan for the commands that follow one.

use crate::cli::{GlobalArgs, PlanCheckArgs, PlanCommand};
use crate::commands::UsageError;
use crate::output::{self, Format};
use anyhow::Result;
use kmdr_plan::Plan;
use serde_json::json;
use std::path::Path;

pub async fn run(g: &GlobalArgs, c: PlanCommand) -> Result<i32> {
    match c {
        PlanCommand::Check(a) => check(g, a),
    }
}

/// A plan with problems, for commands that follow a plan: the first problem
/// on one line, and where to see them all.
#[derive(Debug, thiserror::Error)]
#[error("{first}{}", if *.count > 1 { format!(" (and {} more problems: run `kmdr plan check {}`)", .count - 1, .file) } else { String::new() })]
pub struct PlanInvalid {
    pub file: String,
    pub count: usize,
    pub first: String,
}

impl kmdr_core::Classify for PlanInvalid {
    fn class(&self) -> kmdr_core::ErrorClass {
        kmdr_core::ErrorClass::Usage
    }
}

/// Read and check a plan file.
pub fn load(path: &Path) -> Result<Plan> {
    let text =
        std::fs::read_to_string(path).map_err(|e| UsageError(format!("cannot read plan {}: {e}", path.display())))?;
    kmdr_plan::parse_plan(path, &text).map_err(|problems| {
        let first = kmdr_plan::parse::render(path, &problems[..1]).trim_end().to_string();
        PlanInvalid { file: path.display().to_string(), count: problems.len(), first }.into()
    })
}

fn check(g: &GlobalArgs, a: PlanCheckArgs) -> Result<i32> {
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| UsageError(format!("cannot read plan {}: {e}", a.file.display())))?;
    match kmdr_plan::parse_plan(&a.file, &text) {
        Ok(plan) => {
            if g.format == Format::Json {
                output::json(&json!({"ok": true, "plan": plan}));
            } else {
                println!(
                    "{}: ok: plan {:?}, layers {}, {} run steps, {} contacts, {} credentials",
                    a.file.display(),
                    plan.name,
                    plan.layers.iter().map(|l| l.layer.as_str()).collect::<Vec<_>>().join(", "),
                    plan.run.len(),
                    plan.contacts.len(),
                    plan.credentials.len()
                );
            }
            Ok(0)
        }
        Err(problems) => {
            if g.format == Format::Json {
                output::json(&json!({"ok": false, "problems": problems}));
            } else {
                print!("{}", kmdr_plan::parse::render(&a.file, &problems));
            }
            Ok(crate::exit::CHECK_FAILED)
        }
    }
}
