//! The command line without a cluster: help, version, unimplemented commands, and bad input.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::support::{gitops, run, scratch};

#[test]
fn help_reads_as_kubectl_gitops_and_lists_the_commands() {
    let ran = run(&mut gitops(&["--help"]));
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stdout
            .contains("Usage: kubectl gitops [OPTIONS] <COMMAND>"),
        "{}",
        ran.stdout
    );
    for command in [
        "diff", "trace", "blame", "revert", "stamp", "context", "version",
    ] {
        assert!(
            ran.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(command)),
            "--help lists {command}:\n{}",
            ran.stdout
        );
    }
    for flag in [
        "--kubeconfig",
        "--context",
        "--namespace",
        "--request-timeout",
        "--as-group",
    ] {
        assert!(ran.stdout.contains(flag), "--help shows {flag}");
    }
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let ran = run(&mut gitops(&["version"]));
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let line = ran.stdout.trim();
    let want = format!("kubectl-gitops v{} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&want), "{line}");
    let commit = line[want.len()..].trim_end_matches(')');
    let hex = commit.trim_end_matches("-dirty");
    assert!(
        hex.len() == 40 && hex.chars().all(|c| c.is_ascii_hexdigit()) || commit == "unknown",
        "commit: {commit}"
    );

    let json = run(&mut gitops(&["version", "-o", "json"]));
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("version -o json");
    assert_eq!(doc["apiVersion"], "kubectl-gitops.dev/v1alpha1");
    assert_eq!(doc["kind"], "Version");
    assert_eq!(doc["commit"], commit);
}

#[test]
fn usage_mistakes_exit_2() {
    let ran = run(&mut gitops(&["context", "--request-timeout", "soon"]));
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr.contains("invalid duration 'soon'"),
        "{}",
        ran.stderr
    );
    let ran = run(&mut gitops(&["frobnicate"]));
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr.contains("unrecognized subcommand 'frobnicate'"),
        "{}",
        ran.stderr
    );
}

#[test]
fn nonexistent_kubeconfig_is_one_clear_line() {
    let missing = scratch().join("does-not-exist.yaml");
    let ran = run(&mut gitops(&[
        "context",
        "--kubeconfig",
        missing.to_str().unwrap(),
    ]));
    let line = ran.assert_one_line_error();
    assert_eq!(
        line,
        format!(
            "error: kubeconfig {} does not exist; pass an existing file to --kubeconfig",
            missing.display()
        )
    );
}

#[test]
fn no_kubeconfig_anywhere_says_where_it_looked() {
    // HOME is an empty scratch dir and KUBECONFIG is cleared: nothing to read, not in a pod.
    let ran = run(&mut gitops(&["context"]));
    let line = ran.assert_one_line_error();
    assert!(
        line.starts_with("error: no kubeconfig found (looked at "),
        "{line}"
    );
    assert!(line.contains(".kube/config"), "{line}");
}

fn write_kubeconfig(name: &str, server: &str) -> std::path::PathBuf {
    let path = scratch().join(name);
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: dev\n\
             clusters: [{{name: dev, cluster: {{server: '{server}', insecure-skip-tls-verify: true}}}}]\n\
             users: [{{name: dev, user: {{token: t}}}}]\n\
             contexts:\n  - {{name: dev, context: {{cluster: dev, user: dev}}}}\n  - {{name: staging, context: {{cluster: dev, user: dev}}}}\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn unknown_context_lists_the_known_ones() {
    let path = write_kubeconfig("two-contexts.yaml", "https://127.0.0.1:1");
    let ran = run(&mut gitops(&[
        "context",
        "--kubeconfig",
        path.to_str().unwrap(),
        "--context",
        "prod",
    ]));
    let line = ran.assert_one_line_error();
    assert_eq!(
        line,
        "error: unknown context 'prod'; available: dev, staging"
    );
}

#[test]
fn malformed_kubeconfig_names_the_file() {
    let path = scratch().join("malformed.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nclusters:\n  - name: x\n   cluster: [\n",
    )
    .unwrap();
    let ran = run(&mut gitops(&[
        "context",
        "--kubeconfig",
        path.to_str().unwrap(),
    ]));
    let line = ran.assert_one_line_error();
    assert!(
        line.starts_with(&format!(
            "error: kubeconfig {} is malformed: ",
            path.display()
        )),
        "{line}"
    );
}

#[test]
fn refused_connection_is_reported_within_the_request_timeout() {
    // A port that was free a moment ago: nothing listens there, so connecting is refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("https://127.0.0.1:{port}");
    let path = write_kubeconfig("refused.yaml", &server);
    let started = Instant::now();
    let ran = run(&mut gitops(&[
        "context",
        "--kubeconfig",
        path.to_str().unwrap(),
        "--request-timeout=5s",
    ]));
    let line = ran.assert_one_line_error();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it must not hang"
    );
    assert_eq!(
        line,
        format!(
            "error: cannot connect to {server} (context 'dev'): connection refused; is the \
             cluster running, and is this the right context?"
        )
    );
}

#[test]
fn a_silent_server_is_bounded_by_the_request_timeout() {
    // Accepts TCP connections and never answers the TLS handshake.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let path = write_kubeconfig("silent.yaml", &server);
    let ran = run(&mut gitops(&[
        "context",
        "--kubeconfig",
        path.to_str().unwrap(),
        "--request-timeout=1s",
    ]));
    drop(listener);
    let line = ran.assert_one_line_error();
    assert_eq!(
        line,
        format!(
            "error: {server} did not answer GET /version within 1s (--request-timeout); check \
             the network or raise the timeout"
        )
    );
}

#[test]
fn as_group_without_as_is_refused() {
    let path = write_kubeconfig("as-group.yaml", "https://127.0.0.1:1");
    let ran = run(&mut gitops(&[
        "context",
        "--kubeconfig",
        path.to_str().unwrap(),
        "--as-group",
        "ops",
    ]));
    let line = ran.assert_one_line_error();
    assert_eq!(
        line,
        "error: --as-group needs --as: name the user to impersonate"
    );
}
