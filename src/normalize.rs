//! What `diff` never counts as drift, and why, in one list; and the users' own ignore rules
//! (`--ignore`, and `ignore:` in `.kubectl-gitops.yaml`), which are counted, never dropped.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fields::path::escape;
use crate::object::ObjectKey;

/// A field that is never drift, with the reason shown by `--show-ignored`.
pub struct Always {
    /// JSON pointer; a trailing `/*` means every key below.
    pub pointer: &'static str,
    pub reason: &'static str,
}

/// The always-ignored fields (DESIGN.md, diff).
pub const ALWAYS: &[Always] = &[
    Always {
        pointer: "/status",
        reason: "written by controllers, not by Git",
    },
    Always {
        pointer: "/metadata/managedFields",
        reason: "server bookkeeping",
    },
    Always {
        pointer: "/metadata/resourceVersion",
        reason: "server bookkeeping",
    },
    Always {
        pointer: "/metadata/uid",
        reason: "server bookkeeping",
    },
    Always {
        pointer: "/metadata/generation",
        reason: "server bookkeeping",
    },
    Always {
        pointer: "/metadata/creationTimestamp",
        reason: "server bookkeeping",
    },
    Always {
        pointer: "/metadata/selfLink",
        reason: "server bookkeeping",
    },
    Always {
        pointer: "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
        reason: "kubectl's client-side apply record",
    },
    Always {
        pointer: "/metadata/annotations/kubectl-gitops.dev~1repo",
        reason: "our own annotation",
    },
    Always {
        pointer: "/metadata/annotations/kubectl-gitops.dev~1path",
        reason: "our own annotation",
    },
    Always {
        pointer: "/metadata/annotations/kubectl-gitops.dev~1commit",
        reason: "our own annotation",
    },
    Always {
        pointer: "/metadata/annotations/config.kubernetes.io~1origin",
        reason: "kustomize build metadata",
    },
    Always {
        pointer: "/metadata/labels/kustomize.toolkit.fluxcd.io~1name",
        reason: "Flux bookkeeping",
    },
    Always {
        pointer: "/metadata/labels/kustomize.toolkit.fluxcd.io~1namespace",
        reason: "Flux bookkeeping",
    },
    Always {
        pointer: "/metadata/annotations/kustomize.toolkit.fluxcd.io~1*",
        reason: "Flux bookkeeping",
    },
    Always {
        pointer: "/metadata/annotations/reconcile.fluxcd.io~1*",
        reason: "a request to a Flux controller (flux reconcile)",
    },
    Always {
        pointer: "/metadata/labels/helm.toolkit.fluxcd.io~1name",
        reason: "Flux helm-controller bookkeeping",
    },
    Always {
        pointer: "/metadata/labels/helm.toolkit.fluxcd.io~1namespace",
        reason: "Flux helm-controller bookkeeping",
    },
    Always {
        pointer: "/metadata/annotations/meta.helm.sh~1*",
        reason: "Helm bookkeeping",
    },
    Always {
        pointer: "/metadata/annotations/argocd.argoproj.io~1tracking-id",
        reason: "Argo CD bookkeeping",
    },
    Always {
        pointer: "/metadata/annotations/argocd.argoproj.io~1*",
        reason: "Argo CD bookkeeping",
    },
    Always {
        pointer: "/metadata/annotations/deployment.kubernetes.io~1revision",
        reason: "Deployment controller bookkeeping",
    },
];

/// Managers that are part of the cluster itself: what they own is never "changed out of band"
/// (defaults, allocations, controllers' own fields). The reconciler is added per object.
pub const SYSTEM_MANAGERS: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "before-first-apply",
];

/// Flux's controllers and the API group of the objects that are their own: the fields they
/// write there (a finalizer, bookkeeping) are never out of band, whoever applied the object.
pub const OWN_OBJECT_MANAGERS: &[(&str, &str)] = &[
    ("helm-controller", "helm.toolkit.fluxcd.io"),
    ("kustomize-controller", "kustomize.toolkit.fluxcd.io"),
    ("source-controller", "source.toolkit.fluxcd.io"),
];

/// Whether `manager` is the controller of objects of `api_version` ([`OWN_OBJECT_MANAGERS`]).
pub fn controls_own_object(manager: &str, api_version: &str) -> bool {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    OWN_OBJECT_MANAGERS
        .iter()
        .any(|(m, g)| *m == manager && *g == group)
}

/// Reconcilers' managers that write with client-side `Update`s, not server-side `Apply`:
/// what they own is theirs whatever the operation (kubectl's client-side apply, Helm through
/// helm-controller).
pub const UPDATE_APPLIERS: &[&str] = &["kubectl-client-side-apply", "helm-controller"];

