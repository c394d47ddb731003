//! Walking Git trees at a commit: path lookup that follows symlinks only inside the repository,
//! listing files, and exporting a tree to disk.
//!
//! Symlinks are resolved the way the filesystem would resolve them in a checkout (component by
//! component, `..` applied to the real directory reached so far), so that what we read from the
//! object database and what `kubectl kustomize` reads from an export agree.

use std::collections::VecDeque;
use std::path::Path;

use gix::ObjectId;
use gix::objs::tree::EntryKind;

use super::path::RepoPath;

/// Symlinks followed while resolving one path; more is treated as a loop.
pub(super) const MAX_SYMLINK_HOPS: usize = 8;

/// What a path names in a tree, after following symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    File(ObjectId),
    Dir(ObjectId),
    Submodule,
}

/// Why a path could not be resolved.
#[derive(Debug)]
pub(super) enum ResolveError {
    /// A component is missing, or a file or submodule was used as a directory.
    NotFound,
    /// A symlink (at `link`, repo-relative) points outside the repository, or is absolute.
    Escapes { link: String, target: String },
    /// More than [`MAX_SYMLINK_HOPS`] symlinks.
    TooManyLinks,
    /// The object database failed us.
    Git(String),
}

fn git_err(err: impl std::error::Error + 'static) -> ResolveError {
    ResolveError::Git(super::error_chain(&err))
}

/// Resolves `path` below the tree `root`, following symlinks while they stay inside it.
pub(super) fn resolve(
    repo: &gix::Repository,
    root: ObjectId,
    path: &RepoPath,
) -> Result<Found, ResolveError> {
    resolve_to(repo, root, path).map(|(found, _)| found)
}

/// [`resolve`], and the path it reaches with no symlink on the way (`""` for the root).
pub(super) fn resolve_to(
    repo: &gix::Repository,
    root: ObjectId,
    path: &RepoPath,
) -> Result<(Found, String), ResolveError> {
    let real = |dirs: &[(String, ObjectId)], last: Option<&str>| {
        dirs.iter()
            .skip(1)
            .map(|(n, _)| n.as_str())
            .chain(last)
            .collect::<Vec<_>>()
            .join("/")
    };
    // The real directories entered so far, root first.
    let mut dirs: Vec<(String, ObjectId)> = vec![(String::new(), root)];
    let mut pending: VecDeque<String> = path.components().map(str::to_string).collect();
    let mut hops = 0;
    while let Some(name) = pending.pop_front() {
        match name.as_str() {
            "" | "." => continue,
            ".." => {
                if dirs.len() == 1 {
                    // Only a symlink can bring us here: RepoPath never starts above the root.
                    return Err(ResolveError::Escapes {
                        link: path.as_str().to_string(),
                        target: "..".to_string(),
                    });
                }
                dirs.pop();
                continue;
            }
            _ => {}
        }
        let (_, dir_id) = dirs.last().expect("the root is never popped");
        let tree = repo.find_tree(*dir_id).map_err(git_err)?;
        let Some(entry) = tree.find_entry(name.as_str()) else {
            return Err(ResolveError::NotFound);
        };
        let id = entry.object_id();
        let rest_is_empty = pending.iter().all(|c| c.is_empty() || c == ".");
        match entry.mode().kind() {
            EntryKind::Tree => dirs.push((name, id)),
            EntryKind::Blob | EntryKind::BlobExecutable if rest_is_empty => {
                return Ok((Found::File(id), real(&dirs, Some(&name))));
            }
            EntryKind::Commit if rest_is_empty => {
                return Ok((Found::Submodule, real(&dirs, Some(&name))));
            }
            EntryKind::Blob | EntryKind::BlobExecutable | EntryKind::Commit => {
                return Err(ResolveError::NotFound);
            }
            EntryKind::Link => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(ResolveError::TooManyLinks);
                }
                let link = dirs
                    .iter()
                    .skip(1)
                    .map(|(n, _)| n.as_str())
                    .chain([name.as_str()])
                    .collect::<Vec<_>>()
                    .join("/");
                let target = link_target(repo, id)?;
                if !is_relative_target(&target) {
                    return Err(ResolveError::Escapes { link, target });
                }
                // The target is relative to the link's directory, which is where we are now.
                for component in target.split('/').rev() {
                    pending.push_front(component.to_string());
                }
                // `..` that climbs above the root is caught above; name the link, not the input.
                if escapes_from(&dirs, &pending) {
                    return Err(ResolveError::Escapes { link, target });
                }
            }
        }
    }
    let (_, id) = dirs.last().expect("the root is never popped");
    Ok((Found::Dir(*id), real(&dirs, None)))
}

