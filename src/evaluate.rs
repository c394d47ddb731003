//! The evaluation shared by `diff`, `revert` and `watch`: live objects (one LIST per kind) against
//! Git, offline first, with server-side-apply dry runs where the mode asks for them, every
//! drifted field attributed. Commands turn its results into reports or writes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use serde_json::Value;

use crate::cli::ServerSide;
use crate::cluster::cache::CachedDiscovery;
use crate::cluster::discovery::Resource;
use crate::cluster::{self, Cluster, ClusterError, LiveObject, single_line};
use crate::drift::{
    self, Change, FieldReport, ObjectReport, Offline, SourceSummary, Status, Verdict, Why,
};
use crate::env::Env;
use crate::fields::{FieldPath, ManagedFields};
use crate::normalize::{IgnoreRule, RepoConfig};
use crate::object::ObjectKey;
use crate::report::Log;
use crate::schema::Schemas;
use crate::source::{self, Located, Locator, ReconcilerCache, RepoChoice, SourceError};

/// Kinds never listed for the default scope: high-churn, controller-made, never from Git.
pub const SKIPPED_KINDS: &[&str] = &[
    "events",
    "events.events.k8s.io",
    "endpoints",
    "endpointslices.discovery.k8s.io",
    "leases.coordination.k8s.io",
    "pods",
    "replicasets.apps",
    "controllerrevisions.apps",
    "csistoragecapacities.storage.k8s.io",
];

/// What to evaluate, as the command line says it.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// TYPE or TYPE/NAME, as kubectl accepts them; empty: every object with a source.
    pub objects: Vec<String>,
    /// Files or directories of the local checkout whose objects are in scope (`-f`).
    pub files: Vec<PathBuf>,
    /// Label selector.
    pub selector: Option<String>,
    /// `-A`.
    pub all_namespaces: bool,
    /// `--repo`.
    pub repo: Option<String>,
    /// `--against` / `--to`.
    pub against: Option<String>,
}

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct Options {
    pub server_side: ServerSide,
    pub concurrency: u16,
    /// Ignore rules from the command line.
    pub ignore: Vec<IgnoreRule>,
    pub refresh_discovery: bool,
    /// Give every object evaluated a [`Summary`] and keep no work at all (watch follows every
    /// object, and memory must not grow with what it follows). Otherwise the work of objects
    /// that are not in sync is kept (revert writes them back), and of the others only the
    /// report.
    pub summaries: bool,
}

/// What a caller that follows objects (watch) keeps of one once its verdict is made: enough to
/// tell a later change of the live object from bookkeeping, and where Git's side is read.
#[derive(Debug, Clone)]
pub struct Summary {
    pub resource_version: String,
    /// [`crate::object::content_digest`] of live as the server sent it.
    pub content: u64,
    pub repo_key: String,
    /// The checkout's path, or the URL.
    pub repo: String,
    pub local_checkout: bool,
    pub tracked_ref: Option<String>,
    pub tracked_commit: Option<String>,
    /// The commit desired was read at (the applied one, else the tip).
    pub read_at: String,
    /// Git declares the object at the tip.
    pub declared: bool,
}

/// One live object on its way through the comparison; kept after the verdict so that `revert`
/// can write desired back and `watch` can compare the next version of the object.
pub struct Work {
    pub key: ObjectKey,
    pub resource: Resource,
    pub live: LiveObject,
    pub pointer: Option<source::Pointer>,
    pub located: Located,
    pub managed: ManagedFields,
    /// The reconciler's field managers (the first is the one to apply as).
    pub reconciler: Vec<String>,
    pub offline: Offline,
    /// Fields Git does not declare that only out-of-band managers own.
    pub extra: Vec<Change>,
    pub dry_run: Option<Result<Vec<Change>, String>>,
    /// The digest of live before managedFields was dropped, when summaries are wanted.
    content: Option<u64>,
}

impl Work {
    /// What a follower keeps of this work.
    pub fn summary(&self) -> Summary {
        let located = &self.located;
        Summary {
            resource_version: self.live["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            content: self
                .content
                .unwrap_or_else(|| crate::object::content_digest(&self.live)),
            repo_key: located.repo_key.clone(),
            repo: located.repo.clone(),
            local_checkout: located.local_checkout,
            tracked_ref: located.tracked_ref.clone(),
            tracked_commit: located.tracked_commit.clone(),
            read_at: located.read_at.clone(),
            declared: located.desired_at_tip.is_some(),
        }
    }

    /// Desired as the API takes it (in the live object's namespace), when Git still declares
    /// the object.
    pub fn desired(&self) -> Option<Value> {
        Some(self.desired_shared()?.into_owned())
    }

    /// [`Work::desired`], copied only when it needs the namespace filled in.
    fn desired_shared(&self) -> Option<std::borrow::Cow<'_, Value>> {
        let at_tip = self.located.desired_at_tip.as_deref()?;
        let placed = !at_tip["metadata"]["namespace"].is_null()
            || self.live["metadata"]["namespace"].is_null();
        if placed {
            return Some(std::borrow::Cow::Borrowed(at_tip));
        }
        let mut desired = at_tip.clone();
        place(&mut desired, &self.live);
        Some(std::borrow::Cow::Owned(desired))
    }

    /// The field manager to apply desired as: the reconciler's own.
    pub fn manager(&self) -> String {
        self.reconciler
            .first()
            .cloned()
            .unwrap_or_else(|| "kubectl-gitops".into())
    }
}

/// One object's verdict, with what it was made from (none for objects that never got that far:
/// missing, no source, errors).
pub struct Evaluated {
    pub report: ObjectReport,
    /// Boxed: most objects keep none, and a run keeps an `Evaluated` for every object.
    pub work: Option<Box<Work>>,
    /// With [`Options::summaries`], for every object that was located.
    pub summary: Option<Summary>,
    /// For a missing object: what Git declares, for `revert` to create it again.
    pub missing: Option<MissingObject>,
}

/// An object Git declares and the cluster does not have, ready to be created again: desired
/// in the namespace it belongs in, carrying the source markers its siblings carry (so that it
/// is found again the way they are), and who would apply it.
pub struct MissingObject {
    pub desired: Value,
    /// The field manager the reconciler of its siblings applies as.
    pub manager: String,
    pub reconciler: Option<source::Reconciler>,
}

/// A kind that was listed, and from which resourceVersion a watch can follow it.
#[derive(Debug, Clone)]
pub struct ListedKind {
    pub resource: Resource,
    pub namespace: Option<String>,
    pub resource_version: String,
}

