//! A chart rendered as helm-controller renders it: `helm template` (the real one on PATH) over
//! the chart directory exported at a commit, with the release's name, namespace, Kubernetes
//! version and values, hooks left out (a release manifest holds none). Values go in on stdin,
//! so a Secret's never touch the disk.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::{Document, RenderError, documents};
use crate::git::{CommitId, Repo, RepoPath};

/// What to render.
pub struct Template<'a> {
    /// The `helm` binary.
    pub helm: &'a Path,
    pub chart: &'a RepoPath,
    /// Repository paths, merged in order over an empty values.yaml (source-controller replaces
    /// the chart's values.yaml with them when they are given).
    pub values_files: &'a [RepoPath],
    /// `ignoreMissingValuesFiles`: a values file that is not there is skipped, else an error
    /// naming it. The chart's values.yaml is replaced even when none is there, as
    /// source-controller replaces it with what it merged: nothing.
    pub ignore_missing_values_files: bool,
    /// Merged last (`valuesFrom` and `spec.values`).
    pub values: &'a Value,
    pub release: &'a str,
    pub namespace: &'a str,
    pub kube_version: &'a str,
    /// The cluster's API versions, for `.Capabilities.APIVersions`.
    pub api_versions: &'a [String],
    /// How the reconciler calls helm where helm-controller and Argo CD differ.
    pub style: Style<'a>,
    /// Values from Secrets: a chart's `fail` or `required` message may quote one, and helm's
    /// message is shown with each of them hidden.
    pub secrets: &'a [String],
    /// For a chart in Git: build metadata source-controller puts in the version of the chart
    /// it packages (`e87e77fafdf6.1`), written into the exported Chart.yaml.
    pub version_build: Option<&'a str>,
    /// Rendered as an upgrade (`--is-upgrade`: `.Release.IsUpgrade`), as helm-controller
    /// renders every revision after the first.
    pub is_upgrade: bool,
    /// For a chart in Git: the archive of each of its dependencies from a chart repository
    /// that its `charts/` lacks, by name (see [`dependencies`]).
    pub dependencies: &'a [(String, std::path::PathBuf)],
}

/// What differs between helm-controller's render and Argo CD's repo-server's.
#[derive(Clone, Copy)]
pub enum Style<'a> {
    /// helm-controller: values files replace the chart's values.yaml; CRDs are applied from
    /// the chart's `crds/` apart from the manifest, so they are not rendered.
    Flux,
    /// Argo CD: values files are merged over the chart's values.yaml, then the inline values,
    /// then `parameters` (`--set`, `--set-string` when forced); `crds/` is rendered unless
    /// `skipCrds`, and `skipTests` leaves the test hooks out.
    Argo {
        parameters: &'a [Parameter],
        include_crds: bool,
        skip_tests: bool,
        /// A chart in Git's values files in order (`values_files` are those of its own
        /// repository among them), and the repository and commit of each other `ref` source
        /// they name. A chart archive's come apart ([`template_archive_argo`]).
        files: &'a [ArgoValuesFile],
        values_repos: &'a [(&'a Repo, CommitId)],
    },
}

/// Why a chart did not render.
#[derive(Debug)]
pub enum HelmError {
    /// `helm template` failed: its message, with temporary paths named as the repository's.
    Failed(String),
    Render(RenderError),
}

impl From<RenderError> for HelmError {
    fn from(e: RenderError) -> HelmError {
        HelmError::Render(e)
    }
}

impl From<crate::git::GitError> for HelmError {
    fn from(e: crate::git::GitError) -> HelmError {
        HelmError::Render(RenderError::Git(e))
    }
}

/// Renders the chart at `commit`. Each document's `file` is the template it came from, as a
/// repository path (`charts/web/templates/deployment.yaml`).
pub fn template(
    repo: &Repo,
    commit: CommitId,
    t: &Template<'_>,
) -> Result<Vec<Document>, HelmError> {
    let prepared = prepare(repo, commit, t)?;
    prepared.render(t, t.values, style_parameters(t))
}

/// Renders the chart at `commit` once for each of `sets` (each in place of `t.values`),
/// exported once, a few renders at a time: blame's probes.
pub fn template_each(
    repo: &Repo,
    commit: CommitId,
    t: &Template<'_>,
    sets: &[Value],
) -> Result<Vec<Result<Vec<Document>, HelmError>>, HelmError> {
    let prepared = prepare(repo, commit, t)?;
    Ok(each(sets, |values| {
        prepared.render(t, values, style_parameters(t))
    }))
}

/// An Argo CD `parameters` entry: name, value, forceString (`--set-string`).
pub type Parameter = (String, String, bool);

/// [`template_each`] for an Argo CD source, where a value set by a parameter is changed in
/// the parameters (`--set` wins over every values file): each set's values on stdin with its
/// parameters in place of the style's.
pub fn template_each_with_parameters(
    repo: &Repo,
    commit: CommitId,
    t: &Template<'_>,
    sets: &[(Value, Vec<Parameter>)],
) -> Result<Vec<Result<Vec<Document>, HelmError>>, HelmError> {
    let prepared = prepare(repo, commit, t)?;
    Ok(each(sets, |(values, parameters)| {
        prepared.render(t, values, parameters)
    }))
}

/// The parameters the style passes (none for helm-controller).
fn style_parameters<'a>(t: &Template<'a>) -> &'a [Parameter] {
    match t.style {
        Style::Argo { parameters, .. } => parameters,
        Style::Flux => &[],
    }
}

/// Renders a chart archive (a chart from a chart repository) as helm-controller does: its
/// own values.yaml under `t.values`. Documents are named `<t.chart>/templates/...`. With
/// `t.values_files` (paths in the chart; `archive` is then the chart unpacked), those files
/// are merged in order in place of its values.yaml, as source-controller packages it.
pub fn template_archive(archive: &Path, t: &Template<'_>) -> Result<Vec<Document>, HelmError> {
    let args = chart_values_files(archive, t)?;
    let mut cmd = command(t, archive);
    cmd.args(&args);
    run(cmd, t, t.values, archive.parent().unwrap_or(archive))
}

/// [`template_archive`] once for each of `sets`, a few at a time.
pub fn template_archive_each(
    archive: &Path,
    t: &Template<'_>,
    sets: &[Value],
) -> Vec<Result<Vec<Document>, HelmError>> {
    let args = match chart_values_files(archive, t) {
        Ok(args) => args,
        Err(e) => {
            let reason = match e {
                HelmError::Failed(r) => r,
                HelmError::Render(e) => e.to_string(),
            };
            return sets
                .iter()
                .map(|_| Err(HelmError::Failed(reason.clone())))
                .collect();
        }
    };
    each(sets, |values| {
        let mut cmd = command(t, archive);
        cmd.args(&args);
        run(cmd, t, values, archive.parent().unwrap_or(archive))
    })
}

/// The `-f` arguments of an unpacked chart's `t.values_files`, each copied out of the chart
/// (a values file must not count as a template), its values.yaml emptied: none without them.
fn chart_values_files(
    chart_dir: &Path,
    t: &Template<'_>,
) -> Result<Vec<std::ffi::OsString>, HelmError> {
    if t.values_files.is_empty() {
        return Ok(Vec::new());
    }
    let scratch = chart_dir.parent().unwrap_or(chart_dir);
    let args = values_file_args(chart_dir, scratch, t, "in the chart")?;
    std::fs::write(chart_dir.join("values.yaml"), "{}\n").map_err(|source| RenderError::Io {
        what: "writing the chart's values.yaml".into(),
        source,
    })?;
    Ok(args)
}

