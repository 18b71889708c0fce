//! What kmdr backs up and how it comes back. Each source turns a live system
//! into files of a backup (through [`kmdr_repo::BackupSession`]) and puts them
//! back. The under-cluster's etcd is the first: [`etcd`].

pub mod etcd;