/// Everything one evaluation found.
pub struct Evaluation {
    pub items: Vec<Evaluated>,
    /// Some object or kind could not be evaluated (already said on stderr).
    pub failed: bool,
    pub kinds: Vec<ListedKind>,
}

impl Evaluation {
    /// The reports alone, for rendering.
    pub fn reports(&self) -> Vec<ObjectReport> {
        self.items.iter().map(|e| e.report.clone()).collect()
    }
}

/// A connected cluster and a Git locator, reused across evaluations (watch evaluates again and
/// again; its caches make that cheap).
pub struct Engine {
    pub cluster: Cluster,
    pub discovery: CachedDiscovery,
    /// Shared with the renders started early ([`source::Prefetch`]).
    pub locator: Arc<Locator>,
    pub reconcilers: ReconcilerCache,
    /// The namespace in scope; `None` with `-A`.
    pub namespace: Option<String>,
    pub options: Options,
    scope: Scope,
    cache_dir: Option<PathBuf>,
    schemas: Schemas,
    schema_versions: BTreeSet<String>,
    schemas_warned: bool,
    /// `.kubectl-gitops.yaml` rules of the repositories seen, and which (repository, commit)
    /// were read.
    repo_rules: Vec<IgnoreRule>,
    repo_rules_read: BTreeSet<(String, String)>,
}

impl Engine {
    /// Connects to the cluster the global flags name and reads discovery (disk-cached).
    pub async fn connect(
        global: &crate::cli::GlobalArgs,
        env: &Env,
        scope: Scope,
        options: Options,
    ) -> Result<Engine> {
        let connect_options = crate::commands::connect_options(global)?;
        let cluster = cluster::connect(&connect_options, env).await?;
        let cache_dir = env.cache_dir.clone();
        let discovery =
            CachedDiscovery::read(&cluster, cache_dir.as_deref(), options.refresh_discovery)
                .await?;
        let namespace = (!scope.all_namespaces).then(|| cluster.target.namespace.clone());
        let locator = Arc::new(Locator::new(repo_choice(&scope, env)).with_render_cache(
            crate::render::RenderCache::for_env(env, global.render_cache_size),
        ));
        Ok(Engine {
            cluster,
            discovery,
            locator,
            reconcilers: ReconcilerCache::default(),
            namespace,
            options,
            scope,
            cache_dir,
            schemas: Schemas::new(),
            schema_versions: BTreeSet::new(),
            schemas_warned: false,
            repo_rules: Vec::new(),
            repo_rules_read: BTreeSet::new(),
        })
    }

    /// Evaluates another scope next time, keeping the caches (revert: the named objects first,
    /// then the whole namespace to find named objects that are missing). The repository
    /// choice (`--repo`, `--against`) must stay the same.
    pub fn set_scope(&mut self, scope: Scope) {
        self.namespace = (!scope.all_namespaces).then(|| self.cluster.target.namespace.clone());
        self.scope = scope;
    }

    /// Forgets what Git said: the next evaluation reads the tracked branches again (watch,
    /// after a poll found them moved).
    pub fn refresh_git(&mut self, env: &Env) {
        self.locator = Arc::new(
            Locator::new(repo_choice(&self.scope, env))
                .with_render_cache(self.locator.render_cache()),
        );
        self.reconcilers = ReconcilerCache::default();
        self.repo_rules.clear();
        self.repo_rules_read.clear();
    }

    /// Every object in scope: listed, located, compared, judged. Problems with one object or
    /// kind are said on `err` and reported; the others go on.
    ///
    /// Objects stream through: the LISTs run in parallel, each object is compared as its list
    /// arrives, dry runs start as soon as an object needs one, and an object found in sync
    /// keeps only its report (`work: None`), so memory does not grow with everything listed.
    pub async fn evaluate(
        &mut self,
        env: &Env,
        log: &Log,
        err: &mut dyn Write,
    ) -> Result<Evaluation> {
        let scope = self.scope.clone();
        let namespace = self.namespace.clone();
        let mut items: Vec<Evaluated> = Vec::new();
        let mut failed = false;
        let mut kinds_listed: Vec<ListedKind> = Vec::new();

        let explicit = !scope.objects.is_empty();
        let mut targets: Vec<(Resource, Option<String>)> = Vec::new();
        for arg in &scope.objects {
            let (type_text, name) = match arg.split_once('/') {
                Some((t, n)) => (t, Some(n.to_owned())),
                None => (arg.as_str(), None),
            };
            match self.discovery.resolve(type_text).await {
                Ok(r) => targets.push((r, name)),
                Err(e) => {
                    failed = true;
                    writeln!(err, "error: {arg}: {e}")?;
                }
            }
        }
        // `-f PATH`: the objects the local checkout declares there, at --against or HEAD.
        let mut declared: BTreeMap<ObjectKey, crate::render::Document> = BTreeMap::new();
        if !scope.files.is_empty() {
            failed |= self
                .declared_by_files(&scope, env, &mut targets, &mut declared, err)
                .await?;
        }
        let explicit = explicit || !scope.files.is_empty();
        if !explicit {
            targets = self
                .discovery
                .snapshot()
                .resources
                .iter()
                .filter(|r| r.verbs.iter().any(|v| v == "list"))
                .filter(|r| r.namespaced || namespace.is_none())
                .filter(|r| !SKIPPED_KINDS.contains(&r.qualified_name().as_str()))
                .map(|r| (r.clone(), None))
                .collect();
        }

        // One paginated LIST per kind in scope, several in flight. Their pages come through
        // one short queue: a LIST waits while the comparison is behind, so what is held is a
        // few pages, not every object listed.
        let kinds: BTreeSet<String> = targets.iter().map(|(r, _)| r.qualified_name()).collect();
        let mut lists = tokio::task::JoinSet::new();
        let list_permits = Arc::new(tokio::sync::Semaphore::new(LISTS_IN_FLIGHT));
        let (pages_tx, mut pages) = tokio::sync::mpsc::channel::<(usize, Listed)>(1);
        let mut listing: Vec<(String, Resource, Option<String>)> = Vec::new();
        for qualified in &kinds {
            let (resource, _) = targets
                .iter()
                .find(|(r, _)| &r.qualified_name() == qualified)
                .expect("kinds come from targets");
            let resource = resource.clone();
            let ns = namespace.clone().filter(|_| resource.namespaced);
            let cluster = self.cluster.clone();
            let selector = scope.selector.clone();
            let permits = list_permits.clone();
            let index = listing.len();
            listing.push((qualified.clone(), resource.clone(), ns.clone()));
            let tx = pages_tx.clone();
            lists.spawn(async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let result = cluster
                    .list_pages(&resource, ns.as_deref(), selector.as_deref(), |page| {
                        let tx = tx.clone();
                        async move {
                            // A closed queue: the evaluation has stopped, and aborts this task.
                            let _ = tx.send((index, Listed::Page(page))).await;
                        }
                    })
                    .await;
                let _ = tx.send((index, Listed::Done(result))).await;
            });
        }
        drop(pages_tx);

