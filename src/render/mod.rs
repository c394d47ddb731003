//! Source → desired objects. A YAML file renders to its documents; a kustomization renders with
//! the real `kubectl kustomize` over the tree exported at the commit, with origin annotations
//! switched on so that every rendered object names its file. Each document knows its file and
//! line range, and, when asked, the kustomizations whose generators and transformers made it.

mod cache;
pub mod chart_repo;
pub mod chart_version;
pub mod helm;
mod http;
pub mod oci;
mod remote;
pub mod sops;

pub use cache::{Lookup as CacheLookup, RenderCache, parse_size as parse_cache_size};

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::git::{CommitId, GitError, Repo, RepoPath};
use crate::markers::KUSTOMIZE_ORIGIN;
use crate::object::ObjectKey;

/// kustomize's `buildMetadata: [transformerAnnotations]` record: each transformer that ran.
pub const KUSTOMIZE_TRANSFORMATIONS: &str = "alpha.config.kubernetes.io/transformations";

/// Largest manifest we parse; a bigger one is refused, not loaded.
pub const MAX_FILE_BYTES: usize = 16 << 20;

/// File names kustomize recognises as a kustomization.
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// One desired object and where it is written.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Document {
    /// The repository file it comes from.
    pub file: String,
    /// First and last line of the document in that file, 1-based, inclusive.
    pub lines: (usize, usize),
    pub object: Value,
    /// For a kustomize render with [`Metadata::Transformers`]: what generated or changed it.
    pub built_by: BuiltBy,
}

/// The kustomize builtins that made or changed a rendered object, each with the kustomization
/// that configures it, as kustomize's build metadata names them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuiltBy {
    /// The generator that made it (`ConfigMapGenerator`, `SecretGenerator`), for a generated
    /// object.
    pub generator: Option<Builtin>,
    /// Every transformer that ran over it (`PrefixTransformer`, `LabelTransformer`,
    /// `ImageTagTransformer`...), innermost kustomization first. A transformer runs over every
    /// object of its kustomization, whether it changes it or not.
    pub transformers: Vec<Builtin>,
}

/// One kustomize builtin and where it is configured.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Builtin {
    /// `configuredBy.kind`: `PrefixTransformer`, `ConfigMapGenerator`...
    pub kind: String,
    /// The directory (repository path) of the kustomization that configures it; its file may
    /// be any of [`KUSTOMIZATION_FILES`].
    pub dir: String,
}

/// What a kustomize render records on each object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metadata {
    /// The source file only (`originAnnotations`): enough to diff.
    Origin,
    /// Also the generators and transformers (`transformerAnnotations`): what blame needs. It
    /// makes kustomize's output several times larger, so only blame asks for it.
    Transformers,
}

