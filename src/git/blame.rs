//! `git blame` of a file at a commit, read with gix: who last changed each line, following the
//! file's history across renames as `git blame` does by default.
//!
//! The walk down first parents is ours, as git's is, and reads the commit-graph's changed-path
//! Bloom filters when the repository has them, skipping the commits git skips (gix 0.90 reads
//! none and visits every commit); gix takes over where the file was created or renamed, and at a
//! merge that brought another version of it.
//!
//! The history behind a commit never changes, so neither does a blame at that commit: each one is
//! kept on disk (key: the file's blob, the commit and the path), and asking again is a file read.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::bstr::ByteSlice;

use super::GitError;
use super::path::RepoPath;
use super::repo::{CommitId, Repo};

/// Who last changed one line of a file, as `git blame` says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlameLine {
    /// The line, 1-based, in the blamed file.
    pub line: usize,
    /// The commit that last changed it (40 hex digits).
    pub commit: String,
    /// The file's path in that commit (differs from the blamed path across a rename).
    pub original_path: String,
    /// The line's number, 1-based, in the file at that commit.
    pub original_line: usize,
    /// Author name, as recorded (no mailmap).
    pub author_name: String,
    /// Author email, as recorded, without angle brackets.
    pub author_email: String,
    /// Author time, seconds since the Unix epoch.
    pub author_time: i64,
    /// Author time zone, seconds east of UTC.
    pub author_offset_seconds: i32,
    /// The commit message's first non-blank line, as `git blame --porcelain` prints it.
    pub summary: String,
}

/// The object cache for gix's part of a blame: its walk reads each commit three times and each
/// blob twice, one right after the other, and 1 MB of cache saved a quarter of its time on a
/// 20000-commit history (bench/blame); the rest leaves room for larger files. Our own walk reads
/// everything once and is faster without one.
const OBJECT_CACHE_BYTES: usize = 4 << 20;

impl Repo {
    /// Blame of `path` at `commit`, one entry per line, from the disk cache when present
    /// (`cache_dir` = e.g. ~/.cache/kubectl-gitops/blame; None disables the cache).
    ///
    /// `path` is taken literally, as `git blame` takes it: a symlink is not followed. A cache
    /// that cannot be written is skipped, never an error; a cache file that does not read back
    /// as a valid blame of this very file is ignored and replaced.
    pub fn blame(
        &self,
        commit: CommitId,
        path: &RepoPath,
        cache_dir: Option<&Path>,
    ) -> Result<Vec<BlameLine>, GitError> {
        self.blame_walk(commit, path, cache_dir)
            .map(|(lines, _)| lines)
    }

    /// [`Repo::blame`], and how it was computed: `None` when it came from the cache.
    fn blame_walk(
        &self,
        commit: CommitId,
        path: &RepoPath,
        cache_dir: Option<&Path>,
    ) -> Result<(Vec<BlameLine>, Option<Walk>), GitError> {
        let repo = self.handle();
        let blob = self.blamed_blob(&repo, commit, path)?;
        let algorithm = repo.diff_algorithm().map_err(|e| self.other(&e))?;
        let key = cache::Key {
            commit: commit.0,
            blob,
            path: path.as_str(),
            algorithm: algorithm_name(algorithm),
        };
        if let Some(dir) = cache_dir
            && let Some(lines) = cache::read(dir, &key, || self.line_count(&repo, blob))
        {
            return Ok((lines, None));
        }
        let (lines, walk) = self.compute_blame(&repo, commit, path, blob, algorithm)?;
        if let Some(dir) = cache_dir {
            // A cache is a convenience: a read-only or full disk must not fail the blame.
            let _ = cache::write(dir, &key, &lines);
        }
        Ok((lines, Some(walk)))
    }

    /// The blob of the regular file at `path` in `commit`, looked up without following symlinks.
    fn blamed_blob(
        &self,
        repo: &gix::Repository,
        commit: CommitId,
        path: &RepoPath,
    ) -> Result<ObjectId, GitError> {
        let found = repo
            .find_commit(commit.0)
            .map_err(|_| GitError::UnknownRevision {
                rev: commit.to_string(),
                repo: self.display_name(),
            })?;
        let tree = found.tree().map_err(|e| self.other(&e))?;
        let entry = tree
            .lookup_entry(path.components())
            .map_err(|e| self.other(&e))?
            .ok_or_else(|| GitError::FileNotFound {
                path: path.to_string(),
                commit: commit.short(),
                repo: self.display_name(),
            })?;
        use gix::objs::tree::EntryKind;
        match entry.mode().kind() {
            EntryKind::Blob | EntryKind::BlobExecutable => Ok(entry.object_id()),
            EntryKind::Link => Err(GitError::Other {
                repo: self.display_name(),
                reason: format!(
                    "'{}' at commit {} is a symlink; blame the file it points to",
                    super::name(path.as_str()),
                    commit.short()
                ),
            }),
            EntryKind::Tree | EntryKind::Commit => Err(GitError::NotAFile {
                path: path.to_string(),
                commit: commit.short(),
            }),
        }
    }

    /// Lines in a blob, counted as the blame counts them (a last line without '\n' counts).
    fn line_count(&self, repo: &gix::Repository, blob: ObjectId) -> Option<usize> {
        let blob = repo.find_blob(blob).ok()?;
        Some(count_lines(&blob.data))
    }

