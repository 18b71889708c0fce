//! A read-only reader of bbolt files (etcd's backend database, which is what
//! an etcd snapshot is), written by hand: no maintained Rust crate reads
//! bbolt files without also bringing a writer, file locks and a dozen
//! unrelated dependencies (see docs/design.md, "Offline inspection").
//!
//! The format (go.etcd.io/bbolt, little-endian on every platform etcd ships
//! for):
//!
//! - Every page starts with a 16-byte header: `id u64, flags u16, count u16,
//!   overflow u32`. A page spans `1 + overflow` pages of `page_size` bytes.
//!   Flags: branch 0x01, leaf 0x02, meta 0x04, freelist 0x10.
//! - Pages 0 and 1 are meta pages: after the header, `magic u32 (0xED0CDAED),
//!   version u32 (2), page_size u32, flags u32, root bucket {root u64,
//!   sequence u64}, freelist u64, pgid u64 (high-water mark), txid u64,
//!   checksum u64` (FNV-1a 64 of the 56 bytes before it). The valid meta
//!   page with the higher txid is current.
//! - Branch page elements (16 bytes each, after the header): `pos u32, ksize
//!   u32, pgid u64`; the key is at `element + pos`.
//! - Leaf page elements (16 bytes each): `flags u32, pos u32, ksize u32,
//!   vsize u32`; key at `element + pos`, value right after it. Flag 0x01 marks
//!   a nested bucket, whose value starts with `{root u64, sequence u64}`; root
//!   0 means an inline bucket: a whole page follows in the value itself.
//!
//! Memory stays bounded: pages are read on demand with `pread`, one per tree
//! level at a time.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Called with each key and value of a bucket.
pub type KeyVisitor<'f> = dyn FnMut(&[u8], &[u8]) -> Result<(), BoltError> + 'f;
/// Called with each key and value of a page, and whether the value is a nested bucket.
type EntryVisitor<'f> = dyn FnMut(&[u8], &[u8], bool) -> Result<(), BoltError> + 'f;

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;
const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const BUCKET_LEAF_FLAG: u32 = 0x01;
/// A B+tree deeper than this is corrupt (a cycle), not big.
const MAX_DEPTH: usize = 64;

/// A bbolt file that cannot be read. The message says what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BoltError(pub String);

fn bad(msg: impl Into<String>) -> BoltError {
    BoltError(msg.into())
}

/// Where a bucket's tree lives.
#[derive(Debug, Clone)]
pub enum Bucket {
    /// A tree rooted at this page.
    Root(u64),
    /// An inline bucket: the page bytes stored in the parent's value.
    Inline(Vec<u8>),
}

