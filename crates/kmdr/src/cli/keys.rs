//! `kmdr key ...` and `kmdr repo upgrade`: the key files that open a repository.

use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new key file that opens this repository: full, or write-only for agents (--write-only)
    #[command(long_about = "Write a new key file (a random secret, mode 0600) and store the repository's key wrapped \
under it, so that the new file opens the repository too. Needs the repository's full key in --key-file.\n\n\
--write-only makes a key for backup agents (kmdr serve in the cluster, CronJobs): it can take backups, deduplicate, \
capture deltas and store drill reports, and cannot decrypt anything, old or new. restore, verify, inspect and \
`backups show` refuse it with exit 4. Whoever steals it from a compromised cluster reads no backup. Keep the full \
key offline, with the operators. Write-only keys need repository format 2 (`kmdr repo upgrade` moves a format-1 \
repository).\n\n\
Examples:\n  kmdr key add --write-only --out agent.key\n  \
kubectl -n kmdr create secret generic kmdr-key --from-file=key=agent.key\n  kmdr key add --out second-admin.key")]
    Add(KeyAddArgs),
    /// List the key objects of the repository (full or write-only, when and where each was made)
    List,
}

#[derive(Debug, Args)]
pub struct KeyAddArgs {
    /// The new key file to write (refused if it exists)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// A key that can back up but not read (for agents)
    #[arg(long)]
    pub write_only: bool,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// Print what the upgrade would do; change nothing
    #[arg(long)]
    pub dry_run: bool,
}