/// Whether a managedFields entry of `manager` with `operation` is a reconciler's apply, given
/// the reconciler's managers.
pub fn applied_by_reconciler(manager: &str, operation: &str, reconciler: &[String]) -> bool {
    reconciler.iter().any(|m| m == manager)
        && (operation == "Apply" || UPDATE_APPLIERS.contains(&manager))
}

/// Whether `pointer` (RFC 6901, into the object) is always ignored; the reason if so.
pub fn always_ignored(pointer: &str) -> Option<&'static str> {
    ALWAYS.iter().find_map(|rule| {
        let hit = match rule.pointer.strip_suffix('*') {
            Some(prefix) => pointer.starts_with(prefix),
            None => pointer == rule.pointer || pointer.starts_with(&format!("{}/", rule.pointer)),
        };
        hit.then_some(rule.reason)
    })
}

/// Removes every field whose value is null, at any depth (list items stay): a Helm chart
/// renders `key:` with no value for a value left unset, and helm's three-way merge patch
/// deletes such a field, where a server-side apply would store an empty string.
pub fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Removes the always-ignored fields (and the maps they leave empty) from an object.
pub fn strip(object: &mut Value) {
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for key in [
        "managedFields",
        "resourceVersion",
        "uid",
        "generation",
        "creationTimestamp",
        "selfLink",
    ] {
        metadata.remove(key);
    }
    for section in ["annotations", "labels"] {
        let Some(map) = metadata.get_mut(section).and_then(Value::as_object_mut) else {
            continue;
        };
        map.retain(|key, _| {
            let pointer = format!("/metadata/{section}/{}", escape(key));
            always_ignored(&pointer).is_none()
        });
        if map.is_empty() {
            metadata.remove(section);
        }
    }
}

/// A user's ignore rule, as Argo CD's `ignoreDifferences`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IgnoreRule {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub json_pointers: Vec<String>,
    /// Every field these managers own.
    #[serde(default)]
    pub managers: Vec<String>,
}

/// `.kubectl-gitops.yaml` at the repository root.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    #[serde(default)]
    pub ignore: Vec<IgnoreRule>,
}

impl IgnoreRule {
    /// Parses `--ignore`: `KIND[.GROUP][/NAME]:POINTER` (e.g. `Deployment:/spec/replicas`) or
    /// `manager=NAME`.
    pub fn parse_flag(text: &str) -> Result<IgnoreRule, String> {
        if let Some(manager) = text.strip_prefix("manager=") {
            if manager.is_empty() {
                return Err("--ignore manager= needs a manager name".into());
            }
            return Ok(IgnoreRule {
                managers: vec![manager.to_owned()],
                ..IgnoreRule::default()
            });
        }
        let (target, pointer) = text.split_once(":/").ok_or_else(|| {
            format!("--ignore '{text}': use KIND[.GROUP][/NAME]:/json/pointer or manager=NAME")
        })?;
        let (kind_group, name) = match target.split_once('/') {
            Some((k, n)) => (k, Some(n.to_owned())),
            None => (target, None),
        };
        let (kind, group) = match kind_group.split_once('.') {
            Some((k, g)) => (k, Some(g.to_owned())),
            None => (kind_group, None),
        };
        let kind = (kind != "*" && !kind.is_empty()).then(|| kind.to_owned());
        Ok(IgnoreRule {
            group,
            kind,
            name,
            json_pointers: vec![format!("/{pointer}")],
            ..IgnoreRule::default()
        })
    }

    fn applies_to(&self, key: &ObjectKey) -> bool {
        let eq = |rule: &Option<String>, value: &str| rule.as_deref().is_none_or(|r| r == value);
        eq(&self.group, &key.group)
            && self
                .kind
                .as_deref()
                .is_none_or(|k| k.eq_ignore_ascii_case(&key.kind))
            && eq(&self.name, &key.name)
            && eq(
                &self.namespace,
                key.namespace.as_deref().unwrap_or_default(),
            )
    }

    /// Whether a drifted field at `pointer`, owned by `managers`, falls under this rule.
    pub fn matches(&self, key: &ObjectKey, pointer: &str, managers: &[&str]) -> bool {
        if !self.applies_to(key) {
            return false;
        }
        let by_pointer = self
            .json_pointers
            .iter()
            .any(|p| pointer == p || pointer.starts_with(&format!("{}/", p.trim_end_matches('/'))));
        let by_manager = !managers.is_empty()
            && managers
                .iter()
                .all(|m| self.managers.iter().any(|r| r == m));
        by_pointer || by_manager
    }

