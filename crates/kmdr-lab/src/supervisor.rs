//! Bringing the lab up and down: the order servers start in, what is kept
//! across labs (the repository, its key, the reports), and what `down` may
//! remove (only a lab's directory).

use crate::plan::PlanFile;
use crate::servers::{self, KINE, Skip};
use crate::under_cluster::UnderCluster;
use crate::{LabError, LabProcess, LabState, PLAN_FILE, PLAN_HEADER, STATE_FILE, read_state};
use chrono::Utc;
use kmdr_testkit::data::management_cluster_records;
use kmdr_testkit::process::find_bin;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The tenants of the shared etcd, in order; more are `tenant-<n>`.
const TENANT_NAMES: &[&str] = &["acme", "globex", "initech", "umbrella", "hooli", "wayne", "stark", "tyrell"];

/// The names of `n` tenants.
fn tenant_names(n: usize) -> Vec<String> {
    (0..n).map(|i| TENANT_NAMES.get(i).map(|s| s.to_string()).unwrap_or(format!("tenant-{}", i + 1))).collect()
}

/// Whether `dir`'s plan was written by `up` (its first line is the lab's header).
fn plan_is_the_labs(dir: &Path) -> Option<bool> {
    std::fs::read_to_string(dir.join(PLAN_FILE)).ok().map(|t| t.starts_with(PLAN_HEADER))
}

/// Bring the lab up in `dir` from scratch, with `tenants` tenants of `keys`
/// keys on the shared etcd (stopping what is left of a lab that is partly
/// down first). `say` hears progress. On failure, what was started is
/// stopped again.
pub async fn up(dir: &Path, tenants: usize, keys: usize, say: &dyn Fn(&str)) -> Result<LabState, LabError> {
    if let Some(old) = read_state(dir)? {
        say("the lab is partly down: stopping what is left of it and starting it again");
        old.stop_all();
    }
    // Never overwrite a plan the lab did not write (e.g. `--dir .` in a project).
    if plan_is_the_labs(dir) == Some(false) {
        return Err(LabError::ForeignPlan { dir: dir.into() });
    }
    std::fs::create_dir_all(dir).map_err(LabError::io("create the lab directory", dir))?;
    let dir = dir.canonicalize().map_err(LabError::io("resolve", dir))?;
    // Server data of an earlier lab goes; the repository, its key and the reports stay.
    for old in
        ["uc.etcd", "tenants.etcd", "pg", "mariadb", "kube", "chart", "kmetal-values.yaml", STATE_FILE, PLAN_FILE]
    {
        let p = dir.join(old);
        let gone = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        match gone {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(LabError::io("remove", p)(e)),
            _ => {}
        }
    }
    let mut state = LabState {
        plan: dir.join(PLAN_FILE),
        repository: dir.join("repo"),
        key_file: dir.join("kmdr.key"),
        dir: dir.clone(),
        started_at: Utc::now(),
        processes: Vec::new(),
        notes: Vec::new(),
        kube: None,
    };
    match start_everything(&mut state, tenants, keys, say).await {
        Ok(()) => Ok(state),
        Err(e) => {
            state.stop_all();
            let _ = std::fs::remove_file(dir.join(STATE_FILE));
            Err(e)
        }
    }
}

