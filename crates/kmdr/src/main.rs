//! `kmdr`: disaster recovery for kMetal platforms, one binary. This file
//! parses the command line, runs the command and turns failures into one line
//! on stderr and a documented exit code.

mod cli;
mod commands;
mod exit;
mod output;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let filter = match cli.global.verbose {
        // A service logs what it does: each backup, segment trouble, retention.
        0 if matches!(cli.command, cli::Command::Serve(_)) => "warn,kmdr_serve=info",
        0 => "warn",
        1 => "info,kmdr=debug",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("KMDR_LOG").unwrap_or_else(|_| filter.into()))
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a pod's log or a file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let code = match rt.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", exit::one_line(&e));
            exit::code_for(&e)
        }
    };
    // Do not wait for background tasks (lock refreshers) at exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}
