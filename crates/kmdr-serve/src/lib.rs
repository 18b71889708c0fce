//! `kmdr serve`: the long-running service of continuous protection.
//!
//! Kept apart from the request/response code of the other commands (as
//! kube-rs keeps `kube-runtime` apart from `kube-client`):
//!
//! - [`scheduler`]: one task per unit (the under-cluster's etcd, each tenant,
//!   the platform release) taking full backups to meet the layer's RPO, with
//!   retries and backoff; one delta capture per etcd-backed unit; retention.
//!   No state outside the repository: on start every task reads where it is
//!   from the repository's listings.
//! - [`metrics`]: what the tasks report, rendered in Prometheus' text format.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`.

pub mod http;
pub mod metrics;
pub mod scheduler;

pub use metrics::Metrics;
pub use scheduler::{serve, ServeOptions};
