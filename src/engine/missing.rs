//! The candidates for *missing*: what Git declares next to the objects found (same file, or
//! same render root) that the cluster does not have, ready to be created again with the source
//! markers of their siblings.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use super::{MissingObject, Work, set_namespace};
use crate::cluster::cache::CachedDiscovery;
use crate::drift::{ObjectReport, SourceSummary, Status, Verdict};
use crate::object::ObjectKey;
use crate::source::{self, Locator, SourceError};

/// What Git declares next to the objects found (same file, or same render root): the
/// candidates for *missing*. Each source is listed once, when its first object is seen; the
/// documents stay shared with the locator's cache until one turns out to be missing.
#[derive(Default)]
pub(super) struct Declared {
    sources_seen: BTreeSet<(String, String, String)>,
    candidates: Vec<Candidate>,
    /// How many objects were noted.
    noted: usize,
}

/// One object a source declares, and how it would be created again.
struct Candidate {
    key: ObjectKey,
    report: ObjectReport,
    namespaced: bool,
    doc: usize,
    source: Arc<SourceContext>,
    /// Which noted object's source declares it (0: the first noted).
    noted_by: usize,
}

/// A source (file or render root) as its first object found it.
struct SourceContext {
    docs: Arc<Vec<crate::render::Document>>,
    /// The labels and annotations of that object: the markers a re-created sibling carries.
    sibling: Value,
    rule: source::Rule,
    manager: String,
    reconciler: Option<source::Reconciler>,
    /// The values from Secrets its reconciler renders into it (never shown).
    secrets: Vec<String>,
}

impl Declared {
    pub(super) async fn note(
        &mut self,
        locator: &Locator,
        discovery: &CachedDiscovery,
        w: &Work,
    ) -> Result<(), SourceError> {
        let noted_by = self.noted;
        self.noted += 1;
        // A render root is listed once for all its files; a plain file once.
        let rendered = matches!(
            w.located.rule,
            source::Rule::Flux | source::Rule::ArgoCd | source::Rule::Helm
        );
        let file = if rendered {
            String::new()
        } else {
            w.located.file.clone()
        };
        // A multi-source Application: its sources are listed together, once.
        let root = match (&w.pointer, &w.located.reconciler) {
            (Some(p), Some(r)) if !p.more_sources.is_empty() => r.display(),
            // A chart (from a chart repository, or a path in Git): two Applications may
            // install the same one, each with its own release and values.
            (Some(p), Some(r))
                if p.argo_helm.as_ref().is_some_and(|h| h.chart.is_some())
                    || w.located.chart.is_some() =>
            {
                r.display()
            }
            _ => w.located.render_root.clone(),
        };
        if !self
            .sources_seen
            .insert((w.located.repo_key.clone(), file, root))
        {
            return Ok(());
        }
        let docs = locator.siblings(&w.located, w.pointer.as_ref())?;
        let source = Arc::new(SourceContext {
            docs: docs.clone(),
            sibling: serde_json::json!({"metadata": {
                "labels": w.live["metadata"]["labels"].clone(),
                "annotations": w.live["metadata"]["annotations"].clone(),
            }}),
            rule: w.located.rule,
            manager: w.manager(),
            reconciler: w.located.reconciler.clone(),
            secrets: w.located.secrets.clone(),
        });
        for (index, doc) in docs.iter().enumerate() {
            let Some(mut key) = doc.key() else { continue };
            // Argo CD runs hooks (a PreSync Job...) and deletes them by their policy; it never
            // keeps them as the Application's resources, so their absence is no drift.
            if w.located.rule == source::Rule::ArgoCd && is_argo_hook(&doc.object) {
                continue;
            }
            // The namespace is the sibling's, for a kind that has one.
            let namespaced = discovery
                .for_kind(
                    doc.object["apiVersion"].as_str().unwrap_or_default(),
                    &key.kind,
                )
                .await
                .map_or(w.resource.namespaced, |r| r.namespaced);
            if key.namespace.is_none() && namespaced {
                key.namespace = w.key.namespace.clone();
            }
            let report = ObjectReport {
                object: key.clone(),
                status: Status::Missing,
                verdict: Some(Verdict::Offline),
                source: Some(SourceSummary {
                    repo: w.located.repo.clone(),
                    file: doc.file.clone(),
                    lines: doc.lines,
                    commit: w.located.tracked_commit.clone().unwrap_or_default(),
                    rule: w.located.rule.describe().to_owned(),
                }),
                fields: Vec::new(),
                ignored: Vec::new(),
                error: None,
                not_compared: Vec::new(),
            };
            self.candidates.push(Candidate {
                key,
                report,
                namespaced,
                doc: index,
                source: source.clone(),
                noted_by,
            });
        }
        Ok(())
    }

    /// The candidates of a listed kind, in scope, that the cluster does not have, each with
    /// what it takes to create it again and which noted object's source declares it.
    pub(super) fn missing(
        self,
        all_live: &BTreeSet<ObjectKey>,
        listed_kinds: &BTreeSet<(String, String)>,
        namespace: Option<&str>,
    ) -> Vec<(ObjectReport, MissingObject, usize)> {
        let mut seen = BTreeSet::new();
        self.candidates
            .into_iter()
            .filter(|c| {
                let key = &c.key;
                let in_scope = namespace.is_none()
                    || key.namespace.is_none()
                    || key.namespace.as_deref() == namespace;
                in_scope
                    && listed_kinds.contains(&(key.group.clone(), key.kind.clone()))
                    && !all_live.contains(key)
                    && seen.insert(key.clone())
            })
            .map(|c| {
                let mut desired = c.source.docs[c.doc].object.clone();
                if c.namespaced {
                    set_namespace(&mut desired, c.key.namespace.as_deref());
                }
                copy_source_markers(&c.source.sibling, c.source.rule, &c.key, &mut desired);
                let missing = MissingObject {
                    desired,
                    manager: c.source.manager.clone(),
                    reconciler: c.source.reconciler.clone(),
                    secrets: c.source.secrets.clone(),
                };
                (c.report, missing, c.noted_by)
            })
            .collect()
    }
}