impl Document {
    pub fn key(&self) -> Option<ObjectKey> {
        ObjectKey::of(&self.object)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{file} is not UTF-8 text (a binary file where YAML was expected?)")]
    NotText { file: String },
    #[error("{file} is {size} bytes, over the {MAX_FILE_BYTES}-byte limit for a manifest")]
    TooLarge { file: String, size: usize },
    /// YAML reads a lone CR as a line break and Git does not, so the lines named for such a
    /// file would not be Git's (blame would point at the wrong ones).
    #[error("{file}:{line}: a carriage return without a line feed; use LF or CRLF line endings")]
    LoneCarriageReturn { file: String, line: usize },
    #[error("{file}:{line}: not valid YAML: {reason}")]
    Yaml {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("kustomize build of {root} failed: {reason}")]
    Kustomize { root: String, reason: String },
    #[error("not rendering {root}: {reason}")]
    Refused { root: String, reason: String },
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// Splits a manifest into its documents, each with its line range. Comments, anchors and
/// aliases are handled by the YAML parser, whose budget refuses billion-laughs and deep nesting.
pub fn documents(file: &str, bytes: &[u8]) -> Result<Vec<Document>, RenderError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(RenderError::TooLarge {
            file: file.to_owned(),
            size: bytes.len(),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| RenderError::NotText {
        file: file.to_owned(),
    })?;
    if bytes.contains(&0) {
        return Err(RenderError::NotText {
            file: file.to_owned(),
        });
    }
    if let Some(at) =
        (0..bytes.len()).find(|&i| bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
    {
        return Err(RenderError::LoneCarriageReturn {
            file: file.to_owned(),
            line: 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count(),
        });
    }
    let mut docs = Vec::new();
    for chunk in chunks(text) {
        let value: Value = serde_saphyr::from_str(&chunk.text).map_err(|e| {
            let line = e
                .location()
                .map(|l| l.line() as usize)
                .filter(|l| *l > 0)
                // The parser places an error at the end of the text after its last line break.
                .map(|l| (l + chunk.offset).min(chunk.last_line))
                .unwrap_or(chunk.first_line);
            let message = e.to_string();
            let first = message.lines().next().unwrap_or_default();
            // "error: line 4 column 9: unclosed bracket" -> "unclosed bracket" (we say the line).
            let reason = first
                .trim_start_matches("error: ")
                .split_once(": ")
                .filter(|(at, _)| at.starts_with("line "))
                .map(|(_, r)| r)
                .unwrap_or(first)
                .to_owned();
            RenderError::Yaml {
                file: file.to_owned(),
                line,
                reason,
            }
        })?;
        if value.is_null() {
            continue;
        }
        // A `List` (or `ConfigMapList`...) is how `kubectl get -o yaml` writes several objects;
        // `kubectl apply` applies its items, so its items are the documents, each with its lines.
        if crate::object::is_list(&value) {
            let items = crate::object::list_items(&value);
            let ranges = crate::fields::lines::list_item_ranges(&chunk.text)
                .filter(|r| r.len() == items.len());
            docs.extend(items.into_iter().enumerate().map(|(i, object)| {
                Document {
                    file: file.to_owned(),
                    lines: ranges
                        .as_ref()
                        .map_or((chunk.first_line, chunk.last_line), |r| {
                            (r[i].0 + chunk.offset, r[i].1 + chunk.offset)
                        }),
                    object,
                    built_by: BuiltBy::default(),
                }
            }));
            continue;
        }
        docs.push(Document {
            file: file.to_owned(),
            lines: (chunk.first_line, chunk.last_line),
            object: value,
            built_by: BuiltBy::default(),
        });
    }
    Ok(docs)
}

struct Chunk {
    text: String,
    /// Lines of the file before the chunk's text: the parser's line N is the file's N + offset.
    offset: usize,
    first_line: usize,
    last_line: usize,
}

/// Document boundaries are `---` lines (and `...` ends); a document's range runs from its first
/// to its last line that is neither blank nor a comment. Each chunk knows its offset in the file,
/// so parse errors point at the file's line.
fn chunks(text: &str) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut current: Vec<(usize, &str)> = Vec::new();
    let mut flush = |lines: &mut Vec<(usize, &str)>| {
        let content: Vec<usize> = lines
            .iter()
            .filter(|(_, l)| {
                let t = l.trim();
                !t.is_empty() && !t.starts_with('#')
            })
            .map(|(n, _)| *n)
            .collect();
        if let (Some(&first), Some(&last)) = (content.first(), content.last()) {
            let mut text = String::with_capacity(lines.iter().map(|(_, l)| l.len() + 1).sum());
            for (_, l) in lines.iter() {
                text.push_str(l);
                text.push('\n');
            }
            out.push(Chunk {
                text,
                offset: lines[0].0 - 1,
                first_line: first,
                last_line: last,
            });
        }
        lines.clear();
    };
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let is_start = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        let is_end = line == "..." || line.starts_with("... ");
        if is_start || is_end {
            flush(&mut current);
            // `--- !tag` or `--- value` carries content on the marker line itself.
            if is_start && line.len() > 3 && !line[3..].trim().is_empty() {
                current.push((number, &line[4..]));
            }
            continue;
        }
        if current.is_empty() && line.starts_with('%') {
            continue; // a directive such as %YAML 1.2
        }
        current.push((number, line));
    }
    flush(&mut current);
    out
}

/// Flux `spec.*` settings that kustomize-controller applies over the path it builds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    pub target_namespace: Option<String>,
    pub name_prefix: Option<String>,
    pub name_suffix: Option<String>,
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
    pub images: Vec<Value>,
    pub patches: Vec<Value>,
    pub components: Vec<String>,
}

