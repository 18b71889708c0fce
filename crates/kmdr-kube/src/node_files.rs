//! The under-cluster's identity on disk: the kubeadm PKI (cluster CA,
//! service-account key, front-proxy CA, etcd CA), the kubeadm config and the
//! API server's EncryptionConfiguration. A fresh `kubeadm init` makes a new
//! CA and keys, and a restored etcd then belongs to a cluster that no longer
//! exists: every client certificate and ServiceAccount token is rejected,
//! and every Secret encrypted at rest cannot be read without the old keys.
//! So the runbook puts these files back *before* `kubeadm init`.
//!
//! A node-files backup (kind `node-files`, layer `under-cluster`, series
//! `node-files/<host>`) holds each file under its absolute path without the
//! leading `/`; the manifest records each file's mode, owner and size, each
//! certificate's subject, fingerprint and expiry, and the encryption keys'
//! providers and names (never their secrets). A restore writes every file to
//! a temporary name beside its target first and renames them all only when
//! every one is written, so nothing is left half-written; it refuses to
//! replace a file that differs unless forced, and names the differences.

use crate::inspect::encryption::EncryptionKeys;
use base64::Engine;
use kmdr_core::SourceInfo;
use kmdr_core::{CertificateInfo, Classify, EncryptionKeyInfo, ErrorClass, Layer, Manifest, NodeFile, NodeFilesInfo};
use kmdr_repo::backuper::ManifestDraft;
use kmdr_repo::restorer::{FileCheck, restore_file};
use kmdr_repo::{BackupSession, Repository};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The backup kind.
pub const KIND: &str = "node-files";
/// What `kmdr backup node-files` takes when no `--path` is given (those
/// present; the PKI's leaf certificates only with `--leaf-certs`).
pub const KUBEADM_FILES: &[&str] = &[
    "/etc/kubernetes/pki/ca.crt",
    "/etc/kubernetes/pki/ca.key",
    "/etc/kubernetes/pki/sa.key",
    "/etc/kubernetes/pki/sa.pub",
    "/etc/kubernetes/pki/front-proxy-ca.crt",
    "/etc/kubernetes/pki/front-proxy-ca.key",
    "/etc/kubernetes/pki/etcd/ca.crt",
    "/etc/kubernetes/pki/etcd/ca.key",
    "/etc/kubernetes/kubeadm-config.yaml",
];

/// What can go wrong. Every message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum NodeFilesError {
    #[error("cannot read {path}: {detail}; run as a user who can (root on a control-plane node), or leave it out")]
    Unreadable { path: String, detail: String },
    #[error("{path} is {what}, not a file: kmdr backs up regular files only; leave it out of --path")]
    NotAFile { path: String, what: &'static str },
    #[error(
        "none of the files to back up exist under {root}: is this a kubeadm control-plane node? Name the files with --path"
    )]
    Nothing { root: String },
    #[error("{path} is not {what}: {detail}")]
    BadContent { path: String, what: &'static str, detail: String },
    #[error(
        "refusing to replace {count} file(s) that differ from the backup ({list}): {hint}. Nothing was written; pass --force to replace them"
    )]
    Differs { count: usize, list: String, hint: String },
    #[error("cannot write {path}: {detail}; nothing was left half-written")]
    Write { path: String, detail: String },
    #[error(
        "backup {id} is not a node-files backup (kind {kind}): pick one listed by `kmdr backups list --kind node-files`"
    )]
    WrongKind { id: String, kind: String },
    #[error(
        "node-files backup {id} holds no EncryptionConfiguration: pass --encryption-config FILE, or back the node files up with --encryption-config"
    )]
    NoEncryptionConfig { id: String },
    #[error(transparent)]
    Repo(#[from] kmdr_repo::Error),
}

