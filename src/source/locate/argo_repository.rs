//! An Argo CD source whose chart comes from a chart repository (`chart` set: a Helm
//! repository's index, or an OCI registry), rendered as the repo-server renders it: the
//! archive of the version `targetRevision` picks, with the source's values files from a `ref`
//! source's repository, its values and parameters. As synced is the version
//! `status.sync.revision(s)` names, with the values files at the `ref` source's synced commit;
//! desired is what the constraint picks now, with the values files at the tracked tip.

use std::sync::Arc;

use serde_json::{Value, json};

use super::argo::ValuesRepo;
use super::{Located, Locator};
use crate::git::{CommitId, Repo, RepoPath};
use crate::object::ObjectKey;
use crate::render::{self, Document, chart_repo::Wanted};
use crate::source::helm::{ChartTrace, PublishedChart};
use crate::source::reconciler::ArgoRepositoryChart;
use crate::source::{ArgoHelm, Pointer, SourceError};

impl Locator {
    /// [`Locator::locate`] for an object of an Argo CD source whose chart is `c`.
    pub(super) fn locate_argo_repository_chart(
        &self,
        pointer: &Pointer,
        h: &ArgoHelm,
        c: &ArgoRepositoryChart,
        key: &ObjectKey,
    ) -> Result<Located, SourceError> {
        let values = self.values_repo(pointer, key)?;
        let (tip_at, synced_at) = match &values {
            Some(v) => (Some(v.commits.tip), Some(v.commits.read_at())),
            None => (None, None),
        };
        // Values files of further `ref` repositories: as synced there, and at their tips.
        let more = self.git_chart_values_repos(pointer, key)?;
        let (more_synced, more_tips) = super::argo::values_commits(&more);
        let (synced_pointer, tip_pointer) = (
            Locator::values_read_at(pointer, &more_synced),
            Locator::values_read_at(pointer, &more_tips),
        );
        let h_of = |p: &Pointer| p.argo_helm.clone().expect("an Argo CD Helm source");
        let (h_synced, h_tip) = (h_of(&synced_pointer), h_of(&tip_pointer));
        let repo = values.as_ref().map(|v| v.repo.as_ref());
        let (tip_docs, desired_version) = self.argo_repository_render(
            &h_tip,
            c,
            Wanted::Constraint(c.from.version.clone()),
            repo.zip(tip_at),
        )?;
        let (synced_docs, synced_version) = match &c.synced_version {
            Some(v) if *v != desired_version || synced_at != tip_at || more_synced != more_tips => {
                self.argo_repository_render(
                    &h_synced,
                    c,
                    Wanted::Constraint(v.clone()),
                    repo.zip(synced_at),
                )?
            }
            _ => (tip_docs.clone(), desired_version.clone()),
        };
        let find = |docs: &[Document]| {
            docs.iter()
                .find(|d| d.key().is_some_and(|k| key.declared_by(&k)))
                .cloned()
        };
        let chart_display = format!(
            "chart {} {synced_version} from {}",
            c.from.chart, c.from.url
        );
        let synced = find(&synced_docs).ok_or_else(|| SourceError::NotDeclared {
            file: chart_display.clone(),
            commit: synced_at.map_or_else(|| synced_version.clone(), |c| c.short()),
            key: key.to_string(),
        })?;
        let at_tip = find(&tip_docs).map(|d| Arc::new(d.object));
        let desired = Arc::new(synced.object);

        // What Git holds of the object: its values files; the newest change to one of them
        // is its last change, and one after the synced commit is pending.
        let more_at: Vec<(&Repo, CommitId)> = more
            .iter()
            .map(|v| (v.repo.as_ref(), v.commits.read_at()))
            .collect();
        let (all_files, value_sources) = super::argo::values_sources(
            h,
            values
                .as_ref()
                .map(|v| (v.repo.as_ref(), v.commits.read_at())),
            &more_at,
        );
        let files = super::argo::in_git(&all_files);
        let mut changes = match &values {
            Some(v) => self.values_changes(v, &files)?,
            None => Default::default(),
        };
        if let Some(c) = self.values_repos_pending(&more, h)? {
            super::argo::newer(&mut changes.pending, c);
        }
        let chart_poll = self.chart_poll(
            &h.application,
            &c.from,
            (&c.from.chart, &Wanted::Constraint(c.from.version.clone())),
        )?;
        let published_chart = (desired_version != synced_version).then(|| PublishedChart {
            chart: c.from.chart.clone(),
            version: desired_version.clone(),
            source: c.from.display.clone(),
            installed: synced_version.clone(),
        });
        let trace = ChartTrace {
            application: h.application.clone(),
            release: h.release.clone(),
            namespace: h.namespace.clone(),
            chart: c.from.chart.clone(),
            chart_version: synced_version.clone(),
            chart_path: String::new(),
            values: value_sources,
            chart_url: Some(c.from.url.clone()),
            version_constraint: Some(c.from.version.clone()),
            desired_chart_version: Some(desired_version.clone()),
            values_repos: super::argo::values_repos_trace(&more, h),
        };
        // A template inside the archive: no lines in Git (0-0: none shown).
        let file = synced.file.clone();
        let tip_file = find(&tip_docs).map_or_else(|| file.clone(), |d| d.file);
        let (repo_name, repo_key, read_at, applied_commit, tracked_ref, tracked_commit, local) =
            match &values {
                Some(v) => (
                    v.repo.display_name(),
                    v.key.clone(),
                    v.commits.read_at().to_string(),
                    match v.commits.applied {
                        Some(a) => Some(v.repo.commit_info(a)?),
                        None => None,
                    },
                    pointer
                        .tracked_ref
                        .clone()
                        .or(Some(v.commits.tip_rev.clone())),
                    Some(v.commits.tip.to_string()),
                    v.commits.local,
                ),
                None => (
                    c.from.url.clone(),
                    format!("chart repository {}", c.from.url),
                    String::new(),
                    None,
                    None,
                    None,
                    false,
                ),
            };
        Ok(Located {
            rule: pointer.rule,
            repo: repo_name,
            local_checkout: local,
            file: file.clone(),
            lines: (0, 0),
            render_root: chart_display,
            read_at,
            applied_commit,
            last_change: changes.last_change,
            tracked_ref,
            tracked_commit,
            commits_since_applied: changes.commits_since_applied,
            file_changed_since_applied: changes.file_changed_since_applied,
            pending_commit: changes.pending,
            reconciler: pointer.reconciler.clone(),
            tip_place: (tip_file, (0, 0)),
            repo_key,
            written: desired.clone(),
            desired,
            desired_at_tip: at_tip,
            built_by: Default::default(),
            helm: None,
            chart: Some(Box::new(trace)),
            published_chart,
            dependency: None,
            chart_poll,
            source_index: 0,
            secrets: pointer.secret_texts(),
        })
    }