/// An open bbolt file.
pub struct BoltFile {
    file: File,
    len: u64,
    page_size: u64,
    /// Pages at or above this id are not part of the database.
    high_water: u64,
    root: u64,
    txid: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// A parsed meta page (None when it fails its checks).
struct Meta {
    page_size: u64,
    root: u64,
    high_water: u64,
    txid: u64,
}

fn parse_meta(b: &[u8]) -> Option<Meta> {
    if b.len() < PAGE_HEADER + 64 {
        return None;
    }
    let m = &b[PAGE_HEADER..PAGE_HEADER + 64];
    if u32_at(m, 0) != MAGIC || u32_at(m, 4) != VERSION || fnv1a64(&m[..56]) != u64_at(m, 56) {
        return None;
    }
    Some(Meta { page_size: u32_at(m, 8) as u64, root: u64_at(m, 16), high_water: u64_at(m, 40), txid: u64_at(m, 48) })
}

impl BoltFile {
    /// Open `path` read-only and pick the current meta page.
    pub fn open(path: &Path) -> Result<BoltFile, BoltError> {
        let file = File::open(path).map_err(|e| bad(format!("cannot open {}: {e}", path.display())))?;
        let len = file.metadata().map_err(|e| bad(format!("cannot stat {}: {e}", path.display())))?.len();
        let mut head = vec![0u8; (PAGE_HEADER + 64).min(len as usize)];
        file.read_exact_at(&mut head, 0).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        let first = parse_meta(&head);
        // The second meta page sits one page in; the first tells the size,
        // else try the usual sizes.
        let sizes: Vec<u64> = match &first {
            Some(m) => vec![m.page_size],
            None => vec![4096, 8192, 16384, 65536],
        };
        let mut second = None;
        for ps in sizes {
            let mut b = vec![0u8; PAGE_HEADER + 64];
            if ps + b.len() as u64 <= len
                && file.read_exact_at(&mut b, ps).is_ok()
                && let Some(m) = parse_meta(&b).filter(|m| m.page_size == ps)
            {
                second = Some(m);
                break;
            }
        }
        let meta = match (first, second) {
            (Some(a), Some(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => {
                return Err(bad(format!(
                    "{} is not a bbolt database (no valid meta page): is it an etcd snapshot?",
                    path.display()
                )));
            }
        };
        if !(512..=1 << 20).contains(&meta.page_size) || !meta.page_size.is_power_of_two() {
            return Err(bad(format!("bbolt page size {} is not plausible", meta.page_size)));
        }
        Ok(BoltFile {
            file,
            len,
            page_size: meta.page_size,
            high_water: meta.high_water,
            root: meta.root,
            txid: meta.txid,
        })
    }

    /// The transaction id of the meta page in use.
    pub fn txid(&self) -> u64 {
        self.txid
    }

    /// The page size.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Read page `id` with its overflow pages.
    fn page(&self, id: u64) -> Result<Vec<u8>, BoltError> {
        if id < 2 || id >= self.high_water {
            return Err(bad(format!("page {id} is outside the database (high-water mark {})", self.high_water)));
        }
        let off = id * self.page_size;
        if off + self.page_size > self.len {
            return Err(bad(format!("page {id} is beyond the end of the file: the snapshot is truncated")));
        }
        let mut b = vec![0u8; self.page_size as usize];
        self.file.read_exact_at(&mut b, off).map_err(|e| bad(format!("cannot read page {id}: {e}")))?;
        let overflow = u32_at(&b, 12) as u64;
        if overflow > 0 {
            let total = (overflow + 1) * self.page_size;
            if id + overflow >= self.high_water || off + total > self.len {
                return Err(bad(format!("page {id} overflows past the end of the database")));
            }
            b.resize(total as usize, 0);
            self.file
                .read_exact_at(&mut b[self.page_size as usize..], off + self.page_size)
                .map_err(|e| bad(format!("cannot read page {id}: {e}")))?;
        }
        Ok(b)
    }

    /// The root bucket's top-level bucket `name` (e.g. etcd's `key`).
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket>, BoltError> {
        let mut found = None;
        self.walk_page(&self.page(self.root)?, 0, &mut |k, v, is_bucket| {
            if is_bucket && k == name {
                found = Some(bucket_from_value(v)?);
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// Call `f(key, value)` for every key of `bucket` in key order. Nested
    /// buckets are skipped.
    pub fn for_each(&self, bucket: &Bucket, f: &mut KeyVisitor<'_>) -> Result<(), BoltError> {
        let mut g = |k: &[u8], v: &[u8], is_bucket: bool| if is_bucket { Ok(()) } else { f(k, v) };
        match bucket {
            Bucket::Root(id) => self.walk_page(&self.page(*id)?, 0, &mut g),
            Bucket::Inline(page) => self.walk_page(page, 0, &mut g),
        }
    }

    fn walk_page(&self, p: &[u8], depth: usize, f: &mut EntryVisitor<'_>) -> Result<(), BoltError> {
        if depth > MAX_DEPTH {
            return Err(bad("the bbolt tree is deeper than 64 levels: the database is corrupt"));
        }
        if p.len() < PAGE_HEADER {
            return Err(bad("a bbolt page is shorter than its header"));
        }
        let flags = u16_at(p, 8);
        let count = u16_at(p, 10) as usize;
        if PAGE_HEADER + count * ELEMENT > p.len() {
            return Err(bad(format!("page {} claims {count} elements, more than fit", u64_at(p, 0))));
        }
        let slice = |at: usize, n: usize| -> Result<&[u8], BoltError> {
            p.get(at..at.checked_add(n).ok_or_else(|| bad("element out of range"))?)
                .ok_or_else(|| bad(format!("an element of page {} points outside the page", u64_at(p, 0))))
        };
        if flags & BRANCH != 0 {
            for i in 0..count {
                let child = u64_at(p, PAGE_HEADER + i * ELEMENT + 8);
                self.walk_page(&self.page(child)?, depth + 1, f)?;
            }
        } else if flags & LEAF != 0 {
            for i in 0..count {
                let e = PAGE_HEADER + i * ELEMENT;
                let (eflags, pos, ksize, vsize) =
                    (u32_at(p, e), u32_at(p, e + 4) as usize, u32_at(p, e + 8) as usize, u32_at(p, e + 12) as usize);
                let key = slice(e + pos, ksize)?;
                let value = slice(e + pos + ksize, vsize)?;
                f(key, value, eflags & BUCKET_LEAF_FLAG != 0)?;
            }
        } else {
            return Err(bad(format!("page {} has flags {flags:#x}, neither branch nor leaf", u64_at(p, 0))));
        }
        Ok(())
    }
}

fn bucket_from_value(v: &[u8]) -> Result<Bucket, BoltError> {
    if v.len() < 16 {
        return Err(bad("a bucket header is shorter than 16 bytes"));
    }
    match u64_at(v, 0) {
        0 => Ok(Bucket::Inline(v[16..].to_vec())),
        root => Ok(Bucket::Root(root)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_go_hash_fnv_new64a() {
        // hash/fnv New64a of "" and "a".
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn not_a_database_is_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.db");
        std::fs::write(&p, vec![7u8; 10000]).unwrap();
        let e = BoltFile::open(&p).err().unwrap().to_string();
        assert!(e.contains("not a bbolt database"), "{e}");
    }
}
