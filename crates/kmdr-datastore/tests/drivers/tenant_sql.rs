//! The kine SQL drivers against real servers: PostgreSQL 15 and MariaDB,
//! started by kmdr-testkit. Tenants are seeded the way kine writes them
//! (history rows, deletes, leases, its compact_rev_key row, keys outside
//! /registry, mixed case and punctuation), then exported, imported, replaced
//! and broken on purpose.

use kmdr_core::TlsFiles;
use kmdr_datastore::mysql::MysqlTenants;
use kmdr_datastore::postgres::PostgresTenants;
use kmdr_datastore::{DatastoreUrl, Record, RecordReader, RecordSummary, RecordWriter, TenantError, TenantStore};

/// One kine row: (id, name, created, deleted, create_revision, prev_revision, lease, value hex).
type KineRow = (i64, &'static str, i64, i64, i64, i64, i64, &'static str);

/// A tenant's history as kine writes it.
const SEED: &[KineRow] = &[
    (1, "compact_rev_key", 1, 0, 0, 0, 0, ""),
    (2, "/registry/pods/ns/a", 1, 0, 0, 0, 0, "6131"),
    (3, "/registry/pods/ns/a", 0, 0, 2, 2, 0, "6132"),
    (4, "/registry/pods/ns/B", 1, 0, 0, 0, 0, "4231"),
    (5, "/registry/pods/ns/a", 0, 0, 2, 3, 0, "613300ff"),
    (6, "/registry/gone", 1, 0, 0, 0, 0, "67"),
    (7, "/registry/gone", 0, 1, 6, 6, 0, "67"),
    (8, "/registry/leases/x", 1, 0, 0, 0, 42, "6c"),
    (9, "/registry/a-b.c:d_e~", 1, 0, 0, 0, 0, "70"),
    (10, "/other/key", 1, 0, 0, 0, 0, "6f"),
    (11, "/registry/Zeta", 1, 0, 0, 0, 0, "7a"),
];

/// The live set of SEED: (relative key, value, create_revision, mod_revision), in byte order.
fn expected() -> Vec<(Vec<u8>, Vec<u8>, i64, i64)> {
    vec![
        (b"/Zeta".to_vec(), b"z".to_vec(), 11, 11),
        (b"/a-b.c:d_e~".to_vec(), b"p".to_vec(), 9, 9),
        (b"/leases/x".to_vec(), b"l".to_vec(), 8, 8),
        (b"/pods/ns/B".to_vec(), b"B1".to_vec(), 4, 4),
        (b"/pods/ns/a".to_vec(), b"a3\x00\xff".to_vec(), 2, 5),
    ]
}

/// INSERT statements for SEED; `hex` turns a hex string into the dialect's bytes literal.
fn seed_sql(hex: impl Fn(&str) -> String) -> String {
    let rows: Vec<String> = SEED
        .iter()
        .map(|(id, name, c, d, cr, pr, l, v)| format!("({id}, '{name}', {c}, {d}, {cr}, {pr}, {l}, {}, NULL)", hex(v)))
        .collect();
    format!(
        "INSERT INTO kine (id, name, created, deleted, create_revision, prev_revision, lease, value, old_value) VALUES {};",
        rows.join(", ")
    )
}

async fn export<S: TenantStore>(
    store: &S,
    schema: &str,
) -> Result<(Vec<u8>, kmdr_datastore::ExportInfo, RecordSummary), TenantError> {
    let mut buf = Vec::new();
    let mut w = RecordWriter::new(&mut buf);
    let info = store.export(schema, None, &mut w).await?;
    let summary = w.finish().await?;
    Ok((buf, info, summary))
}

async fn read_all(buf: &[u8]) -> Vec<Record> {
    let mut r = RecordReader::new(buf);
    let mut out = Vec::new();
    while let Some(rec) = r.next().await.unwrap() {
        out.push(rec);
    }
    out
}

fn tuples(recs: &[Record]) -> Vec<(Vec<u8>, Vec<u8>, i64, i64)> {
    recs.iter().map(|r| (r.key.clone(), r.value.clone(), r.create_revision, r.mod_revision)).collect()
}

/// A valid stream with its last byte (part of the trailer's content hash) flipped.
fn damaged(buf: &[u8]) -> Vec<u8> {
    let mut bad = buf.to_vec();
    *bad.last_mut().unwrap() ^= 0x01;
    bad
}

