//! An S3-compatible server: moto's (`python3 -m moto.server`), as
//! scripts/s3-server.sh starts it, with one bucket. moto takes any
//! credentials and does not check signatures, so the bucket is made with a
//! plain `PUT /<bucket>` (with Object Lock and versioning when asked).
//!
//! With IAM users ([`S3ServerOptions::users`]) it enforces their policies
//! instead, as the least-privilege tests need: scripts/moto-iam.py runs moto's
//! server (with its check of signatures mended for query strings holding a
//! `/`), creates each user with its inline policy and an access key, then
//! turns authentication on (`POST /moto-api/reset-auth 0`): from then on every
//! request must be signed with a key IAM knows and is allowed only what that
//! key's policy allows.

use crate::error::or_panic;
use crate::process::{Mode, Process};
use crate::{LaunchError, free_port};
use std::collections::BTreeMap;
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
    /// Make the bucket with Object Lock enabled (and so versioning).
    pub object_lock: bool,
    /// IAM users to create, name -> policy JSON, after which every request
    /// must be signed by one of them (see the module doc).
    pub users: BTreeMap<String, String>,
}

impl S3ServerOptions {
    /// The log in `dir/s3.log`, bucket `kmdr-test`.
    pub fn new(dir: &Path) -> S3ServerOptions {
        S3ServerOptions {
            log: dir.join("s3.log"),
            bucket: "kmdr-test".into(),
            mode: Mode::Owned,
            object_lock: false,
            users: BTreeMap::new(),
        }
    }
}

/// An S3 server; killed when dropped unless started detached.
#[derive(Debug)]
pub struct S3Server {
    process: Process,
    port: u16,
    pub bucket: String,
    pub log: PathBuf,
    /// With [`S3ServerOptions::users`]: each user's (access key id, secret).
    pub credentials: BTreeMap<String, (String, String)>,
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
        if o.users.is_empty() {
            cmd.args(["-m", "moto.server"]);
        } else {
            // moto's server with its signature check mended (see the script).
            cmd.args([MOTO_IAM, "server"]);
        }
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let process = Process::spawn(&mut cmd, "python3", &o.mode, &o.log)?;
        let mut s = S3Server { process, port, bucket: o.bucket, log: o.log, credentials: BTreeMap::new() };
        let (log, bucket) = (s.log.clone(), format!("/{}", s.bucket));
        let header = if o.object_lock { "x-amz-bucket-object-lock-enabled: true\r\n" } else { "" };
        s.process.wait_ready("the S3 server", &log, 30, Duration::from_millis(200), || {
            http_with(port, "PUT", &bucket, header) == Some(200)
        })?;
        if !o.users.is_empty() {
            s.credentials = iam_users(&s.endpoint(), &o.users)?;
        }
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

/// Make a bucket on the moto at `endpoint` (`http://127.0.0.1:PORT`, before
/// authentication is on): with Object Lock (and so versioning) when
/// `object_lock`, with versioning alone when `versioning`.
pub fn create_bucket(endpoint: &str, name: &str, object_lock: bool, versioning: bool) {
    let port: u16 =
        endpoint.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok()).expect("endpoint port");
    let header = if object_lock { "x-amz-bucket-object-lock-enabled: true\r\n" } else { "" };
    assert_eq!(http_with(port, "PUT", &format!("/{name}"), header), Some(200), "create bucket {name}");
    if versioning && !object_lock {
        let body = "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>";
        assert_eq!(http_body(port, "PUT", &format!("/{name}?versioning"), body), Some(200), "versioning of {name}");
    }
}

/// The status code of an empty HTTP/1.1 request to 127.0.0.1:`port`.
#[cfg(test)]
fn http(port: u16, method: &str, path: &str) -> Option<u16> {
    http_with(port, method, path, "")
}

/// The same with `headers` (each ending in CRLF).
fn http_with(port: u16, method: &str, path: &str, headers: &str) -> Option<u16> {
    request(port, &format!("{method} {path} HTTP/1.1\r\n{headers}Content-Length: 0\r\n"), "")
}

/// A request with a body.
fn http_body(port: u16, method: &str, path: &str, body: &str) -> Option<u16> {
    request(port, &format!("{method} {path} HTTP/1.1\r\nContent-Length: {}\r\n", body.len()), body)
}

fn request(port: u16, head: &str, body: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("{head}Host: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n{body}");
    s.write_all(req.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    // `HTTP/1.1 200`
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// scripts/moto-iam.py: moto's server for IAM tests, and their users.
const MOTO_IAM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/moto-iam.py");

/// Create `users` with scripts/moto-iam.py and turn authentication on;
/// returns their access keys.
fn iam_users(
    endpoint: &str,
    users: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, (String, String)>, LaunchError> {
    let mut child = Command::new("python3")
        .args([MOTO_IAM, "users"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LaunchError::Setup { tool: "scripts/moto-iam.py", output: e.to_string() })?;
    let input = serde_json::json!({"endpoint": endpoint, "users": users}).to_string();
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).ok();
    let out = child
        .wait_with_output()
        .map_err(|e| LaunchError::Setup { tool: "scripts/moto-iam.py", output: e.to_string() })?;
    if !out.status.success() {
        return Err(LaunchError::Setup {
            tool: "scripts/moto-iam.py",
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| LaunchError::Setup { tool: "scripts/moto-iam.py", output: format!("unexpected output: {e}") })
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
