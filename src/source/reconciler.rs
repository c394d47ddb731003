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
    /// Each reconciler's pointer, or its error as said (and whether it was that a Secret of
    /// it could not be read, which reports act on).
    #[allow(clippy::type_complexity)]
    found: std::sync::Mutex<
        std::collections::HashMap<String, Result<Option<Pointer>, (String, bool)>>,
    >,
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
        found.get(key).map(|r| {
            r.clone().map_err(|(said, secret)| match secret {
                true => SourceError::SecretUnreadable(said),
                false => SourceError::Repeated(said),
            })
        })
    }

    fn put(&self, key: String, result: &Result<Option<Pointer>, SourceError>) {
        let stored = match result {
            Ok(p) => Ok(p.clone()),
            Err(e) => Err((e.to_string(), matches!(e, SourceError::SecretUnreadable(_)))),
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
            let cache_key = format!(
                "argo:{}/{}:tracking",
                id.app_namespace.as_deref().unwrap_or_default(),
                id.app
            );
            if let Some(hit) = cache.get(&cache_key) {
                return hit;
            }
            let result = argo(
                cluster,
                discovery,
                cache,
                id.app_namespace.as_deref(),
                &id.app,
                true,
            )
            .await;
            cache.put(cache_key, &result);
            return result;
        }
    }
    if let Some(app) = label(ARGO_INSTANCE) {
        // Helm uses the same label for release names: only an existing Application counts.
        let _ = live;
        let cache_key = format!("argo:{app}:instance");
        if let Some(hit) = cache.get(&cache_key) {
            return hit;
        }
        let result = argo(cluster, discovery, cache, None, &app, false).await;
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
        let (vars, secret) =
            substitutions(cluster, discovery, namespace, &spec["postBuild"]).await?;
        p.substitute = Some(vars);
        p.secret_variables = secret;
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
/// kustomize-controller, where `substitute` overrides `substituteFrom`); and the names of
/// those whose values come from a Secret.
async fn substitutions(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    namespace: &str,
    post_build: &Value,
) -> Result<(BTreeMap<String, String>, Vec<String>), SourceError> {
    // As kustomize-controller loads them: each `substituteFrom` in order, a later one's key
    // over an earlier one's, every newline taken out of a value; then `substitute` over all.
    let mut vars = BTreeMap::new();
    let mut secret = std::collections::BTreeSet::new();
    for from in post_build["substituteFrom"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let kind = from["kind"].as_str().unwrap_or_default();
        let object = referenced(
            cluster,
            discovery,
            from,
            namespace,
            "postBuild.substituteFrom",
        )
        .await;
        let object = match object {
            Err(SourceError::Cluster(crate::cluster::ClusterError::Forbidden { .. }))
                if kind == "Secret" =>
            {
                let name = from["name"].as_str().unwrap_or_default();
                return Err(SourceError::SecretUnreadable(format!(
                    "you may not read Secret {namespace}/{name} (postBuild.substituteFrom), whose \
                     values are substituted into what the Kustomization applies; ask for get on \
                     secrets in {namespace}"
                )));
            }
            other => other?,
        };
        let Some(object) = object else {
            continue;
        };
        let data = string_map(&object["data"]);
        for (k, v) in data {
            let value = if kind == "Secret" {
                secret.insert(k.clone());
                decode_base64(&v).unwrap_or_default()
            } else {
                secret.remove(&k);
                v
            };
            vars.insert(k, value.replace('\n', ""));
        }
    }
    for (k, v) in string_map(&post_build["substitute"]) {
        secret.remove(&k);
        vars.insert(k, v);
    }
    Ok((vars, secret.into_iter().collect()))
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
    cache: &ReconcilerCache,
    app_namespace: Option<&str>,
    app: &str,
    from_tracking_id: bool,
) -> Result<Option<Pointer>, SourceError> {
    let Ok(resource) = discovery.resolve(ARGO_APPLICATION).await else {
        return if from_tracking_id {
            Err(SourceError::MissingCrd {
                named: format!(
                    "Application {}/{app}",
                    app_namespace.unwrap_or(ARGO_NAMESPACE)
                ),
                by: "the object's Argo CD tracking id".into(),
                crd: ARGO_APPLICATION.into(),
            })
        } else {
            Ok(None)
        };
    };
    let application = match app_namespace {
        Some(ns) => cluster.get(&resource, Some(ns), app).await?,
        None => match cluster.get(&resource, Some(ARGO_NAMESPACE), app).await? {
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
                reconciler: format!(
                    "Application {}/{app}",
                    app_namespace.unwrap_or(ARGO_NAMESPACE)
                ),
            })
        } else {
            Ok(None)
        };
    };
    let app_ns = application["metadata"]["namespace"]
        .as_str()
        .unwrap_or(ARGO_NAMESPACE);
    let display = format!("Application {app_ns}/{app}");
    let spec = &application["spec"];
    // One source, or several (`spec.sources`): each renders its objects; a `ref` source only
    // lends its files (`$ref/...` value files) to the others.
    let (sources, field): (Vec<&Value>, &str) = if spec["source"].is_object() {
        (vec![&spec["source"]], "spec.source")
    } else {
        (
            spec["sources"]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default(),
            "spec.sources",
        )
    };
    let refs: BTreeMap<&str, (usize, &Value)> = sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s["ref"].as_str().map(|r| (r, (i, *s))))
        .collect();
    let (deployed, deployed_at) = argo_deployed(&application);
    let single_revision = deployed["revision"].as_str();
    let mut pointers = Vec::new();
    // A source we cannot use does not keep the others' objects from being compared.
    let mut unusable = Vec::new();
    let mut first_error = None;
    for (index, source) in sources.iter().enumerate() {
        let field = if sources.len() == 1 && spec["source"].is_object() {
            field.to_owned()
        } else {
            format!("{field}[{index}]")
        };
        // A source with only `ref` renders nothing of its own.
        if source["ref"].is_string() && source["path"].is_null() && source["chart"].is_null() {
            continue;
        }
        let revision = if spec["source"].is_object() {
            single_revision.map(|r| (r, format!("{deployed_at}.revision")))
        } else {
            argo_source_revision(deployed, &deployed_at, spec_sources(&application), index)
        };
        let found = argo_source(
            cluster,
            discovery,
            cache,
            ArgoApp {
                display: &display,
                name: app,
                namespace: app_ns,
                spec,
                reconciler: &application,
            },
            source,
            &field,
            &refs,
            revision.as_ref().map(|(r, f)| (*r, f.as_str())),
        )
        .await;
        match found {
            Ok(p) => pointers.push(p),
            Err(e) => {
                unusable.push(format!(
                    "{field}: {}",
                    crate::text::single_line(&e.to_string())
                ));
                first_error.get_or_insert(e);
            }
        }
    }
    if pointers.is_empty()
        && let Some(e) = first_error
    {
        return Err(e);
    }
    if pointers.is_empty() {
        return Err(bad_ks(
            &display,
            field,
            "has no source that renders objects (only `ref` sources, or none)".into(),
        ));
    }
    let mut first = pointers.remove(0);
    first.more_sources = pointers;
    first.unusable_sources = unusable;
    Ok(Some(first))
}

