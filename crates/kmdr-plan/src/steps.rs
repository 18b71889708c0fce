//! Running what the plan's `run:` steps say, and connecting to what its
//! layers name.

use crate::plan::{DatastoreSpec, EtcdSource, RunStep};
use kmdr_datastore::{self as tenant, AnyTenants, DatastoreUrl, TenantError};
use kmdr_etcd::EtcdConnection;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A step that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("step {name:?} could not start {program:?}: {source}; check the command in the plan")]
    Spawn {
        name: String,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("step {name:?} did not finish within its timeout of {}s; raise `timeout:` or fix what it waits for", timeout.as_secs())]
    Timeout { name: String, timeout: Duration },
    #[error("step {name:?} failed ({status}): {stderr}")]
    Failed { name: String, status: String, stderr: String },
}

impl kmdr_core::Classify for StepError {
    fn class(&self) -> kmdr_core::ErrorClass {
        match self {
            // The plan's command cannot be run as written.
            StepError::Spawn { .. } => kmdr_core::ErrorClass::Usage,
            StepError::Timeout { .. } => kmdr_core::ErrorClass::Timeout,
            StepError::Failed { .. } => kmdr_core::ErrorClass::Other,
        }
    }
}

/// How to reach the under-cluster etcd.
pub fn etcd_connection(e: &EtcdSource) -> EtcdConnection {
    EtcdConnection::new(e.endpoints.clone(), e.tls.clone())
}

/// Connect to a datastore of the plan, with its password file.
pub async fn connect_datastore(d: &DatastoreSpec) -> Result<AnyTenants, TenantError> {
    let password = d.password_file.as_deref().map(tenant::read_password_file).transpose()?;
    let url = DatastoreUrl::parse(&d.url)?.with_credentials(None, password);
    tenant::connect(&url, d.tls.clone()).await
}

/// Run a step once, within its timeout; the child is killed if it overruns.
pub async fn run_once(step: &RunStep) -> Result<(), StepError> {
    let (program, args) = step.command.split_first().expect("the parser requires a command");
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| StepError::Spawn { name: step.name.clone(), program: program.clone(), source })?;
    match tokio::time::timeout(step.timeout, child.wait_with_output()).await {
        Err(_) => Err(StepError::Timeout { name: step.name.clone(), timeout: step.timeout }),
        Ok(Err(source)) => Err(StepError::Spawn { name: step.name.clone(), program: program.clone(), source }),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).rev().take(3).collect();
            Err(StepError::Failed {
                name: step.name.clone(),
                status: out.status.to_string(),
                stderr: last.into_iter().rev().collect::<Vec<_>>().join(" / "),
            })
        }
    }
}

/// A health check: run the step until it succeeds, once a second, until its
/// timeout; the last failure explains a timeout.
pub async fn run_until_healthy(step: &RunStep) -> Result<(), StepError> {
    let deadline = Instant::now() + step.timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = RunStep { timeout: left.max(Duration::from_millis(100)), ..step.clone() };
        match run_once(&attempt).await {
            Ok(()) => return Ok(()),
            Err(e @ StepError::Spawn { .. }) => return Err(e),
            Err(e) if Instant::now() + Duration::from_secs(1) >= deadline => {
                return Err(match e {
                    StepError::Failed { stderr, status, .. } => StepError::Failed {
                        name: step.name.clone(),
                        status: format!("still failing after {}s, last: {status}", step.timeout.as_secs()),
                        stderr,
                    },
                    other => other,
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}
