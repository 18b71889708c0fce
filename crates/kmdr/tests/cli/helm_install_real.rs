//! `helm install` of deploy/helm/kmdr into the test API server (kube-apiserver
//! 1.34): the objects read back, SubjectAccessReviews of the chart's
//! ServiceAccount (what it may do and what it may not), and kmdr itself run
//! as that ServiceAccount (a token from the TokenRequest API): `backup
//! platform` of the chart's own release, and `serve --lease` taking, holding
//! and releasing the Lease, with no request refused. The chart's rendering
//! and lint are helm_chart_real.rs's.

use crate::common;
use crate::serve::{Serve, http_get, runtime, write_plan_for};

use crate::helm_chart_real::*;
use common::real_kube::{self, get};
use common::{Etcd, Kmdr};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// The Kubernetes API path of a rendered object.
fn object_path(d: &Value) -> String {
    let plural = match d["kind"].as_str().unwrap() {
        "ServiceAccount" => "serviceaccounts",
        "ConfigMap" => "configmaps",
        "Service" => "services",
        "Deployment" => "deployments",
        "ClusterRole" => "clusterroles",
        "ClusterRoleBinding" => "clusterrolebindings",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        other => panic!("no path for {other}"),
    };
    let ns = d["metadata"]["namespace"].as_str();
    format!(
        "{}/{}",
        real_kube::collection(d["apiVersion"].as_str().unwrap(), plural, ns),
        d["metadata"]["name"].as_str().unwrap()
    )
}

/// Whether `user` may: a SubjectAccessReview, as the API server's authorizer answers it.
fn may(
    s: &kmdr_testkit::KubeApiServer,
    user: &str,
    ns: &str,
    verb: &str,
    group: &str,
    resource: &str,
    name: &str,
) -> bool {
    let sa_ns = user.split(':').nth(2).unwrap();
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{sa_ns}"), "system:authenticated"],
            "resourceAttributes": {"namespace": ns, "verb": verb, "group": group, "resource": resource, "name": name},
        },
    });
    let body = review.to_string();
    let answer = s
        .request(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            Some(("application/json", body.as_bytes())),
        )
        .unwrap_or_else(|e| panic!("SubjectAccessReview: {e}"));
    answer["status"]["allowed"].as_bool().unwrap_or(false)
}

