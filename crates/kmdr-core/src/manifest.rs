//! The manifest: the one object that makes a backup exist. It names every
//! chunk of every file the backup holds, records where the data came from and
//! how long taking it took. Its JSON shape is specified in `docs/design.md`;
//! fields are only ever added (readers ignore unknown fields), and
//! `MANIFEST_FORMAT` changes when a reader must refuse an older kmdr.

use crate::BackupId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the manifest JSON layout.
pub const MANIFEST_FORMAT: u32 = 1;

/// The four layers of the kMetal runbook, in recovery order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    UnderCluster,
    Platform,
    TenantControlPlanes,
    PersistentData,
    /// A layer a newer kmdr knows; kept so that such backups still list and prune.
    #[serde(other)]
    Unknown,
}

impl Layer {
    /// Every layer, in the order a full recovery restores them.
    pub const ALL: [Layer; 4] =
        [Layer::UnderCluster, Layer::Platform, Layer::TenantControlPlanes, Layer::PersistentData];

    /// The layer's name as written in plans and manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::UnderCluster => "under-cluster",
            Layer::Platform => "platform",
            Layer::TenantControlPlanes => "tenant-control-planes",
            Layer::PersistentData => "persistent-data",
            Layer::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One chunk of a file: its id (keyed hash of the plaintext) and plaintext length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// Hex HMAC-SHA256 of the chunk's plaintext under the repository MAC key.
    pub id: String,
    /// Plaintext length in bytes.
    pub len: u64,
}

/// One logical file of a backup (an etcd snapshot, a table dump, a manifest set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name inside the backup, e.g. `snapshot.db`.
    pub name: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Hex sha256 of the whole plaintext file (what `sha256sum` prints).
    pub sha256: String,
    /// The chunks, in order; their concatenation is the file.
    pub chunks: Vec<ChunkRef>,
}

/// What an etcd snapshot backup recorded about its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdSnapshotInfo {
    /// The endpoint the snapshot was streamed from.
    pub endpoint: String,
    /// Every endpoint given on the command line.
    pub endpoints: Vec<String>,
    /// Cluster id, hex.
    pub cluster_id: String,
    /// Member id of the member that produced the snapshot, hex.
    pub member_id: String,
    /// Server version reported by Maintenance.Status.
    pub etcd_version: String,
    /// Store revision when the snapshot started.
    pub revision: i64,
    /// Number of keys at that revision.
    pub key_count: i64,
    /// Backend database size reported by the member before the snapshot.
    pub db_size: i64,
    /// etcd's own trailing sha256 of the snapshot (checked while streaming), hex.
    pub etcd_sha256: String,
    /// The cluster identity the snapshot needs to be usable (the CA its
    /// tokens and client certificates chain to, the keys its Secrets are
    /// encrypted with), where it was known at backup time. Absent in
    /// backups of kmdr before 0.1 of issue 19 and when nothing said it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs: Option<ClusterIdentity>,
}

/// What an under-cluster etcd snapshot needs besides itself: a kube-apiserver
/// started on it must have the same cluster CA (or every kubeconfig and
/// client certificate is rejected) and the same encryption keys (or every
/// Secret encrypted at rest is unreadable). Kept without key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdentity {
    /// The cluster CA certificate (`/etc/kubernetes/pki/ca.crt`), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CertificateInfo>,
    /// The keys of the API server's EncryptionConfiguration, if known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encryption_keys: Vec<EncryptionKeyInfo>,
    /// Where it was read: `live` (the files on the node at backup time) or
    /// the id of the node-files backup it was taken from.
    pub from: String,
}