/// Where an Application says what it deployed (`revision`, or `revisions` of a multi-source
/// one): its newest `status.history` entry (a sync that succeeded), else the last sync
/// operation's result when it succeeded, else `status.sync` (what the last comparison was
/// made against: after a refresh that can be a commit not deployed yet). With its path, for
/// errors.
fn argo_deployed(application: &Value) -> (&Value, String) {
    let status = &application["status"];
    let has_revision = |v: &Value| v["revision"].is_string() || v["revisions"].is_array();
    if let Some((i, last)) = status["history"].as_array().and_then(|h| {
        h.iter()
            .enumerate()
            .filter(|(_, e)| has_revision(e))
            .max_by_key(|(_, e)| e["id"].as_i64())
    }) {
        return (last, format!("status.history[{i}]"));
    }
    let result = &status["operationState"]["syncResult"];
    if status["operationState"]["phase"] == "Succeeded" && has_revision(result) {
        return (result, "status.operationState.syncResult".into());
    }
    (&status["sync"], "status.sync".into())
}

/// The revision deployed of `spec.sources[index]` (of `sources`, the spec's) in `deployed`
/// (read at `at`), and where. Its `revisions` go with the sources as deployed (`sources`, or
/// `comparedTo`'s for `status.sync`): when those are not the spec's any more (a source added,
/// removed or moved since), it is the revision of the deployed source with the same
/// repository, path, chart and ref (the n-th such for the n-th such in the spec: the same one
/// listed twice), and none when no deployed source is that one.
fn argo_source_revision<'a>(
    deployed: &'a Value,
    at: &str,
    sources: &[Value],
    index: usize,
) -> Option<(&'a str, String)> {
    // Argo CD leaves empty fields out of what it records: missing and "" are the same.
    let key = |s: &Value| {
        ["repoURL", "path", "chart", "ref"].map(|k| s[k].as_str().unwrap_or_default().to_owned())
    };
    let as_deployed = deployed["sources"]
        .as_array()
        .or_else(|| deployed["comparedTo"]["sources"].as_array());
    let index = match (as_deployed, sources.get(index)) {
        (Some(recorded), Some(source)) => {
            let wanted = key(source);
            let nth = sources[..index].iter().filter(|s| key(s) == wanted).count();
            recorded
                .iter()
                .enumerate()
                .filter(|(_, s)| key(s) == wanted)
                .nth(nth)?
                .0
        }
        _ => index,
    };
    deployed["revisions"][index]
        .as_str()
        .map(|r| (r, format!("{at}.revisions[{index}]")))
}

