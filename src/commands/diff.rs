//! `kubectl gitops diff`: live objects (one LIST per kind) against Git, offline first, with
//! server-side-apply dry runs where the mode asks for them, every drifted field attributed.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;

use anyhow::Result;
use serde_json::Value;

use crate::Outcome;
use crate::cli::{DiffArgs, GlobalArgs, ServerSide};
use crate::cluster::discovery::Resource;
use crate::cluster::{self, ClusterError, LiveObject, single_line};
use crate::drift::{
    self, Change, DriftReport, FieldReport, ObjectReport, Offline, SourceSummary, Status, Verdict,
    Why,
};
use crate::env::Env;
use crate::fields::{FieldPath, ManagedFields};
use crate::normalize::{self, IgnoreRule, RepoConfig};
use crate::object::ObjectKey;
use crate::report::{self, Log};
use crate::schema::Schemas;
use crate::source::{self, Located, Locator, ReconcilerCache, RepoChoice, SourceError};

/// Kinds never listed for the default scope: high-churn, controller-made, never from Git.
const SKIPPED_KINDS: &[&str] = &[
    "events",
    "events.events.k8s.io",
    "endpoints",
    "endpointslices.discovery.k8s.io",
    "leases.coordination.k8s.io",
    "pods",
    "replicasets.apps",
    "controllerrevisions.apps",
];

/// One live object on its way through the comparison.
struct Work {
    key: ObjectKey,
    resource: Resource,
    live: LiveObject,
    pointer: Option<source::Pointer>,
    located: Located,
    managed: ManagedFields,
    reconciler: Vec<String>,
    offline: Offline,
    extra: Vec<Change>,
    dry_run: Option<Result<Vec<Change>, String>>,
}

