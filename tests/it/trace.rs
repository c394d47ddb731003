//! `kubectl gitops trace` on the real control plane, for every mapping rule, checked against
//! `git log` of fixture repositories built with real git.

use std::path::Path;

use serde_json::Value;

use crate::fixture::{ALICE, BOB, GitRepo};
use crate::support::{Ran, kubectl, kubectl_gitops, run};

/// `kubectl apply --server-side -n NS -f -` with `yaml`.
fn apply(ns: &str, yaml: &str) {
    kubectl(ns, &["apply", "--server-side", "-f", "-"], Some(yaml));
}

fn kubeconfig() -> String {
    testenv::shared().kubeconfig.display().to_string()
}

/// Sets `.status` of an object, through the status subresource when its CRD has one (Flux's
/// do; Argo CD's Application keeps status in the main resource).
fn set_status(ns: &str, object: &str, status: Value) {
    let patch = serde_json::json!({ "status": status }).to_string();
    let mut cmd = testenv::shared().kubectl();
    cmd.args(["patch", "-n", ns, object, "--type=merge", "-p", &patch]);
    if !object.starts_with("application.argoproj.io/") {
        cmd.arg("--subresource=status");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs trace with `-o json` and a private cache dir; returns the run and the document.
fn trace(cache: &Path, args: &[&str]) -> (Ran, Value) {
    let kc = kubeconfig();
    let mut full = vec!["trace", "--kubeconfig", &kc, "-o", "json"];
    full.extend_from_slice(args);
    let ran = run(kubectl_gitops(&full).env("XDG_CACHE_HOME", cache));
    let doc = serde_json::from_str(&ran.stdout).unwrap_or_else(|e| {
        panic!(
            "trace -o json: {e}\nstdout: {}\nstderr: {}",
            ran.stdout, ran.stderr
        )
    });
    (ran, doc)
}

fn only_source(doc: &Value) -> &Value {
    assert_eq!(doc["kind"], "TraceReport");
    assert_eq!(doc["items"].as_array().unwrap().len(), 1, "{doc:#}");
    let item = &doc["items"][0];
    assert!(item["error"].is_null(), "{item:#}");
    &item["source"]
}

const TWO_CONFIGMAPS: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: first
data:
  color: blue
---
# the second one
apiVersion: v1
kind: ConfigMap
metadata:
  name: second
data:
  color: green
  size: large
";

#[test]
fn stamped_object_names_file_lines_commit_and_author() {
    let cp = testenv::shared();
    let ns = cp.namespace("trace-stamp");
    let mut repo = GitRepo::new();
    repo.write("apps/config.yaml", &TWO_CONFIGMAPS.replace("green", "red"));
    repo.commit(ALICE, "Add config");
    repo.write("apps/config.yaml", TWO_CONFIGMAPS);
    let second = repo.commit(BOB, "Make it green");
    repo.write("README.md", "docs\n");
    repo.commit(ALICE, "Docs");
    apply(
        &ns,
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: second\n  annotations:\n    \
             kubectl-gitops.dev/repo: {}\n    kubectl-gitops.dev/path: apps/config.yaml\n    \
             kubectl-gitops.dev/commit: {second}\ndata: {{color: green, size: large}}\n",
            repo.url()
        ),
    );
    let cache = tempfile::tempdir().unwrap();
    let (ran, doc) = trace(cache.path(), &["-n", &ns, "configmap/second"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let s = only_source(&doc);
    assert_eq!(s["rule"], "annotations");
    assert_eq!(s["file"], "apps/config.yaml");
    assert_eq!(s["lines"], serde_json::json!([9, 15]));
    let (id, author, email, subject) = repo.last_change("apps/config.yaml");
    assert_eq!(id, second);
    assert_eq!(s["appliedCommit"]["id"], id.as_str());
    assert_eq!(s["appliedCommit"]["authorName"], author.as_str());
    assert_eq!(s["appliedCommit"]["authorEmail"], email.as_str());
    assert_eq!(s["appliedCommit"]["subject"], subject.as_str());
    assert_eq!(s["lastChange"]["id"], id.as_str());
    // One more commit on main, not touching the file.
    assert_eq!(s["commitsSinceApplied"], 1);
    assert_eq!(s["fileChangedSinceApplied"], false);
    assert!(s["reconciler"].is_null());

    // The text form says the same for people.
    let kc = kubeconfig();
    let text = run(
        kubectl_gitops(&["trace", "--kubeconfig", &kc, "-n", &ns, "cm/second"])
            .env("XDG_CACHE_HOME", cache.path()),
    );
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    assert!(
        text.stdout.contains("File:        apps/config.yaml:9-15"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains(&format!(
            "Applied:     {} Bob Builder <bob@example.com>",
            &second[..7]
        )),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("Found by:    kubectl-gitops annotations"),
        "{}",
        text.stdout
    );
}

#[test]
fn kustomize_origin_of_an_overlay_names_the_base_file() {
    let cp = testenv::shared();
    let ns = cp.namespace("trace-origin");
    let mut repo = GitRepo::new();
    repo.write("base/kustomization.yaml", "resources: [config.yaml]\n")
        .write("base/config.yaml", TWO_CONFIGMAPS)
        .write(
            "overlays/prod/kustomization.yaml",
            "resources: [../../base]\nnamePrefix: prod-\nbuildMetadata: [originAnnotations]\n",
        );
    repo.commit(ALICE, "Base and overlay");
    let out = std::process::Command::new("kubectl")
        .args(["kustomize"])
        .arg(repo.path().join("overlays/prod"))
        .output()
        .unwrap();
    assert!(out.status.success());
    apply(&ns, &String::from_utf8(out.stdout).unwrap());
    let cache = tempfile::tempdir().unwrap();
    let (ran, doc) = trace(
        cache.path(),
        &[
            "-n",
            &ns,
            "cm/prod-second",
            "--repo",
            repo.path().to_str().unwrap(),
        ],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let s = only_source(&doc);
    assert_eq!(s["rule"], "kustomize-origin");
    assert_eq!(s["file"], "base/config.yaml");
    assert_eq!(s["lines"], serde_json::json!([9, 15]));
    assert_eq!(s["renderRoot"], "overlays/prod");
    assert_eq!(s["localCheckout"], true);
    assert_eq!(s["lastChange"]["authorName"], ALICE.0);
}

#[test]
fn flux_kustomization_gives_repo_path_revision_and_readiness() {
    let cp = testenv::shared();
    cp.install_gitops_crds();
    let ns = cp.namespace("trace-flux");
    // Flux accepts only http(s) and ssh URLs; the repository is found as the local checkout
    // whose remote is that URL (spelled differently: scp-style, with .git). The one case where
    // Flux's state is written by hand, not by the real controllers (tests/it/flux.rs): they
    // cannot be Ready at a host that does not exist, and the spelling is what is tested.
    let url = "https://git.example.com/Acme/deploy";
    let mut repo = GitRepo::new();
    repo.git(&[
        "remote",
        "add",
        "origin",
        "git@GIT.example.com:Acme/deploy.git",
    ]);
    repo.write("deploy/config.yaml", TWO_CONFIGMAPS).write(
        "deploy/substituted.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-${cluster}\ndata: {region: '${region:=eu}'}\n",
    );
    let applied = repo.commit(ALICE, "Deploy config");
    repo.write(
        "deploy/config.yaml",
        &TWO_CONFIGMAPS.replace("large", "small"),
    );
    repo.commit(BOB, "Shrink");
    apply(
        &ns,
        &format!(
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {{name: repo}}\n\
             spec: {{url: '{url}', interval: 1m, ref: {{branch: main}}}}\n---\n\
             apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {{name: apps}}\n\
             spec:\n  interval: 5m\n  prune: true\n  path: ./deploy\n  namePrefix: flux-\n  \
             sourceRef: {{kind: GitRepository, name: repo}}\n  \
             postBuild: {{substitute: {{cluster: blue}}}}\n"
        ),
    );
    set_status(
        &ns,
        "kustomization/apps",
        serde_json::json!({
            "lastAppliedRevision": format!("main@sha1:{applied}"),
            "conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
                            "message": "Applied revision", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
        }),
    );
    apply(
        &ns,
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flux-second\n  labels:\n    \
             kustomize.toolkit.fluxcd.io/name: apps\n    kustomize.toolkit.fluxcd.io/namespace: {ns}\n\
             data: {{color: green, size: large}}\n"
        ),
    );
    let cache = tempfile::tempdir().unwrap();
    let kc = kubeconfig();
    let ran = run(kubectl_gitops(&[
        "trace",
        "--kubeconfig",
        &kc,
        "-o",
        "json",
        "-n",
        &ns,
        "cm/flux-second",
    ])
    .env("XDG_CACHE_HOME", cache.path())
    .current_dir(repo.path()));
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let doc: Value = serde_json::from_str(&ran.stdout).unwrap();
    let s = only_source(&doc);
    assert_eq!(s["rule"], "flux");
    assert_eq!(s["localCheckout"], true);
    assert_eq!(s["file"], "deploy/config.yaml");
    assert_eq!(s["lines"], serde_json::json!([9, 15]));
    assert_eq!(s["renderRoot"], "deploy");
    assert_eq!(s["appliedCommit"]["id"], applied.as_str());
    assert_eq!(s["appliedCommit"]["authorName"], ALICE.0);
    assert_eq!(s["trackedRef"], "main");
    assert_eq!(s["trackedCommit"], repo.head().as_str());
    assert_eq!(s["commitsSinceApplied"], 1);
    assert_eq!(s["fileChangedSinceApplied"], true);
    assert_eq!(s["reconciler"]["kind"], "Kustomization");
    assert_eq!(s["reconciler"]["name"], "apps");
    assert_eq!(s["reconciler"]["status"], "True");
    assert_eq!(s["reconciler"]["suspended"], false);

    // postBuild.substitute: the live name only exists after substitution.
    apply(
        &ns,
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flux-app-blue\n  labels:\n    \
             kustomize.toolkit.fluxcd.io/name: apps\n    kustomize.toolkit.fluxcd.io/namespace: {ns}\n"
        ),
    );
    let ran = run(kubectl_gitops(&[
        "trace",
        "--kubeconfig",
        &kc,
        "-o",
        "json",
        "-n",
        &ns,
        "cm/flux-app-blue",
    ])
    .env("XDG_CACHE_HOME", cache.path())
    .current_dir(repo.path()));
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let doc: Value = serde_json::from_str(&ran.stdout).unwrap();
    let s = only_source(&doc);
    assert_eq!(s["file"], "deploy/substituted.yaml");
    assert_eq!(s["lines"], serde_json::json!([1, 5]));
}

#[test]
fn an_object_without_source_says_what_was_looked_for() {
    let cp = testenv::shared();
    let ns = cp.namespace("trace-nosource");
    apply(
        &ns,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: orphan}\n",
    );
    let cache = tempfile::tempdir().unwrap();
    let kc = kubeconfig();
    // Not inside any repository, and no --repo.
    let ran = run(
        kubectl_gitops(&["trace", "--kubeconfig", &kc, "-n", &ns, "cm/orphan"])
            .env("XDG_CACHE_HOME", cache.path())
            .current_dir(cache.path()),
    );
    let line = ran.assert_one_line_error();
    assert!(
        line.starts_with(&format!("error: ConfigMap {ns}/orphan: no source found")),
        "{line}"
    );
    for looked_for in [
        "kubectl-gitops.dev/repo",
        "config.kubernetes.io/origin",
        "kustomize.toolkit.fluxcd.io/name",
        "argocd.argoproj.io/tracking-id",
        "--repo",
    ] {
        assert!(line.contains(looked_for), "{looked_for}: {line}");
    }
    // An unknown object is an error too, with kubectl's words.
    let ran = run(
        kubectl_gitops(&["trace", "--kubeconfig", &kc, "-n", &ns, "cm/nope"])
            .env("XDG_CACHE_HOME", cache.path()),
    );
    let line = ran.assert_one_line_error();
    assert_eq!(
        line,
        format!("error: cm/nope: configmaps \"nope\" not found in namespace \"{ns}\"")
    );
    let ran = run(&mut kubectl_gitops(&[
        "trace",
        "--kubeconfig",
        &kc,
        "widgets/x",
    ]));
    let line = ran.assert_one_line_error();
    assert_eq!(
        line,
        "error: widgets/x: the server doesn't have a resource type \"widgets\""
    );
}

fn argo_fixture(ns: &str, app: &str) -> (GitRepo, String) {
    let mut repo = GitRepo::new();
    repo.write("manifests/config.yaml", TWO_CONFIGMAPS);
    let applied = repo.commit(BOB, "Argo manifests");
    apply(
        ns,
        &format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: {app}}}\n\
             spec:\n  project: default\n  source: {{repoURL: '{}', path: manifests, targetRevision: main}}\n  \
             destination: {{server: 'https://kubernetes.default.svc', namespace: {ns}}}\n  \
             syncPolicy: {{automated: {{prune: true}}}}\n",
            repo.url()
        ),
    );
    set_status(
        ns,
        &format!("application.argoproj.io/{app}"),
        serde_json::json!({"sync": {"status": "Synced", "revision": applied},
                           "health": {"status": "Healthy"}}),
    );
    (repo, applied)
}