/// A multi-source Application's `spec.sources`.
fn spec_sources(application: &Value) -> &[Value] {
    application["spec"]["sources"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

/// The Application one source belongs to.
struct ArgoApp<'a> {
    display: &'a str,
    name: &'a str,
    namespace: &'a str,
    spec: &'a Value,
    reconciler: &'a Value,
}

/// The pointer of one source of an Application.
#[allow(clippy::too_many_arguments)]
async fn argo_source(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    cache: &ReconcilerCache,
    app: ArgoApp<'_>,
    source: &Value,
    field: &str,
    refs: &BTreeMap<&str, (usize, &Value)>,
    // The deployed revision, and where it was read.
    revision: Option<(&str, &str)>,
) -> Result<Pointer, SourceError> {
    let display = app.display;
    let url = source["repoURL"].as_str().unwrap_or_default();
    let mut p = Pointer::new(Rule::ArgoCd);
    // A chart from a Helm repository or an OCI registry: its revision is the chart version
    // synced, and Git (a `ref` source) holds at most its values files.
    let chart = match source["chart"].as_str().filter(|c| !c.is_empty()) {
        Some(chart) => {
            Some(argo_repository_chart(cluster, discovery, &app, source, field, chart).await?)
        }
        None => None,
    };
    let root = match &chart {
        Some(_) => RepoPath::root(),
        None => RepoPath::root()
            .join(source["path"].as_str().unwrap_or("."))
            .map_err(|e| bad_ks(display, &format!("{field}.path"), e.to_string()))?,
    };
    let repo = match &chart {
        Some(_) => None,
        None => {
            p.tracked_ref = Some(argo_target_revision(source).to_owned());
            p.render_root = Some(root.clone());
            p.recurse = source["directory"]["recurse"].as_bool().unwrap_or(false);
            if let Some((rev, at)) = revision.filter(|(r, _)| !r.is_empty()) {
                p.applied_commit = Some(argo_applied_commit(display, at, rev)?);
            }
            Some(
                RepoUrl::parse(url)
                    .map_err(|e| bad_ks(display, &format!("{field}.repoURL"), e.to_string()))?,
            )
        }
    };
    // Helm settings count when `helm` is set, or when the path turns out to hold a chart
    // (Argo CD's detection, made once Git is read).
    let h = &source["helm"];
    let values = if h["valuesObject"].is_object() {
        Some(h["valuesObject"].clone())
    } else if let Some(text) = h["values"].as_str().filter(|t| !t.trim().is_empty()) {
        let parsed: Value = serde_saphyr::from_str(text).map_err(|e| {
            bad_ks(
                display,
                &format!("{field}.helm.values"),
                format!("is not YAML: {}", crate::text::single_line(&e.to_string())),
            )
        })?;
        Some(parsed)
    } else {
        None
    };
    let env = ArgoEnv {
        app: if app.namespace == ARGO_NAMESPACE {
            app.name.to_owned()
        } else {
            format!("{}_{}", app.namespace, app.name)
        },
        namespace: app.spec["destination"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        source: source.clone(),
    };
    let mut value_files = Vec::new();
    let mut values_repos: Vec<ArgoValuesRepo> = Vec::new();
    let mut chart_values_repo: Option<ArgoValuesRepo> = None;
    for file in h["valueFiles"].as_array().into_iter().flatten() {
        let Some(written) = file.as_str() else {
            continue;
        };
        // `$name/...` of a `ref` source is that source's file; anything else is read after
        // Argo CD's build environment is substituted into it (`values-$ARGOCD_APP_NAME.yaml`).
        let is_ref = written
            .strip_prefix('$')
            .is_some_and(|rest| refs.contains_key(rest.split('/').next().unwrap_or(rest)));
        let substituted;
        let text = if is_ref {
            written
        } else {
            substituted = env
                .substitute(written)
                .map_err(|var| SourceError::Unsupported {
                    what: format!("{display}: the values file {written} of {field}, naming {var}"),
                })?;
            substituted.as_str()
        };
        let as_written = |mut f: ArgoValueFile| {
            f.written = written.to_owned();
            f
        };
        // A `$ref/...` file of another repository or revision than the chart in Git, or any of
        // a chart from a chart repository: read from that `ref` source's repository, at the
        // revision it synced; one such repository per source.
        let from_ref = match &repo {
            Some(repo) => match argo_value_file(
                display,
                field,
                repo,
                p.tracked_ref.as_deref(),
                &root,
                refs,
                text,
            )? {
                Ok(file) => {
                    value_files.push(as_written(file));
                    continue;
                }
                Err(from_ref) => from_ref,
            },
            // A file inside the chart's archive (no `$`): the repo-server reads it from the
            // chart it unpacked, as the chart's directory and its root.
            None if !is_ref => {
                value_files.push(as_written(argo_chart_value_file(display, field, text)?));
                continue;
            }
            None => argo_ref_value_file(display, field, refs, text)?,
        };
        let (mut file, (index, from)) = from_ref;
        let mut from_repo = argo_values_repo(display, app.reconciler, index, from)?;
        if let Some(chart_repo) = &repo {
            from_repo.own = chart_repo.same_repo(&from_repo.url);
        }
        let same = |other: &ArgoValuesRepo| {
            other.url.same_repo(&from_repo.url) && other.tracked_ref == from_repo.tracked_ref
        };
        if repo.is_some() {
            // A chart in Git: each such repository and revision once, its files by its index.
            file.within = ValuesIn::ValuesRepo(values_repo_index(&mut values_repos, from_repo));
        } else {
            // A chart from a chart repository: the first such repository is the source's,
            // each further one a values repository.
            match &chart_values_repo {
                Some(other) if !same(other) => {
                    let at = values_repo_index(&mut values_repos, from_repo);
                    file.within = ValuesIn::ValuesRepo(at);
                }
                Some(_) => {}
                None => chart_values_repo = Some(from_repo),
            }
        }
        value_files.push(file);
    }
    // A chart from a chart repository reads Git only for its values files: their repository
    // is the source's.
    if let Some(from) = chart_values_repo {
        p.tracked_ref = Some(from.tracked_ref);
        p.applied_commit = from.applied_commit;
        p.repo = Some(from.url);
    }
    let parameters = h["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p["name"].as_str()?.to_owned(),
                p["value"].as_str().unwrap_or_default().to_owned(),
                p["forceString"].as_bool().unwrap_or(false),
            ))
        })
        .collect();
    if h["fileParameters"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        return Err(SourceError::Unsupported {
            what: format!("{display} with {field}.helm.fileParameters"),
        });
    }
    let kube_version = cache.server_version(cluster).await?;
    let destination_ns = app.spec["destination"]["namespace"]
        .as_str()
        .unwrap_or_default();
    p.argo_helm = Some(std::sync::Arc::new(ArgoHelm {
        application: display.to_owned(),
        explicit: h.is_object() || chart.is_some(),
        other_type: ["kustomize", "directory", "plugin"]
            .iter()
            .any(|t| source[*t].is_object()),
        release: h["releaseName"]
            .as_str()
            .filter(|r| !r.is_empty())
            .unwrap_or(app.name)
            .to_owned(),
        namespace: h["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or(destination_ns)
            .to_owned(),
        value_files,
        ignore_missing_value_files: h["ignoreMissingValueFiles"].as_bool().unwrap_or(false),
        values,
        parameters,
        include_crds: !h["skipCrds"].as_bool().unwrap_or(false),
        skip_tests: h["skipTests"].as_bool().unwrap_or(false),
        kube_version,
        api_versions: std::sync::Arc::new(super::helm::api_versions(&discovery.snapshot())),
        chart: chart.map(|from| ArgoRepositoryChart {
            from,
            synced_version: revision
                .filter(|(r, _)| !r.is_empty())
                .map(|(r, _)| r.to_owned()),
        }),
        values_repos,
    }));
    if repo.is_some() {
        p.repo = repo;
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
    let application = app.reconciler;
    let spec = app.spec;
    let sync = application["status"]["sync"]["status"].as_str();
    let health = application["status"]["health"]["status"].as_str();
    p.reconciler = Some(Reconciler {
        kind: "Application".into(),
        namespace: app.namespace.to_owned(),
        name: app.name.to_owned(),
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
    Ok(p)
}

/// What a `$ref/...` values file names: the file, and the `ref` source with its index.
type FromRef<'a> = (ArgoValueFile, (usize, &'a Value));

/// A `valueFiles` entry of an Argo CD Helm source of a chart in Git: relative to the chart's
/// path, from the repository root when it starts with `/`, or `$ref/...` from a `ref` source:
/// of the same repository at the same revision, read at the same commit as the chart; else
/// (`Err`) a file of that source's repository.
fn argo_value_file<'a>(
    display: &str,
    field: &str,
    repo: &RepoUrl,
    revision: Option<&str>,
    root: &RepoPath,
    refs: &BTreeMap<&str, (usize, &'a Value)>,
    text: &str,
) -> Result<Result<ArgoValueFile, FromRef<'a>>, SourceError> {
    let bad = |reason: String| bad_ks(display, &format!("{field}.helm.valueFiles"), reason);
    if text.contains("://") {
        return Err(SourceError::Unsupported {
            what: format!("{display} with the values file {text} from a URL"),
        });
    }
    if let Some(rest) = text.strip_prefix('$') {
        let name = rest.split('/').next().unwrap_or(rest);
        let Some((_, source)) = refs.get(name) else {
            return Err(bad(format!(
                "{text:?} names the source ref {name:?}, which no source of the Application has"
            )));
        };
        let same_repo = source["repoURL"]
            .as_str()
            .and_then(|u| RepoUrl::parse(u).ok())
            .is_some_and(|u| u.same_repo(repo));
        let from_ref = argo_ref_value_file(display, field, refs, text)?;
        if !same_repo || Some(argo_target_revision(source)) != revision {
            return Ok(Err(from_ref));
        }
        return Ok(Ok(from_ref.0));
    }
    let path = match text.strip_prefix('/') {
        Some(from_root) => RepoPath::root().join(from_root),
        None => root.join(text),
    }
    .map_err(|e| bad(format!("{text:?}: {e}")))?;
    Ok(Ok(ArgoValueFile {
        written: text.to_owned(),
        path,
        within: ValuesIn::Git,
    }))
}

