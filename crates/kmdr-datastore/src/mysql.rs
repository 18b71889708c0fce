//! Tenants on a shared MySQL or MariaDB run by kine: tenant `<schema>` is
//! table `kine` of database `<schema>`, its keys under `/registry`.
//!
//! Export reads kine's table inside one `START TRANSACTION WITH CONSISTENT
//! SNAPSHOT` (REPEATABLE READ, read only) and writes its keys in byte order
//! (`/registry/B` before `/registry/a`, as the record stream requires; the
//! column's own collation is case-insensitive): streamed off kine's name
//! index, with the few names whose collation order differs from their byte
//! order merged in ([`export`], [`crate::kine_sql::name_order`]). Asking
//! MariaDB for the latest row per name in byte order instead made it sort the
//! rows with their values: 3.5x slower.
//!
//! Import creates the database and kine's table where missing, then in one
//! transaction removes the old keys (`replace`), inserts every record in
//! multi-row batches (at most [`BATCH_ROWS`] rows or about [`BATCH_BYTES`]
//! bytes each, so memory stays at one batch) with explicit ids above the
//! current maximum, reads the stream to its trailer and only then commits.
//! InnoDB's AUTO_INCREMENT follows explicit ids; it is checked afterwards.

use crate::kine_sql::{
    self, BATCH_BYTES, BATCH_ROWS, COMPACT_REV_KEY, ExportRows, KineTable, MYSQL_DDL, MYSQL_DUP_INDEX,
};
use crate::records::{RecordReader, RecordWriter};
use crate::store::{ExportInfo, ImportInfo, TenantError, TenantStore};
use crate::url::{DatastoreUrl, Driver};
use kmdr_core::TlsFiles;
use mysql_async::prelude::Queryable;
use mysql_async::{
    ClientIdentity, Conn, IsolationLevel, OptsBuilder, Params, Row, SslOpts, Transaction, TxOpts, Value,
};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

mod export;

/// How long to wait for the server to answer a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Counting live keys: those under `/registry/` (what the tenant's API server sees).
const COUNT_LIVE: &str = "SELECT COUNT(*) FROM kine k JOIN (SELECT MAX(id) AS id FROM kine GROUP BY CAST(name AS BINARY)) m ON m.id = k.id \
     WHERE k.deleted = 0 AND CAST(k.name AS BINARY) LIKE '/registry/%'";

/// A MySQL or MariaDB server holding kine tenants, one database each.
pub struct MysqlTenants {
    opts: OptsBuilder,
    shown: String,
}

/// `name` as a quoted MySQL identifier.
fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

impl MysqlTenants {
    /// Check that the server takes the credentials.
    /// With `--cacert` (and `--cert`/`--key` for a client certificate) the
    /// connection uses TLS and checks the server's certificate and name.
    pub async fn connect(url: &DatastoreUrl, tls: &TlsFiles) -> Result<Self, TenantError> {
        let (host, port) =
            url.hosts.first().cloned().ok_or_else(|| TenantError::BadUrl(format!("no host in {}", url.redacted())))?;
        let ssl = match (&tls.cacert, &tls.cert, &tls.key) {
            (None, None, None) => None,
            (Some(ca), cert, key) => {
                let mut ssl = SslOpts::default().with_root_certs(vec![ca.clone().into()]);
                match (cert, key) {
                    (Some(c), Some(k)) => {
                        ssl = ssl.with_client_identity(Some(ClientIdentity::new(c.clone().into(), k.clone().into())))
                    }
                    (None, None) => {}
                    _ => return Err(TenantError::BadUrl("--cert and --key go together: pass both or neither".into())),
                }
                Some(ssl)
            }
            _ => {
                return Err(TenantError::BadUrl(
                    "TLS to MySQL needs --cacert (the CA that signed the server's certificate)".into(),
                ));
            }
        };
        let opts = OptsBuilder::default()
            .ssl_opts(ssl)
            .ip_or_hostname(host)
            .tcp_port(port)
            .user(Some(url.user.clone().unwrap_or_else(|| "root".into())))
            .pass(url.password.clone())
            .prefer_socket(false);
        let store = MysqlTenants { opts, shown: url.redacted() };
        store.conn().await?.disconnect().await.ok();
        Ok(store)
    }

