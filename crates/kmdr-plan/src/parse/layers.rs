//! `layers:`: each layer's sources (etcd, node files, Helm, Kamaji,
//! datastores and the tenants they hold).

use super::*;

impl Checker {
    /// `layers:`: the covered layers in recovery order, and the set of layer
    /// keys present (for checking `run:` steps).
    pub(super) fn layers(&mut self, v: Val) -> Option<(Vec<LayerSpec>, Vec<Layer>)> {
        let m = self.entries(v, "layers")?;
        if m.entries.is_empty() {
            self.problem(
                m.at,
                "`layers:` names no layer: add at least one of under-cluster, platform, tenant-control-planes, persistent-data",
            );
            return None;
        }
        let names: Vec<&str> = Layer::ALL.iter().map(|l| l.as_str()).collect();
        let mut covered = Vec::new();
        let mut specs: Vec<Option<LayerSpec>> = Vec::new();
        let mut ok = true;
        for &(key, key_pos, val) in &m.entries {
            let Some(layer) = Layer::ALL.iter().copied().find(|l| l.as_str() == key) else {
                self.problem(key_pos, unknown_message("layer", key, &names, "the layers are"));
                ok = false;
                continue;
            };
            covered.push(layer);
            let spec = self.layer(layer, key_pos, val);
            ok &= spec.is_some();
            specs.push(spec);
        }
        if !ok {
            return None;
        }
        let mut specs: Vec<LayerSpec> = specs.into_iter().flatten().collect();
        specs.sort_by_key(|s| Layer::ALL.iter().position(|l| *l == s.layer));
        Some((specs, covered))
    }

    pub(super) fn layer(&mut self, layer: Layer, key_pos: Pos, v: Val) -> Option<LayerSpec> {
        let (keys, hint) = match layer {
            Layer::UnderCluster => (UNDER_CLUSTER_KEYS, ""),
            Layer::TenantControlPlanes => (TENANT_LAYER_KEYS, ""),
            Layer::Platform => (PLATFORM_KEYS, ""),
            Layer::PersistentData | Layer::Unknown => (PERSISTENT_KEYS, ""),
        };
        let m = self.map(v, &format!("layer {layer}"), keys, hint)?;
        let (default_rto, default_rpo) = default_targets(layer);
        let rto = m.get("rto").map_or(Some(default_rto), |v| self.duration(v, "rto", true));
        let rpo = m.get("rpo").map_or(Some(default_rpo), |v| self.duration(v, "rpo", true));
        let source = match layer {
            Layer::UnderCluster => self
                .required(&m, "etcd", "etcd: {endpoints: [https://10.0.0.1:2379]} (the under-cluster's etcd)")
                .and_then(|v| self.etcd(v))
                .zip(match m.get("nodeFiles") {
                    None => Some(None),
                    Some(v) => self.node_files(v).map(Some),
                })
                .map(|(etcd, node_files)| LayerSource::UnderCluster { etcd, node_files }),
            Layer::TenantControlPlanes => self
                .required(
                    &m,
                    "datastores",
                    "datastores: [{name: shared-etcd, url: etcds://10.0.0.5:2379, tenants: all}]",
                )
                .and_then(|v| self.datastores(v))
                .zip(match m.get("kamaji") {
                    None => Some(None),
                    Some(v) => self.kamaji(v).map(Some),
                })
                .map(|(datastores, kamaji)| LayerSource::Tenants { datastores, kamaji }),
            Layer::Platform => match m.get("helm") {
                None => Some(LayerSource::Targets),
                Some(v) => self.helm(v).map(LayerSource::Helm),
            },
            _ => match m.get("volumes") {
                None => Some(LayerSource::Targets),
                Some(v) => self.volumes(v).map(LayerSource::Volumes),
            },
        };
        Some(LayerSpec { layer, rto: rto?, rpo: rpo?, source: source?, pos: key_pos })
    }

    pub(super) fn node_files(&mut self, v: Val) -> Option<NodeFilesSpec> {
        let m = self.map(v, "nodeFiles", NODE_FILES_KEYS, "")?;
        let mut ok = true;
        let paths = match m.get("paths") {
            None => Vec::new(),
            Some(v) => {
                let list = self.string_list(v, "paths", false).unwrap_or_default();
                for (p, pos) in &list {
                    if !p.starts_with('/') {
                        self.problem(
                            *pos,
                            format!(
                                "node file path {p:?} is relative: write it as on the node, e.g. /etc/kubernetes/pki"
                            ),
                        );
                        ok = false;
                    }
                }
                list.into_iter().map(|(p, _)| p).collect()
            }
        };
        let encryption_config = m.get("encryptionConfig").and_then(|v| self.string(v, "encryptionConfig"));
        if let (Some(p), Some(v)) = (&encryption_config, m.get("encryptionConfig"))
            && !p.starts_with('/')
        {
            self.problem(
                v.pos,
                format!("encryptionConfig {p:?} is relative: write the API server's --encryption-provider-config path"),
            );
            ok = false;
        }
        let leaf_certs = m.get("leafCerts").map_or(Some(false), |v| self.boolean(v, "leafCerts"));
        let root = m.get("root").map_or(Some(PathBuf::from("/")), |v| self.path(v, "root"));
        let restore_to = m.get("restoreTo").map_or(Some(PathBuf::from("/")), |v| self.path(v, "restoreTo"));
        ok.then_some(())?;
        Some(NodeFilesSpec { paths, encryption_config, leaf_certs: leaf_certs?, root: root?, restore_to: restore_to? })
    }