        // Progress on stderr, only on a terminal and only when the run is long.
        // Hidden until the run turns out long (more than 50 objects), then drawn on a terminal.
        let progress = if env.stderr_tty {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(0),
                indicatif::ProgressDrawTarget::hidden(),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len}")
                    .expect("a valid progress template"),
            );
            bar.set_message("comparing with Git");
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };

        let mut all_live: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut listed_kinds: BTreeSet<(String, String)> = BTreeSet::new();
        let mut in_git = Declared::default();
        let mut kept: Vec<Work> = Vec::new();
        let mut dry_runs = DryRuns::new(self.options.concurrency);
        let mut in_scope_count = 0usize;
        let mut forbidden: Vec<String> = Vec::new();
        // Per kind listed: how many objects so far, and which of the names asked for.
        let mut listed_count: Vec<usize> = vec![0; listing.len()];
        let mut names_found: BTreeSet<(usize, String)> = BTreeSet::new();
        let mut prefetch = source::Prefetch::new(self.locator.clone());
        while let Some((index, message)) = pages.recv().await {
            let (qualified, resource, ns) = &listing[index];
            let names: Vec<&String> = targets
                .iter()
                .filter(|(r, _)| &r.qualified_name() == qualified)
                .filter_map(|(_, n)| n.as_ref())
                .collect();
            let listed = match message {
                Listed::Page(listed) => listed,
                Listed::Done(Ok(resource_version)) => {
                    log.debug(err, 2, || {
                        format!("listed {qualified}: {} objects", listed_count[index])
                    });
                    kinds_listed.push(ListedKind {
                        resource: resource.clone(),
                        namespace: ns.clone(),
                        resource_version,
                    });
                    listed_kinds.insert((resource.group.clone(), resource.kind.clone()));
                    failed |= named_not_listed(
                        (qualified, resource, ns.as_deref()),
                        &names,
                        |name| names_found.contains(&(index, name.to_owned())),
                        &declared,
                        &mut items,
                        err,
                    )?;
                    continue;
                }
                // Kinds the user may not list are left out of the default scope, and said.
                Listed::Done(Err(ClusterError::Forbidden { .. })) if !explicit => {
                    forbidden.push(qualified.clone());
                    continue;
                }
                Listed::Done(Err(e)) => {
                    failed = true;
                    writeln!(err, "error: {qualified}: {}", single_line(&e.to_string()))?;
                    continue;
                }
            };
            listed_count[index] += listed.len();
            let all = targets
                .iter()
                .any(|(r, n)| &r.qualified_name() == qualified && n.is_none());
            for name in &names {
                if listed
                    .iter()
                    .any(|o| o["metadata"]["name"] == name.as_str())
                {
                    names_found.insert((index, (*name).clone()));
                }
            }
            for object in &listed {
                if let Some(key) = ObjectKey::of(object) {
                    all_live.insert(key);
                }
            }
            let wanted: Vec<LiveObject> = listed
                .into_iter()
                .filter(|object| {
                    let named = names
                        .iter()
                        .any(|n| object["metadata"]["name"] == n.as_str());
                    (all && (explicit || source::has_marker(object))) || named
                })
                .collect();
            if wanted.is_empty() {
                continue;
            }
            in_scope_count += wanted.len();
            progress.inc_length(wanted.len() as u64);
            if env.stderr_tty && progress.is_hidden() && in_scope_count > 50 {
                progress.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
            // The renders these objects need start now, in parallel, before the first waits.
            prefetch
                .start(&self.cluster, &self.discovery, &self.reconcilers, &wanted)
                .await;
            self.load_schemas(resource, err).await?;
            for live in wanted {
                progress.inc(1);
                let mut w = match self.prepare(resource.clone(), live, explicit, err).await? {
                    Prepared::Work(w) => *w,
                    Prepared::Report(report) => {
                        failed |= report.status == Status::Error;
                        items.push(Evaluated {
                            report: *report,
                            work: None,
                            summary: None,
                            missing: None,
                        });
                        continue;
                    }
                    Prepared::Nothing => continue,
                };
                if let Err(e) = in_git.note(&self.locator, &self.discovery, &w).await {
                    writeln!(
                        err,
                        "warning: {}: cannot list its source's other objects: {}",
                        w.key,
                        single_line(&e.to_string())
                    )?;
                }
                self.compare_offline(&mut w);
                if self.needs_dry_run(&w) {
                    dry_runs.spawn(&self.cluster, kept.len(), &w);
                    kept.push(w);
                } else if self.options.summaries
                    || (w.located.desired_at_tip.is_some()
                        && w.offline.is_in_sync()
                        && w.extra.is_empty())
                {
                    // No dry run wanted, and nothing to write back: the report (or summary)
                    // is all that is kept.
                    items.push(self.finish(w, false, err));
                } else {
                    kept.push(w);
                }
            }
        }
        while let Some(joined) = lists.join_next().await {
            joined.expect("a LIST task does not panic");
        }
        if !forbidden.is_empty() {
            forbidden.sort();
            writeln!(
                err,
                "warning: forbidden to list {} {}; objects of {} were not compared",
                forbidden.join(", "),
                namespace
                    .as_deref()
                    .map(|n| format!("in namespace \"{n}\""))
                    .unwrap_or_else(|| "at the cluster scope".into()),
                if forbidden.len() == 1 {
                    "that kind"
                } else {
                    "those kinds"
                }
            )?;
        }
        log.debug(err, 1, || {
            format!(
                "{in_scope_count} live objects in scope ({} kinds listed); {}",
                kinds.len(),
                self.locator.reads.summary()
            )
        });

        self.locator.flush_warnings(err);

        // Missing: declared next to objects we found (same file or render root), not in the
        // cluster.
        let named_elsewhere = explicit && targets.iter().all(|(_, n)| n.is_some());
        if !named_elsewhere {
            for (report, missing) in
                in_git.missing(&all_live, &listed_kinds, self.namespace.as_deref())
            {
                items.push(Evaluated {
                    report,
                    work: None,
                    summary: None,
                    missing: Some(missing),
                });
            }
        }

        log.debug(err, 1, || format!("{} dry runs", dry_runs.started));
        progress.set_position(0);
        progress.set_length(dry_runs.started as u64);
        progress.set_message("dry runs");
        dry_runs
            .collect(
                &mut kept,
                &self.schemas,
                self.options.server_side,
                &progress,
                err,
            )
            .await?;
        progress.finish_and_clear();
        for w in kept {
            let item = self.finish(w, true, err);
            failed |= item.report.status == Status::Error;
            items.push(item);
        }
        Ok(Evaluation {
            items,
            failed,
            kinds: kinds_listed,
        })
    }

    /// The objects `-f` names: what the local checkout declares there at `--against` or HEAD.
    /// Returns whether some could not be resolved (said on `err`).
    async fn declared_by_files(
        &self,
        scope: &Scope,
        env: &Env,
        targets: &mut Vec<(Resource, Option<String>)>,
        declared: &mut BTreeMap<ObjectKey, crate::render::Document>,
        err: &mut dyn Write,
    ) -> Result<bool> {
        let mut failed = false;
        let cwd = env.cwd.clone().unwrap_or_else(|| PathBuf::from("."));
        let repo_dir = scope
            .repo
            .as_deref()
            .map(|r| crate::commands::absolute(&cwd, std::path::Path::new(r)))
            .unwrap_or_else(|| cwd.clone());
        let repo = crate::git::Repo::open_local(&repo_dir)?;
        let workdir = repo
            .workdir()
            .ok_or_else(|| anyhow::anyhow!("-f needs a checkout with a working tree"))?
            .to_path_buf();
        let (commit, _) = repo.resolve(scope.against.as_deref().unwrap_or("HEAD"))?;
        for file in &scope.files {
            let target = crate::commands::absolute(&cwd, file);
            let relative = crate::commands::relative_to(&workdir, &target).ok_or_else(|| {
                anyhow::anyhow!(
                    "-f {}: not inside the repository at {}",
                    file.display(),
                    workdir.display()
                )
            })?;
            let path = if relative.is_empty() {
                crate::git::RepoPath::root()
            } else {
                crate::git::RepoPath::parse(&relative)?
            };
            for doc in crate::render::render_path(&repo, commit, &path)? {
                let Some(mut key) = doc.key() else { continue };
                let api_version = doc.object["apiVersion"].as_str().unwrap_or_default();
                let Some(resource) = self.discovery.for_kind(api_version, &key.kind).await else {
                    failed = true;
                    writeln!(
                        err,
                        "error: {}: the server doesn't have a resource type \"{}\" ({api_version})",
                        doc.file, key.kind
                    )?;
                    continue;
                };
                if resource.namespaced && key.namespace.is_none() {
                    key.namespace = Some(self.cluster.target.namespace.clone());
                }
                targets.push((resource, Some(key.name.clone())));
                declared.insert(key, doc);
            }
        }
        Ok(failed)
    }

    /// One live object, evaluated on its own (watch, after an event): located, compared, and
    /// dry-run if the mode asks for it. `None` when it has no source.
    pub async fn evaluate_one(
        &mut self,
        resource: &Resource,
        live: LiveObject,
        _log: &Log,
        err: &mut dyn Write,
    ) -> Result<Option<Evaluated>> {
        self.load_schemas(resource, err).await?;
        let mut w = match self.prepare(resource.clone(), live, false, err).await? {
            Prepared::Work(w) => *w,
            Prepared::Report(report) => {
                return Ok(Some(Evaluated {
                    report: *report,
                    work: None,
                    summary: None,
                    missing: None,
                }));
            }
            Prepared::Nothing => return Ok(None),
        };
        self.compare_offline(&mut w);
        let mut kept = Vec::new();
        let mut dry_runs = DryRuns::new(self.options.concurrency);
        if self.needs_dry_run(&w) {
            dry_runs.spawn(&self.cluster, 0, &w);
        }
        kept.push(w);
        let progress = indicatif::ProgressBar::hidden();
        dry_runs
            .collect(
                &mut kept,
                &self.schemas,
                self.options.server_side,
                &progress,
                err,
            )
            .await?;
        let w = kept.pop().expect("one object was pushed");
        let report = self.verdict(&w, err);
        Ok(Some(Evaluated {
            report,
            summary: self.options.summaries.then(|| w.summary()),
            work: Some(Box::new(w)),
            missing: None,
        }))
    }

    /// The verdict on `w`, with its work when `keep` (and no summaries are wanted), or its
    /// summary.
    fn finish(&self, w: Work, keep: bool, err: &mut dyn Write) -> Evaluated {
        let report = self.verdict(&w, err);
        let (work, summary) = if self.options.summaries {
            (None, Some(w.summary()))
        } else {
            (keep.then(|| Box::new(w)), None)
        };
        Evaluated {
            report,
            work,
            summary,
            missing: None,
        }
    }

    /// Locates one live object in Git and reads its managedFields.
    async fn prepare(
        &mut self,
        resource: Resource,
        mut live: LiveObject,
        explicit: bool,
        err: &mut dyn Write,
    ) -> Result<Prepared> {
        let Some(key) = ObjectKey::of(&live) else {
            return Ok(Prepared::Nothing);
        };
        let mut kept_pointer = None;
        let located =
            match source::pointer(&self.cluster, &self.discovery, &self.reconcilers, &live).await {
                Ok(pointer) => {
                    kept_pointer = pointer.clone();
                    self.locator.locate(pointer, &key)
                }
                Err(e) => Err(e),
            };
        let located = match located {
            Ok(l) => l,
            Err(SourceError::NoSource { .. }) if explicit => {
                return Ok(Prepared::Report(Box::new(bare(
                    key,
                    Status::NoSource,
                    None,
                ))));
            }
            Err(SourceError::NoSource { .. }) => return Ok(Prepared::Nothing),
            Err(e) => {
                let message = single_line(&e.to_string());
                writeln!(err, "error: {key}: {message}")?;
                return Ok(Prepared::Report(Box::new(bare(
                    key,
                    Status::Error,
                    Some(message),
                ))));
            }
        };
        let managed = match ManagedFields::of(&live) {
            Ok(m) => m,
            Err(e) => {
                writeln!(
                    err,
                    "warning: {key}: unreadable managedFields ({}); attribution may be incomplete",
                    single_line(&e.to_string())
                )?;
                ManagedFields {
                    entries: Vec::new(),
                }
            }
        };
        let content = self
            .options
            .summaries
            .then(|| crate::object::content_digest(&live));
        // Parsed; the raw list (often the larger half of an object) is not needed again.
        if let Some(meta) = live.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
        if !self.repo_rules_read.contains(&(
            located.repo_key.clone(),
            located.tracked_commit.clone().unwrap_or_default(),
        )) {
            self.read_repo_rules(&located, err);
        }
        let reconciler = reconciler_managers(&located, &managed);
        Ok(Prepared::Work(Box::new(Work {
            key,
            resource,
            live,
            pointer: kept_pointer,
            located,
            managed,
            reconciler,
            offline: Offline::InSync,
            extra: Vec::new(),
            dry_run: None,
            content,
        })))
    }

    /// The `ignore:` rules of `.kubectl-gitops.yaml` at the root of the object's repository,
    /// read at the commit desired comes from. A broken file is a warning, not a reason to stop.
    fn read_repo_rules(&mut self, located: &Located, err: &mut dyn Write) {
        let Some(commit) = located.tracked_commit.clone() else {
            return;
        };
        self.repo_rules_read
            .insert((located.repo_key.clone(), commit));
        match self.locator.read_config(located, ".kubectl-gitops.yaml") {
            Ok(None) => {}
            Ok(Some(bytes)) => match std::str::from_utf8(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_saphyr::from_str::<RepoConfig>(t).map_err(|e| e.to_string()))
            {
                Ok(config) => self.repo_rules.extend(config.ignore),
                Err(e) => {
                    let _ = writeln!(
                        err,
                        "warning: {}: .kubectl-gitops.yaml is not valid ({}); its rules are not used",
                        located.repo,
                        single_line(&e)
                    );
                }
            },
            Err(e) => {
                let _ = writeln!(
                    err,
                    "warning: {}: {}",
                    located.repo,
                    single_line(&e.to_string())
                );
            }
        }
    }

    /// The objects Git declares next to the ones in `works` (same file or render root) that
    /// are not in `all_live`, for kinds that were listed (watch, after Git moved).
    pub async fn missing(
        &self,
        works: &[Work],
        all_live: &BTreeSet<ObjectKey>,
        listed_kinds: &BTreeSet<(String, String)>,
        err: &mut dyn Write,
    ) -> Result<Vec<ObjectReport>> {
        let mut in_git = Declared::default();
        for w in works {
            if let Err(e) = in_git.note(&self.locator, &self.discovery, w).await {
                writeln!(
                    err,
                    "warning: {}: cannot list its source's other objects: {}",
                    w.key,
                    single_line(&e.to_string())
                )?;
            }
        }
        Ok(in_git
            .missing(all_live, listed_kinds, self.namespace.as_deref())
            .into_iter()
            .map(|(report, _)| report)
            .collect())
    }

    /// The schema of the resource's group-version (list merge semantics, quantities), fetched
    /// once.
    async fn load_schemas(&mut self, resource: &Resource, err: &mut dyn Write) -> Result<()> {
        let group_version = resource.api_version();
        if !self.schema_versions.insert(group_version.clone()) {
            return Ok(());
        }
        match cluster::openapi::schemas(
            &self.cluster,
            &[group_version],
            self.cache_dir.as_deref(),
            self.options.refresh_discovery,
        )
        .await
        {
            Ok(s) => self.schemas.extend(s),
            Err(e) => {
                if !self.schemas_warned {
                    self.schemas_warned = true;
                    writeln!(
                        err,
                        "warning: no OpenAPI schemas ({}); lists are compared as wholes",
                        single_line(&e.to_string())
                    )?;
                }
            }
        }
        Ok(())
    }

    /// The offline comparison, and the fields managedFields alone can tell.
    fn compare_offline(&self, w: &mut Work) {
        let Some(desired) = w.desired_shared() else {
            return;
        };
        let node = self
            .schemas
            .kind(&w.resource.group, &w.resource.version, &w.resource.kind);
        let mut changes = match drift::compare_offline(&desired, &w.live, node) {
            Offline::InSync => Vec::new(),
            Offline::Drifted(c) => c,
        };
        changes.extend(drift::dropped_by_reconciler(
            &desired,
            &w.live,
            &w.managed,
            &w.reconciler,
        ));
        let extra = drift::out_of_band_additions(&desired, &w.live, &w.managed, &w.reconciler);
        drop(desired);
        w.offline = if changes.is_empty() {
            Offline::InSync
        } else {
            Offline::Drifted(changes)
        };
        w.extra = extra;
    }

    fn needs_dry_run(&self, w: &Work) -> bool {
        w.located.desired_at_tip.is_some()
            && match self.options.server_side {
                ServerSide::True => true,
                ServerSide::False => false,
                ServerSide::Auto => !w.offline.is_in_sync(),
            }
    }

    /// The report of a compared object: its fields attributed, ignore rules applied.
    fn verdict(&self, w: &Work, err: &mut dyn Write) -> ObjectReport {
        let report = verdict(w, &self.options.ignore, &self.repo_rules);
        if report.status == Status::Error {
            let _ = writeln!(
                err,
                "error: {}: {}",
                report.object,
                report.error.as_deref().unwrap_or("")
            );
        }
        report
    }
}