    /// A new connection. A connection reset during the handshake (a busy
    /// server drops some under load) is tried twice more, 200ms apart.
    async fn conn(&self) -> Result<Conn, TenantError> {
        let mut tries = 0;
        let attempt = loop {
            tries += 1;
            match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(self.opts.clone())).await {
                Ok(Err(mysql_async::Error::Io(_))) if tries < 3 => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => break other,
            }
        };
        match attempt {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(self.error("connect", e)),
            Err(_) => Err(TenantError::Unreachable {
                driver: Driver::Mysql,
                datastore: self.shown.clone(),
                detail: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            }),
        }
    }

    /// Map a driver error: I/O failures while connecting are `Unreachable`,
    /// rejected credentials (1045) `Auth`, the rest `Datastore`.
    fn error(&self, op: &str, e: mysql_async::Error) -> TenantError {
        let (driver, datastore) = (Driver::Mysql, self.shown.clone());
        let detail = kine_sql::one_line(&e);
        match e {
            mysql_async::Error::Server(s) if s.code == 1045 => TenantError::Auth { driver, datastore, detail },
            // kine's name column compares case-insensitively on MySQL.
            mysql_async::Error::Server(s) if s.code == 1062 => TenantError::Datastore {
                driver,
                op: op.into(),
                datastore,
                detail: format!(
                    "{detail}; kine's MySQL table compares key names without regard to case, so two keys that differ only in case cannot both be stored there: restore this tenant into etcd, PostgreSQL or NATS instead"
                ),
            },
            mysql_async::Error::Io(_) if op == "connect" => TenantError::Unreachable { driver, datastore, detail },
            _ => TenantError::Datastore { driver, op: op.into(), datastore, detail },
        }
    }

    /// kine's table in database `schema`, checked: `None` when there is
    /// none, [`TenantError::KineSchema`] when it is not kine's layout.
    async fn kine_table(&self, conn: &mut Conn, schema: &str) -> Result<Option<KineTable>, TenantError> {
        let columns: Vec<(String, String)> = conn
            .exec(
                "SELECT CAST(column_name AS CHAR), CAST(column_type AS CHAR) FROM information_schema.columns \
                 WHERE table_schema = ? AND table_name = 'kine' ORDER BY ordinal_position",
                (schema,),
            )
            .await
            .map_err(|e| self.error("check table kine", e))?;
        if columns.is_empty() {
            return Ok(None);
        }
        KineTable::check(&columns).map(Some).map_err(|detail| TenantError::KineSchema {
            schema: schema.into(),
            datastore: self.shown.clone(),
            detail,
        })
    }

    async fn unknown(&self, schema: &str) -> TenantError {
        let found = self.list_tenants().await.unwrap_or_default();
        TenantError::UnknownSchema { schema: schema.into(), datastore: self.shown.clone(), found }
    }

    /// Create database `schema` and kine's table where missing (as kine v0.17
    /// would), and make it the connection's database; the table found or
    /// made, and what was created.
    async fn prepare(&self, conn: &mut Conn, schema: &str) -> Result<(KineTable, Option<String>), TenantError> {
        let mut created = None;
        let exists: Option<i64> = conn
            .exec_first("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?", (schema,))
            .await
            .map_err(|e| self.error("check database", e))?;
        if exists.unwrap_or(0) == 0 {
            conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS {}", quote(schema)))
                .await
                .map_err(|e| self.error("create database", e))?;
            created = Some(format!("database {schema:?}"));
        }
        let found = self.kine_table(conn, schema).await?;
        conn.query_drop(format!("USE {}", quote(schema))).await.map_err(|e| self.error("use database", e))?;
        if let Some(table) = found {
            return Ok((table, created));
        }
        created.get_or_insert_with(|| format!("table kine in database {schema:?}"));
        for ddl in MYSQL_DDL {
            match conn.query_drop(*ddl).await {
                Ok(()) => {}
                Err(mysql_async::Error::Server(s)) if s.code == MYSQL_DUP_INDEX => {}
                Err(e) => return Err(self.error("create table kine", e)),
            }
        }
        Ok((KineTable::CURRENT, created))
    }

    /// The import proper, inside `tx`; the caller commits or rolls back.
    async fn import_tx<R: AsyncRead + Unpin + Send>(
        &self,
        tx: &mut Transaction<'_>,
        table: KineTable,
        input: &mut RecordReader<R>,
        replace: bool,
    ) -> Result<ImportInfo, TenantError> {
        let e = |op: &'static str| move |e: mysql_async::Error| self.error(op, e);
        // Lock the last row and the gap after it: kine's own inserts (the API
        // server may be running) wait until we commit, so the ids stay ours.
        tx.query_drop("SELECT id FROM kine ORDER BY id DESC LIMIT 1 FOR UPDATE").await.map_err(e("lock table kine"))?;
        let mut info = ImportInfo::default();
        // New ids go above every id the table ever held, removed rows included.
        let max_sql = "SELECT COALESCE(MAX(id), 0) FROM kine";
        let before: i64 = tx.query_first(max_sql).await.map_err(e("read revision"))?.unwrap_or(0);
        let mut deleted_rows = 0;
        if replace {
            let n: Option<i64> = tx.query_first(COUNT_LIVE).await.map_err(e("count keys"))?;
            info.removed = n.unwrap_or(0) as u64;
            tx.query_drop("DELETE FROM kine WHERE CAST(name AS BINARY) <> 'compact_rev_key'")
                .await
                .map_err(e("delete keys"))?;
            deleted_rows = tx.affected_rows();
        }
        tx.exec_drop(
            "INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value, old_value) \
             SELECT ?, 1, 0, 0, 0, 0, '', NULL FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM kine WHERE CAST(name AS BINARY) = ?)",
            (COMPACT_REV_KEY, COMPACT_REV_KEY),
        )
        .await
        .map_err(e("write compact_rev_key"))?;
        let base: i64 = before.max(tx.query_first(max_sql).await.map_err(e("read revision"))?.unwrap_or(0));
        // Rows of earlier, deleted keys may remain (no replace): a new create
        // row of such a name must point at its last row (kine's unique
        // (name, prev_revision)), so those go through a staging table.
        let staged = !replace
            && tx
                .query_first::<i64, _>(
                    "SELECT EXISTS (SELECT 1 FROM kine WHERE CAST(name AS BINARY) <> 'compact_rev_key')",
                )
                .await
                .map_err(e("read keys"))?
                .unwrap_or(0)
                != 0;
        let (into, row_sql) = if staged {
            tx.query_drop("CREATE TEMPORARY TABLE kmdr_import (id BIGINT UNSIGNED, name VARCHAR(630) CHARACTER SET ascii, value MEDIUMBLOB)")
                .await
                .map_err(e("create staging table"))?;
            ("kmdr_import (id, name, value)", "(?,?,?)")
        } else {
            ("kine (id, name, created, deleted, create_revision, prev_revision, lease, value)", "(?,?,1,0,0,0,0,?)")
        };
        let insert_sql = |rows: usize| format!("INSERT INTO {into} VALUES {}", vec![row_sql; rows].join(","));
        let mut batch: Vec<Value> = Vec::with_capacity(BATCH_ROWS * 3);
        let mut batch_bytes = 0;
        let mut next_id = base + 1;
        loop {
            let rec = input.next().await?;
            let done = rec.is_none();
            if let Some(rec) = rec {
                let name = kine_sql::kine_name(Driver::Mysql, &rec.key)?;
                table.check_revision(Driver::Mysql, next_id)?;
                batch_bytes += name.len() + rec.value.len();
                batch.extend([Value::Int(next_id), Value::Bytes(name.into_bytes()), Value::Bytes(rec.value)]);
                next_id += 1;
                info.written += 1;
            }
            if !batch.is_empty() && (done || batch.len() >= BATCH_ROWS * 3 || batch_bytes >= BATCH_BYTES) {
                let params = std::mem::take(&mut batch);
                tx.exec_drop(insert_sql(params.len() / 3), Params::Positional(params))
                    .await
                    .map_err(e("write keys"))?;
                batch_bytes = 0;
            }
            if done {
                break;
            }
        }
        if staged {
            tx.query_drop(
                "INSERT INTO kine (id, name, created, deleted, create_revision, prev_revision, lease, value) \
                 SELECT s.id, s.name, 1, 0, 0, COALESCE((SELECT MAX(k.id) FROM kine k WHERE k.name = s.name AND CAST(k.name AS BINARY) = CAST(s.name AS BINARY)), 0), 0, s.value \
                 FROM kmdr_import s ORDER BY s.id",
            )
            .await
            .map_err(e("write keys"))?;
            tx.query_drop("DROP TEMPORARY TABLE kmdr_import").await.map_err(e("drop staging table"))?;
        }
        if deleted_rows > 0 {
            // Older revisions are gone: clients must see them as compacted.
            tx.exec_drop("UPDATE kine SET prev_revision = ? WHERE CAST(name AS BINARY) = 'compact_rev_key'", (base,))
                .await
                .map_err(e("write compact_rev_key"))?;
        }
        info.revision = tx.query_first("SELECT MAX(id) FROM kine").await.map_err(e("read revision"))?.unwrap_or(0);
        Ok(info)
    }
}

