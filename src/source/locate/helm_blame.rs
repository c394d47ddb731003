//! Git's side of `blame` for an object of a Flux HelmRelease: the values sources in merge
//! order with each value's line, and the chart rendered as applied and once per value with
//! only that value changed (`crate::blame::helm` joins them).

use std::path::Path;

use serde_json::Value;

use super::{Located, Locator};
use crate::blame::helm::{self as chart_blame, HelmSide, ValueLeaf, ValuePlace, ValuesLayer};
use crate::fields::lines::LineIndex;
use crate::fields::{FieldPath, Segment};
use crate::git::{BlameLine, RepoPath};
use crate::object::ObjectKey;
use crate::render::helm::{ArgoValuesFile, Parameter};
use crate::render::{self, Document};
use crate::source::helm::HelmSource;
use crate::source::reconciler::{ArgoRepositoryChart, ValuesIn};
use crate::source::{ArgoHelm, Pointer, SourceError};

/// More values than this are not probed one by one in a run: blame says so.
const MAX_PROBES: usize = 300;

/// Where a value of one values source is set, by its path in the values.
type PlaceOf = Box<dyn Fn(&[String]) -> Option<ValuePlace>>;

/// A values source as blame reads it: its values and where each of its lines is.
struct Layer {
    values: Value,
    place: PlaceOf,
}

/// A values file's text (`what`, for the error) as values: null when empty.
fn parse_values(
    text: &str,
    what: &str,
    failed: &dyn Fn(String) -> SourceError,
) -> Result<Value, SourceError> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_saphyr::from_str(text).map_err(|e| {
        failed(format!(
            "its {what} is not YAML: {}",
            crate::text::single_line(&e.to_string())
        ))
    })
}

/// A values file inside a chart's archive, as a layer: each value is `source`'s, with no line.
fn chart_values_layer(
    bytes: &[u8],
    source: String,
    failed: &dyn Fn(String) -> SourceError,
) -> Result<Layer, SourceError> {
    let values = parse_values(&String::from_utf8_lossy(bytes), &source, failed)?;
    Ok(Layer {
        values,
        place: Box::new(move |_: &[String]| {
            Some(ValuePlace::Cluster {
                source: source.clone(),
            })
        }),
    })
}

/// The place of `path` (under `under`) in a file of Git (of `repo` when it is another than
/// the object's source's), by its line index and blame.
fn git_place(
    (file, repo): (String, Option<String>),
    index: LineIndex,
    blame: Vec<BlameLine>,
    under: FieldPath,
) -> PlaceOf {
    Box::new(move |path: &[String]| {
        let line = index.line(&chart_blame::field_path(&under, path))?;
        let blame = blame.get(line.checked_sub(1)?)?.clone();
        Some(ValuePlace::Git {
            file: file.clone(),
            line,
            blame,
            repo: repo.clone(),
        })
    })
}

/// A values file's text as a layer with each value's line (of `repo` when it is another than
/// the object's source's).
fn values_layer(
    text: &[u8],
    blame: Vec<BlameLine>,
    (file, repo): (&RepoPath, Option<String>),
    failed: &dyn Fn(String) -> SourceError,
) -> Result<Layer, SourceError> {
    let text = String::from_utf8_lossy(text).into_owned();
    let what = format!("values file {}", file.as_str());
    let values = parse_values(&text, &what, failed)?;
    let lines = (1, text.lines().count().max(1));
    let index = LineIndex::of_document(&text, lines).unwrap_or_default();
    let place = git_place(
        (file.as_str().to_owned(), repo),
        index,
        blame,
        FieldPath::root(),
    );
    Ok(Layer { values, place })
}

