//! `kubectl gitops trace TYPE/NAME...`: where objects came from. One GET per named object (one
//! LIST per TYPE given without a name), then the mapping rules, sharing Git reads.

use std::cell::RefCell;
use std::io::Write;
use std::sync::Arc;

use anyhow::Result;

use crate::Outcome;
use crate::cli::{GlobalArgs, TraceArgs};
use crate::cluster::cache::CachedDiscovery;
use crate::cluster::{self, Cluster, LiveObject};
use crate::engine;
use crate::env::Env;
use crate::object::ObjectKey;
use crate::report::{self, ContextTrace, FleetTraceReport, Log, TraceItem, TraceReport};
use crate::source::{self, Locator};

use super::fleet;

pub async fn run(
    global: &GlobalArgs,
    args: &TraceArgs,
    env: &Env,
    log: &Log,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome> {
    let choice = engine::repo_choice(args.repo.clone(), None, env);
    let locator = Arc::new(engine::new_locator(choice, env, global.render_cache_size));
    if let Some(contexts) = fleet::contexts(global, env)? {
        return run_fleet(global, args, &contexts, locator, env, log, out, err).await;
    }
    let cluster = cluster::connect(&super::connect_options(global)?, env).await?;
    let (items, failed) = trace(&cluster, global, args, &locator, log, err).await?;
    log.debug(err, 1, || locator.reads.summary());
    locator.flush_warnings(err);
    let report = TraceReport {
        items: shown(items, args.output),
    };
    report::render_trace(out, &report, args.output)?;
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Clean
    })
}

/// What is shown: text shows what was found (errors are already on stderr); the other formats
/// every object.
fn shown(items: Vec<TraceItem>, format: report::TraceFormat) -> Vec<TraceItem> {
    match format {
        report::TraceFormat::Text => items.into_iter().filter(|i| i.source.is_some()).collect(),
        _ => items,
    }
}

/// The objects `args` names in `cluster`, each with its source or why it has none; whether
/// some could not be traced (said on `err`).
async fn trace(
    cluster: &Cluster,
    global: &GlobalArgs,
    args: &TraceArgs,
    locator: &Locator,
    log: &Log,
    err: &mut dyn Write,
) -> Result<(Vec<TraceItem>, bool)> {
    // Read from the server, not the cache: a miss is then final.
    let discovery = CachedDiscovery::fixed(cluster.discovery().await?);
    let mut failed = false;
    let mut report_error = |err: &mut dyn Write, what: &str, message: String| {
        failed = true;
        let _ = writeln!(err, "error: {what}: {}", crate::text::single_line(&message));
    };

    let mut live_objects: Vec<LiveObject> = Vec::new();
    for arg in &args.objects {
        match fetch(cluster, &discovery, global, args, arg).await {
            Ok(found) => live_objects.extend(found),
            Err(message) => report_error(err, arg, message),
        }
    }
    log.debug(err, 1, || {
        format!("{} live objects to trace", live_objects.len())
    });

    let reconcilers = source::ReconcilerCache::default();
    let mut items = Vec::new();
    for live in &live_objects {
        let Some(key) = ObjectKey::of(live) else {
            continue;
        };
        let located = match source::pointer(cluster, &discovery, &reconcilers, live).await {
            Ok(pointer) => locator.locate(pointer, &key),
            Err(e) => Err(e),
        };
        match located {
            Ok(source) => items.push(TraceItem {
                object: key,
                source: Some(source),
                error: None,
            }),
            Err(e) => {
                report_error(err, &key.to_string(), e.to_string());
                items.push(TraceItem {
                    object: key,
                    source: None,
                    error: Some(e.to_string()),
                });
            }
        }
    }
    Ok((items, failed))
}

/// `trace` in every context: the same objects looked up in each, Git read once for all.
#[allow(clippy::too_many_arguments)]
async fn run_fleet(
    global: &GlobalArgs,
    args: &TraceArgs,
    contexts: &[String],
    locator: Arc<Locator>,
    env: &Env,
    log: &Log,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome> {
    let member_env = fleet::member_env(env);
    let shared_err = RefCell::new(err);
    let members = fleet::each(
        contexts,
        global.context_concurrency,
        &shared_err,
        |context, mut said| {
            let (locator, member_env) = (locator.clone(), &member_env);
            async move {
                let result = async {
                    let flags = fleet::member_flags(global, &context);
                    let cluster =
                        cluster::connect(&super::connect_options(&flags)?, member_env).await?;
                    let (items, failed) =
                        trace(&cluster, &flags, args, &locator, log, &mut said).await?;
                    anyhow::Ok((cluster.target.server.clone(), items, failed))
                }
                .await;
                (result, said)
            }
        },
    )
    .await;
    let err = shared_err.into_inner();
    let mut failed_any = false;
    let mut contexts_traced = Vec::new();
    for member in members {
        contexts_traced.push(match member.result {
            Ok((server, items, failed)) => {
                failed_any |= failed;
                ContextTrace {
                    context: member.context,
                    server: Some(server),
                    error: None,
                    report: TraceReport {
                        items: shown(items, args.output),
                    },
                }
            }
            Err(e) => {
                failed_any = true;
                let message = crate::text::single_line(&format!("{e:#}"));
                writeln!(err, "error: context {}: {message}", member.context)?;
                ContextTrace {
                    context: member.context,
                    server: None,
                    error: Some(message),
                    report: TraceReport { items: Vec::new() },
                }
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
    locator.flush_warnings(err);
    let report = FleetTraceReport {
        contexts: contexts_traced,
    };
    report::render_fleet_trace(out, &report, args.output)?;
    Ok(if failed_any {
        Outcome::Failed
    } else {
        Outcome::Clean
    })
}

/// The live objects one argument names: `TYPE/NAME` (a GET) or `TYPE` (a LIST).
async fn fetch(
    cluster: &Cluster,
    discovery: &CachedDiscovery,
    global: &GlobalArgs,
    args: &TraceArgs,
    arg: &str,
) -> Result<Vec<LiveObject>, String> {
    let (type_text, name) = match arg.split_once('/') {
        Some((t, n)) => (t, Some(n)),
        None => (arg, None),
    };
    let resource = discovery
        .resolve(type_text)
        .await
        .map_err(|e| e.to_string())?;
    let namespace = cluster.target.namespace.as_str();
    match name {
        Some(name) => {
            let ns = resource.namespaced.then_some(namespace);
            match cluster
                .get(&resource, ns, name)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(object) => Ok(vec![object]),
                None => Err(match ns {
                    Some(ns) => format!(
                        "{} \"{name}\" not found in namespace \"{ns}\"",
                        resource.qualified_name()
                    ),
                    None => format!("{} \"{name}\" not found", resource.qualified_name()),
                }),
            }
        }
        None => {
            let ns = (resource.namespaced && !global.all_namespaces).then_some(namespace);
            cluster
                .list(&resource, ns, args.selector.as_deref())
                .await
                .map_err(|e| e.to_string())
        }
    }
}
