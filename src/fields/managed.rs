//! `metadata.managedFields`: which field manager (kubectl, a controller, a reconciler) owns which
//! fields of an object, parsed from the FieldsV1 format of structured-merge-diff
//! (`fieldpath/serialize.go`, `serialize-pe.go`). The input is whatever the object says, so it is
//! treated as hostile: bad entries are errors, and depth and size are bounded.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::path::{FieldPath, Segment, canonical_json};

/// Deepest FieldsV1 nesting read; real objects stay far below (a Deployment's container port is
/// 8 levels down).
const MAX_DEPTH: usize = 128;
/// Most path elements read, over all entries of one object.
const MAX_ELEMENTS: usize = 100_000;
/// Longest path element (`f:name`, `k:{...}`, `v:...`) read. Field names, list keys and set
/// values are names and short scalars; the API server caps a whole object near 1.5 MiB.
const MAX_ELEMENT_LEN: usize = 64 * 1024;
/// Most memory spent on stored paths, over all entries of one object: every listed path holds
/// its whole prefix, so long names deep down would otherwise multiply.
const MAX_PATH_BYTES: usize = 64 * 1024 * 1024;
/// Bytes counted for each segment besides its text.
const SEGMENT_OVERHEAD: usize = 32;

/// Why managedFields could not be read. Every message is one line; text taken from the object
/// is escaped and shortened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldsError {
    /// One entry of `metadata.managedFields` is unusable; `reason` is the error inside it.
    #[error("managedFields entry {index} ({manager}): {reason}")]
    Entry {
        index: usize,
        manager: String,
        reason: String,
    },
    /// A FieldsV1 key or value that is not in the format; `at` is the path of its parent.
    #[error("FieldsV1 at {at}: {reason}")]
    Invalid { at: String, reason: String },
    #[error("FieldsV1 is nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("FieldsV1 is too large: more than {limit} {what}")]
    TooLarge { what: &'static str, limit: usize },
    /// `metadata.managedFields` itself, or the object around it, has the wrong shape.
    #[error("metadata.managedFields: {reason}")]
    Shape { reason: String },
}

/// How a path is listed in FieldsV1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listed {
    /// `"f:x": {}`: the manager owns the whole value, whatever lies below it (a scalar, or an
    /// atomic list or map).
    Leaf,
    /// `"f:x": {".": {}, ...}`: the manager owns the element's existence; what it owns inside is
    /// listed separately.
    Marker,
}

/// The set of paths one manager owns, parsed from FieldsV1.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSet {
    paths: BTreeMap<FieldPath, Listed>,
}

impl FieldSet {
    /// Parses one `fieldsV1` value (a JSON object).
    pub fn parse(fields_v1: &Value) -> Result<FieldSet, FieldsError> {
        FieldSet::parse_within(fields_v1, &mut Budget::default())
    }

    fn parse_within(fields_v1: &Value, budget: &mut Budget) -> Result<FieldSet, FieldsError> {
        let Some(root) = fields_v1.as_object() else {
            return Err(FieldsError::Invalid {
                at: ".".to_owned(),
                reason: format!("expected a JSON object, found {}", kind_of(fields_v1)),
            });
        };
        let mut reader = Reader {
            budget,
            prefix: Vec::new(),
            prefix_bytes: 0,
            paths: BTreeMap::new(),
        };
        // A "." at the top would list the object itself; the API server never writes one, and
        // structured-merge-diff drops it, so it is ignored here too.
        reader.read(root)?;
        Ok(FieldSet {
            paths: reader.paths,
        })
    }

    /// True when `path` is listed exactly, as a leaf or as a `"."` marker.
    pub fn contains(&self, path: &FieldPath) -> bool {
        self.paths.contains_key(path)
    }

    /// True when `path` is listed as a leaf (`{}`), which owns everything below it too.
    pub fn is_leaf(&self, path: &FieldPath) -> bool {
        self.paths.get(path) == Some(&Listed::Leaf)
    }

    /// Every listed path, leaves and `"."` markers, parents before children.
    pub fn leaves(&self) -> impl Iterator<Item = &FieldPath> {
        self.paths.keys()
    }

    /// True when `path` is listed, or lies below a listed leaf. A `"."` marker owns only the
    /// element itself: `.metadata.labels` with a marker does not own a label it does not list.
    pub fn owns(&self, path: &FieldPath) -> bool {
        self.owning_depth(path).is_some()
    }

