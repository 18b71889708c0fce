//! What the PostgreSQL and MySQL drivers share: kine's table, how a kine row
//! becomes a record, how records become kine rows, and what a failed import
//! leaves behind.
//!
//! kine (k3s-io/kine) keeps one tenant per database, in one table `kine`
//! where every row is an event and `id` is the revision. A key's live value
//! is its row with the highest id, when that row is not a delete. The API
//! server's keys sit under `/registry`; kine's own bookkeeping row
//! `compact_rev_key` (whose `prev_revision` is the compacted revision) is not
//! tenant data.
//!
//! Export selects the latest row per name in one consistent snapshot, in key
//! byte order, and feeds it through [`ExportRows`]. Import writes one create
//! row per record with explicit ids above the table's current maximum, so
//! revisions only ever increase, as kine's watchers expect; both drivers do it
//! in a single transaction that commits only after the record stream's trailer
//! checked out.

pub mod feed;
pub mod name_order;

use crate::records::RecordWriter;

use crate::store::{ExportInfo, TenantError};

use crate::url::Driver;
use tokio::io::AsyncWrite;

/// Where the API server's keys sit in kine.
pub const KEY_ROOT: &str = "/registry";
/// kine's own bookkeeping row.
pub const COMPACT_REV_KEY: &str = "compact_rev_key";

/// Rows per insert batch.
pub const BATCH_ROWS: usize = 500;
/// Bytes of keys and values per insert batch.
pub const BATCH_BYTES: usize = 1 << 20;

/// kine's table and indexes on PostgreSQL, exactly as kine v0.17 creates
/// them (64-bit revisions, names in the "C" collation).
pub const POSTGRES_DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS kine (id BIGSERIAL PRIMARY KEY, name text COLLATE \"C\", created INTEGER, deleted INTEGER, create_revision BIGINT, prev_revision BIGINT, lease INTEGER, value bytea, old_value bytea)",
    "CREATE INDEX IF NOT EXISTS kine_name_index ON kine (name)",
    "CREATE INDEX IF NOT EXISTS kine_name_id_index ON kine (name,id)",
    "CREATE INDEX IF NOT EXISTS kine_id_deleted_index ON kine (id,deleted)",
    "CREATE INDEX IF NOT EXISTS kine_prev_revision_index ON kine (prev_revision)",
    "CREATE UNIQUE INDEX IF NOT EXISTS kine_name_prev_revision_uindex ON kine (name, prev_revision)",
    "CREATE INDEX IF NOT EXISTS kine_list_query_index on kine(name, id DESC, deleted)",
];

/// kine's table and indexes on MySQL/MariaDB, exactly as kine v0.17 creates
/// them. The index statements fail with error 1061 when the index exists.
pub const MYSQL_DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS kine (id BIGINT UNSIGNED AUTO_INCREMENT, name VARCHAR(630) CHARACTER SET ascii, created INTEGER, deleted INTEGER, create_revision BIGINT UNSIGNED, prev_revision BIGINT UNSIGNED, lease INTEGER, value MEDIUMBLOB, old_value MEDIUMBLOB, PRIMARY KEY (id))",
    "CREATE INDEX kine_name_index ON kine (name)",
    "CREATE INDEX kine_name_id_index ON kine (name,id)",
    "CREATE INDEX kine_id_deleted_index ON kine (id,deleted)",
    "CREATE INDEX kine_prev_revision_index ON kine (prev_revision)",
    "CREATE UNIQUE INDEX kine_name_prev_revision_uindex ON kine (name, prev_revision)",
];

/// The columns of kine's table, in kine's order, as kine up to v0.17 lays it out.
pub const KINE_COLUMNS: [&str; 9] =
    ["id", "name", "created", "deleted", "create_revision", "prev_revision", "lease", "value", "old_value"];

/// kine's table as found in one database: which revision columns are 64-bit
/// (kine v0.17, or older kine after its `KINE_SCHEMA_MIGRATION`) and which
/// are 32-bit (tables of older kine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KineTable {
    pub id_bigint: bool,
    pub create_revision_bigint: bool,
    pub prev_revision_bigint: bool,
}

impl KineTable {
    /// The table kmdr creates ([`POSTGRES_DDL`], [`MYSQL_DDL`]).
    pub const CURRENT: KineTable =
        KineTable { id_bigint: true, create_revision_bigint: true, prev_revision_bigint: true };

