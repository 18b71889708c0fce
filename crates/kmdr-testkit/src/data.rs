//! Kubernetes-shaped data, deterministic in a seed: keys as an API server
//! writes them below its key root (`/pods/<ns>/<name>`,
//! `/apiregistration.k8s.io/apiservices/v1.apps`), values like its protobuf
//! encoding (`k8s\0`, then opaque bytes).
//!
//! One generator for everyone: the tests and the tenant benchmark take
//! [`kube_records`] (many keys, values of a chosen size), the lab takes
//! [`control_plane_records`] and [`management_cluster_records`] (a tenant's
//! and a Kamaji management cluster's objects, named like the real ones), the
//! etcd benchmark takes [`Rng`] for its values.

/// A small deterministic generator (splitmix64): the same seed gives the same
/// data on every machine and every run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Fill `buf` with pseudo-random (incompressible) bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// `n` pseudo-random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }

    /// A Kubernetes-style random suffix (`x2k4q`).
    fn suffix(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..len).map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize] as char).collect()
    }
}

/// Keys and values, sorted by key, keys distinct.
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// The resources and namespaces of [`kube_records`]: an API group with dots,
/// a resource of two segments, a namespace with capitals and one with a dot,
/// so that every driver's key encoding is exercised.
const RESOURCES: [&str; 8] = [
    "pods",
    "services/specs",
    "configmaps",
    "secrets",
    "events",
    "deployments",
    "apiregistration.k8s.io/apiservices",
    "leases/kube-node-lease",
];
const NAMESPACES: [&str; 4] = ["default", "kube-system", "team-A", "web.prod"];

/// `n` distinct relative keys (`/<resource>/<namespace>/obj-<i>-<hex>`) with
/// values of `value_size`/2 ..= 1.5 x `value_size` bytes behind `k8s\0`,
/// about 1% of them empty; sorted by key bytes, deterministic in `seed`.
pub fn kube_records(n: usize, value_size: usize, seed: u64) -> Records {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let res = RESOURCES[i % RESOURCES.len()];
        let ns = NAMESPACES[(i / RESOURCES.len()) % NAMESPACES.len()];
        let key = format!("/{res}/{ns}/obj-{i:07}-{:04x}", rng.below(0xffff));
        let value = if i % 97 == 5 {
            Vec::new()
        } else {
            let len = if value_size == 0 { 0 } else { value_size / 2 + rng.below(value_size as u64 + 1) as usize };
            envelope(&mut rng, b"", len)
        };
        out.push((key.into_bytes(), value));
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// `k8s\0`, `header`, then `body` opaque bytes.
fn envelope(rng: &mut Rng, header: &[u8], body: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + header.len() + body);
    v.extend_from_slice(b"k8s\x00");
    v.extend_from_slice(header);
    let start = v.len();
    v.resize(start + body, 0);
    rng.fill(&mut v[start..]);
    v
}

/// A new value for an object: `k8s\0` and `size`/2 ..= 1.5 x `size` opaque bytes.
pub fn object_value(rng: &mut Rng, size: usize) -> Vec<u8> {
    let len = size / 2 + rng.below(size as u64 + 1) as usize;
    envelope(rng, b"", len)
}

/// An object as the API server stores it: the `k8s\0` envelope, a readable
/// type and name, and an opaque body of realistic size (200 to 1400 bytes).
fn object(rng: &mut Rng, api: &str, kind: &str, name: &str) -> Vec<u8> {
    let header = format!("\n\x0b\n{api}\x12{kind}\x12{name}");
    let body = 200 + rng.below(1200) as usize;
    envelope(rng, header.as_bytes(), body)
}

/// The objects every API server writes first: `(key, apiVersion, kind)`.
const FIXED: &[(&str, &str, &str)] = &[
    ("/apiregistration.k8s.io/apiservices/v1.", "apiregistration.k8s.io/v1", "APIService"),
    ("/apiregistration.k8s.io/apiservices/v1.apps", "apiregistration.k8s.io/v1", "APIService"),
    ("/apiregistration.k8s.io/apiservices/v1.batch", "apiregistration.k8s.io/v1", "APIService"),
    ("/namespaces/default", "v1", "Namespace"),
    ("/namespaces/kube-system", "v1", "Namespace"),
    ("/ranges/serviceips", "v1", "RangeAllocation"),
    ("/ranges/servicenodeports", "v1", "RangeAllocation"),
    ("/services/specs/default/kubernetes", "v1", "Service"),
];

/// The workload objects, in the order they are dealt out: `(resource, apiVersion, kind)`.
const KINDS: &[(&str, &str, &str)] = &[
    ("pods", "v1", "Pod"),
    ("configmaps", "v1", "ConfigMap"),
    ("secrets", "v1", "Secret"),
    ("pods", "v1", "Pod"),
    ("services/specs", "v1", "Service"),
    ("deployments", "apps/v1", "Deployment"),
    ("serviceaccounts", "v1", "ServiceAccount"),
    ("leases", "coordination.k8s.io/v1", "Lease"),
];
const APPS: &[&str] = &["web", "api", "worker", "cache", "ingress", "metrics", "auth", "billing"];

