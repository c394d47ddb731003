//! Locating an object of a Flux HelmRelease: applied is its document in the release record,
//! desired is the chart rendered at the tracked tip with the values Git declares, and the
//! source is the chart template that made it.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use super::{Commits, Located, Locator, Shared};
use crate::git::{CommitId, CommitInfo, Repo, RepoPath};
use crate::object::ObjectKey;
use crate::render::chart_repo::ChartPoll;
use crate::render::{self, Document};
use crate::source::helm::{HelmSource, HelmTrace, RepositoryChart};
use crate::source::{Pointer, SourceError};

/// The HelmRelease kind's group.
pub(super) const HELM_GROUP: &str = "helm.toolkit.fluxcd.io";

/// The release record's documents, as applied: what *missing* is judged against.
pub(super) fn release_documents(helm: &HelmSource) -> Arc<Vec<Document>> {
    let file = format!("release {} revision {}", helm.release, helm.record.revision);
    Arc::new(
        helm.record
            .manifest
            .iter()
            .map(|d| {
                let mut object = d.object.clone();
                helm.as_applied(&mut object);
                Document {
                    file: file.clone(),
                    lines: d.lines,
                    object,
                    built_by: Default::default(),
                }
            })
            .collect(),
    )
}

/// Whether the rendered or recorded document `doc` is the object `key`; a document without a
/// namespace is in the release's.
fn is(doc: &Document, key: &ObjectKey, namespace: &str) -> bool {
    doc.key().is_some_and(|mut k| {
        if k.namespace.is_none() && key.namespace.is_some() {
            k.namespace = Some(namespace.to_owned());
        }
        k == *key
    })
}