/// What a tenant data backup recorded about its source: one tenant's keys in
/// a shared datastore (an etcd prefix, a kine database, a NATS KV bucket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDataInfo {
    /// `etcd`, `postgres`, `mysql` or `nats`.
    pub driver: String,
    /// The datastore URL without credentials.
    pub datastore: String,
    /// The tenant's schema: etcd prefix `/<schema>/`, database or bucket name.
    pub schema: String,
    /// Where the API server's keys sit in that datastore: `/<schema>` on etcd,
    /// `/registry` under kine. Stored keys are relative to it.
    pub key_root: String,
    /// The point the copy is consistent at: etcd revision, kine's highest row
    /// id, or the NATS stream sequence.
    pub revision: i64,
    /// Live keys copied.
    pub key_count: u64,
    /// Sum of key and value bytes (relative keys).
    pub bytes: u64,
    /// sha256 of the logical key/value set (docs/design.md, "Tenant records");
    /// equal for equal content whatever the driver.
    pub content_sha256: String,
    /// Keys that carried a lease; leases are not carried over on restore.
    #[serde(default)]
    pub leased_keys: u64,
    /// kine keys outside `/registry/`, which no API server reads; not copied.
    #[serde(default)]
    pub skipped_keys: u64,
}

/// What a platform backup recorded about its source: the Helm release of the
/// kMetal umbrella chart (from its newest deployed release Secret
/// `sh.helm.release.v1.<release>.v<revision>`) and which Secrets were copied
/// with it. Never holds a secret value: those are only in the backup's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelmReleaseInfo {
    /// The Kubernetes API the release was read from.
    pub cluster: String,
    /// Its version (`/version` gitVersion), when it answered.
    #[serde(default)]
    pub kubernetes_version: Option<String>,
    /// The release name (`helm install NAME ...`).
    pub release: String,
    /// The release namespace.
    pub namespace: String,
    /// The release revision (the Secret's `version` label).
    pub revision: i64,
    /// The revision's status (`deployed`, or `failed`/`superseded`/... when
    /// no revision was deployed).
    pub status: String,
    /// `chart.metadata.name`.
    pub chart: String,
    /// `chart.metadata.version`: pass to `helm install --version`.
    pub chart_version: String,
    /// `chart.metadata.appVersion`.
    #[serde(default)]
    pub app_version: Option<String>,
    /// `info.first_deployed` as Helm wrote it (RFC 3339).
    #[serde(default)]
    pub first_deployed: Option<String>,
    /// `info.last_deployed` as Helm wrote it (RFC 3339).
    #[serde(default)]
    pub last_deployed: Option<String>,
    /// The release Secret the data came from.
    pub release_secret: String,
    /// Top-level keys of the user-supplied values overlay (`helm get values`).
    #[serde(default)]
    pub values_keys: Vec<String>,
    /// Sub-chart toggles: every `....enabled` boolean of the chart's values
    /// with the overlay applied, by dotted path (`kamaji.enabled`).
    #[serde(default)]
    pub toggles: BTreeMap<String, bool>,
    /// Namespaces the release deploys into (its own, and those of its
    /// rendered manifest), sorted.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Secrets copied alongside, as `namespace/name` (their values are only in
    /// the backup's `secrets/` files).
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// What a Kamaji tenants backup recorded (`kmdr backup tenants`): for each
/// TenantControlPlane, its datastore data and its manifests (DataStore, the
/// TCP, its KamajiControlPlane and Cluster API Cluster, its Secrets), taken in
/// one run. The files of tenant `NS/NAME` sit under `tenants/NS/NAME/`, those
/// of DataStore `DS` under `datastores/DS/` (docs/design.md, "Tenants
/// backups"). Never holds a secret value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KamajiTenantsInfo {
    /// The Kubernetes API the objects were read from.
    pub cluster: String,
    /// Its version (`/version` gitVersion).
    #[serde(default)]
    pub kubernetes_version: Option<String>,
    /// The tenants, sorted by namespace and name.
    pub tenants: Vec<KamajiTenantInfo>,
    /// The DataStores the tenants use, sorted by name.
    pub datastores: Vec<KamajiDataStoreInfo>,
}

