//! `kmdr backup etcd`: stream Maintenance.Snapshot into the repository.
//!
//! The snapshot is never written to local disk and never held in memory: the
//! gRPC stream feeds the chunking pipeline directly. etcd appends the sha256
//! of the database to the stream; it is checked as the bytes pass, and a
//! mismatch or a short stream fails the backup before its manifest is written.

use crate::EtcdError;
use crate::connection::{EtcdConnection, describe};
use bytes::Bytes;
use etcd_client::{Client, GetOptions};
use futures::StreamExt;
use kmdr_core::{EtcdSnapshotInfo, Layer, Manifest, SourceInfo};
use kmdr_repo::backuper::ManifestDraft;
use kmdr_repo::{BackupSession, Progress, Repository};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The file name of the snapshot inside a backup.
pub const SNAPSHOT_FILE: &str = "snapshot.db";
/// The backup kind (first part of the id after the time).
pub const KIND: &str = "etcd";

/// What to back up.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    pub connection: EtcdConnection,
    pub tags: BTreeMap<String, String>,
    /// The cluster identity the snapshot needs (recorded in its manifest).
    pub needs: Option<kmdr_core::ClusterIdentity>,
}

/// A connected member, with what it reported before the snapshot started.
pub struct EtcdSnapshot {
    client: Client,
    pub info: EtcdSnapshotInfo,
}

impl EtcdSnapshot {
    /// Connect and read the member's status, revision and key count.
    pub async fn open(conn: &EtcdConnection) -> Result<Self, EtcdError> {
        let (mut client, endpoint) = conn.connect_one().await?;
        let rpc = |op: &'static str, e: etcd_client::Error| EtcdError::Rpc {
            op,
            endpoint: endpoint.clone(),
            detail: describe(&e),
        };
        let status = client.status().await.map_err(|e| rpc("status", e))?;
        let count = client
            .get("", Some(GetOptions::new().with_all_keys().with_count_only()))
            .await
            .map_err(|e| rpc("range", e))?;
        let header = count.header().ok_or_else(|| EtcdError::Rpc {
            op: "range",
            endpoint: endpoint.clone(),
            detail: "response has no header".into(),
        })?;
        let info = EtcdSnapshotInfo {
            endpoint: endpoint.clone(),
            endpoints: conn.urls(),
            cluster_id: format!("{:x}", header.cluster_id()),
            member_id: format!("{:x}", header.member_id()),
            etcd_version: status.version().to_string(),
            revision: header.revision(),
            key_count: count.count(),
            db_size: status.db_size(),
            etcd_sha256: String::new(),
            needs: None,
        };
        Ok(EtcdSnapshot { client, info })
    }

    /// Stream the snapshot into a new backup and commit it.
    pub async fn backup_into(
        mut self,
        repo: &Repository,
        tags: BTreeMap<String, String>,
        progress: Option<Progress>,
    ) -> Result<Manifest, EtcdError> {
        let endpoint = self.info.endpoint.clone();
        let mut session = BackupSession::start(repo, "kmdr backup etcd").await?;
        let stream = self.client.snapshot().await.map_err(|e| EtcdError::Rpc {
            op: "snapshot",
            endpoint: endpoint.clone(),
            detail: describe(&e),
        })?;
        let verdict: Arc<Mutex<Option<String>>> = Arc::default();
        let mut reader = tokio_util::io::StreamReader::new(checked_stream(stream, endpoint.clone(), verdict.clone()));
        let added = session.add_file(SNAPSHOT_FILE, &mut reader, progress).await;
        if let Err(e) = added {
            session.abort().await;
            return Err(unwrap_source(e));
        }
        let Some(sha) = verdict.lock().expect("verdict").clone() else {
            session.abort().await;
            return Err(EtcdError::SnapshotIntegrity {
                endpoint,
                detail: "stream ended without etcd's checksum".into(),
            });
        };
        self.info.etcd_sha256 = sha;
        let draft = ManifestDraft {
            kind: KIND.into(),
            layer: Layer::UnderCluster,
            series: format!("etcd/{}", self.info.cluster_id),
            tags,
            source: SourceInfo::EtcdSnapshot(self.info),
        };
        Ok(session.commit(draft).await?)
    }
}

/// `kmdr backup etcd` as one call.
pub async fn backup_snapshot(
    repo: &Repository,
    opts: &SnapshotOptions,
    progress: Option<Progress>,
) -> Result<Manifest, EtcdError> {
    let mut snap = EtcdSnapshot::open(&opts.connection).await?;
    snap.info.needs = opts.needs.clone();
    snap.backup_into(repo, opts.tags.clone(), progress).await
}

/// Stream a member's snapshot into `out` (etcd's checksum checked as the
/// bytes pass); returns the checksum. Used for the point-in-time snapshot a
/// scratch member builds (`etcd::point`).
pub(crate) async fn snapshot_into<W: tokio::io::AsyncWrite + Unpin>(
    client: &mut Client,
    endpoint: &str,
    out: &mut W,
) -> Result<String, EtcdError> {
    let stream = client.snapshot().await.map_err(|e| EtcdError::Rpc {
        op: "snapshot",
        endpoint: endpoint.into(),
        detail: describe(&e),
    })?;
    let verdict: Arc<Mutex<Option<String>>> = Arc::default();
    let mut reader = tokio_util::io::StreamReader::new(checked_stream(stream, endpoint.into(), verdict.clone()));
    if let Err(e) = tokio::io::copy(&mut reader, out).await {
        return Err(match e.get_ref().is_some_and(|r| r.is::<EtcdError>()) {
            true => *e.into_inner().expect("checked").downcast::<EtcdError>().expect("checked"),
            false => EtcdError::Rpc { op: "snapshot", endpoint: endpoint.into(), detail: e.to_string() },
        });
    }
    let sum = verdict.lock().expect("verdict").clone();
    sum.ok_or_else(|| EtcdError::SnapshotIntegrity {
        endpoint: endpoint.into(),
        detail: "stream ended without etcd's checksum".into(),
    })
}