impl Locator {
    /// [`Locator::locate`] for an object of a HelmRelease.
    pub(super) fn locate_helm(
        &self,
        pointer: &Pointer,
        helm: &HelmSource,
        key: &ObjectKey,
    ) -> Result<Located, SourceError> {
        let (repo_key, repo) = self.repo_for(pointer.repo.as_ref(), key, pointer.rule)?;
        let Commits {
            local,
            tip_rev,
            tip,
            applied,
        } = self.commits(pointer, &repo_key, &repo)?;
        let read_at = applied.unwrap_or(tip);

        // The HelmRelease as Git declares it: its own file, and the values written there.
        let hr_key = ObjectKey {
            group: HELM_GROUP.into(),
            kind: "HelmRelease".into(),
            namespace: Some(helm.helm_release.0.clone()),
            name: helm.helm_release.1.clone(),
        };
        let own = helm
            .own_pointer
            .as_ref()
            .map(|p| self.locate(Some((**p).clone()), &hr_key));
        let git_hr = match &own {
            Some(Ok(l)) => l.desired_at_tip.clone(),
            _ => None,
        };
        let git_values = git_hr.as_ref().map(|d| d["spec"]["values"].clone());
        let values = helm.composed_values(git_values.as_ref().unwrap_or(&helm.inline_values));
        // Kept on disk only when every value is Git's own text: not the cluster's copy, not
        // substituted by the HelmRelease's Kustomization (its variables may be a Secret's).
        let keep = git_values.is_some()
            && helm
                .own_pointer
                .as_ref()
                .is_some_and(|p| p.substitute.is_none());
        // The post-renderers Git declares (the cluster's when Git's HelmRelease is not found).
        let post_renderers = match &git_hr {
            Some(d) => crate::source::helm::post_renderers_of(&d["spec"]),
            None => helm.post_renderers.clone(),
        };
        let inputs = Inputs {
            values: &values,
            post_renderers: &post_renderers,
            keep,
        };

        // A chart repository's chart: the version Git's constraint picks there now.
        let (mut picked, mut chart_poll) = (None, None);
        let rendered = match &helm.repository {
            Some(from) => {
                let git_spec = git_hr.as_ref().map(|d| &d["spec"]["chart"]["spec"]);
                let git_str = |k: &str| git_spec.and_then(|s| s[k].as_str()).map(str::to_owned);
                let chart = git_str("chart").unwrap_or_else(|| from.chart.clone());
                let constraint = git_str("version").unwrap_or_else(|| from.version.clone());
                // The values files inside the chart Git lists now.
                let declared = git_spec
                    .filter(|s| s.is_object())
                    .map(|s| from.as_declared(s));
                let from = declared.as_ref().unwrap_or(from);
                let (rendered, version) =
                    self.repository_render(helm, from, (&chart, &constraint), &inputs)?;
                chart_poll =
                    self.chart_poll(&helm.display(), from, (&chart, &from.wanted(&constraint)))?;
                picked = Some((chart, constraint, version));
                rendered
            }
            None => self.helm_render(&repo_key, &repo, tip, helm, &inputs)?,
        };
        let found = rendered.iter().find(|d| is(d, key, &helm.namespace));
        let applied_object = helm.applied(key);
        let dependency = match (&helm.repository, found) {
            (None, Some(doc)) => self.dependency_trace(
                &repo,
                tip,
                &helm.chart_path,
                &doc.file,
                applied_object.as_ref(),
            ),
            _ => None,
        };
        let dependency_published = dependency.as_ref().and_then(dependency_published);
        // Its dependency's repository is what watch polls for it.
        if chart_poll.is_none() {
            chart_poll = dependency.as_ref().and_then(|d| self.dependency_poll(d));
        }
        // Against the release record: an object it does not hold is orphaned.
        let at_tip = match (&applied_object, found) {
            (Some(_), Some(doc)) => {
                let mut object = doc.object.clone();
                helm.as_applied(&mut object);
                Some(Arc::new(object))
            }
            _ => None,
        };
        let templates = helm
            .chart_path
            .join("templates")
            .unwrap_or_else(|_| helm.chart_path.clone());
        let file = match found {
            Some(doc) => RepoPath::parse(&doc.file).unwrap_or_else(|_| templates.clone()),
            None => templates,
        };
        // A template in a chart archive has no lines in Git (0-0: none shown).
        let lines = match (&helm.repository, repo.read_file(tip, &file)) {
            (Some(_), _) => (0, 0),
            _ if dependency.is_some() => (0, 0),
            (None, Ok(bytes)) => (1, bytes.iter().filter(|b| **b == b'\n').count().max(1)),
            (None, Err(_)) => (1, 1),
        };
        let desired = Arc::new(applied_object.unwrap_or(Value::Null));

        let last_change = match &helm.repository {
            // The HelmRelease's own file is what Git holds of it.
            Some(_) => match &own {
                Some(Ok(own)) => own.last_change.clone(),
                _ => None,
            },
            None => match self.last_change(&repo_key, &repo, read_at, &file)? {
                Some(id) => Some(repo.commit_info(id)?),
                None => None,
            },
        };
        // Pending: the newest change after the applied commit to the chart, a values file, or
        // the HelmRelease in Git.
        let mut pending: Option<CommitInfo> = None;
        let newest = |pending: &mut Option<CommitInfo>, candidate: Option<CommitInfo>| {
            if let Some(c) = candidate
                && pending.as_ref().is_none_or(|p| c.time > p.time)
            {
                *pending = Some(c);
            }
        };
        let (commits_since_applied, file_changed_since_applied) = match applied {
            Some(a) if a != tip && helm.repository.is_some() => {
                (Some(self.commits_between(&repo_key, &repo, a, tip)?), None)
            }
            Some(a) if a != tip => {
                let count = self.commits_between(&repo_key, &repo, a, tip)?;
                let mut paths = render::helm::chart_dirs(&repo, tip, &helm.chart_path);
                for dir in render::helm::chart_dirs(&repo, a, &helm.chart_path) {
                    if !paths.contains(&dir) {
                        paths.push(dir);
                    }
                }
                paths.extend(helm.values_files.iter().cloned());
                for path in &paths {
                    let at_tip = self.last_change(&repo_key, &repo, tip, path)?;
                    let at_applied = self.last_change(&repo_key, &repo, a, path)?;
                    if at_tip != at_applied
                        && let Some(id) = at_tip
                    {
                        newest(&mut pending, Some(repo.commit_info(id)?));
                    }
                }
                (Some(count), Some(pending.is_some()))
            }
            Some(_) => (Some(0), Some(false)),
            None => (None, None),
        };
        if let Some(Ok(own)) = &own {
            newest(&mut pending, own.pending_commit.clone());
        }
        let file_changed_since_applied = match (&helm.repository, &own) {
            (Some(_), Some(Ok(own))) => own.file_changed_since_applied,
            _ => file_changed_since_applied,
        };
        let published_chart = match (&picked, &helm.repository) {
            (Some((chart, _, version)), Some(from)) if *version != helm.record.chart_version => {
                Some(crate::source::helm::PublishedChart {
                    chart: chart.clone(),
                    version: version.clone(),
                    source: from.display.clone(),
                    installed: helm.record.chart_version.clone(),
                })
            }
            _ => dependency_published,
        };

        let (hr_file, hr_lines, hr_error) = match &own {
            Some(Ok(l)) => (Some(l.tip_place.0.clone()), Some(l.tip_place.1), None),
            Some(Err(e)) => (None, None, Some(crate::text::single_line(&e.to_string()))),
            None => (
                None,
                None,
                Some("no Flux Kustomization labels on the HelmRelease".into()),
            ),
        };
        let trace = HelmTrace {
            helm_release: format!("{}/{}", helm.helm_release.0, helm.helm_release.1),
            release: helm.release.clone(),
            namespace: helm.namespace.clone(),
            revision: helm.record.revision,
            status: helm.record.status.clone(),
            chart: helm.record.chart_name.clone(),
            chart_version: helm.record.chart_version.clone(),
            chart_source: helm.chart_source.clone(),
            chart_path: helm.chart_path.as_str().to_owned(),
            values: helm.values_sources(),
            helm_release_file: hr_file,
            helm_release_lines: hr_lines,
            helm_release_not_found: hr_error,
            values_from_git: git_values.is_some(),
            chart_url: helm.repository.as_ref().map(|r| r.url.clone()),
            version_constraint: picked.as_ref().map(|p| p.1.clone()),
            desired_chart_version: picked.as_ref().map(|p| p.2.clone()),
            post_renderers: post_renderers
                .iter()
                .map(crate::source::helm::post_renderer_summary)
                .collect(),
        };
        let render_root = match (&helm.repository, &picked) {
            (Some(from), Some((chart, _, _))) => format!(
                "chart {chart} {} from {}",
                helm.record.chart_version, from.display
            ),
            _ => helm.chart_path.as_str().to_owned(),
        };
        Ok(Located {
            rule: pointer.rule,
            repo: repo.display_name(),
            local_checkout: local,
            file: file.as_str().to_owned(),
            lines,
            render_root,
            read_at: read_at.to_string(),
            applied_commit: match applied {
                Some(a) => Some(repo.commit_info(a)?),
                None => None,
            },
            last_change,
            tracked_ref: pointer.tracked_ref.clone().or(Some(tip_rev)),
            tracked_commit: Some(tip.to_string()),
            commits_since_applied,
            file_changed_since_applied,
            pending_commit: pending,
            reconciler: pointer.reconciler.clone(),
            tip_place: (file.as_str().to_owned(), lines),
            repo_key,
            written: desired.clone(),
            desired,
            desired_at_tip: at_tip,
            built_by: Default::default(),
            helm: Some(Box::new(trace)),
            chart: None,
            published_chart,
            dependency,
            chart_poll,
            source_index: 0,
            secrets: pointer.secret_texts(),
        })
    }

