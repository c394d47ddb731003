//! The identity of a Kubernetes object (group, kind, namespace, name), shared by live objects
//! and desired documents so that the two can be matched.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::Serialize;
use serde_json::Value;

/// Group, kind, namespace and name: what makes an object the same object in Git and cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectKey {
    /// Empty for the core group.
    pub group: String,
    pub kind: String,
    /// None for cluster-scoped objects, and for documents that do not say.
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    /// Reads the key of an object or a manifest; None when it has no kind or name.
    pub fn of(object: &serde_json::Value) -> Option<ObjectKey> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let group = api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or_default();
        Some(ObjectKey {
            group: group.to_owned(),
            kind: object["kind"]
                .as_str()
                .filter(|k| !k.is_empty())?
                .to_owned(),
            namespace: object["metadata"]["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
            name: object["metadata"]["name"]
                .as_str()
                .filter(|n| !n.is_empty())?
                .to_owned(),
        })
    }

    /// Whether a desired document declares this live object. A document without a namespace
    /// matches a live object in any namespace (the namespace comes from the apply).
    pub fn declared_by(&self, desired: &ObjectKey) -> bool {
        self.group == desired.group
            && self.kind == desired.kind
            && self.name == desired.name
            && (desired.namespace.is_none() || desired.namespace == self.namespace)
    }
}

/// Whether a document is a list of objects, as `kubectl apply` reads one: `kind: List` or any
/// `*List` kind (`ConfigMapList`) with an `items` array. Its items are the objects; the List's
/// own metadata is a ListMeta, which takes no labels or annotations.
pub fn is_list(document: &Value) -> bool {
    document["kind"]
        .as_str()
        .is_some_and(|kind| kind.ends_with("List"))
        && document["items"].is_array()
}

/// The objects of a List document, each with the `apiVersion` and `kind` a typed List implies
/// when the item leaves them out (`ConfigMapList` → `v1` `ConfigMap`), as the API server
/// serves them.
pub fn list_items(document: &Value) -> Vec<Value> {
    let api_version = document["apiVersion"].clone();
    let kind = document["kind"]
        .as_str()
        .and_then(|k| k.strip_suffix("List"))
        .filter(|k| !k.is_empty())
        .map(|k| Value::String(k.to_owned()));
    document["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            let mut item = item.clone();
            if let Some(map) = item.as_object_mut() {
                if !map.contains_key("apiVersion") && api_version.is_string() {
                    map.insert("apiVersion".into(), api_version.clone());
                }
                if let Some(kind) = &kind
                    && !map.contains_key("kind")
                {
                    map.insert("kind".into(), kind.clone());
                }
            }
            item
        })
        .collect()
}

impl fmt::Display for ObjectKey {
    /// `Deployment.apps web/frontend`, kubectl-style.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        };
        match &self.namespace {
            Some(ns) => write!(f, "{kind} {ns}/{}", self.name),
            None => write!(f, "{kind} {}", self.name),
        }
    }
}

/// A digest of the live object without what never changes a verdict: `status`, the
/// resourceVersion, and the managedFields entries of the status subresource.
pub fn content_digest(live: &serde_json::Value) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    if let Value::Object(map) = live {
        for (k, v) in map {
            if k == "status" {
                continue;
            }
            k.hash(&mut hasher);
            if k == "metadata"
                && let Value::Object(meta) = v
            {
                for (mk, mv) in meta {
                    if mk == "resourceVersion" {
                        continue;
                    }
                    mk.hash(&mut hasher);
                    if mk == "managedFields"
                        && let Value::Array(entries) = mv
                    {
                        for e in entries.iter().filter(|e| e["subresource"] != "status") {
                            hash_value(e, &mut hasher);
                        }
                    } else {
                        hash_value(mv, &mut hasher);
                    }
                }
            } else {
                hash_value(v, &mut hasher);
            }
        }
    }
    hasher.finish()
}

/// Feeds a JSON value to a hasher, numbers by their text.
pub fn hash_value(value: &Value, hasher: &mut impl Hasher) {
    match value {
        Value::Null => 0u8.hash(hasher),
        Value::Bool(b) => (1u8, b).hash(hasher),
        Value::Number(n) => (2u8, n.to_string()).hash(hasher),
        Value::String(s) => (3u8, s).hash(hasher),
        Value::Array(items) => {
            (4u8, items.len()).hash(hasher);
            for i in items {
                hash_value(i, hasher);
            }
        }
        Value::Object(map) => {
            (5u8, map.len()).hash(hasher);
            for (k, v) in map {
                k.hash(hasher);
                hash_value(v, hasher);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_of_objects() {
        let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                            "metadata": {"name": "web", "namespace": "shop"}});
        let key = ObjectKey::of(&deploy).unwrap();
        assert_eq!(key.group, "apps");
        assert_eq!(key.to_string(), "Deployment.apps shop/web");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let desired = ObjectKey::of(&cm).unwrap();
        assert_eq!(desired.group, "");
        let live = ObjectKey {
            namespace: Some("any".into()),
            ..desired.clone()
        };
        assert!(live.declared_by(&desired));
        assert!(ObjectKey::of(&json!({"kind": "ConfigMap"})).is_none());
    }

    #[test]
    fn status_and_bookkeeping_do_not_change_the_content() {
        let live = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "resourceVersion": "1", "managedFields": [
                {"manager": "kustomize-controller", "operation": "Apply", "time": "t1"},
                {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "time": "t1"}
            ]},
            "spec": {"replicas": 2},
            "status": {"replicas": 0}
        });
        let mut touched = live.clone();
        touched["metadata"]["resourceVersion"] = json!("2");
        touched["status"]["replicas"] = json!(2);
        touched["metadata"]["managedFields"][1]["time"] = json!("t2");
        assert_eq!(content_digest(&live), content_digest(&touched));
        let mut scaled = touched.clone();
        scaled["spec"]["replicas"] = json!(5);
        assert_ne!(content_digest(&live), content_digest(&scaled));
        let mut relabelled = live.clone();
        relabelled["metadata"]["labels"] = json!({"team": "x"});
        assert_ne!(content_digest(&live), content_digest(&relabelled));
    }
}
