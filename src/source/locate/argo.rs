//! Rendering an Argo CD source that is a Helm chart in Git, as the repo-server does: `helm
//! template` of the chart's path at the commit, with the source's values files, values and
//! parameters, the release name and namespace, and the cluster's version and APIs.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{Commits, Locator};
use crate::git::{CommitId, CommitInfo, Repo, RepoPath};
use crate::object::ObjectKey;
use crate::render::helm::ArgoValuesFile;
use crate::render::{self, Document};
use crate::source::helm::{ChartTrace, ValuesSource};
use crate::source::reconciler::{ArgoValuesRepo, ValuesIn};
use crate::source::{ArgoHelm, Pointer, Rule, SourceError};

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
        let values_repos = self.values_repos_at(h)?;
        let values_at: Vec<(&Repo, CommitId)> =
            values_repos.iter().map(|(r, c)| (r.as_ref(), *c)).collect();
        let (files, values) = values_sources(h, Some((repo, commit)), &values_at);
        let git_files = in_git(&files);
        let empty = json!({});
        let from_repositories = self.chart_repo_dependencies(repo, commit, root);
        // What the render reads from Git: the chart's tree and each values file, by their ids;
        // and its dependencies from chart repositories, by their digests.
        let disk_key = || {
            // An archive an index gives no digest for is not known by its content: not kept.
            let picked = from_repositories.as_ref().ok()?;
            if !picked
                .iter()
                .all(|(_, _, p)| render::chart_repo::is_sha256_hex(&p.digest))
            {
                return None;
            }
            let mut read = render::helm::chart_dirs(repo, commit, root);
            read.extend(git_files.iter().cloned());
            let mut parts = vec!["git".to_owned(), format!("{files:?}")];
            parts.extend(ids(repo, commit, &read)?);
            parts.extend(values_repos_ids(&files, &values_at)?);
            parts.extend(
                picked
                    .iter()
                    .map(|(name, url, p)| format!("{name} {url} {} {}", p.version, p.digest)),
            );
            self.argo_disk_key(h, &parts)
        };
        let docs = self.through_render_cache(disk_key(), || {
            let scratch = tempfile::Builder::new()
                .prefix("kubectl-gitops-chart-")
                .tempdir()
                .map_err(|e| {
                    render::helm::HelmError::Failed(format!("creating a temporary directory: {e}"))
                })?;
            let dependencies = from_repositories
                .clone()
                .and_then(|picked| self.fetch_dependencies(&picked, scratch.path()))
                .map_err(render::helm::HelmError::Failed)?;
            let template = argo_template(
                h,
                &binary,
                root,
                (&git_files, &files, &values_at),
                (h.values.as_ref().unwrap_or(&empty), &dependencies),
            );
            render::helm::template(repo, commit, &template)
        });
        let docs = docs.map_err(|e| {
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
                values_repos: Vec::new(),
            },
        ))
    }

    /// The render cache key of a render of `h` that reads `parts` (the chart's and values
    /// files' ids, or the archive's digest), with all else the render depends on.
    pub(super) fn argo_disk_key(&self, h: &ArgoHelm, parts: &[String]) -> Option<String> {
        let cache = self.render_cache.as_ref()?;
        let how = format!(
            "{}\n{}\n{}\n{:?}\n{}\n{}\n{}",
            h.release,
            h.namespace,
            h.kube_version,
            h.parameters,
            h.include_crds,
            h.skip_tests,
            h.ignore_missing_value_files
        );
        let values = h.values.as_ref().map(Value::to_string).unwrap_or_default();
        let apis = h.api_versions.join("\n");
        let mut all: Vec<&str> = vec!["argo", &how, &values, &apis];
        all.extend(parts.iter().map(String::as_str));
        Some(cache.helm_key(&all))
    }

    /// The values repositories of a chart in Git (other `ref` sources'), opened, and the
    /// commit this render reads each at.
    pub(super) fn values_repos_at(
        &self,
        h: &ArgoHelm,
    ) -> Result<Vec<(Arc<Repo>, CommitId)>, SourceError> {
        let mut opened = Vec::new();
        for v in &h.values_repos {
            let commit = v.read_at.ok_or_else(|| {
                SourceError::Repeated(format!(
                    "{}: the commit of its values repository {} was not resolved",
                    h.application, v.url
                ))
            })?;
            let (_, repo) = self.values_repo_open(v, &super::application_key())?;
            opened.push((repo, commit));
        }
        Ok(opened)
    }

    /// The values repository `v`: as the chart's repository is found when it is that one
    /// (`--repo` too), else as a second repository (`--repo` only when it is that one).
    fn values_repo_open(
        &self,
        v: &ArgoValuesRepo,
        key: &ObjectKey,
    ) -> Result<(String, Arc<Repo>), SourceError> {
        if v.own {
            self.repo_for(Some(&v.url), key, Rule::ArgoCd)
        } else {
            self.second_repo(&v.url)
        }
    }
}

