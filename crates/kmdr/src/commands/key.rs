//! `kmdr key add|list` and `kmdr repo upgrade`.

use crate::cli::{GlobalArgs, KeyAddArgs, KeyCommand, UpgradeArgs};
use crate::commands::UsageError;
use crate::output::{self, Format};
use anyhow::Result;
use kmdr_repo::Error as RepoError;
use kmdr_repo::crypto::Access;
use serde_json::json;
use std::io::Write;

pub async fn run(g: &GlobalArgs, c: KeyCommand) -> Result<i32> {
    match c {
        KeyCommand::Add(a) => add(g, a).await,
        KeyCommand::List => list(g).await,
    }
}

async fn add(g: &GlobalArgs, a: KeyAddArgs) -> Result<i32> {
    if a.out.exists() {
        return Err(UsageError(format!(
            "{} already exists: name a new file with --out (an existing key file is never overwritten)",
            a.out.display()
        ))
        .into());
    }
    let repo = g.open_repo().await?;
    let access = if a.write_only { Access::WriteOnly } else { Access::Full };
    // Refused before the file is written: a write-only key, or format 1 for a write-only one.
    repo.key_to_add(access)?;
    // The file first (create_new, 0600), the key object second: a failure
    // leaves at most an unused file, never a key object nobody holds.
    let secret = kmdr_repo::crypto::generate_secret();
    write_new_key_file(&a.out, &secret)?;
    let object = match repo.add_key(kmdr_repo::crypto::secret_from_file_content(secret.as_bytes()), access).await {
        Ok(o) => o,
        Err(e) => {
            let _ = std::fs::remove_file(&a.out);
            return Err(e.into());
        }
    };
    if g.format == Format::Json {
        output::json(&json!({"key_file": a.out, "key_object": object, "access": access}));
    } else {
        println!("wrote a {access} key to {} (mode 0600), stored as {object}", a.out.display());
        if access == Access::WriteOnly {
            println!(
                "it can back up but not read: give it to agents (kmdr serve, CronJobs); keep the full key offline for restores"
            );
        }
    }
    Ok(0)
}

fn write_new_key_file(path: &std::path::Path, secret: &str) -> Result<(), RepoError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| RepoError::KeyFile { path: path.to_path_buf(), source };
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(err)?;
    f.write_all(secret.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)
}

async fn list(g: &GlobalArgs) -> Result<i32> {
    let repo = g.open_repo().await?;
    let keys = repo.list_keys().await?;
    if g.format == Format::Json {
        output::json(&keys);
        return Ok(0);
    }
    println!("{:<22}  {:<10}  {:<6}  {:<20}  HOST", "KEY", "ACCESS", "FORMAT", "CREATED");
    for k in keys {
        println!(
            "{:<22}  {:<10}  {:<6}  {:<20}  {}{}",
            k.object,
            k.access.to_string(),
            k.format,
            k.created.format("%Y-%m-%d %H:%M:%SZ").to_string(),
            k.hostname,
            if k.current { "  (this key file)" } else { "" }
        );
    }
    Ok(0)
}

/// `kmdr repo upgrade [--dry-run]`.
pub async fn upgrade(g: &GlobalArgs, a: UpgradeArgs) -> Result<i32> {
    let repo = g.open_repo().await?;
    let plan = if a.dry_run {
        repo.plan_upgrade().await?
    } else {
        let (secret, _) = g.secret()?;
        repo.upgrade(&secret).await?
    };
    if g.format == Format::Json {
        output::json(&json!({"dry_run": a.dry_run, "plan": plan}));
        return Ok(0);
    }
    let verb = |done: &str, would: &str| if a.dry_run { would.to_string() } else { done.to_string() };
    println!(
        "{} {} from format {} to {}: every backup is kept, new objects are sealed to a recipient key",
        verb("upgraded", "would upgrade"),
        repo.location(),
        plan.from_format,
        plan.to_format
    );
    println!(
        "  {} {}: a format-2 key under the same secret",
        verb("wrote", "would write"),
        plan.new_key_object.as_deref().unwrap_or("a new key object")
    );
    println!("  {} config: format 2", verb("rewrote", "would rewrite"));
    match (a.dry_run, plan.old_key_deleted) {
        (true, _) => println!("  would delete {}, the format-1 key it replaces", plan.old_key_object),
        (false, true) => println!("  deleted {}, the format-1 key it replaced", plan.old_key_object),
        (false, false) => println!(
            "  kept {} (the store refused to delete it, e.g. Object Lock): it opens the older objects only",
            plan.old_key_object
        ),
    }
    if !plan.other_keys.is_empty() {
        println!(
            "  {} other key file(s) ({}) still open only the format-1 objects: give their users a new key with `kmdr key add`",
            plan.other_keys.len(),
            plan.other_keys.join(", ")
        );
    }
    Ok(0)
}
