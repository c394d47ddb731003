//! `kubectl gitops stamp PATH | kubectl apply -f -`, then `trace`: the round trip.

use serde_json::Value;

use crate::fixture::{ALICE, BOB, GitRepo};
use crate::support::{kubectl, kubectl_gitops, run};

fn apply_stdin(ns: &str, yaml: &str) {
    kubectl(ns, &["apply", "-f", "-"], Some(yaml));
}

const CONFIG: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: first
data:
  color: blue
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: second
data:
  color: green
";

fn stamp(repo: &GitRepo, args: &[&str]) -> crate::support::Ran {
    let mut full = vec!["stamp"];
    full.extend_from_slice(args);
    run(kubectl_gitops(&full).current_dir(repo.path()))
}

fn trace_json(ns: &str, object: &str, cache: &std::path::Path) -> Value {
    let kc = testenv::shared().kubeconfig.display().to_string();
    let ran = run(
        kubectl_gitops(&["trace", "--kubeconfig", &kc, "-n", ns, object, "-o", "json"])
            .env("XDG_CACHE_HOME", cache),
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    serde_json::from_str::<Value>(&ran.stdout).unwrap()["items"][0]["source"].clone()
}

#[test]
fn stamp_then_apply_then_trace_round_trips() {
    let cp = testenv::shared();
    let ns = cp.namespace("stamp-plain");
    let mut repo = GitRepo::new();
    repo.write("apps/config.yaml", CONFIG).write(
        "apps/other.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
    );
    repo.commit(ALICE, "Both files");
    repo.write(
        "apps/other.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\ndata: {x: z}\n",
    );
    let later = repo.commit(BOB, "Only other");

    let ran = stamp(&repo, &["apps"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    // Each document carries the last commit that changed its own file.
    let (config_commit, ..) = repo.last_change("apps/config.yaml");
    assert_ne!(config_commit, later);
    assert_eq!(
        ran.stdout
            .matches(&format!("kubectl-gitops.dev/commit: {config_commit}"))
            .count(),
        2,
        "{}",
        ran.stdout
    );
    assert_eq!(
        ran.stdout
            .matches(&format!("kubectl-gitops.dev/commit: {later}"))
            .count(),
        1
    );
    assert!(
        ran.stdout
            .contains("kubectl-gitops.dev/path: apps/config.yaml")
    );

    apply_stdin(&ns, &ran.stdout);
    let cache = tempfile::tempdir().unwrap();
    let s = trace_json(&ns, "cm/second", cache.path());
    assert_eq!(s["rule"], "annotations");
    assert_eq!(s["file"], "apps/config.yaml");
    assert_eq!(s["lines"], serde_json::json!([8, 13]));
    assert_eq!(s["appliedCommit"]["id"], config_commit.as_str());
    assert_eq!(s["appliedCommit"]["authorName"], ALICE.0);
}

#[test]
fn stamp_of_an_overlay_names_the_base_files() {
    let cp = testenv::shared();
    let ns = cp.namespace("stamp-overlay");
    let mut repo = GitRepo::new();
    repo.write("base/kustomization.yaml", "resources: [config.yaml]\n")
        .write("base/config.yaml", CONFIG)
        .write(
            "overlays/prod/kustomization.yaml",
            "resources: [../../base]\nnamePrefix: prod-\n",
        );
    let commit = repo.commit(ALICE, "Overlay");
    let ran = stamp(&repo, &["overlays/prod"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stdout.contains("name: prod-first"), "{}", ran.stdout);
    assert!(
        !ran.stdout.contains("config.kubernetes.io/origin"),
        "the injected annotation is removed"
    );
    apply_stdin(&ns, &ran.stdout);
    let cache = tempfile::tempdir().unwrap();
    let s = trace_json(&ns, "cm/prod-first", cache.path());
    assert_eq!(s["file"], "base/config.yaml");
    assert_eq!(s["lines"], serde_json::json!([1, 6]));
    assert_eq!(s["appliedCommit"]["id"], commit.as_str());
}

#[test]
fn a_dirty_tree_is_refused_unless_allowed() {
    let mut repo = GitRepo::new();
    repo.write("apps/config.yaml", CONFIG);
    repo.commit(ALICE, "Config");
    repo.write("apps/config.yaml", &CONFIG.replace("blue", "red"));
    let ran = stamp(&repo, &["apps"]);
    let line = ran.assert_one_line_error();
    assert!(
        line.contains("has uncommitted changes (apps/config.yaml)"),
        "{line}"
    );
    assert!(line.contains("--allow-dirty"), "{line}");
    let ran = stamp(&repo, &["apps", "--allow-dirty"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    // The committed tree is what is stamped, not the edit.
    assert!(ran.stdout.contains("color: blue"), "{}", ran.stdout);
}