/// Renders the kustomization at `root` as `kubectl kustomize` would, from the tree at `commit`.
/// When `generate` is set and `root` has no kustomization, one listing every manifest under it
/// is made, as kustomize-controller does; `overlay` adds a Flux Kustomization's settings.
pub fn kustomize(
    repo: &Repo,
    commit: CommitId,
    root: &RepoPath,
    overlay: &Overlay,
    generate: bool,
) -> Result<Vec<Document>, RenderError> {
    kustomize_recording(repo, commit, root, overlay, generate, Metadata::Origin)
}

/// [`kustomize`], recording `metadata` on each document.
pub fn kustomize_recording(
    repo: &Repo,
    commit: CommitId,
    root: &RepoPath,
    overlay: &Overlay,
    generate: bool,
    metadata: Metadata,
) -> Result<Vec<Document>, RenderError> {
    kustomize_cached(repo, commit, root, overlay, generate, metadata, None).map(|(docs, _)| docs)
}

/// Where a kustomize render came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Built {
    /// The render cache had it: nothing was exported or built.
    Cached,
    /// `kubectl kustomize` ran; `replaced_damaged` when a damaged cache entry was in its way,
    /// `store_error` when the result could not be kept.
    Built {
        replaced_damaged: bool,
        store_error: Option<String>,
    },
}

/// [`kustomize_recording`], through `cache` when there is one: a build whose inputs (the Git
/// objects it reads, the settings, the kubectl) are unchanged since one stored is read back.
pub fn kustomize_cached(
    repo: &Repo,
    commit: CommitId,
    root: &RepoPath,
    overlay: &Overlay,
    generate: bool,
    metadata: Metadata,
    cache: Option<&RenderCache>,
) -> Result<(Vec<Document>, Built), RenderError> {
    let paths = paths_read(repo, commit, root)?;
    let key = match cache {
        Some(cache) => {
            let ids = repo.content_ids(commit, &paths)?;
            Some(cache.key(&ids, root, overlay, generate, metadata))
        }
        None => None,
    };
    let mut replaced_damaged = false;
    if let (Some(cache), Some(key)) = (cache, &key) {
        match cache.get(key) {
            cache::Lookup::Hit(docs) => return Ok((docs, Built::Cached)),
            cache::Lookup::Damaged => replaced_damaged = true,
            cache::Lookup::Miss => {}
        }
    }
    let docs = build(repo, commit, root, &paths, overlay, generate, metadata)?;
    let store_error = match (cache, &key) {
        (Some(cache), Some(key)) => cache.put(key, &docs).err().map(|e| {
            format!(
                "cannot write the render cache in {}: {e}",
                cache.dir().display()
            )
        }),
        _ => None,
    };
    Ok((
        docs,
        Built::Built {
            replaced_damaged,
            store_error,
        },
    ))
}

