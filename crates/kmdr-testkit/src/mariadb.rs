//! MariaDB servers.
//!
//! `mariadb-install-db` creates a fresh data dir in the server's directory;
//! `mariadbd` runs as root when this process is (allowed with `--user=root`),
//! listens on 127.0.0.1 with `--skip-name-resolve`, and keeps its socket in
//! its own directory. Once up, `root@127.0.0.1` (what TCP clients are) gets
//! the password asked for, so wrong passwords can be tested; `root@localhost`
//! over the unix socket stays passwordless, which is what [`Mariadb::sql`]
//! uses to seed and inspect. Durability is relaxed: these servers are scratch.

use crate::error::or_panic;
use crate::process::{Mode, Process, failure_output, find_bin, is_root};
use crate::{LaunchError, free_port};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The user TCP clients log in as.
pub const USER: &str = "root";
/// The tests' password for it.
pub const PASSWORD: &str = "kmdr-test-pw";

/// How to start a MariaDB server.
#[derive(Debug, Clone)]
pub struct MariadbOptions {
    /// The server's directory (created): data/, mysqld.sock, mysqld.pid, error.log.
    pub dir: PathBuf,
    /// [`USER`]'s password over TCP.
    pub password: String,
    /// Default: a free port.
    pub port: Option<u16>,
    pub mode: Mode,
}

impl MariadbOptions {
    pub fn new(dir: impl Into<PathBuf>, password: &str) -> MariadbOptions {
        MariadbOptions { dir: dir.into(), password: password.into(), port: None, mode: Mode::Owned }
    }
}

/// A MariaDB server; killed when dropped unless started detached.
#[derive(Debug)]
pub struct Mariadb {
    process: Process,
    port: u16,
    password: String,
    client: PathBuf,
    /// The server's directory (data/, mysqld.sock, error.log).
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Mariadb {
    /// Create a data dir, start the server, wait (30s) until it answers and
    /// give root over TCP its password.
    pub fn launch(o: MariadbOptions) -> Result<Mariadb, LaunchError> {
        let (Some(server), Some(install), Some(client)) = (
            find_bin("mariadbd", &["/usr/sbin/mariadbd"]),
            find_bin("mariadb-install-db", &[]),
            find_bin("mariadb", &[]),
        ) else {
            return Err(LaunchError::NotInstalled {
                server: "MariaDB",
                programs: "mariadbd, mariadb-install-db, mariadb",
            });
        };
        let root = &o.dir;
        std::fs::create_dir_all(root).map_err(LaunchError::io("create", root))?;
        let data = root.join("data");
        let user: &[&str] = if is_root() { &["--user=root"] } else { &[] };
        // Native AIO (io_uring) can run out of locked memory when several
        // servers start at once; nobody here needs it.
        for tries in 1.. {
            let out = Command::new(&install)
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .args(["--auth-root-authentication-method=normal", "--skip-test-db", "--innodb-use-native-aio=0"])
                .args(user)
                .current_dir(root)
                .output()
                .map_err(LaunchError::spawn("mariadb-install-db"))?;
            if out.status.success() {
                break;
            }
            if tries == 3 {
                return Err(LaunchError::Setup { tool: "mariadb-install-db", output: failure_output(&out) });
            }
            let _ = std::fs::remove_dir_all(&data);
        }
        let port = o.port.unwrap_or_else(free_port);
        let log = root.join("error.log");
        let mut cmd = Command::new(server);
        cmd.arg("--no-defaults")
            .args(user)
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", root.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", root.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--port={port}"))
            // Its own temporary tables in its own directory, not the shared /tmp.
            .arg(format!("--tmpdir={}", root.display()))
            .args(["--bind-address=127.0.0.1", "--skip-name-resolve", "--skip-log-bin", "--max-allowed-packet=64M"])
            // A scratch server: durability is not what is being measured.
            .args(["--innodb-flush-log-at-trx-commit=2", "--innodb-doublewrite=0", "--innodb-use-native-aio=0"])
            .current_dir(root);
        let process = Process::spawn(&mut cmd, "mariadbd", &o.mode, &log)?;
        let mut m = Mariadb { process, port, password: o.password, client, dir: o.dir.clone(), log };
        let log = m.log.clone();
        let probe = Mariadb::socket_sql(&m.client, &m.dir);
        m.process.wait_ready("mariadbd", &log, 30, Duration::from_millis(100), || probe("SELECT 1").is_ok())?;
        let pw = &m.password;
        m.try_sql(&format!(
            "ALTER USER root@'127.0.0.1' IDENTIFIED BY '{pw}'; ALTER USER root@'::1' IDENTIFIED BY '{pw}'; FLUSH PRIVILEGES;"
        ))?;
        m.process.launched();
        Ok(m)
    }

    /// Create and start a fresh server in a new directory under `dir`.
    pub fn start(dir: &Path) -> Mariadb {
        let port = free_port();
        let o =
            MariadbOptions { port: Some(port), ..MariadbOptions::new(dir.join(format!("mariadb-{port}")), PASSWORD) };
        or_panic(Self::launch(o))
    }

    /// A runner of SQL as root over the server's unix socket.
    fn socket_sql(client: &Path, dir: &Path) -> impl Fn(&str) -> Result<String, LaunchError> + use<> {
        let (client, socket) = (client.to_path_buf(), dir.join("mysqld.sock"));
        move |sql: &str| {
            let out = Command::new(&client)
                .arg("--no-defaults")
                .arg(format!("--socket={}", socket.display()))
                .args(["-u", "root", "--batch", "--skip-column-names", "-e", sql])
                .output()
                .map_err(LaunchError::spawn("mariadb"))?;
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(LaunchError::Sql { client: "mariadb", sql: sql.into(), output: failure_output(&out) })
            }
        }
    }

    /// Run `sql` as root over the unix socket with the `mariadb` client;
    /// the tab-separated output without column names.
    pub fn try_sql(&self, sql: &str) -> Result<String, LaunchError> {
        Mariadb::socket_sql(&self.client, &self.dir)(sql)
    }

    /// [`Mariadb::try_sql`], panicking on failure.
    pub fn sql(&self, sql: &str) -> String {
        or_panic(self.try_sql(sql))
    }

    /// `mysql://root:PASSWORD@127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("mysql://{USER}:{}@127.0.0.1:{}", self.password, self.port)
    }

    /// kine's `--endpoint` for tenant database `db` (kine creates it).
    pub fn kine_endpoint(&self, db: &str) -> String {
        format!("mysql://{USER}:{}@tcp(127.0.0.1:{})/{db}", self.password, self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}
