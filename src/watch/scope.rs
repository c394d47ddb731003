//! Which live objects the command line puts in scope, once the first evaluation is done.

use std::collections::{HashMap, HashSet};

use crate::cluster::LiveObject;
use crate::cluster::discovery::{Discovery, Resource};

/// Which live objects the command line puts in scope, beyond what the first evaluation found.
pub(super) struct ScopeFilter {
    /// No TYPE named: only objects with a source marker count.
    explicit: bool,
    /// Per qualified kind named: `None` for every object of it, else the names.
    kinds: HashMap<String, Option<HashSet<String>>>,
}

impl ScopeFilter {
    pub(super) fn new(discovery: &Discovery, objects: &[String]) -> ScopeFilter {
        let mut kinds: HashMap<String, Option<HashSet<String>>> = HashMap::new();
        for arg in objects {
            let (type_text, name) = match arg.split_once('/') {
                Some((t, n)) => (t, Some(n.to_owned())),
                None => (arg.as_str(), None),
            };
            // An unknown TYPE is said by the evaluation.
            let Ok(resource) = discovery.resolve(type_text) else {
                continue;
            };
            let entry = kinds
                .entry(resource.qualified_name())
                .or_insert_with(|| Some(HashSet::new()));
            match (entry.as_mut(), name) {
                (Some(names), Some(name)) => {
                    names.insert(name);
                }
                (_, None) => *entry = None,
                (None, Some(_)) => {}
            }
        }
        ScopeFilter {
            explicit: !objects.is_empty(),
            kinds,
        }
    }

    /// Whether a live object of `resource` is evaluated when it changes.
    pub(super) fn wants(&self, resource: &Resource, live: &LiveObject) -> bool {
        if !self.explicit {
            return crate::source::has_marker(live);
        }
        match self.kinds.get(&resource.qualified_name()) {
            Some(None) => true,
            Some(Some(names)) => live["metadata"]["name"]
                .as_str()
                .is_some_and(|n| names.contains(n)),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn the_scope_takes_types_names_or_markers() {
        let resource = |group: &str, kind: &str, plural: &str, short: &str| Resource {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            short_names: vec![short.into()],
            namespaced: true,
            verbs: vec!["list".into(), "watch".into()],
        };
        let deployments = resource("apps", "Deployment", "deployments", "deploy");
        let configmaps = resource("", "ConfigMap", "configmaps", "cm");
        let services = resource("", "Service", "services", "svc");
        let discovery = Discovery {
            resources: vec![deployments.clone(), configmaps.clone(), services.clone()],
        };
        let object =
            |name: &str, labels: Value| json!({"metadata": {"name": name, "labels": labels}});
        let plain = |name: &str| object(name, json!({}));

        let named = ScopeFilter::new(
            &discovery,
            &["deploy".into(), "cm/settings".into(), "cm/other".into()],
        );
        assert!(named.wants(&deployments, &plain("any")));
        assert!(named.wants(&configmaps, &plain("settings")));
        assert!(!named.wants(&configmaps, &plain("unnamed")));
        assert!(!named.wants(&services, &plain("web")));
        let both = ScopeFilter::new(&discovery, &["cm/settings".into(), "configmaps".into()]);
        assert!(
            both.wants(&configmaps, &plain("unnamed")),
            "TYPE alone widens TYPE/NAME"
        );

        let default = ScopeFilter::new(&discovery, &[]);
        assert!(!default.wants(&services, &plain("web")));
        let flux = object(
            "web",
            json!({"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux"}),
        );
        assert!(default.wants(&services, &flux), "a source marker");
    }
}
