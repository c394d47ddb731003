//! `kubectl gitops blame TYPE/NAME`: one GET, the mapping rules, the source file's Git blame at
//! the applied commit (cached on disk), and managedFields; the pure join is in `crate::blame`.

use std::io::Write;

use anyhow::{Result, anyhow};

use crate::Outcome;
use crate::blame::{self, GitSide, sides};
use crate::cli::{BlameArgs, GlobalArgs};
use crate::cluster;
use crate::env::Env;
use crate::fields::ManagedFields;
use crate::fields::lines::LineIndex;
use crate::normalize;
use crate::object::ObjectKey;
use crate::report::{self, Log};
use crate::source::{self, ReconcilerCache};

pub async fn run(
    global: &GlobalArgs,
    args: &BlameArgs,
    env: &Env,
    log: &Log,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome> {
    let options = super::connect_options(global)?;
    let cluster = cluster::connect(&options, env).await?;
    let cache_dir = env.cache_dir.clone();
    let discovery =
        cluster::cache::CachedDiscovery::read(&cluster, cache_dir.as_deref(), false).await?;
    let (type_text, name) = args.object.split_once('/').ok_or_else(|| {
        anyhow!(
            "{}: name the object as TYPE/NAME, e.g. deploy/web",
            args.object
        )
    })?;
    let resource = discovery.resolve(type_text).await?;
    let namespace = cluster.target.namespace.clone();
    let ns = resource.namespaced.then_some(namespace.as_str());
    let live = cluster
        .get(&resource, ns, name)
        .await?
        .ok_or_else(|| match ns {
            Some(ns) => anyhow!(
                "{} \"{name}\" not found in namespace \"{ns}\"",
                resource.qualified_name()
            ),
            None => anyhow!("{} \"{name}\" not found", resource.qualified_name()),
        })?;
    let key = ObjectKey::of(&live)
        .ok_or_else(|| anyhow!("the server returned an object without kind or name"))?;
    let managed = match ManagedFields::of(&live) {
        Ok(m) => m,
        Err(e) => {
            writeln!(
                err,
                "warning: {key}: unreadable managedFields ({e}); those lines show as server defaults"
            )?;
            ManagedFields {
                entries: Vec::new(),
            }
        }
    };

    let choice = crate::engine::repo_choice(args.repo.clone(), None, env);
    let locator =
        crate::engine::new_locator(choice, env, global.render_cache_size).recording_transformers();
    let reconcilers = ReconcilerCache::default();
    let blame_cache = cache_dir.as_ref().map(|d| d.join("blame"));
    // A HelmRelease's object: the chart rendered as applied, and once per value.
    let mut chart_side = None;
    // Values from Secrets its reconciler put into the object: hidden, as in diff.
    let mut secrets = Vec::new();
    // A Secret of its reconciler the user may not read: any value may hold one of its.
    let mut secrets_unknown = false;
    let located = match source::pointer(&cluster, &discovery, &reconcilers, &live).await {
        Ok(pointer) => {
            secrets = pointer
                .as_ref()
                .map(source::Pointer::secret_texts)
                .unwrap_or_default();
            let chart_pointer = pointer
                .as_ref()
                .filter(|p| {
                    p.helm.is_some()
                        || std::iter::once(*p)
                            .chain(&p.more_sources)
                            .any(|s| s.argo_helm.is_some())
                })
                .cloned();
            let located = locator.locate(pointer, &key);
            if let (Some(p), Ok(l)) = (&chart_pointer, &located) {
                // A multi-source Application: the source that declares the object.
                let p = match l.source_index {
                    0 => p,
                    i => p.more_sources.get(i - 1).unwrap_or(p),
                };
                if l.helm.is_some() {
                    chart_side = Some(locator.helm_blame(p, l, &key, blame_cache.as_deref()));
                } else if l.chart.is_some() {
                    chart_side =
                        Some(locator.argo_helm_blame(p, l, (&key, &live), blame_cache.as_deref()));
                }
            }
            located
        }
        Err(e) => {
            secrets_unknown = matches!(e, source::SourceError::SecretUnreadable(_));
            Err(e)
        }
    };
    // Without a source, blame still shows who owns every line, and says why Git is missing.
    let mut failed = None;
    let mut chart = None;
    let git = match located {
        Ok(located) if located.helm.is_some() || located.chart.is_some() => {
            match chart_side {
                Some(Ok((side, unchangeable))) => {
                    if !unchangeable.is_empty() {
                        writeln!(
                            err,
                            "warning: {key}: with {} changed the chart fails to render or no \
                             longer renders the object, so no line is tied to the chart itself \
                             (one those values set would be); lines no value sets show their \
                             field managers",
                            unchangeable.join(", ")
                        )?;
                    }
                    chart = Some((side, located.desired.clone()));
                }
                Some(Err(e)) => failed = Some(e.to_string()),
                None => failed = Some("its HelmRelease or Application could not be read".into()),
            }
            None
        }
        Ok(located) if located.desired_at_tip.is_none() => {
            failed = Some(format!(
                "{} no longer declares it at {} (orphaned: the source file or document was removed)",
                located.tip_place.0,
                located
                    .tracked_commit
                    .as_deref()
                    .map(|c| &c[..c.len().min(7)])
                    .unwrap_or("the tip")
            ));
            None
        }
        Ok(located) => {
            match locator.source_file(&located, blame_cache.as_deref()) {
                Ok((text, lines)) => {
                    // A generated object's file is the kustomization that configures it: its
                    // lines are claimed by the generator entry, not by their field paths.
                    let index = std::str::from_utf8(&text)
                        .ok()
                        .filter(|_| located.built_by.generator.is_none())
                        .and_then(|t| LineIndex::of_document(t, located.lines))
                        .unwrap_or_default();
                    let patches = sides::patches(&locator, &located, blame_cache.as_deref(), &key);
                    let kustomizations =
                        sides::kustomizations(&locator, &located, blame_cache.as_deref());
                    Some((located, index, lines, patches, kustomizations))
                }
                Err(e) => {
                    failed = Some(e.to_string());
                    None
                }
            }
        }
        Err(e) => {
            failed = Some(e.to_string());
            None
        }
    };
    log.debug(err, 1, || locator.reads.summary());
    locator.flush_warnings(err);
    let schemas = cluster::openapi::schemas(
        &cluster,
        &[resource.api_version()],
        cache_dir.as_deref(),
        false,
    )
    .await
    .unwrap_or_else(|_| crate::schema::Schemas::new());
    let node = schemas.kind(&resource.group, &resource.version, &resource.kind);
    let mut shown = live.clone();
    normalize::strip(&mut shown);
    let side = git
        .as_ref()
        .map(|(located, index, lines, patches, kustomizations)| GitSide {
            desired: &located.desired,
            written: &located.written,
            file: &located.file,
            lines: index,
            blame: lines,
            patches,
            kustomizations,
        });
    let records = match &chart {
        Some((side, desired)) => blame::annotate_chart(&shown, desired, side, &managed, node),
        None => blame::annotate(&shown, side.as_ref(), &managed, node),
    };
    let records = blame::mask_secret(&key, records, &secrets, secrets_unknown);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    report::render_blame(out, &records, args.output, args.time, now)?;
    match failed {
        Some(reason) => {
            writeln!(
                err,
                "error: {key}: {}; lines show their field managers only{}",
                crate::text::redact(&crate::text::single_line(&reason), &secrets),
                if secrets_unknown {
                    ", and every value is hidden (any of them may come from that Secret)"
                } else {
                    ""
                }
            )?;
            Ok(Outcome::Failed)
        }
        None => Ok(Outcome::Clean),
    }
}
