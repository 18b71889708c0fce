//! The delta stream: the content of one delta segment, the changes of a
//! series in revision order (specified in docs/design.md, "Delta segments";
//! all integers big-endian):
//!
//! ```text
//! "KMDRDL" 0x00 0x01                                        magic, version 1
//! event*:  u8 op (1 put, 2 delete) | u32 key_len (>= 1) | key | u32 value_len | value
//!          | i64 revision | i64 create_revision
//! trailer: u8 0 | u64 event_count | sha256 of every byte before the trailer
//! ```
//!
//! Events come in revision order. Keys are relative to the series' key root
//! (`/<schema>` for a tenant on etcd, nothing for a whole etcd), exactly as in
//! the tenant record stream, so a tenant's deltas apply to its full backup
//! whatever driver it is restored into. Captured by `kmdr-datastore`'s change
//! feeds, replayed by [`crate::point`].

use sha2::{Digest, Sha256};

/// First bytes of a delta stream.
pub const MAGIC: &[u8; 8] = b"KMDRDL\x00\x01";

/// A put or a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Put = 1,
    Delete = 2,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaEvent {
    pub op: Op,
    /// Relative key.
    pub key: Vec<u8>,
    /// The new value (empty for a delete).
    pub value: Vec<u8>,
    /// The revision of the change (etcd's mod_revision; for a delete, the delete's revision).
    pub revision: i64,
    /// The key's create revision (0 for a delete).
    pub create_revision: i64,
}

/// Why a delta stream cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("delta segment is damaged: {0}")]
pub struct DeltaDamaged(pub String);

/// Encode events as one delta stream.
pub fn encode(events: &[DeltaEvent]) -> Vec<u8> {
    let size: usize = events.iter().map(|e| 25 + e.key.len() + e.value.len()).sum();
    let mut out = Vec::with_capacity(8 + size + 41);
    out.extend_from_slice(MAGIC);
    for e in events {
        out.push(e.op as u8);
        out.extend_from_slice(&(e.key.len() as u32).to_be_bytes());
        out.extend_from_slice(&e.key);
        out.extend_from_slice(&(e.value.len() as u32).to_be_bytes());
        out.extend_from_slice(&e.value);
        out.extend_from_slice(&e.revision.to_be_bytes());
        out.extend_from_slice(&e.create_revision.to_be_bytes());
    }
    let sum: [u8; 32] = Sha256::digest(&out).into();
    out.push(0);
    out.extend_from_slice(&(events.len() as u64).to_be_bytes());
    out.extend_from_slice(&sum);
    out
}

/// Decode and check a delta stream: magic, field bounds, revision order, trailer.
pub fn decode(data: &[u8]) -> Result<Vec<DeltaEvent>, DeltaDamaged> {
    let bad = |s: &str| DeltaDamaged(s.to_string());
    if data.len() < 8 + 41 || &data[..8] != MAGIC {
        return Err(bad("not a kmdr delta stream (bad magic or too short)"));
    }
    let mut at = 8;
    let mut events = Vec::new();
    let take = |at: &mut usize, n: usize| -> Result<std::ops::Range<usize>, DeltaDamaged> {
        if *at + n > data.len() {
            return Err(DeltaDamaged("the stream ends before its trailer".into()));
        }
        let r = *at..*at + n;
        *at += n;
        Ok(r)
    };
    let u32_at = |r: std::ops::Range<usize>| u32::from_be_bytes(data[r].try_into().expect("4 bytes")) as usize;
    let i64_at = |r: std::ops::Range<usize>| i64::from_be_bytes(data[r].try_into().expect("8 bytes"));
    loop {
        let op = data[take(&mut at, 1)?.start];
        let op = match op {
            0 => break,
            1 => Op::Put,
            2 => Op::Delete,
            other => return Err(DeltaDamaged(format!("unknown operation {other}"))),
        };
        let kl = u32_at(take(&mut at, 4)?);
        if kl == 0 {
            return Err(bad("empty key"));
        }
        let key = data[take(&mut at, kl)?].to_vec();
        let vl = u32_at(take(&mut at, 4)?);
        let value = data[take(&mut at, vl)?].to_vec();
        let revision = i64_at(take(&mut at, 8)?);
        let create_revision = i64_at(take(&mut at, 8)?);
        if events.last().is_some_and(|p: &DeltaEvent| p.revision > revision) {
            return Err(bad("events out of revision order"));
        }
        events.push(DeltaEvent { op, key, value, revision, create_revision });
    }
    let body_end = at - 1;
    let count = i64_at(take(&mut at, 8)?) as u64;
    let sum = &data[take(&mut at, 32)?];
    if at != data.len() {
        return Err(bad("bytes after the trailer"));
    }
    if count != events.len() as u64 {
        return Err(DeltaDamaged(format!("trailer says {count} events, the stream holds {}", events.len())));
    }
    if sum != Sha256::digest(&data[..body_end]).as_slice() {
        return Err(bad("checksum in the trailer does not match"));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(op: Op, key: &str, value: &str, rev: i64) -> DeltaEvent {
        DeltaEvent {
            op,
            key: key.into(),
            value: value.into(),
            revision: rev,
            create_revision: if op == Op::Put { rev } else { 0 },
        }
    }

    #[test]
    fn round_trip_and_damage() {
        let events = vec![ev(Op::Put, "/a", "1", 5), ev(Op::Put, "/b", "", 6), ev(Op::Delete, "/a", "", 6)];
        let data = encode(&events);
        assert_eq!(decode(&data).unwrap(), events);
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
        for cut in [0, 9, 20, data.len() - 1] {
            assert!(decode(&data[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = data.clone();
        flipped[12] ^= 1;
        assert!(decode(&flipped).is_err());
        let unordered = encode(&[ev(Op::Put, "/a", "1", 7), ev(Op::Put, "/b", "1", 6)]);
        assert_eq!(decode(&unordered).unwrap_err().0, "events out of revision order");
    }
}
