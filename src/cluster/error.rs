//! What can go wrong between us and the API server, in words that name the thing and the fix.
//!
//! Every message is one line: the CLI prints it after `error: ` and exits 2.

use std::path::PathBuf;
use std::time::Duration;

use crate::text::single_line;

/// A failure to reach, authenticate to, or get an answer from the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("kubeconfig {} does not exist; pass an existing file to {flag}", path.display())]
    KubeconfigMissing { path: PathBuf, flag: &'static str },

    #[error("cannot read kubeconfig {}: {reason}", path.display())]
    KubeconfigUnreadable { path: PathBuf, reason: String },

    #[error("kubeconfig {} is malformed: {reason}", path.display())]
    KubeconfigMalformed { path: PathBuf, reason: String },

    #[error(
        "no kubeconfig found (looked at {searched}); pass --kubeconfig, set KUBECONFIG, or \
         create ~/.kube/config"
    )]
    NoKubeconfig { searched: String },

    #[error("no current context is set in {files}; pass --context (available: {available})")]
    NoCurrentContext { files: String, available: String },

    #[error("{}; available: {available}", match selector {
        Some(glob) => format!("no context matches --context-selector '{glob}'"),
        None => "the kubeconfig has no context".to_owned(),
    })]
    NoContextMatches {
        selector: Option<String>,
        available: String,
    },

    #[error("unknown context '{name}'; available: {available}")]
    UnknownContext { name: String, available: String },

    #[error("unknown cluster '{name}' (named by {named_by}); available: {available}")]
    UnknownCluster {
        name: String,
        named_by: String,
        available: String,
    },

    #[error("unknown user '{name}' (named by {named_by}); available: {available}")]
    UnknownUser {
        name: String,
        named_by: String,
        available: String,
    },

    #[error("cluster '{cluster}' has no server URL in the kubeconfig")]
    NoServer { cluster: String },

    #[error("invalid kubeconfig entry for context '{context}': {reason}")]
    InvalidConfig { context: String, reason: String },

    #[error(
        "cannot connect to {server} (context '{context}'): {reason}; is the cluster running, and \
         is this the right context?"
    )]
    Unreachable {
        server: String,
        context: String,
        reason: String,
    },

    #[error(
        "{server} did not answer {what} within {} (--request-timeout); check the network or \
         raise the timeout",
        humanize(*after)
    )]
    Timeout {
        server: String,
        what: String,
        after: Duration,
    },

    #[error("TLS with {server} failed: {reason}; check certificate-authority in the kubeconfig")]
    Tls { server: String, reason: String },

    #[error("cannot get credentials for user '{user}': {reason}")]
    Credentials { user: String, reason: String },

    #[error(
        "unauthorized: {server} rejected the credentials of user '{user}'; log in again or fix \
         the kubeconfig"
    )]
    Unauthorized { server: String, user: String },

    /// The server refused by RBAC. `verb` and `resource` come from the server's message.
    #[error("forbidden: {message}; ask a cluster admin for an RBAC role that allows it")]
    Forbidden {
        verb: Option<String>,
        resource: Option<String>,
        message: String,
    },

    #[error("{what} not found: {message}")]
    NotFound { what: String, message: String },

    #[error("{server} answered {code} {reason} to {what}: {message}")]
    Api {
        server: String,
        what: String,
        code: u16,
        reason: String,
        message: String,
    },

    #[error("request {what} to {server} failed: {reason}")]
    Request {
        server: String,
        what: String,
        reason: String,
    },
}

/// Where a request went and on whose behalf, to turn a kube error into a [`ClusterError`].
pub struct RequestContext<'a> {
    pub server: &'a str,
    pub context: &'a str,
    pub user: &'a str,
    /// What was asked, e.g. `GET /version`.
    pub what: &'a str,
}

impl ClusterError {
    /// Classifies an error of the kube client.
    pub fn from_kube(err: kube::Error, at: &RequestContext<'_>) -> ClusterError {
        let server = at.server.to_owned();
        let what = at.what.to_owned();
        match err {
            kube::Error::Api(status) => match status.code {
                401 => ClusterError::Unauthorized {
                    server,
                    user: at.user.to_owned(),
                },
                403 => {
                    let (verb, resource) = forbidden_verb_and_resource(&status.message);
                    ClusterError::Forbidden {
                        verb,
                        resource,
                        message: single_line(&status.message),
                    }
                }
                404 => ClusterError::NotFound {
                    what,
                    message: single_line(&status.message),
                },
                code => ClusterError::Api {
                    server,
                    what,
                    code,
                    reason: status.reason.clone(),
                    message: single_line(&status.message),
                },
            },
            kube::Error::Auth(auth) => ClusterError::Credentials {
                user: at.user.to_owned(),
                reason: chain_text(&auth),
            },
            other => classify_transport(&other, at),
        }
    }
}

