//! The tenant record stream: one tenant's live keys and values at one point in
//! time, in a form that does not depend on the datastore they came from.
//!
//! Layout (all integers big-endian; specified in docs/design.md, "Tenant records"):
//!
//! ```text
//! "KMDRKV" 0x00 0x01                         magic and version
//! record*:  u32 key_len (>= 1) | key | u32 value_len | value | i64 create_rev | i64 mod_rev
//! trailer:  u32 0 | u64 record_count | sha256 content hash (32 bytes)
//! ```
//!
//! Keys are relative to the tenant's key root (`/<schema>` on etcd, `/registry`
//! under kine), so `/pods/default/web-0` names the same object everywhere.
//! Records are strictly increasing by key bytes. The content hash covers only
//! `u32 key_len | key | u32 value_len | value` of every record in that order,
//! so two copies of a tenant hash alike whatever drivers wrote and read them;
//! revisions are kept for the record but are not content.

use kmdr_core::{Classify, ErrorClass};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};

/// First bytes of a record stream.
pub const MAGIC: &[u8; 8] = b"KMDRKV\x00\x01";
/// The file name of the record stream inside a tenant backup.
pub const RECORDS_FILE: &str = "tenant.kvs";
/// Largest key or value accepted (kine's MEDIUMBLOB holds 16 MiB).
pub const MAX_FIELD: u32 = 64 << 20;

/// One live key of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Relative key, starting with `/`.
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Revision the key was created at in the source (0 when unknown).
    pub create_revision: i64,
    /// Revision of the value in the source (0 when unknown).
    pub mod_revision: i64,
}

/// What a finished stream held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSummary {
    pub count: u64,
    /// Sum of key and value lengths.
    pub bytes: u64,
    /// Hex sha256 of the content (see the module docs).
    pub content_sha256: String,
}

/// Errors of the record stream itself.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("tenant records are damaged: {0}")]
    Damaged(String),
    #[error("keys out of order: {next:?} came after {prev:?}; the source did not sort by key bytes")]
    Unsorted { prev: String, next: String },
}

/// Running content hash and order check, shared by writer and reader.
#[derive(Default)]
pub struct ContentHasher {
    hasher: Sha256,
    last: Option<Vec<u8>>,
    count: u64,
    bytes: u64,
}

impl ContentHasher {
    /// Add the next record; keys must be strictly increasing.
    pub fn add(&mut self, key: &[u8], value: &[u8]) -> Result<(), RecordError> {
        if key.is_empty() {
            return Err(RecordError::Damaged("empty key".into()));
        }
        if let Some(prev) = &self.last
            && key <= prev.as_slice()
        {
            return Err(RecordError::Unsorted {
                prev: String::from_utf8_lossy(prev).into(),
                next: String::from_utf8_lossy(key).into(),
            });
        }
        self.hasher.update((key.len() as u32).to_be_bytes());
        self.hasher.update(key);
        self.hasher.update((value.len() as u32).to_be_bytes());
        self.hasher.update(value);
        self.count += 1;
        self.bytes += (key.len() + value.len()) as u64;
        match &mut self.last {
            Some(l) => {
                l.clear();
                l.extend_from_slice(key);
            }
            None => self.last = Some(key.to_vec()),
        }
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    fn digest(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }

    pub fn summary(&self) -> RecordSummary {
        RecordSummary { count: self.count, bytes: self.bytes, content_sha256: hex::encode(self.digest()) }
    }
}

/// Writes a record stream.
pub struct RecordWriter<W: AsyncWrite + Unpin> {
    out: BufWriter<W>,
    content: ContentHasher,
    started: bool,
}

impl<W: AsyncWrite + Unpin> RecordWriter<W> {
    pub fn new(out: W) -> Self {
        RecordWriter {
            out: BufWriter::with_capacity(256 << 10, out),
            content: ContentHasher::default(),
            started: false,
        }
    }

