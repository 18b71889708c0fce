//! Test restores of data: an etcd snapshot into a scratch etcd, tenant
//! records into a scratch etcd (or a scratch server of their own driver).

use super::{ProveOptions, Tested};
use crate::unit::UnitError;
use chrono::Utc;
use kmdr_core::{BackupId, ErrorClass, FileEntry, Manifest, SourceInfo, TenantDataInfo, TlsFiles};
use kmdr_datastore::inventory::{self, KeyDigests};
use kmdr_datastore::{self as tenant, AnyTenants, DatastoreUrl};
use kmdr_etcd::connection::EtcdConnection;
use kmdr_etcd::{EtcdError, EtcdRestoreOptions, restorer};
use kmdr_repo::Repository;
use kmdr_testkit::{
    Etcd, EtcdOptions, LaunchError, Mariadb, MariadbOptions, Nats, NatsOptions, Postgres, PostgresOptions,
};
use std::path::{Path, PathBuf};

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
    inventory::etcd_value_digests(&conn).await
}

pub(super) async fn prove_etcd(
    repo: &Repository,
    id: &BackupId,
    m: &Manifest,
    o: &ProveOptions,
) -> Result<Tested, UnitError> {
    let SourceInfo::EtcdSnapshot(info) = &m.source else { unreachable!("checked by the caller") };
    let scratch = o.scratch()?;
    let dir = scratch.path();
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
    let clock = std::time::Instant::now();
    let phase = |what: &str| tracing::debug!("test restore of {id}: {what} after {:?}", clock.elapsed());
    match restorer::write_snapshot_file(repo, id, &plan.snapshot_path, true, None).await {
        Ok(_) => {}
        Err(EtcdError::Repo(kmdr_repo::Error::Damaged { object, reason })) => {
            return Ok(Tested::failed("nothing".into(), format!("its data is damaged: {object}: {reason}")));
        }
        Err(e) => return Err(e.into()),
    }
    let path = plan.snapshot_path.clone();
    // (A digest per key, not the values: memory stays a few MiB per
    // 100,000 keys whatever the values' size.)
    let offline = tokio::task::spawn_blocking(move || -> Result<KeyDigests, String> {
        let db = kmdr_etcd::bbolt::BoltFile::open(&path).map_err(|e| e.to_string())?;
        inventory::snapshot_value_digests(&db).map_err(|e| e.to_string())
    });
    // A snapshot the tool refuses is the backup's fault; anything else stops
    // the test. (The snapshot copy and the staging dir sit in the scratch
    // dir, which goes when the proof is sealed.)
    phase("snapshot written");
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
    phase("restored by the tool");
    let (etcd, into) = match scratch_etcd(o, data_dir, Some(peer))? {
        Ok(started) => started,
        Err(e @ LaunchError::Exited { .. }) => {
            return Ok(Tested::failed("etcd".into(), format!("etcd did not start on the restored data dir: {e}")));
        }
        Err(e) => return Err(e.into()),
    };
    phase("scratch etcd answers");
    let got = served(&etcd).await?;
    phase("keys read back");
    let offline = offline
        .await
        .map_err(|e| UnitError::new(ErrorClass::Other, format!("reading the snapshot offline failed: {e}")))?;
    phase("snapshot read offline");
    let offline = match offline {
        Ok(d) => d,
        Err(e) => {
            return Ok(Tested::failed(into.clone(), format!("the snapshot cannot be read as an etcd database: {e}")));
        }
    };
    let mut t = Tested::new(into);
    t.check("keys", info.key_count, got.keys, got.keys as i64 == info.key_count);
    // Every key with the same value as in the snapshot file: the hash of
    // the (key, value digest) pairs of each side.
    let (want, found) = (offline.digests_sha256(), got.digests_sha256());
    let differ = offline.diff(&got);
    let found = match differ.is_empty() {
        true => found,
        false => format!(
            "{found} ({} missing, {} extra, {} changed; first: {})",
            differ.missing,
            differ.extra,
            differ.changed,
            differ.missing_keys.iter().chain(&differ.extra_keys).chain(&differ.changed_keys).next().map_or("", |k| k)
        ),
    };
    t.check("content", want, found, differ.is_empty());
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
pub(super) enum Scratch {
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

pub(super) async fn prove_tenant(repo: &Repository, m: &Manifest, o: &ProveOptions) -> Result<Tested, UnitError> {
    let info = tenant::tenant_info(m)?;
    let entry = m.file(tenant::RECORDS_FILE).expect("tenant_info checked it");
    let scratch = o.scratch()?;
    let (_server, store, into) = scratch_store(&info.driver, scratch.path(), o).await?;
    let mut t = Tested::new(into);
    records(repo, &store, entry, info, "", &mut t).await?;
    Ok(t)
}

/// A scratch server for tenants of `driver` and a connection to it.
pub(super) async fn scratch_store(
    driver: &str,
    dir: &Path,
    o: &ProveOptions,
) -> Result<(Scratch, AnyTenants, String), UnitError> {
    let (server, url, into) = scratch_for(driver, dir, o)?;
    let store = tenant::connect(&DatastoreUrl::parse(&url)?, TlsFiles::default()).await?;
    Ok((server, store, into))
}

/// Restore the records file `entry` of the tenant `info` describes into
/// `store` (under its own schema) and check the key count and content hash
/// it recorded; `label` names the tenant in the checks (`tenants/a: keys`).
pub(super) async fn records(
    repo: &Repository,
    store: &AnyTenants,
    entry: &FileEntry,
    info: &TenantDataInfo,
    label: &str,
    t: &mut Tested,
) -> Result<(), UnitError> {
    let what = |w: &str| if label.is_empty() { w.to_string() } else { format!("{label}: {w}") };
    if let Err(e) = tenant::restore_records(repo, store, entry, &info.schema, false, None).await {
        return match e {
            tenant::TenantError::Records(_)
            | tenant::TenantError::Unrepresentable(_)
            | tenant::TenantError::Repo(kmdr_repo::Error::Damaged { .. })
            | tenant::TenantError::Interrupted { source: kmdr_repo::Error::Damaged { .. }, .. } => {
                t.fail(
                    &what("records"),
                    format!("{} keys", info.key_count),
                    format!("the records do not restore: {e}"),
                );
                Ok(())
            }
            e => Err(e.into()),
        };
    }
    let got = inventory::tenant_digests(store, &info.schema).await?;
    t.check(&what("keys"), info.key_count, got.keys, got.keys == info.key_count);
    t.check(
        &what("content_sha256"),
        &info.content_sha256,
        &got.content_sha256,
        got.content_sha256 == info.content_sha256,
    );
    Ok(())
}
