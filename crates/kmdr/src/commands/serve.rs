//! `kmdr serve --plan FILE`: the scheduler service (crates/kmdr-serve) with
//! its metrics endpoint, stopped cleanly by SIGTERM or Ctrl-C.

use super::UsageError;
use crate::cli::{GlobalArgs, ServeArgs};
use crate::output::{self, Format};
use anyhow::Result;
use kmdr_core::human_duration;
use kmdr_datastore::capture::CaptureOptions;
use kmdr_plan::LayerSource;
use kmdr_serve::lease::LeaseConfig;
use kmdr_serve::{Metrics, ServeOptions, ShardLeases};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub async fn run(g: &GlobalArgs, a: ServeArgs) -> Result<i32> {
    let plan = super::plan::load(&a.plan)?;
    let g = g.with_plan(&plan);
    let policy = a.keep.policy();
    if a.flush_every < Duration::from_millis(50) {
        return Err(UsageError(format!("--flush-every {:?} is too short: use 50ms or more", a.flush_every)).into());
    }
    // The plan's `verify:` block; --verify-every turns it on or changes its period.
    let verify = match (&plan.verify, a.verify_every) {
        (Some(v), Some(every)) => Some(kmdr_plan::VerifySpec { every, ..v.clone() }),
        (Some(v), None) => Some(v.clone()),
        (None, Some(every)) => Some(kmdr_plan::VerifySpec::every(every)),
        (None, None) => None,
    };
    let opts = ServeOptions {
        capture: CaptureOptions {
            flush_every: a.flush_every,
            max_bytes: a.flush_mib.max(1) << 20,
            ..Default::default()
        },
        full_every: a.full_every,
        policy,
        forget_every: a.forget_every,
        tags: [("plan".to_string(), plan.name.clone()), ("by".to_string(), "serve".to_string())].into(),
        grace: a.grace,
        prove: kmdr_plan::prove::ProveOptions {
            etcd: a.etcd.clone(),
            etcdutl: a.etcdutl.clone(),
            scratch_dir: None,
            same_driver: verify.as_ref().is_some_and(|v| v.same_driver),
            helm: a.helm.clone(),
            kube: Default::default(),
        },
        verify: verify.clone(),
        compact: kmdr_serve::CompactOptions {
            after_events: a.compact_after_events,
            after_bytes: a.compact_after_bytes,
            after_percent: a.compact_after_percent,
            tools: kmdr_plan::synthesis::SynthesisTools {
                etcd: a.etcd.clone(),
                etcdutl: a.etcdutl.clone(),
                scratch_dir: None,
            },
        },
        ..Default::default()
    };
    if a.dry_run {
        let units: Vec<serde_json::Value> = plan
            .layers
            .iter()
            .filter(|l| !matches!(l.source, LayerSource::Targets))
            .map(|l| {
                let what = match &l.source {
                    LayerSource::UnderCluster { node_files, .. } => format!(
                        "etcd: full snapshots and delta capture of the whole keyspace{}",
                        if node_files.is_some() { "; node-files: full backups" } else { "" }
                    ),
                    LayerSource::Helm(h) => format!("{}: full backups", h.unit()),
                    LayerSource::Tenants { datastores: ds, .. } => ds
                        .iter()
                        .map(|d| format!("{}: each tenant, full backups{}", d.name, if d.url.starts_with("etcd") { " and delta capture" } else { "" }))
                        .collect::<Vec<_>>()
                        .join("; "),
                    LayerSource::Volumes(vs) => vs
                        .iter()
                        .map(|v| format!("{}: {} backups through the tool", v.unit(), v.entry.provider.name()))
                        .collect::<Vec<_>>()
                        .join("; "),
                    LayerSource::Targets => unreachable!(),
                };
                json!({"layer": l.layer, "rpo_s": l.rpo.as_secs(), "full_every_s": a.full_every.unwrap_or(l.rpo).as_secs(), "units": what})
            })
            .collect();
        if g.format == Format::Json {
            output::json(
                &json!({"dry_run": true, "repository": g.repo, "layers": units, "retention": policy, "flush_every_ms": a.flush_every.as_millis() as u64, "lease": a.lease, "shards": shards_json(&plan, a.shards), "verify": verify, "compaction": {"after_events": opts.compact.after_events, "after_bytes": opts.compact.after_bytes, "after_percent": opts.compact.after_percent, "min_share_events": kmdr_serve::MIN_SHARE_EVENTS}}),
            );
        } else {
            println!("kmdr serve would run (dry run, nothing started):");
            for u in &units {
                println!(
                    "  {}: full backup every {} ({}), target RPO {}",
                    u["layer"].as_str().unwrap_or("?"),
                    human_duration(Duration::from_secs(u["full_every_s"].as_u64().unwrap_or(0))),
                    u["units"].as_str().unwrap_or(""),
                    human_duration(Duration::from_secs(u["rpo_s"].as_u64().unwrap_or(0)))
                );
            }
            println!("  delta segments every {} or {} MiB", human_duration(a.flush_every), a.flush_mib);
            println!("  {}", compaction_line(&opts.compact));
            if let Some(l) = &a.lease {
                match a.shards {
                    1 => println!(
                        "  only while holding Lease {l} (taken over after {} of silence)",
                        human_duration(a.lease_duration)
                    ),
                    n => {
                        println!(
                            "  divided among the replicas in {n} shards, each on Lease {l}-shard-I (taken over after {} of silence):",
                            human_duration(a.lease_duration)
                        );
                        for (i, keys) in kmdr_serve::shards::assignment(&plan, n) {
                            let keys = if keys.is_empty() { "nothing".to_string() } else { keys.join(", ") };
                            let repo = if i == 0 { " (and retention, lock extension, drill reports)" } else { "" };
                            println!("    shard {i}: {keys}{repo}");
                        }
                    }
                }
            }
            match &verify {
                Some(v) => println!(
                    "  restore proofs every {}: up to {} newest unproven backups per unit, {} at a time, at nice {}, tenant data into a scratch {}",
                    human_duration(v.every),
                    v.sample,
                    v.concurrency,
                    v.nice,
                    if v.same_driver { "server of its own driver" } else { "etcd" }
                ),
                None => println!("  restore proofs: none (no `verify:` in the plan, no --verify-every)"),
            }
            match policy.is_empty() {
                true => println!("  retention: none (no --keep-* rule)"),
                false => println!("  retention every {}: {policy:?}", human_duration(a.forget_every)),
            }
        }
        return Ok(0);
    }
    let lease = match &a.lease {
        None => None,
        Some(l) => {
            let Some((namespace, name)) =
                l.split_once('/').filter(|(n, m)| !n.is_empty() && !m.is_empty() && !m.contains('/'))
            else {
                return Err(UsageError(format!("--lease {l:?}: write NAMESPACE/NAME, e.g. kmdr/kmdr-serve")).into());
            };
            if a.lease_duration < Duration::from_secs(3) {
                return Err(UsageError(format!(
                    "--lease-duration {:?} is too short: use 3s or more (30s is usual)",
                    a.lease_duration
                ))
                .into());
            }
            let identity = a
                .lease_identity
                .clone()
                .or_else(|| std::env::var("POD_NAME").ok().filter(|p| !p.is_empty()))
                .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
            if a.shards > 1 && !is_dns_label(&identity) {
                return Err(UsageError(format!(
                    "lease identity {identity:?} cannot name a member Lease: with --shards use lowercase letters, digits, '-' and '.' (a pod name), e.g. --lease-identity kmdr-0"
                ))
                .into());
            }
            let kube = a.kube.connect(&g).await?;
            let config = LeaseConfig {
                namespace: namespace.into(),
                name: name.into(),
                identity,
                duration: a.lease_duration,
                labels: Default::default(),
            };
            Some(ShardLeases::new(kube, config, a.shards))
        }
    };
    let repo = g.open_repo().await?;
    let metrics = Arc::new(Metrics::new());
    let listener = kmdr_serve::http::bind(a.metrics_addr)
        .await
        .map_err(|e| UsageError(format!("cannot listen on {}: {e}; pick another --metrics-addr", a.metrics_addr)))?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stopping: writing what the captures hold, letting a backup in flight finish");
        let _ = tx.send(true);
    });
    tokio::spawn(kmdr_serve::http::run(listener, metrics.clone(), rx.clone()));
    if g.chatty() {
        eprintln!(
            "kmdr serve: plan {} ({}), repository {}, metrics on http://{}/metrics",
            a.plan.display(),
            plan.name,
            repo.location(),
            a.metrics_addr
        );
    }
    match lease {
        None => kmdr_serve::serve(repo, plan, opts, metrics, rx).await?,
        Some(leases) => kmdr_serve::serve_sharded(repo, plan, opts, metrics, rx, leases).await?,
    }
    Ok(0)
}

