//! `kmdr backups list|show`.

use super::UsageError;
use crate::cli::{BackupsCommand, GlobalArgs, ListArgs, ShowArgs};
use crate::output::{self, Format};
use anyhow::Result;
use futures::StreamExt;
use kmdr_core::{human_bytes, human_duration};
use serde_json::json;

pub async fn run(g: &GlobalArgs, c: BackupsCommand) -> Result<i32> {
    match c {
        BackupsCommand::List(a) => list(g, a).await,
        BackupsCommand::Show(a) => show(g, a).await,
        BackupsCommand::Points => points(g).await,
    }
}

async fn points(g: &GlobalArgs) -> Result<i32> {
    let repo = g.open_repo_to_read("backups to find their points").await?;
    let all = kmdr_repo::point::restorable_points(&repo).await?;
    if g.format == Format::Json {
        output::json(&all);
        return Ok(0);
    }
    if all.is_empty() {
        eprintln!("no etcd or tenant backups in {}: nothing to restore to a point", repo.location());
        return Ok(0);
    }
    let t = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let now = chrono::Utc::now();
    for s in &all {
        println!("{}", s.series);
        let bases: Vec<String> = s.bases.iter().map(|(id, r)| format!("{r} ({id})")).collect();
        println!("  full backups at revisions {}", bases.join(", "));
        match s.newest_segment {
            None => println!("  no delta segments: only the full backups' own points (is `kmdr serve` running?)"),
            Some(w) => println!(
                "  {} delta segments, newest written {} ({} ago)",
                s.segments,
                t(w),
                human_duration((now - w).to_std().unwrap_or_default())
            ),
        }
        for w in &s.windows {
            println!(
                "  restorable: revisions {}..={}, --at {} .. {}",
                w.from_revision,
                w.to_revision,
                t(w.from_time),
                t(w.to_time)
            );
        }
        for (a, b) in &s.gaps {
            println!("  GAP: revisions {a}..={b} are in no segment: points in it need a full backup taken after it");
        }
    }
    Ok(0)
}

/// Every kind of backup kmdr takes (`--kind`).
const KINDS: [&str; 6] = [
    kmdr_etcd::snapshotter::KIND,
    kmdr_datastore::KIND,
    kmdr_kube::kamaji::KIND,
    kmdr_kube::platform::KIND,
    kmdr_kube::volumes::KIND,
    kmdr_kube::node_files::KIND,
];

/// Whether the backup `m` is of `unit`: its series (`tenant/t1`), the series
/// without its first part (`t1`, `kmetal-system/kmetal`), or `etcd` for any
/// under-cluster etcd snapshot (the unit's name in plans, status and serve).
fn of_unit(m: &kmdr_core::Manifest, unit: &str) -> bool {
    m.series == unit
        || m.series.split_once('/').is_some_and(|(_, rest)| rest == unit)
        || (unit == "etcd" && m.id.kind() == kmdr_etcd::snapshotter::KIND)
}

