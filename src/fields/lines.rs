//! Where each field of a YAML document is written: field path → line, from the parser's
//! positions (saphyr). What `blame` needs to tie a live field to its source line.
//!
//! List items are indexed under every name a live path may give them: their position, their
//! `name` (the usual associative-list key), and, for scalars, their value.

use std::collections::HashMap;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde_json::Value;

use super::path::{FieldPath, Segment, canonical_json};

/// Field path → 1-based line, for one document of a file.
#[derive(Debug, Default, Clone)]
pub struct LineIndex {
    lines: HashMap<FieldPath, usize>,
}

impl LineIndex {
    /// Indexes the document of `text` that starts within `first..=last` (a
    /// [`crate::render::Document`]'s line range). None when the text does not parse.
    pub fn of_document(text: &str, range: (usize, usize)) -> Option<LineIndex> {
        let docs = MarkedYaml::load_from_str(text).ok()?;
        let doc = docs
            .iter()
            .find(|d| (range.0..=range.1).contains(&d.span.start.line()))
            .or_else(|| {
                docs.iter()
                    .find(|d| d.span.start.line() <= range.1 && d.span.end.line() >= range.0)
            })?;
        let mut index = LineIndex::default();
        index.walk(&FieldPath::root(), doc);
        Some(index)
    }

    /// The line of `path`, or of its nearest ancestor that is written in the file.
    pub fn line(&self, path: &FieldPath) -> Option<usize> {
        let mut current = Some(path.clone());
        while let Some(p) = current {
            if let Some(line) = self.lines.get(&p) {
                return Some(*line);
            }
            current = p.parent();
        }
        None
    }

    /// The line of exactly `path`, when it is written in the file.
    pub fn exact(&self, path: &FieldPath) -> Option<usize> {
        self.lines.get(path).copied()
    }

    fn walk(&mut self, path: &FieldPath, node: &MarkedYaml<'_>) {
        match &node.data {
            YamlData::Mapping(map) => {
                for (key, value) in map {
                    let Some(name) = scalar_text(key) else {
                        continue;
                    };
                    let child = path.child(Segment::Field(name));
                    self.lines
                        .entry(child.clone())
                        .or_insert(key.span.start.line());
                    self.walk(&child, value);
                }
            }
            YamlData::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    let line = item.span.start.line();
                    let by_index = path.child(Segment::Index(i));
                    self.lines.insert(by_index.clone(), line);
                    self.walk(&by_index, item);
                    let mut aliases = Vec::new();
                    match &item.data {
                        YamlData::Mapping(map) => {
                            let fields: Vec<(String, Value)> = map
                                .iter()
                                .filter_map(|(k, v)| Some((scalar_text(k)?, scalar_json(v)?)))
                                .collect();
                            // Every subset of one or two scalar fields can be a list key
                            // (`name`; `containerPort` + `protocol`; `port` + `protocol`).
                            for (k, v) in &fields {
                                aliases.push(Segment::key([(k.as_str(), v)]));
                            }
                            for (a, (k1, v1)) in fields.iter().enumerate() {
                                for (k2, v2) in fields.iter().skip(a + 1) {
                                    aliases
                                        .push(Segment::key([(k1.as_str(), v1), (k2.as_str(), v2)]));
                                }
                            }
                            // A port written without its protocol is recorded with TCP.
                            if fields.iter().any(|(k, _)| k.ends_with("ort"))
                                && !fields.iter().any(|(k, _)| k == "protocol")
                            {
                                let tcp = Value::String("TCP".into());
                                for (k, v) in fields.iter().filter(|(k, _)| k.ends_with("ort")) {
                                    aliases
                                        .push(Segment::key([(k.as_str(), v), ("protocol", &tcp)]));
                                }
                            }
                        }
                        _ => {
                            if let Some(v) = scalar_json(item) {
                                aliases.push(Segment::Value(canonical_json(&v)));
                            }
                        }
                    }
                    for alias in aliases {
                        let aliased = path.child(alias);
                        if self.lines.contains_key(&aliased) {
                            continue;
                        }
                        self.lines.insert(aliased.clone(), line);
                        self.walk(&aliased, item);
                    }
                }
            }
            _ => {}
        }
    }
}

fn scalar_text(node: &MarkedYaml<'_>) -> Option<String> {
    match &node.data {
        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
        YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
        YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
        YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
        YamlData::Representation(text, _, _) => Some(text.to_string()),
        _ => None,
    }
}

fn scalar_json(node: &MarkedYaml<'_>) -> Option<Value> {
    match &node.data {
        YamlData::Value(Scalar::String(s)) => Some(Value::String(s.to_string())),
        YamlData::Value(Scalar::Integer(i)) => Some(Value::from(*i)),
        YamlData::Value(Scalar::Boolean(b)) => Some(Value::Bool(*b)),
        YamlData::Value(Scalar::FloatingPoint(f)) => {
            serde_json::Number::from_f64(f.into_inner()).map(Value::Number)
        }
        YamlData::Representation(text, _, _) => Some(Value::String(text.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: other}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  template:
    spec:
      containers:
        - name: web
          image: nginx:1.27
          ports:
            - containerPort: 80
          env:
            - name: A
              value: '1'
        - name: sidecar
          image: busybox
      finalizers: [a, b]
";

    fn path(text: &str) -> FieldPath {
        // `.a.b[name=x].c` in the tests below, built by hand.
        let mut p = FieldPath::root();
        for part in text.split('.').filter(|s| !s.is_empty()) {
            match part.split_once('[') {
                Some((field, rest)) => {
                    p = p.child(Segment::Field(field.into()));
                    let inner = rest.trim_end_matches(']');
                    let pairs: Vec<(String, Value)> = inner
                        .split(',')
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').unwrap();
                            let value = v
                                .parse::<i64>()
                                .map(Value::from)
                                .unwrap_or(Value::String(v.into()));
                            (k.to_owned(), value)
                        })
                        .collect();
                    p = p.child(Segment::key(pairs.iter().map(|(k, v)| (k.as_str(), v))));
                }
                None => p = p.child(Segment::Field(part.into())),
            }
        }
        p
    }

    #[test]
    fn fields_and_list_items_map_to_their_lines() {
        let index = LineIndex::of_document(FILE, (5, 25)).unwrap();
        let cases = [
            (".metadata.name", 8),
            (".metadata.labels.app", 10),
            (".spec.replicas", 12),
            (".spec.template.spec.containers[name=web]", 16),
            (".spec.template.spec.containers[name=web].image", 17),
            (
                ".spec.template.spec.containers[name=web].ports[containerPort=80,protocol=TCP]",
                19,
            ),
            (
                ".spec.template.spec.containers[name=web].env[name=A].value",
                22,
            ),
            (".spec.template.spec.containers[name=sidecar].image", 24),
        ];
        for (p, line) in cases {
            assert_eq!(index.exact(&path(p)), Some(line), "{p}");
        }
        // A field not written falls back to its nearest written ancestor.
        assert_eq!(
            index.line(&path(".spec.template.spec.containers[name=web].resources")),
            Some(16)
        );
        assert_eq!(index.exact(&path(".spec.strategy")), None);
        let finalizer = FieldPath::fields(["spec", "template", "spec", "finalizers"])
            .child(Segment::Value(canonical_json(&Value::String("b".into()))));
        assert_eq!(index.exact(&finalizer), Some(25));
        // The other document of the file.
        let other = LineIndex::of_document(FILE, (1, 3)).unwrap();
        assert_eq!(other.exact(&path(".metadata.name")), Some(3));
    }
}
