//! The tamper-evident catalog (docs/design.md section 9, "Tamper evidence").
//!
//! A listing of `backups/` is the catalog, so deleting a manifest made a
//! backup vanish without a trace, and a manifest put back after `forget`
//! came back to life. Now every new manifest links (inside its sealed,
//! authenticated JSON) the backups it saw in the store when it was written,
//! and the newest delta segment of its series; `forget` leaves a record of
//! what it removed, authenticated by a key only full keys have. Both are
//! computed from listings alone, so a write-only agent extends the links.
//! `verify` then names a linked backup that is gone without a forget record,
//! a forgotten backup that is back, and a hole in a delta chain that no full
//! backup explains.

use crate::crypto::ObjectKind;
use crate::deltas::{SegmentName, check_chain};
use crate::repository::ZSTD_LEVEL;
use crate::{Repository, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use kmdr_core::{BackupId, CatalogLinks};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};

/// How many of the most recently written backups a new manifest links.
pub const LINKED_RECENT: usize = 64;

/// What the links of new manifests are made from: the [`LINKED_RECENT`]
/// backups written last (by the store's modification time, so a long backup
/// that committed late is among them), the newest backup of each kind, and,
/// when listed, the newest delta segment of each series. Read once per run of
/// backups ([`crate::BackupRun`]) and kept current with what the run writes,
/// so that 1,000 tenants backed up together list the repository once.
#[derive(Debug, Clone, Default)]
pub struct CatalogView {
    /// Newest written first, at most [`LINKED_RECENT`].
    recent: Vec<BackupId>,
    newest_of_kind: BTreeMap<String, BackupId>,
    /// Every series' newest segment (`None`: not listed; each commit lists its series).
    segments: Option<BTreeMap<String, SegmentName>>,
}

impl CatalogView {
    /// List `backups/` and, with `all_segments`, `deltas/` (worth it for a run
    /// of many backups; one backup lists only its series' segments).
    pub async fn read(repo: &Repository, all_segments: bool) -> Result<CatalogView> {
        let mut objects = repo.store().list("backups/").await?;
        objects.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| b.key.cmp(&a.key)));
        let mut view = CatalogView::default();
        for id in objects.iter().rev().filter_map(|o| o.key.strip_prefix("backups/").and_then(|n| n.parse().ok())) {
            view.written(id);
        }
        if all_segments {
            let mut newest: BTreeMap<String, SegmentName> = BTreeMap::new();
            for s in repo.list_segments(None).await? {
                if newest.get(&s.series).is_none_or(|n| (n.last, n.first) < (s.last, s.first)) {
                    newest.insert(s.series.clone(), s);
                }
            }
            view.segments = Some(newest);
        }
        Ok(view)
    }

    /// The links a manifest of `kind` in `series` carries.
    pub async fn links_for(&self, repo: &Repository, kind: &str, series: &str) -> Result<CatalogLinks> {
        let segment = match &self.segments {
            Some(all) => all.get(series).cloned(),
            None => repo.list_segments(Some(series)).await?.into_iter().max_by_key(|s| (s.last, s.first)),
        };
        Ok(self.links_with(kind, segment))
    }

    /// [`CatalogView::links_for`] without a listing, when the view has every series' segments.
    pub fn links_listed(&self, kind: &str, series: &str) -> Option<CatalogLinks> {
        self.segments.as_ref().map(|all| self.links_with(kind, all.get(series).cloned()))
    }

    fn links_with(&self, kind: &str, segment: Option<SegmentName>) -> CatalogLinks {
        let mut backups: BTreeSet<String> = self.recent.iter().map(ToString::to_string).collect();
        if let Some(previous) = self.newest_of_kind.get(kind) {
            backups.insert(previous.to_string());
        }
        CatalogLinks {
            backups: backups.into_iter().collect(),
            segments: segment.map(|s| s.key()).into_iter().collect(),
        }
    }

    /// A backup was just written (it is now the most recent).
    pub fn written(&mut self, id: BackupId) {
        let kind = id.kind().to_string();
        if self.newest_of_kind.get(&kind).is_none_or(|n| *n < id) {
            self.newest_of_kind.insert(kind, id.clone());
        }
        self.recent.insert(0, id);
        self.recent.truncate(LINKED_RECENT);
    }
}

/// What one `forget` removed, sealed at `catalog/<time>-forget-<nonce>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForgetRecord {
    pub written: DateTime<Utc>,
    /// Backup ids whose manifests were deleted.
    pub backups: Vec<String>,
    /// Delta segments (object keys) that were deleted.
    pub segments: Vec<String>,
    /// Hex HMAC-SHA256 under the admin key (section 4) of [`ForgetRecord::signed`].
    pub tag: String,
}

impl ForgetRecord {
    fn signed(written: &DateTime<Utc>, backups: &[String], segments: &[String]) -> Vec<u8> {
        format!(
            "kmdr forget record v1\n{}\n{}\n--\n{}\n",
            written.to_rfc3339(),
            backups.join("\n"),
            segments.join("\n")
        )
        .into_bytes()
    }

    fn tag_with(key: &[u8; 32], written: &DateTime<Utc>, backups: &[String], segments: &[String]) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length works");
        m.update(&Self::signed(written, backups, segments));
        hex::encode(m.finalize().into_bytes())
    }
}

