//! etcd members: [`Etcd::launch`] returns what went wrong; [`Etcd::start`]
//! and its siblings are the tests' panicking shorthands.

use crate::error::or_panic;
use crate::process::{Mode, Process, find_bin};
use crate::{LaunchError, free_port};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How to start a single-member etcd cluster.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    pub name: String,
    pub data_dir: PathBuf,
    /// Default: the data dir with the extension `log`.
    pub log: Option<PathBuf>,
    /// The client port; default: a free one.
    pub port: Option<u16>,
    /// Default: a free port on 127.0.0.1. A restored data dir needs the peer
    /// URL the member was created with.
    pub peer_url: Option<String>,
    /// Serve clients over TLS and require client certificates signed by the
    /// CA in this directory (see [`crate::make_pki`]).
    pub tls: Option<PathBuf>,
    pub mode: Mode,
    /// The etcd binary; default: `etcd` on PATH (etcd 3.6 under scripts/tools-env.sh).
    pub program: Option<PathBuf>,
}

impl EtcdOptions {
    pub fn new(name: &str, data_dir: impl Into<PathBuf>) -> EtcdOptions {
        EtcdOptions {
            name: name.into(),
            data_dir: data_dir.into(),
            log: None,
            port: None,
            peer_url: None,
            tls: None,
            mode: Mode::Owned,
            program: None,
        }
    }
}

/// An etcd member; stopped when dropped unless started detached.
#[derive(Debug)]
pub struct Etcd {
    process: Process,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    pub name: String,
    pub log: PathBuf,
}

impl Etcd {
    /// Start a member and wait (20s) until it answers.
    pub fn launch(o: EtcdOptions) -> Result<Etcd, LaunchError> {
        let program = match &o.program {
            Some(p) => p.clone(),
            None => find_bin("etcd", &[]).ok_or(LaunchError::NotInstalled { server: "etcd", programs: "etcd" })?,
        };
        let scheme = if o.tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://127.0.0.1:{}", o.port.unwrap_or_else(free_port));
        let peer_url = o.peer_url.clone().unwrap_or_else(|| format!("http://127.0.0.1:{}", free_port()));
        let log = o.log.clone().unwrap_or_else(|| o.data_dir.with_extension("log"));
        let mut cmd = Command::new(program);
        cmd.args(["--name", &o.name, "--data-dir"])
            .arg(&o.data_dir)
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("{}={peer_url}", o.name)])
            .args(["--quota-backend-bytes", &(4u64 << 30).to_string(), "--log-level", "error"]);
        if let Some(pki) = &o.tls {
            let p = |f: &str| pki.join(f);
            cmd.arg("--cert-file").arg(p("server.crt")).arg("--key-file").arg(p("server.key"));
            cmd.arg("--client-cert-auth").arg("--trusted-ca-file").arg(p("ca.crt"));
        }
        let process = Process::spawn(&mut cmd, "etcd", &o.mode, &log)?;
        let mut e = Etcd { process, client_url, peer_url, data_dir: o.data_dir, name: o.name, log };
        let (url, log) = (e.client_url.clone(), e.log.clone());
        match &o.tls {
            None => e.process.wait_ready("etcd", &log, 20, Duration::from_millis(100), || answers(&url)),
            Some(pki) => e.process.wait_ready("etcd", &log, 20, Duration::from_millis(200), || answers_tls(&url, pki)),
        }?;
        e.process.launched();
        Ok(e)
    }

    /// Start a fresh single-member cluster with data under `dir`.
    pub fn start(dir: &Path, name: &str) -> Etcd {
        or_panic(Self::launch(EtcdOptions::new(name, dir.join(format!("{name}.etcd")))))
    }

    /// Start etcd on an existing (e.g. restored) data dir; `peer_url` must be
    /// the one the member was created with.
    pub fn start_on(data_dir: PathBuf, name: &str, peer_url: Option<String>) -> Etcd {
        or_panic(Self::launch(EtcdOptions { peer_url, ..EtcdOptions::new(name, data_dir) }))
    }

    /// Start a member that serves clients over TLS and requires client
    /// certificates signed by the CA in `pki` (see [`crate::make_pki`]).
    pub fn start_tls(dir: &Path, name: &str, pki: &Path) -> Etcd {
        let o = EtcdOptions { tls: Some(pki.into()), ..EtcdOptions::new(name, dir.join(format!("{name}.etcd"))) };
        or_panic(Self::launch(o))
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Kill -9 now (a crash), whatever the mode.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.client_url.as_str()], None).await.unwrap()
    }

    /// Every key and value, sorted.
    pub async fn dump(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut c = self.client().await;
        let r = c.get(vec![0u8], Some(etcd_client::GetOptions::new().with_from_key())).await.unwrap();
        let mut v: Vec<_> = r.kvs().iter().map(|kv| (kv.key().to_vec(), kv.value().to_vec())).collect();
        v.sort();
        v
    }

    /// Put `n` keys `<prefix><i:06>` with values of `size` pseudo-random bytes.
    pub async fn load(&self, prefix: &str, n: usize, size: usize, seed: u64) {
        let mut rng = crate::data::Rng::new(seed);
        let mut c = self.client().await;
        for batch in (0..n).collect::<Vec<_>>().chunks(100) {
            let ops: Vec<_> = batch
                .iter()
                .map(|i| etcd_client::TxnOp::put(format!("{prefix}{i:06}"), rng.bytes(size), None))
                .collect();
            c.txn(etcd_client::Txn::new().and_then(ops)).await.unwrap();
        }
    }

    pub fn stop(self) {}
}

/// Whether the etcd (or kine) at `url` answers a status request. On its own runtime
/// and thread: callers may be inside one.
pub(crate) fn answers(url: &str) -> bool {
    let addr = url.trim_start_matches("http://").to_string();
    if std::net::TcpStream::connect(&addr).is_err() {
        return false;
    }
    let url = url.to_string();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return false };
        // Bounded: whatever holds the port may accept and never answer.
        rt.block_on(async {
            let probe = async {
                match etcd_client::Client::connect([url.as_str()], None).await {
                    Ok(mut c) => c.status().await.is_ok(),
                    Err(_) => false,
                }
            };
            tokio::time::timeout(Duration::from_secs(2), probe).await.unwrap_or(false)
        })
    })
    .join()
    .unwrap_or(false)
}

/// Whether the TLS etcd at `url` answers `etcdctl endpoint health` with the
/// client certificate in `pki`.
fn answers_tls(url: &str, pki: &Path) -> bool {
    Command::new("etcdctl")
        .args(["--endpoints", url])
        .arg("--cacert")
        .arg(pki.join("ca.crt"))
        .arg("--cert")
        .arg(pki.join("client.crt"))
        .arg("--key")
        .arg(pki.join("client.key"))
        .args(["endpoint", "health"])
        .output()
        .is_ok_and(|o| o.status.success())
}
