//! Real Flux reconciles a repository served over smart HTTP into the test control plane, and
//! marks what it applied the way Flux does: its field manager, its labels, its inventory.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

/// `git` with no user or system configuration.
fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(repo)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args([
            "-c",
            "user.name=Fixture",
            "-c",
            "user.email=fixture@example.com",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn write(repo: &Path, path: &str, text: &str) {
    let path = repo.join(path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

const CONFIG_MAP: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: hello
";

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27
";

fn get(ns: &str, what: &str) -> Value {
    let out = testenv::shared()
        .kubectl_run(
            &["get", "-n", ns, what, "-o", "json", "--show-managed-fields"],
            None,
        )
        .unwrap();
    serde_json::from_str(&out).unwrap()
}

fn managers(object: &Value) -> Vec<String> {
    object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{}/{}", m["manager"], m["operation"]))
        .collect()
}

#[test]
fn real_flux_applies_a_repository_and_the_next_reconcile_changes_nothing() {
    let cp = testenv::shared();
    let flux = testenv::flux::shared();
    let ns = cp.namespace("flux-real");
    let repo_dir = tempfile::tempdir().unwrap();
    let repo = repo_dir.path();
    git(repo, &["init", "-q", "-b", "main"]);
    write(repo, "deploy/configmap.yaml", CONFIG_MAP);
    write(repo, "deploy/deployment.yaml", DEPLOYMENT);
    write(
        repo,
        "deploy/kustomization.yaml",
        "resources: [configmap.yaml, deployment.yaml]\n",
    );
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "App"]);
    let head = git(repo, &["rev-parse", "HEAD"]);

    let started = Instant::now();
    let commit = flux
        .reconcile(&ns, "app", repo, "./deploy", json!({"targetNamespace": ns}))
        .unwrap();
    eprintln!(
        "flux: Ready at {commit} {} ms after reconcile()",
        started.elapsed().as_millis()
    );
    assert_eq!(commit, head);

    for what in ["configmap/settings", "deployment/web"] {
        let object = get(&ns, what);
        let labels = &object["metadata"]["labels"];
        assert_eq!(labels["kustomize.toolkit.fluxcd.io/name"], "app", "{what}");
        assert_eq!(
            labels["kustomize.toolkit.fluxcd.io/namespace"],
            ns.as_str(),
            "{what}"
        );
        let managers = managers(&object);
        assert!(
            managers.contains(&format!("\"{}\"/\"Apply\"", testenv::flux::FIELD_MANAGER)),
            "{what}: {managers:?}"
        );
    }
    let ks = flux.kustomization(&ns, "app").unwrap();
    assert_eq!(
        ks["status"]["lastAppliedRevision"],
        format!("main@sha1:{head}")
    );
    let mut inventory: Vec<&str> = ks["status"]["inventory"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    inventory.sort();
    assert_eq!(
        inventory,
        [
            format!("{ns}_settings__ConfigMap"),
            format!("{ns}_web_apps_Deployment"),
        ]
    );

    // The next reconcile applies nothing: managedFields stay as they are.
    let before = get(&ns, "deployment/web")["metadata"]["managedFields"].clone();
    let started = Instant::now();
    assert_eq!(flux.reconcile_now(&ns, "app").unwrap(), head);
    eprintln!(
        "flux: reconcile_now took {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(
        get(&ns, "deployment/web")["metadata"]["managedFields"],
        before
    );

    // A new commit that drops the ConfigMap: Flux prunes it.
    fs::remove_file(repo.join("deploy/configmap.yaml")).unwrap();
    write(
        repo,
        "deploy/kustomization.yaml",
        "resources: [deployment.yaml]\n",
    );
    git(repo, &["commit", "-q", "-am", "No settings"]);
    let second = git(repo, &["rev-parse", "HEAD"]);
    assert_eq!(flux.reconcile_now(&ns, "app").unwrap(), second);
    let gone = cp.kubectl_run(&["get", "-n", &ns, "configmap/settings"], None);
    assert!(
        gone.as_ref()
            .is_err_and(|e| e.to_string().contains("NotFound")),
        "{gone:?}"
    );

    for (name, pid) in ["source-controller", "kustomize-controller"]
        .iter()
        .zip(flux.pids())
    {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap_or("VmRSS: ?");
        eprintln!("flux: {name} {rss}");
    }
}

#[test]
fn the_flux_cli_sees_no_drift_after_a_clean_reconcile() {
    let cp = testenv::shared();
    let flux = testenv::flux::shared();
    let ns = cp.namespace("flux-cli");
    let repo_dir = tempfile::tempdir().unwrap();
    let repo = repo_dir.path();
    git(repo, &["init", "-q", "-b", "main"]);
    write(repo, "apps/configmap.yaml", CONFIG_MAP);
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "Settings"]);
    flux.reconcile(&ns, "cli", repo, "./apps", json!({"targetNamespace": ns}))
        .unwrap();

    let version = flux
        .flux_cli()
        .args(["version", "--client"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&version.stdout).contains(&flux.binaries.flux_version[1..]),
        "{version:?}"
    );
    let diff = flux
        .flux_cli()
        .args(["diff", "kustomization", "cli", "-n", &ns, "--path"])
        .arg(repo.join("apps"))
        .output()
        .unwrap();
    assert_eq!(diff.status.code(), Some(0), "flux diff: {diff:?}");
    let trace = flux
        .flux_cli()
        .args(["trace", "-n", &ns, "configmap", "settings"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&trace.stdout);
    assert!(trace.status.success(), "flux trace: {trace:?}");
    assert!(
        text.contains("Kustomization:") && text.contains("cli"),
        "{text}"
    );
    assert!(text.contains(&flux.git.url), "{text}");
}