    /// A short description for reports.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(k) = &self.kind {
            parts.push(match &self.group {
                Some(g) => format!("{k}.{g}"),
                None => k.clone(),
            });
        }
        if let Some(n) = &self.name {
            parts.push(n.clone());
        }
        parts.extend(self.json_pointers.iter().cloned());
        parts.extend(self.managers.iter().map(|m| format!("manager={m}")));
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_are_dropped_at_any_depth() {
        let mut object = serde_json::json!({
            "data": {"greeting": null, "kept": ""},
            "spec": {"items": [{"a": null, "b": 1}, null]},
        });
        drop_nulls(&mut object);
        assert_eq!(
            object,
            serde_json::json!({"data": {"kept": ""}, "spec": {"items": [{"b": 1}, null]}})
        );
    }
    use serde_json::json;

    #[test]
    fn whose_writes_are_the_reconcilers_and_the_controllers_own() {
        let helm = ["helm-controller".to_owned()];
        let flux = ["kustomize-controller".to_owned()];
        for (manager, operation, reconciler, expected) in [
            ("helm-controller", "Update", &helm, true),
            ("helm-controller", "Apply", &helm, true),
            ("kustomize-controller", "Apply", &flux, true),
            // kustomize-controller applies server-side: an Update of its name is not an apply.
            ("kustomize-controller", "Update", &flux, false),
            ("kubectl-edit", "Update", &helm, false),
            ("helm-controller", "Update", &flux, false),
        ] {
            assert_eq!(
                applied_by_reconciler(manager, operation, reconciler),
                expected,
                "{manager} {operation} {reconciler:?}"
            );
        }
        assert!(controls_own_object(
            "helm-controller",
            "helm.toolkit.fluxcd.io/v2"
        ));
        assert!(!controls_own_object("helm-controller", "apps/v1"));
        assert!(!controls_own_object("kubectl", "helm.toolkit.fluxcd.io/v2"));
        assert!(always_ignored("/metadata/annotations/reconcile.fluxcd.io~1requestedAt").is_some());
        assert!(always_ignored("/metadata/annotations/meta.helm.sh~1release-name").is_some());
        assert!(always_ignored("/metadata/labels/app.kubernetes.io~1managed-by").is_none());
    }

    #[test]
    fn always_ignored_fields() {
        for pointer in [
            "/status",
            "/status/replicas",
            "/metadata/managedFields/0",
            "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
            "/metadata/annotations/kustomize.toolkit.fluxcd.io~1checksum",
        ] {
            assert!(always_ignored(pointer).is_some(), "{pointer}");
        }
        for pointer in ["/spec/replicas", "/metadata/labels/app", "/statusx"] {
            assert!(always_ignored(pointer).is_none(), "{pointer}");
        }
    }

    #[test]
    fn strip_removes_bookkeeping_only() {
        let mut object = json!({
            "metadata": {"name": "a", "uid": "u", "resourceVersion": "1", "managedFields": [],
                         "labels": {"app": "a", "kustomize.toolkit.fluxcd.io/name": "apps"},
                         "annotations": {"kubectl-gitops.dev/repo": "x"}},
            "spec": {"replicas": 1}, "status": {"ready": 1}});
        strip(&mut object);
        assert_eq!(
            object,
            json!({"metadata": {"name": "a", "labels": {"app": "a"}}, "spec": {"replicas": 1}})
        );
    }

    #[test]
    fn ignore_flags() {
        let key = ObjectKey {
            group: "apps".into(),
            kind: "Deployment".into(),
            namespace: Some("shop".into()),
            name: "web".into(),
        };
        let rule = IgnoreRule::parse_flag("Deployment:/spec/replicas").unwrap();
        assert!(rule.matches(&key, "/spec/replicas", &[]));
        assert!(!rule.matches(&key, "/spec/template", &[]));
        let rule = IgnoreRule::parse_flag("Deployment.apps/other:/spec/replicas").unwrap();
        assert!(!rule.matches(&key, "/spec/replicas", &[]));
        let rule = IgnoreRule::parse_flag("manager=kube-controller-manager").unwrap();
        assert!(rule.matches(&key, "/spec/replicas", &["kube-controller-manager"]));
        assert!(!rule.matches(&key, "/spec/replicas", &["kubectl-edit"]));
        assert!(IgnoreRule::parse_flag("Deployment").is_err());
    }

    #[test]
    fn repo_config_reads_argo_style_rules() {
        let config: RepoConfig = serde_saphyr::from_str(
            "ignore:\n  - kind: Deployment\n    group: apps\n    jsonPointers: [/spec/replicas]\n  - managers: [kube-controller-manager]\n",
        )
        .unwrap();
        assert_eq!(config.ignore.len(), 2);
        assert_eq!(config.ignore[0].json_pointers, ["/spec/replicas"]);
    }
}
