//! PostgreSQL servers.
//!
//! PostgreSQL refuses to run as root, so when this process is root the
//! cluster is created and run as the `postgres` OS user in a directory
//! chowned to that user (whose parent gets `o+x`; every directory above must
//! already let it through). The server listens on 127.0.0.1 and puts its unix
//! socket inside its own directory. TCP clients must give the superuser
//! [`USER`]'s password (SCRAM), so wrong passwords can be tested; the unix
//! socket trusts local users, which is what [`Postgres::psql`] uses to seed and
//! inspect. Durability is off (`fsync=off`): these servers are scratch.

use crate::error::or_panic;
use crate::process::{Mode, Process, find_bin, is_root, os_user};
use crate::{LaunchError, free_port};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The superuser created by `initdb`.
pub const USER: &str = "kmdr";
/// The tests' password for it.
pub const PASSWORD: &str = "kmdr-test-pw";

/// The server tools the launcher needs.
const TOOLS: &str = "initdb, postgres, pg_isready";

/// How to start a PostgreSQL server.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The cluster's directory (created): data/, sock/, server.log.
    pub dir: PathBuf,
    /// The superuser [`USER`]'s password for TCP logins.
    pub password: String,
    /// Default: a free port.
    pub port: Option<u16>,
    /// TCP connections must use TLS and present a client certificate signed
    /// by the CA in this directory (see [`crate::make_pki`]), as Kamaji's
    /// DataStore `tlsConfig` sets up; the password is still asked.
    pub tls: Option<PathBuf>,
    pub mode: Mode,
}

impl PostgresOptions {
    pub fn new(dir: impl Into<PathBuf>, password: &str) -> PostgresOptions {
        PostgresOptions { dir: dir.into(), password: password.into(), port: None, tls: None, mode: Mode::Owned }
    }
}

/// A PostgreSQL server; stopped (immediate shutdown of its postmaster) when
/// dropped unless started detached.
#[derive(Debug)]
pub struct Postgres {
    process: Process,
    port: u16,
    password: String,
    /// The cluster's directory (data/, sock/, server.log).
    pub dir: PathBuf,
    pub log: PathBuf,
}

/// The path of a PostgreSQL tool: on PATH, else in Debian's
/// /usr/lib/postgresql/<newest>/bin, else the bare name.
pub fn bin(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| PathBuf::from(name))
}

fn find_tool(name: &str) -> Option<PathBuf> {
    find_bin(name, &[]).map(|p| p.canonicalize().unwrap_or(p)).or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin").join(name))
            .filter(|p| p.is_file())
            .collect();
        versions.sort();
        versions.pop()
    })
}