/// Exports `paths` (what a build of `root` reads) and runs `kubectl kustomize` over them.
fn build(
    repo: &Repo,
    commit: CommitId,
    root: &RepoPath,
    paths: &[RepoPath],
    overlay: &Overlay,
    generate: bool,
    metadata: Metadata,
) -> Result<Vec<Document>, RenderError> {
    let tmp = tempfile::Builder::new()
        .prefix("kubectl-gitops-render-")
        .tempdir()
        .map_err(|source| RenderError::Io {
            what: "creating a temporary directory".into(),
            source,
        })?;
    repo.export_paths(commit, paths, tmp.path())?;
    let dir = tmp.path().join(root.as_str());
    let root_name = if root.as_str().is_empty() {
        "."
    } else {
        root.as_str()
    };
    let existing = KUSTOMIZATION_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file());
    let mut kustomization: serde_json::Map<String, Value> = match &existing {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|source| RenderError::Io {
                what: format!("reading {}", path.display()),
                source,
            })?;
            let docs = documents(&format!("{root_name}/kustomization.yaml"), &bytes)?;
            match docs.into_iter().next().map(|d| d.object) {
                Some(Value::Object(map)) => map,
                _ => Default::default(),
            }
        }
        None if generate => generated_kustomization(&dir)?,
        None => {
            return Err(RenderError::Kustomize {
                root: root_name.to_owned(),
                reason: "no kustomization.yaml there".into(),
            });
        }
    };
    apply_overlay(&mut kustomization, overlay);
    let build_metadata = kustomization
        .entry("buildMetadata")
        .or_insert_with(|| Value::Array(Vec::new()));
    let has = |option: &str| {
        build_metadata
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == option))
    };
    let had_origin = has("originAnnotations");
    // Asked for here, the annotation is removed below; written by the user, it is kept, since
    // the applied objects carry it too.
    let add_transformers = metadata == Metadata::Transformers && !has("transformerAnnotations");
    if let Some(list) = build_metadata.as_array_mut() {
        if !had_origin {
            list.push("originAnnotations".into());
        }
        if add_transformers {
            list.push("transformerAnnotations".into());
        }
    }
    if let Some(path) = &existing {
        std::fs::remove_file(path).map_err(|source| RenderError::Io {
            what: format!("replacing {}", path.display()),
            source,
        })?;
    }
    // JSON is YAML: kustomize reads it back as the same kustomization.
    let text = serde_json::to_string_pretty(&Value::Object(kustomization))
        .expect("a JSON map always serialises");
    let target = dir.join("kustomization.yaml");
    std::fs::write(&target, text).map_err(|source| RenderError::Io {
        what: format!("writing {}", target.display()),
        source,
    })?;
    remote::check(tmp.path(), &dir).map_err(|reason| RenderError::Refused {
        root: root_name.to_owned(),
        reason,
    })?;
    let output = run_kustomize(tmp.path(), &dir, root_name)?;
    let mut rendered = documents(&format!("{root_name} (kustomize)"), output.as_bytes())?;
    for doc in &mut rendered {
        // The transformers when asked for; the generator in every mode (a generated object's
        // source is the kustomization that configures its generator, not a document).
        let transformations = match metadata {
            Metadata::Transformers if add_transformers => {
                remove_annotation(&mut doc.object, KUSTOMIZE_TRANSFORMATIONS, false)
            }
            Metadata::Transformers => doc.object["metadata"]["annotations"]
                [KUSTOMIZE_TRANSFORMATIONS]
                .as_str()
                .map(str::to_owned),
            Metadata::Origin => None,
        };
        let origin = doc.object["metadata"]["annotations"][KUSTOMIZE_ORIGIN].as_str();
        doc.built_by = built_by(root, origin, transformations.as_deref());
        let origin = remove_annotation(&mut doc.object, KUSTOMIZE_ORIGIN, !had_origin);
        if let Some(origin) = origin
            .as_deref()
            .and_then(|o| crate::markers::parse_origin(o).ok())
            && let Ok(file) = root.join(&origin.path)
        {
            doc.file = file.as_str().to_owned();
        }
    }
    Ok(rendered)
}

/// What a build of `root` reads from the repository: `root`, and every local file and
/// directory its kustomizations refer to, transitively. Only trees and kustomization files are
/// read here; an entry that leaves the repository or names a remote base is not followed
/// (`remote::check` refuses it once exported).
fn paths_read(
    repo: &Repo,
    commit: CommitId,
    root: &RepoPath,
) -> Result<Vec<RepoPath>, RenderError> {
    let mut needed = Vec::new();
    let mut dirs_seen = std::collections::BTreeSet::new();
    let mut todo = vec![root.clone()];
    while let Some(dir) = todo.pop() {
        if !dirs_seen.insert(dir.as_str().to_owned()) {
            continue;
        }
        // Every kustomization below it: a generated kustomization lists subdirectories that have
        // one as resources, and those may refer further.
        let files = match repo.list_files(commit, &dir) {
            Ok(files) => files,
            Err(GitError::NotADirectory { .. }) => {
                needed.push(dir);
                continue;
            }
            Err(GitError::FileNotFound { .. }) => continue, // kustomize names it
            Err(e) => return Err(e.into()),
        };
        needed.push(dir);
        for file in files
            .iter()
            .filter(|f| KUSTOMIZATION_FILES.contains(&f.file_name()))
        {
            let bytes = repo.read_file(commit, file)?;
            // Text kustomize cannot read is kustomize's to report.
            let Some(kustomization) = documents(file.as_str(), &bytes)
                .ok()
                .and_then(|docs| docs.into_iter().next())
            else {
                continue;
            };
            let base = file.parent().unwrap_or_else(RepoPath::root);
            for entry in remote::local_references(&kustomization.object) {
                if let Ok(path) = base.join(&entry) {
                    todo.push(path);
                }
            }
        }
    }
    Ok(needed)
}

