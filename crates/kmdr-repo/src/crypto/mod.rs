//! Keys and the sealed object format (docs/design.md sections 3 and 4).
//!
//! Every key holds a 32-byte HMAC-SHA256 key that names chunks (and derives
//! the chunker's seed). What seals objects depends on the repository format:
//!
//! - Format 1: one random XChaCha20-Poly1305 key (`enc`) seals and opens every
//!   object (object version 1).
//! - Format 2: objects are sealed to the repository's X25519 recipient key
//!   (object version 2, [`recipient`]). A full key holds the recipient's secret
//!   half and opens everything; a write-only key holds only its public half and
//!   the MAC key: it can name, deduplicate and seal, never open. A repository
//!   upgraded from format 1 keeps `enc` in its full keys, for its older objects.
//!
//! Keys are stored in `keys/<id>` wrapped under a key derived with Argon2id
//! from the secret in the user's key file ([`KeyObject`]).
//!
//! ```text
//! version 1:
//! 0      4  5    6     7    8                 32                     n-32     n
//! | KMDR | 1 | kind | comp | 0 | nonce (24 B) | ciphertext + tag (16 B) | sha256 |
//! version 2:
//! 0      4  5    6     7    8                 32                 64                     n-32     n
//! | KMDR | 2 | kind | comp | 0 | nonce (24 B) | ephemeral (32 B) | ciphertext + tag (16 B) | sha256 |
//! ```
//!
//! The AEAD's associated data is the header followed by the object's key in
//! the store, so an object moved to another name fails to open. The trailing
//! sha256 covers every byte before it and can be checked without the key
//! (`head -c -32 OBJ | sha256sum`).

mod keyobject;
mod recipient;

pub use keyobject::{KdfParams, KeyObject};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use recipient::{KeyError, Recipient};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Magic bytes at the start of every sealed object.
pub const MAGIC: &[u8; 4] = b"KMDR";
/// Version of the sealed object layout of format 1 (one symmetric key).
pub const OBJECT_VERSION: u8 = 1;
/// Version of the sealed object layout of format 2 (sealed to a recipient).
pub const OBJECT_VERSION_2: u8 = 2;
const HEADER_LEN: usize = 32;
const HEADER_LEN_2: usize = 64;
const TAG_LEN: usize = 16;
const SUM_LEN: usize = 32;
/// Largest plaintext an object may decompress to (guards against zip bombs).
pub const MAX_PLAINTEXT: usize = 256 * 1024 * 1024;

/// What a sealed object holds (byte 5 of the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    Chunk = 1,
    Manifest = 2,
    Report = 3,
    /// A delta segment (`deltas/...`).
    Delta = 4,
    /// A restore proof (`verifications/...`).
    Proof = 5,
    /// A record of what `forget` removed (`catalog/...`).
    Catalog = 6,
}

/// Why a sealed object cannot be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ObjectError {
    #[error("object is truncated ({0} bytes)")]
    Truncated(usize),
    #[error("checksum mismatch: the stored bytes changed after they were written")]
    Checksum,
    #[error("not a kmdr object (bad magic or version)")]
    Format,
    #[error("authentication failed: wrong key, or the object was tampered with or renamed")]
    Auth,
    #[error("decompression failed: {0}")]
    Decompress(String),
    #[error("object kind {found} where {expected:?} was expected")]
    Kind { found: u8, expected: ObjectKind },
    #[error("content does not match its id")]
    IdMismatch,
    #[error("this key is write-only: it can back up, not read")]
    WriteOnly,
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Back up and read everything.
    Full,
    /// Back up (name, deduplicate and seal), never read.
    WriteOnly,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::Full => "full",
            Access::WriteOnly => "write-only",
        })
    }
}

/// A repository key: what one key object wraps.
#[derive(Clone)]
pub struct MasterKey {
    mac: [u8; 32],
    /// Format 1's symmetric key (kept by full keys of repositories upgraded from format 1).
    enc: Option<[u8; 32]>,
    /// Format 2's recipient key.
    recipient: Option<Recipient>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.access())
    }
}

