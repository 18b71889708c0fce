//! Encryption at rest, as the API server writes it (k8s.io/apiserver
//! pkg/storage/value/encrypt): a value stored encrypted starts with
//! `k8s:enc:<provider>:v1:<key name>:` and then the provider's bytes:
//!
//! | provider    | after the prefix                                          |
//! |-------------|-----------------------------------------------------------|
//! | `aescbc`    | IV (16 bytes), AES-CBC ciphertext with PKCS#7 padding      |
//! | `aesgcm`    | nonce (12 bytes), AES-GCM ciphertext and tag; the etcd key is the additional data |
//! | `secretbox` | nonce (24 bytes), NaCl secretbox (Poly1305 tag, then XSalsa20 ciphertext) |
//! | `kms`       | a KMS envelope: the data key is wrapped by an external KMS |
//!
//! `identity` writes the plain value. KMS values cannot be decrypted without
//! the KMS, so they are reported and never guessed at.

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use base64::Engine;
use cbc::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
use kmdr_core::{Classify, ErrorClass};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The prefix of every value encrypted at rest.
pub const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";

/// What can go wrong with encryption at rest. Every message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    /// The --encryption-config file cannot be read or parsed.
    #[error("cannot use encryption config {}: {detail}. Pass the API server's --encryption-provider-config file (apiserver.config.k8s.io/v1 EncryptionConfiguration)", path.display())]
    BadConfig { path: PathBuf, detail: String },
    /// The config has no key of that name for that provider.
    #[error(
        "{key} is encrypted with {provider} key {name:?}, which the encryption config does not hold: pass the EncryptionConfiguration that was in use when the backup was taken"
    )]
    UnknownKey { key: String, provider: String, name: String },
    /// The key of that name does not decrypt the value.
    #[error(
        "{key}: {provider} key {name:?} from the encryption config does not decrypt it ({detail}): the config's key differs from the one the API server used"
    )]
    WrongKey { key: String, provider: String, name: String, detail: String },
    /// KMS-encrypted values need the KMS.
    #[error(
        "{key} is encrypted by the KMS provider {name:?}: it can only be decrypted through that KMS by an API server, not offline"
    )]
    Kms { key: String, name: String },
    /// The value is encrypted and no config was given.
    #[error(
        "{key} is encrypted at rest ({provider} key {name:?}): pass --encryption-config with the API server's EncryptionConfiguration to decrypt it"
    )]
    NoConfig { key: String, provider: String, name: String },
}

/// The header of an encrypted value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EncryptedHeader {
    pub provider: String,
    pub key_name: String,
}

/// Split an encrypted value into its header and the provider's bytes;
/// None when the value is not encrypted.
pub fn parse_encrypted(value: &[u8]) -> Option<(EncryptedHeader, &[u8])> {
    let rest = value.strip_prefix(ENCRYPTED_PREFIX)?;
    let mut parts = rest.splitn(4, |b| *b == b':');
    let provider = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let _version = parts.next()?;
    let key_name = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let data = parts.next()?;
    Some((EncryptedHeader { provider, key_name }, data))
}

#[derive(Debug, Deserialize)]
struct ConfigFile {
    kind: Option<String>,
    #[serde(default)]
    resources: Vec<ResourceConfig>,
}

#[derive(Debug, Deserialize)]
struct ResourceConfig {
    #[serde(default)]
    providers: Vec<ProviderConfig>,
}

#[derive(Debug, Deserialize)]
struct ProviderConfig {
    aescbc: Option<KeysConfig>,
    aesgcm: Option<KeysConfig>,
    secretbox: Option<KeysConfig>,
}

#[derive(Debug, Deserialize)]
struct KeysConfig {
    #[serde(default)]
    keys: Vec<KeyConfig>,
}

#[derive(Debug, Deserialize)]
struct KeyConfig {
    name: String,
    secret: String,
}

/// The keys of an EncryptionConfiguration, by provider and name.
#[derive(Debug, Default)]
pub struct EncryptionKeys {
    keys: Vec<(String, String, Vec<u8>)>,
}

impl EncryptionKeys {
    /// Read an apiserver.config.k8s.io/v1 EncryptionConfiguration file.
    pub fn load(path: &Path) -> Result<EncryptionKeys, EncryptionError> {
        let bad = |detail: String| EncryptionError::BadConfig { path: path.to_path_buf(), detail };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        Self::parse(&text).map_err(bad)
    }