/// kine's log of one tenant on MySQL/MariaDB, on its own connection.
pub struct MysqlLog {
    conn: Conn,
    shown: String,
}

impl MysqlTenants {
    /// Open tenant `schema`'s kine log for the delta capture.
    pub async fn open_log(&self, schema: &str) -> Result<MysqlLog, TenantError> {
        let mut conn = self.conn().await?;
        if self.kine_table(&mut conn, schema).await?.is_none() {
            return Err(self.unknown(schema).await);
        }
        conn.query_drop(format!("USE {}", quote(schema))).await.map_err(|e| self.error("use database", e))?;
        Ok(MysqlLog { conn, shown: self.shown.clone() })
    }
}

impl kine_sql::KineLog for MysqlLog {
    async fn after(&mut self, after: i64) -> Result<kine_sql::LogPage, TenantError> {
        let shown = self.shown.clone();
        let err = move |op: &'static str| {
            let shown = shown.clone();
            move |e: mysql_async::Error| TenantError::Datastore {
                driver: Driver::Mysql,
                op: op.into(),
                datastore: shown,
                detail: kine_sql::one_line(&e),
            }
        };
        let mut opts = TxOpts::default();
        opts.with_consistent_snapshot(true).with_isolation_level(IsolationLevel::RepeatableRead).with_readonly(true);
        let mut tx = self.conn.start_transaction(opts).await.map_err(err("begin"))?;
        let compact: Option<i64> = tx
            .query_first(
                "SELECT COALESCE(MAX(prev_revision), 0) FROM kine WHERE CAST(name AS BINARY) = 'compact_rev_key'",
            )
            .await
            .map_err(err("read compact revision"))?;
        let rows: Vec<Row> = tx
            .exec(
                "SELECT id, name, created, deleted, create_revision, value FROM kine WHERE id > ? ORDER BY id LIMIT ?",
                (after, kine_sql::LOG_PAGE as u64),
            )
            .await
            .map_err(err("read changes"))?;
        tx.commit().await.map_err(err("end snapshot"))?;
        let rows = rows
            .into_iter()
            .map(|mut row| {
                let int = |row: &mut Row, i: usize| row.take::<Option<i64>, _>(i).flatten().unwrap_or(0);
                kine_sql::LogRow {
                    id: int(&mut row, 0),
                    name: row.take::<Option<Vec<u8>>, _>(1).flatten().unwrap_or_default(),
                    created: int(&mut row, 2),
                    deleted: int(&mut row, 3),
                    create_revision: int(&mut row, 4),
                    value: row.take::<Option<Vec<u8>>, _>(5).flatten().unwrap_or_default(),
                }
            })
            .collect();
        Ok(kine_sql::LogPage { compact_revision: compact.unwrap_or(0), rows })
    }
}

