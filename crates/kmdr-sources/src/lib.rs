//! What kmdr backs up and how it comes back. Each source turns a live system
//! into files of a backup (through [`kmdr_repo::BackupSession`]) and puts them
//! back: the under-cluster's etcd ([`etcd`]) and each tenant's control-plane
//! data in its Kamaji datastore ([`tenant`]); and their changes between full
//! backups ([`delta`]).

pub mod delta;
pub mod etcd;
pub mod inventory;
pub mod kube;
pub mod platform;
pub mod tenant;
