//! The render cache as a user meets it: a second `diff` at the same commit builds nothing, nor
//! does one at a later commit that left the render's trees alone; a change to a base is built
//! again and reported right; a damaged entry is rebuilt; a value substituted from a Secret never
//! reaches the cache's files. What was built is read from `-v`'s summary line.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::fixture::{ALICE, BOB, GitRepo};
use crate::support::{Ran, kubectl, kubectl_gitops, run};

const SECRET_VALUE: &str = "tok-4b1d-never-cached";

const BASE_DEPLOY: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    example.com/token: ${token}
spec:
  replicas: 2
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

fn repository() -> (GitRepo, String) {
    let mut repo = GitRepo::new();
    repo.write("bases/web/kustomization.yaml", "resources: [deploy.yaml]\n")
        .write("bases/web/deploy.yaml", BASE_DEPLOY)
        .write(
            "deploy/kustomization.yaml",
            "resources: [../bases/web, settings.yaml]\n\
             namePrefix: shop-\n\
             labels:\n- pairs: {team: shop}\n\
             images:\n- name: nginx\n  newTag: '1.28'\n\
             configMapGenerator:\n- name: web-env\n  literals: [MODE=edge]\n",
        )
        .write(
            "deploy/settings.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  level: info\n",
        )
        .write(
            "elsewhere/other.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
        );
    let applied = repo.commit(ALICE, "Shop, over the web base");
    (repo, applied)
}

/// What Flux leaves once it applied `applied`: the GitRepository, a Kustomization of `./deploy`
/// whose `postBuild` substitutes from a Secret, and the objects as kustomize-controller applies
/// them.
fn reconciled(ns: &str, repo: &GitRepo, applied: &str) {
    reconciled_paths(ns, repo, applied, &[("shop", "deploy")]);
}