/// The values files of `h` in order (a missing one of Git left out with
/// `ignoreMissingValueFiles`, as Argo CD leaves it out; one inside a chart's archive is left
/// out when it renders), and every values source in order.
pub(super) fn values_sources(
    h: &ArgoHelm,
    at: Option<(&Repo, CommitId)>,
    values_at: &[(&Repo, CommitId)],
) -> (Vec<ArgoValuesFile>, Vec<ValuesSource>) {
    let mut files = Vec::new();
    let mut values = Vec::new();
    for file in &h.value_files {
        let (read, from) = match file.within {
            ValuesIn::Chart => {
                files.push(ArgoValuesFile::Chart(file.path.clone()));
                values.push(ValuesSource {
                    kind: "chartValueFiles".into(),
                    name: file.written.clone(),
                    key: None,
                });
                continue;
            }
            ValuesIn::Git => (at, ArgoValuesFile::Git(file.path.clone())),
            ValuesIn::ValuesRepo(i) => (
                values_at.get(i).copied(),
                ArgoValuesFile::ValuesRepo(i, file.path.clone()),
            ),
        };
        let missing = read.is_none_or(|(repo, commit)| repo.read_file(commit, &file.path).is_err());
        if h.ignore_missing_value_files && missing {
            continue;
        }
        files.push(from);
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

/// The paths of `files` in the source's repository.
pub(super) fn in_git(files: &[ArgoValuesFile]) -> Vec<RepoPath> {
    files
        .iter()
        .filter_map(|f| match f {
            ArgoValuesFile::Git(p) => Some(p.clone()),
            ArgoValuesFile::Chart(_) | ArgoValuesFile::ValuesRepo(..) => None,
        })
        .collect()
}

/// The Git ids of `files` of each values repository (`values_at[i]`, at its commit), for a
/// render cache key.
pub(super) fn values_repos_ids(
    files: &[ArgoValuesFile],
    values_at: &[(&Repo, CommitId)],
) -> Option<Vec<String>> {
    let mut all = Vec::new();
    for (index, (repo, commit)) in values_at.iter().enumerate() {
        let paths: Vec<RepoPath> = files
            .iter()
            .filter_map(|f| match f {
                ArgoValuesFile::ValuesRepo(i, p) if *i == index => Some(p.clone()),
                _ => None,
            })
            .collect();
        all.extend(ids(repo, *commit, &paths)?);
    }
    Some(all)
}

fn display(root: &RepoPath) -> String {
    if root.as_str().is_empty() {
        ".".to_owned()
    } else {
        root.as_str().to_owned()
    }
}

/// The values files of a chart in Git: those of its repository, all in order, and the
/// values repository read.
pub(super) type GitValuesFiles<'a> = (
    &'a [RepoPath],
    &'a [ArgoValuesFile],
    &'a [(&'a Repo, CommitId)],
);