async fn import<S: TenantStore>(
    store: &S,
    schema: &str,
    buf: &[u8],
    replace: bool,
) -> Result<kmdr_datastore::ImportInfo, TenantError> {
    let mut r = RecordReader::new(buf);
    store.import(schema, &mut r, replace).await
}

fn url_with_password(url: &str, pw: &str) -> DatastoreUrl {
    let mut u = DatastoreUrl::parse(url).unwrap();
    u.password = Some(pw.into());
    u
}

// ---------------------------------------------------------------- PostgreSQL

/// kine's table before its 64-bit migration (kine up to v0.12, and later
/// kine on a table it did not migrate): 32-bit revisions, VARCHAR names.
/// The seeded tenants use it, so export and replace are tested on it, and
/// a new database gets kine v0.17's layout (`POSTGRES_DDL`).
const PG_TABLE_32: &str = "CREATE TABLE kine (id SERIAL PRIMARY KEY, name VARCHAR(630), created INTEGER, deleted INTEGER, create_revision INTEGER, prev_revision INTEGER, lease INTEGER, value bytea, old_value bytea)";
const MY_TABLE_32: &str = "CREATE TABLE kine (id INTEGER AUTO_INCREMENT, name VARCHAR(630) CHARACTER SET ascii, created INTEGER, deleted INTEGER, create_revision INTEGER, prev_revision INTEGER, lease INTEGER, value MEDIUMBLOB, old_value MEDIUMBLOB, PRIMARY KEY (id))";

fn pg_seed(pg: &kmdr_testkit::Postgres, db: &str) {
    // An ICU en-US database: its default collation does not sort by bytes,
    // so the export's ORDER BY must say COLLATE "C".
    pg.psql(
        "postgres",
        &format!("CREATE DATABASE \"{db}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.utf8'"),
    );
    pg.psql(db, PG_TABLE_32);
    for ddl in &kmdr_datastore::kine_sql::POSTGRES_DDL[1..] {
        pg.psql(db, ddl);
    }
    pg.psql(db, &seed_sql(|h| format!("'\\x{h}'::bytea")));
    pg.psql(db, "SELECT setval(pg_get_serial_sequence('kine', 'id'), 11)");
}

/// A hash of every row of database `db`'s kine table.
fn pg_rows_hash(pg: &kmdr_testkit::Postgres, db: &str) -> String {
    pg.psql(
        db,
        "SELECT md5(string_agg(concat_ws('|', id, name, created, deleted, create_revision, prev_revision, lease, encode(value, 'hex'), encode(old_value, 'hex')), E'\\n' ORDER BY id)) FROM kine",
    )
}

