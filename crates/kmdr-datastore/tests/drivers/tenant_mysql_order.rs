//! MySQL export order on a real MariaDB: kine's name column collates
//! case-insensitively (`ascii_general_ci`), the record stream needs byte
//! order. The export streams kine's name index and merges in the names whose
//! collation order differs from their byte order (upper case, ``[\]^_` ``,
//! spaces); under any other collation it reads in id order and sorts. Every
//! printable ASCII byte, at the end of a name and inside it, with history
//! rows, deletions, names equal but for case or trailing spaces, ids in no
//! particular order: the result must be the live keys in byte order, under
//! each collation.

use kmdr_core::TlsFiles;
use kmdr_datastore::mysql::MysqlTenants;
use kmdr_datastore::{DatastoreUrl, RecordReader, RecordWriter, TenantStore};
use std::collections::BTreeMap;

/// (name, deleted, value) in id order, and the live set (relative key -> (value, mod revision)).
type Seeded = (Vec<(Vec<u8>, bool, Vec<u8>)>, BTreeMap<Vec<u8>, (Vec<u8>, i64)>);

fn rows() -> Seeded {
    let mut names: Vec<Vec<u8>> = Vec::new();
    for c in 0x20u8..=0x7e {
        names.push([b"/registry/k".as_slice(), &[c]].concat());
        names.push([b"/registry/".as_slice(), &[c, b'x', c]].concat());
        names.push([b"/registry/pods/".as_slice(), &[c], b"/end"].concat());
    }
    names.push(b"/registry/Aa".to_vec()); // equal to /registry/aA and /registry/AA but for case
    names.push(b"/registry/aA".to_vec());
    names.push(b"/registry/end ".to_vec()); // equal to /registry/end but for a trailing space
    names.push(b"/registry/end".to_vec());
    names.push(b"/outside".to_vec());
    names.push(b"compact_rev_key".to_vec());
    // Ids in no particular order against the names (a fixed shuffle), each
    // name written twice; every fifth one deleted after, every seventh
    // deleted and then written again.
    let mut order: Vec<usize> = (0..names.len()).collect();
    let mut x = 12345u64;
    for i in (1..order.len()).rev() {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        order.swap(i, (x >> 33) as usize % (i + 1));
    }
    let mut out: Vec<(Vec<u8>, bool, Vec<u8>)> = Vec::new();
    for pass in 0..3 {
        for (k, &i) in order.iter().enumerate() {
            let n = &names[i];
            let deleted = (pass == 2 && k % 5 == 0) || (pass == 1 && k % 7 == 0);
            if pass == 2 && k % 5 != 0 && k % 7 != 0 {
                continue;
            }
            out.push((n.clone(), deleted, format!("v{pass}-{k}").into_bytes()));
        }
    }
    let mut live = BTreeMap::new();
    for (id, (n, deleted, v)) in out.iter().enumerate() {
        let Some(rel) = n.strip_prefix(b"/registry") else { continue };
        if *deleted {
            live.remove(rel);
        } else {
            live.insert(rel.to_vec(), (v.clone(), id as i64 + 1));
        }
    }
    (out, live)
}

#[tokio::test]
async fn mariadb_export_is_in_byte_order_under_every_collation() {
    if !kmdr_testkit::need("mariadbd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = kmdr_testkit::Mariadb::start(dir.path());
    let store = MysqlTenants::connect(&DatastoreUrl::parse(&m.url()).unwrap(), &TlsFiles::default()).await.unwrap();
    let (rows, live) = rows();
    assert!(live.keys().any(|k| k == b"/end ") && live.keys().any(|k| k == b"/aA"), "edge cases stay live");
    for charset in ["ascii", "ascii COLLATE ascii_bin", "latin1", "utf8mb4 COLLATE utf8mb4_unicode_ci"] {
        let db = format!("t_{}", charset.split(' ').next_back().unwrap());
        let mut sql = format!("CREATE DATABASE `{db}`; USE `{db}`; ");
        sql.push_str(
            &kmdr_datastore::kine_sql::MYSQL_DDL[0].replace("CHARACTER SET ascii", &format!("CHARACTER SET {charset}")),
        );
        sql.push_str("; ");
        for ddl in &kmdr_datastore::kine_sql::MYSQL_DDL[1..] {
            sql.push_str(ddl);
            sql.push_str("; ");
        }
        // prev_revision = id keeps kine's unique (name, prev_revision) index
        // apart for names the collation holds equal.
        let values: Vec<String> = rows
            .iter()
            .enumerate()
            .map(|(i, (n, d, v))| {
                let id = i + 1;
                format!("({id}, X'{}', 1, {}, 0, {id}, 0, X'{}')", hex(n), *d as u8, hex(v))
            })
            .collect();
        sql.push_str(&format!(
            "INSERT INTO kine (id, name, created, deleted, create_revision, prev_revision, lease, value) VALUES {};",
            values.join(",")
        ));
        m.sql(&sql);
        let mut buf = Vec::new();
        let mut w = RecordWriter::new(&mut buf);
        let info = store.export(&db, None, &mut w).await.unwrap();
        w.finish().await.unwrap();
        let mut r = RecordReader::new(buf.as_slice());
        let mut got = BTreeMap::new();
        let mut keys = Vec::new();
        while let Some(rec) = r.next().await.unwrap() {
            keys.push(rec.key.clone());
            got.insert(rec.key, (rec.value, rec.mod_revision));
        }
        assert!(keys.windows(2).all(|p| p[0] < p[1]), "{charset}: keys not in byte order");
        assert_eq!(got, live, "{charset}");
        assert_eq!((info.revision, info.skipped_keys), (rows.len() as i64, 1), "{charset}");
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
