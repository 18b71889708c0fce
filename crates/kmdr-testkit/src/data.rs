//! Tenant data shaped like a Kubernetes API server's: keys relative to the
//! key root (`/pods/<ns>/<name>`, `/apiregistration.k8s.io/apiservices/v1.apps`),
//! values like its protobuf encoding (`k8s\0` and opaque bytes), some empty.

use rand::{Rng, RngCore, SeedableRng};

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

/// `n` distinct relative keys with values of about `value_size` bytes, sorted
/// by key bytes, deterministic in `seed`.
pub fn kube_records(n: usize, value_size: usize, seed: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let res = RESOURCES[i % RESOURCES.len()];
        let ns = NAMESPACES[(i / RESOURCES.len()) % NAMESPACES.len()];
        let key = format!("/{res}/{ns}/obj-{i:07}-{:04x}", rng.gen_range(0..0xffff));
        let value = if i % 97 == 5 {
            Vec::new()
        } else {
            let len = if value_size == 0 { 0 } else { rng.gen_range(value_size / 2..=value_size + value_size / 2) };
            let mut v = b"k8s\x00".to_vec();
            let start = v.len();
            v.resize(start + len, 0);
            rng.fill_bytes(&mut v[start..]);
            v
        };
        out.push((key.into_bytes(), value));
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}
