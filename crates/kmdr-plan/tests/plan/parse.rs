//! `kmdr.yaml` parsing: the examples parse into the expected plan, and each
//! kind of mistake is reported at its line and column with advice.

use kmdr_core::Layer;
use kmdr_plan::parse::render;
use kmdr_plan::{LayerSource, Phase, Pos, Problem, TenantSelector, parse_plan};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn example(name: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, text)
}

/// The problems of a plan that must not parse.
fn problems(text: &str) -> Vec<Problem> {
    match parse_plan(Path::new("kmdr.yaml"), text) {
        Ok(plan) => panic!("expected problems, got a plan: {plan:#?}"),
        Err(problems) => problems,
    }
}

/// The single problem of a plan, checked to be at `line:column` and to say
/// every one of `says`.
fn one_problem(text: &str, line: usize, column: usize, says: &[&str]) -> Problem {
    let all = problems(text);
    assert_eq!(all.len(), 1, "expected one problem, got:\n{}", render(Path::new("kmdr.yaml"), &all));
    let p = all.into_iter().next().unwrap();
    assert_eq!(p.pos, Pos { line, column }, "{p}");
    for s in says {
        assert!(p.message.contains(s), "{p:?} does not say {s:?}");
    }
    p
}

const H: u64 = 3600;

/// A small valid plan; the bad-input tests each break one thing in it.
const BASE: &str = "\
version: 1
name: lab
repository:
  url: ./repo
