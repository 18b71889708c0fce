//! nats-server with JetStream, the datastore of kine's NATS driver.

use crate::error::or_panic;
use crate::process::{Mode, Process, find_bin};
use crate::{LaunchError, free_port};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The user the test server requires.
pub const USER: &str = "kmdr";
/// The tests' password for it.
pub const PASSWORD: &str = "kmdr-test-pw";

/// How to start a nats-server.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// JetStream storage directory (created).
    pub store_dir: PathBuf,
    pub log: PathBuf,
    /// [`USER`]'s password.
    pub password: String,
    pub mode: Mode,
}

impl NatsOptions {
    /// JetStream storage in `dir/nats`, the log in `dir/nats.log`.
    pub fn new(dir: &Path, password: &str) -> NatsOptions {
        NatsOptions {
            store_dir: dir.join("nats"),
            log: dir.join("nats.log"),
            password: password.into(),
            mode: Mode::Owned,
        }
    }
}

/// A nats-server, JetStream on; killed when dropped unless started detached.
#[derive(Debug)]
pub struct Nats {
    process: Process,
    port: u16,
    password: String,
    /// JetStream storage directory.
    pub store_dir: PathBuf,
    /// The server's log file.
    pub log: PathBuf,
}

impl Nats {
    /// Start a server on loopback requiring user [`USER`] and wait (20s)
    /// until it sends its INFO line.
    pub fn launch(o: NatsOptions) -> Result<Nats, LaunchError> {
        let program = find_bin("nats-server", &[])
            .ok_or(LaunchError::NotInstalled { server: "NATS", programs: "nats-server" })?;
        std::fs::create_dir_all(&o.store_dir).map_err(LaunchError::io("create", &o.store_dir))?;
        let port = free_port();
        let mut cmd = Command::new(program);
        cmd.args(["-js", "-sd"]).arg(&o.store_dir).args(["-a", "127.0.0.1", "-p", &port.to_string()]).args([
            "--user",
            USER,
            "--pass",
            &o.password,
        ]);
        let process = Process::spawn(&mut cmd, "nats-server", &o.mode, &o.log)?;
        let mut n = Nats { process, port, password: o.password, store_dir: o.store_dir, log: o.log };
        let log = n.log.clone();
        n.process.wait_ready("nats-server", &log, 20, Duration::from_millis(50), || says_info(port))?;
        n.process.launched();
        Ok(n)
    }

    /// Start a fresh server with JetStream storage under `dir/nats`,
    /// requiring user `kmdr`, password `kmdr-test-pw`.
    pub fn start(dir: &Path) -> Nats {
        or_panic(Self::launch(NatsOptions::new(dir, PASSWORD)))
    }

    /// `nats://kmdr:PASSWORD@127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{USER}:{}@127.0.0.1:{}", self.password, self.port)
    }

    /// kine's `--endpoint` for tenant bucket `bucket` (kine creates it), on
    /// this server rather than one embedded in kine.
    pub fn kine_endpoint(&self, bucket: &str) -> String {
        format!("{}?bucket={bucket}&noEmbed", self.url())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// Whether the server sends its INFO line on a fresh connection.
fn says_info(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).is_ok() && &buf == b"INFO"
}
