//! `kubectl gitops watch`: flags to scope and settings, the first evaluation (a stop signal
//! ends it too), then `crate::watch` follows the cluster and Git.

use std::cell::RefCell;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use anyhow::Result;

use crate::Outcome;
use crate::cli::{GlobalArgs, WatchArgs};
use crate::engine::{Engine, Options, Scope};
use crate::env::{Env, unix_now};
use crate::normalize::IgnoreRule;
use crate::process::StopSignals;
use crate::report::Log;
use crate::source::Locator;
use crate::text::single_line;
use crate::watch;

use super::fleet;

pub async fn run(
    global: &GlobalArgs,
    args: &WatchArgs,
    env: &Env,
    log: &Log,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome> {
    let started = Instant::now();
    let (scope, options) = settings(global, args)?;
    if let Some(contexts) = fleet::contexts(global, env)? {
        return run_fleet(
            global,
            args,
            &contexts,
            (scope, options),
            started,
            env,
            log,
            out,
            err,
        )
        .await;
    }
    let locator = Engine::locator(&scope, env, &options);
    let one = One {
        global,
        args,
        scope,
        options,
        locator,
        context: None,
        started,
    };
    one.watch(env, log, out, err).await
}

/// The scope and options the flags ask for.
fn settings(global: &GlobalArgs, args: &WatchArgs) -> Result<(Scope, Options)> {
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
    let options = Options {
        server_side: args.server_side,
        concurrency: args.concurrency,
        ignore,
        refresh_discovery: false,
        summaries: true,
        render_cache_size: global.render_cache_size,
    };
    Ok((scope, options))
}

/// One context watched: connect, the first evaluation (a stop signal ends it too), then
/// `crate::watch` follows the cluster and Git.
struct One<'a> {
    global: &'a GlobalArgs,
    args: &'a WatchArgs,
    scope: Scope,
    options: Options,
    locator: Arc<Locator>,
    /// Named in every event when several contexts are watched.
    context: Option<String>,
    started: Instant,
}

impl One<'_> {
    async fn watch(
        self,
        env: &Env,
        log: &Log,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<Outcome> {
        let start_unix = unix_now();
        let args = self.args;
        let cache_root = crate::engine::repo_choice(self.scope.repo.clone(), None, env).cache_root;
        // Signals are caught from here on, so that Ctrl-C while connecting or during the first
        // evaluation stops as cleanly as later.
        let mut stop = StopSignals::new()?;
        let connect = super::connect_options(self.global)?;
        let connected = tokio::select! {
            e = Engine::connect_sharing(&connect, env, self.scope, self.options, self.locator) => Ok(e?),
            name = stop.next() => Err(name),
        };
        let mut engine = match connected {
            Ok(engine) => engine,
            Err(name) => {
                writeln!(err, "stopped ({name}) while connecting")?;
                return Ok(Outcome::Clean);
            }
        };

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
        let settings = watch::Settings {
            objects: args.objects.clone(),
            selector: args.selector.clone(),
            git_interval: args.git_interval,
            output: args.output,
            exec: args.exec.clone(),
            exec_timeout: args.exec_timeout,
            exit_on_drift: args.exit_on_drift,
            timeout: args.timeout,
            cache_root,
            context: self.context,
            started: self.started,
            start_unix,
        };
        watch::follow(
            &mut engine,
            evaluation,
            &settings,
            &mut stop,
            env,
            log,
            out,
            err,
        )
        .await
    }
}

/// `watch` over several contexts on one stream: every event names its context, every stderr
/// line is led by it. A context that cannot be watched says why and the others go on (exit 2
/// at the end); with `--exit-on-drift` the first drift anywhere ends them all.
#[allow(clippy::too_many_arguments)]
async fn run_fleet(
    global: &GlobalArgs,
    args: &WatchArgs,
    contexts: &[String],
    (scope, options): (Scope, Options),
    started: Instant,
    env: &Env,
    log: &Log,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome> {
    let locator = Engine::locator(&scope, env, &options);
    let member_env = fleet::member_env(env);
    let out = RefCell::new(out);
    let err = RefCell::new(err);
    let flags: Vec<GlobalArgs> = contexts
        .iter()
        .map(|c| fleet::member_flags(global, c))
        .collect();
    let mut running: FuturesUnordered<_> = contexts
        .iter()
        .zip(&flags)
        .map(|(context, flags)| {
            let one = One {
                global: flags,
                args,
                scope: scope.clone(),
                options: options.clone(),
                locator: locator.clone(),
                context: Some(context.clone()),
                started,
            };
            let (out, err, member_env) = (&out, &err, &member_env);
            async move {
                let mut member_out = fleet::SharedLines::new(out, None);
                let mut member_err = fleet::SharedLines::new(err, Some(context));
                let outcome = one
                    .watch(member_env, log, &mut member_out, &mut member_err)
                    .await;
                let _ = member_out.finish();
                let _ = member_err.finish();
                (context, outcome)
            }
        })
        .collect();
    let mut failed = false;
    let mut drift = false;
    while let Some((context, outcome)) = running.next().await {
        match outcome {
            Ok(Outcome::Drift) => {
                drift = true;
                if args.exit_on_drift {
                    break;
                }
            }
            Ok(Outcome::Failed) => failed = true,
            Ok(Outcome::Clean) => {}
            Err(e) => {
                failed = true;
                let mut err = err.borrow_mut();
                writeln!(
                    err,
                    "error: context {context}: {}",
                    single_line(&format!("{e:#}"))
                )?;
            }
        }
    }
    Ok(if drift {
        Outcome::Drift
    } else if failed {
        Outcome::Failed
    } else {
        Outcome::Clean
    })
}
