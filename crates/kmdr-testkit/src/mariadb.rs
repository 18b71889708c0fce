//! mariadb: filled in by the driver work.
pub struct Mariadb;
