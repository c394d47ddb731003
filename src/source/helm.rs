//! Flux HelmReleases: from an object's helm-controller labels to its HelmRelease, the chart's
//! Git source, the values it is rendered with, and the release record helm-controller wrote
//! (what was applied). Read from the cluster only; the chart is rendered by [`super::Locator`].

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::reconciler::{
    bad_ks, base64_bytes, git_repository, ready_condition, reconciler_object, referenced,
    string_map,
};
use super::{Pointer, Reconciler, ReconcilerCache, Rule, SourceError};
use crate::cluster::cache::CachedDiscovery;
use crate::cluster::{Cluster, ClusterError};
use crate::git::RepoPath;
use crate::markers::{
    self, FLUX_HELM_NAME, FLUX_HELM_NAMESPACE, HELM_MANAGED_BY, HELM_RELEASE_NAME,
    HELM_RELEASE_NAMESPACE,
};
use crate::object::ObjectKey;
use crate::render::Document;

const FLUX_HELM_RELEASE: &str = "helmreleases.helm.toolkit.fluxcd.io";
const FLUX_HELM_CHART: &str = "helmcharts.source.toolkit.fluxcd.io";
const FLUX_HELM_REPOSITORY: &str = "helmrepositories.source.toolkit.fluxcd.io";
const FLUX_OCI_REPOSITORY: &str = "ocirepositories.source.toolkit.fluxcd.io";

/// The field manager helm-controller writes every object of a release with (client-side, so
/// its managedFields entries are `Update`s).
pub const HELM_CONTROLLER: &str = "helm-controller";

/// Everything a HelmRelease-made object is rendered and compared with. Its values may hold
/// Secret values: `Debug` shows none of them, and nothing here is ever printed.
#[derive(Clone, PartialEq)]
pub struct HelmSource {
    /// The HelmRelease (namespace, name).
    pub helm_release: (String, String),
    /// The Helm release name and the namespace its objects go in.
    pub release: String,
    pub namespace: String,
    /// The chart's directory in the repository.
    pub chart_path: RepoPath,
    /// `valuesFiles`, repository paths, in order.
    pub values_files: Vec<RepoPath>,
    /// `ignoreMissingValuesFiles`: a values file not in Git is skipped.
    pub ignore_missing_values_files: bool,
    /// Each `valuesFrom` reference and what it holds, in order (a Secret's: never shown).
    pub values_from: Vec<(ValuesSource, Value)>,
    /// `spec.values` as the cluster has it (Git's, when the HelmRelease is found in Git, wins).
    pub inline_values: Value,
    /// `spec.commonMetadata` labels and annotations, post-rendered into every object.
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
    /// `spec.postRenderers` as the cluster has it (what the release was rendered with).
    pub post_renderers: Vec<Value>,
    /// The latest deployed release record: what helm-controller applied.
    pub record: Arc<ReleaseRecord>,
    /// The live cluster's version, for `helm template --kube-version`.
    pub kube_version: String,
    /// The cluster's API versions (`group/version` and `group/version/Kind`), as Helm reads
    /// its capabilities from discovery, for `helm template --api-versions`.
    pub api_versions: Arc<Vec<String>>,
    /// Where the HelmRelease itself comes from (its own Flux labels), when anything says.
    pub own_pointer: Option<Box<Pointer>>,
    /// How the chart is referred to, for trace: `GitRepository ns/name`.
    pub chart_source: String,
    /// When the chart comes from a chart repository (a HelmRepository) rather than Git.
    pub repository: Option<Arc<RepositoryChart>>,
    /// For a chart in Git: the build metadata source-controller puts in its version.
    pub version_build: VersionBuild,
}

/// A chart from a Flux HelmRepository (an index over HTTP(S), or an OCI registry): where it
/// is, which chart and which versions.
#[derive(Debug, Clone, PartialEq)]
pub struct RepositoryChart {
    /// `HelmRepository ns/name`.
    pub display: String,
    pub url: String,
    pub kind: crate::render::chart_repo::RepoKind,
    /// `spec.chart.spec.chart` and `.version` as the cluster has them (Git's HelmRelease, when
    /// found, wins); for an OCIRepository, the last part of its URL and its `ref`.
    pub chart: String,
    pub version: String,
    /// An OCIRepository's `ref.tag` or `ref.digest`: that one, not a version constraint.
    pub pin: Option<crate::render::chart_repo::Wanted>,
    /// helm-controller installs the chart with the manifest's digest in its version (an
    /// OCIRepository's: `0.1.0+c22fced2ace5`).
    pub digest_in_version: bool,
    /// From the HelmRepository's `secretRef` (basic auth); never shown.
    pub credentials: Option<crate::render::chart_repo::Credentials>,
    /// `ns/name` of the `secretRef` when the user may not read it: the user's Helm config is
    /// asked for credentials instead.
    pub unreadable_secret: Option<String>,
    /// No credentials were found where the reconciler keeps them (an Argo CD repository
    /// Secret): the user's Helm or Docker config is asked, else none are sent.
    pub user_config_fallback: bool,
    /// `spec.chart.spec.valuesFiles`: files inside the chart, merged in order in place of its
    /// values.yaml, as source-controller packages it (missing ones skipped with
    /// `ignoreMissingValuesFiles`).
    pub values_files: Vec<String>,
    pub ignore_missing_values_files: bool,
    /// The build metadata source-controller gives the version when it packages the chart
    /// with values files: the HelmChart's generation.
    pub version_build: Option<String>,
}

impl RepositoryChart {
    /// What is wanted of the chart: the pin, else `constraint`.
    pub fn wanted(&self, constraint: &str) -> crate::render::chart_repo::Wanted {
        self.pin
            .clone()
            .unwrap_or_else(|| crate::render::chart_repo::Wanted::Constraint(constraint.to_owned()))
    }

    /// The chart as source-controller packages it: with values files, again, as `version`
    /// with the HelmChart's generation as build metadata (`0.1.0+2`).
    pub fn packaged(
        &self,
        picked: crate::render::chart_repo::Picked,
    ) -> crate::render::chart_repo::Picked {
        if self.values_files.is_empty() {
            return picked;
        }
        let version = match &self.version_build {
            Some(build) => crate::render::chart_repo::with_build(&picked.version, build),
            None => picked.version.clone(),
        };
        picked.rendered_as(version)
    }

    /// The chart with the `valuesFiles` and `ignoreMissingValuesFiles` of `chart_spec` (a
    /// HelmRelease's `spec.chart.spec` as Git declares it), as source-controller will package
    /// it once helm-controller has passed them on: a changed list is one more generation of
    /// the HelmChart.
    pub fn as_declared(&self, chart_spec: &Value) -> RepositoryChart {
        let values_files = chart_values_files(chart_spec);
        let ignore_missing_values_files = chart_spec["ignoreMissingValuesFiles"] == true;
        let changed = values_files != self.values_files
            || ignore_missing_values_files != self.ignore_missing_values_files;
        let version_build = match (&self.version_build, changed) {
            (_, false) => self.version_build.clone(),
            (Some(g), true) => g.parse::<u64>().ok().map(|g| (g + 1).to_string()),
            (None, true) => None,
        };
        RepositoryChart {
            values_files,
            ignore_missing_values_files,
            version_build,
            ..self.clone()
        }
    }

    /// The `valuesFiles` in the chart unpacked at `chart_dir`, in order, as paths in it: a
    /// missing one is an error that names it, unless `ignoreMissingValuesFiles` (the render
    /// skips it then).
    pub fn values_in(&self, chart_dir: &std::path::Path) -> Result<Vec<RepoPath>, String> {
        let mut out = Vec::new();
        for file in &self.values_files {
            let path = RepoPath::root()
                .join(file.trim_start_matches("./"))
                .map_err(|e| format!("valuesFiles entry {file:?}: {e}"))?;
            if !self.ignore_missing_values_files && !chart_dir.join(path.as_str()).is_file() {
                return Err(format!(
                    "the chart has no values file {file} (spec.chart.spec.valuesFiles; set \
                     ignoreMissingValuesFiles to skip it)"
                ));
            }
            out.push(path);
        }
        Ok(out)
    }
}

