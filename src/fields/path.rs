//! A path to one field or list item in an object, in the vocabulary of server-side apply
//! (structured-merge-diff's `PathElement`): map fields, associative-list keys, set values and
//! indices. The same path names a field in managedFields, in Git's object and in the live one.
//!
//! Paths print in a jq-like form, unambiguous for every segment kind:
//!
//! | segment                               | printed as                        |
//! |---------------------------------------|-----------------------------------|
//! | field `f:spec`                        | `.spec`                           |
//! | field that is not an identifier       | `["app.kubernetes.io/name"]`      |
//! | key `k:{"name":"web"}`                | `[name=web]`                      |
//! | key `k:{"containerPort":80,...}`      | `[containerPort=80,protocol=TCP]` |
//! | set value `v:"kubernetes"`, `v:80`    | `[="kubernetes"]`, `[=80]`        |
//! | index `i:0`                           | `[0]`                             |
//!
//! In a key, a string value is written bare when it is made of `[A-Za-z0-9_./:-]` and does not
//! read as another JSON value (`web`, `TCP`); otherwise it is JSON (`"80"`, `"a,b"`, `true`). A
//! key name that is not an identifier is written as a JSON string. The empty path prints as `.`.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde_json::Value;

/// One step into an object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Segment {
    /// A map field or key: `f:spec`, `f:app`.
    Field(String),
    /// An associative-list item picked by its key fields: `k:{"name":"web"}`,
    /// `k:{"containerPort":80,"protocol":"TCP"}`. Keys sorted by name; each value is the
    /// canonical JSON text of the key field's value (see [`canonical_json`]).
    Key(BTreeMap<String, String>),
    /// A set item picked by value: `v:"a"`, `v:80`, as canonical JSON text.
    Value(String),
    /// A list item by position: `i:0`.
    Index(usize),
}

impl Segment {
    /// A map field.
    pub fn field(name: impl Into<String>) -> Segment {
        Segment::Field(name.into())
    }

    /// An associative-list item with these key fields.
    pub fn key<'a>(fields: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Segment {
        Segment::Key(
            fields
                .into_iter()
                .map(|(name, value)| (name.to_owned(), canonical_json(value)))
                .collect(),
        )
    }

    /// A set item with this value.
    pub fn value(value: &Value) -> Segment {
        Segment::Value(canonical_json(value))
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Segment::Field(name) if is_identifier(name) => write!(f, ".{name}"),
            Segment::Field(name) => write!(f, "[{}]", json_string(name)),
            Segment::Key(fields) => {
                f.write_char('[')?;
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    if is_identifier(name) {
                        f.write_str(name)?;
                    } else {
                        f.write_str(&json_string(name))?;
                    }
                    f.write_char('=')?;
                    match bare_string(value) {
                        Some(bare) => f.write_str(&bare)?,
                        None => f.write_str(value)?,
                    }
                }
                f.write_char(']')
            }
            Segment::Value(value) => write!(f, "[={value}]"),
            Segment::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// A path from the root of an object. Ordered segment by segment, so a parent sorts before its
