//! The runbook as code. [`plan`] holds a checked plan, [`parse`] reads
//! `kmdr.yaml` and reports every problem with its line and column, [`drill`]
//! runs the runbook's DR test and [`report`] says what it measured.

pub mod drill;
pub mod exec;
mod findings;
pub mod html;
mod node_check;
pub mod parse;
pub mod plan;
pub mod prove;
pub mod recover;
pub mod report;
pub mod review;
mod sources;
pub mod steps;
pub mod synthesis;
pub mod unit;

pub use parse::{Problem, parse_plan};
pub use plan::*;
pub use unit::{RestoreOptions, Unit, UnitError};