    /// Check the columns found (name, SQL type as the server shows it) against
    /// kine's: a column missing or one kmdr does not know means a kine schema
    /// kmdr cannot read or write safely, refused before anything is touched.
    pub fn check(columns: &[(String, String)]) -> Result<KineTable, String> {
        let type_of =
            |c: &str| columns.iter().find(|(n, _)| n.eq_ignore_ascii_case(c)).map(|(_, t)| t.to_ascii_lowercase());
        let unknown: Vec<&str> = columns
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !KINE_COLUMNS.iter().any(|k| k.eq_ignore_ascii_case(n)))
            .collect();
        let missing: Vec<&str> = KINE_COLUMNS.iter().copied().filter(|c| type_of(c).is_none()).collect();
        if !unknown.is_empty() || !missing.is_empty() {
            let mut parts = Vec::new();
            if !unknown.is_empty() {
                parts.push(format!("column(s) {} that kine v0.17 does not have", unknown.join(", ")));
            }
            if !missing.is_empty() {
                parts.push(format!("no column(s) {}", missing.join(", ")));
            }
            return Err(parts.join(" and "));
        }
        let bigint = |c: &str| type_of(c).is_some_and(|t| t.starts_with("bigint"));
        Ok(KineTable {
            id_bigint: bigint("id"),
            create_revision_bigint: bigint("create_revision"),
            prev_revision_bigint: bigint("prev_revision"),
        })
    }

    /// Whether revision `rev` fits every revision column.
    pub fn check_revision(&self, driver: Driver, rev: i64) -> Result<(), TenantError> {
        let narrow = !(self.id_bigint && self.create_revision_bigint && self.prev_revision_bigint);
        if narrow && i32::try_from(rev).is_err() {
            return Err(TenantError::Unrepresentable(format!(
                "revision {rev} does not fit the 32-bit revision columns of this kine table on {driver}: let kine v0.17 migrate the table to 64-bit revisions (KINE_SCHEMA_MIGRATION=1) and restore again"
            )));
        }
        Ok(())
    }
}

/// MySQL's "duplicate key name" error, from re-creating an index.
pub const MYSQL_DUP_INDEX: u16 = 1061;

/// The state message of an import that was rolled back.
pub fn rolled_back_state(created: Option<&str>) -> String {
    match created {
        None => "nothing was changed: the transaction was rolled back; fix the cause and run the restore again".into(),
        Some(what) => format!(
            "the transaction was rolled back, so no key was written; {what} was created for the restore and is left empty; fix the cause and run the restore again"
        ),
    }
}

/// Check a tenant name before it becomes a database name in SQL: letters,
/// digits, `_` and `-`, at most 63 bytes (PostgreSQL's identifier limit).
/// Anything else is refused rather than quoted into a statement.
pub fn check_schema(schema: &str) -> Result<(), TenantError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(TenantError::BadUrl(format!(
            "tenant (database) name {schema:?} is not usable: use 1 to 63 letters, digits, '_' or '-'"
        )))
    }
}

/// The full kine name of a relative key, checked against kine's column:
/// `VARCHAR(630)`, and ASCII on MySQL / UTF-8 on PostgreSQL.
pub fn kine_name(driver: Driver, relative: &[u8]) -> Result<String, TenantError> {
    let mut name = String::with_capacity(KEY_ROOT.len() + relative.len());
    name.push_str(KEY_ROOT);
    let rel = std::str::from_utf8(relative).map_err(|_| {
        TenantError::Unrepresentable(format!(
            "key {:?} is not UTF-8 and cannot be stored in kine's name column on {driver}",
            String::from_utf8_lossy(relative)
        ))
    })?;
    if driver == Driver::Mysql && !rel.is_ascii() {
        return Err(TenantError::Unrepresentable(format!(
            "key {rel:?} is not ASCII and cannot be stored in kine's name column (CHARACTER SET ascii) on mysql"
        )));
    }
    if rel.contains('\0') {
        return Err(TenantError::Unrepresentable(format!(
            "key {rel:?} holds a NUL byte, which kine's name column cannot store"
        )));
    }
    name.push_str(rel);
    if name.chars().count() > 630 {
        return Err(TenantError::Unrepresentable(format!(
            "key {}... is longer than kine's 630-character name column",
            &rel[..rel.char_indices().nth(60).map(|(i, _)| i).unwrap_or(rel.len())]
        )));
    }
    Ok(name)
}

/// The latest row of one kine name, as export reads it.
pub struct LiveRow<'a> {
    pub id: i64,
    pub name: &'a [u8],
    pub created: i64,
    pub create_revision: i64,
    pub lease: i64,
    pub value: &'a [u8],
}

/// Turns the live rows of one snapshot (latest row per name, not deleted,
/// sorted by name bytes) into records, counting leased and skipped keys.
pub struct ExportRows {
    pub info: ExportInfo,
}

impl ExportRows {
    pub fn new(revision: i64) -> Self {
        ExportRows { info: ExportInfo { revision, ..ExportInfo::default() } }
    }