/// `helm template` of the chart at `root` as Argo CD's repo-server runs it for `h`, with a
/// chart in Git's values files (none for a chart archive: they come apart).
pub(super) fn argo_template<'a>(
    h: &'a ArgoHelm,
    binary: &'a std::path::Path,
    root: &'a RepoPath,
    (git_files, files, values_repos): GitValuesFiles<'a>,
    (values, dependencies): (&'a Value, &'a [(String, std::path::PathBuf)]),
) -> render::helm::Template<'a> {
    render::helm::Template {
        helm: binary,
        chart: root,
        values_files: git_files,
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
            files,
            values_repos,
        },
        // Argo CD's values are all in Git or the Application.
        secrets: &[],
        // Argo CD renders a chart in Git with its own version.
        version_build: None,
        // Argo CD renders with `helm template` as it is: an install.
        is_upgrade: false,
        dependencies,
    }
}

/// `paths` at `commit` of `repo` by their Git ids (`path id`), for a render cache key.
pub(super) fn ids(repo: &Repo, commit: CommitId, paths: &[RepoPath]) -> Option<Vec<String>> {
    Some(
        repo.content_ids(commit, paths)
            .ok()?
            .into_iter()
            .map(|(path, id)| format!("{path} {}", id.as_deref().unwrap_or("-")))
            .collect(),
    )
}

/// A repository values files are read from (a `ref` source's), opened, and its commits.
pub(super) struct ValuesRepo {
    pub(super) key: String,
    pub(super) repo: Arc<Repo>,
    pub(super) commits: Commits,
}

/// What changed in a values repository's files: the newest change to one of them as synced,
/// and (when the synced commit is known) the commits since it, whether one of the files
/// changed in them and the newest such change (pending).
#[derive(Default)]
pub(super) struct ValuesChanges {
    pub(super) last_change: Option<CommitInfo>,
    pub(super) pending: Option<CommitInfo>,
    pub(super) commits_since_applied: Option<usize>,
    pub(super) file_changed_since_applied: Option<bool>,
}

/// What trace shows of the values repositories `values` of `h` (in the same order).
pub(super) fn values_repos_trace(
    values: &[ValuesRepo],
    h: &ArgoHelm,
) -> Vec<crate::source::helm::ValuesRepoTrace> {
    values
        .iter()
        .zip(&h.values_repos)
        .map(|(v, from)| crate::source::helm::ValuesRepoTrace {
            repo: v.repo.display_name(),
            repo_key: v.key.clone(),
            local: v.commits.local,
            source: from.source,
            tracked_ref: from.tracked_ref.clone(),
            synced_commit: v.commits.applied.map(|c| c.to_string()),
            tracked_commit: v.commits.tip.to_string(),
        })
        .collect()
}

/// The commits of `values` as synced, and at their tips, in order.
pub(super) fn values_commits(values: &[ValuesRepo]) -> (Vec<CommitId>, Vec<CommitId>) {
    values
        .iter()
        .map(|v| (v.commits.read_at(), v.commits.tip))
        .unzip()
}

/// `slot` holds the newer of itself and `c`.
pub(super) fn newer(slot: &mut Option<CommitInfo>, c: CommitInfo) {
    if slot.as_ref().is_none_or(|p| c.time > p.time) {
        *slot = Some(c);
    }
}

