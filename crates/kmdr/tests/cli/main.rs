//! kmdr's command line end to end, against real servers.
//! One test binary (each links the whole crate graph once, not once per file).

#[macro_use]
mod common;
mod bad_input;
mod drill;
mod etcd;
mod inspect;
mod lab;
mod platform;
mod platform_real;
mod s3;
mod serve;
mod serve_kine;
mod tenant;
mod tenants;
mod tenants_real;
mod verify_objects;
mod verify_restore;
mod volumes;
