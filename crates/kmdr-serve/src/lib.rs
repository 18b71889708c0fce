//! `kmdr serve`: the long-running service of continuous protection.
//!
//! Kept apart from the request/response code of the other commands (as
//! kube-rs keeps `kube-runtime` apart from `kube-client`):
//!
//! - [`scheduler`]: one task per unit (the under-cluster's etcd, each tenant,
//!   the platform release) taking full backups to meet the layer's RPO, with
//!   retries and backoff; one delta capture per etcd-backed unit; retention.
//!   No state outside the repository: on start every task reads where it is
//!   from the repository's listings (catalog.rs: each unit's newest full
//!   backup, found as a restore finds it).
//! - [`metrics`]: what the tasks report, rendered in Prometheus' text format.
//! - [`http`]: `/` (the status page, [`status_page`]), `/metrics`,
//!   `/healthz`, `/readyz`; the page's last drill is read from the
//!   repository by [`drills`].
//! - restore proofs on the plan's `verify:` schedule (verifier.rs), run on a
//!   worker thread at a lower priority (niced.rs).
//! - [`lock_keeper`]: on a repository under S3 Object Lock, the scheduled
//!   extend-locks pass that keeps what is still needed retained.
//! - [`compactor`]: when the changes after a unit's newest full backup pass
//!   a threshold, a new full backup synthesised from it and its delta
//!   segments (compaction), so that restores to now stay bounded.
//! - [`lease`]: one Kubernetes Lease taken and renewed; [`coordinator`]:
//!   replicas dividing the plan's units over one Lease per shard
//!   ([`shards`] says which units a shard holds), or, with one shard, a
//!   leader and standbys ([`serve_sharded`]).

mod catalog;
pub mod compactor;
pub mod coordinator;
pub mod drills;
pub mod http;
pub mod lease;
pub mod lock_keeper;
pub mod metrics;
mod niced;
mod pending;
mod scheduled;
pub mod scheduler;
pub mod shards;
pub mod status_page;
mod stop;
mod verifier;

pub use compactor::{CompactOptions, MIN_SHARE_EVENTS};
pub use metrics::Metrics;
pub use scheduler::{ServeError, ServeOptions, serve};

pub use coordinator::{ShardLeases, serve_sharded};