impl Locator {
    /// The values repositories of a chart in Git of `pointer` (other `ref` sources'), each
    /// with its commits: as synced, and its tracked tip (the `--against` revision, and a
    /// local checkout's HEAD, are the chart's).
    pub(super) fn git_chart_values_repos(
        &self,
        pointer: &Pointer,
        key: &ObjectKey,
    ) -> Result<Vec<ValuesRepo>, SourceError> {
        let Some(h) = &pointer.argo_helm else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for v in &h.values_repos {
            let mut of = Pointer::new(Rule::ArgoCd);
            of.repo = Some(v.url.clone());
            of.tracked_ref = Some(v.tracked_ref.clone());
            of.applied_commit = v.applied_commit.clone();
            let (key, repo) = self.values_repo_open(v, key)?;
            // The chart's own repository at another revision: that revision, even in the
            // user's checkout of it (whose HEAD stands for the chart's).
            let against = v.own.then_some(v.tracked_ref.as_str());
            let commits = self.commits_against(&of, &key, &repo, against)?;
            found.push(ValuesRepo { key, repo, commits });
        }
        Ok(found)
    }

    /// `pointer` with its values repositories read at `commits`, in their order (itself
    /// without any).
    pub(super) fn values_read_at<'p>(
        pointer: &'p Pointer,
        commits: &[CommitId],
    ) -> Cow<'p, Pointer> {
        let Some(h) = pointer
            .argo_helm
            .as_ref()
            .filter(|h| !h.values_repos.is_empty())
        else {
            return Cow::Borrowed(pointer);
        };
        let mut h = (**h).clone();
        for (i, v) in h.values_repos.iter_mut().enumerate() {
            v.read_at = commits.get(i).copied();
        }
        let mut p = pointer.clone();
        p.argo_helm = Some(Arc::new(h));
        Cow::Owned(p)
    }

    /// `pointer` with its values repositories read at their tracked tips, for what Git
    /// declares now.
    pub(super) fn values_at_tip<'p>(
        &self,
        pointer: &'p Pointer,
    ) -> Result<Cow<'p, Pointer>, SourceError> {
        let values = self.git_chart_values_repos(pointer, &super::application_key())?;
        let tips: Vec<CommitId> = values.iter().map(|v| v.commits.tip).collect();
        Ok(Locator::values_read_at(pointer, &tips))
    }

    /// The newest commit to a values file of `h` in one of its values repositories `values`
    /// since it was synced: pending.
    pub(super) fn values_repos_pending(
        &self,
        values: &[ValuesRepo],
        h: &ArgoHelm,
    ) -> Result<Option<CommitInfo>, SourceError> {
        let mut pending = None;
        for (i, v) in values.iter().enumerate() {
            let files: Vec<RepoPath> = h
                .value_files
                .iter()
                .filter(|f| f.within == ValuesIn::ValuesRepo(i))
                .map(|f| f.path.clone())
                .collect();
            if let Some(c) = self.values_changes(v, &files)?.pending {
                newer(&mut pending, c);
            }
        }
        Ok(pending)
    }

    /// What changed in `files` of the values repository `v`.
    pub(super) fn values_changes(
        &self,
        v: &ValuesRepo,
        files: &[RepoPath],
    ) -> Result<ValuesChanges, SourceError> {
        let mut changes = ValuesChanges::default();
        let read_at = v.commits.read_at();
        for file in files {
            if let Some(id) = self.last_change(&v.key, &v.repo, read_at, file)? {
                newer(&mut changes.last_change, v.repo.commit_info(id)?);
            }
        }
        match v.commits.applied {
            Some(a) if a != v.commits.tip => {
                changes.commits_since_applied =
                    Some(self.commits_between(&v.key, &v.repo, a, v.commits.tip)?);
                let mut changed = false;
                for file in files {
                    let now = self.last_change(&v.key, &v.repo, v.commits.tip, file)?;
                    let then = self.last_change(&v.key, &v.repo, a, file)?;
                    if now != then {
                        changed = true;
                        if let Some(id) = now {
                            newer(&mut changes.pending, v.repo.commit_info(id)?);
                        }
                    }
                }
                changes.file_changed_since_applied = Some(changed);
            }
            Some(_) => {
                changes.commits_since_applied = Some(0);
                changes.file_changed_since_applied = Some(false);
            }
            None => {}
        }
        Ok(changes)
    }
}
