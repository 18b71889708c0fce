//! What a test restore (`kmdr verify --restore`) checks of the backups that
//! hold Kubernetes objects rather than data: the platform's Helm release
//! (decoded, matched to its manifest, rendered with helm), the tenant
//! manifests of `kmdr backup tenants` (each parsed into its typed object and
//! matched to its tenant), and the objects a volume backup tool holds (still
//! there, still complete). Every check is a [`Check`]; a file the
//! repository cannot give back undamaged is a failed check too, so that a
//! damaged backup is *unrestorable*, not an error that stops the run.

use crate::client::{KubeClient, KubeError, ResourceKind};
use crate::kamaji::{
    CAPI_CLUSTER, CLUSTER_FILE, DATA_STORE, DATASTORE_FILE, KAMAJI_CONTROL_PLANE, KCP_FILE, SECRETS_DIR, TCP_FILE,
    TENANT_CONTROL_PLANE, tenant_dir,
};
use crate::platform::{self, PlatformError, RELEASE_FILE, VALUES_FILE, release_fields, values_from_yaml};
use crate::volumes::{VolumeError, csi, kasten, velero};
use k8s_openapi::api::core::v1::Secret;
use kmdr_core::{HelmReleaseInfo, KamajiTenantsInfo, Manifest, VolumeBackupInfo, VolumeItem};
use kmdr_repo::Repository;
use kmdr_repo::proofs::Check;
use kmdr_repo::restorer::{FileCheck, restore_file};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn check(what: &str, expected: impl ToString, found: impl ToString, ok: bool) -> Check {
    Check { what: what.into(), expected: expected.to_string(), found: found.to_string(), ok }
}

/// A file of the backup, every chunk authenticated and the whole matched to
/// its sha256. `Ok(Err(why))` when it is missing or damaged (the backup's
/// fault); `Err` when the repository cannot be read (this machine's).
async fn read(repo: &Repository, m: &Manifest, name: &str) -> Result<Result<Vec<u8>, String>, kmdr_repo::Error> {
    let Some(entry) = m.file(name) else { return Ok(Err(format!("{name} is missing from the backup"))) };
    let mut buf = Vec::with_capacity(entry.size as usize);
    match restore_file(repo, entry, &mut buf, FileCheck::Sha256, None).await {
        Ok(()) => Ok(Ok(buf)),
        Err(kmdr_repo::Error::Damaged { object, reason }) => Ok(Err(format!("{name} is damaged: {object}: {reason}"))),
        Err(e) => Err(e),
    }
}

/// A YAML (or JSON) file of the backup as a JSON value, or why not.
async fn read_value(repo: &Repository, m: &Manifest, name: &str) -> Result<Result<Value, String>, kmdr_repo::Error> {
    Ok(read(repo, m, name).await?.and_then(|bytes| {
        let text = String::from_utf8(bytes).map_err(|e| format!("{name} is not UTF-8: {e}"))?;
        values_from_yaml(&text).map_err(|e| format!("{name} does not parse: {e}"))
    }))
}

// ---- the platform's Helm release -------------------------------------------

