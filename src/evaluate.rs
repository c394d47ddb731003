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
use crate::cluster::discovery::{Discovery, Resource};
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
}

impl Work {
    /// Desired as the API takes it (in the live object's namespace), when Git still declares
    /// the object.
    pub fn desired(&self) -> Option<Value> {
        let mut desired = self.located.desired_at_tip.clone()?;
        place(&mut desired, &self.live);
        Some(desired)
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
    pub work: Option<Work>,
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
    pub discovery: Discovery,
    pub locator: Locator,
    pub reconcilers: ReconcilerCache,
    /// The namespace in scope; `None` with `-A`.
    pub namespace: Option<String>,
    pub options: Options,
    scope: Scope,
    cache_dir: Option<PathBuf>,
    schemas: Schemas,
    schema_versions: BTreeSet<String>,
    repo_rules: Option<Vec<IgnoreRule>>,
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
            cluster::cache::discovery(&cluster, cache_dir.as_deref(), options.refresh_discovery)
                .await?;
        let namespace = (!scope.all_namespaces).then(|| cluster.target.namespace.clone());
        let locator = Locator::new(repo_choice(&scope, env));
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
            repo_rules: None,
        })
    }

    /// Forgets what Git said: the next evaluation reads the tracked branches again (watch,
    /// after a poll found them moved).
    pub fn refresh_git(&mut self, env: &Env) {
        self.locator = Locator::new(repo_choice(&self.scope, env));
        self.reconcilers = ReconcilerCache::default();
        self.repo_rules = None;
    }

    /// Every object in scope: listed, located, compared, judged. Problems with one object or
    /// kind are said on `err` and reported; the others go on.
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

        // Live objects: one paginated LIST per kind in scope.
        let explicit = !scope.objects.is_empty();
        let mut live_objects: Vec<(Resource, LiveObject)> = Vec::new();
        let mut targets: Vec<(Resource, Option<String>)> = Vec::new();
        for arg in &scope.objects {
            let (type_text, name) = match arg.split_once('/') {
                Some((t, n)) => (t, Some(n.to_owned())),
                None => (arg.as_str(), None),
            };
            match self.discovery.resolve(type_text) {
                Ok(r) => targets.push((r.clone(), name)),
                Err(e) => {
                    failed = true;
                    writeln!(err, "error: {arg}: {e}")?;
                }
            }
        }
        // `-f PATH`: the objects the local checkout declares there, at --against or HEAD.
        let mut declared: BTreeMap<ObjectKey, crate::render::Document> = BTreeMap::new();
        if !scope.files.is_empty() {
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
                let relative =
                    crate::commands::relative_to(&workdir, &target).ok_or_else(|| {
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
                    let Some(resource) = self.discovery.for_kind(api_version, &key.kind) else {
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
                    targets.push((resource.clone(), Some(key.name.clone())));
                    declared.insert(key, doc);
                }
            }
        }
        let explicit = explicit || !scope.files.is_empty();
        if !explicit {
            targets = self
                .discovery
                .resources
                .iter()
                .filter(|r| r.verbs.iter().any(|v| v == "list"))
                .filter(|r| r.namespaced || namespace.is_none())
                .filter(|r| !SKIPPED_KINDS.contains(&r.qualified_name().as_str()))
                .map(|r| (r.clone(), None))
                .collect();
        }
        let kinds: BTreeSet<String> = targets.iter().map(|(r, _)| r.qualified_name()).collect();
        let mut all_live: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut listed_kinds: BTreeSet<(String, String)> = BTreeSet::new();
        for qualified in &kinds {
            let (resource, _) = targets
                .iter()
                .find(|(r, _)| &r.qualified_name() == qualified)
                .expect("kinds come from targets");
            let names: Vec<&String> = targets
                .iter()
                .filter(|(r, _)| &r.qualified_name() == qualified)
                .filter_map(|(_, n)| n.as_ref())
                .collect();
            let all = targets
                .iter()
                .any(|(r, n)| &r.qualified_name() == qualified && n.is_none());
            let ns = namespace.as_deref().filter(|_| resource.namespaced);
            let (listed, resource_version) = match self
                .cluster
                .list_versioned(resource, ns, scope.selector.as_deref())
                .await
            {
                Ok(listed) => listed,
                Err(ClusterError::Forbidden { .. }) if !explicit => continue,
                Err(e) => {
                    failed = true;
                    writeln!(err, "error: {qualified}: {}", single_line(&e.to_string()))?;
                    continue;
                }
            };
            kinds_listed.push(ListedKind {
                resource: resource.clone(),
                namespace: ns.map(str::to_owned),
                resource_version,
            });
            for name in &names {
                if !listed
                    .iter()
                    .any(|o| o["metadata"]["name"] == name.as_str())
                {
                    let in_files = declared.iter().find(|(k, _)| {
                        k.name == **name && k.kind == resource.kind && k.group == resource.group
                    });
                    if let Some((key, doc)) = in_files {
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
            }
            for object in &listed {
                if let Some(key) = ObjectKey::of(object) {
                    all_live.insert(key);
                }
            }
            listed_kinds.insert((resource.group.clone(), resource.kind.clone()));
            for object in listed {
                let named = names
                    .iter()
                    .any(|n| object["metadata"]["name"] == n.as_str());
                if (all && (explicit || source::has_marker(&object))) || named {
                    live_objects.push((resource.clone(), object));
                }
            }
        }
        log.debug(err, 1, || {
            format!(
                "{} live objects in scope ({} kinds listed)",
                live_objects.len(),
                kinds.len()
            )
        });

        // Progress on stderr, only on a terminal and only when the run is long.
        let progress = if env.stderr_tty && live_objects.len() > 50 {
            let bar = indicatif::ProgressBar::new(live_objects.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len}")
                    .expect("a valid progress template"),
            );
            bar.set_message("mapping to Git");
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };

        // Where each came from, and what Git says now.
        let mut work: Vec<Work> = Vec::new();
        for (resource, live) in live_objects {
            progress.inc(1);
            match self.prepare(resource, live, explicit, err).await? {
                Prepared::Work(w) => work.push(*w),
                Prepared::Report(report) => {
                    failed |= report.status == Status::Error;
                    items.push(Evaluated {
                        report: *report,
                        work: None,
                    });
                }
                Prepared::Nothing => {}
            }
        }
        log.debug(err, 1, || self.locator.reads.summary());

        // Missing: declared next to objects we found (same file or render root), not in the
        // cluster.
        let named_elsewhere = explicit && targets.iter().all(|(_, n)| n.is_some());
        if !named_elsewhere {
            for report in self.missing(&work, &all_live, &listed_kinds, err)? {
                items.push(Evaluated { report, work: None });
            }
        }

        let judged = self.judge(work, &progress, log, err).await?;
        progress.finish_and_clear();
        for e in judged {
            failed |= e.report.status == Status::Error;
            items.push(e);
        }
        Ok(Evaluation {
            items,
            failed,
            kinds: kinds_listed,
        })
    }

    /// One live object, evaluated on its own (watch, after an event): located, compared, and
    /// dry-run if the mode asks for it. `None` when it has no source.
    pub async fn evaluate_one(
        &mut self,
        resource: &Resource,
        live: LiveObject,
        log: &Log,
        err: &mut dyn Write,
    ) -> Result<Option<Evaluated>> {
        match self.prepare(resource.clone(), live, false, err).await? {
            Prepared::Work(w) => {
                let progress = indicatif::ProgressBar::hidden();
                Ok(self.judge(vec![*w], &progress, log, err).await?.pop())
            }
            Prepared::Report(report) => Ok(Some(Evaluated {
                report: *report,
                work: None,
            })),
            Prepared::Nothing => Ok(None),
        }
    }

    /// Locates one live object in Git and reads its managedFields.
    async fn prepare(
        &mut self,
        resource: Resource,
        live: LiveObject,
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
        })))
    }

    /// The objects Git declares next to the ones found (same file or render root) that the
    /// cluster does not have.
    pub fn missing(
        &self,
        work: &[Work],
        all_live: &BTreeSet<ObjectKey>,
        listed_kinds: &BTreeSet<(String, String)>,
        err: &mut dyn Write,
    ) -> Result<Vec<ObjectReport>> {
        let mut reports = Vec::new();
        let mut sources_seen = BTreeSet::new();
        let mut missing = BTreeSet::new();
        for w in work {
            // A render root is listed once for all its files; a plain file once.
            let rendered = matches!(w.located.rule, source::Rule::Flux | source::Rule::ArgoCd);
            let file = if rendered {
                String::new()
            } else {
                w.located.file.clone()
            };
            if !sources_seen.insert((
                w.located.repo_key.clone(),
                file,
                w.located.render_root.clone(),
            )) {
                continue;
            }
            let docs = match self.locator.siblings(&w.located, w.pointer.as_ref()) {
                Ok(docs) => docs,
                Err(e) => {
                    writeln!(
                        err,
                        "warning: {}: cannot list its source's other objects: {}",
                        w.key,
                        single_line(&e.to_string())
                    )?;
                    continue;
                }
            };
            for doc in docs.iter() {
                let Some(mut key) = doc.key() else { continue };
                if key.namespace.is_none() && w.resource.namespaced {
                    key.namespace = w.key.namespace.clone();
                }
                let in_scope = self.namespace.is_none()
                    || key.namespace.is_none()
                    || key.namespace == self.namespace;
                let listed = listed_kinds.contains(&(key.group.clone(), key.kind.clone()));
                if in_scope && listed && !all_live.contains(&key) && missing.insert(key.clone()) {
                    reports.push(ObjectReport {
                        object: key,
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
                    });
                }
            }
        }
        Ok(reports)
    }

    /// Schemas for the kinds involved (list merge semantics, quantities), fetched once per
    /// group-version.
    async fn load_schemas(&mut self, work: &[Work], err: &mut dyn Write) -> Result<()> {
        let wanted: Vec<String> = work
            .iter()
            .map(|w| w.resource.api_version())
            .filter(|gv| !self.schema_versions.contains(gv))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        match cluster::openapi::schemas(
            &self.cluster,
            &wanted,
            self.cache_dir.as_deref(),
            self.options.refresh_discovery,
        )
        .await
        {
            Ok(s) => self.schemas.extend(s),
            Err(e) => {
                writeln!(
                    err,
                    "warning: no OpenAPI schemas ({}); lists are compared as wholes",
                    single_line(&e.to_string())
                )?;
            }
        }
        self.schema_versions.extend(wanted);
        Ok(())
    }

    /// Offline comparison, dry runs where the mode asks for them, verdicts.
    async fn judge(
        &mut self,
        mut work: Vec<Work>,
        progress: &indicatif::ProgressBar,
        log: &Log,
        err: &mut dyn Write,
    ) -> Result<Vec<Evaluated>> {
        self.load_schemas(&work, err).await?;
        // Offline comparison, and the fields managedFields alone can tell.
        for w in &mut work {
            let node = self
                .schemas
                .kind(&w.resource.group, &w.resource.version, &w.resource.kind);
            let Some(desired) = w.desired() else {
                continue;
            };
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
            w.offline = if changes.is_empty() {
                Offline::InSync
            } else {
                Offline::Drifted(changes)
            };
            w.extra = drift::out_of_band_additions(&desired, &w.live, &w.managed, &w.reconciler);
        }

        // Dry runs where the mode asks for them, a bounded number in flight.
        let server_side = self.options.server_side;
        let wanted: Vec<usize> = work
            .iter()
            .enumerate()
            .filter(|(_, w)| w.located.desired_at_tip.is_some())
            .filter(|(_, w)| match server_side {
                ServerSide::True => true,
                ServerSide::False => false,
                ServerSide::Auto => matches!(w.offline, Offline::Drifted(_)),
            })
            .map(|(i, _)| i)
            .collect();
        log.debug(err, 1, || format!("{} dry runs", wanted.len()));
        let semaphore = Arc::new(tokio::sync::Semaphore::new(usize::from(
            self.options.concurrency,
        )));
        let mut tasks = tokio::task::JoinSet::new();
        for &i in &wanted {
            let w = &work[i];
            let desired = w.desired().expect("filtered above");
            let cluster = self.cluster.clone();
            let resource = w.resource.clone();
            let ns = w.key.namespace.clone();
            let manager = w.manager();
            let permit = semaphore.clone();
            tasks.spawn(async move {
                let _permit = permit
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let result = cluster
                    .apply_dry_run(&resource, ns.as_deref(), &desired, &manager)
                    .await;
                (i, result)
            });
        }
        progress.set_position(0);
        progress.set_length(wanted.len() as u64);
        progress.set_message("dry runs");
        let mut forbidden_said = false;
        while let Some(joined) = tasks.join_next().await {
            progress.inc(1);
            let (i, result) = joined.expect("a dry-run task does not panic");
            let w = &mut work[i];
            match result {
                Ok(after) => {
                    let node =
                        self.schemas
                            .kind(&w.resource.group, &w.resource.version, &w.resource.kind);
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

        // Verdicts, attribution, ignore rules.
        if self.repo_rules.is_none() {
            self.repo_rules = Some(repo_ignore_rules(&work, &self.locator, err));
        }
        let repo_rules = self.repo_rules.as_deref().unwrap_or_default();
        let mut judged = Vec::with_capacity(work.len());
        for w in work {
            let report = verdict(&w, &self.options.ignore, repo_rules);
            if report.status == Status::Error {
                writeln!(
                    err,
                    "error: {}: {}",
                    report.object,
                    report.error.as_deref().unwrap_or("")
                )?;
            }
            judged.push(Evaluated {
                report,
                work: Some(w),
            });
        }
        Ok(judged)
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
    if let Some(ns) = live["metadata"]["namespace"].as_str()
        && desired["metadata"]["namespace"].is_null()
        && let Some(meta) = desired.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.insert("namespace".into(), ns.into());
    }
}

/// The `ignore:` rules of `.kubectl-gitops.yaml` at the root of each repository in use, read
/// at the commit desired comes from. A broken file is a warning, not a reason to stop.
fn repo_ignore_rules(work: &[Work], locator: &Locator, err: &mut dyn Write) -> Vec<IgnoreRule> {
    let mut seen = BTreeSet::new();
    let mut rules = Vec::new();
    for w in work {
        let Some(commit) = w.located.tracked_commit.clone() else {
            continue;
        };
        if !seen.insert((w.located.repo.clone(), commit.clone())) {
            continue;
        }
        match locator.read_config(&w.located, ".kubectl-gitops.yaml") {
            Ok(None) => {}
            Ok(Some(bytes)) => match std::str::from_utf8(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_saphyr::from_str::<RepoConfig>(t).map_err(|e| e.to_string()))
            {
                Ok(config) => rules.extend(config.ignore),
                Err(e) => {
                    let _ = writeln!(
                        err,
                        "warning: {}: .kubectl-gitops.yaml is not valid ({}); its rules are not used",
                        w.located.repo,
                        single_line(&e)
                    );
                }
            },
            Err(e) => {
                let _ = writeln!(
                    err,
                    "warning: {}: {}",
                    w.located.repo,
                    single_line(&e.to_string())
                );
            }
        }
    }
    rules
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
