//! Keys and the sealed object format.
//!
//! A repository has one random 64-byte master key: 32 bytes of XChaCha20-Poly1305
//! encryption key and 32 bytes of HMAC-SHA256 key for chunk ids. The master key
//! is stored in `keys/<id>` wrapped (encrypted) under a key derived with
//! Argon2id from the secret in the user's key file; several key objects may
//! wrap the same master key.
//!
//! Every other object is sealed:
//!
//! ```text
//! 0      4  5    6     7    8                 32                     n-32     n
//! | KMDR | 1 | kind | comp | 0 | nonce (24 B) | ciphertext + tag (16 B) | sha256 |
//! ```
//!
//! The AEAD's associated data is the 32-byte header followed by the object's
//! key in the store, so an object moved to another name fails to open. The
//! trailing sha256 covers every byte before it and can be checked without the
//! key (`head -c -32 OBJ | sha256sum`).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Magic bytes at the start of every sealed object.
pub const MAGIC: &[u8; 4] = b"KMDR";
/// Version of the sealed object layout.
pub const OBJECT_VERSION: u8 = 1;
const HEADER_LEN: usize = 32;
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
}

/// The repository master key.
#[derive(Clone)]
pub struct MasterKey {
    enc: [u8; 32],
    mac: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = MasterKey { enc: [0; 32], mac: [0; 32] };
        rand::thread_rng().fill_bytes(&mut k.enc);
        rand::thread_rng().fill_bytes(&mut k.mac);
        k
    }

    fn to_bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[..32].copy_from_slice(&self.enc);
        b[32..].copy_from_slice(&self.mac);
        b
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        (b.len() == 64).then(|| {
            let mut k = MasterKey { enc: [0; 32], mac: [0; 32] };
            k.enc.copy_from_slice(&b[..32]);
            k.mac.copy_from_slice(&b[32..]);
            k
        })
    }

    /// The id of a chunk: hex HMAC-SHA256 of its plaintext.
    pub fn chunk_id(&self, plaintext: &[u8]) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.mac).expect("any key length works");
        m.update(plaintext);
        hex::encode(m.finalize().into_bytes())
    }

    /// A 64-bit seed for the chunker's gear table, so that chunk boundaries
    /// (and so chunk sizes) depend on the repository key.
    pub fn chunker_seed(&self) -> u64 {
        let id = self.chunk_id(b"kmdr chunker seed v1");
        u64::from_str_radix(&id[..16], 16).expect("hex")
    }

    /// Seal `plaintext` as the object stored at `name`. `zstd_level` 0 stores uncompressed.
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
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(MAGIC);
        header[4] = OBJECT_VERSION;
        header[5] = kind as u8;
        header[6] = comp;
        rand::thread_rng().fill_bytes(&mut header[8..32]);
        let aad = [&header[..], name.as_bytes()].concat();
        let cipher = XChaCha20Poly1305::new((&self.enc).into());
        let ct = cipher
            .encrypt(XNonce::from_slice(&header[8..32]), Payload { msg: body, aad: &aad })
            .expect("encryption of in-memory data cannot fail");
        let mut out = Vec::with_capacity(HEADER_LEN + ct.len() + SUM_LEN);
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
        if data.len() < HEADER_LEN + TAG_LEN + SUM_LEN {
            return Err(ObjectError::Truncated(data.len()));
        }
        if &data[..4] != MAGIC || data[4] != OBJECT_VERSION {
            return Err(ObjectError::Format);
        }
        let header = &data[..HEADER_LEN];
        if header[5] != kind as u8 {
            return Err(ObjectError::Kind { found: header[5], expected: kind });
        }
        let aad = [header, name.as_bytes()].concat();
        let cipher = XChaCha20Poly1305::new((&self.enc).into());
        let body = cipher
            .decrypt(
                XNonce::from_slice(&header[8..32]),
                Payload { msg: &data[HEADER_LEN..data.len() - SUM_LEN], aad: &aad },
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

/// Check a sealed object's length, magic, version and trailing sha256 (no key needed).
pub fn check_sum(data: &[u8]) -> Result<(), ObjectError> {
    if data.len() < HEADER_LEN + TAG_LEN + SUM_LEN {
        return Err(ObjectError::Truncated(data.len()));
    }
    let (body, sum) = data.split_at(data.len() - SUM_LEN);
    if Sha256::digest(body).as_slice() != sum {
        return Err(ObjectError::Checksum);
    }
    if &data[..4] != MAGIC || data[4] != OBJECT_VERSION {
        return Err(ObjectError::Format);
    }
    Ok(())
}

/// Argon2id parameters of a key object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    pub algorithm: String,
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    /// Hex salt.
    pub salt: String,
}

/// The JSON stored at `keys/<id>`: the master key wrapped under the user's secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyObject {
    pub format: u32,
    pub created: chrono::DateTime<chrono::Utc>,
    pub hostname: String,
    pub kdf: KdfParams,
    pub cipher: String,
    /// Hex 24-byte nonce.
    pub nonce: String,
    /// Hex ciphertext of the 64-byte master key (with tag).
    pub wrapped_master_key: String,
}

fn derive_kek(secret: &[u8], kdf: &KdfParams) -> Option<[u8; 32]> {
    if kdf.algorithm != "argon2id" {
        return None;
    }
    let params = argon2::Params::new(kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, Some(32)).ok()?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = hex::decode(&kdf.salt).ok()?;
    let mut out = [0u8; 32];
    a.hash_password_into(secret, &salt, &mut out).ok()?;
    Some(out)
}

impl KeyObject {
    /// Wrap `master` under `secret` (the content of a key file).
    pub fn wrap(master: &MasterKey, secret: &[u8]) -> Self {
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        // OWASP's recommended Argon2id minimum: 19 MiB, 2 passes.
        let kdf = KdfParams {
            algorithm: "argon2id".into(),
            m_cost_kib: 19 * 1024,
            t_cost: 2,
            p_cost: 1,
            salt: hex::encode(salt),
        };
        let kek = derive_kek(secret, &kdf).expect("valid built-in parameters");
        let mut nonce = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = XChaCha20Poly1305::new((&kek).into())
            .encrypt(XNonce::from_slice(&nonce), master.to_bytes().as_slice())
            .expect("in-memory encryption");
        KeyObject {
            format: 1,
            created: chrono::Utc::now(),
            hostname: hostname(),
            kdf,
            cipher: "xchacha20poly1305".into(),
            nonce: hex::encode(nonce),
            wrapped_master_key: hex::encode(ct),
        }
    }

    /// The salt, as bytes (used to name the key object).
    pub fn salt_bytes(&self) -> Vec<u8> {
        hex::decode(&self.kdf.salt).unwrap_or_default()
    }

    /// Unwrap the master key; `None` when `secret` is not the right one.
    pub fn unwrap(&self, secret: &[u8]) -> Option<MasterKey> {
        let kek = derive_kek(secret, &self.kdf)?;
        let nonce = hex::decode(&self.nonce).ok().filter(|n| n.len() == 24)?;
        let ct = hex::decode(&self.wrapped_master_key).ok()?;
        let plain = XChaCha20Poly1305::new((&kek).into()).decrypt(XNonce::from_slice(&nonce), ct.as_slice()).ok()?;
        MasterKey::from_bytes(&plain)
    }
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
        assert_eq!(ko.unwrap(b"secret one").unwrap().to_bytes(), m.to_bytes());
        assert!(ko.unwrap(b"secret two").is_none());
        assert_eq!(secret_from_file_content(b"abc \n\n"), b"abc");
        assert_eq!(generate_secret().len(), 65);
    }
}
