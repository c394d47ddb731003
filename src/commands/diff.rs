//! `kubectl gitops diff`: the shared evaluation over the scope the command line gives, rendered
//! as a drift report.

use std::io::Write;

use anyhow::Result;

use crate::Outcome;
use crate::cli::{DiffArgs, GlobalArgs};
use crate::drift::{DriftReport, FieldReport};
use crate::engine::{Engine, Options, Scope};
use crate::env::Env;
use crate::normalize::{self, IgnoreRule};
use crate::object::ObjectKey;
use crate::report::{self, Log};

pub async fn run(
    global: &GlobalArgs,
    args: &DiffArgs,
    env: &Env,
    log: &Log,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome> {
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
    let mut engine = Engine::connect(&super::connect_options(global)?, env, scope, options).await?;
    let evaluation = engine.evaluate(env, log, err).await?;
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
