//! An opened repository (a local checkout or a cache clone) and everything read from it at a commit.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use gix::ObjectId;

use super::path::RepoPath;
use super::tree::{self, Found, ResolveError, WalkError};
use super::url::RepoUrl;
use super::{GitError, error_chain};

/// A commit's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitId(pub(super) ObjectId);

impl CommitId {
    /// The abbreviated id (7 hex digits), as `git log --oneline` shows it.
    pub fn short(&self) -> String {
        self.0.to_hex_with_len(7).to_string()
    }
}

impl std::fmt::Display for CommitId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Serialised as the full hex id.
impl serde::Serialize for CommitId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl FromStr for CommitId {
    type Err = GitError;

    /// Parses a full id (40 hex digits); abbreviated ids need a repository, see [`Repo::resolve`].
    fn from_str(text: &str) -> Result<CommitId, GitError> {
        if text.len() != 40 {
            return Err(GitError::BadCommitId { text: text.into() });
        }
        ObjectId::from_hex(text.as_bytes())
            .map(CommitId)
            .map_err(|_| GitError::BadCommitId { text: text.into() })
    }
}

/// Who made a commit, when, and its subject line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitInfo {
    /// The commit.
    pub id: CommitId,
    /// Author name, as recorded (no mailmap).
    pub author_name: String,
    /// Author email, as recorded.
    pub author_email: String,
    /// Author time, seconds since the Unix epoch.
    pub time: i64,
    /// Author time zone, seconds east of UTC.
    pub offset_seconds: i32,
    /// The subject: the message's first paragraph on one line (git's `%s`).
    pub subject: String,
}

/// How a repository was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// A local checkout, used as it is.
    Local,
    /// Cloned into the cache by this call.
    Cloned,
    /// An existing cache clone, reused without contacting the remote.
    Reused,
}

/// Where a [`Repo`] came from.
#[derive(Debug)]
pub(super) enum Origin {
    /// A checkout the user works in; read, never written.
    Local,
    /// Our bare clone of `url` in the cache; `lock_path` serialises clone and fetch across processes.
    Cache {
        url: RepoUrl,
        lock_path: PathBuf,
        cache_use: CacheUse,
        /// Serialises fetches between threads of this process (the file lock does it between processes).
        fetch_guard: Mutex<()>,
    },
}

/// A Git repository to read from: a local checkout or a cache clone. `Send + Sync`.
#[derive(Debug)]
pub struct Repo {
    pub(super) repo: gix::ThreadSafeRepository,
    pub(super) origin: Origin,
    /// Commits already read: every object of a run asks for its applied and last-change
    /// commits, and those are a handful (a commit never changes).
    commits: Mutex<HashMap<CommitId, CommitInfo>>,
    /// The remotes' fetch URLs, read once (a run adds no remote).
    remotes: OnceLock<Vec<String>>,
    /// Opened handles, each with an object cache, reused from call to call: a run looks up
    /// the same commit and trees once per path it reads (a render's kustomizations, every
    /// object's file), and a fresh handle would read and inflate them from disk every time.
    handles: Mutex<Vec<gix::Repository>>,
}

/// Bytes of decoded objects one pooled handle keeps (a few handles live at once, one per
/// thread reading): enough for the trees of a large monorepo's paths.
const HANDLE_OBJECT_CACHE_BYTES: usize = 4 << 20;

/// A handle taken from [`Repo`]'s pool; goes back to it when dropped.
pub(super) struct Handle<'a> {
    repo: Option<gix::Repository>,
    pool: &'a Mutex<Vec<gix::Repository>>,
}

impl std::ops::Deref for Handle<'_> {
    type Target = gix::Repository;
    fn deref(&self) -> &gix::Repository {
        self.repo
            .as_ref()
            .expect("a handle holds its repository until dropped")
    }
}

impl Drop for Handle<'_> {
    fn drop(&mut self) {
        if let Some(repo) = self.repo.take() {
            self.pool
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(repo);
        }
    }
}

/// The longest revision text we pass to Git.
const MAX_REV_BYTES: usize = 256;

impl Repo {
    pub(super) fn new(repo: gix::ThreadSafeRepository, origin: Origin) -> Repo {
        Repo {
            repo,
            origin,
            commits: Mutex::default(),
            remotes: OnceLock::new(),
            handles: Mutex::default(),
        }
    }