/// One TenantControlPlane of a tenants backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KamajiTenantInfo {
    pub namespace: String,
    pub name: String,
    /// The TCP's uid when it was backed up (a restored TCP gets a new one).
    pub uid: String,
    /// The DataStore (`spec.dataStore`, else `status.storage.dataStoreName`).
    pub datastore: String,
    /// `spec.dataStoreSchema` as written into the backed-up manifest.
    pub schema: String,
    /// `spec.dataStoreUsername` as written into the backed-up manifest.
    pub username: String,
    /// Which of the two were missing from the spec and were taken from
    /// `status.storage.setup` (`dataStoreSchema`, `dataStoreUsername`).
    #[serde(default)]
    pub filled_from_status: Vec<String>,
    /// The owning KamajiControlPlane, when there is one.
    #[serde(default)]
    pub kamaji_control_plane: Option<String>,
    /// The Cluster API Cluster, when there is one.
    #[serde(default)]
    pub capi_cluster: Option<String>,
    /// The tenant's Secrets (`<tcp>-*` in its namespace), by name.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// The tenant's datastore data, as a tenant data backup records it.
    pub data: TenantDataInfo,
}

/// One DataStore of a tenants backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KamajiDataStoreInfo {
    pub name: String,
    /// Kamaji's `spec.driver`: `etcd`, `PostgreSQL`, `MySQL` or `NATS`.
    pub driver: String,
    /// `spec.endpoints`.
    pub endpoints: Vec<String>,
    /// The URL kmdr connected to, without credentials.
    pub url: String,
    /// The Secrets its credentials and certificates come from, `namespace/name`.
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// What a persistent-data backup recorded: one plan entry's run of the
/// user's volume backup tool (CSI VolumeSnapshots, Velero, Kasten K10). kmdr
/// never copies volume bytes; it records the tool's own objects (names,
/// snapshot handles, times) so that a restore after the cluster was rebuilt
/// knows what to ask the tool for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeBackupInfo {
    /// The plan entry (`volumes: - name:`).
    pub entry: String,
    /// `csi`, `velero` or `kasten`.
    pub provider: String,
    /// The Kubernetes API the tool was driven through.
    pub cluster: String,
    /// Who took the backup: `kmdr` (created by this run) or `schedule` (the
    /// tool's own schedule or policy took it; kmdr found and recorded it).
    pub taken_by: String,
    /// The Velero Schedule or Kasten Policy involved, if any.
    #[serde(default)]
    pub schedule: Option<String>,
    /// The point in time the backup protects (the tool's start / snapshot time).
    pub point_in_time: DateTime<Utc>,
    /// When the tool reported it complete.
    #[serde(default)]
    pub completed_at: Option<DateTime<Utc>>,
    /// The tool's final phase or state (`Completed`, `Complete`, `readyToUse`).
    pub phase: String,
    /// Warnings the tool counted (Velero `status.warnings`).
    #[serde(default)]
    pub warnings: u64,
    /// The objects that make up the backup, in the tool's own terms.
    pub items: Vec<VolumeItem>,
}

/// One object of a volume backup: a VolumeSnapshot, a Velero Backup or a
/// Kasten RestorePoint, with what a restore needs to find or recreate it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeItem {
    /// `VolumeSnapshot`, `Backup` or `RestorePoint`.
    pub kind: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub name: String,
    /// What it was taken from: the PVC name (CSI), the namespaces (Velero),
    /// the application namespace (Kasten).
    #[serde(default)]
    pub source: Option<String>,
    /// The cluster-scoped content object: VolumeSnapshotContent (CSI) or
    /// RestorePointContent (Kasten).
    #[serde(default)]
    pub content: Option<String>,
    /// The storage system's snapshot id (CSI `status.snapshotHandle`).
    #[serde(default)]
    pub handle: Option<String>,
    /// The CSI driver (VolumeSnapshotContent `spec.driver`).
    #[serde(default)]
    pub driver: Option<String>,
    /// The snapshot class it was taken with.
    #[serde(default)]
    pub class: Option<String>,
    /// Minimum size of a volume restored from it (a Kubernetes quantity).
    #[serde(default)]
    pub restore_size: Option<String>,
    /// When the tool took it.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// The source PVC's shape, to recreate it (CSI).
    #[serde(default)]
    pub storage_class: Option<String>,
    #[serde(default)]
    pub access_modes: Vec<String>,
    #[serde(default)]
    pub volume_mode: Option<String>,
    /// The source PVC's requested size.
    #[serde(default)]
    pub request: Option<String>,
}

