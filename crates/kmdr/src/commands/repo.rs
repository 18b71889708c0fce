//! `kmdr repo init|info|unlock|extend-locks` (`upgrade` is with the keys, in key.rs).

use crate::cli::{ExtendLocksArgs, GlobalArgs, InitArgs, RepoCommand, UnlockArgs};
use crate::commands::UsageError;
use crate::output::{self, Format};
use anyhow::Result;
use kmdr_core::human_bytes;
use kmdr_repo::chunker::ChunkerParams;
use kmdr_repo::object_lock::ObjectLockConfig;
use kmdr_repo::{Error as RepoError, Repository};
use kmdr_store::LockMode;
use serde_json::json;
use std::io::Write;

pub async fn run(g: &GlobalArgs, c: RepoCommand) -> Result<i32> {
    match c {
        RepoCommand::Init(a) => init(g, a).await,
        RepoCommand::Info => info(g).await,
        RepoCommand::ExtendLocks(a) => extend_locks(g, a).await,
        RepoCommand::Unlock(a) => unlock(g, a).await,
        RepoCommand::Upgrade(a) => super::key::upgrade(g, a).await,
    }
}

/// Create the key file with a fresh secret if it does not exist (mode 0600).
fn ensure_key_file(path: &std::path::Path) -> Result<bool, RepoError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| RepoError::KeyFile { path: path.to_path_buf(), source };
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut f) => {
            f.write_all(kmdr_repo::crypto::generate_secret().as_bytes()).map_err(err)?;
            f.sync_all().map_err(err)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(err(e)),
    }
}

async fn init(g: &GlobalArgs, a: InitArgs) -> Result<i32> {
    let store = g.store()?;
    let key_path = g.key_file.clone().ok_or(RepoError::NoKey)?;
    if store.exists("config").await? {
        return Err(RepoError::AlreadyInitialized { location: store.location() }.into());
    }
    let avg = a.chunk_avg_kib * 1024;
    let params = ChunkerParams { min_size: avg / 4, avg_size: avg, max_size: avg * 4, ..Default::default() };
    // Before anything is written: the bucket must be ready for Object Lock.
    let lock = match object_lock_asked(&a)? {
        Some(want) => {
            if store.object_lock().is_none() {
                return Err(UsageError(format!(
                    "Object Lock is an S3 feature and {} is a local directory: drop --object-lock, or use a bucket (s3://BUCKET/PREFIX) created with Object Lock",
                    store.location()
                ))
                .into());
            }
            Some(kmdr_repo::object_lock::prepare_bucket(store.as_ref(), want).await?)
        }
        None => None,
    };
    let created = ensure_key_file(&key_path)?;
    let (secret, _) = g.secret()?;
    let opts = kmdr_repo::repository::InitOptions {
        chunker: params,
        object_lock: lock.as_ref().map(|p| p.config),
        format: a.repo_format,
    };
    let repo = Repository::init_with(store, &secret, opts).await?;
    if g.format == Format::Json {
        output::json(
            &json!({"repository": repo.location(), "id": repo.config().id, "key_file": key_path, "key_file_created": created,
                "object_lock": repo.config().object_lock, "bucket_default_retention_set": lock.as_ref().map(|p| p.set_default)}),
        );
    } else {
        println!("created kmdr repository {} at {}", repo.config().id, repo.location());
        if let Some(p) = &lock {
            println!(
                "under S3 Object Lock: every object kmdr writes is retained {} days in {} mode ({}); run `kmdr repo extend-locks` at least every {} days (kmdr serve does)",
                p.config.retention_days,
                p.config.mode,
                if p.set_default {
                    "the bucket's default retention, set now"
                } else {
                    "the bucket's own default retention"
                },
                (p.config.retention_days / 4).max(1)
            );
        }
        if created {
            println!(
                "wrote a new key to {} (mode 0600): keep a copy apart from the repository; without it no backup can be read",
                key_path.display()
            );
        } else {
            println!("protected by the key in {}", key_path.display());
        }
    }
    Ok(0)
}