    /// Every object the chart of `c` renders now (what `diff` looks for in the cluster).
    pub(super) fn argo_repository_documents(
        &self,
        pointer: &Pointer,
        h: &ArgoHelm,
        c: &ArgoRepositoryChart,
    ) -> Result<Arc<Vec<Document>>, SourceError> {
        let values = self.values_repo(pointer, &super::application_key())?;
        let at = values.as_ref().map(|v| (v.repo.as_ref(), v.commits.tip));
        let tip = self.values_at_tip(pointer)?;
        let h = tip.argo_helm.as_deref().unwrap_or(h);
        Ok(self
            .argo_repository_render(h, c, Wanted::Constraint(c.from.version.clone()), at)?
            .0)
    }

    /// The `ref` source's repository the values files are read from, when there is one.
    fn values_repo(
        &self,
        pointer: &Pointer,
        key: &ObjectKey,
    ) -> Result<Option<ValuesRepo>, SourceError> {
        let Some(url) = &pointer.repo else {
            return Ok(None);
        };
        let (key, repo) = self.repo_for(Some(url), key, pointer.rule)?;
        let commits = self.commits(pointer, &key, &repo)?;
        Ok(Some(ValuesRepo { key, repo, commits }))
    }

    /// The chart of `c` at the version `wanted` picks, rendered for `h` with its values files
    /// read at `at` (once per run), and that version.
    fn argo_repository_render(
        &self,
        h: &ArgoHelm,
        c: &ArgoRepositoryChart,
        wanted: Wanted,
        at: Option<(&Repo, CommitId)>,
    ) -> Result<(Arc<Vec<Document>>, String), SourceError> {
        let from = &c.from;
        let failed = |reason: String| SourceError::Helm {
            release: h.application.clone(),
            reason,
        };
        let binary = self.helm.clone().ok_or_else(|| {
            failed(format!(
                "its chart {} comes from {} and is rendered with `helm template`, and helm is \
                 not on PATH: install Helm 3 or 4 (https://helm.sh/docs/intro/install/) and \
                 run again",
                from.chart, from.url
            ))
        })?;
        let credentials = self.chart_credentials(&h.application, from)?;
        let picked = self
            .charts
            .pick(
                &from.url,
                &from.kind,
                (&from.chart, &wanted),
                credentials.as_ref(),
            )
            .map_err(|e| {
                failed(format!(
                    "cannot read chart {} from {}: {e}",
                    from.chart, from.url
                ))
            })?;
        let more = self.values_repos_at(h)?;
        let more_at: Vec<(&Repo, CommitId)> = more.iter().map(|(r, c)| (r.as_ref(), *c)).collect();
        let (files, _) = super::argo::values_sources(h, at, &more_at);
        let commit = at.map(|(_, c)| c.to_string()).unwrap_or_default();
        let cache_key = format!(
            "argo\0{}\0{}\0{}\0{}\0{commit}\0{}",
            from.url,
            from.chart,
            picked.version,
            picked.digest,
            h.fingerprint()
        );
        let version = picked.version.clone();
        // What the render reads: the archive, by its digest, and the values files by their ids.
        let disk_key = || {
            if !render::chart_repo::is_sha256_hex(&picked.digest) {
                return None;
            }
            let mut parts = vec![
                "archive".to_owned(),
                from.url.clone(),
                from.chart.clone(),
                picked.version.clone(),
                picked.digest.clone(),
                format!("{files:?}"),
            ];
            if let Some((repo, commit)) = at {
                parts.extend(super::argo::ids(
                    repo,
                    commit,
                    &super::argo::in_git(&files),
                )?);
            }
            parts.extend(super::argo::values_repos_ids(&files, &more_at)?);
            self.argo_disk_key(h, &parts)
        };
        let rendered = self.helm_slot(cache_key, disk_key, || {
            let scratch = tempfile::Builder::new()
                .prefix("kubectl-gitops-chart-")
                .tempdir()
                .map_err(|e| format!("{}: creating a temporary directory: {e}", h.application))?;
            let archive = self
                .charts
                .fetch(&from.url, &picked, credentials.as_ref(), scratch.path())
                .map_err(|e| {
                    format!(
                        "{}: cannot read chart {} {} from {}: {e}",
                        h.application, from.chart, picked.version, from.url
                    )
                })?;
            let name = RepoPath::parse(&from.chart).unwrap_or_else(|_| RepoPath::root());
            let empty = json!({});
            let values: &Value = h.values.as_ref().unwrap_or(&empty);
            let t = super::argo::argo_template(
                h,
                &binary,
                &name,
                (&[], &[], &more_at),
                // An archive holds its dependencies.
                (values, &[]),
            );
            let sets = [(values.clone(), h.parameters.clone())];
            let files = (files.as_slice(), h.ignore_missing_value_files);
            render::helm::template_archive_argo(&archive, at, files, &t, &sets)
                .map_err(super::helm::helm_reason)
                .and_then(|mut each| each.remove(0).map_err(super::helm::helm_reason))
                .map_err(|reason| {
                    format!(
                        "{}: helm template of chart {} {} from {} failed: {}; fix the values \
                         (in Git, or the Application's helm settings) or pick another chart \
                         version",
                        h.application,
                        from.chart,
                        picked.version,
                        from.url,
                        crate::text::single_line(&reason)
                    )
                })
        })?;
        Ok((rendered, version))
    }
}