/// LISTs in flight at once: enough to hide their latency, few enough not to crowd the server.
const LISTS_IN_FLIGHT: usize = 8;

/// What a LIST in flight hands the evaluation: a page of objects, then how it ended (the
/// list's resourceVersion).
enum Listed {
    Page(Vec<LiveObject>),
    Done(Result<String, ClusterError>),
}

/// The objects named on the command line (`TYPE/NAME`, or `-f`) that a complete LIST of their
/// kind did not have: missing when the local checkout declares them, else an error (said on
/// `err`). Returns whether one was an error.
fn named_not_listed(
    (qualified, resource, ns): (&str, &Resource, Option<&str>),
    names: &[&String],
    was_listed: impl Fn(&str) -> bool,
    declared: &BTreeMap<ObjectKey, crate::render::Document>,
    items: &mut Vec<Evaluated>,
    err: &mut dyn Write,
) -> Result<bool> {
    let mut failed = false;
    for name in names {
        if was_listed(name) {
            continue;
        }
        let in_files = declared.iter().find(|(k, _)| {
            k.name == **name && k.kind == resource.kind && k.group == resource.group
        });
        if let Some((key, doc)) = in_files {
            let mut desired = doc.object.clone();
            if resource.namespaced {
                set_namespace(&mut desired, key.namespace.as_deref());
            }
            items.push(Evaluated {
                report: ObjectReport {
                    object: key.clone(),
                    status: Status::Missing,
                    verdict: Some(Verdict::Offline),
                    source: Some(SourceSummary {
                        repo: "local checkout".into(),
                        file: doc.file.clone(),
                        lines: doc.lines,
                        commit: String::new(),
                        rule: "-f".into(),
                    }),
                    fields: Vec::new(),
                    ignored: Vec::new(),
                    error: None,
                },
                work: None,
                summary: None,
                missing: Some(MissingObject {
                    desired,
                    manager: "kubectl-gitops".into(),
                    reconciler: None,
                }),
            });
            continue;
        }
        failed = true;
        writeln!(
            err,
            "error: {qualified} \"{name}\" not found{}",
            ns.map(|n| format!(" in namespace \"{n}\""))
                .unwrap_or_default()
        )?;
    }
    Ok(failed)
}

