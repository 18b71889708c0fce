//! Format 2's public-key sealing (docs/design.md section 3, "Version 2"):
//! every object's key is derived from an X25519 agreement between an
//! ephemeral key of the writer and the repository's recipient key, and from
//! an authentication key that only key holders have. A write-only key holds
//! the recipient's public half: it can seal, never open.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use x25519_dalek::{PublicKey, StaticSecret};

/// HKDF `info` of an object key.
const OBJECT_INFO: &[u8] = b"kmdr object v2";
/// HMAC message deriving the authentication key from the MAC key.
const AUTH_LABEL: &[u8] = b"kmdr object auth v2";
/// A writer's ephemeral key is replaced after this long, so that one taken
/// from a running agent's memory opens at most this much of what it wrote.
const SESSION_LIFETIME: Duration = Duration::from_secs(3600);
/// Object keys a reader keeps (one per writer session it met).
const OPENED_CACHE: usize = 4096;

/// The writer's current ephemeral key: its public half and the object key it yields.
#[derive(Clone, Copy)]
struct Session {
    started: Instant,
    ephemeral: [u8; 32],
    key: [u8; 32],
}

/// The repository's recipient key, with or without its secret half.
#[derive(Clone)]
pub(crate) struct Recipient {
    public: [u8; 32],
    secret: Option<[u8; 32]>,
    auth: [u8; 32],
    session: Arc<Mutex<Option<Session>>>,
    opened: Arc<Mutex<HashMap<[u8; 32], [u8; 32]>>>,
}

/// Why no object key could be made.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyError {
    /// The key has no secret half.
    WriteOnly,
    /// The ephemeral public key is a low-order point (an all-zero agreement).
    Degenerate,
}

fn auth_key(mac: &[u8; 32]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(mac).expect("any key length works");
    m.update(AUTH_LABEL);
    m.finalize().into_bytes().into()
}

/// `HKDF-SHA256(salt = ephemeral || recipient, ikm = shared || auth, info = "kmdr object v2")`.
fn object_key(shared: &[u8; 32], auth: &[u8; 32], ephemeral: &[u8; 32], recipient: &[u8; 32]) -> [u8; 32] {
    let salt = [&ephemeral[..], &recipient[..]].concat();
    let ikm = [&shared[..], &auth[..]].concat();
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&salt), &ikm).expand(OBJECT_INFO, &mut out).expect("32 bytes is a valid length");
    out
}

impl Recipient {
    /// A new random recipient key pair.
    pub(crate) fn generate(mac: &[u8; 32]) -> Recipient {
        let secret = StaticSecret::random_from_rng(rand::thread_rng());
        Recipient::from_secret(mac, secret.to_bytes())
    }

    pub(crate) fn from_secret(mac: &[u8; 32], secret: [u8; 32]) -> Recipient {
        let public = PublicKey::from(&StaticSecret::from(secret)).to_bytes();
        Recipient::new(mac, public, Some(secret))
    }

    pub(crate) fn from_public(mac: &[u8; 32], public: [u8; 32]) -> Recipient {
        Recipient::new(mac, public, None)
    }

    fn new(mac: &[u8; 32], public: [u8; 32], secret: Option<[u8; 32]>) -> Recipient {
        Recipient {
            public,
            secret,
            auth: auth_key(mac),
            session: Arc::new(Mutex::new(None)),
            opened: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub(crate) fn public(&self) -> [u8; 32] {
        self.public
    }

    pub(crate) fn secret(&self) -> Option<[u8; 32]> {
        self.secret
    }

    /// The same recipient without its secret half.
    pub(crate) fn without_secret(&self) -> Recipient {
        Recipient { secret: None, session: Arc::new(Mutex::new(None)), ..self.clone() }
    }

    /// The ephemeral public key and object key to seal with now: one X25519
    /// agreement per writer session (an hour), not per object.
    pub(crate) fn sealing_key(&self) -> ([u8; 32], [u8; 32]) {
        let mut session = self.session.lock().expect("session lock");
        match *session {
            Some(s) if s.started.elapsed() < SESSION_LIFETIME => (s.ephemeral, s.key),
            _ => {
                let eph = StaticSecret::random_from_rng(rand::thread_rng());
                let ephemeral = PublicKey::from(&eph).to_bytes();
                let shared = eph.diffie_hellman(&PublicKey::from(self.public)).to_bytes();
                let key = object_key(&shared, &self.auth, &ephemeral, &self.public);
                *session = Some(Session { started: Instant::now(), ephemeral, key });
                (ephemeral, key)
            }
        }
    }

    /// The object key of objects sealed under `ephemeral`.
    pub(crate) fn opening_key(&self, ephemeral: &[u8; 32]) -> Result<[u8; 32], KeyError> {
        let secret = self.secret.ok_or(KeyError::WriteOnly)?;
        if let Some(k) = self.opened.lock().expect("cache lock").get(ephemeral) {
            return Ok(*k);
        }
        let shared = StaticSecret::from(secret).diffie_hellman(&PublicKey::from(*ephemeral));
        if !shared.was_contributory() {
            return Err(KeyError::Degenerate);
        }
        let key = object_key(shared.as_bytes(), &self.auth, ephemeral, &self.public);
        let mut cache = self.opened.lock().expect("cache lock");
        if cache.len() >= OPENED_CACHE {
            cache.clear();
        }
        cache.insert(*ephemeral, key);
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_and_reader_agree_and_only_the_reader_opens() {
        let mac = [7u8; 32];
        let full = Recipient::generate(&mac);
        let writer = full.without_secret();
        let (eph, key) = writer.sealing_key();
        assert_eq!(writer.sealing_key(), (eph, key), "one agreement per session");
        assert_eq!(full.opening_key(&eph).unwrap(), key);
        assert_eq!(writer.opening_key(&eph), Err(KeyError::WriteOnly));
        // Another MAC key (another repository's writer) derives another key.
        let other = Recipient::from_public(&[8u8; 32], full.public());
        let (eph2, key2) = other.sealing_key();
        assert_ne!(full.opening_key(&eph2).unwrap(), key2);
        // A low-order point is refused rather than giving a predictable key.
        assert_eq!(full.opening_key(&[0u8; 32]), Err(KeyError::Degenerate));
    }
}
