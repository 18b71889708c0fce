//! What kmdr backs up and how it comes back. Each source turns a live system
//! into files of a backup (through [`kmdr_repo::BackupSession`]) and puts them
//! back: the under-cluster's etcd ([`etcd`]) and each tenant's control-plane
//! data in its Kamaji datastore ([`tenant`]), the platform's Helm release
//! ([`platform`]), Kamaji tenants end to end, data and manifests ([`kamaji`]),
//! and the changes between full backups ([`delta`]).

pub mod delta;
pub mod etcd;
pub mod health;
pub mod inventory;
pub mod kamaji;
pub mod kube;
pub mod platform;
pub mod tenant;
pub mod volumes;