/// The `-f` arguments of `t.values_files` under `root`, each copied to `scratch` first (a
/// values file inside the chart must not count as a template, and the chart's values.yaml
/// may be one of them: each is read before it is replaced). A missing one is skipped under
/// `ignoreMissingValuesFiles`, else an error naming it and the `place` it was looked for.
fn values_file_args(
    root: &Path,
    scratch: &Path,
    t: &Template<'_>,
    place: &str,
) -> Result<Vec<std::ffi::OsString>, HelmError> {
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    for (i, file) in t.values_files.iter().enumerate() {
        let from = root.join(file.as_str());
        if !from.is_file() {
            if t.ignore_missing_values_files {
                continue;
            }
            return Err(HelmError::Failed(format!(
                "there is no values file {} {place} (spec.chart.spec.valuesFiles); add it, or \
                 set ignoreMissingValuesFiles to skip it",
                file.as_str()
            )));
        }
        let copy = scratch.join(format!(".values-{i}.yaml"));
        std::fs::copy(&from, &copy).map_err(|source| RenderError::Io {
            what: format!("reading {}", file.as_str()),
            source,
        })?;
        args.push("-f".into());
        args.push(copy.into());
    }
    Ok(args)
}

/// `render` of every set, on as many threads as there are cores (at most 4), in order.
fn each<S: Sync, T: Send>(sets: &[S], render: impl Fn(&S) -> T + Sync) -> Vec<T> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(Vec::with_capacity(sets.len()));
    std::thread::scope(|scope| {
        for _ in 0..workers.min(sets.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(values) = sets.get(i) else { break };
                    let out = render(values);
                    done.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((i, out));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, out)| out).collect()
}

/// A chart exported at a commit with its values files in place, and the arguments that say
/// how to render it: rendered any number of times.
struct Prepared {
    tmp: tempfile::TempDir,
    chart_dir: std::path::PathBuf,
    args: Vec<std::ffi::OsString>,
    /// Put in the chart's `charts/`: those from Git name their templates by their own paths.
    dependencies: Vec<Dependency>,
    /// Vendored charts that are symlinks in `charts/`: helm's name of a template through the
    /// link (`charts/web/charts/common/`), and the path it leads to (`charts/common/`).
    links: Vec<(String, String)>,
}

impl Prepared {
    fn render(
        &self,
        t: &Template<'_>,
        values: &Value,
        parameters: &[Parameter],
    ) -> Result<Vec<Document>, HelmError> {
        let mut cmd = command(t, &self.chart_dir);
        for (name, value, force_string) in parameters {
            cmd.arg(if *force_string {
                "--set-string"
            } else {
                "--set"
            });
            cmd.arg(format!("{name}={}", escape_set(value)));
        }
        cmd.args(&self.args);
        let mut docs = run(cmd, t, values, self.tmp.path())?;
        for doc in &mut docs {
            if let Some(file) = dependency_file(&doc.file, t.chart, &self.dependencies) {
                doc.file = file;
            } else if let Some((link, real)) = self
                .links
                .iter()
                .find(|(link, _)| doc.file.starts_with(link))
            {
                doc.file = format!("{real}{}", &doc.file[link.len()..]);
            }
        }
        Ok(docs)
    }
}

fn prepare(repo: &Repo, commit: CommitId, t: &Template<'_>) -> Result<Prepared, HelmError> {
    let tmp = scratch_dir("kubectl-gitops-helm-")?;
    let mut paths = vec![t.chart.clone()];
    paths.extend(t.values_files.iter().cloned());
    paths.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    paths.dedup();
    repo.export_paths(commit, &paths, tmp.path())?;
    let chart_dir = tmp.path().join(t.chart.as_str());
    let dependencies = dependencies(repo, commit, t.chart)?;
    let links = vendored_links(repo, commit, t.chart);
    place_dependencies(repo, commit, &chart_dir, (&dependencies, t.dependencies))?;
    super::remote::check(tmp.path(), &chart_dir).map_err(|reason| RenderError::Refused {
        root: t.chart.as_str().to_owned(),
        reason,
    })?;
    if let Some(build) = t.version_build {
        super::chart_repo::set_chart_version(&chart_dir.join("Chart.yaml"), |v| {
            super::chart_repo::with_build(v, build)
        })
        .map_err(|reason| RenderError::Refused {
            root: t.chart.as_str().to_owned(),
            reason: format!("cannot give its version build metadata: {reason}"),
        })?;
    }
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    if let Style::Argo {
        files,
        values_repos,
        ..
    } = t.style
    {
        // Apart from the chart's export: a chart at the repository's root must not see them.
        let scratch = scratch_dir("kubectl-gitops-values-")?;
        let values_dir = |i: usize| scratch.path().join(format!("repo-{i}"));
        export_values_repos(files, values_repos, values_dir)?;
        let mut copies = Vec::new();
        for file in files {
            let (at, path, place) = match file {
                ArgoValuesFile::Git(p) => (tmp.path().join(p.as_str()), p, "in Git"),
                ArgoValuesFile::ValuesRepo(i, p) => (
                    values_dir(*i).join(p.as_str()),
                    p,
                    "in its values repository",
                ),
                ArgoValuesFile::Chart(p) => {
                    return Err(HelmError::Failed(format!(
                        "the values file {} is inside a chart archive, and this chart is in Git",
                        p.as_str()
                    )));
                }
            };
            if !at.is_file() {
                return Err(HelmError::Failed(format!(
                    "there is no values file {} {place} (helm.valueFiles); add it, or set \
                     ignoreMissingValueFiles to skip it",
                    path.as_str()
                )));
            }
            copies.push(at);
        }
        args = argo_args(tmp.path(), t, &copies)?;
    } else if !t.values_files.is_empty() {
        // As source-controller packages it: the files replace the chart's own values.yaml.
        args = values_file_args(tmp.path(), tmp.path(), t, "in Git")?;
        let values_yaml = chart_dir.join("values.yaml");
        std::fs::write(&values_yaml, "{}\n").map_err(|source| RenderError::Io {
            what: format!("writing {}", values_yaml.display()),
            source,
        })?;
    }
    Ok(Prepared {
        tmp,
        chart_dir,
        args,
        dependencies,
        links,
    })
}

/// Argo CD's arguments for `t` (its style's), with `files` (exported under `tmp`): each
/// `--values` in order, `--include-crds`, `--skip-tests`.
fn argo_args(
    tmp: &Path,
    t: &Template<'_>,
    files: &[std::path::PathBuf],
) -> Result<Vec<std::ffi::OsString>, HelmError> {
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    let Style::Argo {
        include_crds,
        skip_tests,
        ..
    } = t.style
    else {
        return Ok(args);
    };
    for (i, from) in files.iter().enumerate() {
        // Copied out of the chart: a values file inside it must not count as a template.
        let copy = tmp.join(format!(".values-{i}.yaml"));
        std::fs::copy(from, &copy).map_err(|source| RenderError::Io {
            what: format!(
                "reading {}",
                from.strip_prefix(tmp).unwrap_or(from).display()
            ),
            source,
        })?;
        args.push("--values".into());
        args.push(copy.into());
    }
    if include_crds {
        args.push("--include-crds".into());
    }
    if skip_tests {
        args.push("--skip-tests".into());
    }
    Ok(args)
}

/// A new temporary directory named `prefix...`, removed when dropped.
fn scratch_dir(prefix: &str) -> Result<tempfile::TempDir, RenderError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|source| RenderError::Io {
            what: "creating a temporary directory".into(),
            source,
        })
}

