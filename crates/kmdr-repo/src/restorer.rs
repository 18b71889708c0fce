//! Reading a file of a backup back: chunks are fetched ahead in parallel,
//! each one checked (checksum, authenticity, id, length) before a byte of it
//! is written, and the file's sha256 and size are checked at the end.
//! Callers write to a temporary name and rename only on success.

use crate::repository::chunk_key;
use crate::{Error, Progress, Repository, Result};
use futures::{StreamExt, TryStreamExt};
use kmdr_core::FileEntry;
use kmdr_store::StoreError;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Chunks fetched ahead of the writer on a store that does not say otherwise
/// ([`kmdr_store::Store::concurrency`]).
pub const FETCH_AHEAD: usize = kmdr_store::DEFAULT_CONCURRENCY;

/// Fetch, check and decrypt one chunk. `full` adds the keyless checksum check
/// to authentication, id and length (for `verify`).
pub async fn read_chunk(repo: &Repository, id: &str, len: u64, full: bool) -> Result<Vec<u8>> {
    let name = chunk_key(id);
    let raw = match repo.store().get(&name).await {
        Ok(b) => b,
        Err(StoreError::NotFound { .. }) => {
            return Err(Error::Damaged { object: name, reason: "chunk is missing".into() });
        }
        Err(e) => return Err(e.into()),
    };
    let key = repo.key().clone();
    let id = id.to_string();
    let n = name.clone();
    let opened =
        tokio::task::spawn_blocking(move || key.open_chunk(&n, &id, &raw, full)).await.expect("chunk task panicked");
    let plain = repo.opened(&name, opened, "backup data")?;
    if plain.len() as u64 != len {
        return Err(Error::Damaged {
            object: name,
            reason: format!("length {} where the manifest says {len}", plain.len()),
        });
    }
    Ok(plain)
}

/// How much of the restored file to check beyond each chunk's authenticity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileCheck {
    /// Also hash the whole file and compare with the manifest's sha256.
    Sha256,
    /// Chunk checks only (their ids already pin every byte); for callers whose
    /// consumer checks the file itself, as `etcdutl snapshot restore` does.
    ChunksOnly,
}

/// Write the file `entry` to `out`, checking every byte. On error, what was
/// written to `out` must be discarded.
pub async fn restore_file<W: AsyncWrite + Unpin>(
    repo: &Repository,
    entry: &FileEntry,
    out: &mut W,
    check: FileCheck,
    progress: Option<Progress>,
) -> Result<()> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut chunks = futures::stream::iter(entry.chunks.iter())
        .map(|c| read_chunk(repo, &c.id, c.len, false))
        .buffered(repo.store().concurrency().max(1));
    while let Some(plain) = chunks.try_next().await? {
        if check == FileCheck::Sha256 {
            hasher.update(&plain);
        }
        size += plain.len() as u64;
        out.write_all(&plain).await.map_err(Error::Destination)?;
        if let Some(p) = &progress {
            p(plain.len() as u64);
        }
    }
    out.flush().await.map_err(Error::Destination)?;
    let sum = if check == FileCheck::Sha256 { hex::encode(hasher.finalize()) } else { entry.sha256.clone() };
    if size != entry.size || sum != entry.sha256 {
        return Err(Error::Damaged {
            object: format!("file {}", entry.name),
            reason: format!(
                "restored {size} bytes with sha256 {sum}, the manifest says {} bytes with {}",
                entry.size, entry.sha256
            ),
        });
    }
    Ok(())
}