/// The repository of the `ref` source `from` (`spec.sources[index]`) as values files read
/// it: its URL, its targetRevision, and the commit the Application deployed of it.
fn argo_values_repo(
    display: &str,
    application: &Value,
    index: usize,
    from: &Value,
) -> Result<ArgoValuesRepo, SourceError> {
    let url = RepoUrl::parse(from["repoURL"].as_str().unwrap_or_default()).map_err(|e| {
        bad_ks(
            display,
            &format!("spec.sources[{index}].repoURL"),
            e.to_string(),
        )
    })?;
    let (deployed, at) = argo_deployed(application);
    let applied_commit = match argo_source_revision(deployed, &at, spec_sources(application), index)
        .filter(|(r, _)| !r.is_empty())
    {
        Some((rev, at)) => Some(argo_applied_commit(display, &at, rev)?),
        None => None,
    };
    Ok(ArgoValuesRepo {
        source: index,
        url,
        own: false,
        tracked_ref: argo_target_revision(from).to_owned(),
        applied_commit,
        read_at: None,
    })
}

/// The index of `repo` (its repository and revision) in `repos`, added when new.
fn values_repo_index(repos: &mut Vec<ArgoValuesRepo>, repo: ArgoValuesRepo) -> usize {
    let same = |o: &ArgoValuesRepo| o.url.same_repo(&repo.url) && o.tracked_ref == repo.tracked_ref;
    match repos.iter().position(same) {
        Some(at) => at,
        None => {
            repos.push(repo);
            repos.len() - 1
        }
    }
}

/// A source's `targetRevision`, `HEAD` when it names none.
fn argo_target_revision(source: &Value) -> &str {
    source["targetRevision"]
        .as_str()
        .filter(|r| !r.is_empty())
        .unwrap_or("HEAD")
}

/// The commit of a Git source's deployed revision (`field`, for errors: where it was read).
fn argo_applied_commit(display: &str, field: &str, revision: &str) -> Result<String, SourceError> {
    Ok(markers::parse_flux_revision(revision)
        .map_err(|e| bad_ks(display, field, e.reason))?
        .commit)
}

/// A `valueFiles` entry of a chart from a chart repository without `$`: a file inside the
/// chart's archive, relative to its directory (`/` naming the same directory, as the
/// repo-server takes the unpacked chart for the repository's root too).
fn argo_chart_value_file(
    display: &str,
    field: &str,
    text: &str,
) -> Result<ArgoValueFile, SourceError> {
    if text.contains("://") {
        return Err(SourceError::Unsupported {
            what: format!("{display} with the values file {text} from a URL"),
        });
    }
    // Not the chart's directory itself: Argo CD refuses a directory as a values file.
    let path = RepoPath::parse(text.trim_start_matches('/')).map_err(|e| {
        bad_ks(
            display,
            &format!("{field}.helm.valueFiles"),
            format!("{text:?}: {e} (a values file without `$` is read inside the chart)"),
        )
    })?;
    Ok(ArgoValueFile {
        written: text.to_owned(),
        path,
        within: ValuesIn::Chart,
    })
}

