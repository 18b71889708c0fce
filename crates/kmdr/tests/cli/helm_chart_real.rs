//! The Helm chart deploy/helm/kmdr with REAL helm 4:
//!
//! - `helm lint --strict` with the defaults and every values example, and the
//!   values the chart refuses (two replicas without the Lease, no key Secret);
//! - `helm template` of the defaults, every example and the RBAC toggles:
//!   every document parsed into its k8s-openapi type (unknown fields refused
//!   by a round trip), the ServiceMonitor and PrometheusRule as JSON, and the
//!   expectations worked out from the values, not from the templates:
//!   replicas, `--lease` (and its Role: exactly get/update on that Lease and
//!   create), the key and S3 Secrets referenced (never created), the
//!   ClusterRole's rules exactly the least set, probes, the plan valid with
//!   every TLS file it names mounted, the alerts' metrics exported by kmdr
//!   serve, the dashboard ConfigMap holding deploy/grafana's file itself;
//! - deploy/kubernetes/ is the chart rendered by scripts/render-deploy.sh.
//!
//! `helm install` into the test API server is helm_install_real.rs's.

use crate::dashboard::{dashboard_path, metric_names};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) fn chart() -> PathBuf {
    top().join("deploy/helm/kmdr")
}

/// The values examples, sorted.
pub(crate) fn examples() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(chart().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    out.sort();
    out
}

pub(crate) fn run_helm(args: &[&str]) -> Output {
    Command::new("helm").args(args).output().expect("run helm")
}

pub(crate) fn helm_ok(args: &[&str]) -> String {
    let out = run_helm(args);
    assert!(
        out.status.success(),
        "helm {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn yaml_docs(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{e}\n{text}")))
        .filter(|v| !v.is_null())
        .collect()
}

pub(crate) fn yaml_value(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str::<Option<Value>>(&text).unwrap().unwrap_or(json!({}))
}

/// Helm's merge of values: mappings key by key, anything else replaced.
pub(crate) fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// A `--set a.b.c=v` as the value it merges (v a bool, number or string).
pub(crate) fn set_value(set: &str) -> Value {
    let (path, v) = set.split_once('=').unwrap();
    let mut value = match v {
        "true" => json!(true),
        "false" => json!(false),
        v => v.parse::<i64>().map(|n| json!(n)).unwrap_or_else(|_| json!(v)),
    };
    for key in path.rsplit('.') {
        value = json!({ key: value });
    }
    value
}

/// One rendering: the chart's values as merged for it, and the documents.
pub(crate) struct Rendered {
    what: String,
    pub(crate) values: Value,
    ns: String,
    release: String,
    pub(crate) docs: Vec<Value>,
}

pub(crate) fn render(release: &str, ns: &str, file: Option<&Path>, sets: &[&str]) -> Rendered {
    let chart_dir = chart().display().to_string();
    let mut args = vec!["template".to_string(), release.to_string(), chart_dir, "--namespace".into(), ns.into()];
    let mut values = yaml_value(&chart().join("values.yaml"));
    if let Some(f) = file {
        args.extend(["-f".into(), f.display().to_string()]);
        merge(&mut values, &yaml_value(f));
    }
    for s in sets {
        args.extend(["--set".into(), s.to_string()]);
        merge(&mut values, &set_value(s));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let what = match file {
        Some(f) => format!("{} {sets:?}", f.file_name().unwrap().to_string_lossy()),
        None => format!("defaults {sets:?}"),
    };
    Rendered { what, values, ns: ns.into(), release: release.into(), docs: yaml_docs(&helm_ok(&args)) }
}

/// Parse into `T` and check that nothing was dropped (a misspelt field would be).
pub(crate) fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> T {
    let t: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{} {}: {e}", v["kind"], v["metadata"]));
    let back = serde_json::to_value(&t).unwrap();
    assert_eq!(strip_nulls(back), strip_nulls(v.clone()), "{} has fields its type does not know", v["kind"]);
    t
}

pub(crate) fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        Value::Number(n) => json!(n.as_f64()),
        other => other,
    }
}

