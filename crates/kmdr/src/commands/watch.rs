//! `kmdr watch`: the runbook's recovery monitoring on one screen.

use crate::cli::{GlobalArgs, WatchArgs};
use crate::output::Format;
use anyhow::Result;
use kmdr_core::human_duration;
use std::io::{IsTerminal, Write};
use std::time::Instant;

/// `--until-healthy` ran out of time.
#[derive(Debug, thiserror::Error)]
#[error(
    "not healthy after {timeout}: {problems}. Look closer with kubectl (describe, logs) and run `kmdr watch` again"
)]
pub struct NotHealthy {
    pub timeout: String,
    pub problems: String,
}

impl kmdr_core::Classify for NotHealthy {
    fn class(&self) -> kmdr_core::ErrorClass {
        kmdr_core::ErrorClass::Timeout
    }
}

pub async fn run(g: &GlobalArgs, a: WatchArgs) -> Result<i32> {
    let kube = a.kube.connect(g).await?;
    let started = Instant::now();
    let live = g.format != Format::Json && std::io::stdout().is_terminal();
    let mut last: Option<Vec<String>> = None;
    loop {
        let snap = kmdr_kube::health::snapshot(&kube).await?;
        match g.format {
            Format::Json => println!("{}", serde_json::to_string(&snap).expect("serializable")),
            Format::Text | Format::Yaml => {
                let lines = snap.lines();
                let mut out = std::io::stdout().lock();
                if live {
                    // Redraw in place: home, clear, the screen.
                    let _ = write!(
                        out,
                        "\x1b[H\x1b[2J{}\n(kmdr watch: every {}; Ctrl-C to stop)\n",
                        lines.join("\n"),
                        human_duration(a.interval)
                    );
                } else if last.as_ref().map(|l| &l[1..]) != Some(&lines[1..]) {
                    // Plain output: a snapshot each time it changes.
                    let _ = writeln!(out, "{}\n", lines.join("\n"));
                }
                let _ = out.flush();
                last = Some(lines);
            }
        }
        if snap.healthy && a.until_healthy {
            return Ok(0);
        }
        let elapsed = started.elapsed();
        if let Some(timeout) = a.timeout
            && elapsed >= timeout
        {
            if a.until_healthy {
                return Err(
                    NotHealthy { timeout: human_duration(timeout), problems: snap.problems().join(", ") }.into()
                );
            }
            return Ok(0);
        }
        let wait = match a.timeout {
            Some(t) => a.interval.min(t.saturating_sub(elapsed)),
            None => a.interval,
        };
        tokio::time::sleep(wait).await;
    }
}
