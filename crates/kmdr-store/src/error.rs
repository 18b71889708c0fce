use kmdr_core::{Classify, ErrorClass};
use std::io;

/// What went wrong talking to a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("object {key} not found in {location}")]
    NotFound { location: String, key: String },
    /// The key breaks the store's key grammar (a bug in the caller).
    #[error("invalid object key {key:?}")]
    InvalidKey { key: String },
    /// The local disk is full.
    #[error(
        "no space left on the device holding {location} while writing {key}: free space (or `kmdr forget --prune` old backups) and run the command again; nothing was committed"
    )]
    NoSpace { location: String, key: String },
    /// Access was refused by the file system or the service.
    #[error(
        "permission denied on {location} ({op} {key}): check the credentials / file permissions for the repository"
    )]
    PermissionDenied {
        location: String,
        op: &'static str,
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The service could not be reached or timed out; worth retrying.
    #[error(
        "storage at {location} is unreachable ({op} {key}): check the endpoint and network, then run the command again"
    )]
    Unavailable {
        location: String,
        op: &'static str,
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Any other I/O failure.
    #[error("storage error at {location} ({op} {key})")]
    Io {
        location: String,
        op: &'static str,
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Configuration of the store is wrong (bad URL, missing bucket...).
    #[error("{0}")]
    Config(String),
    /// The service refused an S3 action these credentials may not make
    /// (`AccessDenied`): names the action and what to do.
    #[error("S3 refused {action} on {location} ({key}): {hint}")]
    Denied { location: String, action: &'static str, key: String, hint: String },
    /// S3 refused to delete a version still under Object Lock retention (or a legal hold).
    #[error(
        "object {key} in {location} is under Object Lock retention: it can be deleted once its retain-until date has passed"
    )]
    Retained { location: String, key: String },
}

impl StoreError {
    /// True when the same call may succeed if repeated.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    pub(crate) fn from_io(location: &str, op: &'static str, key: &str, e: io::Error) -> Self {
        let (location, key) = (location.to_string(), key.to_string());
        match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound { location, key },
            io::ErrorKind::PermissionDenied => StoreError::PermissionDenied { location, op, key, source: Box::new(e) },
            io::ErrorKind::StorageFull => StoreError::NoSpace { location, key },
            _ if e.raw_os_error() == Some(28) => StoreError::NoSpace { location, key },
            _ => StoreError::Io { location, op, key, source: Box::new(e) },
        }
    }
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::Config(_) => ErrorClass::Repository,
            _ => ErrorClass::Storage,
        }
    }
}