/// An entry of kustomize's origin or transformations annotation.
#[derive(serde::Deserialize)]
struct BuildOrigin {
    #[serde(rename = "configuredIn")]
    configured_in: Option<String>,
    #[serde(rename = "configuredBy")]
    configured_by: Option<ConfiguredBy>,
    /// Set when the kustomization is in another repository (a remote base): not ours to blame.
    repo: Option<String>,
}

#[derive(serde::Deserialize)]
struct ConfiguredBy {
    kind: Option<String>,
}

impl BuildOrigin {
    /// The builtin, with its kustomization's directory resolved against the render root.
    fn builtin(self, root: &RepoPath) -> Option<Builtin> {
        if self.repo.is_some_and(|r| !r.is_empty()) {
            return None;
        }
        let file = root.join(&self.configured_in?).ok()?;
        Some(Builtin {
            kind: self.configured_by?.kind?,
            dir: file
                .parent()
                .unwrap_or_else(RepoPath::root)
                .as_str()
                .to_owned(),
        })
    }
}

/// Reads kustomize's build metadata: a generated object's origin names its generator; the
/// transformations list every transformer that ran over the object. Unreadable text counts as
/// none (blame then attributes less, and says nothing wrong).
fn built_by(root: &RepoPath, origin: Option<&str>, transformations: Option<&str>) -> BuiltBy {
    let generator = origin
        .and_then(|o| serde_saphyr::from_str::<BuildOrigin>(o).ok())
        .and_then(|o| o.builtin(root))
        .filter(|b| b.kind.ends_with("Generator"));
    let transformers = transformations
        .and_then(|t| serde_saphyr::from_str::<Vec<BuildOrigin>>(t).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|o| o.builtin(root))
        .collect();
    BuiltBy {
        generator,
        transformers,
    }
}

/// Garbage collection for the Go tools we run (kubectl kustomize, helm): they are short-lived
/// and allocate a lot, so their collector runs at a quarter of its default rate (a third less
/// CPU for a build of a hundred objects, a few tens of MB more), under a soft memory limit.
/// The user's own `GOGC` or `GOMEMLIMIT` wins.
fn go_tool(mut cmd: Command) -> Command {
    for (var, value) in [("GOGC", "400"), ("GOMEMLIMIT", "1GiB")] {
        if std::env::var_os(var).is_none() {
            cmd.env(var, value);
        }
    }
    cmd
}

/// `kubectl kustomize` of `dir`, a directory of the scratch copy `tmp`; its errors name the
/// root as `root_name` and other files by their path in the copy (never the scratch name,
/// which differs each time).
pub(super) fn run_kustomize(
    tmp: &Path,
    dir: &Path,
    root_name: &str,
) -> Result<String, RenderError> {
    let output = go_tool(Command::new("kubectl"))
        .arg("kustomize")
        .arg(dir)
        // Never a credential prompt on the terminal behind our back.
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| RenderError::Io {
            what: "running kubectl kustomize (is kubectl on PATH?)".into(),
            source,
        })?;
    if !output.status.success() {
        let reason = crate::text::joined_lines(&String::from_utf8_lossy(&output.stderr))
            .replace(&dir.display().to_string(), root_name)
            .replace(&format!("{}/", tmp.display()), "")
            .replace(&tmp.display().to_string(), ".");
        return Err(RenderError::Kustomize {
            root: root_name.to_owned(),
            reason,
        });
    }
    String::from_utf8(output.stdout).map_err(|_| RenderError::NotText {
        file: format!("{root_name} (kustomize output)"),
    })
}

/// The documents PATH renders to: a file's own, a kustomization's build, or every manifest of
/// a plain directory.
pub fn render_path(
    repo: &Repo,
    commit: CommitId,
    path: &RepoPath,
) -> Result<Vec<Document>, RenderError> {
    let files = repo.list_files(commit, path).unwrap_or_default();
    if files.is_empty() {
        let bytes = repo.read_file(commit, path)?;
        return documents(path.as_str(), &bytes);
    }
    let prefix = if path.as_str().is_empty() {
        String::new()
    } else {
        format!("{}/", path.as_str())
    };
    let has_kustomization = KUSTOMIZATION_FILES
        .iter()
        .any(|k| files.iter().any(|f| f.as_str() == format!("{prefix}{k}")));
    if has_kustomization {
        return kustomize(repo, commit, path, &Overlay::default(), false);
    }
    let mut docs = Vec::new();
    for file in files.iter().filter(|f| {
        let p = f.as_str();
        p.ends_with(".yaml") || p.ends_with(".yml") || p.ends_with(".json")
    }) {
        let bytes = repo.read_file(commit, file)?;
        docs.extend(documents(file.as_str(), &bytes)?);
    }
    Ok(docs)
}