    /// A handle to read with, from the pool (or newly opened, with an object cache).
    pub(super) fn handle(&self) -> Handle<'_> {
        let pooled = self.handles.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let repo = pooled.unwrap_or_else(|| {
            let mut repo = self.repo.to_thread_local();
            repo.object_cache_size_if_unset(HANDLE_OBJECT_CACHE_BYTES);
            repo
        });
        Handle {
            repo: Some(repo),
            pool: &self.handles,
        }
    }

    /// A local checkout used as it is (discovered upward from `path`); never modified.
    pub fn open_local(path: &Path) -> Result<Repo, GitError> {
        let repo =
            gix::ThreadSafeRepository::discover(path).map_err(|e| GitError::NotARepository {
                path: path.to_path_buf(),
                reason: error_chain(&e),
            })?;
        Ok(Repo::new(repo, Origin::Local))
    }

    /// How this repository was obtained.
    pub fn cache_use(&self) -> CacheUse {
        match &self.origin {
            Origin::Local => CacheUse::Local,
            Origin::Cache { cache_use, .. } => *cache_use,
        }
    }

    /// The remotes' fetch URLs, as configured (to match a checkout with an object's repo URL).
    pub fn remote_urls(&self) -> &[String] {
        self.remotes.get_or_init(|| {
            let repo = self.handle();
            let mut urls = Vec::new();
            for name in repo.remote_names() {
                // Without rewriting: the URL as the user wrote it is what they will recognise.
                let name: &gix::bstr::BStr = name.as_ref();
                if let Some(Ok(remote)) = repo.try_find_remote_without_url_rewrite(name)
                    && let Some(url) = remote.url(gix::remote::Direction::Fetch)
                {
                    urls.push(url.to_bstring().to_string());
                }
            }
            urls
        })
    }

    /// Whether one of the remotes names the same repository as `url`.
    pub fn has_remote(&self, url: &RepoUrl) -> bool {
        self.remote_urls()
            .iter()
            .filter_map(|u| RepoUrl::parse(u).ok())
            .any(|u| u.same_repo(url))
    }

    /// The working tree of a checkout; `None` for a bare repository or a cache clone.
    pub fn workdir(&self) -> Option<&Path> {
        self.repo.work_dir()
    }

    /// A short name for messages: the working tree path, the URL, or the Git directory.
    pub fn display_name(&self) -> String {
        match &self.origin {
            Origin::Cache { url, .. } => url.as_str().to_string(),
            Origin::Local => self
                .workdir()
                .unwrap_or_else(|| self.repo.git_dir())
                .display()
                .to_string(),
        }
    }

    /// Resolves "HEAD", a branch ("main", "origin/main", "refs/heads/main"), a tag, or a full or
    /// abbreviated id to a commit. A cache clone that lacks it fetches once and tries again;
    /// the `bool` says whether that fetch happened.
    pub fn resolve(&self, rev: &str) -> Result<(CommitId, bool), GitError> {
        let unknown = || GitError::UnknownRevision {
            rev: rev.to_string(),
            repo: self.display_name(),
        };
        if rev.is_empty()
            || rev.len() > MAX_REV_BYTES
            || rev.starts_with('-')
            || rev.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(unknown());
        }
        if let Some(id) = self.try_resolve(rev)? {
            return Ok((id, false));
        }
        if let Origin::Cache { .. } = self.origin {
            let fetched = self.fetch_for(rev)?;
            if let Some(id) = self.try_resolve(rev)? {
                return Ok((id, fetched));
            }
        }
        Err(unknown())
    }

    /// `Some(commit)` if `rev` names one here, `None` if it names nothing (yet).
    pub(super) fn try_resolve(&self, rev: &str) -> Result<Option<CommitId>, GitError> {
        let repo = self.handle();
        for candidate in self.rev_candidates(rev) {
            // A name that does not parse, or an id whose object is missing, is "not here".
            let Ok(id) = repo.rev_parse_single(candidate.as_str()) else {
                continue;
            };
            let Ok(object) = id.object() else {
                continue;
            };
            let commit = object.peel_to_commit().map_err(|e| GitError::Other {
                repo: self.display_name(),
                reason: format!(
                    "'{}' does not name a commit: {}",
                    super::name(rev),
                    error_chain(&e)
                ),
            })?;
            return Ok(Some(CommitId(commit.id)));
        }
        Ok(None)
    }

    /// The spellings to try for `rev`. A cache clone keeps the remote's branches as its own
    /// `refs/heads/*`, so `origin/main` (as a checkout would say) means `refs/heads/main` there.
    fn rev_candidates(&self, rev: &str) -> Vec<String> {
        let mut candidates = vec![rev.to_string()];
        if let Origin::Cache { .. } = self.origin {
            for prefix in ["refs/remotes/origin/", "origin/"] {
                if let Some(branch) = rev.strip_prefix(prefix)
                    && !branch.is_empty()
                {
                    candidates.push(format!("refs/heads/{branch}"));
                }
            }
        }
        candidates
    }

    /// Bytes of the file at `path` in `commit`, from the object database. Symlinks are followed
    /// while they stay inside the repository (at most 8); one that leaves it is `RefusedPath`.
    pub fn read_file(&self, commit: CommitId, path: &RepoPath) -> Result<Vec<u8>, GitError> {
        let repo = self.handle();
        let root = self.root_tree(&repo, commit)?;
        match self.lookup(&repo, root, commit, path)? {
            Found::File(id) => {
                let mut blob = repo.find_blob(id).map_err(|e| {
                    self.walk_err(WalkError::Unreadable {
                        path: path.to_string(),
                        reason: error_chain(&e),
                    })
                })?;
                Ok(blob.take_data())
            }
            Found::Dir(_) | Found::Submodule => Err(GitError::NotAFile {
                path: path.to_string(),
                commit: commit.short(),
            }),
        }
    }

    /// Every regular file (recursively) under `dir` at `commit`, repo-relative, sorted.
    /// Symlinks and submodules inside `dir` are not listed; `dir` itself may be a symlink.
    pub fn list_files(&self, commit: CommitId, dir: &RepoPath) -> Result<Vec<RepoPath>, GitError> {
        let repo = self.handle();
        let dir_id = self.dir_id(&repo, commit, dir)?;
        let files = tree::list_files(&repo, dir_id, dir.as_str()).map_err(|e| self.walk_err(e))?;
        files
            .iter()
            .map(|f| RepoPath::parse(f))
            .collect::<Result<Vec<_>, _>>()
    }

    /// The path `path` at `commit` reaches once its symlinks are followed (inside the
    /// repository): where its history is, for blame.
    pub fn real_path(&self, commit: CommitId, path: &RepoPath) -> Result<RepoPath, GitError> {
        let repo = self.handle();
        let root = self.root_tree(&repo, commit)?;
        let (_, real) = self.lookup_to(&repo, root, commit, path)?;
        RepoPath::parse(&real)
    }

    /// The names of what `dir` at `commit` holds directly (files, directories and symlinks;
    /// not submodules), sorted: what a reader of `dir` meets, each to be read through
    /// [`Repo::read_file`], which follows the links. `dir` itself may be a symlink.
    pub fn entries(&self, commit: CommitId, dir: &RepoPath) -> Result<Vec<String>, GitError> {
        let repo = self.handle();
        let dir_id = self.dir_id(&repo, commit, dir)?;
        tree::entries(&repo, dir_id, dir.as_str()).map_err(|e| self.walk_err(e))
    }

    /// Writes only `paths` (files or directories) of the tree of `commit` into the empty
    /// directory `dest`, at their places: what one render reads, and nothing else, so that a
    /// blob elsewhere that cannot be read (a partial clone, a damaged pack) does not fail it.
    pub fn export_paths(
        &self,
        commit: CommitId,
        paths: &[RepoPath],
        dest: &Path,
    ) -> Result<(), GitError> {
        let mut entries = std::fs::read_dir(dest).map_err(|e| GitError::Other {
            repo: self.display_name(),
            reason: format!("cannot export into '{}': {e}", dest.display()),
        })?;
        if entries.next().is_some() {
            return Err(GitError::Other {
                repo: self.display_name(),
                reason: format!(
                    "cannot export into '{}': the directory is not empty",
                    dest.display()
                ),
            });
        }
        let repo = self.handle();
        let root = self.root_tree(&repo, commit)?;
        tree::export_paths(&repo, root, paths, dest).map_err(|e| self.walk_err(e))
    }

    /// The object ids of what [`Repo::export_paths`] would write for `paths` at `commit`
    /// (see `tree::content_ids`), sorted: equal lists export equal files.
    pub fn content_ids(
        &self,
        commit: CommitId,
        paths: &[RepoPath],
    ) -> Result<Vec<(String, Option<String>)>, GitError> {
        let repo = self.handle();
        let root = self.root_tree(&repo, commit)?;
        let ids = tree::content_ids(&repo, root, paths).map_err(|e| self.walk_err(e))?;
        Ok(ids
            .into_iter()
            .map(|(path, id)| (path, id.map(|id| id.to_string())))
            .collect())
    }

    /// Author, time and subject of `commit`.
    pub fn commit_info(&self, commit: CommitId) -> Result<CommitInfo, GitError> {
        let known = self.commits.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(info) = known.get(&commit) {
            return Ok(info.clone());
        }
        drop(known);
        let info = self.read_commit_info(commit)?;
        self.commits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(commit, info.clone());
        Ok(info)
    }

    fn read_commit_info(&self, commit: CommitId) -> Result<CommitInfo, GitError> {
        let repo = self.handle();
        let found = self.find_commit(&repo, commit)?;
        let author = found.author().map_err(|e| self.other(&e))?;
        let time = author.time().map_err(|e| self.other(&e))?;
        let message = found.message().map_err(|e| self.other(&e))?;
        Ok(CommitInfo {
            id: commit,
            author_name: author.name.to_string(),
            author_email: author.email.to_string(),
            time: time.seconds,
            offset_seconds: time.offset,
            subject: message.summary().to_string(),
        })
    }

    /// The last commit at or before `from` that changed `path`, as `git log -1 <from> -- <path>`
    /// finds it; `None` if the path never existed in that history.
    pub fn last_commit_touching(
        &self,
        from: CommitId,
        path: &RepoPath,
    ) -> Result<Option<CommitId>, GitError> {
        let repo = self.handle();
        // (mode, id) of `path` per commit; compared raw, as git does, without following symlinks.
        let mut entries: HashMap<ObjectId, Option<(u16, ObjectId)>> = HashMap::new();
        let mut entry_at = |id: ObjectId| -> Result<Option<(u16, ObjectId)>, GitError> {
            if let Some(entry) = entries.get(&id) {
                return Ok(*entry);
            }
            let commit = self.find_commit(&repo, CommitId(id))?;
            let tree_id = commit.tree_id().map_err(|e| self.other(&e))?.detach();
            let entry = if path.is_root() {
                Some((gix::objs::tree::EntryKind::Tree as u16, tree_id))
            } else {
                let tree = repo.find_tree(tree_id).map_err(|e| self.other(&e))?;
                tree.lookup_entry(path.components())
                    .map_err(|e| self.other(&e))?
                    .map(|e| (e.mode().value(), e.object_id()))
            };
            entries.insert(id, entry);
            Ok(entry)
        };

        // Git's default history simplification: at a merge, follow the first parent in which the
        // path is unchanged (the change came from elsewhere); a commit that differs from all its
        // parents (or a root commit that has the path) is the one that changed it.
        let mut current = from.0;
        'walk: loop {
            let entry = entry_at(current)?;
            let parents: Vec<ObjectId> = self
                .find_commit(&repo, CommitId(current))?
                .parent_ids()
                .map(|id| id.detach())
                .collect();
            if parents.is_empty() {
                return Ok(entry.map(|_| CommitId(current)));
            }
            for parent in parents {
                if entry_at(parent)? == entry {
                    current = parent;
                    continue 'walk;
                }
            }
            return Ok(Some(CommitId(current)));
        }
    }

    /// How many commits `to` has that `from` does not (`git rev-list --count from..to`).
    pub fn count_commits_between(&self, from: CommitId, to: CommitId) -> Result<usize, GitError> {
        let repo = self.handle();
        // Both must exist; a missing one would silently count wrong.
        self.find_commit(&repo, from)?;
        self.find_commit(&repo, to)?;
        let walk = repo
            .rev_walk([to.0])
            .with_hidden([from.0])
            .all()
            .map_err(|e| self.other(&e))?;
        let mut count = 0;
        for info in walk {
            info.map_err(|e| self.other(&e))?;
            count += 1;
        }
        Ok(count)
    }

    /// For a checkout: tracked files under `dir` whose working-tree content differs from HEAD,
    /// and untracked, non-ignored files under `dir`, repo-relative and sorted. Empty when clean.
    pub fn dirty_files(&self, dir: &RepoPath) -> Result<Vec<String>, GitError> {
        let repo = self.handle();
        if repo.workdir().is_none() {
            return Err(GitError::Other {
                repo: self.display_name(),
                reason: "has no working tree to check for changes".into(),
            });
        }
        use gix::status::{Submodule, UntrackedFiles};
        let patterns: Vec<gix::bstr::BString> = if dir.is_root() {
            Vec::new()
        } else {
            // literal: a directory named like a glob must not match other paths.
            vec![format!(":(literal){}", dir.as_str()).into()]
        };
        let status = repo
            .status(gix::progress::Discard)
            .map_err(|e| self.other(&e))?
            .untracked_files(UntrackedFiles::Files)
            .index_worktree_rewrites(None)
            .tree_index_track_renames(gix::status::tree_index::TrackRenames::Disabled)
            .index_worktree_submodules(Submodule::Given {
                ignore: gix::submodule::config::Ignore::All,
                check_dirty: false,
            })
            .into_iter(patterns)
            .map_err(|e| self.other(&e))?;
        let mut dirty = BTreeSet::new();
        for item in status {
            let item = item.map_err(|e| self.other(&e))?;
            let path = match &item {
                // A worktree item without a summary is an ignored file or a stat-only refresh.
                gix::status::Item::IndexWorktree(change) if change.summary().is_none() => continue,
                gix::status::Item::IndexWorktree(change) => change.rela_path().to_string(),
                gix::status::Item::TreeIndex(change) => change.location().to_string(),
            };
            if is_under(&path, dir) {
                dirty.insert(path);
            }
        }
        Ok(dirty.into_iter().collect())
    }

    fn root_tree(&self, repo: &gix::Repository, commit: CommitId) -> Result<ObjectId, GitError> {
        let found = self.find_commit(repo, commit)?;
        found
            .tree_id()
            .map(|id| id.detach())
            .map_err(|e| self.other(&e))
    }

    fn find_commit<'r>(
        &self,
        repo: &'r gix::Repository,
        commit: CommitId,
    ) -> Result<gix::Commit<'r>, GitError> {
        repo.find_commit(commit.0)
            .map_err(|_| GitError::UnknownRevision {
                rev: commit.to_string(),
                repo: self.display_name(),
            })
    }

    /// The tree `dir` names at `commit` (through symlinks); a file there is `NotADirectory`.
    fn dir_id(
        &self,
        repo: &gix::Repository,
        commit: CommitId,
        dir: &RepoPath,
    ) -> Result<ObjectId, GitError> {
        let root = self.root_tree(repo, commit)?;
        match self.lookup(repo, root, commit, dir)? {
            Found::Dir(id) => Ok(id),
            Found::File(_) | Found::Submodule => Err(GitError::NotADirectory {
                path: dir.to_string(),
                commit: commit.short(),
            }),
        }
    }

    fn lookup(
        &self,
        repo: &gix::Repository,
        root: ObjectId,
        commit: CommitId,
        path: &RepoPath,
    ) -> Result<Found, GitError> {
        self.lookup_to(repo, root, commit, path)
            .map(|(found, _)| found)
    }

    /// [`Repo::lookup`], and the path it reaches with no symlink on the way.
    fn lookup_to(
        &self,
        repo: &gix::Repository,
        root: ObjectId,
        commit: CommitId,
        path: &RepoPath,
    ) -> Result<(Found, String), GitError> {
        tree::resolve_to(repo, root, path).map_err(|e| match e {
            ResolveError::NotFound => GitError::FileNotFound {
                path: path.to_string(),
                commit: commit.short(),
                repo: self.display_name(),
            },
            ResolveError::Escapes { link, target } => GitError::RefusedPath {
                path: path.to_string(),
                reason: format!(
                    "symlink '{}' points outside the repository ('{}')",
                    super::name(&link),
                    super::name(&target)
                ),
            },
            ResolveError::TooManyLinks => GitError::RefusedPath {
                path: path.to_string(),
                reason: format!(
                    "more than {} symlinks to follow (a loop?)",
                    tree::MAX_SYMLINK_HOPS
                ),
            },
            ResolveError::Git(reason) => GitError::Other {
                repo: self.display_name(),
                reason,
            },
        })
    }

    fn walk_err(&self, err: WalkError) -> GitError {
        match err {
            WalkError::BadName { path, reason } => GitError::RefusedPath { path, reason },
            WalkError::Git(reason) => GitError::Other {
                repo: self.display_name(),
                reason,
            },
            WalkError::Unreadable { path, reason } => GitError::Other {
                repo: self.display_name(),
                reason: format!(
                    "cannot read '{path}': {reason} (a partial clone that has not fetched it, or a \
                     damaged pack: fetch it, or widen the sparse checkout)"
                ),
            },
            WalkError::Io { path, reason } => GitError::Other {
                repo: self.display_name(),
                reason: format!("writing '{path}': {reason}"),
            },
        }
    }

    pub(super) fn other(&self, err: &(dyn std::error::Error + 'static)) -> GitError {
        GitError::Other {
            repo: self.display_name(),
            reason: error_chain(err),
        }
    }
}

