//! MariaDB servers.
//!
//! `mariadb-install-db` creates a fresh data dir in a new directory under the
//! caller's temp dir; `mariadbd` runs as root (allowed with `--user=root`),
//! listens on 127.0.0.1 on a free port with `--skip-name-resolve`, and keeps
//! its socket in its own directory. Once up, `root@127.0.0.1` (what TCP
//! clients are) gets the password [`PASSWORD`], so wrong passwords can be
//! tested; `root@localhost` over the unix socket stays passwordless, which is
//! what [`Mariadb::sql`] uses to seed and inspect.

use crate::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The user TCP clients log in as.
pub const USER: &str = "root";
/// Its password.
pub const PASSWORD: &str = "kmdr-test-pw";

/// A MariaDB server started by the test; killed (by pid) when dropped.
pub struct Mariadb {
    child: Child,
    port: u16,
    /// The server's directory (data/, mysqld.sock, error.log).
    pub dir: PathBuf,
}

impl Mariadb {
    /// Create and start a fresh server in a new directory under `dir`.
    pub fn start(dir: &Path) -> Mariadb {
        let port = free_port();
        let root = dir.join(format!("mariadb-{port}"));
        std::fs::create_dir_all(&root).unwrap();
        let data = root.join("data");
        // Native AIO (io_uring) can run out of locked memory when several
        // servers start at once; the tests do not need it.
        let mut tries = 0;
        loop {
            tries += 1;
            let out = Command::new("mariadb-install-db")
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .args([
                    "--auth-root-authentication-method=normal",
                    "--user=root",
                    "--skip-test-db",
                    "--innodb-use-native-aio=0",
                ])
                .current_dir(&root)
                .output()
                .expect("run mariadb-install-db");
            if out.status.success() {
                break;
            }
            assert!(
                tries < 3,
                "mariadb-install-db failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let _ = std::fs::remove_dir_all(&data);
        }
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", root.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", root.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", root.join("error.log").display()))
            .arg(format!("--port={port}"))
            .args(["--bind-address=127.0.0.1", "--skip-name-resolve", "--skip-log-bin", "--max-allowed-packet=64M"])
            // A test server: durability is not what is being measured.
            .args(["--innodb-flush-log-at-trx-commit=2", "--innodb-doublewrite=0", "--innodb-use-native-aio=0"])
            .current_dir(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        let m = Mariadb { child, port, dir: root };
        m.wait_ready();
        m.sql(&format!(
            "ALTER USER root@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; ALTER USER root@'::1' IDENTIFIED BY '{PASSWORD}'; FLUSH PRIVILEGES;"
        ));
        m
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.try_sql("SELECT 1").is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not become ready; see {}",
                self.dir.join("error.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn try_sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.dir.join("mysqld.sock").display()))
            .args(["-u", "root", "--batch", "--skip-column-names", "-e", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Run `sql` as root over the unix socket with the `mariadb` client;
    /// returns the tab-separated output without column names. Panics on failure.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql).unwrap_or_else(|e| panic!("mariadb {sql:?} failed: {e}"))
    }

    /// `mysql://root:kmdr-test-pw@127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("mysql://{USER}:{PASSWORD}@127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
