//! kmdr serve's retention.
//! One test binary (each links the whole crate graph once, not once per file).

mod retention;