/// Server-side-apply dry runs in flight, a bounded number at once.
struct DryRuns {
    tasks: tokio::task::JoinSet<(usize, Result<Value, ClusterError>)>,
    permits: Arc<tokio::sync::Semaphore>,
    started: usize,
}

impl DryRuns {
    fn new(concurrency: u16) -> DryRuns {
        DryRuns {
            tasks: tokio::task::JoinSet::new(),
            permits: Arc::new(tokio::sync::Semaphore::new(usize::from(concurrency))),
            started: 0,
        }
    }

    /// Starts the dry run of `w`, whose result goes to the work at `index`.
    fn spawn(&mut self, cluster: &Cluster, index: usize, w: &Work) {
        let mut desired = w.desired().expect("only objects Git declares are dry-run");
        let cluster = cluster.clone();
        let resource = w.resource.clone();
        let ns = w.key.namespace.clone();
        let manager = w.manager();
        // As the reconciler applies it: with the bookkeeping labels it owns.
        drift::keep_bookkeeping(&mut desired, &w.live, &w.managed, &manager);
        let permits = self.permits.clone();
        self.started += 1;
        self.tasks.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let result = cluster
                .apply_dry_run(&resource, ns.as_deref(), &desired, &manager)
                .await;
            (index, result)
        });
    }

    /// Waits for every dry run and compares its answer with live.
    async fn collect(
        mut self,
        work: &mut [Work],
        schemas: &Schemas,
        server_side: ServerSide,
        progress: &indicatif::ProgressBar,
        err: &mut dyn Write,
    ) -> Result<()> {
        let mut forbidden_said = false;
        while let Some(joined) = self.tasks.join_next().await {
            progress.inc(1);
            let (i, result) = joined.expect("a dry-run task does not panic");
            let w = &mut work[i];
            match result {
                Ok(after) => {
                    let node =
                        schemas.kind(&w.resource.group, &w.resource.version, &w.resource.kind);
                    w.dry_run = Some(Ok(drift::compare_objects(&after, &w.live, node)));
                }
                Err(ClusterError::Forbidden { message, .. }) if server_side == ServerSide::Auto => {
                    if !forbidden_said {
                        forbidden_said = true;
                        writeln!(
                            err,
                            "warning: dry runs are forbidden ({}); those verdicts are offline",
                            single_line(&message)
                        )?;
                    }
                }
                Err(e) => w.dry_run = Some(Err(single_line(&e.to_string()))),
            }
        }
        Ok(())
    }
}

