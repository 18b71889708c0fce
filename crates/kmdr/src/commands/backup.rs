//! `kmdr backup etcd`.

use crate::cli::{BackupCommand, BackupEtcdArgs, GlobalArgs};
use crate::output::{self, Format};
use anyhow::Result;
use kmdr_core::{human_bytes, human_duration};
use kmdr_sources::etcd::snapshotter::EtcdSnapshot;
use kmdr_sources::etcd::{EtcdConnection, TlsFiles};

pub async fn run(g: &GlobalArgs, c: BackupCommand) -> Result<i32> {
    match c {
        BackupCommand::Etcd(a) => etcd(g, a).await,
    }
}

async fn etcd(g: &GlobalArgs, a: BackupEtcdArgs) -> Result<i32> {
    // Open the repository first: a wrong key must fail before etcd is touched.
    let repo = g.open_repo().await?;
    let conn = EtcdConnection::new(a.endpoints, TlsFiles { cacert: a.tls.cacert, cert: a.tls.cert, key: a.tls.key });
    let snap = EtcdSnapshot::open(&conn).await?;
    let pb = output::bar(g.format, g.quiet, Some(snap.info.db_size as u64 + 32), "etcd snapshot");
    let m = snap.backup_into(&repo, a.tags.into_iter().collect(), output::progress(&pb)).await?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    if g.format == Format::Json {
        output::json(&m);
    } else {
        println!("{}", m.id);
        if g.chatty() {
            eprintln!(
                "backed up {} ({}) in {}: {} new of {} chunks, {} added to {}",
                m.source_summary(),
                human_bytes(m.stats.bytes),
                human_duration(std::time::Duration::from_millis(m.duration_ms)),
                m.stats.new_chunks,
                m.stats.chunks,
                human_bytes(m.stats.new_stored_bytes),
                repo.location()
            );
        }
    }
    Ok(0)
}