    /// Write one row as a record, or count it as skipped when it is not
    /// under `/registry/` (`compact_rev_key` is skipped silently).
    pub async fn row<W: AsyncWrite + Unpin>(
        &mut self,
        out: &mut RecordWriter<W>,
        row: LiveRow<'_>,
    ) -> Result<(), TenantError> {
        let Some(key) = crate::records::relative(row.name, KEY_ROOT.as_bytes()) else {
            if row.name != COMPACT_REV_KEY.as_bytes() {
                self.info.skipped_keys += 1;
                if self.info.first_skipped.is_none() {
                    self.info.first_skipped = Some(String::from_utf8_lossy(row.name).into_owned());
                }
            }
            return Ok(());
        };
        if row.lease != 0 {
            self.info.leased_keys += 1;
        }
        // kine stores create_revision 0 on create rows: the row's own id is it.
        let create_revision = if row.created != 0 { row.id } else { row.create_revision };
        out.write(key, row.value, create_revision, row.id).await?;
        Ok(())
    }

    pub fn finish(self) -> ExportInfo {
        self.info
    }
}

/// One row of kine's log as the delta capture reads it (every row is an event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    pub id: i64,
    pub name: Vec<u8>,
    pub created: i64,
    pub deleted: i64,
    pub create_revision: i64,
    pub value: Vec<u8>,
}

/// Rows after an id and the compacted revision, read in one snapshot.
#[derive(Debug, Clone, Default)]
pub struct LogPage {
    /// kine's compact revision (`prev_revision` of `compact_rev_key`; 0 when never compacted).
    pub compact_revision: i64,
    /// Rows in id order.
    pub rows: Vec<LogRow>,
}

/// Rows read per query by the delta capture.
pub const LOG_PAGE: usize = 1000;

/// kine's log of one tenant, read after an id (the delta capture's source).
/// Each read is one consistent snapshot, so the compact revision and the
/// rows agree.
#[allow(async_fn_in_trait)]
pub trait KineLog {
    /// Rows with `id > after`, in id order, at most [`LOG_PAGE`], and the compact revision.
    async fn after(&mut self, after: i64) -> Result<LogPage, TenantError>;
}

/// The one-line form of an error for messages: its lines, trimmed and joined.
pub fn one_line(s: impl std::fmt::Display) -> String {
    s.to_string().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        for ok in ["tenant-a", "default_t1", "X9"] {
            check_schema(ok).unwrap();
        }
        for bad in ["", "a\"b", "a`b", "a b", "a;drop", &"x".repeat(64), "é"] {
            assert!(matches!(check_schema(bad), Err(TenantError::BadUrl(_))), "{bad:?}");
        }
    }

    #[test]
    fn names_fit_the_column() {
        assert_eq!(kine_name(Driver::Postgres, b"/pods/a").unwrap(), "/registry/pods/a");
        assert!(kine_name(Driver::Mysql, "/pods/é".as_bytes()).is_err());
        assert!(kine_name(Driver::Postgres, "/pods/é".as_bytes()).is_ok());
        assert!(kine_name(Driver::Postgres, b"/\xff").is_err());
        assert!(kine_name(Driver::Postgres, format!("/{}", "a".repeat(630)).as_bytes()).is_err());
    }

    #[tokio::test]
    async fn rows_become_relative_records() {
        let mut buf = Vec::new();
        let mut w = RecordWriter::new(&mut buf);
        let mut rows = ExportRows::new(9);
        let v = b"v".as_slice();
        rows.row(&mut w, LiveRow { id: 3, name: b"/registry/a", created: 1, create_revision: 0, lease: 0, value: v })
            .await
            .unwrap();
        rows.row(&mut w, LiveRow { id: 5, name: b"/registry/b", created: 0, create_revision: 4, lease: 7, value: v })
            .await
            .unwrap();
        rows.row(
            &mut w,
            LiveRow { id: 6, name: b"compact_rev_key", created: 1, create_revision: 0, lease: 0, value: b"" },
        )
        .await
        .unwrap();
        rows.row(&mut w, LiveRow { id: 7, name: b"/other/x", created: 1, create_revision: 0, lease: 0, value: v })
            .await
            .unwrap();
        let info = rows.finish();
        w.finish().await.unwrap();
        assert_eq!((info.revision, info.leased_keys, info.skipped_keys), (9, 1, 1));
        assert_eq!(info.first_skipped.as_deref(), Some("/other/x"));
        let mut r = crate::records::RecordReader::new(buf.as_slice());
        let a = r.next().await.unwrap().unwrap();
        assert_eq!((a.key.as_slice(), a.create_revision, a.mod_revision), (&b"/a"[..], 3, 3));
        let b = r.next().await.unwrap().unwrap();
        assert_eq!((b.key.as_slice(), b.create_revision, b.mod_revision), (&b"/b"[..], 4, 5));
        assert!(r.next().await.unwrap().is_none());
    }
}
