//! Tenants on a shared PostgreSQL run by kine: tenant `<schema>` is table
//! `kine` of database `<schema>`, its keys under `/registry`.
//!
//! Listing connects to the maintenance database (the URL's path, else
//! `postgres`) and then to each database to look for a `kine` table. Export
//! reads the latest row of every name in one `REPEATABLE READ READ ONLY`
//! transaction, streamed row by row from the server in `COLLATE "C"` (byte)
//! order. Import creates the database and kine's table where missing, then in
//! one transaction removes the old keys (`replace`), writes every record with
//! `COPY ... FROM STDIN BINARY` using explicit ids above the current maximum,
//! reads the stream to its trailer, resets the id sequence and only then
//! commits: a damaged backup or a lost connection leaves the tenant as it was.
//!
//! TLS: with `--cacert` (and optionally `--cert`/`--key` for client
//! certificate authentication, as Kamaji's DataStore `tlsConfig` sets up) or
//! `sslmode=verify-full`, the connection uses rustls and checks the server's
//! certificate and name. kmdr never connects over TLS without checking, so
//! `sslmode=require` and `verify-ca` are refused with that advice.

use crate::kine_sql::{self, COMPACT_REV_KEY, ExportRows, KineTable, LiveRow, POSTGRES_DDL};
use crate::records::{RecordReader, RecordWriter};
use crate::store::{ExportInfo, ImportInfo, TenantError, TenantStore};
use crate::url::{DatastoreUrl, Driver};
use futures::{TryStreamExt, pin_mut};
use kmdr_core::TlsFiles;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Config, IsolationLevel, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How long to wait for the server to answer a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The latest row of every name that is not deleted (kine's "live" keys),
/// without kine's bookkeeping row. Select list and order are added per use.
const LIVE_FROM: &str = "FROM kine k JOIN (SELECT MAX(id) AS id FROM kine GROUP BY name) m ON m.id = k.id \
     WHERE k.deleted = 0 AND k.name <> 'compact_rev_key'";

/// kine's compact revision, as kine reads it.
const COMPACT_REVISION: &str =
    "SELECT COALESCE(MAX(prev_revision), 0)::bigint FROM kine WHERE name = 'compact_rev_key'";

/// The newest id (0 for an empty table).
const MAX_ID: &str = "SELECT COALESCE(MAX(id), 0)::bigint FROM kine";

/// Counting live keys: those under `/registry/` (what the tenant's API server sees).
const COUNT_LIVE: &str = "SELECT COUNT(*) FROM kine k JOIN (SELECT MAX(id) AS id FROM kine GROUP BY name) m ON m.id = k.id \
     WHERE k.deleted = 0 AND k.name LIKE '/registry/%'";

/// A PostgreSQL server holding kine tenants, one database each.
pub struct PostgresTenants {
    config: Config,
    /// `None`: plain TCP.
    tls: Option<MakeRustlsConnect>,
    maintenance_db: String,
    shown: String,
}

impl PostgresTenants {
    /// Check the URL and that the server takes the credentials (by
    /// connecting to the maintenance database).
    pub async fn connect(url: &DatastoreUrl, tls_files: &TlsFiles) -> Result<Self, TenantError> {
        let default_mode = if tls_files.is_set() { "verify-full" } else { "disable" };
        let tls = match url.param("sslmode").unwrap_or(default_mode) {
            "disable" | "allow" | "prefer" if !tls_files.is_set() => None,
            "verify-full" => Some(
                rustls_connector(tls_files).map_err(|why| TenantError::BadUrl(format!("{}: {why}", url.redacted())))?,
            ),
            other => {
                return Err(TenantError::BadUrl(format!(
                    "sslmode={other} with{} TLS files in {}: kmdr checks the server's certificate and name; use sslmode=verify-full (the default with --cacert) and pass --cacert, or sslmode=disable on a trusted network",
                    if tls_files.is_set() { "" } else { "out" },
                    url.redacted()
                )));
            }
        };
        let (host, port) =
            url.hosts.first().cloned().ok_or_else(|| TenantError::BadUrl(format!("no host in {}", url.redacted())))?;
        let mut config = Config::new();
        config
            .host(&host)
            .port(port)
            .user(url.user.as_deref().unwrap_or("postgres"))
            .ssl_mode(if tls.is_some() { SslMode::Require } else { SslMode::Disable })
            .connect_timeout(CONNECT_TIMEOUT)
            .application_name("kmdr");
        if let Some(pw) = &url.password {
            config.password(pw.as_bytes());
        }
        let store = PostgresTenants {
            config,
            tls,
            maintenance_db: url.path.clone().unwrap_or_else(|| "postgres".into()),
            shown: url.redacted(),
        };
        store.client(&store.maintenance_db.clone()).await?;
        Ok(store)
    }

    /// A new connection to database `db`; its connection task ends when the
    /// client is dropped.
    async fn client(&self, db: &str) -> Result<Client, TenantError> {
        let mut config = self.config.clone();
        config.dbname(db);
        let ended = |e: tokio_postgres::Error| tracing::debug!("postgres connection ended: {e}");
        match &self.tls {
            None => {
                let (client, conn) = config.connect(NoTls).await.map_err(|e| self.error("connect", &e))?;
                tokio::spawn(async move { conn.await.unwrap_or_else(ended) });
                Ok(client)
            }
            Some(tls) => {
                let (client, conn) = config.connect(tls.clone()).await.map_err(|e| self.error("connect", &e))?;
                tokio::spawn(async move { conn.await.unwrap_or_else(ended) });
                Ok(client)
            }
        }
    }

    /// A connection to tenant database `schema`, or `None` when that database
    /// does not exist.
    async fn tenant_client(&self, schema: &str) -> Result<Option<Client>, TenantError> {
        match self.client(schema).await {
            Ok(c) => Ok(Some(c)),
            Err(TenantError::Datastore { detail, .. }) if detail.contains("3D000") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Map a driver error: refused or timed-out connections are
    /// `Unreachable`, rejected credentials `Auth`, the rest `Datastore`.
    fn error(&self, op: &str, e: &tokio_postgres::Error) -> TenantError {
        let (driver, datastore) = (Driver::Postgres, self.shown.clone());
        if let Some(db) = e.as_db_error() {
            let code = db.code().code();
            let detail = format!("{} (SQLSTATE {code})", kine_sql::one_line(db.message()));
            return match code {
                // No pg_hba.conf line for a plain connection: the server wants TLS.
                "28000" if db.message().contains("no encryption") => TenantError::Auth {
                    driver,
                    datastore,
                    detail: format!(
                        "{detail}; the server only takes TLS here: pass --cacert (and --cert/--key for a client certificate)"
                    ),
                },
                "28P01" | "28000" => TenantError::Auth { driver, datastore, detail },
                _ => TenantError::Datastore { driver, op: op.into(), datastore, detail },
            };
        }
        let detail = kine_sql::one_line(error_chain(e));
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut io = false;
        while let Some(s) = src {
            io |= s.is::<std::io::Error>();
            src = s.source();
        }
        if op == "connect" && (io || detail.contains("timeout") || detail.contains("timed out")) {
            TenantError::Unreachable { driver, datastore, detail }
        } else {
            TenantError::Datastore { driver, op: op.into(), datastore, detail }
        }
    }

    /// Whether the connected database holds kine's table.
    async fn has_kine(&self, client: &Client) -> Result<bool, TenantError> {
        let row = client
            .query_one("SELECT to_regclass('public.kine') IS NOT NULL", &[])
            .await
            .map_err(|e| self.error("check table kine", &e))?;
        Ok(row.get(0))
    }

    /// kine's table in the connected database `schema`, checked: `None` when
    /// there is none, [`TenantError::KineSchema`] when it is not kine's layout.
    async fn kine_table(&self, client: &Client, schema: &str) -> Result<Option<KineTable>, TenantError> {
        let rows = client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
                 WHERE a.attrelid = to_regclass('public.kine') AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                &[],
            )
            .await
            .map_err(|e| self.error("check table kine", &e))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let columns: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
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
    /// would); the table found or made, and what was created.
    async fn prepare(&self, schema: &str) -> Result<(Client, KineTable, Option<String>), TenantError> {
        let mut created = None;
        let client = match self.tenant_client(schema).await? {
            Some(c) => c,
            None => {
                let admin = self.client(&self.maintenance_db).await?;
                // The name was checked: letters, digits, '_' and '-' only.
                match admin.batch_execute(&format!("CREATE DATABASE \"{schema}\"")).await {
                    Ok(()) => created = Some(format!("database {schema:?}")),
                    // Created meanwhile by someone else: use it.
                    Err(e) if e.code().is_some_and(|c| c.code() == "42P04") => {}
                    Err(e) => return Err(self.error("create database", &e)),
                }
                self.client(schema).await?
            }
        };
        let table = match self.kine_table(&client, schema).await? {
            Some(table) => table,
            None => {
                created.get_or_insert_with(|| format!("table kine in database {schema:?}"));
                for ddl in POSTGRES_DDL {
                    client.batch_execute(ddl).await.map_err(|e| self.error("create table kine", &e))?;
                }
                KineTable::CURRENT
            }
        };
        Ok((client, table, created))
    }
}

/// kine's log of one tenant on PostgreSQL, on its own connection.
pub struct PostgresLog {
    client: Client,
    shown: String,
}

impl PostgresTenants {
    /// Open tenant `schema`'s kine log for the delta capture.
    pub async fn open_log(&self, schema: &str) -> Result<PostgresLog, TenantError> {
        let Some(client) = self.tenant_client(schema).await? else {
            return Err(self.unknown(schema).await);
        };
        if self.kine_table(&client, schema).await?.is_none() {
            return Err(self.unknown(schema).await);
        }
        Ok(PostgresLog { client, shown: self.shown.clone() })
    }
}

impl kine_sql::KineLog for PostgresLog {
    async fn after(&mut self, after: i64) -> Result<kine_sql::LogPage, TenantError> {
        let err = |op: &str, e: tokio_postgres::Error| TenantError::Datastore {
            driver: Driver::Postgres,
            op: op.into(),
            datastore: self.shown.clone(),
            detail: kine_sql::one_line(error_chain(&e)),
        };
        let tx = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| err("begin", e))?;
        let compact: i64 =
            tx.query_one(COMPACT_REVISION, &[]).await.map_err(|e| err("read compact revision", e))?.get(0);
        let rows = tx
            .query(
                "SELECT id::bigint, name::text, created::bigint, deleted::bigint, create_revision::bigint, value FROM kine \
                 WHERE id > $1::bigint ORDER BY id LIMIT $2",
                &[&after, &(kine_sql::LOG_PAGE as i64)],
            )
            .await
            .map_err(|e| err("read changes", e))?;
        tx.commit().await.map_err(|e| err("end snapshot", e))?;
        let rows = rows
            .iter()
            .map(|row| {
                let int = |i: usize| row.get::<_, Option<i64>>(i).unwrap_or(0);
                kine_sql::LogRow {
                    id: int(0),
                    name: row.get::<_, Option<&str>>(1).unwrap_or_default().as_bytes().to_vec(),
                    created: int(2),
                    deleted: int(3),
                    create_revision: int(4),
                    value: row.get::<_, Option<Vec<u8>>>(5).unwrap_or_default(),
                }
            })
            .collect();
        Ok(kine_sql::LogPage { compact_revision: compact, rows })
    }
}

/// rustls for `sslmode=verify-full`: the CA of `--cacert`, and the client
/// certificate of `--cert`/`--key` when given.
fn rustls_connector(files: &TlsFiles) -> Result<MakeRustlsConnect, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let ca = files
        .cacert
        .as_ref()
        .ok_or("sslmode=verify-full needs --cacert (the CA that signed the server's certificate)")?;
    let certs = |path: &std::path::PathBuf| -> Result<Vec<CertificateDer<'static>>, String> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca)? {
        roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cannot read the private key {}: {e}", key.display()))?;
            builder.with_client_auth_cert(certs(cert)?, key).map_err(|e| format!("client certificate: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("--cert and --key go together: pass both or neither".into()),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// An error and its sources, joined.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let more = inner.to_string();
        if !s.contains(&more) {
            s.push_str(": ");
            s.push_str(&more);
        }
        src = inner.source();
    }
    s
}

fn no_params() -> Vec<&'static (dyn ToSql + Sync)> {
    Vec::new()
}

impl TenantStore for PostgresTenants {
    fn driver(&self) -> Driver {
        Driver::Postgres
    }

    fn datastore(&self) -> String {
        self.shown.clone()
    }

    fn key_root(&self, _schema: &str) -> String {
        kine_sql::KEY_ROOT.into()
    }

    /// Databases holding a `kine` table. Databases this user may not connect
    /// to are passed over.
    async fn list_tenants(&self) -> Result<Vec<String>, TenantError> {
        let admin = self.client(&self.maintenance_db).await?;
        let rows = admin
            .query("SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn", &[])
            .await
            .map_err(|e| self.error("list databases", &e))?;
        let mut found = Vec::new();
        for row in rows {
            let db: String = row.get(0);
            let client = match self.client(&db).await {
                Ok(c) => c,
                Err(TenantError::Datastore { .. }) => continue,
                Err(e) => return Err(e),
            };
            if self.has_kine(&client).await? {
                found.push(db);
            }
        }
        found.sort();
        Ok(found)
    }

    async fn export<W: AsyncWrite + Unpin + Send>(
        &self,
        schema: &str,
        _at: Option<i64>,
        out: &mut RecordWriter<W>,
    ) -> Result<ExportInfo, TenantError> {
        let Some(mut client) = self.tenant_client(schema).await? else {
            return Err(self.unknown(schema).await);
        };
        if self.kine_table(&client, schema).await?.is_none() {
            return Err(self.unknown(schema).await);
        }
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| self.error("begin", &e))?;
        let max: i64 = tx.query_one(MAX_ID, &[]).await.map_err(|e| self.error("read revision", &e))?.get(0);
        let mut rows = ExportRows::new(max);
        let sql = format!(
            "SELECT k.id::bigint, k.name::text, k.created::bigint, k.create_revision::bigint, k.lease::bigint, k.value \
             {LIVE_FROM} ORDER BY k.name COLLATE \"C\""
        );
        let stream = tx.query_raw(&sql, no_params()).await.map_err(|e| self.error("read keys", &e))?;
        pin_mut!(stream);
        while let Some(row) = stream.try_next().await.map_err(|e| self.error("read keys", &e))? {
            let name: &str = row.get(1);
            let value: Option<&[u8]> = row.get(5);
            let int = |i: usize| row.get::<_, Option<i64>>(i).unwrap_or(0);
            let live = LiveRow {
                id: int(0),
                name: name.as_bytes(),
                created: int(2),
                create_revision: int(3),
                lease: int(4),
                value: value.unwrap_or_default(),
            };
            rows.row(out, live).await?;
        }
        tx.commit().await.map_err(|e| self.error("end snapshot", &e))?;
        Ok(rows.finish())
    }

    async fn count(&self, schema: &str) -> Result<u64, TenantError> {
        let Some(client) = self.tenant_client(schema).await? else { return Ok(0) };
        if self.kine_table(&client, schema).await?.is_none() {
            return Ok(0);
        }
        let n: i64 = client.query_one(COUNT_LIVE, &[]).await.map_err(|e| self.error("count keys", &e))?.get(0);
        Ok(n as u64)
    }

    async fn import<R: AsyncRead + Unpin + Send>(
        &self,
        schema: &str,
        input: &mut RecordReader<R>,
        replace: bool,
    ) -> Result<ImportInfo, TenantError> {
        kine_sql::check_schema(schema)?;
        let (mut client, table, created) = self.prepare(schema).await?;
        let failed = |detail: String| TenantError::ImportFailed {
            schema: schema.into(),
            datastore: self.shown.clone(),
            state: kine_sql::rolled_back_state(created.as_deref()),
            detail,
        };
        // Everything below is one transaction; dropping it rolls back.
        let tx = client.transaction().await.map_err(|e| failed(self.error("begin", &e).to_string()))?;
        let sql_err = |op: &str, e: tokio_postgres::Error| failed(self.error(op, &e).to_string());
        // kine keeps writing while the API server runs: hold its writers off
        // so the ids below stay ours.
        tx.batch_execute("LOCK TABLE kine IN SHARE ROW EXCLUSIVE MODE")
            .await
            .map_err(|e| sql_err("lock table kine", e))?;
        let mut info = ImportInfo::default();
        // New ids go above every id the table ever held, removed rows included.
        let before: i64 = tx.query_one(MAX_ID, &[]).await.map_err(|e| sql_err("read revision", e))?.get(0);
        let mut deleted_rows = 0;
        if replace {
            let n: i64 = tx.query_one(COUNT_LIVE, &[]).await.map_err(|e| sql_err("count keys", e))?.get(0);
            info.removed = n as u64;
            deleted_rows = tx
                .execute("DELETE FROM kine WHERE name <> 'compact_rev_key'", &[])
                .await
                .map_err(|e| sql_err("delete keys", e))?;
        }
        tx.execute(
            "INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value, old_value) \
             SELECT $1::text, 1, 0, 0, 0, 0, ''::bytea, NULL WHERE NOT EXISTS (SELECT 1 FROM kine WHERE name = $1::text)",
            &[&COMPACT_REV_KEY],
        )
        .await
        .map_err(|e| sql_err("write compact_rev_key", e))?;
        let base: i64 = before.max(tx.query_one(MAX_ID, &[]).await.map_err(|e| sql_err("read revision", e))?.get(0));
        // Rows of earlier, deleted keys may remain (no replace): a new create
        // row of such a name must point at its last row (kine's unique
        // (name, prev_revision)), so those go through a staging table.
        let staged = !replace
            && tx
                .query_one("SELECT EXISTS (SELECT 1 FROM kine WHERE name <> 'compact_rev_key')", &[])
                .await
                .map_err(|e| sql_err("read keys", e))?
                .get::<_, bool>(0);
        let copy_sql = if staged {
            tx.batch_execute("CREATE TEMP TABLE kmdr_import (id bigint, name text, value bytea) ON COMMIT DROP")
                .await
                .map_err(|e| sql_err("create staging table", e))?;
            "COPY kmdr_import (id, name, value) FROM STDIN BINARY"
        } else {
            "COPY kine (id, name, created, deleted, create_revision, prev_revision, lease, value) FROM STDIN BINARY"
        };
        let sink = tx.copy_in(copy_sql).await.map_err(|e| sql_err("copy", e))?;
        // Binary COPY sends each value in its column's own width.
        let int = |bigint: bool| if bigint { Type::INT8 } else { Type::INT4 };
        let types: &[Type] = if staged {
            &[Type::INT8, Type::TEXT, Type::BYTEA]
        } else {
            let (id, create, prev) =
                (int(table.id_bigint), int(table.create_revision_bigint), int(table.prev_revision_bigint));
            &[id, Type::TEXT, Type::INT4, Type::INT4, create, prev, Type::INT4, Type::BYTEA]
        };
        let writer = BinaryCopyInWriter::new(sink, types);
        pin_mut!(writer);
        let mut next_id = base + 1;
        // The sink applies backpressure: memory stays at what is in flight.
        loop {
            let rec = match input.next().await {
                Ok(Some(rec)) => rec,
                Ok(None) => break,
                // Dropping the writer aborts the COPY; the transaction rolls back.
                Err(e) => return Err(failed(e.to_string())),
            };
            let name = kine_sql::kine_name(Driver::Postgres, &rec.key).map_err(|e| failed(e.to_string()))?;
            table.check_revision(Driver::Postgres, next_id).map_err(|e| failed(e.to_string()))?;
            let (one, zero, zero64) = (1i32, 0i32, 0i64);
            let id32 = next_id as i32;
            let id: &(dyn ToSql + Sync) = if staged || table.id_bigint { &next_id } else { &id32 };
            let create: &(dyn ToSql + Sync) = if table.create_revision_bigint { &zero64 } else { &zero };
            let prev: &(dyn ToSql + Sync) = if table.prev_revision_bigint { &zero64 } else { &zero };
            let written = if staged {
                writer.as_mut().write(&[id, &name, &rec.value]).await
            } else {
                writer.as_mut().write(&[id, &name, &one, &zero, create, prev, &zero, &rec.value]).await
            };
            written.map_err(|e| sql_err("copy", e))?;
            next_id += 1;
            info.written += 1;
        }
        writer.as_mut().finish().await.map_err(|e| sql_err("copy", e))?;
        if staged {
            tx.batch_execute(
                "INSERT INTO kine (id, name, created, deleted, create_revision, prev_revision, lease, value) \
                 SELECT s.id, s.name, 1, 0, 0, COALESCE((SELECT MAX(k.id) FROM kine k WHERE k.name = s.name), 0), 0, s.value \
                 FROM kmdr_import s ORDER BY s.id",
            )
            .await
            .map_err(|e| sql_err("write keys", e))?;
        }
        if deleted_rows > 0 {
            // Older revisions are gone: clients must see them as compacted.
            tx.execute("UPDATE kine SET prev_revision = $1::bigint WHERE name = 'compact_rev_key'", &[&base])
                .await
                .map_err(|e| sql_err("write compact_rev_key", e))?;
        }
        let max: i64 = tx
            .query_one("SELECT setval(pg_get_serial_sequence('kine', 'id'), (SELECT MAX(id) FROM kine))::bigint", &[])
            .await
            .map_err(|e| sql_err("reset id sequence", e))?
            .get(0);
        info.revision = max;
        tx.commit().await.map_err(|e| sql_err("commit", e))?;
        Ok(info)
    }
}