/// Gives an object about to be created again the source markers that `sibling` (found through
/// the same file or render root) carries, as the tool that applied them would have written
/// them: our stamp annotations and kustomize's origin (same file), Flux's labels, Argo CD's
/// instance label and tracking id. Without them the new object would have no source.
fn copy_source_markers(sibling: &Value, rule: source::Rule, key: &ObjectKey, object: &mut Value) {
    use crate::markers::{
        ARGO_INSTANCE, ARGO_TRACKING_ID, COMMIT, FLUX_HELM_NAME, FLUX_HELM_NAMESPACE, FLUX_NAME,
        FLUX_NAMESPACE, HELM_RELEASE_NAME, HELM_RELEASE_NAMESPACE, KUSTOMIZE_ORIGIN, PATH, REPO,
    };
    let (annotations, labels): (Vec<&str>, Vec<&str>) = match rule {
        source::Rule::Annotations => (vec![REPO, PATH, COMMIT], vec![]),
        source::Rule::KustomizeOrigin => (vec![KUSTOMIZE_ORIGIN], vec![]),
        source::Rule::Flux => (vec![], vec![FLUX_NAME, FLUX_NAMESPACE]),
        source::Rule::ArgoCd => (vec![], vec![ARGO_INSTANCE]),
        // The release's documents carry them already (as helm-controller applies them).
        source::Rule::Helm => (
            vec![HELM_RELEASE_NAME, HELM_RELEASE_NAMESPACE],
            vec![FLUX_HELM_NAME, FLUX_HELM_NAMESPACE],
        ),
        source::Rule::Fallback => (vec![], vec![]),
    };
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for (section, keys) in [("annotations", annotations), ("labels", labels)] {
        for k in keys {
            if let Some(value) = sibling["metadata"][section][k].as_str() {
                let map = meta
                    .entry(section)
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Some(map) = map.as_object_mut() {
                    map.entry(k).or_insert_with(|| value.into());
                }
            }
        }
    }
    // `<app>:<group>/<kind>:<namespace>/<name>`: the app is the sibling's, the rest this one's.
    if rule == source::Rule::ArgoCd
        && let Some(id) = sibling["metadata"]["annotations"][ARGO_TRACKING_ID].as_str()
        && let Some((app, _)) = id.split_once(':')
    {
        let map = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(map) = map.as_object_mut() {
            map.entry(ARGO_TRACKING_ID).or_insert_with(|| {
                format!(
                    "{app}:{}/{}:{}/{}",
                    key.group,
                    key.kind,
                    key.namespace.as_deref().unwrap_or_default(),
                    key.name
                )
                .into()
            });
        }
    }
}

/// An Argo CD hook: `argocd.argoproj.io/hook`, or a Helm hook in a chart Argo CD renders.
fn is_argo_hook(object: &serde_json::Value) -> bool {
    let annotations = &object["metadata"]["annotations"];
    annotations["argocd.argoproj.io/hook"].is_string() || annotations["helm.sh/hook"].is_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_object_created_again_carries_its_siblings_markers() {
        let key = |kind: &str, name: &str| ObjectKey {
            group: String::new(),
            kind: kind.into(),
            namespace: Some("shop".into()),
            name: name.into(),
        };
        let argo = json!({"metadata": {
            "labels": {"app.kubernetes.io/instance": "shop", "team": "x"},
            "annotations": {"argocd.argoproj.io/tracking-id": "argocd_shop:apps/Deployment:shop/web"}}});
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gone"}});
        copy_source_markers(
            &argo,
            source::Rule::ArgoCd,
            &key("ConfigMap", "gone"),
            &mut cm,
        );
        assert_eq!(
            cm["metadata"],
            json!({"name": "gone",
                   "labels": {"app.kubernetes.io/instance": "shop"},
                   "annotations": {"argocd.argoproj.io/tracking-id": "argocd_shop:/ConfigMap:shop/gone"}})
        );

        let flux = json!({"metadata": {"labels": {
            "kustomize.toolkit.fluxcd.io/name": "apps",
            "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}}});
        let mut cm = json!({"metadata": {"name": "gone", "labels": {"app": "web"}}});
        copy_source_markers(
            &flux,
            source::Rule::Flux,
            &key("ConfigMap", "gone"),
            &mut cm,
        );
        assert_eq!(
            cm["metadata"]["labels"],
            json!({"app": "web", "kustomize.toolkit.fluxcd.io/name": "apps",
                   "kustomize.toolkit.fluxcd.io/namespace": "flux-system"})
        );

        // The fallback search needs no marker: nothing is added.
        let mut cm = json!({"metadata": {"name": "gone"}});
        copy_source_markers(
            &flux,
            source::Rule::Fallback,
            &key("ConfigMap", "gone"),
            &mut cm,
        );
        assert_eq!(cm, json!({"metadata": {"name": "gone"}}));
    }
}
