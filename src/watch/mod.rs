//! `kubectl gitops watch`: `diff` that never stops. One evaluation, then one watch per kind in
//! scope from its LIST's resourceVersion; each change of a live object is evaluated on its own
//! and printed only when its verdict changes. Git is polled for new commits on the tracked
//! branches, which show as pending.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use tokio::sync::mpsc;

use crate::Outcome;
use crate::cli::{GlobalArgs, WatchArgs};
use crate::cluster::discovery::{Discovery, Resource};
use crate::cluster::{LiveObject, WatchEvent, watcher};
use crate::drift::{ObjectReport, SourceSummary, Status, Verdict, Why};
use crate::engine::{Engine, Evaluated, ListedKind, Options, Scope, Summary, Work};
use crate::env::Env;
use crate::normalize::IgnoreRule;
use crate::object::ObjectKey;
use crate::report::{self, Cause, DriftEvent, Log, WatchCounts};
use crate::text::single_line;

/// Messages waiting for the main loop; watches wait when it is this far behind.
const QUEUE: usize = 1024;
/// Events waiting for `--exec`; past this, events are not handed to it (and that is said).
const HOOK_QUEUE: usize = 256;
/// The most messages handled as one batch (several changes of one object count once).
const BATCH: usize = 512;

pub async fn run(
    global: &GlobalArgs,
    args: &WatchArgs,
    env: &Env,
    log: &Log,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome> {
    let started = Instant::now();
    let start_unix = unix_now();
    let mut ignore = Vec::new();
    for text in &args.ignore {
        ignore.push(IgnoreRule::parse_flag(text).map_err(anyhow::Error::msg)?);
    }
    let scope = Scope {
        objects: args.objects.clone(),
        files: Vec::new(),
        selector: args.selector.clone(),
        all_namespaces: global.all_namespaces,
        repo: args.repo.clone(),
        against: None,
    };
    let cache_root = crate::engine::repo_choice(&scope, env).cache_root;
    let options = Options {
        server_side: args.server_side,
        concurrency: args.concurrency,
        ignore,
        refresh_discovery: false,
        summaries: true,
    };
    let mut engine = Engine::connect(
        &crate::commands::connect_options(global)?,
        env,
        scope,
        options,
    )
    .await?;
    // Signals are caught from here on, so that Ctrl-C during the first evaluation stops as
    // cleanly as later.
    let mut stop = crate::process::StopSignals::new()?;

    // The first evaluation can be long: a stop signal ends it too.
    let evaluated = tokio::select! {
        e = engine.evaluate(env, log, err) => Ok(e?),
        name = stop.next() => Err(name),
    };
    let evaluation = match evaluated {
        Ok(evaluation) => evaluation,
        Err(name) => {
            writeln!(err, "stopped ({name}) during the first evaluation")?;
            return Ok(Outcome::Clean);
        }
    };
    // After the first evaluation, which read discovery again if a TYPE was not in the cache.
    let filter = ScopeFilter::new(&engine.discovery.snapshot(), &args.objects);
    let mut watch = Watch::new(filter, args.selector.clone(), start_unix);
    let counts = watch.follow_evaluation(evaluation);
    engine.locator.pack();
    crate::process::release_freed_memory();
    for line in counts.lines() {
        writeln!(err, "{line}")?;
    }
    let watched: Vec<usize> = (0..watch.kinds.len())
        .filter(|&i| watch.kinds[i].resource.verbs.iter().any(|v| v == "watch"))
        .collect();
    for (i, kind) in watch.kinds.iter().enumerate() {
        if !watched.contains(&i) {
            writeln!(
                err,
                "warning: {} cannot be watched (the server does not offer it); its changes are not followed",
                kind.resource.qualified_name()
            )?;
        }
    }
    if watched.is_empty() {
        bail!(
            "nothing to watch: no kind in scope could be listed and watched; check the TYPE \
             arguments and your RBAC rights (list and watch)"
        );
    }
    let drift_at_start = counts.by_status.iter().any(|(s, k)| {
        !k.is_empty() && matches!(s, Status::Drifted | Status::Missing | Status::Orphaned)
    });
    if args.exit_on_drift && drift_at_start {
        writeln!(
            err,
            "--exit-on-drift: the cluster already differs from Git ({})",
            counts.line()
        )?;
        return Ok(Outcome::Drift);
    }

    watch.watching = watched.len();
    let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
    let mut tasks = tokio::task::JoinSet::new();
    for &i in &watched {
        let kind = &watch.kinds[i];
        let kind = watcher::Kind {
            resource: kind.resource.clone(),
            namespace: kind.namespace.clone(),
            selector: watch.selector.clone(),
            resource_version: kind.resource_version.clone(),
        };
        tasks.spawn(watcher::follow(
            engine.cluster.clone(),
            kind,
            tx.clone(),
            move |event| Msg::of_kind(i, event),
        ));
    }
    let (targets_tx, targets_rx) = tokio::sync::watch::channel(watch.poll_targets());
    tasks.spawn(poll_git(
        targets_rx,
        args.git_interval,
        cache_root,
        tx.clone(),
    ));
    let hooks = args.exec.as_ref().map(|command| {
        let (hook_tx, hook_rx) = mpsc::channel::<(String, String)>(HOOK_QUEUE);
        let worker = tokio::spawn(run_hooks(
            command.clone(),
            args.exec_timeout,
            hook_rx,
            tx.clone(),
        ));
        (hook_tx, worker)
    });
    let scope_text = match &engine.namespace {
        Some(ns) => format!("in namespace {ns}"),
        None => "in all namespaces".to_owned(),
    };
    writeln!(
        err,
        "watching {} kinds {scope_text}; Git every {}; Ctrl-C to stop",
        watched.len(),
        crate::text::duration(args.git_interval)
    )?;

    let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut ctx = Context {
        engine: &mut engine,
        env,
        log,
        out,
        err,
        format: args.output,
        hook: hooks.as_ref().map(|(tx, _)| tx),
        events: 0,
        drift_seen: false,
    };
    let reason = loop {
        let first = tokio::select! {
            msg = rx.recv() => msg,
            name = stop.next() => break name.to_owned(),
            _ = sleep_until(deadline) => break "--timeout".to_owned(),
        };
        let Some(first) = first else {
            break "every watch ended".to_owned();
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(msg) => batch.push(msg),
                Err(_) => break,
            }
        }
        watch.handle(batch, &mut ctx).await?;
        if watch.tips_moved {
            watch.tips_moved = false;
            ctx.engine
                .locator
                .forget_commits_except(&watch.commits_in_use());
        }
        // What the batch read from Git is kept packed until the next one.
        if ctx.engine.locator.pack() {
            crate::process::release_freed_memory();
        }
        if watch.targets_changed {
            watch.targets_changed = false;
            let _ = targets_tx.send(watch.poll_targets());
        }
        if args.exit_on_drift && ctx.drift_seen {
            break "--exit-on-drift".to_owned();
        }
    };
    let (events, drift_seen) = (ctx.events, ctx.drift_seen);
    tasks.abort_all();

    // The events already handed to --exec still reach it, within one --exec-timeout.
    if let Some((hook_tx, mut worker)) = hooks {
        drop(hook_tx);
        if tokio::time::timeout(args.exec_timeout, &mut worker)
            .await
            .is_err()
        {
            // Dropping its run kills the command's process group.
            worker.abort();
            let _ = worker.await;
            writeln!(
                err,
                "warning: --exec: the last events were not all handed to it before the stop"
            )?;
        }
    }
    drop(tx);
    while let Ok(msg) = rx.try_recv() {
        if let Msg::Hook(message) = msg {
            writeln!(err, "warning: {message}")?;
        }
    }
    writeln!(
        err,
        "stopped ({reason}) after {}: {events} events; now {}",
        crate::text::duration(Duration::from_secs(started.elapsed().as_secs())),
        watch.counts().line()
    )?;
    Ok(if args.exit_on_drift && drift_seen {
        Outcome::Drift
    } else {
        Outcome::Clean
    })
}

