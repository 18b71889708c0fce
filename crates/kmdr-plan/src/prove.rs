//! Proving a backup restorable (`kmdr verify --restore`): restore it into a
//! scratch server that kmdr starts itself on loopback in a temp dir, read
//! back what the server serves, compare it with what the backup recorded at
//! backup time, and seal the result in the repository as a
//! [`kmdr_repo::proofs::Proof`].
//!
//! - An etcd snapshot: written out (every chunk authenticated, the whole file
//!   matched to the manifest's sha256), read offline (kmdr's own bbolt
//!   reader: the keys the snapshot holds), restored with etcdutl exactly as
//!   `kmdr restore etcd` does (revision bumped, old revisions compacted),
//!   started as a scratch etcd and read through the API. Checks: the key
//!   count the manifest recorded, the served content equal to the snapshot's
//!   own, the revision at least the recorded one plus the bump.
//! - Tenant data (any driver): its records restored into a scratch etcd
//!   under the tenant's schema and read back through the etcd driver. Checks:
//!   the key count and the content hash the manifest recorded (the hash is
//!   driver-independent, so an etcd scratch proves a kine backup too).
//! - Other kinds: "not checked", with the reason: never a silent pass.
//!
//! A check that fails, a snapshot etcdutl refuses or a restored member that
//! does not start make the backup *unrestorable* (a proof is still sealed);
//! anything that stops the test itself (no etcd binary, the repository
//! unreadable) is an error and seals nothing.

use crate::unit::UnitError;
use chrono::Utc;
use kmdr_core::{BackupId, ErrorClass, Manifest, SourceInfo, TlsFiles};
use kmdr_datastore::inventory::{self, KeyDigests};
use kmdr_datastore::{self as tenant, DatastoreUrl};
use kmdr_etcd::connection::EtcdConnection;
use kmdr_etcd::{EtcdError, EtcdRestoreOptions, restorer, snapshotter};
use kmdr_repo::Repository;
use kmdr_repo::proofs::{Check, Outcome, PROOF_FORMAT, Proof};
use kmdr_testkit::{
    Etcd, EtcdOptions, LaunchError, Mariadb, MariadbOptions, Nats, NatsOptions, Postgres, PostgresOptions,
};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The backup kinds a test restore checks (etcd snapshots, tenant data);
/// every other kind is "not checked".
pub const PROVABLE_KINDS: [&str; 2] = [snapshotter::KIND, tenant::KIND];

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
}

/// Restore backup `id` into a scratch server, check it, and seal the proof
/// in the repository. The proof is returned whatever its outcome.
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
    let scratch = match &o.scratch_dir {
        Some(d) => tempfile::Builder::new().prefix("kmdr-verify-").tempdir_in(d),
        None => tempfile::Builder::new().prefix("kmdr-verify-").tempdir(),
    }
    .map_err(|e| {
        UnitError::new(ErrorClass::Other, format!("cannot make a scratch directory for the test restore: {e}"))
    })?;
    let tested = match m.as_ref().map(|m| (m, &m.source)) {
        None => Tested::failed("nothing".into(), "its manifest is damaged (see `kmdr verify`)".into()),
        Some((m, SourceInfo::EtcdSnapshot(_))) => prove_etcd(repo, id, m, scratch.path(), o).await?,
        Some((m, SourceInfo::TenantData(_))) => prove_tenant(repo, m, scratch.path(), o).await?,
        Some((_, other)) => Tested::not_checked(format!(
            "kmdr does not test-restore {} backups yet; `kmdr verify` checked their bytes",
            source_kind(other)
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

fn source_kind(s: &SourceInfo) -> &'static str {
    match s {
        SourceInfo::EtcdSnapshot(_) => "etcd snapshot",
        SourceInfo::TenantData(_) => "tenant data",
        SourceInfo::HelmRelease(_) => "platform (Helm release)",
        SourceInfo::KamajiTenants(_) => "tenant manifest",
        SourceInfo::VolumeBackup(_) => "persistent-data",
        #[allow(unreachable_patterns)]
        _ => "this kind of",
    }
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
}

/// A scratch etcd: a fresh member, or one started on a restored data dir,
/// and what to call it (`etcd 3.6.16 at http://127.0.0.1:PORT`). The outer
/// error is "no etcd to run"; the inner one is the launch's own (an etcd
/// that exits on a restored data dir is the backup's fault, not this machine's).
fn scratch_etcd(
    o: &ProveOptions,
    data_dir: PathBuf,
    peer_url: Option<String>,
) -> Result<Result<(Etcd, String), LaunchError>, UnitError> {
    let program = o.etcd.clone().or_else(|| kmdr_testkit::process::find_bin("etcd", &[]));
    let Some(program) = program.filter(|p| p.is_file()) else {
        let looked = o.etcd.as_ref().map(|p| format!("at {}", p.display())).unwrap_or_else(|| "on PATH".into());
        return Err(UnitError::new(
            ErrorClass::Refused,
            format!(
                "no etcd server binary {looked} for the scratch server of the test restore: install etcd (the cluster's version) or pass --etcd PATH"
            ),
        ));
    };
    let version = std::process::Command::new(&program)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("etcd Version: ").map(str::to_string))
        })
        .unwrap_or_else(|| "?".into());
    let mut opts = EtcdOptions::new("verify", data_dir);
    opts.peer_url = peer_url;
    opts.program = Some(program);
    Ok(Etcd::launch(opts).map(|e| {
        let at = format!("etcd {version} at {}", e.client_url);
        (e, at)
    }))
}