#[tokio::test]
async fn postgres_export_import_replace() {
    if !kmdr_testkit::need("initdb") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pg = kmdr_testkit::Postgres::start(dir.path());
    pg_seed(&pg, "tenant-a");
    pg_seed(&pg, "tenant_b");
    let store = PostgresTenants::connect(&DatastoreUrl::parse(&pg.url()).unwrap(), &TlsFiles::default()).await.unwrap();
    assert_eq!(store.list_tenants().await.unwrap(), vec!["tenant-a", "tenant_b"]);
    assert_eq!(store.count("tenant-a").await.unwrap(), 5);
    assert_eq!(store.count("nowhere").await.unwrap(), 0);

    // Export: exactly the live set, relative, in byte order.
    let (buf, info, summary) = export(&store, "tenant-a").await.unwrap();
    assert_eq!(tuples(&read_all(&buf).await), expected());
    assert_eq!((info.revision, info.leased_keys, info.skipped_keys), (11, 1, 1));
    assert_eq!(info.first_skipped.as_deref(), Some("/other/key"));
    assert_eq!(summary.count, 5);

    // Import into a database that does not exist yet.
    let b_before = pg_rows_hash(&pg, "tenant_b");
    let got = import(&store, "restored", &buf, false).await.unwrap();
    assert_eq!((got.written, got.removed), (5, 0));
    let cols = pg.psql(
        "restored",
        "SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'kine'",
    );
    assert_eq!(
        cols.trim(),
        "id:bigint,name:text,created:integer,deleted:integer,create_revision:bigint,prev_revision:bigint,lease:integer,value:bytea,old_value:bytea"
    );
    let indexes = pg.psql(
        "restored",
        "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'kine'",
    );
    assert_eq!(
        indexes.trim(),
        "kine_id_deleted_index,kine_list_query_index,kine_name_id_index,kine_name_index,kine_name_prev_revision_uindex,kine_pkey,kine_prev_revision_index"
    );
    assert_eq!(pg.psql("restored", "SELECT id, prev_revision FROM kine WHERE name = 'compact_rev_key'").trim(), "1|0");
    assert_eq!(got.revision, 6);
    let (back, _, back_summary) = export(&store, "restored").await.unwrap();
    assert_eq!(back_summary.content_sha256, summary.content_sha256);
    let back = read_all(&back).await;
    assert!(back.iter().all(|r| r.create_revision == r.mod_revision && r.mod_revision >= 2));
    // The sequence was reset: kine's next write gets MAX(id) + 1.
    let next = pg.psql("restored", "INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value) VALUES ('/registry/new', 1, 0, 0, 0, 0, '') RETURNING id");
    assert_eq!(next.trim(), "7");

    // Replace a non-empty tenant: old keys go, ids stay above the old maximum.
    let other = {
        let mut b = Vec::new();
        let mut w = RecordWriter::new(&mut b);
        w.write(b"/configmaps/x", b"new", 0, 0).await.unwrap();
        w.write(b"/pods/ns/a", b"A", 0, 0).await.unwrap();
        w.finish().await.unwrap();
        b
    };
    let got = import(&store, "tenant-a", &other, true).await.unwrap();
    assert_eq!((got.written, got.removed, got.revision), (2, 5, 13));
    assert_eq!(pg.psql("tenant-a", "SELECT prev_revision FROM kine WHERE name = 'compact_rev_key'").trim(), "11");
    assert_eq!(
        pg.psql("tenant-a", "SELECT string_agg(id || name, ',' ORDER BY id) FROM kine").trim(),
        "1compact_rev_key,12/registry/configmaps/x,13/registry/pods/ns/a"
    );
    let (now, _, _) = export(&store, "tenant-a").await.unwrap();
    let now = read_all(&now).await;
    assert_eq!(
        now.iter().map(|r| (r.key.as_slice(), r.value.as_slice())).collect::<Vec<_>>(),
        vec![(&b"/configmaps/x"[..], &b"new"[..]), (b"/pods/ns/a", b"A")]
    );
    // Isolation: the other tenant was not touched.
    assert_eq!(pg_rows_hash(&pg, "tenant_b"), b_before);

    // A tenant whose keys were all deleted takes a restore without replace;
    // the new create rows chain onto the old ones.
    pg.psql("tenant_b", "INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value) SELECT name, 0, 1, 0, MAX(id), 0, '' FROM kine WHERE name LIKE '/registry/%' AND deleted = 0 AND id IN (SELECT MAX(id) FROM kine GROUP BY name) GROUP BY name");
    assert_eq!(store.count("tenant_b").await.unwrap(), 0);
    let got = import(&store, "tenant_b", &buf, false).await.unwrap();
    assert_eq!(got.written, 5);
    let (again, _, again_summary) = export(&store, "tenant_b").await.unwrap();
    assert_eq!(again_summary.content_sha256, summary.content_sha256);
    assert_eq!(read_all(&again).await.len(), 5);
}