#[test]
fn argo_application_by_tracking_id_and_by_instance_label() {
    let cp = testenv::shared();
    cp.install_gitops_crds();
    let ns = cp.namespace("trace-argo");
    let app = format!("shop-{ns}");
    let (repo, applied) = argo_fixture(&ns, &app);
    apply(
        &ns,
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: second\n  annotations:\n    \
             argocd.argoproj.io/tracking-id: '{ns}_{app}:/ConfigMap:{ns}/second'\n\
             data: {{color: green}}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first\n  labels:\n    \
             app.kubernetes.io/instance: {app}\ndata: {{color: blue}}\n"
        ),
    );
    let cache = tempfile::tempdir().unwrap();
    for (object, lines) in [("cm/second", [9, 15]), ("cm/first", [1, 6])] {
        let (ran, doc) = trace(cache.path(), &["-n", &ns, object]);
        assert_eq!(ran.code, Some(0), "{object}: {}", ran.stderr);
        let s = only_source(&doc);
        assert_eq!(s["rule"], "argo-cd", "{object}");
        assert_eq!(s["repo"], repo.url().as_str());
        assert_eq!(s["file"], "manifests/config.yaml");
        assert_eq!(s["lines"], serde_json::json!(lines), "{object}");
        assert_eq!(s["appliedCommit"]["id"], applied.as_str());
        assert_eq!(s["appliedCommit"]["authorName"], BOB.0);
        assert_eq!(s["reconciler"]["kind"], "Application");
        assert_eq!(s["reconciler"]["status"], "Synced, Healthy");
    }
}