/// What the loop works with, besides the watch state.
struct Context<'a> {
    engine: &'a mut Engine,
    env: &'a Env,
    log: &'a Log,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    format: report::WatchFormat,
    hook: Option<&'a mpsc::Sender<(String, String)>>,
    events: usize,
    drift_seen: bool,
}

impl Context<'_> {
    /// Prints an event, hands it to `--exec`, and notes drift.
    fn emit(&mut self, event: DriftEvent) -> Result<()> {
        report::render_event(self.out, &event, self.format)?;
        self.events += 1;
        self.drift_seen |= event.is_drift();
        if let Some(hook) = self.hook {
            let json = serde_json::to_string(&event)?;
            if hook.try_send((event.object.to_string(), json)).is_err() {
                writeln!(
                    self.err,
                    "warning: --exec is {HOOK_QUEUE} events behind; the event of {} is not handed to it",
                    event.object
                )?;
            }
        }
        Ok(())
    }
}

/// From a watch task, the Git poller or the `--exec` worker to the main loop.
enum Msg {
    /// A change of an object of kind `kind` (an index into the watched kinds).
    Event { kind: usize, event: WatchEvent },
    /// The watch lost its place (410 Gone) and listed the kind again.
    Relisted {
        kind: usize,
        objects: Vec<LiveObject>,
    },
    /// The watch cannot reach the server; it retries with backoff.
    Down { kind: usize, error: String },
    /// It reaches the server again.
    Up { kind: usize },
    /// The watch of this kind gave up (forbidden, or the kind is gone).
    Stopped { kind: usize, error: String },
    /// The tracked tips, as the last poll found them.
    Tips(Vec<(usize, Result<String, String>)>),
    /// A line for `-v`.
    Debug(String),
    /// An `--exec` run failed.
    Hook(String),
}

impl Msg {
    /// What the watch of kind `kind` (an index into the watched kinds) tells.
    fn of_kind(kind: usize, event: watcher::Event) -> Msg {
        match event {
            watcher::Event::Changed(event) => Msg::Event { kind, event },
            watcher::Event::Relisted(objects) => Msg::Relisted { kind, objects },
            watcher::Event::Down(error) => Msg::Down { kind, error },
            watcher::Event::Up => Msg::Up { kind },
            watcher::Event::Stopped(error) => Msg::Stopped { kind, error },
            watcher::Event::Debug(line) => Msg::Debug(line),
        }
    }
}

