//! What can go wrong inspecting a snapshot offline.

use crate::inspect::encryption::EncryptionError;
use kmdr_core::{Classify, ErrorClass};
use kmdr_etcd::EtcdError;
use kmdr_etcd::bbolt::BoltError;
use std::path::PathBuf;

/// What can go wrong inspecting a snapshot. Every message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The snapshot is not a readable bbolt/etcd database.
    #[error("the snapshot cannot be read: {0}. Run `kmdr verify` on the backup; inspect another backup")]
    Bolt(#[from] BoltError),
    /// Encryption at rest: no config, unknown key, wrong key, KMS.
    #[error(transparent)]
    Encryption(#[from] EncryptionError),
    /// `--kind`/`--get` names no kind kmdr can look up.
    #[error(
        "{0:?} is not a kind: use tcp, datastore, cluster, kamajicontrolplane, secret, configmap, a plural (pods) or PLURAL.GROUP (leases.coordination.k8s.io)"
    )]
    BadKind(String),
    /// The object name has the wrong shape for the kind.
    #[error("{kind} {name:?}: give {want}")]
    BadName { kind: String, name: String, want: String },
    /// No such object in the snapshot.
    #[error(
        "no {kind} {name} in the snapshot (etcd key {key} is absent or deleted): `kmdr inspect ID --kind {kind}` lists what is there"
    )]
    NotFound { kind: String, name: String, key: String },
    /// The value is neither JSON nor the protobuf envelope.
    #[error("{key}: cannot decode the stored value: {detail}")]
    Undecodable { key: String, detail: String },
    /// A protobuf kind kmdr does not decode.
    #[error(
        "{key} is stored as protobuf {kind}; kmdr decodes Secrets, ConfigMaps, Namespaces, ServiceAccounts and every JSON custom resource, not this kind"
    )]
    Unsupported { key: String, kind: String },
    /// A temp file for the snapshot cannot be written.
    #[error("{what} {}: {source}. Set TMPDIR to a directory with room for the snapshot", path.display())]
    Local {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Fetching the snapshot from the repository failed.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
}

impl Classify for InspectError {
    fn class(&self) -> ErrorClass {
        match self {
            InspectError::Bolt(_) | InspectError::Undecodable { .. } => ErrorClass::Damaged,
            InspectError::Encryption(e) => e.class(),
            InspectError::BadKind(_) | InspectError::BadName { .. } => ErrorClass::Usage,
            InspectError::NotFound { .. } => ErrorClass::NotFound,
            InspectError::Unsupported { .. } => ErrorClass::Other,
            InspectError::Local { .. } => ErrorClass::Refused,
            InspectError::Etcd(x) => x.class(),
        }
    }
}