async fn list(g: &GlobalArgs, a: ListArgs) -> Result<i32> {
    if let Some(k) = a.kind.as_deref().filter(|k| !KINDS.contains(k)) {
        return Err(UsageError(format!("--kind {k:?} is not a kind of backup: use one of {}", KINDS.join(", "))).into());
    }
    let repo = g.open_repo().await?;
    let of_kind = |i: &kmdr_core::BackupId| a.kind.as_deref().is_none_or(|k| i.kind() == k);
    if repo.access() == kmdr_repo::crypto::Access::WriteOnly {
        let ids: Vec<_> = repo.list_backups().await?.into_iter().filter(of_kind).collect();
        return list_names_only(g, &ids);
    }
    // The newest `--last` rows, read newest first, several manifests at once;
    // a unit named by its series is looked up in the series index, and
    // without a unit only the newest ids are listed (a large repository on
    // S3 takes a request per 1,000 ids).
    let limit = if a.all { usize::MAX } else { a.last };
    let indexed = match a.unit.as_deref().filter(|u| u.contains('/')) {
        Some(series) => repo.indexed_backups(series, a.kind.as_deref()).await?,
        None => Vec::new(),
    };
    // Filtered by unit after reading: the older backups not read may be of any unit.
    let of_any_unit = a.unit.is_some() && indexed.is_empty();
    // Newest first.
    let (candidates, complete): (Vec<_>, bool) = if !indexed.is_empty() {
        (indexed, true)
    } else if a.all || a.unit.is_some() {
        (repo.list_backups().await?.into_iter().filter(of_kind).rev().collect(), true)
    } else {
        let (ids, complete) = repo.newest_backups(limit, of_kind).await?;
        (ids.into_iter().rev().collect(), complete)
    };
    let total = candidates.len();
    let mut rows = Vec::new();
    // The series of the kind's backups, to name them when --unit matches none.
    let mut series = std::collections::BTreeSet::new();
    let mut reads =
        futures::stream::iter(candidates).map(|id| async { (repo.load_manifest(&id).await, id) }).buffered(16);
    let mut read = 0usize;
    while rows.len() < limit
        && let Some((m, id)) = reads.next().await
    {
        read += 1;
        match m {
            Ok(mut m) => {
                // A row shows the summary only: the file chunk lists and catalog
                // links of 100,000 manifests (--all) would hold hundreds of MiB.
                m.files = Vec::new();
                m.links = None;
                series.insert(m.series.clone());
                if a.unit.as_deref().is_none_or(|u| of_unit(&m, u)) {
                    rows.push(Ok(m));
                }
            }
            // A damaged manifest names no series: shown whatever --unit says, it needs attention.
            Err(kmdr_repo::Error::Damaged { reason, .. }) => rows.push(Err((id, reason))),
            // Forgotten since the listing.
            Err(kmdr_repo::Error::BackupNotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    drop(reads);
    rows.reverse();
    let shown: std::collections::BTreeSet<String> =
        rows.iter().map(|r| r.as_ref().map(|m| m.id.to_string()).unwrap_or_else(|(id, _)| id.to_string())).collect();
    let proofs = repo.latest_proofs_of(&shown).await?;
    let proof_of = |id: &kmdr_core::BackupId| proofs.get(&id.to_string());
    let unread = total - read;
    // On stderr in both formats: stdout stays a table or a JSON array.
    let shown_n = rows.len();
    let truncated = || {
        if unread > 0 && !g.quiet {
            eprintln!(
                "note: the newest {shown_n} shown; {unread}{} older backups{} not read: --last N or --all for more",
                if complete { "" } else { " or more" },
                if of_any_unit { " (of any unit)" } else { "" }
            );
        }
    };
    if g.format == Format::Json {
        truncated();
        let v: Vec<_> = rows
            .iter()
            .map(|r| match r {
                Ok(m) => json!({"id": m.id, "layer": m.layer, "series": m.series, "started_at": m.started_at, "duration_ms": m.duration_ms,
                    "bytes": m.stats.bytes, "added_bytes": m.stats.new_stored_bytes, "tags": m.tags, "source": m.source,
                    "restore_proof": proof_of(&m.id).map(|p| json!({"outcome": p.outcome, "checked_at": p.checked_at, "reason": p.reason}))}),
                Err((id, reason)) => json!({"id": id, "damaged": reason}),
            })
            .collect();
        output::json(&v);
        return Ok(0);
    }
    if rows.is_empty() {
        let of_kind = a.kind.as_ref().map(|k| format!(" of kind {k}")).unwrap_or_default();
        match &a.unit {
            Some(u) if !series.is_empty() => eprintln!(
                "no backups of unit {u}{of_kind} in {}; the units it holds: {} (pass one of these to --unit)",
                repo.location(),
                series.into_iter().collect::<Vec<_>>().join(", ")
            ),
            Some(u) => eprintln!("no backups of unit {u}{of_kind} in {}", repo.location()),
            None => eprintln!("no backups{of_kind} in {}", repo.location()),
        }
        return Ok(0);
    }
    println!("{:<36} {:<21} {:>10} {:>10} {:>8} {:<14} SOURCE", "ID", "LAYER", "SIZE", "ADDED", "TOOK", "RESTORABLE");
    let now = chrono::Utc::now();
    for r in rows {
        match r {
            Ok(m) => println!(
                "{:<36} {:<21} {:>10} {:>10} {:>8} {:<14} {}{}",
                m.id.to_string(),
                m.layer.as_str(),
                human_bytes(m.stats.bytes),
                human_bytes(m.stats.new_stored_bytes),
                human_duration(std::time::Duration::from_millis(m.duration_ms)),
                restorable_cell(proof_of(&m.id), now),
                m.source_summary(),
                if m.tags.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
                }
            ),
            Err((id, reason)) => println!("{:<36} DAMAGED manifest: {reason} (run `kmdr verify {id}`)", id.to_string()),
        }
    }
    truncated();
    Ok(0)
}

/// The RESTORABLE column: the newest restore proof's outcome and age.
fn restorable_cell(p: Option<&kmdr_repo::proofs::Proof>, now: chrono::DateTime<chrono::Utc>) -> String {
    use kmdr_repo::proofs::Outcome;
    let Some(p) = p else { return "not proven".into() };
    let age = human_duration((now - p.checked_at).to_std().unwrap_or_default());
    match p.outcome {
        Outcome::Restorable => format!("yes, {age} ago"),
        Outcome::Unrestorable => format!("NO, {age} ago"),
        Outcome::NotChecked => "not checked".into(),
    }
}

async fn show(g: &GlobalArgs, a: ShowArgs) -> Result<i32> {
    let repo = g.open_repo_to_read("a backup's details").await?;
    let id = repo.resolve(&a.id, None).await?;
    let m = repo.load_manifest(&id).await?;
    let mut proofs = Vec::new();
    for key in repo.list_proofs(Some(&id)).await? {
        proofs.push(repo.get_proof(&key).await?);
    }
    if g.format == Format::Json {
        let mut v = serde_json::to_value(&m)?;
        v["restore_proofs"] = serde_json::to_value(&proofs)?;
        output::json(&v);
        return Ok(0);
    }
    println!("backup      {}", m.id);
    println!("layer       {}", m.layer);
    println!("series      {}", m.series);
    println!("source      {}", m.source_summary());
    println!("host        {} (kmdr {})", m.hostname, m.kmdr_version);
    println!("started     {}", m.started_at.to_rfc3339());
    println!(
        "finished    {} ({})",
        m.finished_at.to_rfc3339(),
        human_duration(std::time::Duration::from_millis(m.duration_ms))
    );
    for (k, v) in &m.tags {
        println!("tag         {k}={v}");
    }
    if let kmdr_core::SourceInfo::EtcdSnapshot(e) = &m.source {
        println!(
            "etcd        version {} cluster {} member {} revision {} keys {} db size {}",
            e.etcd_version,
            e.cluster_id,
            e.member_id,
            e.revision,
            e.key_count,
            human_bytes(e.db_size as u64)
        );
        println!("etcd sha256 {}", e.etcd_sha256);
    }
    for f in &m.files {
        println!("file        {} {} in {} chunks, sha256 {}", f.name, human_bytes(f.size), f.chunks.len(), f.sha256);
    }
    println!("added       {} new chunks, {} stored", m.stats.new_chunks, human_bytes(m.stats.new_stored_bytes));
    if proofs.is_empty() {
        println!("restorable  not proven: run `kmdr verify --restore {}`", m.id);
    }
    for p in &proofs {
        let what = p.reason.clone().unwrap_or_else(|| {
            p.checks.iter().map(|c| format!("{} {}", c.what, c.found)).collect::<Vec<_>>().join(", ")
        });
        println!(
            "restorable  {} at {} into {}: {what}",
            p.outcome.as_str(),
            p.checked_at.to_rfc3339(),
            p.restored_into
        );
    }
    Ok(0)
}

/// `backups list` with a write-only key: what the names say (id, kind,
/// time); the details are sealed.
fn list_names_only(g: &GlobalArgs, ids: &[kmdr_core::BackupId]) -> Result<i32> {
    if g.format == Format::Json {
        let rows: Vec<_> = ids
            .iter()
            .map(|i| serde_json::json!({"id": i.to_string(), "kind": i.kind(), "started_at": i.time()}))
            .collect();
        output::json(&rows);
        return Ok(0);
    }
    println!("{:<36}  {:<14}  STARTED", "ID", "KIND");
    for i in ids {
        println!("{:<36}  {:<14}  {}", i.to_string(), i.kind(), i.time().format("%Y-%m-%d %H:%M:%SZ"));
    }
    if !g.quiet {
        eprintln!("note: a write-only key reads names only: sizes, sources and restore proofs need the full key");
    }
    Ok(0)
}