#[test]
fn helm_install_into_the_api_server_and_kmdr_runs_as_its_service_account() {
    const NS: &str = "hc-kmdr";
    const RELEASE: &str = "hc-kmdr";
    if !kmdr_testkit::need("helm") {
        return;
    }
    need_etcd!();
    let Some(s) = real_kube::server() else { return };
    let started = Instant::now();
    let kc = s.kubeconfig.display().to_string();
    let chart_s = chart().display().to_string();
    let example = chart().join("examples/s3.yaml");
    let example_s = example.display().to_string();
    let rendered = render(RELEASE, NS, Some(&example), &[]);
    let want_args = check_rendering(&rendered);

    // --- helm install, then every object the chart renders read back from the server.
    let t0 = Instant::now();
    helm_ok(&["install", RELEASE, &chart_s, "-n", NS, "--create-namespace", "-f", &example_s, "--kubeconfig", &kc]);
    let install_took = t0.elapsed();
    for d in &rendered.docs {
        let path = object_path(d);
        let live = get(s, &path).unwrap_or_else(|| panic!("helm install did not create {path}"));
        assert_eq!(live["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm", "{path}");
        assert_eq!(live["metadata"]["annotations"]["meta.helm.sh/release-name"], RELEASE, "{path}");
    }
    let dep: Deployment =
        serde_json::from_value(get(s, &format!("/apis/apps/v1/namespaces/{NS}/deployments/{RELEASE}")).unwrap())
            .unwrap();
    let spec = dep.spec;
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    let c = container(&pod);
    assert_eq!(c.args.as_ref().unwrap(), &want_args, "the stored Deployment runs what was rendered");
    assert_eq!(env_secret(c, "AWS_ACCESS_KEY_ID"), Some(("dr-bucket-credentials".into(), "access-key".into())));
    let key = pod.volumes.as_ref().unwrap().iter().find(|v| v.name == "key").unwrap().secret.clone().unwrap();
    assert_eq!((key.secret_name.as_deref(), key.default_mode), (Some("kmdr-key"), Some(0o400)));
    assert_eq!(c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/readyz"));
    let cr: ClusterRole = serde_json::from_value(
        get(s, &format!("/apis/rbac.authorization.k8s.io/v1/clusterroles/{RELEASE}-backup-reader")).unwrap(),
    )
    .unwrap();
    assert_eq!(grants(cr.rules.as_deref().unwrap()), expected_cluster_grants(&rendered.values["rbac"]));
    let role: Role = serde_json::from_value(
        get(s, &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles/{RELEASE}-leader-election")).unwrap(),
    )
    .unwrap();
    assert_eq!(grants(role.rules.as_deref().unwrap()), expected_lease_grants("kmdr-serve"));
    let cm: ConfigMap =
        serde_json::from_value(get(s, &format!("/api/v1/namespaces/{NS}/configmaps/{RELEASE}-plan")).unwrap()).unwrap();
    kmdr_plan::parse_plan(Path::new("kmdr.yaml"), &cm.data.unwrap()["kmdr.yaml"]).expect("the stored plan parses");
    let helm_secrets =
        real_kube::list(s, &format!("/api/v1/namespaces/{NS}/secrets?labelSelector=owner%3Dhelm,name%3D{RELEASE}"));
    assert_eq!(helm_secrets.len(), 1, "helm's release Secret");

    // --- what the ServiceAccount may do, as the authorizer answers.
    let user = format!("system:serviceaccount:{NS}:{RELEASE}");
    let allowed = [
        ("kmetal-system", "list", "", "secrets", ""),
        ("tenants", "get", "", "secrets", "tenant1-ca"),
        ("", "list", "kamaji.clastix.io", "tenantcontrolplanes", ""),
        ("tenants", "get", "kamaji.clastix.io", "tenantcontrolplanes", "tenant1"),
        ("", "get", "kamaji.clastix.io", "datastores", "default"),
        ("tenants", "get", "controlplane.cluster.x-k8s.io", "kamajicontrolplanes", "tenant1"),
        ("tenants", "get", "cluster.x-k8s.io", "clusters", "tenant1"),
        (NS, "get", "coordination.k8s.io", "leases", "kmdr-serve"),
        (NS, "update", "coordination.k8s.io", "leases", "kmdr-serve"),
        (NS, "create", "coordination.k8s.io", "leases", ""),
    ];
    let denied = [
        ("kmetal-system", "create", "", "secrets", ""),
        ("kmetal-system", "update", "", "secrets", "registry-creds"),
        ("kmetal-system", "delete", "", "secrets", "registry-creds"),
        ("kmetal-system", "watch", "", "secrets", ""),
        ("tenants", "delete", "kamaji.clastix.io", "tenantcontrolplanes", "tenant1"),
        ("tenants", "update", "kamaji.clastix.io", "tenantcontrolplanes", "tenant1"),
        ("tenants", "create", "kamaji.clastix.io", "tenantcontrolplanes", ""),
        ("", "list", "kamaji.clastix.io", "datastores", ""),
        ("", "delete", "kamaji.clastix.io", "datastores", "default"),
        (NS, "update", "coordination.k8s.io", "leases", "someone-elses"),
        (NS, "patch", "coordination.k8s.io", "leases", "kmdr-serve"),
        (NS, "delete", "coordination.k8s.io", "leases", "kmdr-serve"),
        ("default", "get", "coordination.k8s.io", "leases", "kmdr-serve"),
        ("default", "create", "coordination.k8s.io", "leases", ""),
        (NS, "get", "", "configmaps", "hc-kmdr-plan"),
        (NS, "list", "", "pods", ""),
        ("", "list", "", "namespaces", ""),
        ("apps", "create", "snapshot.storage.k8s.io", "volumesnapshots", ""),
        ("velero", "create", "velero.io", "backups", ""),
    ];
    for (ns, verb, group, resource, name) in allowed {
        assert!(may(s, &user, ns, verb, group, resource, name), "{user} may not {verb} {group}/{resource} {ns}/{name}");
    }
    for (ns, verb, group, resource, name) in denied {
        assert!(!may(s, &user, ns, verb, group, resource, name), "{user} may {verb} {group}/{resource} {ns}/{name}");
    }

    // --- kmdr itself as the ServiceAccount, with a token the API issues for it.
    let request =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}})
            .to_string();
    let token = s
        .request(
            "POST",
            &format!("/api/v1/namespaces/{NS}/serviceaccounts/{RELEASE}/token"),
            Some(("application/json", request.as_bytes())),
        )
        .unwrap_or_else(|e| panic!("TokenRequest: {e}"))["status"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let sa_kc = dir.path().join("sa.kubeconfig");
    let config = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "api", "cluster": {"server": s.url, "certificate-authority": s.pki.join("ca.crt").display().to_string()}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "api", "user": "sa"}}],
    });
    std::fs::write(&sa_kc, serde_norway::to_string(&config).unwrap()).unwrap();
    let sa_kc_s = sa_kc.display().to_string();
    let mark = s.audit_events().len();

    // The platform layer: the chart's own release, from helm's Secret (list by label, get).
    let k = Kmdr::local(dir.path());
    k.init();
    let m = k.json(&["backup", "platform", "--release", RELEASE, "-n", NS, "--kubeconfig", &sa_kc_s]);
    assert_eq!((m["source"]["release"].as_str(), m["source"]["chart"].as_str()), (Some(RELEASE), Some("kmdr")), "{m}");

    // serve --lease as the Deployment runs it: takes the Lease, leads, releases it on SIGTERM.
    let etcd = Etcd::start(dir.path(), "src");
    runtime().block_on(etcd.load("/t1/seed/", 10, 16, 3));
    let plan = write_plan_for(dir.path(), &k, &etcd.client_url.replace("http://", "etcd://"));
    let log = dir.path().join("serve.log");
    let lease_arg = want_args.iter().find_map(|a| a.strip_prefix("--lease=")).unwrap().to_string();
    assert_eq!(lease_arg, format!("{NS}/kmdr-serve"));
    let serve = Serve::start_with(
        &k,
        &plan,
        &log,
        &["--lease", &lease_arg, "--lease-identity", "hc-a", "--kubeconfig", &sa_kc_s],
    );
    let lease_path = format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/kmdr-serve");
    let holder = || get(s, &lease_path).map(|l| l["spec"]["holderIdentity"].as_str().unwrap_or("").to_string());
    let t0 = Instant::now();
    while holder().as_deref() != Some("hc-a") {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the ServiceAccount did not take the Lease; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let t0 = Instant::now();
    while !http_get(&serve.addr, "/metrics").is_some_and(|(_, m)| m.contains("\nkmdr_leader 1\n")) {
        assert!(t0.elapsed() < Duration::from_secs(30), "not leading; see {}", log.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    serve.terminate();
    assert_eq!(holder().as_deref(), Some(""), "the Lease is released on SIGTERM (a PUT the Role allows)");
    let refused: Vec<String> = s.audit_events()[mark..]
        .iter()
        .filter(|e| e["user"]["username"] == user.as_str())
        .filter(|e| e["responseStatus"]["code"].as_u64().is_some_and(|c| c == 401 || c == 403))
        .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
        .collect();
    assert!(refused.is_empty(), "requests of {user} refused: {refused:?}");
    let used: BTreeSet<String> = s.audit_events()[mark..]
        .iter()
        .filter(|e| e["user"]["username"] == user.as_str())
        .filter_map(|e| Some(format!("{} {}", e["verb"].as_str()?, e["objectRef"]["resource"].as_str()?)))
        .collect();
    for want in ["list secrets", "get leases", "update leases"] {
        assert!(used.contains(want), "kmdr as the ServiceAccount never did {want}: {used:?}");
    }

    // --- helm uninstall takes everything away, the cluster-scoped objects too.
    helm_ok(&["uninstall", RELEASE, "-n", NS, "--kubeconfig", &kc]);
    for d in &rendered.docs {
        let path = object_path(d);
        let t0 = Instant::now();
        while get(s, &path).is_some() {
            assert!(t0.elapsed() < Duration::from_secs(30), "{path} outlived helm uninstall");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    eprintln!(
        "helm chart on the real API server: install {:.1}s, whole test {:.1}s",
        install_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