/// Connection-level failures: refused, unresolvable, timed out, TLS.
fn classify_transport(
    err: &(dyn std::error::Error + 'static),
    at: &RequestContext<'_>,
) -> ClusterError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            let reason = match io.kind() {
                ConnectionRefused => Some("connection refused".to_owned()),
                ConnectionReset => Some("connection reset".to_owned()),
                HostUnreachable | NetworkUnreachable => Some(io.to_string()),
                TimedOut => Some("connection timed out".to_owned()),
                _ => None,
            };
            if let Some(reason) = reason {
                return unreachable(at, reason);
            }
        }
        let text = e.to_string();
        // Some layers keep the OS error only as text.
        for (needle, reason) in [
            ("Connection refused", "connection refused"),
            ("Connection reset", "connection reset"),
            ("Broken pipe", "connection closed"),
            // The server went away in the middle of an answer (TLS ended without close_notify,
            // or the HTTP connection closed before the response).
            (
                "peer closed connection",
                "the server closed the connection mid-request",
            ),
            (
                "UnexpectedEof",
                "the server closed the connection mid-request",
            ),
            (
                "connection closed before message completed",
                "the server closed the connection mid-request",
            ),
            (
                "IncompleteMessage",
                "the server closed the connection mid-request",
            ),
            (
                "channel closed",
                "the server closed the connection mid-request",
            ),
            (
                "connection error",
                "the connection to the server failed mid-request",
            ),
            ("broken pipe", "connection closed"),
        ] {
            if text.contains(needle) {
                return unreachable(at, reason.to_owned());
            }
        }
        if text.contains("dns error") || text.contains("failed to lookup address") {
            return unreachable(at, single_line(&text));
        }
        // rustls is not a direct dependency: its errors are recognised by their text.
        if text.contains("invalid peer certificate") || text.contains("tls handshake") {
            return ClusterError::Tls {
                server: at.server.to_owned(),
                reason: single_line(&text),
            };
        }
        source = e.source();
    }
    ClusterError::Request {
        server: at.server.to_owned(),
        what: at.what.to_owned(),
        reason: chain_text(err),
    }
}

fn unreachable(at: &RequestContext<'_>, reason: String) -> ClusterError {
    ClusterError::Unreachable {
        server: at.server.to_owned(),
        context: at.context.to_owned(),
        reason,
    }
}

/// The innermost useful message of an error chain, on one line.
fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        let text = single_line(&e.to_string());
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

/// Reads verb and resource from the API server's RBAC message:
/// `... User "viewer" cannot list resource "deployments" in API group "apps" ...`.
fn forbidden_verb_and_resource(message: &str) -> (Option<String>, Option<String>) {
    let Some(rest) = message.split_once(" cannot ").map(|(_, rest)| rest) else {
        return (None, None);
    };
    let verb = rest.split_whitespace().next().map(str::to_owned);
    let resource = rest
        .split_once("resource \"")
        .and_then(|(_, r)| r.split_once('"'))
        .map(|(name, after)| {
            let group = after
                .split_once("in API group \"")
                .and_then(|(_, g)| g.split_once('"'))
                .map(|(g, _)| g)
                .unwrap_or_default();
            if group.is_empty() {
                name.to_owned()
            } else {
                format!("{name}.{group}")
            }
        });
    (verb, resource)
}

/// `1.5s`, `30s`, `2m`.
pub(super) fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}ms", ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_verb_and_resource_from_rbac_messages() {
        let cases = [
            (
                r#"deployments.apps is forbidden: User "viewer" cannot list resource "deployments" in API group "apps" in the namespace "web""#,
                Some("list"),
                Some("deployments.apps"),
            ),
            (
                r#"users "admin" is forbidden: User "viewer" cannot impersonate resource "users" in API group "" at the cluster scope"#,
                Some("impersonate"),
                Some("users"),
            ),
            ("something else entirely", None, None),
        ];
        for (message, verb, resource) in cases {
            let (v, r) = forbidden_verb_and_resource(message);
            assert_eq!(v.as_deref(), verb, "{message}");
            assert_eq!(r.as_deref(), resource, "{message}");
        }
    }

    #[test]
    fn durations_read_like_flags() {
        assert_eq!(humanize(Duration::from_millis(1500)), "1500ms");
        assert_eq!(humanize(Duration::from_secs(30)), "30s");
        assert_eq!(humanize(Duration::from_secs(120)), "2m");
    }

    #[test]
    fn a_connection_closed_mid_request_is_unreachable() {
        #[derive(Debug)]
        struct Text(&'static str);
        impl std::fmt::Display for Text {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Text {}
        let at = RequestContext {
            server: "https://127.0.0.1:6443",
            context: "kind",
            what: "PATCH configmaps/a",
            user: "admin",
        };
        let err = Text(
            "client error (SendRequest): connection error: peer closed connection without \
             sending TLS close_notify",
        );
        match classify_transport(&err, &at) {
            ClusterError::Unreachable { reason, .. } => {
                assert_eq!(reason, "the server closed the connection mid-request")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messages_are_one_line() {
        assert_eq!(single_line("a\n  b\tc "), "a b c");
    }
}