impl Locator {
    /// What the chart of `located` (an object of the HelmRelease `pointer` leads to) proves
    /// about each of its lines, as applied. Errors say why no line of it can be proven.
    pub fn helm_blame(
        &self,
        pointer: &Pointer,
        located: &Located,
        key: &ObjectKey,
        blame_cache: Option<&Path>,
    ) -> Result<(HelmSide, Vec<String>), SourceError> {
        let helm = pointer
            .helm
            .as_ref()
            .ok_or_else(|| SourceError::Repeated("not an object of a HelmRelease".into()))?;
        let binary = self.helm_binary(helm)?;
        let failed = |reason: String| SourceError::Helm {
            release: helm.display(),
            reason,
        };

        let mut layers = Vec::new();
        for file in &helm.values_files {
            match self.values_file_layer(located, file, blame_cache, &failed) {
                // Skipped by source-controller too.
                Err(SourceError::Git(crate::git::GitError::FileNotFound { .. }))
                    if helm.ignore_missing_values_files => {}
                layer => layers.push(layer?),
            }
        }
        for (source, values) in &helm.values_from {
            let source = match &source.key {
                Some(k) => format!("{} {} key {k}", source.kind, source.name),
                None => format!("{} {}", source.kind, source.name),
            };
            layers.push(Layer {
                values: values.clone(),
                place: Box::new(move |_: &[String]| {
                    Some(ValuePlace::Cluster {
                        source: source.clone(),
                    })
                }),
            });
        }
        // spec.values: as Git wrote it in the HelmRelease's own file, as applied.
        let (inline, inline_place) = self.inline_values(helm, blame_cache);
        layers.push(Layer {
            values: inline.clone(),
            place: inline_place,
        });

        // What helm reads on stdin as applied; each probe changes one value on top of it,
        // which is what changing its line in the winning source would do.
        let base = helm.composed_values(&inline);
        let chart = match &helm.repository {
            Some(from) => format!(
                "chart {} {} from {}",
                from.chart, helm.record.chart_version, from.display
            ),
            None => format!(
                "chart {} {}",
                helm.chart_path.as_str(),
                helm.record.chart_version
            ),
        };
        let proof = Proof {
            what: helm.display(),
            namespace: &helm.namespace,
            key,
            layers,
            base,
            parameters: &[],
            chart,
            template: located.file.clone(),
            post_renderers: &helm.post_renderers,
            post: self.post_renderer_steps(helm, blame_cache),
            chart_path: match &helm.repository {
                Some(from) => {
                    RepoPath::parse(&from.chart).unwrap_or_else(|_| helm.chart_path.clone())
                }
                None => helm.chart_path.clone(),
            },
            secrets: helm.secret_texts(),
        };
        // The dependency that rendered it, at the version it was applied from.
        let applied = helm.record.find(key, &helm.namespace);
        let label = applied.and_then(|d| d.object["metadata"]["labels"]["helm.sh/chart"].as_str());
        proof.run(|sets| {
            let values: Vec<Value> = sets.iter().map(|(v, _)| v.clone()).collect();
            self.render_each(helm, (located, label), &binary, &values)
        })
    }

