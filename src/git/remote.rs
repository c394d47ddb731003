//! The clone cache: one bare clone per remote repository, cloned on first use, reused offline,
//! and fetched only when a needed commit is missing. A lock file beside each clone keeps
//! concurrent runs from cloning or fetching into it at the same time.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use gix::remote::Direction;

use super::repo::{CacheUse, CommitId, Origin, Repo};
use super::url::RepoUrl;
use super::{GitError, error_chain};

/// The remote's branches become the clone's own branches (as in `git clone --bare`, so `HEAD`
/// keeps following the remote's default branch), plus all tags. Forced: remotes rewrite history.
const REFSPECS: [&str; 2] = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];

/// Nothing interrupts a clone or fetch from inside; Ctrl-C ends the process.
static NOT_INTERRUPTED: AtomicBool = AtomicBool::new(false);

impl Repo {
    /// A bare clone of `url` under `cache_root/<url.cache_key()>`: cloned on first use, reused
    /// afterwards without contacting the remote. A cache directory that is not a valid clone of
    /// `url` is removed and cloned again.
    pub fn open_remote(url: &RepoUrl, cache_root: &Path) -> Result<(Repo, CacheUse), GitError> {
        let dir = cache_root.join(url.cache_key());
        let name = dir
            .file_name()
            .expect("a cache key ends in a name")
            .to_string_lossy()
            .into_owned();
        let lock_path = dir.with_file_name(format!("{name}.lock"));
        let partial = dir.with_file_name(format!("{name}.partial"));
        let parent = dir.parent().expect("a cache key has a parent");
        std::fs::create_dir_all(parent).map_err(|e| cache_err(url, parent, &e))?;

        let _lock = lock(url, &lock_path)?;
        if std::fs::symlink_metadata(&dir).is_ok() {
            if let Ok(repo) = open_clone(&dir, url) {
                let cache_use = CacheUse::Reused;
                return Ok((Repo::cached(repo, url, lock_path, cache_use), cache_use));
            }
            // Interrupted by hand, or overwritten: start again rather than fail forever.
            remove(&dir).map_err(|e| cache_err(url, &dir, &e))?;
        }

        // Clone beside the final place and rename, so a clone cut short is never taken for a good one.
        if std::fs::symlink_metadata(&partial).is_ok() {
            remove(&partial).map_err(|e| cache_err(url, &partial, &e))?;
        }
        clone_into(url, &partial)?;
        std::fs::rename(&partial, &dir).map_err(|e| cache_err(url, &dir, &e))?;
        let repo = open_clone(&dir, url).map_err(|reason| GitError::Clone {
            url: url.as_str().to_string(),
            reason,
        })?;
        let cache_use = CacheUse::Cloned;
        Ok((Repo::cached(repo, url, lock_path, cache_use), cache_use))
    }

    /// Brings a cache clone up to date with its remote (branches and tags); nothing for a checkout.
    pub fn fetch(&self) -> Result<(), GitError> {
        let Origin::Cache { fetch_guard, .. } = &self.origin else {
            return Ok(());
        };
        let _guard = fetch_guard.lock().unwrap_or_else(|e| e.into_inner());
        let _lock = self.lock_cache()?;
        self.fetch_specs(&REFSPECS)
    }

    /// Fetches into a cache clone so that `rev` resolves, unless another thread or run did so
    /// while we waited for the lock. Returns whether it fetched.
    pub(super) fn fetch_for(&self, rev: &str) -> Result<bool, GitError> {
        let Origin::Cache { fetch_guard, .. } = &self.origin else {
            return Ok(false);
        };
        // A panic while fetching leaves nothing half-done in memory; the guard is only a turnstile.
        let _guard = fetch_guard.lock().unwrap_or_else(|e| e.into_inner());
        let _lock = self.lock_cache()?;
        if self.try_resolve(rev)?.is_some() {
            return Ok(false);
        }
        self.fetch_specs(&REFSPECS)?;
        if self.try_resolve(rev)?.is_none()
            && let Ok(id) = rev.parse::<CommitId>()
        {
            // Not on any branch or tag (force-pushed away, or a pull request's commit). Servers
            // that allow it send it by id; one that refuses leaves it unknown, which the caller reports.
            let _ = self.fetch_specs(&[id.to_string().as_str()]);
        }
        Ok(true)
    }

