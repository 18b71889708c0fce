//! `layers.persistent.volumes`: the user's volume tool, one entry per
//! provider (CSI snapshots, Velero, Kasten).

use super::*;

impl Checker {
    pub(super) fn volumes(&mut self, v: Val) -> Option<Vec<VolumeSpec>> {
        let items = self.list(v, "volumes")?;
        if items.is_empty() {
            self.problem(v.pos, "`volumes:` is empty: list at least one, e.g. `- {name: db, provider: velero, includedNamespaces: [db]}`");
            return None;
        }
        let mut out: Vec<VolumeSpec> = Vec::new();
        let mut ok = true;
        for (i, item) in items.into_iter().enumerate() {
            let Some(spec) = self.volume(item, i + 1) else {
                ok = false;
                continue;
            };
            if let Some(first) = out.iter().find(|o| o.entry.name == spec.entry.name) {
                let pos = self.map_key_pos(item, "name").unwrap_or(spec.pos);
                self.problem(
                    pos,
                    format!(
                        "volumes entry name {:?} is already used at line {}: give each entry its own name",
                        spec.entry.name, first.pos.line
                    ),
                );
                ok = false;
                continue;
            }
            out.push(spec);
        }
        ok.then_some(out)
    }

    pub(super) fn volume(&mut self, v: Val, index: usize) -> Option<VolumeSpec> {
        let all: Vec<&str> =
            VOLUME_COMMON_KEYS.iter().chain(CSI_KEYS).chain(VELERO_KEYS).chain(KASTEN_KEYS).copied().collect();
        let m = self.map(v, &format!("volumes entry {index}"), &all, "")?;
        let name = self.required(&m, "name", "name: tenant-db").and_then(|v| self.dns_label(v, "name"));
        let provider_val = self.required(&m, "provider", "provider: velero (or csi, kasten)");
        let provider = provider_val.and_then(|pv| {
            let p = self.string(pv, "provider")?;
            if PROVIDERS.contains(&p.as_str()) {
                Some((p, pv.pos))
            } else {
                self.problem(pv.pos, unknown_message("provider", &p, PROVIDERS, "the providers are"));
                None
            }
        });
        let timeout = m.get("timeout").map_or(Some(DEFAULT_VOLUME_TIMEOUT), |v| self.duration(v, "timeout", true));
        let kubeconfig = m.get("kubeconfig").and_then(|v| self.path(v, "kubeconfig"));
        let context = m.get("context").and_then(|v| self.string(v, "context"));
        let (provider, _) = provider?;
        let own: &[&str] = match provider.as_str() {
            "csi" => CSI_KEYS,
            "velero" => VELERO_KEYS,
            _ => KASTEN_KEYS,
        };
        let mut ok = true;
        for &(key, key_pos, _) in &m.entries {
            if !VOLUME_COMMON_KEYS.contains(&key) && !own.contains(&key) {
                self.problem(
                    key_pos,
                    format!("`{key}:` is not a setting of provider {provider}: its settings are {}", own.join(", ")),
                );
                ok = false;
            }
        }
        let opt_string = |ck: &mut Self, key: &str| m.get(key).and_then(|v| ck.string(v, key));
        let restore_namespace = m.get("restoreNamespace").and_then(|v| self.dns_label(v, "restoreNamespace"));
        let spec = match provider.as_str() {
            "csi" => {
                let namespace = self
                    .required(&m, "namespace", "namespace: tenant-a (the PVCs' namespace)")
                    .and_then(|v| self.dns_label(v, "namespace"));
                let selector = opt_string(self, "selector");
                let pvcs = match m.get("pvcs") {
                    None => Some(Vec::new()),
                    Some(v) => self.string_list(v, "pvcs", true).map(|l| l.into_iter().map(|(s, _)| s).collect()),
                };
                let class = self
                    .required(
                        &m,
                        "snapshotClass",
                        "snapshotClass: csi-hostpath-snapclass (`kubectl get volumesnapshotclass`)",
                    )
                    .and_then(|v| self.string(v, "snapshotClass"));
                if let (Some(p), Some(_)) = (&pvcs, &selector)
                    && !p.is_empty()
                {
                    self.problem(m.at, "give either `selector:` or `pvcs:`, not both");
                    ok = false;
                }
                if pvcs.as_ref().is_some_and(|p| p.is_empty()) && selector.is_none() && m.get("pvcs").is_none() {
                    self.problem(m.at, format!("{} needs `selector:` (e.g. `selector: app=db`) or `pvcs:` (e.g. `pvcs: [data-db-0]`): which PVCs to snapshot", m.what));
                    ok = false;
                }
                ProviderSpec::Csi(volumes::CsiSpec {
                    namespace: namespace?,
                    selector,
                    pvcs: pvcs?,
                    snapshot_class: class?,
                    restore_namespace,
                })
            }
            "velero" => {
                let namespace =
                    m.get("namespace").map_or(Some("velero".to_string()), |v| self.dns_label(v, "namespace"));
                let included = match m.get("includedNamespaces") {
                    None => Some(Vec::new()),
                    Some(v) => {
                        self.string_list(v, "includedNamespaces", true).map(|l| l.into_iter().map(|(s, _)| s).collect())
                    }
                };
                let selector = match m.get("labelSelector") {
                    None => Some(Default::default()),
                    Some(v) => self.match_labels(v),
                };
                let move_data = match m.get("snapshotMoveData") {
                    None => Some(None),
                    Some(v) => self.boolean(v, "snapshotMoveData").map(Some),
                };
                let schedule = opt_string(self, "schedule");
                if schedule.is_some() {
                    for key in ["includedNamespaces", "labelSelector", "snapshotMoveData", "ttl", "storageLocation"] {
                        if let Some(p) = self.map_key_pos(v, key) {
                            self.problem(p, format!("`{key}:` has no effect with `schedule:`: the Schedule's own template decides; remove it, or remove `schedule:` to have kmdr create Backups"));
                            ok = false;
                        }
                    }
                }
                if restore_namespace.is_some() && included.as_ref().is_some_and(|i| i.is_empty()) {
                    self.problem(
                        m.at,
                        "`restoreNamespace:` needs `includedNamespaces:` (Velero maps each included namespace to it)",
                    );
                    ok = false;
                }
                ProviderSpec::Velero(volumes::VeleroSpec {
                    namespace: namespace?,
                    included_namespaces: included?,
                    label_selector: selector?,
                    snapshot_move_data: move_data?,
                    ttl: opt_string(self, "ttl"),
                    storage_location: opt_string(self, "storageLocation"),
                    schedule,
                    restore_namespace,
                })
            }
            _ => {
                let namespace =
                    m.get("namespace").map_or(Some("kasten-io".to_string()), |v| self.dns_label(v, "namespace"));
                let policy = self
                    .required(
                        &m,
                        "policy",
                        "policy: tenant-a-backup (`kubectl get policies.config.kio.kasten.io -n kasten-io`)",
                    )
                    .and_then(|v| self.string(v, "policy"));
                let app = self
                    .required(&m, "appNamespace", "appNamespace: tenant-a (the namespace the policy protects)")
                    .and_then(|v| self.dns_label(v, "appNamespace"));
                ProviderSpec::Kasten(volumes::KastenSpec {
                    namespace: namespace?,
                    policy: policy?,
                    app_namespace: app?,
                    restore_namespace,
                })
            }
        };
        if !ok {
            return None;
        }
        Some(VolumeSpec {
            entry: VolumeEntry { name: name?, provider: spec, timeout: timeout?, poll: VOLUME_POLL.min(timeout? / 4) },
            kubeconfig,
            context,
            pos: v.pos,
        })
    }

