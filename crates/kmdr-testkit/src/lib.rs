//! Real servers for kmdr's tests, started on loopback in temp dirs and ended
//! by pid when dropped: etcd, PostgreSQL, MariaDB and NATS with JetStream.
//! A missing server binary fails the test when KMDR_TEST_REQUIRE_SERVERS=1
//! (CI); otherwise the test says it is skipped on stderr.

pub mod data;
pub mod etcd;
pub mod mariadb;
pub mod nats;
pub mod pki;
pub mod postgres;

pub use etcd::Etcd;
pub use mariadb::Mariadb;
pub use nats::Nats;
pub use pki::make_pki;
pub use postgres::Postgres;

use std::net::TcpListener;
use std::process::{Command, Stdio};

pub fn require_servers() -> bool {
    std::env::var("KMDR_TEST_REQUIRE_SERVERS").as_deref() == Ok("1")
}

/// Whether `bin` runs (`bin --version` succeeds).
pub fn have(bin: &str) -> bool {
    Command::new(bin).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `true` when `bin` can be run; otherwise skip the calling test, or panic
/// when KMDR_TEST_REQUIRE_SERVERS=1.
pub fn need(bin: &str) -> bool {
    if have(bin) {
        return true;
    }
    if require_servers() {
        panic!(
            "{bin} is not on PATH but KMDR_TEST_REQUIRE_SERVERS=1: run scripts/test.sh, which installs and finds it"
        );
    }
    eprintln!("SKIPPED: {bin} not on PATH (run scripts/test.sh)");
    false
}
