//! The tenant datastore drivers against real servers: one conformance suite for every driver and driver pair, and each driver's own cases.
//! One test binary (each links the whole crate graph once, not once per file).

#[macro_use]
mod common;
mod etcd_hub;
mod tenant_conformance;
mod tenant_kine;
mod tenant_mysql_order;
mod tenant_nats;
mod tenant_sql;