impl Classify for NodeFilesError {
    fn class(&self) -> ErrorClass {
        match self {
            NodeFilesError::Unreadable { .. } | NodeFilesError::BadContent { .. } => ErrorClass::Source,
            NodeFilesError::NotAFile { .. } | NodeFilesError::Nothing { .. } => ErrorClass::Usage,
            NodeFilesError::Differs { .. } | NodeFilesError::Write { .. } => ErrorClass::Refused,
            NodeFilesError::WrongKind { .. } | NodeFilesError::NoEncryptionConfig { .. } => ErrorClass::NotFound,
            NodeFilesError::Repo(r) => r.class(),
        }
    }
}

/// What to back up.
#[derive(Debug, Clone, Default)]
pub struct NodeFilesOptions {
    /// Absolute paths as on the node; a directory means every regular file
    /// in it, recursively. Empty: [`KUBEADM_FILES`] that exist.
    pub paths: Vec<String>,
    /// The API server's EncryptionConfiguration (backed up, its key names recorded).
    pub encryption_config: Option<String>,
    /// Also the PKI's leaf certificates and keys (all of `/etc/kubernetes/pki`).
    pub leaf_certs: bool,
    /// Read the paths under this directory instead of `/` (a mounted node disk; tests).
    pub root: PathBuf,
    pub tags: BTreeMap<String, String>,
}

/// One file read, before anything is stored.
struct Read {
    meta: NodeFile,
    content: Vec<u8>,
}

/// `path` (absolute, as on the node) under `root`.
fn on_disk(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn read_one(root: &Path, path: &str) -> Result<Read, NodeFilesError> {
    let file = on_disk(root, path);
    let unreadable = |e: std::io::Error| NodeFilesError::Unreadable { path: path.into(), detail: e.to_string() };
    let meta = std::fs::metadata(&file).map_err(unreadable)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let what = if ft.is_socket() {
            "a socket"
        } else if ft.is_block_device() || ft.is_char_device() {
            "a device"
        } else if ft.is_fifo() {
            "a pipe"
        } else {
            "a directory"
        };
        return Err(NodeFilesError::NotAFile { path: path.into(), what });
    }
    let content = std::fs::read(&file).map_err(unreadable)?;
    let meta = NodeFile {
        path: path.into(),
        mode: meta.permissions().mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size: content.len() as u64,
    };
    Ok(Read { meta, content })
}