/// Whether the leading `..`s of `pending` climb above the root from `dirs`
/// (checked early only to blame the right symlink in the message).
fn escapes_from(dirs: &[(String, ObjectId)], pending: &VecDeque<String>) -> bool {
    let mut depth = dirs.len() - 1;
    for c in pending {
        match c.as_str() {
            "" | "." => {}
            ".." if depth == 0 => return true,
            ".." => depth -= 1,
            _ => return false,
        }
    }
    false
}

/// The text of a symlink blob.
fn link_target(repo: &gix::Repository, id: ObjectId) -> Result<String, ResolveError> {
    let mut blob = repo.find_blob(id).map_err(git_err)?;
    String::from_utf8(blob.take_data()).map_err(|_| ResolveError::Escapes {
        link: id.to_string(),
        target: "(not UTF-8)".to_string(),
    })
}

/// Absolute targets, Windows-looking ones and control characters are never followed.
fn is_relative_target(target: &str) -> bool {
    let absolute = target.starts_with('/') || (target.len() >= 2 && target.as_bytes()[1] == b':');
    let suspicious = target.contains('\\') || target.chars().any(char::is_control);
    !target.is_empty() && !absolute && !suspicious
}

/// A tree entry name we are willing to turn into a path.
fn check_name(name: &gix::bstr::BStr) -> Result<&str, String> {
    let name = std::str::from_utf8(name).map_err(|_| "a file name is not UTF-8".to_string())?;
    // Git refuses such names in trees (fsck); a crafted repository may still contain them.
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.eq_ignore_ascii_case(".git")
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control)
    {
        return Err(format!(
            "invalid file name '{}' in the tree",
            name.escape_default()
        ));
    }
    Ok(name)
}

