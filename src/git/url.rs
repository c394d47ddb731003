//! Repository URLs from untrusted annotations: parsed under a strict policy, compared normalised.

use super::GitError;

/// URLs longer than this are refused: no real repository URL comes close.
const MAX_URL_BYTES: usize = 2048;

/// The transports we accept; scp-like `user@host:path` counts as `Ssh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scheme {
    Https,
    Http,
    Ssh,
    Git,
    File,
}

impl Scheme {
    fn from_name(name: &str) -> Option<Scheme> {
        match name.to_ascii_lowercase().as_str() {
            "https" => Some(Scheme::Https),
            "http" => Some(Scheme::Http),
            "ssh" => Some(Scheme::Ssh),
            "git" => Some(Scheme::Git),
            "file" => Some(Scheme::File),
            _ => None,
        }
    }

    fn default_port(self) -> Option<u16> {
        match self {
            Scheme::Https => Some(443),
            Scheme::Http => Some(80),
            Scheme::Ssh => Some(22),
            Scheme::Git => Some(9418),
            Scheme::File => None,
        }
    }

    fn as_gix(self) -> gix::url::Scheme {
        match self {
            Scheme::Https => gix::url::Scheme::Https,
            Scheme::Http => gix::url::Scheme::Http,
            Scheme::Ssh => gix::url::Scheme::Ssh,
            Scheme::Git => gix::url::Scheme::Git,
            Scheme::File => gix::url::Scheme::File,
        }
    }
}

/// A repository URL that passed the policy: its original text plus the parts used to compare it.
/// `==` compares the text as written; [`RepoUrl::same_repo`] compares repositories.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoUrl {
    text: String,
    scheme: Scheme,
    /// Lower-cased; empty for `file://`.
    host: String,
    /// `None` when absent or the scheme's default port.
    port: Option<u16>,
    /// As written, after the host (scp-like paths have no leading '/').
    path: String,
}

impl RepoUrl {
    /// Parses `text` under the URL policy: only https, http, ssh, git, file and scp-like URLs.
    pub fn parse(text: &str) -> Result<RepoUrl, GitError> {
        let refuse = |reason: &str| GitError::RefusedUrl {
            url: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(refuse("it is empty"));
        }
        if text.len() > MAX_URL_BYTES {
            return Err(refuse(&format!("longer than {MAX_URL_BYTES} bytes")));
        }
        if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(refuse("contains whitespace or control characters"));
        }
        // Git hands URLs to helpers and to ssh as arguments; a leading '-' would be read as an option.
        if text.starts_with('-') {
            return Err(refuse(
                "begins with '-' and could be read as a command-line option",
            ));
        }

        let url = match text.split_once("://") {
            Some((scheme, rest)) if is_scheme_name(scheme) => {
                let Some(scheme) = Scheme::from_name(scheme) else {
                    return Err(refuse(&format!(
                        "transport '{scheme}' is not allowed; use https, http, ssh, git or file"
                    )));
                };
                parse_hierarchical(text, scheme, rest).map_err(|r| refuse(&r))?
            }
            _ => parse_scp_like(text).map_err(|r| refuse(&r))?,
        };