/// The checks of a platform backup, and what it was "restored into" (the
/// renderer, or why nothing rendered it).
pub async fn platform_checks(
    repo: &Repository,
    m: &Manifest,
    helm: Option<&Path>,
    scratch: &Path,
) -> Result<(String, Vec<Check>), PlatformError> {
    let info = platform::helm_info(m)?;
    let mut checks = Vec::new();
    let release = match read_value(repo, m, RELEASE_FILE).await? {
        Ok(r) => r,
        Err(why) => return Ok(("nothing".into(), vec![check("release", describe(info), why, false)])),
    };
    match release_fields(&release) {
        Ok(f) => {
            let found =
                format!("{}/{} revision {}, chart {} {}", f.namespace, f.name, f.revision, f.chart, f.chart_version);
            checks.push(check("release", describe(info), &found, found == describe(info)));
        }
        Err(e) => checks.push(check("release", describe(info), e, false)),
    }
    // Read once: parsed for the check, written as is for helm.
    let values_bytes = read(repo, m, VALUES_FILE).await?;
    let keys: Result<Vec<String>, String> = values_bytes.clone().and_then(|bytes| {
        let text = String::from_utf8(bytes).map_err(|e| format!("{VALUES_FILE} is not UTF-8: {e}"))?;
        match values_from_yaml(&text).map_err(|e| format!("{VALUES_FILE} does not parse: {e}"))? {
            Value::Object(o) => Ok(o.keys().cloned().collect()),
            Value::Null => Ok(Vec::new()),
            other => Err(format!("{VALUES_FILE} is not a mapping but {other}")),
        }
    });
    match keys {
        Ok(k) => checks.push(check("values", info.values_keys.join(","), k.join(","), k == info.values_keys)),
        Err(why) => checks.push(check("values", info.values_keys.join(","), why, false)),
    }
    let mut parsed = 0;
    for s in &info.secrets {
        let name = format!("{}/{s}.yaml", platform::SECRETS_DIR);
        match typed_secret(repo, m, &name, s).await? {
            Ok(()) => parsed += 1,
            Err(why) => checks.push(check("secrets", s, why, false)),
        }
    }
    checks.push(check("secrets", info.secrets.len(), parsed, parsed == info.secrets.len()));
    let Some(helm) = helm else {
        return Ok(("the release decoded; not rendered: no helm on PATH (pass --helm PATH)".into(), checks));
    };
    let into = format!("helm template ({})", helm.display());
    let in_release = manifest_objects(release["manifest"].as_str().unwrap_or(""));
    let expected = format!("objects within the release's {}", in_release.len());
    let rendered = match values_bytes {
        Ok(values) => render(helm, &release, &scratch.join("chart"), &scratch.join("values.yaml"), &values).await?,
        Err(why) => Err(why),
    };
    match rendered {
        Ok(rendered) => {
            let missing: Vec<&String> = rendered.iter().filter(|o| !in_release.contains(*o)).collect();
            let found = match missing.first() {
                None => format!("{} objects rendered, all in the release", rendered.len()),
                Some(o) => {
                    format!("{} objects rendered, {} not in the release (first: {o})", rendered.len(), missing.len())
                }
            };
            checks.push(check("render", expected, found, missing.is_empty() && !rendered.is_empty()));
        }
        Err(why) => checks.push(check("render", "helm template succeeds", why, false)),
    }
    Ok((into, checks))
}

fn describe(h: &HelmReleaseInfo) -> String {
    format!("{}/{} revision {}, chart {} {}", h.namespace, h.release, h.revision, h.chart, h.chart_version)
}

/// The file `name` as a Secret named `ns/name`, or why not.
async fn typed_secret(
    repo: &Repository,
    m: &Manifest,
    name: &str,
    want: &str,
) -> Result<Result<(), String>, kmdr_repo::Error> {
    Ok(read_value(repo, m, name).await?.and_then(|v| typed::<Secret>(v, name)).and_then(|s| {
        let got = format!("{}/{}", s.metadata.namespace.unwrap_or_default(), s.metadata.name.unwrap_or_default());
        if got == want { Ok(()) } else { Err(format!("{name} holds Secret {got}, not {want}")) }
    }))
}

fn typed<T: serde::de::DeserializeOwned>(v: Value, name: &str) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| format!("{name} is not a {}: {e}", std::any::type_name::<T>()))
}

/// `Kind namespace/name` of every object of a multi-document manifest.
fn manifest_objects(text: &str) -> BTreeSet<String> {
    crate::reinstall::objects(text).into_keys().collect()
}

/// Write the release's own chart (Helm keeps its metadata, values, templates
/// and files in the release; sub-charts it does not, so the dependencies are
/// left out) and the backup's values overlay, and render them with `helm
/// template`. Returns the objects rendered (kind, namespace, name);
/// `Ok(Err(why))` when helm fails on it.
async fn render(
    helm: &Path,
    release: &Value,
    dir: &Path,
    values_path: &Path,
    values: &[u8],
) -> Result<Result<BTreeSet<String>, String>, PlatformError> {
    if let Err(why) = crate::reinstall::write_kept_chart(release, dir)? {
        return Ok(Err(why));
    }
    let local = |e: std::io::Error| PlatformError::Local { path: dir.display().to_string(), detail: e.to_string() };
    std::fs::write(values_path, values).map_err(local)?;
    let name = release["name"].as_str().unwrap_or("release");
    let ns = release["namespace"].as_str().unwrap_or("default");
    let out = tokio::process::Command::new(helm)
        .args(["template", name])
        .arg(dir)
        .args(["--namespace", ns, "--values"])
        .arg(values_path)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| PlatformError::ToolFailed {
            command: format!("{} template", helm.display()),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        return Ok(Err(format!("helm template failed ({}): {last}", out.status)));
    }
    Ok(Ok(manifest_objects(&String::from_utf8_lossy(&out.stdout))))
}