    /// Takes the cache lock of this clone (a checkout has none).
    fn lock_cache(&self) -> Result<Option<File>, GitError> {
        match &self.origin {
            Origin::Cache { url, lock_path, .. } => lock(url, lock_path).map(Some),
            Origin::Local => Ok(None),
        }
    }

    /// One fetch of `refspecs` from the clone's URL; the caller holds the lock.
    fn fetch_specs(&self, refspecs: &[&str]) -> Result<(), GitError> {
        let Origin::Cache { url, .. } = &self.origin else {
            return Ok(());
        };
        let repo = self.repo.to_thread_local();
        let fetch_err = |err: &(dyn std::error::Error + 'static)| GitError::Fetch {
            url: url.as_str().to_string(),
            reason: error_chain(err),
        };
        // An anonymous remote at the URL we were given, so the fetch does not depend on what the
        // clone's config says.
        let remote = repo
            .remote_at(url.as_str())
            .and_then(|r| r.with_refspecs(refspecs, Direction::Fetch))
            .map_err(|e| fetch_err(&e))?
            .with_fetch_tags(gix::remote::fetch::Tags::None);
        remote
            .connect(Direction::Fetch)
            .map_err(|e| fetch_err(&e))?
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| fetch_err(&e))?
            .receive(gix::progress::Discard, &NOT_INTERRUPTED)
            .map_err(|e| fetch_err(&e))?;
        Ok(())
    }

    fn cached(
        repo: gix::ThreadSafeRepository,
        url: &RepoUrl,
        lock_path: PathBuf,
        cache_use: CacheUse,
    ) -> Repo {
        Repo::new(
            repo,
            Origin::Cache {
                url: url.clone(),
                lock_path,
                cache_use,
                fetch_guard: Mutex::new(()),
            },
        )
    }
}

/// Takes the cache lock for one clone; it is released when the returned file is dropped.
fn lock(url: &RepoUrl, lock_path: &Path) -> Result<File, GitError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(|e| cache_err(url, lock_path, &e))?;
    file.lock().map_err(|e| cache_err(url, lock_path, &e))?;
    Ok(file)
}

/// Opens a cache directory if it is a sound bare clone of `url`: cloned from it, and its HEAD
/// (unless unborn: an empty repository) a commit whose tree can be read. A clone damaged by
/// hand, by a full disk or by a crash fails this and is cloned again, rather than answer
/// wrong or fail on every run.
fn open_clone(dir: &Path, url: &RepoUrl) -> Result<gix::ThreadSafeRepository, String> {
    let repo = gix::ThreadSafeRepository::open(dir).map_err(|e| error_chain(&e))?;
    if repo.work_dir().is_some() {
        return Err("not a bare clone".into());
    }
    let local = repo.to_thread_local();
    let origin = local
        .find_remote("origin")
        .map_err(|e| error_chain(&e))?
        .url(Direction::Fetch)
        .map(|u| u.to_bstring().to_string())
        .ok_or("no origin URL")?;
    match RepoUrl::parse(&origin) {
        Ok(origin) if origin.same_repo(url) => {}
        _ => return Err(format!("cloned from '{origin}', not '{url}'")),
    }
    let head = local.head().map_err(|e| error_chain(&e))?;
    if !head.is_unborn() {
        let commit = local.head_commit().map_err(|e| error_chain(&e))?;
        let tree = commit.tree().map_err(|e| error_chain(&e))?;
        for entry in tree.iter() {
            entry.map_err(|e| error_chain(&e))?;
        }
    }
    Ok(repo)
}

fn clone_into(url: &RepoUrl, dest: &Path) -> Result<(), GitError> {
    let clone_err = |err: &(dyn std::error::Error + 'static)| GitError::Clone {
        url: url.as_str().to_string(),
        reason: error_chain(err),
    };
    let mut prepare = gix::prepare_clone_bare(url.as_str(), dest)
        .map_err(|e| clone_err(&e))?
        .configure_remote(|remote| {
            Ok(remote
                .with_refspecs(REFSPECS, Direction::Fetch)?
                .with_fetch_tags(gix::remote::fetch::Tags::None))
        });
    // On failure `prepare` removes what it created when dropped.
    prepare
        .fetch_only(gix::progress::Discard, &NOT_INTERRUPTED)
        .map_err(|e| clone_err(&e))?;
    Ok(())
}

