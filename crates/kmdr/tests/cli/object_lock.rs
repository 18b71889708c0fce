//! S3 Object Lock and least-privilege credentials (issue 15, parts 1 and 4),
//! against moto: it keeps versions, gives every PUT the bucket's default
//! retention, refuses a DELETE `?versionId=` of a retained version, and,
//! started with IAM users, enforces their policies.
//!
//! The retention periods S3 accepts are whole days, and no test waits a day:
//! to stand in for the clock, [`time_passes`] moves every version's
//! retain-until date to a minute ago with PutObjectRetention. S3 itself would
//! refuse that (a date in the past, and any shortening in compliance mode);
//! moto does not, and that is the only liberty the tests take: everything
//! else (what S3 retains, refuses and deletes) is the server's own doing.

use crate::common;
use crate::serve::{Serve, T1_CAPTURING, write_plan_for};
use chrono::{Duration, Utc};
use common::{Etcd, Kmdr};
use kmdr_store::object_lock::{DefaultRetention, ObjectVersion};
use kmdr_store::{LockMode, ObjectLock, S3Options, S3Store, Store, StoreError};
use serde_json::Value;
use std::collections::BTreeSet;

/// A fresh bucket on the shared moto.
fn new_bucket(endpoint: &str, object_lock: bool, versioning: bool) -> String {
    let name = format!("lock-{:012x}", rand::random::<u64>() >> 16);
    kmdr_testkit::create_bucket(endpoint, &name, object_lock, versioning);
    name
}

/// The repository at `s3://bucket/repo` with the shared moto's credentials.
fn kmdr(dir: &std::path::Path, endpoint: &str, bucket: &str) -> Kmdr {
    Kmdr {
        repo: format!("s3://{bucket}/repo"),
        key_file: dir.join("k.key"),
        extra_env: vec![("AWS_ENDPOINT_URL".into(), endpoint.into())],
    }
}

/// The store under `s3://bucket/repo`, for looking behind kmdr's back.
fn store(endpoint: &str, bucket: &str, credentials: Option<(String, String)>) -> S3Store {
    S3Store::new(bucket, "repo", &S3Options { endpoint: Some(endpoint.into()), credentials, ..Default::default() })
        .unwrap()
}

/// Every version of every object but the locks', with its retain-until date.
async fn versions(api: &dyn ObjectLock) -> Vec<(ObjectVersion, Option<chrono::DateTime<Utc>>)> {
    let mut out = Vec::new();
    for v in api.list_versions("").await.unwrap() {
        if v.key.starts_with("locks/") {
            continue;
        }
        let until = if v.delete_marker {
            None
        } else {
            api.head(&v.key, Some(&v.version_id)).await.unwrap().and_then(|r| r.until)
        };
        out.push((v, until));
    }
    out
}

/// The retention period passes: every version's date is moved to a minute
/// ago (what S3 would never allow; see the module doc).
async fn time_passes(api: &dyn ObjectLock, mode: LockMode) {
    let past = Utc::now() - Duration::minutes(1);
    for v in api.list_versions("").await.unwrap().into_iter().filter(|v| !v.delete_marker) {
        api.put_retention(&v.key, &v.version_id, mode, past).await.unwrap();
    }
}

