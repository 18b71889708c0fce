//! The plan's top level: `version`, `name`, `repository`, `verify`, `run`,
//! `contacts` and `credentials`.

use super::*;

impl Checker {
    pub(super) fn plan(&mut self, file: &Path, root: &Node) -> Option<Plan> {
        let top = self.map(Val { node: root, pos: pos_of(root) }, "the plan", TOP_KEYS, "")?;

        let version = self.required(&top, "version", "version: 1").and_then(|v| self.version(v));
        let name = self.required(&top, "name", "name: kmetal-prod").and_then(|v| self.string(v, "name"));
        let repository = self
            .required(&top, "repository", "repository: {url: s3://backups/kmetal}")
            .and_then(|v| self.repository(v));
        let layers =
            self.required(&top, "layers", "layers: {under-cluster: {etcd: {endpoints: [https://10.0.0.1:2379]}}}");
        let layers = layers.and_then(|v| self.layers(v));

        // The optional lists: absent is empty.
        let run = top.get("run").map_or(Some(Vec::new()), |v| self.run_steps(v));
        let contacts =
            top.get("contacts").map_or(Some(Vec::new()), |v| self.reviewed_list(v, "contacts", "role", CONTACT_KEYS));
        let credentials = top
            .get("credentials")
            .map_or(Some(Vec::new()), |v| self.reviewed_list(v, "credentials", "location", CREDENTIAL_KEYS));
        let verify = top.get("verify").map(|v| self.verify(v));

        // Steps may only name layers the plan covers (even when a layer's
        // body had problems of its own: its key was there).
        if let (Some(steps), Some((_, covered))) = (&run, &layers) {
            for (step, layer_pos) in steps {
                if !covered.contains(&step.layer) {
                    self.problem(
                        *layer_pos,
                        format!(
                            "run step {:?} is for layer {}, which the plan does not cover: add `{}:` under `layers:` or remove the step",
                            step.name, step.layer, step.layer
                        ),
                    );
                }
            }
        }

        Some(Plan {
            file: file.to_path_buf(),
            version: version?,
            name: name?,
            repository: repository?,
            layers: layers?.0,
            run: run?.into_iter().map(|(s, _)| s).collect(),
            contacts: contacts?,
            credentials: credentials?,
            verify: verify.map_or(Some(None), |v| v.map(Some))?,
        })
    }

    /// `verify:`: `every:` is required; the rest have defaults.
    pub(super) fn verify(&mut self, v: Val) -> Option<VerifySpec> {
        let pos = v.pos;
        let m = self.map(v, "verify", VERIFY_KEYS, "e.g. `verify: {every: 6h}`")?;
        let every = self.required(&m, "every", "every: 6h").and_then(|v| self.duration(v, "every", true));
        let mut spec = VerifySpec::every(Duration::ZERO);
        spec.pos = pos;
        let mut ok = true;
        if let Some(v) = m.get("sample") {
            ok &= self.count(v, "sample", 1, 1000).map(|n| spec.sample = n as usize).is_some();
        }
        if let Some(v) = m.get("concurrency") {
            ok &= self.count(v, "concurrency", 1, 64).map(|n| spec.concurrency = n as usize).is_some();
        }
        if let Some(v) = m.get("nice") {
            ok &= self.count(v, "nice", 0, 19).map(|n| spec.nice = n as i32).is_some();
        }
        if let Some(v) = m.get("targetDriver") {
            match self.string(v, "targetDriver").as_deref() {
                Some("etcd") => spec.same_driver = false,
                Some("same") => spec.same_driver = true,
                Some(other) => {
                    self.problem(v.pos, format!("`targetDriver:` {other:?} is not etcd or same: write `targetDriver: etcd` (a scratch etcd for any tenant) or `targetDriver: same` (a scratch server of the tenant's own driver)"));
                    ok = false;
                }
                None => ok = false,
            }
        }
        spec.every = every?;
        ok.then_some(spec)
    }

    /// A whole number in `min..=max`.
    pub(super) fn count(&mut self, v: Val, what: &str, min: i64, max: i64) -> Option<i64> {
        match &v.node.data {
            YamlData::Value(Scalar::Integer(n)) if (min..=max).contains(n) => Some(*n),
            _ => {
                self.problem(
                    v.pos,
                    format!("expected a whole number from {min} to {max} for `{what}:`, found {}", describe(v.node)),
                );
                None
            }
        }
    }

    pub(super) fn version(&mut self, v: Val) -> Option<u32> {
        match &v.node.data {
            YamlData::Value(Scalar::Integer(1)) => Some(1),
            YamlData::Value(Scalar::Integer(n)) => {
                self.problem(v.pos, format!("plan version {n} is not supported: this kmdr reads `version: 1`"));
                None
            }
            _ => {
                self.problem(v.pos, format!("expected the number 1, found {}: write `version: 1`", describe(v.node)));
                None
            }
        }
    }

    pub(super) fn repository(&mut self, v: Val) -> Option<RepositorySpec> {
        let m = self.map(v, "repository", REPOSITORY_KEYS, "")?;
        let url = self.required(&m, "url", "url: s3://backups/kmetal").and_then(|v| self.repository_url(v));
        let key_file = m.get("keyFile").and_then(|v| self.path(v, "keyFile"));
        let s3_endpoint = m.get("s3Endpoint").and_then(|v| self.string(v, "s3Endpoint"));
        Some(RepositorySpec { url: url?, key_file, s3_endpoint })
    }

