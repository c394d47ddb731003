//! kustomize builds kept on disk between runs. A build's output depends only on the files it
//! reads and on how it is asked for, so its key is the Git object ids of everything the export
//! writes (the render root and the bases it refers to, found by `paths_read`), the overlay
//! settings, and the identity of the `kubectl` that builds it. A later commit that leaves those
//! trees alone finds the same entry.
//!
//! What is stored is kustomize's output from Git alone: Flux's `postBuild` substitution runs
//! after the cache, so no substituted value (from a ConfigMap or a Secret) is ever written here,
//! and a rotated Secret does not invalidate anything.
//!
//! Entries are written to a temporary file and renamed into place, so a concurrent run sees a
//! whole entry or none; each carries a digest of its body, and an entry that fails it (or does
//! not parse) is removed and built again. The directory is bounded: after each write the least
//! recently used entries go until the total is under the limit.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{Document, Metadata, Overlay};
use crate::git::{Digest, RepoPath, digest_of};

/// The first word of every entry; a change of format changes it, and old entries are misses.
const FORMAT: &str = "kubectl-gitops-render-v1";

/// A temporary file left by a run that died mid-write is removed after this long.
const STALE_TEMP: Duration = Duration::from_secs(600);

/// The on-disk render cache of one run.
#[derive(Debug)]
pub struct RenderCache {
    dir: PathBuf,
    max_bytes: u64,
    /// What identifies the kustomize that builds: the `kubectl` found on PATH, its size and
    /// modification time (a new kubectl, and so a new kustomize, is a new key).
    tool: String,
    /// The same of the `helm` found on PATH, for chart renders.
    helm: String,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Hit(Vec<Document>),
    Miss,
    /// An entry was there but damaged (truncated, edited, another format): removed.
    Damaged,
}

impl RenderCache {
    /// The cache under `dir`, holding at most `max_bytes`; None when `max_bytes` is 0 (the
    /// cache is off). `path` is `$PATH`, where `kubectl` is found.
    pub fn new(dir: PathBuf, max_bytes: u64, path: Option<&OsStr>) -> Option<RenderCache> {
        if max_bytes == 0 {
            return None;
        }
        Some(RenderCache {
            dir,
            max_bytes,
            tool: program_identity(path, "kubectl"),
            helm: program_identity(path, "helm"),
        })
    }

    /// The directory entries are kept in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of a build of `root` that reads `ids` (from `Repo::content_ids`), with these
    /// settings.
    pub fn key(
        &self,
        ids: &[(String, Option<String>)],
        root: &RepoPath,
        overlay: &Overlay,
        generate: bool,
        metadata: Metadata,
    ) -> String {
        let mut d = Digest::new();
        d.field(FORMAT)
            .field(&self.tool)
            .field(root.as_str())
            .field(format!("{overlay:?}"))
            .field(if generate { "generate" } else { "as-is" })
            .field(format!("{metadata:?}"));
        for (path, id) in ids {
            d.field(path).field(id.as_deref().unwrap_or("-"));
        }
        d.hex()
    }

    /// The key of a `helm template` render: the `helm` on PATH and `parts`, everything the
    /// render reads (the chart's and values files' Git ids or the archive's digest, the
    /// release, namespace, cluster version and API versions, the values).
    pub fn helm_key(&self, parts: &[&str]) -> String {
        let mut d = Digest::new();
        d.field(FORMAT).field("helm").field(&self.helm);
        for part in parts {
            d.field(part);
        }
        d.hex()
    }