fn restore_bytes(k: &Kmdr, id: &str, file: &std::path::Path) -> Vec<u8> {
    let _ = std::fs::remove_file(file);
    k.ok(&["restore", "etcd", id, "--to-file", file.to_str().unwrap()]);
    std::fs::read(file).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_repository_keeps_every_object_until_its_retention_passes() {
    need_etcd!();
    let Some(endpoint) = kmdr_store::conformance::s3_test_endpoint() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bucket = new_bucket(&endpoint, true, false);
    let k = kmdr(dir.path(), &endpoint, &bucket);
    let s = store(&endpoint, &bucket, None);
    let api = s.object_lock().unwrap();
    let started = Utc::now();

    let init = k.json(&["repo", "init", "--object-lock", "governance", "--retention", "24h"]);
    assert_eq!(init["object_lock"], serde_json::json!({"mode": "governance", "retention_days": 1}), "{init}");
    assert_eq!(init["bucket_default_retention_set"], true);
    let bucket_lock = api.bucket_lock().await.unwrap();
    assert_eq!(bucket_lock.default, Some(DefaultRetention { mode: LockMode::Governance, days: 1 }));
    assert!(k.ok(&["repo", "info"]).contains("object lock governance mode, 1 days"));

    let etcd = Etcd::start(dir.path(), "src");
    etcd.load("/a/", 3000, 256, 1).await;
    let first = k.json(&["backup", "etcd", "--endpoints", &etcd.client_url])["id"].as_str().unwrap().to_string();
    etcd.load("/b/", 3000, 256, 2).await;
    let second = k.json(&["backup", "etcd", "--endpoints", &etcd.client_url])["id"].as_str().unwrap().to_string();

    // Every version written (config, key, chunks, manifests) is retained for the period, by S3 itself.
    let written = versions(api).await;
    assert!(written.iter().any(|(v, _)| v.key.starts_with("data/")) && written.len() > 4, "{written:?}");
    for (v, until) in &written {
        let until = until.unwrap_or_else(|| panic!("{} has no retention", v.key));
        assert!(until >= started + Duration::days(1) - Duration::seconds(2), "{}: {until}", v.key);
    }
    // S3 refuses to delete a retained version.
    let (chunk, _) = written.iter().find(|(v, _)| v.key.starts_with("data/")).unwrap();
    let refused = api.delete_version(&chunk.key, &chunk.version_id).await.unwrap_err();
    assert!(matches!(refused, StoreError::Retained { .. }), "{refused:?}");

    let newest = restore_bytes(&k, &second, &dir.path().join("before.db"));
    // The dry run shows what would be held back, and exits 0.
    let dry = k.json(&["forget", "--keep-last", "1", "--prune", "--dry-run"]);
    assert_eq!(dry["held_back"]["backups"][0]["object"], first.as_str(), "{dry}");
    assert_eq!(dry["remove"], serde_json::json!([]));
    // The real run keeps the locked backup whole, says until when, and exits 13.
    let err = k.fails(&["forget", "--keep-last", "1", "--prune", "-q"], 13);
    assert!(err.contains("under Object Lock retention") && err.contains("run it again after that date"), "{err}");
    let text = k.run(&["forget", "--keep-last", "1", "--prune"]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        text.contains(&format!("held   {first}")) && text.contains("held back under Object Lock: 1 backups"),
        "{text}"
    );
    assert_eq!(k.json(&["backups", "list"]).as_array().unwrap().len(), 2);
    let after: BTreeSet<_> = versions(api).await.into_iter().map(|(v, _)| (v.key, v.version_id)).collect();
    let before: BTreeSet<_> = written.iter().map(|(v, _)| (v.key.clone(), v.version_id.clone())).collect();
    assert_eq!(after, before, "nothing was deleted, no delete marker added");
    k.ok(&["verify"]);
    assert_eq!(restore_bytes(&k, &second, &dir.path().join("held.db")), newest);

    // The period passes. Verify names what the backups need and S3 no longer retains.
    time_passes(api, LockMode::Governance).await;
    let v = k.run(&["verify"]);
    let out = String::from_utf8_lossy(&v.stdout);
    assert_eq!(v.status.code(), Some(1), "{out}");
    assert!(out.contains("UNRETAINED data/") && out.contains("retention lapsed at"), "{out}");
    assert!(out.contains(&format!("UNRETAINED backups/{second}")), "{out}");

    // forget --prune now deletes for real: every version, no delete marker.
    let f = k.json(&["forget", "--keep-last", "1", "--prune"]);
    assert_eq!(f["remove"], serde_json::json!([first]), "{f}");
    let pruned: Vec<String> =
        f["prune"]["delete"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    assert!(!pruned.is_empty(), "the first backup had chunks of its own: {f}");
    let left: BTreeSet<String> = api.list_versions("").await.unwrap().into_iter().map(|v| v.key).collect();
    assert!(!left.contains(&format!("backups/{first}")), "{left:?}");
    for c in &pruned {
        assert!(!left.contains(c), "{c} still has a version or a delete marker");
    }
    assert_eq!(k.json(&["backups", "list"]).as_array().unwrap().len(), 1);

    // extend-locks: the dry run lists and changes nothing; the real run locks what is needed again.
    let dry = k.json(&["repo", "extend-locks", "--dry-run"]);
    let needed = dry["extended"].as_array().unwrap().len();
    assert!(needed > 2 && dry["lapsed"].as_u64() == Some(needed as u64), "{dry}");
    assert!(api.head("config", None).await.unwrap().unwrap().until.unwrap() < Utc::now());
    let e = k.json(&["repo", "extend-locks"]);
    assert_eq!(e["extended"].as_array().unwrap().len(), needed, "{e}");
    let config = api.head("config", None).await.unwrap().unwrap();
    assert!(config.until.unwrap() > Utc::now() + Duration::hours(23), "{config:?}");
    assert_eq!(config.mode, Some(LockMode::Governance));
    assert_eq!(k.json(&["repo", "extend-locks"])["extended"], serde_json::json!([]), "nothing left to extend");
    let clean = k.json(&["verify"]);
    assert_eq!(clean["retention"]["problems"], serde_json::json!([]), "{clean}");
    assert_eq!(restore_bytes(&k, &second, &dir.path().join("after.db")), newest);
}

#[tokio::test(flavor = "multi_thread")]
async fn init_refuses_a_bucket_without_object_lock_and_a_local_repository() {
    let Some(endpoint) = kmdr_store::conformance::s3_test_endpoint() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A local repository: Object Lock is an S3 feature.
    let local = Kmdr::local(dir.path());
    let err = local.fails(&["repo", "init", "--object-lock", "compliance", "--retention", "30d"], 2);
    assert!(err.contains("Object Lock is an S3 feature"), "{err}");
    assert!(!std::path::Path::new(&local.repo).join("config").exists());
    // A bucket without versioning, then one with versioning only: exit 3, how to enable it, nothing written.
    for (versioning, says) in [(false, "put-bucket-versioning"), (true, "put-object-lock-configuration")] {
        let bucket = new_bucket(&endpoint, false, versioning);
        let k = kmdr(dir.path(), &endpoint, &bucket);
        let err = k.fails(&["repo", "init", "--object-lock", "compliance", "--retention", "30d"], 3);
        assert!(err.contains("--object-lock-enabled-for-bucket") && err.contains(says), "{err}");
        assert!(store(&endpoint, &bucket, None).object_lock().unwrap().list_versions("").await.unwrap().is_empty());
        assert!(!dir.path().join("k.key").exists(), "no key file either");
    }
    // Not whole days: a usage error.
    let bucket = new_bucket(&endpoint, true, false);
    let k = kmdr(dir.path(), &endpoint, &bucket);
    let err = k.fails(&["repo", "init", "--object-lock", "governance", "--retention", "36h"], 2);
    assert!(err.contains("whole number of days"), "{err}");
    // A bucket whose default retention is another mode, or shorter: refused; a longer one of the same mode: kept.
    let s = store(&endpoint, &bucket, None);
    let api = s.object_lock().unwrap();
    api.set_default_retention(DefaultRetention { mode: LockMode::Compliance, days: 7 }).await.unwrap();
    let err = k.fails(&["repo", "init", "--object-lock", "governance", "--retention", "7d"], 3);
    assert!(err.contains("already has a default retention of compliance 7 days"), "{err}");
    let err = k.fails(&["repo", "init", "--object-lock", "compliance", "--retention", "30d"], 3);
    assert!(err.contains("--retention 7d") || err.contains("not the compliance 30 days"), "{err}");
    assert!(api.list_versions("").await.unwrap().is_empty());
    let init = k.json(&["repo", "init", "--object-lock", "compliance", "--retention", "3d"]);
    assert_eq!(init["object_lock"], serde_json::json!({"mode": "compliance", "retention_days": 7}), "{init}");
    assert_eq!(init["bucket_default_retention_set"], false);
}

/// The documented policy in deploy/s3/, for the test bucket and prefix.
fn policy(file: &str, bucket: &str) -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/s3/").to_string() + file;
    let text = std::fs::read_to_string(path).unwrap().replace("BUCKET", bucket).replace("PREFIX", "repo");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn agent_credentials_back_up_and_capture_but_cannot_delete_anything() {
    need_etcd!();
    if !common::have("python3") && common::require_servers() {
        panic!("python3 (with moto) is needed for the S3 server");
    }
    let dir = tempfile::tempdir().unwrap();
    let agent = policy("agent-policy.json", "kmdr-test");
    let mut admin = policy("admin-policy.json", "kmdr-test");
    // moto checks PutObjectLockConfiguration as s3:CreateBucket (its action
    // map has no `object-lock` entry); AWS checks s3:PutBucketObjectLockConfiguration.
    admin["Statement"].as_array_mut().unwrap().push(serde_json::json!(
        {"Sid": "MotoNamesPutObjectLockConfigurationCreateBucket", "Effect": "Allow",
         "Action": "s3:CreateBucket", "Resource": "arn:aws:s3:::kmdr-test"}));
    let mut o = kmdr_testkit::S3ServerOptions::new(dir.path());
    o.object_lock = true;
    o.users = [("agent".to_string(), agent.to_string()), ("admin".to_string(), admin.to_string())].into();
    let server = match kmdr_testkit::S3Server::launch(o) {
        Err(kmdr_testkit::LaunchError::NotInstalled { .. }) if !common::require_servers() => {
            eprintln!("SKIPPED: moto is not installed (run scripts/test.sh)");
            return;
        }
        r => r.unwrap(),
    };
    let endpoint = server.endpoint();
    let as_user = |name: &str| {
        let (id, secret) = server.credentials[name].clone();
        Kmdr {
            repo: "s3://kmdr-test/repo".into(),
            key_file: dir.path().join("k.key"),
            extra_env: vec![
                ("AWS_ENDPOINT_URL".into(), endpoint.clone()),
                ("AWS_ACCESS_KEY_ID".into(), id),
                ("AWS_SECRET_ACCESS_KEY".into(), secret),
            ],
        }
    };
    let (agent, admin) = (as_user("agent"), as_user("admin"));
    let rt = crate::serve::runtime();
    let admin_store = store(&endpoint, "kmdr-test", Some(server.credentials["admin"].clone()));
    let api = admin_store.object_lock().unwrap();

    // The agent may not set up the bucket; the admin does.
    let err = agent.fails(&["repo", "init", "--object-lock", "compliance", "--retention", "1d"], 9);
    assert!(err.contains("S3 refused"), "{err}");
    admin.ok(&["repo", "init", "--object-lock", "compliance", "--retention", "1d"]);

    // The agent backs up, and serve captures deltas and checks the retention.
    let etcd = Etcd::start(dir.path(), "src");
    rt.block_on(etcd.load("/t1/seed/", 200, 64, 1));
    agent.ok(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    rt.block_on(etcd.load("/t1/more/", 200, 64, 2));
    agent.ok(&["backup", "etcd", "--endpoints", &etcd.client_url]);
    let plan = write_plan_for(dir.path(), &agent, &etcd.client_url.replace("http://", "etcd://"));
    let log = dir.path().join("serve.log");
    let serve = Serve::start(&agent, &plan, &log);
    serve.wait_for_metric(T1_CAPTURING, &log);
    rt.block_on(etcd.load("/t1/live/", 20, 16, 3));
    serve.wait_for_metric("kmdr_delta_segments_total{layer=\"tenant-control-planes\",unit=\"shared/t1\"} 1", &log);
    serve.wait_for_metric("\nkmdr_object_lock_extend_timestamp_seconds ", &log);
    serve.terminate();
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("object lock: extended the retention of 0 of"), "{log_text}");
    let listed = admin.json(&["backups", "list", "--kind", "etcd"]);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");

    // The agent's forget --prune and prune fail on the admin permission, and delete nothing.
    let listing = || -> BTreeSet<(String, String, bool)> {
        let all = rt.block_on(api.list_versions("")).unwrap();
        all.into_iter()
            .filter(|v| !v.key.starts_with("locks/"))
            .map(|v| (v.key, v.version_id, v.delete_marker))
            .collect()
    };
    let before = listing();
    for args in [&["forget", "--keep-last", "1", "--prune", "-q"][..], &["prune", "-q"][..]] {
        let err = agent.fails(args, 9);
        assert!(
            err.contains("s3:ListBucketVersions is an admin permission") && err.contains("admin-policy.json"),
            "{err}"
        );
    }
    assert_eq!(before, listing(), "no version deleted, no delete marker added");

    // With the admin's credentials it works: held back while retained, removed once not.
    admin.fails(&["forget", "--keep-last", "1", "--kind", "etcd", "--prune", "-q"], 13);
    rt.block_on(time_passes(api, LockMode::Compliance));
    let f = admin.json(&["forget", "--keep-last", "1", "--kind", "etcd", "--prune"]);
    assert_eq!(f["remove"].as_array().unwrap().len(), 1, "{f}");
    admin.json(&["repo", "extend-locks"]);
    admin.ok(&["verify"]);
}