/// The objects of one rendering, typed.
#[derive(Default)]
pub(crate) struct Objects {
    service_account: Option<ServiceAccount>,
    config_maps: Vec<ConfigMap>,
    cluster_role: Option<ClusterRole>,
    cluster_role_binding: Option<ClusterRoleBinding>,
    role: Option<Role>,
    role_binding: Option<RoleBinding>,
    service: Option<Service>,
    deployment: Option<Deployment>,
    service_monitor: Option<Value>,
    prometheus_rule: Option<Value>,
}

pub(crate) fn objects(r: &Rendered) -> Objects {
    let mut o = Objects::default();
    fn once<T>(slot: &mut Option<T>, t: T, kind: &str, what: &str) {
        assert!(slot.is_none(), "{what}: two {kind}s");
        *slot = Some(t);
    }
    for d in &r.docs {
        let kind = d["kind"].as_str().unwrap_or_else(|| panic!("{}: a document without kind: {d}", r.what));
        let w = r.what.as_str();
        match (d["apiVersion"].as_str().unwrap_or(""), kind) {
            ("v1", "ServiceAccount") => once(&mut o.service_account, typed(d), kind, w),
            ("v1", "ConfigMap") => o.config_maps.push(typed(d)),
            ("v1", "Service") => once(&mut o.service, typed(d), kind, w),
            ("apps/v1", "Deployment") => once(&mut o.deployment, typed(d), kind, w),
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => once(&mut o.cluster_role, typed(d), kind, w),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                once(&mut o.cluster_role_binding, typed(d), kind, w)
            }
            ("rbac.authorization.k8s.io/v1", "Role") => once(&mut o.role, typed(d), kind, w),
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => once(&mut o.role_binding, typed(d), kind, w),
            ("monitoring.coreos.com/v1", "ServiceMonitor") => once(&mut o.service_monitor, d.clone(), kind, w),
            ("monitoring.coreos.com/v1", "PrometheusRule") => once(&mut o.prometheus_rule, d.clone(), kind, w),
            (api, kind) => panic!("{w}: the chart renders {api} {kind}, which this test does not know"),
        }
    }
    o
}

/// (apiGroup, resource, verb, resourceName) of every rule, flattened.
type Grant = (String, String, String, String);

pub(crate) fn grants(rules: &[PolicyRule]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for r in rules {
        assert!(r.non_resource_urls.is_none(), "{r:?}");
        let names = r.resource_names.clone().unwrap_or_else(|| vec![String::new()]);
        for g in r.api_groups.as_deref().unwrap_or_default() {
            for res in r.resources.as_deref().unwrap_or_default() {
                for v in &r.verbs {
                    for n in &names {
                        out.insert((g.clone(), res.clone(), v.clone(), n.clone()));
                    }
                }
            }
        }
    }
    out
}

pub(crate) fn grant(group: &str, resource: &str, verbs: &[&str], name: &str) -> Vec<Grant> {
    verbs.iter().map(|v| (group.to_string(), resource.to_string(), v.to_string(), name.to_string())).collect()
}

