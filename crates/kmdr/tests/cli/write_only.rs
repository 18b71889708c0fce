//! Write-only agent keys (repository format 2) and `repo upgrade`, against a
//! real etcd: the agent backs up and deduplicates, reads nothing (exit 4,
//! nothing written), and the full key restores what the agent wrote.

use crate::common::{self, Etcd, Kmdr};
use sha2::Digest;
use std::path::Path;

/// `k` with another key file.
fn with_key(k: &Kmdr, key: &Path) -> Kmdr {
    Kmdr { repo: k.repo.clone(), key_file: key.to_path_buf(), extra_env: k.extra_env.clone() }
}

fn sha256(path: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// Object version byte of every sealed object under `dir` of the repository.
fn object_versions(k: &Kmdr, dir: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![Path::new(&k.repo).join(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(std::fs::read(e.path()).unwrap()[4]);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_only_key_backs_up_and_reads_nothing() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    write_only_agent(Kmdr::local(dir.path()), dir.path(), true).await;
}

/// The same on the S3 server scripts/test.sh starts.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_only_key_backs_up_and_reads_nothing_on_s3() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let Some(admin) = Kmdr::s3(dir.path(), "write-only") else { return };
    write_only_agent(admin, dir.path(), false).await;
}

/// `local`: the repository is a directory, whose files the test can read.
async fn write_only_agent(admin: Kmdr, dir: &Path, local: bool) {
    let etcd = Etcd::start(dir, "src");
    etcd.load("/k/", 4_000, 1024, 3).await;
    admin.init();
    let old = admin.json(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    let old_id = old["id"].as_str().unwrap().to_string();

    let agent_key = dir.join("agent.key");
    let added = admin.json(&["key", "add", "--write-only", "--out", agent_key.to_str().unwrap()]);
    assert_eq!(added["access"], "write-only");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&agent_key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    admin.fails(&["key", "add", "--out", agent_key.to_str().unwrap()], 2); // never overwrites
    let keys = admin.json(&["key", "list"]);
    let access: Vec<_> = keys.as_array().unwrap().iter().map(|k| k["access"].as_str().unwrap().to_string()).collect();
    assert_eq!(access, ["full", "write-only"]);

    // The agent backs up: same chunk ids, so an unchanged etcd adds almost nothing.
    let agent = with_key(&admin, &agent_key);
    let new = agent.json(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    let new_id = new["id"].as_str().unwrap().to_string();
    let (bytes, added) = (new["stats"]["bytes"].as_u64().unwrap(), new["stats"]["new_stored_bytes"].as_u64().unwrap());
    // (etcd rewrites a few pages of its file between snapshots: a few chunks are new.)
    assert!(added * 3 < bytes, "the agent's backup of an unchanged etcd stored {added} of {bytes} bytes");
    if local {
        assert!(object_versions(&agent, "data").contains(&2), "the agent seals format-2 objects");
    }
    let listed = agent.ok(&["backups", "list"]);
    assert!(listed.contains(&old_id) && listed.contains(&new_id), "{listed}");

    // ...and reads nothing, old or new: exit 4, one line, nothing written anywhere.
    let before = if local { agent.fingerprint() } else { Vec::new() };
    let out = dir.join("out.db");
    for id in [&old_id, &new_id] {
        let err = agent.fails(&["restore", "etcd", id, "--to-file", out.to_str().unwrap()], 4);
        assert!(err.contains("write-only") && err.contains("full key"), "{err}");
        assert!(!out.exists());
    }
    for args in [
        &["verify"][..],
        &["backups", "show", &new_id],
        &["inspect", "latest"],
        &["forget", "--keep-last", "1"],
        &["key", "add", "--out", dir.join("k2").to_str().unwrap()],
    ] {
        let err = agent.fails(args, 4);
        assert!(err.contains("write-only"), "{args:?}: {err}");
    }
    assert!(!dir.join("k2").exists());
    if local {
        assert_eq!(agent.fingerprint(), before, "a refused read changed the repository");
    }
    assert_eq!(agent.json(&["backups", "list"]).as_array().unwrap().len(), 2, "nothing was forgotten");

    // The full key restores the agent's backup, byte for byte what the manifest says.
    admin.ok(&["restore", "etcd", &new_id, "--to-file", out.to_str().unwrap()]);
    assert_eq!(sha256(&out), new["files"][0]["sha256"].as_str().unwrap());
    admin.ok(&["verify"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_format_1_repository_upgrades_and_keeps_every_backup() {
    need_etcd!();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), "src");
    etcd.load("/k/", 2_000, 1024, 3).await;
    let k = Kmdr::local(dir.path());
    k.ok(&["repo", "init", "--format", "1"]);
    let old = k.json(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    let old_id = old["id"].as_str().unwrap().to_string();
    let agent_key = dir.path().join("agent.key");
    let err = k.fails(&["key", "add", "--write-only", "--out", agent_key.to_str().unwrap()], 3);
    assert!(err.contains("repo upgrade"), "{err}");
    assert!(!agent_key.exists());

    let before = k.fingerprint();
    let plan = k.json(&["repo", "upgrade", "--dry-run"]);
    assert_eq!(plan["plan"]["from_format"], 1);
    assert_eq!(k.fingerprint(), before, "--dry-run changed the repository");

    k.ok(&["repo", "upgrade"]);
    assert_eq!(k.json(&["repo", "info"])["config"]["format"], 2);
    k.fails(&["repo", "upgrade"], 3);
    k.ok(&["key", "add", "--write-only", "--out", agent_key.to_str().unwrap()]);
    let agent = with_key(&k, &agent_key);
    etcd.client().await.put("/k/after-upgrade", "x", None).await.unwrap();
    let new = agent.json(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    let versions = object_versions(&k, "data");
    assert!(versions.contains(&1) && versions.contains(&2), "old chunks stay version 1, new ones are 2: {versions:?}");

    // The same key file reads both generations.
    for m in [&old, &new] {
        let out = dir.path().join(format!("{}.db", m["id"].as_str().unwrap()));
        k.ok(&["restore", "etcd", m["id"].as_str().unwrap(), "--to-file", out.to_str().unwrap()]);
        assert_eq!(sha256(&out), m["files"][0]["sha256"].as_str().unwrap());
    }
    let report = k.json(&["verify"]);
    let backups = report["backups"].as_array().unwrap();
    assert!(backups.len() == 2 && backups.iter().all(|b| b["ok"] == true), "{report}");
    assert!(k.ok(&["backups", "list"]).contains(&old_id));
}