        // Git's own parser decides what is actually contacted; it must agree on the transport.
        let parsed = gix::url::parse(text).map_err(|e| refuse(&super::error_chain(&e)))?;
        if parsed.scheme != url.scheme.as_gix() {
            return Err(refuse("Git reads it as a different transport"));
        }
        Ok(url)
    }

    /// The URL as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether both name the same repository: scheme and user ignored, host case, default
    /// port, trailing '/' and '.git' suffix normalised.
    pub fn same_repo(&self, other: &RepoUrl) -> bool {
        self.identity() == other.identity()
    }

    /// A filesystem-safe, stable directory name for this repository's cache clone, e.g.
    /// `github.com/o/r-1a2b3c4d`; spellings of the same repository share it.
    pub fn cache_key(&self) -> String {
        let identity = self.identity();
        let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
        hasher.update(identity.as_bytes());
        let digest = hasher
            .try_finalize()
            .map(|id| id.to_hex_with_len(8).to_string())
            .unwrap_or_else(|_| "00000000".to_string());

        let host = if self.host.is_empty() {
            "local".to_string()
        } else {
            match self.port {
                Some(port) => format!("{}_{port}", sanitize(&self.host)),
                None => sanitize(&self.host),
            }
        };
        // Only plain names survive: no '.', '..' or empty component can climb out of the cache.
        let mut parts = vec![host];
        parts.extend(
            normalised_path(&self.path)
                .split('/')
                .map(sanitize)
                .filter(|p| !p.is_empty() && p.chars().any(|c| c != '.')),
        );
        if parts.len() == 1 {
            parts.push("repo".to_string());
        }
        let last = parts.pop().expect("at least two parts");
        parts.push(format!("{last}-{digest}"));
        parts.join("/")
    }

    /// What `same_repo` compares: host, non-default port and normalised path.
    fn identity(&self) -> String {
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        let path = normalised_path(&self.path);
        if self.scheme == Scheme::File {
            format!("file://{path}")
        } else {
            // scp-like paths are written without the leading '/', URLs with it.
            format!("{}{port}/{}", self.host, path.trim_start_matches('/'))
        }
    }
}

/// Serialised as written.
impl serde::Serialize for RepoUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl std::fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Trailing '/' and '.git' removed, repeated '/' collapsed.
fn normalised_path(path: &str) -> String {
    let mut collapsed = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && collapsed.ends_with('/')) {
            collapsed.push(c);
        }
    }
    let mut path = collapsed.trim_end_matches('/');
    if let Some(stripped) = path.strip_suffix(".git") {
        path = stripped.trim_end_matches('/');
    }
    path.to_string()
}

/// Keeps ASCII letters, digits, '.', '-' and '_'; anything else becomes '_'.
fn sanitize(part: &str) -> String {
    part.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// RFC 3986 scheme characters; anything else before "://" is not a scheme.
fn is_scheme_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `scheme://[user@]host[:port]/path`, or `file:///absolute/path`.
fn parse_hierarchical(text: &str, scheme: Scheme, rest: &str) -> Result<RepoUrl, String> {
    if scheme == Scheme::File {
        if !rest.starts_with('/') {
            return Err("a file:// URL needs an absolute path (file:///path/to/repo)".into());
        }
        if rest.trim_matches('/').is_empty() {
            return Err("no repository path".into());
        }
        return Ok(RepoUrl {
            text: text.to_string(),
            scheme,
            host: String::new(),
            port: None,
            path: rest.to_string(),
        });
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if path.trim_matches('/').is_empty() {
        return Err("no repository path after the host".into());
    }
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, host_port)) => (Some(user), host_port),
        None => (None, authority),
    };
    if let Some(user) = user {
        check_user(user)?;
    }
    let (host, port) = split_host_port(host_port)?;
    check_host(host)?;
    Ok(RepoUrl {
        text: text.to_string(),
        scheme,
        host: host.to_ascii_lowercase(),
        port: port.filter(|p| Some(*p) != scheme.default_port()),
        path: path.to_string(),
    })
}

