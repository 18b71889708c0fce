//! How each kind of unit reaches its system: the cluster of the Kamaji
//! objects, the platform's release and a volumes entry, the options of their
//! backups, the series their backups go in, and a volumes entry's restore.

use crate::plan::{HelmSource, KamajiSource, NodeFilesSpec, VolumeSpec};
use kmdr_kube::client::{KubeClient, KubeTarget};
use kmdr_kube::node_files;
use kmdr_kube::platform::{PlatformBackupOptions, PlatformError};
use kmdr_kube::volumes::{self, VolumeError};
use kmdr_repo::Repository;
use std::collections::BTreeMap;

/// The series of a Helm release's backups.
pub fn helm_series(h: &HelmSource) -> String {
    format!("platform/{}/{}", h.namespace, h.release)
}

/// Restore one volumes entry from the record `id`: plan it (reading the
/// cluster only), then, unless `dry_run`, carry it out. Returns the volumes
/// or tool restores completed (planned, on a dry run) and one line per object.
pub(crate) async fn restore_volume(
    repo: &Repository,
    v: &VolumeSpec,
    id: &str,
    dry_run: bool,
) -> Result<(u64, Vec<String>), VolumeError> {
    let m = repo.load_manifest(&repo.resolve(id, Some(volumes::KIND)).await?).await?;
    let record = volumes::record(&m, &v.entry.name)?;
    let kube = KubeClient::connect(&volume_target(v)).await?;
    let plan = volumes::plan_restore(&kube, &v.entry, record).await?;
    let lines: Vec<String> = plan
        .objects
        .iter()
        .map(|o| {
            format!(
                "{} {} {}{}: {}",
                o.action,
                o.kind,
                o.namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default(),
                o.name,
                o.note
            )
        })
        .collect();
    if dry_run {
        let n = plan
            .objects
            .iter()
            .filter(|o| {
                o.action == "create" && matches!(o.kind.as_str(), "PersistentVolumeClaim" | "Restore" | "RestoreAction")
            })
            .count();
        return Ok((n as u64, lines));
    }
    let done = volumes::restore(&kube, &v.entry, &plan).await?;
    Ok((done.restored, lines))
}

/// The backup options of a plan's `nodeFiles:`.
pub fn node_files_options(n: &NodeFilesSpec, tags: &BTreeMap<String, String>) -> node_files::NodeFilesOptions {
    node_files::NodeFilesOptions {
        paths: n.paths.clone(),
        encryption_config: n.encryption_config.clone(),
        leaf_certs: n.leaf_certs,
        root: n.root.clone(),
        tags: tags.clone(),
    }
}

/// The unit name and series of the Kamaji objects.
pub const KAMAJI_UNIT: &str = "kamaji";
pub const KAMAJI_SERIES: &str = "tenants/all";

/// How to reach the Kamaji objects' cluster.
pub fn kamaji_target(k: &KamajiSource) -> KubeTarget {
    KubeTarget { kubeconfig: k.kubeconfig.clone(), context: k.context.clone(), ..Default::default() }
}

/// How to reach a volumes entry's cluster.
pub fn volume_target(v: &VolumeSpec) -> KubeTarget {
    KubeTarget { kubeconfig: v.kubeconfig.clone(), context: v.context.clone(), ..Default::default() }
}

/// How to reach the platform's cluster.
pub fn kube_target(h: &HelmSource) -> KubeTarget {
    KubeTarget { kubeconfig: h.kubeconfig.clone(), context: h.context.clone(), ..Default::default() }
}

/// The backup options of a plan's `helm:` source.
pub fn platform_options(
    h: &HelmSource,
    tags: &BTreeMap<String, String>,
) -> Result<PlatformBackupOptions, PlatformError> {
    Ok(PlatformBackupOptions {
        release: h.release.clone(),
        namespace: h.namespace.clone(),
        secrets: h.secrets.iter().map(|s| s.parse()).collect::<Result<_, _>>()?,
        tags: tags.clone(),
    })
}
