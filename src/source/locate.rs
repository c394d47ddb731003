//! The Git side of mapping: open the repository a pointer names, read the file or render the
//! root at the applied commit, and find the document, its lines and its commits.
//!
//! Everything read is cached for the run (files by commit and path, renders, history), so many
//! objects from the same files cost one read per file; [`GitReads`] counts what was read.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use serde_json::Value;

use super::{Pointer, Reconciler, Rule, SourceError};
use crate::git::{CacheUse, CommitId, CommitInfo, GitError, Repo, RepoPath, RepoUrl};
use crate::object::ObjectKey;
use crate::render::{self, Document};

mod argo;
mod argo_repository;
mod helm;
mod helm_blame;

/// What `--repo` and the working directory offer.
#[derive(Debug, Clone, Default)]
pub struct RepoChoice {
    /// `--repo PATH|URL`.
    pub flag: Option<String>,
    /// The working directory (its repository is used when its remote matches).
    pub cwd: Option<PathBuf>,
    /// Where remote repositories are cloned: `<cache>/kubectl-gitops/repos`.
    pub cache_root: PathBuf,
    /// `--against REV`: the revision desired is read at, instead of the tracked tip.
    pub against: Option<String>,
}

/// How much Git work a run did (for `-v` and for tests that check reads are shared).
#[derive(Debug, Default)]
pub struct GitReads {
    pub files: AtomicUsize,
    pub renders: AtomicUsize,
    pub history: AtomicUsize,
    pub clones: AtomicUsize,
    pub fetches: AtomicUsize,
    /// `kubectl kustomize` runs, and kustomize renders read back from the render cache.
    pub kustomize_builds: AtomicUsize,
    pub cached_renders: AtomicUsize,
    /// Damaged render cache entries found and built again.
    pub damaged_renders: AtomicUsize,
    /// `helm template` runs, and Helm renders read back from the render cache.
    pub helm_templates: AtomicUsize,
    pub cached_helm: AtomicUsize,
}

impl GitReads {
    pub fn summary(&self) -> String {
        let get = |c: &AtomicUsize| c.load(Ordering::Relaxed);
        format!(
            "git: {} file reads, {} renders, {} history lookups, {} clones, {} fetches; \
             kustomize: {} builds, {} from the render cache, {} damaged entries rebuilt; \
             helm: {} templates, {} from the render cache",
            get(&self.files),
            get(&self.renders),
            get(&self.history),
            get(&self.clones),
            get(&self.fetches),
            get(&self.kustomize_builds),
            get(&self.cached_renders),
            get(&self.damaged_renders),
            get(&self.helm_templates),
            get(&self.cached_helm)
        )
    }
}

/// Where an object came from, fully resolved.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Located {
    pub rule: Rule,
    /// The repository URL, or the local checkout's path.
    pub repo: String,
    pub local_checkout: bool,
    pub file: String,
    /// First and last line of the object's document in `file`, 1-based.
    pub lines: (usize, usize),
    /// The file itself, or the directory a kustomization renders.
    pub render_root: String,
    /// The commit whose tree was read: the applied one when known, else the tracked tip.
    pub read_at: String,
    pub applied_commit: Option<CommitInfo>,
    /// The last commit that changed `file`, at `read_at`.
    pub last_change: Option<CommitInfo>,
    pub tracked_ref: Option<String>,
    pub tracked_commit: Option<String>,
    /// Commits on the tracked ref after the applied commit (`git rev-list --count A..T`).
    pub commits_since_applied: Option<usize>,
    /// Whether the tracked tip changed `file` after the applied commit.
    pub file_changed_since_applied: Option<bool>,
    /// The last commit that changed `file` after the applied one (what a pending change is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_commit: Option<CommitInfo>,
    pub reconciler: Option<Reconciler>,
    /// Where desired is written at the tracked tip: file and lines (they move between commits).
    #[serde(skip)]
    pub tip_place: (String, (usize, usize)),
    /// The locator's key of the repository, to read more from it.
    #[serde(skip)]
    pub repo_key: String,
    /// Desired as applied (at `read_at`).
    #[serde(skip)]
    pub desired: Arc<Value>,
    /// The document as written in `file` (before kustomize's patches and transformers).
    #[serde(skip)]
    pub written: Arc<Value>,
    /// Desired at the tracked tip or `--against`; None when Git no longer declares the object
    /// there (orphaned).
    #[serde(skip)]
    pub desired_at_tip: Option<Arc<Value>>,
    /// The kustomize generator and transformers that made desired (as applied), when the
    /// locator records them ([`Locator::recording_transformers`]).
    #[serde(skip)]
    pub built_by: render::BuiltBy,
    /// For an object of a Flux HelmRelease: the release, chart and values sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helm: Option<Box<super::helm::HelmTrace>>,
    /// For an object of an Argo CD Helm source: the chart and values sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chart: Option<Box<super::helm::ChartTrace>>,
    /// A chart version that a chart repository now offers for the release's version
    /// constraint, and the release does not have yet: what is pending when no commit is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_chart: Option<super::helm::PublishedChart>,
    /// For an object a chart's dependency from a chart repository rendered: that dependency
    /// (`file` is then helm's name for the template, not a path in Git).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dependency: Option<super::helm::DependencyTrace>,
    /// A chart repository's chart with a version range, as `watch` polls it, and what the
    /// range picks there now.
    #[serde(skip)]
    pub chart_poll: Option<(crate::render::chart_repo::ChartPoll, String)>,
    /// Which source of a multi-source Application declares it (0: the first, else
    /// `more_sources[i - 1]` of its pointer).
    #[serde(skip)]
    pub source_index: usize,
    /// The values from Secrets that went into desired ([`Pointer::secret_texts`]): no report
    /// shows a field that holds one.
    #[serde(skip)]
    pub secrets: Vec<String>,
}

/// What a render was made from, when it is a Helm chart (an Argo CD Helm source).
type Chart = Option<Arc<super::helm::ChartTrace>>;

/// An object found in Git: its document, the render root shown, whether the document is as
/// its file writes it, and the chart it was rendered from.
type Found = (Document, String, bool, Chart);

/// A render's documents, with an index by kind and name: every object of a render root looks
/// itself up in the same render.
struct Rendered {
    docs: RenderedDocs,
    /// The documents are the files' own, untransformed (no kustomize, no substitution).
    plain: bool,
    /// Rendered from a Helm chart (an Argo CD Helm source): documents name their template.
    chart: Chart,
    by_name: HashMap<(String, String), Vec<usize>>,
}

enum RenderedDocs {
    Parsed(Arc<Vec<Document>>),
    /// After [`Locator::pack`]: each object as compact JSON, parsed again when looked up (a
    /// parsed object takes about ten times the memory of its JSON).
    Packed(Vec<Packed>),
}

/// A document whose object is kept as JSON text.
struct Packed {
    file: String,
    lines: (usize, usize),
    object: Box<str>,
    built_by: render::BuiltBy,
}

impl Packed {
    fn pack(doc: &Document) -> Packed {
        Packed {
            file: doc.file.clone(),
            lines: doc.lines,
            object: serde_json::to_string(&doc.object)
                .expect("a JSON value serialises")
                .into_boxed_str(),
            built_by: doc.built_by.clone(),
        }
    }

    fn unpack(&self) -> Document {
        Document {
            file: self.file.clone(),
            lines: self.lines,
            object: serde_json::from_str(&self.object).expect("packed from a JSON value"),
            built_by: self.built_by.clone(),
        }
    }
}

impl Rendered {
    fn new(docs: Vec<Document>, plain: bool) -> Rendered {
        let mut by_name: HashMap<(String, String), Vec<usize>> = HashMap::new();
        for (i, doc) in docs.iter().enumerate() {
            if let (Some(kind), Some(name)) = (
                doc.object["kind"].as_str(),
                doc.object["metadata"]["name"].as_str(),
            ) {
                by_name
                    .entry((kind.to_owned(), name.to_owned()))
                    .or_default()
                    .push(i);
            }
        }
        Rendered {
            docs: RenderedDocs::Parsed(Arc::new(docs)),
            plain,
            chart: None,
            by_name,
        }
    }

