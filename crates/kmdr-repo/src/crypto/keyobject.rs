//! Key objects: a repository key wrapped under a key file's secret (docs/design.md section 4).

use super::{Access, MasterKey, hostname};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

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
    /// 1: the 64-byte format-1 key; 2: format 2's tagged material (section 4).
    pub format: u32,
    /// What the wrapped key may do, as written (informative: the wrapped
    /// material is what counts). Absent in format-1 key objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    pub created: chrono::DateTime<chrono::Utc>,
    pub hostname: String,
    pub kdf: KdfParams,
    pub cipher: String,
    /// Hex 24-byte nonce.
    pub nonce: String,
    /// Hex ciphertext of the wrapped key material (with tag).
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
            .encrypt(XNonce::from_slice(&nonce), master.material().as_slice())
            .expect("in-memory encryption");
        KeyObject {
            format: master.format(),
            access: (master.format() == 2).then(|| master.access()),
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
        MasterKey::from_material(&plain)
    }
}