    /// Append one record; keys must come in strictly increasing byte order.
    pub async fn write(
        &mut self,
        key: &[u8],
        value: &[u8],
        create_revision: i64,
        mod_revision: i64,
    ) -> Result<(), RecordError> {
        if key.len() as u64 > MAX_FIELD as u64 || value.len() as u64 > MAX_FIELD as u64 {
            return Err(RecordError::Damaged(format!("key or value over {} bytes", MAX_FIELD)));
        }
        self.content.add(key, value)?;
        if !self.started {
            self.out.write_all(MAGIC).await?;
            self.started = true;
        }
        self.out.write_u32(key.len() as u32).await?;
        self.out.write_all(key).await?;
        self.out.write_u32(value.len() as u32).await?;
        self.out.write_all(value).await?;
        self.out.write_i64(create_revision).await?;
        self.out.write_i64(mod_revision).await?;
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.content.count()
    }

    /// Write the trailer and flush; returns what the stream holds.
    pub async fn finish(mut self) -> Result<RecordSummary, RecordError> {
        if !self.started {
            self.out.write_all(MAGIC).await?;
        }
        self.out.write_u32(0).await?;
        self.out.write_u64(self.content.count).await?;
        self.out.write_all(&self.content.digest()).await?;
        self.out.flush().await?;
        self.out.shutdown().await?;
        Ok(self.content.summary())
    }
}

/// Reads and checks a record stream: order, field sizes, and at the end the
/// count and content hash of the trailer.
pub struct RecordReader<R: AsyncRead + Unpin> {
    input: BufReader<R>,
    content: ContentHasher,
    state: ReadState,
}

#[derive(PartialEq, Eq)]
enum ReadState {
    Start,
    Records,
    Done,
}

impl<R: AsyncRead + Unpin> RecordReader<R> {
    pub fn new(input: R) -> Self {
        RecordReader {
            input: BufReader::with_capacity(256 << 10, input),
            content: ContentHasher::default(),
            state: ReadState::Start,
        }
    }

    fn short(e: std::io::Error) -> RecordError {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            RecordError::Damaged("the stream ends before its trailer".into())
        } else {
            RecordError::Io(e)
        }
    }

    /// The next record, or `None` after a trailer that matched everything read.
    pub async fn next(&mut self) -> Result<Option<Record>, RecordError> {
        if self.state == ReadState::Start {
            let mut magic = [0u8; 8];
            self.input.read_exact(&mut magic).await.map_err(Self::short)?;
            if &magic != MAGIC {
                return Err(RecordError::Damaged("not a kmdr tenant record stream (bad magic)".into()));
            }
            self.state = ReadState::Records;
        }
        if self.state == ReadState::Done {
            return Ok(None);
        }
        let key_len = self.input.read_u32().await.map_err(Self::short)?;
        if key_len == 0 {
            let count = self.input.read_u64().await.map_err(Self::short)?;
            let mut sum = [0u8; 32];
            self.input.read_exact(&mut sum).await.map_err(Self::short)?;
            if count != self.content.count {
                return Err(RecordError::Damaged(format!(
                    "trailer says {count} records, the stream holds {}",
                    self.content.count
                )));
            }
            if sum != self.content.digest() {
                return Err(RecordError::Damaged("content hash in the trailer does not match the records".into()));
            }
            self.state = ReadState::Done;
            return Ok(None);
        }
        let key = self.field(key_len).await?;
        let value_len = self.input.read_u32().await.map_err(Self::short)?;
        let value = self.field(value_len).await?;
        let create_revision = self.input.read_i64().await.map_err(Self::short)?;
        let mod_revision = self.input.read_i64().await.map_err(Self::short)?;
        self.content.add(&key, &value)?;
        Ok(Some(Record { key, value, create_revision, mod_revision }))
    }

    async fn field(&mut self, len: u32) -> Result<Vec<u8>, RecordError> {
        if len > MAX_FIELD {
            return Err(RecordError::Damaged(format!("field length {len} over the {MAX_FIELD}-byte limit")));
        }
        let mut buf = vec![0u8; len as usize];
        self.input.read_exact(&mut buf).await.map_err(Self::short)?;
        Ok(buf)
    }

    /// What has been read so far (complete once `next` returned `None`).
    pub fn summary(&self) -> RecordSummary {
        self.content.summary()
    }
}