/// If a repository error carries an etcd error from the stream, surface it.
fn unwrap_source(e: kmdr_repo::Error) -> EtcdError {
    match e {
        kmdr_repo::Error::Source(io) if io.get_ref().is_some_and(|r| r.is::<EtcdError>()) => {
            *io.into_inner().expect("checked").downcast::<EtcdError>().expect("checked")
        }
        other => EtcdError::Repo(other),
    }
}

/// Checks etcd's trailing sha256: every byte but the last 32 is hashed; the
/// last 32 must equal the hash.
#[derive(Default)]
struct TrailerCheck {
    hasher: Sha256,
    tail: Vec<u8>,
    received: u64,
    expected_total: Option<u64>,
}

impl TrailerCheck {
    fn feed(&mut self, blob: &[u8], remaining: u64) {
        self.received += blob.len() as u64;
        if self.expected_total.is_none() {
            self.expected_total = Some(blob.len() as u64 + remaining);
        }
        self.tail.extend_from_slice(blob);
        if self.tail.len() > 32 {
            let n = self.tail.len() - 32;
            self.hasher.update(&self.tail[..n]);
            self.tail.drain(..n);
        }
    }

    fn finish(self) -> Result<String, String> {
        // etcd announces the database size; the 32-byte hash follows it.
        if let Some(t) = self.expected_total
            && t + 32 != self.received
        {
            return Err(format!("stream ended after {} of {} bytes", self.received, t + 32));
        }
        if self.tail.len() != 32 {
            return Err(format!("stream too short ({} bytes)", self.received));
        }
        let sum = self.hasher.finalize();
        if sum.as_slice() != self.tail.as_slice() {
            return Err(format!(
                "sha256 mismatch: etcd sent {}, the data hashes to {}",
                hex::encode(&self.tail),
                hex::encode(sum)
            ));
        }
        Ok(hex::encode(sum))
    }
}

fn checked_stream(
    stream: etcd_client::SnapshotStreaming,
    endpoint: String,
    verdict: Arc<Mutex<Option<String>>>,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Unpin {
    // One per snapshot stream: the size of a variant does not matter.
    #[allow(clippy::large_enum_variant)]
    enum St {
        Go(etcd_client::SnapshotStreaming, TrailerCheck),
        Done,
    }
    let integrity = |endpoint: &str, detail: String| {
        std::io::Error::other(EtcdError::SnapshotIntegrity { endpoint: endpoint.to_string(), detail })
    };
    futures::stream::unfold(St::Go(stream, TrailerCheck::default()), move |st| {
        let endpoint = endpoint.clone();
        let verdict = verdict.clone();
        async move {
            let St::Go(mut s, mut check) = st else { return None };
            match s.message().await {
                Ok(Some(resp)) => {
                    check.feed(resp.blob(), resp.remaining_bytes());
                    Some((Ok(Bytes::copy_from_slice(resp.blob())), St::Go(s, check)))
                }
                Ok(None) => match check.finish() {
                    Ok(sum) => {
                        *verdict.lock().expect("verdict") = Some(sum);
                        None
                    }
                    Err(detail) => Some((Err(integrity(&endpoint, detail)), St::Done)),
                },
                Err(e) => Some((
                    Err(std::io::Error::other(EtcdError::Rpc {
                        op: "snapshot",
                        endpoint: endpoint.clone(),
                        detail: describe(&e),
                    })),
                    St::Done,
                )),
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(data: &[u8]) -> Vec<u8> {
        let mut v = data.to_vec();
        v.extend_from_slice(&Sha256::digest(data));
        v
    }

    #[test]
    fn trailer_check_accepts_any_split() {
        let snap = framed(&vec![9u8; 100_000]);
        for split in [1usize, 31, 32, 33, 4096, 99_999] {
            let mut c = TrailerCheck::default();
            // As etcd sends it: the database with its remaining-bytes count, then the hash.
            let (db, sum) = snap.split_at(snap.len() - 32);
            let mut rest = db.len() as u64;
            for part in db.chunks(split) {
                rest -= part.len() as u64;
                c.feed(part, rest);
            }
            c.feed(sum, 0);
            assert_eq!(c.finish().unwrap(), hex::encode(&snap[snap.len() - 32..]), "split {split}");
        }
    }

    #[test]
    fn trailer_check_rejects_damage_and_truncation() {
        let mut snap = framed(b"some bbolt pages");
        snap[3] ^= 1;
        let mut c = TrailerCheck::default();
        c.feed(&snap[..snap.len() - 32], 0);
        c.feed(&snap[snap.len() - 32..], 0);
        assert!(c.finish().unwrap_err().contains("sha256 mismatch"));
        let snap = framed(b"some bbolt pages");
        let mut c = TrailerCheck::default();
        c.feed(&snap[..10], (snap.len() - 42) as u64);
        assert!(c.finish().unwrap_err().contains(&format!("ended after 10 of {}", snap.len())));
    }
}