    /// The chart `chart` of a chart repository, at the version `constraint` picks there now,
    /// rendered with `values` (once per release and run; on disk too when `keep`), and that
    /// version.
    fn repository_render(
        &self,
        helm: &HelmSource,
        from: &RepositoryChart,
        (chart, constraint): (&str, &str),
        inputs: &Inputs<'_>,
    ) -> Result<(Arc<Vec<Document>>, String), SourceError> {
        let values = inputs.values;
        let binary = self.helm_binary(helm)?;
        let failed = |reason: String| SourceError::Helm {
            release: helm.display(),
            reason: format!(
                "cannot read chart {chart} from {} ({}): {reason}",
                from.display, from.url
            ),
        };
        let credentials = self.chart_credentials(&helm.display(), from)?;
        let wanted = from.wanted(constraint);
        let picked = self
            .charts
            .pick(
                &from.url,
                &from.kind,
                (chart, &wanted),
                credentials.as_ref(),
            )
            .map_err(&failed)?;
        let picked = match from.digest_in_version {
            true => picked.tracking_digest(),
            false => from.packaged(picked),
        };
        let in_chart = format!(
            "{}\n{}",
            from.values_files.join("\n"),
            from.ignore_missing_values_files
        );
        let cache_key = format!(
            "{}\0{chart}\0{}\0{}\0{}\0{}\0{in_chart}\0{}",
            from.url,
            picked.version,
            picked.digest,
            helm.release,
            helm.namespace,
            inputs.key()
        );
        let digest = picked.digest.clone();
        let disk_key = || {
            (inputs.keep && render::chart_repo::is_sha256_hex(&digest))
                .then(|| {
                    self.helm_disk_key(
                        helm,
                        inputs,
                        &[
                            "archive",
                            &from.url,
                            chart,
                            &picked.version,
                            &digest,
                            &in_chart,
                        ],
                    )
                })
                .flatten()
        };
        let rendered = self.helm_slot(cache_key, disk_key, || {
            let scratch = tempfile::Builder::new()
                .prefix("kubectl-gitops-chart-")
                .tempdir()
                .map_err(|e| format!("{}: creating a temporary directory: {e}", helm.display()))?;
            let archive = self
                .charts
                .fetch(&from.url, &picked, credentials.as_ref(), scratch.path())
                .map_err(|e| {
                    format!(
                        "{}: cannot read chart {chart} {} from {} ({}): {e}",
                        helm.display(),
                        picked.version,
                        from.display,
                        from.url
                    )
                })?;
            let name = RepoPath::parse(chart).unwrap_or_else(|_| helm.chart_path.clone());
            let secrets = helm.secret_texts();
            let files = from.values_in(&archive).map_err(|e| {
                format!(
                    "{}: chart {chart} {} from {}: {e}",
                    helm.display(),
                    picked.version,
                    from.display
                )
            })?;
            let template = render::helm::Template {
                helm: &binary,
                chart: &name,
                values_files: &files,
                ignore_missing_values_files: from.ignore_missing_values_files,
                values,
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
            let docs = render::helm::template_archive(&archive, &template).map_err(|e| {
                format!(
                    "{}: helm template of chart {chart} {} from {} failed: {}; fix the values \
                     in Git or pick another chart version",
                    helm.display(),
                    picked.version,
                    from.display,
                    crate::text::single_line(&helm_reason(e))
                )
            })?;
            post_render(helm, &docs, inputs.post_renderers, &name, &secrets)
        })?;
        Ok((rendered, picked.version))
    }

    /// What `watch` polls of the chart `chart` of `from` for `release`, and what it picks
    /// now (from the index or tags this run read): none for an exact version or a pin.
    pub(super) fn chart_poll(
        &self,
        release: &str,
        from: &RepositoryChart,
        (chart, wanted): (&str, &render::chart_repo::Wanted),
    ) -> Result<Option<(ChartPoll, String)>, SourceError> {
        let credentials = self.chart_credentials(release, from)?;
        let Some(poll) =
            ChartPoll::of(&from.url, &from.kind, (chart, wanted), credentials.as_ref())
        else {
            return Ok(None);
        };
        Ok(self.charts.picked(&poll).ok().map(|picked| (poll, picked)))
    }

    /// What `watch` polls of the dependency `d` from a chart repository, and what its
    /// constraint picks now (from this run's index or tags): none for an exact version.
    pub(super) fn dependency_poll(
        &self,
        d: &crate::source::helm::DependencyTrace,
    ) -> Option<(ChartPoll, String)> {
        let kind = if d.url.starts_with("oci://") {
            render::chart_repo::RepoKind::Oci(render::oci::OciRepo::parse(&d.url, false).ok()?)
        } else {
            render::chart_repo::RepoKind::Index
        };
        let credentials = self.charts.user_credentials(&d.url, &kind);
        let wanted = render::chart_repo::Wanted::Constraint(d.version_constraint.clone());
        let poll = ChartPoll::of(&d.url, &kind, (&d.chart, &wanted), credentials.as_ref())?;
        self.charts.picked(&poll).ok().map(|picked| (poll, picked))
    }

    /// The credentials for the chart repository `from`: its secretRef's, else (when the user
    /// may not read that Secret) the ones the user's Helm config keeps for its URL.
    pub(super) fn chart_credentials(
        &self,
        release: &str,
        from: &RepositoryChart,
    ) -> Result<Option<crate::render::chart_repo::Credentials>, SourceError> {
        let Some(secret) = &from.unreadable_secret else {
            if from.credentials.is_none() && from.user_config_fallback {
                return Ok(self.charts.user_credentials(&from.url, &from.kind));
            }
            return Ok(from.credentials.clone());
        };
        match self.charts.user_credentials(&from.url, &from.kind) {
            Some(mine) => Ok(Some(mine)),
            None => {
                let ns = secret.split('/').next().unwrap_or_default();
                let (config, login) = match &from.kind {
                    render::chart_repo::RepoKind::Index => (
                        "your Helm config has",
                        format!("`helm repo add NAME {} --username ..`", from.url),
                    ),
                    render::chart_repo::RepoKind::Oci(repo) => (
                        "your Helm and Docker registry configs have",
                        format!("`helm registry login {}`", repo.registry),
                    ),
                };
                Err(SourceError::Helm {
                    release: release.to_owned(),
                    reason: format!(
                        "you may not read Secret {secret}, the credentials of {} its chart comes \
                         from, and {config} none for {}: ask for get on secrets in {ns}, or run \
                         {login} with your own",
                        from.display, from.url
                    ),
                })
            }
        }
    }

    /// The `helm` binary, or the error that says it is missing.
    pub(super) fn helm_binary(&self, helm: &HelmSource) -> Result<std::path::PathBuf, SourceError> {
        self.helm.clone().ok_or_else(|| SourceError::Helm {
            release: helm.display(),
            reason: "helm is not on PATH, and its chart is rendered with `helm template`: \
                     install Helm 3 or 4 (https://helm.sh/docs/intro/install/) and run again"
                .into(),
        })
    }

    /// The render cache's key for a render of `helm` with `values` that reads `parts`; None
    /// when the render must not be kept on disk: no cache, or values from a Secret (its
    /// values, and the chart's Secrets made from them, never reach the disk).
    fn helm_disk_key(
        &self,
        helm: &HelmSource,
        inputs: &Inputs<'_>,
        parts: &[&str],
    ) -> Option<String> {
        let cache = self.render_cache.as_ref()?;
        if helm.values_from.iter().any(|(s, _)| s.kind == "Secret") {
            return None;
        }
        let apis = format!("{}\n{}", helm.api_versions.join("\n"), helm.is_upgrade());
        let values = inputs.key();
        let mut all: Vec<&str> = parts.to_vec();
        all.extend([
            helm.release.as_str(),
            helm.namespace.as_str(),
            helm.kube_version.as_str(),
            apis.as_str(),
            values.as_str(),
        ]);
        Some(cache.helm_key(&all))
    }

    /// One render per `cache_key` and run: a second caller waits for the first. With a
    /// `disk_key` (asked for by the first caller only), the render is read from the render
    /// cache, or kept there once made.
    pub(super) fn helm_slot(
        &self,
        cache_key: String,
        disk_key: impl FnOnce() -> Option<String>,
        render: impl FnOnce() -> Result<Vec<Document>, String>,
    ) -> Result<Arc<Vec<Document>>, SourceError> {
        let slot = self
            .helm_renders
            .lock()
            .expect("helm render cache lock")
            .entry(cache_key)
            .or_insert_with(|| Arc::new(OnceLock::new()))
            .clone();
        let result: &Shared<Vec<Document>> = slot.get_or_init(|| {
            self.through_render_cache(disk_key(), || {
                self.reads
                    .renders
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                render()
            })
            .map(Arc::new)
        });
        result.clone().map_err(SourceError::Repeated)
    }

    /// A `helm template` render read from the render cache by `disk_key`, else made by
    /// `render` and kept there (none without a key).
    pub(super) fn through_render_cache<E>(
        &self,
        disk_key: Option<String>,
        render: impl FnOnce() -> Result<Vec<Document>, E>,
    ) -> Result<Vec<Document>, E> {
        use std::sync::atomic::Ordering::Relaxed;
        let cache = disk_key.as_ref().zip(self.render_cache.as_ref());
        if let Some((key, cache)) = cache {
            match cache.get(key) {
                render::CacheLookup::Hit(docs) => {
                    self.reads.cached_helm.fetch_add(1, Relaxed);
                    return Ok(docs);
                }
                render::CacheLookup::Damaged => {
                    self.reads.damaged_renders.fetch_add(1, Relaxed);
                }
                render::CacheLookup::Miss => {}
            }
        }
        self.reads.helm_templates.fetch_add(1, Relaxed);
        let docs = render()?;
        if let Some((key, cache)) = cache {
            // Not kept: rendered again next time.
            let _ = cache.put(key, &docs);
        }
        Ok(docs)
    }

    /// The dependencies from chart repositories of the chart at `chart` (of `repo` at
    /// `commit`) that its `charts/` lacks, each picked as source-controller picks it: by the
    /// dependency's repository URL and version constraint, with the user's credentials for
    /// that URL. None of them when the chart's dependencies cannot be read (its render says
    /// why); an error names one that cannot be picked.
    pub(super) fn chart_repo_dependencies(
        &self,
        repo: &Repo,
        commit: CommitId,
        chart: &RepoPath,
    ) -> Result<Vec<(String, String, render::chart_repo::Picked)>, String> {
        let mut out = Vec::new();
        for d in render::helm::dependencies(repo, commit, chart).unwrap_or_default() {
            let render::helm::DependencyFrom::Repository { url, version } = d.from else {
                continue;
            };
            let failed = |e: String| {
                format!(
                    "its dependency {} {version} from {url} cannot be read: {e}; check the URL \
                     and your credentials for it (helm registry login, helm repo add)",
                    d.name
                )
            };
            let kind = if url.starts_with("oci://") {
                render::chart_repo::RepoKind::Oci(
                    render::oci::OciRepo::parse(&url, false).map_err(failed)?,
                )
            } else {
                render::chart_repo::RepoKind::Index
            };
            let credentials = self.charts.user_credentials(&url, &kind);
            let wanted = render::chart_repo::Wanted::Constraint(version.clone());
            let picked = self
                .charts
                .pick(&url, &kind, (&d.name, &wanted), credentials.as_ref())
                .map_err(failed)?;
            out.push((d.name, url, picked));
        }
        Ok(out)
    }

    /// For an object the chart at `chart` (at `commit`) renders from `file`, a template of
    /// one of its dependencies from a chart repository: that dependency, the version its
    /// constraint picks there now, and what the applied object's `helm.sh/chart` label says
    /// it was applied from.
    pub(super) fn dependency_trace(
        &self,
        repo: &Repo,
        commit: CommitId,
        chart: &RepoPath,
        file: &str,
        applied: Option<&Value>,
    ) -> Option<crate::source::helm::DependencyTrace> {
        let (rendered_as, template, dependency) = dependency_of(repo, commit, chart, file)?;
        let render::helm::DependencyFrom::Repository { url, version } = dependency.from else {
            return None;
        };
        let picked = self.chart_repo_dependencies(repo, commit, chart).ok()?;
        let (_, _, picked) = picked.iter().find(|(n, _, _)| *n == dependency.name)?;
        Some(crate::source::helm::DependencyTrace {
            alias: (rendered_as != dependency.name).then(|| rendered_as.to_owned()),
            chart: dependency.name,
            template: template.to_owned(),
            url,
            version_constraint: version,
            desired_version: picked.version.clone(),
            applied_label: applied
                .and_then(|a| a["metadata"]["labels"]["helm.sh/chart"].as_str())
                .map(str::to_owned),
        })
    }

    /// `picked` (from [`Locator::chart_repo_dependencies`] at `commit`) as the object from
    /// `file` was applied: the dependency that rendered it at the version its applied
    /// `helm.sh/chart` label (`label`) names, when the repository still offers it. What
    /// blame renders as applied, so a version published since does not change its fields.
    pub(super) fn pinned_to_applied(
        &self,
        (repo, commit, chart): (&Repo, CommitId, &RepoPath),
        mut picked: Vec<(String, String, render::chart_repo::Picked)>,
        file: &str,
        label: Option<&str>,
    ) -> Vec<(String, String, render::chart_repo::Picked)> {
        let Some((rendered_as, _, dependency)) = dependency_of(repo, commit, chart, file) else {
            return picked;
        };
        let name = dependency.name;
        let Some(label) = label else {
            return picked;
        };
        let Some(installed) = label.strip_prefix(&format!("{rendered_as}-")) else {
            return picked;
        };
        let Some((_, url, p)) = picked.iter_mut().find(|(n, _, _)| *n == name) else {
            return picked;
        };
        if chart_label(rendered_as, &p.version) == label {
            return picked;
        }
        let kind = if url.starts_with("oci://") {
            match render::oci::OciRepo::parse(url, false) {
                Ok(oci) => render::chart_repo::RepoKind::Oci(oci),
                Err(_) => return picked,
            }
        } else {
            render::chart_repo::RepoKind::Index
        };
        let credentials = self.charts.user_credentials(url, &kind);
        // The label made a version's `+` an `_`, which no version holds.
        let exact = installed.replace('_', "+");
        // As written: an exact version is matched as a string first, build metadata too.
        let wanted = render::chart_repo::Wanted::Constraint(exact);
        if let Ok(at) = self
            .charts
            .pick(url, &kind, (&name, &wanted), credentials.as_ref())
        {
            *p = at;
        }
        picked
    }

    /// The archives of `picked` (from [`Locator::chart_repo_dependencies`]) by name, from the
    /// chart cache, else fetched (into `scratch` when the cache does not keep them).
    pub(super) fn fetch_dependencies(
        &self,
        picked: &[(String, String, render::chart_repo::Picked)],
        scratch: &Path,
    ) -> Result<Vec<(String, std::path::PathBuf)>, String> {
        let mut out = Vec::new();
        for (i, (name, url, p)) in picked.iter().enumerate() {
            let kind = if url.starts_with("oci://") {
                render::oci::OciRepo::parse(url, false).map(render::chart_repo::RepoKind::Oci)?
            } else {
                render::chart_repo::RepoKind::Index
            };
            let credentials = self.charts.user_credentials(url, &kind);
            let into = scratch.join(format!("dependency-{i}"));
            std::fs::create_dir_all(&into).map_err(|e| format!("{}: {e}", into.display()))?;
            let archive = self
                .charts
                .fetch(url, p, credentials.as_ref(), &into)
                .map_err(|e| {
                    format!(
                        "its dependency {name} {} from {url} cannot be read: {e}",
                        p.version
                    )
                })?;
            out.push((name.clone(), archive));
        }
        Ok(out)
    }

    /// The chart of `helm` rendered at `commit` with `values`, once per run.
    fn helm_render(
        &self,
        repo_key: &str,
        repo: &Arc<Repo>,
        commit: CommitId,
        helm: &HelmSource,
        inputs: &Inputs<'_>,
    ) -> Result<Arc<Vec<Document>>, SourceError> {
        let binary = self.helm_binary(helm)?;
        let values = inputs.values;
        let build = helm.version_build.at(&commit.to_string());
        let files: Vec<&str> = helm.values_files.iter().map(RepoPath::as_str).collect();
        let cache_key = format!(
            "{repo_key}\0{commit}\0{}\0{}\0{}\0{}\0{:?}\0{}",
            helm.release,
            helm.namespace,
            helm.chart_path.as_str(),
            files.join("\0"),
            build,
            inputs.key()
        );
        // Read when the render is not in this run's cache yet: once per render, not per object.
        let from_repositories = std::cell::OnceCell::new();
        let from_repositories = || {
            from_repositories
                .get_or_init(|| self.chart_repo_dependencies(repo, commit, &helm.chart_path))
        };
        // What the render reads from Git: the chart's tree and the values files, by their ids;
        // and its dependencies from chart repositories, by their digests.
        let disk_key = || {
            if !inputs.keep {
                return None;
            }
            let picked = from_repositories().as_ref().ok()?;
            // An archive an index gives no digest for is not known by its content: not kept.
            if !picked
                .iter()
                .all(|(_, _, p)| render::chart_repo::is_sha256_hex(&p.digest))
            {
                return None;
            }
            let mut read = render::helm::chart_dirs(repo, commit, &helm.chart_path);
            read.extend(helm.values_files.iter().cloned());
            let ids: Vec<String> = repo
                .content_ids(commit, &read)
                .ok()?
                .into_iter()
                .map(|(path, id)| format!("{path} {}", id.as_deref().unwrap_or("-")))
                .collect();
            let fetched: Vec<String> = picked
                .iter()
                .map(|(name, url, p)| format!("{name} {url} {} {}", p.version, p.digest))
                .collect();
            let mut parts: Vec<&str> = vec!["git", helm.chart_path.as_str()];
            parts.extend(ids.iter().map(String::as_str));
            parts.extend(fetched.iter().map(String::as_str));
            parts.push(build.as_deref().unwrap_or("-"));
            self.helm_disk_key(helm, inputs, &parts)
        };
        self.helm_slot(cache_key, disk_key, || {
            let failed = |e: String| {
                format!(
                    "{}: chart {} at {}: {e}",
                    helm.display(),
                    helm.chart_path.as_str(),
                    commit.short()
                )
            };
            let scratch = tempfile::Builder::new()
                .prefix("kubectl-gitops-chart-")
                .tempdir()
                .map_err(|e| failed(format!("creating a temporary directory: {e}")))?;
            let picked = from_repositories().clone().map_err(failed)?;
            let dependencies = self
                .fetch_dependencies(&picked, scratch.path())
                .map_err(failed)?;
            let secrets = helm.secret_texts();
            let template = render::helm::Template {
                helm: &binary,
                chart: &helm.chart_path,
                values_files: &helm.values_files,
                ignore_missing_values_files: helm.ignore_missing_values_files,
                values,
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
            let docs = render::helm::template(repo, commit, &template).map_err(|e| {
                format!(
                    "{}: helm template of chart {} at {} failed: {}; fix the chart or the \
                     values in Git",
                    helm.display(),
                    helm.chart_path.as_str(),
                    commit.short(),
                    crate::text::single_line(&helm_reason(e))
                )
            })?;
            post_render(
                helm,
                &docs,
                inputs.post_renderers,
                &helm.chart_path,
                &secrets,
            )
        })
    }
}

/// What a HelmRelease's chart is rendered with: its values, its post-renderers, and whether
/// the render may be kept on disk.
struct Inputs<'a> {
    values: &'a Value,
    post_renderers: &'a [Value],
    keep: bool,
}

impl Inputs<'_> {
    /// What tells two renders apart (besides the chart): the values and post-renderers.
    fn key(&self) -> String {
        match self.post_renderers {
            [] => self.values.to_string(),
            post => format!("{}\0{}", self.values, Value::from(post.to_vec())),
        }
    }
}