impl std::fmt::Debug for HelmSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelmSource")
            .field("helm_release", &self.helm_release)
            .field("release", &self.release)
            .field("namespace", &self.namespace)
            .field("chart_path", &self.chart_path)
            .field("values_files", &self.values_files)
            .field("values", &"(not shown)")
            .field("revision", &self.record.revision)
            .finish_non_exhaustive()
    }
}

impl HelmSource {
    /// `HelmRelease ns/name`.
    pub fn display(&self) -> String {
        format!(
            "HelmRelease {}/{}",
            self.helm_release.0, self.helm_release.1
        )
    }

    /// The values in the order helm-controller merges them: each `valuesFrom`, then
    /// `spec.values` (`inline`) on top.
    /// A source that is no map (a HelmRelease without `spec.values`) adds nothing.
    pub fn composed_values(&self, inline: &Value) -> Value {
        let mut values = Value::Object(Default::default());
        for (_, from) in &self.values_from {
            if from.is_object() {
                merge_values(&mut values, from);
            }
        }
        if inline.is_object() {
            merge_values(&mut values, inline);
        }
        values
    }

    /// Whether helm-controller rendered the release as applied as an upgrade ([the
    /// record](ReleaseRecord::rendered_as_upgrade) says). A chart's `.Release.IsUpgrade` and
    /// `.Release.IsInstall` say so.
    pub fn is_upgrade(&self) -> bool {
        self.record.rendered_as_upgrade
    }

    /// The values that come from Secrets, as text a tool's message could quote: each string
    /// (and long number) in a `valuesFrom` Secret, and each variable the HelmRelease's
    /// Kustomization substitutes from a Secret.
    pub fn secret_texts(&self) -> Vec<String> {
        fn leaves(value: &Value, out: &mut Vec<String>) {
            match value {
                Value::String(s) => out.push(s.clone()),
                Value::Number(n) if n.to_string().len() >= 4 => out.push(n.to_string()),
                Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
                Value::Object(map) => map.values().for_each(|v| leaves(v, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        for (source, values) in &self.values_from {
            if source.kind == "Secret" {
                leaves(values, &mut out);
            }
        }
        if let Some(p) = &self.own_pointer
            && let Some(vars) = &p.substitute
        {
            out.extend(
                p.secret_variables
                    .iter()
                    .filter_map(|name| vars.get(name).cloned()),
            );
        }
        out
    }

    /// The values sources in order, for trace: no values, only where they come from.
    pub fn values_sources(&self) -> Vec<ValuesSource> {
        let mut out: Vec<ValuesSource> = self
            .values_files
            .iter()
            .map(|f| ValuesSource {
                kind: "valuesFile".into(),
                name: f.as_str().to_owned(),
                key: None,
            })
            .collect();
        if let Some(from) = &self.repository {
            out.extend(from.values_files.iter().map(|f| ValuesSource {
                kind: "valuesFile".into(),
                name: format!("{f} (in chart {})", from.chart),
                key: None,
            }));
        }
        out.extend(self.values_from.iter().map(|(s, _)| s.clone()));
        if self
            .inline_values
            .as_object()
            .is_some_and(|m| !m.is_empty())
        {
            out.push(ValuesSource {
                kind: "values".into(),
                name: "spec.values".into(),
                key: None,
            });
        }
        out
    }

    /// Makes a rendered or recorded object what helm-controller applies: its post-renderers'
    /// labels (commonMetadata, then the origin labels, which win) and Helm's own ownership
    /// markers, which Helm sets on every object it creates or updates.
    pub fn as_applied(&self, object: &mut Value) {
        let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        let mut labels: Vec<(&str, &str)> = self
            .common_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        labels.push((FLUX_HELM_NAME, &self.helm_release.1));
        labels.push((FLUX_HELM_NAMESPACE, &self.helm_release.0));
        labels.push((HELM_MANAGED_BY, "Helm"));
        let mut annotations: Vec<(&str, &str)> = self
            .common_annotations
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        annotations.push((HELM_RELEASE_NAME, &self.release));
        annotations.push((HELM_RELEASE_NAMESPACE, &self.namespace));
        for (section, entries) in [("labels", labels), ("annotations", annotations)] {
            let map = meta
                .entry(section)
                .or_insert_with(|| Value::Object(Default::default()));
            if !map.is_object() {
                *map = Value::Object(Default::default());
            }
            let map = map.as_object_mut().expect("made an object above");
            for (k, v) in entries {
                map.insert(k.to_owned(), v.into());
            }
        }
    }

    /// The recorded (applied) object for `key`, as applied: None when the release does not
    /// hold it.
    pub fn applied(&self, key: &ObjectKey) -> Option<Value> {
        let doc = self.record.find(key, &self.namespace)?;
        let mut object = doc.object.clone();
        self.as_applied(&mut object);
        Some(object)
    }
}

/// What trace shows of a HelmRelease-made object: release, chart and values sources, and the
/// HelmRelease's own place in Git. No value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmTrace {
    /// `namespace/name` of the HelmRelease.
    pub helm_release: String,
    pub release: String,
    pub namespace: String,
    /// The release revision applied (the latest deployed record), and its status.
    pub revision: u64,
    pub status: String,
    pub chart: String,
    pub chart_version: String,
    /// `GitRepository ns/name`.
    pub chart_source: String,
    pub chart_path: String,
    /// In the order they are merged; later wins.
    pub values: Vec<ValuesSource>,
    /// The HelmRelease's own file and lines in Git, at the tip, when its markers lead there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helm_release_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helm_release_lines: Option<(usize, usize)>,
    /// Why the HelmRelease was not found in Git, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helm_release_not_found: Option<String>,
    /// `spec.values` were read from the HelmRelease in Git (else from the cluster's).
    pub values_from_git: bool,
    /// A chart from a chart repository: its URL, the version constraint Git declares and the
    /// version it picks there now (which a newer chart published can change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chart_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_constraint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_chart_version: Option<String>,
    /// `spec.postRenderers` as Git declares them, in order, each as what it does:
    /// `kustomize: 2 patches, 1 image`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub post_renderers: Vec<String>,
}

/// `spec.postRenderers` of a HelmRelease spec.
pub fn post_renderers_of(spec: &Value) -> Vec<Value> {
    spec["postRenderers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A post-renderer as trace shows it: `kustomize: 2 patches, 1 image`.
pub fn post_renderer_summary(r: &Value) -> String {
    let Some(k) = r.get("kustomize") else {
        return "none (no kustomize)".into();
    };
    let count = |field: &str| k[field].as_array().map_or(0, Vec::len);
    let (patches, images) = (count("patches"), count("images"));
    format!(
        "kustomize: {patches} {}, {images} image{}",
        if patches == 1 { "patch" } else { "patches" },
        crate::text::plural(images)
    )
}

/// For an object of an Argo CD Helm source: the chart and values it is rendered with (never a
/// value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChartTrace {
    /// `Application ns/name`.
    pub application: String,
    pub release: String,
    pub namespace: String,
    /// `name` and `version` of the chart's Chart.yaml, at the commit read.
    pub chart: String,
    pub chart_version: String,
    pub chart_path: String,
    /// In the order they are merged; later wins.
    pub values: Vec<ValuesSource>,
    /// A chart from a chart repository: its URL, the source's `targetRevision` and the
    /// version that picks there now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chart_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_constraint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_chart_version: Option<String>,
    /// Values files of other `ref` sources' repositories or revisions (see `ArgoHelm::values_repos`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values_repos: Vec<ValuesRepoTrace>,
}

/// The repository a chart in Git's `$ref/...` values files are read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValuesRepoTrace {
    /// The checkout's path, or the URL.
    pub repo: String,
    /// Where the locator keeps it open, and whether it is the user's checkout (HEAD is then
    /// its tip): what `watch` polls.
    #[serde(skip)]
    pub repo_key: String,
    #[serde(skip)]
    pub local: bool,
    /// The index of its `ref` source in `spec.sources`.
    pub source: usize,
    pub tracked_ref: String,
    /// What the Application synced of it, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synced_commit: Option<String>,
    pub tracked_commit: String,
}

/// A chart version a chart repository offers for a release's version constraint that the
/// release does not have: a change pending with no commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedChart {
    pub chart: String,
    pub version: String,
    /// `HelmRepository ns/name`.
    pub source: String,
    /// The version the release has.
    pub installed: String,
}

/// The dependency from a chart repository of a chart in Git whose template rendered an
/// object: the template is in its archive, not in Git.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DependencyTrace {
    /// Its name in the chart's Chart.yaml.
    pub chart: String,
    /// The alias helm rendered it under, when that is another name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The template's path inside its chart (`templates/configmap.yaml`).
    pub template: String,
    pub url: String,
    pub version_constraint: String,
    /// The version the constraint picks there now.
    pub desired_version: String,
    /// What the applied object's `helm.sh/chart` label says it was applied from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_label: Option<String>,
}

/// Where one part of the values comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValuesSource {
    /// `valuesFile`, `ConfigMap`, `Secret` or `values`.
    pub kind: String,
    /// The file, the object's name, or `spec.values`.
    pub name: String,
    /// The key read from a ConfigMap or Secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A Helm release record (Secret `sh.helm.release.v1.<release>.v<N>`), as far as we read it.
/// Its manifest may hold Secrets: it is compared, never shown.
#[derive(Clone, PartialEq)]
pub struct ReleaseRecord {
    pub revision: u64,
    pub status: String,
    pub chart_name: String,
    pub chart_version: String,
    /// The manifest's documents (post-rendered, as applied).
    pub manifest: Arc<Vec<Document>>,
    /// Whether the manifest was rendered as an upgrade, from Helm's description of the action
    /// that made the record: an install (also `install.replace` over an older release) is
    /// not, an upgrade is, and a rollback copies the manifest of the revision it rolls back
    /// to, an upgrade unless that is the first. Else (a description Helm did not write):
    /// every revision after the first. [`release_record`] follows a rollback to the record
    /// it went back to.
    pub rendered_as_upgrade: bool,
    /// The revision a rollback went back to (`Rollback to N`), whose manifest it copied.
    pub rolled_back_to: Option<u64>,
}

impl ReleaseRecord {
    /// The manifest's document for `key`; a document without a namespace is in `namespace`.
    pub fn find(&self, key: &ObjectKey, namespace: &str) -> Option<&Document> {
        self.manifest.iter().find(|d| {
            d.key().is_some_and(|mut k| {
                if k.namespace.is_none() && key.namespace.is_some() {
                    k.namespace = Some(namespace.to_owned());
                }
                k == *key
            })
        })
    }
}

/// Reads a release record's `data.release`: base64 (the API's) of base64 (Helm's) of gzip of
/// JSON. Never returns the values (`config`) it holds.
pub fn decode_release(secret: &Value) -> Result<ReleaseRecord, String> {
    let data = secret["data"]["release"]
        .as_str()
        .ok_or("it has no data.release")?;
    let helm_text = base64_bytes(data).ok_or("data.release is not base64")?;
    let helm_text = String::from_utf8(helm_text).map_err(|_| "data.release is not text")?;
    let gzipped = base64_bytes(&helm_text).ok_or("the release is not base64 inside")?;
    let mut json = Vec::new();
    if gzipped.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(gzipped.as_slice())
            .take(64 << 20)
            .read_to_end(&mut json)
            .map_err(|e| format!("the release is not valid gzip: {e}"))?;
    } else {
        json = gzipped;
    }
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(default)]
        manifest: String,
        #[serde(default)]
        version: u64,
        #[serde(default)]
        info: RawInfo,
        #[serde(default)]
        chart: RawChart,
    }
    #[derive(serde::Deserialize, Default)]
    struct RawInfo {
        #[serde(default)]
        status: String,
        #[serde(default)]
        description: String,
    }
    #[derive(serde::Deserialize, Default)]
    struct RawChart {
        #[serde(default)]
        metadata: RawMetadata,
    }
    #[derive(serde::Deserialize, Default)]
    struct RawMetadata {
        #[serde(default)]
        name: String,
        #[serde(default)]
        version: String,
    }
    let raw: Raw = serde_json::from_slice(&json)
        .map_err(|e| format!("the release is not the JSON Helm writes: {e}"))?;
    let manifest = crate::render::documents("release manifest", raw.manifest.as_bytes())
        // The error names a line of the manifest, never its text.
        .map_err(|e| format!("its manifest does not parse: {e}"))?;
    Ok(ReleaseRecord {
        revision: raw.version,
        rendered_as_upgrade: rendered_as_upgrade(raw.version, &raw.info.description),
        rolled_back_to: raw
            .info
            .description
            .strip_prefix("Rollback to ")
            .and_then(|to| to.trim().parse().ok()),
        status: raw.info.status,
        chart_name: raw.chart.metadata.name,
        chart_version: raw.chart.metadata.version,
        manifest: Arc::new(manifest),
    })
}

