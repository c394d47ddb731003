//! The only place that touches Git: open or clone (URL policy), read at a commit, history.
//!
//! Repository URLs and paths usually come from annotations, which anyone who can edit an object
//! can write, so they are parsed into [`RepoUrl`] and [`RepoPath`] under a strict policy before
//! anything reaches Git or the filesystem.

mod blame;
mod digest;
mod path;
pub mod poll;
mod remote;
mod repo;
mod tree;
mod url;

#[cfg(test)]
pub(crate) mod fixture;

use std::path::PathBuf;

pub use blame::BlameLine;
pub use digest::{Digest, digest_of};
pub use path::RepoPath;
pub use repo::{CacheUse, CommitId, CommitInfo, Repo};
pub use url::RepoUrl;

/// Why a Git operation failed; each message is one line that names the thing and, where it helps, the fix.
///
/// Fields hold the values as they were; `Display` escapes control characters and caps names, so a
/// hostile annotation cannot forge extra lines in a report.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GitError {
    /// A repository URL broke the URL policy (scheme, option injection, control characters, length).
    #[error("refused repository URL '{}': {}", name(url), flat(reason))]
    RefusedUrl { url: String, reason: String },
    /// A path broke the path policy (absolute, escapes the repository, symlink out of it).
    #[error("refused path '{}': {}", name(path), flat(reason))]
    RefusedPath { path: String, reason: String },
    /// A local path is not (inside) a Git repository.
    #[error(
        "'{}' is not a Git repository: {}; run inside a checkout or point at one",
        name(&path.display().to_string()),
        flat(reason)
    )]
    NotARepository { path: PathBuf, reason: String },
    /// A revision (branch, tag, commit id) names no commit in the repository.
    #[error(
        "unknown revision '{}' in {}: no branch, tag or commit by that name",
        name(rev),
        name(repo)
    )]
    UnknownRevision { rev: String, repo: String },
    /// Text that should be a full commit id (40 hex digits) is not one.
    #[error("'{}' is not a commit id: expected 40 hex digits", name(text))]
    BadCommitId { text: String },
    /// A path does not exist at a commit.
    #[error(
        "'{}' does not exist at commit {} in {}",
        name(path),
        name(commit),
        name(repo)
    )]
    FileNotFound {
        path: String,
        commit: String,
        repo: String,
    },
    /// A directory or submodule was found where a file was expected.
    #[error(
        "'{}' at commit {} is a directory or submodule, not a file",
        name(path),
        name(commit)
    )]
    NotAFile { path: String, commit: String },
    /// A file or submodule was found where a directory was expected.
    #[error("'{}' at commit {} is not a directory", name(path), name(commit))]
    NotADirectory { path: String, commit: String },
    /// Cloning a remote into the cache failed.
    #[error(
        "cloning '{}' failed: {}; check the URL, the network and your credentials",
        name(url),
        flat(reason)
    )]
    Clone { url: String, reason: String },
    /// Fetching from a remote into the cache failed; the cached copy is unchanged.
    #[error(
        "fetching from '{}' failed: {}; check the network and your credentials",
        name(url),
        flat(reason)
    )]
    Fetch { url: String, reason: String },
    /// Anything else, with the repository it happened in.
    #[error("{}: {}", name(repo), flat(reason))]
    Other { repo: String, reason: String },
}

/// A name from outside (URL, path, revision) made safe for a one-line message: control
/// characters escaped, length capped.
fn name(text: &str) -> String {
    const MAX_CHARS: usize = 200;
    let mut out = flat(&text.chars().take(MAX_CHARS).collect::<String>());
    if text.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Text on one line: control characters (newlines included) escaped.
fn flat(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The message of an error and all its sources, on one line (gix errors nest several levels deep).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = flat(e.to_string().trim());
        // Wrappers often repeat their source's message; say it once.
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        let err = GitError::RefusedUrl {
            url: "https://x/y\nz".into(),
            reason: "contains whitespace or control characters".into(),
        };
        let text = err.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.starts_with("refused repository URL 'https://x/y\\nz'"));
    }

    #[test]
    fn every_field_is_flattened() {
        let err = GitError::Other {
            repo: "/tmp/a\nb".into(),
            reason: "first\nsecond".into(),
        };
        assert_eq!(err.to_string(), "/tmp/a\\nb: first\\nsecond");
    }

    #[test]
    fn long_values_are_capped() {
        let text = name(&"a".repeat(1000));
        assert!(text.chars().count() <= 201);
    }
}
