//! Which resources the server serves, and what a TYPE typed by the user means: `deploy`,
//! `deployment`, `deployments.apps`, `Deployment.v1.apps`, as kubectl accepts them.
//!
//! Read with aggregated discovery (one request for `/api`, one for `/apis`), in the server's
//! order of preference, which is also how ambiguous names are settled (as kubectl does).

use serde::{Deserialize, Serialize};

/// One served resource at its preferred version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// Empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Plural, as in URLs: `deployments`.
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl Resource {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, or `configmaps` for the core group: kubectl's name for the type.
    pub fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The URL path of the collection, in `namespace` when namespaced.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!("{base}/namespaces/{ns}/{}", self.plural),
            None => format!("{base}/{}", self.plural),
        }
    }
}

/// Every resource the server serves, preferred versions first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Discovery {
    pub resources: Vec<Resource>,
}

/// A TYPE that matches nothing the server serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server doesn't have a resource type \"{0}\"")]
pub struct UnknownType(pub String);

impl Discovery {
    /// Reads aggregated discovery documents (`/api`, then `/apis`).
    pub fn from_aggregated(documents: &[&str]) -> Result<Discovery, serde_json::Error> {
        let mut resources = Vec::new();
        for doc in documents {
            let list: GroupDiscoveryList = serde_json::from_str(doc)?;
            for group in list.items {
                // Versions are listed in order of preference; a resource is taken at the first
                // version that serves it.
                for version in &group.versions {
                    for r in &version.resources {
                        if resources.iter().any(|x: &Resource| {
                            x.group == group.metadata.name && x.plural == r.resource
                        }) {
                            continue;
                        }
                        let kind = r
                            .response_kind
                            .as_ref()
                            .map(|k| k.kind.clone())
                            .unwrap_or_default();
                        resources.push(Resource {
                            group: group.metadata.name.clone(),
                            version: version.version.clone(),
                            singular: if r.singular_resource.is_empty() {
                                kind.to_lowercase()
                            } else {
                                r.singular_resource.clone()
                            },
                            kind,
                            plural: r.resource.clone(),
                            short_names: r.short_names.clone(),
                            namespaced: r.scope == "Namespaced",
                            verbs: r.verbs.clone(),
                        });
                    }
                }
            }
        }
        Ok(Discovery { resources })
    }

    /// Resolves a TYPE as kubectl does: `NAME[.VERSION][.GROUP]`, where NAME is a plural,
    /// singular, kind or short name, in any case.
    pub fn resolve(&self, text: &str) -> Result<&Resource, UnknownType> {
        let unknown = || UnknownType(text.to_owned());
        let (name, qualifier) = match text.split_once('.') {
            Some((n, q)) => (n, Some(q)),
            None => (text, None),
        };
        let name = name.to_lowercase();
        let named = |r: &&Resource| {
            r.plural == name
                || r.singular == name
                || r.kind.to_lowercase() == name
                || r.short_names.iter().any(|s| s.to_lowercase() == name)
        };
        let found = match qualifier {
            None => self.resources.iter().find(named),
            Some(q) => {
                let q = q.to_lowercase();
                // `deployments.apps` (group) first, then `Deployment.v1.apps` (version.group).
                self.resources
                    .iter()
                    .filter(named)
                    .find(|r| r.group == q)
                    .or_else(|| {
                        self.resources.iter().filter(named).find(|r| {
                            let (v, g) = q.split_once('.').unwrap_or((q.as_str(), ""));
                            r.version == v && r.group == g
                        })
                    })
            }
        };
        found.ok_or_else(unknown)
    }

    /// The resource serving `kind` in `api_version` (`apps/v1`, `v1`), at any version of that
    /// group when the exact one is not preferred.
    pub fn for_kind(&self, api_version: &str, kind: &str) -> Option<&Resource> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let mut in_group = self
            .resources
            .iter()
            .filter(|r| r.group == group && r.kind == kind);
        let first = in_group.next()?;
        Some(
            std::iter::once(first)
                .chain(in_group)
                .find(|r| r.version == version)
                .unwrap_or(first),
        )
    }
}

/// `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`, as kubectl asks.
pub const AGGREGATED_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

#[derive(Deserialize)]
struct GroupDiscoveryList {
    #[serde(default)]
    items: Vec<GroupDiscovery>,
}

#[derive(Deserialize)]
struct GroupDiscovery {
    #[serde(default)]
    metadata: GroupMeta,
    #[serde(default)]
    versions: Vec<VersionDiscovery>,
}