    /// A Kubernetes name that is a DNS label (lower case letters, digits, `-`).
    pub(super) fn dns_label(&mut self, v: Val, what: &str) -> Option<String> {
        let s = self.string(v, what)?;
        let valid = s.len() <= 63
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if valid {
            Some(s)
        } else {
            self.problem(v.pos, format!("`{what}:` {s:?} is not a Kubernetes name: use lower-case letters, digits and `-` (at most 63), e.g. tenant-db"));
            None
        }
    }

    pub(super) fn boolean(&mut self, v: Val, what: &str) -> Option<bool> {
        match &v.node.data {
            YamlData::Value(Scalar::Boolean(b)) => Some(*b),
            _ => {
                self.problem(v.pos, format!("expected true or false for `{what}:`, found {}", describe(v.node)));
                None
            }
        }
    }

    /// `labelSelector:` as `k=v,k2=v2` or a mapping: Velero's `matchLabels`.
    pub(super) fn match_labels(&mut self, v: Val) -> Option<std::collections::BTreeMap<String, String>> {
        let mut out = std::collections::BTreeMap::new();
        if let YamlData::Mapping(_) = &v.node.data {
            let m = self.entries(v, "labelSelector")?;
            for &(k, _, val) in &m.entries {
                out.insert(k.to_string(), self.string(val, k)?);
            }
            return Some(out);
        }
        let text = self.string(v, "labelSelector")?;
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            match term.split_once('=') {
                Some((k, val)) if !k.is_empty() && !k.ends_with('!') && !val.contains('=') => {
                    out.insert(k.trim().to_string(), val.trim().to_string());
                }
                _ => {
                    self.problem(v.pos, format!("labelSelector term {term:?} is not KEY=VALUE: Velero's matchLabels takes equality terms only, e.g. `app=db,tier=data`"));
                    return None;
                }
            }
        }
        Some(out)
    }
}
