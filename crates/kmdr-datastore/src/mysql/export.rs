//! Export: reading kine's table in key byte order. Streamed off its name
//! index where the column's collation allows it ([`name_order`]): rows go
//! out as they arrive, so the server's read overlaps chunking, compression
//! and encryption, and memory holds one row. Otherwise read in id order (a
//! sequential scan of the clustered index: a name's last row is its current
//! one) and put in byte order by a [`Spill`], which writes nothing until the
//! whole table is read.

use super::{MysqlTenants, quote};
use crate::kine_sql::{BATCH_ROWS, ExportRows, LiveRow, name_order};
use crate::records::RecordWriter;
use crate::spill::{RowMeta, Spill};
use crate::store::TenantError;
use crate::url::Driver;
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Transaction};
use tokio::io::AsyncWrite;

/// The columns [`kine_row`] reads.
const ROW_COLUMNS: &str = "id, name, created, deleted, create_revision, lease, value";

impl MysqlTenants {
    /// Every live key of the tenant, in byte order, inside `tx` (one
    /// consistent snapshot).
    pub(super) async fn export_rows<W: AsyncWrite + Unpin + Send>(
        &self,
        tx: &mut Transaction<'_>,
        schema: &str,
        rows: &mut ExportRows,
        out: &mut RecordWriter<W>,
    ) -> Result<(), TenantError> {
        if let Some(index) = self.name_index(tx, schema).await?
            && let Some(odd) = self.odd_rows(tx).await?
        {
            return self.export_in_name_order(tx, &index, odd, rows, out).await;
        }
        self.export_spilled(tx, rows, out).await
    }

    /// The index on kine's `name` (with `id` after it) to stream the table
    /// from, when the column's collation keeps [`name_order::index_ordered`]
    /// names in byte order there; `None` means read in id order and sort.
    async fn name_index(&self, tx: &mut Transaction<'_>, schema: &str) -> Result<Option<String>, TenantError> {
        let collation: Option<Option<String>> = tx
            .exec_first(
                "SELECT CAST(collation_name AS CHAR) FROM information_schema.columns \
                 WHERE table_schema = ? AND table_name = 'kine' AND column_name = 'name'",
                (schema,),
            )
            .await
            .map_err(|e| self.error("check table kine", e))?;
        if !collation.flatten().is_some_and(|c| name_order::STREAMED_COLLATIONS.contains(&c.as_str())) {
            return Ok(None);
        }
        // kine makes both; InnoDB keeps the primary key (id) after `name` in either.
        tx.exec_first(
            "SELECT CAST(index_name AS CHAR) FROM information_schema.statistics WHERE table_schema = ? \
             AND table_name = 'kine' AND index_name IN ('kine_name_id_index', 'kine_name_index') \
             AND seq_in_index = 1 AND column_name = 'name' ORDER BY index_name LIMIT 1",
            (schema,),
        )
        .await
        .map_err(|e| self.error("check table kine", e))
    }

    /// The latest live row of every name that is not
    /// [`name_order::index_ordered`], in a spill: found by a keys-only scan of
    /// the name index, then read by id. `None` when there are more than
    /// [`name_order::MAX_ODD_ROWS`].
    async fn odd_rows(&self, tx: &mut Transaction<'_>) -> Result<Option<Spill>, TenantError> {
        // No ORDER BY: it would make the server scan the rows (with their
        // values) in id order instead of the name index alone.
        let sql = format!(
            "SELECT id FROM kine WHERE CAST(name AS BINARY) REGEXP '{}' LIMIT {}",
            name_order::ODD_NAMES_REGEXP,
            name_order::MAX_ODD_ROWS + 1
        );
        let mut ids: Vec<i64> = tx.query(sql).await.map_err(|e| self.error("read keys", e))?;
        if ids.len() > name_order::MAX_ODD_ROWS {
            return Ok(None);
        }
        ids.sort_unstable();
        let mut spill = Spill::new()?;
        for batch in ids.chunks(BATCH_ROWS) {
            let list: Vec<String> = batch.iter().map(i64::to_string).collect();
            let sql = format!("SELECT {ROW_COLUMNS} FROM kine WHERE id IN ({}) ORDER BY id", list.join(","));
            let mut result = tx.query_iter(sql).await.map_err(|e| self.error("read keys", e))?;
            while let Some(row) = result.next().await.map_err(|e| self.error("read keys", e))? {
                match kine_row(row) {
                    (name, _, None) => spill.delete(&name),
                    (name, meta, Some(value)) => spill.put(&name, meta, &value)?,
                }
            }
        }
        Ok(Some(spill))
    }