#[test]
fn fallback_search_finds_the_declaring_document() {
    let cp = testenv::shared();
    let ns = cp.namespace("trace-fallback");
    let mut repo = GitRepo::new();
    repo.write(
        "a/unrelated.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
    )
    .write(
        "b/kustomization.yaml",
        &format!("namespace: {ns}\nresources: [config.yaml]\n"),
    )
    .write("b/config.yaml", TWO_CONFIGMAPS)
    .write("notes.txt", "not yaml\n");
    repo.commit(ALICE, "Config");
    apply(&ns, TWO_CONFIGMAPS);
    let cache = tempfile::tempdir().unwrap();
    let (ran, doc) = trace(
        cache.path(),
        &[
            "-n",
            &ns,
            "cm/first",
            "--repo",
            repo.path().to_str().unwrap(),
        ],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let s = only_source(&doc);
    assert_eq!(s["rule"], "fallback");
    assert_eq!(s["file"], "b/config.yaml");
    assert_eq!(s["lines"], serde_json::json!([1, 6]));
    assert_eq!(s["lastChange"]["authorName"], ALICE.0);
}

#[test]
fn hostile_annotations_are_refused_and_the_rest_reported() {
    let cp = testenv::shared();
    let ns = cp.namespace("trace-hostile");
    let mut repo = GitRepo::new();
    repo.write(
        "ok.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good}\n",
    );
    std::fs::write(
        repo.path().join("logo.png"),
        [0x89, b'P', b'N', b'G', 0, 1, 2, 3],
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../etc/passwd",
        repo.path().join("passwd.yaml"),
    )
    .unwrap();
    repo.commit(ALICE, "Files");
    let url = repo.url();
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let cases = [
        (
            "escape",
            url.as_str(),
            "../../etc/passwd",
            "kubectl-gitops.dev/path",
        ),
        (
            "absolute",
            url.as_str(),
            "/etc/passwd",
            "kubectl-gitops.dev/path",
        ),
        (
            "ext",
            "ext::sh -c touch% /tmp/pwned",
            "ok.yaml",
            "kubectl-gitops.dev/repo",
        ),
        (
            "dash",
            "-uupload-pack=touch /tmp/pwned",
            "ok.yaml",
            "kubectl-gitops.dev/repo",
        ),
        (
            "symlink",
            url.as_str(),
            "passwd.yaml",
            "refused path 'passwd.yaml'",
        ),
        ("binary", url.as_str(), "logo.png", "not UTF-8 text"),
    ];
    let mut yaml = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: good\n  annotations:\n    \
         kubectl-gitops.dev/repo: URL\n    kubectl-gitops.dev/path: ok.yaml\n",
    )
    .replace("URL", &url);
    for (name, repo_url, path, _) in &cases {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations:\n    \
             kubectl-gitops.dev/repo: '{repo_url}'\n    kubectl-gitops.dev/path: '{path}'\n"
        ));
    }
    yaml.push_str(&format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: nocommit\n  annotations:\n    \
         kubectl-gitops.dev/repo: '{url}'\n    kubectl-gitops.dev/path: ok.yaml\n    \
         kubectl-gitops.dev/commit: {missing}\n"
    ));
    apply(&ns, &yaml);
    let cache = tempfile::tempdir().unwrap();
    let (ran, doc) = trace(cache.path(), &["-n", &ns, "configmaps"]);
    assert_eq!(ran.code, Some(2), "errors exit 2: {}", ran.stderr);
    assert!(
        !ran.stdout.contains("root:x:0:0"),
        "nothing outside the repository is shown"
    );
    assert!(!ran.stderr.contains("root:x:0:0"));
    let items = doc["items"].as_array().unwrap();
    let item = |name: &str| {
        items
            .iter()
            .find(|i| i["object"]["name"] == name)
            .unwrap_or_else(|| panic!("{name} is reported: {doc:#}"))
    };
    assert_eq!(
        item("good")["source"]["file"],
        "ok.yaml",
        "the good object is still traced"
    );
    for (name, _, _, expect) in cases {
        let error = item(name)["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} fails"));
        assert!(error.contains(expect), "{name}: {error}");
        assert!(
            ran.stderr.contains(&format!("ConfigMap {ns}/{name}: ")),
            "{name} on stderr"
        );
    }
    let error = item("nocommit")["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("unknown revision '{missing}'")),
        "{error}"
    );
    assert!(!Path::new("/tmp/pwned").exists());
}

