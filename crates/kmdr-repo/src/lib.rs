//! The backup repository: encrypted, deduplicated, crash-safe storage of
//! backups on any [`kmdr_store::Store`]. Everything needed to list, verify and
//! restore lives in the store itself; the format is specified in
//! `docs/design.md`.
//!
//! - [`crypto`]: keys, chunk ids and the sealed object format.
//! - [`chunker`]: content-defined chunking of a byte stream.
//! - [`repository`]: init/open, the catalog of backups.
//! - [`backuper`]: writes one backup (chunks first, manifest last).
//! - [`restorer`]: reads a file back, checking every byte.
//! - [`checker`]: verifies backups (`kmdr verify`).
//! - [`catalog`]: the tamper-evident catalog: manifests' links, forget records, their audit.
//! - [`pruner`]: `forget` and `prune` plans.
//! - [`deltas`]: delta segments, their chains and their content (the delta stream).
//! - [`point`]: point-in-time planning over full backups and delta chains.
//! - [`proofs`]: restore proofs, the records `kmdr verify --restore` leaves.
//! - [`keys`]: key objects: adding keys (full or write-only), the format-1 to 2 upgrade.
//! - [`lock`]: shared and exclusive repository locks.
//! - [`object_lock`]: repositories under S3 Object Lock (retention-aware
//!   forget/prune, extend-locks, verify's retention check).

pub mod backuper;
pub mod catalog;
pub mod checker;
pub mod chunker;
pub mod crypto;
pub mod deltas;
mod error;
pub mod keys;
pub mod lock;
pub mod object_lock;
mod plans;
pub mod point;
pub mod proofs;
pub mod pruner;
pub mod repository;
pub mod restorer;
pub mod series;

pub use backuper::{BackupRun, BackupSession, Progress};
pub use checker::{BackupCheck, VerifyReport};
pub use deltas::{ChainGap, SegmentName};
pub use error::Error;
pub use pruner::{ForgetPlan, PrunePlan, SegmentPlan};
pub use repository::{REPO_FORMAT, RepoConfig, Repository};

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
