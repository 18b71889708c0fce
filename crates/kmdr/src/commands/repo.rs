//! `kmdr repo init|info|unlock`.

use crate::cli::{GlobalArgs, InitArgs, RepoCommand, UnlockArgs};
use crate::output::{self, Format};
use anyhow::Result;
use kmdr_core::human_bytes;
use kmdr_repo::chunker::ChunkerParams;
use kmdr_repo::{Error as RepoError, Repository};
use serde_json::json;
use std::io::Write;

pub async fn run(g: &GlobalArgs, c: RepoCommand) -> Result<i32> {
    match c {
        RepoCommand::Init(a) => init(g, a).await,
        RepoCommand::Info => info(g).await,
        RepoCommand::Unlock(a) => unlock(g, a).await,
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
    let created = ensure_key_file(&key_path)?;
    let (secret, _) = g.secret()?;
    let repo = Repository::init(store, &secret, params).await?;
    if g.format == Format::Json {
        output::json(
            &json!({"repository": repo.location(), "id": repo.config().id, "key_file": key_path, "key_file_created": created}),
        );
    } else {
        println!("created kmdr repository {} at {}", repo.config().id, repo.location());
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
