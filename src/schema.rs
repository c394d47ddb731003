//! How server-side apply merges each field of a kind, read from the server's OpenAPI v3
//! documents: which lists merge by key, which merge as sets, which are replaced whole, which maps
//! are atomic, and which values are quantities or int-or-strings.
//!
//! The rules are those kube-apiserver uses when it turns OpenAPI into its structured-merge-diff
//! schema (kube-openapi `pkg/schemaconv`, `smd.go` and `openapi.go`), so that a comparison made
//! here agrees with what a server-side apply would do. Pure: documents in, answers out.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde_json::{Map, Value};

/// Quantities (`500m`, `1Gi`) are compared by value, not by text.
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
/// Built-in int-or-strings refer to this (`format: int-or-string`); CRDs use
/// `x-kubernetes-int-or-string: true` instead.
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
/// An embedded object of any kind; kube-openapi makes it atomic whatever it holds.
const RAW_EXTENSION: &str = "io.k8s.apimachinery.pkg.runtime.RawExtension";
/// More `$ref` hops than this without reaching a schema is a cycle.
const MAX_REF_HOPS: usize = 32;

/// Parsed OpenAPI v3 documents, by group-version (`v1`, `apps/v1`).
#[derive(Debug, Default)]
pub struct Schemas {
    documents: BTreeMap<String, Document>,
}

#[derive(Debug)]
struct Document {
    /// `components.schemas`.
    schemas: Map<String, Value>,
    /// The schemas that declare a kind (`x-kubernetes-group-version-kind`), by group, version
    /// and kind.
    kinds: HashMap<(String, String, String), String>,
}

/// An OpenAPI document that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the OpenAPI v3 document of {group_version} is not valid JSON: {reason}")]
    Json {
        group_version: String,
        reason: String,
    },
    #[error("the OpenAPI v3 document of {group_version} is not an OpenAPI document: {reason}")]
    Shape {
        group_version: String,
        reason: &'static str,
    },
}

impl Schemas {
    pub fn new() -> Schemas {
        Schemas::default()
    }

    /// Takes in another set's documents, replacing any of the same group-version.
    pub fn extend(&mut self, other: Schemas) {
        self.documents.extend(other.documents);
    }

    /// Adds one group-version document (the JSON text of `/openapi/v3/apis/apps/v1` or
    /// `/openapi/v3/api/v1`), replacing any earlier one of the same group-version. A document
    /// without `components.schemas` declares nothing and is accepted.
    pub fn add_document(&mut self, group_version: &str, json: &str) -> Result<(), SchemaError> {
        let shape_error = |reason| SchemaError::Shape {
            group_version: group_version.to_owned(),
            reason,
        };
        let document: Value = serde_json::from_str(json).map_err(|e| SchemaError::Json {
            group_version: group_version.to_owned(),
            reason: e.to_string(),
        })?;
        let Value::Object(mut document) = document else {
            return Err(shape_error("it is not a JSON object"));
        };
        let schemas = match document
            .get_mut("components")
            .and_then(|c| c.as_object_mut())
            .and_then(|c| c.remove("schemas"))
        {
            None => Map::new(),
            Some(Value::Object(schemas)) => schemas,
            Some(_) => return Err(shape_error("components.schemas is not an object")),
        };
        let mut kinds = HashMap::new();
        for (name, schema) in &schemas {
            let declared = schema
                .get("x-kubernetes-group-version-kind")
                .and_then(Value::as_array);
            for gvk in declared.into_iter().flatten() {
                let part = |key| gvk.get(key).and_then(Value::as_str).unwrap_or_default();
                let key = (
                    part("group").to_owned(),
                    part("version").to_owned(),
                    part("kind").to_owned(),
                );
                // The first schema wins; a document declares each kind once.
                kinds.entry(key).or_insert_with(|| name.clone());
            }
        }
        self.documents
            .insert(group_version.to_owned(), Document { schemas, kinds });
        Ok(())
    }

    /// The schema of a kind, if a loaded document declares it: the document of its own
    /// group-version first, then any other (`DeleteOptions` is declared by every group).
    pub fn kind(&self, group: &str, version: &str, kind: &str) -> Option<Node<'_>> {
        let key = (group.to_owned(), version.to_owned(), kind.to_owned());
        let own = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        let own_document = self.documents.get(&own);
        own_document
            .into_iter()
            .chain(self.documents.values())
            .find_map(|doc| {
                let name = doc.kinds.get(&key)?;
                let (name, schema) = doc.schemas.get_key_value(name)?;
                Some(Node::at_named(&doc.schemas, name, schema))
            })
    }
}

