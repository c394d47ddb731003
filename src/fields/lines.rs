//! Where each field of a YAML document is written: field path → line, from the parser's
//! positions (saphyr). What `blame` needs to tie a live field to its source line.
//!
//! List items are found by every name a live path may give them: their position, their scalar
//! fields as a key (`name`, the usual associative-list key; `containerPort` + `protocol`...),
//! and, for scalars, their value.

use std::collections::{BTreeMap, HashMap};

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde_json::Value;

use super::path::{FieldPath, Segment, canonical_json};

/// Field path → 1-based line, for one document of a file.
#[derive(Debug, Default, Clone)]
pub struct LineIndex {
    /// Every field and list item written, list items by position.
    lines: HashMap<FieldPath, usize>,
    /// The items of each list (by the list's path, items by position), so that an item's other
    /// names are matched when a path asks for them. Indexing every name up front would not
    /// scale: an item with n scalar fields has n(n+1)/2 keys, and nested lists multiply them.
    lists: HashMap<FieldPath, Vec<Item>>,
    /// Each list item's last line (by position), less trailing blank and comment lines.
    item_ends: HashMap<FieldPath, usize>,
    /// Where each list item's node ends (line, column), as the parser marks it: the start of
    /// whatever follows.
    item_marks: HashMap<FieldPath, (usize, usize)>,
}

/// What a list item can be named by besides its position.
#[derive(Debug, Clone)]
enum Item {
    /// A mapping's scalar fields: name → canonical JSON.
    Fields(BTreeMap<String, String>),
    /// A scalar, as canonical JSON.
    Scalar(String),
    /// Anything else: named by position only.
    Other,
}

impl Item {
    fn of(node: &MarkedYaml<'_>) -> Item {
        match &node.data {
            YamlData::Mapping(map) => Item::Fields(
                map.iter()
                    .filter_map(|(k, v)| Some((scalar_text(k)?, canonical_json(&scalar_json(v)?))))
                    .collect(),
            ),
            _ => scalar_json(node).map_or(Item::Other, |v| Item::Scalar(canonical_json(&v))),
        }
    }