/// `paths` (any at all) of the repository `at` exported into the new directory `into`; an
/// error saying `unread` without a repository.
fn export_values_files(
    mut paths: Vec<RepoPath>,
    at: Option<(&Repo, CommitId)>,
    into: &Path,
    unread: &str,
) -> Result<(), HelmError> {
    if paths.is_empty() {
        return Ok(());
    }
    paths.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    paths.dedup();
    let (repo, commit) = at.ok_or_else(|| HelmError::Failed(unread.to_owned()))?;
    std::fs::create_dir(into).map_err(|source| RenderError::Io {
        what: format!("creating {}", into.display()),
        source,
    })?;
    repo.export_paths(commit, &paths, into)?;
    Ok(())
}

/// The files of `files` of each values repository (`values_repos[i]`, at its commit)
/// exported into `dir(i)`.
fn export_values_repos(
    files: &[ArgoValuesFile],
    values_repos: &[(&Repo, CommitId)],
    dir: impl Fn(usize) -> std::path::PathBuf,
) -> Result<(), HelmError> {
    let named = files.iter().filter_map(|f| match f {
        ArgoValuesFile::ValuesRepo(i, _) => Some(*i + 1),
        _ => None,
    });
    // Every index a file names (one past the repositories given is an error there).
    for i in 0..named.max().unwrap_or(0) {
        let of_values_repo = |f: &ArgoValuesFile| match f {
            ArgoValuesFile::ValuesRepo(at, p) if *at == i => Some(p.clone()),
            _ => None,
        };
        export_values_files(
            files.iter().filter_map(of_values_repo).collect(),
            values_repos.get(i).copied(),
            &dir(i),
            "its values files are in another repository, and it was not read",
        )?;
    }
    Ok(())
}

/// A values file of an Argo CD Helm source, as the repo-server reads it: a path of the
/// source's repository (of a chart in Git, or of the `ref` source of a chart from a chart
/// repository), one inside the chart's archive (no `$`), or one of another `ref` source's
/// repository than a chart in Git's.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgoValuesFile {
    Git(RepoPath),
    Chart(RepoPath),
    /// Of the values repository at this index.
    ValuesRepo(usize, RepoPath),
}

/// A chart archive rendered as Argo CD's repo-server renders a chart from a chart repository
/// (`t.style` is Argo's, `t.values_files` empty), with `files` in order, those of Git read
/// from `git` (the repository of a `ref` source, at a commit), once for each of `sets`
/// (values on stdin, and parameters). A file the chart does not hold is an error, or left
/// out with `ignore_missing` (`ignoreMissingValueFiles`).
pub fn template_archive_argo(
    archive: &Path,
    git: Option<(&Repo, CommitId)>,
    (files, ignore_missing): (&[ArgoValuesFile], bool),
    t: &Template<'_>,
    sets: &[(Value, Vec<Parameter>)],
) -> Result<Vec<Result<Vec<Document>, HelmError>>, HelmError> {
    let tmp = scratch_dir("kubectl-gitops-helm-")?;
    // Git's under `git/`, the chart's under `chart/`: the same path may be in both.
    let of_git = |f: &ArgoValuesFile| match f {
        ArgoValuesFile::Git(p) => Some(p.clone()),
        ArgoValuesFile::Chart(_) | ArgoValuesFile::ValuesRepo(..) => None,
    };
    export_values_files(
        files.iter().filter_map(of_git).collect(),
        git,
        &tmp.path().join("git"),
        "its values files are in Git, and no repository was read",
    )?;
    // Those of further `ref` repositories each under `repo-N/`.
    let values_repos = match t.style {
        Style::Argo { values_repos, .. } => values_repos,
        Style::Flux => &[],
    };
    export_values_repos(files, values_repos, |i| {
        tmp.path().join(format!("repo-{i}"))
    })?;
    let mut local = Vec::new();
    for file in files {
        let (dir, path) = match file {
            ArgoValuesFile::Git(p) => ("git".to_owned(), p),
            ArgoValuesFile::Chart(p) => ("chart".to_owned(), p),
            ArgoValuesFile::ValuesRepo(i, p) => (format!("repo-{i}"), p),
        };
        let at = RepoPath::root().join(&format!("{dir}/{}", path.as_str()))?;
        if let ArgoValuesFile::Chart(p) = file {
            let bytes =
                match super::chart_repo::archive_file(archive, p).map_err(HelmError::Failed)? {
                    Some(bytes) => bytes,
                    None if ignore_missing => continue,
                    None => {
                        return Err(HelmError::Failed(format!(
                            "the values file {} is not in the chart",
                            p.as_str()
                        )));
                    }
                };
            let to = tmp.path().join(at.as_str());
            let write = || -> std::io::Result<()> {
                std::fs::create_dir_all(to.parent().expect("under the scratch directory"))?;
                std::fs::write(&to, &bytes)
            };
            write().map_err(|source| RenderError::Io {
                what: format!("writing {}", to.display()),
                source,
            })?;
        }
        local.push(tmp.path().join(at.as_str()));
    }
    let args = argo_args(tmp.path(), t, &local)?;
    let prepared = Prepared {
        tmp,
        chart_dir: archive.to_path_buf(),
        args,
        // An archive holds its dependencies.
        dependencies: Vec::new(),
        links: Vec::new(),
    };
    Ok(each(sets, |(values, parameters)| {
        prepared.render(t, values, parameters)
    }))
}