/// children.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    /// The object itself.
    pub fn root() -> FieldPath {
        FieldPath(Vec::new())
    }

    /// A path of map fields only: `FieldPath::fields(["spec", "replicas"])`.
    pub fn fields<S: Into<String>>(names: impl IntoIterator<Item = S>) -> FieldPath {
        names.into_iter().map(Segment::field).collect()
    }

    pub fn push(&mut self, segment: Segment) {
        self.0.push(segment);
    }

    /// This path, one step further.
    pub fn child(&self, segment: Segment) -> FieldPath {
        let mut child = self.clone();
        child.push(segment);
        child
    }

    /// The path one step up; `None` for the root.
    pub fn parent(&self) -> Option<FieldPath> {
        let (_, parent) = self.0.split_last()?;
        Some(FieldPath(parent.to_vec()))
    }

    /// True when `prefix` is this path or one of its ancestors (the root is everyone's).
    pub fn starts_with(&self, prefix: &FieldPath) -> bool {
        self.0.starts_with(&prefix.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// The value at this path in a concrete object: a key picks the array element whose key
    /// fields equal the key's values, a set value the element equal to it, an index the element
    /// at that position. Numbers compare by value (`80` equals `80.0`).
    pub fn get<'a>(&self, object: &'a Value) -> Option<&'a Value> {
        self.walk(object, |_| {})
    }

    /// Like [`FieldPath::get`], but an associative-list item that leaves out a key field with a
    /// server default (a port's `protocol`, [`crate::defaults::fills_list_key`]) matches the key
    /// the server filled in: desired as written in Git, paths as the server records them.
    pub fn resolve<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        let canonical = |v: &Value| serde_json::to_string(v).expect("JSON values serialise");
        let mut current = value;
        for segment in self.segments() {
            current = match segment {
                Segment::Field(name) => current.get(name)?,
                Segment::Key(keys) => current.as_array()?.iter().find(|item| {
                    keys.iter().all(|(k, v)| match item.get(k) {
                        Some(actual) => &canonical(actual) == v,
                        None => {
                            crate::defaults::fills_list_key(keys.keys().map(String::as_str), k, v)
                        }
                    })
                })?,
                Segment::Value(v) => current
                    .as_array()?
                    .iter()
                    .find(|item| &canonical(item) == v)?,
                Segment::Index(i) => current.as_array()?.get(*i)?,
            };
        }
        Some(current)
    }

    /// The RFC 6901 pointer to this path in a concrete object, keys and set values resolved to
    /// the index of the matching element (as [`FieldPath::get`]); `None` when it is absent.
    /// The root is `""`.
    pub fn to_json_pointer(&self, object: &Value) -> Option<String> {
        let mut pointer = String::new();
        self.walk(object, |step| {
            pointer.push('/');
            match step {
                Step::Member(name) => pointer.push_str(&escape(name)),
                Step::Element(index) => pointer.push_str(&index.to_string()),
            }
        })?;
        Some(pointer)
    }

    fn walk<'a>(&self, object: &'a Value, mut step: impl FnMut(Step<'_>)) -> Option<&'a Value> {
        let mut here = object;
        for segment in &self.0 {
            here = match segment {
                Segment::Field(name) => {
                    let next = here.as_object()?.get(name)?;
                    step(Step::Member(name));
                    next
                }
                Segment::Index(index) => {
                    let next = here.as_array()?.get(*index)?;
                    step(Step::Element(*index));
                    next
                }
                Segment::Key(fields) => {
                    let wanted = fields
                        .iter()
                        .map(|(name, text)| Some((name, serde_json::from_str::<Value>(text).ok()?)))
                        .collect::<Option<Vec<_>>>()?;
                    let items = here.as_array()?;
                    let index = items.iter().position(|item| {
                        item.as_object().is_some_and(|item| {
                            wanted.iter().all(|(name, value)| {
                                item.get(name.as_str()).is_some_and(|v| json_eq(v, value))
                            })
                        })
                    })?;
                    step(Step::Element(index));
                    &items[index]
                }
                Segment::Value(text) => {
                    let wanted = serde_json::from_str::<Value>(text).ok()?;
                    let items = here.as_array()?;
                    let index = items.iter().position(|item| json_eq(item, &wanted))?;
                    step(Step::Element(index));
                    &items[index]
                }
            };
        }
        Some(here)
    }
}

/// RFC 6901 escaping of one reference token.
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

enum Step<'a> {
    Member(&'a str),
    Element(usize),
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_char('.');
        }
        for segment in &self.0 {
            write!(f, "{segment}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for FieldPath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl FromIterator<Segment> for FieldPath {
    fn from_iter<I: IntoIterator<Item = Segment>>(iter: I) -> FieldPath {
        FieldPath(iter.into_iter().collect())
    }
}

impl From<Vec<Segment>> for FieldPath {
    fn from(segments: Vec<Segment>) -> FieldPath {
        FieldPath(segments)
    }
}

/// Lets sets of paths be searched by a prefix slice without building a path for it. Sound
/// because `FieldPath` orders, compares and hashes exactly as its `Vec<Segment>`.
impl Borrow<[Segment]> for FieldPath {
    fn borrow(&self) -> &[Segment] {
        &self.0
    }
}

/// One JSON text per value, so equal values compare equal as text: object keys sorted, no
/// whitespace, and a float with an integral value under 2^53 written as an integer (`80.0` is
/// `80`), since the API server's Go side reads every number as a float64.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(x) if n.is_f64() && x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 => {
                // The range check above makes the conversion exact.
                let _ = write!(out, "{}", x as i64);
            }
            _ => {
                let _ = write!(out, "{n}");
            }
        },
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // serde_json's map is ordered by key unless `preserve_order` is on; sort anyway so
            // the text does not depend on a feature flag elsewhere in the build.
            let mut members: Vec<_> = map.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (name, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&json_string(name));
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Null | Value::Bool(_) | Value::String(_) => out.push_str(&value.to_string()),
    }
}

