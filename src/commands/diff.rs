//! `kubectl gitops diff`: the shared evaluation over the scope the command line gives, rendered
//! as a drift report.

use std::cell::RefCell;
use std::io::Write;

use anyhow::Result;

use crate::Outcome;
use crate::cli::{DiffArgs, GlobalArgs};
use crate::drift::{DriftReport, FieldReport};
use crate::engine::{Engine, Options, Scope};
use crate::env::Env;
use crate::normalize::{self, IgnoreRule};
use crate::object::ObjectKey;
use crate::report::{self, ContextDrift, FleetDriftReport, Log};
use crate::text::single_line;

use super::fleet;

pub async fn run(
    global: &GlobalArgs,
    args: &DiffArgs,
    env: &Env,
    log: &Log,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome> {
    let (scope, options) = settings(global, args)?;
    if let Some(contexts) = fleet::contexts(global, env)? {
        return run_fleet(
            global,
            args,
            &contexts,
            (scope, options),
            env,
            log,
            out,
            err,
        )
        .await;
    }
    let mut engine = Engine::connect(&super::connect_options(global)?, env, scope, options).await?;
    let evaluation = engine.evaluate(env, log, err).await?;
    log.debug(err, 1, || {
        format!("diff done, Git read: {}", engine.locator.reads.summary())
    });
    let report = DriftReport::new(args.server_side.as_str(), evaluation.reports());
    report::render_diff(out, &report, args.output)?;
    if args.show_ignored {
        show_ignored(out, &report)?;
    }
    Ok(if evaluation.failed {
        Outcome::Failed
    } else if report.has_drift() {
        Outcome::Drift
    } else {
        Outcome::Clean
    })
}

/// The scope and options the flags ask for.
fn settings(global: &GlobalArgs, args: &DiffArgs) -> Result<(Scope, Options)> {
    let mut ignore = Vec::new();
    for text in &args.ignore {
        ignore.push(IgnoreRule::parse_flag(text).map_err(anyhow::Error::msg)?);
    }
    let scope = Scope {
        objects: args.objects.clone(),
        files: args.files.clone(),
        selector: args.selector.clone(),
        all_namespaces: global.all_namespaces,
        repo: args.repo.clone(),
        against: args.against.clone(),
    };
    let options = Options {
        server_side: args.server_side,
        concurrency: args.concurrency,
        ignore,
        refresh_discovery: args.refresh_discovery,
        summaries: false,
        render_cache_size: global.render_cache_size,
    };
    Ok((scope, options))
}

/// `diff` over several contexts: each evaluated on its own connection, all at once, Git read
/// once for all; one [`FleetDriftReport`].
#[allow(clippy::too_many_arguments)]
async fn run_fleet(
    global: &GlobalArgs,
    args: &DiffArgs,
    contexts: &[String],
    (scope, options): (Scope, Options),
    env: &Env,
    log: &Log,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome> {
    let locator = Engine::locator(&scope, env, &options);
    let member_env = fleet::member_env(env);
    let shared_err = RefCell::new(err);
    let members = fleet::each(
        contexts,
        global.context_concurrency,
        &shared_err,
        |context, mut said| {
            let (scope, options, locator) = (scope.clone(), options.clone(), locator.clone());
            let member_env = &member_env;
            async move {
                let result = async {
                    let connect = super::connect_options(&fleet::member_flags(global, &context))?;
                    let mut engine =
                        Engine::connect_sharing(&connect, member_env, scope, options, locator)
                            .await?;
                    let server = engine.cluster.target.server.clone();
                    let evaluation = engine.evaluate(member_env, log, &mut said).await?;
                    let report = DriftReport::new(args.server_side.as_str(), evaluation.reports());
                    anyhow::Ok((server, report, evaluation.failed))
                }
                .await;
                (result, said)
            }
        },
    )
    .await;
    let err = shared_err.into_inner();
    let mut entries = Vec::new();
    for member in members {
        entries.push(match member.result {
            Ok((server, report, failed)) => {
                ContextDrift::evaluated(member.context, server, report, failed)
            }
            Err(e) => {
                let message = single_line(&format!("{e:#}"));
                writeln!(err, "error: context {}: {message}", member.context)?;
                ContextDrift::failed(member.context, message)
            }
        });
    }
    log.debug(err, 1, || {
        format!(
            "fleet of {} contexts, Git read once for all: {}",
            contexts.len(),
            locator.reads.summary()
        )
    });
    let report = FleetDriftReport::new(args.server_side.as_str(), entries);
    report::render_fleet_diff(out, &report, args.output)?;
    if args.show_ignored {
        for entry in &report.contexts {
            if let Some(r) = &entry.report {
                writeln!(out, "\n# context {}", entry.context)?;
                show_ignored(out, r)?;
            }
        }
    }
    Ok(if report.summary.failed > 0 {
        Outcome::Failed
    } else if report.summary.drifted > 0 {
        Outcome::Drift
    } else {
        Outcome::Clean
    })
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