pub async fn run(
    global: &GlobalArgs,
    args: &DiffArgs,
    env: &Env,
    log: &Log,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome> {
    let mut rules = Vec::new();
    for text in &args.ignore {
        rules.push(IgnoreRule::parse_flag(text).map_err(anyhow::Error::msg)?);
    }
    let options = super::connect_options(global)?;
    let cluster = cluster::connect(&options, env).await?;
    let cache_dir = env.cache_dir.clone();
    let discovery =
        cluster::cache::discovery(&cluster, cache_dir.as_deref(), args.refresh_discovery).await?;
    let namespace = (!global.all_namespaces).then(|| cluster.target.namespace.clone());
    let mut items: Vec<ObjectReport> = Vec::new();
    let mut failed = false;

    // Live objects: one paginated LIST per kind in scope.
    let explicit = !args.objects.is_empty();
    let mut live_objects: Vec<(Resource, LiveObject)> = Vec::new();
    let mut targets: Vec<(Resource, Option<String>)> = Vec::new();
    for arg in &args.objects {
        let (type_text, name) = match arg.split_once('/') {
            Some((t, n)) => (t, Some(n.to_owned())),
            None => (arg.as_str(), None),
        };
        match discovery.resolve(type_text) {
            Ok(r) => targets.push((r.clone(), name)),
            Err(e) => {
                failed = true;
                writeln!(err, "error: {arg}: {e}")?;
            }
        }
    }
    // `-f PATH`: the objects the local checkout declares there, at --against or HEAD.
    let mut declared: std::collections::BTreeMap<ObjectKey, crate::render::Document> =
        Default::default();
    if !args.files.is_empty() {
        let cwd = env
            .cwd
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from("."));
        let repo_dir = args
            .repo
            .as_deref()
            .map(|r| super::absolute(&cwd, std::path::Path::new(r)))
            .unwrap_or_else(|| cwd.clone());
        let repo = crate::git::Repo::open_local(&repo_dir)?;
        let workdir = repo
            .workdir()
            .ok_or_else(|| anyhow::anyhow!("-f needs a checkout with a working tree"))?
            .to_path_buf();
        let (commit, _) = repo.resolve(args.against.as_deref().unwrap_or("HEAD"))?;
        for file in &args.files {
            let target = super::absolute(&cwd, file);
            let relative = super::relative_to(&workdir, &target).ok_or_else(|| {
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
                let Some(resource) = discovery.for_kind(api_version, &key.kind) else {
                    failed = true;
                    writeln!(
                        err,
                        "error: {}: the server doesn't have a resource type \"{}\" ({api_version})",
                        doc.file, key.kind
                    )?;
                    continue;
                };
                if resource.namespaced && key.namespace.is_none() {
                    key.namespace = Some(cluster.target.namespace.clone());
                }
                targets.push((resource.clone(), Some(key.name.clone())));
                declared.insert(key, doc);
            }
        }
    }
    let explicit = explicit || !args.files.is_empty();
    if !explicit {
        targets = discovery
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
        let listed = match cluster.list(resource, ns, args.selector.as_deref()).await {
            Ok(listed) => listed,
            Err(ClusterError::Forbidden { .. }) if !explicit => continue,
            Err(e) => {
                failed = true;
                writeln!(err, "error: {qualified}: {}", single_line(&e.to_string()))?;
                continue;
            }
        };
        for name in &names {
            if !listed
                .iter()
                .any(|o| o["metadata"]["name"] == name.as_str())
            {
                let in_files = declared.iter().find(|(k, _)| {
                    k.name == **name && k.kind == resource.kind && k.group == resource.group
                });
                if let Some((key, doc)) = in_files {
                    items.push(ObjectReport {
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

    // Where each came from, and what Git says now.
    let locator = Locator::new(RepoChoice {
        flag: args.repo.clone(),
        cwd: env.cwd.clone(),
        cache_root: cache_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join("repos"),
        against: args.against.clone(),
    });
    let reconcilers = ReconcilerCache::default();
    let mut work: Vec<Work> = Vec::new();
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
    for (resource, live) in live_objects {
        progress.inc(1);
        let Some(key) = ObjectKey::of(&live) else {
            continue;
        };
        let mut kept_pointer = None;
        let located = match source::pointer(&cluster, &discovery, &reconcilers, &live).await {
            Ok(pointer) => {
                kept_pointer = pointer.clone();
                locator.locate(pointer, &key)
            }
            Err(e) => Err(e),
        };
        let located = match located {
            Ok(l) => l,
            Err(SourceError::NoSource { .. }) if explicit => {
                items.push(bare(key, Status::NoSource, None));
                continue;
            }
            Err(SourceError::NoSource { .. }) => continue,
            Err(e) => {
                failed = true;
                let message = single_line(&e.to_string());
                writeln!(err, "error: {key}: {message}")?;
                items.push(bare(key, Status::Error, Some(message)));
                continue;
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
        work.push(Work {
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
        });
    }
    log.debug(err, 1, || locator.reads.summary());

    // Missing: declared next to objects we found (same file or render root), not in the cluster.
    let mut sources_seen = BTreeSet::new();
    let mut missing = BTreeSet::new();
    for w in &work {
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
        let docs = match locator.siblings(&w.located, w.pointer.as_ref()) {
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
        for doc in docs {
            let Some(mut key) = doc.key() else { continue };
            if key.namespace.is_none() && w.resource.namespaced {
                key.namespace = w.key.namespace.clone();
            }
            let in_scope =
                namespace.is_none() || key.namespace.is_none() || key.namespace == namespace;
            let listed = listed_kinds.contains(&(key.group.clone(), key.kind.clone()));
            let named_elsewhere = explicit && targets.iter().all(|(_, n)| n.is_some());
            if in_scope
                && listed
                && !named_elsewhere
                && !all_live.contains(&key)
                && missing.insert(key.clone())
            {
                items.push(ObjectReport {
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

    // Schemas for the kinds involved (list merge semantics, quantities).
    let group_versions: BTreeSet<String> = work.iter().map(|w| w.resource.api_version()).collect();
    let schemas = match cluster::openapi::schemas(
        &cluster,
        &group_versions.into_iter().collect::<Vec<_>>(),
        cache_dir.as_deref(),
        args.refresh_discovery,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            writeln!(
                err,
                "warning: no OpenAPI schemas ({}); lists are compared as wholes",
                single_line(&e.to_string())
            )?;
            Schemas::new()
        }
    };

    // Offline comparison, and the fields managedFields alone can tell.
    for w in &mut work {
        let node = schemas.kind(&w.resource.group, &w.resource.version, &w.resource.kind);
        let Some(desired) = &w.located.desired_at_tip else {
            continue;
        };
        let mut desired = desired.clone();
        let mut changes = match drift::compare_offline(&desired, &w.live, node) {
            Offline::InSync => Vec::new(),
            Offline::Drifted(c) => c,
        };
        place(&mut desired, &w.live);
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
    let wanted: Vec<usize> = work
        .iter()
        .enumerate()
        .filter(|(_, w)| w.located.desired_at_tip.is_some())
        .filter(|(_, w)| match args.server_side {
            ServerSide::True => true,
            ServerSide::False => false,
            ServerSide::Auto => matches!(w.offline, Offline::Drifted(_)),
        })
        .map(|(i, _)| i)
        .collect();
    log.debug(err, 1, || format!("{} dry runs", wanted.len()));
    let semaphore = Arc::new(tokio::sync::Semaphore::new(usize::from(args.concurrency)));
    let mut tasks = tokio::task::JoinSet::new();
    for &i in &wanted {
        let w = &work[i];
        let mut desired = w.located.desired_at_tip.clone().expect("filtered above");
        place(&mut desired, &w.live);
        let cluster = cluster.clone();
        let resource = w.resource.clone();
        let ns = w.key.namespace.clone();
        let manager = w
            .reconciler
            .first()
            .cloned()
            .unwrap_or_else(|| "kubectl-gitops".into());
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
                let node = schemas.kind(&w.resource.group, &w.resource.version, &w.resource.kind);
                w.dry_run = Some(Ok(drift::compare_objects(&after, &w.live, node)));
            }
            Err(ClusterError::Forbidden { message, .. })
                if args.server_side == ServerSide::Auto =>
            {
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

    progress.finish_and_clear();

    // Verdicts, attribution, ignore rules.
    let repo_rules: Vec<IgnoreRule> = repo_ignore_rules(&work, &locator, err);
    for w in work {
        let report = verdict(w, &rules, &repo_rules);
        if report.status == Status::Error {
            failed = true;
            writeln!(
                err,
                "error: {}: {}",
                report.object,
                report.error.as_deref().unwrap_or("")
            )?;
        }
        items.push(report);
    }
    let report = drift::DriftReport::new(args.server_side.as_str(), items);
    report::render_diff(out, &report, args.output)?;
    if args.show_ignored {
        show_ignored(out, &report)?;
    }
    Ok(if failed {
        Outcome::Failed
    } else if report.has_drift() {
        Outcome::Drift
    } else {
        Outcome::Clean
    })
}

/// The managers whose Apply is the reconciler's: Flux's and Argo CD's own; for a plain
/// pipeline, whichever kubectl apply wrote the object (server-side `kubectl`, client-side
/// `kubectl-client-side-apply`), else ours.
fn reconciler_managers(located: &Located, managed: &ManagedFields) -> Vec<String> {
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
fn place(desired: &mut Value, live: &Value) {
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

fn verdict(w: Work, rules: &[IgnoreRule], repo_rules: &[IgnoreRule]) -> ObjectReport {
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
            object: w.key,
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
                object: w.key,
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
        let why = attribute(change, &w);
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
        object: w.key,
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

fn show_ignored(out: &mut dyn Write, report: &DriftReport) -> std::io::Result<()> {
    writeln!(out, "\nAlways ignored:")?;
    for rule in normalize::ALWAYS {
        writeln!(out, "  {:<72} {}", rule.pointer, rule.reason)?;
    }
    writeln!(
        out,
        "  fields owned only by: {}",
        normalize::SYSTEM_MANAGERS.join(", ")
    )?;
    let ignored: Vec<(&ObjectKey, &FieldReport)> = report
        .items
        .iter()
        .flat_map(|i| i.ignored.iter().map(move |f| (&i.object, f)))
        .collect();
    if !ignored.is_empty() {
        writeln!(out, "\nIgnored by rules:")?;
        for (object, field) in ignored {
            writeln!(
                out,
                "  {object} {} ({})",
                field.path,
                field.ignored_by.as_deref().unwrap_or("")
            )?;
        }
    }
    Ok(())
}