/// Which live objects the command line puts in scope, beyond what the first evaluation found.
struct ScopeFilter {
    /// No TYPE named: only objects with a source marker count.
    explicit: bool,
    /// Per qualified kind named: `None` for every object of it, else the names.
    kinds: HashMap<String, Option<HashSet<String>>>,
}

impl ScopeFilter {
    fn new(discovery: &Discovery, objects: &[String]) -> ScopeFilter {
        let mut kinds: HashMap<String, Option<HashSet<String>>> = HashMap::new();
        for arg in objects {
            let (type_text, name) = match arg.split_once('/') {
                Some((t, n)) => (t, Some(n.to_owned())),
                None => (arg.as_str(), None),
            };
            // An unknown TYPE is said by the evaluation.
            let Ok(resource) = discovery.resolve(type_text) else {
                continue;
            };
            let entry = kinds
                .entry(resource.qualified_name())
                .or_insert_with(|| Some(HashSet::new()));
            match (entry.as_mut(), name) {
                (Some(names), Some(name)) => {
                    names.insert(name);
                }
                (_, None) => *entry = None,
                (None, Some(_)) => {}
            }
        }
        ScopeFilter {
            explicit: !objects.is_empty(),
            kinds,
        }
    }

    /// Whether a live object of `resource` is evaluated when it changes.
    fn wants(&self, resource: &Resource, live: &LiveObject) -> bool {
        if !self.explicit {
            return crate::source::has_marker(live);
        }
        match self.kinds.get(&resource.qualified_name()) {
            Some(None) => true,
            Some(Some(names)) => live["metadata"]["name"]
                .as_str()
                .is_some_and(|n| names.contains(n)),
            None => false,
        }
    }
}

/// An object watch follows, and its verdict.
#[derive(Debug, Clone)]
struct Followed {
    status: Status,
    /// A digest of the verdict beyond the status: the drifted fields, their values and whose.
    verdict: u64,
    /// In the cluster (false: missing).
    present: bool,
    resource_version: String,
    /// A digest of what in the live object can change a verdict.
    content: u64,
    /// Index into the watched kinds.
    kind: Option<usize>,
    /// Index into the tracked tips.
    tip: Option<usize>,
    /// Git declares it at the tip: deleting it makes it missing.
    declared: bool,
    source: Option<SourceSummary>,
    /// The commit its desired state was read at.
    read_at: Option<String>,
}

/// A tracked branch (or a checkout's HEAD) of one repository, and the commit it was at.
#[derive(Debug, Clone)]
struct Tip {
    repo_key: String,
    local: bool,
    /// The checkout's path, or the URL.
    location: String,
    rev: String,
    commit: String,
    /// The last poll error said, to say each only once.
    last_error: Option<String>,
}

/// The state of a watch: the kinds, the objects and their verdicts, the tips.
struct Watch {
    kinds: Vec<ListedKind>,
    kind_index: HashMap<(String, String), usize>,
    filter: ScopeFilter,
    selector: Option<String>,
    followed: HashMap<ObjectKey, Followed>,
    tips: Vec<Tip>,
    targets_changed: bool,
    /// A tip moved: what was read at older commits may be forgotten.
    tips_moved: bool,
    /// Kinds whose watch cannot reach the server right now.
    down: HashSet<usize>,
    /// Kinds whose watch runs (or retries).
    watching: usize,
    start_unix: i64,
}

impl Watch {
    fn new(filter: ScopeFilter, selector: Option<String>, start_unix: i64) -> Watch {
        Watch {
            kinds: Vec::new(),
            kind_index: HashMap::new(),
            filter,
            selector,
            followed: HashMap::new(),
            tips: Vec::new(),
            targets_changed: false,
            tips_moved: false,
            down: HashSet::new(),
            watching: 0,
            start_unix,
        }
    }

    /// Takes over what the first evaluation found; the live objects themselves are dropped.
    fn follow_evaluation(&mut self, evaluation: crate::engine::Evaluation) -> WatchCounts {
        for kind in evaluation.kinds {
            let id = (kind.resource.group.clone(), kind.resource.kind.clone());
            self.kind_index.insert(id, self.kinds.len());
            self.kinds.push(kind);
        }
        let mut missing = Vec::new();
        for item in evaluation.items {
            if item.report.status == Status::Missing {
                missing.push(item.report);
                continue;
            }
            let key = item.report.object.clone();
            let followed = self.followed_from(&item, None);
            self.followed.insert(key, followed);
        }
        for report in missing {
            let tip = report.source.as_ref().and_then(|s| {
                self.tips
                    .iter()
                    .position(|t| t.location == s.repo && t.commit == s.commit)
            });
            let followed = Followed {
                status: Status::Missing,
                verdict: verdict_digest(&report),
                present: false,
                resource_version: String::new(),
                content: 0,
                kind: self.kind_of(&report.object),
                tip,
                declared: true,
                source: report.source.clone(),
                read_at: None,
            };
            self.followed.insert(report.object, followed);
        }
        self.counts()
    }