fn child(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// A problem walking a tree: a bad entry name (at `path`) or a Git error.
#[derive(Debug)]
pub(super) enum WalkError {
    BadName {
        path: String,
        reason: String,
    },
    Git(String),
    /// A blob that the object database cannot give (a partial clone without it, a damaged pack).
    Unreadable {
        path: String,
        reason: String,
    },
    Io {
        path: String,
        reason: String,
    },
}

fn walk_git_err(err: impl std::error::Error + 'static) -> WalkError {
    WalkError::Git(super::error_chain(&err))
}

/// Every regular file (not symlinks, not submodules) below the tree `dir_id`, whose path is `prefix`.
pub(super) fn list_files(
    repo: &gix::Repository,
    dir_id: ObjectId,
    prefix: &str,
) -> Result<Vec<String>, WalkError> {
    let mut files = Vec::new();
    let mut todo = vec![(prefix.to_string(), dir_id)];
    while let Some((dir, id)) = todo.pop() {
        let tree = repo.find_tree(id).map_err(walk_git_err)?;
        for entry in tree.iter() {
            let entry = entry.map_err(walk_git_err)?;
            let name = check_name(entry.filename()).map_err(|reason| WalkError::BadName {
                path: dir.clone(),
                reason,
            })?;
            let path = child(&dir, name);
            match entry.mode().kind() {
                EntryKind::Tree => todo.push((path, entry.object_id())),
                EntryKind::Blob | EntryKind::BlobExecutable => files.push(path),
                EntryKind::Link | EntryKind::Commit => {}
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The names of the entries of the tree `dir_id` (whose path is `prefix`) but submodules, sorted.
pub(super) fn entries(
    repo: &gix::Repository,
    dir_id: ObjectId,
    prefix: &str,
) -> Result<Vec<String>, WalkError> {
    let tree = repo.find_tree(dir_id).map_err(walk_git_err)?;
    let mut names = Vec::new();
    for entry in tree.iter() {
        let entry = entry.map_err(walk_git_err)?;
        let name = check_name(entry.filename()).map_err(|reason| WalkError::BadName {
            path: prefix.to_owned(),
            reason,
        })?;
        if entry.mode().kind() != EntryKind::Commit {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Writes only `paths` (files or directories, repo-relative, as a checkout would name them)
/// of the tree `root` into `dest`, at their places: what a render reads, so that a blob it
/// does not read (outside a partial clone's sparse cone, in a damaged pack) cannot fail it.
/// A symlink met on the way is written when its target stays inside the tree, and its target
/// is exported too. A path that does not exist is left out (kustomize then names it).
pub(super) fn export_paths(
    repo: &gix::Repository,
    root: ObjectId,
    paths: &[RepoPath],
    dest: &Path,
) -> Result<(), WalkError> {
    let mut todo: Vec<String> = paths.iter().map(|p| p.as_str().to_owned()).collect();
    let mut done = std::collections::HashSet::new();
    let mut hops = 0;
    while let Some(path) = todo.pop() {
        if !done.insert(path.clone()) {
            continue;
        }
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let mut dir = String::new();
        let mut id = root;
        let mut kind = EntryKind::Tree;
        for (i, name) in components.iter().enumerate() {
            let tree = repo.find_tree(id).map_err(walk_git_err)?;
            let Some(entry) = tree.find_entry(*name) else {
                kind = EntryKind::Commit; // nothing there: nothing to write
                break;
            };
            check_name(entry.filename()).map_err(|reason| WalkError::BadName {
                path: dir.clone(),
                reason,
            })?;
            let here = child(&dir, name);
            id = entry.object_id();
            kind = entry.mode().kind();
            match kind {
                EntryKind::Tree => {
                    create_dir_in(dest, &here)?;
                    dir = here;
                }
                EntryKind::Link => {
                    hops += 1;
                    if hops <= 64 * MAX_SYMLINK_HOPS
                        && let Some(target) = write_link(repo, root, id, &here, dest)?
                    {
                        let rest = components[i + 1..].join("/");
                        todo.push(child(&target, &rest).trim_end_matches('/').to_owned());
                    }
                    break;
                }
                _ => {
                    if i + 1 == components.len() {
                        write_blob(repo, id, kind, &here, dest)?;
                    }
                    break;
                }
            }
        }
        if kind == EntryKind::Tree {
            for link_target in export_subtree(repo, root, id, &dir, dest)? {
                todo.push(link_target);
            }
        }
    }
    Ok(())
}

/// Writes the tree `id` at `prefix` below `dest`, over what is already there; returns the
/// repo paths the symlinks written in it point at, for the caller to export too.
fn export_subtree(
    repo: &gix::Repository,
    root: ObjectId,
    id: ObjectId,
    prefix: &str,
    dest: &Path,
) -> Result<Vec<String>, WalkError> {
    let mut targets = Vec::new();
    let mut todo = vec![(prefix.to_owned(), id)];
    while let Some((dir, id)) = todo.pop() {
        let tree = repo.find_tree(id).map_err(walk_git_err)?;
        for entry in tree.iter() {
            let entry = entry.map_err(walk_git_err)?;
            let name = check_name(entry.filename()).map_err(|reason| WalkError::BadName {
                path: dir.clone(),
                reason,
            })?;
            let path = child(&dir, name);
            match entry.mode().kind() {
                EntryKind::Tree => {
                    create_dir_in(dest, &path)?;
                    todo.push((path, entry.object_id()));
                }
                kind @ (EntryKind::Blob | EntryKind::BlobExecutable) => {
                    write_blob(repo, entry.object_id(), kind, &path, dest)?;
                }
                EntryKind::Link => {
                    if let Some(target) = write_link(repo, root, entry.object_id(), &path, dest)? {
                        targets.push(target);
                    }
                }
                EntryKind::Commit => {}
            }
        }
    }
    Ok(targets)
}

fn create_dir_in(dest: &Path, path: &str) -> Result<(), WalkError> {
    let on_disk = dest.join(path);
    match std::fs::create_dir(&on_disk) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(WalkError::Io {
            path: on_disk.display().to_string(),
            reason: e.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Writes one blob at `path` below `dest`, unless an earlier path wrote it already.
fn write_blob(
    repo: &gix::Repository,
    id: ObjectId,
    kind: EntryKind,
    path: &str,
    dest: &Path,
) -> Result<(), WalkError> {
    let on_disk = dest.join(path);
    if std::fs::symlink_metadata(&on_disk).is_ok() {
        return Ok(());
    }
    let blob = repo.find_blob(id).map_err(|e| WalkError::Unreadable {
        path: path.to_owned(),
        reason: super::error_chain(&e),
    })?;
    write_new_file(&on_disk, &blob.data, kind == EntryKind::BlobExecutable).map_err(|e| {
        WalkError::Io {
            path: on_disk.display().to_string(),
            reason: e.to_string(),
        }
    })
}

/// Writes the symlink at `path` when its target resolves inside the tree; returns the target as
/// a repo path (lexically, from the link's directory).
fn write_link(
    repo: &gix::Repository,
    root: ObjectId,
    id: ObjectId,
    path: &str,
    dest: &Path,
) -> Result<Option<String>, WalkError> {
    let Ok(rel) = RepoPath::parse(path) else {
        return Ok(None);
    };
    if !matches!(
        resolve(repo, root, &rel),
        Ok(Found::File(_) | Found::Dir(_))
    ) {
        return Ok(None); // points out of the tree, dangles, loops, or into a submodule
    }
    let Ok(target) = link_target(repo, id) else {
        return Ok(None);
    };
    let on_disk = dest.join(path);
    if std::fs::symlink_metadata(&on_disk).is_err() {
        create_symlink(&target, &on_disk).map_err(|e| WalkError::Io {
            path: on_disk.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    let dir = rel.parent().unwrap_or_else(RepoPath::root);
    Ok(dir.join(&target).ok().map(|p| p.as_str().to_owned()))
}

fn write_new_file(path: &Path, data: &[u8], executable: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if executable { 0o755 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = executable;
    let mut file = options.open(path)?;
    file.write_all(data)
}

#[cfg(unix)]
fn create_symlink(target: &str, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn create_symlink(_target: &str, _link: &Path) -> std::io::Result<()> {
    // Without Unix symlinks the link is left out, as a checkout with core.symlinks=false would.
    Ok(())
}

/// What [`export_paths`] of the same `paths` would write, as object ids: each path (after its
/// symlinks) with the id of the file or tree it names, or `None` when nothing is there, and the
/// same for the target of every symlink inside an exported tree (those are exported too). Two
/// commits that give the same list export the same files: what a render cache keys on.
pub(super) fn content_ids(
    repo: &gix::Repository,
    root: ObjectId,
    paths: &[RepoPath],
) -> Result<Vec<(String, Option<ObjectId>)>, WalkError> {
    let mut todo: Vec<String> = paths.iter().map(|p| p.as_str().to_owned()).collect();
    let mut done = std::collections::HashSet::new();
    let mut out = Vec::new();
    while let Some(path) = todo.pop() {
        if done.len() > 64 * MAX_SYMLINK_HOPS + paths.len() {
            break; // as export does, a web of links is cut off
        }
        if !done.insert(path.clone()) {
            continue;
        }
        let Ok(rel) = RepoPath::root().join(&path) else {
            out.push((path, None));
            continue;
        };
        let found = match resolve(repo, root, &rel) {
            Ok(found) => found,
            Err(ResolveError::Git(reason)) => return Err(WalkError::Git(reason)),
            Err(_) => {
                out.push((path, None));
                continue;
            }
        };
        match found {
            Found::File(id) => out.push((path, Some(id))),
            Found::Submodule => out.push((path, None)),
            Found::Dir(id) => {
                out.push((path.clone(), Some(id)));
                let mut dirs = vec![(path, id)];
                while let Some((dir, id)) = dirs.pop() {
                    let tree = repo.find_tree(id).map_err(walk_git_err)?;
                    for entry in tree.iter() {
                        let entry = entry.map_err(walk_git_err)?;
                        let name =
                            check_name(entry.filename()).map_err(|reason| WalkError::BadName {
                                path: dir.clone(),
                                reason,
                            })?;
                        let here = child(&dir, name);
                        match entry.mode().kind() {
                            EntryKind::Tree => dirs.push((here, entry.object_id())),
                            EntryKind::Link => {
                                let Ok(target) = link_target(repo, entry.object_id()) else {
                                    continue;
                                };
                                let parent = RepoPath::root()
                                    .join(&dir)
                                    .unwrap_or_else(|_| RepoPath::root());
                                if let Ok(target) = parent.join(&target) {
                                    todo.push(target.as_str().to_owned());
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    out.sort();
    Ok(out)
}
