//! postgres driver: in progress.
