//! `kubectl gitops watch`: flags to scope and settings, the first evaluation (a stop signal
//! ends it too), then `crate::watch` follows the cluster and Git.

use std::io::Write;
use std::time::Instant;

use anyhow::Result;

use crate::Outcome;
use crate::cli::{GlobalArgs, WatchArgs};
use crate::engine::{Engine, Options, Scope};
use crate::env::{Env, unix_now};
use crate::normalize::IgnoreRule;
use crate::process::StopSignals;
use crate::report::Log;
use crate::watch;

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
        render_cache_size: global.render_cache_size,
    };
    let mut engine = Engine::connect(&super::connect_options(global)?, env, scope, options).await?;
    // Signals are caught from here on, so that Ctrl-C during the first evaluation stops as
    // cleanly as later.
    let mut stop = StopSignals::new()?;

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
        started,
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