/// The abbreviated commit in the build metadata source-controller gives a chart packaged from
/// Git under `reconcileStrategy: Revision` (`0.1.0+e87e77fafdf6`, `0.1.0+e87e77fafdf6.2`).
fn release_commit(chart_version: &str) -> Option<&str> {
    let (_, build) = chart_version.split_once('+')?;
    let commit = build.split('.').next()?;
    (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())).then_some(commit)
}

/// [`ReleaseRecord::rendered_as_upgrade`], from the record's revision and `info.description`
/// as Helm 3 and 4 write it (never shown: a failure's description may quote a value).
fn rendered_as_upgrade(revision: u64, description: &str) -> bool {
    if let Some(to) = description.strip_prefix("Rollback to ") {
        return to.trim().parse::<u64>().map_or(revision > 1, |to| to > 1);
    }
    match description {
        "Install complete" | "Initial install underway" => false,
        "Upgrade complete" | "Preparing upgrade" => true,
        d if d.starts_with("Upgrade \"") => true,
        _ => revision > 1,
    }
}

/// Helm's and Flux's merge of values: maps merge key by key, anything else is replaced.
pub fn merge_values(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (k, v) in overlay {
                match base.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_values(existing, v)
                    }
                    _ => {
                        base.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

/// What `.Capabilities.APIVersions` holds in helm-controller (Helm's `GetVersionSet` over
/// discovery): every `group/version` served, and `group/version/Kind` of each of its kinds.
pub(super) fn api_versions(discovery: &crate::cluster::discovery::Discovery) -> Vec<String> {
    let mut out: Vec<String> = discovery
        .resources
        .iter()
        .flat_map(|r| {
            let gv = r.api_version();
            [format!("{gv}/{}", r.kind), gv]
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The release name helm-controller gives a HelmRelease: `spec.releaseName`, else
/// `<targetNamespace>-<name>` with a target namespace, else its name.
fn release_name(hr: &Value) -> String {
    let spec = &hr["spec"];
    let name = hr["metadata"]["name"].as_str().unwrap_or_default();
    if let Some(r) = spec["releaseName"].as_str().filter(|r| !r.is_empty()) {
        return r.to_owned();
    }
    match spec["targetNamespace"].as_str().filter(|t| !t.is_empty()) {
        Some(target) => format!("{target}-{name}"),
        None => name.to_owned(),
    }
}

/// The pointer of an object that the HelmRelease `namespace/name` made.
pub(super) async fn flux_helm(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    cache: &ReconcilerCache,
    namespace: &str,
    name: &str,
) -> Result<Pointer, SourceError> {
    let display = format!("HelmRelease {namespace}/{name}");
    let hr = reconciler_object(
        cluster,
        discovery,
        FLUX_HELM_RELEASE,
        (namespace, name),
        &display,
        "the object's helm-controller labels",
    )
    .await?;
    let spec = &hr["spec"];
    let target_ns = spec["targetNamespace"]
        .as_str()
        .filter(|t| !t.is_empty())
        .unwrap_or(namespace)
        .to_owned();
    let storage_ns = spec["storageNamespace"]
        .as_str()
        .filter(|t| !t.is_empty())
        .unwrap_or(namespace)
        .to_owned();
    let release = release_name(&hr);

    let chart = git_chart(cluster, discovery, &display, (namespace, name), spec).await?;
    let record = release_record(cluster, discovery, &storage_ns, &release, &display).await?;
    let values_from = values_from(cluster, discovery, namespace, &display, spec).await?;
    let kube_version = cache.server_version(cluster).await?;

    let own_pointer = own_pointer(cluster, discovery, cache, &hr).await?;
    let mut chart = chart;
    let mut applied_fallback = None;
    // Under `reconcileStrategy: Revision` the release's chart version names the commit it was
    // made from: after a failed upgrade rolled back, the HelmChart was built from a newer one.
    // (The HelmChart's full id is kept when it is that commit.)
    if chart.repository.is_none()
        && chart.version_build.revision
        && let Some(commit) = release_commit(&record.chart_version)
        && !chart
            .applied_commit
            .as_deref()
            .is_some_and(|built| built.starts_with(commit))
    {
        // Kept to read as applied when that commit is on no branch any more (force-pushed
        // away), with a warning: it cannot be fetched by its abbreviated id.
        applied_fallback = chart.applied_commit.replace(commit.to_owned());
    }
    if let Some(from) = &chart.repository {
        // Git holds only the HelmRelease: its values and version are what Git wants.
        let Some(own) = &own_pointer else {
            return Err(SourceError::Helm {
                release: display,
                reason: format!(
                    "its chart comes from {}, and the HelmRelease has no Flux Kustomization \
                     labels: nothing says where Git declares its values and version; apply it \
                     with a Flux Kustomization",
                    from.display
                ),
            });
        };
        chart.repo = own.repo.clone();
        chart.tracked_ref = own.tracked_ref.clone();
        chart.applied_commit = own.applied_commit.clone();
    }
    let helm = HelmSource {
        helm_release: (namespace.to_owned(), name.to_owned()),
        release,
        namespace: target_ns,
        chart_path: chart.path.clone(),
        values_files: chart.values_files,
        ignore_missing_values_files: chart.ignore_missing_values_files,
        values_from,
        inline_values: spec["values"].clone(),
        common_labels: string_map(&spec["commonMetadata"]["labels"]),
        common_annotations: string_map(&spec["commonMetadata"]["annotations"]),
        post_renderers: post_renderers_of(spec),
        record: Arc::new(record),
        kube_version,
        api_versions: Arc::new(api_versions(&discovery.snapshot())),
        own_pointer,
        chart_source: chart.source,
        repository: chart.repository.map(Arc::new),
        version_build: chart.version_build,
    };
    let mut p = Pointer::new(Rule::Helm);
    p.repo = chart.repo;
    p.tracked_ref = chart.tracked_ref;
    p.render_root = Some(chart.path);
    p.applied_commit = chart.applied_commit;
    p.applied_fallback = applied_fallback.map(|commit| {
        (
            commit,
            format!("the commit the HelmChart of {display} was last built from"),
        )
    });
    p.reconciler = Some(Reconciler {
        kind: "HelmRelease".into(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        status: ready_condition(&hr).map(|(s, _)| s),
        message: ready_condition(&hr).and_then(|(_, m)| m),
        suspended: spec["suspend"].as_bool().unwrap_or(false),
    });
    p.helm = Some(Arc::new(helm));
    Ok(p)
}

/// A HelmRelease's chart in Git, and the revision it was last built from; or a chart from a
/// HelmRepository (then the repository and commits are the HelmRelease's own).
struct GitChart {
    path: RepoPath,
    values_files: Vec<RepoPath>,
    ignore_missing_values_files: bool,
    repo: Option<crate::git::RepoUrl>,
    tracked_ref: Option<String>,
    /// The Git revision the HelmChart was last built from: what the applied release was made of.
    applied_commit: Option<String>,
    /// `GitRepository ns/name`.
    source: String,
    repository: Option<RepositoryChart>,
    version_build: VersionBuild,
}

/// The build metadata source-controller gives the version of a chart it builds from Git (its
/// Chart.yaml's version is rewritten so, and `.Chart.Version` renders it): the first 12 hex
/// of the commit with `reconcileStrategy: Revision`, then `.<the HelmChart's generation>`
/// when it has `valuesFiles` (`0.1.0+e87e77fafdf6.1`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionBuild {
    pub revision: bool,
    /// The HelmChart's generation, when its `valuesFiles` are set.
    pub generation: Option<i64>,
}

impl VersionBuild {
    /// The metadata for a chart built from `commit`; None when it gets none.
    pub fn at(&self, commit: &str) -> Option<String> {
        let mut out = String::new();
        if self.revision {
            out.push_str(commit.get(..12).unwrap_or(commit));
        }
        if let Some(generation) = self.generation {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&generation.to_string());
        }
        (!out.is_empty()).then_some(out)
    }
}

/// The chart of the HelmRelease `display` (`namespace/name`, `spec`): a GitRepository path
/// or a HelmRepository chart (`chart.spec`), or a HelmChart (`chartRef`) built from one.
async fn git_chart(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    display: &str,
    (namespace, name): (&str, &str),
    spec: &Value,
) -> Result<GitChart, SourceError> {
    let (chart_spec, chart_ns, chart_name) = if spec["chartRef"].is_object() {
        let kind = spec["chartRef"]["kind"].as_str().unwrap_or_default();
        if kind == "OCIRepository" {
            let ns = spec["chartRef"]["namespace"].as_str().unwrap_or(namespace);
            let name = spec["chartRef"]["name"].as_str().unwrap_or_default();
            let repository = oci_repository_chart(cluster, discovery, display, (ns, name)).await?;
            return Ok(GitChart {
                path: RepoPath::root()
                    .join(&repository.chart)
                    .map_err(|e| bad_ks(display, "spec.chartRef", e.to_string()))?,
                values_files: Vec::new(),
                ignore_missing_values_files: false,
                repo: None,
                tracked_ref: None,
                applied_commit: None,
                source: repository.display.clone(),
                repository: Some(repository),
                version_build: VersionBuild::default(),
            });
        }
        if kind != "HelmChart" {
            return Err(SourceError::Unsupported {
                what: format!(
                    "{display} with a chartRef to a {kind} (only a HelmChart or an OCIRepository \
                     is)"
                ),
            });
        }
        let ns = spec["chartRef"]["namespace"].as_str().unwrap_or(namespace);
        let name = spec["chartRef"]["name"].as_str().unwrap_or_default();
        let chart = get_helm_chart(cluster, discovery, display, ns, name)
            .await?
            .ok_or_else(|| SourceError::ReconcilerMissing {
                reconciler: format!("HelmChart {ns}/{name} (chartRef of {display})"),
            })?;
        (chart["spec"].clone(), ns.to_owned(), name.to_owned())
    } else {
        let chart_spec = spec["chart"]["spec"].clone();
        let ns = chart_spec["sourceRef"]["namespace"]
            .as_str()
            .unwrap_or(namespace)
            .to_owned();
        (chart_spec, ns, format!("{namespace}-{name}"))
    };
    let source_kind = chart_spec["sourceRef"]["kind"].as_str().unwrap_or_default();
    let source_name = chart_spec["sourceRef"]["name"].as_str().unwrap_or_default();
    let source_ns = chart_spec["sourceRef"]["namespace"]
        .as_str()
        .unwrap_or(&chart_ns)
        .to_owned();
    if source_kind == "HelmRepository" {
        let mut repository = repository_chart(
            cluster,
            discovery,
            display,
            (&source_ns, source_name),
            &chart_spec,
        )
        .await?;
        if !repository.values_files.is_empty() {
            // source-controller packages it again, its version with the HelmChart's generation.
            repository.version_build =
                get_helm_chart(cluster, discovery, display, &chart_ns, &chart_name)
                    .await?
                    .and_then(|c| c["metadata"]["generation"].as_i64())
                    .map(|g| g.to_string());
        }
        return Ok(GitChart {
            path: RepoPath::root()
                .join(&repository.chart)
                .map_err(|e| bad_ks(display, "spec.chart.spec.chart", e.to_string()))?,
            values_files: Vec::new(),
            ignore_missing_values_files: false,
            repo: None,
            tracked_ref: None,
            applied_commit: None,
            source: repository.display.clone(),
            repository: Some(repository),
            version_build: VersionBuild::default(),
        });
    }
    if source_kind != "GitRepository" {
        return Err(SourceError::Unsupported {
            what: format!(
                "{display} with a chart from a {} (only charts in a GitRepository or a \
                 HelmRepository are)",
                if source_kind.is_empty() {
                    "source it does not name"
                } else {
                    source_kind
                }
            ),
        });
    }
    let chart_path = RepoPath::root()
        .join(chart_spec["chart"].as_str().unwrap_or("."))
        .map_err(|e| bad_ks(display, "spec.chart.spec.chart", e.to_string()))?;
    let mut values_files = Vec::new();
    for file in chart_values_files(&chart_spec) {
        values_files.push(
            RepoPath::root()
                .join(&file)
                .map_err(|e| bad_ks(display, "valuesFiles", e.to_string()))?,
        );
    }
    let (repo, tracked_ref) =
        git_repository(cluster, discovery, &source_ns, source_name, display).await?;
    // The Git revision the chart was last built from: what the applied release was made of.
    let helm_chart = get_helm_chart(cluster, discovery, display, &chart_ns, &chart_name).await?;
    let applied_commit = match helm_chart.as_ref().and_then(|chart| {
        chart["status"]["observedSourceArtifactRevision"]
            .as_str()
            .filter(|r| !r.is_empty())
    }) {
        Some(rev) => Some(markers::parse_flux_revision(rev)?.commit),
        None => None,
    };
    let version_build = VersionBuild {
        revision: chart_spec["reconcileStrategy"] == "Revision",
        generation: (!values_files.is_empty())
            .then(|| {
                helm_chart
                    .as_ref()
                    .and_then(|c| c["metadata"]["generation"].as_i64())
            })
            .flatten(),
    };

    Ok(GitChart {
        path: chart_path,
        values_files,
        ignore_missing_values_files: chart_spec["ignoreMissingValuesFiles"] == true,
        repo: Some(repo),
        tracked_ref,
        applied_commit,
        source: format!("GitRepository {source_ns}/{source_name}"),
        repository: None,
        version_build,
    })
}

/// The Flux source `ns/name` of the CRD `crd` (`what`, named by `by`): a missing CRD or object
/// says which.
async fn chart_source(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    crd: &str,
    (what, by): (&str, &str),
    (ns, name): (&str, &str),
) -> Result<Value, SourceError> {
    let resource = discovery
        .resolve(crd)
        .await
        .map_err(|_| SourceError::MissingCrd {
            named: what.to_owned(),
            by: by.to_owned(),
            crd: crd.into(),
        })?;
    cluster
        .get(&resource, Some(ns), name)
        .await?
        .ok_or_else(|| SourceError::ReconcilerMissing {
            reconciler: format!("{what} ({by})"),
        })
}

/// The chart `chart_spec` names in the HelmRepository `ns/name`: its URL and credentials.
async fn repository_chart(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    display: &str,
    (ns, name): (&str, &str),
    chart_spec: &Value,
) -> Result<RepositoryChart, SourceError> {
    let what = format!("HelmRepository {ns}/{name}");
    let by = format!("the chart source of {display}");
    let repository = chart_source(
        cluster,
        discovery,
        FLUX_HELM_REPOSITORY,
        (&what, &by),
        (ns, name),
    )
    .await?;
    let spec = &repository["spec"];
    let unsupported = |how: &str| {
        Err(SourceError::Unsupported {
            what: format!("{display} with a chart from {what} {how}"),
        })
    };
    let oci = spec["type"] == "oci";
    if oci && !matches!(spec["provider"].as_str(), None | Some("" | "generic")) {
        return unsupported(&format!(
            "with spec.provider {} (its cloud provider's credentials)",
            spec["provider"]
        ));
    }
    if spec["certSecretRef"].is_object() {
        return unsupported("with a certSecretRef (its own TLS certificates)");
    }
    let url = spec["url"].as_str().unwrap_or_default();
    // Never shown, so refused before the URL is named in any message.
    if url
        .split_once("://")
        .is_some_and(|(_, rest)| rest.split('/').next().is_some_and(|h| h.contains('@')))
    {
        return unsupported("whose spec.url holds credentials (put them in its secretRef)");
    }
    let kind = if oci {
        // `spec.insecure`: the registry speaks plain HTTP.
        let repo = crate::render::oci::OciRepo::parse(url, spec["insecure"] == true)
            .map_err(|e| bad_ks(display, &format!("spec.url of {what}"), e))?;
        crate::render::chart_repo::RepoKind::Oci(repo)
    } else if url.starts_with("http://") || url.starts_with("https://") {
        crate::render::chart_repo::RepoKind::Index
    } else {
        return Err(bad_ks(
            display,
            &format!("spec.url of {what}"),
            format!("{url:?} is not an http:// or https:// URL (an oci:// one needs type: oci)"),
        ));
    };
    let registry = match &kind {
        crate::render::chart_repo::RepoKind::Oci(repo) => Some(repo.registry.as_str()),
        crate::render::chart_repo::RepoKind::Index => None,
    };
    let pass_to_any_host = spec["passCredentials"] == true;
    let (credentials, unreadable_secret) = match spec["secretRef"]["name"].as_str() {
        Some(secret) => match credentials(cluster, discovery, (ns, secret), &what, registry).await?
        {
            Some(mut c) => {
                c.pass_to_any_host = pass_to_any_host;
                (Some(c), None)
            }
            None => (None, Some(format!("{ns}/{secret}"))),
        },
        None => (None, None),
    };
    Ok(RepositoryChart {
        display: what,
        url: url.trim_end_matches('/').to_owned(),
        kind,
        chart: chart_spec["chart"].as_str().unwrap_or_default().to_owned(),
        version: chart_spec["version"].as_str().unwrap_or("*").to_owned(),
        pin: None,
        digest_in_version: false,
        credentials,
        unreadable_secret,
        user_config_fallback: false,
        values_files: chart_values_files(chart_spec),
        ignore_missing_values_files: chart_spec["ignoreMissingValuesFiles"] == true,
        version_build: None,
    })
}

/// `valuesFiles` (and the older `valuesFile`) of a HelmChart spec, in order, as
/// source-controller reads them (`BuildOptions.GetValuesFiles`): a list that is only
/// `values.yaml` is none, so the chart is neither packaged again nor given build metadata.
fn chart_values_files(chart_spec: &Value) -> Vec<String> {
    // The older `valuesFile` goes first, as source-controller's v1beta2 put it.
    let files: Vec<String> = chart_spec
        .get("valuesFile")
        .into_iter()
        .chain(chart_spec["valuesFiles"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    match files.as_slice() {
        [only]
            if RepoPath::root()
                .join(only)
                .is_ok_and(|p| p.as_str() == "values.yaml") =>
        {
            Vec::new()
        }
        _ => files,
    }
}

/// The chart of the OCIRepository `ns/name` (a HelmRelease's `chartRef`): its registry, the
/// chart (its URL's last part), the `ref` that picks the version, and its credentials.
async fn oci_repository_chart(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    display: &str,
    (ns, name): (&str, &str),
) -> Result<RepositoryChart, SourceError> {
    use crate::render::chart_repo::{RepoKind, Wanted};
    let what = format!("OCIRepository {ns}/{name}");
    let by = format!("the chartRef of {display}");
    let object = chart_source(
        cluster,
        discovery,
        FLUX_OCI_REPOSITORY,
        (&what, &by),
        (ns, name),
    )
    .await?;
    let spec = &object["spec"];
    let unsupported = |how: &str| {
        Err(SourceError::Unsupported {
            what: format!("{display} with a chart from {what} {how}"),
        })
    };
    if !matches!(spec["provider"].as_str(), None | Some("" | "generic")) {
        return unsupported(&format!(
            "with spec.provider {} (its cloud provider's credentials)",
            spec["provider"]
        ));
    }
    if spec["certSecretRef"].is_object() {
        return unsupported("with a certSecretRef (its own TLS certificates)");
    }
    if spec["ref"]["semverFilter"]
        .as_str()
        .is_some_and(|f| !f.is_empty())
    {
        return unsupported("with ref.semverFilter");
    }
    if let Some(media) = spec["layerSelector"]["mediaType"].as_str()
        && media != crate::render::oci::CHART_LAYER
    {
        return unsupported(&format!(
            "whose layerSelector picks {media} (a chart is {})",
            crate::render::oci::CHART_LAYER
        ));
    }
    let url = spec["url"].as_str().unwrap_or_default();
    let (base, chart) = url
        .trim_end_matches('/')
        .rsplit_once('/')
        .filter(|(base, _)| base.len() > "oci:/".len())
        .ok_or_else(|| {
            bad_ks(
                display,
                &format!("spec.url of {what}"),
                format!("{url:?} is not oci://HOST/REPOSITORY"),
            )
        })?;
    let repo = crate::render::oci::OciRepo::parse(base, spec["insecure"] == true)
        .map_err(|e| bad_ks(display, &format!("spec.url of {what}"), e))?;
    // source-controller's order: a digest, else a semver range, else a tag (`latest`).
    let reference = &spec["ref"];
    let text = |k: &str| {
        reference[k]
            .as_str()
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let (version, pin) = match (text("digest"), text("semver"), text("tag")) {
        (Some(digest), _, _) => (digest.clone(), Some(Wanted::Digest(digest))),
        (None, Some(semver), _) => (semver, None),
        (None, None, tag) => {
            let tag = tag.unwrap_or_else(|| "latest".to_owned());
            (tag.clone(), Some(Wanted::Tag(tag)))
        }
    };
    let registry = repo.registry.clone();
    let (credentials, unreadable_secret) = match spec["secretRef"]["name"].as_str() {
        Some(secret) => {
            match credentials(cluster, discovery, (ns, secret), &what, Some(&registry)).await? {
                Some(c) => (Some(c), None),
                None => (None, Some(format!("{ns}/{secret}"))),
            }
        }
        None => (None, None),
    };
    Ok(RepositoryChart {
        display: what,
        url: url.trim_end_matches('/').to_owned(),
        kind: RepoKind::Oci(repo),
        chart: chart.to_owned(),
        version,
        pin,
        digest_in_version: true,
        credentials,
        unreadable_secret,
        user_config_fallback: false,
        values_files: Vec::new(),
        ignore_missing_values_files: false,
        version_build: None,
    })
}

/// The basic-auth `username` and `password` of the Secret `ns/secret`, the secretRef of the
/// HelmRepository `what` (for an OCI `registry`, also its entry in a `.dockerconfigjson`);
/// None when the user may not read it. Never shown.
async fn credentials(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    (ns, secret): (&str, &str),
    what: &str,
    registry: Option<&str>,
) -> Result<Option<crate::render::chart_repo::Credentials>, SourceError> {
    let resource = discovery
        .resolve("secrets")
        .await
        .map_err(|e| SourceError::Unsupported {
            what: format!("reading the secretRef of {what}: {e}"),
        })?;
    let object = match cluster.get(&resource, Some(ns), secret).await {
        Ok(Some(object)) => object,
        Ok(None) => {
            return Err(SourceError::ReconcilerMissing {
                reconciler: format!("Secret {ns}/{secret} (the secretRef of {what})"),
            });
        }
        Err(ClusterError::Forbidden { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let field = |key: &str| {
        object["data"][key]
            .as_str()
            .and_then(base64_bytes)
            .and_then(|b| String::from_utf8(b).ok())
    };
    let from = format!("Secret {ns}/{secret}");
    if let (Some(registry), Some(config)) = (registry, field(".dockerconfigjson")) {
        return match crate::render::oci::docker_config_credentials(&config, registry, &from) {
            Some(found) => Ok(Some(found)),
            None => Err(SourceError::Unsupported {
                what: format!(
                    "Secret {ns}/{secret} (the secretRef of {what}), whose .dockerconfigjson has \
                     no credentials for {registry}"
                ),
            }),
        };
    }
    match (field("username"), field("password")) {
        (Some(username), Some(password)) => Ok(Some(crate::render::chart_repo::Credentials {
            username,
            password,
            from,
            pass_to_any_host: false,
        })),
        _ => Err(SourceError::Unsupported {
            what: format!(
                "Secret {ns}/{secret} (the secretRef of {what}) without username and password{} \
                 (only basic auth is)",
                if registry.is_some() {
                    " or .dockerconfigjson"
                } else {
                    ""
                }
            ),
        }),
    }
}

/// The HelmRelease's own source, by its Flux Kustomization labels (a Kustomization usually
/// applied it); None when nothing leads there.
async fn own_pointer(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    cache: &ReconcilerCache,
    hr: &Value,
) -> Result<Option<Box<Pointer>>, SourceError> {
    let label = |k: &str| {
        [markers::FLUX_NAME, markers::FLUX_NAMESPACE]
            .contains(&k)
            .then(|| hr["metadata"]["labels"][k].as_str().map(str::to_owned))
            .flatten()
    };
    if label(markers::FLUX_NAME).is_none() {
        return Ok(None);
    }
    match Box::pin(super::reconciler::reconciler_pointer(
        cluster,
        discovery,
        cache,
        hr,
        ObjectKey::of(hr).as_ref(),
        &label,
        &|_| None,
    ))
    .await
    {
        Ok(pointer) => Ok(pointer.map(Box::new)),
        // Its Kustomization substitutes values from a Secret the user may not read: which of
        // the chart's values came from it is unknown.
        Err(e @ SourceError::SecretUnreadable(_)) => Err(e),
        Err(_) => Ok(None),
    }
}

async fn get_helm_chart(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    display: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, SourceError> {
    let resource =
        discovery
            .resolve(FLUX_HELM_CHART)
            .await
            .map_err(|_| SourceError::MissingCrd {
                named: format!("HelmChart {namespace}/{name}"),
                by: format!("the chart of {display}"),
                crd: FLUX_HELM_CHART.into(),
            })?;
    Ok(cluster.get(&resource, Some(namespace), name).await?)
}

/// Each `valuesFrom` ConfigMap or Secret key, parsed as YAML, in order. A Secret's values are
/// read to render only.
async fn values_from(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    namespace: &str,
    display: &str,
    spec: &Value,
) -> Result<Vec<(ValuesSource, Value)>, SourceError> {
    let mut out = Vec::new();
    for from in spec["valuesFrom"].as_array().into_iter().flatten() {
        let kind = from["kind"].as_str().unwrap_or_default();
        let name = from["name"].as_str().unwrap_or_default();
        let key = from["valuesKey"].as_str().unwrap_or("values.yaml");
        let optional = from["optional"].as_bool().unwrap_or(false);
        if !matches!(kind, "ConfigMap" | "Secret") {
            continue;
        }
        let source = ValuesSource {
            kind: kind.to_owned(),
            name: name.to_owned(),
            key: Some(key.to_owned()),
        };
        let what = format!("valuesFrom of {display}");
        let object = match referenced(cluster, discovery, from, namespace, &what).await {
            Ok(Some(object)) => object,
            Ok(None) => continue,
            Err(SourceError::Cluster(ClusterError::Forbidden { .. })) => {
                let reason = format!(
                    "you may not read {kind} {namespace}/{name} (its valuesFrom), which its \
                     chart is rendered with; ask for get on {}s in {namespace}",
                    kind.to_lowercase()
                );
                return Err(match kind {
                    "Secret" => SourceError::SecretUnreadable(format!("{display}: {reason}")),
                    _ => SourceError::Helm {
                        release: display.to_owned(),
                        reason,
                    },
                });
            }
            Err(e) => return Err(e),
        };
        let text = match kind {
            "Secret" => object["data"][key]
                .as_str()
                .and_then(base64_bytes)
                .and_then(|b| String::from_utf8(b).ok()),
            _ => object["data"][key].as_str().map(str::to_owned),
        };
        let Some(text) = text else {
            if optional {
                continue;
            }
            return Err(SourceError::ReconcilerMissing {
                reconciler: format!(
                    "key {key} of {kind} {namespace}/{name} (valuesFrom of {display})"
                ),
            });
        };
        let mut value: Value = if from["targetPath"].is_string() {
            Value::String(text)
        } else {
            // Never the text in the error: it may be a Secret's.
            serde_saphyr::from_str(&text).map_err(|_| SourceError::Unsupported {
                what: format!(
                    "key {key} of {kind} {namespace}/{name} (valuesFrom of {display}) as \
                     anything but a YAML map of values"
                ),
            })?
        };
        if let Some(path) = from["targetPath"].as_str() {
            for part in path.rsplit('.') {
                value = serde_json::json!({ part: value });
            }
        }
        out.push((source, value));
    }
    Ok(out)
}

/// The latest deployed record of `release` in `storage_ns`.
async fn release_record(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    storage_ns: &str,
    release: &str,
    display: &str,
) -> Result<ReleaseRecord, SourceError> {
    let resource = discovery
        .resolve("secrets")
        .await
        .map_err(|e| SourceError::Unsupported {
            what: format!("reading Helm release records: {e}"),
        })?;
    let selector = format!("owner=helm,name={release}");
    let secrets = match cluster
        .list(&resource, Some(storage_ns), Some(&selector))
        .await
    {
        Ok(s) => s,
        // The records hold the release's values, those from Secrets too.
        Err(ClusterError::Forbidden { .. }) => {
            return Err(SourceError::SecretUnreadable(format!(
                "{display}: you may not list Secrets in namespace {storage_ns}, where Helm keeps \
                 the release records of {release}; ask for get/list on secrets there"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let latest = secrets
        .iter()
        .filter(|s| s["metadata"]["labels"]["status"] == "deployed")
        .max_by_key(|s| {
            s["metadata"]["labels"]["version"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .ok_or_else(|| SourceError::Helm {
            release: display.to_owned(),
            reason: format!(
                "no deployed release record of {release} in namespace {storage_ns} \
                 (Secret sh.helm.release.v1.{release}.v<N>): it has not been installed yet"
            ),
        })?;
    let mut record = decode_release(latest).map_err(|reason| SourceError::Helm {
        release: display.to_owned(),
        reason: format!(
            "its release record {} cannot be read: {reason}",
            latest["metadata"]["name"].as_str().unwrap_or_default()
        ),
    })?;
    record.rendered_as_upgrade = rolled_back_as(&record, &secrets);
    Ok(record)
}

/// Whether `record`'s manifest was rendered as an upgrade, a rollback followed back through
/// `secrets` (the release's records) to the record whose manifest it copied: that one's own
/// action. A record pruned from the history (`maxHistory`), or one that cannot be read, ends
/// the chain with what the last rollback's revision says (an upgrade unless it is the first).
fn rolled_back_as(record: &ReleaseRecord, secrets: &[crate::cluster::LiveObject]) -> bool {
    let mut upgrade = record.rendered_as_upgrade;
    let (mut at, mut to) = (record.revision, record.rolled_back_to);
    // Each step goes to an older revision, so the chain ends.
    while let Some(n) = to.filter(|n| *n < at) {
        let earlier = secrets
            .iter()
            .find(|s| s["metadata"]["labels"]["version"].as_str() == Some(&n.to_string()))
            .and_then(|s| decode_release(s).ok());
        let Some(earlier) = earlier else { break };
        upgrade = earlier.rendered_as_upgrade;
        (at, to) = (earlier.revision, earlier.rolled_back_to);
    }
    upgrade
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Write;

    fn record_secret(release: &Value) -> Value {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(release.to_string().as_bytes()).unwrap();
        let inner = crate::drift::base64(&gz.finish().unwrap());
        json!({"data": {"release": crate::drift::base64(inner.as_bytes())}})
    }

    #[test]
    fn a_release_record_is_read_without_helm() {
        let secret = record_secret(&json!({
            "name": "web", "version": 3, "info": {"status": "deployed"},
            "chart": {"metadata": {"name": "web", "version": "0.1.0"}},
            "config": {"password": "hunter2"},
            "manifest": "---\n# Source: web/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  a: b\n",
        }));
        let record = decode_release(&secret).unwrap();
        assert_eq!(record.revision, 3);
        assert_eq!(record.status, "deployed");
        assert_eq!(
            (record.chart_name.as_str(), record.chart_version.as_str()),
            ("web", "0.1.0")
        );
        assert_eq!(record.manifest.len(), 1);
        let key = ObjectKey::of(&json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "web", "namespace": "shop"}}))
        .unwrap();
        assert_eq!(record.find(&key, "shop").unwrap().object["data"]["a"], "b");
        assert!(record.find(&key, "other").is_none());
    }

    #[test]
    fn a_damaged_record_says_why_without_its_content() {
        let e = decode_release(&json!({"data": {"release": "!!"}}))
            .err()
            .expect("an error");
        assert_eq!(e, "data.release is not base64");
        let e = decode_release(&json!({"data": {}}))
            .err()
            .expect("an error");
        assert_eq!(e, "it has no data.release");
    }

    #[test]
    fn values_merge_as_helm_merges_them() {
        let mut base = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
        merge_values(
            &mut base,
            &json!({"a": {"c": [3], "e": true}, "d": {"f": 1}}),
        );
        assert_eq!(
            base,
            json!({"a": {"b": 1, "c": [3], "e": true}, "d": {"f": 1}})
        );
    }

    fn source() -> HelmSource {
        HelmSource {
            helm_release: ("flux".into(), "web".into()),
            release: "shop-web".into(),
            namespace: "shop".into(),
            chart_path: RepoPath::parse("charts/web").unwrap(),
            values_files: vec![],
            ignore_missing_values_files: false,
            values_from: vec![
                (
                    ValuesSource {
                        kind: "ConfigMap".into(),
                        name: "a".into(),
                        key: Some("values.yaml".into()),
                    },
                    json!({"team": "a", "image": {"tag": "1"}}),
                ),
                (
                    ValuesSource {
                        kind: "Secret".into(),
                        name: "b".into(),
                        key: Some("values.yaml".into()),
                    },
                    json!({"team": "b", "password": "hunter2"}),
                ),
            ],
            inline_values: json!({"image": {"repo": "nginx"}}),
            common_labels: BTreeMap::from([("tier".into(), "web".into())]),
            common_annotations: BTreeMap::new(),
            post_renderers: vec![],
            record: Arc::new(ReleaseRecord {
                revision: 1,
                status: "deployed".into(),
                chart_name: "web".into(),
                chart_version: "0.1.0".into(),
                manifest: Arc::new(vec![]),
                rendered_as_upgrade: false,
                rolled_back_to: None,
            }),
            kube_version: "v1.35.4".into(),
            api_versions: Arc::new(vec![]),
            own_pointer: None,
            chart_source: "GitRepository flux/apps".into(),
            repository: None,
            version_build: VersionBuild::default(),
        }
    }

    #[test]
    fn values_are_composed_in_helm_controllers_order_and_never_debug_printed() {
        let helm = source();
        assert_eq!(
            helm.composed_values(&helm.inline_values),
            json!({"team": "b", "password": "hunter2", "image": {"tag": "1", "repo": "nginx"}})
        );
        assert!(!format!("{helm:?}").contains("hunter2"));
        let kinds: Vec<String> = helm.values_sources().into_iter().map(|s| s.kind).collect();
        assert_eq!(kinds, ["ConfigMap", "Secret", "values"]);
    }

    #[test]
    fn values_files_are_read_as_source_controller_reads_them() {
        let files = |spec: Value| chart_values_files(&spec);
        // Only the chart's own values.yaml: no list, so no packaging and no build metadata.
        assert!(files(json!({"valuesFiles": ["values.yaml"]})).is_empty());
        assert!(files(json!({"valuesFiles": ["./values.yaml"]})).is_empty());
        assert!(files(json!({"valuesFile": "values.yaml"})).is_empty());
        assert_eq!(
            files(json!({"valuesFiles": ["values.yaml", "prod.yaml"]})),
            ["values.yaml", "prod.yaml"]
        );
        assert_eq!(
            files(json!({"valuesFile": "a.yaml", "valuesFiles": ["b.yaml"]})),
            ["a.yaml", "b.yaml"]
        );
        assert_eq!(
            files(json!({"valuesFiles": ["charts/values.yaml"]})),
            ["charts/values.yaml"]
        );
    }

    #[test]
    fn a_revision_chart_version_names_the_commit_of_the_release() {
        assert_eq!(release_commit("0.1.0+e87e77fafdf6"), Some("e87e77fafdf6"));
        assert_eq!(release_commit("0.1.0+e87e77fafdf6.2"), Some("e87e77fafdf6"));
        assert_eq!(release_commit("0.1.0+2"), None);
        assert_eq!(release_commit("0.1.0"), None);
        assert_eq!(release_commit("0.1.0+ghijklmnopqr"), None);
    }

    #[test]
    fn an_upgrade_is_read_from_the_action_that_made_the_record() {
        for (revision, description, upgrade) in [
            (1, "Install complete", false),
            // install.replace over an uninstalled or failed release.
            (4, "Install complete", false),
            (2, "Upgrade complete", true),
            (3, "Upgrade \"web\" failed: cannot patch", true),
            // A rollback copies the manifest of the revision it goes back to.
            (3, "Rollback to 1", false),
            // Alone, revision 3 is taken for an upgrade (`rolled_back_as` follows it).
            (5, "Rollback to 3", true),
            (2, "", true),
            (1, "", false),
        ] {
            assert_eq!(
                rendered_as_upgrade(revision, description),
                upgrade,
                "{revision} {description}"
            );
        }
    }

    #[test]
    fn a_rollback_renders_as_the_record_it_went_back_to() {
        let record = |version: u64, description: &str| {
            let mut s = record_secret(&json!({
                "name": "web", "version": version,
                "info": {"status": "superseded", "description": description},
                "manifest": "",
            }));
            s["metadata"]["labels"]["version"] = version.to_string().into();
            s
        };
        let history = [
            record(1, "Install complete"),
            record(2, "Upgrade complete"),
            record(3, "Rollback to 1"),
            record(4, "Upgrade \"web\" failed: port out of range"),
            record(5, "Rollback to 3"),
            record(6, "Rollback to 2"),
            record(7, "Rollback to 5"),
            // install.replace after an uninstall keeps the revision count.
            record(8, "Install complete"),
            record(9, "Rollback to 8"),
            // Pointing at itself or a newer one: not followed.
            record(10, "Rollback to 10"),
        ];
        let as_upgrade = |n: usize, secrets: &[Value]| {
            rolled_back_as(&decode_release(&history[n - 1]).unwrap(), secrets)
        };
        for (revision, upgrade) in [(5, false), (6, true), (7, false), (9, false), (10, true)] {
            assert_eq!(
                as_upgrade(revision, &history),
                upgrade,
                "revision {revision}"
            );
        }
        // Revision 3 pruned: 5 goes back to 3, taken for an upgrade as it is not the first.
        let pruned: Vec<Value> = history
            .iter()
            .filter(|s| s["metadata"]["labels"]["version"] != "3")
            .cloned()
            .collect();
        assert!(as_upgrade(5, &pruned));
        assert!(!as_upgrade(3, &pruned));
    }

    #[test]
    fn secret_texts_are_the_secrets_values_and_secret_substitutions() {
        let mut helm = source();
        let mut own = Pointer::new(Rule::Flux);
        own.substitute = Some(BTreeMap::from([
            ("cluster".into(), "prod".into()),
            ("token".into(), "s3cr3t".into()),
        ]));
        own.secret_variables = vec!["token".into()];
        helm.own_pointer = Some(Box::new(own));
        // The ConfigMap's values and the inline ones are not secret; the Secret's team is.
        assert_eq!(helm.secret_texts(), ["hunter2", "b", "s3cr3t"]);
    }

    #[test]
    fn applied_objects_carry_the_post_renderers_labels_and_helms_markers() {
        let mut object =
            json!({"metadata": {"name": "web", "labels": {"tier": "x", "app": "web"}}});
        source().as_applied(&mut object);
        assert_eq!(
            object["metadata"],
            json!({"name": "web",
                "labels": {"app": "web", "tier": "web", "helm.toolkit.fluxcd.io/name": "web",
                    "helm.toolkit.fluxcd.io/namespace": "flux", "app.kubernetes.io/managed-by": "Helm"},
                "annotations": {"meta.helm.sh/release-name": "shop-web",
                    "meta.helm.sh/release-namespace": "shop"}})
        );
    }

    #[test]
    fn release_names_follow_helm_controller() {
        let hr = |spec: Value| json!({"metadata": {"name": "web"}, "spec": spec});
        assert_eq!(release_name(&hr(json!({}))), "web");
        assert_eq!(
            release_name(&hr(json!({"targetNamespace": "shop"}))),
            "shop-web"
        );
        assert_eq!(
            release_name(&hr(json!({"targetNamespace": "shop", "releaseName": "w"}))),
            "w"
        );
    }
}
