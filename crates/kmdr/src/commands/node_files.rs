//! `kmdr backup node-files`, `kmdr restore node-files`, and what an etcd
//! restore says about the node files its snapshot needs.

use crate::cli::GlobalArgs;
use crate::output::{self, Format};
use anyhow::Result;
use serde_json::json;

/// `kmdr backup node-files`: the under-cluster's identity files.
pub async fn backup(g: &GlobalArgs, a: crate::cli::BackupNodeFilesArgs) -> Result<i32> {
    use kmdr_kube::node_files::{NodeFilesOptions, backup_node_files};
    let repo = g.open_repo().await?;
    let opts = NodeFilesOptions {
        paths: a.paths,
        encryption_config: a.encryption_config,
        leaf_certs: a.leaf_certs,
        root: a.root,
        tags: a.tags.into_iter().collect(),
    };
    let m = backup_node_files(&repo, &opts).await?;
    if g.format == Format::Json {
        output::json(&m);
    } else {
        super::print_done(g, &m, &repo.location());
        if let kmdr_core::SourceInfo::NodeFiles(n) = &m.source
            && g.chatty()
        {
            for c in &n.certificates {
                eprintln!(
                    "  {}: {}{} until {} (sha256 {})",
                    c.path,
                    c.subject,
                    if c.ca { " (CA)" } else { "" },
                    c.not_after,
                    c.sha256
                );
            }
            for k in &n.encryption_keys {
                eprintln!("  {}: {} key {:?}", k.path, k.provider, k.name);
            }
        }
    }
    Ok(0)
}

/// `kmdr restore node-files ID --to DIR [--force] [--dry-run]`.
pub async fn restore(g: &GlobalArgs, a: crate::cli::RestoreNodeFilesArgs) -> Result<i32> {
    use kmdr_kube::node_files::{self as n, KIND};
    let repo = g.open_repo_to_read("backups to restore them").await?;
    let m = repo.load_manifest(&repo.resolve(&a.id, Some(KIND)).await?).await?;
    let (planned, contents) = n::plan_restore(&repo, &m, &a.to, a.force).await?;
    let written = if a.dry_run { 0 } else { n::write_planned(&planned, &contents)? };
    if g.format == Format::Json {
        output::json(&json!({"backup": m.id.to_string(), "dry_run": a.dry_run, "files": planned, "written": written}));
        return Ok(0);
    }
    let verb = if a.dry_run { "would" } else { "did" };
    for p in &planned {
        let what = match p.action {
            "same" => "keep   ".to_string(),
            "create" => format!("{verb} create"),
            _ => format!("{verb} replace ({})", p.differs.join(", ")),
        };
        println!("  {what} {} (mode {:o}, owner {}:{})", p.target.display(), p.mode, p.uid, p.gid);
    }
    if a.dry_run {
        println!("restore plan of {} (dry run, nothing written)", m.id);
    } else {
        println!(
            "restored {written} file(s) of {} under {}. Next: kubeadm init --config <the restored kubeadm-config.yaml> (it reuses the CA and keys), then kmdr restore etcd",
            m.id,
            a.to.display()
        );
    }
    Ok(0)
}

/// Which node-files backup the etcd snapshot `m` needs, if it says.
pub async fn pairing(repo: &kmdr_repo::Repository, m: &kmdr_core::Manifest) -> Result<kmdr_kube::identity::Pairing> {
    let needs = match &m.source {
        kmdr_core::SourceInfo::EtcdSnapshot(e) => e.needs.as_ref(),
        _ => None,
    };
    Ok(kmdr_kube::identity::pair(repo, needs).await?)
}

/// For people, on stderr: a warning when no node-files backup holds what
/// the snapshot needs (unless -q), the backup that does (chatty only), and
/// nothing when the snapshot does not say (an etcd outside Kubernetes).
pub fn print_pairing(g: &GlobalArgs, p: &kmdr_kube::identity::Pairing) {
    if p.broken() && !g.quiet {
        eprintln!("warning: {}", p.line());
    } else if p.paired() && g.chatty() {
        eprintln!("note: {}", p.line());
    }
}