/// What Git declares next to the objects found (same file, or same render root): the
/// candidates for *missing*. Each source is listed once, when its first object is seen; the
/// documents stay shared with the locator's cache until one turns out to be missing.
#[derive(Default)]
struct Declared {
    sources_seen: BTreeSet<(String, String, String)>,
    candidates: Vec<Candidate>,
}

/// One object a source declares, and how it would be created again.
struct Candidate {
    key: ObjectKey,
    report: ObjectReport,
    namespaced: bool,
    doc: usize,
    source: Arc<SourceContext>,
}

/// A source (file or render root) as its first object found it.
struct SourceContext {
    docs: Arc<Vec<crate::render::Document>>,
    /// The labels and annotations of that object: the markers a re-created sibling carries.
    sibling: Value,
    rule: source::Rule,
    manager: String,
    reconciler: Option<source::Reconciler>,
}

impl Declared {
    async fn note(
        &mut self,
        locator: &Locator,
        discovery: &CachedDiscovery,
        w: &Work,
    ) -> Result<(), SourceError> {
        // A render root is listed once for all its files; a plain file once.
        let rendered = matches!(w.located.rule, source::Rule::Flux | source::Rule::ArgoCd);
        let file = if rendered {
            String::new()
        } else {
            w.located.file.clone()
        };
        if !self.sources_seen.insert((
            w.located.repo_key.clone(),
            file,
            w.located.render_root.clone(),
        )) {
            return Ok(());
        }
        let docs = locator.siblings(&w.located, w.pointer.as_ref())?;
        let source = Arc::new(SourceContext {
            docs: docs.clone(),
            sibling: serde_json::json!({"metadata": {
                "labels": w.live["metadata"]["labels"].clone(),
                "annotations": w.live["metadata"]["annotations"].clone(),
            }}),
            rule: w.located.rule,
            manager: w.manager(),
            reconciler: w.located.reconciler.clone(),
        });
        for (index, doc) in docs.iter().enumerate() {
            let Some(mut key) = doc.key() else { continue };
            // The namespace is the sibling's, for a kind that has one.
            let namespaced = discovery
                .for_kind(
                    doc.object["apiVersion"].as_str().unwrap_or_default(),
                    &key.kind,
                )
                .await
                .map_or(w.resource.namespaced, |r| r.namespaced);
            if key.namespace.is_none() && namespaced {
                key.namespace = w.key.namespace.clone();
            }
            let report = ObjectReport {
                object: key.clone(),
                status: Status::Missing,
                verdict: Some(Verdict::Offline),
                source: Some(SourceSummary {
                    repo: w.located.repo.clone(),
                    file: doc.file.clone(),
                    lines: doc.lines,
                    commit: w.located.tracked_commit.clone().unwrap_or_default(),
                    rule: w.located.rule.describe().to_owned(),
                }),
                fields: Vec::new(),
                ignored: Vec::new(),
                error: None,
            };
            self.candidates.push(Candidate {
                key,
                report,
                namespaced,
                doc: index,
                source: source.clone(),
            });
        }
        Ok(())
    }

