//! `kmdr lab up|status|down`: arguments and output. The lab itself (its
//! servers, data, repository and plan) is kmdr-lab's.

use crate::cli::{GlobalArgs, LabCommand, LabDownArgs, LabUpArgs};
use crate::output::{self, Format};
use anyhow::Result;
use kmdr_core::{Classify, ErrorClass};
use kmdr_lab::{LabError, LabState};
use serde_json::json;
use std::path::{Path, PathBuf};

pub async fn run(g: &GlobalArgs, c: LabCommand) -> Result<i32> {
    match c {
        LabCommand::Up(a) => up(g, a).await,
        LabCommand::Status(a) => status(g, &a.dir),
        LabCommand::Down(a) => down(g, a),
    }
}

/// A lab error for the user: a usage error names the flag to change.
fn cli_error(e: LabError) -> anyhow::Error {
    match e {
        LabError::ForeignPlan { .. } => super::UsageError(format!("{e}: pick another --dir")).into(),
        e if e.class() == ErrorClass::Usage => super::UsageError(e.to_string()).into(),
        e => e.into(),
    }
}

/// `kmdr drill --lab`: the lab's plan, after bringing the lab up when it is not.
/// Progress goes to stderr (stdout stays the drill's).
pub async fn ensure_up(g: &GlobalArgs, dir: &Path) -> Result<PathBuf> {
    let progress = super::prefixed_notifier(g, "lab: ");
    let starting =
        || progress(&format!("not up in {}: bringing it up (kmdr lab up --dir {})", dir.display(), dir.display()));
    kmdr_lab::ensure_up(dir, starting, &progress).await.map_err(cli_error)
}

async fn up(g: &GlobalArgs, a: LabUpArgs) -> Result<i32> {
    if a.tenants == 0 || a.keys < 10 {
        return Err(super::UsageError("--tenants must be at least 1 and --keys at least 10".into()).into());
    }
    let dir = &a.dir.dir;
    if let Some(s) = kmdr_lab::read_state(dir)?.filter(LabState::is_up) {
        if g.format == Format::Json {
            output::json(&status_json(&s));
        } else {
            println!("the lab in {} is already up; plan {}", s.dir.display(), s.plan.display());
            println!("next: kmdr drill --lab{}", dir_flag(dir));
        }
        return Ok(0);
    }
    // `lab: ...` lines; on a terminal, a spinner with the step in progress (servers start slowly).
    let progress = super::prefixed_notifier(g, "lab: ");
    let s = kmdr_lab::up(dir, a.tenants, a.keys, &progress).await.map_err(cli_error);
    drop(progress); // the spinner, on a terminal, goes before the summary
    let s = s?;
    if g.format == Format::Json {
        output::json(&status_json(&s));
        return Ok(0);
    }
    println!("lab up in {}:", s.dir.display());
    for p in &s.processes {
        let what = if p.tenants.is_empty() {
            format!("{} keys", p.keys)
        } else {
            format!("tenants {} ({} keys)", p.tenants.join(", "), p.keys)
        };
        let pid = p.running_pid().map(|p| p.to_string()).unwrap_or("-".into());
        println!("  {:<20} pid {pid:<8} {:<34} {what}", p.name, p.url);
    }
    if let Some(k) = &s.kube {
        println!(
            "  kubernetes: {} (kubeconfig {}), ready {:.1}s after it started",
            k.url,
            k.kubeconfig.display(),
            k.start_s
        );
        println!(
            "    helm release {}/{}{}",
            kmdr_lab::kube::RELEASE_NAMESPACE,
            kmdr_lab::kube::RELEASE,
            if k.kamaji { "; Kamaji DataStore and TenantControlPlanes in namespace tenants" } else { "" }
        );
    }
    for n in &s.notes {
        println!("  note: {n}");
    }
    println!("plan {} (checked), repository {}", s.plan.display(), s.repository.display());
    println!("next: kmdr drill --lab{}   then: kmdr lab down{}", dir_flag(dir), dir_flag(dir));
    Ok(0)
}

/// ` --dir DIR` unless DIR is the default.
fn dir_flag(dir: &Path) -> String {
    if dir == Path::new(".kmdr-lab") { String::new() } else { format!(" --dir {}", dir.display()) }
}

/// `kmdr lab status`.
fn status(g: &GlobalArgs, dir: &Path) -> Result<i32> {
    let Some(s) = kmdr_lab::read_state(dir)? else {
        if g.format == Format::Json {
            output::json(&json!({"dir": dir, "up": false, "processes": []}));
        } else {
            println!("no lab in {}: start one with `kmdr lab up{}`", dir.display(), dir_flag(dir));
        }
        return Ok(0);
    };
    let v = status_json(&s);
    if g.format == Format::Json {
        output::json(&v);
        return Ok(0);
    }
    let up = if v["up"] == true { "up" } else { "partly down (run `kmdr lab up` to restart it)" };
    println!("lab in {}: {up}", s.dir.display());
    for p in &s.processes {
        let pid = p.running_pid();
        let ports: Vec<String> = p.ports.iter().map(u16::to_string).collect();
        println!(
            "  {:<20} {:<8} pid {:<8} ports {:<12} {}",
            p.name,
            if pid.is_some() { "running" } else { "stopped" },
            pid.map(|p| p.to_string()).unwrap_or("-".into()),
            ports.join(","),
            p.url
        );
    }
    for n in &s.notes {
        println!("  note: {n}");
    }
    println!("plan {}", s.plan.display());
    Ok(0)
}

fn status_json(s: &LabState) -> serde_json::Value {
    let procs: Vec<serde_json::Value> = s
        .processes
        .iter()
        .map(|p| {
            let pid = p.running_pid();
            json!({"name": p.name, "pid": pid, "alive": pid.is_some(), "ports": p.ports, "url": p.url,
                   "tenants": p.tenants, "keys": p.keys, "pid_file": p.pid_file, "log": p.log})
        })
        .collect();
    let up = procs.iter().all(|p| p["alive"] == true);
    json!({"dir": s.dir, "up": up, "plan": s.plan, "repository": s.repository, "key_file": s.key_file,
           "started_at": s.started_at, "processes": procs, "kube": s.kube, "notes": s.notes})
}

/// `kmdr lab down`.
fn down(g: &GlobalArgs, a: LabDownArgs) -> Result<i32> {
    let dir = &a.dir.dir;
    let d = kmdr_lab::down(dir, a.keep).map_err(cli_error)?;
    if g.format == Format::Json {
        output::json(&json!({"dir": dir, "stopped": d.stopped, "removed": d.removed}));
        return Ok(0);
    }
    for (name, pid) in &d.stopped {
        println!("stopped {name} (pid {pid})");
    }
    if d.removed {
        println!("lab down; removed {}", dir.display());
    } else {
        println!("lab down; kept {} (repository, key, reports)", dir.display());
    }
    Ok(0)
}
