//! Flux and Argo CD: from an object's labels to the Kustomization or Application that applied
//! it, and from there to the repository, path, applied revision and tracked ref.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{Pointer, Rule, SourceError};
use crate::cluster::cache::CachedDiscovery;
use crate::cluster::{Cluster, LiveObject};
use crate::git::{RepoPath, RepoUrl};
use crate::markers::{
    self, ARGO_INSTANCE, ARGO_TRACKING_ID, FLUX_HELM_NAME, FLUX_HELM_NAMESPACE, FLUX_NAME,
    FLUX_NAMESPACE,
};
use crate::object::ObjectKey;
use crate::render::Overlay;

/// The reconciler that applied an object, and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reconciler {
    /// `Kustomization` (Flux) or `Application` (Argo CD).
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Flux: the Ready condition (`True`, `False`, `Unknown`); Argo CD: sync and health status.
    pub status: Option<String>,
    pub message: Option<String>,
    /// Flux `spec.suspend`; Argo CD without automated sync. A suspended reconciler will not
    /// put drift back by itself.
    pub suspended: bool,
}

impl Reconciler {
    /// `Kustomization flux-system/apps`.
    pub fn display(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

const FLUX_KUSTOMIZATION: &str = "kustomizations.kustomize.toolkit.fluxcd.io";
const FLUX_GIT_REPOSITORY: &str = "gitrepositories.source.toolkit.fluxcd.io";
const ARGO_APPLICATION: &str = "applications.argoproj.io";

/// Reconciler lookups of one run: many objects share one Kustomization or Application, which
/// is read once (never a GET per object).
#[derive(Default)]
pub struct ReconcilerCache {
    found: std::sync::Mutex<std::collections::HashMap<String, Result<Option<Pointer>, String>>>,
    /// The server's version (`helm template --kube-version`), asked once.
    server_version: tokio::sync::OnceCell<Result<String, String>>,
}

impl ReconcilerCache {
    /// The server's `gitVersion`, asked once per run.
    pub(super) async fn server_version(&self, cluster: &Cluster) -> Result<String, SourceError> {
        self.server_version
            .get_or_init(|| async {
                cluster
                    .server_version()
                    .await
                    .map(|info| info.git_version)
                    .map_err(|e| e.to_string())
            })
            .await
            .clone()
            .map_err(SourceError::Repeated)
    }

    fn get(&self, key: &str) -> Option<Result<Option<Pointer>, SourceError>> {
        let found = self.found.lock().expect("reconciler cache lock");
        found
            .get(key)
            .map(|r| r.clone().map_err(SourceError::Repeated))
    }

    fn put(&self, key: String, result: &Result<Option<Pointer>, SourceError>) {
        let stored = match result {
            Ok(p) => Ok(p.clone()),
            Err(e) => Err(e.to_string()),
        };
        self.found
            .lock()
            .expect("reconciler cache lock")
            .insert(key, stored);
    }
}

/// The Flux or Argo CD pointer of an object, if its labels name a reconciler.
pub async fn reconciler_pointer(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    cache: &ReconcilerCache,
    live: &LiveObject,
    key: Option<&ObjectKey>,
    label: &dyn Fn(&str) -> Option<String>,
    annotation: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Pointer>, SourceError> {
    if let (Some(name), Some(namespace)) = (label(FLUX_NAME), label(FLUX_NAMESPACE)) {
        let cache_key = format!("flux:{namespace}/{name}");
        if let Some(hit) = cache.get(&cache_key) {
            return hit;
        }
        let result = flux(cluster, discovery, &namespace, &name).await.map(Some);
        cache.put(cache_key, &result);
        return result;
    }
    // Before Argo CD's instance label, which Helm charts set to the release name.
    // The labels alone also mark the HelmChart helm-controller makes: Helm's annotation says
    // that a release holds the object.
    if let (Some(name), Some(namespace), Some(_)) = (
        label(FLUX_HELM_NAME),
        label(FLUX_HELM_NAMESPACE),
        annotation(markers::HELM_RELEASE_NAME),
    ) {
        let cache_key = format!("flux-helm:{namespace}/{name}");
        if let Some(hit) = cache.get(&cache_key) {
            return hit;
        }
        let result = Box::pin(super::helm::flux_helm(
            cluster, discovery, cache, &namespace, &name,
        ))
        .await
        .map(Some);
        cache.put(cache_key, &result);
        return result;
    }
    if let Some(text) = annotation(ARGO_TRACKING_ID) {
        let id = markers::parse_tracking_id(&text)?;
        // Argo CD itself ignores a tracking id that names another object (a copied annotation).
        let names_this = key.is_some_and(|k| {
            k.kind == id.kind
                && k.group == id.group
                && k.name == id.name
                && k.namespace.as_deref().unwrap_or_default() == id.namespace
        });
        if names_this {
            return argo(
                cluster,
                discovery,
                id.app_namespace.as_deref(),
                &id.app,
                true,
            )
            .await;
        }
    }
    if let Some(app) = label(ARGO_INSTANCE) {
        // Helm uses the same label for release names: only an existing Application counts.
        let _ = live;
        let cache_key = format!("argo:{app}:instance");
        if let Some(hit) = cache.get(&cache_key) {
            return hit;
        }
        let result = argo(cluster, discovery, None, &app, false).await;
        cache.put(cache_key, &result);
        return result;
    }
    Ok(None)
}

async fn flux(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    namespace: &str,
    name: &str,
) -> Result<Pointer, SourceError> {
    let reconciler_name = format!("Kustomization {namespace}/{name}");
    let ks = reconciler_object(
        cluster,
        discovery,
        FLUX_KUSTOMIZATION,
        (namespace, name),
        &reconciler_name,
        "the object's Flux labels",
    )
    .await?;
    let spec = &ks["spec"];
    let source_kind = spec["sourceRef"]["kind"]
        .as_str()
        .unwrap_or("GitRepository");
    if source_kind != "GitRepository" {
        return Err(SourceError::Unsupported {
            what: format!("{reconciler_name} with a {source_kind} source"),
        });
    }
    let source_name = spec["sourceRef"]["name"].as_str().unwrap_or_default();
    let source_ns = spec["sourceRef"]["namespace"].as_str().unwrap_or(namespace);
    let (repo, tracked_ref) =
        git_repository(cluster, discovery, source_ns, source_name, &reconciler_name).await?;

    let mut p = Pointer::new(Rule::Flux);
    p.repo = Some(repo);
    p.tracked_ref = tracked_ref;
    p.render_root = Some(
        RepoPath::root()
            .join(spec["path"].as_str().unwrap_or("."))
            .map_err(|e| bad_ks(&reconciler_name, "spec.path", e.to_string()))?,
    );
    p.generate_kustomization = true;
    p.recurse = true;
    if let Some(rev) = ks["status"]["lastAppliedRevision"]
        .as_str()
        .filter(|r| !r.is_empty())
    {
        p.applied_commit = Some(markers::parse_flux_revision(rev)?.commit);
    }
    p.overlay = Overlay {
        target_namespace: spec["targetNamespace"].as_str().map(str::to_owned),
        name_prefix: spec["namePrefix"].as_str().map(str::to_owned),
        name_suffix: spec["nameSuffix"].as_str().map(str::to_owned),
        common_labels: string_map(&spec["commonMetadata"]["labels"]),
        common_annotations: string_map(&spec["commonMetadata"]["annotations"]),
        images: spec["images"].as_array().cloned().unwrap_or_default(),
        patches: spec["patches"].as_array().cloned().unwrap_or_default(),
        components: spec["components"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    };
    if !spec["postBuild"].is_null() {
        p.substitute =
            Some(substitutions(cluster, discovery, namespace, &spec["postBuild"]).await?);
    }
    p.reconciler = Some(Reconciler {
        kind: "Kustomization".into(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        status: ready_condition(&ks).map(|(s, _)| s),
        message: ready_condition(&ks).and_then(|(_, m)| m),
        suspended: spec["suspend"].as_bool().unwrap_or(false),
    });
    Ok(p)
}

/// The reconciler object `display` (of the CRD `crd`) that `by` names: an error that says which
/// when the cluster has no such CRD or object.
pub(super) async fn reconciler_object(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    crd: &str,
    (namespace, name): (&str, &str),
    display: &str,
    by: &str,
) -> Result<Value, SourceError> {
    let resource = discovery
        .resolve(crd)
        .await
        .map_err(|_| SourceError::MissingCrd {
            named: display.to_owned(),
            by: by.to_owned(),
            crd: crd.to_owned(),
        })?;
    cluster
        .get(&resource, Some(namespace), name)
        .await?
        .ok_or_else(|| SourceError::ReconcilerMissing {
            reconciler: display.to_owned(),
        })
}

/// The URL and tracked ref of the GitRepository `source_ns/source_name`, the source of `user`.
pub(super) async fn git_repository(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    source_ns: &str,
    source_name: &str,
    reconciler_name: &str,
) -> Result<(RepoUrl, Option<String>), SourceError> {
    let repo_resource =
        discovery
            .resolve(FLUX_GIT_REPOSITORY)
            .await
            .map_err(|_| SourceError::MissingCrd {
                named: format!("GitRepository {source_ns}/{source_name}"),
                by: format!("the sourceRef of {reconciler_name}"),
                crd: FLUX_GIT_REPOSITORY.into(),
            })?;
    let git_repo = cluster
        .get(&repo_resource, Some(source_ns), source_name)
        .await?
        .ok_or_else(|| SourceError::ReconcilerMissing {
            reconciler: format!(
                "GitRepository {source_ns}/{source_name} (source of {reconciler_name})"
            ),
        })?;
    let url = git_repo["spec"]["url"].as_str().unwrap_or_default();
    let bad = |field: &str, reason: String| {
        SourceError::BadAnnotation(markers::BadAnnotation {
            key: format!("GitRepository {source_ns}/{source_name} {field}"),
            value_hint: String::new(),
            reason,
        })
    };
    let repo = RepoUrl::parse(url).map_err(|e| bad("spec.url", e.to_string()))?;
    let git_ref = &git_repo["spec"]["ref"];
    let tracked_ref = ["branch", "tag", "semver", "name", "commit"]
        .iter()
        .find_map(|k| git_ref[*k].as_str())
        .map(str::to_owned);

    Ok((repo, tracked_ref))
}

pub(super) fn bad_ks(reconciler: &str, field: &str, reason: String) -> SourceError {
    SourceError::BadAnnotation(markers::BadAnnotation {
        key: format!("{reconciler} {field}"),
        value_hint: String::new(),
        reason,
    })
}

/// `postBuild.substitute`, then each `substituteFrom` ConfigMap or Secret (earlier wins, as in
/// kustomize-controller, where `substitute` overrides `substituteFrom`).
async fn substitutions(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    namespace: &str,
    post_build: &Value,
) -> Result<BTreeMap<String, String>, SourceError> {
    let mut vars = string_map(&post_build["substitute"]);
    for from in post_build["substituteFrom"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let kind = from["kind"].as_str().unwrap_or_default();
        let Some(object) = referenced(
            cluster,
            discovery,
            from,
            namespace,
            "postBuild.substituteFrom",
        )
        .await?
        else {
            continue;
        };
        let data = string_map(&object["data"]);
        for (k, v) in data {
            let value = if kind == "Secret" {
                decode_base64(&v).unwrap_or_default()
            } else {
                v
            };
            vars.entry(k).or_insert(value);
        }
    }
    Ok(vars)
}

/// The ConfigMap or Secret a reconciler's `{kind, name, optional}` reference names
/// (`substituteFrom`, `valuesFrom`), in `namespace`. None when it is of another kind, or
/// optional and absent; `what` names the reference in the error for one that is missing.
pub(super) async fn referenced(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    reference: &Value,
    namespace: &str,
    what: &str,
) -> Result<Option<Value>, SourceError> {
    let kind = reference["kind"].as_str().unwrap_or_default();
    let name = reference["name"].as_str().unwrap_or_default();
    let type_name = match kind {
        "ConfigMap" => "configmaps",
        "Secret" => "secrets",
        _ => return Ok(None),
    };
    let Ok(resource) = discovery.resolve(type_name).await else {
        return Ok(None);
    };
    match cluster.get(&resource, Some(namespace), name).await? {
        Some(object) => Ok(Some(object)),
        None if reference["optional"].as_bool().unwrap_or(false) => Ok(None),
        None => Err(SourceError::ReconcilerMissing {
            reconciler: format!("{kind} {namespace}/{name} ({what})"),
        }),
    }
}

async fn argo(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    app_namespace: Option<&str>,
    app: &str,
    from_tracking_id: bool,
) -> Result<Option<Pointer>, SourceError> {
    let Ok(resource) = discovery.resolve(ARGO_APPLICATION).await else {
        return if from_tracking_id {
            Err(SourceError::MissingCrd {
                named: format!("Application {}/{app}", app_namespace.unwrap_or("argocd")),
                by: "the object's Argo CD tracking id".into(),
                crd: ARGO_APPLICATION.into(),
            })
        } else {
            Ok(None)
        };
    };
    let application = match app_namespace {
        Some(ns) => cluster.get(&resource, Some(ns), app).await?,
        None => match cluster.get(&resource, Some("argocd"), app).await? {
            Some(found) => Some(found),
            // Applications outside the argocd namespace: the one with that name, if unique.
            None => {
                let all = cluster.list(&resource, None, None).await?;
                let mut named = all.into_iter().filter(|a| a["metadata"]["name"] == app);
                match (named.next(), named.next()) {
                    (Some(one), None) => Some(one),
                    _ => None,
                }
            }
        },
    };
    let Some(application) = application else {
        return if from_tracking_id {
            Err(SourceError::ReconcilerMissing {
                reconciler: format!("Application {}/{app}", app_namespace.unwrap_or("argocd")),
            })
        } else {
            Ok(None)
        };
    };
    let app_ns = application["metadata"]["namespace"]
        .as_str()
        .unwrap_or("argocd");
    let display = format!("Application {app_ns}/{app}");
    let spec = &application["spec"];
    let source = if spec["source"].is_object() {
        &spec["source"]
    } else {
        &spec["sources"][0]
    };
    if source["chart"].is_string() || !source["helm"].is_null() {
        return Err(SourceError::Unsupported {
            what: format!("{display} with a Helm source"),
        });
    }
    let url = source["repoURL"].as_str().unwrap_or_default();
    let repo =
        RepoUrl::parse(url).map_err(|e| bad_ks(&display, "spec.source.repoURL", e.to_string()))?;
    let mut p = Pointer::new(Rule::ArgoCd);
    p.repo = Some(repo);
    p.tracked_ref = source["targetRevision"]
        .as_str()
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .or(Some("HEAD".to_owned()));
    p.render_root = Some(
        RepoPath::root()
            .join(source["path"].as_str().unwrap_or("."))
            .map_err(|e| bad_ks(&display, "spec.source.path", e.to_string()))?,
    );
    p.recurse = source["directory"]["recurse"].as_bool().unwrap_or(false);
    let revision = application["status"]["sync"]["revision"]
        .as_str()
        .or_else(|| application["status"]["sync"]["revisions"][0].as_str());
    if let Some(rev) = revision.filter(|r| !r.is_empty()) {
        p.applied_commit = Some(
            markers::parse_flux_revision(rev)
                .map_err(|e| bad_ks(&display, "status.sync.revision", e.reason))?
                .commit,
        );
    }
    let k = &source["kustomize"];
    p.overlay = Overlay {
        target_namespace: k["namespace"].as_str().map(str::to_owned),
        name_prefix: k["namePrefix"].as_str().map(str::to_owned),
        name_suffix: k["nameSuffix"].as_str().map(str::to_owned),
        common_labels: string_map(&k["commonLabels"]),
        common_annotations: string_map(&k["commonAnnotations"]),
        images: k["images"]
            .as_array()
            .map(|a| a.iter().filter_map(argo_image).collect())
            .unwrap_or_default(),
        patches: k["patches"].as_array().cloned().unwrap_or_default(),
        components: k["components"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let sync = application["status"]["sync"]["status"].as_str();
    let health = application["status"]["health"]["status"].as_str();
    p.reconciler = Some(Reconciler {
        kind: "Application".into(),
        namespace: app_ns.to_owned(),
        name: app.to_owned(),
        status: match (sync, health) {
            (None, None) => None,
            (s, h) => Some(format!(
                "{}, {}",
                s.unwrap_or("Unknown"),
                h.unwrap_or("Unknown")
            )),
        },
        message: None,
        suspended: spec["syncPolicy"]["automated"].is_null(),
    });
    Ok(Some(p))
}

/// Argo CD writes kustomize images as `name=newName:tag` strings.
fn argo_image(text: &Value) -> Option<Value> {
    let text = text.as_str()?;
    let (name, target) = text.split_once('=').unwrap_or((text, text));
    let (new_name, tag) = match target.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (target, None),
    };
    let mut image = serde_json::json!({"name": name, "newName": new_name});
    if let Some(tag) = tag {
        image["newTag"] = tag.into();
    }
    Some(image)
}

/// The Ready condition: status and message.
pub(super) fn ready_condition(object: &Value) -> Option<(String, Option<String>)> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("Unknown").to_owned(),
                c["message"].as_str().map(str::to_owned),
            )
        })
}

pub(super) fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Standard base64, for Secret data used in substitutions (never printed).
fn decode_base64(text: &str) -> Option<String> {
    String::from_utf8(base64_bytes(text)?).ok()
}

/// Standard base64 to bytes (Secret data, Helm release records; never printed).
pub(super) fn base64_bytes(text: &str) -> Option<Vec<u8>> {
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
    {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_of_secret_values() {
        assert_eq!(decode_base64("ZXUtMQ==").as_deref(), Some("eu-1"));
        assert_eq!(
            decode_base64("aGVsbG8gd29ybGQ=").as_deref(),
            Some("hello world")
        );
        assert_eq!(decode_base64("!!"), None);
    }

    #[test]
    fn argo_images() {
        assert_eq!(
            argo_image(&"nginx=registry.example/nginx:1.27".into()).unwrap(),
            serde_json::json!({"name": "nginx", "newName": "registry.example/nginx", "newTag": "1.27"})
        );
        assert_eq!(
            argo_image(&"registry:5000/app".into()).unwrap()["newName"],
            "registry:5000/app"
        );
    }

    #[test]
    fn ready_condition_is_read() {
        let ks = serde_json::json!({"status": {"conditions": [
            {"type": "Reconciling", "status": "False"},
            {"type": "Ready", "status": "True", "message": "Applied revision: main@sha1:abc"}]}});
        assert_eq!(
            ready_condition(&ks),
            Some((
                "True".into(),
                Some("Applied revision: main@sha1:abc".into())
            ))
        );
    }
}