    /// The candidates of a listed kind, in scope, that the cluster does not have, each with
    /// what it takes to create it again.
    fn missing(
        self,
        all_live: &BTreeSet<ObjectKey>,
        listed_kinds: &BTreeSet<(String, String)>,
        namespace: Option<&str>,
    ) -> Vec<(ObjectReport, MissingObject)> {
        let mut seen = BTreeSet::new();
        self.candidates
            .into_iter()
            .filter(|c| {
                let key = &c.key;
                let in_scope = namespace.is_none()
                    || key.namespace.is_none()
                    || key.namespace.as_deref() == namespace;
                in_scope
                    && listed_kinds.contains(&(key.group.clone(), key.kind.clone()))
                    && !all_live.contains(key)
                    && seen.insert(key.clone())
            })
            .map(|c| {
                let mut desired = c.source.docs[c.doc].object.clone();
                if c.namespaced {
                    set_namespace(&mut desired, c.key.namespace.as_deref());
                }
                copy_source_markers(&c.source.sibling, c.source.rule, &c.key, &mut desired);
                let missing = MissingObject {
                    desired,
                    manager: c.source.manager.clone(),
                    reconciler: c.source.reconciler.clone(),
                };
                (c.report, missing)
            })
            .collect()
    }
}

enum Prepared {
    Work(Box<Work>),
    Report(Box<ObjectReport>),
    Nothing,
}

/// Where Git comes from for `scope`: `--repo`, the working directory's checkout, the clone cache.
pub fn repo_choice(scope: &Scope, env: &Env) -> RepoChoice {
    RepoChoice {
        flag: scope.repo.clone(),
        cwd: env.cwd.clone(),
        cache_root: env
            .cache_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join("repos"),
        against: scope.against.clone(),
    }
}

/// The managers whose Apply is the reconciler's: Flux's and Argo CD's own; for a plain
/// pipeline, whichever kubectl apply wrote the object (server-side `kubectl`, client-side
/// `kubectl-client-side-apply`), else ours.
pub fn reconciler_managers(located: &Located, managed: &ManagedFields) -> Vec<String> {
    match located.reconciler.as_ref().map(|r| r.kind.as_str()) {
        Some("Kustomization") => vec!["kustomize-controller".into()],
        Some("Application") => vec![
            "argocd-controller".into(),
            "argocd-application-controller".into(),
        ],
        _ => {
            let applied = |name: &str, op: &str| {
                managed
                    .entries
                    .iter()
                    .any(|e| e.manager == name && e.operation == op)
            };
            if applied("kubectl", "Apply") {
                vec!["kubectl".into()]
            } else if applied("kubectl-client-side-apply", "Update") {
                vec!["kubectl-client-side-apply".into()]
            } else {
                vec!["kubectl-gitops".into()]
            }
        }
    }
}

/// Desired as the API would take it: in the live object's namespace, with its name.
pub fn place(desired: &mut Value, live: &Value) {
    set_namespace(desired, live["metadata"]["namespace"].as_str());
}

/// Sets `metadata.namespace` when the document does not say.
fn set_namespace(object: &mut Value, namespace: Option<&str>) {
    if let Some(ns) = namespace
        && object["metadata"]["namespace"].is_null()
        && let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.insert("namespace".into(), ns.into());
    }
}

/// Gives an object about to be created again the source markers that `sibling` (found through
/// the same file or render root) carries, as the tool that applied them would have written
/// them: our stamp annotations and kustomize's origin (same file), Flux's labels, Argo CD's
/// instance label and tracking id. Without them the new object would have no source.
fn copy_source_markers(sibling: &Value, rule: source::Rule, key: &ObjectKey, object: &mut Value) {
    use source::annotations::{
        ARGO_INSTANCE, ARGO_TRACKING_ID, COMMIT, FLUX_NAME, FLUX_NAMESPACE, KUSTOMIZE_ORIGIN, PATH,
        REPO,
    };
    let (annotations, labels): (Vec<&str>, Vec<&str>) = match rule {
        source::Rule::Annotations => (vec![REPO, PATH, COMMIT], vec![]),
        source::Rule::KustomizeOrigin => (vec![KUSTOMIZE_ORIGIN], vec![]),
        source::Rule::Flux => (vec![], vec![FLUX_NAME, FLUX_NAMESPACE]),
        source::Rule::ArgoCd => (vec![], vec![ARGO_INSTANCE]),
        source::Rule::Fallback => (vec![], vec![]),
    };
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for (section, keys) in [("annotations", annotations), ("labels", labels)] {
        for k in keys {
            if let Some(value) = sibling["metadata"][section][k].as_str() {
                let map = meta
                    .entry(section)
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Some(map) = map.as_object_mut() {
                    map.entry(k).or_insert_with(|| value.into());
                }
            }
        }
    }
    // `<app>:<group>/<kind>:<namespace>/<name>`: the app is the sibling's, the rest this one's.
    if rule == source::Rule::ArgoCd
        && let Some(id) = sibling["metadata"]["annotations"][ARGO_TRACKING_ID].as_str()
        && let Some((app, _)) = id.split_once(':')
    {
        let map = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(map) = map.as_object_mut() {
            map.entry(ARGO_TRACKING_ID).or_insert_with(|| {
                format!(
                    "{app}:{}/{}:{}/{}",
                    key.group,
                    key.kind,
                    key.namespace.as_deref().unwrap_or_default(),
                    key.name
                )
                .into()
            });
        }
    }
}

