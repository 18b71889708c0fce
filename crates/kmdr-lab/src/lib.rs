//! The disposable local lab behind `kmdr lab up|status|down` and
//! `kmdr drill --lab`: a new user's first drill with nothing but server
//! binaries on PATH, and a real platform-shaped target for the drill tests.
//!
//! Everything lives in one directory (the CLI's default `.kmdr-lab`):
//!
//! * an under-cluster etcd, started (and later stopped and restarted by the
//!   drill) through the very shell lines the plan's `run:` steps hold, with its
//!   pid in `uc.pid`, holding Kubernetes- and Kamaji-shaped `/registry/` keys
//!   ([`under_cluster`]);
//! * a shared tenant etcd holding N tenants under `/<schema>/`;
//! * when PostgreSQL and/or MariaDB are installed, one kine tenant on each,
//!   seeded through kmdr's own drivers (`servers`, `seed`);
//! * when kube-apiserver and helm are built (scripts/build-go-tools.sh), a
//!   Kubernetes API server with the platform's Helm release and the tenants'
//!   Kamaji objects ([`kube`]);
//! * a repository (`repo/`) and its key (`kmdr.key`), kept across `up` and
//!   `down --keep`;
//! * the plan `kmdr.yaml` covering all four layers ([`plan`]), and `lab.json`:
//!   what was started ([`state`]), so `down` stops only those processes.
//!
//! The servers come from kmdr-testkit's launchers, started detached: they
//! outlive `kmdr lab up`, listen on 127.0.0.1 only, and are stopped later by
//! the pid in their pid file, only while `/proc` says that pid still runs the
//! program the lab started (no stray kill after a pid was reused). The data
//! comes from kmdr-testkit's generator, the same every time.

mod error;
pub mod kube;
pub mod plan;
mod repository;
mod seed;
mod servers;
pub mod state;
mod supervisor;
pub mod under_cluster;

pub use error::{DatastoreFailure, LabError};
pub use state::{LabProcess, LabState, read_state};
pub use supervisor::{Down, down, ensure_up, up};

/// What `up` records, in `DIR/lab.json`.
pub const STATE_FILE: &str = "lab.json";
/// The plan `up` writes.
pub const PLAN_FILE: &str = "kmdr.yaml";
/// The first line of the plan `up` writes: how `down` knows a kept lab's directory.
pub const PLAN_HEADER: &str = "# The kmdr lab's plan, written by `kmdr lab up`";
