//! kmdr's command line end to end, against real servers.
//! One test binary (each links the whole crate graph once, not once per file).

#[macro_use]
mod common;
mod bad_input;
mod compact;
mod completions;
mod dashboard;
mod drill;
mod etcd;
mod etcd_bump_real;
mod helm_chart_real;
mod helm_install_real;
mod inspect;
mod inspect_real;
mod lab;
mod node_files;
mod node_files_real;
mod object_lock;
mod platform_real;
mod s3;
mod serve;
mod serve_kine;
mod serve_lease_real;
mod serve_shards_real;
mod serve_tenants;
mod status_page;
mod tamper;
mod tenant;
mod tenants;
mod tenants_real;
mod verify_objects;
mod verify_restore;
mod volumes;
mod volumes_real;
mod watch_real;
mod write_only;
