//! Parsers for what objects say about their source: our annotations, kustomize's origin, Flux's
//! applied revision and Argo CD's tracking id. All of it is untrusted text: anyone who can edit
//! an object can write it, so every value is checked and a bad one is an error naming the key.

use serde::Deserialize;

use crate::git::{RepoPath, RepoUrl};

pub const REPO: &str = "kubectl-gitops.dev/repo";
pub const PATH: &str = "kubectl-gitops.dev/path";
pub const COMMIT: &str = "kubectl-gitops.dev/commit";
pub const KUSTOMIZE_ORIGIN: &str = "config.kubernetes.io/origin";
pub const FLUX_NAME: &str = "kustomize.toolkit.fluxcd.io/name";
pub const FLUX_NAMESPACE: &str = "kustomize.toolkit.fluxcd.io/namespace";
/// Helm's own markers, set on every object of a release it installs or upgrades.
pub const HELM_RELEASE_NAME: &str = "meta.helm.sh/release-name";
pub const HELM_RELEASE_NAMESPACE: &str = "meta.helm.sh/release-namespace";
pub const HELM_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// helm-controller's origin labels, naming the HelmRelease (post-rendered into every object).
pub const FLUX_HELM_NAME: &str = "helm.toolkit.fluxcd.io/name";
pub const FLUX_HELM_NAMESPACE: &str = "helm.toolkit.fluxcd.io/namespace";
pub const ARGO_TRACKING_ID: &str = "argocd.argoproj.io/tracking-id";
pub const ARGO_INSTANCE: &str = "app.kubernetes.io/instance";

/// Longest annotation value we read; real ones are far shorter (the API server allows 256 KiB
/// for all annotations together).
const MAX_VALUE: usize = 4096;

/// A value that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} {value_hint}: {reason}")]
pub struct BadAnnotation {
    pub key: String,
    /// The value, shortened for the message, or a size when too long to show.
    pub value_hint: String,
    pub reason: String,
}

impl BadAnnotation {
    fn new(key: &str, value: &str, reason: impl Into<String>) -> BadAnnotation {
        let value_hint = if value.len() > 80 {
            format!("({} bytes)", value.len())
        } else {
            format!("'{}'", value.escape_debug())
        };
        BadAnnotation {
            key: key.to_owned(),
            value_hint,
            reason: reason.into(),
        }
    }
}

fn checked<'a>(key: &str, value: &'a str) -> Result<&'a str, BadAnnotation> {
    if value.len() > MAX_VALUE {
        return Err(BadAnnotation::new(
            key,
            value,
            format!("longer than {MAX_VALUE} bytes"),
        ));
    }
    Ok(value.trim())
}

/// Our three annotations, as `stamp` writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub repo: RepoUrl,
    pub path: RepoPath,
    pub commit: Option<String>,
}

/// Reads our annotations; None when the object carries none of them.
pub fn parse_stamp(get: impl Fn(&str) -> Option<String>) -> Result<Option<Stamp>, BadAnnotation> {
    let (repo, path, commit) = (get(REPO), get(PATH), get(COMMIT));
    if repo.is_none() && path.is_none() && commit.is_none() {
        return Ok(None);
    }
    let repo_text = repo.ok_or_else(|| BadAnnotation::new(REPO, "", "missing (path is set)"))?;
    let path_text = path.ok_or_else(|| BadAnnotation::new(PATH, "", "missing (repo is set)"))?;
    let repo = RepoUrl::parse(checked(REPO, &repo_text)?)
        .map_err(|e| BadAnnotation::new(REPO, &repo_text, e.to_string()))?;
    let path = RepoPath::parse(checked(PATH, &path_text)?)
        .map_err(|e| BadAnnotation::new(PATH, &path_text, e.to_string()))?;
    let commit = match commit {
        None => None,
        Some(text) => Some(parse_commit_id(COMMIT, checked(COMMIT, &text)?)?),
    };
    Ok(Some(Stamp { repo, path, commit }))
}

/// A full or abbreviated (7+) lower-case hex commit id.
fn parse_commit_id(key: &str, text: &str) -> Result<String, BadAnnotation> {
    let ok = (7..=40).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err(BadAnnotation::new(
            key,
            text,
            "not a commit id (7 to 40 hex digits)",
        ));
    }
    Ok(text.to_ascii_lowercase())
}

/// kustomize's `config.kubernetes.io/origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// As kustomize wrote it: relative to the directory the build ran in (may start with `../`).
    pub path: String,
    pub repo: Option<RepoUrl>,
    pub reference: Option<String>,
}