/// `docs` through the HelmRelease's post-renderers, or the error that says why not.
pub(super) fn post_render(
    helm: &HelmSource,
    docs: &[Document],
    post_renderers: &[Value],
    chart: &RepoPath,
    secrets: &[String],
) -> Result<Vec<Document>, String> {
    render::helm::post_render(docs, post_renderers, chart, secrets).map_err(|e| {
        format!(
            "{}: its postRenderers failed over the chart's render: {}; fix spec.postRenderers \
             in Git",
            helm.display(),
            crate::text::single_line(&crate::text::redact(&helm_reason(e), secrets))
        )
    })
}

/// What `helm template` said, or why its output could not be read.
pub(super) fn helm_reason(e: render::helm::HelmError) -> String {
    match e {
        render::helm::HelmError::Failed(reason) => reason,
        render::helm::HelmError::Render(e) => e.to_string(),
    }
}

/// For an object a dependency from a chart repository rendered (`d`), the version its
/// constraint picks now, when its applied `helm.sh/chart` label (as `helm create` charts
/// label everything: `cache-0.3.1`) names another; without one nothing is claimed.
fn dependency_published(
    d: &crate::source::helm::DependencyTrace,
) -> Option<crate::source::helm::PublishedChart> {
    let rendered_as = d.alias.as_deref().unwrap_or(&d.chart);
    let label = d.applied_label.as_deref()?;
    let installed = label.strip_prefix(&format!("{rendered_as}-"))?;
    (label != chart_label(rendered_as, &d.desired_version)).then(|| {
        crate::source::helm::PublishedChart {
            chart: d.chart.clone(),
            version: d.desired_version.clone(),
            source: d.url.clone(),
            installed: installed.to_owned(),
        }
    })
}