/// A dependency of a chart in Git that its `charts/` does not hold: put there when the chart
/// is exported, as source-controller adds it when it packages the chart (and Argo CD's `helm
/// dependency build`).
#[derive(Debug, Clone, PartialEq)]
pub struct Dependency {
    /// Its name in Chart.yaml.
    pub name: String,
    /// The names helm renders it under, and names its templates by: its aliases in
    /// Chart.yaml (Chart.lock keeps none), its name where it has none.
    pub rendered_as: Vec<String>,
    pub from: DependencyFrom,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DependencyFrom {
    /// Beside the chart in its repository (`repository: file://../common`): its directory.
    Git(RepoPath),
    /// A chart repository (`https://`, `oci://`): its URL and the version constraint.
    Repository { url: String, version: String },
}

/// The dependencies of the chart at `chart` at `commit` that `charts/` does not hold (by a
/// directory whose Chart.yaml has that name, or a `name-version.tgz`): those of Chart.lock
/// when there is one, else Chart.yaml's. One with no repository, a repository alias
/// (`@stable`) or a path out of the repository is an error naming it.
pub fn dependencies(
    repo: &Repo,
    commit: CommitId,
    chart: &RepoPath,
) -> Result<Vec<Dependency>, HelmError> {
    let yaml = |name: &str| -> Result<Option<Value>, HelmError> {
        let file = chart.join(name).map_err(RenderError::Git)?;
        match repo.read_file(commit, &file) {
            Ok(bytes) => Ok(documents(file.as_str(), &bytes)?
                .into_iter()
                .next()
                .map(|d| d.object)),
            Err(crate::git::GitError::FileNotFound { .. }) => Ok(None),
            Err(e) => Err(RenderError::Git(e).into()),
        }
    };
    let Some(meta) = yaml("Chart.yaml")? else {
        return Ok(Vec::new());
    };
    // As helm's loader reads them: requirements.yaml and requirements.lock (of apiVersion v1
    // charts) replace Chart.yaml's list and Chart.lock when they are there.
    let (meta, declared_in) = match yaml("requirements.yaml")? {
        Some(requirements) => (requirements, "requirements.yaml"),
        None => (meta, "Chart.yaml"),
    };
    let (lock, from) = match yaml("requirements.lock")? {
        Some(lock) => (Some(lock), "requirements.lock"),
        None => match yaml("Chart.lock")? {
            Some(lock) => (Some(lock), "Chart.lock"),
            None => (None, declared_in),
        },
    };
    let declared = match &lock {
        Some(lock) => &lock["dependencies"],
        None => &meta["dependencies"],
    };
    let Some(declared) = declared.as_array().filter(|d| !d.is_empty()) else {
        return Ok(Vec::new());
    };
    let charts_dir = chart.join("charts").map_err(RenderError::Git)?;
    let held = vendored(repo, commit, &charts_dir)?;
    let rendered_as = |name: &str| {
        let mut names: Vec<String> = Vec::new();
        for d in meta["dependencies"].as_array().into_iter().flatten() {
            if d["name"].as_str() == Some(name) {
                let as_name = d["alias"].as_str().unwrap_or(name).to_owned();
                if !names.contains(&as_name) {
                    names.push(as_name);
                }
            }
        }
        if names.is_empty() {
            names.push(name.to_owned());
        }
        names
    };
    let mut out: Vec<Dependency> = Vec::new();
    for dependency in declared {
        let Some(name) = dependency["name"].as_str() else {
            continue;
        };
        // Its name becomes a path under charts/: one component, nothing else.
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\']) {
            return Err(HelmError::Failed(format!(
                "its dependency name {name:?} ({from}) is not a chart name"
            )));
        }
        if held.iter().any(|n| n == name) {
            continue;
        }
        let repository = dependency["repository"].as_str().unwrap_or_default();
        let version = match &dependency["version"] {
            Value::String(v) => v.clone(),
            Value::Null => "*".to_owned(),
            other => other.to_string(),
        };
        let source = if let Some(rel) = repository.strip_prefix("file://") {
            let path = chart.join(rel).map_err(|e| {
                HelmError::Failed(format!(
                    "its dependency {name} is {repository}, which is not inside the repository: \
                     {e}"
                ))
            })?;
            allowed_version(repo, commit, (name, &path), (&version, from))?;
            DependencyFrom::Git(path)
        } else if ["https://", "http://", "oci://"]
            .iter()
            .any(|scheme| repository.starts_with(scheme))
        {
            DependencyFrom::Repository {
                url: repository.to_owned(),
                version,
            }
        } else {
            return Err(HelmError::Failed(format!(
                "its dependency {name} ({from}) is not in {}/, and its repository is {}: \
                 give it a file://, https:// or oci:// repository, or vendor it in charts/ \
                 (helm dependency build, then commit it)",
                charts_dir.as_str(),
                if repository.is_empty() {
                    "not given".to_owned()
                } else {
                    format!("{repository:?}")
                }
            )));
        };
        // Put in once: helm renders it under each alias (a lock lists it once per alias). It
        // tells the charts in charts/ apart by name only, so one name is one chart.
        if let Some(first) = out.iter().find(|d| d.name == name) {
            if first.from != source {
                let place = |f: &DependencyFrom| match f {
                    DependencyFrom::Git(path) => format!("{} in Git", path.as_str()),
                    DependencyFrom::Repository { url, version } => format!("{version} from {url}"),
                };
                return Err(HelmError::Failed(format!(
                    "its dependency {name} ({from}) is listed twice, as {} and as {}: helm \
                     tells the charts in charts/ apart by name, so give both uses one \
                     repository and version, or vendor one in charts/ under another name",
                    place(&first.from),
                    place(&source)
                )));
            }
            continue;
        }
        out.push(Dependency {
            name: name.to_owned(),
            rendered_as: rendered_as(name),
            from: source,
        });
    }
    Ok(out)
}

