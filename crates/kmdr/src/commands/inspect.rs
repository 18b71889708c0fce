//! `kmdr inspect`: the objects of an under-cluster etcd backup, read offline.

use crate::cli::{GlobalArgs, InspectArgs};
use crate::output::{self, Format};
use anyhow::Result;
use kmdr_etcd::snapshotter::KIND;
use kmdr_kube::inspect::{self, Inventory, encryption::EncryptionKeys, objects::ResourceKind};
use serde_json::{Value, json};

pub async fn run(g: &GlobalArgs, a: InspectArgs) -> Result<i32> {
    // Bad input is refused before anything is fetched.
    let keys = match (&a.encryption_config, &a.encryption_config_from) {
        (Some(file), _) => Some(EncryptionKeys::load(file)?),
        (None, Some(id)) => Some(kept_keys(g, id).await?),
        (None, None) => None,
    };
    let get = match &a.get {
        Some(v) => Some((ResourceKind::resolve(&v[0])?, v[1].clone())),
        None => None,
    };
    let kinds = inspect::listing_kinds(&a.kind)?;
    if let Some((kind, name)) = &get {
        kind.key_of(name)?;
    }

    // The snapshot: a plain file given by the user, or fetched from the repository.
    let (fetched, path, label) = match &a.snapshot_file {
        Some(p) => (None, p.clone(), p.display().to_string()),
        None => {
            let repo = g.open_repo_to_read("a backup to inspect it").await?;
            let wanted = a.id.as_deref().expect("clap requires ID without --snapshot-file");
            // Among etcd backups first; an id of another kind is then named
            // as such by load_snapshot_manifest rather than "not found".
            let id = match repo.resolve(wanted, Some(KIND)).await {
                Err(kmdr_repo::Error::BackupNotFound { .. }) if wanted != "latest" => {
                    repo.resolve(wanted, None).await?
                }
                r => r?,
            };
            let m = kmdr_etcd::restorer::load_snapshot_manifest(&repo, &id).await?;
            let size = m.file(kmdr_etcd::snapshotter::SNAPSHOT_FILE).map(|f| f.size);
            let pb = output::bar(g.format, g.quiet, size, "fetching snapshot");
            let snap = inspect::fetch_snapshot(&repo, &id, output::progress(&pb)).await?;
            if let Some(pb) = pb {
                pb.finish_and_clear();
            }
            let path = snap.path.clone();
            (Some(snap), path, id.to_string())
        }
    };

    let path2 = path.clone();
    if let Some((kind, name)) = get {
        let got = tokio::task::spawn_blocking(move || inspect::get(&path2, &kind, &name, keys.as_ref())).await??;
        drop(fetched);
        match g.format {
            Format::Json => output::json(&got.manifest),
            _ => print!("{}", kmdr_kube::platform::to_yaml(&got.manifest)),
        }
        return Ok(0);
    }
    let inv = tokio::task::spawn_blocking(move || inspect::list(&path2, &kinds, keys.as_ref())).await??;
    drop(fetched);
    match g.format {
        Format::Json => output::json(&json!({"backup": label, "inventory": inv})),
        Format::Yaml => print!("{}", kmdr_kube::platform::to_yaml(&json!({"backup": label, "inventory": inv}))),
        Format::Text => print_text(&label, &inv),
    }
    Ok(0)
}

/// The EncryptionConfiguration kept in a node-files backup.
async fn kept_keys(g: &GlobalArgs, id: &str) -> Result<EncryptionKeys> {
    use kmdr_kube::node_files;
    let repo = g.open_repo_to_read("a backup to inspect it").await?;
    let m = repo.load_manifest(&repo.resolve(id, Some(node_files::KIND)).await?).await?;
    let (path, text) = node_files::encryption_config_of(&repo, &m).await?;
    let label = format!("{path} of node-files backup {}", m.id);
    Ok(EncryptionKeys::from_text(std::path::Path::new(&label), &text)?)
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a.iter().map(|x| cell(Some(x))).collect::<Vec<_>>().join(","),
        Some(other) => other.to_string(),
    }
}

/// The columns of each kind, as (header, detail field).
fn columns(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        "TenantControlPlane" => &[
            ("DATASTORE", "dataStore"),
            ("SCHEMA", "dataStoreSchema"),
            ("USER", "dataStoreUsername"),
            ("VERSION", "version"),
            ("STATUS", "status"),
        ],
        "DataStore" => &[("DRIVER", "driver"), ("ENDPOINTS", "endpoints")],
        "Cluster" => &[("CONTROL PLANE", "controlPlane"), ("PHASE", "phase")],
        "KamajiControlPlane" => &[("VERSION", "version"), ("DATASTORE", "dataStoreName"), ("READY", "ready")],
        "HelmRelease" => &[
            ("RELEASE", "release"),
            ("REVISION", "revision"),
            ("STATUS", "status"),
            ("CHART", "chart"),
            ("VERSION", "version"),
        ],
        "Secret" => &[("TYPE", "type"), ("KEYS", "keys")],
        _ => &[],
    }
}

fn print_text(label: &str, inv: &Inventory) {
    println!("{label}: etcd revision {}, {} revision entries read", inv.revision, inv.entries_scanned);
    let mut kinds: Vec<&str> = Vec::new();
    for o in &inv.objects {
        if !kinds.contains(&o.kind.as_str()) {
            kinds.push(&o.kind);
        }
    }
    if kinds.is_empty() {
        println!("\nnone of the asked kinds in this snapshot");
    }
    for kind in kinds {
        let cols = columns(kind);
        let mut rows = vec![
            std::iter::once("NAMESPACE/NAME".to_string())
                .chain(cols.iter().map(|(h, _)| h.to_string()))
                .chain(["ENCRYPTED".into()])
                .collect::<Vec<_>>(),
        ];
        for o in inv.objects.iter().filter(|o| o.kind == kind) {
            let name = match &o.namespace {
                Some(ns) => format!("{ns}/{}", o.name),
                None => o.name.clone(),
            };
            let enc =
                o.encrypted.as_ref().map(|h| format!("{}:{}", h.provider, h.key_name)).unwrap_or_else(|| "-".into());
            rows.push(
                std::iter::once(name).chain(cols.iter().map(|(_, f)| cell(o.details.get(*f)))).chain([enc]).collect(),
            );
        }
        // Drop the ENCRYPTED column when nothing is.
        if rows[1..].iter().all(|r| r.last().is_some_and(|c| c == "-")) {
            rows.iter_mut().for_each(|r| {
                r.pop();
            });
        }
        let widths: Vec<usize> =
            (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
        println!("\n{kind} ({})", rows.len() - 1);
        for r in rows {
            let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            println!("  {}", line.join("  ").trim_end());
        }
    }
    if inv.objects.iter().any(|o| o.encrypted.is_some()) {
        println!(
            "\nencrypted at rest: pass --encryption-config with the API server's EncryptionConfiguration, or --encryption-config-from with the node-files backup that keeps it, to decrypt"
        );
    }
}