fn verdict(w: &Work, rules: &[IgnoreRule], repo_rules: &[IgnoreRule]) -> ObjectReport {
    let source = Some(SourceSummary {
        repo: w.located.repo.clone(),
        file: w.located.tip_place.0.clone(),
        lines: w.located.tip_place.1,
        // Desired is read at the tracked tip (or --against).
        commit: w
            .located
            .tracked_commit
            .clone()
            .unwrap_or_else(|| w.located.read_at.clone()),
        rule: w.located.rule.describe().to_owned(),
    });
    if w.located.desired_at_tip.is_none() {
        return ObjectReport {
            object: w.key.clone(),
            status: Status::Orphaned,
            verdict: Some(Verdict::Offline),
            source,
            fields: Vec::new(),
            ignored: Vec::new(),
            error: None,
        };
    }
    let (changes, verdict) = match (&w.dry_run, &w.offline) {
        (Some(Err(e)), _) => {
            return ObjectReport {
                object: w.key.clone(),
                status: Status::Error,
                verdict: None,
                source,
                fields: Vec::new(),
                ignored: Vec::new(),
                error: Some(format!("dry run failed: {e}")),
            };
        }
        (Some(Ok(changes)), _) => (changes.clone(), Verdict::DryRun),
        (None, Offline::Drifted(changes)) => (changes.clone(), Verdict::Offline),
        (None, Offline::InSync) => (Vec::new(), Verdict::Offline),
    };
    let mut fields = Vec::new();
    let mut ignored = Vec::new();
    for change in changes.iter().chain(w.extra.iter()) {
        let why = attribute(change, w);
        let secret = drift::is_secret_value(&w.key.group, &w.key.kind, &change.path);
        let (git, live) = if secret {
            (
                drift::mask_secret(&change.desired, "git"),
                drift::mask_secret(&change.live, "live"),
            )
        } else {
            (change.desired.clone(), change.live.clone())
        };
        let pointer = change
            .path
            .to_json_pointer(&w.live)
            .or_else(|| {
                w.located
                    .desired_at_tip
                    .as_ref()
                    .and_then(|d| change.path.to_json_pointer(d))
            })
            .unwrap_or_default();
        let managers: Vec<&str> = w
            .managed
            .owners(&change.path)
            .iter()
            .map(|e| e.manager.as_str())
            .collect();
        let rule = rules
            .iter()
            .chain(repo_rules)
            .find(|r| r.matches(&w.key, &pointer, &managers));
        let field = FieldReport {
            path: change.path.to_string(),
            git,
            live,
            why,
            ignored_by: rule.map(IgnoreRule::describe),
            may_be_server_default: change.unproven.iter().map(FieldPath::to_string).collect(),
        };
        if field.ignored_by.is_some() {
            ignored.push(field);
        } else if !fields.iter().any(|f: &FieldReport| f.path == field.path) {
            fields.push(field);
        }
    }
    ObjectReport {
        object: w.key.clone(),
        status: if fields.is_empty() {
            Status::InSync
        } else {
            Status::Drifted
        },
        verdict: Some(verdict),
        source,
        fields,
        ignored,
        error: None,
    }
}

/// Why one field drifted: Git changed it after the applied revision (pending), or a manager
/// other than the reconciler owns the live value (out of band), or nothing records it.
fn attribute(change: &Change, w: &Work) -> Why {
    let at_tip = w
        .located
        .desired_at_tip
        .as_ref()
        .and_then(|d| change.path.get(d));
    let applied = change.path.get(&w.located.desired);
    if at_tip != applied
        && let Some(c) = &w.located.pending_commit
    {
        return Why::Pending {
            commit: c.id.to_string(),
            author: c.author_name.clone(),
            time: c.time,
            subject: c.subject.clone(),
        };
    }
    let is_reconciler = |e: &&crate::fields::ManagedEntry| {
        w.reconciler.contains(&e.manager)
            && (e.operation == "Apply" || e.manager == "kubectl-client-side-apply")
    };
    let mut owners: Vec<&crate::fields::ManagedEntry> = w
        .managed
        .owners(&change.path)
        .into_iter()
        .filter(|e| !is_reconciler(e))
        .collect();
    if owners.is_empty() {
        // A value removed or replaced as a whole: whoever owns something below it.
        owners = w
            .managed
            .entries
            .iter()
            .filter(|e| !is_reconciler(e))
            .filter(|e| {
                e.fields
                    .leaves()
                    .any(|p: &FieldPath| p.starts_with(&change.path))
            })
            .collect();
    }
    owners.sort_by(|a, b| b.time.cmp(&a.time));
    match owners.first() {
        Some(e) => Why::OutOfBand {
            manager: e.manager.clone(),
            operation: e.operation.clone(),
            time: e.time.clone(),
            subresource: e.subresource.clone(),
        },
        None => Why::Unrecorded,
    }
}

fn bare(key: ObjectKey, status: Status, error: Option<String>) -> ObjectReport {
    ObjectReport {
        object: key,
        status,
        verdict: None,
        source: None,
        fields: Vec::new(),
        ignored: Vec::new(),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_object_created_again_carries_its_siblings_markers() {
        let key = |kind: &str, name: &str| ObjectKey {
            group: String::new(),
            kind: kind.into(),
            namespace: Some("shop".into()),
            name: name.into(),
        };
        let argo = json!({"metadata": {
            "labels": {"app.kubernetes.io/instance": "shop", "team": "x"},
            "annotations": {"argocd.argoproj.io/tracking-id": "argocd_shop:apps/Deployment:shop/web"}}});
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gone"}});
        copy_source_markers(
            &argo,
            source::Rule::ArgoCd,
            &key("ConfigMap", "gone"),
            &mut cm,
        );
        assert_eq!(
            cm["metadata"],
            json!({"name": "gone",
                   "labels": {"app.kubernetes.io/instance": "shop"},
                   "annotations": {"argocd.argoproj.io/tracking-id": "argocd_shop:/ConfigMap:shop/gone"}})
        );

        let flux = json!({"metadata": {"labels": {
            "kustomize.toolkit.fluxcd.io/name": "apps",
            "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}}});
        let mut cm = json!({"metadata": {"name": "gone", "labels": {"app": "web"}}});
        copy_source_markers(
            &flux,
            source::Rule::Flux,
            &key("ConfigMap", "gone"),
            &mut cm,
        );
        assert_eq!(
            cm["metadata"]["labels"],
            json!({"app": "web", "kustomize.toolkit.fluxcd.io/name": "apps",
                   "kustomize.toolkit.fluxcd.io/namespace": "flux-system"})
        );

        // The fallback search needs no marker: nothing is added.
        let mut cm = json!({"metadata": {"name": "gone"}});
        copy_source_markers(
            &flux,
            source::Rule::Fallback,
            &key("ConfigMap", "gone"),
            &mut cm,
        );
        assert_eq!(cm, json!({"metadata": {"name": "gone"}}));
    }
}
