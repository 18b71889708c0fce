//! Plain types shared by every kmdr crate: backup ids, layers, manifests and
//! retention math, TLS file paths. No I/O lives here, so everything can be unit tested and
//! reused by the repository, the sources and the command line alike.

pub mod error;
pub mod id;
pub mod manifest;
pub mod retention;
pub mod tls;
pub mod volume;

pub use error::{Classify, ErrorClass};
pub use id::{BackupId, IdError};
pub use manifest::{
    BackupStats, CatalogLinks, CertificateInfo, ChunkRef, ClusterIdentity, EncryptionKeyInfo, EtcdSnapshotInfo,
    FileEntry, HelmReleaseInfo, KamajiDataStoreInfo, KamajiTenantInfo, KamajiTenantsInfo, Layer, MANIFEST_FORMAT,
    Manifest, NodeFile, NodeFilesInfo, SourceInfo, TenantDataInfo, VolumeBackupInfo, VolumeItem,
};
pub use retention::{KeepPolicy, RetentionDecision};
pub use tls::TlsFiles;

/// Render a byte count for humans (`1.5 MiB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// Render a duration for humans (`1m 05s`, `2h 10m`, `850ms`).
pub fn human_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    if s < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else if s < 86400 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d {:02}h", s / 86400, (s % 86400) / 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(human_duration(std::time::Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(std::time::Duration::from_secs(65)), "1m 05s");
        assert_eq!(human_duration(std::time::Duration::from_secs(7800)), "2h 10m");
    }
}