/// Checks that the chart beside it at `path` (the dependency `name`) has a version its
/// constraint `version` (in `from`) allows, as source-controller and `helm dependency build`
/// check; one with no Chart.yaml is for the render to name.
fn allowed_version(
    repo: &Repo,
    commit: CommitId,
    (name, path): (&str, &RepoPath),
    (version, from): (&str, &str),
) -> Result<(), HelmError> {
    let file = path.join("Chart.yaml").map_err(RenderError::Git)?;
    let Ok(bytes) = repo.read_file(commit, &file) else {
        return Ok(());
    };
    let found = documents(file.as_str(), &bytes)?
        .into_iter()
        .next()
        .and_then(|d| match &d.object["version"] {
            Value::String(v) => Some(v.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    // None: helm says a chart needs one.
    let Some(found) = found else {
        return Ok(());
    };
    // As semver reads a chart's version: `1.0` is 1.0.0, `v1.2.3` is 1.2.3.
    let coerced = coerce_version(&found);
    match super::chart_version::pick(version, &[coerced.as_str()]) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(HelmError::Failed(format!(
            "its dependency {name} is {} at version {found}, which its version {version:?} \
             ({from}) does not allow: change one of them",
            path.as_str()
        ))),
        Err(e) => Err(HelmError::Failed(format!(
            "its dependency {name} has the version {version:?} ({from}), which is not a \
             constraint: {e}"
        ))),
    }
}

/// `version` with its missing minor and patch as 0 and no leading `v`, as helm's semver
/// (`NewVersion`) reads a chart's version; anything else as it is.
fn coerce_version(version: &str) -> String {
    let bare = version.strip_prefix('v').unwrap_or(version);
    let end = bare.find(['-', '+']).unwrap_or(bare.len());
    let (core, rest) = bare.split_at(end);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() > 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return version.to_owned();
    }
    let mut parts: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
    while parts.len() < 3 {
        parts.push("0".to_owned());
    }
    format!("{}{rest}", parts.join("."))
}

/// The entries of the `charts/` of the chart at `chart` that are symlinks inside the
/// repository: each as a prefix of the templates helm names through it, and the one its
/// target gives them (the path their history is at).
fn vendored_links(repo: &Repo, commit: CommitId, chart: &RepoPath) -> Vec<(String, String)> {
    let Ok(charts_dir) = chart.join("charts") else {
        return Vec::new();
    };
    let entries = repo.entries(commit, &charts_dir).unwrap_or_default();
    let mut links = Vec::new();
    for entry in entries {
        let Ok(path) = charts_dir.join(&entry) else {
            continue;
        };
        match repo.real_path(commit, &path) {
            Ok(real) if real != path && !entry.ends_with(".tgz") => {
                links.push((format!("{}/", path.as_str()), format!("{}/", real.as_str())));
            }
            _ => {}
        }
    }
    links
}

/// The names of the charts `charts_dir` holds at `commit`, as helm loads them: each directory
/// (or symlink to one) by its Chart.yaml's name, each `.tgz` by the name in the Chart.yaml
/// inside it. One that cannot be read holds no chart (helm then says what is missing).
fn vendored(
    repo: &Repo,
    commit: CommitId,
    charts_dir: &RepoPath,
) -> Result<Vec<String>, HelmError> {
    let entries = match repo.entries(commit, charts_dir) {
        Ok(entries) => entries,
        Err(crate::git::GitError::FileNotFound { .. })
        | Err(crate::git::GitError::NotADirectory { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(RenderError::Git(e).into()),
    };
    let chart_yaml = RepoPath::parse("Chart.yaml").map_err(RenderError::Git)?;
    let name_in = |file: &str, bytes: &[u8]| {
        documents(file, bytes)
            .ok()
            .and_then(|d| d.into_iter().next())
            .and_then(|d| d.object["name"].as_str().map(str::to_owned))
    };
    let mut names = Vec::new();
    for entry in entries {
        // Skipped by helm's loader.
        if entry.starts_with(['_', '.']) {
            continue;
        }
        let Ok(path) = charts_dir.join(&entry) else {
            continue;
        };
        let name = if entry.ends_with(".tgz") {
            repo.read_file(commit, &path).ok().and_then(|archive| {
                let inside = super::chart_repo::file_in_archive(
                    archive.as_slice(),
                    path.as_str(),
                    &chart_yaml,
                );
                name_in(path.as_str(), &inside.ok()??)
            })
        } else {
            let file = path.join("Chart.yaml").map_err(RenderError::Git)?;
            repo.read_file(commit, &file)
                .ok()
                .and_then(|bytes| name_in(file.as_str(), &bytes))
        };
        names.extend(name);
    }
    Ok(names)
}

/// The chart directory at `chart` and the directories of its dependencies beside it at
/// `commit`: what Git holds of the chart (none of the dependencies when they cannot be read;
/// the render says why).
pub fn chart_dirs(repo: &Repo, commit: CommitId, chart: &RepoPath) -> Vec<RepoPath> {
    let mut dirs = vec![chart.clone()];
    for d in dependencies(repo, commit, chart).unwrap_or_default() {
        if let DependencyFrom::Git(path) = d.from {
            dirs.push(path);
        }
    }
    dirs
}

/// Puts each of `dependencies` (of the chart exported at `chart_dir`) in its `charts/`: one
/// beside it in Git exported there, one from a chart repository as its archive in `fetched`
/// (by name).
fn place_dependencies(
    repo: &Repo,
    commit: CommitId,
    chart_dir: &Path,
    (dependencies, fetched): (&[Dependency], &[(String, std::path::PathBuf)]),
) -> Result<(), HelmError> {
    let io = |what: String| move |source| RenderError::Io { what, source };
    let charts = chart_dir.join("charts");
    for dependency in dependencies {
        std::fs::create_dir_all(&charts).map_err(io(format!("creating {}", charts.display())))?;
        match &dependency.from {
            DependencyFrom::Git(path) => {
                let scratch = scratch_dir("kubectl-gitops-dependency-")?;
                repo.export_paths(commit, std::slice::from_ref(path), scratch.path())
                    .map_err(RenderError::Git)?;
                let exported = scratch.path().join(path.as_str());
                if !exported.join("Chart.yaml").is_file() {
                    return Err(HelmError::Failed(format!(
                        "its dependency {} is {}, which holds no Chart.yaml",
                        dependency.name,
                        path.as_str()
                    )));
                }
                let into = free(&charts, &dependency.name, "");
                std::fs::rename(&exported, &into)
                    .map_err(io(format!("moving {}", into.display())))?;
            }
            DependencyFrom::Repository { url, .. } => {
                let Some((_, archive)) = fetched.iter().find(|(n, _)| *n == dependency.name) else {
                    return Err(HelmError::Failed(format!(
                        "its dependency {} from {url} was not fetched",
                        dependency.name
                    )));
                };
                let into = free(&charts, &dependency.name, ".tgz");
                std::fs::copy(archive, &into).map_err(io(format!("copying {}", into.display())))?;
            }
        }
    }
    Ok(())
}

/// A name in `dir` nothing has yet, `{name}{suffix}` when free: helm loads what `charts/`
/// holds by the names inside, whatever the files are called, and a vendored one stays.
fn free(dir: &Path, name: &str, suffix: &str) -> std::path::PathBuf {
    let mut path = dir.join(format!("{name}{suffix}"));
    let mut n = 1;
    while path.symlink_metadata().is_ok() {
        path = dir.join(format!("{name}-{n}{suffix}"));
        n += 1;
    }
    path
}

/// For a template a dependency of the chart at `chart` rendered (helm names it
/// `charts/web/charts/common/templates/x.yaml`, or `charts/common/...` for a chart at the
/// repository's root): the name helm rendered the dependency under, and the template's path
/// inside it.
pub fn in_dependency<'a>(file: &'a str, chart: &RepoPath) -> Option<(&'a str, &'a str)> {
    let inside = match chart.as_str() {
        "" => file.strip_prefix("charts/")?,
        chart => file.strip_prefix(chart)?.strip_prefix("/charts/")?,
    };
    inside.split_once('/')
}

/// The repository path of a template a dependency beside the chart `chart` in Git rendered
/// (`charts/web/charts/common/templates/x.yaml`): in the dependency's own directory.
fn dependency_file(file: &str, chart: &RepoPath, dependencies: &[Dependency]) -> Option<String> {
    let (name, rest) = in_dependency(file, chart)?;
    let dependency = dependencies
        .iter()
        .find(|d| d.rendered_as.iter().any(|n| n == name))?;
    let DependencyFrom::Git(path) = &dependency.from else {
        return None;
    };
    Some(path.join(rest).ok()?.as_str().to_owned())
}

/// `helm template` of `chart` (a directory or an archive) with what every render passes.
fn command(t: &Template<'_>, chart: &Path) -> Command {
    let mut cmd = super::go_tool(Command::new(t.helm));
    cmd.arg("template")
        .arg(t.release)
        .arg(chart)
        .args(["--namespace", t.namespace])
        .args(["--kube-version", t.kube_version])
        .arg("--no-hooks");
    if t.is_upgrade {
        cmd.arg("--is-upgrade");
    }
    for api_version in t.api_versions {
        cmd.arg("--api-versions").arg(api_version);
    }
    cmd
}

/// Runs `cmd` with `values` on stdin and reads its documents; `tmp` is named `.` in errors.
fn run(
    mut cmd: Command,
    t: &Template<'_>,
    values: &Value,
    tmp: &Path,
) -> Result<Vec<Document>, HelmError> {
    cmd.args(["-f", "-"])
        // Never a prompt, never the network for a repository index (dependencies are vendored
        // in a Git chart and in a packaged one).
        .env("HELM_NO_PLUGINS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| RenderError::Io {
        what: format!("running {}", t.helm.display()),
        source,
    })?;
    let input = serde_json::to_vec(values).expect("values serialise");
    if let Some(mut stdin) = child.stdin.take() {
        // A chart that fails early closes stdin; its error comes from the exit status.
        let _ = stdin.write_all(&input);
    }
    let output = child.wait_with_output().map_err(|source| RenderError::Io {
        what: format!("waiting for {}", t.helm.display()),
        source,
    })?;
    if !output.status.success() {
        let stderr = crate::text::redact(&String::from_utf8_lossy(&output.stderr), t.secrets);
        let reason = crate::text::joined_lines(&stderr)
            .replace(&format!("{}/", tmp.display()), "")
            .replace(&tmp.display().to_string(), ".");
        return Err(HelmError::Failed(reason));
    }
    let text = String::from_utf8(output.stdout).map_err(|_| RenderError::NotText {
        file: format!("{} (helm template output)", t.chart.as_str()),
    })?;
    split(&text, t.chart)
}

/// `docs` (a chart's render) through helm-controller's post-renderers (`spec.postRenderers`),
/// in order: each `kustomize` one is a kustomization over the render (`helm-output.yaml`) with
/// its `patches` and `images`, built by `kubectl kustomize` as helm-controller builds it with
/// kustomize's library. Each document keeps its template's name (matched by its identity, as
/// a patch may not rename it; one renamed is the chart's). Nothing to do without one.
///
/// kustomize reads files, so the render is written to a temporary directory, but no Secret
/// value is: each value of a Secret's `data` or `stringData`, and each string that is one of
/// `secrets` or holds one of at least [`EMBEDDED_SECRET_MIN`] characters, is written as a
/// placeholder and put back after. Post-renderers holding one are refused.
pub fn post_render(
    docs: &[Document],
    post_renderers: &[Value],
    chart: &RepoPath,
    secrets: &[String],
) -> Result<Vec<Document>, HelmError> {
    let kustomizations: Vec<Value> = post_renderers
        .iter()
        .filter_map(|r| r.get("kustomize"))
        .map(post_render_kustomization)
        .collect();
    if kustomizations.is_empty() {
        return Ok(docs.to_vec());
    }
    // kustomize reads its kustomization from a file: one that holds a value from a Secret (a
    // variable its Kustomization substitutes) is not written.
    if kustomizations.iter().any(|k| holds_secret_leaf(k, secrets)) {
        return Err(HelmError::Failed(
            "its postRenderers hold a value from a Secret (a variable its Kustomization \
             substitutes), and kustomize would read it from a file: kubectl-gitops does not \
             write Secret values to disk; move the value out of spec.postRenderers"
                .into(),
        ));
    }
    let tmp = scratch_dir("kubectl-gitops-post-render-")?;
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| RenderError::Io { what, source }
    };
    let mut hidden = Hidden::default();
    let mut current: Vec<Document> = docs.to_vec();
    for doc in &mut current {
        hidden.hide(&mut doc.object, secrets);
    }
    for (i, kustomization) in kustomizations.iter().enumerate() {
        let mut input = String::new();
        for doc in &current {
            input.push_str("---\n");
            input.push_str(&serde_json::to_string(&doc.object).expect("objects serialise"));
            input.push('\n');
        }
        std::fs::write(tmp.path().join("helm-output.yaml"), input)
            .map_err(io("writing the render for the post-renderers"))?;
        std::fs::write(
            tmp.path().join("kustomization.yaml"),
            serde_json::to_string(kustomization).expect("kustomizations serialise"),
        )
        .map_err(io("writing a post-renderer's kustomization"))?;
        let root = format!("spec.postRenderers[{i}].kustomize");
        let text = super::run_kustomize(tmp.path(), tmp.path(), &root)?;
        let mut out = Vec::new();
        for mut doc in documents(&root, text.as_bytes())? {
            let key = doc.key();
            match current.iter().find(|d| key.is_some() && d.key() == key) {
                Some(before) => {
                    doc.file = before.file.clone();
                    doc.lines = before.lines;
                    doc.built_by = before.built_by.clone();
                }
                None => {
                    doc.file = chart.as_str().to_owned();
                    doc.lines = (0, 0);
                }
            }
            out.push(doc);
        }
        current = out;
    }
    for doc in &mut current {
        hidden.restore(&mut doc.object);
    }
    Ok(current)
}