/// How a value merges, as server-side apply sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// A struct (`properties`) or a map (`additionalProperties`), merged key by key unless
    /// atomic (`x-kubernetes-map-type: atomic`), when it is replaced whole.
    Object {
        atomic: bool,
    },
    List(ListKind),
    /// `io.k8s.apimachinery.pkg.api.resource.Quantity`: `500m` equals `0.5`.
    Quantity,
    /// `x-kubernetes-int-or-string` (CRDs) or `format: int-or-string` (built-ins).
    IntOrString,
    /// A string, integer, number or boolean.
    Scalar,
    /// No schema, or one that allows anything: the shape comes from the value, as server-side
    /// apply deduces it (objects merged key by key, lists replaced whole).
    Unknown,
}

/// How the items of a list merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind {
    /// Replaced whole.
    Atomic,
    /// Scalars, merged by value.
    Set,
    /// Objects, merged by the values of these fields.
    Map { keys: Vec<String> },
}

/// A position in a kind's schema, with `$ref` and single-`allOf` wrappers resolved.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    /// `components.schemas` of the document this node is in.
    schemas: &'a Map<String, Value>,
    /// None: no schema at all; anything goes.
    schema: Option<&'a Map<String, Value>>,
    /// The component the schema was reached through, if any.
    name: Option<&'a str>,
    /// `x-kubernetes-map-type` of the referring field; it overrides the referred type's.
    map_type: Option<&'a str>,
    /// `x-kubernetes-preserve-unknown-fields` here or on an ancestor in the same component.
    preserve_unknown: bool,
    /// The `default` of the field's own schema (before any `$ref`): what the server stores
    /// when the field is left out.
    default: Option<&'a Value>,
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("shape", &self.shape())
            .finish()
    }
}

impl<'a> Node<'a> {
    /// The field `name` of an object: its property, else the value schema of a map
    /// (`additionalProperties`), else an unknown node where unknown fields are kept. None when
    /// the schema has no such field and allows no others, or is not an object.
    pub fn field(&self, name: &str) -> Option<Node<'a>> {
        let Some(schema) = self.schema else {
            return Some(self.unknown());
        };
        match self.shape() {
            Shape::Object { .. } => {}
            Shape::Unknown => return Some(self.unknown()),
            _ => return None,
        }
        if self.name == Some(RAW_EXTENSION) {
            return Some(self.unknown());
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(property) = properties.and_then(|p| p.get(name)) {
            return Some(self.child(property));
        }
        match schema.get("additionalProperties") {
            Some(Value::Bool(false)) => None,
            Some(Value::Bool(true)) => Some(self.unknown()),
            Some(value) => Some(self.child(value)),
            // An object that lists no properties is free-form; one that does keeps only those,
            // unless it preserves unknown fields.
            None if self.preserve_unknown || properties.is_none_or(Map::is_empty) => {
                Some(self.unknown())
            }
            None => None,
        }
    }