/// Where a backup's data came from; one variant per backup kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SourceInfo {
    /// A full etcd snapshot (Maintenance.Snapshot) of the under cluster.
    EtcdSnapshot(EtcdSnapshotInfo),
    /// One tenant's control-plane data.
    TenantData(TenantDataInfo),
    /// The platform layer's Helm release (values overlay) and its Secrets.
    HelmRelease(HelmReleaseInfo),
    /// Kamaji tenants end to end: data and manifests of TenantControlPlanes.
    KamajiTenants(KamajiTenantsInfo),
    /// A persistent-data entry: what the volume backup tool took.
    VolumeBackup(VolumeBackupInfo),
    /// The under-cluster's identity: kubeadm PKI, config, encryption config.
    NodeFiles(NodeFilesInfo),
    /// Anything else: kept as raw JSON so older readers still list newer kinds.
    #[serde(untagged)]
    Other(serde_json::Value),
}

/// What a node-files backup (`kmdr backup node-files`) holds: the files with
/// their modes and ownership, what each certificate says, and which
/// encryption keys the API server's EncryptionConfiguration names. Never
/// key material: that is only in the backup's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFilesInfo {
    /// The machine the files were read on (its hostname).
    pub host: String,
    /// Every file, by its absolute path on that machine.
    pub files: Vec<NodeFile>,
    pub certificates: Vec<CertificateInfo>,
    pub encryption_keys: Vec<EncryptionKeyInfo>,
}

/// One file of a node-files backup. Its name in the backup is `path`
/// without the leading `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFile {
    pub path: String,
    /// Permission bits (`0o600`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
}

/// A certificate found among the files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    pub path: String,
    /// RFC 4514 subject, e.g. `CN=kubernetes`.
    pub subject: String,
    /// Hex sha256 of the DER certificate (`openssl x509 -fingerprint -sha256`, without colons).
    pub sha256: String,
    /// RFC 3339.
    pub not_after: String,
    /// Basic constraints say it is a CA.
    pub ca: bool,
}

/// A key an EncryptionConfiguration names (its provider and name, never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionKeyInfo {
    /// The EncryptionConfiguration file.
    pub path: String,
    pub provider: String,
    pub name: String,
    /// 16 hex digits of a domain-separated sha256 of the secret: tells a
    /// rotated key that kept its name apart. Empty in older backups.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
}

/// Sizes of a backup and what it added to the repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStats {
    /// Plaintext bytes of all files.
    pub bytes: u64,
    /// Chunks referenced.
    pub chunks: u64,
    /// Chunks this backup had to upload (not already in the repository).
    pub new_chunks: u64,
    /// Stored (compressed, encrypted) bytes this backup uploaded.
    pub new_stored_bytes: u64,
}

/// The manifest of one backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version of this JSON (`MANIFEST_FORMAT`).
    pub format: u32,
    /// The backup id; also the manifest's object name.
    pub id: BackupId,
    /// The runbook layer this backup belongs to.
    pub layer: Layer,
    /// Retention groups backups by series (e.g. one etcd cluster).
    pub series: String,
    /// Host that took the backup.
    pub hostname: String,
    /// Version of kmdr that wrote it.
    pub kmdr_version: String,
    /// User tags (`--tag k=v`).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// When taking the backup started (the point in time it protects is no older).
    pub started_at: DateTime<Utc>,
    /// When the last byte was stored.
    pub finished_at: DateTime<Utc>,
    /// `finished_at - started_at`, in milliseconds.
    pub duration_ms: u64,
    /// Where the data came from.
    pub source: SourceInfo,
    /// The files of the backup.
    pub files: Vec<FileEntry>,
    /// Sizes.
    pub stats: BackupStats,
    /// What the writer saw in the store (docs/design.md section 9, "Tamper
    /// evidence"); absent in manifests written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<CatalogLinks>,
}