/// How long a Secret's value must be to be looked for inside a longer string. A shorter one
/// (`b`, `1`, `true`) is part of so many strings (images, names, label values) that hiding
/// each string holding it would keep patches and images from matching what they target; it
/// is hidden where it is a whole string.
const EMBEDDED_SECRET_MIN: usize = 6;

/// Whether `s` is one of `secrets`, or holds one long enough to be told from chance.
fn holds_secret(s: &str, secrets: &[String]) -> bool {
    crate::text::holds_secret(s, secrets, EMBEDDED_SECRET_MIN)
}

/// Whether a string in `value` [holds a secret](holds_secret); a string that is YAML (a
/// patch) is looked into, so that a short value substituted in it is found as a whole value.
fn holds_secret_leaf(value: &Value, secrets: &[String]) -> bool {
    match value {
        Value::String(s) => {
            holds_secret(s, secrets)
                || (s.contains('\n')
                    && serde_saphyr::from_str::<Value>(s)
                        .is_ok_and(|parsed| holds_secret_leaf(&parsed, secrets)))
        }
        Value::Array(items) => items.iter().any(|v| holds_secret_leaf(v, secrets)),
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| holds_secret(k, secrets) || holds_secret_leaf(v, secrets)),
        Value::Number(n) => holds_secret(&n.to_string(), secrets),
        _ => false,
    }
}

/// The values [`post_render`] keeps off the disk, by the placeholder written in their place.
#[derive(Default)]
struct Hidden {
    values: Vec<String>,
}

impl Hidden {
    const MARK: &'static str = "kubectl-gitops-hidden-";

    /// Replaces a Secret's values, and any string that [holds one of `secrets`](holds_secret),
    /// in `object`; not
    /// its identity (apiVersion, kind, name, namespace), which patch targets match.
    fn hide(&mut self, object: &mut Value, secrets: &[String]) {
        let is_secret = object["kind"] == "Secret" && object["apiVersion"] == "v1";
        for (key, value) in object.as_object_mut().into_iter().flatten() {
            match key.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => {
                    for (field, value) in value.as_object_mut().into_iter().flatten() {
                        if field != "name" && field != "namespace" {
                            self.walk(value, false, secrets);
                        }
                    }
                }
                _ => {
                    let whole = is_secret && (key == "data" || key == "stringData");
                    self.walk(value, whole, secrets);
                }
            }
        }
    }

    fn walk(&mut self, value: &mut Value, whole: bool, secrets: &[String]) {
        match value {
            Value::String(s) if whole || holds_secret(s, secrets) => {
                let text = std::mem::take(s);
                *s = format!("{}{}", Hidden::MARK, self.values.len());
                self.values.push(text);
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.walk(v, whole, secrets)),
            Value::Object(map) => map.values_mut().for_each(|v| self.walk(v, whole, secrets)),
            _ => {}
        }
    }

    /// Puts every placeholder still in `value` back.
    fn restore(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Some(i) = s
                    .strip_prefix(Hidden::MARK)
                    .and_then(|n| n.parse::<usize>().ok())
                    && let Some(original) = self.values.get(i)
                {
                    *s = original.clone();
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.restore(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.restore(v)),
            _ => {}
        }
    }
}

/// [`post_render`] of each render of `renders` that succeeded, a few at a time.
pub fn post_render_each(
    renders: Vec<Result<Vec<Document>, HelmError>>,
    post_renderers: &[Value],
    chart: &RepoPath,
    secrets: &[String],
) -> Vec<Result<Vec<Document>, HelmError>> {
    each(&renders, |render| match render {
        Ok(docs) => post_render(docs, post_renderers, chart, secrets),
        Err(HelmError::Failed(reason)) => Err(HelmError::Failed(reason.clone())),
        Err(HelmError::Render(e)) => Err(HelmError::Failed(e.to_string())),
    })
}

/// A `kustomize` post-renderer as the kustomization helm-controller builds for it: the render
/// as its one resource, its `images` and `patches` (each `patch` with its `target`).
fn post_render_kustomization(spec: &Value) -> Value {
    let images: Vec<Value> = spec["images"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|image| {
            let mut out = serde_json::Map::new();
            for field in ["name", "newName", "newTag", "digest"] {
                if let Some(v) = image[field].as_str().filter(|v| !v.is_empty()) {
                    out.insert(field.into(), v.into());
                }
            }
            Value::Object(out)
        })
        .collect();
    let patches: Vec<Value> = spec["patches"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|patch| {
            let mut out = serde_json::Map::new();
            out.insert("patch".into(), patch["patch"].clone());
            if patch["target"].is_object() {
                out.insert("target".into(), patch["target"].clone());
            }
            Value::Object(out)
        })
        .collect();
    let mut k = serde_json::json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["helm-output.yaml"],
    });
    if !images.is_empty() {
        k["images"] = Value::Array(images);
    }
    if !patches.is_empty() {
        k["patches"] = Value::Array(patches);
    }
    k
}

/// A `--set` value as Argo CD passes it: commas escaped unless the value is a `{a,b}` list.
fn escape_set(value: &str) -> String {
    if value.starts_with('{') && value.ends_with('}') {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len());
    let mut previous = None;
    for c in value.chars() {
        if c == ',' && previous != Some('\\') {
            out.push_str("\\,");
        } else {
            out.push(c);
        }
        previous = Some(c);
    }
    out
}