#[tokio::test]
async fn postgres_failures_change_nothing() {
    if !kmdr_testkit::need("initdb") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pg = kmdr_testkit::Postgres::start(dir.path());
    pg_seed(&pg, "tenant-a");
    let store = PostgresTenants::connect(&DatastoreUrl::parse(&pg.url()).unwrap(), &TlsFiles::default()).await.unwrap();
    let (buf, _, _) = export(&store, "tenant-a").await.unwrap();

    // Damaged stream: every row reached the server, the trailer fails, nothing changes.
    let before = pg_rows_hash(&pg, "tenant-a");
    let err = import(&store, "tenant-a", &damaged(&buf), true).await.unwrap_err();
    match &err {
        TenantError::ImportFailed { state, detail, .. } => {
            assert!(state.starts_with("nothing was changed"), "{state}");
            assert!(detail.contains("content hash"), "{detail}");
        }
        other => panic!("expected ImportFailed, got {other}"),
    }
    assert_eq!(pg_rows_hash(&pg, "tenant-a"), before);
    // Into a new database: the state says what was created.
    let err = import(&store, "fresh", &damaged(&buf), false).await.unwrap_err();
    assert!(err.to_string().contains("database \"fresh\" was created"), "{err}");
    assert_eq!(store.count("fresh").await.unwrap(), 0);
    // Odd names are refused before any SQL.
    assert!(matches!(import(&store, "a\"b", &buf, false).await, Err(TenantError::BadUrl(_))));

    // Unknown tenant: the message lists the ones there are.
    match export(&store, "nope").await.unwrap_err() {
        TenantError::UnknownSchema { found, .. } => assert_eq!(found, vec!["fresh", "tenant-a"]),
        other => panic!("expected UnknownSchema, got {other}"),
    }
    // A database without kine's table is not a tenant either.
    pg.psql("postgres", "CREATE DATABASE plain");
    assert!(matches!(export(&store, "plain").await, Err(TenantError::UnknownSchema { .. })));

    // Wrong password: Auth, and the password is never shown.
    let err = PostgresTenants::connect(&url_with_password(&pg.url(), "wrong-secret"), &TlsFiles::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, TenantError::Auth { .. }), "{err}");
    assert!(!err.to_string().contains("wrong-secret"));
    // Nothing listening: Unreachable.
    let closed = format!("postgres://kmdr:x@127.0.0.1:{}", kmdr_testkit::free_port());
    let err =
        PostgresTenants::connect(&DatastoreUrl::parse(&closed).unwrap(), &TlsFiles::default()).await.err().unwrap();
    assert!(matches!(err, TenantError::Unreachable { .. }), "{err}");
    // TLS without checking the server is refused, with the way to do it.
    let tls = DatastoreUrl::parse(&format!("{}?sslmode=require", pg.url())).unwrap();
    let err = PostgresTenants::connect(&tls, &TlsFiles::default()).await.err().unwrap();
    assert!(matches!(&err, TenantError::BadUrl(m) if m.contains("verify-full") && m.contains("--cacert")), "{err}");
}

// ---------------------------------------------------------------- MariaDB

fn my_seed(m: &kmdr_testkit::Mariadb, db: &str) {
    let mut sql = format!("CREATE DATABASE `{db}`; USE `{db}`; {MY_TABLE_32}; ");
    for ddl in &kmdr_datastore::kine_sql::MYSQL_DDL[1..] {
        sql.push_str(ddl);
        sql.push_str("; ");
    }
    sql.push_str(&seed_sql(|h| format!("X'{h}'")));
    m.sql(&sql);
}

fn my_rows_hash(m: &kmdr_testkit::Mariadb, db: &str) -> String {
    m.sql(&format!(
        "SET SESSION group_concat_max_len = 1073741824; SELECT MD5(GROUP_CONCAT(CONCAT_WS('|', id, name, created, deleted, create_revision, prev_revision, lease, HEX(value), HEX(old_value)) ORDER BY id SEPARATOR '\\n')) FROM `{db}`.kine"
    ))
}