    fn entry(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The entry for `key`. A hit marks the entry as just used.
    pub fn get(&self, key: &str) -> Lookup {
        let path = self.entry(key);
        let Ok(file) = std::fs::File::open(&path) else {
            return Lookup::Miss;
        };
        let mut bytes = Vec::new();
        if std::io::Read::read_to_end(&mut &file, &mut bytes).is_err() {
            return self.damaged(&path);
        }
        let Some(docs) = parse_entry(key, &bytes) else {
            return self.damaged(&path);
        };
        // Least recently used goes first: a hit counts as a use. Failing to mark it only makes
        // it older than it is.
        let _ = file.set_modified(SystemTime::now());
        Lookup::Hit(docs)
    }

    fn damaged(&self, path: &Path) -> Lookup {
        let _ = std::fs::remove_file(path);
        Lookup::Damaged
    }

    /// Stores `docs` under `key`, then trims the cache to its bound. An entry larger than the
    /// whole bound is not stored.
    pub fn put(&self, key: &str, docs: &[Document]) -> std::io::Result<()> {
        let body = serde_json::to_vec(docs).map_err(std::io::Error::other)?;
        let header = format!("{FORMAT} {key} {}\n", digest_of(&body));
        if (header.len() + body.len()) as u64 > self.max_bytes {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)?;
        tmp.write_all(header.as_bytes())?;
        tmp.write_all(&body)?;
        tmp.as_file().sync_data().ok();
        tmp.persist(self.entry(key)).map_err(|e| e.error)?;
        self.trim();
        Ok(())
    }

    /// Removes the least recently used entries until the total is within the bound (with a
    /// tenth to spare, so that the next writes do not trim again), and stale temporary files.
    fn trim(&self) {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        let mut entries = Vec::new();
        let mut total = 0u64;
        for entry in read.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".tmp-") {
                if now.duration_since(modified).unwrap_or_default() > STALE_TEMP {
                    let _ = std::fs::remove_file(entry.path());
                }
                continue;
            }
            if !meta.is_file() || !name.ends_with(".json") {
                continue;
            }
            total += meta.len();
            entries.push((modified, meta.len(), entry.path()));
        }
        if total <= self.max_bytes {
            return;
        }
        entries.sort();
        let goal = self.max_bytes - self.max_bytes / 10;
        for (_, len, path) in entries {
            if total <= goal {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

impl RenderCache {
    /// The cache of the plugin's cache directory (`<cache>/renders`), bounded by `max_bytes`;
    /// None when it is off or there is no cache directory.
    pub fn for_env(env: &crate::env::Env, max_bytes: u64) -> Option<std::sync::Arc<RenderCache>> {
        let dir = env.cache_dir.as_ref()?.join("renders");
        RenderCache::new(dir, max_bytes, env.path.as_deref()).map(std::sync::Arc::new)
    }
}

/// `--render-cache-size`: bytes, or a number with a binary (`Ki`, `Mi`, `Gi`) or decimal (`K`,
/// `M`, `G`) unit.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad =
        || format!("invalid size '{text}': use bytes or a unit: 512Ki, 256Mi, 1Gi, 1G; 0 is off");
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let value: u64 = text[..digits].parse().map_err(|_| bad())?;
    let unit: u64 = match &text[digits..] {
        "" => 1,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return Err(bad()),
    };
    value.checked_mul(unit).ok_or_else(bad)
}

/// The documents of an entry, when its header names this format and key and its digest
/// matches the body.
fn parse_entry(key: &str, bytes: &[u8]) -> Option<Vec<Document>> {
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&bytes[..newline]).ok()?;
    let body = &bytes[newline + 1..];
    let mut words = header.split(' ');
    let (format, entry_key, digest) = (words.next()?, words.next()?, words.next()?);
    if format != FORMAT || entry_key != key || words.next().is_some() || digest != digest_of(body) {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// The first `name` on `path`, with its size and modification time; a fixed phrase when there
/// is none (the build then fails and nothing is stored).
fn program_identity(path: Option<&OsStr>, name: &str) -> String {
    let Some(candidate) = crate::env::find_on_path(path, name) else {
        return format!("no {name} on PATH");
    };
    let Ok(meta) = std::fs::metadata(&candidate) else {
        return format!("no {name} on PATH");
    };
    let real = std::fs::canonicalize(&candidate).unwrap_or(candidate);
    let modified = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{} {} {modified}", real.display(), meta.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str) -> Document {
        Document {
            file: "apps/web.yaml".into(),
            lines: (1, 4),
            object: serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}),
            built_by: Default::default(),
        }
    }

    fn cache(dir: &Path, max: u64) -> RenderCache {
        RenderCache {
            dir: dir.to_path_buf(),
            max_bytes: max,
            tool: "kubectl test".into(),
            helm: "helm test".into(),
        }
    }

