//! kine (k3s-io/kine), the etcd API that Kamaji puts in front of a
//! PostgreSQL, MySQL/MariaDB or NATS datastore: one kine process per tenant
//! database or bucket, as Kamaji runs it. Built from source by
//! scripts/build-go-tools.sh and put on PATH by scripts/tools-env.sh.
//!
//! The datastore servers hand out the endpoint kine takes
//! ([`crate::Postgres::kine_endpoint`], [`crate::Mariadb::kine_endpoint`],
//! [`crate::Nats::kine_endpoint`]); kine creates the database (or bucket) and
//! its table when they are missing, exactly as in production.

use crate::error::or_panic;
use crate::process::{Mode, Process, find_bin};
use crate::{LaunchError, free_port};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// kine's own compaction, which the API server otherwise asks for.
#[derive(Debug, Clone, Copy)]
pub struct Compaction {
    /// How often kine compacts (`--compact-interval`).
    pub interval: Duration,
    /// Revisions kept behind the current one (`--compact-min-retain`).
    pub min_retain: u32,
}

/// How to start kine.
#[derive(Debug, Clone)]
pub struct KineOptions {
    /// The datastore, as kine's `--endpoint` takes it (passwords included).
    pub endpoint: String,
    pub log: PathBuf,
    /// The etcd client port; default: a free one.
    pub port: Option<u16>,
    /// Compact on a timer; default: never (the API server's Compact calls do it).
    pub compaction: Option<Compaction>,
    pub mode: Mode,
    /// The kine binary; default: `kine` on PATH.
    pub program: Option<PathBuf>,
}

impl KineOptions {
    pub fn new(endpoint: impl Into<String>, log: impl Into<PathBuf>) -> KineOptions {
        KineOptions {
            endpoint: endpoint.into(),
            log: log.into(),
            port: None,
            compaction: None,
            mode: Mode::Owned,
            program: None,
        }
    }
}

/// A kine process serving the etcd API on loopback; stopped when dropped
/// unless started detached.
#[derive(Debug)]
pub struct Kine {
    process: Process,
    /// `http://127.0.0.1:PORT`, what an etcd client (and kmdr) connects to.
    pub client_url: String,
    /// The server's log file.
    pub log: PathBuf,
}

impl Kine {
    /// Start kine and wait (30s) until it answers an etcd status request
    /// (it answers once its database or bucket is set up).
    pub fn launch(o: KineOptions) -> Result<Kine, LaunchError> {
        let program = match &o.program {
            Some(p) => p.clone(),
            None => find_bin("kine", &[]).ok_or(LaunchError::NotInstalled { server: "kine", programs: "kine" })?,
        };
        let client_url = format!("http://127.0.0.1:{}", o.port.unwrap_or_else(free_port));
        let mut cmd = Command::new(&program);
        cmd.args(["--endpoint", &o.endpoint])
            .args(["--listen-address", client_url.trim_start_matches("http://")])
            .args(["--metrics-bind-address", "0"]);
        if let Some(c) = o.compaction {
            cmd.args(["--compact-interval", &format!("{}ms", c.interval.as_millis())])
                .args(["--compact-min-retain", &c.min_retain.to_string()]);
        }
        let process = Process::spawn(&mut cmd, "kine", &o.mode, &o.log)?;
        let mut k = Kine { process, client_url, log: o.log };
        let (url, log) = (k.client_url.clone(), k.log.clone());
        k.process.wait_ready("kine", &log, 30, Duration::from_millis(100), || crate::etcd::answers(&url))?;
        k.process.launched();
        Ok(k)
    }

    /// Start kine on `endpoint`, its log `dir/kine-<port>.log`.
    pub fn start(dir: &Path, endpoint: &str) -> Kine {
        let port = free_port();
        let o = KineOptions { port: Some(port), ..KineOptions::new(endpoint, dir.join(format!("kine-{port}.log"))) };
        or_panic(Self::launch(o))
    }

    /// [`Kine::start`], compacting every `interval` down to `min_retain` revisions.
    pub fn start_compacting(dir: &Path, endpoint: &str, interval: Duration, min_retain: u32) -> Kine {
        let port = free_port();
        let o = KineOptions {
            port: Some(port),
            compaction: Some(Compaction { interval, min_retain }),
            ..KineOptions::new(endpoint, dir.join(format!("kine-{port}.log")))
        };
        or_panic(Self::launch(o))
    }

    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.client_url.as_str()], None).await.unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Stop now (its handle's drop does it).
    pub fn stop(self) {}
}
