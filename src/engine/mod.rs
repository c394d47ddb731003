//! The evaluation shared by `diff`, `revert` and `watch`: live objects (one LIST per kind) against
//! Git, offline first, with server-side-apply dry runs where the mode asks for them, every
//! drifted field attributed. Commands turn its results into reports or writes.

mod decrypt;
mod dry_run;
mod missing;
mod verdict;
mod work;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use serde_json::Value;

use crate::applied;
use crate::cluster::cache::CachedDiscovery;
use crate::cluster::discovery::Resource;
use crate::cluster::{self, Cluster, ClusterError, ConnectOptions, LiveObject};
use crate::drift::{self, ObjectReport, Offline, SourceSummary, Status, Verdict};
use crate::env::Env;
use crate::fields::ManagedFields;
use crate::normalize::{IgnoreRule, RepoConfig};
use crate::object::ObjectKey;
use crate::report::Log;
use crate::schema::Schemas;
use crate::source::{self, Located, Locator, ReconcilerCache, RepoChoice, SourceError};
use crate::text::single_line;
use decrypt::Decryptor;
use dry_run::DryRuns;
use missing::Declared;
use verdict::{bare, verdict};
use work::set_namespace;

pub use work::{Evaluated, Evaluation, ListedKind, MissingObject, Summary, Work, place};

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

/// When to ask the server for a server-side-apply dry run (`--server-side`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerSide {
    /// Only for objects the offline comparison could not prove in sync.
    Auto,
    /// For every object.
    True,
    /// Never.
    False,
}

impl ServerSide {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerSide::Auto => "auto",
            ServerSide::True => "true",
            ServerSide::False => "false",
        }
    }
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
    /// The bound of the on-disk render cache, in bytes (`--render-cache-size`; 0: no cache).
    pub render_cache_size: u64,
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
    /// SOPS-encrypted desired, decrypted with the user's `sops`.
    decryptor: Decryptor,
}

impl Engine {
    /// Connects to the cluster `connect` names and reads discovery (disk-cached).
    pub async fn connect(
        connect: &ConnectOptions,
        env: &Env,
        scope: Scope,
        options: Options,
    ) -> Result<Engine> {
        let locator = Engine::locator(&scope, env, &options);
        Engine::connect_sharing(connect, env, scope, options, locator).await
    }

    /// The Git side of an engine for `scope`: clones, renders and history, shared by every
    /// engine given it (a fleet run reads Git once for all its contexts).
    pub fn locator(scope: &Scope, env: &Env, options: &Options) -> Arc<Locator> {
        let choice = repo_choice(scope.repo.clone(), scope.against.clone(), env);
        Arc::new(new_locator(choice, env, options.render_cache_size))
    }

