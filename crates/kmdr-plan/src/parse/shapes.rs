//! Generic shapes (mappings, lists, required keys) and scalars (strings,
//! paths, durations, dates), each checked with a problem that says what to
//! write instead.

use super::*;

impl Checker {
    /// A mapping whose keys are strings; an empty value is an empty mapping.
    pub(super) fn entries<'n, 'y>(&mut self, v: Val<'n, 'y>, what: &str) -> Option<Map<'n, 'y>> {
        let mapping = match &v.node.data {
            YamlData::Mapping(mapping) => mapping,
            YamlData::Value(Scalar::Null) => {
                return Some(Map { at: v.pos, what: what.into(), entries: Vec::new() });
            }
            _ => {
                self.problem(
                    v.pos,
                    format!("expected a mapping (indented `key: value` lines) for {what}, found {}", describe(v.node)),
                );
                return None;
            }
        };
        let mut entries = Vec::new();
        for (k, value) in mapping {
            let key_pos = pos_of(k);
            let Some(key) = k.data.as_str() else {
                self.problem(key_pos, format!("keys in {what} are names, found {}: write a name", describe(k)));
                continue;
            };
            let pos = if is_null(value) { key_pos } else { pos_of(value) };
            entries.push((key, key_pos, Val { node: value, pos }));
        }
        Some(Map { at: v.pos, what: what.into(), entries })
    }

    /// A mapping with a fixed set of keys: any other key is reported, with
    /// the closest known key when one is close, and `hint` appended.
    pub(super) fn map<'n, 'y>(&mut self, v: Val<'n, 'y>, what: &str, keys: &[&str], hint: &str) -> Option<Map<'n, 'y>> {
        let mut m = self.entries(v, what)?;
        let mut unknown = Vec::new();
        m.entries.retain(|(key, key_pos, _)| {
            let known = keys.contains(key);
            if !known {
                unknown.push((key.to_string(), *key_pos));
            }
            known
        });
        for (key, pos) in unknown {
            let message = match suggest(&key, keys) {
                Some(s) => format!("unknown key {key:?} in {what}: write {s:?}{hint}"),
                None => format!("unknown key {key:?} in {what}: the keys are {}{hint}", keys.join(", ")),
            };
            self.problem(pos, message);
        }
        Some(m)
    }

    /// A required key's value, or a problem at the mapping that lacks it.
    pub(super) fn required<'n, 'y>(&mut self, m: &Map<'n, 'y>, key: &str, example: &str) -> Option<Val<'n, 'y>> {
        let v = m.get(key);
        if v.is_none() {
            self.problem(m.at, format!("{} needs `{key}:`: add e.g. `{example}`", m.what));
        }
        v
    }

    /// Where a key of a mapping node is, without checking anything.
    pub(super) fn map_key_pos(&self, v: Val, key: &str) -> Option<Pos> {
        let YamlData::Mapping(mapping) = &v.node.data else {
            return None;
        };
        mapping.keys().find(|k| k.data.as_str() == Some(key)).map(pos_of)
    }

    /// A list; an empty value is an empty list.
    pub(super) fn list<'n, 'y>(&mut self, v: Val<'n, 'y>, what: &str) -> Option<Vec<Val<'n, 'y>>> {
        match &v.node.data {
            YamlData::Sequence(items) => Some(
                items.iter().map(|node| Val { node, pos: if is_null(node) { v.pos } else { pos_of(node) } }).collect(),
            ),
            YamlData::Value(Scalar::Null) => Some(Vec::new()),
            _ => {
                self.problem(
                    v.pos,
                    format!("expected a list (lines starting with `- `) for `{what}:`, found {}", describe(v.node)),
                );
                None
            }
        }
    }

    /// A list of strings with their positions; when `single_ok`, one string
    /// stands for a list of one. An empty list is an error when `single_ok`
    /// (callers that allow other shapes check emptiness themselves).
    pub(super) fn string_list(&mut self, v: Val, what: &str, single_ok: bool) -> Option<Vec<(String, Pos)>> {
        let items = match &v.node.data {
            YamlData::Value(Scalar::String(s)) if single_ok => {
                return Some(vec![(s.to_string(), v.pos)]);
            }
            YamlData::Sequence(items) => items,
            _ => {
                let or_string = if single_ok { " (or a single string)" } else { "" };
                self.problem(
                    v.pos,
                    format!("expected a list of strings{or_string} for `{what}:`, found {}", describe(v.node)),
                );
                return None;
            }
        };
        if items.is_empty() && single_ok {
            self.problem(v.pos, format!("`{what}:` is an empty list: list at least one"));
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for node in items {
            let item = Val { node, pos: pos_of(node) };
            match self.string(item, what) {
                Some(s) => out.push((s, item.pos)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    // ---- scalars -----------------------------------------------------------

    /// A non-empty string. Numbers and booleans are refused with advice to
    /// quote them, so that `name: 010` does not silently become "8".
    pub(super) fn string(&mut self, v: Val, what: &str) -> Option<String> {
        match &v.node.data {
            YamlData::Value(Scalar::String(s)) if !s.trim().is_empty() => Some(s.to_string()),
            YamlData::Value(Scalar::String(_)) | YamlData::Value(Scalar::Null) => {
                self.problem(v.pos, format!("`{what}:` has no value: write one after the colon"));
                None
            }
            _ => {
                let quote = scalar_text(v.node)
                    .map(|t| format!(": quote it (\"{t}\") if it is meant as text"))
                    .unwrap_or_default();
                self.problem(v.pos, format!("expected a string for `{what}:`, found {}{quote}", describe(v.node)));
                None
            }
        }
    }

    pub(super) fn path(&mut self, v: Val, what: &str) -> Option<PathBuf> {
        self.string(v, what).map(PathBuf::from)
    }

    pub(super) fn duration(&mut self, v: Val, what: &str, nonzero: bool) -> Option<Duration> {
        let text = match &v.node.data {
            YamlData::Value(Scalar::String(s)) => s.to_string(),
            _ => match scalar_text(v.node) {
                Some(t) => t,
                None => {
                    self.problem(
                        v.pos,
                        format!(
                            "expected a duration for `{what}:`, found {}: write e.g. 4h, 30m, 90s or 90d",
                            describe(v.node)
                        ),
                    );
                    return None;
                }
            },
        };
        match parse_duration(&text) {
            Some(d) if nonzero && d.is_zero() => {
                self.problem(v.pos, format!("`{what}:` must be more than zero: write e.g. 4h, 30m or 90s"));
                None
            }
            Some(d) => Some(d),
            None => {
                let bare = text
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .map(|n| format!(" ({n} what? e.g. {n}s or {n}m)"))
                    .unwrap_or_default();
                self.problem(v.pos, format!("{text:?} is not a duration{bare}: write e.g. 4h, 30m, 90s or 90d"));
                None
            }
        }
    }

    pub(super) fn date(&mut self, v: Val) -> Option<NaiveDate> {
        let text = match &v.node.data {
            YamlData::Value(Scalar::String(s)) => s.to_string(),
            _ => scalar_text(v.node).unwrap_or_else(|| describe(v.node)),
        };
        let parsed = (text.len() == 10).then(|| NaiveDate::parse_from_str(&text, "%Y-%m-%d").ok()).flatten();
        if parsed.is_none() {
            self.problem(v.pos, format!("{text:?} is not a date: write YYYY-MM-DD, e.g. 2026-10-01"));
        }
        parsed
    }
}