/// Record what `forget` deleted (nothing to record: nothing written). Needs a full key.
pub async fn record_forgotten(repo: &Repository, backups: &[BackupId], segments: &[String]) -> Result<()> {
    if backups.is_empty() && segments.is_empty() {
        return Ok(());
    }
    repo.require_full_key("and remove backups")?;
    let admin = repo.key().admin_key().expect("a full key has an admin key");
    let written = Utc::now();
    let backups: Vec<String> = backups.iter().map(ToString::to_string).collect();
    let tag = ForgetRecord::tag_with(&admin, &written, &backups, segments);
    let record = ForgetRecord { written, backups, segments: segments.to_vec(), tag };
    let name =
        format!("catalog/{}-forget-{:06x}", written.format("%Y%m%dT%H%M%S%.3fZ"), rand::random::<u32>() & 0xff_ffff);
    let sealed = repo.key().seal(ObjectKind::Catalog, &name, &serde_json::to_vec(&record).expect("json"), ZSTD_LEVEL);
    repo.store().put(&name, Bytes::from(sealed)).await?;
    Ok(())
}

/// A backup a manifest links that the store no longer lists, and no forget record explains.
#[derive(Debug, Clone, Serialize)]
pub struct Vanished {
    pub object: String,
    /// The manifest that saw it.
    pub linked_by: String,
}

/// A hole in a delta chain that no full backup of the series explains.
#[derive(Debug, Clone, Serialize)]
pub struct ChainHole {
    pub series: String,
    pub from: i64,
    pub to: i64,
}

/// What `verify` found about the catalog itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CatalogAudit {
    /// Backups deleted from the store (linked, gone, not forgotten).
    pub deleted_backups: Vec<Vanished>,
    /// Segments deleted from the store (linked, gone, not forgotten).
    pub deleted_segments: Vec<Vanished>,
    /// Backups a forget record removed that are listed again.
    pub put_back: Vec<String>,
    /// Revisions missing inside a delta chain.
    pub chain_holes: Vec<ChainHole>,
    /// Forget records that fail to open or whose tag is wrong (not made by a full key).
    pub bad_records: Vec<String>,
}

impl CatalogAudit {
    pub fn is_clean(&self) -> bool {
        self.deleted_backups.is_empty()
            && self.deleted_segments.is_empty()
            && self.put_back.is_empty()
            && self.chain_holes.is_empty()
            && self.bad_records.is_empty()
    }
}

/// Check the catalog: read every manifest's links and every forget record.
/// Manifests that cannot be read are `verify`'s other report's business.
pub async fn audit(repo: &Repository) -> Result<CatalogAudit> {
    let mut a = CatalogAudit::default();
    let admin = repo.key().admin_key();
    let mut forgotten_backups = BTreeSet::new();
    let mut forgotten_segments = BTreeSet::new();
    for o in repo.store().list("catalog/").await? {
        let raw = repo.store().get(&o.key).await?;
        let record = repo
            .open_object(ObjectKind::Catalog, &o.key, &raw, "forget records")
            .ok()
            .and_then(|json| serde_json::from_slice::<ForgetRecord>(&json).ok());
        match (record, admin) {
            (Some(r), Some(k)) if ForgetRecord::tag_with(&k, &r.written, &r.backups, &r.segments) == r.tag => {
                forgotten_backups.extend(r.backups);
                forgotten_segments.extend(r.segments);
            }
            _ => a.bad_records.push(o.key),
        }
    }
    let listed: BTreeSet<String> = repo.list_backups().await?.iter().map(ToString::to_string).collect();
    let segments = repo.list_segments(None).await?;
    let listed_segments: BTreeSet<String> = segments.iter().map(SegmentName::key).collect();
    a.put_back = listed.intersection(&forgotten_backups).cloned().collect();
    let mut bases: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for id in &listed {
        let Ok(m) = repo.load_manifest(&id.parse().expect("listed ids parse")).await else { continue };
        if let Some(r) = crate::point::base_revision(&m) {
            bases.entry(m.series.clone()).or_default().push(r);
        }
        let Some(links) = &m.links else { continue };
        for b in &links.backups {
            if !listed.contains(b) && !forgotten_backups.contains(b) && seen.insert(b.clone()) {
                a.deleted_backups.push(Vanished { object: format!("backups/{b}"), linked_by: id.clone() });
            }
        }
        for s in &links.segments {
            if !listed_segments.contains(s) && !forgotten_segments.contains(s) && seen.insert(s.clone()) {
                a.deleted_segments.push(Vanished { object: s.clone(), linked_by: id.clone() });
            }
        }
    }
    let mut by_series: BTreeMap<&str, Vec<SegmentName>> = BTreeMap::new();
    for s in &segments {
        by_series.entry(s.series.as_str()).or_default().push(s.clone());
    }
    for (series, segs) in by_series {
        let revs = bases.get(series).map(Vec::as_slice).unwrap_or_default();
        for (from, to) in check_chain(&segs).gaps {
            // A chain restarts after a full backup (compaction, a new history).
            if !revs.iter().any(|r| (from - 1..=to).contains(r)) {
                a.chain_holes.push(ChainHole { series: series.to_string(), from, to });
            }
        }
    }
    Ok(a)
}

impl CatalogAudit {
    /// One line per finding, for `verify`'s report.
    pub fn lines(&self) -> Vec<String> {
        let a = self;
        let mut out = Vec::new();
        for v in &a.deleted_backups {
            out.push(format!(
                "{}: deleted from the store (linked by backup {}, no forget record)",
                v.object, v.linked_by
            ));
        }
        for v in &a.deleted_segments {
            out.push(format!("{}: delta segment deleted from the store (linked by backup {})", v.object, v.linked_by));
        }
        for b in &a.put_back {
            out.push(format!("backups/{b}: put back after `forget` removed it (a forget record names it)"));
        }
        for h in &a.chain_holes {
            out.push(format!(
                "deltas/{}: revisions {}..={} are missing inside the chain (a segment was deleted) and no full backup restarts it there",
                h.series, h.from, h.to
            ));
        }
        for r in &a.bad_records {
            out.push(format!("{r}: not a forget record made by a full key of this repository"));
        }
        out
    }
}
