//! The platform's release put back by helm from a backup, as a drill (and
//! `kmdr restore --plan --layer platform`) does it, and what a drill compares
//! before and after: the objects of the deployed release.
//!
//! The chart comes from where the plan says it is published (`helm.chart`),
//! or else from the release itself: Helm keeps the chart's metadata, default
//! values, templates and files in every release, so a chart without
//! sub-charts can be written back out and installed as it was. Sub-charts
//! Helm does not keep; an umbrella chart needs `helm.chart`.

use crate::client::KubeClient;
use crate::platform::{
    self, PlatformError, PlatformRestoreOptions, RELEASE_FILE, execute_restore, plan_platform_restore, to_yaml,
    write_restore_files,
};
use kmdr_core::Manifest;
use kmdr_repo::Repository;
use kmdr_repo::restorer::{FileCheck, restore_file};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How to put a release back.
#[derive(Debug, Clone, Default)]
pub struct ReinstallOptions {
    /// Where the chart is published (`oci://...`, `repo/name`, a directory);
    /// `None`: the chart kept in the release.
    pub chart: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// A scratch directory for the chart, the values and the Secrets (the
    /// caller removes it: it holds the overlay, which may hold credentials).
    pub work: PathBuf,
    /// Plan only: write nothing, run nothing.
    pub dry_run: bool,
}

/// What a reinstall did (or would do).
#[derive(Debug, Clone)]
pub struct Reinstalled {
    /// The objects in the backed-up release's manifest.
    pub objects: usize,
    /// The commands, as shell lines.
    pub commands: Vec<String>,
}

/// Put the release of the platform backup `m` back with helm: the Secrets
/// first, then `helm install --wait` with the backup's values overlay. helm
/// refuses a release name still in use, so an installed release is never
/// replaced.
pub async fn reinstall(repo: &Repository, m: &Manifest, o: &ReinstallOptions) -> Result<Reinstalled, PlatformError> {
    platform::helm_info(m)?;
    let release = release_json(repo, m).await?;
    let chart = match &o.chart {
        Some(c) => c.clone(),
        None => {
            let subs = sub_charts(&release);
            if !subs.is_empty() {
                return Err(PlatformError::SubChartsNotKept { chart: m.id.to_string(), sub_charts: subs });
            }
            let dir = o.work.join("chart");
            if !o.dry_run {
                write_kept_chart(&release, &dir)?.map_err(|detail| PlatformError::Local {
                    path: dir.display().to_string(),
                    detail: format!("the chart kept in the release cannot be written out: {detail}"),
                })?;
            }
            dir.display().to_string()
        }
    };
    let opts = PlatformRestoreOptions {
        to: o.work.join("files"),
        chart: Some(chart),
        kubeconfig: o.kubeconfig.clone(),
        context: o.context.clone(),
    };
    let plan = plan_platform_restore(m, &opts)?;
    let done = Reinstalled {
        objects: objects(release["manifest"].as_str().unwrap_or("")).len(),
        commands: plan.command_lines(),
    };
    if !o.dry_run {
        write_restore_files(repo, m, &plan).await?;
        execute_restore(&plan, &|_| {}).await?;
    }
    Ok(done)
}

/// The whole release as the backup holds it.
async fn release_json(repo: &Repository, m: &Manifest) -> Result<Value, PlatformError> {
    let entry = m
        .file(RELEASE_FILE)
        .ok_or_else(|| PlatformError::WrongKind { id: m.id.to_string(), kind: m.id.kind().to_string() })?;
    let mut buf = Vec::with_capacity(entry.size as usize);
    restore_file(repo, entry, &mut buf, FileCheck::Sha256, None).await?;
    serde_json::from_slice(&buf).map_err(|e| PlatformError::BadRelease {
        secret: format!("{} in backup {}", RELEASE_FILE, m.id),
        detail: e.to_string(),
    })
}