    /// The same rules as `kmdr --repo`: a path, `file:///abs` or `s3://bucket/prefix`.
    pub(super) fn repository_url(&mut self, v: Val) -> Option<String> {
        let url = self.string(v, "url")?;
        let bad = if let Some(rest) = url.strip_prefix("s3://") {
            rest.split('/').next().unwrap_or("").is_empty().then(|| {
                format!("repository URL {url:?} names no bucket: write s3://BUCKET/PREFIX, e.g. s3://backups/kmetal")
            })
        } else if let Some(rest) = url.strip_prefix("file://") {
            (!rest.starts_with('/'))
                .then(|| format!("repository URL {url:?} must be file:///absolute/path, e.g. file:///srv/kmdr"))
        } else if let Some((scheme, _)) = url.split_once("://") {
            Some(format!(
                "repository URL scheme {scheme}:// is not supported: write a directory, file:///absolute/path or s3://bucket/prefix"
            ))
        } else {
            None
        };
        match bad {
            Some(message) => {
                self.problem(v.pos, message);
                None
            }
            None => Some(url),
        }
    }

    /// `run:`: the steps, each with the position of its `layer:` value.
    pub(super) fn run_steps(&mut self, v: Val) -> Option<Vec<(RunStep, Pos)>> {
        let items = self.list(v, "run")?;
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.into_iter().enumerate() {
            match self.run_step(item, i + 1) {
                Some(step) => out.push(step),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    pub(super) fn run_step(&mut self, v: Val, index: usize) -> Option<(RunStep, Pos)> {
        let m = self.map(v, &format!("run step {index}"), RUN_KEYS, "")?;
        let name = self.required(&m, "name", "name: provision nodes").and_then(|v| self.string(v, "name"));
        let layer_val = self.required(&m, "layer", "layer: under-cluster");
        let layer = layer_val.and_then(|v| self.layer_name(v));
        let phase = self.required(&m, "phase", "phase: before-restore").and_then(|v| self.phase(v));
        let command =
            self.required(&m, "command", "command: [ansible-playbook, site.yml]").and_then(|v| self.command(v));
        let timeout = self.required(&m, "timeout", "timeout: 30m").and_then(|v| self.duration(v, "timeout", true));
        let step =
            RunStep { name: name?, layer: layer?, phase: phase?, command: command?, timeout: timeout?, pos: v.pos };
        Some((step, layer_val?.pos))
    }

    pub(super) fn layer_name(&mut self, v: Val) -> Option<Layer> {
        let s = self.string(v, "layer")?;
        let names: Vec<&str> = Layer::ALL.iter().map(|l| l.as_str()).collect();
        match Layer::ALL.iter().copied().find(|l| l.as_str() == s) {
            Some(layer) => Some(layer),
            None => {
                self.problem(v.pos, unknown_message("layer", &s, &names, "the layers are"));
                None
            }
        }
    }

    pub(super) fn phase(&mut self, v: Val) -> Option<Phase> {
        let s = self.string(v, "phase")?;
        match PHASES.iter().find(|(name, _)| *name == s) {
            Some((_, phase)) => Some(*phase),
            None => {
                let names: Vec<&str> = PHASES.iter().map(|(n, _)| *n).collect();
                self.problem(v.pos, unknown_message("phase", &s, &names, "the phases are"));
                None
            }
        }
    }

    /// argv as a list, or a shell line run with `sh -c`.
    pub(super) fn command(&mut self, v: Val) -> Option<Vec<String>> {
        const ADVICE: &str = "write a list such as `command: [ansible-playbook, site.yml]` or a shell line such as `command: ./check.sh && echo ok`";
        match &v.node.data {
            YamlData::Value(Scalar::String(s)) if s.trim().is_empty() => {
                self.problem(v.pos, format!("`command:` is empty: {ADVICE}"));
                None
            }
            YamlData::Value(Scalar::String(s)) => Some(vec!["sh".into(), "-c".into(), s.to_string()]),
            YamlData::Sequence(_) => {
                let argv = self.string_list(v, "command", false)?;
                if argv.is_empty() {
                    self.problem(v.pos, format!("`command:` is an empty list: {ADVICE}"));
                    return None;
                }
                Some(argv.into_iter().map(|(s, _)| s).collect())
            }
            _ => {
                self.problem(
                    v.pos,
                    format!("expected a list of strings or a string, found {}: {ADVICE}", describe(v.node)),
                );
                None
            }
        }
    }

    /// `contacts:` or `credentials:`; `detail_key` is what goes to `Reviewed::detail`.
    pub(super) fn reviewed_list(
        &mut self,
        v: Val,
        what: &str,
        detail_key: &str,
        keys: &[&str],
    ) -> Option<Vec<Reviewed>> {
        let items = self.list(v, what)?;
        let singular = what.trim_end_matches('s');
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.into_iter().enumerate() {
            match self.reviewed(item, &format!("{singular} {}", i + 1), detail_key, keys) {
                Some(r) => out.push(r),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    pub(super) fn reviewed(&mut self, v: Val, what: &str, detail_key: &str, keys: &[&str]) -> Option<Reviewed> {
        let m = self.map(v, what, keys, "")?;
        let name = self.required(&m, "name", "name: Platform on-call").and_then(|v| self.string(v, "name"));
        let example = if detail_key == "role" { "role: first responder" } else { "location: vault://kv/kmdr" };
        let detail = self.required(&m, detail_key, example).and_then(|v| self.string(v, detail_key));
        let reviewed = self.required(&m, "reviewed", "reviewed: 2026-10-01").and_then(|v| self.date(v));
        let every =
            self.required(&m, "reviewEvery", "reviewEvery: 90d").and_then(|v| self.duration(v, "reviewEvery", true));
        Some(Reviewed { name: name?, detail: detail?, reviewed: reviewed?, review_every: every?, pos: v.pos })
    }
}
