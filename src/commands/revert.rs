//! `kubectl gitops revert`: evaluates what is in scope, plans every write (`crate::revert`),
//! shows the diff and the warnings, asks, then carries the plans out and reports each result.

use std::io::Write;

use anyhow::{Result, bail};

use crate::Outcome;
use crate::cli::{GlobalArgs, RevertArgs};
use crate::drift::{self, ObjectReport};
use crate::engine::{Engine, Options, Scope, ServerSide};
use crate::env::Env;
use crate::normalize::IgnoreRule;
use crate::report::{self, Log, RevertFormat, RevertReport};
use crate::revert;
use crate::text::plural;

pub async fn run(
    global: &GlobalArgs,
    args: &RevertArgs,
    env: &Env,
    log: &Log,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome> {
    for arg in &args.objects {
        if !arg.contains('/') {
            bail!(
                "revert needs TYPE/NAME, got '{arg}'; use --all to revert every drifted object \
                 in scope"
            );
        }
    }
    if global.all_namespaces && !args.objects.is_empty() {
        bail!("a resource cannot be reverted by name across all namespaces; use -n NS, or --all");
    }
    let mut ignore = Vec::new();
    for text in &args.ignore {
        ignore.push(IgnoreRule::parse_flag(text).map_err(anyhow::Error::msg)?);
    }
    let scope = Scope {
        objects: Vec::new(),
        files: args.files.clone(),
        selector: args.selector.clone(),
        all_namespaces: global.all_namespaces,
        repo: args.repo.clone(),
        against: args.to.clone(),
    };
    let options = Options {
        server_side: ServerSide::Auto,
        concurrency: 8,
        ignore,
        refresh_discovery: false,
        summaries: false,
        render_cache_size: global.render_cache_size,
    };
    let mut engine = Engine::connect(
        &super::connect_options(global)?,
        env,
        scope.clone(),
        options,
    )
    .await?;

    // What is in scope, evaluated as `diff` evaluates it.
    let (evaluated, mut failed, mut notices) = if args.all {
        revert::all(&mut engine, env, log, err).await?
    } else {
        let (evaluated, failed) =
            revert::named(&mut engine, &args.objects, scope, env, log, err).await?;
        (evaluated, failed, Vec::new())
    };

    // The plan: every write decided before the first is sent.
    let manager_flag = args.field_manager.as_deref();
    let plans = revert::plan_all(evaluated, manager_flag, &engine.discovery.snapshot());
    let writes = plans.iter().filter(|p| p.writes()).count();

    // What will change: the diff of it, then the warnings, then the question.
    let shown: Vec<ObjectReport> = plans
        .iter()
        .filter(|p| p.writes())
        .map(|p| p.shown.clone())
        .collect();
    let ask = writes > 0 && !args.yes && !args.dry_run;
    if writes > 0 {
        let drift = drift::DriftReport::new("auto", shown);
        match args.output {
            RevertFormat::Text => report::render_diff(out, &drift, report::DiffFormat::Diff)?,
            // Machine output keeps stdout for the report; a person about to answer sees the
            // diff on stderr.
            _ if ask && env.stdin_tty => {
                report::render_diff(err, &drift, report::DiffFormat::Diff)?
            }
            _ => {}
        }
        out.flush()?;
    }
    notices.extend(revert::plan_notices(&plans));
    report::render_notices(err, &notices)?;
    if ask {
        if !env.stdin_tty {
            bail!(
                "not reverting {writes} object{} without confirmation: stdin is not a terminal; \
                 pass --yes to revert, or --dry-run to try it (nothing was written)",
                plural(writes)
            );
        }
        let question = format!(
            "Revert {writes} object{} in context '{}'?",
            plural(writes),
            engine.cluster.target.context
        );
        let stdin = std::io::stdin();
        if !report::confirm(&mut stdin.lock(), err, &question)? {
            writeln!(err, "Nothing was written.")?;
            return Ok(Outcome::Clean);
        }
    }

    revert::test_hook(env, "planned", None, err)?;
    let mut items = Vec::with_capacity(plans.len());
    for plan in plans {
        items.push(revert::execute(&engine.cluster, plan, args.dry_run, env, log, err).await?);
    }
    let report = RevertReport::new(args.dry_run, items);
    report::render_revert(out, &report, args.output)?;
    failed |= !report.all_good();
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Clean
    })
}