/// The least set of cluster-wide grants for the toggles in `rbac`: what
/// kmdr-kube's backups call (kamaji.rs capture_tenant/backup_tenants,
/// platform.rs read_release/capture, volumes/*.rs backup, proof.rs).
pub(crate) fn expected_cluster_grants(rbac: &Value) -> BTreeSet<Grant> {
    let on = |p: &str| rbac.pointer(p).and_then(Value::as_bool).unwrap();
    let mut out = Vec::new();
    if on("/secrets") {
        out.extend(grant("", "secrets", &["get", "list"], ""));
    }
    if on("/kamaji") {
        out.extend(grant("kamaji.clastix.io", "tenantcontrolplanes", &["get", "list"], ""));
        out.extend(grant("kamaji.clastix.io", "datastores", &["get"], ""));
        out.extend(grant("controlplane.cluster.x-k8s.io", "kamajicontrolplanes", &["get"], ""));
        out.extend(grant("cluster.x-k8s.io", "clusters", &["get"], ""));
    }
    if on("/volumes/csi") {
        out.extend(grant("", "persistentvolumeclaims", &["get", "list"], ""));
        out.extend(grant("snapshot.storage.k8s.io", "volumesnapshots", &["get", "list", "create"], ""));
        out.extend(grant("snapshot.storage.k8s.io", "volumesnapshotcontents", &["get"], ""));
    }
    if on("/volumes/velero") {
        out.extend(grant("velero.io", "backups", &["get", "list", "create"], ""));
    }
    if on("/volumes/kasten") {
        out.extend(grant("actions.kio.kasten.io", "runactions", &["get", "list", "create"], ""));
        out.extend(grant("apps.kio.kasten.io", "restorepoints", &["get", "list"], ""));
        out.extend(grant("apps.kio.kasten.io", "restorepointcontents", &["get"], ""));
    }
    out.into_iter().collect()
}

/// What lease.rs does with its Lease: get it, create it when absent (create
/// cannot be limited by name), and PUT it to take, renew or release it.
pub(crate) fn expected_lease_grants(name: &str) -> BTreeSet<Grant> {
    let mut out = grant("coordination.k8s.io", "leases", &["get", "update"], name);
    out.extend(grant("coordination.k8s.io", "leases", &["create"], ""));
    out.into_iter().collect()
}

pub(crate) fn s(v: &Value, p: &str) -> String {
    v.pointer(p).and_then(Value::as_str).unwrap_or_else(|| panic!("no {p} in the values")).to_string()
}

pub(crate) fn full_name(release: &str) -> String {
    if release.contains("kmdr") { release.to_string() } else { format!("{release}-kmdr") }
}

pub(crate) fn container(pod: &PodSpec) -> &Container {
    assert_eq!(pod.containers.len(), 1);
    &pod.containers[0]
}

pub(crate) fn env_value(c: &Container, name: &str) -> Option<String> {
    c.env.as_ref()?.iter().find(|e| e.name == name).and_then(|e| e.value.clone())
}

/// (Secret name, key) an env var takes its value from.
pub(crate) fn env_secret(c: &Container, name: &str) -> Option<(String, String)> {
    let e = c.env.as_ref()?.iter().find(|e| e.name == name)?;
    let r = e.value_from.as_ref()?.secret_key_ref.as_ref()?;
    Some((r.name.clone(), r.key.clone()))
}

/// Every string under a key named `cacert`, `cert`, `key` or `passwordFile`.
pub(crate) fn plan_files(v: &serde_norway::Value, out: &mut Vec<String>) {
    match v {
        serde_norway::Value::Mapping(m) => {
            for (k, v) in m {
                match (k.as_str(), v.as_str()) {
                    (Some("cacert" | "cert" | "key" | "passwordFile"), Some(path)) => out.push(path.to_string()),
                    _ => plan_files(v, out),
                }
            }
        }
        serde_norway::Value::Sequence(s) => s.iter().for_each(|v| plan_files(v, out)),
        _ => {}
    }
}

