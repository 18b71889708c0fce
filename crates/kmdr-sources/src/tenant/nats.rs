//! nats driver: in progress.