    /// The documents of this kind and name (any group or namespace).
    fn named(&self, kind: &str, name: &str) -> Vec<Cow<'_, Document>> {
        let indices = self
            .by_name
            .get(&(kind.to_owned(), name.to_owned()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        indices
            .iter()
            .map(|&i| match &self.docs {
                RenderedDocs::Parsed(docs) => Cow::Borrowed(&docs[i]),
                RenderedDocs::Packed(docs) => Cow::Owned(docs[i].unpack()),
            })
            .collect()
    }

    /// Every document.
    fn all(&self) -> Arc<Vec<Document>> {
        match &self.docs {
            RenderedDocs::Parsed(docs) => docs.clone(),
            RenderedDocs::Packed(docs) => Arc::new(docs.iter().map(Packed::unpack).collect()),
        }
    }

    /// The same render, packed; `None` when it already is.
    fn packed(&self) -> Option<Rendered> {
        let RenderedDocs::Parsed(docs) = &self.docs else {
            return None;
        };
        Some(Rendered {
            docs: RenderedDocs::Packed(docs.iter().map(Packed::pack).collect()),
            plain: self.plain,
            chart: self.chart.clone(),
            by_name: self.by_name.clone(),
        })
    }
}

/// The commits one object is read at.
struct Commits {
    /// The repository is the user's own checkout (not a clone in our cache).
    local: bool,
    /// The revision the tip was resolved from.
    tip_rev: String,
    tip: CommitId,
    applied: Option<CommitId>,
}

impl Commits {
    /// Desired as applied is read at the applied commit, else at the tip.
    fn read_at(&self) -> CommitId {
        self.applied.unwrap_or(self.tip)
    }
}

/// A cached result, shared without copying (a render of a thousand objects is read by each).
type Shared<T> = Result<Arc<T>, String>;
/// The commit rendered at, and the rest of what a render depends on.
type RenderKey = (CommitId, String);
/// A render, or why it failed: a Git error is kept as it is (a render root gone at the tip
/// means orphaned, not an error, for every object of that root).
type SharedRender = Result<Arc<Rendered>, RenderFailure>;

#[derive(Debug, Clone)]
enum RenderFailure {
    Git(GitError),
    Other(String),
}

impl RenderFailure {
    fn of(e: &SourceError) -> RenderFailure {
        match e {
            SourceError::Git(g) => RenderFailure::Git(g.clone()),
            other => RenderFailure::Other(other.to_string()),
        }
    }

    fn error(&self) -> SourceError {
        match self {
            RenderFailure::Git(g) => SourceError::Git(g.clone()),
            RenderFailure::Other(m) => cached_error(m),
        }
    }
}
/// One chart render, shared by the objects of its release (a second caller waits).
type HelmRenderSlot = Arc<OnceLock<Shared<Vec<Document>>>>;
/// Repository key, commit and path: what a file read or a history lookup depends on.
type FileKey = (String, CommitId, String);

/// Finds sources, sharing every Git read across the objects of one run.
pub struct Locator {
    choice: RepoChoice,
    repos: Mutex<HashMap<String, Arc<Repo>>>,
    /// Repositories that could not be opened or cloned, when and why: not tried again for
    /// [`RETRY_FAILED_REPO`] (each of a thousand objects would clone again, and fail again).
    failed_repos: Mutex<HashMap<String, (std::time::Instant, String)>>,
    files: Mutex<HashMap<FileKey, Shared<Vec<Document>>>>,
    /// By the commit rendered at, and the rest of what the render depends on. One slot per
    /// render: a second caller (an object of the same root, or a prefetch) waits for the first.
    renders: Mutex<HashMap<RenderKey, Arc<OnceLock<SharedRender>>>>,
    history: Mutex<HashMap<FileKey, Option<CommitId>>>,
    counts: Mutex<HashMap<(String, CommitId, CommitId), usize>>,
    revisions: Mutex<HashMap<(String, String), CommitId>>,
    /// Cached clones whose branches were fetched in this run, to learn the tracked tip.
    /// Once per repository; a caller that asks while the fetch runs waits for it (a prefetch
    /// on another thread may have started it), so no tip is resolved before it.
    refreshed: Mutex<HashMap<String, Arc<OnceLock<()>>>>,
    metadata: render::Metadata,
    /// kustomize renders kept on disk between runs; None when off.
    render_cache: Option<Arc<render::RenderCache>>,
    /// The render cache could not be written (said once).
    cache_write_warned: std::sync::atomic::AtomicBool,
    pub reads: GitReads,
    /// What the caller should tell the user once (a tip that could not be refreshed).
    pub warnings: Mutex<Vec<String>>,
    /// The `helm` binary charts are rendered with; None when it is not on PATH.
    helm: Option<PathBuf>,
    /// Chart renders, by repository, commit, release and values: one per release and run.
    helm_renders: Mutex<HashMap<String, HelmRenderSlot>>,
    /// Chart repositories' indexes (per run) and archives (kept on disk).
    charts: render::chart_repo::ChartRepos,
}

impl Locator {
    pub fn new(choice: RepoChoice) -> Locator {
        Locator {
            choice,
            repos: Mutex::default(),
            failed_repos: Mutex::default(),
            files: Mutex::default(),
            renders: Mutex::default(),
            history: Mutex::default(),
            counts: Mutex::default(),
            revisions: Mutex::default(),
            refreshed: Mutex::default(),
            metadata: render::Metadata::Origin,
            render_cache: None,
            cache_write_warned: Default::default(),
            reads: GitReads::default(),
            warnings: Mutex::default(),
            helm: None,
            helm_renders: Mutex::default(),
            charts: Default::default(),
        }
    }

    /// Charts of HelmReleases are rendered with this `helm` (None: not on PATH, and each such
    /// object is an error that says so).
    pub fn with_helm(mut self, helm: Option<PathBuf>) -> Locator {
        self.helm = helm;
        self
    }

    /// Charts from chart repositories are kept in `dir` (None: downloaded for each run);
    /// `helm_config` is the user's Helm repositories file and `registry_configs` their
    /// registry credentials files, for credentials.
    pub fn with_chart_cache(
        mut self,
        dir: Option<PathBuf>,
        helm_config: Option<PathBuf>,
        registry_configs: Vec<PathBuf>,
    ) -> Locator {
        self.charts = render::chart_repo::ChartRepos::new(dir, helm_config, registry_configs);
        self
    }

    /// Kustomize renders also record the generators and transformers that made each object
    /// (what blame attributes to kustomization lines); renders get larger and slower to read.
    pub fn recording_transformers(mut self) -> Locator {
        self.metadata = render::Metadata::Transformers;
        self
    }

    /// kustomize renders go through `cache` (on disk, shared between runs).
    pub fn with_render_cache(mut self, cache: Option<Arc<render::RenderCache>>) -> Locator {
        self.render_cache = cache;
        self
    }

    /// The render cache in use, to hand to the next locator.
    pub fn render_cache(&self) -> Option<Arc<render::RenderCache>> {
        self.render_cache.clone()
    }

