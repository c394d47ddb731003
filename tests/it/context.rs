//! `kubectl gitops context` against the real control plane, through kubectl's plugin dispatch.

use testenv::{VIEWER_CONTEXT, VIEWER_USER};

use crate::support::{gitops, kubectl_gitops, run, scratch};

fn kubeconfig() -> String {
    testenv::shared().kubeconfig.display().to_string()
}

#[test]
fn context_through_kubectl_reports_server_and_version() {
    let cp = testenv::shared();
    let ran = run(&mut kubectl_gitops(&[
        "context",
        "--kubeconfig",
        &kubeconfig(),
    ]));
    assert_eq!(ran.code, Some(0), "stderr: {}", ran.stderr);
    let field = |label: &str| {
        ran.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{label}:")))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {label} in:\n{}", ran.stdout))
            .to_owned()
    };
    assert_eq!(field("Server"), cp.server);
    assert_eq!(field("Version"), format!("{} (linux/amd64)", cp.version));
    assert_eq!(field("Context"), testenv::ADMIN_CONTEXT);
    assert_eq!(field("User"), "admin");
    assert_eq!(field("Namespace"), "default (default)");
    assert_eq!(
        field("Kubeconfig"),
        format!("{} (from --kubeconfig)", kubeconfig())
    );
    // Not a terminal, so no colour.
    assert!(!ran.stdout.contains('\x1b'), "{:?}", ran.stdout);
}

#[test]
fn context_json_carries_api_version_and_kind() {
    let cp = testenv::shared();
    // Global flags after and before the subcommand, as kubectl users type them.
    let ran = run(&mut kubectl_gitops(&[
        "--namespace",
        "web",
        "context",
        "-o",
        "json",
        "--kubeconfig",
        &kubeconfig(),
    ]));
    assert_eq!(ran.code, Some(0), "stderr: {}", ran.stderr);
    let doc: serde_json::Value = serde_json::from_str(&ran.stdout).expect("JSON");
    assert_eq!(doc["apiVersion"], "kubectl-gitops.dev/v1alpha1");
    assert_eq!(doc["kind"], "Context");
    assert_eq!(doc["server"], cp.server.as_str());
    assert_eq!(doc["serverVersion"]["gitVersion"], cp.version.as_str());
    assert_eq!(doc["namespace"], "web");
    assert_eq!(doc["namespaceOrigin"], "flag");
    assert_eq!(doc["user"], "admin");
}

#[test]
fn kubeconfig_env_list_is_merged_and_contexts_switch() {
    // A first file that sets only the current context and a namespace for it, then the real one:
    // the first file's current-context wins, the second file supplies cluster and user.
    let first = scratch().join("prefers-viewer.yaml");
    std::fs::write(
        &first,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: {VIEWER_CONTEXT}\n\
             contexts: [{{name: {VIEWER_CONTEXT}, context: {{cluster: testenv, user: {VIEWER_USER}, namespace: team-a}}}}]\n"
        ),
    )
    .unwrap();
    let list =
        std::env::join_paths([first.as_path(), testenv::shared().kubeconfig.as_path()]).unwrap();
    let ran = run(kubectl_gitops(&["context", "-o", "json"]).env("KUBECONFIG", &list));
    assert_eq!(ran.code, Some(0), "stderr: {}", ran.stderr);
    let doc: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(doc["context"], VIEWER_CONTEXT);
    assert_eq!(doc["user"], VIEWER_USER);
    assert_eq!(doc["namespace"], "team-a");
    assert_eq!(doc["namespaceOrigin"], "context");
    assert_eq!(doc["kubeconfigOrigin"], "env");
}

#[test]
fn limited_user_gets_forbidden_naming_verb_and_resource() {
    // The viewer may read /version but not impersonate anyone.
    let ran = run(&mut kubectl_gitops(&[
        "context",
        "--kubeconfig",
        &kubeconfig(),
        "--context",
        VIEWER_CONTEXT,
        "--as",
        "admin",
    ]));
    let line = ran.assert_one_line_error();
    assert!(line.starts_with("error: forbidden: "), "{line}");
    assert!(
        line.contains(&format!(
            "User \"{VIEWER_USER}\" cannot impersonate resource \"users\""
        )),
        "{line}"
    );
    assert!(
        line.ends_with("ask a cluster admin for an RBAC role that allows it"),
        "{line}"
    );

    // The same user without impersonation is fine.
    let ran = run(&mut gitops(&[
        "context",
        "--kubeconfig",
        &kubeconfig(),
        "--context",
        VIEWER_CONTEXT,
    ]));
    assert_eq!(ran.code, Some(0), "stderr: {}", ran.stderr);
}

#[test]
fn admin_may_impersonate_and_the_server_sees_it() {
    let cp = testenv::shared();
    let ran = run(&mut gitops(&[
        "context",
        "--kubeconfig",
        &kubeconfig(),
        "--as",
        "someone-else",
        "--as-group",
        "ops",
        "-o",
        "json",
    ]));
    assert_eq!(ran.code, Some(0), "stderr: {}", ran.stderr);
    let doc: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(doc["impersonate"]["user"], "someone-else");
    assert_eq!(doc["impersonate"]["groups"][0], "ops");
    let events = cp
        .audit_events_matching(|e| {
            e["requestURI"] == "/version"
                && e["impersonatedUser"]["username"] == "someone-else"
                && e["user"]["username"] == "admin"
        })
        .unwrap();
    assert!(
        !events.is_empty(),
        "the audit log shows /version read as someone-else on behalf of admin"
    );
}

#[test]
fn context_only_reads() {
    let cp = testenv::shared();
    // Other tests send dry-run patches to the same server at the same time: this run is told
    // apart by the user it impersonates (with an admin's group, so it may read everything).
    let reader = format!("context-reader-{}", std::process::id());
    let ran = run(&mut gitops(&[
        "context",
        "--kubeconfig",
        &kubeconfig(),
        "--as",
        &reader,
        "--as-group",
        "system:masters",
        "-v",
    ]));
    assert_eq!(ran.code, Some(0), "stderr: {}", ran.stderr);
    assert!(
        ran.stderr.contains("GET "),
        "-v logs the request: {}",
        ran.stderr
    );
    let ours = cp
        .audit_events_matching(|e| {
            e["userAgent"]
                .as_str()
                .is_some_and(|ua| ua.starts_with("kubectl-gitops/"))
                && e["impersonatedUser"]["username"] == reader.as_str()
        })
        .unwrap();
    assert!(
        ours.iter()
            .any(|e| e["requestURI"] == "/version" && e["verb"] == "get"),
        "our GET /version is in the audit log"
    );
    for event in &ours {
        assert!(
            matches!(event["verb"].as_str(), Some("get" | "list" | "watch")),
            "kubectl-gitops sent a write: {event}"
        );
    }
}