// ---- tenant manifests ------------------------------------------------------

/// Every manifest of a `kmdr backup tenants` backup parsed into its typed
/// object and matched to the tenant it belongs to: the DataStores, each
/// tenant's TenantControlPlane (its `dataStoreSchema` / `dataStoreUsername`
/// above all: a TCP re-applied without them starts empty), its
/// KamajiControlPlane and Cluster, and its Secrets.
pub async fn tenant_manifest_checks(
    repo: &Repository,
    m: &Manifest,
    info: &KamajiTenantsInfo,
) -> Result<Vec<Check>, kmdr_repo::Error> {
    let mut checks = Vec::new();
    let mut parsed = 0usize;
    let mut expected = 0usize;
    let fail = |checks: &mut Vec<Check>, what: String, why: String| checks.push(check(&what, "it parses", why, false));
    for ds in &info.datastores {
        expected += 1;
        let file = format!("datastores/{}/{DATASTORE_FILE}", ds.name);
        match object(repo, m, &file, &DATA_STORE, None, &ds.name).await? {
            Ok(_) => parsed += 1,
            Err(why) => fail(&mut checks, format!("DataStore {}", ds.name), why),
        }
    }
    for t in &info.tenants {
        let dir = tenant_dir(&t.namespace, &t.name);
        let label = format!("{}/{}", t.namespace, t.name);
        expected += 1;
        match object(repo, m, &format!("{dir}/{TCP_FILE}"), &TENANT_CONTROL_PLANE, Some(&t.namespace), &t.name).await? {
            Ok(tcp) => {
                parsed += 1;
                let spec = &tcp["spec"];
                let got =
                    (spec["dataStoreSchema"].as_str(), spec["dataStoreUsername"].as_str(), spec["dataStore"].as_str());
                let want = (Some(t.schema.as_str()), Some(t.username.as_str()));
                checks.push(check(
                    &format!("{label}: dataStoreSchema/Username"),
                    format!("{}/{}", t.schema, t.username),
                    format!("{}/{}", got.0.unwrap_or("(none)"), got.1.unwrap_or("(none)")),
                    (got.0, got.1) == want && got.2.is_none_or(|d| d == t.datastore),
                ));
            }
            Err(why) => fail(&mut checks, format!("{label}: TenantControlPlane"), why),
        }
        for (file, kind, name) in [
            (KCP_FILE, &KAMAJI_CONTROL_PLANE, t.kamaji_control_plane.as_deref()),
            (CLUSTER_FILE, &CAPI_CLUSTER, t.capi_cluster.as_deref()),
        ] {
            let Some(name) = name else { continue };
            // "ns/name" or "name" as recorded.
            let (ns, name) = name.split_once('/').unwrap_or((&t.namespace, name));
            expected += 1;
            match object(repo, m, &format!("{dir}/{file}"), kind, Some(ns), name).await? {
                Ok(_) => parsed += 1,
                Err(why) => fail(&mut checks, format!("{label}: {}", kind.kind), why),
            }
        }
        for s in &t.secrets {
            expected += 1;
            let file = format!("{dir}/{SECRETS_DIR}/{s}.yaml");
            match typed_secret(repo, m, &file, &format!("{}/{s}", t.namespace)).await? {
                Ok(()) => parsed += 1,
                Err(why) => fail(&mut checks, format!("{label}: Secret {s}"), why),
            }
        }
    }
    checks.insert(
        0,
        check("manifests", format!("{expected} objects"), format!("{parsed} parsed and matched"), parsed == expected),
    );
    Ok(checks)
}

/// The file as an object of `kind` named `ns/name`, or why not.
async fn object(
    repo: &Repository,
    m: &Manifest,
    file: &str,
    kind: &ResourceKind,
    ns: Option<&str>,
    name: &str,
) -> Result<Result<Value, String>, kmdr_repo::Error> {
    Ok(read_value(repo, m, file).await?.and_then(|v| {
        let o: kube::api::DynamicObject = typed(v.clone(), file)?;
        let types = o.types.as_ref().map(|t| (t.api_version.as_str(), t.kind.as_str()));
        if types != Some((kind.api_version, kind.kind)) {
            return Err(format!("{file} is {types:?}, not {} {}", kind.api_version, kind.kind));
        }
        let got = (o.metadata.namespace.as_deref().filter(|_| kind.namespaced), o.metadata.name.as_deref());
        let want = (ns.filter(|_| kind.namespaced), Some(name));
        if got != want {
            return Err(format!("{file} names {got:?}, not {want:?}"));
        }
        Ok(v)
    }))
}