/// What `--compact-after-*` make serve do, for the dry run.
fn compaction_line(c: &kmdr_serve::CompactOptions) -> String {
    let mut when = Vec::new();
    if c.after_events > 0 {
        when.push(format!("{} changes", c.after_events));
    }
    if c.after_bytes > 0 {
        when.push(format!("{} of segments", kmdr_core::human_bytes(c.after_bytes)));
    }
    let percent = c.after_percent;
    if percent > 0 {
        when.push(format!("changes for {percent}% of its keys (at least {})", kmdr_serve::MIN_SHARE_EVENTS));
    }
    match when.is_empty() {
        true => "compaction: never (--compact-after-events 0 --compact-after-bytes 0 --compact-after-percent 0)".into(),
        false => format!(
            "compaction: a full backup synthesised from the newest one and its delta segments once {} follow it (full key only)",
            when.join(" or ")
        ),
    }
}

/// Which units each shard holds, for `--dry-run -o json`.
fn shards_json(plan: &kmdr_plan::Plan, n: u32) -> serde_json::Value {
    let shards = kmdr_serve::shards::assignment(plan, n);
    json!({"count": n, "units": shards.into_iter().map(|(i, keys)| json!({"shard": i, "units": keys})).collect::<Vec<_>>()})
}

/// Whether `s` can be part of a Lease's name (an RFC 1123 subdomain, as pod names are).
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The machine's name (the pod's, in a pod), for the Lease identity.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kmdr".into())
}
