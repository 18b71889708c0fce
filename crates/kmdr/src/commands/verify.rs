//! `kmdr verify [--restore]`.

use crate::cli::{GlobalArgs, VerifyArgs};
use crate::exit;
use crate::output::{self, Format};
use anyhow::Result;
use kmdr_core::{BackupId, human_bytes, human_duration};
use kmdr_plan::prove::{PROVABLE_KINDS, ProveOptions, prove};
use kmdr_repo::Repository;
use kmdr_repo::proofs::{Outcome, Proof};
use std::hash::{BuildHasher, RandomState};

pub async fn run(g: &GlobalArgs, a: VerifyArgs) -> Result<i32> {
    let repo = g.open_repo_to_read("backups to verify them").await?;
    let ids = if a.ids.is_empty() {
        None
    } else {
        let mut v = Vec::new();
        for q in &a.ids {
            v.push(repo.resolve(q, None).await?);
        }
        Some(v)
    };
    // A test restore of an etcd or tenant backup reads, authenticates and
    // matches every chunk itself (and the file's sha256): the byte pass
    // skips those backups rather than read them twice.
    let chosen = if a.restore { Some(choose(&repo, &a, ids.clone()).await?) } else { None };
    let restored_bytes =
        |id: &BackupId| chosen.as_ref().is_some_and(|c| c.contains(id)) && PROVABLE_KINDS.contains(&id.kind());
    let byte_ids = match (&ids, &chosen) {
        (_, None) => ids.clone(),
        (Some(ids), Some(_)) => Some(ids.iter().filter(|i| !restored_bytes(i)).cloned().collect()),
        (None, Some(_)) => Some(repo.list_backups().await?.into_iter().filter(|i| !restored_bytes(i)).collect()),
    };
    let pb = output::bar(g.format, g.quiet, None, "verifying");
    let report = kmdr_repo::checker::verify(&repo, byte_ids, output::progress(&pb)).await?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let damaged: Vec<_> = report.damaged().collect();
    let proofs = match chosen {
        Some(c) => prove_all(g, &repo, &a, c).await?,
        None => Vec::new(),
    };
    let unrestorable = proofs.iter().filter(|p| p.outcome == Outcome::Unrestorable).count();
    // Under S3 Object Lock: what these backups need must still be retained.
    let retention = kmdr_repo::object_lock::audit::audit(&repo, ids.as_deref()).await?;
    let unretained = retention.as_ref().map_or(0, |r| r.problems.len());
    // The catalog itself: backups or segments deleted, forgotten ones put back.
    let catalog = kmdr_repo::catalog::audit(&repo).await?;
    if g.format == Format::Json {
        let mut out = if a.restore {
            serde_json::json!({"bytes": report, "restores": proofs})
        } else {
            serde_json::to_value(&report)?
        };
        if let (Some(r), Some(o)) = (&retention, out.as_object_mut()) {
            o.insert("retention".into(), serde_json::to_value(r)?);
        }
        if let Some(o) = out.as_object_mut() {
            o.insert("catalog".into(), serde_json::to_value(&catalog)?);
        }
        output::json(&out);
    } else {
        if let Some(r) = &retention {
            print_retention(r);
        }
        for line in catalog.lines() {
            println!("TAMPERED {line}");
        }
        for b in &damaged {
            println!("DAMAGED {}", b.id);
            for p in &b.problems {
                println!("  {p}");
            }
        }
        println!(
            "checked {} backups, {} chunks, {}: {} damaged",
            report.backups.len(),
            report.chunks_checked,
            human_bytes(report.bytes_checked),
            damaged.len()
        );
        if report.unreferenced_chunks > 0 {
            println!(
                "{} chunks belong to no backup (left by interrupted backups); `kmdr prune` removes them",
                report.unreferenced_chunks
            );
        }
        if a.restore {
            let count = |o: Outcome| proofs.iter().filter(|p| p.outcome == o).count();
            println!(
                "test-restored {} backups (their bytes checked by the restore itself): {} restorable, {unrestorable} unrestorable, {} not checked",
                proofs.len(),
                count(Outcome::Restorable),
                count(Outcome::NotChecked)
            );
        }
        if !damaged.is_empty() || unrestorable > 0 {
            eprintln!("restore from an intact backup; `kmdr forget` the damaged ones once you no longer need them");
        }
    }
    let clean = damaged.is_empty() && unrestorable == 0 && unretained == 0 && catalog.is_clean();
    Ok(if clean { exit::OK } else { exit::CHECK_FAILED })
}

