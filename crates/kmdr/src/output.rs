//! Output: text for people, JSON for programs (`-o json`), progress bars only
//! for people watching a terminal.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;

/// `-o text|json|yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
    /// YAML where a command prints objects (`inspect`); text elsewhere.
    Yaml,
}

/// Print a value as pretty JSON on stdout.
pub fn json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializable"));
}

/// A byte progress bar on stderr, or `None` when it would only be noise
/// (JSON output, `--quiet`, or stderr not a terminal).
pub fn bar(format: Format, quiet: bool, total: Option<u64>, msg: &str) -> Option<ProgressBar> {
    if format == Format::Json || quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = match total {
        Some(t) if t > 0 => ProgressBar::new(t),
        _ => ProgressBar::new_spinner(),
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    Some(pb)
}

/// The repository's progress callback feeding a bar.
/// A spinner counting things (not bytes), under the same conditions as [`bar`].
pub fn counter(format: Format, quiet: bool, msg: &str) -> Option<ProgressBar> {
    if format == Format::Json || quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(ProgressStyle::with_template("{msg} [{elapsed_precise}] {pos} {per_sec}").expect("template"));
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    Some(pb)
}

pub fn progress(pb: &Option<ProgressBar>) -> Option<kmdr_repo::Progress> {
    pb.clone().map(|pb| Arc::new(move |n: u64| pb.inc(n)) as kmdr_repo::Progress)
}