layers:
  under-cluster:
    etcd:
      endpoints: [http://127.0.0.1:2379]
";

#[test]
fn full_example_parses() {
    let (path, text) = example("kmdr.yaml");
    let plan = parse_plan(&path, &text).unwrap_or_else(|p| panic!("{}", render(&path, &p)));
    assert_eq!(plan.file, path);
    assert_eq!(plan.version, 1);
    assert_eq!(plan.name, "kmetal-prod");
    assert_eq!(plan.repository.url, "s3://backups/kmetal");
    assert_eq!(plan.repository.key_file, Some(PathBuf::from("/root/kmdr.key")));
    assert_eq!(plan.repository.s3_endpoint.as_deref(), Some("https://s3.example.net"));

    // Recovery order (see `layers_are_put_in_recovery_order` for a file in
    // another order); each layer's position is its key's.
    let order: Vec<Layer> = plan.layers.iter().map(|l| l.layer).collect();
    assert_eq!(order, Layer::ALL.to_vec());

    let uc = plan.layer(Layer::UnderCluster).unwrap();
    assert_eq!((uc.rto, uc.rpo), (Duration::from_secs(4 * H), Duration::from_secs(H)));
    assert_eq!(text.lines().nth(uc.pos.line - 1).unwrap().trim(), "under-cluster:");
    assert_eq!(uc.pos.column, 3);
    let LayerSource::UnderCluster { etcd, node_files } = &uc.source else { panic!("{:?}", uc.source) };
    let nf = node_files.as_ref().expect("nodeFiles");
    assert_eq!(nf.encryption_config.as_deref(), Some("/etc/kubernetes/enc/enc.yaml"));
    assert!(nf.paths.is_empty() && !nf.leaf_certs, "kubeadm's files by default");
    assert_eq!((nf.root.as_path(), nf.restore_to.as_path()), (Path::new("/"), Path::new("/")));
    assert_eq!(etcd.endpoints.len(), 3);
    assert_eq!(etcd.tls.cacert, Some(PathBuf::from("/etc/kubernetes/pki/etcd/ca.crt")));
    let member = etcd.restore.as_ref().unwrap();
    assert_eq!(member.data_dir, PathBuf::from("/var/lib/etcd"));
    assert_eq!(member.name, "cp-1");
    assert_eq!(member.initial_cluster, "cp-1=https://10.0.0.1:2380");
    assert_eq!(member.initial_advertise_peer_urls, "https://10.0.0.1:2380");

    let platform = plan.layer(Layer::Platform).unwrap();
    assert!(matches!(&platform.source, LayerSource::Helm(h) if h.release == "kmetal" && h.secrets.len() == 1));
    assert_eq!(platform.rpo, Duration::from_secs(15 * 60));

    let tcp = plan.layer(Layer::TenantControlPlanes).unwrap();
    let LayerSource::Tenants { datastores: ds, .. } = &tcp.source else { panic!("{:?}", tcp.source) };
    assert_eq!(ds.len(), 2);
    assert_eq!(ds[0].name, "shared-etcd");
    assert_eq!(ds[0].tenants, TenantSelector::All);
    assert_eq!(ds[1].name, "tenants-pg");
    assert_eq!(ds[1].password_file, Some(PathBuf::from("/etc/kmdr/pg.pw")));
    assert_eq!(ds[1].tenants, TenantSelector::Only(vec!["tenant_acme".into(), "tenant_globex".into()]));

    assert_eq!(plan.run.len(), 4);
    let provision = &plan.run[0];
    assert_eq!(provision.name, "provision nodes");
    assert_eq!((provision.layer, provision.phase), (Layer::UnderCluster, Phase::BeforeRestore));
    assert_eq!(provision.command[0], "ansible-playbook");
    assert_eq!(provision.timeout, Duration::from_secs(30 * 60));
    let kubeadm = &plan.run[1];
    assert_eq!(&kubeadm.command[..2], &["sh".to_string(), "-c".to_string()]);
    assert!(kubeadm.command[2].starts_with("kubeadm init"));
    assert_eq!(plan.steps(Layer::UnderCluster, Phase::HealthCheck).count(), 1);

    assert_eq!(plan.contacts.len(), 2);
    assert_eq!(plan.contacts[0].detail, "first responder");
    assert_eq!(plan.contacts[0].reviewed, chrono::NaiveDate::from_ymd_opt(2026, 10, 1).unwrap());
    assert_eq!(plan.contacts[0].review_every, Duration::from_secs(90 * 24 * H));
    assert_eq!(plan.credentials[0].detail, "vault://kv/kmdr");
    assert_eq!(plan.credentials[0].review_every, Duration::from_secs(180 * 24 * H));
    let v = plan.verify.expect("the example's verify: block");
    assert_eq!(
        (v.every, v.sample, v.concurrency, v.nice, v.same_driver),
        (Duration::from_secs(6 * H), 1, 1, 10, false)
    );
}

#[test]
fn lab_example_parses_with_defaults() {
    let (path, text) = example("lab.yaml");
    let plan = parse_plan(&path, &text).unwrap_or_else(|p| panic!("{}", render(&path, &p)));
    assert_eq!(plan.name, "lab");
    assert_eq!(plan.repository.url, "./repo");
    assert_eq!(plan.repository.key_file, None);
    let order: Vec<Layer> = plan.layers.iter().map(|l| l.layer).collect();
    assert_eq!(order, [Layer::UnderCluster, Layer::TenantControlPlanes]);
    // No targets given: the runbook's defaults.
    for spec in &plan.layers {
        assert_eq!((spec.rto, spec.rpo), kmdr_plan::default_targets(spec.layer));
    }
    let LayerSource::UnderCluster { etcd, .. } = &plan.layers[0].source else { panic!() };
    assert_eq!(etcd.endpoints, ["http://127.0.0.1:2379"]); // a single string is a list of one
    assert!(etcd.restore.is_none());
    let LayerSource::Tenants { datastores: ds, .. } = &plan.layers[1].source else { panic!() };
    assert_eq!(ds[0].url, "etcd://127.0.0.1:2381");
    assert_eq!(ds[0].tenants, TenantSelector::All);
    assert!(plan.run.is_empty() && plan.contacts.is_empty() && plan.credentials.is_empty());
}

#[test]
fn layers_are_put_in_recovery_order() {
    let text = format!(
        "{BASE}  persistent-data: {{rto: 3h}}\n  platform:\n  tenant-control-planes:\n    datastores: [{{name: a, url: 'etcd://x:1', tenants: all}}]\n"
    );
    let plan = parse_plan(Path::new("p.yaml"), &text).unwrap();
    let order: Vec<Layer> = plan.layers.iter().map(|l| l.layer).collect();
    assert_eq!(order, Layer::ALL.to_vec());
    assert_eq!(plan.layer(Layer::PersistentData).unwrap().pos, Pos { line: 9, column: 3 });
    assert_eq!(plan.layer(Layer::PersistentData).unwrap().rto, Duration::from_secs(3 * H));
    // `platform:` with nothing under it: the default targets.
    assert_eq!(plan.layer(Layer::Platform).unwrap().rto, Duration::from_secs(2 * H));
}

#[test]
fn unknown_top_level_key_suggests_the_right_one() {
    let text = format!("{BASE}contact:\n  - name: x\n");
    one_problem(&text, 9, 1, &[r#"unknown key "contact""#, r#"write "contacts""#]);
}

#[test]
fn unknown_key_with_nothing_close_lists_the_keys() {
    let text = format!("{BASE}owner: me\n");
    one_problem(&text, 9, 1, &[r#"unknown key "owner""#, "the keys are version, name, repository"]);
}

#[test]
fn target_key_typo_suggests() {
    let text = BASE.replace("    etcd:", "    rpo_target: 1h\n    etcd:");
    one_problem(&text, 7, 5, &[r#"unknown key "rpo_target" in layer under-cluster: write "rpo""#]);
}

#[test]
fn unknown_layer_lists_the_layers() {
    let text = format!("{BASE}  tenants:\n    rto: 1h\n");
    one_problem(
        &text,
        9,
        3,
        &[r#"unknown layer "tenants": the layers are under-cluster, platform, tenant-control-planes, persistent-data"#],
    );
}

#[test]
fn platform_takes_a_helm_release() {
    let text = format!(
        "{BASE}  platform:\n    helm: {{release: kmetal, namespace: kmetal-system, secrets: [kmetal-system/registry-creds]}}\n"
    );
    let plan = parse_plan(Path::new("kmdr.yaml"), &text).expect("parses");
    let Some(LayerSource::Helm(h)) = plan.layer(Layer::Platform).map(|l| &l.source) else { panic!("helm source") };
    assert_eq!((h.release.as_str(), h.namespace.as_str()), ("kmetal", "kmetal-system"));
    assert_eq!(h.secrets, ["kmetal-system/registry-creds"]);
    assert_eq!(h.unit(), "helm/kmetal-system/kmetal");
}

#[test]
fn platform_helm_needs_a_namespace_and_namespaced_secrets() {
    let text = format!("{BASE}  platform:\n    helm:\n      release: kmetal\n      secrets: [registry-creds]\n");
    let problems = parse_plan(Path::new("kmdr.yaml"), &text).unwrap_err();
    let all: Vec<String> = problems.iter().map(|p| format!("{}:{}: {}", p.pos.line, p.pos.column, p.message)).collect();
    assert_eq!(
        all,
        [
            "11:7: helm needs `namespace:`: add e.g. `namespace: kmetal-system`",
            "12:17: secret \"registry-creds\" is not NAMESPACE/NAME: write e.g. kmetal-system/registry-creds",
        ]
    );
}

#[test]
fn node_files_paths_are_absolute_and_keys_known() {
    let text = format!("{BASE}    nodeFiles:\n      paths: [etc/kubernetes/pki]\n");
    one_problem(&text, 10, 15, &["node file path \"etc/kubernetes/pki\" is relative", "/etc/kubernetes/pki"]);
    let text = format!("{BASE}    nodeFiles:\n      encryptionConfig: enc.yaml\n");
    one_problem(&text, 10, 25, &["encryptionConfig \"enc.yaml\" is relative"]);
    let text = format!("{BASE}    nodeFiles:\n      leafCert: true\n");
    one_problem(&text, 10, 7, &[r#"unknown key "leafCert""#, "leafCerts"]);
    let text = format!(
        "{BASE}    nodeFiles:\n      paths: [/etc/kubernetes/pki, /etc/kubernetes/kubeadm.yaml]\n      restoreTo: /mnt/node\n"
    );
    let plan = parse_plan(Path::new("kmdr.yaml"), &text).expect("parses");
    let Some(LayerSource::UnderCluster { node_files: Some(nf), .. }) =
        plan.layer(Layer::UnderCluster).map(|l| &l.source)
    else {
        panic!("node files")
    };
    assert_eq!(nf.paths, ["/etc/kubernetes/pki", "/etc/kubernetes/kubeadm.yaml"]);
    assert_eq!(nf.restore_to, Path::new("/mnt/node"));
}

#[test]
fn datastore_key_typo_suggests() {
    let text = format!(
        "{BASE}  tenant-control-planes:\n    datastores:\n      - name: pg\n        url: postgres://k@db/kamaji\n        passwrdFile: /etc/pw\n        tenants: [t1]\n"
    );
    one_problem(&text, 13, 9, &[r#"unknown key "passwrdFile" in datastore 1: write "passwordFile""#]);
}

#[test]
fn number_where_a_list_is_expected() {
    let text = BASE.replace("[http://127.0.0.1:2379]", "2379");
    one_problem(&text, 8, 18, &["expected a list of strings", "found the number 2379"]);
}

#[test]
fn bad_duration() {
    let text = BASE.replace("    etcd:", "    rto: 4 hours\n    etcd:");
    one_problem(&text, 7, 10, &[r#""4 hours" is not a duration: write e.g. 4h, 30m, 90s or 90d"#]);
}

#[test]
fn bare_number_is_not_a_duration() {
    let text = BASE.replace("    etcd:", "    rpo: 30\n    etcd:");
    one_problem(&text, 7, 10, &[r#""30" is not a duration (30 what? e.g. 30s or 30m)"#]);
}

#[test]
fn zero_rto() {
    let text = BASE.replace("    etcd:", "    rto: 0h\n    etcd:");
    one_problem(&text, 7, 10, &["`rto:` must be more than zero"]);
}

#[test]
fn under_cluster_without_etcd() {
    let text = BASE.replace("    etcd:\n      endpoints: [http://127.0.0.1:2379]\n", "    rto: 4h\n");
    one_problem(&text, 7, 5, &["layer under-cluster needs `etcd:`", "endpoints"]);
}

#[test]
fn empty_under_cluster_is_reported_at_its_key() {
    let text = BASE.replace("    etcd:\n      endpoints: [http://127.0.0.1:2379]\n", "");
    one_problem(&text, 6, 3, &["layer under-cluster needs `etcd:`"]);
}

#[test]
fn tenant_layer_without_datastores() {
    let text = format!("{BASE}  tenant-control-planes:\n    rto: 1h\n");
    one_problem(&text, 10, 5, &["layer tenant-control-planes needs `datastores:`", "tenants: all"]);
}

#[test]
fn tenants_neither_all_nor_a_list() {
    let text = format!(
        "{BASE}  tenant-control-planes:\n    datastores:\n      - name: e\n        url: etcd://127.0.0.1:2381\n        tenants: some\n"
    );
    one_problem(
        &text,
        13,
        18,
        &[r#"must be "all" or a list, found the string "some""#, "tenants: [tenant_a, tenant_b]"],
    );
}

#[test]
fn bad_datastore_scheme() {
    let text = format!(
        "{BASE}  tenant-control-planes:\n    datastores:\n      - name: e\n        url: etc://127.0.0.1:2381\n        tenants: all\n"
    );
    one_problem(&text, 12, 14, &["scheme etc:// is not supported: write etcd://"]);
}

#[test]
fn duplicate_datastore_names() {
    let text = format!(
        "{BASE}  tenant-control-planes:\n    datastores:\n      - {{name: e, url: 'etcd://a:1', tenants: all}}\n      - {{name: e, url: 'etcd://b:1', tenants: all}}\n"
    );
    one_problem(&text, 12, 10, &[r#"datastore name "e" is already used at line 11"#]);
}

#[test]
fn run_step_for_a_layer_not_in_the_plan() {
    let text = format!(
        "{BASE}run:\n  - name: reinstall\n    layer: platform\n    phase: before-restore\n    command: helmfile apply\n    timeout: 30m\n"
    );
    one_problem(&text, 11, 12, &["layer platform, which the plan does not cover", "add `platform:` under `layers:`"]);
}

#[test]
fn run_step_unknown_phase_and_missing_timeout() {
    let text =
        format!("{BASE}run:\n  - name: check\n    layer: under-cluster\n    phase: healthcheck\n    command: [true]\n");
    let all = problems(&text);
    assert_eq!(all.len(), 3, "{all:#?}");
    // The step lacks `timeout:` (reported at the step), the phase is misspelt,
    // and `true` is a boolean, not a string.
    assert_eq!(all[0].pos, Pos { line: 10, column: 5 });
    assert!(all[0].message.contains("run step 1 needs `timeout:`"), "{}", all[0]);
    assert_eq!(all[1].pos, Pos { line: 12, column: 12 });
    assert!(all[1].message.contains(r#"unknown phase "healthcheck": write "health-check""#), "{}", all[1]);
    assert_eq!(all[2].pos, Pos { line: 13, column: 15 });
    assert!(all[2].message.contains(r#"quote it ("true")"#), "{}", all[2]);
}

#[test]
fn bad_date() {
    let text = format!(
        "{BASE}contacts:\n  - name: on-call\n    role: first responder\n    reviewed: 2026-13-01\n    reviewEvery: 90d\n"
    );
    one_problem(&text, 12, 15, &[r#""2026-13-01" is not a date: write YYYY-MM-DD"#]);
}

#[test]
fn several_problems_reported_in_file_order() {
    let text = "\
version: 2
name: lab
repository:
  url: ./repo
  key_file: /root/k
layers:
  under-cluster:
    rto: soon
    etcd:
      endpoints: [http://127.0.0.1:2379]
credentials:
  - name: repo key
    location: vault://kv/kmdr
    reviewed: yesterday
    reviewEvery: 180d
";
    let all = problems(text);
    let rendered = render(Path::new("kmdr.yaml"), &all);
    let positions: Vec<(usize, usize)> = all.iter().map(|p| (p.pos.line, p.pos.column)).collect();
    assert_eq!(positions, [(1, 10), (5, 3), (8, 10), (14, 15)], "{rendered}");
    assert!(all[0].message.contains("version 2 is not supported"), "{rendered}");
    assert!(all[1].message.contains(r#"write "keyFile""#), "{rendered}");
    assert!(all[2].message.contains(r#""soon" is not a duration"#), "{rendered}");
    assert!(all[3].message.contains(r#""yesterday" is not a date"#), "{rendered}");
    // docs/plan.md shows exactly this output.
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/plan.md")).unwrap();
    assert!(docs.contains(&rendered), "docs/plan.md should show:\n{rendered}");
}

#[test]
fn docs_show_the_example_verbatim() {
    let (_, example) = example("kmdr.yaml");
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/plan.md")).unwrap();
    assert!(docs.contains(&format!("```yaml\n{example}```")), "docs/plan.md must include examples/kmdr.yaml as is");
}

#[test]
fn missing_top_level_keys_are_reported_at_the_mapping() {
    let all = problems("# a plan\nversion: 1\n");
    let messages: Vec<&str> = all.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(all.len(), 3, "{messages:?}");
    assert!(all.iter().all(|p| p.pos == Pos { line: 2, column: 1 }));
    assert!(messages[0].contains("needs `name:`"));
    assert!(messages[1].contains("needs `repository:`"));
    assert!(messages[2].contains("needs `layers:`"));
}

#[test]
fn yaml_syntax_error_has_its_position() {
    let text = BASE.replace("[http://127.0.0.1:2379]", "[http://127.0.0.1:2379");
    let p = one_problem(&text, 9, 1, &["YAML syntax error"]);
    assert!(p.message.contains("flow sequence"), "{p}");
}

#[test]
fn duplicate_key_is_reported() {
    let text = format!("{BASE}name: again\n");
    one_problem(&text, 9, 1, &["appears twice"]);
}

#[test]
fn empty_file_says_what_a_plan_needs() {
    for text in ["", "\n", "# nothing yet\n", "---\n"] {
        let p = one_problem(text, 1, 1, &["the plan is empty", "examples/kmdr.yaml"]);
        assert!(p.message.contains("version: 1"), "{p}");
    }
}

#[test]
fn render_gives_file_line_column() {
    let problems = vec![Problem { pos: Pos { line: 3, column: 7 }, message: "bad".into() }];
    assert_eq!(render(Path::new("plans/kmdr.yaml"), &problems), "plans/kmdr.yaml:3:7: bad\n");
}

#[test]
fn persistent_data_takes_volume_entries_of_each_provider() {
    use kmdr_kube::volumes::ProviderSpec;
    let text = format!(
        "{BASE}  persistent-data:
    volumes:
      - {{name: db, provider: csi, namespace: tenant-a, selector: app=db, snapshotClass: snap, timeout: 10m}}
      - {{name: apps, provider: velero, includedNamespaces: [tenant-b], labelSelector: 'app=db,tier=data', snapshotMoveData: true, ttl: 720h0m0s}}
      - {{name: sched, provider: velero, schedule: daily}}
      - {{name: k10, provider: kasten, policy: p1, appNamespace: tenant-d, context: prod}}
"
    );
    let plan = parse_plan(Path::new("kmdr.yaml"), &text).unwrap();
    let LayerSource::Volumes(v) = &plan.layer(Layer::PersistentData).unwrap().source else {
        panic!("volumes expected")
    };
    assert_eq!(v.len(), 4);
    assert_eq!(v[0].entry.timeout, Duration::from_secs(600));
    let ProviderSpec::Csi(c) = &v[0].entry.provider else { panic!() };
    assert_eq!(
        (c.namespace.as_str(), c.selector.as_deref(), c.snapshot_class.as_str()),
        ("tenant-a", Some("app=db"), "snap")
    );
    let ProviderSpec::Velero(b) = &v[1].entry.provider else { panic!() };
    assert_eq!(b.namespace, "velero");
    assert_eq!(b.label_selector.get("tier").map(String::as_str), Some("data"));
    assert_eq!(b.snapshot_move_data, Some(true));
    assert_eq!(v[1].entry.timeout, Duration::from_secs(H));
    let ProviderSpec::Velero(s) = &v[2].entry.provider else { panic!() };
    assert_eq!(s.schedule.as_deref(), Some("daily"));
    let ProviderSpec::Kasten(k) = &v[3].entry.provider else { panic!() };
    assert_eq!((k.namespace.as_str(), k.policy.as_str(), k.app_namespace.as_str()), ("kasten-io", "p1", "tenant-d"));
    assert_eq!(v[3].context.as_deref(), Some("prod"));
}

#[test]
fn volume_entry_mistakes_are_reported_where_they_are() {
    // A key of another provider.
    one_problem(
        &format!(
            "{BASE}  persistent-data:\n    volumes:\n      - name: db\n        provider: velero\n        snapshotClass: x\n"
        ),
        13,
        9,
        &["`snapshotClass:` is not a setting of provider velero", "includedNamespaces"],
    );
    // An unknown provider, with the close one suggested.
    one_problem(
        &format!("{BASE}  persistent-data:\n    volumes:\n      - {{name: db, provider: valero}}\n"),
        11,
        30,
        &["unknown provider \"valero\"", "velero"],
    );
    // CSI without a way to pick PVCs.
    one_problem(
        &format!(
            "{BASE}  persistent-data:\n    volumes:\n      - {{name: db, provider: csi, namespace: a, snapshotClass: s}}\n"
        ),
        11,
        9,
        &["selector:", "pvcs:"],
    );
    // A schedule entry with Backup settings.
    one_problem(
        &format!(
            "{BASE}  persistent-data:\n    volumes:\n      - name: s\n        provider: velero\n        schedule: daily\n        ttl: 24h\n"
        ),
        14,
        9,
        &["`ttl:` has no effect with `schedule:`"],
    );
    // Two entries with one name.
    one_problem(
        &format!(
            "{BASE}  persistent-data:\n    volumes:\n      - {{name: db, provider: velero}}\n      - {{name: db, provider: velero}}\n"
        ),
        12,
        10,
        &["already used at line 11"],
    );
}

#[test]
fn verify_block_takes_a_schedule_and_a_budget() {
    let plan = parse_plan(Path::new("kmdr.yaml"), &format!("{BASE}verify:\n  every: 6h\n")).unwrap();
    let v = plan.verify.expect("the block");
    assert_eq!(
        (v.every, v.sample, v.concurrency, v.nice, v.same_driver),
        (Duration::from_secs(6 * H), 1, 1, 10, false)
    );
    let text =
        format!("{BASE}verify:\n  every: 30m\n  sample: 3\n  concurrency: 2\n  nice: 19\n  targetDriver: same\n");
    let v = parse_plan(Path::new("kmdr.yaml"), &text).unwrap().verify.unwrap();
    assert_eq!((v.every, v.sample, v.concurrency, v.nice, v.same_driver), (Duration::from_secs(1800), 3, 2, 19, true));
    assert!(parse_plan(Path::new("kmdr.yaml"), BASE).unwrap().verify.is_none());
}

#[test]
fn verify_block_mistakes_are_named() {
    one_problem(&format!("{BASE}verify:\n  sample: 2\n"), 10, 3, &["every", "every: 6h"]);
    one_problem(&format!("{BASE}verify:\n  every: 6h\n  nice: 25\n"), 11, 9, &["0 to 19", "`nice:`"]);
    one_problem(&format!("{BASE}verify:\n  every: 6h\n  sample: 0\n"), 11, 11, &["1 to 1000"]);
    one_problem(&format!("{BASE}verify:\n  every: 6h\n  targetDriver: postgres\n"), 11, 17, &["etcd or same"]);
    one_problem(&format!("{BASE}verify:\n  every: 6h\n  samples: 2\n"), 11, 3, &["sample"]);
    one_problem(&format!("{BASE}verify:\n  every: 0s\n"), 10, 10, &["more than zero"]);
}