/// The backups and delta segments a manifest's writer saw when it committed:
/// `verify` reports any of them gone without a forget record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogLinks {
    /// Backup ids.
    pub backups: Vec<String>,
    /// Delta segment object keys (`deltas/...`).
    #[serde(default)]
    pub segments: Vec<String>,
}

impl Manifest {
    /// The file called `name`, if the backup has one.
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    /// Every chunk id the backup references.
    pub fn chunk_ids(&self) -> impl Iterator<Item = &str> {
        self.files.iter().flat_map(|f| f.chunks.iter().map(|c| c.id.as_str()))
    }

    /// A one-line description of the source for listings.
    pub fn source_summary(&self) -> String {
        match &self.source {
            SourceInfo::EtcdSnapshot(e) => {
                format!("etcd {} rev {} keys {} ({})", e.etcd_version, e.revision, e.key_count, e.endpoint)
            }
            SourceInfo::TenantData(t) => {
                format!("tenant {} {} keys {} rev {} ({})", t.schema, t.driver, t.key_count, t.revision, t.datastore)
            }
            SourceInfo::HelmRelease(h) => format!(
                "helm release {}/{} chart {}-{} rev {} {} ({} secrets) ({})",
                h.namespace,
                h.release,
                h.chart,
                h.chart_version,
                h.revision,
                h.status,
                h.secrets.len(),
                h.cluster
            ),
            SourceInfo::KamajiTenants(k) => format!(
                "kamaji tenants {} ({} keys) ({})",
                k.tenants.iter().map(|t| format!("{}/{}", t.namespace, t.name)).collect::<Vec<_>>().join(","),
                k.tenants.iter().map(|t| t.data.key_count).sum::<u64>(),
                k.cluster
            ),
            SourceInfo::NodeFiles(n) => format!(
                "node files of {}: {} files, {} certificates, {} encryption keys",
                n.host,
                n.files.len(),
                n.certificates.len(),
                n.encryption_keys.len()
            ),
            SourceInfo::VolumeBackup(v) => format!(
                "volumes {} {} {} item(s) {} by {} ({})",
                v.entry,
                v.provider,
                v.items.len(),
                v.phase,
                v.taken_by,
                v.cluster
            ),
            SourceInfo::Other(v) => v.get("type").and_then(|t| t.as_str()).unwrap_or("unknown source").to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn sample() -> Manifest {
        let t = Utc.with_ymd_and_hms(2026, 11, 27, 2, 40, 37).unwrap();
        Manifest {
            format: MANIFEST_FORMAT,
            id: BackupId::new("etcd", t),
            layer: Layer::UnderCluster,
            series: "etcd/cdf818194e3a8c32".into(),
            hostname: "cp-1".into(),
            kmdr_version: "0.1.0".into(),
            tags: BTreeMap::from([("env".into(), "lab".into())]),
            started_at: t,
            finished_at: t + chrono::Duration::seconds(3),
            duration_ms: 3000,
            source: SourceInfo::EtcdSnapshot(EtcdSnapshotInfo {
                endpoint: "http://127.0.0.1:2379".into(),
                endpoints: vec!["http://127.0.0.1:2379".into()],
                cluster_id: "cdf818194e3a8c32".into(),
                member_id: "8e9e05c52164694d".into(),
                etcd_version: "3.5.1".into(),
                revision: 42,
                key_count: 7,
                db_size: 20480,
                etcd_sha256: "00".repeat(32),
                needs: None,
            }),
            files: vec![FileEntry {
                name: "snapshot.db".into(),
                size: 10,
                sha256: "11".repeat(32),
                chunks: vec![ChunkRef { id: "22".repeat(32), len: 10 }],
            }],
            stats: BackupStats { bytes: 10, chunks: 1, new_chunks: 1, new_stored_bytes: 70 },
            links: None,
        }
    }

    #[test]
    fn json_round_trip_keeps_source_type() {
        let m = sample();
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["source"]["type"], "etcd-snapshot");
        assert_eq!(json["layer"], "under-cluster");
        let back: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn helm_release_source_round_trips() {
        let mut m = sample();
        m.layer = Layer::Platform;
        m.source = SourceInfo::HelmRelease(HelmReleaseInfo {
            cluster: "https://10.0.0.1:6443".into(),
            kubernetes_version: Some("v1.33.1".into()),
            release: "kmetal".into(),
            namespace: "kmetal-system".into(),
            revision: 2,
            status: "deployed".into(),
            chart: "kmetal".into(),
            chart_version: "1.4.2".into(),
            app_version: Some("v1.4.2".into()),
            first_deployed: None,
            last_deployed: Some("2026-01-12T09:30:00Z".into()),
            release_secret: "kmetal-system/sh.helm.release.v1.kmetal.v2".into(),
            values_keys: vec!["kamaji".into()],
            toggles: BTreeMap::from([("kamaji.enabled".into(), true)]),
            namespaces: vec!["kamaji-system".into(), "kmetal-system".into()],
            secrets: vec!["kmetal-system/registry-creds".into()],
        });
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["source"]["type"], "helm-release");
        let back: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
        assert_eq!(
            m.source_summary(),
            "helm release kmetal-system/kmetal chart kmetal-1.4.2 rev 2 deployed (1 secrets) (https://10.0.0.1:6443)"
        );
    }

    #[test]
    fn volume_backup_source_round_trips_and_reads_old_records() {
        let mut m = sample();
        m.layer = Layer::PersistentData;
        let t = m.started_at;
        m.source = SourceInfo::VolumeBackup(VolumeBackupInfo {
            entry: "tenant-a-db".into(),
            provider: "csi".into(),
            cluster: "https://10.0.0.1:6443".into(),
            taken_by: "kmdr".into(),
            schedule: None,
            point_in_time: t,
            completed_at: Some(t),
            phase: "readyToUse".into(),
            warnings: 0,
            items: vec![VolumeItem {
                kind: "VolumeSnapshot".into(),
                namespace: Some("tenant-a".into()),
                name: "kmdr-data-db-0-20261127024037".into(),
                source: Some("data-db-0".into()),
                handle: Some("snap-1".into()),
                driver: Some("hostpath.csi.k8s.io".into()),
                ..Default::default()
            }],
        });
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["source"]["type"], "volume-backup");
        assert_eq!(json["source"]["items"][0]["handle"], "snap-1");
        let back: Manifest = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, m);
        assert_eq!(m.source_summary(), "volumes tenant-a-db csi 1 item(s) readyToUse by kmdr (https://10.0.0.1:6443)");
        // Optional fields may be absent (a record written before they existed).
        let mut lean = json;
        lean["source"]["items"][0] = serde_json::json!({"kind": "Backup", "name": "b1"});
        lean["source"].as_object_mut().unwrap().remove("completed_at");
        let back: Manifest = serde_json::from_value(lean).unwrap();
        let SourceInfo::VolumeBackup(v) = back.source else { panic!("volume backup expected") };
        assert_eq!(v.items[0].name, "b1");
        assert!(v.completed_at.is_none() && v.items[0].access_modes.is_empty());
    }

    #[test]
    fn unknown_source_kinds_still_parse() {
        let mut json = serde_json::to_value(sample()).unwrap();
        json["source"] = serde_json::json!({"type": "future-kind", "x": 1});
        json["added_later"] = serde_json::json!(true);
        json["layer"] = serde_json::json!("a-future-layer");
        let m: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(m.source_summary(), "future-kind");
        assert_eq!(m.layer, Layer::Unknown);
    }
}