    /// The blame of the blob `blob` at `path` in `commit`, with each commit's author read once.
    fn compute_blame(
        &self,
        repo: &gix::Repository,
        commit: CommitId,
        path: &RepoPath,
        blob: ObjectId,
        algorithm: gix::diff::blob::Algorithm,
    ) -> Result<(Vec<BlameLine>, Walk), GitError> {
        let data = repo
            .find_blob(blob)
            .map_err(|e| self.other(&e))?
            .take_data();
        let (origins, walk) = self.origins(repo, commit.0, path, blob, data, algorithm)?;
        let mut authors: HashMap<ObjectId, Author> = HashMap::new();
        let mut lines = Vec::with_capacity(origins.len());
        for (index, origin) in origins.into_iter().enumerate() {
            let origin = origin.ok_or_else(|| GitError::Other {
                repo: self.display_name(),
                reason: format!(
                    "blame of '{}' at {} left line {} unattributed",
                    super::name(path.as_str()),
                    commit.short(),
                    index + 1
                ),
            })?;
            let author = match authors.entry(origin.commit) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(new) => new.insert(self.author(repo, origin.commit)?),
            };
            lines.push(BlameLine {
                line: index + 1,
                commit: origin.commit.to_string(),
                original_path: origin.path.unwrap_or_else(|| path.as_str().to_string()),
                original_line: origin.line as usize + 1,
                author_name: author.name.clone(),
                author_email: author.email.clone(),
                author_time: author.time,
                author_offset_seconds: author.offset_seconds,
                summary: author.summary.clone(),
            });
        }
        Ok((lines, walk))
    }

    /// Where each line of `data` (the file at `path` in `start`) came from.
    ///
    /// The walk down first parents is ours, as git's is: a commit whose Bloom filter (from the
    /// commit-graph, when it has them) says the path did not change is passed over unread; any
    /// other is compared with its first parent, and a diff hands the unchanged lines down. gix
    /// takes over the lines still unblamed where the walk meets what it leaves to gix: a merge
    /// whose first parent has another version of the file, or the file's creation or rename
    /// (gix looks for the source, as git does).
    fn origins(
        &self,
        repo: &gix::Repository,
        start: ObjectId,
        path: &RepoPath,
        blob: ObjectId,
        data: Vec<u8>,
        algorithm: gix::diff::blob::Algorithm,
    ) -> Result<(Vec<Option<Origin>>, Walk), GitError> {
        let total = count_lines(&data);
        let mut origins: Vec<Option<Origin>> = vec![None; total];
        let mut walk = Walk::default();
        if total == 0 {
            return Ok((origins, walk));
        }
        let graph = repo.commit_graph_if_enabled().map_err(|e| self.other(&e))?;
        let read_filters = repo
            .config_snapshot()
            .boolean("commitGraph.readChangedPaths")
            .unwrap_or(true);
        let filters = match &graph {
            Some(graph) if read_filters => {
                bloom::Filters::open(&repo.objects.store_ref().path().join("info"), graph)
            }
            _ => None,
        };
        let key = filters.as_ref().and_then(|f| f.key(path.as_str()));
        let bloom = filters.as_ref().zip(key.as_ref());
        let history = History {
            repo,
            graph: graph.as_ref(),
        };

        // (line in the blamed file, the same line in `current`'s version), in file order.
        let mut pending: Vec<(usize, u32)> = (0..total).map(|i| (i, i as u32)).collect();
        let mut current = history.commit(start).map_err(|e| self.other(&e))?;
        let mut current_data = data;
        let mut current_blob = blob;
        loop {
            let Some(&first) = current.parents.first() else {
                // A root commit: every line still pending was added here.
                for &(line, at) in &pending {
                    origins[line] = Some(Origin::new(current.id, None, at));
                }
                return Ok((origins, walk));
            };
            let maybe_changed = match (current.position, bloom) {
                (Some(pos), Some((filters, key))) => filters.maybe_changed(pos, key),
                _ => true,
            };
            let parent = history.commit(first).map_err(|e| self.other(&e))?;
            if !maybe_changed {
                // The filter is never wrong about "not changed": the first parent has the same
                // blob, so every line passes on (a merge included: its first parent wins).
                walk.skipped += 1;
                current = parent;
                continue;
            }
            walk.read += 1;
            let parent_blob = history.entry(&parent, path).map_err(|e| self.other(&e))?;
            if parent_blob == Some(current_blob) {
                // Unchanged: the first parent takes every line (at a merge too, as in gix and git).
                current = parent;
                continue;
            }
            let (Some(parent_blob), 1) = (parent_blob, current.parents.len()) else {
                self.hand_over(repo, current.id, path, &pending, algorithm, &mut origins)?;
                walk.handed_over = Some(current.id);
                return Ok((origins, walk));
            };
            let Ok(mut parent_blob_object) = repo.find_blob(parent_blob) else {
                // Not a blob there (a directory or a submodule became this file): gix decides.
                self.hand_over(repo, current.id, path, &pending, algorithm, &mut origins)?;
                walk.handed_over = Some(current.id);
                return Ok((origins, walk));
            };
            let parent_data = parent_blob_object.take_data();
            let here = current.id;
            pending = pass_unchanged_lines(
                &parent_data,
                &current_data,
                algorithm,
                pending,
                |line, at| origins[line] = Some(Origin::new(here, None, at)),
            );
            if pending.is_empty() {
                return Ok((origins, walk));
            }
            current = parent;
            current_data = parent_data;
            current_blob = parent_blob;
        }
    }

    /// Lets gix blame the `pending` lines (numbered in `commit`'s version of the file) from
    /// `commit` on, following renames as `git blame` does.
    fn hand_over(
        &self,
        repo: &gix::Repository,
        commit: ObjectId,
        path: &RepoPath,
        pending: &[(usize, u32)],
        algorithm: gix::diff::blob::Algorithm,
        origins: &mut [Option<Origin>],
    ) -> Result<(), GitError> {
        let whole = pending
            .iter()
            .enumerate()
            .all(|(i, &(_, at))| at as usize == i)
            && pending.len() == origins.len();
        let ranges = if whole {
            gix::blame::BlameRanges::WholeFile
        } else {
            let mut ranges: Vec<std::ops::RangeInclusive<u32>> = Vec::new();
            for &(_, at) in pending {
                match ranges.last_mut() {
                    // `end` is 1-based: the range goes on if it ends right before `at`.
                    Some(last) if *last.end() == at => *last = *last.start()..=at + 1,
                    _ => ranges.push(at + 1..=at + 1),
                }
            }
            gix::blame::BlameRanges::from_one_based_inclusive_ranges(ranges)
                .map_err(|e| self.other(&e))?
        };
        let options = gix::repository::blame_file::Options {
            diff_algorithm: Some(algorithm),
            ranges,
            since: None,
            // `git blame` follows renames (not copies) with diff's defaults: 50 % similarity.
            rewrites: Some(gix::diff::Rewrites::default()),
        };
        let mut repo = repo.clone();
        repo.object_cache_size_if_unset(OBJECT_CACHE_BYTES);
        let outcome = repo
            .blame_file(path.as_str().as_bytes().as_bstr(), commit, options)
            .map_err(|e| self.other(&e))?;
        let at_line: HashMap<u32, usize> = pending.iter().map(|&(line, at)| (at, line)).collect();
        for entry in &outcome.entries {
            let source = entry
                .source_file_name
                .as_ref()
                .map(|name| name.to_str_lossy().into_owned());
            for (at, original) in entry
                .range_in_blamed_file()
                .zip(entry.range_in_source_file())
            {
                if let Some(&line) = at_line.get(&(at as u32)) {
                    origins[line] = Some(Origin::new(
                        entry.commit_id,
                        source.clone(),
                        original as u32,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Author and summary of `id`, as `git blame --porcelain` prints them.
    fn author(&self, repo: &gix::Repository, id: ObjectId) -> Result<Author, GitError> {
        let commit = repo.find_commit(id).map_err(|e| self.other(&e))?;
        let author = commit.author().map_err(|e| self.other(&e))?;
        let time = author.time().map_err(|e| self.other(&e))?;
        let message = commit.message_raw().map_err(|e| self.other(&e))?;
        let summary = match blame_summary(message) {
            Some(line) => line.to_str_lossy().into_owned(),
            None => format!("({id})"),
        };
        Ok(Author {
            name: author.name.to_str_lossy().into_owned(),
            email: author.email.to_str_lossy().into_owned(),
            time: time.seconds,
            offset_seconds: time.offset,
            summary,
        })
    }
}

/// What a [`BlameLine`] says about its commit.
#[derive(Debug, Clone)]
struct Author {
    name: String,
    email: String,
    time: i64,
    offset_seconds: i32,
    summary: String,
}

/// Commits as the walk needs them: from the commit-graph when it has them, else decoded.
struct History<'r> {
    repo: &'r gix::Repository,
    graph: Option<&'r gix::commitgraph::Graph>,
}

/// A commit's place in the graph (if any), its tree and its parents.
struct Node {
    id: ObjectId,
    position: Option<gix::commitgraph::Position>,
    tree: ObjectId,
    parents: Vec<ObjectId>,
}

impl History<'_> {
    fn commit(&self, id: ObjectId) -> Result<Node, gix::Error> {
        if let Some(graph) = self.graph
            && let Some(position) = graph.lookup(id)
        {
            let commit = graph.commit_at(position);
            let parents = commit
                .iter_parents()
                .map(|p| p.map(|p| graph.id_at(p).to_owned()))
                .collect::<Result<_, _>>()?;
            return Ok(Node {
                id,
                position: Some(position),
                tree: commit.root_tree_id().to_owned(),
                parents,
            });
        }
        let commit = self.repo.find_commit(id)?;
        Ok(Node {
            id,
            position: None,
            tree: commit.tree_id()?.detach(),
            parents: commit.parent_ids().map(|p| p.detach()).collect(),
        })
    }

    /// The id of what `path` names in `commit` (compared by id, as the blame compares it).
    fn entry(&self, commit: &Node, path: &RepoPath) -> Result<Option<ObjectId>, gix::Error> {
        let tree = self.repo.find_tree(commit.tree)?;
        Ok(tree.lookup_entry(path.components())?.map(|e| e.object_id()))
    }
}

/// Where one line of the blamed file came from.
#[derive(Debug, Clone)]
struct Origin {
    commit: ObjectId,
    /// The file's path in `commit` when it differs from the blamed path (a rename).
    path: Option<String>,
    /// 0-based, in the file at `commit`.
    line: u32,
}

impl Origin {
    fn new(commit: ObjectId, path: Option<String>, line: u32) -> Origin {
        Origin { commit, path, line }
    }
}

/// How a blame was computed (tests check that the Bloom filters were used).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Walk {
    /// Commits passed over on the word of their Bloom filter.
    skipped: usize,
    /// Commits whose trees were read.
    read: usize,
    /// Where gix took over the lines still unblamed.
    handed_over: Option<ObjectId>,
}

/// One step of the blame from a commit to its only parent: the lines of `new` that the diff
/// from `old` leaves unchanged go on to the parent, renumbered; `changed` gets the others.
fn pass_unchanged_lines(
    old: &[u8],
    new: &[u8],
    algorithm: gix::diff::blob::Algorithm,
    pending: Vec<(usize, u32)>,
    mut changed: impl FnMut(usize, u32),
) -> Vec<(usize, u32)> {
    use gix::diff::blob::{Diff, InternedInput};
    // The diff gix-blame computes, so that both halves of a blame agree.
    let input = InternedInput::new(old, new);
    let mut diff = Diff::compute(algorithm, &input);
    diff.postprocess_lines(&input);
    let mut hunks = diff.hunks().peekable();
    // Old line = new line + shift, for lines past the hunks consumed so far.
    let mut shift: i64 = 0;
    let mut passed = Vec::with_capacity(pending.len());
    for (line, at) in pending {
        while let Some(hunk) = hunks.peek()
            && hunk.after.end <= at
        {
            shift += i64::from(hunk.before.end - hunk.before.start)
                - i64::from(hunk.after.end - hunk.after.start);
            hunks.next();
        }
        match hunks.peek() {
            Some(hunk) if hunk.after.contains(&at) => changed(line, at),
            _ => passed.push((line, (i64::from(at) + shift) as u32)),
        }
    }
    passed
}

/// git's `find_commit_subject`, as blame uses it: the first line that is not blank, verbatim;
/// `None` for a message without one (git then prints the commit id in parentheses).
fn blame_summary(message: &[u8]) -> Option<&[u8]> {
    message
        .split(|&b| b == b'\n')
        .find(|line| !line.iter().all(u8::is_ascii_whitespace))
}

/// Lines in `data` as blame numbers them: split after each '\n', a non-empty tail counts.
fn count_lines(data: &[u8]) -> usize {
    let newlines = data.iter().filter(|&&b| b == b'\n').count();
    newlines + usize::from(!data.is_empty() && !data.ends_with(b"\n"))
}

/// The name `diff.algorithm` gives an algorithm; part of the cache entry, since it shapes the blame.
fn algorithm_name(algorithm: gix::diff::blob::Algorithm) -> &'static str {
    use gix::diff::blob::Algorithm;
    match algorithm {
        Algorithm::Myers => "myers",
        Algorithm::MyersMinimal => "minimal",
        Algorithm::Histogram => "histogram",
    }
}

/// The changed-path Bloom filters of a commit-graph (`git commit-graph write --changed-paths`):
/// per commit, a filter of the paths that differ from its first parent. git reads them to skip
/// commits in `blame` and `log -- <path>`; gix 0.90 does not, so this reads them itself.
mod bloom {
    use std::fs::File;
    use std::io::{Read, Seek, SeekFrom};
    use std::path::Path;

    /// How the filters of one graph file were made (the BDAT chunk's header).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    struct Settings {
        /// 1: git's first murmur3, wrong for bytes above 0x7f; 2: the corrected one.
        version: u32,
        num_hashes: u32,
    }

    /// The filters of one graph file of the chain.
    struct Layer {
        /// Global position of its first commit (the layers below it hold the ones before).
        first: u32,
        commits: u32,
        /// `None` when this file has no filters.
        filters: Option<(Settings, Vec<u32>, Vec<u8>)>,
    }

    /// Every layer's filters, in the order of the commit-graph's global positions.
    pub(super) struct Filters {
        layers: Vec<Layer>,
    }

    /// A path's hashes, one set per kind of filter in the graph.
    pub(super) struct Key(Vec<(Settings, Vec<u32>)>);

    impl Filters {
        /// The filters in `info_dir` (`objects/info`), read as `graph` (already opened by gix)
        /// lays the commits out; `None` when there are none, or anything does not add up.
        pub(super) fn open(info_dir: &Path, graph: &gix::commitgraph::Graph) -> Option<Filters> {
            // The files in the order gix and git read them: a single file, else the chain.
            let single = info_dir.join("commit-graph");
            let files: Vec<std::path::PathBuf> = if single.is_file() {
                vec![single]
            } else {
                let dir = info_dir.join("commit-graphs");
                std::fs::read_to_string(dir.join("commit-graph-chain"))
                    .ok()?
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|hash| dir.join(format!("graph-{}.graph", hash.trim())))
                    .collect()
            };
            let mut layers = Vec::with_capacity(files.len());
            let mut first = 0u32;
            for file in files {
                let layer = read_layer(&file, first)?;
                first = first.checked_add(layer.commits)?;
                layers.push(layer);
            }
            // The positions must be gix's, or the filters would be another commit's.
            if first != graph.num_commits() || layers.iter().all(|l| l.filters.is_none()) {
                return None;
            }
            Some(Filters { layers })
        }

        /// The hashes of `path`; `None` when no filter can answer for it (a version 1 filter
        /// and a path with bytes above 0x7f, which git hashed wrongly).
        pub(super) fn key(&self, path: &str) -> Option<Key> {
            let mut key: Vec<(Settings, Vec<u32>)> = Vec::new();
            for (settings, _, _) in self.layers.iter().filter_map(|l| l.filters.as_ref()) {
                if key.iter().any(|(s, _)| s == settings) {
                    continue;
                }
                if settings.version == 1 && !path.is_ascii() {
                    return None;
                }
                let h0 = murmur3(0x293a_e76f, path.as_bytes());
                let h1 = murmur3(0x7e64_6e2c, path.as_bytes());
                let hashes = (0..settings.num_hashes)
                    .map(|i| h0.wrapping_add(i.wrapping_mul(h1)))
                    .collect();
                key.push((*settings, hashes));
            }
            Some(Key(key))
        }

        /// Whether the commit at global `position` may have changed the path of `key` (compared
        /// with its first parent). `false` is certain; `true` may be wrong, as git's is.
        pub(super) fn maybe_changed(
            &self,
            position: gix::commitgraph::Position,
            key: &Key,
        ) -> bool {
            let pos = position.0;
            let Some(layer) = self
                .layers
                .iter()
                .find(|l| l.first <= pos && pos - l.first < l.commits)
            else {
                return true;
            };
            let Some((settings, index, data)) = &layer.filters else {
                return true;
            };
            let Some((_, hashes)) = key.0.iter().find(|(s, _)| s == settings) else {
                return true;
            };
            let local = (pos - layer.first) as usize;
            let end = index[local] as usize;
            let start = if local == 0 {
                0
            } else {
                index[local - 1] as usize
            };
            let Some(filter) = data.get(start..end) else {
                return true;
            };
            // An empty filter (no changes recorded) answers nothing, as in git.
            if filter.is_empty() {
                return true;
            }
            let bits = filter.len() as u64 * 8;
            hashes.iter().all(|&hash| {
                let bit = u64::from(hash) % bits;
                filter[(bit / 8) as usize] & (1 << (bit % 8)) != 0
            })
        }
    }

    /// Reads the commit count and the BIDX and BDAT chunks of one graph file.
    fn read_layer(path: &Path, first: u32) -> Option<Layer> {
        let mut file = File::open(path).ok()?;
        let mut header = [0u8; 8];
        file.read_exact(&mut header).ok()?;
        if &header[..4] != b"CGPH" || header[4] != 1 {
            return None;
        }
        let chunks = usize::from(header[6]);
        let mut table = vec![0u8; (chunks + 1) * 12];
        file.read_exact(&mut table).ok()?;
        let entry = |i: usize| {
            let e = &table[i * 12..i * 12 + 12];
            let id: [u8; 4] = e[..4].try_into().expect("4 bytes");
            let offset = u64::from_be_bytes(e[4..].try_into().expect("8 bytes"));
            (id, offset)
        };
        let chunk = |name: &[u8; 4]| {
            (0..chunks).find_map(|i| {
                let (id, start) = entry(i);
                let (_, end) = entry(i + 1);
                (&id == name && end >= start).then_some((start, end - start))
            })
        };
        let mut read = |(start, len): (u64, u64)| -> Option<Vec<u8>> {
            let mut buf = vec![0u8; usize::try_from(len).ok()?];
            file.seek(SeekFrom::Start(start)).ok()?;
            file.read_exact(&mut buf).ok()?;
            Some(buf)
        };
        let fanout = read(chunk(b"OIDF")?)?;
        let commits = u32::from_be_bytes(fanout.get(1020..1024)?.try_into().ok()?);
        let filters = match (chunk(b"BIDX"), chunk(b"BDAT")) {
            (Some(bidx), Some(bdat)) if bidx.1 == u64::from(commits) * 4 && bdat.1 >= 12 => {
                let index: Vec<u32> = read(bidx)?
                    .chunks_exact(4)
                    .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")))
                    .collect();
                let data = read(bdat)?;
                let word =
                    |i: usize| u32::from_be_bytes(data[i..i + 4].try_into().expect("4 bytes"));
                let settings = Settings {
                    version: word(0),
                    num_hashes: word(4),
                };
                let sane = matches!(settings.version, 1 | 2)
                    && (1..=32).contains(&settings.num_hashes)
                    && index.windows(2).all(|w| w[0] <= w[1])
                    && index
                        .last()
                        .is_none_or(|&end| end as usize <= data.len() - 12);
                sane.then(|| (settings, index, data[12..].to_vec()))
            }
            _ => None,
        };
        Some(Layer {
            first,
            commits,
            filters,
        })
    }

    /// MurmurHash3 (x86, 32 bits) as git's `murmur3_seeded_v2` computes it.
    fn murmur3(seed: u32, data: &[u8]) -> u32 {
        const C1: u32 = 0xcc9e_2d51;
        const C2: u32 = 0x1b87_3593;
        let mut h = seed;
        let mut blocks = data.chunks_exact(4);
        for block in &mut blocks {
            let mut k = u32::from_le_bytes(block.try_into().expect("4 bytes"));
            k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
            h ^= k;
            h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
        }
        let tail = blocks.remainder();
        let mut k = 0u32;
        for (i, &b) in tail.iter().enumerate() {
            k ^= u32::from(b) << (8 * i);
        }
        if !tail.is_empty() {
            h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        }
        h ^= data.len() as u32;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^ (h >> 16)
    }

    #[cfg(test)]
    mod tests {
        use super::murmur3;

        #[test]
        fn murmur3_matches_git() {
            // From git's t/helper/test-bloom.c expectations (t0095-bloom.sh).
            assert_eq!(murmur3(0, b""), 0x0000_0000);
            assert_eq!(murmur3(0, b"Hello world!"), 0x627b_0c2c);
            assert_eq!(
                murmur3(0, b"The quick brown fox jumps over the lazy dog"),
                0x2e4f_f723
            );
        }
    }
}