/// Map a key under `root` (`/registry`, `/<schema>`) to its relative form
/// (`/pods/x`); `None` when the key is not under `root/`.
pub fn relative<'k>(key: &'k [u8], root: &[u8]) -> Option<&'k [u8]> {
    let rest = key.strip_prefix(root)?;
    rest.starts_with(b"/").then_some(rest)
}

/// The etcd range `[/<schema>/, /<schema>0)`: what Kamaji grants a tenant's role.
pub fn prefix_range(root: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut start = root.to_vec();
    start.push(b'/');
    let mut end = root.to_vec();
    end.push(b'/' + 1);
    (start, end)
}

impl Classify for RecordError {
    fn class(&self) -> ErrorClass {
        match self {
            RecordError::Damaged(_) => ErrorClass::Damaged,
            // A tenant's record stream that fails to read or is out of order comes from the source side.
            RecordError::Io(_) | RecordError::Unsorted { .. } => ErrorClass::Source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn stream(records: &[(&[u8], &[u8])]) -> (Vec<u8>, RecordSummary) {
        let mut buf = Vec::new();
        let mut w = RecordWriter::new(&mut buf);
        for (i, (k, v)) in records.iter().enumerate() {
            w.write(k, v, i as i64 + 1, i as i64 + 2).await.unwrap();
        }
        let s = w.finish().await.unwrap();
        (buf, s)
    }

    async fn read_all(buf: &[u8]) -> Result<Vec<Record>, RecordError> {
        let mut r = RecordReader::new(buf);
        let mut out = Vec::new();
        while let Some(rec) = r.next().await? {
            out.push(rec);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn round_trip_and_hash_ignores_revisions() {
        let recs: &[(&[u8], &[u8])] = &[(b"/a", b"1"), (b"/b", b""), (b"/b\x00\xff", b"\x00bin")];
        let (buf, s) = stream(recs).await;
        assert_eq!(s.count, 3);
        let back = read_all(&buf).await.unwrap();
        assert_eq!(back.iter().map(|r| (r.key.as_slice(), r.value.as_slice())).collect::<Vec<_>>(), recs);
        assert_eq!(back[1].create_revision, 2);
        // Same content, other revisions: same hash.
        let mut h = ContentHasher::default();
        for (k, v) in recs {
            h.add(k, v).unwrap();
        }
        assert_eq!(h.summary(), s);
        // Other content: other hash.
        let (_, s2) = stream(&[(b"/a", b"2"), (b"/b", b""), (b"/b\x00\xff", b"\x00bin")]).await;
        assert_ne!(s2.content_sha256, s.content_sha256);
    }

    #[tokio::test]
    async fn empty_stream_is_valid() {
        let (buf, s) = stream(&[]).await;
        assert_eq!(s.count, 0);
        assert!(read_all(&buf).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn damage_truncation_and_order_are_caught() {
        let (buf, _) = stream(&[(b"/a", b"one"), (b"/b", b"two")]).await;
        for cut in [0, 5, 12, buf.len() - 1] {
            assert!(matches!(read_all(&buf[..cut]).await, Err(RecordError::Damaged(_))), "cut at {cut}");
        }
        let mut bad = buf.clone();
        let at = bad.windows(3).position(|w| w == b"two").unwrap();
        bad[at] = b'T';
        assert!(read_all(&bad).await.unwrap_err().to_string().contains("content hash"));
        let mut w = RecordWriter::new(Vec::new());
        w.write(b"/b", b"", 0, 0).await.unwrap();
        assert!(matches!(w.write(b"/a", b"", 0, 0).await, Err(RecordError::Unsorted { .. })));
        assert!(matches!(w.write(b"/b", b"", 0, 0).await, Err(RecordError::Unsorted { .. })));
    }

    #[test]
    fn relative_keys_and_ranges() {
        assert_eq!(relative(b"/t1/pods/x", b"/t1"), Some(&b"/pods/x"[..]));
        assert_eq!(relative(b"/t10/pods/x", b"/t1"), None);
        assert_eq!(relative(b"/registry/a", b"/registry"), Some(&b"/a"[..]));
        assert_eq!(relative(b"compact_rev_key", b"/registry"), None);
        assert_eq!(prefix_range(b"/t1"), (b"/t1/".to_vec(), b"/t10".to_vec()));
    }
}