/// JSON equality with numbers compared by value: integers exactly, anything else as f64.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let int = |n: &serde_json::Number| {
                n.as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from))
            };
            match (int(x), int(y)) {
                (Some(i), Some(j)) => i == j,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(name, a)| y.get(name).is_some_and(|b| json_eq(a, b)))
        }
        _ => a == b,
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`: written after a dot; anything else goes in `["..."]`.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// The bare form of a key value that is a JSON string safe to print unquoted, if it is one.
fn bare_string(json: &str) -> Option<String> {
    let Ok(Value::String(s)) = serde_json::from_str::<Value>(json) else {
        return None;
    };
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | ':' | '-'));
    // `80`, `true`, `null`, `1e5` would read back as other JSON values.
    (plain && serde_json::from_str::<Value>(&s).is_err()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(name: &str) -> Segment {
        Segment::key([("name", &json!(name))])
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "labels": {"app": "web", "app.kubernetes.io/name": "web"},
                "finalizers": ["example.com/a", "kubernetes"],
            },
            "spec": {
                "replicas": 2,
                "template": {"spec": {"containers": [
                    {"name": "sidecar", "image": "envoy:1"},
                    {"name": "web", "image": "nginx:1.27", "ports": [
                        {"containerPort": 80, "protocol": "UDP"},
                        {"containerPort": 80, "protocol": "TCP"},
                        {"containerPort": 443.0, "protocol": "TCP"},
                    ]},
                ]}},
            },
        })
    }

    #[test]
    fn display() {
        let port = Segment::key([("protocol", &json!("TCP")), ("containerPort", &json!(80))]);
        let cases: Vec<(FieldPath, &str)> = vec![
            (FieldPath::root(), "."),
            (FieldPath::fields(["spec", "replicas"]), ".spec.replicas"),
            (
                FieldPath::fields(["spec", "template", "spec", "containers"])
                    .child(container("web"))
                    .child(Segment::field("image")),
                ".spec.template.spec.containers[name=web].image",
            ),
            (
                FieldPath::fields(["metadata", "labels", "app.kubernetes.io/name"]),
                r#".metadata.labels["app.kubernetes.io/name"]"#,
            ),
            (
                FieldPath::fields(["spec", "ports"]).child(port),
                ".spec.ports[containerPort=80,protocol=TCP]",
            ),
            (
                FieldPath::fields(["metadata", "finalizers"])
                    .child(Segment::value(&json!("kubernetes"))),
                r#".metadata.finalizers[="kubernetes"]"#,
            ),
            (
                FieldPath::fields(["spec", "ports"]).child(Segment::value(&json!(80))),
                ".spec.ports[=80]",
            ),
            (
                FieldPath::fields(["spec", "args"]).child(Segment::Index(0)),
                ".spec.args[0]",
            ),
            (FieldPath::fields(["_x9", "9x", ""]), r#"._x9["9x"][""]"#),
            // Key strings that would be misread bare are quoted.
            (
                FieldPath::root().child(Segment::key([
                    ("name", &json!("80")),
                    ("other", &json!("a,b]")),
                    ("flag", &json!("true")),
                    ("empty", &json!("")),
                    ("x-y", &json!(true)),
                ])),
                r#"[empty="",flag="true",name="80",other="a,b]","x-y"=true]"#,
            ),
            (
                FieldPath::root().child(Segment::key([("path", &json!("/var/lib:x-1.2"))])),
                "[path=/var/lib:x-1.2]",
            ),
            (FieldPath::fields(["a\"b\n"]), r#"["a\"b\n"]"#),
        ];
        for (path, want) in cases {
            assert_eq!(path.to_string(), want);
        }
    }

    #[test]
    fn serializes_as_display() {
        let path = FieldPath::fields(["metadata", "labels", "app"]);
        assert_eq!(
            serde_json::to_value(&path).unwrap(),
            json!(".metadata.labels.app")
        );
    }

    #[test]
    fn navigation() {
        let containers = FieldPath::fields(["spec", "template", "spec", "containers"]);
        let web = containers.child(container("web"));
        let mut image = web.clone();
        image.push(Segment::field("image"));
        assert_eq!(image.parent(), Some(web.clone()));
        assert_eq!(FieldPath::root().parent(), None);
        assert!(image.starts_with(&web));
        assert!(image.starts_with(&image));
        assert!(image.starts_with(&FieldPath::root()));
        assert!(!web.starts_with(&image));
        assert!(!containers.child(container("sidecar")).starts_with(&web));
        assert!(FieldPath::root().is_empty());
        assert_eq!(image.len(), 6);
        assert_eq!(image.segments()[5], Segment::field("image"));
        // A parent sorts before its children.
        assert!(web < image);
    }

    #[test]
    fn get_and_pointer() {
        let object = deployment();
        let containers = FieldPath::fields(["spec", "template", "spec", "containers"]);
        let port = |number: Value, protocol: &str| {
            containers
                .child(container("web"))
                .child(Segment::field("ports"))
                .child(Segment::key([
                    ("containerPort", &number),
                    ("protocol", &json!(protocol)),
                ]))
        };
        let cases: Vec<(FieldPath, Option<&str>, Option<Value>)> = vec![
            (FieldPath::root(), Some(""), Some(object.clone())),
            (
                FieldPath::fields(["spec", "replicas"]),
                Some("/spec/replicas"),
                Some(json!(2)),
            ),
            (
                containers
                    .child(container("web"))
                    .child(Segment::field("image")),
                Some("/spec/template/spec/containers/1/image"),
                Some(json!("nginx:1.27")),
            ),
            (
                port(json!(80), "TCP"),
                Some("/spec/template/spec/containers/1/ports/1"),
                Some(json!({"containerPort": 80, "protocol": "TCP"})),
            ),
            // 443.0 in the object matches the key 443.
            (
                port(json!(443), "TCP").child(Segment::field("protocol")),
                Some("/spec/template/spec/containers/1/ports/2/protocol"),
                Some(json!("TCP")),
            ),
            (port(json!(8080), "TCP"), None, None),
            (port(json!("80"), "TCP"), None, None),
            (
                FieldPath::fields(["metadata", "finalizers"])
                    .child(Segment::value(&json!("kubernetes"))),
                Some("/metadata/finalizers/1"),
                Some(json!("kubernetes")),
            ),
            (
                FieldPath::fields(["metadata", "finalizers"]).child(Segment::value(&json!("b"))),
                None,
                None,
            ),
            (
                containers
                    .child(Segment::Index(0))
                    .child(Segment::field("name")),
                Some("/spec/template/spec/containers/0/name"),
                Some(json!("sidecar")),
            ),
            (containers.child(Segment::Index(2)), None, None),
            (
                FieldPath::fields(["metadata", "labels", "app.kubernetes.io/name"]),
                Some("/metadata/labels/app.kubernetes.io~1name"),
                Some(json!("web")),
            ),
            // Wrong shapes: a key into a map, a field into an array, a key text that is not JSON.
            (
                FieldPath::fields(["metadata"]).child(container("web")),
                None,
                None,
            ),
            (containers.child(Segment::field("name")), None, None),
            (
                containers.child(Segment::Key(BTreeMap::from([(
                    "name".into(),
                    "web".into(),
                )]))),
                None,
                None,
            ),
        ];
        for (path, pointer, value) in cases {
            assert_eq!(path.to_json_pointer(&object).as_deref(), pointer, "{path}");
            assert_eq!(path.get(&object).cloned(), value, "{path}");
            if let Some(pointer) = pointer {
                assert_eq!(object.pointer(pointer), path.get(&object), "{path}");
            }
        }
    }

    #[test]
    fn pointer_escapes_tilde_and_slash() {
        let object = json!({"a~b/c": 1});
        let path = FieldPath::fields(["a~b/c"]);
        assert_eq!(path.to_json_pointer(&object).as_deref(), Some("/a~0b~1c"));
    }

    #[test]
    fn canonical_text() {
        let cases = [
            (
                json!({"b": 1, "a": [1.0, 2.5, "x"]}),
                r#"{"a":[1,2.5,"x"],"b":1}"#,
            ),
            (json!(80.0), "80"),
            (json!(-3), "-3"),
            (json!(1e300), "1e+300"),
            (json!(2.5e-7), "2.5e-7"),
            (json!("é\""), r#""é\"""#),
            (json!(null), "null"),
        ];
        for (value, want) in cases {
            assert_eq!(canonical_json(&value), want);
        }
    }

    #[test]
    fn paths_find_items_written_without_a_defaulted_key() {
        let desired = json!({"spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}});
        let key = |port: i64, protocol: &str| {
            FieldPath::fields(["spec", "ports"]).child(Segment::key([
                ("port", &json!(port)),
                ("protocol", &json!(protocol)),
            ]))
        };
        assert_eq!(key(80, "TCP").resolve(&desired), Some(&json!({"port": 80})));
        assert_eq!(key(80, "UDP").resolve(&desired), None);
        assert!(key(53, "UDP").resolve(&desired).is_some());
        assert_eq!(key(53, "TCP").resolve(&desired), None);
    }
}
