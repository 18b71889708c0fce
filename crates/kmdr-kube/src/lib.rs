//! The Kubernetes side of kmdr: a client that finds its cluster the way
//! kubectl does ([`client`]), Kamaji tenants end to end, data and manifests
//! ([`kamaji`]), the platform's Helm release ([`platform`]), persistent
//! volumes through the user's tool ([`volumes`]), recovery health
//! ([`health`]), what a test restore checks of the backups that hold
//! Kubernetes objects ([`proof`]), and the Kubernetes objects read out of an under-cluster
//! etcd snapshot offline, for when the API server is gone ([`inspect`]).
//!
//! Depends on `kmdr-datastore` (a tenant's data goes through its DataStore's
//! driver), `kmdr-etcd` (the snapshot's database) and `kmdr-repo`.

pub mod client;
pub mod health;
pub mod identity;
pub mod inspect;
pub mod kamaji;
pub mod node_files;
pub mod platform;
pub mod proof;
pub mod reinstall;
pub mod volumes;

pub use client::{KubeClient, KubeError, KubeTarget};
