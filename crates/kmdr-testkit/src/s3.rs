//! An S3-compatible server: moto's (`python3 -m moto.server`), as
//! scripts/s3-server.sh starts it, with one bucket. moto takes any
//! credentials and does not check signatures, so the bucket is made with a
//! plain `PUT /<bucket>`.

use crate::error::or_panic;
use crate::process::{Mode, Process};
use crate::{LaunchError, free_port};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The credentials and region clients use (moto accepts any).
pub const ACCESS_KEY_ID: &str = "kmdr-test";
pub const SECRET_ACCESS_KEY: &str = "kmdr-test";
pub const REGION: &str = "us-east-1";

/// How to start the S3 server.
#[derive(Debug, Clone)]
pub struct S3ServerOptions {
    pub log: PathBuf,
    /// Made once the server answers.
    pub bucket: String,
    pub mode: Mode,
}

impl S3ServerOptions {
    /// The log in `dir/s3.log`, bucket `kmdr-test`.
    pub fn new(dir: &Path) -> S3ServerOptions {
        S3ServerOptions { log: dir.join("s3.log"), bucket: "kmdr-test".into(), mode: Mode::Owned }
    }
}

/// An S3 server; killed when dropped unless started detached.
#[derive(Debug)]
pub struct S3Server {
    process: Process,
    port: u16,
    pub bucket: String,
    pub log: PathBuf,
}

impl S3Server {
    /// Start moto on a free loopback port, wait (30s) until it answers and
    /// make the bucket.
    pub fn launch(o: S3ServerOptions) -> Result<S3Server, LaunchError> {
        let has_moto = Command::new("python3")
            .args(["-c", "import moto.server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_moto {
            return Err(LaunchError::NotInstalled { server: "the S3 server", programs: "python3 -m moto.server" });
        }
        let port = free_port();
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()]);
        let process = Process::spawn(&mut cmd, "python3", &o.mode, &o.log)?;
        let mut s = S3Server { process, port, bucket: o.bucket, log: o.log };
        let (log, bucket) = (s.log.clone(), format!("/{}", s.bucket));
        s.process.wait_ready("the S3 server", &log, 30, Duration::from_millis(200), || {
            http(port, "PUT", &bucket) == Some(200)
        })?;
        s.process.launched();
        Ok(s)
    }

    /// Start one with its log and bucket `kmdr-test` under `dir`.
    pub fn start(dir: &Path) -> S3Server {
        or_panic(Self::launch(S3ServerOptions::new(dir)))
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// The status code of an empty HTTP/1.1 request to 127.0.0.1:`port`.
fn http(port: u16, method: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    // `HTTP/1.1 200`
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moto_answers_and_holds_the_bucket() {
        if !crate::need("python3") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let s = match S3Server::launch(S3ServerOptions::new(dir.path())) {
            Err(LaunchError::NotInstalled { .. }) if !crate::require_servers() => {
                eprintln!("SKIPPED: moto is not installed (run scripts/test.sh)");
                return;
            }
            r => or_panic(r),
        };
        assert_eq!(http(s.port(), "GET", "/kmdr-test"), Some(200), "the bucket lists");
        assert_eq!(http(s.port(), "GET", "/no-such-bucket"), Some(404));
        let pid = s.pid();
        drop(s);
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "stopped with its handle");
    }
}