    #[test]
    fn an_entry_comes_back_as_it_was_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cache(tmp.path(), 1 << 20);
        let key = c.key(
            &[],
            &RepoPath::root(),
            &Overlay::default(),
            true,
            Metadata::Origin,
        );
        assert!(matches!(c.get(&key), Lookup::Miss));
        c.put(&key, &[doc("a"), doc("b")]).unwrap();
        match c.get(&key) {
            Lookup::Hit(docs) => assert_eq!(docs, [doc("a"), doc("b")]),
            other => panic!("{other:?}"),
        }
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [format!("{key}.json")]);
    }

    #[test]
    fn every_setting_is_in_the_key() {
        let c = cache(Path::new("/nowhere"), 1);
        let ids = vec![("base".to_owned(), Some("1".repeat(40)))];
        let root = RepoPath::parse("apps").unwrap();
        let base = c.key(&ids, &root, &Overlay::default(), true, Metadata::Origin);
        let prefixed = Overlay {
            name_prefix: Some("eu-".into()),
            ..Overlay::default()
        };
        let other_ids = vec![("base".to_owned(), Some("2".repeat(40)))];
        let keys = [
            c.key(
                &other_ids,
                &root,
                &Overlay::default(),
                true,
                Metadata::Origin,
            ),
            c.key(
                &ids,
                &RepoPath::root(),
                &Overlay::default(),
                true,
                Metadata::Origin,
            ),
            c.key(&ids, &root, &prefixed, true, Metadata::Origin),
            c.key(&ids, &root, &Overlay::default(), false, Metadata::Origin),
            c.key(
                &ids,
                &root,
                &Overlay::default(),
                true,
                Metadata::Transformers,
            ),
            RenderCache {
                tool: "kubectl other".into(),
                ..cache(Path::new("/nowhere"), 1)
            }
            .key(&ids, &root, &Overlay::default(), true, Metadata::Origin),
        ];
        for key in keys {
            assert_ne!(key, base);
        }
        assert_eq!(
            base,
            c.key(&ids, &root, &Overlay::default(), true, Metadata::Origin)
        );
    }

    #[test]
    fn a_helm_key_changes_with_every_part_and_with_helm() {
        let c = cache(Path::new("/nowhere"), 1);
        let key = c.helm_key(&["chart", "values"]);
        assert_eq!(key, c.helm_key(&["chart", "values"]));
        assert_ne!(key, c.helm_key(&["chart", "other values"]));
        assert_ne!(key, c.helm_key(&["chartvalues"]));
        let other = RenderCache {
            helm: "helm other".into(),
            ..cache(Path::new("/nowhere"), 1)
        };
        assert_ne!(key, other.helm_key(&["chart", "values"]));
        // Not a kustomize key for the same words.
        assert_ne!(
            key,
            c.key(
                &[],
                &RepoPath::root(),
                &Overlay::default(),
                false,
                Metadata::Origin
            )
        );
    }

    #[test]
    fn a_damaged_entry_is_a_miss_and_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cache(tmp.path(), 1 << 20);
        for damage in [
            |b: &mut Vec<u8>| b.truncate(b.len() - 3),
            |b: &mut Vec<u8>| {
                let i = b.len() - 5;
                b[i] ^= 1;
            },
            |b: &mut Vec<u8>| b.clear(),
        ] {
            let key = "ab".repeat(20);
            c.put(&key, &[doc("a")]).unwrap();
            let path = c.entry(&key);
            let mut bytes = std::fs::read(&path).unwrap();
            damage(&mut bytes);
            std::fs::write(&path, bytes).unwrap();
            assert!(matches!(c.get(&key), Lookup::Damaged));
            assert!(!path.exists());
            assert!(matches!(c.get(&key), Lookup::Miss));
        }
    }

    #[test]
    fn the_least_recently_used_entries_go_first() {
        let tmp = tempfile::tempdir().unwrap();
        let one = {
            let c = cache(tmp.path(), 1 << 20);
            c.put("probe", &[doc("a")]).unwrap();
            std::fs::metadata(c.entry("probe")).unwrap().len()
        };
        std::fs::remove_file(tmp.path().join("probe.json")).unwrap();
        // Room for three entries.
        let c = cache(tmp.path(), one * 3 + one / 2);
        let old = SystemTime::now() - Duration::from_secs(3600);
        for (i, key) in ["k1", "k2", "k3"].iter().enumerate() {
            c.put(key, &[doc("a")]).unwrap();
            let f = std::fs::File::open(c.entry(key)).unwrap();
            f.set_modified(old + Duration::from_secs(i as u64)).unwrap();
        }
        // k1 is used again: k2 is now the oldest.
        assert!(matches!(c.get("k1"), Lookup::Hit(_)));
        c.put("k4", &[doc("a")]).unwrap();
        let kept: Vec<bool> = ["k1", "k2", "k3", "k4"]
            .iter()
            .map(|k| c.entry(k).exists())
            .collect();
        assert_eq!(kept, [true, false, true, true]);
        // An entry larger than the whole bound is not stored.
        let tiny = cache(tmp.path(), 10);
        tiny.put("big", &[doc("a")]).unwrap();
        assert!(!tiny.entry("big").exists());
    }

    #[test]
    fn sizes_parse_with_units() {
        for (text, want) in [
            ("0", Ok(0)),
            ("4096", Ok(4096)),
            ("512Ki", Ok(512 << 10)),
            ("256Mi", Ok(256 << 20)),
            ("1Gi", Ok(1 << 30)),
            ("2G", Ok(2_000_000_000)),
        ] {
            assert_eq!(parse_size(text), want, "{text}");
        }
        for text in ["", "Mi", "1.5Gi", "-1", "10MB", "99999999999999999999Gi"] {
            let e = parse_size(text).unwrap_err();
            assert!(e.starts_with(&format!("invalid size '{text}'")), "{e}");
        }
    }

    #[test]
    fn size_zero_turns_the_cache_off() {
        assert!(RenderCache::new(PathBuf::from("/x"), 0, None).is_none());
        assert!(RenderCache::new(PathBuf::from("/x"), 1, None).is_some());
    }
}