/// `--object-lock MODE --retention D` as the config records it; a period
/// that is not whole days is a usage error (S3's default retention counts days).
fn object_lock_asked(a: &InitArgs) -> Result<Option<ObjectLockConfig>> {
    let (Some(mode), Some(retention)) = (&a.object_lock, a.retention) else { return Ok(None) };
    let mode = if mode == "compliance" { LockMode::Compliance } else { LockMode::Governance };
    let secs = retention.as_secs();
    if secs == 0 || secs % 86400 != 0 || retention.subsec_nanos() != 0 {
        return Err(UsageError(format!(
            "--retention {} is not a whole number of days: S3 counts a bucket's default retention in days, write e.g. 30d or 720h",
            kmdr_core::human_duration(retention)
        ))
        .into());
    }
    let days = u32::try_from(secs / 86400).map_err(|_| UsageError("--retention is too long".into()))?;
    Ok(Some(ObjectLockConfig { mode, retention_days: days }))
}

/// `kmdr repo extend-locks [--dry-run]`.
async fn extend_locks(g: &GlobalArgs, a: ExtendLocksArgs) -> Result<i32> {
    let repo = g.open_repo_to_read("the backups to know what they still need").await?;
    let progress = super::prefixed_notifier(g, "extend-locks: ");
    let r = kmdr_repo::object_lock::extend::extend_locks(&repo, a.dry_run, &progress).await?;
    drop(progress); // the spinner, on a terminal, goes before the summary
    if g.format == Format::Json {
        output::json(&r);
        return Ok(0);
    }
    let date = |d: chrono::DateTime<chrono::Utc>| d.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    println!(
        "{} the retention of {} of {} objects still needed to {} (those retained until before {}){}",
        if a.dry_run { "would extend" } else { "extended" },
        r.extended.len(),
        r.checked,
        date(r.until),
        date(r.threshold),
        if r.lapsed > 0 { format!("; {} of them had lapsed or had none", r.lapsed) } else { String::new() }
    );
    if a.dry_run {
        for e in &r.extended {
            println!("  {}  {}", e.object, e.from.map(date).unwrap_or_else(|| "no retention".into()));
        }
    }
    if !r.missing.is_empty() {
        println!("{} needed objects are missing (run `kmdr verify`), e.g. {}", r.missing.len(), r.missing[0]);
    }
    Ok(0)
}

async fn info(g: &GlobalArgs) -> Result<i32> {
    let repo = g.open_repo().await?;
    let data = repo.store().list("data/").await?;
    let stored: u64 = data.iter().map(|o| o.size).sum();
    let backups = repo.list_backups().await?;
    let locks = kmdr_repo::lock::list_locks(repo.store()).await?;
    let c = repo.config();
    if g.format == Format::Json {
        output::json(&json!({
            "repository": repo.location(), "config": c, "backups": backups.len(),
            "chunks": data.len(), "stored_bytes": stored, "locks": locks.iter().map(|(_, l)| l).collect::<Vec<_>>(),
        }));
    } else {
        println!("repository  {}", repo.location());
        println!("id          {}", c.id);
        println!("format      {}", c.format);
        println!("created     {}", c.created.format("%Y-%m-%d %H:%M:%SZ"));
        println!(
            "chunker     {} min {} avg {} max {}",
            c.chunker.algorithm,
            human_bytes(c.chunker.min_size as u64),
            human_bytes(c.chunker.avg_size as u64),
            human_bytes(c.chunker.max_size as u64)
        );
        println!("crypto      {} / {} / {}", c.cipher, c.chunk_id, c.compression);
        if let Some(l) = &c.object_lock {
            println!("object lock {} mode, {} days (S3 default retention)", l.mode, l.retention_days);
        }
        println!("backups     {}", backups.len());
        println!("stored      {} in {} chunks", human_bytes(stored), data.len());
        for (_, l) in &locks {
            println!(
                "lock        {} by pid {} on {} since {}",
                l.command,
                l.pid,
                l.hostname,
                l.created.format("%Y-%m-%d %H:%M:%SZ")
            );
        }
    }
    Ok(0)
}

async fn unlock(g: &GlobalArgs, a: UnlockArgs) -> Result<i32> {
    let repo = g.open_repo().await?;
    let removed = kmdr_repo::lock::unlock(repo.store(), a.all).await?;
    if g.format == Format::Json {
        output::json(&json!({"removed": removed}));
    } else if removed.is_empty() {
        println!("no stale locks");
    } else {
        for l in removed {
            println!("removed lock of `{}` (pid {} on {})", l.command, l.pid, l.hostname);
        }
    }
    Ok(0)
}
