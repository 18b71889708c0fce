//! The runbook's recovery monitoring as data: one snapshot of what a person
//! watches after a restore (`kubectl get pods -A`, `kubectl get tcp -A`,
//! `kubectl get datastores`, `kubectl get clusters -A`, `helm status`), and
//! whether it is healthy. `kmdr watch` prints it; `kmdr restore platform
//! --execute` waits on its pods.
//!
//! Healthy means: every pod Running (with no container waiting, e.g. in
//! CrashLoopBackOff) or Succeeded; every TenantControlPlane's
//! `status.kubernetesResources.version.status` Ready; every Cluster API
//! Cluster `Provisioned` (when it reports a phase); every Helm release's
//! newest revision `deployed`. A kind whose CRD is not installed is empty.

use crate::client::{KubeClient, KubeError, POD, ResourceKind, SECRET, meta_name};
use crate::kamaji::{CAPI_CLUSTER, DATA_STORE, READY, TENANT_CONTROL_PLANE, tcp_status};
use kmdr_core::{Classify, ErrorClass};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A pod that is not Running or Completed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PodProblem {
    pub name: String,
    /// The phase, or the waiting reason of a container (CrashLoopBackOff, ...).
    pub state: String,
}

/// One object with its status word.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ObjectStatus {
    /// `ns/name` or `name`.
    pub name: String,
    pub status: String,
    pub healthy: bool,
}

/// What the cluster looks like now.
#[derive(Debug, Clone, Serialize)]
pub struct HealthSnapshot {
    pub time: String,
    pub healthy: bool,
    /// Pods counted, and the ones not Running/Completed by namespace.
    pub pods: usize,
    pub pods_not_ready: BTreeMap<String, Vec<PodProblem>>,
    pub tenant_control_planes: Vec<ObjectStatus>,
    pub datastores: Vec<ObjectStatus>,
    pub clusters: Vec<ObjectStatus>,
    pub helm_releases: Vec<ObjectStatus>,
}

impl HealthSnapshot {
    /// What keeps it from being healthy, one short item each.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .pods_not_ready
            .iter()
            .flat_map(|(ns, ps)| ps.iter().map(move |p| format!("pod {ns}/{} {}", p.name, p.state)))
            .collect();
        for (what, list) in
            [("tcp", &self.tenant_control_planes), ("cluster", &self.clusters), ("helm release", &self.helm_releases)]
        {
            out.extend(list.iter().filter(|o| !o.healthy).map(|o| format!("{what} {} {}", o.name, o.status)));
        }
        out
    }

    /// Plain lines, for a terminal screen or a log.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "{}  {}",
            self.time,
            if self.healthy {
                "HEALTHY".to_string()
            } else {
                format!("NOT HEALTHY ({} problems)", self.problems().len())
            }
        )];
        let bad: usize = self.pods_not_ready.values().map(Vec::len).sum();
        out.push(format!("pods: {} of {} Running/Completed", self.pods - bad, self.pods));
        for (ns, ps) in &self.pods_not_ready {
            out.push(format!(
                "  {ns}: {}",
                ps.iter().map(|p| format!("{} {}", p.name, p.state)).collect::<Vec<_>>().join(", ")
            ));
        }
        for (title, list) in [
            ("tenant control planes", &self.tenant_control_planes),
            ("datastores", &self.datastores),
            ("clusters", &self.clusters),
            ("helm releases", &self.helm_releases),
        ] {
            out.push(format!(
                "{title}: {}",
                if list.is_empty() {
                    "none".to_string()
                } else {
                    format!("{} of {} ok", list.iter().filter(|o| o.healthy).count(), list.len())
                }
            ));
            for o in list {
                out.push(format!("  {:<40} {}{}", o.name, o.status, if o.healthy { "" } else { "  <--" }));
            }
        }
        out
    }
}

fn name_of(o: &Value) -> String {
    let (ns, n) = meta_name(o);
    if ns.is_empty() { n } else { format!("{ns}/{n}") }
}

/// A pod's trouble, or `None` when it is Running with no container waiting,
/// or Succeeded.
pub fn pod_problem(pod: &Value) -> Option<String> {
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    if phase == "Succeeded" {
        return None;
    }
    let waiting = ["initContainerStatuses", "containerStatuses"]
        .iter()
        .filter_map(|k| pod["status"][*k].as_array())
        .flatten()
        .find_map(|c| c["state"]["waiting"]["reason"].as_str().map(str::to_string));
    match (phase, waiting) {
        ("Running", None) => None,
        (_, Some(reason)) => Some(reason),
        (p, None) => Some(p.to_string()),
    }
}

