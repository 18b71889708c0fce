//! The scripted fake Kubernetes API (scripts/fake-kube-api.py) for tests:
//! started with fixtures, read back through its request log. The fixture
//! format is documented at the top of the script.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/fake-kube-api.py");

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Request {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: Value,
    pub content_type: String,
    pub body: Value,
}

/// The fake API server, stopped when dropped.
pub struct FakeKube {
    child: Child,
    pub url: String,
    port: u16,
}

impl FakeKube {
    /// The fake with its built-in Helm fixtures only.
    pub fn start() -> FakeKube {
        FakeKube::spawn(&[])
    }

    /// The fake with only `fixtures` (a fixtures document: objects,
    /// resources, rules), without the built-in Helm release.
    pub fn with_fixtures(dir: &Path, fixtures: &Value) -> FakeKube {
        let path = dir.join("fake-kube-fixtures.json");
        std::fs::write(&path, serde_json::to_vec_pretty(fixtures).unwrap()).unwrap();
        FakeKube::spawn(&["--bare".into(), "--fixtures".into(), path.display().to_string()])
    }

    fn spawn(args: &[String]) -> FakeKube {
        let mut child = Command::new("python3")
            .arg(SCRIPT)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 scripts/fake-kube-api.py");
        // The script prints "PORT N" once it listens.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port: u16 = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("fake API said {line:?}"));
        FakeKube { child, url: format!("http://127.0.0.1:{port}"), port }
    }

    /// A plain HTTP/1.1 exchange with the fake (Connection: close).
    pub fn http(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let payload = body.map(|b| serde_json::to_vec(b).unwrap()).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            payload.len()
        )
        .unwrap();
        s.write_all(&payload).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// The request log, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        let (_, log) = self.http("GET", "/_fake/requests", None);
        log.as_array()
            .unwrap()
            .iter()
            .map(|r| Request {
                seq: r["seq"].as_u64().unwrap(),
                method: r["method"].as_str().unwrap().into(),
                path: r["path"].as_str().unwrap().into(),
                query: r["query"].clone(),
                content_type: r["contentType"].as_str().unwrap_or("").into(),
                body: r["body"].clone(),
            })
            .collect()
    }

    /// The requests that change state (POST, PUT, PATCH, DELETE).
    pub fn writes(&self) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.method != "GET").collect()
    }

    /// Every stored object.
    pub fn objects(&self) -> Vec<Value> {
        self.http("GET", "/_fake/objects", None).1.as_array().unwrap().clone()
    }

    /// One stored object by kind, namespace ("" when cluster-scoped) and name.
    pub fn object(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        self.objects().into_iter().find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"] == name
                && o["metadata"]["namespace"].as_str().unwrap_or("") == namespace
        })
    }

    /// A kubeconfig with context `fake` (current, this fake) and `dead`
    /// (nothing listens there).
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {url}
- name: dead
  cluster:
    server: http://127.0.0.1:1
contexts:
- name: fake
  context: {{cluster: fake, user: tester}}
- name: dead
  context: {{cluster: dead, user: tester}}
current-context: fake
users:
- name: tester
  user: {{token: not-a-real-token}}
",
                url = self.url
            ),
        )
        .unwrap();
        path
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