/// Every regular file under `dir` (absolute, as on the node), sorted.
fn walk(root: &Path, dir: &str, out: &mut Vec<String>) -> Result<(), NodeFilesError> {
    let entries = std::fs::read_dir(on_disk(root, dir))
        .map_err(|e| NodeFilesError::Unreadable { path: dir.into(), detail: e.to_string() })?;
    let mut names: Vec<String> =
        entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into()).collect();
    names.sort();
    for n in names {
        let path = format!("{}/{n}", dir.trim_end_matches('/'));
        if on_disk(root, &path).is_dir() {
            walk(root, &path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// The paths the options name, expanded and existing.
fn selected(o: &NodeFilesOptions) -> Result<Vec<String>, NodeFilesError> {
    let mut paths = Vec::new();
    let named: Vec<String> = if !o.paths.is_empty() {
        o.paths.clone()
    } else if o.leaf_certs {
        let mut v = vec!["/etc/kubernetes/pki".to_string()];
        v.extend(KUBEADM_FILES.iter().filter(|p| !p.starts_with("/etc/kubernetes/pki/")).map(|p| p.to_string()));
        v
    } else {
        KUBEADM_FILES.iter().filter(|p| on_disk(&o.root, p).exists()).map(|p| p.to_string()).collect()
    };
    for p in named.iter().chain(o.encryption_config.iter()) {
        if on_disk(&o.root, p).is_dir() {
            walk(&o.root, p, &mut paths)?;
        } else {
            paths.push(p.clone());
        }
    }
    paths.sort();
    paths.dedup();
    if paths.is_empty() {
        return Err(NodeFilesError::Nothing { root: o.root.display().to_string() });
    }
    Ok(paths)
}

/// The files the options name as they are now, by path: each one's content
/// followed by a line with its mode and owner (what a drill compares
/// before the failure and after the restore).
pub fn read_files(o: &NodeFilesOptions) -> Result<BTreeMap<String, Vec<u8>>, NodeFilesError> {
    let mut out = BTreeMap::new();
    for p in selected(o)? {
        let mut r = read_one(&o.root, &p)?;
        r.content.extend_from_slice(format!("\nmode {:o} owner {}:{}", r.meta.mode, r.meta.uid, r.meta.gid).as_bytes());
        out.insert(p, r.content);
    }
    Ok(out)
}

/// Every certificate of a PEM file (none when it holds no CERTIFICATE block).
fn certificates(path: &str, pem: &[u8]) -> Result<Vec<CertificateInfo>, NodeFilesError> {
    use x509_cert::der::Decode;
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    for block in text.split("-----BEGIN CERTIFICATE-----").skip(1) {
        let body = block.split("-----END CERTIFICATE-----").next().unwrap_or("");
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let bad = |detail: String| NodeFilesError::BadContent { path: path.into(), what: "a PEM certificate", detail };
        let der = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| bad(e.to_string()))?;
        let cert = x509_cert::Certificate::from_der(&der).map_err(|e| bad(e.to_string()))?;
        let tbs = &cert.tbs_certificate;
        let not_after: chrono::DateTime<chrono::Utc> = tbs.validity.not_after.to_system_time().into();
        let ca = tbs.extensions.iter().flatten().any(|e| {
            e.extn_id == <x509_cert::ext::pkix::BasicConstraints as x509_cert::der::oid::AssociatedOid>::OID
                && x509_cert::ext::pkix::BasicConstraints::from_der(e.extn_value.as_bytes()).is_ok_and(|b| b.ca)
        });
        out.push(CertificateInfo {
            path: path.into(),
            subject: tbs.subject.to_string(),
            sha256: hex::encode(Sha256::digest(&der)),
            not_after: not_after.to_rfc3339(),
            ca,
        });
    }
    Ok(out)
}

/// Read every file, then store them in one backup. Nothing is stored when a
/// file cannot be read.
pub async fn backup_node_files(repo: &Repository, o: &NodeFilesOptions) -> Result<Manifest, NodeFilesError> {
    let mut read = Vec::new();
    for p in selected(o)? {
        read.push(read_one(&o.root, &p)?);
    }
    let mut certs = Vec::new();
    for r in read.iter().filter(|r| r.meta.path.ends_with(".crt") || r.meta.path.ends_with(".pem")) {
        certs.extend(certificates(&r.meta.path, &r.content)?);
    }
    let mut keys = Vec::new();
    if let Some(cfg) = &o.encryption_config {
        keys = encryption_keys(&on_disk(&o.root, cfg), cfg)?;
    }
    let host = hostname();
    let mut session = BackupSession::start(repo, "kmdr backup node-files").await?;
    for r in &read {
        let mut bytes = r.content.as_slice();
        if let Err(e) = session.add_file(r.meta.path.trim_start_matches('/'), &mut bytes, None).await {
            session.abort().await;
            return Err(e.into());
        }
    }
    let info = NodeFilesInfo {
        host: host.clone(),
        files: read.into_iter().map(|r| r.meta).collect(),
        certificates: certs,
        encryption_keys: keys,
    };
    let draft = ManifestDraft {
        kind: KIND.into(),
        layer: Layer::UnderCluster,
        series: format!("node-files/{host}"),
        tags: o.tags.clone(),
        source: SourceInfo::NodeFiles(info),
    };
    Ok(session.commit(draft).await?)
}

/// The keys (provider, name, fingerprint) of the EncryptionConfiguration at
/// `file`, recorded under the node's path `path`.
pub fn encryption_keys(file: &Path, path: &str) -> Result<Vec<EncryptionKeyInfo>, NodeFilesError> {
    let keys = EncryptionKeys::load(file).map_err(|e| NodeFilesError::BadContent {
        path: path.into(),
        what: "an EncryptionConfiguration",
        detail: e.to_string(),
    })?;
    Ok(keys
        .fingerprints()
        .into_iter()
        .map(|(provider, name, fingerprint)| EncryptionKeyInfo { path: path.into(), provider, name, fingerprint })
        .collect())
}

/// Every certificate of the PEM file at `file` (recorded under the node's path `path`).
pub fn certificates_of(file: &Path, path: &str) -> Result<Vec<CertificateInfo>, NodeFilesError> {
    let pem =
        std::fs::read(file).map_err(|e| NodeFilesError::Unreadable { path: path.into(), detail: e.to_string() })?;
    let certs = certificates(path, &pem)?;
    if certs.is_empty() {
        return Err(NodeFilesError::BadContent {
            path: path.into(),
            what: "a PEM certificate",
            detail: "it holds no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "node".into())
}

/// The node files a backup holds.
pub fn node_files_info(m: &Manifest) -> Result<&NodeFilesInfo, NodeFilesError> {
    match &m.source {
        SourceInfo::NodeFiles(n) => Ok(n),
        _ => Err(NodeFilesError::WrongKind { id: m.id.to_string(), kind: m.id.kind().to_string() }),
    }
}

/// The EncryptionConfiguration a node-files backup holds: its path on the
/// node and its text, read from the repository (nothing is written).
pub async fn encryption_config_of(repo: &Repository, m: &Manifest) -> Result<(String, String), NodeFilesError> {
    let info = node_files_info(m)?;
    let none = || NodeFilesError::NoEncryptionConfig { id: m.id.to_string() };
    let path = info.encryption_keys.first().map(|k| k.path.clone()).ok_or_else(none)?;
    let entry = m.file(path.trim_start_matches('/')).ok_or_else(none)?;
    let mut content = Vec::with_capacity(entry.size as usize);
    restore_file(repo, entry, &mut content, FileCheck::Sha256, None).await?;
    let text = String::from_utf8(content).map_err(|e| NodeFilesError::BadContent {
        path: path.clone(),
        what: "an EncryptionConfiguration",
        detail: e.to_string(),
    })?;
    Ok((path, text))
}

/// What a restore does with one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedNodeFile {
    /// Where it goes.
    pub target: PathBuf,
    /// `create`, `same` (left as it is), `replace`.
    pub action: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// For `replace`: what differs (`content`, `mode`, `owner`).
    pub differs: Vec<&'static str>,
}

/// Plan the restore of backup `m` under `to` (`/` on the node itself):
/// nothing is written. Refuses (listing them) files that exist and differ,
/// unless `force`; a different CA certificate is named as such.
pub async fn plan_restore(
    repo: &Repository,
    m: &Manifest,
    to: &Path,
    force: bool,
) -> Result<(Vec<PlannedNodeFile>, Vec<Vec<u8>>), NodeFilesError> {
    let info = node_files_info(m)?;
    let mut planned = Vec::new();
    let mut contents = Vec::new();
    for f in &info.files {
        let name = f.path.trim_start_matches('/');
        let entry =
            m.file(name).ok_or_else(|| NodeFilesError::WrongKind { id: m.id.to_string(), kind: KIND.into() })?;
        let mut content = Vec::with_capacity(entry.size as usize);
        restore_file(repo, entry, &mut content, FileCheck::Sha256, None).await?;
        let target = to.join(name);
        let (action, differs) = match std::fs::symlink_metadata(&target) {
            Err(_) => ("create", Vec::new()),
            Ok(meta) => {
                let mut d = Vec::new();
                if std::fs::read(&target).map(|c| c != content).unwrap_or(true) {
                    d.push("content");
                }
                if meta.permissions().mode() & 0o7777 != f.mode {
                    d.push("mode");
                }
                if (meta.uid(), meta.gid()) != (f.uid, f.gid) {
                    d.push("owner");
                }
                if d.is_empty() { ("same", d) } else { ("replace", d) }
            }
        };
        planned.push(PlannedNodeFile { target, action, mode: f.mode, uid: f.uid, gid: f.gid, differs });
        contents.push(content);
    }
    let replacing: Vec<&PlannedNodeFile> = planned.iter().filter(|p| p.action == "replace").collect();
    if !force && !replacing.is_empty() {
        let ca: Vec<&CertificateInfo> = info
            .certificates
            .iter()
            .filter(|c| c.ca && replacing.iter().any(|p| p.target == to.join(c.path.trim_start_matches('/'))))
            .collect();
        let hint = if ca.is_empty() {
            "they are not what the backup holds".to_string()
        } else {
            format!(
                "{} holds another CA than the backup's ({}): a node with a new CA cannot read a snapshot of the old cluster's Secrets and tokens",
                ca[0].path, ca[0].subject
            )
        };
        let list = replacing
            .iter()
            .map(|p| format!("{} ({})", p.target.display(), p.differs.join(", ")))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(NodeFilesError::Differs { count: replacing.len(), list, hint });
    }
    Ok((planned, contents))
}

/// Write the planned files: each to a temporary name beside its target
/// (mode and owner set), then every one renamed into place. A failure
/// before the renames removes the temporary files and changes nothing.
pub fn write_planned(planned: &[PlannedNodeFile], contents: &[Vec<u8>]) -> Result<usize, NodeFilesError> {
    let mut temps: Vec<(PathBuf, &PathBuf)> = Vec::new();
    let result = (|| {
        for (p, content) in planned.iter().zip(contents).filter(|(p, _)| p.action != "same") {
            let write = |e: std::io::Error| NodeFilesError::Write {
                path: p.target.display().to_string(),
                detail: e.to_string(),
            };
            if let Some(dir) = p.target.parent() {
                std::fs::create_dir_all(dir).map_err(write)?;
            }
            let tmp = p.target.with_file_name(format!(
                ".{}.kmdr-tmp",
                p.target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            ));
            std::fs::write(&tmp, content).map_err(write)?;
            temps.push((tmp.clone(), &p.target));
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(p.mode)).map_err(write)?;
            // Only root may give a file away; others keep it as theirs.
            let me = std::fs::metadata(&tmp).map_err(write)?.uid();
            if me == 0 {
                std::os::unix::fs::chown(&tmp, Some(p.uid), Some(p.gid)).map_err(write)?;
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        for (tmp, _) in &temps {
            let _ = std::fs::remove_file(tmp);
        }
        return Err(e);
    }
    for (tmp, target) in &temps {
        std::fs::rename(tmp, target)
            .map_err(|e| NodeFilesError::Write { path: target.display().to_string(), detail: e.to_string() })?;
    }
    Ok(temps.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate made by openssl (`ca` true: a CA).
    fn pem(cn: &str, ca: bool) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let ext = if ca { "basicConstraints=critical,CA:TRUE" } else { "basicConstraints=critical,CA:FALSE" };
        let out = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "30",
                "-subj",
                &format!("/CN={cn}/O=kmdr"),
            ])
            .args(["-addext", ext, "-keyout"])
            .arg(dir.path().join("k"))
            .arg("-out")
            .arg(dir.path().join("c"))
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::read(dir.path().join("c")).unwrap()
    }

    #[test]
    fn certificates_are_read_from_every_pem_block() {
        let mut bundle = pem("kubernetes", true);
        bundle.extend(pem("leaf", false));
        let certs = certificates("/etc/kubernetes/pki/ca.crt", &bundle).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].subject, "O=kmdr,CN=kubernetes", "RFC 4514: the last RDN first");
        assert!(certs[0].ca && !certs[1].ca);
        assert_eq!(certs[0].sha256.len(), 64);
        let days = chrono::DateTime::parse_from_rfc3339(&certs[0].not_after).unwrap().to_utc() - chrono::Utc::now();
        assert!((29..=30).contains(&days.num_days()), "{}", certs[0].not_after);
        assert!(certificates("/x.crt", b"no pem here").unwrap().is_empty());
        let broken = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n";
        let e = certificates("/x.crt", broken).unwrap_err();
        assert!(e.to_string().starts_with("/x.crt is not a PEM certificate"), "{e}");
    }
}
