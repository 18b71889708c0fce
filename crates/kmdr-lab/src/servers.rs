//! The lab's tenant datastores, started detached through kmdr-testkit's
//! launchers and seeded with Kubernetes-shaped tenants: a shared etcd always,
//! kine on PostgreSQL and on MariaDB when they are installed.

use crate::seed::Target;
use crate::{LabError, LabProcess, LabState};
use kmdr_testkit::data::control_plane_records;
use kmdr_testkit::free_port;
use kmdr_testkit::{Etcd, EtcdOptions, LaunchError, Mariadb, MariadbOptions, Mode, Postgres, PostgresOptions};
use std::path::{Path, PathBuf};

/// A datastore left out, and why (not an error: it is optional).
pub(crate) struct Skip(pub String);

impl From<LabError> for Skip {
    fn from(e: LabError) -> Self {
        Skip(chain(&e))
    }
}

impl From<LaunchError> for Skip {
    fn from(e: LaunchError) -> Self {
        Skip(chain(&e))
    }
}

/// An error and its sources, `: `-separated (as `{:#}` prints an anyhow error).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(&format!(": {c}"));
        source = c.source();
    }
    s
}

fn detached(pid_file: &Path) -> Mode {
    Mode::Detached { pid_file: pid_file.into() }
}

/// The shared tenant etcd, holding `names` with `keys` keys each.
pub(crate) async fn tenant_etcd(
    state: &mut LabState,
    names: &[String],
    keys: usize,
    say: &dyn Fn(&str),
) -> Result<(), LabError> {
    let (c, peer) = (free_port(), free_port());
    let mut p = LabProcess {
        name: "tenant-etcd".into(),
        program: "etcd".into(),
        pid_file: state.dir.join("tenants.pid"),
        ports: vec![c, peer],
        url: format!("etcd://127.0.0.1:{c}"),
        log: state.dir.join("tenants.etcd.log"),
        tenants: names.to_vec(),
        keys: 0,
    };
    say(&format!("starting the shared tenant etcd on 127.0.0.1:{c}"));
    let mut o = EtcdOptions::new("tenants", state.dir.join("tenants.etcd"));
    o.log = Some(p.log.clone());
    o.port = Some(c);
    o.peer_url = Some(format!("http://127.0.0.1:{peer}"));
    o.mode = detached(&p.pid_file);
    Etcd::launch(o).map_err(|source| LabError::Launch { server: "tenant etcd", source })?;
    record(state, &p)?;
    let target = Target { url: &p.url, password: None };
    for (i, t) in names.iter().enumerate() {
        target.seed(t, &control_plane_records(t, keys, i as u64 + 1)).await?;
    }
    p.keys = keys * names.len();
    *state.processes.last_mut().expect("recorded") = p;
    state.save()
}

/// A random password for the lab's databases (from the repository key generator: hex).
fn secret_word() -> String {
    kmdr_repo::crypto::generate_secret().trim().chars().take(32).collect()
}

/// A kine datastore the lab runs when its server is installed.
pub(crate) struct Kine {
    /// The lab's name for the server (`kine-<driver>`).
    pub name: &'static str,
    /// What progress calls it.
    label: &'static str,
    /// As `/proc/PID/comm` shows it.
    program: &'static str,
    /// Its directory in the lab, and its pid and password files (`<stem>.pid`, `<stem>.pw`).
    stem: &'static str,
    /// Its log, in its directory.
    log: &'static str,
    /// `<scheme>://<user>`: its URL without password, port or path.
    url: &'static str,
    /// Its one tenant, and that tenant's seed.
    tenant: &'static str,
    seed: u64,
    /// Start it detached in `dir` with `password` on `port`.
    launch: fn(dir: PathBuf, password: &str, port: u16, mode: Mode) -> Result<(), LaunchError>,
}

/// kine on PostgreSQL and on MariaDB, in the order the lab starts them.
pub(crate) const KINE: [Kine; 2] = [
    Kine {
        name: "kine-postgres",
        label: "PostgreSQL",
        program: "postgres",
        stem: "pg",
        log: "server.log",
        url: "postgres://kmdr",
        tenant: "soylent",
        seed: 101,
        launch: |dir, password, port, mode| {
            Postgres::launch(PostgresOptions { port: Some(port), mode, ..PostgresOptions::new(dir, password) })
                .map(drop)
        },
    },
    Kine {
        name: "kine-mariadb",
        label: "MariaDB",
        program: "mariadbd",
        stem: "mariadb",
        log: "error.log",
        url: "mysql://root",
        tenant: "cyberdyne",
        seed: 202,
        launch: |dir, password, port, mode| {
            Mariadb::launch(MariadbOptions { port: Some(port), mode, ..MariadbOptions::new(dir, password) }).map(drop)
        },
    },
];

impl Kine {
    /// The file holding the password of the lab's server `process`, if it has one.
    pub fn password_file(dir: &Path, process: &str) -> Option<PathBuf> {
        KINE.iter().find(|k| k.name == process).map(|k| dir.join(format!("{}.pw", k.stem)))
    }

    /// Start the server with one kine tenant of `keys` keys.
    pub async fn start(&self, state: &mut LabState, keys: usize, say: &dyn Fn(&str)) -> Result<(), Skip> {
        let port = free_port();
        let p = LabProcess {
            name: self.name.into(),
            program: self.program.into(),
            pid_file: state.dir.join(format!("{}.pid", self.stem)),
            ports: vec![port],
            url: format!("{}@127.0.0.1:{port}", self.url),
            log: state.dir.join(self.stem).join(self.log),
            tenants: vec![self.tenant.into()],
            keys,
        };
        let password = secret_word();
        say(&format!("starting {} on 127.0.0.1:{port}", self.label));
        (self.launch)(state.dir.join(self.stem), &password, port, detached(&p.pid_file))?;
        record(state, &p)?;
        let file = Kine::password_file(&state.dir, self.name).expect("a kine server");
        std::fs::write(&file, &password).map_err(LabError::io("write", file))?;
        let target = Target { url: &p.url, password: Some(&password) };
        target.wait(self.name, &p.log, || p.running_pid().is_some()).await?;
        target.seed(self.tenant, &control_plane_records(self.tenant, keys, self.seed)).await?;
        Ok(())
    }
}

/// A server that answered, in the state: stopped with the lab from now on.
fn record(state: &mut LabState, p: &LabProcess) -> Result<(), LabError> {
    state.processes.push(p.clone());
    state.save()
}
