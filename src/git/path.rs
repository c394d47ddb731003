//! Repository-relative paths from untrusted annotations: validated so they never leave the repository.

use super::GitError;

/// Paths longer than this are refused; Git itself stops at 4096 on most systems.
const MAX_PATH_BYTES: usize = 4096;

/// A validated, normalised path relative to the repository root, with '/' separators.
/// The root itself is the empty path, obtained only from [`RepoPath::root`] (or `join`/`parent`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoPath(String);

impl RepoPath {
    /// Parses a repository-relative file or directory path; refuses absolute paths and `..` escapes.
    pub fn parse(text: &str) -> Result<RepoPath, GitError> {
        let path = normalise(text, "")?;
        if path.is_empty() {
            return Err(refused(
                text,
                "names the repository root, not a file or directory in it",
            ));
        }
        Ok(RepoPath(path))
    }

    /// The repository root.
    pub fn root() -> RepoPath {
        RepoPath(String::new())
    }

    /// Whether this is the repository root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path, '/'-separated, without leading or trailing '/'; empty for the root.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Resolves `rel` (like kustomize's `../base`) against this path taken as a directory.
    pub fn join(&self, rel: &str) -> Result<RepoPath, GitError> {
        normalise(rel, &self.0).map(RepoPath)
    }

    /// The directory containing this path; the root for a top-level name, `None` for the root.
    pub fn parent(&self) -> Option<RepoPath> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.rsplit_once('/') {
            Some((parent, _)) => RepoPath(parent.to_string()),
            None => RepoPath::root(),
        })
    }

    /// The last component; empty for the root.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }

    /// The components from the root down.
    pub(crate) fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }
}

/// Serialised as its '/'-separated text ("" for the root).
impl serde::Serialize for RepoPath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl std::fmt::Display for RepoPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str(".")
        } else {
            f.write_str(&self.0)
        }
    }
}

fn refused(path: &str, reason: &str) -> GitError {
    GitError::RefusedPath {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

/// Checks `text` and resolves it lexically against `base` (already normalised).
fn normalise(text: &str, base: &str) -> Result<String, GitError> {
    if text.is_empty() {
        return Err(refused(text, "it is empty"));
    }
    if text.len() > MAX_PATH_BYTES {
        return Err(refused(
            text,
            &format!("longer than {MAX_PATH_BYTES} bytes"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(refused(text, "contains control characters"));
    }
    // A backslash is a separator on Windows and a file name character elsewhere; neither is safe.
    if text.contains('\\') {
        return Err(refused(text, "contains a backslash; use '/'"));
    }
    if text.starts_with('/') || is_drive_prefixed(text) {
        return Err(refused(
            text,
            "is absolute; paths are relative to the repository root",
        ));
    }
    let mut parts: Vec<&str> = base.split('/').filter(|c| !c.is_empty()).collect();
    for component in text.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(refused(text, "goes above the repository root"));
                }
            }
            name => parts.push(name),
        }
    }
    Ok(parts.join("/"))
}

/// `C:` or `C:/...`: absolute on Windows.
fn is_drive_prefixed(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_normalises() {
        let cases = [
            ("a", "a"),
            ("a/b.yaml", "a/b.yaml"),
            ("a/./b", "a/b"),
            ("a//b", "a/b"),
            ("./a/b/", "a/b"),
            ("a/x/../b", "a/b"),
            ("a b/c:d.yaml", "a b/c:d.yaml"),
            ("..a/b..", "..a/b.."),
        ];
        for (text, want) in cases {
            let path = RepoPath::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(path.as_str(), want, "{text}");
        }
    }

    #[test]
    fn parse_refuses() {
        let long = "a/".repeat(3000);
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            (".", "repository root"),
            ("./", "repository root"),
            ("a/..", "repository root"),
            ("/etc/passwd", "absolute"),
            ("C:\\Windows", "backslash"),
            ("C:/Windows", "absolute"),
            ("c:", "absolute"),
            ("a\\b", "backslash"),
            ("../../etc/passwd", "above the repository root"),
            ("..", "above the repository root"),
            ("a/../../b", "above the repository root"),
            ("a/b/../../../etc", "above the repository root"),
            ("a\0b", "control"),
            ("a\nb", "control"),
            (long.as_str(), "longer than"),
        ];
        for (text, want) in cases {
            match RepoPath::parse(text) {
                Ok(p) => panic!("accepted {text:?} as {p:?}"),
                Err(err) => {
                    let msg = err.to_string();
                    assert!(
                        matches!(err, GitError::RefusedPath { .. }),
                        "{text:?}: {msg}"
                    );
                    assert!(msg.contains(want), "{text:?}: {msg}");
                    assert!(!msg.contains('\n'), "{text:?}: {msg}");
                }
            }
        }
    }

    #[test]
    fn join_resolves_against_a_directory() {
        let overlay = RepoPath::parse("overlays/prod").unwrap();
        let cases = [
            ("../../base", "base"),
            ("../..", ""),
            ("../base", "overlays/base"),
            ("patch.yaml", "overlays/prod/patch.yaml"),
            ("./x/../y", "overlays/prod/y"),
        ];
        for (rel, want) in cases {
            assert_eq!(overlay.join(rel).unwrap().as_str(), want, "{rel}");
        }
        for rel in ["../../../etc/passwd", "/etc/passwd", "a\\b", ""] {
            assert!(
                matches!(overlay.join(rel), Err(GitError::RefusedPath { .. })),
                "{rel}"
            );
        }
        assert_eq!(RepoPath::root().join("a/b").unwrap().as_str(), "a/b");
        assert!(RepoPath::root().join("..").is_err());
    }

    #[test]
    fn parent_walks_up_to_the_root() {
        let path = RepoPath::parse("a/b/c.yaml").unwrap();
        let parent = path.parent().unwrap();
        assert_eq!(parent.as_str(), "a/b");
        assert_eq!(parent.parent().unwrap().as_str(), "a");
        assert!(parent.parent().unwrap().parent().unwrap().is_root());
        assert_eq!(RepoPath::root().parent(), None);
        assert_eq!(path.file_name(), "c.yaml");
        assert_eq!(RepoPath::root().to_string(), ".");
    }
}