    /// How many segments of `path` the listing that owns it has: all of them when it is listed,
    /// else the length of the deepest leaf above it.
    fn owning_depth(&self, path: &FieldPath) -> Option<usize> {
        let segments = path.segments();
        if self.paths.contains_key(segments) {
            return Some(segments.len());
        }
        (1..segments.len())
            .rev()
            .find(|&n| self.paths.get(&segments[..n]) == Some(&Listed::Leaf))
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

/// A list of the listed paths, as printed.
impl serde::Serialize for FieldSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.paths.keys())
    }
}

/// Limits shared by every entry of one object.
#[derive(Default)]
struct Budget {
    elements: usize,
    path_bytes: usize,
}

struct Reader<'b> {
    budget: &'b mut Budget,
    prefix: Vec<Segment>,
    /// The bytes a path at `prefix` costs, kept as it grows so nothing is cloned to find out.
    prefix_bytes: usize,
    paths: BTreeMap<FieldPath, Listed>,
}

impl Reader<'_> {
    /// Reads the children of the element at `self.prefix`, following `readIterV1`: a child is
    /// listed when its object is empty (a leaf) or holds `"."` (a marker). Returns whether any
    /// child was read, and whether the element itself is listed.
    fn read(&mut self, node: &Map<String, Value>) -> Result<(bool, bool), FieldsError> {
        let mut has_children = false;
        let mut is_member = false;
        for (key, value) in node {
            self.budget.elements += 1;
            if self.budget.elements > MAX_ELEMENTS {
                return Err(FieldsError::TooLarge {
                    what: "path elements",
                    limit: MAX_ELEMENTS,
                });
            }
            if key == "." {
                // structured-merge-diff skips the value whatever it is.
                is_member = true;
                continue;
            }
            let segment = parse_element(key).map_err(|reason| self.invalid(reason))?;
            let Some(child) = value.as_object() else {
                return Err(self.invalid(format!(
                    "the value of {} is {}, not an object",
                    shorten(key),
                    kind_of(value)
                )));
            };
            if self.prefix.len() >= MAX_DEPTH {
                return Err(FieldsError::TooDeep { limit: MAX_DEPTH });
            }
            let bytes = segment_bytes(&segment);
            self.prefix.push(segment);
            self.prefix_bytes += bytes;
            let (grandchildren, child_is_member) = self.read(child)?;
            if child_is_member {
                self.insert(if grandchildren {
                    Listed::Marker
                } else {
                    Listed::Leaf
                })?;
            }
            self.prefix.pop();
            self.prefix_bytes -= bytes;
            has_children = true;
        }
        Ok((has_children, is_member || !has_children))
    }

    fn insert(&mut self, listed: Listed) -> Result<(), FieldsError> {
        self.budget.path_bytes += self.prefix_bytes;
        if self.budget.path_bytes > MAX_PATH_BYTES {
            return Err(FieldsError::TooLarge {
                what: "bytes of paths",
                limit: MAX_PATH_BYTES,
            });
        }
        // Two `k:` keys written in different orders are one element; if one of them has
        // children, the element is a marker.
        self.paths
            .entry(FieldPath(self.prefix.clone()))
            .and_modify(|had| {
                if listed == Listed::Marker {
                    *had = Listed::Marker;
                }
            })
            .or_insert(listed);
        Ok(())
    }

    fn invalid(&self, reason: String) -> FieldsError {
        FieldsError::Invalid {
            // A path prints on one line (see `path`), so it is only cut.
            at: cut(&FieldPath(self.prefix.clone()).to_string()),
            reason,
        }
    }
}

fn segment_bytes(segment: &Segment) -> usize {
    SEGMENT_OVERHEAD
        + match segment {
            Segment::Field(name) | Segment::Value(name) => name.len(),
            Segment::Key(fields) => fields
                .iter()
                .map(|(name, value)| name.len() + value.len() + SEGMENT_OVERHEAD)
                .sum(),
            Segment::Index(_) => 0,
        }
}