/// The dependency of the chart at `chart` (at `commit`) that rendered `file`: the name helm
/// rendered it under (its alias, when it has one), the template's path inside it, and the
/// dependency.
fn dependency_of<'a>(
    repo: &Repo,
    commit: CommitId,
    chart: &RepoPath,
    file: &'a str,
) -> Option<(&'a str, &'a str, render::helm::Dependency)> {
    let (rendered_as, template) = render::helm::in_dependency(file, chart)?;
    let d = render::helm::dependencies(repo, commit, chart)
        .ok()?
        .into_iter()
        .find(|d| d.rendered_as.iter().any(|n| n == rendered_as))?;
    Some((rendered_as, template, d))
}

/// The `helm.sh/chart` label `helm create`'s charts give what chart `name` at `version`
/// renders: `name-version`, `+` made `_`, cut to 63 characters, no `-` at its end.
fn chart_label(name: &str, version: &str) -> String {
    let label: String = format!("{name}-{version}")
        .replace('+', "_")
        .chars()
        .take(63)
        .collect();
    label.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_chart_label_is_what_helm_create_charts_write() {
        assert_eq!(chart_label("cache", "0.3.1"), "cache-0.3.1");
        assert_eq!(chart_label("cache", "0.3.1+build.7"), "cache-0.3.1_build.7");
        let long = format!("{}-1.0.0", "a".repeat(60));
        assert_eq!(chart_label(&"a".repeat(60), "1.0.0"), long[..63]);
        // Cut at a `-`: none left at the end.
        assert_eq!(chart_label(&"b".repeat(62), "1.0.0"), "b".repeat(62));
    }

    #[test]
    fn a_document_without_a_namespace_is_in_the_releases() {
        let doc = Document {
            file: "charts/web/templates/cm.yaml".into(),
            lines: (1, 4),
            object: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}}),
            built_by: Default::default(),
        };
        let key = |ns: Option<&str>| ObjectKey {
            group: String::new(),
            kind: "ConfigMap".into(),
            namespace: ns.map(str::to_owned),
            name: "web".into(),
        };
        assert!(is(&doc, &key(Some("shop")), "shop"));
        assert!(!is(&doc, &key(Some("other")), "shop"));
        // A cluster-scoped object (a ClusterRole of the chart) has no namespace on either side.
        assert!(is(&doc, &key(None), "shop"));
        let mut elsewhere = doc.clone();
        elsewhere.object["metadata"]["namespace"] = "other".into();
        assert!(is(&elsewhere, &key(Some("other")), "shop"));
    }
}