#[derive(Deserialize)]
struct OriginYaml {
    path: Option<String>,
    /// Generated objects (configMapGenerator, ...) name the kustomization that made them.
    #[serde(rename = "configuredIn")]
    configured_in: Option<String>,
    #[serde(rename = "configuredBy")]
    #[allow(dead_code)]
    configured_by: Option<serde_json::Value>,
    repo: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
}

pub fn parse_origin(text: &str) -> Result<Origin, BadAnnotation> {
    let bad = |reason: String| BadAnnotation::new(KUSTOMIZE_ORIGIN, text, reason);
    let text_checked = checked(KUSTOMIZE_ORIGIN, text)?;
    let yaml: OriginYaml = serde_saphyr::from_str(text_checked).map_err(|e| {
        bad(format!(
            "not YAML with path, repo, ref: {}",
            first_line(&e.to_string())
        ))
    })?;
    let path = yaml
        .path
        .or(yaml.configured_in)
        .ok_or_else(|| bad("has no path".into()))?;
    if path.is_empty() || path.starts_with('/') || path.contains('\0') || path.contains('\\') {
        return Err(bad("path must be relative".into()));
    }
    let repo = match yaml.repo.filter(|r| !r.is_empty()) {
        None => None,
        Some(r) => Some(RepoUrl::parse(&r).map_err(|e| bad(e.to_string()))?),
    };
    Ok(Origin {
        path,
        repo,
        reference: yaml.reference.filter(|r| !r.is_empty()),
    })
}

/// Flux's `status.lastAppliedRevision`: `main@sha1:<hex>`, `sha1:<hex>`, or the older
/// `main/<hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FluxRevision {
    pub reference: Option<String>,
    pub commit: String,
}

pub fn parse_flux_revision(text: &str) -> Result<FluxRevision, BadAnnotation> {
    const KEY: &str = "status.lastAppliedRevision";
    let text = checked(KEY, text)?;
    let (reference, digest) = match text.rsplit_once('@') {
        Some((r, d)) => (Some(r), d),
        None if text.contains(':') => (None, text),
        None => match text.rsplit_once('/') {
            Some((r, d)) => (Some(r), d),
            None => (None, text),
        },
    };
    let hex = digest.strip_prefix("sha1:").unwrap_or(digest);
    if digest.contains(':') && !digest.starts_with("sha1:") {
        return Err(BadAnnotation::new(
            KEY,
            text,
            "only sha1 revisions are supported",
        ));
    }
    let commit = parse_commit_id(KEY, hex)?;
    Ok(FluxRevision {
        reference: reference.filter(|r| !r.is_empty()).map(str::to_owned),
        commit,
    })
}

/// Argo CD's `argocd.argoproj.io/tracking-id`: `<app>:<group>/<kind>:<namespace>/<name>`, where
/// `<app>` may be `<app-namespace>_<app>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingId {
    pub app_namespace: Option<String>,
    pub app: String,
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