/// One FieldsV1 key, as `DeserializePathElement`: `f:<name>`, `v:<JSON>`, `k:<JSON object>`,
/// `i:<index>`. Unlike structured-merge-diff, which drops element types it does not know, an
/// unknown type is an error: the API server writes only these four.
fn parse_element(key: &str) -> Result<Segment, String> {
    if key.len() > MAX_ELEMENT_LEN {
        return Err(format!(
            "path element of {} bytes is longer than {MAX_ELEMENT_LEN}",
            key.len()
        ));
    }
    let bad = |why: &str| format!("bad path element {}: {why}", shorten(key));
    let Some((kind, rest)) = key.split_once(':') else {
        return Err(bad("expected f:, k:, v: or i:"));
    };
    match kind {
        "f" => Ok(Segment::Field(rest.to_owned())),
        "v" => {
            let value: Value = serde_json::from_str(rest).map_err(|e| bad(&e.to_string()))?;
            Ok(Segment::Value(canonical_json(&value)))
        }
        "k" => match serde_json::from_str(rest).map_err(|e| bad(&e.to_string()))? {
            Value::Object(fields) => Ok(Segment::Key(
                fields
                    .iter()
                    .map(|(name, value)| (name.clone(), canonical_json(value)))
                    .collect(),
            )),
            other => Err(bad(&format!(
                "a key must be a JSON object, not {}",
                kind_of(&other)
            ))),
        },
        "i" => rest
            .parse()
            .map(Segment::Index)
            .map_err(|_| bad("an index must be a non-negative integer")),
        _ => Err(bad("unknown element type; expected f:, k:, v: or i:")),
    }
}

/// One entry of metadata.managedFields.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedEntry {
    pub manager: String,
    /// `Apply` (server-side apply) or `Update` (anything else: create, update, patch).
    pub operation: String,
    pub api_version: String,
    /// When the manager last changed its fields, RFC 3339 as given.
    pub time: Option<String>,
    /// `status`, `scale`, ...; `None` for the main resource.
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl ManagedEntry {
    fn parse(
        index: usize,
        entry: &Value,
        budget: &mut Budget,
    ) -> Result<ManagedEntry, FieldsError> {
        let fail = |manager: &str, reason: String| FieldsError::Entry {
            index,
            manager: if manager.is_empty() {
                "no manager".to_owned()
            } else {
                shorten(manager)
            },
            reason,
        };
        let Some(map) = entry.as_object() else {
            return Err(fail("", format!("{} instead of an object", kind_of(entry))));
        };
        let text = |name: &str| match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("{name} is {}, not a string", kind_of(other))),
        };
        let manager = text("manager")
            .map_err(|e| fail("", e))?
            .unwrap_or_default();
        let read = |name: &str| text(name).map_err(|e| fail(&manager, e));
        let operation = read("operation")?.unwrap_or_default();
        let api_version = read("apiVersion")?.unwrap_or_default();
        let time = read("time")?;
        let subresource = read("subresource")?.filter(|s| !s.is_empty());
        if let Some(kind) = read("fieldsType")?
            && kind != "FieldsV1"
        {
            return Err(fail(
                &manager,
                format!("fieldsType {} is not FieldsV1", shorten(&kind)),
            ));
        }
        let fields = match map.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::default(),
            Some(fields_v1) => FieldSet::parse_within(fields_v1, budget)
                .map_err(|e| fail(&manager, e.to_string()))?,
        };
        Ok(ManagedEntry {
            manager,
            operation,
            api_version,
            time,
            subresource,
            fields,
        })
    }
}

/// Every entry of one object's metadata.managedFields.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ManagedFields {
    pub entries: Vec<ManagedEntry>,
}

impl ManagedFields {
    /// From a live object (metadata.managedFields); the first entry that fails to parse is the
    /// error. An object without managedFields has no entries.
    pub fn of(object: &Value) -> Result<ManagedFields, FieldsError> {
        let (fields, errors) = ManagedFields::of_lenient(object);
        match errors.into_iter().next() {
            Some(error) => Err(error),
            None => Ok(fields),
        }
    }

