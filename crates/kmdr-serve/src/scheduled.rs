//! One unit of `kmdr serve` and what its tasks share (the full-backup
//! schedule in scheduler.rs, the capture, the compactor).

use crate::pending::{Base, Pending};
use kmdr_plan::unit::Unit;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, watch};

/// One unit and what its tasks share.
pub(crate) struct Scheduled {
    pub(crate) name: String,
    pub(crate) interval: Duration,
    pub(crate) unit: Unit,
    /// The newest full backup (the base of the delta chain).
    pub(crate) base: watch::Sender<Option<Base>>,
    /// Serialises full backups of this unit (schedule vs. compaction).
    pub(crate) busy: Mutex<()>,
    /// What the capture wrote after the newest full backup (compactor.rs).
    pub(crate) pending: Arc<Pending>,
}