#[test]
fn remote_is_cloned_once_reused_offline_and_fetched_for_a_missing_commit() {
    let cp = testenv::shared();
    let ns = cp.namespace("trace-remote");
    let mut repo = GitRepo::new();
    repo.write("config.yaml", TWO_CONFIGMAPS);
    let first = repo.commit(ALICE, "Config");
    let stamp = |name: &str, commit: &str, url: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations:\n    \
             kubectl-gitops.dev/repo: '{url}'\n    kubectl-gitops.dev/path: config.yaml\n    \
             kubectl-gitops.dev/commit: {commit}\n"
        )
    };
    apply(&ns, &stamp("first", &first, &repo.url()));
    let cache = tempfile::tempdir().unwrap();
    let trace_v = |object: &str| {
        let kc = kubeconfig();
        run(
            kubectl_gitops(&["trace", "--kubeconfig", &kc, "-n", &ns, object, "-v"])
                .env("XDG_CACHE_HOME", cache.path()),
        )
    };
    let ran = trace_v("cm/first");
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stderr.contains("1 clones, 0 fetches"), "{}", ran.stderr);
    assert!(cache.path().join("kubectl-gitops/repos").is_dir());

    // Offline: the origin is gone, the cache answers.
    let moved = repo.path().with_extension("away");
    std::fs::rename(repo.path(), &moved).unwrap();
    let ran = trace_v("cm/first");
    assert_eq!(ran.code, Some(0), "works offline: {}", ran.stderr);
    assert!(ran.stderr.contains("0 clones, 0 fetches"), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("using the cached copy, which may be behind the remote"),
        "an unrefreshed tip is said: {}",
        ran.stderr
    );
    std::fs::rename(&moved, repo.path()).unwrap();

    // A commit the cache does not have: fetched once.
    repo.write("config.yaml", &TWO_CONFIGMAPS.replace("blue", "navy"));
    let second = repo.commit(BOB, "Navy");
    apply(&ns, &stamp("second", &second, &repo.url()));
    let ran = trace_v("cm/second");
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stderr.contains("0 clones, 1 fetches"), "{}", ran.stderr);

    // The branch moves on without any object naming the new commit: the tracked tip is the
    // remote's, not the cache's.
    repo.write("config.yaml", &TWO_CONFIGMAPS.replace("blue", "teal"));
    let third = repo.commit(ALICE, "Teal");
    let kc = kubeconfig();
    let ran = run(kubectl_gitops(&[
        "trace",
        "--kubeconfig",
        &kc,
        "-n",
        &ns,
        "cm/first",
        "-o",
        "json",
    ])
    .env("XDG_CACHE_HOME", cache.path()));
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let traced: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let source = &traced["items"][0]["source"];
    assert_eq!(
        source["trackedCommit"].as_str(),
        Some(third.as_str()),
        "{traced:#}"
    );
    assert_eq!(source["commitsSinceApplied"], 2, "{traced:#}");
}

