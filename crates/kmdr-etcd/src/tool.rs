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
}

/// Find a working `etcdutl` (preferred) or `etcdctl`: `explicit` if given,
/// else on `PATH`. A candidate works when `<tool> version` succeeds.
pub fn find_restore_tool(explicit: Option<&Path>) -> Result<RestoreTool, EtcdError> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => vec!["etcdutl".into(), "etcdctl".into()],
    };
    let mut tried = Vec::new();
    for c in candidates {
        let out = std::process::Command::new(&c).arg("version").env("ETCDCTL_API", "3").stdin(Stdio::null()).output();
        match out {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                let version = text
                    .lines()
                    .find_map(|l| l.split_once("version:").map(|(_, v)| v.trim().to_string()))
                    .unwrap_or_else(|| "unknown".into());
                let name = c.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let flavor = if name.contains("etcdutl") { "etcdutl" } else { "etcdctl" };
                return Ok(RestoreTool { program: c, flavor: flavor.into(), version });
            }
            Ok(o) => tried.push(format!("{} exited with {}", c.display(), o.status)),
            Err(e) => tried.push(format!("{}: {e}", c.display())),
        }
    }
    Err(EtcdError::NoRestoreTool { tried: tried.join("; ") })
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