    /// [`Locator::helm_blame`] for an object of an Argo CD Helm source (`h`, of `pointer`):
    /// its `valueFiles` lines in Git, `helm.values` and each parameter of the Application.
    pub fn argo_helm_blame(
        &self,
        pointer: &Pointer,
        located: &Located,
        (key, live): (&ObjectKey, &Value),
        blame_cache: Option<&Path>,
    ) -> Result<(HelmSide, Vec<String>), SourceError> {
        let h = pointer
            .argo_helm
            .as_ref()
            .ok_or_else(|| SourceError::Repeated("not an object of an Argo CD chart".into()))?;
        let chart = located
            .chart
            .as_ref()
            .ok_or_else(|| SourceError::Repeated("not rendered from a chart".into()))?;
        let failed = |reason: String| SourceError::Helm {
            release: h.application.clone(),
            reason,
        };
        let binary = self.helm.clone().ok_or_else(|| {
            failed("helm is not on PATH: install Helm 3 or 4 and run again".into())
        })?;
        // A chart from a chart repository with no `ref` source reads nothing from Git.
        let git = match (&h.chart, self.repo_of(located)) {
            (Some(_), None) if h.value_files.iter().all(|f| f.within == ValuesIn::Chart) => None,
            (_, Some(repo)) => Some((repo, located.read_at.parse::<crate::git::CommitId>()?)),
            (_, None) => {
                return Err(SourceError::Repeated("the repository is not open".into()));
            }
        };
        let chart_name = match (&h.chart, &chart.chart_url) {
            (Some(c), Some(url)) => {
                format!("chart {} {} from {url}", c.from.chart, chart.chart_version)
            }
            _ => format!("chart {} {}", chart.chart_path, chart.chart_version),
        };
        // The archive of the version synced (not the one the constraint picks now), of a chart
        // from a chart repository: rendered, and the values files inside it read.
        let archive = match &h.chart {
            Some(c) => Some(self.synced_archive(h, c, &chart.chart_version, &failed)?),
            None => None,
        };
        // Values files of other `ref` sources' repositories, as synced.
        let values_repos = self.git_chart_values_repos(pointer, key)?;
        let values_at: Vec<(&crate::git::Repo, crate::git::CommitId)> = values_repos
            .iter()
            .map(|v| (v.repo.as_ref(), v.commits.read_at()))
            .collect();
        let mut layers = Vec::new();
        let (files, _) =
            super::argo::values_sources(h, git.as_ref().map(|(r, c)| (r.as_ref(), *c)), &values_at);
        for file in &files {
            match file {
                ArgoValuesFile::Git(path) => {
                    layers.push(self.values_file_layer(located, path, blame_cache, &failed)?);
                }
                ArgoValuesFile::ValuesRepo(i, path) => {
                    let (repo, commit) = values_at[*i];
                    let text = repo.read_file(commit, path)?;
                    let blame = repo.blame(commit, path, blame_cache)?;
                    let name = Some(repo.display_name());
                    layers.push(values_layer(&text, blame, (path, name), &failed)?);
                }
                ArgoValuesFile::Chart(path) => {
                    let (_, archive) = archive.as_ref().expect("a chart from a chart repository");
                    let bytes = render::chart_repo::archive_file(archive, path)
                        .map_err(|e| failed(format!("cannot read {chart_name}: {e}")))?;
                    let Some(bytes) = bytes else {
                        if h.ignore_missing_value_files {
                            continue;
                        }
                        return Err(failed(format!(
                            "the values file {} is not in {chart_name}",
                            path.as_str()
                        )));
                    };
                    let source = format!("values file {} of {chart_name}", path.as_str());
                    layers.push(chart_values_layer(&bytes, source, &failed)?);
                }
            }
        }
        let base = h.values.clone().unwrap_or_else(|| serde_json::json!({}));
        if h.values.is_some() {
            let source = format!("helm.values of {}", h.application);
            layers.push(Layer {
                values: base.clone(),
                place: Box::new(move |_: &[String]| {
                    Some(ValuePlace::Cluster {
                        source: source.clone(),
                    })
                }),
            });
        }
        let root = pointer.render_root.clone().unwrap_or_else(RepoPath::root);
        let proof = Proof {
            what: h.application.clone(),
            namespace: &h.namespace,
            key,
            layers,
            base: base.clone(),
            parameters: &h.parameters,
            chart: chart_name.clone(),
            template: located.file.clone(),
            post_renderers: &[],
            post: Vec::new(),
            chart_path: root.clone(),
            secrets: Vec::new(),
        };
        let helm_failed = |e: render::helm::HelmError| {
            failed(format!(
                "helm template of {chart_name} failed: {}",
                crate::text::single_line(&super::helm::helm_reason(e))
            ))
        };
        // A chart in Git: its dependencies from chart repositories (an archive holds its own).
        let scratch = tempfile::Builder::new()
            .prefix("kubectl-gitops-chart-")
            .tempdir()
            .map_err(|e| failed(format!("creating a temporary directory: {e}")))?;
        let dependencies = match (&h.chart, &archive, &git) {
            (Some(_), Some(_), _) | (_, _, None) => Vec::new(),
            (_, _, Some((repo, commit))) => self
                .chart_repo_dependencies(repo, *commit, &root)
                .map(|picked| {
                    // What it was synced from: the live object says (Argo CD keeps no record).
                    let label = live["metadata"]["labels"]["helm.sh/chart"].as_str();
                    self.pinned_to_applied((repo, *commit, &root), picked, &located.file, label)
                })
                .and_then(|picked| self.fetch_dependencies(&picked, scratch.path()))
                .map_err(&failed)?,
        };
        proof.run(|sets| match (&h.chart, &archive) {
            (Some(c), Some((_, archive))) => {
                let name = RepoPath::parse(&c.from.chart).unwrap_or_else(|_| RepoPath::root());
                let t = super::argo::argo_template(
                    h,
                    &binary,
                    &name,
                    (&[], &[], &values_at),
                    (&base, &[]),
                );
                let at = git.as_ref().map(|(r, c)| (r.as_ref(), *c));
                let files = (files.as_slice(), h.ignore_missing_value_files);
                render::helm::template_archive_argo(archive, at, files, &t, sets)
                    .map_err(helm_failed)
            }
            _ => {
                let (repo, commit) = git.as_ref().expect("a chart in Git has its repository");
                let git_files = super::argo::in_git(&files);
                let files = (git_files.as_slice(), files.as_slice(), values_at.as_slice());
                let t =
                    super::argo::argo_template(h, &binary, &root, files, (&base, &dependencies));
                render::helm::template_each_with_parameters(repo, *commit, &t, sets)
                    .map_err(helm_failed)
            }
        })
    }