/// `[user@]host:path`, Git's scp-like ssh syntax.
fn parse_scp_like(text: &str) -> Result<RepoUrl, String> {
    let Some((left, path)) = text.split_once(':') else {
        return Err(
            "not a URL; use https://, http://, ssh://, git://, file:///absolute/path or user@host:path"
                .into(),
        );
    };
    // "<transport>::<address>" selects a remote helper (ext::, fd::, ...); never allowed.
    if path.starts_with(':') {
        return Err(format!(
            "transport '{left}' is not allowed; use https, http, ssh, git or file"
        ));
    }
    if left.contains('/') {
        return Err("not a URL; a local path must be written file:///absolute/path".into());
    }
    let (user, host) = match left.rsplit_once('@') {
        Some((user, host)) => (Some(user), host),
        None => (None, left),
    };
    if let Some(user) = user {
        check_user(user)?;
    }
    check_host(host)?;
    // A single letter is a Windows drive ("C:/repo"), not a host.
    if host.len() < 2 {
        return Err("not a URL; a local path must be written file:///absolute/path".into());
    }
    if path.trim_matches('/').is_empty() {
        return Err("no repository path after the host".into());
    }
    if path.starts_with('-') {
        return Err("the path begins with '-' and could be read as a command-line option".into());
    }
    Ok(RepoUrl {
        text: text.to_string(),
        scheme: Scheme::Ssh,
        host: host.to_ascii_lowercase(),
        port: None,
        path: path.to_string(),
    })
}

fn split_host_port(host_port: &str) -> Result<(&str, Option<u16>), String> {
    // IPv6 literal: [::1]:22
    if let Some(rest) = host_port.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err("unterminated IPv6 address".into());
        };
        if !host
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err("invalid IPv6 address".into());
        }
        return match after.strip_prefix(':') {
            Some(port) => Ok((host_port, Some(parse_port(port)?))),
            None if after.is_empty() => Ok((host_port, None)),
            None => Err("unexpected text after the IPv6 address".into()),
        };
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => Ok((host, Some(parse_port(port)?))),
        None => Ok((host_port, None)),
    }
}

fn parse_port(port: &str) -> Result<u16, String> {
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("invalid port '{port}'"))
}

fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("empty user name before '@'".into());
    }
    if user.contains(':') {
        return Err("contains a password; use a credential helper instead".into());
    }
    if user.starts_with('-') {
        return Err(
            "the user name begins with '-' and could be read as a command-line option".into(),
        );
    }
    Ok(())
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("no host".into());
    }
    if host.starts_with('[') {
        return Ok(()); // checked in split_host_port
    }
    if host.starts_with('-') {
        return Err("the host begins with '-' and could be read as a command-line option".into());
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(format!("invalid host '{host}'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_urls() {
        for text in [
            "https://github.com/o/r",
            "https://github.com/o/r.git",
            "http://git.example.com:8080/o/r",
            "ssh://git@github.com/o/r.git",
            "ssh://git@github.com:2222/o/r.git",
            "git://example.com/r.git",
            "git@github.com:o/r.git",
            "github.com:o/r",
            "file:///srv/git/r.git",
            "https://user@host.example/o/r",
            "ssh://git@[::1]:22/o/r",
        ] {
            let url = RepoUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(url.as_str(), text);
        }
    }

    #[test]
    fn refused_urls() {
        let long = format!("https://github.com/{}", "a".repeat(2100));
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("-uupload-pack=touch /tmp/x", "whitespace"),
            ("-uupload-pack=touch", "begins with '-'"),
            ("--upload-pack=x", "begins with '-'"),
            ("ext::sh -c touch% /tmp/pwned", "whitespace"),
            ("ext::sh", "transport 'ext' is not allowed"),
            ("fd::17", "transport 'fd' is not allowed"),
            ("ftp://example.com/r.git", "transport 'ftp' is not allowed"),
            ("ext://example.com/r.git", "transport 'ext' is not allowed"),
            ("file://relative", "absolute path"),
            ("file://relative/path", "absolute path"),
            ("https://github.com/o/r\n", "control"),
            ("https://github.com/o/r\nhttps://evil", "control"),
            ("https://github.com/o/r\0", "control"),
            ("https://github.com/o /r", "whitespace"),
            (long.as_str(), "longer than"),
            ("/srv/git/r.git", "not a URL"),
            ("./r.git", "not a URL"),
            ("r.git", "not a URL"),
            ("C:/repo", "not a URL"),
            ("ssh://-oProxyCommand=x/o/r", "host begins with '-'"),
            (
                "ssh://-oProxyCommand=x@host/o/r",
                "user name begins with '-'",
            ),
            ("git@-host:o/r", "host begins with '-'"),
            ("git@host:-o/r", "path begins with '-'"),
            ("https://user:secret@github.com/o/r", "password"),
            ("https://github.com", "no repository path"),
            ("file:///", "no repository path"),
            ("https://github.com/", "no repository path"),
            ("https://github.com:99999/o/r", "invalid port"),
            ("https://gi$hub.com/o/r", "invalid host"),
        ];
        for (text, want) in cases {
            match RepoUrl::parse(text) {
                Ok(_) => panic!("accepted {text:?}"),
                Err(err) => {
                    let msg = err.to_string();
                    assert!(
                        matches!(err, GitError::RefusedUrl { .. }),
                        "{text:?}: {msg}"
                    );
                    assert!(msg.contains(want), "{text:?}: {msg}");
                    assert!(!msg.contains('\n'), "{text:?}: {msg}");
                }
            }
        }
    }

    #[test]
    fn same_repo() {
        let same: &[(&str, &str)] = &[
            ("git@GitHub.com:o/r.git", "https://github.com/o/r"),
            ("https://github.com/o/r", "ssh://git@github.com/o/r.git/"),
            ("git@github.com:o/r.git", "ssh://git@github.com/o/r.git/"),
            ("https://github.com:443/o/r", "http://github.com/o/r"),
            ("ssh://git@github.com:22/o/r", "https://github.com/o/r.git"),
            ("file:///x/y", "file:///x/y.git"),
            ("file:///x/y/", "file:///x/y/.git"),
            ("https://github.com//o/r", "https://github.com/o/r"),
        ];
        for (a, b) in same {
            let (ua, ub) = (RepoUrl::parse(a).unwrap(), RepoUrl::parse(b).unwrap());
            assert!(ua.same_repo(&ub), "{a} vs {b}");
            assert!(ub.same_repo(&ua), "{b} vs {a}");
            assert_eq!(ua.cache_key(), ub.cache_key(), "{a} vs {b}");
        }
        let different: &[(&str, &str)] = &[
            ("https://github.com/o/r", "https://github.com/o/r2"),
            ("https://github.com/o/r", "https://gitlab.com/o/r"),
            ("https://github.com/o/r", "https://github.com:8443/o/r"),
            ("https://github.com/o/r", "https://github.com/O/r"),
            ("file:///x/y", "file:///x/z"),
            ("file:///github.com/o/r", "https://github.com/o/r"),
        ];
        for (a, b) in different {
            let (ua, ub) = (RepoUrl::parse(a).unwrap(), RepoUrl::parse(b).unwrap());
            assert!(!ua.same_repo(&ub), "{a} vs {b}");
            assert_ne!(ua.cache_key(), ub.cache_key(), "{a} vs {b}");
        }
    }

    #[test]
    fn cache_key_is_safe_and_stable() {
        let key = RepoUrl::parse("git@github.com:o/r.git")
            .unwrap()
            .cache_key();
        assert!(key.starts_with("github.com/o/r-"), "{key}");
        assert_eq!(key.len(), "github.com/o/r-".len() + 8);
        // The same input gives the same key on every run (it names a directory on disk).
        assert_eq!(
            key,
            RepoUrl::parse("https://github.com/o/r")
                .unwrap()
                .cache_key()
        );

        for text in [
            "https://h.example/../../../etc",
            "file:///../../x",
            "https://h.example:8443/a/%2e%2e/b",
            "git@h.example:~user/r.git",
        ] {
            let key = RepoUrl::parse(text).unwrap().cache_key();
            for part in key.split('/') {
                assert!(
                    !part.is_empty() && part != "." && part != "..",
                    "{text}: {key}"
                );
                assert!(
                    part.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')),
                    "{text}: {key}"
                );
            }
        }
    }
}