pub fn parse_tracking_id(text: &str) -> Result<TrackingId, BadAnnotation> {
    let bad = |reason: &str| BadAnnotation::new(ARGO_TRACKING_ID, text, reason);
    let text = checked(ARGO_TRACKING_ID, text)?;
    let shape = "expected <app>:<group>/<kind>:<namespace>/<name>";
    let mut parts = text.splitn(3, ':');
    let (Some(app), Some(group_kind), Some(ns_name)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(shape));
    };
    let (group, kind) = group_kind.split_once('/').ok_or_else(|| bad(shape))?;
    let (namespace, name) = ns_name.split_once('/').ok_or_else(|| bad(shape))?;
    if app.is_empty() || kind.is_empty() || name.is_empty() {
        return Err(bad(shape));
    }
    let (app_namespace, app) = match app.split_once('_') {
        Some((ns, a)) if !ns.is_empty() && !a.is_empty() => (Some(ns.to_owned()), a.to_owned()),
        _ => (None, app.to_owned()),
    };
    for value in [
        Some(app.as_str()),
        app_namespace.as_deref(),
        Some(namespace),
        Some(name),
    ]
    .into_iter()
    .flatten()
    {
        if !is_k8s_name(value) && !value.is_empty() {
            return Err(bad("a name or namespace is not a valid Kubernetes name"));
        }
    }
    Ok(TrackingId {
        app_namespace,
        app,
        group: group.to_owned(),
        kind: kind.to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

/// A DNS subdomain as Kubernetes names are (lower-case alphanumerics, `-`, `.`; 253 at most).
pub fn is_k8s_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn annotations(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| map.get(key).cloned()
    }

    #[test]
    fn stamp_reads_all_three() {
        let stamp = parse_stamp(annotations(&[
            (REPO, "https://github.com/acme/deploy.git"),
            (PATH, "apps/web/deployment.yaml"),
            (COMMIT, "0123456789abcdef0123456789abcdef01234567"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(stamp.path.as_str(), "apps/web/deployment.yaml");
        assert_eq!(
            stamp.commit.as_deref(),
            Some("0123456789abcdef0123456789abcdef01234567")
        );
        assert_eq!(parse_stamp(annotations(&[])).unwrap(), None);
    }

    #[test]
    fn hostile_stamps_are_refused_naming_the_annotation() {
        let url = "https://example.com/r.git";
        let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
            (
                vec![(REPO, url.into()), (PATH, "../../etc/passwd".into())],
                PATH,
            ),
            (vec![(REPO, url.into()), (PATH, "/etc/passwd".into())], PATH),
            (
                vec![
                    (REPO, "ext::sh -c touch% /tmp/pwned".into()),
                    (PATH, "a.yaml".into()),
                ],
                REPO,
            ),
            (
                vec![
                    (REPO, "-uupload-pack=touch /tmp/x".into()),
                    (PATH, "a.yaml".into()),
                ],
                REPO,
            ),
            (
                vec![
                    (REPO, url.into()),
                    (PATH, "a.yaml".into()),
                    (COMMIT, "main; rm -rf /".into()),
                ],
                COMMIT,
            ),
            (vec![(REPO, url.into()), (PATH, "x".repeat(1 << 20))], PATH),
            (vec![(PATH, "a.yaml".into())], REPO),
        ];
        for (pairs, key) in cases {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let err = parse_stamp(annotations(&pairs)).unwrap_err();
            assert_eq!(err.key, key, "{pairs:?}");
            assert!(err.to_string().starts_with(key), "{err}");
            assert!(err.to_string().len() < 400, "short message: {err}");
        }
    }

    #[test]
    fn origin_is_yaml_with_path_repo_ref() {
        let o = parse_origin("path: ../base/deployment.yaml\n").unwrap();
        assert_eq!(o.path, "../base/deployment.yaml");
        assert_eq!(o.repo, None);
        let o =
            parse_origin("path: apps/web.yaml\nrepo: https://github.com/acme/deploy\nref: v1.2\n")
                .unwrap();
        assert_eq!(o.reference.as_deref(), Some("v1.2"));
        assert!(o.repo.is_some());
        for bad in [
            "path: /etc/passwd\n",
            "repo: https://x/y\n",
            "[",
            "path: a\nrepo: 'ext::sh'\n",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flux_revisions_in_every_format() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let cases = [
            (format!("main@sha1:{sha}"), Some("main")),
            (
                format!("refs/heads/main@sha1:{sha}"),
                Some("refs/heads/main"),
            ),
            (format!("sha1:{sha}"), None),
            (format!("main/{sha}"), Some("main")),
        ];
        for (text, reference) in cases {
            let rev = parse_flux_revision(&text).unwrap();
            assert_eq!(rev.commit, sha, "{text}");
            assert_eq!(rev.reference.as_deref(), reference, "{text}");
        }
        assert!(parse_flux_revision("main@sha256:abcd").is_err());
        assert!(parse_flux_revision("main@sha1:zzzz").is_err());
    }

    #[test]
    fn argo_tracking_ids() {
        let id = parse_tracking_id("shop:apps/Deployment:web/frontend").unwrap();
        assert_eq!((id.app.as_str(), id.app_namespace), ("shop", None));
        assert_eq!(
            (id.group.as_str(), id.kind.as_str()),
            ("apps", "Deployment")
        );
        assert_eq!(
            (id.namespace.as_str(), id.name.as_str()),
            ("web", "frontend")
        );
        let id = parse_tracking_id("argocd-apps_shop:/ConfigMap:web/settings").unwrap();
        assert_eq!(id.app_namespace.as_deref(), Some("argocd-apps"));
        assert_eq!(id.group, "");
        // Cluster-scoped objects have an empty namespace.
        assert_eq!(
            parse_tracking_id("shop:/Namespace:/web").unwrap().namespace,
            ""
        );
        for bad in [
            "shop",
            "shop:apps/Deployment",
            "shop:Deployment:web/x",
            "Shop!:apps/D:w/x",
        ] {
            assert!(parse_tracking_id(bad).is_err(), "{bad}");
        }
    }
}