    /// Resolves a pointer (or, with None, the fallback search) for the live object `key`.
    pub fn locate(
        &self,
        pointer: Option<Pointer>,
        key: &ObjectKey,
    ) -> Result<Located, SourceError> {
        let several = |p: &Pointer| !p.more_sources.is_empty() || !p.unusable_sources.is_empty();
        let mut first = match pointer {
            Some(p) if several(&p) => p,
            other => return self.locate_source(other, key),
        };
        // A multi-source Application: the first source that declares the object made it. A
        // source that cannot be read does not hold up the others; its error is the answer
        // only when no other source declares the object.
        let more = std::mem::take(&mut first.more_sources);
        let unusable = std::mem::take(&mut first.unusable_sources);
        let application = first
            .reconciler
            .as_ref()
            .map_or_else(|| "the Application".to_owned(), Reconciler::display);
        let mut not_declared = Vec::new();
        let mut failed = None;
        for (index, source) in std::iter::once(first).chain(more).enumerate() {
            match self.locate_source(Some(source), key) {
                Err(e @ SourceError::NotDeclared { .. }) => not_declared.push(e.to_string()),
                Err(e) => {
                    failed.get_or_insert(e);
                }
                Ok(mut found) => {
                    found.source_index = index;
                    return Ok(found);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if !unusable.is_empty() {
            return Err(SourceError::Repeated(format!(
                "no source of {application} that can be read declares it; {}",
                unusable.join("; ")
            )));
        }
        Err(SourceError::Repeated(format!(
            "no source of the Application declares {key}: {}",
            not_declared.join("; ")
        )))
    }

    /// [`Locator::locate`] for one source.
    fn locate_source(
        &self,
        pointer: Option<Pointer>,
        key: &ObjectKey,
    ) -> Result<Located, SourceError> {
        let pointer = pointer.unwrap_or_else(|| Pointer::new(Rule::Fallback));
        if let Some(helm) = pointer.helm.clone() {
            return self.locate_helm(&pointer, &helm, key);
        }
        if let Some(h) = pointer.argo_helm.clone()
            && let Some(c) = &h.chart
        {
            return self.locate_argo_repository_chart(&pointer, &h, c, key);
        }
        let (repo_key, repo) = self.repo_for(pointer.repo.as_ref(), key, pointer.rule)?;
        let Commits {
            local,
            tip_rev,
            tip,
            applied,
        } = self.commits(&pointer, &repo_key, &repo)?;
        let read_at = applied.unwrap_or(tip);
        // A chart in Git with values files of other repositories: read as synced there too,
        // and at their tips.
        let values = self.git_chart_values_repos(&pointer, key)?;
        let (values_synced, values_tips) = argo::values_commits(&values);
        let synced_pointer = Locator::values_read_at(&pointer, &values_synced);

        let (mut doc, render_root, as_written, chart) =
            self.find(&synced_pointer, &repo_key, &repo, read_at, key)?;
        // One copy of desired, shared where it is the same at the tip and as written.
        let desired = Arc::new(std::mem::take(&mut doc.object));
        // Desired at the tracked tip (or --against), when that is not what was applied.
        let mut tip_place = (doc.file.clone(), doc.lines);
        let at_tip = if read_at == tip && values_synced == values_tips {
            Some(desired.clone())
        } else {
            let tip_pointer = Locator::values_read_at(&pointer, &values_tips);
            match self.find(&tip_pointer, &repo_key, &repo, tip, key) {
                Ok((d, _, _, _)) => {
                    tip_place = (d.file.clone(), d.lines);
                    Some(Arc::new(d.object))
                }
                // The object, or its whole file, is gone from Git at the tip: orphaned.
                Err(SourceError::NotDeclared { .. })
                | Err(SourceError::Git(GitError::FileNotFound { .. })) => None,
                Err(e) => return Err(e),
            }
        };
        let file = RepoPath::parse(&doc.file)?;
        // A generated object (configMapGenerator...) is written nowhere as a document.
        let written = if doc.built_by.generator.is_some() {
            Arc::new(Value::Null)
        } else if as_written || chart.is_some() {
            desired.clone()
        } else {
            match self.documents(&repo_key, &repo, read_at, &file).ok() {
                Some(docs) => match pick_ref(&docs, key) {
                    Some(d) if d.object != *desired => Arc::new(d.object.clone()),
                    _ => desired.clone(),
                },
                None => desired.clone(),
            }
        };
        let last_change = match self.last_change(&repo_key, &repo, read_at, &file)? {
            Some(id) => Some(repo.commit_info(id)?),
            None => None,
        };
        let mut pending_commit: Option<CommitInfo> = None;
        // What the object is made from: its file; for a chart, the chart and its values files.
        let mut inputs = vec![file.clone()];
        if chart.is_some()
            && let Some(h) = &pointer.argo_helm
        {
            let root = pointer.render_root.clone().unwrap_or_else(RepoPath::root);
            inputs = crate::render::helm::chart_dirs(&repo, tip, &root);
            if let Some(a) = applied {
                for dir in crate::render::helm::chart_dirs(&repo, a, &root) {
                    if !inputs.contains(&dir) {
                        inputs.push(dir);
                    }
                }
            }
            inputs.extend(
                h.value_files
                    .iter()
                    .filter(|f| !matches!(f.within, super::reconciler::ValuesIn::ValuesRepo(_)))
                    .map(|f| f.path.clone()),
            );
        }
        let (commits_since_applied, file_changed_since_applied) = match applied {
            Some(a) if a != tip => {
                let count = self.commits_between(&repo_key, &repo, a, tip)?;
                let mut changed = false;
                for input in &inputs {
                    let at_tip = self.last_change(&repo_key, &repo, tip, input)?;
                    let at_applied = self.last_change(&repo_key, &repo, a, input)?;
                    if at_tip != at_applied {
                        changed = true;
                        if let Some(id) = at_tip {
                            let info = repo.commit_info(id)?;
                            if pending_commit.as_ref().is_none_or(|p| info.time > p.time) {
                                pending_commit = Some(info);
                            }
                        }
                    }
                }
                (Some(count), Some(changed))
            }
            Some(_) => (Some(0), Some(false)),
            None => (None, None),
        };
        // A change to a values file of a values repository is pending too (the commits
        // counted are the chart's repository's: trace's `Values repo` shows the others').
        if let Some(h) = &pointer.argo_helm
            && let Some(c) = self.values_repos_pending(&values, h)?
        {
            argo::newer(&mut pending_commit, c);
        }
        // A template of a dependency from a chart repository has no lines in Git.
        let dependency = match &chart {
            Some(_) => {
                let root = match render_root.as_str() {
                    "." => Ok(RepoPath::root()),
                    root => RepoPath::parse(root),
                };
                root.ok()
                    .and_then(|root| self.dependency_trace(&repo, read_at, &root, &doc.file, None))
            }
            None => None,
        };
        if dependency.is_some() {
            doc.lines = (0, 0);
            tip_place.1 = (0, 0);
        }
        let mut chart = chart.map(|c| Box::new((*c).clone()));
        if let (Some(c), Some(h)) = (&mut chart, &pointer.argo_helm) {
            c.values_repos = argo::values_repos_trace(&values, h);
        }
        Ok(Located {
            rule: pointer.rule,
            repo: repo.display_name(),
            local_checkout: local,
            file: doc.file.clone(),
            lines: doc.lines,
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
            pending_commit,
            reconciler: pointer.reconciler.clone(),
            built_by: doc.built_by,
            desired,
            written,
            desired_at_tip: at_tip,
            repo_key: repo_key.clone(),
            tip_place,
            helm: None,
            chart,
            published_chart: None,
            chart_poll: dependency.as_ref().and_then(|d| self.dependency_poll(d)),
            dependency,
            source_index: 0,
            secrets: pointer.secret_texts(),
        })
    }

    /// Which commits an object of `pointer` is read at: the tracked tip (`--against`, the
    /// local checkout's HEAD, else the reconciler's ref) and the applied commit when known.
    fn commits(
        &self,
        pointer: &Pointer,
        repo_key: &str,
        repo: &Repo,
    ) -> Result<Commits, SourceError> {
        self.commits_against(pointer, repo_key, repo, self.choice.against.as_deref())
    }

    /// [`Locator::commits`] with `against` in place of `--against`.
    fn commits_against(
        &self,
        pointer: &Pointer,
        repo_key: &str,
        repo: &Repo,
        against: Option<&str>,
    ) -> Result<Commits, SourceError> {
        let local = repo.workdir().is_some()
            && !matches!(repo.cache_use(), CacheUse::Cloned | CacheUse::Reused);

        // The tracked tip: the local checkout's HEAD, else the reconciler's ref.
        let tip_rev = if let Some(rev) = against {
            rev.to_owned()
        } else if local {
            "HEAD".to_owned()
        } else {
            pointer
                .tracked_ref
                .clone()
                .unwrap_or_else(|| "HEAD".to_owned())
        };
        // A branch's tip is the remote's: a clone reused from the cache is fetched once per run
        // before it is read (a commit id needs no fetch unless it is missing).
        if repo.cache_use() == CacheUse::Reused && tip_rev.parse::<CommitId>().is_err() {
            self.refresh_once(repo_key, repo);
        }
        let tip = self.resolve(repo, &tip_rev)?;
        let applied = match (&pointer.applied_commit, &pointer.applied_fallback) {
            (Some(rev), fallback) => match (self.resolve(repo, rev), fallback) {
                (Ok(id), _) => Some(id),
                (
                    Err(e @ SourceError::Git(GitError::UnknownRevision { .. })),
                    Some((instead, what)),
                ) => {
                    let warning = format!(
                        "{rev}, the commit the Helm release was made from, is not in {}: \
                         {}; reading {what} ({}) as applied instead",
                        repo.display_name(),
                        crate::text::single_line(&e.to_string()),
                        &instead[..instead.len().min(12)]
                    );
                    let mut warnings = self.warnings.lock().expect("warnings lock");
                    if !warnings.contains(&warning) {
                        warnings.push(warning);
                    }
                    drop(warnings);
                    Some(self.resolve(repo, instead)?)
                }
                (Err(e), _) => return Err(e),
            },
            (None, _) => None,
        };
        Ok(Commits {
            local,
            tip_rev,
            tip,
            applied,
        })
    }

    /// The document declaring `key` at `commit`, by the pointer's rule, the render root, and
    /// whether the document is exactly as its file writes it (no kustomize transformation).
    fn find(
        &self,
        pointer: &Pointer,
        repo_key: &str,
        repo: &Arc<Repo>,
        read_at: CommitId,
        key: &ObjectKey,
    ) -> Result<Found, SourceError> {
        let repo_key = repo_key.to_owned();
        let repo = repo.clone();
        Ok(match pointer.rule {
            Rule::Annotations => {
                let file = pointer
                    .file
                    .clone()
                    .expect("the annotation rule always names a file");
                let docs = self.documents(&repo_key, &repo, read_at, &file)?;
                let doc =
                    pick(&docs, key).ok_or_else(|| not_declared(file.as_str(), read_at, key))?;
                (doc, file.as_str().to_owned(), true, None)
            }
            Rule::KustomizeOrigin => {
                let origin = pointer.origin_path.clone().unwrap_or_default();
                let file = self.find_origin_file(&repo_key, &repo, read_at, &origin, key)?;
                let docs = self.documents(&repo_key, &repo, read_at, &file)?;
                let doc =
                    pick(&docs, key).ok_or_else(|| not_declared(file.as_str(), read_at, key))?;
                let root = self
                    .origin_render_root(&repo, read_at, &file, &origin)
                    .unwrap_or_else(|| file.as_str().to_owned());
                (doc, root, true, None)
            }
            Rule::Flux | Rule::ArgoCd => {
                let root = pointer.render_root.clone().unwrap_or_else(RepoPath::root);
                let rendered = self.render(&repo_key, &repo, read_at, &root, pointer)?;
                let found = rendered
                    .named(&key.kind, &key.name)
                    .into_iter()
                    .find(|d| d.key().is_some_and(|k| key.declared_by(&k)))
                    .ok_or_else(|| not_declared(&display_root(&root), read_at, key))?;
                // Lines come from the source file the rendered object names.
                let (file, lines) = match RepoPath::parse(&found.file) {
                    // Read from the file itself: its lines are already the file's.
                    _ if rendered.plain => (found.file.clone(), found.lines),
                    // A chart's template: the whole file made it.
                    Ok(file) if rendered.chart.is_some() => {
                        let lines = match repo.read_file(read_at, &file) {
                            Ok(bytes) => (1, bytes.iter().filter(|b| **b == b'\n').count().max(1)),
                            Err(_) => (1, 1),
                        };
                        (found.file.clone(), lines)
                    }
                    Ok(file) => {
                        let docs = self.documents(&repo_key, &repo, read_at, &file)?;
                        let generated = found.built_by.generator.is_some();
                        match pick_ref(&docs, key).filter(|_| !generated) {
                            Some(source) => (source.file.clone(), source.lines),
                            // Generated: `file` is the kustomization that configures it.
                            None if generated => (
                                found.file.clone(),
                                docs.first().map_or(found.lines, |k| k.lines),
                            ),
                            None => (found.file.clone(), found.lines),
                        }
                    }
                    Err(_) => (found.file.clone(), found.lines),
                };
                let found = found.into_owned();
                let doc = Document {
                    file,
                    lines,
                    object: found.object,
                    built_by: found.built_by,
                };
                (
                    doc,
                    display_root(&root),
                    rendered.plain,
                    rendered.chart.clone(),
                )
            }
            // Rendered by `locate_helm`, from the pointer's release; never without it.
            Rule::Helm => {
                return Err(SourceError::Unsupported {
                    what: format!("locating {key} without its Helm release"),
                });
            }
            Rule::Fallback => {
                let (doc, root) = self.search(&repo_key, &repo, read_at, key)?;
                (doc, root, true, None)
            }
        })
    }

    /// Every document the located object's source declares at the tracked tip (or
    /// `--against`): the file, or the whole render root. What `diff` needs to see objects that
    /// are in Git and not in the cluster.
    pub fn siblings(
        &self,
        located: &Located,
        pointer: Option<&Pointer>,
    ) -> Result<Arc<Vec<Document>>, SourceError> {
        if let Some(p) = pointer.filter(|p| p.more_sources.is_empty())
            && let Some(h) = &p.argo_helm
            && let Some(c) = &h.chart
        {
            return self.argo_repository_documents(p, h, c);
        }
        // A multi-source Application: what every source renders at its tip.
        if let Some(p) = pointer.filter(|p| !p.more_sources.is_empty()) {
            let mut first = p.clone();
            let more = std::mem::take(&mut first.more_sources);
            let mut all = Vec::new();
            let key = application_key();
            for source in std::iter::once(first).chain(more) {
                if let Some(h) = &source.argo_helm
                    && let Some(c) = &h.chart
                {
                    all.extend(
                        self.argo_repository_documents(&source, h, c)?
                            .iter()
                            .cloned(),
                    );
                    continue;
                }
                let (repo_key, repo) = self.repo_for(source.repo.as_ref(), &key, source.rule)?;
                let tip = self.commits(&source, &repo_key, &repo)?.tip;
                let root = source.render_root.clone().unwrap_or_else(RepoPath::root);
                let source = self.values_at_tip(&source)?;
                let rendered = self.render(&repo_key, &repo, tip, &root, &source)?;
                all.extend(rendered.all().iter().cloned());
            }
            return Ok(Arc::new(all));
        }
        let repo = self.repo_of(located);
        let (Some(repo), Some(commit)) = (repo, &located.tracked_commit) else {
            return Ok(Arc::default());
        };
        let commit: CommitId = commit.parse()?;
        if let Some(helm) = pointer.and_then(|p| p.helm.as_ref()) {
            return Ok(helm::release_documents(helm));
        }
        match pointer {
            Some(pointer) if matches!(pointer.rule, Rule::Flux | Rule::ArgoCd) => {
                let root = pointer.render_root.clone().unwrap_or_else(RepoPath::root);
                let pointer = self.values_at_tip(pointer)?;
                self.render(&located.repo_key, &repo, commit, &root, &pointer)
                    .map(|r| r.all())
            }
            _ => match self.documents(
                &located.repo_key,
                &repo,
                commit,
                &RepoPath::parse(&located.file)?,
            ) {
                Ok(docs) => Ok(docs),
                Err(SourceError::Git(GitError::FileNotFound { .. })) => Ok(Arc::default()),
                Err(e) => Err(e),
            },
        }
    }

    /// The repository a located object came from (opened during `locate`).
    fn repo_of(&self, located: &Located) -> Option<Arc<Repo>> {
        self.repos
            .lock()
            .expect("repo cache lock")
            .get(&located.repo_key)
            .cloned()
    }

    /// The located object's source file as applied (at `read_at`), and its blame there.
    pub fn source_file(
        &self,
        located: &Located,
        blame_cache: Option<&Path>,
    ) -> Result<(Vec<u8>, Vec<crate::git::BlameLine>), SourceError> {
        self.file_with_blame(located, &RepoPath::parse(&located.file)?, blame_cache)
    }

    /// Any file of the located object's repository as applied (at `read_at`), and its blame
    /// there: a kustomization that transformed the object, a file a generator read.
    pub fn file_with_blame(
        &self,
        located: &Located,
        file: &RepoPath,
        blame_cache: Option<&Path>,
    ) -> Result<(Vec<u8>, Vec<crate::git::BlameLine>), SourceError> {
        let repo = self
            .repo_of(located)
            .ok_or_else(|| SourceError::Repeated("the repository is not open".into()))?;
        let commit: CommitId = located.read_at.parse()?;
        let text = repo.read_file(commit, file)?;
        let blame = repo.blame(commit, file, blame_cache)?;
        Ok((text, blame))
    }

    /// The patch files and inline patches of the kustomization at the render root (as applied):
    /// where a patched value was written. Each: file, its documents' text, and its blame.
    pub fn patch_files(
        &self,
        located: &Located,
        blame_cache: Option<&Path>,
    ) -> Vec<(String, Vec<u8>, Vec<crate::git::BlameLine>)> {
        let Some(repo) = self.repo_of(located) else {
            return Vec::new();
        };
        let Ok(commit) = located.read_at.parse::<CommitId>() else {
            return Vec::new();
        };
        let root = if located.render_root == "." {
            String::new()
        } else {
            located.render_root.clone()
        };
        let mut out = Vec::new();
        for name in render::KUSTOMIZATION_FILES {
            let path = if root.is_empty() {
                name.to_owned()
            } else {
                format!("{root}/{name}")
            };
            let Ok(path) = RepoPath::parse(&path) else {
                continue;
            };
            let Ok(bytes) = repo.read_file(commit, &path) else {
                continue;
            };
            let Ok(docs) = render::documents(path.as_str(), &bytes) else {
                continue;
            };
            let Some(k) = docs.first().map(|d| d.object.clone()) else {
                continue;
            };
            let mut files: Vec<String> = Vec::new();
            for p in k["patches"].as_array().into_iter().flatten() {
                if let Some(f) = p["path"].as_str() {
                    files.push(f.to_owned());
                }
            }
            for p in k["patchesStrategicMerge"].as_array().into_iter().flatten() {
                if let Some(f) = p.as_str() {
                    files.push(f.to_owned());
                }
            }
            let base = RepoPath::parse(&root).unwrap_or_else(|_| RepoPath::root());
            for f in files {
                let Ok(file) = base.join(&f) else { continue };
                if let (Ok(text), Ok(blame)) = (
                    repo.read_file(commit, &file),
                    repo.blame(commit, &file, blame_cache),
                ) {
                    out.push((file.as_str().to_owned(), text, blame));
                }
            }
            // Inline patches live in the kustomization itself.
            if k["patches"]
                .as_array()
                .is_some_and(|a| a.iter().any(|p| p["patch"].is_string()))
                && let Ok(blame) = repo.blame(commit, &path, blame_cache)
            {
                out.push((path.as_str().to_owned(), bytes.clone(), blame));
            }
            break;
        }
        out
    }

    /// A file at the root of a located object's repository, at its tracked commit; None when
    /// the file does not exist there.
    pub fn read_config(
        &self,
        located: &Located,
        name: &str,
    ) -> Result<Option<Vec<u8>>, SourceError> {
        let repo = self.repo_of(located);
        let (Some(repo), Some(commit)) = (repo, &located.tracked_commit) else {
            return Ok(None);
        };
        let commit: CommitId = commit.parse()?;
        match repo.read_file(commit, &RepoPath::parse(name)?) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(GitError::FileNotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Picks the repository: `--repo`, else the working directory's checkout when its remote is
    /// the object's repository, else a cached clone of the URL.
    fn repo_for(
        &self,
        url: Option<&RepoUrl>,
        key: &ObjectKey,
        rule: Rule,
    ) -> Result<(String, Arc<Repo>), SourceError> {
        if let Some(flag) = &self.choice.flag {
            let path = Path::new(flag);
            if path.exists() {
                return self.cached_repo(format!("local:{flag}"), || Repo::open_local(path));
            }
            let url = RepoUrl::parse(flag)?;
            return self.open_url(&url);
        }
        self.repo_unflagged(url, key, rule)
    }

    /// The repository at `url` when it is a second one of a source (an Argo CD chart's values
    /// repository): `--repo` only when it is that repository.
    fn second_repo(&self, url: &RepoUrl) -> Result<(String, Arc<Repo>), SourceError> {
        let key = application_key();
        if let Some(flag) = &self.choice.flag {
            // A checkout whose remote is `url`, or `url` itself; another URL is not cloned.
            let flagged = if Path::new(flag).exists() {
                let (repo_key, repo) = self.repo_for(Some(url), &key, Rule::ArgoCd)?;
                has_remote(&repo, url).then_some((repo_key, repo))
            } else if RepoUrl::parse(flag).is_ok_and(|f| f.same_repo(url)) {
                Some(self.repo_for(Some(url), &key, Rule::ArgoCd)?)
            } else {
                None
            };
            if let Some(found) = flagged {
                return Ok(found);
            }
        }
        self.repo_unflagged(Some(url), &key, Rule::ArgoCd)
    }

    /// [`Locator::repo_for`] without `--repo`: the working directory's checkout when its
    /// remote is `url`, else a clone of `url`.
    fn repo_unflagged(
        &self,
        url: Option<&RepoUrl>,
        key: &ObjectKey,
        rule: Rule,
    ) -> Result<(String, Arc<Repo>), SourceError> {
        if let Some(cwd) = &self.choice.cwd
            && let Ok((repo_key, repo)) =
                self.cached_repo(format!("local:{}", cwd.display()), || Repo::open_local(cwd))
        {
            let matches = match url {
                Some(url) => has_remote(&repo, url),
                // Nothing names a repository: the checkout we are in is the one to search.
                None => true,
            };
            if matches {
                return Ok((repo_key, repo));
            }
        }
        match url {
            Some(url) => self.open_url(url),
            None => {
                let mut looked_for = Vec::new();
                if rule == Rule::Fallback {
                    looked_for.extend(rules_looked_for());
                }
                looked_for.push(format!(
                    "a local checkout for the {} (pass --repo PATH, or run inside the repository)",
                    rule.describe()
                ));
                Err(SourceError::NoSource {
                    key: key.to_string(),
                    looked_for,
                })
            }
        }
    }

    fn open_url(&self, url: &RepoUrl) -> Result<(String, Arc<Repo>), SourceError> {
        let key = format!("url:{}", url.cache_key());
        let cache_root = self.choice.cache_root.clone();
        self.cached_repo(key, || {
            let (repo, used) = Repo::open_remote(url, &cache_root)?;
            if matches!(used, CacheUse::Cloned) {
                self.reads.clones.fetch_add(1, Ordering::Relaxed);
            }
            Ok(repo)
        })
    }

    fn cached_repo(
        &self,
        key: String,
        open: impl FnOnce() -> Result<Repo, GitError>,
    ) -> Result<(String, Arc<Repo>), SourceError> {
        let mut repos = self.repos.lock().expect("repo cache lock");
        if let Some(repo) = repos.get(&key) {
            return Ok((key, repo.clone()));
        }
        let mut failed = self.failed_repos.lock().expect("failed repo lock");
        if let Some((at, message)) = failed.get(&key)
            && at.elapsed() < RETRY_FAILED_REPO
        {
            return Err(cached_error(message));
        }
        match open() {
            Ok(repo) => {
                failed.remove(&key);
                let repo = Arc::new(repo);
                repos.insert(key.clone(), repo.clone());
                Ok((key, repo))
            }
            Err(e) => {
                let e = SourceError::from(e);
                failed.insert(key, (std::time::Instant::now(), e.to_string()));
                Err(e)
            }
        }
    }

    /// Forgets the renders and history read at commits other than `commits` (full ids): for a
    /// caller that runs long (watch), whose tips move on while it runs.
    pub fn forget_commits_except(&self, commits: &std::collections::HashSet<String>) {
        self.renders
            .lock()
            .expect("render cache lock")
            .retain(|(commit, _), _| commits.contains(&commit.to_string()));
        self.history
            .lock()
            .expect("history cache lock")
            .retain(|(_, commit, _), _| commits.contains(&commit.to_string()));
    }

    /// Forgets every failure kept (a repository that could not be cloned, a render, a chart
    /// render or a chart repository that failed), and the tips resolved (a branch may have
    /// moved since), and keeps what succeeded: for a caller that runs long (watch) and tries
    /// its objects in error again, whose cause may have gone.
    pub fn forget_failures(&self) {
        self.failed_repos.lock().expect("failed repo lock").clear();
        self.revisions.lock().expect("revision cache lock").clear();
        self.refreshed.lock().expect("refreshed lock").clear();
        self.renders
            .lock()
            .expect("render cache lock")
            .retain(|_, slot| !matches!(slot.get(), Some(Err(_))));
        self.files
            .lock()
            .expect("file cache lock")
            .retain(|_, read| read.is_ok());
        self.helm_renders
            .lock()
            .expect("helm render cache lock")
            .retain(|_, slot| !matches!(slot.get(), Some(Err(_))));
        self.charts.forget_failures();
    }

    /// Packs what is kept between evaluations, for a caller that runs long (watch): each
    /// render's objects as compact JSON, parsed again when looked up, and the files read are
    /// forgotten (one file is quick to read again; a render is not). Memory drops to about a
    /// tenth; a lookup then costs a JSON parse instead of a copy. Returns whether anything was
    /// packed or forgotten.
    pub fn pack(&self) -> bool {
        let mut files = self.files.lock().expect("file cache lock");
        let mut freed = !files.is_empty();
        files.clear();
        let mut renders = self.renders.lock().expect("render cache lock");
        for entry in renders.values_mut() {
            if let Some(Ok(rendered)) = entry.get()
                && let Some(packed) = rendered.packed()
            {
                *entry = Arc::new(OnceLock::from(Ok(Arc::new(packed))));
                freed = true;
            }
        }
        freed
    }

    /// A revision resolved once per repository and run (many objects name the same one).
    /// Fetches a cached clone's branches, once per run. Offline, the cached tip is used and the
    /// user is told it may be behind.
    /// Writes the warnings gathered so far (each once) to `err`.
    pub fn flush_warnings(&self, err: &mut dyn std::io::Write) {
        for warning in self.warnings.lock().expect("warnings lock").drain(..) {
            let _ = writeln!(err, "warning: {warning}");
        }
    }

    fn refresh_once(&self, repo_key: &str, repo: &Repo) {
        let once = self
            .refreshed
            .lock()
            .expect("refresh set lock")
            .entry(repo_key.to_owned())
            .or_default()
            .clone();
        once.get_or_init(|| match repo.fetch() {
            Ok(()) => {
                self.reads.fetches.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.warnings.lock().expect("warnings lock").push(format!(
                "{}: could not fetch the tracked branch ({}); using the cached copy, which may be \
                 behind the remote",
                repo.display_name(),
                crate::text::single_line(&e.to_string())
            )),
        });
    }

    fn resolve(&self, repo: &Repo, rev: &str) -> Result<CommitId, SourceError> {
        let key = (repo.display_name(), rev.to_owned());
        if let Some(id) = self
            .revisions
            .lock()
            .expect("revision cache lock")
            .get(&key)
        {
            return Ok(*id);
        }
        let (id, fetched) = repo.resolve(rev)?;
        if fetched {
            self.reads.fetches.fetch_add(1, Ordering::Relaxed);
        }
        self.revisions
            .lock()
            .expect("revision cache lock")
            .insert(key, id);
        Ok(id)
    }

    /// The documents of one file at one commit, read and parsed once per run.
    /// A file's documents for a render, which keeps them: copied from the file cache when they
    /// are there, else read without filling it, so that the render holds the only copy.
    fn documents_owned(
        &self,
        repo_key: &str,
        repo: &Repo,
        commit: CommitId,
        file: &RepoPath,
    ) -> Result<Vec<Document>, SourceError> {
        let cache_key = (repo_key.to_owned(), commit, file.as_str().to_owned());
        if let Some(hit) = self.files.lock().expect("file cache lock").get(&cache_key) {
            return hit
                .clone()
                .map(|docs| docs.as_ref().clone())
                .map_err(|e| cached_error(&e));
        }
        self.reads.files.fetch_add(1, Ordering::Relaxed);
        let bytes = repo.read_file(commit, file)?;
        Ok(render::documents(file.as_str(), &bytes)?)
    }

    fn documents(
        &self,
        repo_key: &str,
        repo: &Repo,
        commit: CommitId,
        file: &RepoPath,
    ) -> Result<Arc<Vec<Document>>, SourceError> {
        let cache_key = (repo_key.to_owned(), commit, file.as_str().to_owned());
        if let Some(hit) = self.files.lock().expect("file cache lock").get(&cache_key) {
            return hit.clone().map_err(|e| cached_error(&e));
        }
        self.reads.files.fetch_add(1, Ordering::Relaxed);
        let result = repo
            .read_file(commit, file)
            .map_err(SourceError::from)
            .and_then(|bytes| Ok(Arc::new(render::documents(file.as_str(), &bytes)?)));
        let shared = result.as_ref().map(Arc::clone).map_err(|e| e.to_string());
        self.files
            .lock()
            .expect("file cache lock")
            .insert(cache_key, shared);
        result
    }

    /// A kustomize render of `root`, once per run for the same pointer settings; callers
    /// that ask while it runs wait for it.
    fn render(
        &self,
        repo_key: &str,
        repo: &Repo,
        commit: CommitId,
        root: &RepoPath,
        pointer: &Pointer,
    ) -> Result<Arc<Rendered>, SourceError> {
        self.render_slot(repo_key, repo, commit, root, pointer).0
    }

    /// [`Locator::render`], and the slot it was kept in.
    fn render_slot(
        &self,
        repo_key: &str,
        repo: &Repo,
        commit: CommitId,
        root: &RepoPath,
        pointer: &Pointer,
    ) -> (
        Result<Arc<Rendered>, SourceError>,
        RenderKey,
        Arc<OnceLock<SharedRender>>,
    ) {
        let cache_key = (
            commit,
            format!(
                "{repo_key}|{}|{:?}|{:?}|{}|{}|{}",
                root.as_str(),
                pointer.overlay,
                pointer.substitute,
                pointer.generate_kustomization,
                pointer.recurse,
                pointer
                    .argo_helm
                    .as_ref()
                    .map(|h| h.fingerprint())
                    .unwrap_or_default()
            ),
        );
        let slot = self
            .renders
            .lock()
            .expect("render cache lock")
            .entry(cache_key.clone())
            .or_default()
            .clone();
        // The caller that renders gets its own error, with its full detail.
        let mut own_error = None;
        let shared = slot.get_or_init(|| {
            self.reads.renders.fetch_add(1, Ordering::Relaxed);
            match self.render_uncached(repo_key, repo, commit, root, pointer) {
                Ok((docs, plain, chart)) => {
                    let mut rendered = Rendered::new(docs, plain);
                    rendered.chart = chart;
                    Ok(Arc::new(rendered))
                }
                Err(e) => {
                    let failure = RenderFailure::of(&e);
                    own_error = Some(e);
                    Err(failure)
                }
            }
        });
        let result = match (own_error, shared) {
            (Some(e), _) => Err(e),
            (None, Ok(rendered)) => Ok(rendered.clone()),
            (None, Err(failure)) => Err(failure.error()),
        };
        (result, cache_key, slot)
    }

    /// Starts the renders an object of `pointer` will need (at the applied commit and at the
    /// tip), so that they run while the cluster is still being listed; `locate` then finds
    /// them done or waits for them. A render that fails is forgotten here: `locate` meets the
    /// failure again, for the object it belongs to.
    pub fn prefetch(&self, pointer: &Pointer, key: &ObjectKey) {
        // A HelmRelease's chart: rendered once per release and run, so locating the object
        // now leaves the render for every other object of the release.
        if pointer.rule == Rule::Helm {
            let _ = self.locate(Some(pointer.clone()), key);
            return;
        }
        if !matches!(pointer.rule, Rule::Flux | Rule::ArgoCd) {
            return;
        }
        for source in &pointer.more_sources {
            self.prefetch(source, key);
        }
        if let Some(h) = &pointer.argo_helm
            && let Some(c) = &h.chart
        {
            let _ = self.argo_repository_documents(pointer, h, c);
            return;
        }
        let Ok((repo_key, repo)) = self.repo_for(pointer.repo.as_ref(), key, pointer.rule) else {
            return;
        };
        let Ok(commits) = self.commits(pointer, &repo_key, &repo) else {
            return;
        };
        let root = pointer.render_root.clone().unwrap_or_else(RepoPath::root);
        let Ok(values) = self.git_chart_values_repos(pointer, key) else {
            return;
        };
        let (values_synced, values_tips) = argo::values_commits(&values);
        let synced = Locator::values_read_at(pointer, &values_synced);
        let tip = Locator::values_read_at(pointer, &values_tips);
        let mut at = vec![(commits.read_at(), &synced)];
        if commits.tip != commits.read_at() || values_synced != values_tips {
            at.push((commits.tip, &tip));
        }
        for (commit, pointer) in at {
            let (result, cache_key, slot) =
                self.render_slot(&repo_key, &repo, commit, &root, pointer);
            if result.is_err() {
                let mut renders = self.renders.lock().expect("render cache lock");
                if renders
                    .get(&cache_key)
                    .is_some_and(|kept| Arc::ptr_eq(kept, &slot))
                {
                    renders.remove(&cache_key);
                }
            }
        }
    }

    fn render_uncached(
        &self,
        repo_key: &str,
        repo: &Repo,
        commit: CommitId,
        root: &RepoPath,
        pointer: &Pointer,
    ) -> Result<(Vec<Document>, bool, Chart), SourceError> {
        let files = repo.list_files(commit, root)?;
        let has_kustomization = files.iter().any(|f| {
            f.parent()
                .as_ref()
                .map(RepoPath::as_str)
                .unwrap_or_default()
                == root.as_str()
                && render::KUSTOMIZATION_FILES
                    .iter()
                    .any(|k| f.as_str().ends_with(&format!("/{k}")) || f.as_str() == *k)
        });
        // Argo CD renders a source with Helm when it sets `helm`, or when it sets no type and
        // its path holds a Chart.yaml and no kustomization (Argo CD's discovery: a
        // kustomization wins).
        if let Some(h) = &pointer.argo_helm {
            let chart_yaml = root.join("Chart.yaml").ok();
            let is_chart = chart_yaml
                .as_ref()
                .is_some_and(|c| files.iter().any(|f| f == c));
            if h.explicit || (!h.other_type && is_chart && !has_kustomization) {
                let (docs, chart) = self.argo_chart(repo, commit, root, h)?;
                return Ok((docs, false, Some(Arc::new(chart))));
            }
        }
        // A Flux path with no kustomization and no overlay: kustomize-controller's generated
        // kustomization lists every manifest under it, and kustomize gives them back as they
        // are. Read them directly; a nested kustomization still goes through kustomize.
        let plain_flux = pointer.generate_kustomization
            && !has_kustomization
            && pointer.overlay == render::Overlay::default()
            && !files.iter().any(|f| {
                render::KUSTOMIZATION_FILES
                    .iter()
                    .any(|k| f.as_str().ends_with(&format!("/{k}")) || f.as_str() == *k)
            });
        let kustomized = !plain_flux && (has_kustomization || pointer.generate_kustomization);
        let mut docs = if plain_flux {
            let mut docs = Vec::new();
            for file in files.iter().filter(|f| is_manifest(f.as_str())) {
                docs.extend(self.documents_owned(repo_key, repo, commit, file)?);
            }
            docs
        } else if has_kustomization || pointer.generate_kustomization {
            let (docs, built) = render::kustomize_cached(
                repo,
                commit,
                root,
                &pointer.overlay,
                pointer.generate_kustomization,
                self.metadata,
                self.render_cache.as_deref(),
            )?;
            self.count_build(built);
            docs
        } else {
            // Plain manifests (an Argo CD directory source): top level, or every level.
            let mut docs = Vec::new();
            for file in files.iter().filter(|f| is_manifest(f.as_str())) {
                let top_level = f_parent(file) == root.as_str();
                if top_level || pointer.recurse {
                    docs.extend(self.documents_owned(repo_key, repo, commit, file)?);
                }
            }
            docs
        };
        if let Some(vars) = &pointer.substitute {
            for doc in &mut docs {
                let disabled = doc.object["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/substitute"]
                    == "disabled";
                if disabled {
                    continue;
                }
                let text = serde_json::to_string(&doc.object).expect("JSON serialises");
                if let Ok(object) = serde_json::from_str(&render::substitute(&text, vars)) {
                    doc.object = object;
                }
            }
        }
        let plain = !kustomized && pointer.substitute.is_none();
        Ok((docs, plain, None))
    }

    fn count_build(&self, built: render::Built) {
        match built {
            render::Built::Cached => {
                self.reads.cached_renders.fetch_add(1, Ordering::Relaxed);
            }
            render::Built::Built {
                replaced_damaged,
                store_error,
            } => {
                self.reads.kustomize_builds.fetch_add(1, Ordering::Relaxed);
                if replaced_damaged {
                    self.reads.damaged_renders.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(e) = store_error
                    && !self.cache_write_warned.swap(true, Ordering::Relaxed)
                {
                    self.warnings
                        .lock()
                        .expect("warnings lock")
                        .push(format!("{e}; renders are not kept for the next run"));
                }
            }
        }
    }

    /// `git rev-list --count from..to`, once per pair in a run.
    fn commits_between(
        &self,
        repo_key: &str,
        repo: &Repo,
        from: CommitId,
        to: CommitId,
    ) -> Result<usize, SourceError> {
        let key = (repo_key.to_owned(), from, to);
        if let Some(n) = self.counts.lock().expect("count cache lock").get(&key) {
            return Ok(*n);
        }
        let n = repo.count_commits_between(from, to)?;
        self.counts.lock().expect("count cache lock").insert(key, n);
        Ok(n)
    }

    fn last_change(
        &self,
        repo_key: &str,
        repo: &Repo,
        from: CommitId,
        file: &RepoPath,
    ) -> Result<Option<CommitId>, SourceError> {
        let cache_key = (repo_key.to_owned(), from, file.as_str().to_owned());
        if let Some(hit) = self
            .history
            .lock()
            .expect("history cache lock")
            .get(&cache_key)
        {
            return Ok(*hit);
        }
        self.reads.history.fetch_add(1, Ordering::Relaxed);
        let found = repo.last_commit_touching(from, file)?;
        self.history
            .lock()
            .expect("history cache lock")
            .insert(cache_key, found);
        Ok(found)
    }

    /// kustomize writes origin paths relative to the build directory, which the object does not
    /// record: take the repository file whose path ends with the origin path (less its leading
    /// `../`) and that declares the object.
    fn find_origin_file(
        &self,
        repo_key: &str,
        repo: &Repo,
        commit: CommitId,
        origin: &str,
        key: &ObjectKey,
    ) -> Result<RepoPath, SourceError> {
        let mut tail = origin;
        while let Some(rest) = tail.strip_prefix("../").or_else(|| tail.strip_prefix("./")) {
            tail = rest;
        }
        let tail = RepoPath::parse(tail)?;
        let all = repo.list_files(commit, &RepoPath::root())?;
        let candidates: Vec<&RepoPath> = all
            .iter()
            .filter(|f| {
                f.as_str() == tail.as_str() || f.as_str().ends_with(&format!("/{}", tail.as_str()))
            })
            .collect();
        for candidate in &candidates {
            if let Ok(docs) = self.documents(repo_key, repo, commit, candidate)
                && pick(&docs, key).is_some()
            {
                return Ok((*candidate).clone());
            }
        }
        Err(SourceError::NoSource {
            key: key.to_string(),
            looked_for: vec![format!(
                "a file matching the kustomize origin path '{origin}' in {} at {} ({} candidates)",
                repo.display_name(),
                commit.short(),
                candidates.len()
            )],
        })
    }

    /// The kustomization directory whose build names `file` as `origin`.
    fn origin_render_root(
        &self,
        repo: &Repo,
        commit: CommitId,
        file: &RepoPath,
        origin: &str,
    ) -> Option<String> {
        let all = repo.list_files(commit, &RepoPath::root()).ok()?;
        all.iter()
            .filter(|f| {
                render::KUSTOMIZATION_FILES
                    .iter()
                    .any(|k| f.as_str() == *k || f.as_str().ends_with(&format!("/{k}")))
            })
            .filter_map(|k| {
                let dir = k.parent().unwrap_or_else(RepoPath::root);
                (dir.join(origin).ok()?.as_str() == file.as_str()).then(|| display_root(&dir))
            })
            .next()
    }

    /// The fallback: every manifest of the repository at `commit`, for a document declaring
    /// the object.
    fn search(
        &self,
        repo_key: &str,
        repo: &Repo,
        commit: CommitId,
        key: &ObjectKey,
    ) -> Result<(Document, String), SourceError> {
        let all = repo.list_files(commit, &RepoPath::root())?;
        let mut namespaces: HashMap<String, Option<String>> = HashMap::new();
        for file in all.iter().filter(|f| is_manifest(f.as_str())) {
            let Ok(docs) = self.documents(repo_key, repo, commit, file) else {
                continue; // not a manifest we can read; the search goes on
            };
            for doc in docs.iter() {
                let Some(mut doc_key) = doc.key() else {
                    continue;
                };
                if doc_key.namespace.is_none() && key.namespace.is_some() {
                    // A kustomization's `namespace:` sets it for the files it lists.
                    let dir = f_parent(file).to_owned();
                    let ns = namespaces
                        .entry(dir.clone())
                        .or_insert_with(|| {
                            self.kustomization_namespace(repo_key, repo, commit, &dir)
                        })
                        .clone();
                    doc_key.namespace = ns;
                }
                if key.declared_by(&doc_key) {
                    let root = file.as_str().to_owned();
                    return Ok((doc.clone(), root));
                }
            }
        }
        let mut looked_for = rules_looked_for();
        looked_for.push(format!(
            "a document declaring it in {} at {}",
            repo.display_name(),
            commit.short()
        ));
        Err(SourceError::NoSource {
            key: key.to_string(),
            looked_for,
        })
    }

    fn kustomization_namespace(
        &self,
        repo_key: &str,
        repo: &Repo,
        commit: CommitId,
        dir: &str,
    ) -> Option<String> {
        let mut current = Some(dir.to_owned());
        while let Some(d) = current {
            for name in render::KUSTOMIZATION_FILES {
                let path = if d.is_empty() {
                    name.to_owned()
                } else {
                    format!("{d}/{name}")
                };
                let Ok(path) = RepoPath::parse(&path) else {
                    continue;
                };
                if let Ok(docs) = self.documents(repo_key, repo, commit, &path)
                    && let Some(ns) = docs.first().and_then(|k| k.object["namespace"].as_str())
                {
                    return Some(ns.to_owned());
                }
            }
            current = d
                .rsplit_once('/')
                .map(|(parent, _)| parent.to_owned())
                .or_else(|| (!d.is_empty()).then(String::new));
        }
        None
    }
}

/// The document of `docs` that declares the live object: the same key; else, when a
/// kustomization renamed it, the same kind whose name is part of the live name; else the only
/// document of that kind.
/// A remote of the checkout `repo` is `url`.
fn has_remote(repo: &Repo, url: &RepoUrl) -> bool {
    repo.remote_urls()
        .iter()
        .filter_map(|r| RepoUrl::parse(r).ok())
        .any(|r| r.same_repo(url))
}

/// The key an Application's own reads are made for (no object of its own).
fn application_key() -> ObjectKey {
    ObjectKey {
        group: "argoproj.io".into(),
        kind: "Application".into(),
        namespace: None,
        name: String::new(),
    }
}

fn pick(docs: &[Document], key: &ObjectKey) -> Option<Document> {
    pick_ref(docs, key).cloned()
}

/// [`pick`], without copying the document.
fn pick_ref<'a>(docs: &'a [Document], key: &ObjectKey) -> Option<&'a Document> {
    let same_kind: Vec<&Document> = docs
        .iter()
        .filter(|d| {
            d.object["kind"] == key.kind.as_str()
                && d.key()
                    .is_some_and(|k| k.group == key.group && k.kind == key.kind)
        })
        .collect();
    same_kind
        .iter()
        .find(|d| d.key().is_some_and(|k| key.declared_by(&k)))
        .or_else(|| {
            same_kind
                .iter()
                .find(|d| d.key().is_some_and(|k| key.name.contains(&k.name)))
        })
        .or_else(|| (same_kind.len() == 1).then(|| &same_kind[0]))
        .copied()
}

/// The rules that come before the fallback search, for "no source" messages.
fn rules_looked_for() -> Vec<String> {
    vec![
        "annotations kubectl-gitops.dev/repo and /path".into(),
        "annotation config.kubernetes.io/origin".into(),
        "labels kustomize.toolkit.fluxcd.io/name and /namespace".into(),
        "annotation argocd.argoproj.io/tracking-id or label app.kubernetes.io/instance".into(),
    ]
}

fn not_declared(file: &str, commit: CommitId, key: &ObjectKey) -> SourceError {
    SourceError::NotDeclared {
        file: file.to_owned(),
        commit: commit.short(),
        key: key.to_string(),
    }
}

/// How long a repository that could not be opened or cloned is not tried again: once per run of
/// diff, and again a minute later for watch.
const RETRY_FAILED_REPO: std::time::Duration = std::time::Duration::from_secs(60);

fn cached_error(message: &str) -> SourceError {
    SourceError::Repeated(message.to_owned())
}

fn is_manifest(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml") || path.ends_with(".json")
}

fn f_parent(file: &RepoPath) -> &str {
    file.as_str().rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

fn display_root(root: &RepoPath) -> String {
    if root.as_str().is_empty() {
        ".".to_owned()
    } else {
        root.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_that_failed_is_not_tried_again_at_once() {
        let locator = Locator::new(RepoChoice {
            flag: None,
            cwd: None,
            cache_root: std::env::temp_dir(),
            against: None,
        });
        let mut tries = 0;
        let mut open = || {
            tries += 1;
            Err(GitError::Clone {
                url: "https://git.example.com/a.git".into(),
                reason: "could not resolve host".into(),
            })
        };
        let first = locator.cached_repo("a".into(), &mut open).unwrap_err();
        let second = locator.cached_repo("a".into(), &mut open).unwrap_err();
        assert_eq!(tries, 1);
        assert_eq!(first.to_string(), second.to_string());
        assert!(
            first.to_string().contains("could not resolve host"),
            "{first}"
        );
    }

    #[test]
    fn an_applied_commit_not_in_the_repository_is_read_at_the_fallback_with_a_warning() {
        use crate::git::fixture::{ALICE, Fixture};
        let mut f = Fixture::new();
        f.write("a.yaml", "kind: ConfigMap\n");
        let built = f.commit(ALICE, "first");
        let repo = Repo::open_local(&f.path).unwrap();
        let locator = Locator::new(RepoChoice {
            flag: None,
            cwd: None,
            cache_root: std::env::temp_dir(),
            against: None,
        });
        let mut pointer = Pointer::new(Rule::Helm);
        pointer.tracked_ref = Some("main".into());
        // Force-pushed away: on no branch, in no object database.
        pointer.applied_commit = Some("e87e77fafdf6".into());
        let gone = locator.commits(&pointer, "a", &repo);
        assert!(
            gone.is_err(),
            "an unknown commit without a fallback is an error"
        );
        pointer.applied_fallback = Some((built.clone(), "the HelmChart's commit".into()));
        let commits = locator.commits(&pointer, "a", &repo).unwrap();
        assert_eq!(commits.applied.map(|c| c.to_string()), Some(built.clone()));
        let warnings = locator.warnings.lock().unwrap().clone();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("e87e77fafdf6, the commit the Helm release was made from")
                && warnings[0].contains(&format!(
                    "reading the HelmChart's commit ({})",
                    &built[..12]
                )),
            "{}",
            warnings[0]
        );
    }

    #[test]
    fn a_packed_render_finds_what_the_parsed_one_did() {
        let text = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  n: \"1\"\n\
            ---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\nspec:\n  replicas: 3\n  \
            minReadySeconds: 0\n  progress: 1.5\n  paused: false\n  selector: {matchLabels: {}}\n";
        let docs = render::documents("apps/a.yaml", text).unwrap();
        let parsed = Rendered::new(docs.clone(), true);
        let packed = parsed.packed().expect("a parsed render packs");
        assert!(packed.packed().is_none(), "packed twice");
        for kind in ["ConfigMap", "Deployment"] {
            let (p, q) = (parsed.named(kind, "a"), packed.named(kind, "a"));
            assert_eq!(p.len(), 1);
            assert_eq!(p[0].as_ref(), q[0].as_ref());
        }
        assert!(packed.named("Secret", "a").is_empty());
        assert_eq!(*packed.all(), docs);
        assert!(packed.plain);
    }
}