    /// The archive of chart `c` at `version` (the one synced), in a scratch directory kept
    /// with it.
    fn synced_archive(
        &self,
        h: &ArgoHelm,
        c: &ArgoRepositoryChart,
        version: &str,
        failed: &dyn Fn(String) -> SourceError,
    ) -> Result<(tempfile::TempDir, std::path::PathBuf), SourceError> {
        let from = &c.from;
        let cannot = |e: String| {
            failed(format!(
                "cannot read chart {} {version} from {}: {e}",
                from.chart, from.url
            ))
        };
        let credentials = self.chart_credentials(&h.application, from)?;
        let wanted = render::chart_repo::Wanted::Constraint(version.to_owned());
        let picked = self
            .charts
            .pick(
                &from.url,
                &from.kind,
                (&from.chart, &wanted),
                credentials.as_ref(),
            )
            .map_err(&cannot)?;
        let scratch = tempfile::Builder::new()
            .prefix("kubectl-gitops-chart-")
            .tempdir()
            .map_err(|e| cannot(format!("creating a temporary directory: {e}")))?;
        let archive = self
            .charts
            .fetch(&from.url, &picked, credentials.as_ref(), scratch.path())
            .map_err(&cannot)?;
        Ok((scratch, archive))
    }

    /// A values file of Git at the commit read, as a layer with each value's line.
    fn values_file_layer(
        &self,
        located: &Located,
        file: &RepoPath,
        blame_cache: Option<&Path>,
        failed: &dyn Fn(String) -> SourceError,
    ) -> Result<Layer, SourceError> {
        let (text, blame) = self.file_with_blame(located, file, blame_cache)?;
        values_layer(&text, blame, (file, None), failed)
    }

    /// `spec.values` of the HelmRelease as Git wrote it (as applied) with each value's line;
    /// the cluster's, with no line, when the HelmRelease's file is not found.
    fn inline_values(&self, helm: &HelmSource, blame_cache: Option<&Path>) -> (Value, PlaceOf) {
        if let Some((own, index, blame)) = self.own_file(helm, blame_cache) {
            let under = FieldPath::root()
                .child(Segment::Field("spec".into()))
                .child(Segment::Field("values".into()));
            // The values as applied (patched, substituted); their lines as written.
            let values = match &own.desired["spec"]["values"] {
                v @ Value::Object(_) => v.clone(),
                _ => own.written["spec"]["values"].clone(),
            };
            return (
                values,
                git_place((own.file.clone(), None), index, blame, under),
            );
        }
        let source = format!("spec.values of {} (not found in Git)", helm.display());
        (
            helm.inline_values.clone(),
            Box::new(move |_: &[String]| {
                Some(ValuePlace::Cluster {
                    source: source.clone(),
                })
            }),
        )
    }

