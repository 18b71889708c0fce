//! Proving a backup restorable (`kmdr verify --restore`): restore it into a
//! scratch server that kmdr starts itself on loopback in a temp dir (or, for
//! what has no server of its own, decode and render it), compare what comes
//! back with what the backup recorded at backup time, and seal the result in
//! the repository as a [`kmdr_repo::proofs::Proof`].
//!
//! - An etcd snapshot ([`data`]): written out (every chunk authenticated, the
//!   whole file matched to the manifest's sha256), read offline (kmdr's own
//!   bbolt reader: the keys the snapshot holds), restored with etcdutl
//!   exactly as `kmdr restore etcd` does (revision bumped, old revisions
//!   compacted), started as a scratch etcd and read through the API. Checks:
//!   the key count the manifest recorded, the served content equal to the
//!   snapshot's own, the revision at least the recorded one plus the bump.
//! - Tenant data, any driver ([`data`]): its records restored into a scratch
//!   etcd under the tenant's schema (or a scratch server of its own driver)
//!   and read back. Checks: the key count and the content hash the manifest
//!   recorded (the hash is driver-independent).
//! - The platform's Helm release ([`objects`]): the release decoded and
//!   matched to the manifest, the values overlay and the Secrets parsed, and
//!   the release's own chart rendered with `helm template` and the restored
//!   values when helm is there: every object it renders must be in the
//!   release's manifest.
//! - Tenant manifests (`kmdr backup tenants`, [`objects`]): every manifest
//!   parsed into its typed object and matched to the tenant it belongs to
//!   (the TCP's dataStoreSchema above all), and every tenant's records
//!   restored into one scratch etcd and checked as tenant data.
//! - Volume backups ([`objects`]): the tool's objects looked up through the
//!   Kubernetes API (still there, still complete); "not checked" when the API
//!   cannot be reached, never a silent pass.
//!
//! A check that fails, a snapshot etcdutl refuses or a restored member that
//! does not start make the backup *unrestorable* (a proof is still sealed);
//! anything that stops the test itself (no etcd binary, the repository
//! unreadable) is an error and seals nothing.

mod data;
mod objects;

use crate::unit::UnitError;
use chrono::Utc;
use kmdr_core::{BackupId, ErrorClass, SourceInfo};
use kmdr_kube::client::KubeTarget;
use kmdr_repo::Repository;
use kmdr_repo::proofs::{Check, Outcome, PROOF_FORMAT, Proof};
use std::path::PathBuf;
use std::time::Instant;

/// The backup kinds a test restore checks: every kind kmdr writes. Each
/// proof reads every byte of its backup (authenticated chunk by chunk), so
/// `kmdr verify --restore` skips these in its byte pass.
pub const PROVABLE_KINDS: [&str; 5] = [
    kmdr_etcd::snapshotter::KIND,
    kmdr_datastore::KIND,
    kmdr_kube::platform::KIND,
    kmdr_kube::kamaji::KIND,
    kmdr_kube::volumes::KIND,
];

/// How test restores run.
#[derive(Debug, Clone, Default)]
pub struct ProveOptions {
    /// The etcd server binary for scratch servers; default `etcd` on PATH.
    pub etcd: Option<PathBuf>,
    /// The restore tool; default: found as `kmdr restore etcd` finds it.
    pub etcdutl: Option<PathBuf>,
    /// Where scratch servers live (a temp dir is made inside); default `$TMPDIR`.
    pub scratch_dir: Option<PathBuf>,
    /// Restore tenant data into a scratch server of its own driver
    /// (PostgreSQL, MariaDB, NATS) instead of a scratch etcd.
    pub same_driver: bool,
    /// The helm that renders a platform backup's chart; default `helm` on
    /// PATH; without one the release is decoded and checked, not rendered.
    pub helm: Option<PathBuf>,
    /// The cluster whose volume backup tool holds what a volume backup
    /// recorded (kubectl's lookup when not set).
    pub kube: KubeTarget,
}