async fn start_everything(
    state: &mut LabState,
    tenants: usize,
    keys: usize,
    say: &dyn Fn(&str),
) -> Result<(), LabError> {
    for program in ["etcd", "etcdctl"] {
        if find_bin(program, &[]).is_none() {
            return Err(LabError::MissingTool { program });
        }
    }
    crate::repository::ensure(&state.repository, &state.key_file).await?;
    let names = tenant_names(tenants);

    // The under cluster, through the plan's own start line.
    let uc = UnderCluster::new(&state.dir);
    say(&format!("starting the under-cluster etcd on {}", uc.client_url));
    let out = Command::new("sh")
        .arg("-c")
        .arg(uc.start_line())
        .stdin(Stdio::null())
        .process_group(0)
        .output()
        .map_err(LabError::io("run sh to start the etcd in", uc.data_dir()))?;
    let mut p = LabProcess {
        name: "under-cluster-etcd".into(),
        program: "etcd".into(),
        pid_file: uc.pid_file(),
        ports: vec![uc.client_port, uc.peer_port],
        url: uc.client_url.clone(),
        log: uc.log(),
        tenants: Vec::new(),
        keys: 0,
    };
    state.processes.push(p.clone());
    state.save()?;
    if !out.status.success() || p.running_pid().is_none() {
        return Err(LabError::UnderClusterDown { log: p.log });
    }
    let n = keys.max(10);
    let target = crate::seed::Target { url: &format!("etcd://127.0.0.1:{}", uc.client_port), password: None };
    target.seed("registry", &management_cluster_records(n, &names)).await?;
    p.keys = n;
    *state.processes.last_mut().expect("pushed") = p;

    // Named as Kamaji names the schemas of the lab's TenantControlPlanes.
    let schemas: Vec<String> = names.iter().map(|n| crate::kube::schema_of(n)).collect();
    servers::tenant_etcd(state, &schemas, keys, say).await?;

    // kine on PostgreSQL and MariaDB, when installed. One that does not come
    // up is left out (and stopped), with a note: they are optional.
    for kine in &KINE {
        let started = state.processes.len();
        if let Err(Skip(why)) = kine.start(state, keys, say).await {
            state.forget_since(started);
            state.notes.push(format!("no {} tenant: {why}", kine.name));
        }
    }

    // Kubernetes, when its tools are built: optional too.
    let endpoint = state.processes.iter().find(|p| p.name == "tenant-etcd").map(|p| p.url.replace("etcd://", ""));
    let started = state.processes.len();
    match crate::kube::start(state, &names, &endpoint.unwrap_or_default(), say) {
        Ok(k) => state.kube = Some(k),
        Err(Skip(why)) => {
            state.forget_since(started);
            state.notes.push(format!("no Kubernetes (platform release, Kamaji objects): {why}"));
        }
    }

    let yaml = PlanFile::for_lab(state, &uc, Utc::now().date_naive()).to_yaml(&state.dir)?;
    if let Err(problems) = kmdr_plan::parse_plan(&state.plan, &yaml) {
        // A bug in this crate, not the user's: say what the checker found.
        return Err(LabError::PlanCheck(kmdr_plan::parse::render(&state.plan, &problems).trim_end().into()));
    }
    std::fs::write(&state.plan, yaml).map_err(LabError::io("write", &state.plan))?;
    state.save()
}

/// What `down` did.
#[derive(Debug, Clone)]
pub struct Down {
    /// The servers stopped, by name and pid.
    pub stopped: Vec<(String, u32)>,
    /// Whether the directory was removed (else only the state file).
    pub removed: bool,
}

/// Stop the lab in `dir`; remove the directory unless `keep` (then only the
/// state file goes, and the repository, key and reports stay). Only ever
/// removes a lab's directory: one with a state file, or a kept lab's (its
/// plan carries the header `up` writes).
pub fn down(dir: &Path, keep: bool) -> Result<Down, LabError> {
    let state = read_state(dir)?;
    let stopped = state.as_ref().map(LabState::stop_all).unwrap_or_default();
    if keep {
        let _ = std::fs::remove_file(dir.join(STATE_FILE));
    } else if dir.exists() {
        if state.is_none() && plan_is_the_labs(dir) != Some(true) {
            return Err(LabError::NotALab { dir: dir.into() });
        }
        std::fs::remove_dir_all(dir).map_err(LabError::io("remove", dir))?;
    }
    Ok(Down { stopped, removed: !keep })
}

/// The lab's plan when the lab in `dir` is up; else bring it up (3 tenants of
/// 500 keys), calling `starting` first.
pub async fn ensure_up(dir: &Path, starting: impl FnOnce(), say: &dyn Fn(&str)) -> Result<PathBuf, LabError> {
    match read_state(dir)? {
        Some(s) if s.is_up() => Ok(s.plan),
        _ => {
            starting();
            Ok(up(dir, 3, 500, say).await?.plan)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_are_named_then_numbered() {
        assert_eq!(tenant_names(2), ["acme", "globex"]);
        assert_eq!(tenant_names(10)[8..], ["tenant-9", "tenant-10"]);
    }

    #[test]
    fn down_leaves_a_directory_that_is_no_lab() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PLAN_FILE), "version: 1\n").unwrap();
        assert!(matches!(down(dir.path(), false), Err(LabError::NotALab { .. })));
        assert!(dir.path().join(PLAN_FILE).exists());
    }
}