    /// The post-renderers of `helm` as applied (the cluster's) one step at a time, as
    /// kustomize applies a kustomization's: its patches in order, then its images. Each step
    /// is a post-renderer of its own, with where the HelmRelease's file in Git writes it (the
    /// most recently changed line of that patch or image; Unknown when the file is not found).
    /// Applied in turn they make what the whole post-renderer makes.
    fn post_renderer_steps(
        &self,
        helm: &HelmSource,
        blame_cache: Option<&Path>,
    ) -> Vec<(Value, ValuePlace)> {
        if helm.post_renderers.is_empty() {
            return Vec::new();
        }
        let file = self.own_file(helm, blame_cache);
        let place = |at: FieldPath| {
            let (own, index, blame) = file.as_ref()?;
            let (first, last) = index.item_lines(&at)?;
            let (line, blame) = (first..=last)
                .filter_map(|l| Some((l, blame.get(l.checked_sub(1)?)?)))
                // The last of them when several are as new: a patch's value is written last.
                .max_by_key(|(_, b)| b.author_time)?;
            Some(ValuePlace::Git {
                file: own.file.clone(),
                line,
                blame: blame.clone(),
                repo: None,
            })
        };
        let mut steps = Vec::new();
        for (i, renderer) in helm.post_renderers.iter().enumerate() {
            let kustomize = &renderer["kustomize"];
            for field in ["patches", "images"] {
                for (j, item) in kustomize[field]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let at = FieldPath::fields(["spec", "postRenderers"])
                        .child(Segment::Index(i))
                        .child(Segment::Field("kustomize".into()))
                        .child(Segment::Field(field.into()))
                        .child(Segment::Index(j));
                    let step = serde_json::json!({"kustomize": {field: [item]}});
                    steps.push((step, place(at).unwrap_or(ValuePlace::Unknown)));
                }
            }
        }
        steps
    }

    /// The HelmRelease of `helm` as Git has it: where, its line index and its blame.
    fn own_file(
        &self,
        helm: &HelmSource,
        blame_cache: Option<&Path>,
    ) -> Option<(Located, LineIndex, Vec<BlameLine>)> {
        let hr_key = ObjectKey {
            group: super::helm::HELM_GROUP.into(),
            kind: "HelmRelease".into(),
            namespace: Some(helm.helm_release.0.clone()),
            name: helm.helm_release.1.clone(),
        };
        let own = helm
            .own_pointer
            .as_ref()
            .and_then(|p| self.locate(Some((**p).clone()), &hr_key).ok())?;
        let (text, blame) = self.source_file(&own, blame_cache).ok()?;
        let text = String::from_utf8_lossy(&text).into_owned();
        let index = LineIndex::of_document(&text, own.lines).unwrap_or_default();
        Some((own, index, blame))
    }

    /// The chart of `helm` as applied, rendered once for each of `sets`.
    fn render_each(
        &self,
        helm: &HelmSource,
        (located, label): (&Located, Option<&str>),
        binary: &Path,
        sets: &[Value],
    ) -> Result<Vec<Result<Vec<Document>, render::helm::HelmError>>, SourceError> {
        let failed = |reason: String| SourceError::Helm {
            release: helm.display(),
            reason,
        };
        let secrets = helm.secret_texts();
        match &helm.repository {
            None => {
                let repo = self
                    .repo_of(located)
                    .ok_or_else(|| SourceError::Repeated("the repository is not open".into()))?;
                let commit = located.read_at.parse()?;
                let build = helm.version_build.at(&located.read_at);
                let scratch = tempfile::Builder::new()
                    .prefix("kubectl-gitops-chart-")
                    .tempdir()
                    .map_err(|e| failed(format!("creating a temporary directory: {e}")))?;
                let at = (repo.as_ref(), commit, &helm.chart_path);
                let dependencies = self
                    .chart_repo_dependencies(&repo, commit, &helm.chart_path)
                    .map(|picked| self.pinned_to_applied(at, picked, &located.file, label))
                    .and_then(|picked| self.fetch_dependencies(&picked, scratch.path()))
                    .map_err(&failed)?;
                let t = render::helm::Template {
                    helm: binary,
                    chart: &helm.chart_path,
                    values_files: &helm.values_files,
                    ignore_missing_values_files: helm.ignore_missing_values_files,
                    values: &sets[0],
                    release: &helm.release,
                    namespace: &helm.namespace,
                    kube_version: &helm.kube_version,
                    api_versions: &helm.api_versions,
                    style: render::helm::Style::Flux,
                    secrets: &secrets,
                    version_build: build.as_deref(),
                    is_upgrade: helm.is_upgrade(),
                    dependencies: &dependencies,
                };
                render::helm::template_each(&repo, commit, &t, sets).map_err(|e| {
                    failed(format!(
                        "helm template of chart {} failed: {}",
                        helm.chart_path.as_str(),
                        crate::text::single_line(&super::helm::helm_reason(e))
                    ))
                })
            }
            Some(from) => {
                // The version the release has, not the one the constraint picks now.
                let cannot = |e: String| {
                    failed(format!(
                        "cannot read chart {} {} from {} ({}): {e}",
                        from.chart, helm.record.chart_version, from.display, from.url
                    ))
                };
                let credentials = self.chart_credentials(&helm.display(), from)?;
                let version = &helm.record.chart_version;
                let wanted = match from.digest_in_version {
                    // `0.1.0+c22fced2ace5`: the tag `0.1.0`, which must still name that
                    // manifest.
                    true => render::chart_repo::Wanted::Tag(
                        version
                            .split_once('+')
                            .map_or(version.as_str(), |(v, _)| v)
                            .to_owned(),
                    ),
                    // `0.1.0+2` (packaged again with its values files): the index's `0.1.0`.
                    false if !from.values_files.is_empty() => {
                        render::chart_repo::Wanted::Constraint(
                            version
                                .split_once('+')
                                .map_or(version.as_str(), |(v, _)| v)
                                .to_owned(),
                        )
                    }
                    false => render::chart_repo::Wanted::Constraint(version.clone()),
                };
                let mut picked = self
                    .charts
                    .pick(
                        &from.url,
                        &from.kind,
                        (&from.chart, &wanted),
                        credentials.as_ref(),
                    )
                    .map_err(&cannot)?;
                if from.digest_in_version {
                    picked = picked.tracking_digest();
                    if picked.version != *version {
                        return Err(cannot(format!(
                            "its tag now names another chart ({}); the release's is gone from \
                             the registry",
                            picked.version
                        )));
                    }
                }
                let scratch = tempfile::Builder::new()
                    .prefix("kubectl-gitops-chart-")
                    .tempdir()
                    .map_err(|e| cannot(format!("creating a temporary directory: {e}")))?;
                if !from.values_files.is_empty() {
                    picked = picked.rendered_as(version.clone());
                }
                let archive = self
                    .charts
                    .fetch(&from.url, &picked, credentials.as_ref(), scratch.path())
                    .map_err(&cannot)?;
                let files = from.values_in(&archive).map_err(&cannot)?;
                let name = RepoPath::parse(&from.chart).unwrap_or_else(|_| helm.chart_path.clone());
                let t = render::helm::Template {
                    helm: binary,
                    chart: &name,
                    values_files: &files,
                    ignore_missing_values_files: from.ignore_missing_values_files,
                    values: &sets[0],
                    release: &helm.release,
                    namespace: &helm.namespace,
                    kube_version: &helm.kube_version,
                    api_versions: &helm.api_versions,
                    style: render::helm::Style::Flux,
                    secrets: &secrets,
                    version_build: None,
                    is_upgrade: helm.is_upgrade(),
                    // An archive holds its dependencies.
                    dependencies: &[],
                };
                Ok(render::helm::template_archive_each(&archive, &t, sets))
            }
        }
    }
}