/// Lists every manifest under `dir` (recursively, sorted), as kustomize-controller's generator
/// does for a path without a kustomization.
fn generated_kustomization(dir: &Path) -> Result<serde_json::Map<String, Value>, RenderError> {
    let mut files = Vec::new();
    collect_manifests(dir, dir, &mut files)?;
    files.sort();
    let mut map = serde_json::Map::new();
    map.insert(
        "apiVersion".into(),
        "kustomize.config.k8s.io/v1beta1".into(),
    );
    map.insert("kind".into(), "Kustomization".into());
    map.insert(
        "resources".into(),
        Value::Array(files.into_iter().map(Value::String).collect()),
    );
    Ok(map)
}

fn collect_manifests(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), RenderError> {
    let entries = std::fs::read_dir(dir).map_err(|source| RenderError::Io {
        what: format!("listing {}", dir.display()),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            // A directory with its own kustomization is one resource, as the controller does.
            if KUSTOMIZATION_FILES.iter().any(|f| path.join(f).is_file()) {
                if let Ok(rel) = path.strip_prefix(base) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            } else {
                collect_manifests(base, &path, out)?;
            }
        } else if file_type.is_file()
            && path
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            && let Ok(rel) = path.strip_prefix(base)
        {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

fn apply_overlay(k: &mut serde_json::Map<String, Value>, overlay: &Overlay) {
    if let Some(ns) = &overlay.target_namespace {
        k.insert("namespace".into(), ns.clone().into());
    }
    if let Some(prefix) = &overlay.name_prefix {
        k.insert("namePrefix".into(), prefix.clone().into());
    }
    if let Some(suffix) = &overlay.name_suffix {
        k.insert("nameSuffix".into(), suffix.clone().into());
    }
    let mut extend = |key: &str, items: Vec<Value>| {
        if items.is_empty() {
            return;
        }
        let entry = k.entry(key).or_insert_with(|| Value::Array(Vec::new()));
        if let Some(list) = entry.as_array_mut() {
            list.extend(items);
        }
    };
    extend("images", overlay.images.clone());
    extend("patches", overlay.patches.clone());
    extend(
        "components",
        overlay
            .components
            .iter()
            .cloned()
            .map(Value::String)
            .collect(),
    );
    if !overlay.common_labels.is_empty() {
        extend(
            "labels",
            vec![serde_json::json!({"pairs": overlay.common_labels, "includeSelectors": false})],
        );
    }
    if !overlay.common_annotations.is_empty() {
        let entry = k
            .entry("commonAnnotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(map) = entry.as_object_mut() {
            for (key, value) in &overlay.common_annotations {
                map.insert(key.clone(), value.clone().into());
            }
        }
    }
}

/// Removes an annotation (and an emptied annotations map when `tidy`); returns its value.
pub fn remove_annotation(object: &mut Value, key: &str, tidy: bool) -> Option<String> {
    let metadata = object.get_mut("metadata")?.as_object_mut()?;
    let annotations = metadata.get_mut("annotations")?.as_object_mut()?;
    let value = annotations.remove(key)?.as_str().map(str::to_owned);
    if tidy && annotations.is_empty() {
        metadata.remove("annotations");
    }
    value
}

/// Flux `postBuild.substitute`: replaces `${var}`, `${var:=default}` and `${var:-default}`;
/// `$${var}` is left as `${var}`. An unset variable without a default becomes empty, as
/// kustomize-controller does (unless its strict mode is on).
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = escaped;
            continue;
        }
        let Some(body) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let Some(end) = body.find('}') else {
            out.push_str(after);
            rest = "";
            break;
        };
        let expr = &body[..end];
        let (name, default) = match expr.find(":=").or_else(|| expr.find(":-")) {
            Some(i) => (&expr[..i], Some(&expr[i + 2..])),
            None => (expr, None),
        };
        let valid =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if valid {
            match vars.get(name) {
                Some(value) => out.push_str(value),
                None => out.push_str(default.unwrap_or_default()),
            }
        } else {
            out.push_str("${");
            out.push_str(expr);
            out.push('}');
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_know_their_lines() {
        let text = "\
# leading comment
apiVersion: v1
kind: ConfigMap
metadata:
  name: a
data:
  k: v
---
# between
---
apiVersion: apps/v1
kind: Deployment
metadata: &meta
  name: b
  labels: {app: b}
spec:
  template:
    metadata: *meta

--- 
apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: Secret, metadata: {name: s}}
";
        let docs = documents("apps/x.yaml", text.as_bytes()).unwrap();
        let summary: Vec<(String, (usize, usize))> = docs
            .iter()
            .map(|d| (d.key().unwrap().name, d.lines))
            .collect();
        assert_eq!(
            summary,
            [
                ("a".to_owned(), (2, 7)),
                ("b".to_owned(), (11, 18)),
                ("s".to_owned(), (24, 24)),
            ]
        );
        // Anchors and aliases are resolved.
        assert_eq!(
            docs[1].object["spec"]["template"]["metadata"]["labels"]["app"],
            "b"
        );
    }

    #[test]
    fn the_items_of_a_typed_list_are_the_documents() {
        let text = "\
apiVersion: v1
kind: ConfigMapList
items:
- metadata:
    name: first
  data: {a: '1'}

# the second
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: second
-
  metadata: {name: third}
metadata:
  resourceVersion: \"\"
---
apiVersion: v1
kind: List
items: []
";
        let docs = documents("lists.yaml", text.as_bytes()).unwrap();
        let summary: Vec<(ObjectKey, (usize, usize))> =
            docs.iter().map(|d| (d.key().unwrap(), d.lines)).collect();
        let cm = |name: &str| ObjectKey {
            group: String::new(),
            kind: "ConfigMap".into(),
            namespace: None,
            name: name.into(),
        };
        assert_eq!(
            summary,
            [
                (cm("first"), (4, 6)),
                (cm("second"), (9, 12)),
                (cm("third"), (14, 14)),
            ]
        );
        assert_eq!(docs[0].object["apiVersion"], "v1");
        // Not a List: a kind that merely ends in "List" without items stays one object.
        let docs = documents(
            "x.yaml",
            b"apiVersion: example.com/v1\nkind: AllowList\nmetadata: {name: a}\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].object["kind"], "AllowList");
    }

    #[test]
    fn bad_files_are_named() {
        let err = documents("a.yaml", b"kind: [\n").unwrap_err();
        assert!(
            err.to_string().starts_with("a.yaml:1: not valid YAML"),
            "{err}"
        );
        let err = documents("b.yaml", b"ok: 1\n---\nkey: : :\n  - x").unwrap_err();
        assert!(err.to_string().starts_with("b.yaml:3:"), "{err}");
        let err = documents("c.yaml", &[0x89, b'P', b'N', b'G', 0, 0]).unwrap_err();
        assert!(matches!(err, RenderError::NotText { .. }), "{err}");
    }

    /// Found by `fuzz/run` (yaml_lines): a parse error at the end of the text was reported on
    /// the line after the file's last.
    #[test]
    fn an_error_at_the_end_names_the_last_line() {
        let err = documents("g.yaml", b"# The: v1\n---\t%b.com/acme/deploy.kKnd: Ne").unwrap_err();
        assert!(
            err.to_string().starts_with("g.yaml:2: not valid YAML"),
            "{err}"
        );
        let err = documents("h.yaml", b"a: 1\n---\nkey: \"open\n\n").unwrap_err();
        assert!(
            err.to_string().starts_with("h.yaml:3: not valid YAML"),
            "{err}"
        );
    }

    /// Found by `fuzz/run` (yaml_lines): YAML and Git counted the lines of this file
    /// differently, so blame named line 2 of a one-line file.
    #[test]
    fn a_lone_carriage_return_is_refused() {
        let err = documents("d.yaml", b"apiVersion: v9\rrror:  ConfigMb]\r\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "d.yaml:1: a carriage return without a line feed; use LF or CRLF line endings"
        );
        let err = documents("e.yaml", b"kind: A\n\nmetadata: {}\r").unwrap_err();
        assert!(err.to_string().starts_with("e.yaml:3: "), "{err}");
        // CRLF is one line break for both.
        let docs = documents("f.yaml", b"kind: A\r\n---\r\n\r\nkind: B\r\nx: 1\r\n").unwrap();
        let lines: Vec<_> = docs.iter().map(|d| d.lines).collect();
        assert_eq!(lines, [(1, 1), (4, 5)]);
    }

    #[test]
    fn yaml_bombs_are_refused() {
        let mut laughs = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .zip(["b", "c", "d", "e", "f", "g", "h", "i", "j"])
        {
            laughs.push_str(&format!(
                "{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
            ));
        }
        assert!(documents("bomb.yaml", laughs.as_bytes()).is_err());
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(documents("deep.yaml", deep.as_bytes()).is_err());
    }

    #[test]
    fn flux_substitution() {
        let vars: BTreeMap<String, String> = [("cluster", "eu-1"), ("replicas", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let cases = [
            ("name: app-${cluster}", "name: app-eu-1"),
            ("replicas: ${replicas}", "replicas: 3"),
            ("tier: ${tier:=web}", "tier: web"),
            ("tier: ${tier:-api}", "tier: api"),
            ("keep: $${cluster}", "keep: ${cluster}"),
            ("price: $5 and ${ bad }", "price: $5 and ${ bad }"),
            ("unset: '${nope}'", "unset: ''"),
        ];
        for (input, want) in cases {
            assert_eq!(substitute(input, &vars), want, "{input}");
        }
    }

    #[test]
    fn build_metadata_names_generators_and_transformers() {
        let root = RepoPath::parse("overlays/prod").unwrap();
        let origin = "configuredIn: kustomization.yaml\nconfiguredBy:\n  apiVersion: builtin\n  kind: ConfigMapGenerator\n";
        let transformations = "\
- configuredIn: ../../base/kustomization.yaml
  configuredBy:
    apiVersion: builtin
    kind: PrefixTransformer
- configuredIn: kustomization.yaml
  configuredBy: {apiVersion: builtin, kind: ImageTagTransformer}
- repo: https://github.com/acme/remote
  configuredIn: base/kustomization.yaml
  configuredBy: {apiVersion: builtin, kind: LabelTransformer}
";
        let builtin = |kind: &str, dir: &str| Builtin {
            kind: kind.into(),
            dir: dir.into(),
        };
        assert_eq!(
            built_by(&root, Some(origin), Some(transformations)),
            BuiltBy {
                generator: Some(builtin("ConfigMapGenerator", "overlays/prod")),
                // A remote base's kustomization is not in this repository: left out.
                transformers: vec![
                    builtin("PrefixTransformer", "base"),
                    builtin("ImageTagTransformer", "overlays/prod"),
                ],
            }
        );
        // A resource's origin is its file, not a generator.
        assert_eq!(
            built_by(&root, Some("path: ../../base/web.yaml\n"), None),
            BuiltBy::default()
        );
    }

    #[test]
    fn overlay_settings_go_into_the_kustomization() {
        let mut k = serde_json::Map::new();
        apply_overlay(
            &mut k,
            &Overlay {
                target_namespace: Some("prod".into()),
                name_prefix: Some("eu-".into()),
                components: vec!["../c".into()],
                ..Overlay::default()
            },
        );
        assert_eq!(k["namespace"], "prod");
        assert_eq!(k["namePrefix"], "eu-");
        assert_eq!(k["components"][0], "../c");
    }

    #[test]
    fn go_tools_collect_less_often_unless_the_user_says() {
        let cmd = go_tool(Command::new("kubectl"));
        let envs: BTreeMap<_, _> = cmd.get_envs().collect();
        for (var, ours) in [("GOGC", "400"), ("GOMEMLIMIT", "1GiB")] {
            let set = envs.get(std::ffi::OsStr::new(var)).copied().flatten();
            if std::env::var_os(var).is_none() {
                assert_eq!(set, Some(std::ffi::OsStr::new(ours)), "{var}");
            } else {
                assert_eq!(set, None, "the user's {var} is inherited, not replaced");
            }
        }
    }
}
