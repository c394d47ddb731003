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

/// A typed List (items without apiVersion and kind, as `kubectl get -o yaml` of one type can
/// write them) and a `v1` List, in one file. Alice writes them, Bob changes one item.
const LISTS: &str = "\
apiVersion: v1
kind: ConfigMapList
items:
- metadata:
    name: list-first
  data:
    color: blue
- metadata:
    name: list-second
  data:
    color: green
    size: large
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: list-web
  spec:
    ports:
    - port: 80
metadata:
  resourceVersion: \"\"
";

/// Regression: stamp put our annotations on the List's own metadata (a ListMeta, which takes
/// none), so `kubectl apply` refused the whole output. The items are the objects, for stamp and
/// for everything that reads a List afterwards: trace, diff, blame and revert.
#[test]
fn the_items_of_a_list_document_are_the_objects() {
    let cp = testenv::shared();
    let ns = cp.namespace("stamp-list");
    let mut repo = GitRepo::new();
    repo.write(
        "apps/lists.yaml",
        &LISTS.replace("size: large", "size: small"),
    );
    repo.commit(ALICE, "Lists");
    repo.write("apps/lists.yaml", LISTS);
    let bob = repo.commit(BOB, "Large");

    let ran = stamp(&repo, &["apps"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        !ran.stdout.contains("List"),
        "items, not Lists: {}",
        ran.stdout
    );
    assert_eq!(
        ran.stdout
            .matches("kubectl-gitops.dev/path: apps/lists.yaml")
            .count(),
        3,
        "{}",
        ran.stdout
    );
    // kubectl applies what stamp printed (it refused the List before).
    kubectl(
        &ns,
        &["apply", "--server-side", "-f", "-"],
        Some(&ran.stdout),
    );

    let kc = cp.kubeconfig.display().to_string();
    let cache = tempfile::tempdir().unwrap();
    for (object, lines) in [
        ("cm/list-first", [4, 7]),
        ("cm/list-second", [8, 12]),
        ("svc/list-web", [17, 23]),
    ] {
        let s = trace_json(&ns, object, cache.path());
        assert_eq!(s["file"], "apps/lists.yaml", "{object}");
        assert_eq!(s["lines"], serde_json::json!(lines), "{object}");
    }
    let gitops = |args: &[&str]| {
        let mut full = args.to_vec();
        full.extend(["--kubeconfig", &kc, "-n", &ns]);
        run(kubectl_gitops(&full)
            .env("XDG_CACHE_HOME", cache.path())
            .current_dir(repo.path()))
    };
    let ran = gitops(&["diff", "-o", "json"]);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);

    // An out-of-band change to one item is that item's drift, and blame points at the item's
    // lines with git's commits.
    kubectl(
        &ns,
        &[
            "patch",
            "cm/list-second",
            "--type=merge",
            "-p",
            r#"{"data":{"color":"red"}}"#,
        ],
        None,
    );
    let ran = gitops(&["diff", "-o", "json"]);
    assert_eq!(ran.code, Some(1), "{}\n{}", ran.stdout, ran.stderr);
    let report: Value = serde_json::from_str(&ran.stdout).unwrap();
    let drifted: Vec<&str> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "drifted")
        .map(|i| i["object"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(drifted, ["list-second"], "{}", ran.stdout);

    let ran = gitops(&["blame", "cm/list-second", "-o", "json"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let records: Vec<Value> = ran
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let origin = |path: &str| {
        records
            .iter()
            .find(|r| r["path"] == path)
            .unwrap_or_else(|| panic!("no line for {path}: {}", ran.stdout))["origin"]
            .clone()
    };
    let size = origin(".data.size");
    assert_eq!(size["kind"], "git", "{size}");
    assert_eq!(size["line"], 12);
    assert_eq!(size["commit"], bob.as_str());
    let name = origin(".metadata.name");
    assert_eq!(name["line"], 9, "{name}");
    assert_eq!(name["author"], ALICE.0);
    assert_eq!(origin(".data.color")["kind"], "drift");

    let ran = gitops(&["revert", "cm/list-second", "--yes"]);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    let ran = gitops(&["diff"]);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
}
