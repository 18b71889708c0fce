//! Content-defined chunking (FastCDC 2020, the `fastcdc` crate's cut-point
//! function) over a byte stream. Boundaries depend on content, so data that is
//! unchanged between two snapshots yields the same chunks even when bytes
//! before it were inserted or removed. The gear table is XORed with a 64-bit
//! seed derived from the repository key, so that chunk boundaries differ
//! between repositories and a known plaintext cannot simply be matched by its
//! chunk sizes (sizes of stored objects still leak something; see the threat
//! model in docs/design.md).

use bytes::{Buf, Bytes, BytesMut};
use fastcdc::v2020::{Normalization, cut_gear, get_gear_with_seed, select_masks};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Chunk size bounds, stored in the repository config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub algorithm: String,
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl Default for ChunkerParams {
    /// 64 KiB / 256 KiB / 1 MiB: see "Chunk size" in docs/design.md for the measurement.
    fn default() -> Self {
        ChunkerParams {
            algorithm: "fastcdc-2020".into(),
            min_size: 64 * 1024,
            avg_size: 256 * 1024,
            max_size: 1024 * 1024,
        }
    }
}

/// Chunker parameters this kmdr cannot use (a repository config written by
/// another tool, or edited by hand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidChunker(String);

impl ChunkerParams {
    /// Check the bounds against what FastCDC supports.
    pub fn validate(&self) -> Result<(), InvalidChunker> {
        use fastcdc::v2020::*;
        let (min, avg, max) = (self.min_size as usize, self.avg_size as usize, self.max_size as usize);
        if self.algorithm != "fastcdc-2020" {
            return Err(InvalidChunker(format!("unknown chunker {}", self.algorithm)));
        }
        let valid = (MINIMUM_MIN..=MINIMUM_MAX).contains(&min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&max)
            && min <= avg
            && avg <= max
            && min % 2 + avg % 2 + max % 2 == 0;
        if !valid {
            return Err(InvalidChunker(format!("invalid chunk sizes min {min} avg {avg} max {max}")));
        }
        Ok(())
    }
}

/// Finds cut points for one repository's parameters and seed.
#[derive(Debug, Clone)]
pub struct Chunker {
    p: ChunkerParams,
    mask_s: u64,
    mask_l: u64,
    gear: Cow<'static, [u64]>,
    gear_ls: Cow<'static, [u64]>,
}

impl Chunker {
    pub fn new(p: ChunkerParams, seed: u64) -> Self {
        let (mask_s, mask_l) = select_masks(p.avg_size as usize, Normalization::Level1);
        let (gear, gear_ls) = get_gear_with_seed(seed);
        Chunker { p, mask_s, mask_l, gear, gear_ls }
    }

    /// Largest chunk this chunker emits.
    pub fn max_size(&self) -> usize {
        self.p.max_size as usize
    }

    /// Length of the next chunk at the start of `data`. `data` must hold at
    /// least `max_size` bytes unless the stream has ended.
    pub fn cut(&self, data: &[u8]) -> usize {
        let p = &self.p;
        let (_, n) = cut_gear(
            data,
            p.min_size as usize,
            p.avg_size as usize,
            p.max_size as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear,
            &self.gear_ls,
        );
        if n == 0 { data.len() } else { n }
    }

    /// Read `reader` to the end, calling `emit` with each chunk in order.
    /// Memory: one buffer of about two `max_size`.
    pub async fn split<R, F, Fut>(&self, reader: &mut R, mut emit: F) -> std::io::Result<()>
    where
        R: AsyncRead + Unpin,
        F: FnMut(Bytes) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<()>>,
    {
        let max = self.max_size();
        let mut buf = BytesMut::with_capacity(2 * max);
        let mut eof = false;
        loop {
            while !eof && buf.len() < max {
                buf.reserve(max);
                if reader.read_buf(&mut buf).await? == 0 {
                    eof = true;
                }
            }
            if buf.is_empty() {
                return Ok(());
            }
            let n = self.cut(&buf);
            // Copy the chunk out rather than split the buffer: a split-off
            // chunk would pin the whole buffer allocation while it is in
            // flight, multiplying memory by the pipeline depth.
            let chunk = Bytes::copy_from_slice(&buf[..n]);
            buf.advance(n);
            emit(chunk).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn small() -> ChunkerParams {
        ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768, ..Default::default() }
    }

    async fn chunks(c: &Chunker, data: &[u8]) -> Vec<Bytes> {
        let mut out = Vec::new();
        // A reader that returns odd-sized reads, as a network stream does.
        let mut r = tokio_test_reader(data.to_vec());
        c.split(&mut r, |b| {
            out.push(b);
            async { Ok(()) }
        })
        .await
        .unwrap();
        out
    }

    fn tokio_test_reader(data: Vec<u8>) -> impl AsyncRead + Unpin {
        let (mut w, r) = tokio::io::duplex(1000);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for part in data.chunks(777) {
                w.write_all(part).await.unwrap();
            }
        });
        r
    }

    #[tokio::test]
    async fn chunks_reassemble_and_respect_bounds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let data: Vec<u8> = (0..500_000).map(|_| rng.r#gen()).collect();
        let c = Chunker::new(small(), 42);
        let cs = chunks(&c, &data).await;
        assert_eq!(cs.concat(), data);
        for ch in &cs[..cs.len() - 1] {
            assert!(ch.len() >= 2048 && ch.len() <= 32768, "{}", ch.len());
        }
        assert!(cs.len() > 30 && cs.len() < 200, "{} chunks", cs.len());
        assert!(chunks(&c, &[]).await.is_empty());
    }

    #[tokio::test]
    async fn insertion_only_changes_nearby_chunks() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let data: Vec<u8> = (0..400_000).map(|_| rng.r#gen()).collect();
        let mut edited = data.clone();
        edited.splice(200_000..200_000, b"inserted bytes".iter().copied());
        let c = Chunker::new(small(), 1);
        let a = chunks(&c, &data).await;
        let b = chunks(&c, &edited).await;
        let shared = b.iter().filter(|x| a.contains(x)).count();
        assert!(shared + 3 >= a.len(), "only chunks around the edit differ: {shared} of {}", a.len());
        // Another seed cuts elsewhere.
        let other = chunks(&Chunker::new(small(), 2), &data).await;
        assert_ne!(a.iter().map(|x| x.len()).collect::<Vec<_>>(), other.iter().map(|x| x.len()).collect::<Vec<_>>());
    }

    #[test]
    fn params_validate() {
        assert!(ChunkerParams::default().validate().is_ok());
        assert!(ChunkerParams { min_size: 10, ..Default::default() }.validate().is_err());
    }
}