    /// Stream the table off its name index: each name's rows come together
    /// in id order, the last one is current, and the names that are not
    /// [`name_order::index_ordered`] (read before, `odd`) are merged in by
    /// their bytes. Nothing is sorted, and nothing but one row is held.
    async fn export_in_name_order<W: AsyncWrite + Unpin + Send>(
        &self,
        tx: &mut Transaction<'_>,
        index: &str,
        odd: Spill,
        rows: &mut ExportRows,
        out: &mut RecordWriter<W>,
    ) -> Result<(), TenantError> {
        let mut odd = odd.into_sorted()?;
        let sql = format!("SELECT {ROW_COLUMNS} FROM kine FORCE INDEX ({}) ORDER BY name, id", quote(index));
        let mut result = tx.query_iter(sql).await.map_err(|e| self.error("read keys", e))?;
        // The current name and its newest row so far (no value: a deletion).
        let mut current: Option<(Vec<u8>, RowMeta, Option<Vec<u8>>)> = None;
        let mut last: Option<Vec<u8>> = None;
        loop {
            let next = match result.next().await.map_err(|e| self.error("read keys", e))? {
                Some(row) => {
                    let (name, meta, value) = kine_row(row);
                    if !name_order::index_ordered(&name) {
                        continue;
                    }
                    if let Some((n, m, v)) = &mut current
                        && *n == name
                    {
                        (*m, *v) = (meta, value);
                        continue;
                    }
                    Some((name, meta, value))
                }
                None => None,
            };
            let done = next.is_none();
            if let Some((name, meta, Some(value))) = std::mem::replace(&mut current, next) {
                if last.as_ref().is_some_and(|l| *l >= name) {
                    return Err(TenantError::Datastore {
                        driver: Driver::Mysql,
                        op: "read keys".into(),
                        datastore: self.shown.clone(),
                        detail: format!(
                            "kine's index {index} is not in byte order at {:?}",
                            String::from_utf8_lossy(&name)
                        ),
                    });
                }
                while odd.peek_key().is_some_and(|k| k < name.as_slice()) {
                    let (n, m, v) = odd.next_row()?.expect("a key was peeked");
                    rows.row(out, live(&n, m, &v)).await?;
                }
                rows.row(out, live(&name, meta, &value)).await?;
                last = Some(name);
            }
            if done {
                break;
            }
        }
        drop(result);
        while let Some((n, m, v)) = odd.next_row()? {
            rows.row(out, live(&n, m, &v)).await?;
        }
        Ok(())
    }

    /// Read the table in id order into a spill, then write it in byte order.
    async fn export_spilled<W: AsyncWrite + Unpin + Send>(
        &self,
        tx: &mut Transaction<'_>,
        rows: &mut ExportRows,
        out: &mut RecordWriter<W>,
    ) -> Result<(), TenantError> {
        let mut spill = Spill::new()?;
        let sql = format!("SELECT {ROW_COLUMNS} FROM kine ORDER BY id");
        let mut result = tx.query_iter(sql).await.map_err(|e| self.error("read keys", e))?;
        while let Some(row) = result.next().await.map_err(|e| self.error("read keys", e))? {
            match kine_row(row) {
                (name, _, None) => spill.delete(&name),
                (name, meta, Some(value)) => spill.put(&name, meta, &value)?,
            }
        }
        drop(result);
        spill.sorted(async |name: &[u8], m: RowMeta, value: &[u8]| rows.row(out, live(name, m, value)).await).await
    }
}

/// One row of [`ROW_COLUMNS`]: its name, its row, and its value (`None` for a deletion).
fn kine_row(mut row: Row) -> (Vec<u8>, RowMeta, Option<Vec<u8>>) {
    let int = |row: &mut Row, i: usize| row.take::<Option<i64>, _>(i).flatten().unwrap_or(0);
    let id = int(&mut row, 0);
    let name: Vec<u8> = row.take::<Option<Vec<u8>>, _>(1).flatten().unwrap_or_default();
    let (created, deleted, create_revision, lease) =
        (int(&mut row, 2), int(&mut row, 3), int(&mut row, 4), int(&mut row, 5));
    let value = (deleted == 0).then(|| row.take::<Option<Vec<u8>>, _>(6).flatten().unwrap_or_default());
    (name, RowMeta { id, created, create_revision, lease }, value)
}

fn live<'a>(name: &'a [u8], m: RowMeta, value: &'a [u8]) -> LiveRow<'a> {
    LiveRow { id: m.id, name, created: m.created, create_revision: m.create_revision, lease: m.lease, value }
}