/// `n` keys of one tenant control plane, relative to its key root, sorted:
/// the API server's fixed objects, then pods, config maps, secrets, services,
/// deployments, service accounts and leases spread over `default`,
/// `kube-system`, `<tenant>-apps` and `<tenant>-jobs`.
pub fn control_plane_records(tenant: &str, n: usize, seed: u64) -> Records {
    let mut rng = Rng::new(seed ^ 0x6b6d6472);
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for (k, api, kind) in FIXED.iter().take(n) {
        out.push((k.to_string(), object(&mut rng, api, kind, k.rsplit('/').next().unwrap_or(k))));
    }
    let namespaces =
        ["default", "kube-system", &format!("{tenant}-apps"), &format!("{tenant}-jobs")].map(|s| s.to_string());
    let mut i = 0usize;
    while out.len() < n {
        let (res, api, kind) = KINDS[i % KINDS.len()];
        let ns = &namespaces[(i / KINDS.len()) % namespaces.len()];
        let app = APPS[rng.below(APPS.len() as u64) as usize];
        let name = match res {
            "pods" => format!("{app}-{}-{}", rng.suffix(9), rng.suffix(5)),
            _ => format!("{app}-{}", rng.suffix(5)),
        };
        let key = format!("/{res}/{ns}/{name}");
        out.push((key, object(&mut rng, api, kind, &name)));
        i += 1;
        // Names are random: on a collision, the dedup below leaves one key short; the loop refills.
        if out.len() == n {
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out.dedup_by(|a, b| a.0 == b.0);
        }
    }
    out.into_iter().map(|(k, v)| (k.into_bytes(), v)).collect()
}

/// A kubeadm management cluster running Kamaji, below `/registry`: the
/// kamaji-system namespace, one DataStore, one TenantControlPlane per name in
/// `tenants`, filled with other objects up to `n` keys (more when `n` is
/// smaller than what Kamaji alone needs).
pub fn management_cluster_records(n: usize, tenants: &[String]) -> Records {
    let mut rng = Rng::new(0x756e646572);
    let kamaji = "kamaji.clastix.io/v1alpha1";
    let mut extra: Vec<(String, Vec<u8>)> = vec![
        ("/namespaces/kamaji-system".into(), object(&mut rng, "v1", "Namespace", "kamaji-system")),
        ("/kamaji.clastix.io/datastores/tenant-etcd".into(), object(&mut rng, kamaji, "DataStore", "tenant-etcd")),
    ];
    for t in tenants {
        extra.push((
            format!("/kamaji.clastix.io/tenantcontrolplanes/tenants/{t}"),
            object(&mut rng, kamaji, "TenantControlPlane", t),
        ));
    }
    let mut rest = control_plane_records("platform", n.saturating_sub(extra.len()).max(1), 0x706c6174);
    let mut all: Records = extra.into_iter().map(|(k, v)| (k.into_bytes(), v)).collect();
    all.append(&mut rest);
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all.dedup_by(|a, b| a.0 == b.0);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted_unique(r: &Records) -> bool {
        r.windows(2).all(|w| w[0].0 < w[1].0)
    }

    #[test]
    fn kube_records_are_counted_sized_and_deterministic() {
        let r = kube_records(2000, 1024, 7);
        assert_eq!(r.len(), 2000);
        assert!(sorted_unique(&r));
        let empty = r.iter().filter(|(_, v)| v.is_empty()).count();
        assert_eq!(empty, 21, "every 97th value is empty");
        let full: Vec<usize> = r.iter().filter(|(_, v)| !v.is_empty()).map(|(_, v)| v.len() - 4).collect();
        assert!(full.iter().all(|&l| (512..=1536).contains(&l)));
        let mean = full.iter().sum::<usize>() as f64 / full.len() as f64;
        assert!((mean - 1024.0).abs() < 30.0, "mean value size {mean}");
        assert!(r.iter().any(|(k, _)| k.starts_with(b"/leases/kube-node-lease/web.prod/")));
        assert_eq!(kube_records(2000, 1024, 7), r);
        assert_ne!(kube_records(2000, 1024, 8), r);
        assert!(kube_records(50, 0, 1).iter().all(|(_, v)| v.len() <= 4));
    }

    #[test]
    fn control_plane_records_are_kube_shaped_sorted_and_counted() {
        for n in [3, 10, 500, 2000] {
            let r = control_plane_records("acme", n, 1);
            assert_eq!(r.len(), n);
            assert!(sorted_unique(&r));
            assert!(r.iter().all(|(_, v)| v.starts_with(b"k8s\0")));
        }
        let r = control_plane_records("acme", 500, 1);
        let has = |p: &str| r.iter().any(|(k, _)| k.starts_with(p.as_bytes()));
        assert!(has("/pods/acme-apps/") && has("/configmaps/") && has("/secrets/"));
        assert!(has("/apiregistration.k8s.io/apiservices/v1.apps"));
        assert_eq!(control_plane_records("acme", 500, 1), r, "deterministic");
    }

    #[test]
    fn a_management_cluster_holds_one_tenant_control_plane_per_tenant() {
        let tenants: Vec<String> = ["acme", "globex"].map(String::from).into();
        let r = management_cluster_records(200, &tenants);
        assert_eq!(r.len(), 200);
        assert!(sorted_unique(&r));
        let tcps: Vec<&[u8]> = r
            .iter()
            .map(|(k, _)| k.as_slice())
            .filter(|k| k.starts_with(b"/kamaji.clastix.io/tenantcontrolplanes/"))
            .collect();
        assert_eq!(
            tcps,
            [
                &b"/kamaji.clastix.io/tenantcontrolplanes/tenants/acme"[..],
                b"/kamaji.clastix.io/tenantcontrolplanes/tenants/globex"
            ]
        );
        assert!(management_cluster_records(2, &tenants).len() > 4, "Kamaji's objects and at least one more");
    }
}