    pub(super) fn kamaji(&mut self, v: Val) -> Option<KamajiSource> {
        let m = self.map(v, "kamaji", KAMAJI_KEYS, "")?;
        let kubeconfig = m.get("kubeconfig").and_then(|v| self.path(v, "kubeconfig"));
        let context = m.get("context").and_then(|v| self.string(v, "context"));
        Some(KamajiSource { kubeconfig, context })
    }

    pub(super) fn helm(&mut self, v: Val) -> Option<HelmSource> {
        let m = self.map(v, "helm", HELM_KEYS, "")?;
        let release = self
            .required(&m, "release", "release: kmetal (the name `helm list -A` shows)")
            .and_then(|v| self.string(v, "release"));
        let namespace =
            self.required(&m, "namespace", "namespace: kmetal-system").and_then(|v| self.string(v, "namespace"));
        let secrets = match m.get("secrets") {
            None => Some(Vec::new()),
            Some(v) => {
                let list = self.string_list(v, "secrets", false);
                list.and_then(|list| {
                    let mut ok = true;
                    for (s, pos) in &list {
                        let valid = s
                            .split_once('/')
                            .is_some_and(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'));
                        if !valid {
                            self.problem(
                                *pos,
                                format!("secret {s:?} is not NAMESPACE/NAME: write e.g. kmetal-system/registry-creds"),
                            );
                            ok = false;
                        }
                    }
                    ok.then(|| list.into_iter().map(|(s, _)| s).collect())
                })
            }
        };
        let kubeconfig = m.get("kubeconfig").and_then(|v| self.path(v, "kubeconfig"));
        let context = m.get("context").and_then(|v| self.string(v, "context"));
        let chart = m.get("chart").and_then(|v| self.string(v, "chart"));
        Some(HelmSource { release: release?, namespace: namespace?, secrets: secrets?, chart, kubeconfig, context })
    }

    pub(super) fn etcd(&mut self, v: Val) -> Option<EtcdSource> {
        let m = self.map(v, "etcd", ETCD_KEYS, "")?;
        let endpoints =
            self.required(&m, "endpoints", "endpoints: [https://10.0.0.1:2379]").and_then(|v| self.endpoints(v));
        let tls = self.tls(&m);
        let restore = match m.get("restore") {
            None => Some(None),
            Some(v) => self.etcd_member(v).map(Some),
        };
        Some(EtcdSource { endpoints: endpoints?, tls, restore: restore? })
    }

    /// A list of etcd client URLs, or a single one.
    pub(super) fn endpoints(&mut self, v: Val) -> Option<Vec<String>> {
        let list = self.string_list(v, "endpoints", true)?;
        let mut ok = true;
        for (endpoint, pos) in &list {
            if let Some((scheme, _)) = endpoint.split_once("://")
                && scheme != "http"
                && scheme != "https"
            {
                self.problem(
                    *pos,
                    format!(
                        "etcd endpoint {endpoint:?} has scheme {scheme}://: write http://HOST:PORT or https://HOST:PORT"
                    ),
                );
                ok = false;
            }
        }
        ok.then(|| list.into_iter().map(|(s, _)| s).collect())
    }

    pub(super) fn tls(&mut self, m: &Map) -> TlsSpec {
        TlsSpec {
            cacert: m.get("cacert").and_then(|v| self.path(v, "cacert")),
            cert: m.get("cert").and_then(|v| self.path(v, "cert")),
            key: m.get("key").and_then(|v| self.path(v, "key")),
        }
    }

    pub(super) fn etcd_member(&mut self, v: Val) -> Option<EtcdMember> {
        let m = self.map(v, "restore", RESTORE_KEYS, "")?;
        let data_dir = self.required(&m, "dataDir", "dataDir: /var/lib/etcd").and_then(|v| self.path(v, "dataDir"));
        let name = self.required(&m, "name", "name: cp-1").and_then(|v| self.string(v, "name"));
        let initial_cluster = self
            .required(&m, "initialCluster", "initialCluster: cp-1=https://10.0.0.1:2380")
            .and_then(|v| self.string(v, "initialCluster"));
        let peer_urls = self
            .required(&m, "initialAdvertisePeerUrls", "initialAdvertisePeerUrls: https://10.0.0.1:2380")
            .and_then(|v| self.string(v, "initialAdvertisePeerUrls"));
        Some(EtcdMember {
            data_dir: data_dir?,
            name: name?,
            initial_cluster: initial_cluster?,
            initial_advertise_peer_urls: peer_urls?,
        })
    }

    pub(super) fn datastores(&mut self, v: Val) -> Option<Vec<DatastoreSpec>> {
        let items = self.list(v, "datastores")?;
        if items.is_empty() {
            self.problem(
                v.pos,
                "`datastores:` is empty: list at least one, e.g. `- {name: shared-etcd, url: etcds://10.0.0.5:2379, tenants: all}`",
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        let mut seen: HashMap<String, Pos> = HashMap::new();
        for (i, item) in items.into_iter().enumerate() {
            let Some(ds) = self.datastore(item, i + 1) else {
                ok = false;
                continue;
            };
            if let Some(first) = seen.get(&ds.name) {
                let name_pos = self.map_key_pos(item, "name").unwrap_or(ds.pos);
                self.problem(
                    name_pos,
                    format!(
                        "datastore name {:?} is already used at line {}: give each datastore its own name",
                        ds.name, first.line
                    ),
                );
                ok = false;
                continue;
            }
            seen.insert(ds.name.clone(), ds.pos);
            out.push(ds);
        }
        ok.then_some(out)
    }

    pub(super) fn datastore(&mut self, v: Val, index: usize) -> Option<DatastoreSpec> {
        let m = self.map(v, &format!("datastore {index}"), DATASTORE_KEYS, "")?;
        let name = self.required(&m, "name", "name: shared-etcd").and_then(|v| self.string(v, "name"));
        let url = self.required(&m, "url", "url: etcds://10.0.0.5:2379").and_then(|v| self.datastore_url(v));
        let tls = self.tls(&m);
        let password_file = m.get("passwordFile").and_then(|v| self.path(v, "passwordFile"));
        let tenants = self.required(&m, "tenants", "tenants: all").and_then(|v| self.tenants(v));
        Some(DatastoreSpec { name: name?, url: url?, tls, password_file, tenants: tenants?, pos: v.pos })
    }

    pub(super) fn datastore_url(&mut self, v: Val) -> Option<String> {
        let url = self.string(v, "url")?;
        let schemes = DATASTORE_SCHEMES.join(", ");
        match url.split_once("://") {
            Some((scheme, _)) if DATASTORE_SCHEMES.contains(&scheme) => Some(url),
            Some((scheme, _)) => {
                let hint = suggest(scheme, DATASTORE_SCHEMES).map(|s| format!("write {s}://...; ")).unwrap_or_default();
                self.problem(
                    v.pos,
                    format!("datastore URL scheme {scheme}:// is not supported: {hint}the schemes are {schemes}"),
                );
                None
            }
            None => {
                self.problem(
                    v.pos,
                    format!(
                        "{url:?} is not a datastore URL: write SCHEME://HOST:PORT, e.g. etcds://10.0.0.5:2379 or \
                         postgres://kamaji@10.0.0.6:5432/kamaji; the schemes are {schemes}"
                    ),
                );
                None
            }
        }
    }

    /// `tenants: all` or a list of schema names.
    pub(super) fn tenants(&mut self, v: Val) -> Option<TenantSelector> {
        const ADVICE: &str = "write `tenants: all` or a list of schema names, e.g. `tenants: [tenant_a, tenant_b]`";
        match &v.node.data {
            YamlData::Value(Scalar::String(s)) if s == "all" => Some(TenantSelector::All),
            YamlData::Sequence(_) => {
                let names = self.string_list(v, "tenants", false)?;
                if names.is_empty() {
                    self.problem(v.pos, format!("`tenants:` is an empty list: {ADVICE}"));
                    return None;
                }
                let mut seen: Vec<&str> = Vec::new();
                let mut ok = true;
                for (name, pos) in &names {
                    if seen.contains(&name.as_str()) {
                        self.problem(*pos, format!("tenant {name:?} is listed twice: list each schema once"));
                        ok = false;
                    }
                    seen.push(name);
                }
                ok.then(|| TenantSelector::Only(names.into_iter().map(|(s, _)| s).collect()))
            }
            _ => {
                self.problem(
                    v.pos,
                    format!("`tenants:` must be \"all\" or a list, found {}: {ADVICE}", describe(v.node)),
                );
                None
            }
        }
    }
}