#[test]
fn two_hundred_objects_in_fifty_files_read_each_file_once() {
    let cp = testenv::shared();
    let ns = cp.namespace("trace-many");
    let mut repo = GitRepo::new();
    let mut live = String::new();
    for f in 0..50 {
        let mut text = String::new();
        for o in 0..4 {
            text.push_str(&format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{f}-{o}\ndata: {{n: '{o}'}}\n"
            ));
        }
        repo.write(&format!("apps/file-{f}.yaml"), &text);
    }
    let commit = repo.commit(ALICE, "Many");
    for f in 0..50 {
        for o in 0..4 {
            live.push_str(&format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{f}-{o}\n  annotations:\n    \
                 kubectl-gitops.dev/repo: '{}'\n    kubectl-gitops.dev/path: apps/file-{f}.yaml\n    \
                 kubectl-gitops.dev/commit: {commit}\ndata: {{n: '{o}'}}\n",
                repo.url()
            ));
        }
    }
    apply(&ns, &live);
    let cache = tempfile::tempdir().unwrap();
    let kc = kubeconfig();
    let ran = run(kubectl_gitops(&[
        "trace",
        "--kubeconfig",
        &kc,
        "-n",
        &ns,
        "configmaps",
        "-o",
        "json",
        "-v",
    ])
    .env("XDG_CACHE_HOME", cache.path()));
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let doc: Value = serde_json::from_str(&ran.stdout).unwrap();
    let items = doc["items"].as_array().unwrap();
    // kube-root-ca.crt does not exist here (no controller manager), so exactly ours.
    assert_eq!(items.len(), 200);
    assert!(items.iter().all(|i| {
        i["source"]["file"]
            .as_str()
            .unwrap()
            .starts_with("apps/file-")
    }));
    assert!(
        ran.stderr
            .contains("git: 50 file reads, 0 renders, 50 history lookups, 1 clones, 0 fetches"),
        "{}",
        ran.stderr
    );
}