    /// The names of the properties this object's schema lists (none for a map or an unknown
    /// value).
    pub fn properties(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.schema
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|p| p.keys().map(String::as_str))
    }

    /// The items of a list; None when this is not a list.
    pub fn items(&self) -> Option<Node<'a>> {
        let Some(schema) = self.schema else {
            return Some(self.unknown());
        };
        match self.shape() {
            Shape::List(_) => {}
            Shape::Unknown => return Some(self.unknown()),
            _ => return None,
        }
        Some(match schema.get("items") {
            // `items` as an array (a tuple) is not structural; kube-openapi deduces it.
            Some(items @ Value::Object(_)) => self.child(items),
            _ => self.unknown(),
        })
    }

    /// The OpenAPI definition (component) this value is an instance of, such as
    /// `io.k8s.api.core.v1.ContainerPort`; None for a schema written inline.
    pub fn definition(&self) -> Option<&'a str> {
        self.name
    }

    /// The `default` the schema publishes for this field: what the server fills in when the
    /// field is left out (built-ins' `+default` markers, CRDs' structural defaults).
    pub fn declared_default(&self) -> Option<&'a Value> {
        self.default
    }

    /// How this value merges.
    pub fn shape(&self) -> Shape {
        let Some(schema) = self.schema else {
            return Shape::Unknown;
        };
        match self.name {
            Some(QUANTITY) => return Shape::Quantity,
            Some(INT_OR_STRING) => return Shape::IntOrString,
            Some(RAW_EXTENSION) => return Shape::Object { atomic: true },
            _ => {}
        }
        if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
            || schema.get("format").and_then(Value::as_str) == Some("int-or-string")
        {
            return Shape::IntOrString;
        }
        // OpenAPI 3.0 has one type; a list (3.1) counts by its first, as kube-openapi does.
        let type_ = match schema.get("type") {
            Some(Value::String(t)) => Some(t.as_str()),
            Some(Value::Array(types)) => types.first().and_then(Value::as_str),
            _ => None,
        };
        match type_ {
            Some("object") => Shape::Object {
                atomic: self.atomic_map(schema),
            },
            Some("array") => Shape::List(list_kind(schema)),
            Some(_) => Shape::Scalar,
            // No type: anything, though fields or items, when given, still say how it merges.
            None if schema.contains_key("properties")
                || schema.contains_key("additionalProperties") =>
            {
                Shape::Object {
                    atomic: self.atomic_map(schema),
                }
            }
            None if schema.contains_key("items") => Shape::List(list_kind(schema)),
            None => Shape::Unknown,
        }
    }

    fn atomic_map(&self, schema: &Map<String, Value>) -> bool {
        let own = schema.get("x-kubernetes-map-type").and_then(Value::as_str);
        self.map_type.or(own) == Some("atomic")
    }

    /// A node for a schema written inside this one: it inherits preserve-unknown-fields.
    fn child(&self, value: &'a Value) -> Node<'a> {
        Node::at(self.schemas, value, self.preserve_unknown)
    }

    fn unknown(&self) -> Node<'a> {
        Node {
            schemas: self.schemas,
            schema: None,
            name: None,
            map_type: None,
            preserve_unknown: true,
            default: None,
        }
    }

    fn at_named(schemas: &'a Map<String, Value>, name: &'a str, value: &'a Value) -> Node<'a> {
        let mut node = Node::at(schemas, value, false);
        node.name = node.name.or(Some(name));
        node
    }

    /// Resolves `value`, following `$ref` and `allOf: [{$ref}]` wrappers. Like kube-openapi,
    /// a wrapper contributes only its `x-kubernetes-map-type`, and a referred component starts
    /// without the preserve-unknown-fields of the referring schema.
    fn at(schemas: &'a Map<String, Value>, value: &'a Value, preserve_unknown: bool) -> Node<'a> {
        let mut node = Node {
            schemas,
            schema: None,
            name: None,
            map_type: None,
            preserve_unknown: true,
            default: value.get("default"),
        };
        let Some(mut schema) = value.as_object() else {
            // `true` or any non-object: no constraint.
            return node;
        };
        let mut preserve_unknown = preserve_unknown;
        let mut hops = 0;
        while let Some(target) = reference(schema) {
            hops += 1;
            if hops > MAX_REF_HOPS {
                return node;
            }
            if node.map_type.is_none() {
                node.map_type = schema.get("x-kubernetes-map-type").and_then(Value::as_str);
            }
            let Some((name, Value::Object(referred))) = schemas.get_key_value(target) else {
                // A dangling reference: nothing is known about the value.
                return node;
            };
            node.name = Some(name.as_str());
            schema = referred;
            preserve_unknown = false;
        }
        node.schema = Some(schema);
        node.preserve_unknown = preserve_unknown
            || schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        node
    }
}

/// The component a schema refers to: `$ref`, or the only member of `allOf` being a `$ref`.
/// Like kube-openapi, only the last path segment names it.
fn reference(schema: &Map<String, Value>) -> Option<&str> {
    let target = match schema.get("$ref") {
        Some(Value::String(r)) => r.as_str(),
        _ => match schema.get("allOf").and_then(Value::as_array)?.as_slice() {
            [only] => only.get("$ref")?.as_str()?,
            _ => return None,
        },
    };
    target.rsplit('/').next().filter(|name| !name.is_empty())
}

