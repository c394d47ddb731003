//! A watch after its first evaluation: the tasks that feed it (one watch per kind, the Git
//! poller, the `--exec` worker), and the loop that takes their messages in batches.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tokio::sync::mpsc;

use super::Msg;
use super::scope::ScopeFilter;
use super::state::{Poll, Watch};
use crate::Outcome;
use crate::cluster::watcher;
use crate::drift::Status;
use crate::engine::{Engine, Evaluation};
use crate::env::Env;
use crate::git::poll::tip_now;
use crate::process::{StopSignals, release_freed_memory, run_hook};
use crate::render::chart_repo::ChartRepos;
use crate::report::{self, DriftEvent, Log, WatchFormat};
use crate::text::duration;

/// Messages waiting for the main loop; watches wait when it is this far behind.
const QUEUE: usize = 1024;
/// Events waiting for `--exec`; past this, events are not handed to it (and that is said).
const HOOK_QUEUE: usize = 256;
/// The most messages handled as one batch (several changes of one object count once).
const BATCH: usize = 512;

/// How to follow, as the command line says it.
pub struct Settings {
    /// TYPE or TYPE/NAME, as the first evaluation took them.
    pub objects: Vec<String>,
    pub selector: Option<String>,
    pub git_interval: Duration,
    pub output: WatchFormat,
    /// `--exec`: a shell command run once per event, with the event as JSON on its stdin.
    pub exec: Option<String>,
    pub exec_timeout: Duration,
    pub exit_on_drift: bool,
    pub timeout: Option<Duration>,
    /// Where remote repositories are cloned (the poller fetches them there).
    pub cache_root: PathBuf,
    /// The kube context, named in every event, when several are watched at once.
    pub context: Option<String>,
    /// When the command started.
    pub started: Instant,
    pub start_unix: i64,
}

/// Follows the cluster and Git after the first evaluation: one watch per kind, the Git poller,
/// the `--exec` worker, and the loop that handles their messages in batches, until a stop
/// signal, `--timeout`, `--exit-on-drift`, or every watch ending.
#[allow(clippy::too_many_arguments)]
pub async fn follow(
    engine: &mut Engine,
    evaluation: Evaluation,
    settings: &Settings,
    stop: &mut StopSignals,
    env: &Env,
    log: &Log,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome> {
    // After the first evaluation, which read discovery again if a TYPE was not in the cache.
    let filter = ScopeFilter::new(&engine.discovery.snapshot(), &settings.objects);
    let mut watch = Watch::new(filter, settings.selector.clone(), settings.start_unix);
    let counts = watch.follow_evaluation(evaluation);
    engine.locator.pack();
    release_freed_memory();
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
    if settings.exit_on_drift && drift_at_start {
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
    tasks.spawn(poll_tips(
        targets_rx,
        settings.git_interval,
        settings.cache_root.clone(),
        tx.clone(),
    ));
    let hooks = settings.exec.as_ref().map(|command| {
        let (hook_tx, hook_rx) = mpsc::channel::<(String, String)>(HOOK_QUEUE);
        let worker = tokio::spawn(run_hooks(
            command.clone(),
            settings.exec_timeout,
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
        duration(settings.git_interval)
    )?;

    let deadline = settings.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut ctx = Context {
        engine,
        env,
        log,
        out,
        err,
        format: settings.output,
        context: settings.context.as_deref(),
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
            release_freed_memory();
        }
        if watch.targets_changed {
            watch.targets_changed = false;
            let _ = targets_tx.send(watch.poll_targets());
        }
        if settings.exit_on_drift && ctx.drift_seen {
            break "--exit-on-drift".to_owned();
        }
    };
    let (events, drift_seen) = (ctx.events, ctx.drift_seen);
    tasks.abort_all();

    // The events already handed to --exec still reach it, within one --exec-timeout.
    if let Some((hook_tx, mut worker)) = hooks {
        drop(hook_tx);
        if tokio::time::timeout(settings.exec_timeout, &mut worker)
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
        duration(Duration::from_secs(settings.started.elapsed().as_secs())),
        watch.counts().line()
    )?;
    Ok(if settings.exit_on_drift && drift_seen {
        Outcome::Drift
    } else {
        Outcome::Clean
    })
}

/// What the loop works with, besides the watch state.
pub(super) struct Context<'a> {
    pub(super) engine: &'a mut Engine,
    pub(super) env: &'a Env,
    pub(super) log: &'a Log,
    pub(super) out: &'a mut dyn Write,
    pub(super) err: &'a mut dyn Write,
    pub(super) format: WatchFormat,
    pub(super) context: Option<&'a str>,
    pub(super) hook: Option<&'a mpsc::Sender<(String, String)>>,
    pub(super) events: usize,
    pub(super) drift_seen: bool,
}

impl Context<'_> {
    /// Prints an event, hands it to `--exec`, and notes drift.
    pub(super) fn emit(&mut self, mut event: DriftEvent) -> Result<()> {
        event.context = self.context.map(str::to_owned);
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

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Reads the tracked tips every `interval`: HEAD of a local checkout, the tracked ref of a
/// cache clone after a fetch, or what a chart's version range picks in its repository now.
/// Each round is sent, with no tips too: objects in error are tried again at the rounds.
async fn poll_tips(
    targets: tokio::sync::watch::Receiver<Vec<Poll>>,
    interval: Duration,
    cache_root: PathBuf,
    tx: mpsc::Sender<Msg>,
) {
    loop {
        tokio::time::sleep(interval).await;
        let list = targets.borrow().clone();
        let root = cache_root.clone();
        let polled = tokio::task::spawn_blocking(move || {
            // Each index read (and OCI tags listed) once per round, for all its charts.
            let charts = ChartRepos::default();
            list.iter()
                .map(|poll| match poll {
                    Poll::Git(t) => (t.index, tip_now(t, &root)),
                    Poll::Chart(index, chart) => (*index, charts.picked(chart)),
                })
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
        if let Err(message) = run_hook(&command, &json, timeout).await {
            let _ = tx
                .send(Msg::Hook(format!(
                    "--exec for the event of {object}: {message}"
                )))
                .await;
        }
    }
}