/// Check one rendering against its values; returns the Deployment's container args.
pub(crate) fn check_rendering(r: &Rendered) -> Vec<String> {
    let v = &r.values;
    let w = &r.what;
    let o = objects(r);
    let full = full_name(&r.release);
    let sa_name = o.service_account.as_ref().expect("a ServiceAccount").metadata.name.clone().unwrap();
    assert_eq!(sa_name, full, "{w}");
    // The chart holds no key material: it creates no Secret at all (objects() would have refused one).

    // --- the Deployment: replicas, the Lease, probes, resources.
    let dep = o.deployment.as_ref().unwrap_or_else(|| panic!("{w}: no Deployment"));
    assert_eq!(dep.metadata.namespace.as_deref(), Some(r.ns.as_str()), "{w}");
    let spec = &dep.spec;
    let replicas = v["replicaCount"].as_i64().unwrap();
    assert_eq!(spec.replicas, Some(replicas as i32), "{w}");
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(sa_name.as_str()), "{w}");
    let c = container(pod);
    let args = c.args.clone().unwrap();
    assert_eq!(args[0], "serve", "{w}");
    let port = v["serve"]["metricsPort"].as_i64().unwrap() as i32;
    assert!(args.contains(&format!("--metrics-addr=0.0.0.0:{port}")), "{w}: {args:?}");
    let ports = c.ports.as_ref().unwrap();
    assert_eq!((ports[0].name.as_deref(), ports[0].container_port), (Some("metrics"), port), "{w}");
    for (probe, path) in [(&c.readiness_probe, "/readyz"), (&c.liveness_probe, "/healthz")] {
        let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).unwrap_or_else(|| panic!("{w}: no {path} probe"));
        assert_eq!(get.path.as_deref(), Some(path), "{w}");
        assert_eq!(get.port, IntOrString::String("metrics".into()), "{w}: the probe is on the metrics port");
    }
    let res = c.resources.as_ref().unwrap_or_else(|| panic!("{w}: no resources"));
    assert!(res.requests.as_ref().is_some_and(|q| q.contains_key("cpu") && q.contains_key("memory")), "{w}");
    assert!(res.limits.as_ref().is_some_and(|q| q.contains_key("memory")), "{w}: a memory limit");
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!((sc.read_only_root_filesystem, sc.allow_privilege_escalation), (Some(true), Some(false)), "{w}");
    assert_eq!(pod.security_context.as_ref().unwrap().run_as_non_root, Some(true), "{w}");

    let lease_on = v["serve"]["lease"]["enabled"].as_bool().unwrap();
    let lease_args: Vec<&String> = args.iter().filter(|a| a.starts_with("--lease")).collect();
    let lease_name = s(v, "/serve/lease/name");
    if lease_on {
        assert_eq!(
            lease_args,
            [&format!("--lease={}/{lease_name}", r.ns), &format!("--lease-duration={}", s(v, "/serve/lease/duration"))],
            "{w}"
        );
        let pod_name = c.env.as_ref().unwrap().iter().find(|e| e.name == "POD_NAME").expect("POD_NAME");
        assert_eq!(pod_name.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path, "metadata.name");
        if v["rbac"]["create"] == json!(true) {
            let role = o.role.as_ref().unwrap_or_else(|| panic!("{w}: a Lease without a Role"));
            assert_eq!(role.metadata.namespace.as_deref(), Some(r.ns.as_str()), "{w}");
            assert_eq!(grants(role.rules.as_deref().unwrap()), expected_lease_grants(&lease_name), "{w}");
            let rb = o.role_binding.as_ref().unwrap();
            assert_eq!(rb.role_ref.name, role.metadata.name.clone().unwrap());
            assert_eq!(rb.subjects.as_deref(), Some(&[sa_subject(&sa_name, &r.ns)][..]), "{w}");
        }
        assert_eq!(spec.strategy.as_ref().unwrap().type_.as_deref(), Some("RollingUpdate"), "{w}");
    } else {
        assert!(lease_args.is_empty(), "{w}: {lease_args:?}");
        assert!(o.role.is_none() && o.role_binding.is_none(), "{w}: a Role without a Lease");
        assert_eq!(replicas, 1, "{w}: replicas without a Lease");
        assert_eq!(spec.strategy.as_ref().unwrap().type_.as_deref(), Some("Recreate"), "{w}");
    }

    // --- the Secrets it references (and never creates).
    let key_secret = s(v, "/repository/key/existingSecret");
    let key_item = s(v, "/repository/key/secretKey");
    let vols = pod.volumes.as_ref().unwrap();
    let mounts = c.volume_mounts.as_ref().unwrap();
    let mount_of =
        |name: &str| mounts.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("{w}: no mount {name}"));
    let key_vol = vols.iter().find(|x| x.name == "key").unwrap().secret.as_ref().unwrap();
    assert_eq!(key_vol.secret_name.as_deref(), Some(key_secret.as_str()), "{w}");
    assert_eq!(key_vol.default_mode, Some(0o400), "{w}");
    assert_eq!(key_vol.items.as_ref().unwrap()[0].key, key_item, "{w}");
    let key_mount = mount_of("key");
    assert_eq!(key_mount.read_only, Some(true));
    assert_eq!(env_value(c, "KMDR_KEY_FILE"), Some(format!("{}/{key_item}", key_mount.mount_path)), "{w}");
    let s3_secret = s(v, "/repository/s3/existingSecret");
    if s3_secret.is_empty() {
        assert_eq!(env_secret(c, "AWS_ACCESS_KEY_ID"), None, "{w}");
    } else {
        assert_eq!(
            env_secret(c, "AWS_ACCESS_KEY_ID"),
            Some((s3_secret.clone(), s(v, "/repository/s3/accessKeyIdKey"))),
            "{w}"
        );
        assert_eq!(
            env_secret(c, "AWS_SECRET_ACCESS_KEY"),
            Some((s3_secret.clone(), s(v, "/repository/s3/secretAccessKeyKey"))),
            "{w}"
        );
    }
    let endpoint = s(v, "/repository/s3/endpoint");
    assert_eq!(env_value(c, "AWS_ENDPOINT_URL"), Some(endpoint.clone()).filter(|e| !e.is_empty()), "{w}");
    let mut tls_mounts = Vec::new();
    for t in v["tlsSecrets"].as_array().unwrap() {
        let vol = vols.iter().find(|x| x.name == t["name"]).unwrap_or_else(|| panic!("{w}: no volume {}", t["name"]));
        assert_eq!(vol.secret.as_ref().unwrap().secret_name.as_deref(), t["secretName"].as_str(), "{w}");
        assert_eq!(vol.secret.as_ref().unwrap().default_mode, Some(0o400), "{w}");
        let m = mount_of(&vol.name);
        assert_eq!(m.mount_path, t["mountPath"].as_str().unwrap(), "{w}");
        tls_mounts.push(format!("{}/", m.mount_path));
    }

    // --- the plan: the chart's ConfigMap (a valid plan whose TLS files are all mounted) or the user's.
    let plan_arg = args.iter().find_map(|a| a.strip_prefix("--plan=")).expect("--plan");
    let plan_mount = mount_of("plan");
    assert_eq!(plan_arg, format!("{}/kmdr.yaml", plan_mount.mount_path), "{w}");
    let plan_vol = vols.iter().find(|x| x.name == "plan").unwrap().config_map.as_ref().unwrap();
    let plan_item = &plan_vol.items.as_ref().unwrap()[0];
    assert_eq!(plan_item.path, "kmdr.yaml", "{w}");
    let existing = s(v, "/plan/existingConfigMap");
    let plan_maps: Vec<&ConfigMap> =
        o.config_maps.iter().filter(|m| !m.metadata.name.as_ref().unwrap().ends_with("-dashboard")).collect();
    if existing.is_empty() {
        assert_eq!(plan_maps.len(), 1, "{w}");
        assert_eq!(plan_vol.name, plan_maps[0].metadata.name.clone().unwrap(), "{w}");
        let text = &plan_maps[0].data.as_ref().unwrap()[&plan_item.key];
        assert_eq!(text.trim_end(), s(v, "/plan/content").trim_end(), "{w}: the plan is the value, as written");
        let file = Path::new("kmdr.yaml");
        let plan =
            kmdr_plan::parse_plan(file, text).unwrap_or_else(|p| panic!("{w}: {}", kmdr_plan::parse::render(file, &p)));
        assert!(!plan.layers.is_empty(), "{w}");
        let mut files = Vec::new();
        plan_files(&serde_norway::from_str(text).unwrap(), &mut files);
        for f in files {
            assert!(tls_mounts.iter().any(|m| f.starts_with(m.as_str())), "{w}: the plan names {f}, not mounted");
        }
    } else {
        assert!(plan_maps.is_empty(), "{w}: a ConfigMap besides the user's");
        assert_eq!(plan_vol.name, existing, "{w}");
        assert_eq!(plan_item.key, s(v, "/plan/existingConfigMapKey"), "{w}");
    }

    // --- RBAC: exactly the least set for the toggles, bound to the ServiceAccount.
    let rbac = &v["rbac"];
    if rbac["create"] == json!(false) {
        assert!(o.cluster_role.is_none() && o.role.is_none(), "{w}: RBAC with rbac.create=false");
    } else {
        let cr = o.cluster_role.as_ref().unwrap_or_else(|| panic!("{w}: no ClusterRole"));
        assert_eq!(grants(cr.rules.as_deref().unwrap()), expected_cluster_grants(rbac), "{w}");
        let crb = o.cluster_role_binding.as_ref().unwrap();
        assert_eq!(crb.role_ref.name, cr.metadata.name.clone().unwrap());
        assert_eq!(crb.subjects.as_deref(), Some(&[sa_subject(&sa_name, &r.ns)][..]), "{w}");
    }

    // --- the Service reaches every replica's metrics port.
    let svc = o.service.as_ref().unwrap();
    let svc_spec = svc.spec.as_ref().unwrap();
    let pod_labels = spec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
    let selector = svc_spec.selector.clone().unwrap();
    assert!(selector.iter().all(|(k, x)| pod_labels.get(k) == Some(x)), "{w}: {selector:?} vs {pod_labels:?}");
    assert_eq!(spec.selector.match_labels.as_ref(), Some(&selector), "{w}");
    let svc_port = &svc_spec.ports.as_ref().unwrap()[0];
    assert_eq!(svc_port.target_port, Some(IntOrString::String("metrics".into())), "{w}");
    assert_eq!(svc_port.port, port, "{w}");

    // --- monitoring toggles.
    let svc_name = svc.metadata.name.clone().unwrap();
    check_monitoring(r, &o, &svc_name, &selector, lease_on);
    args
}

