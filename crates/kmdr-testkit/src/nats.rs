//! nats: filled in by the driver work.
pub struct Nats;
