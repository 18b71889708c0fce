//! Which cluster identity an under-cluster etcd snapshot needs, and which
//! node-files backup holds it.
//!
//! An API server started on a restored etcd must have the CA the cluster's
//! tokens and client certificates chain to, and the keys its Secrets were
//! encrypted with. A snapshot records both (without key material: the CA's
//! fingerprint, each key's provider, name and fingerprint) in
//! [`EtcdSnapshotInfo::needs`](kmdr_core::EtcdSnapshotInfo), read from the
//! node's files at backup time or from the node-files backup taken with it.
//! Before a restore, [`pair`] finds the node-files backup that holds them, or
//! says what none holds.

use crate::node_files::{self, NodeFilesError};
use kmdr_core::{ClusterIdentity, EncryptionKeyInfo, Manifest, SourceInfo};
use kmdr_repo::Repository;
use serde::Serialize;
use std::path::Path;

/// Where kubeadm keeps the cluster CA.
pub const CA_PATH: &str = "/etc/kubernetes/pki/ca.crt";

/// The identity a node-files backup holds: its cluster CA (the CA
/// certificate at `…/pki/ca.crt`) and every encryption key. `None` for
/// another kind of backup.
pub fn of_node_files(m: &Manifest) -> Option<ClusterIdentity> {
    let SourceInfo::NodeFiles(n) = &m.source else { return None };
    let ca = n.certificates.iter().find(|c| c.ca && c.path.ends_with("pki/ca.crt")).cloned();
    Some(ClusterIdentity { ca, encryption_keys: n.encryption_keys.clone(), from: m.id.to_string() })
}

/// The identity of the files on this node (under `root`: `/`, or a mounted
/// disk): the CA certificate at `ca_cert` and the keys of the
/// EncryptionConfiguration at `encryption_config`, each as on the node.
pub fn live(
    root: &Path,
    ca_cert: Option<&str>,
    encryption_config: Option<&str>,
) -> Result<ClusterIdentity, NodeFilesError> {
    let under = |p: &str| root.join(p.trim_start_matches('/'));
    let ca = match ca_cert {
        None => None,
        Some(p) => node_files::certificates_of(&under(p), p)?.into_iter().next(),
    };
    let encryption_keys = match encryption_config {
        None => Vec::new(),
        Some(p) => node_files::encryption_keys(&under(p), p)?,
    };
    Ok(ClusterIdentity { ca, encryption_keys, from: "live".into() })
}

/// How a snapshot's needs are met by the repository's node-files backups.
#[derive(Debug, Clone, Serialize)]
pub struct Pairing {
    /// What the snapshot records it needs (`None`: it records nothing).
    pub needs: Option<ClusterIdentity>,
    /// The newest node-files backup that holds all of it.
    pub holder: Option<String>,
    /// What no node-files backup holds, one phrase each.
    pub missing: Vec<String>,
}

impl Pairing {
    /// The snapshot says what it needs and a node-files backup holds it.
    pub fn paired(&self) -> bool {
        self.needs.is_some() && self.holder.is_some()
    }

    /// Something it needs is in no backup: the restored cluster will not
    /// accept its tokens or read its Secrets without files from elsewhere.
    pub fn broken(&self) -> bool {
        self.needs.is_some() && self.holder.is_none()
    }

    /// One line for people: what it needs and where it is, or what to do.
    pub fn line(&self) -> String {
        let Some(needs) = &self.needs else {
            return "this snapshot does not record which cluster CA and encryption keys it needs (taken without node files): \
                    start the API server with the PKI and EncryptionConfiguration of the cluster it was taken from"
                .into();
        };
        let what = describe(needs);
        match &self.holder {
            Some(id) => format!(
                "it needs {what}: node-files backup {id} holds them; restore it before kubeadm init (`kmdr restore node-files {id} --to /`)"
            ),
            None => format!(
                "it needs {what}, but no node-files backup in this repository holds {}: an API server on this etcd without them \
                 rejects every token and client certificate and cannot read the encrypted Secrets; find those files first",
                self.missing.join(", ")
            ),
        }
    }
}

/// `the cluster CA CN=kubernetes (sha256 0a1b…) and encryption keys aescbc/key1, secretbox/key2`.
pub fn describe(i: &ClusterIdentity) -> String {
    let mut parts = Vec::new();
    if let Some(ca) = &i.ca {
        parts.push(format!("the cluster CA {} (sha256 {})", ca.subject, short(&ca.sha256)));
    }
    if !i.encryption_keys.is_empty() {
        let keys: Vec<String> = i.encryption_keys.iter().map(key_name).collect();
        parts.push(format!("encryption key(s) {}", keys.join(", ")));
    }
    if parts.is_empty() { "nothing kmdr can check".into() } else { parts.join(" and ") }
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(16)]
}

fn key_name(k: &EncryptionKeyInfo) -> String {
    format!("{}/{}", k.provider, k.name)
}