/// The on-disk blame cache: one JSON file per blamed (blob, commit, path), written atomically.
mod cache {
    use super::*;

    /// Bumped whenever the file layout or the meaning of a field changes.
    const FORMAT: u32 = 1;

    /// What a cached blame must match to be used.
    pub(super) struct Key<'a> {
        pub commit: ObjectId,
        pub blob: ObjectId,
        pub path: &'a str,
        pub algorithm: &'static str,
    }

    impl Key<'_> {
        /// `<blob>-<commit>-<path digest>.json`. The same blob at two paths of one commit has
        /// two histories (a copied manifest), hence the path; the file repeats it in full.
        fn file(&self, dir: &Path) -> PathBuf {
            let digest = gix::objs::compute_hash(
                gix::hash::Kind::Sha1,
                gix::objs::Kind::Blob,
                self.path.as_bytes(),
            )
            .map(|id| id.to_hex_with_len(16).to_string())
            .unwrap_or_default();
            dir.join(format!("{}-{}-{digest}.json", self.blob, self.commit))
        }
    }

    /// A cached blame: the commits once, then runs of consecutive lines from one commit.
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Entry {
        format: u32,
        commit: String,
        blob: String,
        path: String,
        algorithm: String,
        commits: Vec<CachedCommit>,
        paths: Vec<String>,
        /// `[first line, line count, index into commits, index into paths, first original line]`.
        hunks: Vec<[usize; 5]>,
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct CachedCommit {
        id: String,
        author_name: String,
        author_email: String,
        author_time: i64,
        author_offset_seconds: i32,
        summary: String,
    }

    /// The cached blame for `key`, if there is one and it is whole: anything else reads as `None`
    /// (missing, unreadable, another format, or not exactly `line_count()` lines).
    pub(super) fn read(
        dir: &Path,
        key: &Key<'_>,
        line_count: impl FnOnce() -> Option<usize>,
    ) -> Option<Vec<BlameLine>> {
        let bytes = std::fs::read(key.file(dir)).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        if entry.format != FORMAT
            || ObjectId::from_hex(entry.commit.as_bytes()).ok() != Some(key.commit)
            || ObjectId::from_hex(entry.blob.as_bytes()).ok() != Some(key.blob)
            || entry.path != key.path
            || entry.algorithm != key.algorithm
        {
            return None;
        }
        let mut lines = Vec::new();
        for &[first, len, commit, path, original] in &entry.hunks {
            let c = entry.commits.get(commit)?;
            let original_path = entry.paths.get(path)?;
            if first != lines.len() + 1 || len == 0 || original == 0 {
                return None;
            }
            for i in 0..len {
                lines.push(BlameLine {
                    line: first + i,
                    commit: c.id.clone(),
                    original_path: original_path.clone(),
                    original_line: original + i,
                    author_name: c.author_name.clone(),
                    author_email: c.author_email.clone(),
                    author_time: c.author_time,
                    author_offset_seconds: c.author_offset_seconds,
                    summary: c.summary.clone(),
                });
            }
        }
        (Some(lines.len()) == line_count()).then_some(lines)
    }

    /// Writes the blame for `key` into `dir` (created if needed): a temp file, then a rename, so
    /// a reader sees the old file, the new one, or none, never half of one.
    pub(super) fn write(dir: &Path, key: &Key<'_>, lines: &[BlameLine]) -> std::io::Result<()> {
        let mut entry = Entry {
            format: FORMAT,
            commit: key.commit.to_string(),
            blob: key.blob.to_string(),
            path: key.path.to_string(),
            algorithm: key.algorithm.to_string(),
            commits: Vec::new(),
            paths: Vec::new(),
            hunks: Vec::new(),
        };
        for line in lines {
            let commit = match entry.commits.iter().position(|c| c.id == line.commit) {
                Some(i) => i,
                None => {
                    entry.commits.push(CachedCommit {
                        id: line.commit.clone(),
                        author_name: line.author_name.clone(),
                        author_email: line.author_email.clone(),
                        author_time: line.author_time,
                        author_offset_seconds: line.author_offset_seconds,
                        summary: line.summary.clone(),
                    });
                    entry.commits.len() - 1
                }
            };
            let path = match entry.paths.iter().position(|p| *p == line.original_path) {
                Some(i) => i,
                None => {
                    entry.paths.push(line.original_path.clone());
                    entry.paths.len() - 1
                }
            };
            match entry.hunks.last_mut() {
                Some([first, len, c, p, original])
                    if *c == commit
                        && *p == path
                        && *first + *len == line.line
                        && *original + *len == line.original_line =>
                {
                    *len += 1
                }
                _ => entry
                    .hunks
                    .push([line.line, 1, commit, path, line.original_line]),
            }
        }
        std::fs::create_dir_all(dir)?;
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer(&mut file, &entry)?;
        file.persist(key.file(dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::fixture::{self, ALICE, BOB, CAROL, DAVE, Fixture, Person};

    const ZOE: Person = Person {
        name: "Zoë Ångström",
        email: "zoe@example.se",
        tz: "+0100",
    };

    /// A manifest of `n` numbered lines, with repeated lines as YAML has them.
    fn manifest(lines: &[&str]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    /// A history with several authors, lines changed, added and removed in the middle, a block
    /// moved, a merge that changed the file, a rename (`git mv`) then edits, a rename with an
    /// edit in the same commit, a last line without a newline, a file copied to a second path,
    /// and in between commits and a merge that touch other files only. Returns the repo and
    /// (commit, path of the file at that commit) for each step.
    fn blame_history() -> (Fixture, Vec<(String, &'static str)>) {
        let mut f = Fixture::new();
        let mut steps = Vec::new();
        let mut web = vec![
            "apiVersion: apps/v1",
            "kind: Deployment",
            "metadata:",
            "  name: web",
            "  labels:",
            "    app: web",
            "spec:",
            "  replicas: 1",
            "  template:",
            "    spec:",
            "      containers:",
            "        - name: web",
            "          image: web:1.0",
            "          env:",
            "            - name: A",
            "              value: \"1\"",
            "            - name: B",
            "              value: \"2\"",
            "          ports:",
            "            - containerPort: 80",
        ];
        f.write("app/deploy.yaml", &manifest(&web));
        f.write("other.yaml", "kind: ConfigMap\n");
        steps.push((f.commit(ALICE, "Add the web app"), "app/deploy.yaml"));
        unrelated(&mut f, "a", 3);

        // Changed in place, and lines added in the middle.
        web[7] = "  replicas: 3";
        web[12] = "          image: web:1.1";
        web.splice(
            18..18,
            ["            - name: C", "              value: \"3\""],
        );
        f.write("app/deploy.yaml", &manifest(&web));
        steps.push((
            f.commit(BOB, "Scale web and add C\n\nMore traffic expected."),
            "app/deploy.yaml",
        ));

        // A block moved: the labels go below the name, lines removed elsewhere.
        let labels: Vec<&str> = web.drain(4..6).collect();
        web.splice(2..2, labels);
        f.write("app/deploy.yaml", &manifest(&web));
        f.write("other.yaml", "kind: ConfigMap\ndata: {}\n");
        steps.push((f.commit(CAROL, "Move the labels up"), "app/deploy.yaml"));
        unrelated(&mut f, "b", 2);

        // A branch changes the ports at the end; main removes a variable in the middle.
        f.git(&["checkout", "-q", "-b", "feature"]);
        let mut feature = web.clone();
        let at = feature.len() - 1;
        feature[at] = "            - containerPort: 8080";
        feature.push("              name: http");
        f.write("app/deploy.yaml", &manifest(&feature));
        steps.push((f.commit(DAVE, "Serve on 8080"), "app/deploy.yaml"));
        unrelated(&mut f, "c", 2);
        f.git(&["checkout", "-q", "main"]);
        let at = web.iter().position(|l| l.ends_with("name: B")).expect("B");
        web.drain(at..at + 2);
        f.write("app/deploy.yaml", &manifest(&web));
        steps.push((f.commit(ZOE, "Drop B"), "app/deploy.yaml"));
        steps.push((
            f.merge(BOB, "feature", "Merge branch 'feature'"),
            "app/deploy.yaml",
        ));
        let mut web: Vec<String> =
            String::from_utf8(fixture::git_show(&f.path, "HEAD", "app/deploy.yaml"))
                .expect("UTF-8")
                .lines()
                .map(str::to_string)
                .collect();

        // A rename alone, then edits to the renamed file.
        std::fs::create_dir_all(f.path.join("apps/web")).expect("mkdir");
        f.git(&["mv", "app/deploy.yaml", "apps/web/deployment.yaml"]);
        steps.push((
            f.commit(DAVE, "Move web under apps/"),
            "apps/web/deployment.yaml",
        ));
        web[1] = "kind: Deployment # web".into();
        web.insert(5, "  annotations: {}".into());
        let body: Vec<&str> = web.iter().map(String::as_str).collect();
        f.write("apps/web/deployment.yaml", &manifest(&body));
        steps.push((f.commit(CAROL, "Annotate web"), "apps/web/deployment.yaml"));

        // A rename and an edit in one commit (still well above 50 % similar).
        f.git(&["mv", "apps/web/deployment.yaml", "apps/web/web.yaml"]);
        web[3] = "  name: web-app".into();
        let body: Vec<&str> = web.iter().map(String::as_str).collect();
        f.write("apps/web/web.yaml", &manifest(&body));
        steps.push((f.commit(ALICE, "Rename web"), "apps/web/web.yaml"));
        unrelated(&mut f, "d", 3);
        // A merge that does not touch the manifest.
        f.git(&["checkout", "-q", "-b", "docs"]);
        f.write("docs/README.md", "# docs\n");
        f.commit(DAVE, "Add docs");
        f.git(&["checkout", "-q", "main"]);
        f.merge(CAROL, "docs", "Merge branch 'docs'");

        // The last line loses its newline; a message with blank lines before its subject.
        let mut text = manifest(&body);
        text.pop();
        text.push_str("\n          resources: {}");
        f.write("apps/web/web.yaml", &text);
        f.git(&["add", "-A"]);
        steps.push((
            f.commit_staged(
                BOB,
                "\n   \nAdd resources\nsecond line\n\nbody",
                &["--cleanup=verbatim"],
            ),
            "apps/web/web.yaml",
        ));

        // A copy of the manifest under a second path: the same blob, another history.
        let text = String::from_utf8(fixture::git_show(&f.path, "HEAD", "apps/web/web.yaml"))
            .expect("UTF-8");
        f.write("apps/web/copy.yaml", &text);
        steps.push((f.commit(ZOE, "Keep a copy of web"), "apps/web/copy.yaml"));
        (f, steps)
    }

    /// `n` commits that change another file only: Bloom filters let the blame pass over them.
    fn unrelated(f: &mut Fixture, tag: &str, n: usize) {
        for i in 0..n {
            f.write(
                "other.yaml",
                &format!("kind: ConfigMap\ndata:\n  step: {tag}{i}\n"),
            );
            f.commit(CAROL, &format!("Tune other ({tag}{i})"));
        }
    }

    /// `git blame --porcelain <commit> -- <path>`, parsed into the same shape.
    fn git_blame(f: &Fixture, commit: &str, path: &str) -> Vec<BlameLine> {
        let text = f.git(&["blame", "--porcelain", commit, "--", path]);
        let mut infos: std::collections::HashMap<String, BlameLine> = Default::default();
        let mut out = Vec::new();
        let mut current: Option<(String, usize, usize)> = None;
        for line in text.lines() {
            if line.starts_with('\t') {
                let (sha, original, final_line) = current.take().expect("a header");
                let info = &infos[&sha];
                out.push(BlameLine {
                    line: final_line,
                    original_line: original,
                    ..info.clone()
                });
                continue;
            }
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            if key.len() == 40 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
                let mut numbers = value
                    .split(' ')
                    .map(|n| n.parse::<usize>().expect("a number"));
                let original = numbers.next().expect("original line");
                let final_line = numbers.next().expect("final line");
                infos.entry(key.to_string()).or_insert_with(|| BlameLine {
                    line: 0,
                    commit: key.to_string(),
                    original_path: String::new(),
                    original_line: 0,
                    author_name: String::new(),
                    author_email: String::new(),
                    author_time: 0,
                    author_offset_seconds: 0,
                    summary: String::new(),
                });
                current = Some((key.to_string(), original, final_line));
                continue;
            }
            let sha = &current.as_ref().expect("a header before details").0;
            let info = infos.get_mut(sha).expect("known commit");
            match key {
                "author" => info.author_name = value.to_string(),
                "author-mail" => {
                    info.author_email = value.trim_start_matches('<').trim_end_matches('>').into()
                }
                "author-time" => info.author_time = value.parse().expect("a time"),
                "author-tz" => {
                    let sign = if value.starts_with('-') { -1 } else { 1 };
                    let hours: i32 = value[1..3].parse().expect("hours");
                    let minutes: i32 = value[3..5].parse().expect("minutes");
                    info.author_offset_seconds = sign * (hours * 3600 + minutes * 60);
                }
                "summary" => info.summary = value.to_string(),
                "filename" => info.original_path = value.to_string(),
                _ => {}
            }
        }
        out
    }

    fn open(f: &Fixture) -> Repo {
        Repo::open_local(&f.path).expect("opening the fixture")
    }

    fn id(text: &str) -> CommitId {
        text.parse().expect("a full commit id")
    }

    fn path(text: &str) -> RepoPath {
        RepoPath::parse(text).expect("a valid path")
    }

    fn cache_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("the cache dir")
            .map(|e| e.expect("an entry").path())
            .collect();
        files.sort();
        files
    }

    #[test]
    fn blame_matches_git_blame_porcelain_at_every_commit() {
        let (f, steps) = blame_history();
        let repo = open(&f);
        for (commit, file) in &steps {
            let want = git_blame(&f, commit, file);
            let got = repo.blame(id(commit), &path(file), None).unwrap();
            assert_eq!(got.len(), want.len(), "{commit} {file}: line count");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g, w, "{commit} {file}, line {}", w.line);
            }
        }
        // The history is what it claims to be: the renames were followed, the merge crossed,
        // the copy is blamed on the commit that made it (git blame does not look for copies).
        let (tip, file) = &steps[9];
        let got = repo.blame(id(tip), &path(file), None).unwrap();
        let paths: std::collections::BTreeSet<&str> =
            got.iter().map(|l| l.original_path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "app/deploy.yaml",
                "apps/web/web.yaml",
                "apps/web/deployment.yaml"
            ]
            .into()
        );
        let authors: std::collections::BTreeSet<&str> =
            got.iter().map(|l| l.author_name.as_str()).collect();
        assert_eq!(authors.len(), 4, "{authors:?}");
        assert!(got.iter().any(|l| l.summary == "Add resources"));
        assert!(
            got.iter().any(|l| l.commit == steps[3].0),
            "the branch commit"
        );
        let (last, copy) = &steps[10];
        let copy = repo.blame(id(last), &path(copy), None).unwrap();
        assert!(copy.iter().all(|l| l.commit == *last));
    }

    #[test]
    fn without_bloom_filters_every_commit_is_read() {
        let (f, steps) = blame_history();
        let repo = open(&f);
        let rename = Some(id(&steps[8].0).0);
        let (tip, file) = (&steps[10].0, "apps/web/web.yaml");
        let (_, walk) = repo.blame_walk(id(tip), &path(file), None).unwrap();
        let walk = walk.expect("computed, no cache");
        // The copy, "Add resources", the docs merge, three unrelated commits and the rename are
        // read (the Bloom filters skip five of them), then gix takes over at the rename.
        assert_eq!((walk.skipped, walk.read, walk.handed_over), (0, 7, rename));
        f.git(&["commit-graph", "write", "--reachable"]);
        let (_, walk) = repo.blame_walk(id(tip), &path(file), None).unwrap();
        let walk = walk.expect("computed, no cache");
        assert_eq!((walk.skipped, walk.read, walk.handed_over), (0, 7, rename));
    }

    #[test]
    fn bloom_filters_skip_commits_and_agree_with_git() {
        let (mut f, steps) = blame_history();
        f.git(&["commit-graph", "write", "--reachable", "--changed-paths"]);
        let repo = open(&f);
        let check = |f: &Fixture, commit: &str, file: &str| -> Walk {
            let (got, walk) = repo.blame_walk(id(commit), &path(file), None).unwrap();
            let want = git_blame(f, commit, file);
            assert_eq!(got.len(), want.len(), "{commit} {file}: line count");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g, w, "{commit} {file}, line {}", w.line);
            }
            walk.expect("computed, no cache")
        };
        for (commit, file) in &steps {
            check(&f, commit, file);
        }
        // c2: three unrelated commits passed over, down to the root commit, no gix at all.
        let walk = check(&f, &steps[1].0, steps[1].1);
        assert_eq!((walk.skipped, walk.handed_over), (3, None), "{walk:?}");
        // From the copy commit: the copy, a merge of docs and three unrelated commits are passed
        // over, "Add resources" is diffed, then gix takes over at the rename. (The file is not named
        // deploy.yaml: all 7 hashes of "apps/web/deploy.yaml" fall on one bit of a 16-bit
        // filter, a false positive for git as much as for us.)
        let walk = check(&f, &steps[10].0, "apps/web/web.yaml");
        assert_eq!((walk.skipped, walk.read), (5, 2), "{walk:?}");
        assert_eq!(walk.handed_over, Some(id(&steps[8].0).0), "{walk:?}");
        // The merge changed the file (against its first parent): gix takes over there.
        let walk = check(&f, &steps[5].0, steps[5].1);
        assert_eq!(walk.handed_over, Some(id(&steps[5].0).0), "{walk:?}");

        // Commits newer than the graph are read from the objects; then a split layer on top.
        unrelated(&mut f, "e", 2);
        let text = String::from_utf8(fixture::git_show(&f.path, "HEAD", "apps/web/web.yaml"))
            .expect("UTF-8")
            .replace("replicas: 3", "replicas: 4");
        f.write("apps/web/web.yaml", &text);
        let tip = f.commit(DAVE, "Scale web to 4");
        let walk = check(&f, &tip, "apps/web/web.yaml");
        assert_eq!(walk.handed_over, Some(id(&steps[8].0).0), "{walk:?}");
        f.git(&[
            "commit-graph",
            "write",
            "--reachable",
            "--changed-paths",
            "--split",
        ]);
        assert!(f.path.join(".git/objects/info/commit-graphs").is_dir());
        let walk = check(&f, &tip, "apps/web/web.yaml");
        assert!(walk.skipped >= 6, "{walk:?}");
        assert_eq!(walk.handed_over, Some(id(&steps[8].0).0), "{walk:?}");
        // Turned off in the configuration: gix alone, the same answer.
        f.git(&["config", "commitGraph.readChangedPaths", "false"]);
        let repo = open(&f);
        let (got, walk) = repo
            .blame_walk(id(&tip), &path("apps/web/web.yaml"), None)
            .unwrap();
        assert_eq!(got, git_blame(&f, &tip, "apps/web/web.yaml"));
        assert_eq!(walk.unwrap().skipped, 0);
    }

    #[test]
    fn empty_files_have_no_lines() {
        let mut f = Fixture::new();
        f.write("empty.yaml", "");
        let commit = f.commit(ALICE, "Add an empty file");
        let got = open(&f)
            .blame(id(&commit), &path("empty.yaml"), None)
            .unwrap();
        assert_eq!(got, git_blame(&f, &commit, "empty.yaml"));
        assert!(got.is_empty());
    }

    #[test]
    fn a_second_blame_reads_the_cache() {
        let (f, steps) = blame_history();
        let repo = open(&f);
        let cache = tempfile::TempDir::new().unwrap();
        let (commit, file) = &steps[7];
        let computed = repo.blame(id(commit), &path(file), None).unwrap();

        let first = repo
            .blame(id(commit), &path(file), Some(cache.path()))
            .unwrap();
        assert_eq!(first, computed);
        let files = cache_files(cache.path());
        assert_eq!(files.len(), 1, "one entry, no temp file left: {files:?}");
        let blob = f.git(&["rev-parse", &format!("{commit}:{file}")]);
        let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&format!("{blob}-{commit}-")), "{name}");

        // Prove the second call reads the file: a name changed in it comes back.
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.contains("Bob Builder"));
        std::fs::write(&files[0], text.replace("Bob Builder", "Bob From The Cache")).unwrap();
        let (second, walk) = repo
            .blame_walk(id(commit), &path(file), Some(cache.path()))
            .unwrap();
        assert_eq!(walk, None, "read from the cache, not computed");
        assert!(second.iter().any(|l| l.author_name == "Bob From The Cache"));
        assert!(!second.iter().any(|l| l.author_name == "Bob Builder"));
        let restored: Vec<BlameLine> = second
            .into_iter()
            .map(|mut l| {
                if l.author_name == "Bob From The Cache" {
                    l.author_name = "Bob Builder".into();
                }
                l
            })
            .collect();
        assert_eq!(restored, computed);

        // Other commits and paths get entries of their own.
        let (other, other_file) = &steps[10];
        repo.blame(id(other), &path(other_file), Some(cache.path()))
            .unwrap();
        repo.blame(id(other), &path("apps/web/web.yaml"), Some(cache.path()))
            .unwrap();
        assert_eq!(cache_files(cache.path()).len(), 3);
    }

    #[test]
    fn the_same_blob_at_two_paths_has_two_entries() {
        let (f, steps) = blame_history();
        let repo = open(&f);
        let cache = tempfile::TempDir::new().unwrap();
        let commit = id(&steps[10].0);
        // Same content, same commit, different histories.
        let blob = |p: &str| f.git(&["rev-parse", &format!("{}:{p}", steps[10].0)]);
        assert_eq!(blob("apps/web/web.yaml"), blob("apps/web/copy.yaml"));
        let renamed = repo
            .blame(commit, &path("apps/web/web.yaml"), Some(cache.path()))
            .unwrap();
        let copy = repo
            .blame(commit, &path("apps/web/copy.yaml"), Some(cache.path()))
            .unwrap();
        assert_ne!(renamed, copy);
        assert_eq!(
            repo.blame(commit, &path("apps/web/web.yaml"), Some(cache.path()))
                .unwrap(),
            renamed
        );
        assert_eq!(
            repo.blame(commit, &path("apps/web/copy.yaml"), Some(cache.path()))
                .unwrap(),
            copy
        );
    }

    #[test]
    fn a_bad_cache_file_is_recomputed_and_replaced() {
        let (f, steps) = blame_history();
        let repo = open(&f);
        let cache = tempfile::TempDir::new().unwrap();
        let (commit, file) = &steps[9];
        let want = repo.blame(id(commit), &path(file), None).unwrap();
        repo.blame(id(commit), &path(file), Some(cache.path()))
            .unwrap();
        let entry = cache_files(cache.path()).remove(0);
        let good = std::fs::read_to_string(&entry).unwrap();

        let mut entry_json: serde_json::Value = serde_json::from_str(&good).unwrap();
        entry_json["hunks"].as_array_mut().unwrap().pop();
        let short = entry_json.to_string();
        let mut entry_json: serde_json::Value = serde_json::from_str(&good).unwrap();
        entry_json["hunks"][0][2] = 999.into();
        let bad_index = entry_json.to_string();
        let mut entry_json: serde_json::Value = serde_json::from_str(&good).unwrap();
        entry_json["format"] = 0.into();
        let old_format = entry_json.to_string();
        let mut entry_json: serde_json::Value = serde_json::from_str(&good).unwrap();
        entry_json["path"] = "elsewhere.yaml".into();
        let other_path = entry_json.to_string();

        for bad in [
            "",
            "{not json",
            &good[..good.len() / 2],
            "\u{0}\u{1}binary",
            &short,
            &bad_index,
            &old_format,
            &other_path,
        ] {
            std::fs::write(&entry, bad).unwrap();
            let got = repo
                .blame(id(commit), &path(file), Some(cache.path()))
                .unwrap();
            assert_eq!(got, want, "cache file {bad:?}");
            assert_eq!(
                std::fs::read_to_string(&entry).unwrap(),
                good,
                "rewritten after {bad:?}"
            );
        }
    }

    #[test]
    fn a_cache_that_cannot_be_written_is_skipped() {
        let (f, steps) = blame_history();
        let repo = open(&f);
        let dir = tempfile::TempDir::new().unwrap();
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, "").unwrap();
        let (commit, file) = &steps[1];
        let got = repo
            .blame(id(commit), &path(file), Some(&not_a_dir.join("blame")))
            .unwrap();
        assert_eq!(got, git_blame(&f, commit, file));
    }

    #[test]
    fn blame_reports_what_cannot_be_blamed() {
        let (mut f, steps) = blame_history();
        #[cfg(unix)]
        f.symlink("link.yaml", "apps/web/web.yaml");
        let head = f.commit(CAROL, "Link the manifest");
        let repo = open(&f);
        let head = id(&head);
        let err = repo.blame(head, &path("nope.yaml"), None).unwrap_err();
        assert!(matches!(err, GitError::FileNotFound { .. }), "{err}");
        let err = repo.blame(head, &path("apps/web"), None).unwrap_err();
        assert!(matches!(err, GitError::NotAFile { .. }), "{err}");
        let err = repo
            .blame(head, &path("apps/web/web.yaml/x"), None)
            .unwrap_err();
        assert!(matches!(err, GitError::FileNotFound { .. }), "{err}");
        // A path that existed before the rename does not exist at the tip.
        let err = repo.blame(head, &path(steps[0].1), None).unwrap_err();
        assert!(matches!(err, GitError::FileNotFound { .. }), "{err}");
        let missing = id("0123456789abcdef0123456789abcdef01234567");
        let err = repo
            .blame(missing, &path("apps/web/web.yaml"), None)
            .unwrap_err();
        assert!(matches!(err, GitError::UnknownRevision { .. }), "{err}");
        #[cfg(unix)]
        {
            let err = repo.blame(head, &path("link.yaml"), None).unwrap_err();
            assert!(err.to_string().contains("is a symlink"), "{err}");
            assert!(!err.to_string().contains('\n'), "{err}");
        }
    }

    #[test]
    fn summaries_and_line_counts_follow_git() {
        assert_eq!(blame_summary(b"Subject\n\nBody\n"), Some(&b"Subject"[..]));
        assert_eq!(
            blame_summary(b"\n  \n\tReal one \nnext"),
            Some(&b"\tReal one "[..])
        );
        assert_eq!(blame_summary(b""), None);
        assert_eq!(blame_summary(b"\n \n"), None);
        assert_eq!(count_lines(b""), 0);
        assert_eq!(count_lines(b"a"), 1);
        assert_eq!(count_lines(b"a\n"), 1);
        assert_eq!(count_lines(b"a\nb"), 2);
        assert_eq!(count_lines(b"\n\n"), 2);
    }
}
