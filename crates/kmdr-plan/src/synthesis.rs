//! Compaction of a unit's delta chain (`kmdr serve`, docs/design.md
//! section 18): a new full backup synthesised from the newest one and the
//! delta segments after it, without reading the source again. Each kind that
//! has a delta capture builds it its own way (a tenant's merged record
//! stream, the whole etcd's scratch-etcd snapshot); this is the one place
//! that tells them apart.

use crate::unit::{Unit, UnitError};
use kmdr_core::{ErrorClass, Manifest};
use kmdr_datastore as tenant;
use kmdr_repo::Repository;
use std::collections::BTreeMap;

/// The scratch space and tools of a compaction ([`Unit::synthesise`]).
#[derive(Debug, Clone, Default)]
pub struct SynthesisTools {
    pub etcd: Option<std::path::PathBuf>,
    pub etcdutl: Option<std::path::PathBuf>,
    /// Where the scratch etcd of the whole-etcd series lives (the system temp dir when `None`).
    pub scratch_dir: Option<std::path::PathBuf>,
}

impl Unit {
    /// Compaction: a new full backup of `series` at the newest point the
    /// repository holds, from its newest full backup and the delta segments
    /// after it, without reading the source; `None` when nothing follows the
    /// base. Only units with a delta capture ([`Unit::captures`]).
    pub async fn synthesise(
        &self,
        repo: &Repository,
        series: &str,
        tags: &BTreeMap<String, String>,
        tools: &SynthesisTools,
    ) -> Result<Option<(Manifest, kmdr_repo::point::PointPlan)>, UnitError> {
        Ok(match self {
            Unit::Etcd(..) => {
                let tool = kmdr_etcd::find_restore_tool(tools.etcdutl.as_deref())?;
                let server = kmdr_etcd::point::find_etcd_server(tools.etcd.as_deref(), &tool)?;
                let scratch = tools.scratch_dir.clone().unwrap_or_else(std::env::temp_dir);
                let s = kmdr_etcd::synthesis::synthesise_backup(repo, series, &tool, &server, &scratch, tags).await?;
                s.map(|s| (s.manifest, s.plan))
            }
            Unit::Tenant { schema, .. } => {
                tenant::point::synthesise_backup(repo, schema, tags).await?.map(|s| (s.manifest, s.plan))
            }
            _ => return Err(UnitError::new(ErrorClass::Usage, "only units with a delta capture are compacted")),
        })
    }
}
