//! etcd members.

use crate::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An etcd member started by the test; killed (by pid) when dropped.
pub struct Etcd {
    pub child: Child,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    pub name: String,
}

impl Etcd {
    /// Start a fresh single-member cluster with data under `dir`.
    pub fn start(dir: &Path, name: &str) -> Etcd {
        Self::start_on(dir.join(format!("{name}.etcd")), name, None)
    }

    /// Start etcd on an existing (e.g. restored) data dir; `peer_url` must be
    /// the one the member was created with.
    pub fn start_on(data_dir: PathBuf, name: &str, peer_url: Option<String>) -> Etcd {
        let client_url = format!("http://127.0.0.1:{}", free_port());
        let peer_url = peer_url.unwrap_or_else(|| format!("http://127.0.0.1:{}", free_port()));
        let listen_peer = peer_url.clone();
        let log = std::fs::File::create(data_dir.with_extension("log")).unwrap();
        let child = Command::new("etcd")
            .args(["--name", name, "--data-dir"])
            .arg(&data_dir)
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &listen_peer, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("{name}={peer_url}")])
            .args(["--quota-backend-bytes", &(4u64 << 30).to_string(), "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        let e = Etcd { child, client_url, peer_url, data_dir, name: name.into() };
        e.wait_ready();
        e
    }

    /// Start a member that serves clients over TLS and requires client
    /// certificates signed by the CA in `pki` (see [`make_pki`]).
    pub fn start_tls(dir: &Path, name: &str, pki: &Path) -> Etcd {
        let port = free_port();
        let client_url = format!("https://127.0.0.1:{port}");
        let peer_url = format!("http://127.0.0.1:{}", free_port());
        let data_dir = dir.join(format!("{name}.etcd"));
        let log = std::fs::File::create(data_dir.with_extension("log")).unwrap();
        let p = |f: &str| pki.join(f).display().to_string();
        let child = Command::new("etcd")
            .args(["--name", name, "--data-dir"])
            .arg(&data_dir)
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("{name}={peer_url}"), "--log-level", "error"])
            .args([
                "--cert-file",
                &p("server.crt"),
                "--key-file",
                &p("server.key"),
                "--client-cert-auth",
                "--trusted-ca-file",
                &p("ca.crt"),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        let e = Etcd { child, client_url: client_url.clone(), peer_url, data_dir, name: name.into() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = Command::new("etcdctl")
                .args([
                    "--endpoints",
                    &client_url,
                    "--cacert",
                    &p("ca.crt"),
                    "--cert",
                    &p("client.crt"),
                    "--key",
                    &p("client.key"),
                    "endpoint",
                    "health",
                ])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "TLS etcd did not become ready; see {}",
                e.data_dir.with_extension("log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_ready(&self) {
        let addr = self.client_url.trim_start_matches("http://").to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&addr).is_ok() {
                // Its own runtime on its own thread: callers may be inside one.
                let url = self.client_url.clone();
                let ok = std::thread::spawn(move || {
                    tokio::runtime::Runtime::new().unwrap().block_on(async {
                        match etcd_client::Client::connect([url.as_str()], None).await {
                            Ok(mut c) => c.status().await.is_ok(),
                            Err(_) => false,
                        }
                    })
                })
                .join()
                .unwrap();
                if ok {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "etcd at {} did not become ready; see {}",
            self.client_url,
            self.data_dir.with_extension("log").display()
        );
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

    /// Put `n` keys under `prefix` with values of `size` pseudo-random bytes.
    pub async fn load(&self, prefix: &str, n: usize, size: usize, seed: u64) {
        use rand::{RngCore, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut c = self.client().await;
        for batch in (0..n).collect::<Vec<_>>().chunks(100) {
            let ops: Vec<_> = batch
                .iter()
                .map(|i| {
                    let mut v = vec![0u8; size];
                    rng.fill_bytes(&mut v);
                    etcd_client::TxnOp::put(format!("{prefix}{i:06}"), v, None)
                })
                .collect();
            c.txn(etcd_client::Txn::new().and_then(ops)).await.unwrap();
        }
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
