//! Git's side of a blame, read through the [`Locator`]: the kustomize patches that name the
//! object and the kustomizations that generated or transformed it, each with its lines and
//! blame at the applied commit. The one part of blame that reads.

use std::path::Path;

use serde_json::Value;

use super::{GeneratorInput, KustomizationSide, PatchSide};
use crate::fields::lines::LineIndex;
use crate::fields::{FieldPath, Segment};
use crate::git::RepoPath;
use crate::object::ObjectKey;
use crate::render::{self, Document, KUSTOMIZATION_FILES};
use crate::source::{Located, Locator};

/// The kustomize patches of the object's render root that name this object (same kind and
/// name, or a `target`), each with its documents' lines and blame.
pub fn patches(
    locator: &Locator,
    located: &Located,
    blame_cache: Option<&Path>,
    key: &ObjectKey,
) -> Vec<PatchSide> {
    let mut sides = Vec::new();
    for (file, bytes, blame) in locator.patch_files(located, blame_cache) {
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let Ok(docs) = render::documents(&file, &bytes) else {
            continue;
        };
        let is_kustomization = KUSTOMIZATION_FILES.iter().any(|k| file.ends_with(k));
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
                let Ok(patch_docs) = render::documents(&file, inline.as_bytes()) else {
                    continue;
                };
                let line = index.line(
                    &FieldPath::fields(["patches"])
                        .child(Segment::Index(i))
                        .child(Segment::field("patch")),
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
        for doc in docs.into_iter().filter(|d| names(d, &Value::Null, key)) {
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
pub fn kustomizations(
    locator: &Locator,
    located: &Located,
    blame_cache: Option<&Path>,
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
        let Ok(base) = RepoPath::parse(dir) else {
            continue;
        };
        let Some((file, bytes, blame)) = KUSTOMIZATION_FILES.iter().find_map(|name| {
            let file = base.join(name).ok()?;
            let (bytes, blame) = locator.file_with_blame(located, &file, blame_cache).ok()?;
            Some((file, bytes, blame))
        }) else {
            continue;
        };
        let Some(doc) = render::documents(file.as_str(), &bytes)
            .ok()
            .and_then(|docs| docs.into_iter().next())
        else {
            continue;
        };
        let lines = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| LineIndex::of_document(t, doc.lines))
            .unwrap_or_default();
        let inputs = super::generator_inputs(&doc.object, &located.desired)
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
fn names(doc: &Document, entry: &Value, key: &ObjectKey) -> bool {
    let kind = entry["target"]["kind"]
        .as_str()
        .or(doc.object["kind"].as_str());
    let name = entry["target"]["name"]
        .as_str()
        .or(doc.object["metadata"]["name"].as_str());
    kind == Some(key.kind.as_str()) && name.is_some_and(|n| key.name.contains(n))
}