/// A `valueFiles` entry of a chart from a chart repository written `$ref/path`: a file of the
/// `ref` source's repository, and that source with its index.
fn argo_ref_value_file<'a>(
    display: &str,
    field: &str,
    refs: &BTreeMap<&str, (usize, &'a Value)>,
    text: &str,
) -> Result<(ArgoValueFile, (usize, &'a Value)), SourceError> {
    let bad = |reason: String| bad_ks(display, &format!("{field}.helm.valueFiles"), reason);
    let Some(rest) = text.strip_prefix('$').filter(|_| !text.contains("://")) else {
        return Err(SourceError::Unsupported {
            what: format!("{display} with the values file {text} from a URL"),
        });
    };
    let (name, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(source) = refs.get(name) else {
        return Err(bad(format!(
            "{text:?} names the source ref {name:?}, which no source of the Application has"
        )));
    };
    let path = RepoPath::root()
        .join(path)
        .map_err(|e| bad(format!("{text:?}: {e}")))?;
    Ok((
        ArgoValueFile {
            written: text.to_owned(),
            path,
            within: ValuesIn::Git,
        },
        *source,
    ))
}

/// Where Argo CD runs by default: its Applications' namespace unless they name another.
const ARGO_NAMESPACE: &str = "argocd";

/// Argo CD's label on its repository Secrets, and the values it reads credentials from.
const ARGO_SECRET_TYPE: &str = "argocd.argoproj.io/secret-type";

/// The chart repository of an Argo CD source with `chart`: an index over HTTP(S), or an OCI
/// registry (`oci://`, or a bare `host/path` its repository Secret enables OCI for), with
/// the credentials of Argo CD's repository Secret for its URL (a `repository`, else the
/// longest `repo-creds` prefix) when the user may read them.
async fn argo_repository_chart(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    app: &ArgoApp<'_>,
    source: &Value,
    field: &str,
    chart: &str,
) -> Result<super::helm::RepositoryChart, SourceError> {
    use crate::render::chart_repo::{Credentials, RepoKind};
    let display = app.display;
    let url = source["repoURL"]
        .as_str()
        .unwrap_or_default()
        .trim_end_matches('/');
    let bad_url = |reason: String| bad_ks(display, &format!("{field}.repoURL"), reason);
    // Never shown, so refused before the URL is named in any message.
    if url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .is_some_and(|h| h.contains('@'))
    {
        return Err(SourceError::Unsupported {
            what: format!(
                "{display} whose {field}.repoURL holds credentials (Argo CD keeps them in a \
                 repository Secret)"
            ),
        });
    }
    let (secret, creds) = argo_repository_secret(cluster, discovery, app.namespace, url).await?;
    // A `repository` Secret's own field, else its `repo-creds`' (Argo CD's
    // `enrichCredsToRepo`); booleans as Go's `strconv.ParseBool` reads them.
    let field_of = |s: &Option<LiveObject>, key: &str| -> Option<String> {
        s.as_ref()?["data"][key]
            .as_str()
            .and_then(crate::text::base64_bytes)
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|v| !v.is_empty())
    };
    let data = |key: &str| field_of(&secret, key).or_else(|| field_of(&creds, key));
    let flag = |key: &str| {
        data(key).is_some_and(|v| matches!(v.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"))
    };
    let plain_http = flag("insecureOCIForceHttp");
    let kind = if url.starts_with("oci://") {
        RepoKind::Oci(crate::render::oci::OciRepo::parse(url, plain_http).map_err(bad_url)?)
    } else if url.starts_with("http://") || url.starts_with("https://") {
        RepoKind::Index
    } else if !url.contains("://") || flag("enableOCI") {
        // Argo CD takes a URL with no scheme for an OCI registry (`helm.IsHelmOciRepo`).
        RepoKind::Oci(
            crate::render::oci::OciRepo::parse(&format!("oci://{url}"), plain_http)
                .map_err(bad_url)?,
        )
    } else {
        return Err(bad_url(format!(
            "{url:?} is not an http://, https:// or oci:// URL, and no repository Secret of \
             Argo CD enables OCI for it"
        )));
    };
    // The Secret the credentials come from (and are named after): the repository's own,
    // else (when it has none at all, Argo CD's `HasCredentials`) its repo-creds'.
    let has_credentials = ["username", "password", "sshPrivateKey", "tlsClientCertData"]
        .iter()
        .any(|key| field_of(&secret, key).is_some());
    let with_credentials = if has_credentials { &secret } else { &creds };
    let from = match with_credentials {
        Some(s) => format!(
            "Secret {}/{}",
            s["metadata"]["namespace"].as_str().unwrap_or_default(),
            s["metadata"]["name"].as_str().unwrap_or_default()
        ),
        None => String::new(),
    };
    let credentials = match (
        field_of(with_credentials, "username"),
        field_of(with_credentials, "password"),
    ) {
        (Some(username), Some(password)) => Some(Credentials {
            username,
            password,
            from,
            pass_to_any_host: false,
        }),
        _ => None,
    };
    Ok(super::helm::RepositoryChart {
        display: format!("the chart repository of {display}"),
        url: match &kind {
            RepoKind::Oci(_) if !url.starts_with("oci://") => format!("oci://{url}"),
            _ => url.to_owned(),
        },
        kind,
        chart: chart.to_owned(),
        version: match argo_target_revision(source) {
            "HEAD" => "*".to_owned(),
            r => r.to_owned(),
        },
        pin: None,
        digest_in_version: false,
        user_config_fallback: credentials.is_none(),
        values_files: Vec::new(),
        ignore_missing_values_files: false,
        version_build: None,
        credentials,
        unreadable_secret: None,
    })
}

/// Argo CD's repository Secrets for `url`: the `repository` whose url is it, and the
/// `repo-creds` whose url is its longest prefix. They are looked for in the Application's
/// namespace, then in `argocd` (Argo CD's own, where they are kept when Applications live in
/// other namespaces). None where the user may not list Secrets (the user's own Helm config
/// is asked then).
async fn argo_repository_secret(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    ns: &str,
    url: &str,
) -> Result<(Option<LiveObject>, Option<LiveObject>), SourceError> {
    let Ok(resource) = discovery.resolve("secrets").await else {
        return Ok((None, None));
    };
    let selector = format!("{ARGO_SECRET_TYPE} in (repository,repo-creds)");
    for ns in [ns, ARGO_NAMESPACE]
        .iter()
        .take(if ns == ARGO_NAMESPACE { 1 } else { 2 })
    {
        let secrets = match cluster.list(&resource, Some(ns), Some(&selector)).await {
            Ok(secrets) => secrets,
            Err(crate::cluster::ClusterError::Forbidden { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let (repository, creds) = repository_secrets_for(&secrets, url);
        if repository.is_some() || creds.is_some() {
            return Ok((repository.cloned(), creds.cloned()));
        }
    }
    Ok((None, None))
}

/// Of Argo CD's repository Secrets, those for `url`: the `repository` whose url is it (with
/// or without `oci://`), and the `repo-creds` whose url is its longest prefix.
fn repository_secrets_for<'a>(
    secrets: &'a [LiveObject],
    url: &str,
) -> (Option<&'a LiveObject>, Option<&'a LiveObject>) {
    let url_of = |s: &LiveObject| {
        s["data"]["url"]
            .as_str()
            .and_then(crate::text::base64_bytes)
            .and_then(|b| String::from_utf8(b).ok())
            .map(|u| u.trim_end_matches('/').to_owned())
    };
    let bare = |u: &str| u.strip_prefix("oci://").unwrap_or(u).to_owned();
    let url = bare(url.trim_end_matches('/'));
    let kind =
        |s: &LiveObject| s["metadata"]["labels"][ARGO_SECRET_TYPE].as_str() == Some("repository");
    let repository = secrets
        .iter()
        .find(|s| kind(s) && url_of(s).is_some_and(|u| bare(&u) == url));
    let creds = secrets
        .iter()
        .filter(|s| s["metadata"]["labels"][ARGO_SECRET_TYPE].as_str() == Some("repo-creds"))
        .filter_map(|s| url_of(s).map(|u| (bare(&u), s)))
        .filter(|(prefix, _)| url.starts_with(prefix.as_str()))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, s)| s);
    (repository, creds)
}

/// An Argo CD source's chart from a chart repository: where it is, the version constraint
/// (`targetRevision`), and the version synced (`status.sync.revision(s)`).
#[derive(Debug, Clone, PartialEq)]
pub struct ArgoRepositoryChart {
    pub from: super::helm::RepositoryChart,
    pub synced_version: Option<String>,
}

/// How Argo CD renders a source as a Helm chart (when it is one): `helm template` with these.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgoHelm {
    /// `Application ns/name`.
    pub application: String,
    /// `helm` is set on the source: a chart whatever the path holds.
    pub explicit: bool,
    /// `kustomize`, `directory` or `plugin` is set: never a chart.
    pub other_type: bool,
    pub release: String,
    pub namespace: String,
    /// In order; merged over the chart's own values.yaml.
    pub value_files: Vec<ArgoValueFile>,
    pub ignore_missing_value_files: bool,
    /// `helm.valuesObject`, else `helm.values` parsed; merged after the files.
    pub values: Option<Value>,
    /// `helm.parameters`: name, value, forceString; merged last.
    pub parameters: Vec<(String, String, bool)>,
    pub include_crds: bool,
    pub skip_tests: bool,
    pub kube_version: String,
    pub api_versions: std::sync::Arc<Vec<String>>,
    /// A chart from a chart repository (`chart` set), not a path in Git.
    pub chart: Option<ArgoRepositoryChart>,
    /// The repositories of its values files from other `ref` sources (for a chart in Git,
    /// another repository or its own at another revision; for a chart from a chart
    /// repository, any but the first `ref` repository named), each once, in the order first
    /// named.
    pub values_repos: Vec<ArgoValuesRepo>,
}

impl ArgoHelm {
    /// What the render depends on besides the commit and the chart's path (a render cache key),
    /// and the Application: a render that fails names it.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{:?}|{}|{:?}|{:?}|{}|{}|{}|{}|{:?}",
            self.application,
            self.explicit,
            self.other_type,
            self.release,
            self.namespace,
            self.value_files,
            self.ignore_missing_value_files,
            self.values.as_ref().map(|v| v.to_string()),
            self.parameters,
            self.include_crds,
            self.skip_tests,
            self.kube_version,
            self.api_versions.len(),
            self.values_repos
                .iter()
                .map(|v| (v.url.to_string(), v.read_at.map(|c| c.to_string())))
                .collect::<Vec<_>>()
        )
    }
}