    /// Whether `segment` (a key or a set value) names this item. Any of its scalar fields can
    /// be a list key (`name`; `containerPort` + `protocol`; `port` + `protocol`).
    fn is_named(&self, segment: &Segment) -> bool {
        match (self, segment) {
            (Item::Fields(fields), Segment::Key(key)) => {
                !key.is_empty()
                    && key.iter().all(|(name, value)| {
                        fields.get(name) == Some(value)
                            // A port written without its protocol is recorded with TCP.
                            || (!fields.contains_key(name)
                                && crate::defaults::fills_list_key(
                                    key.keys().map(String::as_str),
                                    name,
                                    value,
                                ))
                    })
            }
            (Item::Scalar(value), Segment::Value(wanted)) => value == wanted,
            _ => false,
        }
    }
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
        // An item of a List document: its fields are the object's, from the item down.
        let doc = list_item_at(doc, range.0).unwrap_or(doc);
        let mut index = LineIndex::default();
        index.walk(&FieldPath::root(), doc);
        // A node ends where the next one starts: an item's last line is the one before, unless
        // the item ends within its own line (`- {a: 1}`).
        let lines: Vec<&str> = text.lines().collect();
        let start_of = |at: &FieldPath, index: &LineIndex| index.lines.get(at).copied();
        let marks = std::mem::take(&mut index.item_marks);
        let ends: Vec<(FieldPath, usize)> = marks
            .iter()
            .filter_map(|(path, &(line, col))| {
                let start = start_of(path, &index)?;
                let before = lines
                    .get(line.checked_sub(1)?)
                    .map_or("", |l| l.get(..col).unwrap_or(l));
                let mut last = if before.trim().is_empty() {
                    line - 1
                } else {
                    line
                };
                while last > start
                    && lines.get(last - 1).is_none_or(|l| {
                        let t = l.trim();
                        t.is_empty() || t.starts_with('#')
                    })
                {
                    last -= 1;
                }
                Some((path.clone(), last.max(start)))
            })
            .collect();
        index.item_ends = ends.into_iter().collect();
        Some(index)
    }

    /// The first and last line of the list item at `path` (items by position), when it is
    /// written in the file.
    pub fn item_lines(&self, path: &FieldPath) -> Option<(usize, usize)> {
        let (resolved, true) = self.resolve(path) else {
            return None;
        };
        Some((*self.lines.get(&resolved)?, *self.item_ends.get(&resolved)?))
    }

    /// The line of `path`, or of its nearest ancestor that is written in the file.
    pub fn line(&self, path: &FieldPath) -> Option<usize> {
        let (mut current, _) = self.resolve(path);
        loop {
            if let Some(line) = self.lines.get(&current) {
                return Some(*line);
            }
            current = current.parent()?;
        }
    }

    /// The line of exactly `path`, when it is written in the file.
    pub fn exact(&self, path: &FieldPath) -> Option<usize> {
        match self.resolve(path) {
            (resolved, true) => self.lines.get(&resolved).copied(),
            (_, false) => None,
        }
    }

    /// `path` with each key and set value replaced by the position of the first item it names,
    /// up to the first that names none; and whether every segment was found.
    fn resolve(&self, path: &FieldPath) -> (FieldPath, bool) {
        let mut resolved = FieldPath::root();
        for segment in path.segments() {
            let segment = match segment {
                Segment::Key(_) | Segment::Value(_) => {
                    let position = self
                        .lists
                        .get(&resolved)
                        .and_then(|items| items.iter().position(|item| item.is_named(segment)));
                    match position {
                        Some(i) => Segment::Index(i),
                        None => return (resolved, false),
                    }
                }
                other => other.clone(),
            };
            resolved.push(segment);
        }
        (resolved, true)
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
                    let by_index = path.child(Segment::Index(i));
                    self.lines.insert(by_index.clone(), item.span.start.line());
                    self.item_marks.insert(
                        by_index.clone(),
                        (item.span.end.line(), item.span.end.col()),
                    );
                    self.walk(&by_index, item);
                }
                self.lists
                    .insert(path.clone(), items.iter().map(Item::of).collect());
            }
            _ => {}
        }
    }
}

/// The `items` of a List document (`kind: List`, `ConfigMapList`...), if `doc` is one.
fn list_items<'a, 'b>(doc: &'a MarkedYaml<'b>) -> Option<&'a [MarkedYaml<'b>]> {
    let YamlData::Mapping(map) = &doc.data else {
        return None;
    };
    let field = |name: &str| {
        map.iter()
            .find(|(k, _)| scalar_text(k).as_deref() == Some(name))
            .map(|(_, v)| v)
    };
    let is_list = field("kind")
        .and_then(scalar_text)
        .is_some_and(|k| k.ends_with("List"));
    match field("items").map(|v| &v.data) {
        Some(YamlData::Sequence(items)) if is_list => Some(items),
        _ => None,
    }
}

/// The item of the List document `doc` that starts on `line`, when `line` is below the List's
/// own first line (a range naming the whole List keeps the List).
fn list_item_at<'a, 'b>(doc: &'a MarkedYaml<'b>, line: usize) -> Option<&'a MarkedYaml<'b>> {
    if line <= doc.span.start.line() {
        return None;
    }
    list_items(doc)?
        .iter()
        .rfind(|item| item.span.start.line() <= line)
}

