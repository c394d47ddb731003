//! Rendering an Argo CD source that is a Helm chart in Git, as the repo-server does: `helm
//! template` of the chart's path at the commit, with the source's values files, values and
//! parameters, the release name and namespace, and the cluster's version and APIs.

use serde_json::{Value, json};

use super::Locator;
use crate::git::{CommitId, Repo, RepoPath};
use crate::render::helm::ArchiveValuesFile;
use crate::render::{self, Document};
use crate::source::helm::{ChartTrace, ValuesSource};
use crate::source::{ArgoHelm, SourceError};

impl Locator {
    /// The chart at `root` rendered for `h` at `commit`, and what trace shows of it.
    pub(super) fn argo_chart(
        &self,
        repo: &Repo,
        commit: CommitId,
        root: &RepoPath,
        h: &ArgoHelm,
    ) -> Result<(Vec<Document>, ChartTrace), SourceError> {
        let Some(binary) = self.helm.clone() else {
            return Err(SourceError::Helm {
                release: h.application.clone(),
                reason: format!(
                    "its source {} is a Helm chart, rendered with `helm template`, and helm is \
                     not on PATH: install Helm 3 or 4 (https://helm.sh/docs/intro/install/) and \
                     run again",
                    display(root)
                ),
            });
        };
        let (files, values) = values_sources(h, Some((repo, commit)));
        let files = in_git(&files);
        let empty = json!({});
        let template = argo_template(
            h,
            &binary,
            root,
            &files,
            h.values.as_ref().unwrap_or(&empty),
        );
        let docs = render::helm::template(repo, commit, &template).map_err(|e| {
            let reason = match e {
                render::helm::HelmError::Failed(reason) => reason,
                render::helm::HelmError::Render(e) => e.to_string(),
            };
            SourceError::Helm {
                release: h.application.clone(),
                reason: format!(
                    "helm template of chart {} at {} failed: {}; fix the chart or the values in \
                     Git",
                    display(root),
                    commit.short(),
                    crate::text::single_line(&reason)
                ),
            }
        })?;
        let meta: Value = root
            .join("Chart.yaml")
            .ok()
            .and_then(|file| repo.read_file(commit, &file).ok())
            .and_then(|bytes| render::documents("Chart.yaml", &bytes).ok())
            .and_then(|docs| docs.into_iter().next())
            .map(|d| d.object)
            .unwrap_or_default();
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        Ok((
            docs,
            ChartTrace {
                application: h.application.clone(),
                release: h.release.clone(),
                namespace: h.namespace.clone(),
                chart: text(&meta["name"]),
                chart_version: text(&meta["version"]),
                chart_path: display(root),
                values,
                chart_url: None,
                version_constraint: None,
                desired_chart_version: None,
            },
        ))
    }
}

/// The values files of `h` in order (a missing one of Git left out with
/// `ignoreMissingValueFiles`, as Argo CD leaves it out; one inside a chart's archive is left
/// out when it renders), and every values source in order.
pub(super) fn values_sources(
    h: &ArgoHelm,
    at: Option<(&Repo, CommitId)>,
) -> (Vec<ArchiveValuesFile>, Vec<ValuesSource>) {
    let mut files = Vec::new();
    let mut values = Vec::new();
    for file in &h.value_files {
        if file.in_chart {
            files.push(ArchiveValuesFile::Chart(file.path.clone()));
            values.push(ValuesSource {
                kind: "chartValueFiles".into(),
                name: file.written.clone(),
                key: None,
            });
            continue;
        }
        let missing = at.is_none_or(|(repo, commit)| repo.read_file(commit, &file.path).is_err());
        if h.ignore_missing_value_files && missing {
            continue;
        }
        files.push(ArchiveValuesFile::Git(file.path.clone()));
        values.push(ValuesSource {
            kind: "valueFiles".into(),
            name: file.written.clone(),
            key: None,
        });
    }
    if h.values.is_some() {
        values.push(ValuesSource {
            kind: "values".into(),
            name: "helm.values".into(),
            key: None,
        });
    }
    for (name, _, _) in &h.parameters {
        values.push(ValuesSource {
            kind: "parameter".into(),
            name: name.clone(),
            key: None,
        });
    }
    (files, values)
}

/// The paths of `files` that are in Git: all of a chart in Git's.
pub(super) fn in_git(files: &[ArchiveValuesFile]) -> Vec<RepoPath> {
    files
        .iter()
        .filter_map(|f| match f {
            ArchiveValuesFile::Git(p) => Some(p.clone()),
            ArchiveValuesFile::Chart(_) => None,
        })
        .collect()
}

fn display(root: &RepoPath) -> String {
    if root.as_str().is_empty() {
        ".".to_owned()
    } else {
        root.as_str().to_owned()
    }
}

/// `helm template` of the chart at `root` as Argo CD's repo-server runs it for `h`.
pub(super) fn argo_template<'a>(
    h: &'a ArgoHelm,
    binary: &'a std::path::Path,
    root: &'a RepoPath,
    files: &'a [RepoPath],
    values: &'a Value,
) -> render::helm::Template<'a> {
    render::helm::Template {
        helm: binary,
        chart: root,
        values_files: files,
        ignore_missing_values_files: false,
        values,
        release: &h.release,
        namespace: &h.namespace,
        kube_version: &h.kube_version,
        api_versions: &h.api_versions,
        style: render::helm::Style::Argo {
            parameters: &h.parameters,
            include_crds: h.include_crds,
            skip_tests: h.skip_tests,
        },
        // Argo CD's values are all in Git or the Application.
        secrets: &[],
        // Argo CD renders a chart in Git with its own version.
        version_build: None,
        // Argo CD renders with `helm template` as it is: an install.
        is_upgrade: false,
    }
}