impl Postgres {
    /// Create a fresh cluster, start it and wait (30s) until it answers.
    pub fn launch(o: PostgresOptions) -> Result<Postgres, LaunchError> {
        let not_installed = LaunchError::NotInstalled { server: "PostgreSQL", programs: TOOLS };
        let initdb = find_tool("initdb").ok_or(not_installed)?;
        // The server and pg_isready of the same version as initdb.
        let [postgres, isready] = ["postgres", "pg_isready"].map(|b| initdb.with_file_name(b));
        if !postgres.is_file() || !isready.is_file() {
            return Err(LaunchError::NotInstalled { server: "PostgreSQL", programs: TOOLS });
        }
        let ids = if is_root() { Some(os_user("postgres").ok_or(LaunchError::NoPostgresUser)?) } else { None };
        let root = &o.dir;
        let sock = root.join("sock");
        std::fs::create_dir_all(&sock).map_err(LaunchError::io("create", &sock))?;
        if ids.is_some() {
            reachable_by_others(root)?;
        }
        let pwfile = root.join("initdb.pw");
        std::fs::write(&pwfile, &o.password).map_err(LaunchError::io("write", &pwfile))?;
        let log = root.join("server.log");
        std::fs::File::create(&log).map_err(LaunchError::io("create", &log))?;
        if let Some((uid, gid)) = ids {
            for p in [root, &sock, &pwfile, &log] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(LaunchError::io("chown", p))?;
            }
        }
        let data = root.join("data");
        let mut init = Command::new(&initdb);
        init.arg("-D").arg(&data);
        init.args(["-U", USER, "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C"]);
        init.arg("--no-sync").arg(format!("--pwfile={}", pwfile.display())).current_dir(root);
        if let Some((uid, gid)) = ids {
            init.uid(uid).gid(gid);
        }
        let out = init.output().map_err(LaunchError::spawn("initdb"))?;
        let _ = std::fs::remove_file(&pwfile);
        if !out.status.success() {
            return Err(LaunchError::Setup { tool: "initdb", output: crate::process::failure_output(&out) });
        }
        let tls_args = match &o.tls {
            Some(pki) => tls_setup(root, &data, pki, ids)?,
            None => Vec::new(),
        };
        let port = o.port.unwrap_or_else(free_port);
        let mut cmd = Command::new(&postgres);
        cmd.arg("-D").arg(&data).args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"]);
        cmd.arg("-c").arg(format!("unix_socket_directories={}", sock.display()));
        // A scratch server: durability is not what is being measured.
        cmd.args(["-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200"]);
        cmd.args(&tls_args).current_dir(root);
        if let Some((uid, gid)) = ids {
            cmd.uid(uid).gid(gid);
        }
        let process = Process::spawn(&mut cmd, "postgres", &o.mode, &log)?.stop_with("QUIT");
        let mut pg = Postgres { process, port, password: o.password, dir: o.dir.clone(), log };
        let ready = || {
            Command::new(&isready)
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success())
        };
        let log = pg.log.clone();
        pg.process.wait_ready("postgres", &log, 30, Duration::from_millis(100), ready)?;
        pg.process.launched();
        Ok(pg)
    }

    /// Create and start a fresh cluster in a new directory under `dir`.
    pub fn start(dir: &Path) -> Postgres {
        let port = free_port();
        let o = PostgresOptions { port: Some(port), ..PostgresOptions::new(dir.join(format!("pg-{port}")), PASSWORD) };
        or_panic(Self::launch(o))
    }

    /// Like [`Postgres::start`], but TCP connections must use TLS and present
    /// a client certificate signed by the CA in `pki` (see [`crate::make_pki`]).
    pub fn start_tls(dir: &Path, pki: &Path) -> Postgres {
        let port = free_port();
        let mut o = PostgresOptions::new(dir.join(format!("pg-{port}")), PASSWORD);
        o.port = Some(port);
        o.tls = Some(pki.into());
        or_panic(Self::launch(o))
    }

    /// `postgres://kmdr:PASSWORD@127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("postgres://{USER}:{}@127.0.0.1:{}", self.password, self.port)
    }

    /// kine's `--endpoint` for tenant database `db` (kine creates it).
    pub fn kine_endpoint(&self, db: &str) -> String {
        format!("{}/{db}?sslmode=disable", self.url())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pid of the postmaster.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Run `sql` in database `db` over the unix socket with psql; returns the
    /// unaligned, tuples-only output. Panics when psql fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(bin("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.join("sock"))
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", db, "-c", sql])
            .output()
            .expect("run psql");
        assert!(out.status.success(), "psql {sql:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Stop now (immediate shutdown of the postmaster this test started).
    pub fn stop(self) {}
}

/// Let the postgres OS user reach `dir`: its parent gets `o+x` when it lacks
/// it; a directory further up that does not let others through is an error.
fn reachable_by_others(dir: &Path) -> Result<(), LaunchError> {
    let dir = dir.canonicalize().map_err(LaunchError::io("resolve", dir))?;
    let parent = dir.parent().unwrap_or(Path::new("/"));
    for d in parent.ancestors() {
        let mode = std::fs::metadata(d).map_err(LaunchError::io("read the mode of", d))?.permissions().mode();
        if d == parent && mode & 0o011 != 0o011 {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o711))
                .map_err(LaunchError::io("let the postgres OS user enter", d))?;
        } else if mode & 0o001 == 0 {
            return Err(LaunchError::Unreachable { dir: d.into(), mode: mode & 0o777 });
        }
    }
    Ok(())
}

/// The server's certificate files copied in for the postgres user, a
/// `pg_hba.conf` that requires them, and the server's `-c` arguments.
fn tls_setup(root: &Path, data: &Path, pki: &Path, ids: Option<(u32, u32)>) -> Result<Vec<String>, LaunchError> {
    for f in ["ca.crt", "server.crt", "server.key"] {
        let to = root.join(f);
        std::fs::copy(pki.join(f), &to).map_err(LaunchError::io("copy", pki.join(f)))?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).map_err(LaunchError::io("chmod", &to))?;
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(&to, Some(uid), Some(gid)).map_err(LaunchError::io("chown", &to))?;
        }
    }
    let hba = data.join("pg_hba.conf");
    std::fs::write(&hba, "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-ca\n")
        .map_err(LaunchError::io("write", &hba))?;
    let mut args = Vec::new();
    for (k, f) in [("ssl_cert_file", "server.crt"), ("ssl_key_file", "server.key"), ("ssl_ca_file", "ca.crt")] {
        args.extend(["-c".into(), format!("{k}={}", root.join(f).display())]);
    }
    args.extend(["-c".into(), "ssl=on".into()]);
    Ok(args)
}