/// The line range of each item of the List document in `text` (one document), 1-based and
/// inclusive: from the item's first line to the last before the next item or the List's next
/// key, less trailing blank, comment and bare `-` lines. None when `text` is not a List.
pub fn list_item_ranges(text: &str) -> Option<Vec<(usize, usize)>> {
    let docs = MarkedYaml::load_from_str(text).ok()?;
    let doc = docs.first()?;
    let items = list_items(doc)?;
    let YamlData::Mapping(map) = &doc.data else {
        return None;
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut boundaries: Vec<usize> = map.iter().map(|(k, _)| k.span.start.line()).collect();
    boundaries.extend(items.iter().map(|item| item.span.start.line()));
    boundaries.sort_unstable();
    let ranges = items
        .iter()
        .map(|item| {
            let first = item.span.start.line();
            let mut last = boundaries
                .iter()
                .find(|&&b| b > first)
                .map_or(lines.len(), |next| next - 1)
                .max(first);
            while last > first {
                let t = lines.get(last - 1).map_or("", |l| l.trim());
                if t.is_empty() || t.starts_with('#') || t == "-" {
                    last -= 1;
                } else {
                    break;
                }
            }
            (first, last)
        })
        .collect();
    Some(ranges)
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

    #[test]
    fn a_list_items_lines_run_to_its_last_written_line() {
        let text = "spec:\n  postRenderers:\n    - kustomize:\n        patches:\n          - patch: |\n              a: 1\n              b: 2\n    # a comment\n    - kustomize:\n        images: [{name: x}]\n\n  values:\n    list: [{a: 1}]\n    other:\n      - {b: 2}\n";
        let index = LineIndex::of_document(text, (1, 15)).unwrap();
        let item = |path: &str| {
            let segments: Vec<Segment> = path
                .split('.')
                .map(|s| match s.parse() {
                    Ok(i) => Segment::Index(i),
                    Err(_) => Segment::Field(s.into()),
                })
                .collect();
            let mut at = FieldPath::root();
            for s in segments {
                at.push(s);
            }
            index.item_lines(&at)
        };
        assert_eq!(item("spec.postRenderers.0"), Some((3, 7)));
        assert_eq!(item("spec.postRenderers.1"), Some((9, 10)));
        assert_eq!(
            item("spec.postRenderers.0.kustomize.patches.0"),
            Some((5, 7))
        );
        assert_eq!(item("spec.values.other.0"), Some((15, 15)));
        assert_eq!(item("spec.postRenderers.2"), None);
    }

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

    #[test]
    fn an_item_of_a_list_document_is_indexed_from_the_item() {
        let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: a
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: b
  data:
    k: v
";
        assert_eq!(list_item_ranges(text), Some(vec![(4, 7), (8, 13)]));
        let second = LineIndex::of_document(text, (8, 13)).unwrap();
        assert_eq!(second.exact(&path(".metadata.name")), Some(11));
        assert_eq!(second.exact(&path(".data.k")), Some(13));
        // The whole List is still the List.
        let whole = LineIndex::of_document(text, (1, 13)).unwrap();
        assert_eq!(whole.exact(&path(".kind")), Some(2));
        assert_eq!(list_item_ranges(FILE), None);
    }

    /// Found while writing the `yaml_lines` fuzz target: every key of every list item was
    /// indexed, each with a copy of everything below it, so nested lists of items with many
    /// fields multiplied (a 700-byte file took gigabytes).
    #[test]
    fn nested_lists_of_keyed_items_stay_linear() {
        let mut text = String::from("l:\n");
        for depth in 0..4 {
            let pad = " ".repeat(2 + 4 * depth);
            text.push_str(&format!("{pad}- f0: {depth}\n"));
            for f in 1..10 {
                text.push_str(&format!("{pad}  f{f}: {f}\n"));
            }
            text.push_str(&format!("{pad}  l:\n"));
        }
        let index = LineIndex::of_document(&text, (1, 45)).unwrap();
        assert!(index.lines.len() < 100, "{} paths", index.lines.len());
        let deep = path(".l[f0=0,f9=9].l[f3=3].l[f0=2,f1=1].l[f0=3].f5");
        assert_eq!(index.exact(&deep), Some(40));
        // A key of three fields, and one that names no item.
        assert_eq!(index.exact(&path(".l[f1=1,f2=2,f3=3].f4")), Some(6));
        assert_eq!(index.exact(&path(".l[f1=2]")), None);
        assert_eq!(index.line(&path(".l[f1=2].f4")), Some(1));
    }
}
