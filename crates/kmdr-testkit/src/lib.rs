//! Real servers on loopback for kmdr's tests and for `kmdr lab`: etcd,
//! PostgreSQL, MariaDB, NATS with JetStream, kine in front of any of them, an
//! S3 server (moto) and a Kubernetes API server (kube-apiserver on its own etcd,
//! [`kube_apiserver`]), plus Kubernetes-shaped test data ([`data`]) and a
//! client that writes it as kube-apiserver does ([`kube_storage`]).
//!
//! Every server has one launcher, `<Server>::launch(<Server>Options)`, which
//! returns a [`LaunchError`] saying what failed and what to do. A server is
//! either owned (a test's: stopped when its handle is dropped) or detached
//! (the lab's: it outlives this process, its pid is written to a pid file and
//! [`process::stop_pid`] stops it later); see [`Mode`]. The tests' shorthands
//! (`Etcd::start`, `Postgres::start`, ...) launch owned servers and panic with
//! the error's message.
//!
//! A missing server binary fails the test when KMDR_TEST_REQUIRE_SERVERS=1
//! (CI); otherwise [`need`] says on stderr that the test is skipped.

pub mod data;
mod error;
pub mod etcd;
pub mod kine;
pub mod kube_apiserver;
pub mod kube_storage;
pub mod mariadb;
pub mod nats;
pub mod pki;
pub mod postgres;
pub mod process;
pub mod s3;

pub use error::LaunchError;
pub use etcd::{Etcd, EtcdOptions};
pub use kine::{Kine, KineOptions};
pub use kube_apiserver::{KubeApiServer, KubeApiServerOptions};
pub use kube_storage::KubeStorage;
pub use mariadb::{Mariadb, MariadbOptions};
pub use nats::{Nats, NatsOptions};
pub use pki::make_pki;
pub use postgres::{Postgres, PostgresOptions};
pub use process::Mode;
pub use s3::{S3Server, S3ServerOptions, create_bucket};

use std::net::TcpListener;
use std::process::{Command, Stdio};

pub fn require_servers() -> bool {
    std::env::var("KMDR_TEST_REQUIRE_SERVERS").as_deref() == Ok("1")
}

/// Whether `bin` runs (`bin --version`, or `bin version` as helm 4 has it, succeeds).
pub fn have(bin: &str) -> bool {
    let runs = |arg: &str| {
        Command::new(bin).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    };
    runs("--version") || runs("version")
}

/// A port on 127.0.0.1 that was free a moment ago (0 when none can be bound,
/// which the server's own bind then reports).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
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