/// The sub-charts (`dependencies`) the release's chart names: Helm does not
/// keep them in the release.
pub fn sub_charts(release: &Value) -> Vec<String> {
    release["chart"]["metadata"]["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["name"].as_str().map(String::from))
        .collect()
}

/// Write the chart Helm kept in `release` into `dir` (created): Chart.yaml
/// (its metadata, without the `dependencies` Helm did not keep), values.yaml
/// (its defaults), its templates and files. `Ok(Err(why))` when the
/// release's chart names a file outside itself or a file is not base64.
pub fn write_kept_chart(release: &Value, dir: &Path) -> Result<Result<(), String>, PlatformError> {
    let local = |e: std::io::Error| PlatformError::Local { path: dir.display().to_string(), detail: e.to_string() };
    let chart = &release["chart"];
    let mut meta = chart["metadata"].clone();
    if let Some(o) = meta.as_object_mut() {
        o.remove("dependencies");
    }
    std::fs::create_dir_all(dir.join("templates")).map_err(local)?;
    std::fs::write(dir.join("Chart.yaml"), to_yaml(&meta)).map_err(local)?;
    std::fs::write(dir.join("values.yaml"), to_yaml(&chart["values"])).map_err(local)?;
    for list in ["templates", "files"] {
        for f in chart[list].as_array().into_iter().flatten() {
            let (Some(name), Some(data)) = (f["name"].as_str(), f["data"].as_str()) else { continue };
            // Names come from the backup: keep them inside the chart directory.
            if name.split('/').any(|p| p == ".." || p.is_empty()) {
                return Ok(Err(format!("the chart names a file {name:?} outside itself")));
            }
            let bytes = match base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data) {
                Ok(b) => b,
                Err(e) => return Ok(Err(format!("chart file {name} is not base64: {e}"))),
            };
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(local)?;
            }
            std::fs::write(path, bytes).map_err(local)?;
        }
    }
    Ok(Ok(()))
}

/// Every object of a multi-document manifest, keyed `Kind namespace/name`,
/// as compact JSON (key order as written).
pub fn objects(text: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let Ok(v) = <Value as serde::Deserialize>::deserialize(doc) else { break };
        if let Some(kind) = v["kind"].as_str() {
            let ns = v["metadata"]["namespace"].as_str().unwrap_or("");
            let key = format!("{kind} {ns}/{}", v["metadata"]["name"].as_str().unwrap_or(""));
            out.insert(key, serde_json::to_vec(&v).expect("a JSON value serializes"));
        }
    }
    out
}

/// The revision and status of the release when it is installed (any status),
/// `None` when it is not.
pub async fn installed(
    kube: &KubeClient,
    release: &str,
    namespace: &str,
) -> Result<Option<(i64, String)>, PlatformError> {
    match platform::read_release(kube, release, namespace).await {
        Ok((_, r)) => Ok(Some((r["version"].as_i64().unwrap_or(0), r["info"]["status"].as_str().unwrap_or("").into()))),
        Err(PlatformError::ReleaseNotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The objects of the release deployed now ([`objects`] of its manifest).
pub async fn deployed_objects(
    kube: &KubeClient,
    release: &str,
    namespace: &str,
) -> Result<BTreeMap<String, Vec<u8>>, PlatformError> {
    let (_, r) = platform::read_release(kube, release, namespace).await?;
    Ok(objects(r["manifest"].as_str().unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_kept_chart_leaves_out_sub_charts_and_files_outside_itself() {
        let dir = tempfile::tempdir().unwrap();
        let release = json!({"chart": {"metadata": {"name": "kmetal", "dependencies": [{"name": "kamaji"}]},
                                       "templates": [{"name": "templates/a.yaml", "data": "a2luZDogQQ=="}]}});
        assert_eq!(sub_charts(&release), ["kamaji"]);
        write_kept_chart(&release, dir.path()).unwrap().unwrap();
        let meta = std::fs::read_to_string(dir.path().join("Chart.yaml")).unwrap();
        assert!(meta.contains("kmetal") && !meta.contains("kamaji"), "{meta}");
        assert_eq!(std::fs::read_to_string(dir.path().join("templates/a.yaml")).unwrap(), "kind: A");
        let escaping = json!({"chart": {"metadata": {"name": "x"}, "templates": [{"name": "../x", "data": ""}]}});
        assert!(write_kept_chart(&escaping, dir.path()).unwrap().unwrap_err().contains("outside"));
    }

    #[test]
    fn objects_are_keyed_by_kind_namespace_and_name() {
        let o = objects(
            "---\nkind: ConfigMap\nmetadata: {name: a, namespace: n}\n---\nkind: Namespace\nmetadata: {name: n}\n",
        );
        assert_eq!(o.keys().collect::<Vec<_>>(), ["ConfigMap n/a", "Namespace /n"]);
    }
}
