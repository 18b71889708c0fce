//! PostgreSQL 15 servers.
//!
//! The tests run as root and PostgreSQL refuses to run as root, so the cluster
//! is created and run as the `postgres` OS user in a directory under the
//! caller's temp dir, chowned to that user. The server listens on 127.0.0.1 on
//! a free port and puts its unix socket inside its own directory. TCP clients
//! must give the password of the superuser [`USER`] (SCRAM), so wrong
//! passwords can be tested; the unix socket trusts local users, which is what
//! [`Postgres::psql`] uses to seed and inspect.

use crate::free_port;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The superuser created by `initdb`.
pub const USER: &str = "kmdr";
/// Its password.
pub const PASSWORD: &str = "kmdr-test-pw";

/// Where Debian puts PostgreSQL 15's server tools (also on PATH via scripts/tools-env.sh).
const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL server started by the test; stopped (by its postmaster pid) when dropped.
pub struct Postgres {
    child: Child,
    port: u16,
    /// The cluster's directory (data/, sock/, server.log).
    pub dir: PathBuf,
}

/// The path of a PostgreSQL tool: the Debian location when present, else PATH.
pub fn bin(name: &str) -> PathBuf {
    let p = Path::new(BIN_DIR).join(name);
    if p.exists() { p } else { PathBuf::from(name) }
}

/// uid and gid of an OS user, from /etc/passwd.
fn os_user(name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == name).then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
        .next()
        .unwrap_or_else(|| panic!("no OS user {name:?}: PostgreSQL must run as a non-root user"))
}

impl Postgres {
    /// Create and start a fresh cluster in a new directory under `dir`.
    pub fn start(dir: &Path) -> Postgres {
        Self::start_with(dir, None)
    }

    /// Like [`Postgres::start`], but TCP connections must use TLS and present
    /// a client certificate signed by the CA in `pki` (see [`crate::make_pki`]),
    /// as Kamaji's DataStore `tlsConfig` sets up; the password is still asked.
    pub fn start_tls(dir: &Path, pki: &Path) -> Postgres {
        Self::start_with(dir, Some(pki))
    }

    fn start_with(dir: &Path, pki: Option<&Path>) -> Postgres {
        let (uid, gid) = os_user("postgres");
        // The postgres user must be able to reach its directory: temp dirs are 0700.
        let mode = std::fs::metadata(dir).unwrap().permissions().mode();
        if mode & 0o011 != 0o011 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o711)).unwrap();
        }
        let port = free_port();
        let root = dir.join(format!("pg-{port}"));
        let sock = root.join("sock");
        std::fs::create_dir_all(&sock).unwrap();
        let pwfile = root.join("pwfile");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        for p in [&root, &sock, &pwfile] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
        }
        let data = root.join("data");
        let out = Command::new(bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .current_dir(&root)
            .uid(uid)
            .gid(gid)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut tls_args: Vec<String> = Vec::new();
        if let Some(pki) = pki {
            for f in ["ca.crt", "server.crt", "server.key"] {
                let to = root.join(f);
                std::fs::copy(pki.join(f), &to).unwrap();
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
                std::os::unix::fs::chown(&to, Some(uid), Some(gid)).unwrap();
            }
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-ca\n",
            )
            .unwrap();
            for (k, f) in [("ssl_cert_file", "server.crt"), ("ssl_key_file", "server.key"), ("ssl_ca_file", "ca.crt")] {
                tls_args.extend(["-c".into(), format!("{k}={}", root.join(f).display())]);
            }
            tls_args.extend(["-c".into(), "ssl=on".into()]);
        }
        let log = std::fs::File::create(root.join("server.log")).unwrap();
        std::os::unix::fs::chown(root.join("server.log"), Some(uid), Some(gid)).unwrap();
        let child = Command::new(bin("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", sock.display()))
            // A test server: durability is not what is being measured.
            .args(["-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200"])
            .args(&tls_args)
            .current_dir(&root)
            .uid(uid)
            .gid(gid)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let pg = Postgres { child, port, dir: root };
        pg.wait_ready();
        pg
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not become ready; see {}",
                self.dir.join("server.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `postgres://kmdr:kmdr-test-pw@127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pid of the postmaster.
    pub fn pid(&self) -> u32 {
        self.child.id()
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

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its
        // backends down with it. Only the pid this test started is signalled.
        let quit = Command::new("kill").args(["-QUIT", &self.child.id().to_string()]).status();
        if quit.is_ok_and(|s| s.success()) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