#[tokio::test]
async fn mariadb_export_import_replace() {
    if !kmdr_testkit::need("mariadbd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = kmdr_testkit::Mariadb::start(dir.path());
    my_seed(&m, "tenant-a");
    my_seed(&m, "tenant_b");
    let store = MysqlTenants::connect(&DatastoreUrl::parse(&m.url()).unwrap(), &TlsFiles::default()).await.unwrap();
    assert_eq!(store.list_tenants().await.unwrap(), vec!["tenant-a", "tenant_b"]);
    assert_eq!(store.count("tenant-a").await.unwrap(), 5);
    assert_eq!(store.count("nowhere").await.unwrap(), 0);

    // Export: byte order although the column collates case-insensitively.
    let (buf, info, summary) = export(&store, "tenant-a").await.unwrap();
    assert_eq!(tuples(&read_all(&buf).await), expected());
    assert_eq!((info.revision, info.leased_keys, info.skipped_keys), (11, 1, 1));
    assert_eq!(info.first_skipped.as_deref(), Some("/other/key"));

    // Import into a database that does not exist yet.
    let b_before = my_rows_hash(&m, "tenant_b");
    let got = import(&store, "restored", &buf, false).await.unwrap();
    assert_eq!((got.written, got.removed, got.revision), (5, 0, 6));
    let cols = m.sql("SELECT GROUP_CONCAT(CONCAT(column_name, ':', column_type) ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema = 'restored' AND table_name = 'kine'");
    assert_eq!(
        cols.trim(),
        "id:bigint(20) unsigned,name:varchar(630),created:int(11),deleted:int(11),create_revision:bigint(20) unsigned,prev_revision:bigint(20) unsigned,lease:int(11),value:mediumblob,old_value:mediumblob"
    );
    let idx = m.sql("SELECT GROUP_CONCAT(DISTINCT index_name ORDER BY index_name) FROM information_schema.statistics WHERE table_schema = 'restored' AND table_name = 'kine'");
    assert_eq!(
        idx.trim(),
        "kine_id_deleted_index,kine_name_id_index,kine_name_index,kine_name_prev_revision_uindex,kine_prev_revision_index,PRIMARY"
    );
    assert_eq!(m.sql("SELECT id, prev_revision FROM restored.kine WHERE name = 'compact_rev_key'").trim(), "1\t0");
    let (_, _, back_summary) = export(&store, "restored").await.unwrap();
    assert_eq!(back_summary.content_sha256, summary.content_sha256);
    // AUTO_INCREMENT follows: kine's next write gets MAX(id) + 1.
    let next = m.sql("INSERT INTO restored.kine (name, created, deleted, create_revision, prev_revision, lease, value) VALUES ('/registry/new', 1, 0, 0, 0, 0, ''); SELECT LAST_INSERT_ID();");
    assert_eq!(next.trim(), "7");

    // Replace a non-empty tenant.
    let other = {
        let mut b = Vec::new();
        let mut w = RecordWriter::new(&mut b);
        w.write(b"/configmaps/x", b"new", 0, 0).await.unwrap();
        w.write(b"/pods/ns/a", b"A", 0, 0).await.unwrap();
        w.finish().await.unwrap();
        b
    };
    let got = import(&store, "tenant-a", &other, true).await.unwrap();
    assert_eq!((got.written, got.removed, got.revision), (2, 5, 13));
    assert_eq!(m.sql("SELECT prev_revision FROM `tenant-a`.kine WHERE name = 'compact_rev_key'").trim(), "11");
    assert_eq!(
        m.sql("SELECT GROUP_CONCAT(CONCAT(id, name) ORDER BY id) FROM `tenant-a`.kine").trim(),
        "1compact_rev_key,12/registry/configmaps/x,13/registry/pods/ns/a"
    );
    assert_eq!(my_rows_hash(&m, "tenant_b"), b_before);

    // All keys deleted, then a restore without replace chains onto the history.
    m.sql("INSERT INTO tenant_b.kine (name, created, deleted, create_revision, prev_revision, lease, value) SELECT k.name, 0, 1, 0, k.id, 0, '' FROM tenant_b.kine k JOIN (SELECT MAX(id) AS id FROM tenant_b.kine GROUP BY name) x ON x.id = k.id WHERE k.name LIKE '/registry/%' AND k.deleted = 0");
    assert_eq!(store.count("tenant_b").await.unwrap(), 0);
    assert_eq!(import(&store, "tenant_b", &buf, false).await.unwrap().written, 5);
    let (_, _, again) = export(&store, "tenant_b").await.unwrap();
    assert_eq!(again.content_sha256, summary.content_sha256);
}

#[tokio::test]
async fn mariadb_failures_change_nothing() {
    if !kmdr_testkit::need("mariadbd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = kmdr_testkit::Mariadb::start(dir.path());
    my_seed(&m, "tenant-a");
    let store = MysqlTenants::connect(&DatastoreUrl::parse(&m.url()).unwrap(), &TlsFiles::default()).await.unwrap();
    let (buf, _, _) = export(&store, "tenant-a").await.unwrap();

    let before = my_rows_hash(&m, "tenant-a");
    let err = import(&store, "tenant-a", &damaged(&buf), true).await.unwrap_err();
    match &err {
        TenantError::ImportFailed { state, detail, .. } => {
            assert!(state.starts_with("nothing was changed"), "{state}");
            assert!(detail.contains("content hash"), "{detail}");
        }
        other => panic!("expected ImportFailed, got {other}"),
    }
    assert_eq!(my_rows_hash(&m, "tenant-a"), before);
    let err = import(&store, "fresh", &damaged(&buf), false).await.unwrap_err();
    assert!(err.to_string().contains("database \"fresh\" was created"), "{err}");
    assert_eq!(store.count("fresh").await.unwrap(), 0);
    assert!(matches!(import(&store, "a`b", &buf, false).await, Err(TenantError::BadUrl(_))));

    match export(&store, "nope").await.unwrap_err() {
        TenantError::UnknownSchema { found, .. } => assert_eq!(found, vec!["fresh", "tenant-a"]),
        other => panic!("expected UnknownSchema, got {other}"),
    }

    let err =
        MysqlTenants::connect(&url_with_password(&m.url(), "wrong-secret"), &TlsFiles::default()).await.err().unwrap();
    assert!(matches!(err, TenantError::Auth { .. }), "{err}");
    assert!(!err.to_string().contains("wrong-secret"));
    let closed = format!("mysql://root:x@127.0.0.1:{}", kmdr_testkit::free_port());
    let err = MysqlTenants::connect(&DatastoreUrl::parse(&closed).unwrap(), &TlsFiles::default()).await.err().unwrap();
    assert!(matches!(err, TenantError::Unreachable { .. }), "{err}");

    // Keys differing only in case (fine on etcd, PostgreSQL, NATS) cannot both
    // live in kine's case-insensitive MySQL table: refused, rolled back, explained.
    let mut cased = Vec::new();
    let mut w = RecordWriter::new(&mut cased);
    w.write(b"/roles/ns/Admin", b"1", 1, 1).await.unwrap();
    w.write(b"/roles/ns/admin", b"2", 2, 2).await.unwrap();
    w.finish().await.unwrap();
    let err = import(&store, "cased", &cased, false).await.unwrap_err();
    assert!(err.to_string().contains("differ only in case") && err.to_string().contains("rolled back"), "{err}");
    assert_eq!(store.count("cased").await.unwrap(), 0);
}

// ---------------------------------------------------------------- delta capture

use crate::common;
use common::State;
use kmdr_datastore::capture::{ChangeSource, Stopped};
use std::time::Duration;

/// A kine row as the tests read it back: (id, name, deleted, value).
type Row = (i64, String, i64, Vec<u8>);

/// A connection writing rows the way kine does.
enum Sql {
    Pg(tokio_postgres::Client),
    My(mysql_async::Conn),
}

impl Sql {
    async fn pg(pg: &kmdr_testkit::Postgres, db: &str) -> Sql {
        let url = format!(
            "host=127.0.0.1 port={} user={} password={} dbname={db}",
            pg.port(),
            kmdr_testkit::postgres::USER,
            kmdr_testkit::postgres::PASSWORD
        );
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        Sql::Pg(client)
    }

    async fn my(m: &kmdr_testkit::Mariadb, db: &str) -> Sql {
        let opts = mysql_async::Opts::from_url(&format!("{}/{db}", m.url())).unwrap();
        Sql::My(mysql_async::Conn::new(opts).await.unwrap())
    }

    /// Insert one kine row (`old` is kine's prev_revision); its id.
    async fn insert(
        &mut self,
        name: &str,
        created: i64,
        deleted: i64,
        create_rev: i64,
        prev: i64,
        value: &[u8],
    ) -> i64 {
        const COLS: &str =
            "INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value, old_value)";
        match self {
            Sql::Pg(c) => {
                let sql = format!(
                    "{COLS} VALUES ($1, $2::bigint, $3::bigint, $4::bigint, $5::bigint, 0, $6, NULL) RETURNING id::bigint"
                );
                c.query_one(&sql, &[&name, &created, &deleted, &create_rev, &prev, &value])
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
            }
            Sql::My(c) => {
                use mysql_async::prelude::Queryable;
                c.exec_drop(
                    format!("{COLS} VALUES (?, ?, ?, ?, ?, 0, ?, NULL)"),
                    (name, created, deleted, create_rev, prev, value),
                )
                .await
                .unwrap();
                c.last_insert_id().unwrap() as i64
            }
        }
    }

    async fn exec(&mut self, sql: &str) {
        match self {
            Sql::Pg(c) => c.batch_execute(sql).await.unwrap(),
            Sql::My(c) => {
                use mysql_async::prelude::Queryable;
                c.query_drop(sql).await.unwrap()
            }
        }
    }

    /// Every row.
    async fn rows(&mut self) -> Vec<Row> {
        let sql = "SELECT id, name, deleted, value FROM kine ORDER BY id";
        match self {
            Sql::Pg(c) => c
                .query("SELECT id::bigint, name::text, deleted::bigint, value FROM kine ORDER BY id", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r.get::<_, i64>(0),
                        r.get(1),
                        r.get::<_, i64>(2),
                        r.get::<_, Option<Vec<u8>>>(3).unwrap_or_default(),
                    )
                })
                .collect(),
            Sql::My(c) => {
                use mysql_async::prelude::Queryable;
                let rows: Vec<mysql_async::Row> = c.query(sql).await.unwrap();
                rows.into_iter()
                    .map(|mut r| {
                        (
                            r.take(0).unwrap(),
                            String::from_utf8(r.take(1).unwrap()).unwrap(),
                            r.take(2).unwrap(),
                            r.take::<Option<Vec<u8>>, _>(3).flatten().unwrap_or_default(),
                        )
                    })
                    .collect()
            }
        }
    }

    /// The tenant at revision `rev`, from kine's rows alone: the newest row
    /// of each name with id <= rev, when it is not a delete.
    async fn state_at(&mut self, rev: i64) -> State {
        let mut latest: BTreeMap<String, (i64, Vec<u8>)> = BTreeMap::new();
        for (_, name, deleted, value) in self.rows().await.into_iter().filter(|r| r.0 <= rev) {
            latest.insert(name, (deleted, value));
        }
        latest
            .into_iter()
            .filter(|(n, (d, _))| *d == 0 && n.starts_with("/registry/"))
            .map(|(n, (_, v))| (n.as_bytes()["/registry".len()..].to_vec(), v))
            .collect()
    }
}

