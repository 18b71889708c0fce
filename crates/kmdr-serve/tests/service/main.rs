//! kmdr serve's deployment manifests and retention.
//! One test binary (each links the whole crate graph once, not once per file).

mod deploy;
mod retention;