    fn counts(&self) -> WatchCounts {
        let mut counts = WatchCounts::default();
        for (key, f) in &self.followed {
            counts.add(f.status, key.clone());
        }
        counts
    }

    fn kind_of(&self, key: &ObjectKey) -> Option<usize> {
        self.kind_index
            .get(&(key.group.clone(), key.kind.clone()))
            .copied()
    }

    /// What to remember of an evaluated object.
    fn followed_from(&mut self, item: &Evaluated, kind: Option<usize>) -> Followed {
        let report = &item.report;
        let (resource_version, content, tip, declared, read_at) = match &item.summary {
            Some(s) => (
                s.resource_version.clone(),
                s.content,
                Some(self.tip_of(s)),
                s.declared,
                Some(s.read_at.clone()),
            ),
            None => (String::new(), 0, None, false, None),
        };
        Followed {
            status: report.status,
            verdict: verdict_digest(report),
            present: report.status != Status::Missing,
            resource_version,
            content,
            kind: kind.or_else(|| self.kind_of(&report.object)),
            tip,
            declared,
            source: report.source.clone(),
            read_at,
        }
    }

    /// The commits what is followed was read at, and the tips: what Git reads must be kept.
    fn commits_in_use(&self) -> HashSet<String> {
        let mut commits: HashSet<String> = self.tips.iter().map(|t| t.commit.clone()).collect();
        commits.extend(self.followed.values().filter_map(|f| f.read_at.clone()));
        commits
    }

    /// The tip an object's desired state was read at, added when new.
    fn tip_of(&mut self, summary: &Summary) -> usize {
        let rev = if summary.local_checkout {
            "HEAD".to_owned()
        } else {
            summary
                .tracked_ref
                .clone()
                .unwrap_or_else(|| "HEAD".to_owned())
        };
        let commit = summary.tracked_commit.clone().unwrap_or_default();
        if let Some(i) = self
            .tips
            .iter()
            .position(|t| t.repo_key == summary.repo_key && t.rev == rev)
        {
            return i;
        }
        self.tips.push(Tip {
            repo_key: summary.repo_key.clone(),
            local: summary.local_checkout,
            location: summary.repo.clone(),
            rev,
            commit,
            last_error: None,
        });
        self.targets_changed = true;
        self.tips.len() - 1
    }

    fn poll_targets(&self) -> Vec<crate::git::poll::PollTarget> {
        self.tips
            .iter()
            .enumerate()
            .map(|(index, t)| crate::git::poll::PollTarget {
                index,
                local: t.local,
                location: t.location.clone(),
                rev: t.rev.clone(),
            })
            .collect()
    }

    /// One batch of messages: changes first (the last of each object counts), then the rest.
    async fn handle(&mut self, batch: Vec<Msg>, ctx: &mut Context<'_>) -> Result<()> {
        let mut order: Vec<ObjectKey> = Vec::new();
        let mut changes: HashMap<ObjectKey, Change> = HashMap::new();
        let mut note = |key: ObjectKey, mut change: Change| {
            // Created and then changed within the batch is still new.
            if let (Some(Change::Live { added: true, .. }), Change::Live { added, .. }) =
                (changes.get(&key), &mut change)
            {
                *added = true;
            }
            if changes.insert(key.clone(), change).is_none() {
                order.push(key);
            }
        };
        let mut tips = Vec::new();
        for msg in batch {
            match msg {
                Msg::Event { kind, event } => {
                    // The watch starts at the LIST, which had every older object: ADDED is an
                    // object created since.
                    let (live, added) = match event {
                        WatchEvent::Added(o) => (o, true),
                        WatchEvent::Modified(o) => (o, false),
                        WatchEvent::Deleted(o) => {
                            if let Some(key) = ObjectKey::of(&o) {
                                note(
                                    key,
                                    Change::Deleted {
                                        cause: Cause::Cluster,
                                    },
                                );
                            }
                            continue;
                        }
                        WatchEvent::Bookmark(_) => continue,
                    };
                    if let Some(key) = ObjectKey::of(&live) {
                        note(
                            key,
                            Change::Live {
                                kind,
                                live,
                                added,
                                cause: Cause::Cluster,
                            },
                        );
                    }
                }
                Msg::Relisted { kind, objects } => {
                    let mut seen = HashSet::new();
                    for o in objects {
                        let Some(key) = ObjectKey::of(&o) else {
                            continue;
                        };
                        seen.insert(key.clone());
                        let added = created_at(&o).is_some_and(|t| t >= self.start_unix)
                            && !self.followed.contains_key(&key);
                        note(
                            key,
                            Change::Live {
                                kind,
                                live: o,
                                added,
                                cause: Cause::Relist,
                            },
                        );
                    }
                    let gone: Vec<ObjectKey> = self
                        .followed
                        .iter()
                        .filter(|(k, f)| f.kind == Some(kind) && f.present && !seen.contains(*k))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in gone {
                        note(
                            key,
                            Change::Deleted {
                                cause: Cause::Relist,
                            },
                        );
                    }
                    ctx.log.debug(ctx.err, 1, || {
                        format!(
                            "{}: listed again (410 Gone)",
                            self.kinds[kind].resource.qualified_name()
                        )
                    });
                }
                Msg::Down { kind, error } => {
                    ctx.log.debug(ctx.err, 1, || {
                        format!(
                            "{}: watch failed: {error}",
                            self.kinds[kind].resource.qualified_name()
                        )
                    });
                    if self.down.is_empty() {
                        writeln!(
                            ctx.err,
                            "warning: lost the API server ({error}); retrying with backoff, and \
                             the watches resume where they stopped"
                        )?;
                    }
                    self.down.insert(kind);
                }
                Msg::Up { kind } => {
                    if self.down.remove(&kind) && self.down.is_empty() {
                        writeln!(ctx.err, "watching again: the API server answers")?;
                    }
                }
                Msg::Stopped { kind, error } => {
                    let name = self.kinds[kind].resource.qualified_name();
                    self.watching = self.watching.saturating_sub(1);
                    if self.watching == 0 {
                        bail!("no kind can be watched any more; the last, {name}: {error}");
                    }
                    writeln!(
                        ctx.err,
                        "warning: {name}: the watch stopped ({error}); its changes are no longer followed",
                    )?;
                }
                Msg::Tips(found) => tips.extend(found),
                Msg::Debug(line) => ctx.log.debug(ctx.err, 1, || line),
                Msg::Hook(message) => writeln!(ctx.err, "warning: {message}")?,
            }
        }
        for key in order {
            let change = changes.remove(&key).expect("every key noted has a change");
            match change {
                Change::Live {
                    kind,
                    live,
                    added,
                    cause,
                } => {
                    self.on_live(key, kind, live, added, cause, false, ctx)
                        .await?;
                }
                Change::Deleted { cause } => self.on_deleted(key, cause, ctx).await?,
            }
        }
        if !tips.is_empty() {
            self.on_tips(tips, ctx).await?;
        }
        Ok(())
    }