use std::collections::BTreeMap;

/// kine's writes: create, update (create revision and prev carried), delete.
struct KineWriter {
    db: Sql,
    /// live name -> (create revision, last id)
    keys: BTreeMap<String, (i64, i64)>,
    /// deleted name -> its delete row's id (a new create row points at it)
    gone: BTreeMap<String, i64>,
}

impl KineWriter {
    fn new(db: Sql) -> Self {
        KineWriter { db, keys: BTreeMap::new(), gone: BTreeMap::new() }
    }

    async fn put(&mut self, name: &str, value: &[u8]) -> i64 {
        let id = match self.keys.get(name).copied() {
            None => self.db.insert(name, 1, 0, 0, self.gone.remove(name).unwrap_or(0), value).await,
            Some((cr, last)) => self.db.insert(name, 0, 0, cr, last, value).await,
        };
        let cr = self.keys.get(name).map_or(id, |k| k.0);
        self.keys.insert(name.into(), (cr, id));
        id
    }

    async fn delete(&mut self, name: &str) -> i64 {
        let (cr, last) = self.keys.remove(name).expect("live key");
        let id = self.db.insert(name, 0, 1, cr, last, b"gone").await;
        self.gone.insert(name.into(), id);
        id
    }

    /// 120 changes over 30 keys: creates, updates, deletes, re-creates.
    async fn churn(&mut self, round: u32) {
        for n in 0..120u32 {
            let name = format!("/registry/pods/ns/p{:02}", n % 30);
            if n % 7 == 3 && self.keys.contains_key(&name) {
                self.delete(&name).await;
            } else {
                self.put(&name, format!("r{round}-v{n}").as_bytes()).await;
            }
            if n % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }
    }
}

