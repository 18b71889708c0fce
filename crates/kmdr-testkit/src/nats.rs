//! nats-server with JetStream, the datastore of kine's NATS driver.

use crate::free_port;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The user and password the test server requires.
pub const USER: &str = "kmdr";
pub const PASSWORD: &str = "kmdr-test-pw";

/// A nats-server started by the test, JetStream on, storage under the test's
/// dir; killed (by pid) when dropped.
pub struct Nats {
    child: Child,
    port: u16,
    /// JetStream storage directory.
    pub store_dir: PathBuf,
    /// The server's log file.
    pub log: PathBuf,
}

impl Nats {
    /// Start a fresh server with JetStream storage under `dir/nats`,
    /// listening on loopback and requiring user `kmdr`, password `kmdr-test-pw`.
    pub fn start(dir: &Path) -> Nats {
        let port = free_port();
        let store_dir = dir.join("nats");
        std::fs::create_dir_all(&store_dir).unwrap();
        let log = dir.join("nats.log");
        let child = Command::new("nats-server")
            .args(["-js", "-sd"])
            .arg(&store_dir)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["--user", USER, "--pass", PASSWORD])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start nats-server");
        let n = Nats { child, port, store_dir, log };
        n.wait_ready();
        n
    }

    /// Wait until the server sends its INFO line on a fresh connection.
    fn wait_ready(&self) {
        use std::io::Read;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 4];
                if s.read_exact(&mut buf).is_ok() && &buf == b"INFO" {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nats-server on port {} did not become ready; see {}", self.port, self.log.display());
    }

    /// `nats://kmdr:kmdr-test-pw@127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{USER}:{PASSWORD}@127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