    /// Parse the YAML (or JSON) text of an EncryptionConfiguration (e.g.
    /// read out of a node-files backup); `path` names it in errors.
    pub fn from_text(path: &Path, text: &str) -> Result<EncryptionKeys, EncryptionError> {
        Self::parse(text).map_err(|detail| EncryptionError::BadConfig { path: path.to_path_buf(), detail })
    }

    fn parse(text: &str) -> Result<EncryptionKeys, String> {
        let cfg: ConfigFile = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        if cfg.kind.as_deref().is_some_and(|k| k != "EncryptionConfiguration") {
            return Err(format!("kind is {:?}, not EncryptionConfiguration", cfg.kind.unwrap_or_default()));
        }
        let mut keys = Vec::new();
        for p in cfg.resources.iter().flat_map(|r| &r.providers) {
            for (provider, ks) in [("aescbc", &p.aescbc), ("aesgcm", &p.aesgcm), ("secretbox", &p.secretbox)] {
                for k in ks.iter().flat_map(|k| &k.keys) {
                    let secret = base64::engine::general_purpose::STANDARD
                        .decode(k.secret.trim())
                        .map_err(|e| format!("{provider} key {:?}: the secret is not base64: {e}", k.name))?;
                    let ok = match provider {
                        "secretbox" => secret.len() == 32,
                        _ => matches!(secret.len(), 16 | 24 | 32),
                    };
                    if !ok {
                        return Err(format!(
                            "{provider} key {:?} is {} bytes, which {provider} does not accept",
                            k.name,
                            secret.len()
                        ));
                    }
                    keys.push((provider.to_string(), k.name.clone(), secret));
                }
            }
        }
        if keys.is_empty() {
            return Err("it holds no aescbc, aesgcm or secretbox key".into());
        }
        Ok(EncryptionKeys { keys })
    }

    /// Every key's provider and name, in the file's order (never its secret).
    pub fn names(&self) -> Vec<(String, String)> {
        self.keys.iter().map(|(p, n, _)| (p.clone(), n.clone())).collect()
    }

    /// Every key's provider, name and fingerprint: the first 16 hex digits
    /// of a domain-separated sha256 of its secret. It tells two keys of the
    /// same name apart (a rotation that reused the name) and cannot give
    /// the secret back.
    pub fn fingerprints(&self) -> Vec<(String, String, String)> {
        use sha2::{Digest, Sha256};
        self.keys
            .iter()
            .map(|(p, n, k)| {
                let h = Sha256::new().chain_update(b"kmdr encryption key fingerprint v1\0").chain_update(k).finalize();
                (p.clone(), n.clone(), hex::encode(&h[..8]))
            })
            .collect()
    }

    fn key(&self, provider: &str, name: &str) -> Option<&[u8]> {
        self.keys.iter().find(|(p, n, _)| p == provider && n == name).map(|(_, _, k)| k.as_slice())
    }

    /// Decrypt the value stored at etcd key `key`.
    pub fn decrypt(&self, key: &str, header: &EncryptedHeader, data: &[u8]) -> Result<Vec<u8>, EncryptionError> {
        if header.provider == "kms" {
            return Err(EncryptionError::Kms { key: key.into(), name: header.key_name.clone() });
        }
        let secret = self.key(&header.provider, &header.key_name).ok_or_else(|| EncryptionError::UnknownKey {
            key: key.into(),
            provider: header.provider.clone(),
            name: header.key_name.clone(),
        })?;
        let wrong = |detail: &str| EncryptionError::WrongKey {
            key: key.into(),
            provider: header.provider.clone(),
            name: header.key_name.clone(),
            detail: detail.into(),
        };
        match header.provider.as_str() {
            "aescbc" => aes_cbc(secret, data).ok_or_else(|| wrong("bad padding")),
            "aesgcm" => aes_gcm(secret, data, key.as_bytes()).ok_or_else(|| wrong("authentication failed")),
            "secretbox" => secretbox(secret, data).ok_or_else(|| wrong("authentication failed")),
            other => Err(wrong(&format!("unknown provider {other}"))),
        }
    }
}

fn aes_cbc(key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 32 || !data.len().is_multiple_of(16) {
        return None;
    }
    let (iv, ct) = data.split_at(16);
    let mut buf = ct.to_vec();
    let n = match key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
            .ok()?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .ok()?
            .len(),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(key, iv)
            .ok()?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .ok()?
            .len(),
        32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
            .ok()?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .ok()?
            .len(),
        _ => return None,
    };
    buf.truncate(n);
    Some(buf)
}