/// Capture while kine's rows change, stop and resume, restore several
/// revisions and compare them with kine's own rows; then a compaction past
/// the resume point stops the capture with Compacted.
async fn capture_round_trip(
    repo_dir: &std::path::Path,
    source: ChangeSource,
    store: &impl TenantStore,
    mut w: KineWriter,
    mut check: Sql,
    mut other: Option<Sql>,
) {
    let repo = common::new_repo(repo_dir).await;
    let base = common::full_backup(&repo, store, "t1").await;

    // First run: churn, plus (PostgreSQL) an id that commits after a higher one
    // and an id whose transaction rolls back.
    let mut late_id = None;
    let stopped = common::capture_while(
        &repo,
        &source,
        "t1",
        base + 1,
        async {
            w.churn(1).await;
            if let Some(Sql::Pg(o)) = other.as_mut() {
                let tx = o.transaction().await.unwrap();
                let low: i64 = tx
                    .query_one("INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value) VALUES ('/registry/late', 1, 0, 0, 0, 0, 'late') RETURNING id::bigint", &[])
                    .await
                    .unwrap()
                    .get(0);
                let high = w.put("/registry/after-late", b"x").await;
                assert!(high > low);
                tokio::time::sleep(Duration::from_millis(600)).await;
                tx.commit().await.unwrap();
                late_id = Some(low);
                let tx = o.transaction().await.unwrap();
                tx.execute("INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value) VALUES ('/registry/never', 1, 0, 0, 0, 0, 'x')", &[]).await.unwrap();
                tx.rollback().await.unwrap();
            }
            w.churn(2).await;
        },
        Duration::from_millis(1800),
    )
    .await;
    assert_eq!(stopped, Stopped::Shutdown);
    let first_end = common::chain_end(&repo, "t1").await;

    // Writes while no capture runs, then a resumed capture.
    w.churn(3).await;
    let from = common::resume_point(&repo, "t1", base).await;
    assert_eq!(from, first_end + 1);
    let stopped = common::capture_while(&repo, &source, "t1", from, w.churn(4), Duration::from_millis(1800)).await;
    assert_eq!(stopped, Stopped::Shutdown);

    // Every tenant row after the base is captured exactly once, in order, across both runs.
    let events = common::captured(&repo, "t1", base).await;
    let rows = check.rows().await;
    let max = rows.last().unwrap().0;
    let want: Vec<i64> = rows.iter().filter(|r| r.0 > base && r.1.starts_with("/registry/")).map(|r| r.0).collect();
    assert_eq!(events.iter().map(|e| e.revision).collect::<Vec<_>>(), want);
    assert_eq!(common::chain_end(&repo, "t1").await, max, "the chain reaches the newest row");
    if let Some(late) = late_id {
        assert!(events.iter().any(|e| e.revision == late && e.key == b"/late"), "the row committed late was captured");
    }

    // Points in time: the state the repository restores equals kine's rows at that id.
    let mut points = vec![base, base + 1, first_end, (base + max) / 2, max];
    points.extend(late_id);
    for r in points {
        assert_eq!(common::restored_state(&repo, "t1", r).await, check.state_at(r).await, "state at revision {r}");
    }

    // kine compacts past the resume point: Compacted, nothing written.
    let segments = repo.list_segments(Some("tenant/t1")).await.unwrap().len();
    w.churn(5).await;
    let compact = max + 50;
    check.exec(&format!("UPDATE kine SET prev_revision = {compact} WHERE name = 'compact_rev_key'")).await;
    let stopped = common::capture_while(&repo, &source, "t1", max + 1, async {}, Duration::from_millis(500)).await;
    assert_eq!(stopped, Stopped::Compacted { wanted: max + 1, compact_revision: compact });
    assert_eq!(repo.list_segments(Some("tenant/t1")).await.unwrap().len(), segments);
}