impl TenantStore for MysqlTenants {
    fn driver(&self) -> Driver {
        Driver::Mysql
    }

    fn datastore(&self) -> String {
        self.shown.clone()
    }

    fn key_root(&self, _schema: &str) -> String {
        kine_sql::KEY_ROOT.into()
    }

    async fn list_tenants(&self) -> Result<Vec<String>, TenantError> {
        let mut conn = self.conn().await?;
        let mut found: Vec<String> = conn
            .query("SELECT table_schema FROM information_schema.tables WHERE table_name = 'kine'")
            .await
            .map_err(|e| self.error("list databases", e))?;
        conn.disconnect().await.ok();
        found.sort();
        found.dedup();
        Ok(found)
    }

    async fn export<W: AsyncWrite + Unpin + Send>(
        &self,
        schema: &str,
        _at: Option<i64>,
        out: &mut RecordWriter<W>,
    ) -> Result<ExportInfo, TenantError> {
        let mut conn = self.conn().await?;
        if self.kine_table(&mut conn, schema).await?.is_none() {
            return Err(self.unknown(schema).await);
        }
        conn.query_drop(format!("USE {}", quote(schema))).await.map_err(|e| self.error("use database", e))?;
        let mut opts = TxOpts::default();
        opts.with_consistent_snapshot(true).with_isolation_level(IsolationLevel::RepeatableRead).with_readonly(true);
        let mut tx = conn.start_transaction(opts).await.map_err(|e| self.error("begin", e))?;
        let max: Option<i64> =
            tx.query_first("SELECT MAX(id) FROM kine").await.map_err(|e| self.error("read revision", e))?.flatten();
        let mut rows = ExportRows::new(max.unwrap_or(0));
        self.export_rows(&mut tx, schema, &mut rows, out).await?;
        tx.commit().await.map_err(|e| self.error("end snapshot", e))?;
        conn.disconnect().await.ok();
        Ok(rows.finish())
    }

