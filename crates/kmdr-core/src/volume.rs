//! The `volumes:` entries of a plan: which volume backup tool (CSI
//! snapshots, Velero, Kasten K10) and its settings. Plain values, so that the
//! plan format needs no Kubernetes client; `kmdr-kube`'s `volumes` drives the
//! tools with them.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One `volumes:` entry of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeEntry {
    /// A DNS label: names the unit, the series and the objects kmdr creates.
    pub name: String,
    pub provider: ProviderSpec,
    /// How long a backup or restore may take before kmdr gives up waiting.
    #[serde(with = "secs")]
    pub timeout: Duration,
    /// How often kmdr looks at the tool's objects while waiting.
    #[serde(skip)]
    pub poll: Duration,
}

/// Which tool, and its settings.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "provider", rename_all = "kebab-case")]
pub enum ProviderSpec {
    Csi(CsiSpec),
    Velero(VeleroSpec),
    Kasten(KastenSpec),
}

impl ProviderSpec {
    pub fn name(&self) -> &'static str {
        match self {
            ProviderSpec::Csi(_) => "csi",
            ProviderSpec::Velero(_) => "velero",
            ProviderSpec::Kasten(_) => "kasten",
        }
    }
}

/// `provider: csi` settings.
#[derive(Debug, Clone, Serialize)]
pub struct CsiSpec {
    /// The PVCs' namespace.
    pub namespace: String,
    /// Label selector of the PVCs (`app=db`); or `pvcs`.
    pub selector: Option<String>,
    /// PVC names; or `selector`.
    pub pvcs: Vec<String>,
    /// The `VolumeSnapshotClass` to snapshot with.
    pub snapshot_class: String,
    /// Restore the PVCs into this namespace instead of their own.
    pub restore_namespace: Option<String>,
}

/// `provider: velero` settings.
#[derive(Debug, Clone, Serialize)]
pub struct VeleroSpec {
    /// Velero's namespace (default `velero`).
    pub namespace: String,
    /// `spec.includedNamespaces`.
    pub included_namespaces: Vec<String>,
    /// `spec.labelSelector.matchLabels`.
    pub label_selector: BTreeMap<String, String>,
    /// `spec.snapshotMoveData`.
    pub snapshot_move_data: Option<bool>,
    /// `spec.ttl` (a Go duration, e.g. `720h0m0s`).
    pub ttl: Option<String>,
    /// `spec.storageLocation`.
    pub storage_location: Option<String>,
    /// Use the newest Completed Backup of this Schedule instead of creating one.
    pub schedule: Option<String>,
    /// `spec.namespaceMapping` of the Restore: restore every included
    /// namespace into this one.
    pub restore_namespace: Option<String>,
}

/// `provider: kasten` settings.
#[derive(Debug, Clone, Serialize)]
pub struct KastenSpec {
    /// K10's namespace (default `kasten-io`), where its policies live.
    pub namespace: String,
    /// The K10 Policy to run.
    pub policy: String,
    /// The application namespace the policy protects (where its RestorePoints are).
    pub app_namespace: String,
    /// Restore into this namespace instead of the application's.
    pub restore_namespace: Option<String>,
}

/// Durations as seconds in JSON.
mod secs {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}
