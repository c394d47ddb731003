//! The identity of a Kubernetes object (group, kind, namespace, name), shared by live objects
//! and desired documents so that the two can be matched.

use std::fmt;

use serde::Serialize;

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
}