/// Objects of a kind, empty when its CRD is not installed.
async fn list_or_none(kube: &KubeClient, kind: &ResourceKind, labels: &str) -> Result<Vec<Value>, KubeError> {
    match kube.list_objects(kind, None, labels).await {
        Ok(v) => Ok(v),
        Err(KubeError::NotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The pods that are not Running/Completed, by namespace, and how many pods there are.
pub async fn pods(kube: &KubeClient) -> Result<(usize, BTreeMap<String, Vec<PodProblem>>), KubeError> {
    let all = kube.list_objects(&POD, None, "").await?;
    let mut bad: BTreeMap<String, Vec<PodProblem>> = BTreeMap::new();
    for p in &all {
        if let Some(state) = pod_problem(p) {
            let (ns, name) = meta_name(p);
            bad.entry(ns).or_default().push(PodProblem { name, state });
        }
    }
    Ok((all.len(), bad))
}

/// One snapshot of everything `kmdr watch` shows.
pub async fn snapshot(kube: &KubeClient) -> Result<HealthSnapshot, KubeError> {
    let (pods, pods_not_ready) = pods(kube).await?;
    let tenant_control_planes = list_or_none(kube, &TENANT_CONTROL_PLANE, "")
        .await?
        .iter()
        .map(|t| {
            let status = tcp_status(t);
            ObjectStatus { name: name_of(t), healthy: status == READY, status }
        })
        .collect();
    let datastores = list_or_none(kube, &DATA_STORE, "")
        .await?
        .iter()
        .map(|d| {
            let used = d["status"]["usedBy"].as_array().map(Vec::len).unwrap_or(0);
            ObjectStatus {
                name: name_of(d),
                status: format!("{} used by {used}", d["spec"]["driver"].as_str().unwrap_or("?")),
                healthy: true,
            }
        })
        .collect();
    let clusters = list_or_none(kube, &CAPI_CLUSTER, "")
        .await?
        .iter()
        .map(|c| {
            let phase = c["status"]["phase"].as_str().unwrap_or("-").to_string();
            ObjectStatus { name: name_of(c), healthy: phase == "Provisioned" || phase == "-", status: phase }
        })
        .collect();
    // The newest revision of each Helm release (labels name, version, status).
    let mut newest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for s in kube.list_objects(&SECRET, None, "owner=helm").await? {
        let labels = &s["metadata"]["labels"];
        let (Some(name), Some(version)) =
            (labels["name"].as_str(), labels["version"].as_str().and_then(|v| v.parse::<i64>().ok()))
        else {
            continue;
        };
        let key = format!("{}/{name}", meta_name(&s).0);
        let status = labels["status"].as_str().unwrap_or("unknown").to_string();
        if newest.get(&key).is_none_or(|(v, _)| version > *v) {
            newest.insert(key, (version, status));
        }
    }
    let helm_releases: Vec<ObjectStatus> = newest
        .into_iter()
        .map(|(name, (rev, status))| ObjectStatus {
            name,
            healthy: status == "deployed",
            status: format!("revision {rev} {status}"),
        })
        .collect();
    let mut s = HealthSnapshot {
        time: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        healthy: false,
        pods,
        pods_not_ready,
        tenant_control_planes,
        datastores,
        clusters,
        helm_releases,
    };
    s.healthy = s.problems().is_empty();
    Ok(s)
}

/// Pods still not Running/Completed when a wait ran out.
#[derive(Debug, thiserror::Error)]
#[error(
    "{count} pods are not Running or Completed after {timeout}: {list}. Check them with `kubectl get pods -A` and `kubectl describe pod`, then `kmdr watch --until-healthy`"
)]
pub struct PodsNotReady {
    pub count: usize,
    pub timeout: String,
    pub list: String,
}

/// Wait until no pod is outside Running/Completed; `notify` hears the count
/// whenever it changes.
pub async fn wait_pods(
    kube: &KubeClient,
    timeout: Duration,
    interval: Duration,
    notify: &(dyn Fn(&str) + Sync),
) -> Result<(), WaitError> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        let (total, bad) = pods(kube).await?;
        let n: usize = bad.values().map(Vec::len).sum();
        if last != Some(n) {
            notify(&format!("pods: {} of {total} Running/Completed", total - n));
            last = Some(n);
        }
        if n == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let list: Vec<String> = bad
                .iter()
                .flat_map(|(ns, ps)| ps.iter().map(move |p| format!("{ns}/{} {}", p.name, p.state)))
                .take(10)
                .collect();
            return Err(WaitError::Pods(PodsNotReady {
                count: n,
                timeout: kmdr_core::human_duration(timeout),
                list: list.join(", "),
            }));
        }
        tokio::time::sleep(
            interval.min(deadline.saturating_duration_since(Instant::now())).max(Duration::from_millis(10)),
        )
        .await;
    }
}

/// Why a wait for pods ended without them ready.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(transparent)]
    Pods(#[from] PodsNotReady),
}

impl Classify for WaitError {
    fn class(&self) -> ErrorClass {
        match self {
            WaitError::Kube(k) => k.class(),
            WaitError::Pods(_) => ErrorClass::Timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_states() {
        assert_eq!(pod_problem(&json!({"status": {"phase": "Running"}})), None);
        assert_eq!(pod_problem(&json!({"status": {"phase": "Succeeded"}})), None);
        assert_eq!(pod_problem(&json!({"status": {"phase": "Pending"}})).as_deref(), Some("Pending"));
        let crash = json!({"status": {"phase": "Running", "containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(pod_problem(&crash).as_deref(), Some("CrashLoopBackOff"));
    }
}