/// Removes a directory tree, or a file or symlink standing where a directory should be.
fn remove(path: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

fn cache_err(url: &RepoUrl, path: &Path, err: &std::io::Error) -> GitError {
    GitError::Other {
        repo: url.as_str().to_string(),
        reason: format!("repository cache '{}': {err}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::fixture::{self, BOB};
    use crate::git::{CommitId, RepoPath};
    use tempfile::TempDir;

    fn file_url(path: &Path) -> RepoUrl {
        RepoUrl::parse(&format!("file://{}", path.display())).expect("a file URL")
    }

    const MISSING: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn clones_once_then_reuses_offline_and_fetches_what_is_missing() {
        let mut h = fixture::history();
        let cache = TempDir::new().unwrap();
        let url = file_url(&h.repo.path);

        let (repo, used) = Repo::open_remote(&url, cache.path()).unwrap();
        assert_eq!(used, CacheUse::Cloned);
        assert_eq!(repo.cache_use(), CacheUse::Cloned);
        assert_eq!(repo.workdir(), None);
        assert_eq!(repo.display_name(), url.as_str());
        assert!(cache.path().join(url.cache_key()).is_dir());
        for (rev, in_origin) in [
            ("HEAD", "HEAD"),
            ("main", "main"),
            ("origin/main", "main"),
            ("refs/remotes/origin/main", "main"),
            ("feature", "feature"),
            ("v1", "v1"),
            ("v2", "v2"),
        ] {
            let want = h
                .repo
                .git(&["rev-parse", &format!("{in_origin}^{{commit}}")]);
            let (got, fetched) = repo.resolve(rev).unwrap_or_else(|e| panic!("{rev}: {e}"));
            assert_eq!(got.to_string(), want, "{rev}");
            assert!(!fetched, "{rev}");
        }
        let head: CommitId = h.commits[8].parse().unwrap();
        let deploy = RepoPath::parse("app/deploy.yaml").unwrap();
        let want = fixture::git_show(&h.repo.path, &h.commits[8], "app/deploy.yaml");
        assert_eq!(repo.read_file(head, &deploy).unwrap(), want);
        drop(repo);

        // Reused, and offline: the origin is gone.
        let moved = h.repo.path.with_file_name("moved-away");
        std::fs::rename(&h.repo.path, &moved).unwrap();
        let (repo, used) = Repo::open_remote(&url, cache.path()).unwrap();
        assert_eq!(used, CacheUse::Reused);
        assert_eq!(repo.read_file(head, &deploy).unwrap(), want);
        assert_eq!(repo.resolve("main").unwrap(), (head, false));
        // Something missing needs the remote, and the remote is not there.
        let err = repo.resolve(MISSING).unwrap_err();
        assert!(matches!(err, GitError::Fetch { .. }), "{err}");
        assert!(!err.to_string().contains('\n'), "{err}");
        std::fs::rename(&moved, &h.repo.path).unwrap();

        // A new commit in the origin: one fetch brings it, the next resolve needs none.
        h.repo.write("app/new.yaml", "kind: ConfigMap\n");
        let new = h.repo.commit(BOB, "Add a config map");
        let (got, fetched) = repo.resolve(&new).unwrap();
        assert_eq!(got.to_string(), new);
        assert!(fetched, "resolving a missing commit fetches");
        assert_eq!(repo.resolve(&new).unwrap(), (got, false));
        let new_file = RepoPath::parse("app/new.yaml").unwrap();
        assert_eq!(
            repo.read_file(got, &new_file).unwrap(),
            b"kind: ConfigMap\n"
        );
        assert_eq!(repo.resolve("main").unwrap(), (got, false));

        // An id the remote does not have either: UnknownRevision after the fetch attempt, which
        // still brought in what the remote did have.
        h.repo.git(&["branch", "late"]);
        let err = repo.resolve(MISSING).unwrap_err();
        assert!(matches!(err, GitError::UnknownRevision { .. }), "{err}");
        assert_eq!(repo.resolve("late").unwrap(), (got, false));
    }

    #[test]
    fn a_commit_on_no_branch_is_fetched_by_id() {
        let mut h = fixture::history();
        let cache = TempDir::new().unwrap();
        let url = file_url(&h.repo.path);
        let (repo, _) = Repo::open_remote(&url, cache.path()).unwrap();

        // Like a force-push: the commit stays in the origin's objects but no ref points at it.
        h.repo.git(&["checkout", "-q", "-b", "doomed"]);
        h.repo.write("app/doomed.yaml", "kind: Secret\n");
        let orphan = h.repo.commit(BOB, "Soon unreachable");
        h.repo.git(&["checkout", "-q", "main"]);
        h.repo.git(&["branch", "-q", "-D", "doomed"]);

        let (got, fetched) = repo.resolve(&orphan).unwrap();
        assert_eq!(got.to_string(), orphan);
        assert!(fetched);
        let file = RepoPath::parse("app/doomed.yaml").unwrap();
        assert_eq!(repo.read_file(got, &file).unwrap(), b"kind: Secret\n");
    }

    #[test]
    fn fetch_updates_branches() {
        let mut h = fixture::history();
        let cache = TempDir::new().unwrap();
        let url = file_url(&h.repo.path);
        let (repo, _) = Repo::open_remote(&url, cache.path()).unwrap();
        h.repo.write("app/new.yaml", "kind: ConfigMap\n");
        let new = h.repo.commit(BOB, "Add a config map");
        // Offline by default: the cached branch stays where it was until asked.
        assert_eq!(repo.resolve("main").unwrap().0.to_string(), h.commits[8]);
        repo.fetch().unwrap();
        assert_eq!(repo.resolve("main").unwrap().0.to_string(), new);

        // A checkout is never fetched into.
        let local = Repo::open_local(&h.repo.path).unwrap();
        local.fetch().unwrap();
    }

    #[test]
    fn threads_share_one_fetch() {
        let mut h = fixture::history();
        let cache = TempDir::new().unwrap();
        let url = file_url(&h.repo.path);
        let (repo, _) = Repo::open_remote(&url, cache.path()).unwrap();
        h.repo.write("app/new.yaml", "kind: ConfigMap\n");
        let new = h.repo.commit(BOB, "Add a config map");

        let fetches = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| repo.resolve(&new).expect("resolves").1))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no panic"))
                .filter(|fetched| *fetched)
                .count()
        });
        assert_eq!(fetches, 1);
    }

    #[test]
    fn concurrent_opens_clone_once() {
        let h = fixture::history();
        let cache = TempDir::new().unwrap();
        let url = file_url(&h.repo.path);
        let mut uses: Vec<CacheUse> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| Repo::open_remote(&url, cache.path()).expect("opens").1))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no panic"))
                .collect()
        });
        uses.sort_by_key(|u| *u != CacheUse::Cloned);
        assert_eq!(
            uses,
            [
                CacheUse::Cloned,
                CacheUse::Reused,
                CacheUse::Reused,
                CacheUse::Reused
            ]
        );
    }

    #[test]
    fn a_broken_cache_directory_is_cloned_again() {
        let h = fixture::history();
        let cache = TempDir::new().unwrap();
        let url = file_url(&h.repo.path);
        let dir = cache.path().join(url.cache_key());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("HEAD"), "garbage").unwrap();
        // A clone cut short by a crash.
        let partial = dir.with_file_name(format!(
            "{}.partial",
            dir.file_name().unwrap().to_string_lossy()
        ));
        std::fs::create_dir_all(partial.join("objects")).unwrap();

        let (repo, used) = Repo::open_remote(&url, cache.path()).unwrap();
        assert_eq!(used, CacheUse::Cloned);
        assert_eq!(repo.resolve("main").unwrap().0.to_string(), h.commits[8]);
        assert!(!partial.exists());

        // A cache directory holding a clone of another repository is not reused either.
        let other = fixture::history();
        let (_, used) = Repo::open_remote(&url, cache.path()).unwrap();
        assert_eq!(used, CacheUse::Reused);
        std::fs::remove_dir_all(&dir).unwrap();
        let (_, _) = Repo::open_remote(&file_url(&other.repo.path), cache.path()).unwrap();
        std::fs::rename(
            cache.path().join(file_url(&other.repo.path).cache_key()),
            &dir,
        )
        .unwrap();
        let (_, used) = Repo::open_remote(&url, cache.path()).unwrap();
        assert_eq!(used, CacheUse::Cloned);
    }

    #[test]
    fn a_clone_that_fails_leaves_nothing_behind() {
        let cache = TempDir::new().unwrap();
        let url = RepoUrl::parse("file:///nonexistent/kubectl-gitops/repo.git").unwrap();
        let err = Repo::open_remote(&url, cache.path()).expect_err("fails");
        assert!(matches!(err, GitError::Clone { .. }), "{err}");
        assert!(!err.to_string().contains('\n'), "{err}");
        let dir = cache.path().join(url.cache_key());
        assert!(!dir.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.ends_with(".lock"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
