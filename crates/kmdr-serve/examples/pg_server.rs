//! A PostgreSQL for scripts/bench-delta.sh: started in DIR (kmdr-testkit),
//! with kine's table in database `bench` and one key, so that `kmdr serve`
//! finds tenant `bench`. Prints the URL, then runs until SIGTERM (or
//! Ctrl-C), and stops the server.
//!
//! usage: pg_server DIR

#[tokio::main]
async fn main() {
    let dir = std::env::args().nth(1).expect("usage: pg_server DIR");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    let pg = kmdr_testkit::Postgres::start(std::path::Path::new(&dir));
    pg.psql("postgres", "CREATE DATABASE bench");
    for ddl in kmdr_datastore::kine_sql::POSTGRES_DDL {
        pg.psql("bench", ddl);
    }
    pg.psql("bench", "INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value) VALUES ('compact_rev_key', 1, 0, 0, 0, 0, ''), ('/registry/seed', 1, 0, 0, 0, 0, 'x')");
    println!("{}", pg.url());
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    drop(pg);
}