/// kine's table with its compact_rev_key row and a few keys.
const KINE_START: &str = "INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value, old_value) VALUES \
     ('compact_rev_key', 1, 0, 0, 0, 0, '', NULL), ('/registry/seed/a', 1, 0, 0, 0, 0, 'a', NULL), ('/registry/seed/b', 1, 0, 0, 0, 0, 'b', NULL)";

#[tokio::test]
async fn postgres_delta_capture_restores_any_revision() {
    if !kmdr_testkit::need("initdb") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pg = kmdr_testkit::Postgres::start(dir.path());
    pg.psql("postgres", "CREATE DATABASE t1");
    for ddl in kmdr_datastore::kine_sql::POSTGRES_DDL {
        pg.psql("t1", ddl);
    }
    pg.psql("t1", KINE_START);
    let url = DatastoreUrl::parse(&pg.url()).unwrap();
    let store = PostgresTenants::connect(&url, &TlsFiles::default()).await.unwrap();
    let source = ChangeSource::Postgres {
        store: PostgresTenants::connect(&url, &TlsFiles::default()).await.unwrap(),
        schema: "t1".into(),
    };
    let w = KineWriter::new(Sql::pg(&pg, "t1").await);
    capture_round_trip(dir.path(), source, &store, w, Sql::pg(&pg, "t1").await, Some(Sql::pg(&pg, "t1").await)).await;
}

#[tokio::test]
async fn mariadb_delta_capture_restores_any_revision() {
    if !kmdr_testkit::need("mariadbd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = kmdr_testkit::Mariadb::start(dir.path());
    let mut sql = "CREATE DATABASE t1; USE t1; ".to_string();
    for ddl in kmdr_datastore::kine_sql::MYSQL_DDL {
        sql.push_str(ddl);
        sql.push_str("; ");
    }
    sql.push_str(KINE_START);
    m.sql(&sql);
    let url = DatastoreUrl::parse(&m.url()).unwrap();
    let store = MysqlTenants::connect(&url, &TlsFiles::default()).await.unwrap();
    let source = ChangeSource::Mysql {
        store: MysqlTenants::connect(&url, &TlsFiles::default()).await.unwrap(),
        schema: "t1".into(),
    };
    let w = KineWriter::new(Sql::my(&m, "t1").await);
    capture_round_trip(dir.path(), source, &store, w, Sql::my(&m, "t1").await, None).await;
}
