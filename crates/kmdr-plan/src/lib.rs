//! The runbook as code. [`plan`] holds a checked plan, [`parse`] reads
//! `kmdr.yaml` and reports every problem with its line and column, [`drill`]
//! runs the runbook's DR test and [`report`] says what it measured.

pub mod drill;
pub mod html;
pub mod exec;
pub mod parse;
pub mod plan;
pub mod report;
pub mod review;
pub mod steps;

pub use parse::{parse_plan, Problem};
pub use plan::*;
