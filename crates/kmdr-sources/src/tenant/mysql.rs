//! mysql driver: in progress.
