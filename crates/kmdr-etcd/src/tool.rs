//! etcd's own tools, found and run in one place: `etcdutl` (or, where only
//! etcd 3.4 tools exist, `etcdctl`) for `snapshot restore`, with a failure
//! carrying the last lines the tool printed. The restorer and the
//! point-in-time builder both run them through here.

use crate::EtcdError;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Which etcd tool restores snapshots here.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RestoreTool {
    pub program: PathBuf,
    /// `etcdutl` or `etcdctl`.
    pub flavor: String,
    pub version: String,
    /// Whether its `snapshot restore` can bump the revision and mark the
    /// old ones compacted (`--bump-revision`, `--mark-compacted`: etcdutl
    /// 3.6, and 3.5 from 3.5.10).
    pub bumps_revision: bool,
}

/// How far a restore moves the revision up by default: what the Kubernetes
/// documentation's etcd restore uses, far above any revision a cluster of
/// this size hands out between a snapshot and its restore.
pub const DEFAULT_REVISION_BUMP: u64 = 1_000_000_000;

/// Find a working `etcdutl` (preferred) or `etcdctl`: `explicit` if given,
/// else on `PATH`. A candidate works when `<tool> version` succeeds; of the
/// working ones, the first that can bump the revision is taken, else the
/// first (which a restore with the bump then refuses, naming the fix).
pub fn find_restore_tool(explicit: Option<&Path>) -> Result<RestoreTool, EtcdError> {
    let mut found = Vec::new();
    let mut tried = Vec::new();
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => vec!["etcdutl".into(), "etcdctl".into()],
    };
    for c in candidates {
        match probe(&c) {
            Ok(tool) => found.push(tool),
            Err(why) => tried.push(why),
        }
    }
    match found.iter().position(|t| t.bumps_revision) {
        Some(i) => Ok(found.swap_remove(i)),
        None if !found.is_empty() => Ok(found.swap_remove(0)),
        None => Err(EtcdError::NoRestoreTool { tried: tried.join("; ") }),
    }
}

/// Run `<c> version`: the tool, or why it does not work.
fn probe(c: &Path) -> Result<RestoreTool, String> {
    let out = std::process::Command::new(c).arg("version").env("ETCDCTL_API", "3").stdin(Stdio::null()).output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let version = text
                .lines()
                .find_map(|l| l.split_once("version:").map(|(_, v)| v.trim().to_string()))
                .unwrap_or_else(|| "unknown".into());
            let name = c.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let flavor = if name.contains("etcdutl") { "etcdutl" } else { "etcdctl" };
            let bumps_revision = restore_help(c).contains("--bump-revision");
            Ok(RestoreTool { program: c.to_path_buf(), flavor: flavor.into(), version, bumps_revision })
        }
        Ok(o) => Err(format!("{} exited with {}", c.display(), o.status)),
        Err(e) => Err(format!("{}: {e}", c.display())),
    }
}

/// What `<tool> snapshot restore --help` prints (empty when it does not run).
fn restore_help(program: &Path) -> String {
    std::process::Command::new(program)
        .args(["snapshot", "restore", "--help"])
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::null())
        .output()
        .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
        .unwrap_or_default()
}

impl RestoreTool {
    /// Refuse to restore without the revision bump a Kubernetes-watched etcd needs.
    pub fn check_bump(&self, bump: Option<u64>) -> Result<(), EtcdError> {
        if bump.is_some() && !self.bumps_revision {
            return Err(EtcdError::ToolTooOld {
                tool: format!("{} {} ({})", self.flavor, self.version, self.program.display()),
            });
        }
        Ok(())
    }
}

pub fn local(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> EtcdError + use<> {
    let path = path.to_path_buf();
    move |source| EtcdError::Local { what, path, source }
}

/// The last three lines of a tool's output, joined, for a one-line error.
pub fn last_lines(text: &str) -> String {
    let tail: Vec<&str> = text.lines().rev().take(3).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// Run the restore tool with `args`; a failure carries the last lines it printed.
pub async fn run_tool(tool: &RestoreTool, args: &[String]) -> Result<(), EtcdError> {
    let out = tokio::process::Command::new(&tool.program)
        .args(args)
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(local("cannot run", &tool.program))?;
    if !out.status.success() {
        return Err(EtcdError::ToolFailed {
            tool: tool.flavor.clone(),
            status: out.status.to_string(),
            stderr: last_lines(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(())
}