// ---- volume backups --------------------------------------------------------

/// The objects file of a volume backup: the tool's objects as read at
/// backup time, at least one per recorded item.
pub async fn volume_record_check(
    repo: &Repository,
    m: &Manifest,
    info: &VolumeBackupInfo,
) -> Result<Check, kmdr_repo::Error> {
    let file = crate::volumes::OBJECTS_FILE;
    let expected = format!("{file} with the tool's objects of {} items", info.items.len());
    Ok(match read(repo, m, file).await? {
        Err(why) => check("record", expected, why, false),
        Ok(bytes) => match serde_json::from_slice::<Vec<Value>>(&bytes) {
            Ok(objs) if objs.len() >= info.items.len() && objs.iter().all(|o| o["kind"].is_string()) => {
                check("record", expected, format!("{} objects", objs.len()), true)
            }
            Ok(objs) => check("record", expected, format!("{} objects, not all with a kind", objs.len()), false),
            Err(e) => check("record", expected, format!("{file} is not a JSON list of objects: {e}"), false),
        },
    })
}

/// What is wrong with a tool's object that is there (`None`: complete).
type Incomplete = fn(&Value) -> Option<String>;

/// The tool's objects a volume backup recorded, looked up in the cluster:
/// each must still be there and complete (a VolumeSnapshot `readyToUse`
/// with its VolumeSnapshotContent, a Velero Backup `Completed`, a K10
/// RestorePoint with its RestorePointContent).
pub async fn volume_checks(kube: &KubeClient, info: &VolumeBackupInfo) -> Result<Vec<Check>, VolumeError> {
    let mut checks = Vec::new();
    for item in &info.items {
        let what = format!(
            "{} {}{}",
            item.kind,
            item.namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default(),
            item.name
        );
        let (kind, content, state): (ResourceKind, Option<ResourceKind>, Incomplete) =
            match (info.provider.as_str(), item.kind.as_str()) {
                ("csi", "VolumeSnapshot") => (csi::VOLUME_SNAPSHOT, Some(csi::VOLUME_SNAPSHOT_CONTENT), |v| {
                    (v.pointer("/status/readyToUse") != Some(&Value::Bool(true))).then(|| "not readyToUse".into())
                }),
                ("velero", "Backup") => {
                    (velero::BACKUP, None, |v| match v.pointer("/status/phase").and_then(Value::as_str) {
                        Some("Completed") => None,
                        p => Some(format!("phase {}", p.unwrap_or("(none)"))),
                    })
                }
                ("kasten", "RestorePoint") => (kasten::RESTORE_POINT, Some(kasten::RESTORE_POINT_CONTENT), |_| None),
                _ => {
                    checks.push(check(&what, "held by the tool", "kmdr does not know this kind of object", false));
                    continue;
                }
            };
        let found = match kube.get_object(&kind, item.namespace.as_deref(), &item.name).await {
            Ok(found) => found,
            Err(KubeError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let verdict = match found {
            None => Err("gone: the tool no longer holds it".to_string()),
            Some(obj) => match state(&obj) {
                Some(bad) => Err(bad),
                None => content_held(kube, content.as_ref(), item).await?,
            },
        };
        match verdict {
            Ok(found) => checks.push(check(&what, "held by the tool", found, true)),
            Err(why) => checks.push(check(&what, "held by the tool", why, false)),
        }
    }
    Ok(checks)
}

/// The cluster-scoped content object an item binds to, when it names one.
async fn content_held(
    kube: &KubeClient,
    kind: Option<&ResourceKind>,
    item: &VolumeItem,
) -> Result<Result<String, String>, VolumeError> {
    let (Some(kind), Some(name)) = (kind, item.content.as_deref()) else { return Ok(Ok("present".into())) };
    Ok(match kube.get_object(kind, None, name).await {
        Ok(Some(_)) => Ok(format!("present, with {} {name}", kind.kind)),
        Ok(None) | Err(KubeError::NotFound { .. }) => Err(format!("its {} {name} is gone", kind.kind)),
        Err(e) => return Err(e.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_of_a_manifest() {
        let text = "---\n# Source: x\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: n\n---\nkind: Service\nmetadata: {name: b}\n";
        let got: Vec<String> = manifest_objects(text).into_iter().collect();
        assert_eq!(got, ["ConfigMap n/a", "Service /b"]);
    }
}
