//! postgres: filled in by the driver work.
pub struct Postgres;
