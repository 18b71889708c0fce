//! The lab's tenant datastores, started detached through kmdr-testkit's
//! launchers and seeded with Kubernetes-shaped tenants: a shared etcd always,
//! kine on PostgreSQL and on MariaDB when they are installed.

use crate::seed::Target;
use crate::{LabError, LabProcess, LabState};
use kmdr_testkit::data::control_plane_records;
use kmdr_testkit::{Etcd, EtcdOptions, LaunchError, Mariadb, MariadbOptions, Mode, Postgres, PostgresOptions};
use kmdr_testkit::{free_port, mariadb, postgres};
use std::path::Path;

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

/// PostgreSQL with one kine tenant, `soylent`.
pub(crate) async fn kine_postgres(state: &mut LabState, keys: usize, say: &dyn Fn(&str)) -> Result<(), Skip> {
    let port = free_port();
    let p = LabProcess {
        name: "kine-postgres".into(),
        program: "postgres".into(),
        pid_file: state.dir.join("pg.pid"),
        ports: vec![port],
        url: format!("postgres://{}@127.0.0.1:{port}", postgres::USER),
        log: state.dir.join("pg").join("server.log"),
        tenants: vec!["soylent".into()],
        keys,
    };
    let password = secret_word();
    say(&format!("starting PostgreSQL on 127.0.0.1:{port}"));
    let mut o = PostgresOptions::new(state.dir.join("pg"), &password);
    o.port = Some(port);
    o.mode = detached(&p.pid_file);
    Postgres::launch(o)?;
    record(state, &p)?;
    seed_one(&state.dir, &p, &password, 101).await
}

/// MariaDB with one kine tenant, `cyberdyne`.
pub(crate) async fn kine_mariadb(state: &mut LabState, keys: usize, say: &dyn Fn(&str)) -> Result<(), Skip> {
    let port = free_port();
    let p = LabProcess {
        name: "kine-mariadb".into(),
        program: "mariadbd".into(),
        pid_file: state.dir.join("mariadb.pid"),
        ports: vec![port],
        url: format!("mysql://{}@127.0.0.1:{port}", mariadb::USER),
        log: state.dir.join("mariadb").join("error.log"),
        tenants: vec!["cyberdyne".into()],
        keys,
    };
    let password = secret_word();
    say(&format!("starting MariaDB on 127.0.0.1:{port}"));
    let mut o = MariadbOptions::new(state.dir.join("mariadb"), &password);
    o.port = Some(port);
    o.mode = detached(&p.pid_file);
    Mariadb::launch(o)?;
    record(state, &p)?;
    seed_one(&state.dir, &p, &password, 202).await
}

/// A server that answered, in the state: stopped with the lab from now on.
fn record(state: &mut LabState, p: &LabProcess) -> Result<(), LabError> {
    state.processes.push(p.clone());
    state.save()
}

/// Write the password file the plan names for `p`, wait until kmdr's driver
/// reaches `p`, then seed its one tenant.
async fn seed_one(dir: &Path, p: &LabProcess, password: &str, seed: u64) -> Result<(), Skip> {
    let file = crate::plan::password_file(dir, &p.name).expect("a database server");
    std::fs::write(&file, password).map_err(LabError::io("write", file))?;
    let target = Target { url: &p.url, password: Some(password) };
    target.wait(&p.name, &p.log, || p.running_pid().is_some()).await?;
    let t = &p.tenants[0];
    target.seed(t, &control_plane_records(t, p.keys, seed)).await?;
    Ok(())
}
