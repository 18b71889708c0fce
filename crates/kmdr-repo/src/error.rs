use kmdr_core::{Classify, ErrorClass};
use kmdr_store::StoreError;
use std::path::PathBuf;

/// What can go wrong with a repository. Every message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing at the location looks like a kmdr repository.
    #[error(
        "no kmdr repository at {location}: create one with `kmdr repo init --repo {location} --key-file KEYFILE`, or fix --repo / KMDR_REPO"
    )]
    NotARepository { location: String },
    /// `repo init` on a location that already holds a repository.
    #[error("a kmdr repository already exists at {location}; nothing was changed")]
    AlreadyInitialized { location: String },
    /// No key file was given.
    #[error("no key file given: pass --key-file FILE or set KMDR_KEY_FILE (the file created by `kmdr repo init`)")]
    NoKey,
    /// The key file cannot be read or written.
    #[error("cannot use key file {}: {source}", path.display())]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The key file opens none of the repository's keys.
    #[error(
        "the key in {key_file} does not open the repository at {location}: use the key file created by `kmdr repo init` for this repository"
    )]
    WrongKey { location: String, key_file: String },
    /// A write-only key was asked to read what the repository holds.
    #[error(
        "{key_file} is a write-only key: it can back up but not read {what}; use the repository's full key (kept offline, not on the agent)"
    )]
    WriteOnlyKey { key_file: String, what: String },
    /// Something only format 2 offers, asked of a format-1 repository.
    #[error(
        "{what} need repository format 2 and {location} is format 1: run `kmdr repo upgrade` first (every backup is kept)"
    )]
    NeedsFormat2 { location: String, what: String },
    /// `repo upgrade` of a repository already at the newest format.
    #[error("the repository at {location} is already format {format}: nothing to upgrade")]
    AlreadyFormat { location: String, format: u32 },
    /// The repository was written by an incompatible kmdr.
    #[error(
        "repository at {location} has format version {found}; this kmdr reads version {supported}: use a kmdr release that supports it"
    )]
    UnsupportedFormat { location: String, found: u32, supported: u32 },
    /// No backup matches the id given.
    #[error("no backup {query} in {location}: list them with `kmdr backups list`")]
    BackupNotFound { query: String, location: String },
    /// A prefix matches more than one backup.
    #[error("{query} matches {count} backups ({examples}): give more of the id")]
    AmbiguousId { query: String, count: usize, examples: String },
    /// A stored object failed its checks.
    #[error(
        "damaged object {object}: {reason}; run `kmdr verify --all` to see which backups are affected and restore from an older, intact one"
    )]
    Damaged { object: String, reason: String },
    /// Another process holds a conflicting lock.
    #[error("repository is locked by {holder}: wait for it to finish; if that process is gone, run `kmdr repo unlock`")]
    Locked { holder: String },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the data to back up failed; the backup was not committed.
    #[error("reading the backup source failed; nothing was committed")]
    Source(#[source] std::io::Error),
    /// Writing restored data to its destination failed.
    #[error("writing the restored data failed")]
    Destination(#[source] std::io::Error),
}

impl Error {
    /// True when repeating the operation may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Store(e) => e.is_retryable(),
            Error::Locked { .. } => true,
            _ => false,
        }
    }
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::NotARepository { .. }
            | Error::AlreadyInitialized { .. }
            | Error::Locked { .. }
            | Error::UnsupportedFormat { .. }
            | Error::NeedsFormat2 { .. }
            | Error::AlreadyFormat { .. } => ErrorClass::Repository,
            Error::NoKey | Error::KeyFile { .. } | Error::WrongKey { .. } | Error::WriteOnlyKey { .. } => {
                ErrorClass::Key
            }
            Error::BackupNotFound { .. } | Error::AmbiguousId { .. } => ErrorClass::NotFound,
            Error::Damaged { .. } => ErrorClass::Damaged,
            Error::Store(s) => s.class(),
            // The sources kmdr reads put their own errors here (etcd's snapshot stream): all source failures.
            Error::Source(_) => ErrorClass::Source,
            Error::Destination(_) => ErrorClass::Refused,
        }
    }
}