impl Proof<'_> {
    /// Probe renders through the reconciler's post-renderers, as applied.
    fn post_rendered(
        &self,
        renders: Vec<Result<Vec<Document>, render::helm::HelmError>>,
    ) -> Vec<Result<Vec<Document>, render::helm::HelmError>> {
        render::helm::post_render_each(
            renders,
            self.post_renderers,
            &self.chart_path,
            &self.secrets,
        )
    }
}

/// What one blame of a chart-rendered object needs: the values sources in merge order, what
/// helm reads on stdin as applied, and (Argo CD) the parameters merged last.
struct Proof<'a> {
    /// The HelmRelease or Application, for errors.
    what: String,
    /// Where the chart's objects without a namespace go.
    namespace: &'a str,
    key: &'a ObjectKey,
    layers: Vec<Layer>,
    base: Value,
    parameters: &'a [Parameter],
    chart: String,
    template: String,
    /// Flux `spec.postRenderers` as applied, and the same one patch or image at a time, each
    /// with where it is written.
    post_renderers: &'a [Value],
    post: Vec<(Value, ValuePlace)>,
    /// The chart's name in documents, and the values from Secrets (kept off the disk when
    /// the render is post-rendered).
    chart_path: RepoPath,
    secrets: Vec<String>,
}

impl Proof<'_> {
    /// Renders as applied and once per value with only that value changed (`render` gets every
    /// set of stdin values and parameters, the first as applied), and what that proves.
    #[allow(clippy::type_complexity)]
    fn run(
        mut self,
        mut render: impl FnMut(
            &[(Value, Vec<Parameter>)],
        ) -> Result<
            Vec<Result<Vec<Document>, render::helm::HelmError>>,
            SourceError,
        >,
    ) -> Result<(HelmSide, Vec<String>), SourceError> {
        let failed = |reason: String| SourceError::Helm {
            release: self.what.clone(),
            reason,
        };
        let mut unchangeable = Vec::new();
        // Parameters are one layer, merged last. One blame cannot read (a list index, several
        // names) may set any field, so nothing is then claimed for the chart.
        let mut by_parameter: Vec<(usize, Vec<String>)> = Vec::new();
        let mut parameter_values = Value::Object(Default::default());
        for (i, (name, value, force_string)) in self.parameters.iter().enumerate() {
            match chart_blame::parameter_path(name) {
                Some(path) => {
                    parameter_values = chart_blame::with_value(
                        &parameter_values,
                        &path,
                        chart_blame::parameter_value(value, *force_string),
                    );
                    by_parameter.push((i, path));
                }
                None => unchangeable.push(name.clone()),
            }
        }
        if !by_parameter.is_empty() {
            let what = self.what.clone();
            self.layers.push(Layer {
                values: parameter_values,
                place: Box::new(move |path: &[String]| {
                    Some(ValuePlace::Cluster {
                        source: format!("parameter {} of {what}", chart_blame::dotted(path)),
                    })
                }),
            });
        }
        let views: Vec<ValuesLayer<'_>> = self
            .layers
            .iter()
            .map(|l| ValuesLayer {
                values: &l.values,
                place: &*l.place,
            })
            .collect();
        let leaves = chart_blame::leaves(&views);
        if leaves.len() > MAX_PROBES {
            return Err(failed(format!(
                "its values set {} values, more than the {MAX_PROBES} blame renders the chart \
                 for one by one",
                leaves.len()
            )));
        }
        let mut effective = Value::Object(Default::default());
        for l in self.layers.iter().filter(|l| l.values.is_object()) {
            crate::source::helm::merge_values(&mut effective, &l.values);
        }
        let mut probed: Vec<ValueLeaf> = Vec::new();
        let as_applied = (self.base.clone(), self.parameters.to_vec());
        let mut sets = vec![as_applied.clone()];
        // The values and parameters with only `leaf` changed, when it can be: perturbed, or
        // (a switch) changed so that it still passes an `if`.
        let changed = |leaf: &ValueLeaf, still_passing: bool| {
            // A value a parameter sets is changed in the parameters: `--set` wins over stdin.
            match by_parameter.iter().rev().find(|(_, p)| *p == leaf.path) {
                Some((i, _)) => {
                    let (_, value, force_string) = &self.parameters[*i];
                    let to = if still_passing {
                        // Always a string: as `--set-string` gives it.
                        chart_blame::still_passing(&chart_blame::parameter_value(
                            value,
                            *force_string,
                        ))
                        .map(|v| (v.as_str().unwrap_or_default().to_owned(), true))
                    } else {
                        chart_blame::perturb_parameter(value, *force_string)
                            .map(|v| (v, *force_string))
                    };
                    to.map(|(value, force_string)| {
                        let mut parameters = self.parameters.to_vec();
                        parameters[*i].1 = value;
                        parameters[*i].2 = force_string;
                        (self.base.clone(), parameters)
                    })
                }
                None => chart_blame::value_at(&effective, &leaf.path)
                    .and_then(if still_passing {
                        chart_blame::still_passing
                    } else {
                        chart_blame::perturb
                    })
                    .map(|to| {
                        (
                            chart_blame::with_value(&self.base, &leaf.path, to),
                            self.parameters.to_vec(),
                        )
                    }),
            }
        };
        for leaf in leaves {
            let set = changed(&leaf, false);
            match set {
                Some(set) => {
                    sets.push(set);
                    probed.push(leaf);
                }
                None => unchangeable.push(chart_blame::dotted(&leaf.path)),
            }
        }

        let mut renders = render(&sets)?;
        let key = self.key;
        let find = |docs: &[Document]| {
            docs.iter()
                .find(|d| {
                    d.key().is_some_and(|mut k| {
                        if k.namespace.is_none() && key.namespace.is_some() {
                            k.namespace = Some(self.namespace.to_owned());
                        }
                        k == *key
                    })
                })
                .map(|d| d.object.clone())
        };
        // Through the post-renderers: the render as applied one at a time (what each wrote),
        // every probe through all of them.
        let mut post = None;
        if !self.post_renderers.is_empty() {
            if let Some(Ok(docs)) = renders.first() {
                let mut stage = docs.clone();
                let bare = find(&stage).unwrap_or(Value::Null);
                let mut after = Vec::new();
                for (renderer, place) in &self.post {
                    stage = render::helm::post_render(
                        &stage,
                        std::slice::from_ref(renderer),
                        &self.chart_path,
                        &self.secrets,
                    )
                    .map_err(|e| {
                        failed(format!(
                            "its postRenderers failed over the chart's render: {}",
                            crate::text::single_line(&crate::text::redact(
                                &super::helm::helm_reason(e),
                                &self.secrets
                            ))
                        ))
                    })?;
                    after.push((find(&stage).unwrap_or(Value::Null), place.clone()));
                }
                renders[0] = Ok(stage);
                post = Some(chart_blame::PostStages { bare, after });
            }
            let probes = renders.split_off(1);
            renders.extend(self.post_rendered(probes));
        }
        let mut renders = renders.into_iter();
        let rendered = match renders.next() {
            Some(Ok(docs)) => find(&docs).ok_or_else(|| {
                failed(format!(
                    "its chart, rendered as applied, does not render {key}: its lines cannot be \
                     tied to values"
                ))
            })?,
            Some(Err(e)) => {
                return Err(failed(format!(
                    "helm template of its chart as applied failed: {}",
                    crate::text::single_line(&super::helm::helm_reason(e))
                )));
            }
            None => return Err(failed("helm template rendered nothing".into())),
        };
        let mut probes = Vec::new();
        let mut gates = Vec::new();
        for (leaf, render) in probed.into_iter().zip(renders) {
            // A probe that fails proves nothing of the object's fields.
            match render.as_deref().map(find) {
                Ok(Some(object)) => probes.push((leaf, object)),
                Ok(None) => gates.push(leaf),
                Err(_) => unchangeable.push(chart_blame::dotted(&leaf.path)),
            }
        }
        // A switch whose flip leaves the object out (`{{- if .Values.ingress.enabled }}`)
        // gates it: changed so that it still lets the object through, it shows the fields it
        // renders itself, if any. Proven or not, the object is rendered again only for those.
        let mut sets = vec![as_applied];
        let mut again = Vec::new();
        for leaf in gates {
            match changed(&leaf, true) {
                Some(set) => {
                    sets.push(set);
                    again.push(leaf);
                }
                None => unchangeable.push(chart_blame::dotted(&leaf.path)),
            }
        }
        if !again.is_empty() {
            let mut renders = render(&sets)?;
            let probes_again = renders.split_off(1.min(renders.len()));
            let probes_again = if self.post_renderers.is_empty() {
                probes_again
            } else {
                self.post_rendered(probes_again)
            };
            let mut probes_again = probes_again.into_iter();
            for leaf in again {
                match probes_again
                    .next()
                    .and_then(|r| r.ok())
                    .as_deref()
                    .and_then(find)
                {
                    Some(object) => probes.push((leaf, object)),
                    None => unchangeable.push(chart_blame::dotted(&leaf.path)),
                }
            }
        }
        Ok((
            HelmSide {
                rendered,
                probes,
                chart: self.chart,
                template: self.template,
                post,
                complete: unchangeable.is_empty(),
            },
            unchangeable,
        ))
    }
}