/// Whether the repo-relative `path` is `dir` or below it.
fn is_under(path: &str, dir: &RepoPath) -> bool {
    dir.is_root()
        || path == dir.as_str()
        || path
            .strip_prefix(dir.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::fixture::{self, History};

    fn open(h: &History) -> Repo {
        Repo::open_local(&h.repo.path).expect("opening the fixture")
    }

    fn id(text: &str) -> CommitId {
        text.parse().expect("a full commit id")
    }

    fn path(text: &str) -> RepoPath {
        RepoPath::parse(text).expect("a valid path")
    }

    #[test]
    fn repo_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Repo>();
    }

    #[test]
    fn commit_id_parses_and_prints() {
        let text = "0123456789abcdef0123456789abcdef01234567";
        let commit = id(text);
        assert_eq!(commit.to_string(), text);
        assert_eq!(commit.short(), "0123456");
        for bad in [
            "",
            "0123456",
            "xyz3456789abcdef0123456789abcdef01234567",
            &format!("{text}0"),
        ] {
            assert!(
                matches!(bad.parse::<CommitId>(), Err(GitError::BadCommitId { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn open_local_discovers_upwards_and_refuses_non_repositories() {
        let h = fixture::history();
        let repo = Repo::open_local(&h.repo.path.join("app")).unwrap();
        assert_eq!(repo.workdir(), Some(h.repo.path.as_path()));
        assert_eq!(repo.cache_use(), CacheUse::Local);
        assert_eq!(repo.display_name(), h.repo.path.display().to_string());

        let empty = tempfile::TempDir::new().unwrap();
        match Repo::open_local(empty.path()) {
            Err(err @ GitError::NotARepository { .. }) => {
                assert!(!err.to_string().contains('\n'), "{err}")
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("opened an empty directory"),
        }
    }

    #[test]
    fn remote_urls_are_listed_as_configured() {
        let h = fixture::history();
        h.repo
            .git(&["remote", "add", "origin", "git@github.com:o/r.git"]);
        h.repo
            .git(&["remote", "add", "mirror", "https://example.com/o/r"]);
        let repo = open(&h);
        let mut urls = repo.remote_urls().to_vec();
        urls.sort();
        assert_eq!(urls, ["git@github.com:o/r.git", "https://example.com/o/r"]);
        assert!(repo.has_remote(&RepoUrl::parse("https://github.com/o/r").unwrap()));
        assert!(!repo.has_remote(&RepoUrl::parse("https://github.com/o/other").unwrap()));
    }

    #[test]
    fn resolve_matches_git_rev_parse() {
        let h = fixture::history();
        let repo = open(&h);
        let c3_short = &h.commits[2][..9];
        for rev in [
            "HEAD",
            "HEAD~1",
            "main",
            "refs/heads/main",
            "feature",
            "v1",
            "v2",
            h.commits[0].as_str(),
            c3_short,
        ] {
            let want = h.repo.git(&["rev-parse", &format!("{rev}^{{commit}}")]);
            let (got, fetched) = repo.resolve(rev).unwrap_or_else(|e| panic!("{rev}: {e}"));
            assert_eq!(got.to_string(), want, "{rev}");
            assert!(!fetched, "a checkout never fetches");
        }
        for rev in [
            "nope",
            "origin/main",
            "0123456789abcdef0123456789abcdef01234567",
            "-h",
            "main\nx",
            "",
        ] {
            assert!(
                matches!(repo.resolve(rev), Err(GitError::UnknownRevision { .. })),
                "{rev:?}"
            );
        }
    }

    #[test]
    fn read_file_matches_git_show_at_every_commit() {
        let h = fixture::history();
        let repo = open(&h);
        for commit in &h.commits {
            let listed = h.repo.git(&["ls-tree", "-r", "--name-only", commit]);
            for file in listed.lines() {
                let mode = h.repo.git(&["ls-tree", commit, file]);
                if !(mode.starts_with("100644") || mode.starts_with("100755")) {
                    continue;
                }
                let got = repo.read_file(id(commit), &path(file)).unwrap();
                assert_eq!(
                    got,
                    fixture::git_show(&h.repo.path, commit, file),
                    "{commit}:{file}"
                );
            }
        }
        // The old and the new version of the same file differ, as git says.
        let old = repo
            .read_file(id(&h.commits[0]), &path("app/deploy.yaml"))
            .unwrap();
        let new = repo
            .read_file(id(&h.commits[8]), &path("app/deploy.yaml"))
            .unwrap();
        assert_ne!(old, new);
    }

    #[test]
    fn read_file_reports_missing_files_directories_and_submodules() {
        let h = fixture::history();
        let repo = open(&h);
        let head = id(&h.commits[8]);
        let err = repo.read_file(head, &path("README.md")).unwrap_err();
        assert!(matches!(err, GitError::FileNotFound { .. }), "{err}");
        let err = repo
            .read_file(head, &path("app/deploy.yaml/x"))
            .unwrap_err();
        assert!(matches!(err, GitError::FileNotFound { .. }), "{err}");
        let err = repo.read_file(head, &path("app")).unwrap_err();
        assert!(matches!(err, GitError::NotAFile { .. }), "{err}");
        let err = repo.read_file(head, &path("vendor/sub")).unwrap_err();
        assert!(matches!(err, GitError::NotAFile { .. }), "{err}");
        let missing = id("0123456789abcdef0123456789abcdef01234567");
        let err = repo
            .read_file(missing, &path("app/deploy.yaml"))
            .unwrap_err();
        assert!(matches!(err, GitError::UnknownRevision { .. }), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_followed_only_inside_the_repository() {
        let h = fixture::history();
        let repo = open(&h);
        let head = id(&h.commits[8]);
        let deploy = fixture::git_show(&h.repo.path, &h.commits[8], "app/deploy.yaml");
        for inside in [
            "links/deploy",
            "links/chain",
            "links/appdir/deploy.yaml",
            "links/self/deploy",
            "links/self/self/appdir/deploy.yaml",
        ] {
            assert_eq!(
                repo.read_file(head, &path(inside)).unwrap(),
                deploy,
                "{inside}"
            );
        }
        for outside in [
            "links/passwd",
            "links/abs",
            "links/sneaky",
            "links/sneaky/etc/passwd",
            "links/loop1",
        ] {
            match repo.read_file(head, &path(outside)) {
                Err(err @ GitError::RefusedPath { .. }) => {
                    assert!(!err.to_string().contains('\n'), "{err}")
                }
                other => panic!("{outside}: expected RefusedPath, got {other:?}"),
            }
        }
        let err = repo.read_file(head, &path("links/dangling")).unwrap_err();
        assert!(matches!(err, GitError::FileNotFound { .. }), "{err}");
        let err = repo.read_file(head, &path("links/appdir")).unwrap_err();
        assert!(matches!(err, GitError::NotAFile { .. }), "{err}");
    }

    #[test]
    #[cfg(unix)]
    fn a_real_path_is_where_the_symlinks_lead() {
        let h = fixture::history();
        let repo = open(&h);
        let head = id(&h.commits[8]);
        for (linked, real) in [
            ("links/deploy", "app/deploy.yaml"),
            ("links/chain", "app/deploy.yaml"),
            ("links/appdir/deploy.yaml", "app/deploy.yaml"),
            ("links/self/self/appdir/deploy.yaml", "app/deploy.yaml"),
            ("links/appdir", "app"),
            ("app/svc.yaml", "app/svc.yaml"),
        ] {
            assert_eq!(
                repo.real_path(head, &path(linked)).unwrap().as_str(),
                real,
                "{linked}"
            );
        }
        let err = repo.real_path(head, &path("links/passwd")).unwrap_err();
        assert!(matches!(err, GitError::RefusedPath { .. }), "{err}");
    }

    #[test]
    fn list_files_matches_git_ls_tree() {
        let h = fixture::history();
        let repo = open(&h);
        for commit in &h.commits {
            let listing = h.repo.git(&["ls-tree", "-r", commit]);
            let mut want: Vec<&str> = listing
                .lines()
                .filter(|l| l.starts_with("100644") || l.starts_with("100755"))
                .map(|l| l.split_once('\t').expect("a tab").1)
                .collect();
            want.sort();
            let got = repo.list_files(id(commit), &RepoPath::root()).unwrap();
            let got: Vec<&str> = got.iter().map(RepoPath::as_str).collect();
            assert_eq!(got, want, "{commit}");
        }
        let head = id(&h.commits[8]);
        let app: Vec<String> = repo
            .list_files(head, &path("app"))
            .unwrap()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(app, ["app/deploy.yaml", "app/svc.yaml"]);
        let err = repo.list_files(head, &path("app/deploy.yaml")).unwrap_err();
        assert!(matches!(err, GitError::NotADirectory { .. }), "{err}");
        let err = repo.list_files(head, &path("nope")).unwrap_err();
        assert!(matches!(err, GitError::FileNotFound { .. }), "{err}");
        #[cfg(unix)]
        {
            let via_link = repo.list_files(head, &path("links/appdir")).unwrap();
            assert_eq!(via_link.len(), 2);
            assert_eq!(via_link[0].as_str(), "links/appdir/deploy.yaml");
        }
    }

    #[test]
    fn entries_match_git_ls_tree_of_one_directory() {
        let h = fixture::history();
        let repo = open(&h);
        let head = &h.commits[8];
        for dir in ["", "app", "links"] {
            let listing = h.repo.git(&["ls-tree", &format!("{head}:{dir}")]);
            let mut want: Vec<&str> = listing
                .lines()
                .filter(|l| !l.starts_with("160000"))
                .map(|l| l.split_once('\t').expect("a tab").1)
                .collect();
            want.sort();
            let dir = if dir.is_empty() {
                RepoPath::root()
            } else {
                path(dir)
            };
            assert_eq!(repo.entries(id(head), &dir).unwrap(), want, "{dir}");
        }
        let err = repo
            .entries(id(head), &path("app/deploy.yaml"))
            .unwrap_err();
        assert!(matches!(err, GitError::NotADirectory { .. }), "{err}");
    }

    #[test]
    fn export_of_the_root_writes_files_and_only_inner_symlinks() {
        let h = fixture::history();
        let repo = open(&h);
        let head = &h.commits[8];
        let dest = tempfile::TempDir::new().unwrap();
        repo.export_paths(id(head), &[RepoPath::root()], dest.path())
            .unwrap();

        let listing = h.repo.git(&["ls-tree", "-r", head]);
        for line in listing.lines() {
            let (meta, file) = line.split_once('\t').expect("a tab");
            let on_disk = dest.path().join(file);
            if meta.starts_with("100") {
                let got = std::fs::read(&on_disk).unwrap();
                assert_eq!(got, fixture::git_show(&h.repo.path, head, file), "{file}");
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::metadata(&on_disk).unwrap().permissions().mode();
                    assert_eq!(mode & 0o100 != 0, meta.starts_with("100755"), "{file}");
                }
            }
        }
        #[cfg(unix)]
        {
            for kept in ["links/deploy", "links/appdir", "links/self", "links/chain"] {
                let meta = std::fs::symlink_metadata(dest.path().join(kept)).unwrap();
                assert!(meta.file_type().is_symlink(), "{kept}");
            }
            let deploy = std::fs::read(dest.path().join("links/appdir/deploy.yaml")).unwrap();
            assert_eq!(
                deploy,
                fixture::git_show(&h.repo.path, head, "app/deploy.yaml")
            );
            for skipped in [
                "links/passwd",
                "links/abs",
                "links/sneaky",
                "links/loop1",
                "links/loop2",
                "links/dangling",
            ] {
                assert!(
                    std::fs::symlink_metadata(dest.path().join(skipped)).is_err(),
                    "{skipped} was exported"
                );
            }
        }
        assert!(
            !dest.path().join("vendor/sub").exists(),
            "submodule exported"
        );

        // Only into an empty directory.
        let err = repo
            .export_paths(id(head), &[RepoPath::root()], dest.path())
            .unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
    }

    #[test]
    fn export_of_some_paths_writes_them_and_what_their_links_reach() {
        let h = fixture::history();
        let repo = open(&h);
        let head = &h.commits[8];
        let dest = tempfile::TempDir::new().unwrap();
        let paths = [
            RepoPath::parse("links/appdir").unwrap(),
            RepoPath::parse("bin").unwrap(),
        ];
        repo.export_paths(id(head), &paths, dest.path()).unwrap();
        let mut top: Vec<String> = std::fs::read_dir(dest.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        assert_eq!(top, ["app", "bin", "links"]);
        let links: Vec<_> = std::fs::read_dir(dest.path().join("links"))
            .unwrap()
            .collect();
        assert_eq!(links.len(), 1, "only the link asked for");
        assert_eq!(
            std::fs::read(dest.path().join("links/appdir/deploy.yaml")).unwrap(),
            fixture::git_show(&h.repo.path, head, "app/deploy.yaml")
        );
        // A path that does not exist is left out; kustomize names it.
        let empty = tempfile::TempDir::new().unwrap();
        repo.export_paths(
            id(head),
            &[RepoPath::parse("nowhere").unwrap()],
            empty.path(),
        )
        .unwrap();
        assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
    }

    #[test]
    fn commit_info_matches_git_log() {
        let h = fixture::history();
        let repo = open(&h);
        for commit in &h.commits {
            let want = h.repo.git(&[
                "log",
                "-1",
                "--format=%an|%ae|%at|%s|%ad",
                "--date=raw",
                commit,
            ]);
            let info = repo.commit_info(id(commit)).unwrap();
            let tz = want.rsplit(' ').next().unwrap();
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            let hours: i32 = tz[1..3].parse().unwrap();
            let minutes: i32 = tz[3..5].parse().unwrap();
            let offset = sign * (hours * 3600 + minutes * 60);
            let got = format!(
                "{}|{}|{}|{}|{} {}",
                info.author_name, info.author_email, info.time, info.subject, info.time, tz
            );
            assert_eq!(got, want, "{commit}");
            assert_eq!(info.offset_seconds, offset, "{commit}");
            assert_eq!(info.id.to_string(), *commit);
        }
    }

    #[test]
    fn last_commit_touching_matches_git_log() {
        let h = fixture::history();
        let repo = open(&h);
        let paths = [
            "app/deploy.yaml",
            "app/service.yaml",        // renamed away in c7
            "app/svc.yaml",            // renamed to in c7
            "base/kustomization.yaml", // changed on a branch, then merged
            "feature.txt",
            "README.md", // deleted in c9
            "app",
            "links/deploy",
            "vendor/sub",
            "never/existed.yaml",
        ];
        for from in &h.commits {
            for file in paths {
                let want = h.repo.git(&["log", "-1", "--format=%H", from, "--", file]);
                let got = repo.last_commit_touching(id(from), &path(file)).unwrap();
                let got = got.map(|c| c.to_string()).unwrap_or_default();
                assert_eq!(got, want, "git log -1 {from} -- {file}");
            }
            let want = h.repo.git(&["log", "-1", "--format=%H", from, "--", "."]);
            let got = repo
                .last_commit_touching(id(from), &RepoPath::root())
                .unwrap();
            assert_eq!(got.map(|c| c.to_string()).unwrap_or_default(), want);
        }
        // The merge case, spelled out: the change came from Carol's branch commit, not the merge.
        let got = repo
            .last_commit_touching(id(&h.commits[8]), &path("base/kustomization.yaml"))
            .unwrap();
        assert_eq!(got.unwrap().to_string(), h.commits[2]);
    }

    #[test]
    fn count_commits_between_matches_git_rev_list() {
        let h = fixture::history();
        let repo = open(&h);
        for from in &h.commits {
            for to in &h.commits {
                let want: usize = h
                    .repo
                    .git(&["rev-list", "--count", &format!("{from}..{to}")])
                    .parse()
                    .unwrap();
                let got = repo.count_commits_between(id(from), id(to)).unwrap();
                assert_eq!(got, want, "{from}..{to}");
            }
        }
    }

    #[test]
    fn dirty_files_reports_changes_and_untracked_files() {
        let h = fixture::history();
        let repo = open(&h);
        assert_eq!(
            repo.dirty_files(&RepoPath::root()).unwrap(),
            Vec::<String>::new()
        );

        h.repo.write("app/deploy.yaml", "changed\n");
        h.repo.write("app/new.yaml", "new\n");
        h.repo.write("app/debug.log", "ignored\n");
        h.repo.write("base/other.yaml", "elsewhere\n");
        assert_eq!(
            repo.dirty_files(&path("app")).unwrap(),
            ["app/deploy.yaml", "app/new.yaml"]
        );
        assert_eq!(
            repo.dirty_files(&RepoPath::root()).unwrap(),
            ["app/deploy.yaml", "app/new.yaml", "base/other.yaml"]
        );
        assert_eq!(
            repo.dirty_files(&path("bin")).unwrap(),
            Vec::<String>::new()
        );

        // Staged counts too: it differs from HEAD.
        h.repo.git(&["checkout", "--", "app/deploy.yaml"]);
        h.repo.write("bin/run.sh", "#!/bin/sh\necho changed\n");
        h.repo.git(&["add", "bin/run.sh"]);
        assert_eq!(repo.dirty_files(&path("bin")).unwrap(), ["bin/run.sh"]);

        // Back to clean; the status check did not write to the checkout's index.
        h.repo.git(&["reset", "-q", "--hard"]);
        h.repo.git(&["clean", "-q", "-f"]);
        assert_eq!(
            repo.dirty_files(&RepoPath::root()).unwrap(),
            Vec::<String>::new()
        );
    }

    /// The render cache's key material: what export would write, as object ids. A commit that
    /// changes nothing exported keeps the ids; a change in an exported tree, or behind a
    /// symlink an exported tree holds, changes them.
    #[cfg(unix)]
    #[test]
    fn content_ids_follow_what_export_writes() {
        let mut f = fixture::Fixture::new();
        f.write("apps/web/kustomization.yaml", "resources: [../../base]\n");
        f.write("base/deploy.yaml", "kind: Deployment\n");
        f.write("shared/cm.yaml", "kind: ConfigMap\n");
        f.symlink("base/cm.yaml", "../shared/cm.yaml");
        f.write("elsewhere/x.yaml", "kind: Secret\n");
        let first = f.commit(fixture::ALICE, "first");
        f.write("elsewhere/x.yaml", "kind: Secret\nmore: 1\n");
        let unrelated = f.commit(fixture::ALICE, "outside the render");
        f.write("shared/cm.yaml", "kind: ConfigMap\ndata: {a: b}\n");
        let behind_link = f.commit(fixture::ALICE, "behind the link");
        let repo = Repo::open_local(&f.path).unwrap();
        let paths = [path("apps/web"), path("base"), path("missing")];
        let ids = |c: &str| repo.content_ids(id(c), &paths).unwrap();
        let at_first = ids(&first);
        let listed: Vec<(&str, bool)> = at_first
            .iter()
            .map(|(p, i)| (p.as_str(), i.is_some()))
            .collect();
        assert_eq!(
            listed,
            [
                ("apps/web", true),
                ("base", true),
                ("missing", false),
                ("shared/cm.yaml", true)
            ]
        );
        assert_eq!(ids(&unrelated), at_first);
        assert_ne!(ids(&behind_link), at_first);
    }
}