/// [`reconciled`] for several Kustomizations, each `(name, path)`.
fn reconciled_paths(ns: &str, repo: &GitRepo, applied: &str, kustomizations: &[(&str, &str)]) {
    testenv::shared().install_gitops_crds();
    kubectl(
        ns,
        &["apply", "--server-side", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: vars}}\nstringData: {{token: {SECRET_VALUE}}}\n---\n\
             apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {{name: shop}}\n\
             spec: {{url: 'https://git.example.com/acme/shop', interval: 1m, ref: {{branch: main}}}}\n",
        )),
    );
    for (name, path) in kustomizations {
        kubectl(
            ns,
            &["apply", "--server-side", "-f", "-"],
            Some(&format!(
                "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {{name: {name}}}\n\
                 spec:\n  interval: 5m\n  prune: true\n  path: ./{path}\n  \
                 sourceRef: {{kind: GitRepository, name: shop}}\n  \
                 postBuild: {{substituteFrom: [{{kind: Secret, name: vars}}]}}\n",
            )),
        );
        let status = serde_json::json!({"status": {"lastAppliedRevision": format!("main@sha1:{applied}"),
            "conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
                            "message": "Applied", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        kubectl(
            ns,
            &[
                "patch",
                &format!("kustomization/{name}"),
                "--subresource=status",
                "--type=merge",
                "-p",
                &status.to_string(),
            ],
            None,
        );
        let built = Command::new("kubectl")
            .arg("kustomize")
            .arg(repo.path().join(path))
            .output()
            .unwrap();
        let labels = format!(
            "kustomize.toolkit.fluxcd.io/name: {name}\n    kustomize.toolkit.fluxcd.io/namespace: {ns}\n    "
        );
        let rendered = if built.status.success() {
            String::from_utf8(built.stdout)
                .unwrap()
                .replace("${token}", SECRET_VALUE)
                .replace(
                    "  labels:\n    team: ",
                    &format!("  labels:\n    {labels}team: "),
                )
        } else {
            // A build that fails now: what it applied before, when it still built.
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-left\n  labels:\n    {labels}team: x\n"
            )
        };
        kubectl(
            ns,
            &[
                "apply",
                "--server-side",
                "--field-manager=kustomize-controller",
                "-f",
                "-",
            ],
            Some(&rendered),
        );
    }
}

fn diff(ns: &str, repo: &GitRepo, cache: &Path, extra: &[&str]) -> Ran {
    let kc = testenv::shared().kubeconfig.display().to_string();
    let checkout = repo.path().display().to_string();
    let mut args = vec![
        "diff",
        "--kubeconfig",
        &kc,
        "-n",
        ns,
        "--repo",
        &checkout,
        "-v",
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    let ran = run(kubectl_gitops(&args).env("XDG_CACHE_HOME", cache));
    assert!(
        !ran.stdout.contains(SECRET_VALUE) && !ran.stderr.contains(SECRET_VALUE),
        "a substituted Secret value in the output: {}\n{}",
        ran.stdout,
        ran.stderr
    );
    ran
}

/// `(kustomize builds, renders read from the cache, damaged entries rebuilt)` from `-v`.
fn builds(ran: &Ran) -> (usize, usize, usize) {
    let line = ran
        .stderr
        .lines()
        .find_map(|l| l.split_once("kustomize: ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no kustomize summary in -v output: {}", ran.stderr));
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect();
    (numbers[0], numbers[1], numbers[2])
}

fn statuses(ran: &Ran) -> Vec<(String, String)> {
    let doc: Value = serde_json::from_str(&ran.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", ran.stdout, ran.stderr));
    let mut out: Vec<(String, String)> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["object"]["name"].as_str().unwrap().to_owned(),
                i["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

fn entries(cache: &Path) -> Vec<std::path::PathBuf> {
    let dir = cache.join("kubectl-gitops/renders");
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .map(|r| r.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    found.sort();
    found
}

#[test]
fn renders_are_kept_by_the_trees_they_read() {
    let cp = testenv::shared();
    let ns = cp.namespace("render-cache");
    let (mut repo, applied) = repository();
    reconciled(&ns, &repo, &applied);
    let cache = tempfile::tempdir().unwrap();

    // First run: one build. Everything is in sync.
    let first = diff(&ns, &repo, cache.path(), &[]);
    assert_eq!(first.code, Some(0), "{}\n{}", first.stdout, first.stderr);
    assert_eq!(builds(&first), (1, 0, 0));
    let in_sync = statuses(&first);
    assert_eq!(in_sync.len(), 3, "{in_sync:?}");
    assert!(in_sync.iter().all(|(_, s)| s == "in-sync"), "{in_sync:?}");
    assert_eq!(entries(cache.path()).len(), 1);

    // Same commit: read back, same verdicts.
    let second = diff(&ns, &repo, cache.path(), &[]);
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    assert_eq!(builds(&second), (0, 1, 0));
    assert_eq!(statuses(&second), in_sync);

    // A later commit outside the render's trees: the tip and the applied commit both hit.
    repo.write(
        "elsewhere/other.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\ndata: {a: b}\n",
    );
    repo.commit(BOB, "Elsewhere");
    let unrelated = diff(&ns, &repo, cache.path(), &[]);
    assert_eq!(unrelated.code, Some(0), "{}", unrelated.stderr);
    assert_eq!(builds(&unrelated), (0, 2, 0));

    // A commit to the base: built again at the tip, and the change is pending.
    repo.write(
        "bases/web/deploy.yaml",
        &BASE_DEPLOY.replace("replicas: 2", "replicas: 3"),
    );
    let scaled = repo.commit(BOB, "Scale the web base");
    let changed = diff(&ns, &repo, cache.path(), &[]);
    assert_eq!(
        changed.code,
        Some(1),
        "{}\n{}",
        changed.stdout,
        changed.stderr
    );
    assert_eq!(builds(&changed), (1, 1, 0));
    let report: Value = serde_json::from_str(&changed.stdout).unwrap();
    let web = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["object"]["name"] == "shop-web")
        .expect("shop-web is reported");
    assert_eq!(web["status"], "drifted");
    let fields = web["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "{fields:?}");
    assert_eq!(fields[0]["path"], ".spec.replicas");
    assert_eq!(fields[0]["git"], 3);
    assert_eq!(fields[0]["live"], 2);
    assert_eq!(fields[0]["why"]["kind"], "pending");
    assert_eq!(fields[0]["why"]["commit"], scaled.as_str());
    let expected = statuses(&changed);

    // Every entry damaged: rebuilt, said so, and the same report.
    let stored = entries(cache.path());
    assert_eq!(stored.len(), 2);
    for (i, entry) in stored.iter().enumerate() {
        let mut bytes = std::fs::read(entry).unwrap();
        if i == 0 {
            bytes.truncate(bytes.len() / 2);
        } else {
            let at = bytes.len() - 10;
            bytes[at] ^= 0x20;
        }
        std::fs::write(entry, bytes).unwrap();
    }
    let repaired = diff(&ns, &repo, cache.path(), &[]);
    assert_eq!(repaired.code, Some(1), "{}", repaired.stderr);
    assert_eq!(builds(&repaired), (2, 0, 2));
    assert_eq!(statuses(&repaired), expected);
    assert_eq!(builds(&diff(&ns, &repo, cache.path(), &[])), (0, 2, 0));

    // The Secret's value was substituted in every run, and is in no file of the cache.
    for entry in entries(cache.path()) {
        let text = std::fs::read_to_string(&entry).unwrap();
        assert!(!text.contains(SECRET_VALUE), "{}", entry.display());
        assert!(
            text.contains("${token}"),
            "the entry holds the render before substitution"
        );
    }
}

#[test]
fn the_cache_can_be_turned_off_and_a_bad_size_is_refused() {
    let cp = testenv::shared();
    let ns = cp.namespace("render-cache-off");
    let (repo, applied) = repository();
    reconciled(&ns, &repo, &applied);
    let cache = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let ran = diff(&ns, &repo, cache.path(), &["--render-cache-size=0"]);
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        assert_eq!(builds(&ran), (1, 0, 0));
    }
    assert!(entries(cache.path()).is_empty());

    let ran = diff(&ns, &repo, cache.path(), &["--render-cache-size=lots"]);
    assert_eq!(ran.code, Some(2));
    assert_eq!(ran.stdout, "");
    assert!(
        ran.stderr
            .contains("invalid size 'lots': use bytes or a unit"),
        "{}",
        ran.stderr
    );
}

/// Several Kustomizations render side by side: each once, each right, and one that does not
/// build is an error for its own objects only.
#[test]
fn each_reconciler_renders_once_and_a_broken_one_fails_alone() {
    let cp = testenv::shared();
    let ns = cp.namespace("render-parallel");
    let (mut repo, _) = repository();
    repo.write(
        "blog/kustomization.yaml",
        "resources: [../bases/web]\nnamePrefix: blog-\nlabels:\n- pairs: {team: blog}\n",
    )
    .write(
        "docs/kustomization.yaml",
        "resources: [../bases/web]\nnamePrefix: docs-\nlabels:\n- pairs: {team: docs}\n\
         replicas:\n- name: web\n  count: 5\n",
    )
    .write("broken/kustomization.yaml", "resources: [missing.yaml]\n");
    let applied = repo.commit(ALICE, "Three sites and a broken one");
    reconciled_paths(
        &ns,
        &repo,
        &applied,
        &[
            ("shop", "deploy"),
            ("blog", "blog"),
            ("docs", "docs"),
            ("broken", "broken"),
        ],
    );
    let cache = tempfile::tempdir().unwrap();
    for round in ["cold", "warm"] {
        let ran = diff(&ns, &repo, cache.path(), &[]);
        assert_eq!(ran.code, Some(2), "{round}: {}\n{}", ran.stdout, ran.stderr);
        let expected_builds = if round == "cold" {
            (3, 0, 0)
        } else {
            (0, 3, 0)
        };
        assert_eq!(builds(&ran), expected_builds, "{round}: {}", ran.stderr);
        let got = statuses(&ran);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"docs-web"), "{round}: {names:?}");
        for (name, status) in &got {
            let want = if name == "broken-left" {
                "error"
            } else {
                "in-sync"
            };
            assert_eq!(status, want, "{round}: {name}: {}", ran.stderr);
        }
        assert_eq!(got.len(), 6, "{round}: {got:?}");
        let errors: Vec<&str> = ran
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{round}: {}", ran.stderr);
        assert!(
            errors[0].contains("kustomize build of broken failed"),
            "{round}: {}",
            errors[0]
        );
    }
}
