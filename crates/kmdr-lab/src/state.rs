//! What the lab started, in `DIR/lab.json`: every server's pid file, ports,
//! URL and log, so that `status` and `down` find exactly those processes (and
//! no other that later got the same pid).

use crate::{LabError, STATE_FILE};
use chrono::{DateTime, Utc};
use kmdr_testkit::process::{running_pid, stop_pid};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the lab started and wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// The lab directory (absolute).
    pub dir: PathBuf,
    pub plan: PathBuf,
    pub repository: PathBuf,
    pub key_file: PathBuf,
    pub started_at: DateTime<Utc>,
    pub processes: Vec<LabProcess>,
    /// Why a datastore was left out (e.g. PostgreSQL not installed).
    pub notes: Vec<String>,
    /// The API server, platform release and Kamaji objects, when the lab runs them.
    #[serde(default)]
    pub kube: Option<crate::kube::LabKube>,
}

/// One server the lab started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabProcess {
    /// `under-cluster-etcd`, `tenant-etcd`, `kine-postgres`, `kine-mariadb`,
    /// `kube-etcd`, `kube-apiserver`.
    pub name: String,
    /// The program's name as `/proc/PID/comm` shows it: a pid is only ever
    /// signalled while it still runs this program.
    pub program: String,
    /// Holds the current pid (the drill's steps rewrite the under cluster's).
    pub pid_file: PathBuf,
    /// Client port first.
    pub ports: Vec<u16>,
    /// How clients reach it (without credentials).
    pub url: String,
    pub log: PathBuf,
    /// Tenants (schemas) it holds; empty for the under cluster.
    pub tenants: Vec<String>,
    /// Keys seeded.
    pub keys: usize,
}

impl LabProcess {
    /// The pid in the pid file, when it still runs the lab's program.
    pub fn running_pid(&self) -> Option<u32> {
        running_pid(&self.pid_file, &self.program)
    }
}

impl LabState {
    /// Whether every server of the lab runs.
    pub fn is_up(&self) -> bool {
        self.processes.iter().all(|p| p.running_pid().is_some())
    }

    /// Stop every running server of the lab, newest first (TERM, then KILL
    /// after 10s). Returns the ones stopped, by name and pid.
    pub fn stop_all(&self) -> Vec<(String, u32)> {
        let running = self.processes.iter().rev().filter_map(|p| Some((p, p.running_pid()?)));
        running.filter(|(p, pid)| stop_pid(*pid, &p.program)).map(|(p, pid)| (p.name.clone(), pid)).collect()
    }

    /// Stop and forget the servers started after the first `keep`.
    pub(crate) fn forget_since(&mut self, keep: usize) {
        let extra = LabState { processes: self.processes.split_off(keep), ..self.clone() };
        extra.stop_all();
    }

    pub(crate) fn save(&self) -> Result<(), LabError> {
        let path = self.dir.join(STATE_FILE);
        let json = serde_json::to_vec_pretty(self).expect("a lab state serialises");
        std::fs::write(&path, json).map_err(LabError::io("write", path))
    }
}

/// The lab in `dir`, if `up` recorded one there.
pub fn read_state(dir: &Path) -> Result<Option<LabState>, LabError> {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|source| LabError::DamagedState { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LabError::io("read", path)(e)),
    }
}
