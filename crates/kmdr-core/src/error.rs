//! What kind of failure an error is. Every library error enum implements
//! [`Classify`]; the command line derives its exit code and the next step it
//! suggests from the class alone (`crates/kmdr/src/exit.rs`), so a new error
//! variant gets the right exit code by saying what it is, not by being added
//! to a chain of downcasts.

use serde::{Deserialize, Serialize};

/// The class of a failure: what the operator has to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorClass {
    /// The request itself is wrong: a malformed argument, URL, reference or plan.
    Usage,
    /// The repository: none there, already there, locked, an unsupported format.
    Repository,
    /// The key: missing, unreadable, the wrong one; a Secret's encryption-at-rest key.
    Key,
    /// What was asked for does not exist: a backup, a tenant, a release, an object.
    NotFound,
    /// The system backed up or restored failed: unreachable, refused credentials,
    /// a failed query, a tool that reported failure.
    Source,
    /// Stored data failed its checks; nothing was restored.
    Damaged,
    /// kmdr refused to go on, or the local restore target cannot be written:
    /// a non-empty target, a missing tool, a conflicting object.
    Refused,
    /// The repository's storage failed: disk full, permission denied, unreachable.
    Storage,
    /// A wait ran out.
    Timeout,
    /// The delta chain has a gap: no segment covers the revisions a point needs.
    ChainGap,
    /// forget/prune removed what Object Lock retention allows and kept the rest.
    HeldBack,
    /// Anything else.
    Other,
}

impl ErrorClass {
    /// Every class, in exit-code order.
    pub const ALL: [ErrorClass; 12] = [
        ErrorClass::Usage,
        ErrorClass::Repository,
        ErrorClass::Key,
        ErrorClass::NotFound,
        ErrorClass::Source,
        ErrorClass::Damaged,
        ErrorClass::Refused,
        ErrorClass::Storage,
        ErrorClass::Other,
        ErrorClass::Timeout,
        ErrorClass::ChainGap,
        ErrorClass::HeldBack,
    ];

    /// The name used in JSON and in docs (`not-found`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Usage => "usage",
            ErrorClass::Repository => "repository",
            ErrorClass::Key => "key",
            ErrorClass::NotFound => "not-found",
            ErrorClass::Source => "source",
            ErrorClass::Damaged => "damaged",
            ErrorClass::Refused => "refused",
            ErrorClass::Storage => "storage",
            ErrorClass::Timeout => "timeout",
            ErrorClass::ChainGap => "chain-gap",
            ErrorClass::HeldBack => "held-back",
            ErrorClass::Other => "other",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An error that knows its class. Wrapping variants (`Repo(kmdr_repo::Error)`)
/// answer with the class of what they wrap.
pub trait Classify: std::error::Error {
    fn class(&self) -> ErrorClass;
}

/// An error and its causes on one line, without repeating a cause a
/// message already contains (many wrap their source's text in their own).
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde() {
        for c in ErrorClass::ALL {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.name()));
            assert_eq!(serde_json::from_str::<ErrorClass>(&json).unwrap(), c);
        }
    }
}
