//! `kmdr completions SHELL` and `kmdr man --out DIR`: shell completions and
//! man pages generated from the clap definitions in `cli.rs`, so that they
//! cannot drift from the command line they describe.

use crate::cli::{Cli, CompletionsArgs, GlobalArgs, ManArgs};
use crate::output::{self, Format};
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::path::{Path, PathBuf};

/// The completion script for `a.shell` on stdout.
pub fn completions(a: CompletionsArgs) -> Result<i32> {
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "kmdr", &mut std::io::stdout());
    Ok(0)
}

/// One man page per command and subcommand into `a.out`; prints the files written.
pub fn man(g: &GlobalArgs, a: ManArgs) -> Result<i32> {
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create --out {}: pick a directory you can write", a.out.display()))?;
    let pages = write_pages(&a.out).with_context(|| {
        format!("cannot write the man pages into {}: check its permissions and free space", a.out.display())
    })?;
    if g.format == Format::Json {
        output::json(&serde_json::json!({"dir": a.out, "pages": pages}));
    } else {
        for p in &pages {
            println!("{}", p.display());
        }
        if g.chatty() {
            eprintln!(
                "wrote {} man pages into {}: read one with `man -l {}`, or put the directory on MANPATH",
                pages.len(),
                a.out.display(),
                a.out.join("kmdr.1").display()
            );
        }
    }
    Ok(0)
}

/// Every page of the command tree (as clap_mangen's `generate_to`, keeping the paths).
fn write_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn walk(cmd: clap::Command, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        let page = clap_mangen::Man::new(cmd.clone())
            .source(format!("kmdr {}", env!("CARGO_PKG_VERSION")))
            .manual("kmdr manual");
        out.push(page.generate_to(dir)?);
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            walk(sub, dir, out)?;
        }
        Ok(())
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(cmd, dir, &mut out)?;
    Ok(out)
}
