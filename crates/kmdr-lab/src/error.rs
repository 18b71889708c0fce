//! What can go wrong bringing the lab up or down.

use crate::{PLAN_FILE, STATE_FILE};
use kmdr_core::{Classify, ErrorClass};
use kmdr_testkit::LaunchError;
use std::path::PathBuf;

/// A lab could not be brought up, read or taken down.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The directory holds a plan `kmdr lab up` did not write: the lab never
    /// overwrites it (e.g. a project's own `kmdr.yaml`).
    #[error("{} holds a {PLAN_FILE} that `kmdr lab up` did not write", dir.display())]
    ForeignPlan { dir: PathBuf },
    /// `down` was pointed at a directory that is no lab: it is not removed.
    #[error(
        "{} is not a kmdr lab (no {STATE_FILE}, no {PLAN_FILE} written by `kmdr lab up`): not removing it",
        dir.display()
    )]
    NotALab { dir: PathBuf },
    /// etcd's etcd or etcdctl is not installed: the lab cannot run without them.
    #[error("{program} is not on PATH: the lab needs etcd's etcd and etcdctl (scripts/install-deps.sh installs them)")]
    MissingTool { program: &'static str },
    /// A file or directory of the lab could not be made, read or removed.
    #[error("cannot {what} {}", path.display())]
    Io {
        /// e.g. `create the lab directory`.
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The state file is not a lab's state.
    #[error("{} is damaged: remove it and stop its servers by hand", path.display())]
    DamagedState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The under cluster's start line ran, but the member did not answer.
    #[error("the under-cluster etcd did not answer within 10s; see {}", log.display())]
    UnderClusterDown { log: PathBuf },
    /// A server the lab needs did not start.
    #[error("cannot start the lab's {server}")]
    Launch {
        server: &'static str,
        #[source]
        source: LaunchError,
    },
    /// kmdr's own driver failed on one of the lab's datastores.
    #[error(transparent)]
    Datastore(Box<DatastoreFailure>),
    /// The lab's repository could not be created.
    #[error("cannot create the lab's repository in {}", path.display())]
    Repository {
        path: PathBuf,
        #[source]
        source: kmdr_repo::Error,
    },
    /// The plan the lab wrote fails its own check: a bug in kmdr-lab.
    #[error("the lab's plan does not pass its own check: {0}")]
    PlanCheck(String),
    /// The plan could not be written as YAML (a path that is not UTF-8).
    #[error("cannot write the lab's plan as YAML (is the lab directory's path UTF-8?)")]
    PlanYaml(#[source] serde_norway::Error),
}

/// What the lab was doing with one of its datastores when kmdr's driver
/// failed (boxed in [`LabError::Datastore`]; the driver's error stays the
/// next cause, so its class is found).
#[derive(Debug, thiserror::Error)]
pub enum DatastoreFailure {
    /// A server started but the driver could not reach it.
    #[error("{server} did not start; see {}", log.display())]
    Unreachable {
        server: &'static str,
        log: PathBuf,
        #[source]
        source: kmdr_datastore::TenantError,
    },
    /// Writing a tenant's seed data failed.
    #[error("cannot seed tenant {schema}")]
    Seed {
        schema: String,
        #[source]
        source: kmdr_datastore::TenantError,
    },
}

impl From<DatastoreFailure> for LabError {
    fn from(f: DatastoreFailure) -> Self {
        LabError::Datastore(Box::new(f))
    }
}

impl Classify for LabError {
    fn class(&self) -> ErrorClass {
        match self {
            LabError::ForeignPlan { .. } | LabError::NotALab { .. } | LabError::PlanYaml(_) => ErrorClass::Usage,
            LabError::MissingTool { .. } | LabError::Io { .. } => ErrorClass::Refused,
            LabError::UnderClusterDown { .. } => ErrorClass::Source,
            LabError::Launch { source, .. } => source.class(),
            LabError::Datastore(f) => match &**f {
                DatastoreFailure::Unreachable { source, .. } | DatastoreFailure::Seed { source, .. } => source.class(),
            },
            LabError::Repository { source, .. } => source.class(),
            LabError::DamagedState { .. } | LabError::PlanCheck(_) => ErrorClass::Other,
        }
    }
}

impl LabError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LabError {
        let path = path.into();
        move |source| LabError::Io { what, path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn a_datastore_failure_keeps_the_drivers_error_as_the_next_cause() {
        let driver = kmdr_datastore::DatastoreUrl::parse("gopher://x").unwrap_err();
        let class = driver.class();
        let e = LabError::from(DatastoreFailure::Seed { schema: "acme".into(), source: driver });
        assert_eq!(e.to_string(), "cannot seed tenant acme");
        assert_eq!(e.class(), class);
        assert!(e.source().is_some_and(|s| s.is::<kmdr_datastore::TenantError>()), "{e:?}");
    }

    #[test]
    fn a_directory_that_is_not_the_labs_is_a_usage_error() {
        let e = LabError::ForeignPlan { dir: "/srv/project".into() };
        assert_eq!(e.class(), ErrorClass::Usage);
        assert_eq!(e.to_string(), "/srv/project holds a kmdr.yaml that `kmdr lab up` did not write");
    }
}
