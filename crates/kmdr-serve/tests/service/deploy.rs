//! The manifests under deploy/kubernetes: each document parses into its
//! Kubernetes type (k8s-openapi, unknown fields refused by round trip), they
//! agree with each other (names, ports, the plan path), the plan in the
//! ConfigMap is a valid plan, and the PrometheusRule (no k8s-openapi type)
//! has the alerts and fields Prometheus Operator needs.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;

fn docs(file: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{file}: {e}")))
        .collect()
}

/// Parse into `T` and check that nothing was dropped (a misspelt field would be).
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> T {
    let t: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{}: {e}", v["kind"]));
    let back = serde_json::to_value(&t).unwrap();
    assert_eq!(strip_nulls(back), strip_nulls(v.clone()), "{} has fields its type does not know", v["kind"]);
    t
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        // YAML octal modes (0400) arrive as numbers already; numbers compare as f64.
        Value::Number(n) => serde_json::json!(n.as_f64()),
        other => other,
    }
}

#[test]
fn every_manifest_parses_into_its_kubernetes_type_and_they_agree() {
    let sa: ServiceAccount = typed(&docs("serviceaccount.yaml")[0]);
    let rbac = docs("rbac.yaml");
    assert_eq!(rbac.len(), 4);
    let cr: ClusterRole = typed(&rbac[0]);
    let crb: ClusterRoleBinding = typed(&rbac[1]);
    let role: Role = typed(&rbac[2]);
    let rb: RoleBinding = typed(&rbac[3]);
    let secret: Secret = typed(&docs("secret.yaml")[0]);
    let cm: ConfigMap = typed(&docs("configmap.yaml")[0]);
    let dep: Deployment = typed(&docs("deployment.yaml")[0]);
    let svc: Service = typed(&docs("service.yaml")[0]);

    // Least privilege: read-only verbs cluster-wide; Leases only in kmdr's namespace.
    for rule in cr.rules.as_ref().unwrap() {
        for verb in &rule.verbs {
            assert!(["get", "list"].contains(&verb.as_str()), "ClusterRole grants {verb}");
        }
    }
    assert!(
        cr.rules.as_ref().unwrap().iter().any(|r| r
            .resources
            .as_ref()
            .unwrap()
            .contains(&"tenantcontrolplanes".to_string()))
    );
    assert!(role.rules.as_ref().unwrap().iter().all(|r| r.resources.as_ref().unwrap() == &vec!["leases".to_string()]));
    let sa_name = sa.metadata.name.clone().unwrap();
    let ns = sa.metadata.namespace.clone().unwrap();
    for subjects in [crb.subjects.unwrap(), rb.subjects.unwrap()] {
        assert_eq!(
            (subjects[0].name.as_str(), subjects[0].namespace.as_deref()),
            (sa_name.as_str(), Some(ns.as_str()))
        );
    }
    assert_eq!(crb.role_ref.name, cr.metadata.name.unwrap());
    assert_eq!(rb.role_ref.name, role.metadata.name.unwrap());

    let spec = dep.spec;
    assert_eq!(spec.replicas, Some(1));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(sa_name.as_str()));
    let c = &pod.containers[0];
    let args = c.args.clone().unwrap();
    assert_eq!(args[0], "serve");
    assert!(args.contains(&"--metrics-addr=0.0.0.0:9464".to_string()));
    let port = c.ports.as_ref().unwrap()[0].container_port;
    assert_eq!(port, 9464);
    assert_eq!(c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/readyz"));
    assert_eq!(c.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/healthz"));
    // The Lease it elects a leader with is the one the Role allows, and its identity is the pod's name.
    let lease = args.iter().find_map(|a| a.strip_prefix("--lease=")).expect("--lease");
    let allowed = role.rules.as_ref().unwrap().iter().find_map(|r| r.resource_names.as_ref()).unwrap();
    assert_eq!(lease, format!("{}/{}", role.metadata.namespace.as_deref().unwrap(), allowed[0]));
    assert_eq!(role.metadata.namespace.as_deref(), Some(ns.as_str()));
    let pod_name = c.env.as_ref().unwrap().iter().find(|e| e.name == "POD_NAME").expect("POD_NAME");
    assert_eq!(pod_name.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path, "metadata.name");
    // The plan's path, the key file's path and the volumes agree.
    let plan_arg = args.iter().find_map(|a| a.strip_prefix("--plan=")).unwrap();
    let mounts = c.volume_mounts.clone().unwrap();
    let plan_mount = mounts.iter().find(|m| m.name == "plan").unwrap();
    assert_eq!(plan_arg, format!("{}/kmdr.yaml", plan_mount.mount_path));
    let plan_text = &cm.data.as_ref().unwrap()["kmdr.yaml"];
    let plan = kmdr_plan::parse_plan(std::path::Path::new("kmdr.yaml"), plan_text)
        .unwrap_or_else(|p| panic!("{}", kmdr_plan::parse::render(std::path::Path::new("kmdr.yaml"), &p)));
    let secret_mount = mounts.iter().find(|m| m.name == "secret").unwrap();
    assert_eq!(plan.repository.key_file.unwrap(), PathBuf::from(&secret_mount.mount_path).join("kmdr.key"));
    assert!(secret.string_data.unwrap().contains_key("kmdr.key"));
    let vols = pod.volumes.unwrap();
    assert_eq!(
        vols.iter().find(|v| v.name == "plan").unwrap().config_map.as_ref().unwrap().name,
        cm.metadata.name.unwrap()
    );
    assert_eq!(
        vols.iter().find(|v| v.name == "secret").unwrap().secret.as_ref().unwrap().secret_name,
        secret.metadata.name
    );
    // The Service selects the pod and reaches its metrics port.
    assert_eq!(svc.spec.as_ref().unwrap().selector.as_ref(), spec.template.metadata.unwrap().labels.as_ref());
    assert_eq!(svc.spec.unwrap().ports.unwrap()[0].port, port);
}

#[test]
fn the_prometheus_rule_alerts_on_rpo_breach_and_failing_backups() {
    let rule = &docs("prometheusrule.yaml")[0];
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert!(rule["metadata"]["name"].is_string());
    let rules: Vec<&Value> =
        rule["spec"]["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    let by_name = |n: &str| *rules.iter().find(|r| r["alert"] == n).unwrap_or_else(|| panic!("no alert {n}"));
    for r in &rules {
        assert!(r["expr"].is_string() && r["for"].is_string(), "{r}");
        assert!(["critical", "warning"].contains(&r["labels"]["severity"].as_str().unwrap()));
        assert!(r["annotations"]["summary"].is_string() && r["annotations"]["description"].is_string());
    }
    // The alerts use metrics kmdr serve exports.
    let exported = kmdr_serve::Metrics::new();
    exported.update("u", |s| {
        s.delta = Some(Default::default());
        s.verified_restore = Some(chrono::Utc::now());
        s.restorable_point = Some(chrono::Utc::now());
    });
    exported.set_leader(false);
    let text = exported.render(chrono::Utc::now());
    for (alert, metrics) in [
        ("KmdrRpoBreached", vec!["kmdr_rpo_seconds", "kmdr_rpo_target_seconds"]),
        ("KmdrBackupsFailing", vec!["kmdr_backup_failures_total"]),
        ("KmdrDeltaCaptureDown", vec!["kmdr_delta_up"]),
        ("KmdrNoLeader", vec!["kmdr_leader"]),
        ("KmdrRestorableRpoBreached", vec!["kmdr_restorable_rpo_seconds", "kmdr_rpo_target_seconds"]),
        ("KmdrRestoreProofFailing", vec!["kmdr_verify_failures_total"]),
    ] {
        let expr = by_name(alert)["expr"].as_str().unwrap();
        for m in metrics {
            assert!(expr.contains(m), "{alert}: {expr}");
            assert!(text.contains(&format!("# TYPE {m} ")), "kmdr serve does not export {m}");
        }
    }
}