#[derive(Default, Deserialize)]
struct GroupMeta {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct VersionDiscovery {
    version: String,
    #[serde(default)]
    resources: Vec<ResourceDiscovery>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceDiscovery {
    resource: String,
    #[serde(default)]
    response_kind: Option<GroupVersionKind>,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    singular_resource: String,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    short_names: Vec<String>,
}

#[derive(Deserialize)]
struct GroupVersionKind {
    #[serde(default)]
    kind: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORE: &str = r#"{"kind":"APIGroupDiscoveryList","items":[{"metadata":{},"versions":[{"version":"v1","resources":[
        {"resource":"configmaps","responseKind":{"group":"","version":"v1","kind":"ConfigMap"},"scope":"Namespaced","singularResource":"configmap","verbs":["get","list"],"shortNames":["cm"]},
        {"resource":"events","responseKind":{"group":"","version":"v1","kind":"Event"},"scope":"Namespaced","singularResource":"event","verbs":["get"],"shortNames":["ev"]},
        {"resource":"namespaces","responseKind":{"group":"","version":"v1","kind":"Namespace"},"scope":"Cluster","singularResource":"namespace","verbs":["get"],"shortNames":["ns"]}]}]}]}"#;
    const APIS: &str = r#"{"kind":"APIGroupDiscoveryList","items":[
        {"metadata":{"name":"apps"},"versions":[{"version":"v1","resources":[
          {"resource":"deployments","responseKind":{"group":"apps","version":"v1","kind":"Deployment"},"scope":"Namespaced","singularResource":"deployment","verbs":["get","patch"],"shortNames":["deploy"]}]}]},
        {"metadata":{"name":"events.k8s.io"},"versions":[{"version":"v1","resources":[
          {"resource":"events","responseKind":{"group":"events.k8s.io","version":"v1","kind":"Event"},"scope":"Namespaced","singularResource":"event","verbs":["get"],"shortNames":["ev"]}]}]},
        {"metadata":{"name":"kustomize.toolkit.fluxcd.io"},"versions":[
          {"version":"v1","resources":[{"resource":"kustomizations","responseKind":{"group":"kustomize.toolkit.fluxcd.io","version":"v1","kind":"Kustomization"},"scope":"Namespaced","singularResource":"kustomization","verbs":["get"],"shortNames":["ks"]}]},
          {"version":"v1beta2","resources":[{"resource":"kustomizations","responseKind":{"group":"kustomize.toolkit.fluxcd.io","version":"v1beta2","kind":"Kustomization"},"scope":"Namespaced","singularResource":"kustomization","verbs":["get"]}]}]}]}"#;

    fn discovery() -> Discovery {
        Discovery::from_aggregated(&[CORE, APIS]).unwrap()
    }

    #[test]
    fn types_resolve_as_kubectl_resolves_them() {
        let d = discovery();
        let cases = [
            ("deploy", "deployments.apps"),
            ("deployment", "deployments.apps"),
            ("deployments", "deployments.apps"),
            ("Deployment", "deployments.apps"),
            ("deployments.apps", "deployments.apps"),
            ("Deployment.v1.apps", "deployments.apps"),
            ("cm", "configmaps"),
            ("ns", "namespaces"),
            // Ambiguous: the core group comes first, as in kubectl.
            ("events", "events"),
            ("events.events.k8s.io", "events.events.k8s.io"),
            ("ks", "kustomizations.kustomize.toolkit.fluxcd.io"),
        ];
        for (typed, want) in cases {
            let got = d.resolve(typed).map(|r| r.qualified_name());
            assert_eq!(got.as_deref(), Ok(want), "{typed}");
        }
        assert_eq!(
            d.resolve("Deployment.v2.apps").unwrap_err().to_string(),
            "the server doesn't have a resource type \"Deployment.v2.apps\""
        );
        assert!(d.resolve("widgets").is_err());
    }

    #[test]
    fn preferred_version_wins_and_paths_follow_scope() {
        let d = discovery();
        let ks = d.resolve("kustomization").unwrap();
        assert_eq!(ks.version, "v1");
        assert_eq!(
            ks.collection_path(Some("flux-system")),
            "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations"
        );
        let ns = d.resolve("namespace").unwrap();
        assert_eq!(ns.collection_path(Some("x")), "/api/v1/namespaces");
        assert_eq!(
            d.for_kind("apps/v1", "Deployment").unwrap().plural,
            "deployments"
        );
        assert_eq!(
            d.for_kind("kustomize.toolkit.fluxcd.io/v1beta2", "Kustomization")
                .unwrap()
                .version,
            "v1"
        );
    }
}