/// Argo CD's build environment of a source, as the repo-server substitutes it into a values
/// file's name (`Env.Envsubst`: `$VAR` or `${VAR}`, `$$` for `$`, an unknown name empty).
struct ArgoEnv {
    /// The Application's instance name: its name in Argo CD's namespace, else `ns_name`.
    app: String,
    /// The destination namespace.
    namespace: String,
    source: Value,
}

impl ArgoEnv {
    /// `text` with each variable replaced; Err(the variable) for the revision, which is not
    /// the same as synced and as desired.
    fn substitute(&self, text: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (name, len) = if let Some(braced) = after.strip_prefix('{') {
                match braced.find('}') {
                    Some(end) => (&braced[..end], end + 2),
                    None => {
                        out.push_str(&rest[at..]);
                        return Ok(out);
                    }
                }
            } else if after.starts_with('$') {
                ("$", 1)
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            };
            if name.is_empty() && len == 0 {
                // No name after it: kept.
                out.push('$');
            } else {
                out.push_str(&self.value(name)?);
            }
            rest = &after[len..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn value(&self, name: &str) -> Result<String, String> {
        let field = |key: &str| self.source[key].as_str().unwrap_or_default().to_owned();
        Ok(match name {
            "$" => "$".to_owned(),
            "ARGOCD_APP_NAME" => self.app.clone(),
            "ARGOCD_APP_NAMESPACE" => self.namespace.clone(),
            "ARGOCD_APP_SOURCE_REPO_URL" => field("repoURL"),
            "ARGOCD_APP_SOURCE_PATH" => field("path"),
            "ARGOCD_APP_SOURCE_TARGET_REVISION" => field("targetRevision"),
            "ARGOCD_APP_REVISION" | "ARGOCD_APP_REVISION_SHORT" => {
                return Err(format!("${name}"));
            }
            _ => String::new(),
        })
    }
}

/// One `valueFiles` entry: as written, the path it names, and where that path is.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgoValueFile {
    pub written: String,
    pub path: RepoPath,
    pub within: ValuesIn,
}

/// Where a values file of an Argo CD Helm source is read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValuesIn {
    /// The source's repository: the chart's (a chart in Git), or its `ref` source's (a chart
    /// from a chart repository).
    Git,
    /// Inside the chart's archive (a chart from a chart repository, the entry without `$`).
    Chart,
    /// The `ref` source of another repository, or revision, than the chart in Git: the one
    /// of [`ArgoHelm::values_repos`] at this index.
    ValuesRepo(usize),
}

