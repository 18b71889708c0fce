//! A [`Finding`] of `kmdr status` and `kmdr runbook check`: what was
//! checked, about what, a level, and a message that says what to do when it
//! is not OK.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `rpo`, `rto`, `drill`, `review`, `plan-in-git`, `platform-drift`,
    /// `node-files`, `ca-expiry`, `encryption-keys`.
    pub check: String,
    /// The layer, unit, contact or file it is about.
    pub subject: String,
    pub level: Level,
    pub message: String,
}

pub(crate) fn finding(check: &str, subject: impl Into<String>, level: Level, message: impl Into<String>) -> Finding {
    Finding { check: check.into(), subject: subject.into(), level, message: message.into() }
}