async fn served(e: &Etcd) -> Result<KeyDigests, EtcdError> {
    let conn = EtcdConnection::new(vec![e.client_url.clone()], TlsFiles::default());
    inventory::etcd_digests(&conn).await
}

async fn prove_etcd(
    repo: &Repository,
    id: &BackupId,
    m: &Manifest,
    dir: &Path,
    o: &ProveOptions,
) -> Result<Tested, UnitError> {
    let SourceInfo::EtcdSnapshot(info) = &m.source else { unreachable!("checked by the caller") };
    let peer = format!("http://127.0.0.1:{}", kmdr_testkit::free_port());
    let data_dir = dir.join("member");
    let bump = kmdr_etcd::DEFAULT_REVISION_BUMP;
    let ropts = EtcdRestoreOptions {
        data_dir: data_dir.clone(),
        name: "verify".into(),
        initial_cluster: format!("verify={peer}"),
        initial_advertise_peer_urls: peer.clone(),
        initial_cluster_token: None,
        force: false,
        bump_revision: Some(bump),
    };
    let tool = kmdr_etcd::find_restore_tool(o.etcdutl.as_deref())?;
    if !tool.bumps_revision {
        return Err(UnitError::new(
            ErrorClass::Refused,
            format!(
                "{} {} cannot bump the revision, and a test restore restores as `kmdr restore etcd` does, with the bump: pass --etcdutl PATH (or KMDR_ETCDUTL) to an etcdutl from etcd 3.6 or 3.5.10+ (scripts/build-go-tools.sh builds one)",
                tool.program.display(),
                tool.version
            ),
        ));
    }
    let plan = restorer::plan_restore(repo, id, &ropts, tool, None).await?;

    // The snapshot as stored; what it holds is read offline while etcdutl
    // restores the same file and the scratch etcd starts.
    match restorer::write_snapshot_file(repo, id, &plan.snapshot_path, true, None).await {
        Ok(_) => {}
        Err(EtcdError::Repo(kmdr_repo::Error::Damaged { object, reason })) => {
            return Ok(Tested::failed("nothing".into(), format!("its data is damaged: {object}: {reason}")));
        }
        Err(e) => return Err(e.into()),
    }
    let path = plan.snapshot_path.clone();
    let offline = tokio::task::spawn_blocking(move || -> Result<KeyDigests, String> {
        let db = kmdr_etcd::bbolt::BoltFile::open(&path).map_err(|e| e.to_string())?;
        let live = kmdr_etcd::mvcc::live_keys(&db, &|_| true).map_err(|e| e.to_string())?;
        inventory::digests_of(live.keys.values().map(|kv| (kv.key.as_slice(), kv.value.as_slice())))
            .map_err(|e| e.to_string())
    });
    // A snapshot the tool refuses is the backup's fault; anything else stops
    // the test. (The snapshot copy and the staging dir sit in the scratch
    // dir, which goes when the proof is sealed.)
    match kmdr_etcd::tool::run_tool(&plan.tool, &plan.command[1..]).await {
        Ok(()) => {}
        Err(e @ EtcdError::ToolFailed { .. }) => {
            let _ = offline.await;
            let tool = plan.tool.program.display().to_string();
            return Ok(Tested::failed(tool, format!("the restore tool refused the snapshot: {e}")));
        }
        Err(e) => {
            let _ = offline.await;
            return Err(e.into());
        }
    }
    std::fs::rename(&plan.staging_dir, &data_dir).map_err(|e| {
        UnitError::new(ErrorClass::Other, format!("cannot move the restored data dir to {}: {e}", data_dir.display()))
    })?;
    let (etcd, into) = match scratch_etcd(o, data_dir, Some(peer))? {
        Ok(started) => started,
        Err(e @ LaunchError::Exited { .. }) => {
            return Ok(Tested::failed("etcd".into(), format!("etcd did not start on the restored data dir: {e}")));
        }
        Err(e) => return Err(e.into()),
    };
    let got = served(&etcd).await?;
    let offline = offline
        .await
        .map_err(|e| UnitError::new(ErrorClass::Other, format!("reading the snapshot offline failed: {e}")))?;
    let offline = match offline {
        Ok(d) => d,
        Err(e) => {
            return Ok(Tested::failed(into.clone(), format!("the snapshot cannot be read as an etcd database: {e}")));
        }
    };
    let mut t = Tested { restored_into: into, checks: Vec::new(), reason: None, not_checked: false };
    t.check("keys", info.key_count, got.keys, got.keys as i64 == info.key_count);
    t.check(
        "content_sha256",
        &offline.content_sha256,
        &got.content_sha256,
        got.content_sha256 == offline.content_sha256,
    );
    let least = info.revision + bump as i64;
    t.check(
        "revision",
        format!(">= {least} (backup {} + bump {bump})", info.revision),
        got.revision,
        got.revision >= least,
    );
    Ok(t)
}