/// The repository a chart in Git reads `$ref/...` values files from, when it is another
/// repository, or the same at another revision.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgoValuesRepo {
    /// The index of the `ref` source in `spec.sources`.
    pub source: usize,
    pub url: RepoUrl,
    /// It is the chart's own repository (at another revision).
    pub own: bool,
    pub tracked_ref: String,
    /// What the Application deployed of it (`revisions[source]`), when known.
    pub applied_commit: Option<String>,
    /// The commit its files are read at: set by the locator for each render (as synced, or
    /// at its tracked tip).
    pub read_at: Option<crate::git::CommitId>,
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

pub(super) use crate::text::base64_bytes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argo_deployed_revision_is_the_newest_history_entry_else_the_last_sync() {
        use serde_json::json;
        let app = json!({"status": {
            "sync": {"revision": "c3"},
            "operationState": {"phase": "Succeeded", "syncResult": {"revision": "c2"}},
            "history": [{"id": 0, "revision": "c0"}, {"id": 1, "revision": "c1"}],
        }});
        let revision = |app: &Value| {
            let (deployed, at) = argo_deployed(app);
            (deployed["revision"].as_str().unwrap().to_owned(), at)
        };
        assert_eq!(revision(&app), ("c1".into(), "status.history[1]".into()));
        let mut no_history = app.clone();
        no_history["status"]["history"] = json!([]);
        assert_eq!(
            revision(&no_history),
            ("c2".into(), "status.operationState.syncResult".into())
        );
        no_history["status"]["operationState"]["phase"] = "Failed".into();
        assert_eq!(revision(&no_history), ("c3".into(), "status.sync".into()));
    }

    #[test]
    fn a_source_revision_is_that_of_the_same_source_as_deployed() {
        use serde_json::json;
        let chart = json!({"repoURL": "https://git.example.com/a.git", "path": "charts/web",
                           "targetRevision": "main", "helm": {"valueFiles": ["$v/x.yaml"]}});
        let values = json!({"repoURL": "https://git.example.com/v.git", "ref": "v", "path": ""});
        let added = json!({"repoURL": "https://git.example.com/a.git", "path": "extras"});
        // Deployed before `added` was put first, with another targetRevision of the chart
        // (and the empty path left out, as Argo CD records it).
        let spec = [added.clone(), chart.clone(), values.clone()];
        let entry = json!({"revisions": ["c-chart", "c-values"], "sources": [
            {"repoURL": "https://git.example.com/a.git", "path": "charts/web",
             "targetRevision": "v1"},
            {"repoURL": "https://git.example.com/v.git", "ref": "v"}]});
        let read = |deployed: &Value, spec: &[Value], index: usize| {
            argo_source_revision(deployed, "status.history[0]", spec, index)
                .map(|(r, at)| (r.to_owned(), at))
        };
        assert_eq!(
            read(&entry, &spec, 1),
            Some(("c-chart".into(), "status.history[0].revisions[0]".into()))
        );
        assert_eq!(
            read(&entry, &spec, 2),
            Some(("c-values".into(), "status.history[0].revisions[1]".into()))
        );
        assert_eq!(read(&entry, &spec, 0), None, "not deployed yet");
        // status.sync names them in comparedTo; without the sources, by index.
        let sync = json!({"revisions": ["c-chart", "c-values"],
                          "comparedTo": {"sources": entry["sources"].clone()}});
        assert_eq!(read(&sync, &spec, 1).unwrap().0, "c-chart");
        let bare = json!({"revisions": ["r0", "r1"]});
        assert_eq!(read(&bare, &spec, 1).unwrap().0, "r1");
        // The same chart twice (two releases), a source put before both since: the n-th for
        // the n-th.
        let twice = json!({"revisions": ["r-first", "r-second"], "sources": [chart, chart]});
        let spec = [added, chart.clone(), chart];
        assert_eq!(read(&twice, &spec, 1).unwrap().0, "r-first");
        assert_eq!(read(&twice, &spec, 2).unwrap().0, "r-second");
    }

    #[test]
    fn argo_repository_secrets_by_url_then_longest_prefix() {
        // Each url as the Secret's data holds it, base64.
        let secret = |name: &str, kind: &str, url: &str| {
            serde_json::json!({
                "metadata": {"name": name, "labels": {ARGO_SECRET_TYPE: kind}},
                "data": {"url": url},
            })
        };
        let secrets = vec![
            // https://charts.example.com
            secret("org", "repo-creds", "aHR0cHM6Ly9jaGFydHMuZXhhbXBsZS5jb20="),
            // https://charts.example.com/team
            secret(
                "team",
                "repo-creds",
                "aHR0cHM6Ly9jaGFydHMuZXhhbXBsZS5jb20vdGVhbQ==",
            ),
            // https://charts.example.com/team/stable/
            secret(
                "exact",
                "repository",
                "aHR0cHM6Ly9jaGFydHMuZXhhbXBsZS5jb20vdGVhbS9zdGFibGUv",
            ),
            // registry.example.com:5000/charts
            secret(
                "registry",
                "repository",
                "cmVnaXN0cnkuZXhhbXBsZS5jb206NTAwMC9jaGFydHM=",
            ),
        ];
        let name = |url: &str| {
            let (repository, creds) = repository_secrets_for(&secrets, url);
            repository
                .or(creds)
                .map(|s| s["metadata"]["name"].as_str().unwrap().to_owned())
        };
        // A repository Secret comes with the repo-creds it may take credentials from.
        let (repository, creds) =
            repository_secrets_for(&secrets, "https://charts.example.com/team/stable");
        assert_eq!(repository.unwrap()["metadata"]["name"], "exact");
        assert_eq!(creds.unwrap()["metadata"]["name"], "team");
        assert_eq!(
            name("https://charts.example.com/team/stable").as_deref(),
            Some("exact")
        );
        assert_eq!(
            name("https://charts.example.com/team/beta").as_deref(),
            Some("team")
        );
        assert_eq!(
            name("https://charts.example.com/other").as_deref(),
            Some("org")
        );
        assert_eq!(
            name("oci://registry.example.com:5000/charts").as_deref(),
            Some("registry")
        );
        assert_eq!(name("https://elsewhere.example.com"), None);
    }

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
    fn a_ref_values_file_of_a_chart_in_git_is_its_own_repository_only_at_its_revision() {
        use serde_json::json;
        let chart = RepoUrl::parse("https://git.example.com/charts.git").unwrap();
        let same = json!({"repoURL": "https://git.example.com/charts", "targetRevision": "main"});
        let pinned =
            json!({"repoURL": "https://git.example.com/charts.git", "targetRevision": "v2"});
        let other = json!({"repoURL": "https://git.example.com/config.git"});
        let refs: BTreeMap<&str, (usize, &Value)> = [
            ("same", (1, &same)),
            ("pinned", (2, &pinned)),
            ("config", (3, &other)),
        ]
        .into();
        let root = RepoPath::parse("charts/web").unwrap();
        let read = |text: &str| {
            argo_value_file(
                "App a/b",
                "spec.sources[0]",
                &chart,
                Some("main"),
                &root,
                &refs,
                text,
            )
        };
        // The chart's own repository at its revision: read with the chart, from the root.
        let file = read("$same/env/prod.yaml").unwrap().unwrap();
        assert_eq!(
            (file.path.as_str(), file.within),
            ("env/prod.yaml", ValuesIn::Git)
        );
        let file = read("../../env/prod.yaml").unwrap().unwrap();
        assert_eq!(file.path.as_str(), "env/prod.yaml");
        // Another revision of it, or another repository: that ref source's file.
        for (text, index) in [("$pinned/env/prod.yaml", 2), ("$config/prod/web.yaml", 3)] {
            let (file, (at, _)) = read(text).unwrap().unwrap_err();
            assert_eq!((file.written.as_str(), at), (text, index));
        }
        let e = read("$nobody/values.yaml").unwrap_err().to_string();
        assert!(e.contains("which no source of the Application has"), "{e}");
        let (_, (index, from)) = read("$config/prod/web.yaml").unwrap().unwrap_err();
        let application = json!({"status": {"sync": {"revisions": [
            "0123456789abcdef0123456789abcdef01234567", "", "",
            "89abcdef0123456789abcdef0123456789abcdef"]}}});
        let repo = argo_values_repo("App a/b", &application, index, from).unwrap();
        assert_eq!(repo.tracked_ref, "HEAD");
        assert_eq!(
            repo.applied_commit.as_deref(),
            Some("89abcdef0123456789abcdef0123456789abcdef")
        );
    }

    #[test]
    fn a_values_file_name_gets_argo_cds_build_environment() {
        let env = ArgoEnv {
            app: "team_web".into(),
            namespace: "shop".into(),
            source: serde_json::json!({"repoURL": "https://git.example/a.git",
                                       "path": "charts/web", "targetRevision": "main"}),
        };
        for (written, read) in [
            ("values-$ARGOCD_APP_NAME.yaml", "values-team_web.yaml"),
            (
                "env/${ARGOCD_APP_NAMESPACE}/values.yaml",
                "env/shop/values.yaml",
            ),
            ("$ARGOCD_APP_SOURCE_PATH/x.yaml", "charts/web/x.yaml"),
            ("${ARGOCD_APP_SOURCE_TARGET_REVISION}.yaml", "main.yaml"),
            // An unknown name is empty; `$$` is `$`; `$` before no name stays.
            ("$values/env/prod.yaml", "/env/prod.yaml"),
            ("cost$$.yaml", "cost$.yaml"),
            ("a$/b.yaml", "a$/b.yaml"),
            ("plain.yaml", "plain.yaml"),
            ("${open.yaml", "${open.yaml"),
        ] {
            assert_eq!(env.substitute(written).as_deref(), Ok(read), "{written}");
        }
        assert_eq!(
            env.substitute("v-$ARGOCD_APP_REVISION_SHORT.yaml"),
            Err("$ARGOCD_APP_REVISION_SHORT".into())
        );
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
