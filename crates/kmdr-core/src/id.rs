//! Backup ids. An id is also the name of the backup's manifest object, and it
//! describes itself: `<UTC time>-<kind>-<random>`, e.g.
//! `20261127T024037.512Z-etcd-3f9a1c`. Ids sort by creation time (to the millisecond), so a plain
//! listing of `backups/` is already the catalog in order.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use rand::Rng;
use std::fmt;
use std::str::FromStr;

/// Time format used in ids (basic ISO 8601, UTC, milliseconds).
pub const ID_TIME_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";

/// The id of one backup, `<time>-<kind>-<6 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupId {
    time: DateTime<Utc>,
    kind: String,
    nonce: String,
}

/// Why a string is not a backup id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// The string does not have the `<time>-<kind>-<hex>` shape.
    #[error(
        "`{0}` is not a backup id (expected <YYYYMMDDTHHMMSS.mmmZ>-<kind>-<hex>, e.g. 20261127T024037.512Z-etcd-3f9a1c)"
    )]
    Malformed(String),
}

impl BackupId {
    /// A fresh id for a backup of `kind` started at `time`.
    pub fn new(kind: &str, time: DateTime<Utc>) -> Self {
        let n: u32 = rand::thread_rng().gen_range(0..0x100_0000);
        Self::from_parts(time, kind, &format!("{n:06x}"))
    }

    fn from_parts(time: DateTime<Utc>, kind: &str, nonce: &str) -> Self {
        let time =
            Utc.timestamp_millis_opt(time.timestamp_millis()).single().expect("whole milliseconds are always valid");
        BackupId { time, kind: kind.to_string(), nonce: nonce.to_string() }
    }

    /// The creation time encoded in the id (whole milliseconds).
    pub fn time(&self) -> DateTime<Utc> {
        self.time
    }

    /// The kind encoded in the id (`etcd`, `tenant`, ...).
    pub fn kind(&self) -> &str {
        &self.kind
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.time.format(ID_TIME_FORMAT), self.kind, self.nonce)
    }
}

impl FromStr for BackupId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad = || IdError::Malformed(s.to_string());
        let (time, rest) = s.split_once('-').ok_or_else(bad)?;
        let (kind, nonce) = rest.rsplit_once('-').ok_or_else(bad)?;
        let time = NaiveDateTime::parse_from_str(time, ID_TIME_FORMAT).map_err(|_| bad())?;
        let kind_ok =
            !kind.is_empty() && kind.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        let nonce_ok = !nonce.is_empty() && nonce.chars().all(|c| c.is_ascii_hexdigit());
        if !kind_ok || !nonce_ok {
            return Err(bad());
        }
        Ok(Self::from_parts(Utc.from_utc_datetime(&time), kind, nonce))
    }
}

impl TryFrom<String> for BackupId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<BackupId> for String {
    fn from(id: BackupId) -> String {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_order() {
        let t1 = Utc.with_ymd_and_hms(2026, 11, 27, 2, 40, 37).unwrap();
        let t2 = t1 + chrono::Duration::milliseconds(1);
        let a = BackupId::new("etcd", t1);
        let b = BackupId::new("etcd", t2);
        let s = a.to_string();
        assert!(s.starts_with("20261127T024037.000Z-etcd-"), "{s}");
        assert_eq!(s.parse::<BackupId>().unwrap(), a);
        assert!(a.to_string() < b.to_string());
        assert_eq!(a.kind(), "etcd");
        assert_eq!(a.time(), t1);
    }

    #[test]
    fn kinds_may_contain_dashes() {
        let id: BackupId = "20261127T024037.250Z-tenant-data-0a1b2c".parse().unwrap();
        assert_eq!(id.kind(), "tenant-data");
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "latest", "2026-etcd-zz", "20261327T024037.000Z-etcd-aa", "20261127T024037.000Z--aa"] {
            assert!(s.parse::<BackupId>().is_err(), "{s}");
        }
    }
}
