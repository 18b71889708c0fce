//! Every launcher in both modes against the real server: an owned server ends
//! with its handle; a detached one outlives it, is found by its pid file and
//! stopped by pid. And a server that cannot start says why, naming its log.

use kmdr_testkit::process::{running_pid, runs, stop_pid};
use kmdr_testkit::{
    Etcd, EtcdOptions, Kine, KineOptions, LaunchError, Mariadb, MariadbOptions, Mode, Nats, NatsOptions, Postgres,
    PostgresOptions, need,
};
use std::path::Path;

/// When `bin` is installed: launch with `launch` (given a directory and the
/// mode) owned and detached, and check what each leaves running.
fn both_modes<T>(bin: &str, program: &str, launch: impl Fn(&Path, Mode) -> Result<T, LaunchError>, pid: fn(&T) -> u32) {
    if !need(bin) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let owned = launch(&dir("owned"), Mode::Owned).unwrap_or_else(|e| panic!("{program}: {e}"));
    let owned_pid = pid(&owned);
    assert!(runs(owned_pid, program), "{program} runs");
    drop(owned);
    assert!(!runs(owned_pid, program), "an owned {program} ends with its handle");

    let pid_file = tmp.path().join(format!("{program}.pid"));
    let detached = launch(&dir("detached"), Mode::Detached { pid_file: pid_file.clone() })
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let detached_pid = pid(&detached);
    drop(detached);
    assert_eq!(running_pid(&pid_file, program), Some(detached_pid), "a detached {program} outlives its handle");
    assert!(stop_pid(detached_pid, program));
    assert_eq!(running_pid(&pid_file, program), None, "stopped by pid");
}

#[test]
fn etcd_in_both_modes() {
    let launch = |d: &Path, mode| Etcd::launch(EtcdOptions { mode, ..EtcdOptions::new("m", d.join("m.etcd")) });
    both_modes("etcd", "etcd", launch, Etcd::pid);
}

#[test]
fn postgres_in_both_modes() {
    let launch =
        |d: &Path, mode| Postgres::launch(PostgresOptions { mode, ..PostgresOptions::new(d.join("pg"), "pw") });
    both_modes("initdb", "postgres", launch, Postgres::pid);
}

#[test]
fn mariadb_in_both_modes() {
    let launch = |d: &Path, mode| Mariadb::launch(MariadbOptions { mode, ..MariadbOptions::new(d.join("db"), "pw") });
    both_modes("mariadbd", "mariadbd", launch, Mariadb::pid);
}

#[test]
fn nats_in_both_modes() {
    let launch = |d: &Path, mode| Nats::launch(NatsOptions { mode, ..NatsOptions::new(d, "pw") });
    both_modes("nats-server", "nats-server", launch, Nats::pid);
}

#[test]
fn kine_in_both_modes() {
    if !need("nats-server") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let nats = Nats::start(tmp.path());
    let endpoint = nats.kine_endpoint("t1");
    let launch = |d: &Path, mode| Kine::launch(KineOptions { mode, ..KineOptions::new(&endpoint, d.join("kine.log")) });
    both_modes("kine", "kine", launch, Kine::pid);
}

#[test]
fn a_missing_kine_says_what_to_run() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-kine");
    let o = KineOptions {
        program: Some(missing.clone()),
        ..KineOptions::new("nats://127.0.0.1:1", tmp.path().join("k.log"))
    };
    let e = Kine::launch(o).unwrap_err();
    assert!(matches!(&e, LaunchError::Spawn { .. }), "{e:?}");
    assert_eq!(e.to_string(), format!("cannot run {}", missing.display()));
    let e = LaunchError::NotInstalled { server: "kine", programs: "kine" };
    assert!(e.to_string().contains("scripts/install-deps.sh"), "{e}");
}

#[test]
fn an_etcd_that_cannot_start_says_so_and_names_its_log() {
    if !need("etcd") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A data dir that is a file: etcd exits at once.
    let data = tmp.path().join("m.etcd");
    std::fs::write(&data, "not a directory").unwrap();
    let pid_file = tmp.path().join("m.pid");
    let e = Etcd::launch(EtcdOptions {
        mode: Mode::Detached { pid_file: pid_file.clone() },
        ..EtcdOptions::new("m", &data)
    })
    .unwrap_err();
    let log = tmp.path().join("m.log");
    assert!(matches!(&e, LaunchError::Exited { log: l, .. } if *l == log), "{e:?}");
    assert_eq!(e.to_string(), format!("etcd exited before it answered: see {}", log.display()));
    assert_eq!(running_pid(&pid_file, "etcd"), None, "nothing is left running");
}

#[test]
fn an_etcd_whose_port_is_taken_says_so() {
    if !need("etcd") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let e =
        Etcd::launch(EtcdOptions { port: Some(port), ..EtcdOptions::new("m", tmp.path().join("m.etcd")) }).unwrap_err();
    assert!(matches!(&e, LaunchError::PortTaken { server: "etcd", .. }), "{e:?}");
    assert!(e.to_string().contains("a port it was given is taken"), "{e}");
    assert_eq!(kmdr_core::Classify::class(&e), kmdr_core::ErrorClass::Refused);
}
