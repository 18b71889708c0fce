//! Test harness: real etcd servers on loopback in temp dirs, and the kmdr
//! binary run as a user would run it. A missing server binary fails the test
//! when KMDR_TEST_REQUIRE_SERVERS=1 (CI); otherwise the test says it is
//! skipped on stderr.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn require_servers() -> bool {
    std::env::var("KMDR_TEST_REQUIRE_SERVERS").as_deref() == Ok("1")
}

/// Whether `bin` runs (`bin --version` succeeds).
pub fn have(bin: &str) -> bool {
    Command::new(bin).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Skip (or fail in CI) when etcd is not installed.
#[macro_export]
macro_rules! need_etcd {
    () => {
        if !common::have("etcd") {
            if common::require_servers() {
                panic!("etcd is not on PATH but KMDR_TEST_REQUIRE_SERVERS=1: run scripts/test.sh, which installs and finds it");
            }
            eprintln!("SKIPPED: etcd not on PATH (run scripts/test.sh)");
            return;
        }
    };
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

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
            .args(["--cert-file", &p("server.crt"), "--key-file", &p("server.key"), "--client-cert-auth", "--trusted-ca-file", &p("ca.crt")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        let e = Etcd { child, client_url: client_url.clone(), peer_url, data_dir, name: name.into() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = Command::new("etcdctl")
                .args(["--endpoints", &client_url, "--cacert", &p("ca.crt"), "--cert", &p("client.crt"), "--key", &p("client.key"), "endpoint", "health"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return e;
            }
            assert!(Instant::now() < deadline, "TLS etcd did not become ready; see {}", e.data_dir.with_extension("log").display());
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
        panic!("etcd at {} did not become ready; see {}", self.client_url, self.data_dir.with_extension("log").display());
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

/// A repository in a temp dir with its key file, and the kmdr binary.
pub struct Kmdr {
    pub repo: String,
    pub key_file: PathBuf,
    pub extra_env: Vec<(String, String)>,
}

impl Kmdr {
    pub fn local(dir: &Path) -> Kmdr {
        Kmdr { repo: dir.join("repo").display().to_string(), key_file: dir.join("kmdr.key"), extra_env: vec![] }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kmdr"));
        c.env("KMDR_REPO", &self.repo).env("KMDR_KEY_FILE", &self.key_file).env_remove("KMDR_LOG");
        for (k, v) in &self.extra_env {
            c.env(k, v);
        }
        c
    }

    /// Run kmdr with `args`; returns the output whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).stdin(Stdio::null()).output().expect("run kmdr")
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "kmdr {args:?} failed ({:?}):\nstdout: {}\nstderr: {}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    }

    /// Run and require exit `code` with a single-line error on stderr; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let o = self.run(args);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(code), "kmdr {args:?}: expected exit {code}\nstdout: {}\nstderr: {err}", String::from_utf8_lossy(&o.stdout));
        let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr, got: {err}");
        assert!(lines[0].starts_with("error: "), "{err}");
        err
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("json output")
    }

    pub fn init(&self) {
        self.ok(&["repo", "init"]);
    }

    /// Every object in a local repository with its content hash, to prove a command changed nothing.
    pub fn fingerprint(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let root = PathBuf::from(&self.repo);
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let data = std::fs::read(&p).unwrap();
                    let h = data.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3));
                    out.push((p.strip_prefix(&root).unwrap().display().to_string(), h));
                }
            }
        }
        out.sort();
        out
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made
/// with the openssl command line in `dir`: ca.crt, server.{crt,key}, client.{crt,key}.
pub fn make_pki(dir: &Path) {
    let script = r#"
set -e
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=kmdr-test-ca 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > server.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
for who in server client; do
  openssl req -newkey rsa:2048 -nodes -keyout $who.key -out $who.csr -subj /CN=$who 2>/dev/null
  openssl x509 -req -in $who.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $who.crt -days 2 -extfile $who.ext 2>/dev/null
done
"#;
    let st = Command::new("bash").arg("-c").arg(script).current_dir(dir).status().expect("run openssl");
    assert!(st.success(), "openssl could not make the test certificates");
}
