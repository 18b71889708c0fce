//! What `kmdr runbook check` says about the under-cluster's identity files
//! (`kmdr backup node-files`): whether a backup of them exists at all (without
//! it a rebuilt under-cluster gets new CAs from `kubeadm init` and cannot use
//! its restored etcd), how long each CA it holds stays valid, and, where the
//! plan names the live EncryptionConfiguration, whether every key in it is
//! backed up and no change of it is newer than the newest backup.

use crate::findings::{Finding, Level, finding};
use crate::plan::NodeFilesSpec;
use chrono::{DateTime, Utc};
use kmdr_core::{EncryptionKeyInfo, SourceInfo, human_duration};
use kmdr_kube::identity;
use kmdr_repo::Repository;
use std::time::Duration;

/// A CA expiring within this is reported (the monthly review's horizon).
pub const CA_WARNING: Duration = Duration::from_secs(90 * 86400);

/// The findings `node-files` and `ca-expiry` from the newest node-files
/// backup, and `encryption-keys` from the plan's live EncryptionConfiguration.
pub(crate) async fn node_files_findings(
    repo: &Repository,
    now: DateTime<Utc>,
    spec: Option<&NodeFilesSpec>,
) -> Result<Vec<Finding>, kmdr_repo::Error> {
    let ids = repo.list_backups().await?;
    let mut backed_up: Vec<(DateTime<Utc>, Vec<EncryptionKeyInfo>)> = Vec::new();
    for id in ids.iter().filter(|i| i.kind() == kmdr_kube::node_files::KIND) {
        let m = repo.load_manifest(id).await?;
        if let SourceInfo::NodeFiles(n) = &m.source {
            backed_up.push((m.started_at, n.encryption_keys.clone()));
        }
    }
    let mut out = Vec::new();
    if let Some(f) = spec.and_then(|s| encryption_findings(s, &backed_up)) {
        out.push(f);
    }
    let Some(id) = ids.iter().rev().find(|i| i.kind() == kmdr_kube::node_files::KIND) else {
        out.push(finding(
            "node-files",
            "under-cluster",
            Level::Warn,
            "no node-files backup: a rebuilt under-cluster gets new CAs and keys from kubeadm init, and the restored etcd's tokens, client certificates and encrypted Secrets stop working; run `kmdr backup node-files --encryption-config FILE` on a control-plane node",
        ));
        return Ok(out);
    };
    let m = repo.load_manifest(id).await?;
    let SourceInfo::NodeFiles(info) = &m.source else { return Ok(Vec::new()) };
    out.push(finding(
        "node-files",
        "under-cluster",
        Level::Ok,
        format!(
            "newest node-files backup {id} of {}, {} old: {} files, {} encryption keys",
            info.host,
            human_duration((now - m.started_at).to_std().unwrap_or_default()),
            info.files.len(),
            info.encryption_keys.len()
        ),
    ));
    for c in info.certificates.iter().filter(|c| c.ca) {
        let Ok(until) = DateTime::parse_from_rfc3339(&c.not_after) else { continue };
        let left = until.with_timezone(&Utc) - now;
        let (level, message) = match left.to_std() {
            Err(_) => (
                Level::Fail,
                format!(
                    "{} expired on {}: renew it (`kubeadm certs renew` does not renew CAs), then back the node files up again",
                    c.subject, c.not_after
                ),
            ),
            Ok(l) if l < CA_WARNING => (
                Level::Warn,
                format!(
                    "{} expires in {} ({}): plan its rotation and back the node files up after it",
                    c.subject,
                    human_duration(l),
                    c.not_after
                ),
            ),
            Ok(l) => (Level::Ok, format!("{} valid for {} more", c.subject, human_duration(l))),
        };
        out.push(finding("ca-expiry", c.path.clone(), level, message));
    }
    Ok(out)
}

/// `encryption-keys`: every key of the live EncryptionConfiguration the plan
/// names is in some node-files backup (a key added by a rotation and not
/// backed up makes the Secrets of every later snapshot unreadable after a
/// rebuild), and the file changed no later than the newest backup. `None`
/// when the plan names no EncryptionConfiguration.
fn encryption_findings(spec: &NodeFilesSpec, backed_up: &[(DateTime<Utc>, Vec<EncryptionKeyInfo>)]) -> Option<Finding> {
    let path = spec.encryption_config.as_deref()?;
    let file = spec.root.join(path.trim_start_matches('/'));
    let live = match kmdr_kube::node_files::encryption_keys(&file, path) {
        Ok(k) => k,
        Err(e) => {
            return Some(finding(
                "encryption-keys",
                path,
                Level::Warn,
                format!("not checked: {e} (run the check on a control-plane node, as root)"),
            ));
        }
    };
    let missing: Vec<String> = live
        .iter()
        .filter(|k| !backed_up.iter().any(|(_, have)| identity::holds_key(have, k)))
        .map(|k| format!("{}/{}", k.provider, k.name))
        .collect();
    if !missing.is_empty() {
        return Some(finding(
            "encryption-keys",
            path,
            Level::Fail,
            format!(
                "key(s) {} of the live EncryptionConfiguration are in no node-files backup: Secrets written from now on cannot be read after a rebuild; run `kmdr backup node-files --encryption-config {path}` now",
                missing.join(", ")
            ),
        ));
    }
    let changed: Option<DateTime<Utc>> = std::fs::metadata(&file).and_then(|m| m.modified()).ok().map(Into::into);
    let newest = backed_up.iter().map(|(t, _)| *t).max();
    if let (Some(changed), Some(newest)) = (changed, newest)
        && changed > newest
    {
        return Some(finding(
            "encryption-keys",
            path,
            Level::Warn,
            format!(
                "changed at {} after the newest node-files backup ({}): a rotation's new key order is not backed up; run `kmdr backup node-files --encryption-config {path}`",
                changed.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                newest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ));
    }
    Some(finding(
        "encryption-keys",
        path,
        Level::Ok,
        format!("every key of the live EncryptionConfiguration ({}) is backed up", live.len()),
    ))
}
