//! `kubectl gitops blame TYPE/NAME`: one GET, the mapping rules, the source file's Git blame at
//! the applied commit (cached on disk), and managedFields; the pure join is in `blame.rs`.

use std::io::Write;

use anyhow::{Result, anyhow};

use crate::Outcome;
use crate::blame::{self, GeneratorInput, GitSide, KustomizationSide, PatchSide};
use crate::cli::{BlameArgs, GlobalArgs};
use crate::cluster;
use crate::env::Env;
use crate::fields::ManagedFields;
use crate::fields::lines::LineIndex;
use crate::normalize;
use crate::object::ObjectKey;
use crate::report::{self, Log};
use crate::source::{self, Locator, ReconcilerCache, RepoChoice};

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

    let locator = Locator::new(RepoChoice {
        flag: args.repo.clone(),
        cwd: env.cwd.clone(),
        cache_root: cache_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join("repos"),
        against: None,
    })
    .with_render_cache(crate::render::RenderCache::for_env(
        env,
        global.render_cache_size,
    ))
    .recording_transformers();
    let reconcilers = ReconcilerCache::default();
    let located = match source::pointer(&cluster, &discovery, &reconcilers, &live).await {
        Ok(pointer) => locator.locate(pointer, &key),
        Err(e) => Err(e),
    };
    // Without a source, blame still shows who owns every line, and says why Git is missing.
    let mut failed = None;
    let git = match located {
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
            let blame_cache = cache_dir.as_ref().map(|d| d.join("blame"));
            match locator.source_file(&located, blame_cache.as_deref()) {
                Ok((text, lines)) => {
                    // A generated object's file is the kustomization that configures it: its
                    // lines are claimed by the generator entry, not by their field paths.
                    let index = std::str::from_utf8(&text)
                        .ok()
                        .filter(|_| located.built_by.generator.is_none())
                        .and_then(|t| LineIndex::of_document(t, located.lines))
                        .unwrap_or_default();
                    let patches = patch_sides(&locator, &located, blame_cache.as_deref(), &key);
                    let kustomizations =
                        kustomization_sides(&locator, &located, blame_cache.as_deref());
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
    let records = blame::blame(&shown, side.as_ref(), &managed, node);
    let records = mask_secret(&key, records);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    report::render_blame(out, &records, args.output, args.time, now)?;
    match failed {
        Some(reason) => {
            writeln!(
                err,
                "error: {key}: {}; lines show their field managers only",
                crate::cluster::single_line(&reason)
            )?;
            Ok(Outcome::Failed)
        }
        None => Ok(Outcome::Clean),
    }
}

/// The kustomize patches of the object's render root that name this object (same kind and
/// name, or a `target`), each with its documents' lines and blame.
fn patch_sides(
    locator: &Locator,
    located: &crate::source::Located,
    blame_cache: Option<&std::path::Path>,
    key: &ObjectKey,
) -> Vec<PatchSide> {
    let mut sides = Vec::new();
    for (file, bytes, blame) in locator.patch_files(located, blame_cache) {
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let Ok(docs) = crate::render::documents(&file, &bytes) else {
            continue;
        };
        let is_kustomization = crate::render::KUSTOMIZATION_FILES
            .iter()
            .any(|k| file.ends_with(k));
        if is_kustomization {
            // Inline patches: YAML inside a string; their line is the `patch:` entry's.
            let Some(k) = docs.first() else { continue };
            let index = LineIndex::of_document(text, k.lines).unwrap_or_default();
            for (i, entry) in k.object["patches"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let Some(inline) = entry["patch"].as_str() else {
                    continue;
                };
                let Ok(patch_docs) = crate::render::documents(&file, inline.as_bytes()) else {
                    continue;
                };
                let line = index.line(
                    &crate::fields::FieldPath::fields(["patches"])
                        .child(crate::fields::Segment::Index(i))
                        .child(crate::fields::Segment::field("patch")),
                );
                for doc in patch_docs.into_iter().filter(|d| names(d, entry, key)) {
                    sides.push(PatchSide {
                        file: file.clone(),
                        object: doc.object,
                        lines: LineIndex::default(),
                        fixed_line: line,
                        blame: blame.clone(),
                    });
                }
            }
            continue;
        }
        for doc in docs
            .into_iter()
            .filter(|d| names(d, &serde_json::Value::Null, key))
        {
            let lines = LineIndex::of_document(text, doc.lines).unwrap_or_default();
            sides.push(PatchSide {
                file: file.clone(),
                object: doc.object,
                lines,
                fixed_line: None,
                blame: blame.clone(),
            });
        }
    }
    sides
}

/// The kustomizations that generated the object or ran transformers over it, as kustomize's
/// build metadata names them, each as written at the applied commit with its blame; and the
/// render root's, whose generators may have made an object this one refers to. A kustomization
/// that cannot be read is left out: its values then show as their nearest written line.
fn kustomization_sides(
    locator: &Locator,
    located: &crate::source::Located,
    blame_cache: Option<&std::path::Path>,
) -> Vec<KustomizationSide> {
    let built = &located.built_by;
    let mut dirs: Vec<&str> = Vec::new();
    for builtin in built.generator.iter().chain(&built.transformers) {
        if !dirs.contains(&builtin.dir.as_str()) {
            dirs.push(&builtin.dir);
        }
    }
    let root = located.render_root.trim_start_matches("./");
    let root = if root == "." { "" } else { root };
    if !dirs.is_empty() && !dirs.contains(&root) {
        dirs.push(root);
    }
    let mut sides = Vec::new();
    for dir in dirs {
        let Ok(base) = crate::git::RepoPath::parse(dir) else {
            continue;
        };
        let Some((file, bytes, blame)) =
            crate::render::KUSTOMIZATION_FILES.iter().find_map(|name| {
                let file = base.join(name).ok()?;
                let (bytes, blame) = locator.file_with_blame(located, &file, blame_cache).ok()?;
                Some((file, bytes, blame))
            })
        else {
            continue;
        };
        let Some(doc) = crate::render::documents(file.as_str(), &bytes)
            .ok()
            .and_then(|docs| docs.into_iter().next())
        else {
            continue;
        };
        let lines = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| LineIndex::of_document(t, doc.lines))
            .unwrap_or_default();
        let inputs = blame::generator_inputs(&doc.object, &located.desired)
            .into_iter()
            .filter_map(|written| {
                let input = base.join(&written).ok()?;
                let (bytes, blame) = locator.file_with_blame(located, &input, blame_cache).ok()?;
                Some(GeneratorInput {
                    written,
                    file: input.as_str().to_owned(),
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                    blame,
                })
            })
            .collect();
        sides.push(KustomizationSide {
            file: file.as_str().to_owned(),
            object: doc.object,
            lines,
            blame,
            transformers: built
                .transformers
                .iter()
                .filter(|t| t.dir == dir)
                .map(|t| t.kind.clone())
                .collect(),
            generated: built.generator.as_ref().is_some_and(|g| g.dir == dir),
            inputs,
        });
    }
    sides
}

/// Whether a patch document (or its kustomization entry's `target`) names the object, by kind
/// and by a name the live name contains (namePrefix and nameSuffix apply to patches too).
fn names(doc: &crate::render::Document, entry: &serde_json::Value, key: &ObjectKey) -> bool {
    let kind = entry["target"]["kind"]
        .as_str()
        .or(doc.object["kind"].as_str());
    let name = entry["target"]["name"]
        .as_str()
        .or(doc.object["metadata"]["name"].as_str());
    kind == Some(key.kind.as_str()) && name.is_some_and(|n| key.name.contains(n))
}

/// Secret values never reach the output: their lines keep the key, the value is masked.
fn mask_secret(key: &ObjectKey, mut records: Vec<blame::BlameRecord>) -> Vec<blame::BlameRecord> {
    if !(key.group.is_empty() && key.kind == "Secret") {
        return records;
    }
    for r in &mut records {
        if (r.path.starts_with(".data.")
            || r.path.starts_with(".stringData.")
            || r.path.starts_with(".data["))
            && let Some((label, _)) = r.text.split_once(": ")
        {
            r.text = format!("{label}: (hidden)");
        }
    }
    records
}