/// First byte of a format-2 key's wrapped material; format 1's is 64 bytes with no tag.
const MATERIAL_V2: u8 = 2;

impl MasterKey {
    /// A fresh random format-1 key.
    pub fn generate() -> Self {
        let mut enc = [0u8; 32];
        let mut mac = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut enc);
        rand::thread_rng().fill_bytes(&mut mac);
        MasterKey { mac, enc: Some(enc), recipient: None }
    }

    /// A fresh random full format-2 key.
    pub fn generate_v2() -> Self {
        let mut mac = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut mac);
        MasterKey { recipient: Some(Recipient::generate(&mac)), mac, enc: None }
    }

    /// This key moved to format 2: a new recipient key, the MAC key (so chunk
    /// ids, and so deduplication, carry on) and format 1's key for the older objects.
    pub fn upgraded(&self) -> Self {
        if self.recipient.is_some() {
            return self.clone();
        }
        MasterKey { recipient: Some(Recipient::generate(&self.mac)), ..self.clone() }
    }

    /// This key as format 1 uses it (a `repo upgrade` stopped before the
    /// config changed); `None` without format 1's key.
    pub fn as_format_1(&self) -> Option<Self> {
        Some(MasterKey { mac: self.mac, enc: Some(self.enc?), recipient: None })
    }

    /// The write-only key of the same repository; `None` for a format-1 key.
    pub fn write_only(&self) -> Option<Self> {
        let r = self.recipient.as_ref()?;
        Some(MasterKey { mac: self.mac, enc: None, recipient: Some(r.without_secret()) })
    }

    /// What this key may do.
    pub fn access(&self) -> Access {
        match &self.recipient {
            Some(r) if r.secret().is_none() => Access::WriteOnly,
            _ => Access::Full,
        }
    }

    /// The repository format this key seals for: 2 with a recipient, else 1.
    pub fn format(&self) -> u32 {
        if self.recipient.is_some() { 2 } else { 1 }
    }

    /// The recipient's public key (format 2), hex.
    pub fn recipient_hex(&self) -> Option<String> {
        self.recipient.as_ref().map(|r| hex::encode(r.public()))
    }

    /// The bytes a key object wraps.
    pub(crate) fn material(&self) -> Vec<u8> {
        match &self.recipient {
            None => [&self.enc.expect("a format-1 key has enc")[..], &self.mac[..]].concat(),
            Some(r) => {
                let mut b = vec![MATERIAL_V2];
                match r.secret() {
                    Some(secret) => {
                        b.push(1);
                        b.extend_from_slice(&self.mac);
                        b.extend_from_slice(&secret);
                        if let Some(enc) = &self.enc {
                            b.extend_from_slice(enc);
                        }
                    }
                    None => {
                        b.push(2);
                        b.extend_from_slice(&self.mac);
                        b.extend_from_slice(&r.public());
                    }
                }
                b
            }
        }
    }

    /// The key a key object's wrapped material holds; `None` when it is no key material.
    pub(crate) fn from_material(b: &[u8]) -> Option<Self> {
        let arr = |s: &[u8]| -> [u8; 32] { s.try_into().expect("32 bytes") };
        match b.len() {
            64 => Some(MasterKey { enc: Some(arr(&b[..32])), mac: arr(&b[32..]), recipient: None }),
            66 | 98 if b[0] == MATERIAL_V2 => {
                let mac = arr(&b[2..34]);
                match (b[1], b.len()) {
                    (1, _) => Some(MasterKey {
                        recipient: Some(Recipient::from_secret(&mac, arr(&b[34..66]))),
                        enc: (b.len() == 98).then(|| arr(&b[66..98])),
                        mac,
                    }),
                    (2, 66) => Some(MasterKey {
                        recipient: Some(Recipient::from_public(&mac, arr(&b[34..66]))),
                        mac,
                        enc: None,
                    }),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The id of a chunk: hex HMAC-SHA256 of its plaintext.
    pub fn chunk_id(&self, plaintext: &[u8]) -> String {
        hex::encode(self.mac_of(plaintext))
    }

    /// The tag of a series in the series index (`series/<tag>/`): 128 bits
    /// of HMAC-SHA256 over a domain-separated name, so the store does not
    /// learn the series' name.
    pub fn series_tag(&self, series: &str) -> String {
        hex::encode(&self.mac_of(format!("kmdr series v1\n{series}").as_bytes())[..16])
    }

    fn mac_of(&self, data: &[u8]) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.mac).expect("any key length works");
        m.update(data);
        m.finalize().into_bytes().into()
    }

    /// A 64-bit seed for the chunker's gear table, so that chunk boundaries
    /// (and so chunk sizes) depend on the repository key.
    pub fn chunker_seed(&self) -> u64 {
        let id = self.chunk_id(b"kmdr chunker seed v1");
        u64::from_str_radix(&id[..16], 16).expect("hex")
    }

    /// A key only full keys have, for records a write-only key must not be
    /// able to make (`forget`'s, section 9): HMAC-SHA256 keyed with the
    /// recipient's secret (format 2) or the symmetric key (format 1).
    pub fn admin_key(&self) -> Option<[u8; 32]> {
        let base = match &self.recipient {
            Some(r) => r.secret()?,
            None => self.enc?,
        };
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&base).expect("any key length works");
        m.update(b"kmdr admin v1");
        Some(m.finalize().into_bytes().into())
    }

    /// Seal `plaintext` as the object stored at `name`. `zstd_level` 0 stores
    /// uncompressed. A format-2 key seals version 2, a format-1 key version 1.
    pub fn seal(&self, kind: ObjectKind, name: &str, plaintext: &[u8], zstd_level: i32) -> Vec<u8> {
        let mut comp = 0u8;
        let compressed;
        let mut body: &[u8] = plaintext;
        if zstd_level != 0
            && let Ok(c) = zstd::bulk::compress(plaintext, zstd_level)
            && c.len() < plaintext.len()
        {
            compressed = c;
            body = &compressed;
            comp = 1;
        }
        let (mut header, key) = match &self.recipient {
            None => (vec![0u8; HEADER_LEN], self.enc.expect("a format-1 key has enc")),
            Some(r) => {
                let (ephemeral, key) = r.sealing_key();
                let mut h = vec![0u8; HEADER_LEN_2];
                h[HEADER_LEN..].copy_from_slice(&ephemeral);
                (h, key)
            }
        };
        header[..4].copy_from_slice(MAGIC);
        header[4] = if self.recipient.is_some() { OBJECT_VERSION_2 } else { OBJECT_VERSION };
        header[5] = kind as u8;
        header[6] = comp;
        rand::thread_rng().fill_bytes(&mut header[8..32]);
        let aad = [&header[..], name.as_bytes()].concat();
        let ct = XChaCha20Poly1305::new((&key).into())
            .encrypt(XNonce::from_slice(&header[8..32]), Payload { msg: body, aad: &aad })
            .expect("encryption of in-memory data cannot fail");
        let mut out = Vec::with_capacity(header.len() + ct.len() + SUM_LEN);
        out.extend_from_slice(&header);
        out.extend_from_slice(&ct);
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }

    /// Open the object stored at `name`, checking checksum, kind and authenticity.
    pub fn open(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<Vec<u8>, ObjectError> {
        check_sum(data)?;
        self.open_authenticated(kind, name, data)
    }

    /// Open without the trailing checksum: the AEAD tag alone proves the
    /// content (the checksum is for checks without the key). Restores use it;
    /// `verify` uses [`MasterKey::open`].
    pub fn open_authenticated(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<Vec<u8>, ObjectError> {
        let header_len = header_len(data)?;
        if self.access() == Access::WriteOnly {
            return Err(ObjectError::WriteOnly);
        }
        let header = &data[..header_len];
        if header[5] != kind as u8 {
            return Err(ObjectError::Kind { found: header[5], expected: kind });
        }
        let key = match header[4] {
            OBJECT_VERSION => self.enc.ok_or(ObjectError::Auth)?,
            _ => {
                let r = self.recipient.as_ref().ok_or(ObjectError::Auth)?;
                let ephemeral: [u8; 32] = header[HEADER_LEN..].try_into().expect("32 bytes");
                r.opening_key(&ephemeral).map_err(|e| match e {
                    KeyError::WriteOnly => ObjectError::WriteOnly,
                    KeyError::Degenerate => ObjectError::Auth,
                })?
            }
        };
        let aad = [header, name.as_bytes()].concat();
        let body = XChaCha20Poly1305::new((&key).into())
            .decrypt(
                XNonce::from_slice(&header[8..32]),
                Payload { msg: &data[header_len..data.len() - SUM_LEN], aad: &aad },
            )
            .map_err(|_| ObjectError::Auth)?;
        match header[6] {
            0 => Ok(body),
            1 => zstd::bulk::decompress(&body, MAX_PLAINTEXT).map_err(|e| ObjectError::Decompress(e.to_string())),
            other => Err(ObjectError::Decompress(format!("unknown compression {other}"))),
        }
    }

    /// Open a chunk and check that its content matches its id. `full` also
    /// checks the trailing checksum (what `verify` wants).
    pub fn open_chunk(&self, name: &str, id: &str, data: &[u8], full: bool) -> Result<Vec<u8>, ObjectError> {
        let plain = if full {
            self.open(ObjectKind::Chunk, name, data)?
        } else {
            self.open_authenticated(ObjectKind::Chunk, name, data)?
        };
        if self.chunk_id(&plain) != id {
            return Err(ObjectError::IdMismatch);
        }
        Ok(plain)
    }
}

/// The header length of a sealed object of either version, after checking
/// its length, magic and version.
fn header_len(data: &[u8]) -> Result<usize, ObjectError> {
    if data.len() < HEADER_LEN + TAG_LEN + SUM_LEN {
        return Err(ObjectError::Truncated(data.len()));
    }
    let len = match (&data[..4] == MAGIC, data[4]) {
        (true, OBJECT_VERSION) => HEADER_LEN,
        (true, OBJECT_VERSION_2) => HEADER_LEN_2,
        _ => return Err(ObjectError::Format),
    };
    if data.len() < len + TAG_LEN + SUM_LEN {
        return Err(ObjectError::Truncated(data.len()));
    }
    Ok(len)
}

/// Check a sealed object's length, magic, version and trailing sha256 (no key needed).
pub fn check_sum(data: &[u8]) -> Result<(), ObjectError> {
    if data.len() < HEADER_LEN + TAG_LEN + SUM_LEN {
        return Err(ObjectError::Truncated(data.len()));
    }
    let (body, sum) = data.split_at(data.len() - SUM_LEN);
    if Sha256::digest(body).as_slice() != sum {
        return Err(ObjectError::Checksum);
    }
    header_len(data).map(|_| ())
}

/// This machine's host name, for lock and key records.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// A new random secret for a key file: 32 random bytes, hex, one line.
pub fn generate_secret() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    format!("{}\n", hex::encode(b))
}

/// The secret in a key file's content: the bytes with trailing whitespace removed.
pub fn secret_from_file_content(content: &[u8]) -> &[u8] {
    let end = content.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
    &content[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_compressible_and_not() {
        let k = MasterKey::generate();
        let text = b"hello hello hello hello hello hello hello hello".repeat(100);
        let mut random = vec![0u8; 10_000];
        rand::thread_rng().fill_bytes(&mut random);
        for plain in [&text[..], &random[..], &[][..]] {
            let sealed = k.seal(ObjectKind::Chunk, "data/aa/x", plain, 3);
            assert_eq!(k.open(ObjectKind::Chunk, "data/aa/x", &sealed).unwrap(), plain);
        }
        let sealed = k.seal(ObjectKind::Chunk, "n", &text, 3);
        assert!(sealed.len() < text.len() / 4, "compressible data is compressed");
        assert_eq!(sealed[6], 1);
        assert_eq!(k.seal(ObjectKind::Chunk, "n", &random, 3)[6], 0, "incompressible data stored raw");
    }

    #[test]
    fn every_kind_of_damage_is_detected() {
        let k = MasterKey::generate();
        let sealed = k.seal(ObjectKind::Manifest, "backups/x", b"{\"a\":1}", 3);
        // Flip each byte in turn: the checksum or the AEAD catches it.
        for i in 0..sealed.len() {
            let mut d = sealed.clone();
            d[i] ^= 0x40;
            assert!(k.open(ObjectKind::Manifest, "backups/x", &d).is_err(), "flip at {i} undetected");
        }
        assert_eq!(k.open(ObjectKind::Manifest, "backups/y", &sealed), Err(ObjectError::Auth), "renamed object");
        assert_eq!(MasterKey::generate().open(ObjectKind::Manifest, "backups/x", &sealed), Err(ObjectError::Auth));
        assert!(matches!(k.open(ObjectKind::Chunk, "backups/x", &sealed), Err(ObjectError::Kind { .. })));
        assert_eq!(k.open(ObjectKind::Manifest, "backups/x", &sealed[..40]), Err(ObjectError::Truncated(40)));
        // A checksum that is recomputed after tampering still fails authentication.
        let mut d = sealed.clone();
        d[40] ^= 1;
        let n = d.len();
        let sum = Sha256::digest(&d[..n - 32]);
        d[n - 32..].copy_from_slice(&sum);
        assert_eq!(k.open(ObjectKind::Manifest, "backups/x", &d), Err(ObjectError::Auth));
    }

    #[test]
    fn chunk_ids_are_keyed() {
        let (a, b) = (MasterKey::generate(), MasterKey::generate());
        assert_eq!(a.chunk_id(b"x"), a.chunk_id(b"x"));
        assert_ne!(a.chunk_id(b"x"), b.chunk_id(b"x"));
        assert_ne!(a.chunk_id(b"x"), hex::encode(Sha256::digest(b"x")));
        let sealed = a.seal(ObjectKind::Chunk, "c", b"x", 0);
        assert_eq!(a.open_chunk("c", &a.chunk_id(b"y"), &sealed, true), Err(ObjectError::IdMismatch));
        // Without the checksum pass a flipped content byte still fails authentication,
        // while a flipped checksum byte is only seen by the full check.
        let mut d = sealed.clone();
        d[33] ^= 1;
        assert_eq!(a.open_chunk("c", &a.chunk_id(b"x"), &d, false), Err(ObjectError::Auth));
        let mut d = sealed.clone();
        let n = d.len();
        d[n - 1] ^= 1;
        assert!(a.open_chunk("c", &a.chunk_id(b"x"), &d, false).is_ok());
        assert_eq!(a.open_chunk("c", &a.chunk_id(b"x"), &d, true), Err(ObjectError::Checksum));
    }

    #[test]
    fn key_wrapping() {
        let m = MasterKey::generate();
        let ko = KeyObject::wrap(&m, b"secret one");
        let json = serde_json::to_string(&ko).unwrap();
        let ko: KeyObject = serde_json::from_str(&json).unwrap();
        assert_eq!(ko.unwrap(b"secret one").unwrap().material(), m.material());
        assert!(ko.unwrap(b"secret two").is_none());
        assert_eq!(secret_from_file_content(b"abc \n\n"), b"abc");
        assert_eq!(generate_secret().len(), 65);
    }

    #[test]
    fn format_2_round_trip_and_damage() {
        let full = MasterKey::generate_v2();
        let text = b"tenant data tenant data tenant data".repeat(50);
        let sealed = full.seal(ObjectKind::Manifest, "backups/x", &text, 3);
        assert_eq!(sealed[4], OBJECT_VERSION_2);
        assert_eq!(full.open(ObjectKind::Manifest, "backups/x", &sealed).unwrap(), text);
        for i in 0..sealed.len() {
            let mut d = sealed.clone();
            d[i] ^= 0x40;
            assert!(full.open(ObjectKind::Manifest, "backups/x", &d).is_err(), "flip at {i} undetected");
        }
        assert_eq!(full.open(ObjectKind::Manifest, "backups/y", &sealed), Err(ObjectError::Auth), "renamed object");
        assert_eq!(MasterKey::generate_v2().open(ObjectKind::Manifest, "backups/x", &sealed), Err(ObjectError::Auth));
        // The smallest version-2 object (empty body) is 112 bytes.
        assert_eq!(full.seal(ObjectKind::Chunk, "c", b"", 3).len(), 112);
    }

    #[test]
    fn a_write_only_key_seals_names_and_never_opens() {
        let full = MasterKey::generate_v2();
        let agent = full.write_only().unwrap();
        assert_eq!(agent.access(), Access::WriteOnly);
        assert_eq!(agent.chunk_id(b"x"), full.chunk_id(b"x"), "the same chunk ids: deduplication carries on");
        assert_eq!(agent.chunker_seed(), full.chunker_seed());
        let by_agent = agent.seal(ObjectKind::Chunk, "c", b"secret", 3);
        assert_eq!(full.open_chunk("c", &full.chunk_id(b"secret"), &by_agent, true).unwrap(), b"secret");
        assert_eq!(agent.open(ObjectKind::Chunk, "c", &by_agent), Err(ObjectError::WriteOnly));
        let by_full = full.seal(ObjectKind::Chunk, "c", b"old", 3);
        assert_eq!(agent.open(ObjectKind::Chunk, "c", &by_full), Err(ObjectError::WriteOnly));
        assert!(agent.admin_key().is_none() && full.admin_key().is_some());
        // Another repository's agent (another MAC key) cannot make an object this one accepts.
        let stranger = MasterKey::generate_v2().write_only().unwrap();
        let forged = MasterKey { mac: stranger.mac, ..stranger.clone() };
        let forged = MasterKey {
            recipient: Some(Recipient::from_public(&forged.mac, full.recipient.as_ref().unwrap().public())),
            ..forged
        };
        assert_eq!(
            full.open(ObjectKind::Chunk, "c", &forged.seal(ObjectKind::Chunk, "c", b"x", 3)),
            Err(ObjectError::Auth)
        );
    }

    #[test]
    fn key_material_round_trips_and_an_upgrade_reads_the_old_objects() {
        let v1 = MasterKey::generate();
        let old = v1.seal(ObjectKind::Chunk, "c", b"old", 3);
        let up = v1.upgraded();
        assert_eq!((up.format(), up.access()), (2, Access::Full));
        assert_eq!(up.chunk_id(b"x"), v1.chunk_id(b"x"));
        assert_eq!(up.open(ObjectKind::Chunk, "c", &old).unwrap(), b"old");
        let new = up.seal(ObjectKind::Chunk, "c", b"new", 3);
        assert_eq!(new[4], OBJECT_VERSION_2);
        assert_eq!(v1.open(ObjectKind::Chunk, "c", &new), Err(ObjectError::Auth), "format 1 cannot read format 2");
        assert_eq!(up.as_format_1().unwrap().seal(ObjectKind::Chunk, "c", b"x", 3)[4], OBJECT_VERSION);
        for k in [v1.clone(), up.clone(), up.write_only().unwrap(), MasterKey::generate_v2()] {
            let back = MasterKey::from_material(&k.material()).unwrap();
            assert_eq!((back.material(), back.access(), back.format()), (k.material(), k.access(), k.format()));
        }
        assert_eq!(up.material().len(), 98);
        let mut unknown = up.material();
        unknown[1] = 3;
        assert!(MasterKey::from_material(&unknown).is_none(), "unknown access byte");
        assert!(MasterKey::generate_v2().as_format_1().is_none());
    }
}
