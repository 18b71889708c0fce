//! One read of a shared etcd for many tenants: `backup tenant --all` (and a
//! plan's `tenants: all`) exports the tenants in key order at one revision, so
//! the pages of one range request continue from one tenant into the next.
//! 1,000 tenants of 250 keys cost about 250 range requests of 1,000 keys,
//! as `etcdctl get "" --prefix` would, not 1,000 requests or more.
//!
//! The scan keeps the page it is in. A tenant's export takes the keys of its
//! range from there, fetching the next page while it writes the current one
//! when the tenant runs past it; the first key of the next tenant stays for
//! that tenant. A tenant asked for out of key order, or at another revision,
//! starts a new scan at its own range.

use super::{EtcdTenants, root, successor};
use crate::records::RecordWriter;
use crate::records::prefix_range;
use crate::store::{ExportInfo, TenantError};
use etcd_client::KeyValue;
use std::collections::VecDeque;
use tokio::io::AsyncWrite;

/// Where a scan ends: every tenant key starts with `/`.
pub(super) const SCAN_END: &[u8] = b"0";
/// How many listed tenants past the current one a page may reach: etcd
/// counts every key of a request's range, whatever its limit, so a page's
/// range ends a few tenants ahead rather than at the end of the keyspace.
const LOOK_AHEAD: usize = 4;

/// A scan in progress at one revision.
#[derive(Debug, Default)]
pub(super) struct Scan {
    rev: i64,
    /// Every key below `pos` (from where the scan started) has been handed out or passed over.
    pos: Vec<u8>,
    /// Fetched keys at or after `pos`, in order: all keys in `[pos, next_from)`.
    page: VecDeque<KeyValue>,
    /// Where the next page starts; `None`: the scan reached [`SCAN_END`].
    next_from: Option<Vec<u8>>,
}

impl Scan {
    fn new(rev: i64, start: &[u8]) -> Scan {
        Scan { rev, pos: start.to_vec(), page: VecDeque::new(), next_from: Some(start.to_vec()) }
    }
}

impl EtcdTenants {
    /// Write the keys of `[start, end)` at revision `rev` (a shared read
    /// point) to `out`, through the scan of this connection. `strip` bytes
    /// (the tenant's root) are cut from each key. Returns how many keys were written.
    pub(super) async fn export_scanned<W: AsyncWrite + Unpin + Send>(
        &self,
        start: &[u8],
        end: &[u8],
        strip: usize,
        rev: i64,
        out: &mut RecordWriter<W>,
        info: &mut ExportInfo,
    ) -> Result<u64, TenantError> {
        let mut guard = self.scan.lock().await;
        let scan = guard.get_or_insert_with(|| Scan::new(rev, start));
        if scan.rev != rev || start < scan.pos.as_slice() {
            *scan = Scan::new(rev, start);
        }
        let written = self.take_range(scan, start, end, strip, out, info).await;
        if written.is_err() {
            *guard = None; // part of a page may be gone: the next tenant starts afresh
        }
        written
    }

    async fn take_range<W: AsyncWrite + Unpin + Send>(
        &self,
        scan: &mut Scan,
        start: &[u8],
        end: &[u8],
        strip: usize,
        out: &mut RecordWriter<W>,
        info: &mut ExportInfo,
    ) -> Result<u64, TenantError> {
        let rev = scan.rev;
        // Pass over what lies before this tenant; where the page ends before
        // it, seek instead of reading through other keys.
        while scan.page.front().is_some_and(|kv| kv.key() < start) {
            scan.page.pop_front();
        }
        if scan.page.is_empty() && scan.next_from.as_deref().is_some_and(|n| n < start) {
            scan.next_from = Some(start.to_vec());
        }
        let mut written = 0u64;
        loop {
            if scan.page.is_empty() {
                let Some(from) = scan.next_from.take() else { break };
                let fetched = self.fetch(from, rev).await?;
                scan.page = fetched.0.into();
                scan.next_from = fetched.1;
                if scan.page.is_empty() {
                    break;
                }
                continue;
            }
            // The whole page is this tenant's: fetch the next one meanwhile.
            let whole = scan.page.back().is_some_and(|kv| kv.key() < end);
            let take = if whole { scan.page.len() } else { scan.page.iter().take_while(|kv| kv.key() < end).count() };
            let mine: Vec<KeyValue> = scan.page.drain(..take).collect();
            let write = async {
                for kv in &mine {
                    if kv.lease() != 0 {
                        info.leased_keys += 1;
                    }
                    out.write(&kv.key()[strip..], kv.value(), kv.create_revision(), kv.mod_revision()).await?;
                }
                Ok::<_, TenantError>(())
            };
            if whole && let Some(from) = scan.next_from.take() {
                let (w, fetched) = tokio::join!(write, self.fetch(from, rev));
                w?;
                let fetched = fetched?;
                scan.page = fetched.0.into();
                scan.next_from = fetched.1;
            } else {
                write.await?;
            }
            written += mine.len() as u64;
            if !whole {
                break; // the next key is past this tenant
            }
        }
        scan.pos = end.to_vec();
        Ok(written)
    }

    /// One page from `from` up to [`LOOK_AHEAD`] listed tenants ahead (else
    /// to the end of the tenants' keys), and where the next starts: past the
    /// page's last key, or at the range's end when the range is exhausted.
    async fn fetch(&self, from: Vec<u8>, rev: i64) -> Result<(Vec<KeyValue>, Option<Vec<u8>>), TenantError> {
        let bound = self.look_ahead(&from);
        let mut resp = self.page(from, bound.as_deref().unwrap_or(SCAN_END), rev).await?;
        let more = resp.more();
        let kvs = resp.take_kvs();
        let next = match (kvs.last(), bound) {
            (Some(last), _) if more => Some(successor(last.key())),
            (_, Some(bound)) => Some(bound),
            _ => None,
        };
        Ok((kvs, next))
    }

    /// The end of the range of the listed tenant [`LOOK_AHEAD`] past the one
    /// `from` is in (`None`: too near the end of the list, or no list).
    fn look_ahead(&self, from: &[u8]) -> Option<Vec<u8>> {
        let listed = self.listed.lock().expect("listed lock");
        let at = listed.partition_point(|t| prefix_range(&root(t)).1.as_slice() <= from);
        listed.get(at + LOOK_AHEAD).map(|t| prefix_range(&root(t)).1)
    }
}