/// Whether `have` holds the key `want` (same provider and name, and the same
/// secret where both know its fingerprint).
pub fn holds_key(have: &[EncryptionKeyInfo], want: &EncryptionKeyInfo) -> bool {
    have.iter().any(|k| {
        k.provider == want.provider
            && k.name == want.name
            && (k.fingerprint.is_empty() || want.fingerprint.is_empty() || k.fingerprint == want.fingerprint)
    })
}

/// Whether `have` (a node-files backup's identity) holds all of `needs`.
pub fn holds(have: &ClusterIdentity, needs: &ClusterIdentity) -> bool {
    let ca_ok = match (&needs.ca, &have.ca) {
        (None, _) => true,
        (Some(n), Some(h)) => n.sha256 == h.sha256,
        (Some(_), None) => false,
    };
    ca_ok && needs.encryption_keys.iter().all(|k| holds_key(&have.encryption_keys, k))
}

/// Find the newest node-files backup that holds what `needs` names.
pub async fn pair(repo: &Repository, needs: Option<&ClusterIdentity>) -> Result<Pairing, kmdr_repo::Error> {
    let Some(needs) = needs else { return Ok(Pairing { needs: None, holder: None, missing: Vec::new() }) };
    let mut held: Vec<ClusterIdentity> = Vec::new();
    for id in repo.list_backups().await?.iter().rev().filter(|i| i.kind() == node_files::KIND) {
        let Some(have) = of_node_files(&repo.load_manifest(id).await?) else { continue };
        if holds(&have, needs) {
            return Ok(Pairing { needs: Some(needs.clone()), holder: Some(id.to_string()), missing: Vec::new() });
        }
        held.push(have);
    }
    let mut missing = Vec::new();
    if let Some(ca) = &needs.ca
        && !held.iter().any(|h| h.ca.as_ref().is_some_and(|c| c.sha256 == ca.sha256))
    {
        missing.push(format!("the cluster CA {} (sha256 {})", ca.subject, short(&ca.sha256)));
    }
    for k in needs.encryption_keys.iter().filter(|k| !held.iter().any(|h| holds_key(&h.encryption_keys, k))) {
        missing.push(format!("encryption key {}", key_name(k)));
    }
    if missing.is_empty() {
        missing.push("all of it in one backup (restore several node-files backups)".into());
    }
    Ok(Pairing { needs: Some(needs.clone()), holder: None, missing })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmdr_core::CertificateInfo;

    fn ca(sha: &str) -> CertificateInfo {
        CertificateInfo {
            path: CA_PATH.into(),
            subject: "CN=kubernetes".into(),
            sha256: sha.into(),
            not_after: "2036-01-01T00:00:00+00:00".into(),
            ca: true,
        }
    }

    fn key(name: &str, fp: &str) -> EncryptionKeyInfo {
        EncryptionKeyInfo {
            path: "/etc/kubernetes/enc.yaml".into(),
            provider: "aescbc".into(),
            name: name.into(),
            fingerprint: fp.into(),
        }
    }

    fn id(ca_sha: Option<&str>, keys: Vec<EncryptionKeyInfo>) -> ClusterIdentity {
        ClusterIdentity { ca: ca_sha.map(ca), encryption_keys: keys, from: "live".into() }
    }

    #[test]
    fn a_backup_holds_what_matches_by_fingerprint() {
        let have = id(Some("aa"), vec![key("key1", "f1"), key("key2", "f2")]);
        assert!(holds(&have, &id(Some("aa"), vec![key("key2", "f2")])));
        assert!(holds(&have, &id(None, vec![key("key1", "")])), "an older record without fingerprint matches by name");
        assert!(!holds(&have, &id(Some("bb"), vec![])), "another CA");
        assert!(!holds(&have, &id(None, vec![key("key1", "f9")])), "a rotated key that kept its name");
        assert!(!holds(&have, &id(None, vec![key("key3", "f3")])));
        assert!(!holds(&id(None, vec![key("key1", "f1")]), &id(Some("aa"), vec![])), "no CA in the backup");
    }

    #[test]
    fn lines_say_what_is_needed_and_where() {
        let needs = id(Some("0123456789abcdef0123"), vec![key("key1", "f1")]);
        let p = Pairing {
            needs: Some(needs.clone()),
            holder: Some("20261207T050000Z-node-files-ab12".into()),
            missing: vec![],
        };
        assert!(p.paired() && !p.broken());
        assert!(p.line().contains("CN=kubernetes (sha256 0123456789abcdef)"), "{}", p.line());
        assert!(p.line().contains("kmdr restore node-files 20261207T050000Z-node-files-ab12 --to /"));
        let p = Pairing { needs: Some(needs), holder: None, missing: vec!["encryption key aescbc/key1".into()] };
        assert!(
            p.broken() && p.line().contains("no node-files backup in this repository holds encryption key aescbc/key1")
        );
        let p = Pairing { needs: None, holder: None, missing: vec![] };
        assert!(!p.paired() && !p.broken() && p.line().contains("does not record"));
    }
}