    /// A live object appeared or changed: evaluate it, and say so if its verdict changed.
    #[allow(clippy::too_many_arguments)]
    async fn on_live(
        &mut self,
        key: ObjectKey,
        kind: usize,
        live: LiveObject,
        added: bool,
        cause: Cause,
        force: bool,
        ctx: &mut Context<'_>,
    ) -> Result<Option<Work>> {
        let rv = resource_version(&live);
        let content = crate::object::content_digest(&live);
        let old = self.followed.get(&key).cloned();
        if let Some(f) = &old
            && f.present
            && !force
            && (f.resource_version == rv || f.content == content)
        {
            // Status or bookkeeping only: nothing a verdict depends on.
            let f = self.followed.get_mut(&key).expect("just read");
            f.resource_version = rv;
            return Ok(None);
        }
        let resource = self.kinds[kind].resource.clone();
        let wanted = match &old {
            Some(f) if f.status != Status::NoSource => true,
            _ => self.filter.wants(&resource, &live),
        };
        if !wanted {
            // A new object that no rule maps to Git, made by hand rather than by a controller.
            if old.is_none()
                && added
                && live["metadata"]["ownerReferences"]
                    .as_array()
                    .is_none_or(Vec::is_empty)
            {
                self.follow_no_source(key, kind, rv, content, cause, ctx)?;
            } else if let Some(f) = self.followed.get_mut(&key) {
                f.resource_version = rv;
                f.content = content;
            }
            return Ok(None);
        }
        let timer = Instant::now();
        let evaluated = match ctx
            .engine
            .evaluate_one(&resource, live, ctx.log, ctx.err)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let message = single_line(&format!("{e:#}"));
                writeln!(ctx.err, "error: {key}: {message}")?;
                Some(Evaluated {
                    report: ObjectReport {
                        object: key.clone(),
                        status: Status::Error,
                        verdict: None,
                        source: None,
                        fields: Vec::new(),
                        ignored: Vec::new(),
                        error: Some(message),
                    },
                    work: None,
                    summary: None,
                    missing: None,
                })
            }
        };
        ctx.log.debug(ctx.err, 1, || {
            format!("{key}: evaluated in {} ms", timer.elapsed().as_millis())
        });
        let Some(mut evaluated) = evaluated else {
            // No source: said once, when the object was followed before or is new.
            if old.is_some() || added {
                self.follow_no_source(key, kind, rv, content, cause, ctx)?;
            }
            return Ok(None);
        };
        if evaluated.report.status == Status::Error {
            // A reconciler lookup that failed (the server went away) must not stick.
            ctx.engine.reconcilers = Default::default();
        }
        let mut followed = self.followed_from(&evaluated, Some(kind));
        if followed.resource_version.is_empty() {
            followed.resource_version = rv;
            followed.content = content;
        }
        let report = &evaluated.report;
        let changed = match &old {
            None => report.status != Status::InSync,
            Some(f) => f.status != followed.status || f.verdict != followed.verdict,
        };
        if changed {
            let event = DriftEvent::new(
                unix_now(),
                key.clone(),
                old.as_ref().map(|f| f.status),
                Some(report.status),
                cause,
                Some(report),
                Some(followed.resource_version.clone()),
            );
            ctx.emit(event)?;
        }
        self.followed.insert(key, followed);
        Ok(evaluated.work.take().map(|w| *w))
    }

    #[allow(clippy::too_many_arguments)]
    fn follow_no_source(
        &mut self,
        key: ObjectKey,
        kind: usize,
        rv: String,
        content: u64,
        cause: Cause,
        ctx: &mut Context<'_>,
    ) -> Result<()> {
        let old = self.followed.get(&key).map(|f| f.status);
        let report = ObjectReport {
            object: key.clone(),
            status: Status::NoSource,
            verdict: None,
            source: None,
            fields: Vec::new(),
            ignored: Vec::new(),
            error: None,
        };
        if old != Some(Status::NoSource) {
            let rv_shown = (!rv.is_empty()).then(|| rv.clone());
            ctx.emit(DriftEvent::new(
                unix_now(),
                key.clone(),
                old,
                Some(Status::NoSource),
                cause,
                Some(&report),
                rv_shown,
            ))?;
        }
        self.followed.insert(
            key,
            Followed {
                status: Status::NoSource,
                verdict: verdict_digest(&report),
                present: true,
                resource_version: rv,
                content,
                kind: Some(kind),
                tip: None,
                declared: false,
                source: None,
                read_at: None,
            },
        );
        Ok(())
    }

    /// A live object was deleted (or left the scope).
    async fn on_deleted(
        &mut self,
        key: ObjectKey,
        cause: Cause,
        ctx: &mut Context<'_>,
    ) -> Result<()> {
        let Some(old) = self.followed.get(&key).cloned() else {
            return Ok(());
        };
        if !old.present {
            return Ok(());
        }
        // With a label selector, an object whose labels stop matching looks deleted.
        if self.selector.is_some()
            && let Some(kind) = old.kind
        {
            let listed = &self.kinds[kind];
            if let Ok(Some(_)) = ctx
                .engine
                .cluster
                .get(&listed.resource, key.namespace.as_deref(), &key.name)
                .await
            {
                self.followed.remove(&key);
                return Ok(());
            }
        }
        if old.declared {
            let report = ObjectReport {
                object: key.clone(),
                status: Status::Missing,
                verdict: Some(Verdict::Offline),
                source: old.source.clone(),
                fields: Vec::new(),
                ignored: Vec::new(),
                error: None,
            };
            ctx.emit(DriftEvent::new(
                unix_now(),
                key.clone(),
                Some(old.status),
                Some(Status::Missing),
                cause,
                Some(&report),
                None,
            ))?;
            let f = self.followed.get_mut(&key).expect("just read");
            f.status = Status::Missing;
            f.verdict = verdict_digest(&report);
            f.present = false;
            f.resource_version.clear();
            f.content = 0;
        } else {
            self.followed.remove(&key);
            ctx.emit(DriftEvent::new(
                unix_now(),
                key,
                Some(old.status),
                None,
                cause,
                None,
                None,
            ))?;
        }
        Ok(())
    }

    /// The poller's answer: for each tip that moved, the objects read from it are evaluated
    /// again (listed afresh: watch keeps no live objects), and what Git now declares that the
    /// cluster lacks shows as missing.
    async fn on_tips(
        &mut self,
        found: Vec<(usize, Result<String, String>)>,
        ctx: &mut Context<'_>,
    ) -> Result<()> {
        let mut moved = BTreeMap::new();
        for (index, result) in found {
            let Some(tip) = self.tips.get_mut(index) else {
                continue;
            };
            match result {
                Ok(commit) => {
                    tip.last_error = None;
                    if commit != tip.commit {
                        moved.insert(index, commit);
                    }
                }
                Err(e) => {
                    if tip.last_error.as_deref() != Some(e.as_str()) {
                        writeln!(
                            ctx.err,
                            "warning: {}: cannot read {} ({e}); trying again at the next poll",
                            tip.location, tip.rev
                        )?;
                        tip.last_error = Some(e);
                    }
                }
            }
        }
        if moved.is_empty() {
            return Ok(());
        }
        self.tips_moved = true;
        for (index, commit) in &moved {
            let tip = &self.tips[*index];
            ctx.log.debug(ctx.err, 1, || {
                format!(
                    "git: {} {} moved from {} to {commit}",
                    tip.location,
                    tip.rev,
                    short(&tip.commit)
                )
            });
        }
        ctx.engine.refresh_git(ctx.env);

        // The objects read from the moved tips, by kind.
        let mut by_kind: BTreeMap<usize, HashSet<ObjectKey>> = BTreeMap::new();
        for (key, f) in &self.followed {
            if let (true, Some(kind), Some(tip)) = (f.present, f.kind, f.tip)
                && moved.contains_key(&tip)
            {
                by_kind.entry(kind).or_default().insert(key.clone());
            }
        }
        let mut present: BTreeSet<ObjectKey> = self
            .followed
            .iter()
            .filter(|(_, f)| f.present)
            .map(|(k, _)| k.clone())
            .collect();
        let mut works: Vec<Work> = Vec::new();
        let mut sources_seen = HashSet::new();
        for (kind, keys) in by_kind {
            let listed = self.kinds[kind].clone();
            let objects = match ctx
                .engine
                .cluster
                .list(
                    &listed.resource,
                    listed.namespace.as_deref(),
                    self.selector.as_deref(),
                )
                .await
            {
                Ok(objects) => objects,
                Err(e) => {
                    // The tips stay where they were: the next poll tries again.
                    writeln!(
                        ctx.err,
                        "warning: {}: cannot list it after Git moved ({}); trying again at the next poll",
                        listed.resource.qualified_name(),
                        single_line(&e.to_string())
                    )?;
                    return Ok(());
                }
            };
            for live in objects {
                let Some(key) = ObjectKey::of(&live) else {
                    continue;
                };
                present.insert(key.clone());
                if !keys.contains(&key) {
                    continue;
                }
                if let Some(work) = self
                    .on_live(key, kind, live, false, Cause::Git, true, ctx)
                    .await?
                {
                    // One object per file or render root is enough to list its siblings.
                    let source = (
                        work.located.repo_key.clone(),
                        work.located.file.clone(),
                        work.located.render_root.clone(),
                    );
                    if sources_seen.insert(source) {
                        works.push(work);
                    }
                }
            }
        }
        for (index, commit) in &moved {
            self.tips[*index].commit = commit.clone();
        }

        // What Git declares now that the cluster does not have.
        let listed_kinds: BTreeSet<(String, String)> = self.kind_index.keys().cloned().collect();
        let covered: HashSet<String> = works.iter().map(|w| w.located.repo_key.clone()).collect();
        let candidates = ctx
            .engine
            .missing(&works, &present, &listed_kinds, ctx.err)
            .await?;
        let mut still_missing = HashSet::new();
        for report in candidates {
            let key = report.object.clone();
            still_missing.insert(key.clone());
            if let Some(f) = self.followed.get_mut(&key) {
                if !f.present {
                    f.source = report.source.clone();
                }
                continue;
            }
            // An object without any source marker is not followed; ask before saying missing.
            let kind = self.kind_of(&key);
            if let Some(kind) = kind
                && let Ok(Some(_)) = ctx
                    .engine
                    .cluster
                    .get(
                        &self.kinds[kind].resource,
                        key.namespace.as_deref(),
                        &key.name,
                    )
                    .await
            {
                continue;
            }
            let tip = works
                .iter()
                .find(|w| Some(&w.located.repo) == report.source.as_ref().map(|s| &s.repo))
                .map(|w| w.located.repo_key.clone())
                .and_then(|repo_key| self.tips.iter().position(|t| t.repo_key == repo_key));
            ctx.emit(DriftEvent::new(
                unix_now(),
                key.clone(),
                None,
                Some(Status::Missing),
                Cause::Git,
                Some(&report),
                None,
            ))?;
            self.followed.insert(
                key,
                Followed {
                    status: Status::Missing,
                    verdict: verdict_digest(&report),
                    present: false,
                    resource_version: String::new(),
                    content: 0,
                    kind,
                    tip,
                    declared: true,
                    source: report.source.clone(),
                    read_at: None,
                },
            );
        }
        // Missing before, and no longer declared where Git was read again.
        let dropped: Vec<ObjectKey> = self
            .followed
            .iter()
            .filter(|(k, f)| {
                !f.present
                    && f.tip.is_some_and(|t| {
                        moved.contains_key(&t) && covered.contains(&self.tips[t].repo_key)
                    })
                    && !still_missing.contains(*k)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in dropped {
            self.followed.remove(&key);
            ctx.emit(DriftEvent::new(
                unix_now(),
                key,
                Some(Status::Missing),
                None,
                Cause::Git,
                None,
                None,
            ))?;
        }
        Ok(())
    }
}

/// One object's latest change within a batch.
enum Change {
    Live {
        kind: usize,
        live: LiveObject,
        added: bool,
        cause: Cause,
    },
    Deleted {
        cause: Cause,
    },
}

fn resource_version(object: &LiveObject) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `metadata.creationTimestamp` as Unix seconds.
fn created_at(object: &LiveObject) -> Option<i64> {
    report::time::parse_rfc3339(object["metadata"]["creationTimestamp"].as_str()?)
}

/// A digest of a verdict beyond its status: which fields drifted, to what, and whose change
/// (not when: a manager touching another field must not re-announce the same drift).
fn verdict_digest(report: &ObjectReport) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    report.status.as_str().hash(&mut hasher);
    report.error.hash(&mut hasher);
    for f in &report.fields {
        f.path.hash(&mut hasher);
        for v in [&f.git, &f.live] {
            match v {
                Some(v) => crate::object::hash_value(v, &mut hasher),
                None => 9u8.hash(&mut hasher),
            }
        }
        match &f.why {
            Why::Pending { commit, .. } => ("pending", commit).hash(&mut hasher),
            Why::OutOfBand {
                manager,
                operation,
                subresource,
                ..
            } => ("out-of-band", manager, operation, subresource).hash(&mut hasher),
            Why::Unrecorded => "unrecorded".hash(&mut hasher),
        }
    }
    hasher.finish()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(7)]
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Reads the tracked tips every `interval`: HEAD of a local checkout, or the tracked ref of a
/// cache clone after a fetch.
async fn poll_git(
    targets: tokio::sync::watch::Receiver<Vec<crate::git::poll::PollTarget>>,
    interval: Duration,
    cache_root: PathBuf,
    tx: mpsc::Sender<Msg>,
) {
    loop {
        tokio::time::sleep(interval).await;
        let list = targets.borrow().clone();
        if list.is_empty() {
            continue;
        }
        let root = cache_root.clone();
        let polled = tokio::task::spawn_blocking(move || {
            list.iter()
                .map(|t| (t.index, crate::git::poll::tip_now(t, &root)))
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(found) = polled else {
            return;
        };
        if tx.send(Msg::Tips(found)).await.is_err() {
            return;
        }
    }
}

/// Runs `--exec` once per event, one at a time, each bounded by `timeout`.
async fn run_hooks(
    command: String,
    timeout: Duration,
    mut events: mpsc::Receiver<(String, String)>,
    tx: mpsc::Sender<Msg>,
) {
    while let Some((object, json)) = events.recv().await {
        if let Err(message) = crate::process::run_hook(&command, &json, timeout).await {
            let _ = tx
                .send(Msg::Hook(format!(
                    "--exec for the event of {object}: {message}"
                )))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::FieldReport;
    use serde_json::{Value, json};

    fn report(status: Status, fields: Vec<FieldReport>) -> ObjectReport {
        ObjectReport {
            object: ObjectKey {
                group: String::new(),
                kind: "ConfigMap".into(),
                namespace: Some("ns".into()),
                name: "c".into(),
            },
            status,
            verdict: None,
            source: None,
            fields,
            ignored: Vec::new(),
            error: None,
        }
    }

    fn field(live: &str, manager: &str, time: &str) -> FieldReport {
        FieldReport {
            path: ".data.key".into(),
            git: Some(json!("value")),
            live: Some(json!(live)),
            why: Why::OutOfBand {
                manager: manager.into(),
                operation: "Update".into(),
                time: Some(time.into()),
                subresource: None,
            },
            ignored_by: None,
            may_be_server_default: Vec::new(),
        }
    }

    #[test]
    fn a_verdict_changes_with_fields_values_and_managers_not_with_times() {
        let base = verdict_digest(&report(
            Status::Drifted,
            vec![field("x", "kubectl-patch", "2026-01-01T00:00:00Z")],
        ));
        let later = verdict_digest(&report(
            Status::Drifted,
            vec![field("x", "kubectl-patch", "2026-01-02T00:00:00Z")],
        ));
        assert_eq!(base, later, "the same drift, touched again later");
        let other_value = verdict_digest(&report(
            Status::Drifted,
            vec![field("y", "kubectl-patch", "2026-01-01T00:00:00Z")],
        ));
        assert_ne!(base, other_value);
        let other_manager = verdict_digest(&report(
            Status::Drifted,
            vec![field("x", "kubectl-edit", "2026-01-01T00:00:00Z")],
        ));
        assert_ne!(base, other_manager);
        assert_ne!(
            verdict_digest(&report(Status::InSync, vec![])),
            verdict_digest(&report(Status::Missing, vec![]))
        );
    }

    #[test]
    fn the_scope_takes_types_names_or_markers() {
        let resource = |group: &str, kind: &str, plural: &str, short: &str| Resource {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            short_names: vec![short.into()],
            namespaced: true,
            verbs: vec!["list".into(), "watch".into()],
        };
        let deployments = resource("apps", "Deployment", "deployments", "deploy");
        let configmaps = resource("", "ConfigMap", "configmaps", "cm");
        let services = resource("", "Service", "services", "svc");
        let discovery = Discovery {
            resources: vec![deployments.clone(), configmaps.clone(), services.clone()],
        };
        let object =
            |name: &str, labels: Value| json!({"metadata": {"name": name, "labels": labels}});
        let plain = |name: &str| object(name, json!({}));

        let named = ScopeFilter::new(
            &discovery,
            &["deploy".into(), "cm/settings".into(), "cm/other".into()],
        );
        assert!(named.wants(&deployments, &plain("any")));
        assert!(named.wants(&configmaps, &plain("settings")));
        assert!(!named.wants(&configmaps, &plain("unnamed")));
        assert!(!named.wants(&services, &plain("web")));
        let both = ScopeFilter::new(&discovery, &["cm/settings".into(), "configmaps".into()]);
        assert!(
            both.wants(&configmaps, &plain("unnamed")),
            "TYPE alone widens TYPE/NAME"
        );

        let default = ScopeFilter::new(&discovery, &[]);
        assert!(!default.wants(&services, &plain("web")));
        let flux = object(
            "web",
            json!({"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux"}),
        );
        assert!(default.wants(&services, &flux), "a source marker");
    }
}