/// `UNRETAINED object  why`, one per object S3 Object Lock no longer protects.
fn print_retention(r: &kmdr_repo::object_lock::audit::RetentionAudit) {
    for p in &r.problems {
        println!("UNRETAINED {}  {}", p.object, p.problem);
    }
    println!("Object Lock: {} objects checked, {} no longer retained", r.checked, r.problems.len());
    if !r.problems.is_empty() {
        println!("run `kmdr repo extend-locks` (admin credentials) to lock them again");
    }
    if let Some(first) = r.due_first {
        println!(
            "{} objects are retained only until {} or a little later: `kmdr repo extend-locks` (or kmdr serve) moves them",
            r.due,
            first.format("%Y-%m-%dT%H:%M:%SZ")
        );
    }
}

/// The backups to test-restore: those named (else all), `--new` ones only,
/// `--sample N` of them.
async fn choose(repo: &Repository, a: &VerifyArgs, ids: Option<Vec<BackupId>>) -> Result<Vec<BackupId>> {
    let mut chosen = match ids {
        Some(ids) => ids,
        None => repo.list_backups().await?,
    };
    if a.new {
        let proven = repo.latest_proofs().await?;
        chosen.retain(|id| !proven.contains_key(&id.to_string()));
    }
    if let Some(n) = a.sample {
        // A random pick without another dependency: order by a randomly keyed hash.
        let seed = RandomState::new();
        chosen.sort_by_key(|id| seed.hash_one(id.to_string()));
        chosen.truncate(n);
        chosen.sort();
    }
    Ok(chosen)
}

/// Test-restore `chosen` one after the other, each line printed as it is done.
async fn prove_all(g: &GlobalArgs, repo: &Repository, a: &VerifyArgs, chosen: Vec<BackupId>) -> Result<Vec<Proof>> {
    let o = ProveOptions {
        etcd: a.etcd.clone(),
        etcdutl: a.etcdutl.clone(),
        scratch_dir: None,
        same_driver: a.target_driver == "same",
        helm: a.helm.clone(),
        kube: a.kube.target(g),
    };
    let mut out = Vec::new();
    for id in &chosen {
        let pb = output::bar(g.format, g.quiet, None, &format!("test-restoring {id}"));
        let proof = prove(repo, id, &o).await;
        if let Some(pb) = pb {
            pb.finish_and_clear();
        }
        let proof = proof.map_err(|e| anyhow::Error::new(e).context(format!("test restore of {id}")))?;
        if g.format != Format::Json {
            println!("{}", line(&proof));
        }
        out.push(proof);
    }
    Ok(out)
}

/// `RESTORABLE id  into ...  keys 200000, ...  2.3s`, or why not.
fn line(p: &Proof) -> String {
    let took = human_duration(std::time::Duration::from_millis(p.duration_ms));
    match p.outcome {
        Outcome::Restorable => {
            let short = |v: &str| if v.len() == 64 { format!("{}…", &v[..12]) } else { v.to_string() };
            let found: Vec<String> = p.checks.iter().map(|c| format!("{} {}", c.what, short(&c.found))).collect();
            format!("RESTORABLE   {}  into {}: {} ({took})", p.backup, p.restored_into, found.join(", "))
        }
        Outcome::Unrestorable => {
            format!("UNRESTORABLE {}  {} ({took})", p.backup, p.reason.as_deref().unwrap_or("a check failed"))
        }
        Outcome::NotChecked => format!("NOT CHECKED  {}  {}", p.backup, p.reason.as_deref().unwrap_or("")),
    }
}