/// kube-openapi's `getListElementRelationship`: `x-kubernetes-list-type` first, then the
/// strategic-merge-patch extensions, else atomic.
fn list_kind(schema: &Map<String, Value>) -> ListKind {
    let text = |key| schema.get(key).and_then(Value::as_str);
    if let Some(list_type) = schema.get("x-kubernetes-list-type") {
        return match list_type.as_str() {
            Some("set") => ListKind::Set,
            Some("map") => {
                let keys: Vec<String> = schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect();
                // A keyed list without keys cannot be merged by key (kube-openapi rejects the
                // schema); treat it as a whole.
                if keys.is_empty() {
                    ListKind::Atomic
                } else {
                    ListKind::Map { keys }
                }
            }
            // `atomic`, or a value kube-openapi rejects.
            _ => ListKind::Atomic,
        };
    }
    match text("x-kubernetes-patch-strategy") {
        Some("merge" | "merge,retainKeys") => match text("x-kubernetes-patch-merge-key") {
            Some(key) => ListKind::Map {
                keys: vec![key.to_owned()],
            },
            // Merged without a key: a set.
            None => ListKind::Set,
        },
        _ => ListKind::Atomic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks a path like `spec.template.spec.containers[].ports`: `.name` is a field, `[]`
    /// the items of a list.
    fn at<'a>(node: Node<'a>, path: &str) -> Option<Node<'a>> {
        let mut node = node;
        for part in path.split('.').filter(|p| !p.is_empty()) {
            let (name, lists) = match part.find("[]") {
                Some(i) => (&part[..i], part[i..].matches("[]").count()),
                None => (part, 0),
            };
            node = node.field(name)?;
            for _ in 0..lists {
                node = node.items()?;
            }
        }
        Some(node)
    }

    fn shape(schemas: &Schemas, (group, version, kind): (&str, &str, &str), path: &str) -> Shape {
        let root = schemas
            .kind(group, version, kind)
            .unwrap_or_else(|| panic!("no kind {group}/{version} {kind}"));
        at(root, path)
            .unwrap_or_else(|| panic!("no field {path} in {kind}"))
            .shape()
    }

    /// A trimmed `/openapi/v3/apis/apps/v1` with the structure the real one has: kinds behind
    /// `allOf: [{$ref}]` wrappers, list extensions on the array, map types on the object.
    const APPS_V1: &str = r##"{
      "openapi": "3.0.0",
      "components": {"schemas": {
        "io.k8s.api.apps.v1.Deployment": {
          "type": "object",
          "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]},
            "spec": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}]}
          },
          "x-kubernetes-group-version-kind": [{"group": "apps", "kind": "Deployment", "version": "v1"}]
        },
        "io.k8s.api.apps.v1.DeploymentSpec": {
          "type": "object",
          "properties": {
            "replicas": {"type": "integer", "format": "int32"},
            "selector": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"}]},
            "strategy": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"}], "x-kubernetes-patch-strategy": "retainKeys"},
            "template": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodTemplateSpec"}]}
          }
        },
        "io.k8s.api.apps.v1.DeploymentStrategy": {
          "type": "object",
          "properties": {
            "rollingUpdate": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.RollingUpdateDeployment"}]},
            "type": {"type": "string", "enum": ["Recreate", "RollingUpdate"]}
          }
        },
        "io.k8s.api.apps.v1.RollingUpdateDeployment": {
          "type": "object",
          "properties": {
            "maxSurge": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.util.intstr.IntOrString"}]}
          }
        },
        "io.k8s.api.core.v1.PodTemplateSpec": {
          "type": "object",
          "properties": {
            "metadata": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]},
            "spec": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}]}
          }
        },
        "io.k8s.api.core.v1.PodSpec": {
          "type": "object",
          "properties": {
            "containers": {
              "type": "array",
              "items": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}]},
              "x-kubernetes-list-map-keys": ["name"], "x-kubernetes-list-type": "map",
              "x-kubernetes-patch-merge-key": "name", "x-kubernetes-patch-strategy": "merge"
            },
            "imagePullSecrets": {
              "type": "array",
              "items": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.LocalObjectReference"}]},
              "x-kubernetes-list-map-keys": ["name"], "x-kubernetes-list-type": "map",
              "x-kubernetes-patch-merge-key": "name", "x-kubernetes-patch-strategy": "merge"
            },
            "nodeSelector": {"type": "object", "additionalProperties": {"type": "string", "default": ""}, "x-kubernetes-map-type": "atomic"},
            "tolerations": {
              "type": "array",
              "items": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Toleration"}]},
              "x-kubernetes-list-type": "atomic"
            },
            "volumes": {
              "type": "array",
              "items": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Volume"}]},
              "x-kubernetes-list-map-keys": ["name"], "x-kubernetes-list-type": "map",
              "x-kubernetes-patch-merge-key": "name", "x-kubernetes-patch-strategy": "merge,retainKeys"
            }
          }
        },
        "io.k8s.api.core.v1.Container": {
          "type": "object",
          "required": ["name"],
          "properties": {
            "name": {"type": "string", "default": ""},
            "command": {"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "atomic"},
            "env": {
              "type": "array",
              "items": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.EnvVar"}]},
              "x-kubernetes-list-map-keys": ["name"], "x-kubernetes-list-type": "map",
              "x-kubernetes-patch-merge-key": "name", "x-kubernetes-patch-strategy": "merge"
            },
            "ports": {
              "type": "array",
              "items": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ContainerPort"}]},
              "x-kubernetes-list-map-keys": ["containerPort", "protocol"], "x-kubernetes-list-type": "map",
              "x-kubernetes-patch-merge-key": "containerPort", "x-kubernetes-patch-strategy": "merge"
            },
            "resources": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ResourceRequirements"}]}
          }
        },
        "io.k8s.api.core.v1.ContainerPort": {
          "type": "object",
          "properties": {"containerPort": {"type": "integer", "format": "int32"}, "protocol": {"type": "string", "default": "TCP"}}
        },
        "io.k8s.api.core.v1.EnvVar": {
          "type": "object",
          "properties": {"name": {"type": "string"}, "value": {"type": "string"}}
        },
        "io.k8s.api.core.v1.LocalObjectReference": {
          "type": "object",
          "properties": {"name": {"type": "string", "default": ""}},
          "x-kubernetes-map-type": "atomic"
        },
        "io.k8s.api.core.v1.ResourceRequirements": {
          "type": "object",
          "properties": {
            "limits": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.api.resource.Quantity"}},
            "requests": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.api.resource.Quantity"}}
          }
        },
        "io.k8s.api.core.v1.Toleration": {
          "type": "object",
          "properties": {"key": {"type": "string"}, "tolerationSeconds": {"type": "integer", "format": "int64"}}
        },
        "io.k8s.api.core.v1.Volume": {
          "type": "object",
          "properties": {"name": {"type": "string", "default": ""}}
        },
        "io.k8s.apimachinery.pkg.api.resource.Quantity": {
          "description": "Quantity is a fixed-point representation of a number.",
          "oneOf": [{"type": "string"}, {"type": "number"}]
        },
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
          "format": "int-or-string",
          "oneOf": [{"type": "integer"}, {"type": "string"}]
        },
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector": {
          "type": "object",
          "properties": {
            "matchExpressions": {"type": "array", "items": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement"}]}, "x-kubernetes-list-type": "atomic"},
            "matchLabels": {"type": "object", "additionalProperties": {"type": "string", "default": ""}}
          },
          "x-kubernetes-map-type": "atomic"
        },
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement": {
          "type": "object",
          "properties": {"key": {"type": "string"}}
        },
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {
          "type": "object",
          "properties": {
            "annotations": {"type": "object", "additionalProperties": {"type": "string", "default": ""}},
            "finalizers": {"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "set", "x-kubernetes-patch-strategy": "merge"},
            "labels": {"type": "object", "additionalProperties": {"type": "string", "default": ""}},
            "name": {"type": "string"},
            "ownerReferences": {
              "type": "array",
              "items": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference"}]},
              "x-kubernetes-list-map-keys": ["uid"], "x-kubernetes-list-type": "map",
              "x-kubernetes-patch-merge-key": "uid", "x-kubernetes-patch-strategy": "merge"
            }
          }
        },
        "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference": {
          "type": "object",
          "properties": {"uid": {"type": "string"}},
          "x-kubernetes-map-type": "atomic"
        },
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions": {
          "type": "object",
          "properties": {"dryRun": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "atomic"}},
          "x-kubernetes-group-version-kind": [
            {"group": "", "kind": "DeleteOptions", "version": "v1"},
            {"group": "apps", "kind": "DeleteOptions", "version": "v1"}
          ]
        }
      }}
    }"##;

    /// A trimmed `/openapi/v3/api/v1`: Service, whose target ports are int-or-strings, and the
    /// PersistentVolume's field-level map-type override.
    const CORE_V1: &str = r##"{
      "openapi": "3.0.0",
      "components": {"schemas": {
        "io.k8s.api.core.v1.Service": {
          "type": "object",
          "properties": {
            "metadata": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]},
            "spec": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ServiceSpec"}]}
          },
          "x-kubernetes-group-version-kind": [{"group": "", "kind": "Service", "version": "v1"}]
        },
        "io.k8s.api.core.v1.ServiceSpec": {
          "type": "object",
          "properties": {
            "ports": {
              "type": "array",
              "items": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ServicePort"}]},
              "x-kubernetes-list-map-keys": ["port", "protocol"], "x-kubernetes-list-type": "map",
              "x-kubernetes-patch-merge-key": "port", "x-kubernetes-patch-strategy": "merge"
            },
            "selector": {"type": "object", "additionalProperties": {"type": "string", "default": ""}, "x-kubernetes-map-type": "atomic"}
          }
        },
        "io.k8s.api.core.v1.ServicePort": {
          "type": "object",
          "properties": {
            "port": {"type": "integer", "format": "int32"},
            "targetPort": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.util.intstr.IntOrString"}]}
          }
        },
        "io.k8s.api.core.v1.PersistentVolume": {
          "type": "object",
          "properties": {
            "spec": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PersistentVolumeSpec"}]}
          },
          "x-kubernetes-group-version-kind": [{"group": "", "kind": "PersistentVolume", "version": "v1"}]
        },
        "io.k8s.api.core.v1.PersistentVolumeSpec": {
          "type": "object",
          "properties": {
            "claimRef": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ObjectReference"}], "x-kubernetes-map-type": "granular"},
            "extra": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ObjectReference"}]}
          }
        },
        "io.k8s.api.core.v1.ObjectReference": {
          "type": "object",
          "properties": {"name": {"type": "string"}},
          "x-kubernetes-map-type": "atomic"
        },
        "io.k8s.api.apps.v1.ControllerRevision": {
          "type": "object",
          "properties": {"data": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.runtime.RawExtension"}]}},
          "x-kubernetes-group-version-kind": [{"group": "apps", "kind": "ControllerRevision", "version": "v1"}]
        },
        "io.k8s.apimachinery.pkg.runtime.RawExtension": {"type": "object"},
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
          "format": "int-or-string",
          "oneOf": [{"type": "integer"}, {"type": "string"}]
        },
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {
          "type": "object",
          "properties": {"name": {"type": "string"}}
        }
      }}
    }"##;

    /// A CRD as kube-apiserver publishes it: inline schemas, `metadata` referring to
    /// ObjectMeta, CRD-style int-or-string, preserve-unknown-fields and an embedded resource
    /// (to which the server adds `apiVersion`, `kind` and `metadata`).
    const WIDGETS_V1: &str = r##"{
      "openapi": "3.0.0",
      "components": {"schemas": {
        "io.example.v1.Widget": {
          "type": "object",
          "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]},
            "spec": {
              "type": "object",
              "properties": {
                "patches": {"type": "array", "items": {"type": "object", "properties": {"patch": {"type": "string"}}}},
                "hosts": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                "rules": {"type": "array", "items": {"type": "object", "properties": {"host": {"type": "string"}, "port": {"type": "integer"}}},
                          "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["host", "port"]},
                "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-patch-strategy": "merge"},
                "byName": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}},
                           "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name"},
                "keyless": {"type": "array", "items": {"type": "object"}, "x-kubernetes-list-type": "map"},
                "retained": {"type": "array", "items": {"type": "string"}, "x-kubernetes-patch-strategy": "retainKeys"},
                "port": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": true},
                "values": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "anything": {"x-kubernetes-preserve-unknown-fields": true},
                "config": {
                  "type": "object",
                  "properties": {"known": {"type": "string"}, "nested": {"type": "object", "properties": {"a": {"type": "string"}}}},
                  "x-kubernetes-preserve-unknown-fields": true
                },
                "closed": {"type": "object", "properties": {"a": {"type": "string"}}},
                "noExtras": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false},
                "granular": {"type": "object", "additionalProperties": {"type": "string"}, "x-kubernetes-map-type": "granular"},
                "template": {
                  "type": "object",
                  "x-kubernetes-embedded-resource": true,
                  "x-kubernetes-preserve-unknown-fields": true,
                  "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]}
                  }
                }
              }
            }
          },
          "x-kubernetes-group-version-kind": [{"group": "example.io", "kind": "Widget", "version": "v1"}]
        },
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {
          "type": "object",
          "properties": {
            "finalizers": {"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "set", "x-kubernetes-patch-strategy": "merge"},
            "labels": {"type": "object", "additionalProperties": {"type": "string", "default": ""}}
          }
        },
        "loop.A": {"allOf": [{"$ref": "#/components/schemas/loop.B"}]},
        "loop.B": {"$ref": "#/components/schemas/loop.A"},
        "io.example.v1.Loop": {
          "type": "object",
          "properties": {"self": {"$ref": "#/components/schemas/loop.A"}, "dangling": {"$ref": "#/components/schemas/nowhere"}},
          "x-kubernetes-group-version-kind": [{"group": "example.io", "kind": "Loop", "version": "v1"}]
        }
      }}
    }"##;

    fn loaded() -> Schemas {
        let mut schemas = Schemas::new();
        schemas.add_document("apps/v1", APPS_V1).unwrap();
        schemas.add_document("v1", CORE_V1).unwrap();
        schemas.add_document("example.io/v1", WIDGETS_V1).unwrap();
        schemas
    }

    fn map(keys: &[&str]) -> Shape {
        Shape::List(ListKind::Map {
            keys: keys.iter().map(|k| k.to_string()).collect(),
        })
    }

    const DEPLOYMENT: (&str, &str, &str) = ("apps", "v1", "Deployment");
    const SERVICE: (&str, &str, &str) = ("", "v1", "Service");
    const WIDGET: (&str, &str, &str) = ("example.io", "v1", "Widget");

    #[test]
    fn built_in_fields_merge_as_server_side_apply_merges_them() {
        let s = loaded();
        let pod = "spec.template.spec";
        let cases = [
            (DEPLOYMENT, format!("{pod}.containers"), map(&["name"])),
            (
                DEPLOYMENT,
                format!("{pod}.containers[].ports"),
                map(&["containerPort", "protocol"]),
            ),
            (
                DEPLOYMENT,
                format!("{pod}.containers[].env"),
                map(&["name"]),
            ),
            (
                DEPLOYMENT,
                format!("{pod}.containers[].command"),
                Shape::List(ListKind::Atomic),
            ),
            (
                DEPLOYMENT,
                format!("{pod}.containers[]"),
                Shape::Object { atomic: false },
            ),
            (
                DEPLOYMENT,
                format!("{pod}.containers[].name"),
                Shape::Scalar,
            ),
            (
                DEPLOYMENT,
                format!("{pod}.containers[].resources.limits"),
                Shape::Object { atomic: false },
            ),
            (
                DEPLOYMENT,
                format!("{pod}.containers[].resources.limits.cpu"),
                Shape::Quantity,
            ),
            (
                DEPLOYMENT,
                format!("{pod}.containers[].resources.requests.memory"),
                Shape::Quantity,
            ),
            (
                DEPLOYMENT,
                format!("{pod}.imagePullSecrets"),
                map(&["name"]),
            ),
            (
                DEPLOYMENT,
                format!("{pod}.imagePullSecrets[]"),
                Shape::Object { atomic: true },
            ),
            (
                DEPLOYMENT,
                format!("{pod}.tolerations"),
                Shape::List(ListKind::Atomic),
            ),
            // merge,retainKeys with a key is a keyed list.
            (DEPLOYMENT, format!("{pod}.volumes"), map(&["name"])),
            (
                DEPLOYMENT,
                format!("{pod}.nodeSelector"),
                Shape::Object { atomic: true },
            ),
            (
                DEPLOYMENT,
                "spec.selector".to_owned(),
                Shape::Object { atomic: true },
            ),
            (
                DEPLOYMENT,
                "spec.selector.matchExpressions".to_owned(),
                Shape::List(ListKind::Atomic),
            ),
            (
                DEPLOYMENT,
                "spec.strategy.rollingUpdate.maxSurge".to_owned(),
                Shape::IntOrString,
            ),
            (DEPLOYMENT, "spec.replicas".to_owned(), Shape::Scalar),
            (
                DEPLOYMENT,
                "metadata.finalizers".to_owned(),
                Shape::List(ListKind::Set),
            ),
            (
                DEPLOYMENT,
                "metadata.labels".to_owned(),
                Shape::Object { atomic: false },
            ),
            (DEPLOYMENT, "metadata.labels.app".to_owned(), Shape::Scalar),
            (
                DEPLOYMENT,
                "metadata.ownerReferences".to_owned(),
                map(&["uid"]),
            ),
            (SERVICE, "spec.ports".to_owned(), map(&["port", "protocol"])),
            (
                SERVICE,
                "spec.ports[].targetPort".to_owned(),
                Shape::IntOrString,
            ),
            (
                SERVICE,
                "spec.selector".to_owned(),
                Shape::Object { atomic: true },
            ),
            // A field's x-kubernetes-map-type overrides the referred type's, both ways.
            (
                ("", "v1", "PersistentVolume"),
                "spec.claimRef".to_owned(),
                Shape::Object { atomic: false },
            ),
            (
                ("", "v1", "PersistentVolume"),
                "spec.extra".to_owned(),
                Shape::Object { atomic: true },
            ),
            (
                ("apps", "v1", "ControllerRevision"),
                "data".to_owned(),
                Shape::Object { atomic: true },
            ),
        ];
        for (kind, path, want) in cases {
            assert_eq!(shape(&s, kind, &path), want, "{} {path}", kind.2);
        }
    }

    #[test]
    fn crd_fields_merge_as_server_side_apply_merges_them() {
        let s = loaded();
        let cases = [
            ("spec.patches", Shape::List(ListKind::Atomic)),
            ("spec.patches[]", Shape::Object { atomic: false }),
            ("spec.hosts", Shape::List(ListKind::Set)),
            ("spec.rules", map(&["host", "port"])),
            // Strategic-merge extensions count when there is no list type: merged without a
            // key is a set, as in kube-openapi.
            ("spec.tags", Shape::List(ListKind::Set)),
            ("spec.byName", map(&["name"])),
            ("spec.keyless", Shape::List(ListKind::Atomic)),
            ("spec.retained", Shape::List(ListKind::Atomic)),
            ("spec.port", Shape::IntOrString),
            ("spec.values", Shape::Object { atomic: false }),
            ("spec.values.anything.deeper", Shape::Unknown),
            ("spec.anything", Shape::Unknown),
            ("spec.anything.a.b", Shape::Unknown),
            ("spec.anything.list[]", Shape::Unknown),
            ("spec.config.known", Shape::Scalar),
            ("spec.config.unknown", Shape::Unknown),
            // preserve-unknown-fields holds for the fields written inside.
            ("spec.config.nested.other", Shape::Unknown),
            ("spec.granular", Shape::Object { atomic: false }),
            ("spec.granular.k", Shape::Scalar),
            ("spec.template.spec.anything", Shape::Unknown),
            (
                "spec.template.metadata.labels",
                Shape::Object { atomic: false },
            ),
            ("metadata.finalizers", Shape::List(ListKind::Set)),
        ];
        for (path, want) in cases {
            assert_eq!(shape(&s, WIDGET, path), want, "Widget {path}");
        }
        let widget = s.kind("example.io", "v1", "Widget").unwrap();
        // Fields a closed schema does not declare do not exist, nor do fields of scalars.
        assert!(at(widget, "spec.closed.b").is_none());
        assert!(at(widget, "spec.noExtras.b").is_none());
        assert!(at(widget, "spec.port.x").is_none());
        assert!(at(widget, "spec.hosts.x").is_none());
        assert!(at(widget, "spec.config").unwrap().items().is_none());
        // A ref that leads back to itself, or nowhere, is unknown rather than a hang.
        assert_eq!(
            shape(&s, ("example.io", "v1", "Loop"), "self"),
            Shape::Unknown
        );
        assert_eq!(
            shape(&s, ("example.io", "v1", "Loop"), "dangling"),
            Shape::Unknown
        );
    }

    #[test]
    fn kinds_are_found_by_group_version_and_kind() {
        let s = loaded();
        assert!(s.kind("apps", "v1", "Deployment").is_some());
        assert!(s.kind("apps", "v1beta1", "Deployment").is_none());
        assert!(s.kind("", "v1", "Deployment").is_none());
        assert!(s.kind("", "v1", "Service").is_some());
        assert!(s.kind("example.io", "v1", "Nothing").is_none());
        // Declared with several group-versions in one document.
        assert!(s.kind("", "v1", "DeleteOptions").is_some());
        assert!(s.kind("apps", "v1", "DeleteOptions").is_some());
        assert_eq!(
            s.kind("apps", "v1", "Deployment").unwrap().shape(),
            Shape::Object { atomic: false }
        );
    }

    #[test]
    fn unreadable_documents_are_errors_and_empty_ones_declare_nothing() {
        let mut s = Schemas::new();
        let err = s.add_document("apps/v1", "{\"components\": ").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the OpenAPI v3 document of apps/v1 is not valid JSON"),
            "{err}"
        );
        assert!(matches!(
            s.add_document("apps/v1", "[]"),
            Err(SchemaError::Shape { .. })
        ));
        assert!(matches!(
            s.add_document("apps/v1", r#"{"components": {"schemas": []}}"#),
            Err(SchemaError::Shape { .. })
        ));
        s.add_document("apps/v1", r#"{"openapi": "3.0.0"}"#)
            .unwrap();
        assert!(s.kind("apps", "v1", "Deployment").is_none());
        // A later document of the same group-version replaces the earlier one.
        s.add_document("apps/v1", APPS_V1).unwrap();
        assert!(s.kind("apps", "v1", "Deployment").is_some());
        s.add_document("apps/v1", r#"{}"#).unwrap();
        assert!(s.kind("apps", "v1", "Deployment").is_none());
    }

    #[test]
    fn list_kinds_follow_kube_openapi() {
        let cases = [
            (
                r#"{"x-kubernetes-list-type": "atomic", "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name"}"#,
                ListKind::Atomic,
            ),
            (r#"{"x-kubernetes-list-type": "set"}"#, ListKind::Set),
            (
                r#"{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["a", "b"]}"#,
                ListKind::Map {
                    keys: vec!["a".into(), "b".into()],
                },
            ),
            (r#"{"x-kubernetes-list-type": "map"}"#, ListKind::Atomic),
            (
                r#"{"x-kubernetes-list-type": "bogus", "x-kubernetes-patch-strategy": "merge"}"#,
                ListKind::Atomic,
            ),
            (
                r#"{"x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "k"}"#,
                ListKind::Map {
                    keys: vec!["k".into()],
                },
            ),
            (
                r#"{"x-kubernetes-patch-strategy": "merge,retainKeys", "x-kubernetes-patch-merge-key": "k"}"#,
                ListKind::Map {
                    keys: vec!["k".into()],
                },
            ),
            (r#"{"x-kubernetes-patch-strategy": "merge"}"#, ListKind::Set),
            (
                r#"{"x-kubernetes-patch-strategy": "retainKeys", "x-kubernetes-patch-merge-key": "k"}"#,
                ListKind::Atomic,
            ),
            (
                r#"{"x-kubernetes-patch-strategy": "replace"}"#,
                ListKind::Atomic,
            ),
            (r#"{}"#, ListKind::Atomic),
        ];
        for (extensions, want) in cases {
            let schema: Map<String, Value> = serde_json::from_str(extensions).unwrap();
            assert_eq!(list_kind(&schema), want, "{extensions}");
        }
    }
}