fn aes_gcm(key: &[u8], data: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 12 + 16 {
        return None;
    }
    let (nonce, ct) = data.split_at(12);
    let nonce = aes_gcm::Nonce::from_slice(nonce);
    let payload = Payload { msg: ct, aad };
    match key.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(key).ok()?.decrypt(nonce, payload).ok(),
        24 => aes_gcm::AesGcm::<aes::Aes192, aes_gcm::aead::consts::U12>::new_from_slice(key)
            .ok()?
            .decrypt(nonce, payload)
            .ok(),
        32 => aes_gcm::Aes256Gcm::new_from_slice(key).ok()?.decrypt(nonce, payload).ok(),
        _ => None,
    }
}

fn secretbox(key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 24 + 16 {
        return None;
    }
    let (nonce, sealed) = data.split_at(24);
    // NaCl's layout: the Poly1305 tag first, then the ciphertext.
    let (tag, ct) = sealed.split_at(16);
    let cipher = crypto_secretbox::XSalsa20Poly1305::new_from_slice(key).ok()?;
    let mut buf = ct.to_vec();
    cipher
        .decrypt_in_place_detached(
            crypto_secretbox::Nonce::from_slice(nonce),
            b"",
            &mut buf,
            crypto_secretbox::Tag::from_slice(tag),
        )
        .ok()?;
    Some(buf)
}

impl Classify for EncryptionError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_header() {
        let (h, data) = parse_encrypted(b"k8s:enc:aescbc:v1:key1:\x00\x01:x").unwrap();
        assert_eq!(h, EncryptedHeader { provider: "aescbc".into(), key_name: "key1".into() });
        assert_eq!(data, b"\x00\x01:x");
        assert!(parse_encrypted(b"k8s\x00...").is_none());
        assert!(parse_encrypted(b"{\"kind\":1}").is_none());
    }

    #[test]
    fn config_rejects_bad_keys_and_kms_is_never_guessed() {
        assert!(
            EncryptionKeys::parse("kind: EncryptionConfiguration\nresources: []\n").unwrap_err().contains("no aescbc")
        );
        let short = "resources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: k\n        secret: AAAA\n";
        assert!(EncryptionKeys::parse(short).unwrap_err().contains("3 bytes"));
        let ok = "resources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - name: k\n        secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n  - identity: {}\n";
        let keys = EncryptionKeys::parse(ok).unwrap();
        let e = keys.decrypt(
            "/registry/secrets/a/b",
            &EncryptedHeader { provider: "kms".into(), key_name: "vault".into() },
            b"x",
        );
        assert!(matches!(e, Err(EncryptionError::Kms { .. })));
        let e = keys.decrypt(
            "/registry/secrets/a/b",
            &EncryptedHeader { provider: "aescbc".into(), key_name: "other".into() },
            b"x",
        );
        assert!(matches!(e, Err(EncryptionError::UnknownKey { .. })));
        let e = keys.decrypt(
            "/registry/secrets/a/b",
            &EncryptedHeader { provider: "aescbc".into(), key_name: "k".into() },
            &[0u8; 48],
        );
        assert!(matches!(e, Err(EncryptionError::WrongKey { .. })), "{e:?}");
    }

    #[test]
    fn fingerprints_tell_secrets_apart_and_hide_them() {
        let cfg = |name: &str, secret: &str| {
            format!(
                "resources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - name: {name}\n        secret: {secret}\n"
            )
        };
        let a = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let b = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
        let fp = |text: &str| EncryptionKeys::parse(text).unwrap().fingerprints();
        let (one, again, other) = (fp(&cfg("k", a)), fp(&cfg("k", a)), fp(&cfg("k", b)));
        assert_eq!(one, again, "stable");
        assert_ne!(one[0].2, other[0].2, "another secret under the same name");
        assert_eq!((one[0].0.as_str(), one[0].1.as_str(), one[0].2.len()), ("aescbc", "k", 16));
        let raw = base64::engine::general_purpose::STANDARD.decode(a).unwrap();
        assert!(!one[0].2.contains(&hex::encode(&raw[..4])), "not the secret's bytes");
        let from_text = EncryptionKeys::from_text(Path::new("enc.yaml"), "kind: Secret\n");
        assert!(matches!(from_text, Err(EncryptionError::BadConfig { .. })));
    }
}
