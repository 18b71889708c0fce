//! Test harness: real etcd servers on loopback in temp dirs, and the kmdr
//! binary run as a user would run it. A missing server binary fails the test
//! when KMDR_TEST_REQUIRE_SERVERS=1 (CI); otherwise the test says it is
//! skipped on stderr.
#![allow(dead_code)]

pub mod kube;
pub mod real_kube;

#[allow(unused_imports)]
pub use kmdr_testkit::{Etcd, free_port, have, make_pki, require_servers};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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

/// `(key, value)` of every key under `prefix`, sorted, as etcdctl would list them.
/// Standard base64, as the Kubernetes API encodes Secret data.
pub fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

pub async fn under(e: &Etcd, prefix: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    e.dump().await.into_iter().filter(|(k, _)| k.starts_with(prefix.as_bytes())).collect()
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
        assert!(
            o.status.success(),
            "kmdr {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Run and require exit `code` with a single-line error on stderr; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let o = self.run(args);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(
            o.status.code(),
            Some(code),
            "kmdr {args:?}: expected exit {code}\nstdout: {}\nstderr: {err}",
            String::from_utf8_lossy(&o.stdout)
        );
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

    /// A repository under a fresh prefix of the S3 server scripts/test.sh
    /// starts (`None`: no server, and the test is skipped outside CI).
    pub fn s3(dir: &Path, name: &str) -> Option<Kmdr> {
        let endpoint = kmdr_store::conformance::s3_test_endpoint()?;
        let bucket = kmdr_store::conformance::s3_test_bucket();
        Some(Kmdr {
            repo: format!("s3://{bucket}/{}", kmdr_store::conformance::unique_prefix(name)),
            key_file: dir.join("kmdr.key"),
            extra_env: vec![("AWS_ENDPOINT_URL".into(), endpoint)],
        })
    }

    /// The repository's store, local or S3, as the test process reaches it:
    /// raw objects, for what an attacker with the store's credentials does.
    pub fn store(&self) -> std::sync::Arc<dyn kmdr_store::Store> {
        let endpoint = self.extra_env.iter().find(|(k, _)| k == "AWS_ENDPOINT_URL").map(|(_, v)| v.clone());
        kmdr_store::open(&self.repo, &kmdr_store::S3Options { endpoint, ..Default::default() }).unwrap()
    }

    /// The repository, opened with the key file, for checks kmdr's output does not show.
    pub async fn open_repo(&self) -> kmdr_repo::Repository {
        let store = self.store();
        let secret = kmdr_repo::crypto::secret_from_file_content(&std::fs::read(&self.key_file).unwrap()).to_vec();
        kmdr_repo::Repository::open(store, &secret, "test").await.unwrap()
    }

    /// Re-seal backup `id`'s manifest with the key after `change` (a
    /// manifest that lies about its content: its bytes all check out).
    pub async fn reseal_manifest(
        &self,
        id: &str,
        change: impl FnOnce(&mut kmdr_core::Manifest),
    ) -> kmdr_core::Manifest {
        let repo = self.open_repo().await;
        let id: kmdr_core::BackupId = id.parse().unwrap();
        let mut m = repo.load_manifest(&id).await.unwrap();
        change(&mut m);
        let key = kmdr_repo::repository::manifest_key(&id);
        let sealed =
            repo.key().seal(kmdr_repo::crypto::ObjectKind::Manifest, &key, &serde_json::to_vec(&m).unwrap(), 3);
        repo.store().put(&key, sealed.into()).await.unwrap();
        m
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