pub(crate) fn sa_subject(name: &str, ns: &str) -> Subject {
    Subject { kind: "ServiceAccount".into(), name: name.into(), namespace: Some(ns.into()), api_group: None }
}

pub(crate) fn check_monitoring(
    r: &Rendered,
    o: &Objects,
    svc_name: &str,
    selector: &BTreeMap<String, String>,
    lease: bool,
) {
    let (v, w) = (&r.values, &r.what);
    let on = |k: &str| v[k]["enabled"].as_bool().unwrap();
    assert_eq!(o.service_monitor.is_some(), on("serviceMonitor"), "{w}");
    assert_eq!(o.prometheus_rule.is_some(), on("prometheusRule"), "{w}");
    let dashboards: Vec<&ConfigMap> =
        o.config_maps.iter().filter(|m| m.metadata.name.as_ref().unwrap().ends_with("-dashboard")).collect();
    assert_eq!(dashboards.len(), usize::from(on("grafanaDashboard")), "{w}");
    if let Some(sm) = &o.service_monitor {
        let want: serde_json::Map<String, Value> = selector.iter().map(|(k, x)| (k.clone(), json!(x))).collect();
        assert_eq!(
            sm["spec"]["selector"]["matchLabels"],
            Value::Object(want),
            "{w}: the ServiceMonitor selects the Service"
        );
        assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics", "{w}");
        for (k, x) in v["serviceMonitor"]["labels"].as_object().unwrap() {
            assert_eq!(&sm["metadata"]["labels"][k], x, "{w}: the label Prometheus selects on");
        }
    }
    if let Some(rule) = &o.prometheus_rule {
        let rules: Vec<&Value> =
            rule["spec"]["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
        let alerts: BTreeSet<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
        let mut want = BTreeSet::from([
            "KmdrRpoBreached",
            "KmdrBackupsFailing",
            "KmdrRestorableRpoBreached",
            "KmdrRestoreProofFailing",
            "KmdrDeltaCaptureDown",
            "KmdrServeDown",
        ]);
        if lease {
            want.insert("KmdrNoLeader");
        }
        assert_eq!(alerts, want, "{w}");
        // Every metric an alert reads is one kmdr serve exports (but Prometheus' own `up`).
        let exported = kmdr_serve::Metrics::new();
        exported.set_leader(false);
        let text = exported.render(chrono::Utc::now());
        for r in &rules {
            assert!(r["for"].is_string(), "{r}");
            assert!(["critical", "warning"].contains(&r["labels"]["severity"].as_str().unwrap()), "{r}");
            assert!(r["annotations"]["summary"].is_string() && r["annotations"]["description"].is_string(), "{r}");
            let summary = r["annotations"]["summary"].as_str().unwrap();
            assert!(!summary.contains("{{ `"), "{w}: template quoting left in {summary}");
            let expr = r["expr"].as_str().unwrap();
            for m in metric_names(expr) {
                if m == "up" {
                    assert!(expr.contains(&format!("job=\"{svc_name}\"")), "{w}: {expr} is not the Service's job");
                    continue;
                }
                assert!(text.contains(&format!("# TYPE {m} ")), "{w}: kmdr serve does not export {m} ({expr})");
            }
        }
        let breached = rules.iter().find(|r| r["alert"] == "KmdrRpoBreached").unwrap();
        assert!(breached["annotations"]["summary"].as_str().unwrap().contains("{{ $labels.unit }}"), "{w}");
    }
    if let Some(cm) = dashboards.first() {
        let ns = Some(s(v, "/grafanaDashboard/namespace")).filter(|n| !n.is_empty()).unwrap_or(r.ns.clone());
        assert_eq!(cm.metadata.namespace.as_deref(), Some(ns.as_str()), "{w}");
        let labels = cm.metadata.labels.as_ref().unwrap();
        assert_eq!(labels.get(&s(v, "/grafanaDashboard/label")), Some(&s(v, "/grafanaDashboard/labelValue")), "{w}");
        let file = std::fs::read_to_string(dashboard_path()).unwrap();
        let embedded = &cm.data.as_ref().unwrap()["kmdr-dashboard.json"];
        assert_eq!(embedded.trim_end(), file.trim_end(), "{w}: the ConfigMap holds deploy/grafana/kmdr-dashboard.json");
    }
}

#[test]
pub(crate) fn helm_lint_passes_and_the_chart_refuses_what_cannot_work() {
    if !kmdr_testkit::need("helm") {
        return;
    }
    let chart = chart().display().to_string();
    let out = helm_ok(&["lint", "--strict", &chart]);
    assert!(out.contains("0 chart(s) failed"), "{out}");
    let examples = examples();
    let names: Vec<String> = examples.iter().map(|e| e.file_name().unwrap().to_string_lossy().into()).collect();
    for want in ["minimal.yaml", "s3.yaml", "existing-configmap.yaml", "monitoring.yaml"] {
        assert!(names.iter().any(|n| n == want), "no example {want}: {names:?}");
    }
    for e in &examples {
        let out = helm_ok(&["lint", "--strict", &chart, "-f", &e.display().to_string()]);
        assert!(out.contains("0 chart(s) failed"), "{}: {out}", e.display());
    }
    // Two replicas without a Lease would both back up; no key Secret, no repository.
    for (sets, says) in [
        (&["serve.lease.enabled=false"][..], "replicaCount > 1 needs serve.lease.enabled"),
        (&["repository.key.existingSecret="][..], "repository.key.existingSecret is required"),
        (&["plan.content="][..], "plan.content (or plan.existingConfigMap) is required"),
    ] {
        let mut args = vec!["template", "x", chart.as_str()];
        for s in sets {
            args.extend(["--set", s]);
        }
        let out = run_helm(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{sets:?}: {err}");
    }
}

#[test]
pub(crate) fn every_values_example_renders_into_kubernetes_types_with_least_privilege() {
    if !kmdr_testkit::need("helm") {
        return;
    }
    let mut checked = Vec::new();
    // The defaults, every example, and the toggles the examples leave alone.
    let mut cases: Vec<(Option<PathBuf>, Vec<&str>)> = vec![(None, vec![])];
    cases.extend(examples().into_iter().map(|e| (Some(e), vec![])));
    cases.extend([
        (None, vec!["rbac.volumes.csi=true", "rbac.volumes.velero=true", "rbac.volumes.kasten=true"]),
        (None, vec!["rbac.kamaji=false", "rbac.volumes.velero=true"]),
        (None, vec!["rbac.create=false"]),
        (None, vec!["repository.s3.existingSecret=", "repository.s3.endpoint=https://minio.example:9000"]),
        (None, vec!["replicaCount=1", "serve.lease.enabled=false", "grafanaDashboard.enabled=true"]),
    ]);
    for (file, sets) in &cases {
        let r = render("kmdr", "kmdr-system", file.as_deref(), sets);
        let args = check_rendering(&r);
        checked.push((r.what.clone(), r.docs.len(), args));
    }
    // The defaults: two replicas with the Lease, the chart's own names.
    let (what, _, args) = &checked[0];
    assert!(args.contains(&"--lease=kmdr-system/kmdr-serve".to_string()), "{what}: {args:?}");
    let r = render("kmdr", "kmdr-system", None, &[]);
    let o = objects(&r);
    assert_eq!(o.deployment.unwrap().spec.replicas, Some(2));
    assert!(o.service_monitor.is_none() && o.prometheus_rule.is_none(), "monitoring is off by default");
    // Another release and namespace: names and the Lease follow them.
    let r = render("prod", "dr", Some(&chart().join("examples/monitoring.yaml")), &[]);
    let args = check_rendering(&r);
    assert!(args.contains(&"--lease=dr/kmdr-serve".to_string()), "{args:?}");
    let o = objects(&r);
    assert_eq!(o.cluster_role.unwrap().metadata.name.as_deref(), Some("prod-kmdr-backup-reader"));
    let rule = o.prometheus_rule.unwrap();
    assert!(rule.to_string().contains(r#"up{job=\"prod-kmdr-metrics\"}"#), "{rule}");
    eprintln!(
        "helm template checked: {:?}",
        checked.iter().map(|(w, n, _)| format!("{w}: {n} objects")).collect::<Vec<_>>()
    );
}

#[test]
pub(crate) fn the_plain_manifests_are_the_chart_rendered() {
    if !kmdr_testkit::need("helm") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(top().join("scripts/render-deploy.sh"))
        .env("KMDR_RENDER_OUT", tmp.path())
        .output()
        .expect("run scripts/render-deploy.sh");
    assert!(out.status.success(), "render-deploy.sh: {}", String::from_utf8_lossy(&out.stderr));
    let deploy = top().join("deploy/kubernetes");
    let mut files: Vec<String> =
        std::fs::read_dir(&deploy).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    files.sort();
    assert_eq!(files, ["kmdr.yaml", "monitoring.yaml"], "deploy/kubernetes holds only what the chart renders");
    for f in &files {
        let want = std::fs::read_to_string(tmp.path().join(f)).unwrap();
        let have = std::fs::read_to_string(deploy.join(f)).unwrap();
        assert!(
            have == want,
            "deploy/kubernetes/{f} is not the chart rendered: run scripts/render-deploy.sh (first differing line: {:?})",
            have.lines().zip(want.lines()).find(|(a, b)| a != b)
        );
    }
    // And what is rendered there is the chart's defaults, checked as above.
    let docs = yaml_docs(&std::fs::read_to_string(deploy.join("kmdr.yaml")).unwrap());
    let values = yaml_value(&chart().join("values.yaml"));
    let r = Rendered {
        what: "deploy/kubernetes/kmdr.yaml".into(),
        values,
        ns: "kmdr-system".into(),
        release: "kmdr".into(),
        docs,
    };
    check_rendering(&r);
    let monitoring = yaml_docs(&std::fs::read_to_string(deploy.join("monitoring.yaml")).unwrap());
    let kinds: Vec<&str> = monitoring.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ServiceMonitor", "PrometheusRule"]);
}