impl ProveOptions {
    /// A scratch directory for one test restore (gone when dropped).
    fn scratch(&self) -> Result<tempfile::TempDir, UnitError> {
        match &self.scratch_dir {
            Some(d) => tempfile::Builder::new().prefix("kmdr-verify-").tempdir_in(d),
            None => tempfile::Builder::new().prefix("kmdr-verify-").tempdir(),
        }
        .map_err(|e| {
            UnitError::new(ErrorClass::Other, format!("cannot make a scratch directory for the test restore: {e}"))
        })
    }
}

/// Restore backup `id` into a scratch server (or decode and render it),
/// check it, and seal the proof in the repository. The proof is returned
/// whatever its outcome.
pub async fn prove(repo: &Repository, id: &BackupId, o: &ProveOptions) -> Result<Proof, UnitError> {
    let started = Utc::now();
    let clock = Instant::now();
    let m = match repo.load_manifest(id).await {
        Ok(m) => Some(m),
        Err(kmdr_repo::Error::Damaged { object, reason }) => {
            tracing::debug!("{object} is damaged: {reason}");
            None
        }
        Err(e) => return Err(e.into()),
    };
    let tested = match m.as_ref().map(|m| (m, &m.source)) {
        None => Tested::failed("nothing".into(), "its manifest is damaged (see `kmdr verify`)".into()),
        Some((m, SourceInfo::EtcdSnapshot(_))) => data::prove_etcd(repo, id, m, o).await?,
        Some((m, SourceInfo::TenantData(_))) => data::prove_tenant(repo, m, o).await?,
        Some((m, SourceInfo::HelmRelease(_))) => objects::prove_platform(repo, m, o).await?,
        Some((m, SourceInfo::KamajiTenants(_))) => objects::prove_tenants(repo, m, o).await?,
        Some((m, SourceInfo::VolumeBackup(_))) => objects::prove_volumes(repo, m, o).await?,
        #[allow(unreachable_patterns)]
        Some(_) => Tested::not_checked(format!(
            "this kmdr does not know how to test-restore {} backups; `kmdr verify` checked their bytes",
            id.kind()
        )),
    };
    let proof = Proof {
        format: PROOF_FORMAT,
        backup: id.to_string(),
        kind: id.kind().to_string(),
        outcome: tested.outcome(),
        checked_at: started,
        duration_ms: clock.elapsed().as_millis() as u64,
        restored_into: tested.restored_into,
        checks: tested.checks,
        reason: tested.reason,
        kmdr_version: env!("CARGO_PKG_VERSION").into(),
    };
    repo.put_proof(&proof).await?;
    Ok(proof)
}

/// What one test restore found, before it is sealed.
struct Tested {
    restored_into: String,
    checks: Vec<Check>,
    /// Set when the restore itself failed, or for "not checked".
    reason: Option<String>,
    not_checked: bool,
}

impl Tested {
    fn new(restored_into: String) -> Tested {
        Tested { restored_into, checks: Vec::new(), reason: None, not_checked: false }
    }

    fn not_checked(reason: String) -> Tested {
        Tested { restored_into: "nothing".into(), checks: Vec::new(), reason: Some(reason), not_checked: true }
    }

    fn failed(restored_into: String, reason: String) -> Tested {
        Tested { restored_into, checks: Vec::new(), reason: Some(reason), not_checked: false }
    }

    fn outcome(&self) -> Outcome {
        if self.not_checked {
            Outcome::NotChecked
        } else if self.reason.is_none() && self.checks.iter().all(|c| c.ok) {
            Outcome::Restorable
        } else {
            Outcome::Unrestorable
        }
    }

    /// Add a check; the first failing one becomes the reason.
    fn check(&mut self, what: &str, expected: impl ToString, found: impl ToString, ok: bool) {
        let (expected, found) = (expected.to_string(), found.to_string());
        if !ok && self.reason.is_none() {
            self.reason = Some(format!("{what}: the backup recorded {expected}, the restored server gave {found}"));
        }
        self.checks.push(Check { what: what.into(), expected, found, ok });
    }

    /// A check that failed for a reason of its own (a file that does not
    /// parse, an object that is gone); the first becomes the reason.
    fn fail(&mut self, what: &str, expected: impl ToString, why: String) {
        if self.reason.is_none() {
            self.reason = Some(format!("{what}: {why}"));
        }
        self.checks.push(Check { what: what.into(), expected: expected.to_string(), found: why, ok: false });
    }
}
