//! `kmdr backup etcd`, `kmdr backup tenant`.

use crate::cli::{BackupCommand, BackupEtcdArgs, BackupTenantArgs, GlobalArgs};
use crate::output::{self, Format};
use anyhow::Result;
use kmdr_etcd::snapshotter::EtcdSnapshot;
use kmdr_etcd::{EtcdConnection, TlsFiles};

pub async fn run(g: &GlobalArgs, c: BackupCommand) -> Result<i32> {
    match c {
        BackupCommand::Etcd(a) => etcd(g, a).await,
        BackupCommand::Tenant(a) => tenant(g, a).await,
        BackupCommand::Platform(a) => platform(g, a).await,
        BackupCommand::Tenants(a) => tenants(g, a).await,
        BackupCommand::NodeFiles(a) => super::node_files::backup(g, a).await,
    }
}

async fn etcd(g: &GlobalArgs, a: BackupEtcdArgs) -> Result<i32> {
    // Open the repository first: a wrong key must fail before etcd is touched.
    let repo = g.open_repo().await?;
    // What the snapshot needs of the node (read before etcd is touched: a bad file fails first).
    let needs = match (&a.cluster_ca, &a.encryption_config) {
        (None, None) => newest_node_files_identity(&repo).await?,
        (ca, enc) => Some(kmdr_kube::identity::live(std::path::Path::new("/"), ca.as_deref(), enc.as_deref())?),
    };
    let conn = EtcdConnection::new(a.endpoints, TlsFiles { cacert: a.tls.cacert, cert: a.tls.cert, key: a.tls.key });
    let mut snap = EtcdSnapshot::open(&conn).await?;
    snap.info.needs = needs;
    let pb = output::bar(g.format, g.quiet, Some(snap.info.db_size as u64 + 32), "etcd snapshot");
    let m = snap.backup_into(&repo, a.tags.into_iter().collect(), output::progress(&pb)).await?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    if g.format == Format::Json {
        output::json(&m);
    } else {
        super::print_done(g, &m, &repo.location());
    }
    Ok(0)
}

/// What the newest node-files backup holds, if the repository has one.
async fn newest_node_files_identity(repo: &kmdr_repo::Repository) -> Result<Option<kmdr_core::ClusterIdentity>> {
    if repo.access() == kmdr_repo::crypto::Access::WriteOnly {
        // A write-only key cannot read the node-files backup: --cluster-ca and
        // --encryption-config are how an agent records what the snapshot needs.
        return Ok(None);
    }
    let ids = repo.list_backups().await?;
    Ok(match ids.iter().rev().find(|i| i.kind() == kmdr_kube::node_files::KIND) {
        Some(id) => kmdr_kube::identity::of_node_files(&repo.load_manifest(id).await?),
        None => None,
    })
}

async fn tenant(g: &GlobalArgs, a: BackupTenantArgs) -> Result<i32> {
    use kmdr_datastore::{TenantBackupOptions, TenantStore, backup_tenant_in};
    let repo = g.open_repo().await?;
    let store = a.datastore.connect().await?;
    let (schemas, at) = match &a.schema {
        Some(s) => (vec![s.clone()], None),
        None => {
            // One read point for every tenant where the driver has one (etcd).
            let at = store.shared_read_point().await?;
            let found = store.list_tenants().await?;
            if found.is_empty() {
                anyhow::bail!(kmdr_datastore::TenantError::UnknownSchema {
                    schema: "(any)".into(),
                    datastore: store.datastore(),
                    found
                });
            }
            (found, at)
        }
    };
    let opts = TenantBackupOptions { tags: a.tags.into_iter().collect(), at };
    let mut manifests = Vec::new();
    let mut first_error: Option<anyhow::Error> = None;
    let mut failed = Vec::new();
    // One lock and one listing of the repository for all of them.
    let run = kmdr_repo::BackupRun::start(&repo, "kmdr backup tenant").await?;
    for schema in &schemas {
        let pb = output::bar(g.format, g.quiet, None, &format!("tenant {schema}"));
        let result = backup_tenant_in(run.session(), &store, schema, &opts, output::progress(&pb)).await;
        if let Some(pb) = pb {
            pb.finish_and_clear();
        }
        match result {
            Ok(m) => {
                if g.format == Format::Text {
                    super::print_done(g, &m, &repo.location());
                }
                manifests.push(m);
            }
            // One tenant alone: its error is the command's error.
            Err(e) if schemas.len() == 1 => {
                run.finish().await;
                return Err(e.into());
            }
            Err(e) => {
                eprintln!("error: tenant {schema}: {e}");
                failed.push(schema.clone());
                first_error.get_or_insert(e.into());
            }
        }
    }
    run.finish().await;
    if g.format == Format::Json {
        output::json(&manifests);
    }
    match first_error {
        None => Ok(0),
        Some(e) => {
            let code = crate::exit::code_for(&e);
            eprintln!(
                "error: {} of {} tenants were not backed up ({}); the others were. Fix the cause above and run again",
                failed.len(),
                schemas.len(),
                failed.join(", ")
            );
            Ok(code)
        }
    }
}

