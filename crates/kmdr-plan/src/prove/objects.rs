//! Test restores of what holds Kubernetes objects: the platform's Helm
//! release, the tenant manifests (with their data), the volume backup
//! tool's objects. The checks themselves are kmdr-kube's
//! ([`kmdr_kube::proof`]); this module runs them and their scratch servers.

use super::{ProveOptions, Tested, data};
use crate::unit::UnitError;
use kmdr_core::{Manifest, SourceInfo};
use kmdr_kube::platform::find_tool;
use kmdr_kube::proof;
use kmdr_kube::{KubeClient, kamaji};
use kmdr_repo::Repository;
use kmdr_repo::proofs::Check;

impl Tested {
    /// Add checks made elsewhere; the first failing one becomes the reason.
    fn absorb(&mut self, checks: Vec<Check>) {
        for c in checks {
            if !c.ok && self.reason.is_none() {
                self.reason = Some(format!("{}: expected {}, found {}", c.what, c.expected, c.found));
            }
            self.checks.push(c);
        }
    }
}

/// The release decoded and matched to the manifest, its values and Secrets
/// parsed, its chart rendered with helm when there is one.
pub(super) async fn prove_platform(repo: &Repository, m: &Manifest, o: &ProveOptions) -> Result<Tested, UnitError> {
    let scratch = o.scratch()?;
    let helm = match &o.helm {
        Some(p) if p.is_file() => Some(p.clone()),
        Some(p) => {
            return Err(UnitError::new(
                kmdr_core::ErrorClass::Refused,
                format!(
                    "no helm at {} to render the platform backup: pass --helm PATH to a helm binary, or leave it out to decode without rendering",
                    p.display()
                ),
            ));
        }
        None => find_tool("helm"),
    };
    let (into, checks) = proof::platform_checks(repo, m, helm.as_deref(), scratch.path()).await?;
    let mut t = Tested::new(into);
    t.absorb(checks);
    Ok(t)
}

/// Every manifest parsed and matched to its tenant; every tenant's records
/// restored into one scratch etcd (each under its own schema) and checked.
pub(super) async fn prove_tenants(repo: &Repository, m: &Manifest, o: &ProveOptions) -> Result<Tested, UnitError> {
    let info = kamaji::tenants_info(m)?;
    let scratch = o.scratch()?;
    let (_server, store, into) = data::scratch_store("etcd", scratch.path(), o).await?;
    let mut t = Tested::new(format!("{into} (data); manifests parsed"));
    t.absorb(proof::tenant_manifest_checks(repo, m, info).await?);
    for tenant in &info.tenants {
        let file = format!("{}/{}", kamaji::tenant_dir(&tenant.namespace, &tenant.name), kamaji::RECORDS);
        let label = format!("{}/{}", tenant.namespace, tenant.name);
        match m.file(&file) {
            Some(entry) => data::records(repo, &store, entry, &tenant.data, &label, &mut t).await?,
            None => t.fail(&format!("{label}: records"), file, "missing from the backup".into()),
        }
    }
    Ok(t)
}

/// The tool's objects looked up through the API; "not checked" when the
/// API cannot be reached or is another cluster than the one backed up.
pub(super) async fn prove_volumes(repo: &Repository, m: &Manifest, o: &ProveOptions) -> Result<Tested, UnitError> {
    let SourceInfo::VolumeBackup(info) = &m.source else { unreachable!("checked by the caller") };
    let record = proof::volume_record_check(repo, m, info).await?;
    if !record.ok {
        let mut t = Tested::new("nothing".into());
        t.absorb(vec![record]);
        return Ok(t);
    }
    let kube = match KubeClient::connect(&o.kube).await {
        Ok(k) => k,
        Err(e) => {
            return Ok(Tested::not_checked(format!(
                "the tool's objects were not looked up: {e} (give the cluster with --kubeconfig/--context)"
            )));
        }
    };
    if let Err(e) = kube.server_version().await {
        return Ok(Tested::not_checked(format!("the tool's objects were not looked up: {e}")));
    }
    if kube.url() != info.cluster {
        return Ok(Tested::not_checked(format!(
            "the backup was taken in the cluster at {}, kmdr reaches {}: give that cluster with --kubeconfig/--context",
            info.cluster,
            kube.url()
        )));
    }
    let mut t = Tested::new(format!("{} at {} ({})", info.provider, kube.url(), info.entry));
    t.absorb(vec![record]);
    if info.items.is_empty() {
        t.fail("objects", "at least one", "the backup records no object of the tool".into());
    }
    t.absorb(proof::volume_checks(&kube, info).await?);
    Ok(t)
}