    async fn count(&self, schema: &str) -> Result<u64, TenantError> {
        let mut conn = self.conn().await?;
        if self.kine_table(&mut conn, schema).await?.is_none() {
            return Ok(0);
        }
        let sql = COUNT_LIVE.replace("FROM kine", &format!("FROM {}.kine", quote(schema)));
        let n: Option<i64> = conn.query_first(sql).await.map_err(|e| self.error("count keys", e))?;
        conn.disconnect().await.ok();
        Ok(n.unwrap_or(0) as u64)
    }

    async fn import<R: AsyncRead + Unpin + Send>(
        &self,
        schema: &str,
        input: &mut RecordReader<R>,
        replace: bool,
    ) -> Result<ImportInfo, TenantError> {
        kine_sql::check_schema(schema)?;
        let mut conn = self.conn().await?;
        let (table, created) = self.prepare(&mut conn, schema).await?;
        let failed = |detail: String| TenantError::ImportFailed {
            schema: schema.into(),
            datastore: self.shown.clone(),
            state: kine_sql::rolled_back_state(created.as_deref()),
            detail,
        };
        let mut tx = conn
            .start_transaction(TxOpts::default().with_isolation_level(IsolationLevel::RepeatableRead).clone())
            .await
            .map_err(|e| failed(self.error("begin", e).to_string()))?;
        let info = match self.import_tx(&mut tx, table, input, replace).await {
            Ok(info) => info,
            Err(e) => {
                tx.rollback().await.ok();
                return Err(failed(e.to_string()));
            }
        };
        tx.commit().await.map_err(|e| failed(self.error("commit", e).to_string()))?;
        // InnoDB moves AUTO_INCREMENT past explicit ids; make sure, so kine's
        // next write gets a revision above ours.
        let next: Option<Option<i64>> = conn
            .exec_first(
                "SELECT AUTO_INCREMENT FROM information_schema.tables WHERE table_schema = ? AND table_name = 'kine'",
                (schema,),
            )
            .await
            .map_err(|e| self.error("check AUTO_INCREMENT", e))?;
        if next.flatten().unwrap_or(0) <= info.revision {
            conn.query_drop(format!("ALTER TABLE kine AUTO_INCREMENT = {}", info.revision + 1))
                .await
                .map_err(|e| self.error("set AUTO_INCREMENT", e))?;
        }
        conn.disconnect().await.ok();
        Ok(info)
    }
}