    /// From a live object, keeping the entries that parse and returning an error for each one
    /// that does not, so one bad entry does not hide the owners of every other field.
    pub fn of_lenient(object: &Value) -> (ManagedFields, Vec<FieldsError>) {
        let shape = |reason: &str| FieldsError::Shape {
            reason: reason.to_owned(),
        };
        let entries = match object {
            Value::Object(object) => match object.get("metadata") {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(metadata)) => match metadata.get("managedFields") {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::Array(entries)) => Ok(Some(entries)),
                    Some(_) => Err(shape("not a list")),
                },
                Some(_) => Err(shape("metadata is not an object")),
            },
            _ => Err(shape("the object is not a JSON object")),
        };
        let entries = match entries {
            Ok(entries) => entries.map(Vec::as_slice).unwrap_or_default(),
            Err(error) => return (ManagedFields::default(), vec![error]),
        };
        let mut budget = Budget::default();
        let mut fields = ManagedFields::default();
        let mut errors = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            match ManagedEntry::parse(index, entry, &mut budget) {
                Ok(entry) => fields.entries.push(entry),
                Err(error) => errors.push(error),
            }
        }
        (fields, errors)
    }

    /// The entries that own `path`: those that list it, or list a leaf above it (a FieldsV1
    /// leaf owns its whole value: `f:data: {f:key: {}}` owns `.data.key` and anything in it).
    /// Only the closest listings count: when one entry lists `.metadata.labels.team` and
    /// another lists `.metadata.labels` as a leaf (it once set the map to `{}`), the first is
    /// the owner. Nothing is listed inside an atomic value, so its leaf stays the owner. In
    /// managedFields order.
    pub fn owners(&self, path: &FieldPath) -> Vec<&ManagedEntry> {
        let depths: Vec<_> = self
            .entries
            .iter()
            .map(|entry| entry.fields.owning_depth(path))
            .collect();
        let Some(closest) = depths.iter().flatten().max().copied() else {
            return Vec::new();
        };
        self.entries
            .iter()
            .zip(depths)
            .filter(|(_, depth)| *depth == Some(closest))
            .map(|(entry, _)| entry)
            .collect()
    }

    /// Every path listed for `manager`, over all its entries (any operation or subresource),
    /// sorted, each once.
    pub fn owned_by(&self, manager: &str) -> Vec<&FieldPath> {
        self.entries
            .iter()
            .filter(|entry| entry.manager == manager)
            .flat_map(|entry| entry.fields.leaves())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Text from the object, escaped onto one line, quoted, and cut when long.
fn shorten(text: &str) -> String {
    format!("'{}'", cut(&text.escape_debug().to_string()))
}

/// One-line text cut to a length fit for a message.
fn cut(text: &str) -> String {
    const MAX: usize = 100;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEPLOYMENT_FIELDS: &str = r#"{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:replicas":{},"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{".":{},"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:protocol":{}}}}}}}}}"#;

    fn parse(text: &str) -> Result<FieldSet, FieldsError> {
        FieldSet::parse(&serde_json::from_str(text).expect("test input is JSON"))
    }

    /// Every listed path as printed, with `.` after a marker.
    fn listing(set: &FieldSet) -> Vec<String> {
        set.leaves()
            .map(|path| {
                let marker = if set.is_leaf(path) { "" } else { " (.)" };
                format!("{path}{marker}")
            })
            .collect()
    }

    /// The one path a FieldsV1 text lists.
    fn path(text: &str) -> FieldPath {
        let set = parse(text).expect("test path parses");
        assert_eq!(set.len(), 1, "{text}");
        set.leaves().next().expect("one path").clone()
    }

    #[test]
    fn parses_a_deployment() {
        let set = parse(DEPLOYMENT_FIELDS).unwrap();
        assert_eq!(
            listing(&set),
            [
                ".metadata.labels (.)",
                ".metadata.labels.app",
                ".spec.replicas",
                ".spec.template.spec.containers[name=web] (.)",
                ".spec.template.spec.containers[name=web].image",
                ".spec.template.spec.containers[name=web].name",
                ".spec.template.spec.containers[name=web].ports (.)",
                ".spec.template.spec.containers[name=web].ports[containerPort=80,protocol=TCP] (.)",
                ".spec.template.spec.containers[name=web].ports[containerPort=80,protocol=TCP].containerPort",
                ".spec.template.spec.containers[name=web].ports[containerPort=80,protocol=TCP].protocol",
            ]
        );
        assert_eq!(set.len(), 10);
        let web = FieldPath::fields(["spec", "template", "spec", "containers"])
            .child(Segment::key([("name", &json!("web"))]));
        assert!(set.contains(&web));
        assert!(!set.is_leaf(&web));
        assert!(set.is_leaf(&web.child(Segment::field("image"))));
        // Not listed: parents without ".", and siblings.
        assert!(!set.contains(&FieldPath::fields(["spec"])));
        assert!(!set.contains(&FieldPath::fields(["spec", "template"])));
        assert!(!set.contains(&web.child(Segment::field("env"))));
    }

    #[test]
    fn element_kinds() {
        let cases: &[(&str, &[&str])] = &[
            // Key objects are normalised: field order and number spelling do not matter.
            (
                r#"{"f:ports":{"k:{\"protocol\":\"TCP\",\"containerPort\":80}":{}}}"#,
                &[".ports[containerPort=80,protocol=TCP]"],
            ),
            (
                r#"{"f:ports":{"k:{ \"containerPort\" : 80.0, \"protocol\":\"TCP\" }":{}}}"#,
                &[".ports[containerPort=80,protocol=TCP]"],
            ),
            (
                r#"{"f:metadata":{"f:finalizers":{".":{},"v:\"a\"":{},"v:\"example.com/b\"":{}}}}"#,
                &[
                    ".metadata.finalizers (.)",
                    r#".metadata.finalizers[="a"]"#,
                    r#".metadata.finalizers[="example.com/b"]"#,
                ],
            ),
            (
                r#"{"f:ports":{"v:80":{},"v:true":{}}}"#,
                &[".ports[=80]", ".ports[=true]"],
            ),
            (
                r#"{"f:args":{"i:0":{},"i:12":{"f:x":{}}}}"#,
                &[".args[0]", ".args[12].x"],
            ),
            (
                r#"{"f:metadata":{"f:annotations":{"f:app.kubernetes.io/name":{}}}}"#,
                &[r#".metadata.annotations["app.kubernetes.io/name"]"#],
            ),
            // A "." alone is a leaf; a "." at the top is ignored; an empty set is empty.
            (r#"{"f:a":{".":{}}}"#, &[".a"]),
            (r#"{".":{},"f:a":{}}"#, &[".a"]),
            (r#"{}"#, &[]),
        ];
        for (text, want) in cases {
            let set = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(listing(&set), *want, "{text}");
        }
        assert_eq!(
            parse(r#"{"f:p":{"k:{\"b\":\"x\",\"a\":1}":{}}}"#).unwrap(),
            parse(r#"{"f:p":{"k:{\"a\":1,\"b\":\"x\"}":{}}}"#).unwrap()
        );
        assert_eq!(
            path(r#"{"f:p":{"k:{\"b\":\"x\",\"a\":1}":{}}}"#),
            FieldPath::fields(["p"]).child(Segment::key([("a", &json!(1)), ("b", &json!("x"))]))
        );
    }

    #[test]
    fn a_key_written_twice_is_one_element() {
        let set =
            parse(r#"{"f:p":{"k:{\"b\":2,\"a\":1}":{},"k:{\"a\":1,\"b\":2}":{".":{},"f:c":{}}}}"#)
                .unwrap();
        assert_eq!(listing(&set), [".p[a=1,b=2] (.)", ".p[a=1,b=2].c"]);
    }

    #[test]
    fn ownership() {
        let set = parse(
            r#"{"f:data":{"f:key":{}},"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:selector":{}}}"#,
        )
        .unwrap();
        let cases = [
            (FieldPath::fields(["data", "key"]), true),
            // Below a leaf: the leaf owns its whole value (an atomic map here).
            (FieldPath::fields(["data", "key", "deeper"]), true),
            (
                FieldPath::fields(["spec", "selector", "matchLabels", "app"]),
                true,
            ),
            (FieldPath::fields(["data"]), false),
            (FieldPath::fields(["data", "other"]), false),
            (FieldPath::fields(["metadata", "labels"]), true),
            (FieldPath::fields(["metadata", "labels", "app"]), true),
            // A marker owns the element, not what it does not list.
            (FieldPath::fields(["metadata", "labels", "team"]), false),
            (FieldPath::fields(["metadata"]), false),
            (FieldPath::root(), false),
        ];
        for (path, owned) in cases {
            assert_eq!(set.owns(&path), owned, "{path}");
        }
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 3,
                "template": {"spec": {"containers": [
                    {"name": "sidecar", "image": "envoy:1"},
                    {"name": "web", "image": "nginx:1.27", "ports": [
                        {"containerPort": 9090, "protocol": "TCP"},
                        {"containerPort": 80, "protocol": "TCP"},
                    ]},
                ]}},
            },
        })
    }

    #[test]
    fn parsed_paths_resolve_in_the_live_object() {
        let object = deployment();
        let set = parse(DEPLOYMENT_FIELDS).unwrap();
        let pointers: Vec<_> = set
            .leaves()
            .map(|path| path.to_json_pointer(&object).expect("present"))
            .collect();
        assert_eq!(
            pointers,
            [
                "/metadata/labels",
                "/metadata/labels/app",
                "/spec/replicas",
                "/spec/template/spec/containers/1",
                "/spec/template/spec/containers/1/image",
                "/spec/template/spec/containers/1/name",
                "/spec/template/spec/containers/1/ports",
                "/spec/template/spec/containers/1/ports/1",
                "/spec/template/spec/containers/1/ports/1/containerPort",
                "/spec/template/spec/containers/1/ports/1/protocol",
            ]
        );
        for path in set.leaves() {
            let pointer = path.to_json_pointer(&object).unwrap();
            assert_eq!(path.get(&object), object.pointer(&pointer), "{path}");
        }
        let image = set
            .leaves()
            .find(|p| p.to_string().ends_with(".image"))
            .unwrap();
        assert_eq!(image.get(&object), Some(&json!("nginx:1.27")));

        let finalizer = path(r#"{"f:metadata":{"f:finalizers":{"v:\"b\"":{}}}}"#);
        let object = json!({"metadata": {"finalizers": ["a", "b"]}});
        assert_eq!(
            finalizer.to_json_pointer(&object).as_deref(),
            Some("/metadata/finalizers/1")
        );
        assert_eq!(finalizer.get(&object), Some(&json!("b")));
        assert_eq!(
            finalizer.get(&json!({"metadata": {"finalizers": ["a"]}})),
            None
        );
    }

    /// `value` under one more field. (`json!` would serialise a copy of it, recursively.)
    fn wrap(name: String, value: Value) -> Value {
        Value::Object(Map::from_iter([(name, value)]))
    }

    /// A value nested `depth` levels deep in `{"f:a": ...}`, built without recursion.
    fn nested(depth: usize) -> Value {
        (0..depth).fold(json!({}), |value, _| wrap("f:a".to_owned(), value))
    }

    /// Takes a deep value apart without recursion, so dropping it cannot overflow the stack.
    fn dismantle(mut value: Value) {
        while let Some(inner) = value.as_object_mut().and_then(|m| m.remove("f:a")) {
            value = inner;
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        let huge_key = format!("f:{}", "x".repeat(1 << 20));
        let cases: Vec<(Value, &str)> = vec![
            (
                json!(1),
                "FieldsV1 at .: expected a JSON object, found a number",
            ),
            (json!([]), "found an array"),
            (json!(null), "found null"),
            (json!("{}"), "found a string"),
            (
                json!({"f:a": 1}),
                "FieldsV1 at .: the value of 'f:a' is a number, not an object",
            ),
            (
                json!({"f:a": {"f:b": []}}),
                "FieldsV1 at .a: the value of 'f:b' is an array",
            ),
            (
                json!({"k:{\"name\":": {}}),
                r#"bad path element 'k:{\"name\":': EOF"#,
            ),
            (
                json!({"k:[1]": {}}),
                "a key must be a JSON object, not an array",
            ),
            (json!({"k:{} x": {}}), "trailing characters"),
            (json!({"v:abc": {}}), "bad path element 'v:abc'"),
            (
                json!({"i:-1": {}}),
                "an index must be a non-negative integer",
            ),
            (
                json!({"i:x": {}}),
                "an index must be a non-negative integer",
            ),
            (
                json!({"x:a": {}}),
                "bad path element 'x:a': unknown element type",
            ),
            (
                json!({"fa": {}}),
                "bad path element 'fa': expected f:, k:, v: or i:",
            ),
            (json!({"": {}}), "bad path element ''"),
            (
                json!({"f:spec": {"f:\n": {"x:y": {}}}}),
                r#"FieldsV1 at .spec["\n"]: bad path element 'x:y'"#,
            ),
            (
                json!({ huge_key.clone(): {} }),
                "path element of 1048578 bytes is longer than 65536",
            ),
            (
                json!({ format!("v:\"{}\"", "y".repeat(1 << 20)): {} }),
                "is longer than 65536",
            ),
            (nested(129), "FieldsV1 is nested deeper than 128 levels"),
            (nested(10_000), "FieldsV1 is nested deeper than 128 levels"),
        ];
        for (input, want) in cases {
            let error = FieldSet::parse(&input).expect_err(want).to_string();
            assert!(error.contains(want), "{error:?} does not contain {want:?}");
            assert!(!error.contains('\n') && error.len() < 300, "{error:?}");
            dismantle(input);
        }
        assert_eq!(FieldSet::parse(&nested(128)).unwrap().len(), 1);
    }

    #[test]
    fn size_is_bounded() {
        let many: Map<String, Value> = (0..=MAX_ELEMENTS)
            .map(|i| (format!("f:{i}"), json!({})))
            .collect();
        assert_eq!(
            FieldSet::parse(&Value::Object(many)).unwrap_err(),
            FieldsError::TooLarge {
                what: "path elements",
                limit: MAX_ELEMENTS
            }
        );

        // Long names deep down, then many leaves: each leaf would hold the whole prefix.
        let leaves: Map<String, Value> = (0..200).map(|i| (format!("f:{i}"), json!({}))).collect();
        let mut value = Value::Object(leaves);
        for i in 0..20 {
            value = wrap(format!("f:{i}{}", "n".repeat(60_000)), value);
        }
        assert_eq!(
            FieldSet::parse(&value).unwrap_err(),
            FieldsError::TooLarge {
                what: "bytes of paths",
                limit: MAX_PATH_BYTES
            }
        );
    }

    fn two_managers() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "managedFields": [
                    {
                        "manager": "kustomize-controller",
                        "operation": "Apply",
                        "apiVersion": "apps/v1",
                        "time": "2025-05-01T10:00:00Z",
                        "fieldsType": "FieldsV1",
                        "fieldsV1": {
                            "f:metadata": {"f:labels": {"f:app": {}}},
                            "f:spec": {"f:template": {"f:spec": {"f:containers": {
                                "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}},
                            }}}},
                        },
                    },
                    {
                        "manager": "kubectl-edit",
                        "operation": "Update",
                        "apiVersion": "apps/v1",
                        "time": "2025-05-02T07:30:00Z",
                        "fieldsType": "FieldsV1",
                        "fieldsV1": {"f:spec": {"f:replicas": {}}},
                    },
                    {
                        "manager": "kube-controller-manager",
                        "operation": "Update",
                        "apiVersion": "apps/v1",
                        "time": "2025-05-02T07:30:01Z",
                        "fieldsType": "FieldsV1",
                        "fieldsV1": {"f:status": {"f:replicas": {}}},
                        "subresource": "status",
                    },
                ],
            },
        })
    }

    #[test]
    fn managed_fields_of_an_object() {
        let managed = ManagedFields::of(&two_managers()).unwrap();
        let summary: Vec<_> = managed
            .entries
            .iter()
            .map(|e| {
                (
                    e.manager.as_str(),
                    e.operation.as_str(),
                    e.time.as_deref(),
                    e.subresource.as_deref(),
                    e.fields.len(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "kustomize-controller",
                    "Apply",
                    Some("2025-05-01T10:00:00Z"),
                    None,
                    4
                ),
                (
                    "kubectl-edit",
                    "Update",
                    Some("2025-05-02T07:30:00Z"),
                    None,
                    1
                ),
                (
                    "kube-controller-manager",
                    "Update",
                    Some("2025-05-02T07:30:01Z"),
                    Some("status"),
                    1
                ),
            ]
        );

        let web = FieldPath::fields(["spec", "template", "spec", "containers"])
            .child(Segment::key([("name", &json!("web"))]));
        let owners = |path: &FieldPath| -> Vec<&str> {
            managed
                .owners(path)
                .iter()
                .map(|e| e.manager.as_str())
                .collect()
        };
        assert_eq!(
            owners(&FieldPath::fields(["spec", "replicas"])),
            ["kubectl-edit"]
        );
        assert_eq!(
            owners(&FieldPath::fields(["status", "replicas"])),
            ["kube-controller-manager"]
        );
        assert_eq!(
            owners(&web.child(Segment::field("image"))),
            ["kustomize-controller"]
        );
        assert!(owners(&web.child(Segment::field("env"))).is_empty());
        // Anything inside a listed leaf is the leaf owner's.
        assert_eq!(
            owners(&web.child(Segment::field("image")).child(Segment::Index(0))),
            ["kustomize-controller"]
        );
        assert!(owners(&FieldPath::fields(["spec"])).is_empty());

        let owned: Vec<_> = managed
            .owned_by("kustomize-controller")
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            owned,
            [
                ".metadata.labels.app",
                ".spec.template.spec.containers[name=web]",
                ".spec.template.spec.containers[name=web].image",
                ".spec.template.spec.containers[name=web].name",
            ]
        );
        assert!(managed.owned_by("nobody").is_empty());

        let json = serde_json::to_value(&managed.entries[1]).unwrap();
        assert_eq!(
            json,
            json!({
                "manager": "kubectl-edit",
                "operation": "Update",
                "apiVersion": "apps/v1",
                "time": "2025-05-02T07:30:00Z",
                "subresource": null,
                "fields": [".spec.replicas"],
            })
        );
    }

    #[test]
    fn the_closest_listing_owns() {
        let object = json!({"metadata": {"managedFields": [
            {"manager": "a", "operation": "Apply", "fieldsV1": {"f:metadata": {"f:labels": {}}}},
            {"manager": "b", "operation": "Update", "fieldsV1": {
                "f:metadata": {"f:labels": {"f:team": {}}}}},
            {"manager": "c", "operation": "Update", "fieldsV1": {
                "f:metadata": {"f:labels": {"f:team": {}}}}},
        ]}});
        let managed = ManagedFields::of(&object).unwrap();
        let owners = |path: &FieldPath| -> Vec<&str> {
            managed
                .owners(path)
                .iter()
                .map(|e| e.manager.as_str())
                .collect()
        };
        let labels = FieldPath::fields(["metadata", "labels"]);
        assert_eq!(owners(&labels), ["a"]);
        assert_eq!(owners(&labels.child(Segment::field("team"))), ["b", "c"]);
        assert_eq!(owners(&labels.child(Segment::field("tier"))), ["a"]);
        assert_eq!(owners(&FieldPath::fields(["spec"])), Vec::<&str>::new());
    }

    #[test]
    fn bad_entries_are_reported_and_the_rest_kept() {
        let mut object = two_managers();
        let entries = object["metadata"]["managedFields"].as_array_mut().unwrap();
        entries[0]["fieldsV1"] = json!({"f:spec": {"x:y": {}}});
        entries.push(json!("not an entry"));
        entries.push(json!({"manager": "m\nx", "fieldsType": "FieldsV2"}));
        entries.push(json!({"manager": 7}));

        let error = ManagedFields::of(&object).unwrap_err();
        assert_eq!(
            error.to_string(),
            "managedFields entry 0 ('kustomize-controller'): FieldsV1 at .spec: bad path element \
             'x:y': unknown element type; expected f:, k:, v: or i:"
        );

        let (managed, errors) = ManagedFields::of_lenient(&object);
        let managers: Vec<_> = managed.entries.iter().map(|e| e.manager.as_str()).collect();
        assert_eq!(managers, ["kubectl-edit", "kube-controller-manager"]);
        let errors: Vec<_> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors[1..],
            [
                "managedFields entry 3 (no manager): a string instead of an object",
                "managedFields entry 4 ('m\\nx'): fieldsType 'FieldsV2' is not FieldsV1",
                "managedFields entry 5 (no manager): manager is a number, not a string",
            ]
        );
    }

    #[test]
    fn objects_without_managed_fields() {
        let cases = [
            (json!({"kind": "ConfigMap"}), Ok(0)),
            (json!({"metadata": {"name": "x"}}), Ok(0)),
            (json!({"metadata": {"managedFields": null}}), Ok(0)),
            (
                json!({"metadata": {"managedFields": [{"manager": "m"}]}}),
                Ok(1),
            ),
            (
                json!({"metadata": {"managedFields": {}}}),
                Err("metadata.managedFields: not a list"),
            ),
            (
                json!({"metadata": 1}),
                Err("metadata.managedFields: metadata is not an object"),
            ),
            (
                json!([]),
                Err("metadata.managedFields: the object is not a JSON object"),
            ),
        ];
        for (object, want) in cases {
            let got = ManagedFields::of(&object)
                .map(|m| m.entries.len())
                .map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(str::to_owned), "{object}");
        }
    }
}
