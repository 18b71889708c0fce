//! What can go wrong starting a server, said so that the reader knows what
//! failed and what to do about it.

use kmdr_core::{Classify, ErrorClass};
use std::path::PathBuf;

/// A server could not be started, or did not answer once started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A program the server needs is on neither PATH nor the usual places.
    #[error("{server} ({programs}) is not installed: install it (scripts/install-deps.sh does) or put it on PATH")]
    NotInstalled {
        /// The server, e.g. `PostgreSQL`.
        server: &'static str,
        /// The programs looked for, comma-separated.
        programs: &'static str,
    },
    /// A file or directory of the server could not be made or changed.
    #[error("cannot {what} {}", path.display())]
    Io {
        /// What was being done, e.g. `create`.
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The server's program (or a set-up tool) could not be run at all.
    #[error("cannot run {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// A set-up tool (initdb, mariadb-install-db) ran and failed.
    #[error("{tool} failed: {output}")]
    Setup {
        tool: &'static str,
        /// Its stderr (or stdout when stderr is empty), trimmed.
        output: String,
    },
    /// The server exited before it answered.
    #[error("{server} exited before it answered: see {}", log.display())]
    Exited { server: &'static str, log: PathBuf },
    /// The server exited because a port it was given is in use: a problem of
    /// this machine, not of what the server was asked to serve.
    #[error(
        "{server} could not listen: a port it was given is taken by another process (address already in use, see {}); start it again, each start picks free ports",
        log.display()
    )]
    PortTaken { server: &'static str, log: PathBuf },
    /// The server runs but did not answer in time.
    #[error("{server} did not answer within {secs}s: see {}", log.display())]
    NotReady { server: &'static str, secs: u64, log: PathBuf },
    /// PostgreSQL refuses to run as root and there is no user to run it as.
    #[error(
        "running as root and there is no `postgres` OS user to run PostgreSQL as: create one (the PostgreSQL packages do)"
    )]
    NoPostgresUser,
    /// The `postgres` OS user cannot reach the server's directory.
    #[error(
        "the postgres OS user cannot enter {} (mode {mode:o}): put PostgreSQL's directory where that user can reach it",
        dir.display()
    )]
    Unreachable { dir: PathBuf, mode: u32 },
    /// A statement the server's set-up runs was refused.
    #[error("{client} could not run {sql:?}: {output}")]
    Sql { client: &'static str, sql: String, output: String },
}

impl Classify for LaunchError {
    /// Something missing or unwritable here is `Refused` (nothing was
    /// started); a server that ran and failed is `Source`; one that never
    /// answered is `Timeout`.
    fn class(&self) -> ErrorClass {
        match self {
            LaunchError::NotInstalled { .. }
            | LaunchError::Io { .. }
            | LaunchError::Spawn { .. }
            | LaunchError::NoPostgresUser
            | LaunchError::PortTaken { .. }
            | LaunchError::Unreachable { .. } => ErrorClass::Refused,
            LaunchError::Setup { .. } | LaunchError::Exited { .. } | LaunchError::Sql { .. } => ErrorClass::Source,
            LaunchError::NotReady { .. } => ErrorClass::Timeout,
        }
    }
}

impl LaunchError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LaunchError {
        let path = path.into();
        move |source| LaunchError::Io { what, path, source }
    }

    pub(crate) fn spawn(program: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> LaunchError {
        let program = program.to_string();
        move |source| LaunchError::Spawn { program, source }
    }
}

/// The result of a launch, for the panicking wrappers the tests use: the
/// value, or a panic with the error's whole message.
pub(crate) fn or_panic<T>(r: Result<T, LaunchError>) -> T {
    r.unwrap_or_else(|e| {
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(&format!(": {s}"));
            source = s.source();
        }
        panic!("{msg}")
    })
}