/// The documents of `helm template` output, each named by its `# Source:` comment, made a
/// repository path under `chart` (Helm writes `<chart name>/templates/...`).
fn split(text: &str, chart: &RepoPath) -> Result<Vec<Document>, HelmError> {
    let mut out = Vec::new();
    let mut chunk = String::new();
    let mut source: Option<String> = None;
    let mut flush = |chunk: &mut String, source: &mut Option<String>| -> Result<(), HelmError> {
        if !chunk.trim().is_empty() {
            let file = source
                .take()
                .and_then(|s| {
                    let (_, rest) = s.split_once('/')?;
                    chart.join(rest).ok()
                })
                .map_or_else(|| chart.as_str().to_owned(), |p| p.as_str().to_owned());
            for mut doc in documents(&file, chunk.as_bytes())? {
                doc.file = file.clone();
                out.push(doc);
            }
        }
        chunk.clear();
        *source = None;
        Ok(())
    };
    for line in text.lines() {
        if line == "---" || line.starts_with("--- ") {
            flush(&mut chunk, &mut source)?;
            continue;
        }
        if let Some(s) = line.strip_prefix("# Source: ")
            && source.is_none()
        {
            source = Some(s.trim().to_owned());
        }
        chunk.push_str(line);
        chunk.push('\n');
    }
    flush(&mut chunk, &mut source)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn a_charts_dependencies_are_those_its_charts_directory_lacks() {
        use crate::git::fixture::{ALICE, Fixture};
        let mut f = Fixture::new();
        let dependency = |name: &str, repository: &str| {
            format!("  - name: {name}\n    version: 0.1.x\n    repository: {repository}\n")
        };
        f.write(
            "charts/web/Chart.yaml",
            &format!(
                "apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n{}{}{}{}{}{}",
                dependency("common", "file://../common"),
                dependency("linked", "file://../linked"),
                dependency("vendored", "https://charts.example.com"),
                dependency("packed", "oci://registry.example.com/charts"),
                dependency("lib", "file://../../libs/lib"),
                dependency("redis", "oci://registry.example.com/charts"),
            ),
        );
        f.write("charts/web/charts/vendored/Chart.yaml", "name: vendored\n");
        // helm's loader skips what starts with `_` or `.`: it holds no lib.
        f.write("charts/web/charts/_lib/Chart.yaml", "name: lib\n");
        // An archive by the name in its Chart.yaml, not by its file's name.
        let archive = |chart: &str| {
            let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let mut tar = tar::Builder::new(gz);
            let text = format!("apiVersion: v2\nname: {chart}\nversion: 0.1.0\n");
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            tar.append_data(&mut header, format!("{chart}/Chart.yaml"), text.as_bytes())
                .unwrap();
            tar.into_inner().unwrap().finish().unwrap()
        };
        std::fs::write(f.path.join("charts/web/charts/p.tgz"), archive("packed")).unwrap();
        std::fs::write(
            f.path.join("charts/web/charts/redis-cluster-9.0.0.tgz"),
            archive("redis-cluster"),
        )
        .unwrap();
        // A symlink to a chart beside it holds that chart.
        f.write("charts/linked/Chart.yaml", "name: linked\n");
        f.symlink("charts/web/charts/linked", "../../linked");
        f.write("charts/common/Chart.yaml", "name: common\n");
        f.write("libs/lib/Chart.yaml", "name: lib\n");
        f.commit(ALICE, "charts");
        let repo = Repo::open_local(&f.path).unwrap();
        let (commit, _) = repo.resolve("HEAD").unwrap();
        let chart = RepoPath::parse("charts/web").unwrap();
        let found = dependencies(&repo, commit, &chart).unwrap();
        let git = |p: &str| DependencyFrom::Git(RepoPath::parse(p).unwrap());
        let found: Vec<(&str, &DependencyFrom)> =
            found.iter().map(|d| (d.name.as_str(), &d.from)).collect();
        assert_eq!(
            found,
            [
                ("common", &git("charts/common")),
                ("lib", &git("libs/lib")),
                (
                    "redis",
                    &DependencyFrom::Repository {
                        url: "oci://registry.example.com/charts".into(),
                        version: "0.1.x".into()
                    }
                ),
            ]
        );
        assert_eq!(
            chart_dirs(&repo, commit, &chart)
                .iter()
                .map(RepoPath::as_str)
                .collect::<Vec<_>>(),
            ["charts/web", "charts/common", "libs/lib"]
        );

        // Chart.lock's list wins; one with a repository alias, or a path out of the
        // repository, is an error naming it.
        f.write(
            "charts/web/Chart.lock",
            &format!("dependencies:\n{}", dependency("remote", "\"@stable\"")),
        );
        f.commit(ALICE, "lock");
        let (commit, _) = repo.resolve("HEAD").unwrap();
        let Err(HelmError::Failed(reason)) = dependencies(&repo, commit, &chart) else {
            panic!("a repository alias is an error");
        };
        assert!(
            reason.contains("remote") && reason.contains("\"@stable\""),
            "{reason}"
        );
        f.write(
            "charts/web/Chart.lock",
            &format!("dependencies:\n{}", dependency("out", "file://../../../x")),
        );
        f.commit(ALICE, "out");
        let (commit, _) = repo.resolve("HEAD").unwrap();
        let Err(HelmError::Failed(reason)) = dependencies(&repo, commit, &chart) else {
            panic!("a path out of the repository is an error");
        };
        assert!(reason.contains("file://../../../x"), "{reason}");
        // A name that is a path is refused before anything is written.
        f.write(
            "charts/web/Chart.lock",
            &format!(
                "dependencies:\n{}",
                dependency("../../x", "file://../common")
            ),
        );
        f.commit(ALICE, "path");
        let (commit, _) = repo.resolve("HEAD").unwrap();
        let Err(HelmError::Failed(reason)) = dependencies(&repo, commit, &chart) else {
            panic!("a name that is a path is an error");
        };
        assert!(reason.contains("\"../../x\""), "{reason}");

        // One beside it at a version its constraint does not allow is an error, as in
        // source-controller.
        f.write("charts/common/Chart.yaml", "name: common\nversion: 0.2.0\n");
        // A lock holds the exact version, which is then the constraint.
        f.write(
            "charts/web/Chart.lock",
            "dependencies:\n  - name: common\n    version: 0.1.0\n    repository: file://../common\n",
        );
        f.commit(ALICE, "common 0.2.0");
        let (commit, _) = repo.resolve("HEAD").unwrap();
        let Err(HelmError::Failed(reason)) = dependencies(&repo, commit, &chart) else {
            panic!("a version the constraint does not allow is an error");
        };
        assert!(
            reason.contains("at version 0.2.0") && reason.contains("\"0.1.0\" (Chart.lock)"),
            "{reason}"
        );

        // requirements.yaml (apiVersion v1) replaces Chart.yaml's list, requirements.lock the
        // lock, as helm's loader reads them.
        f.write(
            "charts/web/Chart.yaml",
            "apiVersion: v1\nname: web\nversion: 0.1.0\n",
        );
        f.write(
            "charts/web/requirements.yaml",
            &format!(
                "dependencies:\n{}",
                dependency("lib", "file://../../libs/lib")
            ),
        );
        f.write(
            "charts/web/requirements.lock",
            &format!(
                "dependencies:\n{}",
                dependency("lib", "file://../../libs/lib")
            ),
        );
        f.commit(ALICE, "v1");
        let (commit, _) = repo.resolve("HEAD").unwrap();
        let found = dependencies(&repo, commit, &chart).unwrap();
        let names: Vec<&str> = found.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["lib"]);
    }

    #[test]
    fn a_charts_version_is_read_as_semver_reads_it() {
        assert_eq!(coerce_version("1.0"), "1.0.0");
        assert_eq!(coerce_version("v1.2.3"), "1.2.3");
        assert_eq!(coerce_version("2"), "2.0.0");
        assert_eq!(coerce_version("1.2-rc.1"), "1.2.0-rc.1");
        assert_eq!(coerce_version("0.3.1+build"), "0.3.1+build");
        assert_eq!(coerce_version("latest"), "latest");
        assert_eq!(
            super::super::chart_version::pick("~1.0", &[coerce_version("1.0").as_str()]),
            Ok(Some("1.0.0"))
        );
    }

    #[test]
    fn a_dependencys_template_is_found_under_a_chart_at_the_root_too() {
        let web = RepoPath::parse("charts/web").unwrap();
        assert_eq!(
            in_dependency("charts/web/charts/cache/templates/cm.yaml", &web),
            Some(("cache", "templates/cm.yaml"))
        );
        assert_eq!(in_dependency("charts/web/templates/cm.yaml", &web), None);
        assert_eq!(in_dependency("charts/webx/charts/a/t.yaml", &web), None);
        assert_eq!(
            in_dependency("charts/cache/templates/cm.yaml", &RepoPath::root()),
            Some(("cache", "templates/cm.yaml"))
        );
        assert_eq!(in_dependency("templates/cm.yaml", &RepoPath::root()), None);
    }

    #[test]
    fn an_aliased_dependency_is_put_in_once_and_named_by_its_aliases() {
        use crate::git::fixture::{ALICE, Fixture};
        let mut f = Fixture::new();
        let common = "    version: 0.2.0\n    repository: file://../common\n";
        f.write(
            "charts/web/Chart.yaml",
            &format!(
                "apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n  - name: common\n\
                 {common}  - name: common\n    alias: shared\n{common}"
            ),
        );
        // As `helm dependency update` locks it: once per use, with no alias.
        f.write(
            "charts/web/Chart.lock",
            &format!("dependencies:\n  - name: common\n{common}  - name: common\n{common}"),
        );
        f.write("charts/common/Chart.yaml", "name: common\n");
        f.commit(ALICE, "charts");
        let repo = Repo::open_local(&f.path).unwrap();
        let (commit, _) = repo.resolve("HEAD").unwrap();
        let chart = RepoPath::parse("charts/web").unwrap();
        let found = dependencies(&repo, commit, &chart).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].rendered_as, ["common", "shared"]);

        // One name from two places is two charts helm cannot tell apart: an error.
        f.write(
            "charts/web/Chart.lock",
            &format!(
                "dependencies:\n  - name: common\n{common}  - name: common\n    version: 2.x\n    \
                 repository: https://charts.example.com\n"
            ),
        );
        f.commit(ALICE, "two places");
        let (commit, _) = repo.resolve("HEAD").unwrap();
        let Err(HelmError::Failed(reason)) = dependencies(&repo, commit, &chart) else {
            panic!("one name from two places is an error");
        };
        assert!(
            reason.contains("listed twice")
                && reason.contains("charts/common in Git")
                && reason.contains("2.x from https://charts.example.com"),
            "{reason}"
        );
        for name in ["common", "shared"] {
            assert_eq!(
                dependency_file(
                    &format!("charts/web/charts/{name}/templates/cm.yaml"),
                    &chart,
                    &found
                )
                .as_deref(),
                Some("charts/common/templates/cm.yaml")
            );
        }
    }

    #[test]
    fn set_values_have_their_commas_escaped_as_argo_does() {
        assert_eq!(escape_set("a,b"), "a\\,b");
        assert_eq!(escape_set("a\\,b"), "a\\,b");
        assert_eq!(escape_set("{a,b}"), "{a,b}");
        assert_eq!(escape_set("plain"), "plain");
    }

    #[test]
    fn secret_values_are_kept_off_the_post_renderers_input_and_put_back() {
        let original = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "web", "labels": {"team": "a"}},
            "data": {"token": "c2VjcmV0"},
        });
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "web"},
            "data": {"url": "https://user:hunter2@db", "plain": "x"},
        });
        let mut hidden = Hidden::default();
        let (mut secret, mut cm) = (original.clone(), config.clone());
        // `web` is a value from a Secret too: the objects' names are still written as they are.
        let secrets = ["hunter2".to_owned(), "web".to_owned()];
        hidden.hide(&mut secret, &secrets);
        hidden.hide(&mut cm, &secrets);
        let written = format!("{secret}{cm}");
        assert!(
            !written.contains("c2VjcmV0") && !written.contains("hunter2"),
            "{written}"
        );
        // What is not secret is written as it is: a patch can still match it.
        assert_eq!(secret["metadata"], original["metadata"]);
        assert_eq!(cm["metadata"]["name"], "web");
        assert_eq!(cm["data"]["plain"], "x");
        hidden.restore(&mut secret);
        hidden.restore(&mut cm);
        assert_eq!((secret, cm), (original, config));
    }

    #[test]
    fn a_post_renderer_holding_a_secret_value_is_never_written() {
        let renderer = serde_json::json!({"kustomize": {"images": [{"name": "nginx", "newTag": "s3cr3t-tag"}]}});
        let chart = RepoPath::parse("charts/web").unwrap();
        let Err(HelmError::Failed(reason)) =
            post_render(&[], &[renderer], &chart, &["s3cr3t-tag".into()])
        else {
            panic!("rendered");
        };
        assert!(!reason.contains("s3cr3t"), "{reason}");
        assert!(
            reason.contains("move the value out of spec.postRenderers"),
            "{reason}"
        );
    }

    #[test]
    fn a_short_secret_value_is_hidden_only_where_it_is_a_whole_string() {
        let config = serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"team": "b"}},
            "spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1.27-bookworm"},
            ]}}},
        });
        let mut hidden = Hidden::default();
        let mut written = config.clone();
        hidden.hide(&mut written, &["b".to_owned()]);
        // The image still matches an `images` post-renderer; the label that is the value does not
        // reach the disk.
        let containers = &written["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "nginx:1.27-bookworm");
        assert_ne!(written["metadata"]["labels"]["team"], "b");
        hidden.restore(&mut written);
        assert_eq!(written, config);
    }

    #[test]
    fn a_short_substituted_value_is_found_as_a_whole_value_of_a_patch() {
        let chart = RepoPath::parse("charts/web").unwrap();
        let patch = |value: &str| {
            serde_json::json!({"kustomize": {"patches": [{
                "patch": format!("- op: add\n  path: /metadata/annotations/token\n  value: {value}\n"),
                "target": {"kind": "Deployment"},
            }]}})
        };
        let secrets = ["k9".to_owned()];
        let Err(HelmError::Failed(reason)) = post_render(&[], &[patch("k9")], &chart, &secrets)
        else {
            panic!("rendered");
        };
        assert!(reason.contains("hold a value from a Secret"), "{reason}");
        // Where the short value is only part of another word, the post-renderer runs.
        assert!(post_render(&[], &[patch("k9s-dashboard")], &chart, &secrets).is_ok());
    }

    #[test]
    fn a_kustomize_post_renderer_is_the_kustomization_helm_controller_builds() {
        let spec = serde_json::json!({
            "patches": [{"patch": "- op: remove\n  path: /x\n", "target": {"kind": "Deployment"}}],
            "images": [{"name": "nginx", "newTag": "1.29", "newName": ""}],
        });
        assert_eq!(
            post_render_kustomization(&spec),
            serde_json::json!({
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["helm-output.yaml"],
                "images": [{"name": "nginx", "newTag": "1.29"}],
                "patches": [{"patch": "- op: remove\n  path: /x\n", "target": {"kind": "Deployment"}}],
            })
        );
    }

    #[test]
    fn each_document_names_its_template() {
        let text = "---\n# Source: web/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n# Source: web/templates/svc.yaml\napiVersion: v1\nkind: Service\nmetadata:\n  name: b\n";
        let chart = RepoPath::parse("charts/web").unwrap();
        let docs = split(text, &chart).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].file, "charts/web/templates/cm.yaml");
        assert_eq!(docs[1].file, "charts/web/templates/svc.yaml");
        assert_eq!(docs[1].object["kind"], "Service");
    }
}