/// A scratch server a tenant is restored into; stopped when dropped.
#[allow(dead_code)]
enum Scratch {
    Etcd(Etcd),
    Postgres(Postgres),
    Mysql(Mariadb),
    Nats(Nats),
}

/// Start the scratch server for a tenant of `driver`: its own driver's with
/// `same_driver` (PostgreSQL, MariaDB or NATS, as the lab starts them), else
/// etcd. Returns it, the URL kmdr takes, and what to call it.
fn scratch_for(driver: &str, dir: &Path, o: &ProveOptions) -> Result<(Scratch, String, String), UnitError> {
    // A password for a server that lives a few seconds on loopback.
    let pw = format!("kmdr-verify-{}-{}", std::process::id(), Utc::now().timestamp_millis());
    let port = kmdr_testkit::free_port;
    Ok(match (o.same_driver, driver) {
        (true, "postgres") => {
            let p =
                Postgres::launch(PostgresOptions { port: Some(port()), ..PostgresOptions::new(dir.join("pg"), &pw) })?;
            let (url, at) = (p.url(), format!("PostgreSQL at 127.0.0.1:{}", p.port()));
            (Scratch::Postgres(p), url, at)
        }
        (true, "mysql") => {
            let m = Mariadb::launch(MariadbOptions {
                port: Some(port()),
                ..MariadbOptions::new(dir.join("mariadb"), &pw)
            })?;
            let (url, at) = (m.url(), format!("MariaDB at 127.0.0.1:{}", m.port()));
            (Scratch::Mysql(m), url, at)
        }
        (true, "nats") => {
            let n = Nats::launch(NatsOptions::new(dir, &pw))?;
            let (url, at) = (n.url(), format!("NATS JetStream at 127.0.0.1:{}", n.port()));
            (Scratch::Nats(n), url, at)
        }
        _ => {
            let (e, at) = scratch_etcd(o, dir.join("tenant.etcd"), None)??;
            let url = e.client_url.replace("http://", "etcd://");
            (Scratch::Etcd(e), url, at)
        }
    })
}

async fn prove_tenant(repo: &Repository, m: &Manifest, dir: &Path, o: &ProveOptions) -> Result<Tested, UnitError> {
    let info = tenant::tenant_info(m)?;
    let (_scratch, url, into) = scratch_for(&info.driver, dir, o)?;
    let url = DatastoreUrl::parse(&url)?;
    let store = tenant::connect(&url, TlsFiles::default()).await?;
    let plan = tenant::plan_tenant_restore(&store, m, None, false).await?;
    if let Err(e) = tenant::restore_tenant(repo, &store, m, &plan, None).await {
        return match e {
            tenant::TenantError::Records(_)
            | tenant::TenantError::Unrepresentable(_)
            | tenant::TenantError::Repo(kmdr_repo::Error::Damaged { .. })
            | tenant::TenantError::Interrupted { source: kmdr_repo::Error::Damaged { .. }, .. } => {
                Ok(Tested::failed(into, format!("the records do not restore: {e}")))
            }
            e => Err(e.into()),
        };
    }
    let got = inventory::tenant_digests(&store, &info.schema).await?;
    let mut t = Tested { restored_into: into, checks: Vec::new(), reason: None, not_checked: false };
    t.check("keys", info.key_count, got.keys, got.keys == info.key_count);
    t.check("content_sha256", &info.content_sha256, &got.content_sha256, got.content_sha256 == info.content_sha256);
    Ok(t)
}
