//! The plan file and its reports.
//! One test binary (each links the whole crate graph once, not once per file).

mod html;
mod parse;