/// `kmdr backup --plan FILE [--layer L]`: every unit of every layer (or one)
/// that names a source; a unit that fails does not stop the others.
pub async fn by_plan(g: &GlobalArgs, file: &std::path::Path, layer: Option<kmdr_core::Layer>) -> Result<i32> {
    let plan = super::plan::load(file)?;
    let repo = g.with_plan(&plan).open_repo().await?;
    if let Some(l) = layer
        && plan.layer(l).is_none()
    {
        return Err(super::UsageError(format!("the plan {} has no layer {l}", file.display())).into());
    }
    // One line per unit; on a terminal, a spinner with the unit in progress and its time.
    let notify = super::notifier(g);
    let tags = std::collections::BTreeMap::from([("plan".to_string(), plan.name.clone())]);
    let mut all = Vec::new();
    for spec in plan.layers.iter().filter(|s| layer.is_none_or(|l| s.layer == l)) {
        if matches!(spec.source, kmdr_plan::LayerSource::Targets) {
            if layer.is_some() {
                return Err(super::UsageError(format!("kmdr does not back up layer {}: the plan only holds its targets (for persistent-data, add `volumes:` entries; see docs/volumes.md)", spec.layer)).into());
            }
            continue;
        }
        for u in kmdr_plan::exec::backup_layer(&repo, spec, &tags, &notify).await {
            all.push((spec.layer, u));
        }
    }
    drop(notify); // the spinner, on a terminal, goes before the table
    let failed = all.iter().filter(|(_, u)| u.error.is_some()).count();
    if g.format == Format::Json {
        output::json(&all.iter().map(|(l, u)| serde_json::json!({"layer": l, "unit": u})).collect::<Vec<_>>());
    } else {
        for (l, u) in &all {
            match (&u.backup, &u.error) {
                (Some(id), _) => println!("{:<22} {:<32} {id}", l.as_str(), u.unit),
                (None, Some(e)) => println!("{:<22} {:<32} FAILED: {e}", l.as_str(), u.unit),
                _ => {}
            }
        }
    }
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} units were not backed up; the others were. Fix the causes above and run again",
            all.len()
        );
        // The first failed unit's class decides (source unreachable, tool missing, timed out, ...).
        let class = all.iter().find_map(|(_, u)| u.error.as_ref().map(|e| e.class));
        return Ok(class.map_or(crate::exit::OTHER, crate::exit::code));
    }
    Ok(0)
}

/// `kmdr backup platform`: the umbrella chart's Helm release and listed Secrets.
async fn platform(g: &GlobalArgs, a: crate::cli::BackupPlatformArgs) -> Result<i32> {
    use kmdr_kube::client::{KubeClient, KubeTarget};
    use kmdr_kube::platform::{PlatformBackupOptions, SecretRef, backup_platform};
    // Bad --secret values are usage errors, found before anything is opened.
    let secrets = a.secrets.iter().map(|s| s.parse::<SecretRef>()).collect::<Result<Vec<_>, _>>()?;
    // Open the repository first: a wrong key must fail before the cluster is read.
    let repo = g.open_repo().await?;
    let log_requests = g.verbose > 0 || std::env::var_os("KMDR_LOG").is_some();
    let kube =
        KubeClient::connect(&KubeTarget { kubeconfig: a.kube.kubeconfig, context: a.kube.context, log_requests })
            .await?;
    let opts = PlatformBackupOptions {
        release: a.release,
        namespace: a.namespace,
        secrets,
        tags: a.tags.into_iter().collect(),
    };
    let m = backup_platform(&repo, &kube, &opts).await?;
    if let kmdr_core::SourceInfo::HelmRelease(h) = &m.source
        && h.status != "deployed"
        && !g.quiet
    {
        eprintln!(
            "warning: no revision of release {}/{} is deployed; backed up the newest, revision {} ({})",
            h.namespace, h.release, h.revision, h.status
        );
    }
    if g.format == Format::Json {
        output::json(&m);
    } else {
        super::print_done(g, &m, &repo.location());
    }
    Ok(0)
}

/// `kmdr backup tenants [--all | NS/NAME ...]`: Kamaji tenants end to end.
async fn tenants(g: &GlobalArgs, a: crate::cli::BackupTenantsArgs) -> Result<i32> {
    use kmdr_kube::kamaji::{TcpRef, TenantsBackupOptions, backup_tenants};
    let tenants = a.tenants.iter().map(|t| t.parse::<TcpRef>()).collect::<Result<Vec<_>, _>>()?;
    // Open the repository first: a wrong key must fail before the cluster is read.
    let repo = g.open_repo().await?;
    let kube = a.kube.connect(g).await?;
    let opts = TenantsBackupOptions {
        tenants,
        all: a.all,
        tags: a.tags.into_iter().collect(),
        endpoints: a.endpoints.into_iter().collect(),
    };
    let pb = output::bar(g.format, g.quiet, None, "tenant data");
    let notify = super::notifier(g);
    let m = backup_tenants(&repo, &kube, &opts, output::progress(&pb), &notify).await;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let m = m?;
    if g.format == Format::Json {
        output::json(&m);
    } else {
        super::print_done(g, &m, &repo.location());
        if let kmdr_core::SourceInfo::KamajiTenants(k) = &m.source {
            for t in &k.tenants {
                let filled = if t.filled_from_status.is_empty() {
                    String::new()
                } else {
                    format!(" ({} filled from status)", t.filled_from_status.join(", "))
                };
                eprintln!(
                    "  {}/{}: schema {}{filled}, {} keys, {} Secrets, datastore {}",
                    t.namespace,
                    t.name,
                    t.schema,
                    t.data.key_count,
                    t.secrets.len(),
                    t.datastore
                );
            }
        }
    }
    Ok(0)
}
