//! The series index (docs/design.md section 2): one empty object
//! `series/<tag>/<id>` per backup, `<tag>` a keyed hash of the backup's
//! series. A backup id names its kind and time, not its series, so "the
//! newest backup of tenant X" meant opening manifests newest first: with
//! 1,000 tenants and 100,000 backups, hundreds of reads (on S3, seconds). One
//! listing of the series' prefix now gives its backups, and one manifest read
//! confirms the newest.
//!
//! The index is a hint, never trusted alone: every candidate's manifest is
//! opened and its (authenticated) series compared, so a forged marker is
//! passed over and a marker whose backup was forgotten is skipped. A series
//! the index knows nothing of (backups from before the index) is found by
//! opening manifests as before. The tag is keyed with the chunk-naming key, so
//! the store sees which backups share a series but not its name; a write-only
//! key writes markers too.

use crate::{Error, Repository, Result};
use bytes::Bytes;
use futures::StreamExt;
use kmdr_core::{BackupId, Manifest};

/// Where the index lives.
pub const PREFIX: &str = "series/";
/// Manifests opened at once when the index cannot answer.
const PARALLEL_READS: usize = 16;

impl Repository {
    /// The prefix of `series`'s markers.
    pub fn series_prefix(&self, series: &str) -> String {
        format!("{PREFIX}{}/", self.key().series_tag(series))
    }

    /// The marker of backup `id` of `series`.
    pub fn series_marker(&self, series: &str, id: &BackupId) -> String {
        format!("{}{id}", self.series_prefix(series))
    }

    /// Index backup `id` under `series` (before its manifest is written).
    pub(crate) async fn put_series_marker(&self, series: &str, id: &BackupId) -> Result<()> {
        self.store().put(&self.series_marker(series, id), Bytes::new()).await?;
        Ok(())
    }

    /// The backups the index holds for `series`, newest first (of `kind` only, if given).
    pub async fn indexed_backups(&self, series: &str, kind: Option<&str>) -> Result<Vec<BackupId>> {
        let prefix = self.series_prefix(series);
        let mut ids: Vec<BackupId> = self
            .store()
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|o| o.key.strip_prefix(&prefix).and_then(|n| n.parse().ok()))
            .filter(|i: &BackupId| kind.is_none_or(|k| i.kind() == k))
            .collect();
        ids.sort_by(|a, b| b.cmp(a));
        Ok(ids)
    }

    /// The newest backup of `series` (of `kind`, if given) that `keep` accepts:
    /// from the index, else by opening manifests newest first, several at once.
    pub async fn latest_of_series(
        &self,
        series: &str,
        kind: Option<&str>,
        keep: impl Fn(&BackupId) -> bool,
    ) -> Result<Option<Manifest>> {
        let indexed: Vec<BackupId> = self.indexed_backups(series, kind).await?.into_iter().filter(&keep).collect();
        if let Some(m) = self.first_of_series(indexed, series).await? {
            return Ok(Some(m));
        }
        let ids: Vec<BackupId> = self
            .list_backups()
            .await?
            .into_iter()
            .rev()
            .filter(|i| kind.is_none_or(|k| i.kind() == k) && keep(i))
            .collect();
        self.first_of_series(ids, series).await
    }

    /// The first of `ids` whose manifest says `series`; manifests that are
    /// gone (forgotten since the listing) are passed over.
    async fn first_of_series(&self, ids: Vec<BackupId>, series: &str) -> Result<Option<Manifest>> {
        let mut reads =
            futures::stream::iter(ids).map(|id| async move { self.load_manifest(&id).await }).buffered(PARALLEL_READS);
        while let Some(read) = reads.next().await {
            match read {
                Ok(m) if m.series == series => return Ok(Some(m)),
                Ok(_) | Err(Error::BackupNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Delete markers of backups that are gone (a crash between a marker and
    /// its manifest, or inside `forget`). Only under an exclusive lock: a
    /// writer's marker precedes its manifest. Returns how many went.
    pub(crate) async fn sweep_series_markers(&self) -> Result<usize> {
        let backups: std::collections::HashSet<String> =
            self.list_backups().await?.iter().map(ToString::to_string).collect();
        let mut swept = 0;
        for o in self.store().list(PREFIX).await? {
            if o.key.rsplit('/').next().is_some_and(|id| !backups.contains(id)) {
                self.store().delete(&o.key).await?;
                swept += 1;
            }
        }
        Ok(swept)
    }
}