    /// [`Engine::connect`], reading Git through `locator` (made by [`Engine::locator`] for the
    /// same repository choice).
    pub async fn connect_sharing(
        connect: &ConnectOptions,
        env: &Env,
        scope: Scope,
        options: Options,
        locator: Arc<Locator>,
    ) -> Result<Engine> {
        let cluster = cluster::connect(connect, env).await?;
        let cache_dir = env.cache_dir.clone();
        let discovery =
            CachedDiscovery::read(&cluster, cache_dir.as_deref(), options.refresh_discovery)
                .await?;
        let namespace = (!scope.all_namespaces).then(|| cluster.target.namespace.clone());
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
            decryptor: Decryptor::new(env.sops.clone()),
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
            Locator::new(repo_choice(
                self.scope.repo.clone(),
                self.scope.against.clone(),
                env,
            ))
            .with_render_cache(self.locator.render_cache())
            .with_helm(env.find_program("helm"))
            .with_chart_cache(
                chart_cache(env),
                env.helm_repository_config.clone(),
                env.registry_configs.clone(),
            ),
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
        // Of each object noted in `in_git`, in order, its summary when summaries are wanted.
        let mut noted: Vec<Summary> = Vec::new();
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
                        &mut self.decryptor,
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
                if self.options.summaries {
                    noted.push(w.summary());
                }
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
            for (report, mut missing, noted_by) in
                in_git.missing(&all_live, &listed_kinds, self.namespace.as_deref())
            {
                let mut report = report;
                failed |= self.decryptor.missing(&mut report, &mut missing, err);
                // Created again (revert) as kustomize-controller would create it.
                if missing.manager == "kustomize-controller" {
                    applied::as_flux_applies(&mut missing.desired, &self.schemas);
                }
                items.push(Evaluated {
                    report,
                    work: None,
                    summary: noted.get(noted_by).cloned(),
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
            .map(|r| crate::env::absolute(&cwd, std::path::Path::new(r)))
            .unwrap_or_else(|| cwd.clone());
        let repo = crate::git::Repo::open_local(&repo_dir)?;
        let workdir = repo
            .workdir()
            .ok_or_else(|| anyhow::anyhow!("-f needs a checkout with a working tree"))?
            .to_path_buf();
        let (commit, _) = repo.resolve(scope.against.as_deref().unwrap_or("HEAD"))?;
        for file in &scope.files {
            let target = crate::env::absolute(&cwd, file);
            let relative = crate::env::relative_to(&workdir, &target).ok_or_else(|| {
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
        let mut located = match located {
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
        let not_compared = match self.decryptor.located(&key, &mut located, &live, err) {
            Ok(paths) => paths,
            Err(message) => {
                writeln!(err, "error: {key}: {message}")?;
                return Ok(Prepared::Report(Box::new(bare(
                    key,
                    Status::Error,
                    Some(message),
                ))));
            }
        };
        let reconciler = reconciler_managers(&located, &managed);
        if reconciler.iter().any(|m| m == "kustomize-controller") {
            self.as_flux_applies(&mut located);
        }
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
            not_compared,
        })))
    }

    /// Desired, as applied and at the tip, the way kustomize-controller sends it
    /// ([`crate::applied`]).
    fn as_flux_applies(&self, located: &mut Located) {
        applied::as_flux_applies(Arc::make_mut(&mut located.desired), &self.schemas);
        if let Some(tip) = located.desired_at_tip.as_mut() {
            applied::as_flux_applies(Arc::make_mut(tip), &self.schemas);
        }
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
    /// are not in `all_live`, for kinds that were listed (watch, after Git moved), each with
    /// the index in `works` of the one whose source declares it.
    pub async fn missing(
        &self,
        works: &[Work],
        all_live: &BTreeSet<ObjectKey>,
        listed_kinds: &BTreeSet<(String, String)>,
        err: &mut dyn Write,
    ) -> Result<Vec<(ObjectReport, usize)>> {
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
            .map(|(report, _, noted_by)| (report, noted_by))
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
        // A Helm release's record is what was applied, whatever commit it came from.
        let applied = (w.located.applied_commit.is_some() || w.located.helm.is_some())
            .then_some(w.located.desired.as_ref());
        changes.extend(drift::dropped_by_reconciler(
            &desired,
            applied,
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
    decryptor: &mut Decryptor,
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
            let mut report = ObjectReport {
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
                not_compared: Vec::new(),
            };
            let mut missing = MissingObject {
                desired,
                manager: "kubectl-gitops".into(),
                reconciler: None,
                secrets: Vec::new(),
            };
            failed |= decryptor.missing(&mut report, &mut missing, err);
            items.push(Evaluated {
                report,
                work: None,
                summary: None,
                missing: Some(missing),
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

enum Prepared {
    Work(Box<Work>),
    Report(Box<ObjectReport>),
    Nothing,
}

/// Where Git comes from: `--repo` (`flag`), the working directory's checkout, the clone cache;
/// desired is read at `against` (`--against`), else at the tracked tip.
pub fn repo_choice(flag: Option<String>, against: Option<String>, env: &Env) -> RepoChoice {
    RepoChoice {
        flag,
        cwd: env.cwd.clone(),
        cache_root: env
            .cache_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join("repos"),
        against,
    }
}

/// The Git side of a command reading `choice`: renders kept in the render cache of
/// `render_cache_size` bytes (`--render-cache-size`), charts rendered with the user's `helm`.
pub fn new_locator(choice: RepoChoice, env: &Env, render_cache_size: u64) -> Locator {
    Locator::new(choice)
        .with_render_cache(crate::render::RenderCache::for_env(env, render_cache_size))
        .with_helm(env.find_program("helm"))
        .with_chart_cache(
            chart_cache(env),
            env.helm_repository_config.clone(),
            env.registry_configs.clone(),
        )
}

/// Where chart archives from chart repositories are kept: `<cache>/charts`.
fn chart_cache(env: &Env) -> Option<PathBuf> {
    env.cache_dir.as_ref().map(|d| d.join("charts"))
}

/// The managers whose Apply is the reconciler's: Flux's and Argo CD's own; for a plain
/// pipeline, whichever kubectl apply wrote the object (server-side `kubectl`, client-side
/// `kubectl-client-side-apply`), else ours.
pub fn reconciler_managers(located: &Located, managed: &ManagedFields) -> Vec<String> {
    match located.reconciler.as_ref().map(|r| r.kind.as_str()) {
        Some("Kustomization") => vec!["kustomize-controller".into()],
        Some("HelmRelease") => vec![source::HELM_CONTROLLER.into()],
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
