//! Flux HelmRelease `postRenderers` end to end: real helm-controller installs a chart from Git
//! through a kustomize post-renderer (two patches and an image), and every command of ours
//! renders it the same way: no false drift, each post-rendered line blamed on its patch or
//! image in the HelmRelease's file, a post-renderer change pushed to Git is pending.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::fixture::{ALICE, BOB, GitRepo};
use crate::helm::{CHART, DEPLOYMENT, SERVICE, assert_origin, origins, wait_revision};
use crate::support::{
    Ran, items, json_of, kubectl_gitops, path_with_helm, reconciled_by_flux, run,
};
use testenv::flux::WATCH_LABEL;

/// A value of the chart's Secret (through a Secret label patch): no output holds it. (That
/// the scratch directory does not is the render layer's unit test's.)
const TOKEN: &str = "post-render-token-9b2f";

const VALUES: &str = "\
replicas: 1
image: nginx:1.27
port: 8080
";

const SECRET: &str = "\
apiVersion: v1
kind: Secret
metadata:
  name: {{ .Release.Name }}-token
type: Opaque
stringData:
  token: {{ .Values.token | quote }}
";

/// The HelmRelease, with `replicas` (what its first patch sets) and the image tag its
/// post-renderer sets.
fn release_yaml(replicas: u32, tag: &str) -> String {
    format!(
        "\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: web
  labels:
    {WATCH_LABEL}: real
spec:
  interval: 1h
  install:
    disableWait: true
  upgrade:
    disableWait: true
  chart:
    metadata:
      labels:
        {WATCH_LABEL}: real
    spec:
      chart: ./charts/web
      # The chart's own version: a commit that changes only this file upgrades the release
      # once, for its new spec. (With Revision, helm-controller can upgrade for the new chart
      # revision with the spec it had before, then take the new one as observed.)
      interval: 1h
      sourceRef:
        kind: GitRepository
        name: apps
  values:
    port: 9090
    token: {TOKEN}
  postRenderers:
    - kustomize:
        patches:
          - target:
              kind: Deployment
            patch: |
              - op: replace
                path: /spec/replicas
                value: {replicas}
          - patch: |
              apiVersion: v1
              kind: Service
              metadata:
                name: web
                annotations:
                  patched-by: post-renderer
          - target:
              kind: Secret
            patch: |
              - op: add
                path: /metadata/labels
                value:
                  rotated: \"no\"
        images:
          - name: nginx
            newTag: \"{tag}\"
"
    )
}

/// The 1-based line of `text` that holds `needle`.
fn line_with(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
        + 1
}

/// `kubectl gitops COMMAND -n NS ARGS` in the work tree; no output holds the token.
fn gitops(ns: &str, repo: &GitRepo, cache: &Path, args: &[&str]) -> Ran {
    let kc = testenv::shared().kubeconfig.display().to_string();
    let mut full = vec![args[0], "--kubeconfig", kc.as_str(), "-n", ns];
    full.extend_from_slice(&args[1..]);
    let mut cmd: Command = kubectl_gitops(&full);
    path_with_helm(&mut cmd, Some(&testenv::helm::shared().binaries.helm));
    cmd.env("XDG_CACHE_HOME", cache).current_dir(repo.path());
    let ran = run(&mut cmd);
    let encoded = kubectl_gitops::drift::base64(TOKEN.as_bytes());
    for text in [&ran.stdout, &ran.stderr] {
        assert!(
            !text.contains(TOKEN) && !text.contains(&encoded),
            "{args:?}: a Secret value leaked:\n{text}"
        );
    }
    ran
}

const RELEASED: [&str; 3] = ["Deployment/web", "Service/web", "Secret/web-token"];

/// Every object of the release in sync, in every mode.
fn all_in_sync(ns: &str, repo: &GitRepo, cache: &Path, what: &str) {
    for mode in ["false", "auto", "true"] {
        let ran = gitops(
            ns,
            repo,
            cache,
            &["diff", &format!("--server-side={mode}"), "-o", "json"],
        );
        let report = json_of(&ran);
        assert_eq!(
            ran.code,
            Some(0),
            "{what}, {mode}: {}\n{report:#}",
            ran.stderr
        );
        let found = items(&report);
        for object in RELEASED {
            assert_eq!(
                found[object]["status"], "in-sync",
                "{what}, {mode}: {object}: {:#}",
                found[object]
            );
        }
    }
}

/// `kubectl get -n NS WHAT -o jsonpath=PATH`.
fn field(ns: &str, what: &str, path: &str) -> String {
    testenv::shared()
        .kubectl_run(
            &["get", "-n", ns, what, "-o", &format!("jsonpath={path}")],
            None,
        )
        .unwrap()
}

fn blame(ns: &str, repo: &GitRepo, cache: &Path, object: &str) -> BTreeMap<String, Value> {
    origins(
        &gitops(ns, repo, cache, &["blame", object, "-o", "json"]),
        object,
    )
}

#[test]
fn post_renderers_render_as_helm_controller_renders_them() {
    let ns = testenv::shared().namespace("helm-post");
    let mut repo = GitRepo::new();
    repo.write("charts/web/Chart.yaml", CHART)
        .write("charts/web/values.yaml", VALUES)
        .write("charts/web/templates/deployment.yaml", DEPLOYMENT)
        .write("charts/web/templates/service.yaml", SERVICE)
        .write("charts/web/templates/secret.yaml", SECRET)
        .write("deploy/release.yaml", &release_yaml(3, "1.28"));
    let first = repo.commit(ALICE, "The web chart, patched on its way in");
    let helm = testenv::helm::shared();
    reconciled_by_flux(&ns, &repo, "./deploy");
    helm.wait_release(&ns, "web", None)
        .unwrap_or_else(|e| panic!("installing the release: {e:#}"));
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path();

    // helm-controller applied what the post-renderer made of the chart.
    assert_eq!(field(&ns, "deploy/web", "{.spec.replicas}"), "3");
    assert_eq!(
        field(
            &ns,
            "deploy/web",
            "{.spec.template.spec.containers[0].image}"
        ),
        "nginx:1.28"
    );
    assert_eq!(
        field(&ns, "svc/web", "{.metadata.annotations.patched-by}"),
        "post-renderer"
    );
    assert_eq!(
        field(&ns, "secret/web-token", "{.metadata.labels.rotated}"),
        "no"
    );
    all_in_sync(&ns, &repo, cache, "after install");

    // trace names the post-renderer.
    let ran = gitops(&ns, &repo, cache, &["trace", "deploy/web", "-o", "json"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(
        json_of(&ran)["items"][0]["source"]["helm"]["postRenderers"],
        json!(["kustomize: 3 patches, 1 image"]),
        "{}",
        ran.stdout
    );
    let ran = gitops(&ns, &repo, cache, &["trace", "deploy/web"]);
    assert!(
        ran.stdout
            .contains("1. kustomize: 3 patches, 1 image (in order)"),
        "{}",
        ran.stdout
    );

    // blame: each post-rendered line is its patch's or image's; the rest as without them.
    let text = release_yaml(3, "1.28");
    let deployment = blame(&ns, &repo, cache, "deploy/web");
    let release_line = |needle: &str| line_with(&text, needle);
    assert_origin(
        &deployment,
        ".spec.replicas",
        &json!({"kind": "git", "file": "deploy/release.yaml", "line": release_line("value: 3")}),
        &first,
    );
    let image = ".spec.template.spec.containers[name=web].image";
    assert_origin(
        &deployment,
        image,
        &json!({"kind": "git", "file": "deploy/release.yaml", "line": release_line("newTag:")}),
        &first,
    );
    assert_origin(
        &deployment,
        ".spec.template.spec.containers[name=web].ports[containerPort=9090,protocol=TCP].containerPort",
        &json!({"kind": "git", "file": "deploy/release.yaml", "line": release_line("port: 9090")}),
        &first,
    );
    assert_origin(
        &deployment,
        ".kind",
        &json!({"kind": "chart", "file": "charts/web/templates/deployment.yaml"}),
        &first,
    );
    let service = blame(&ns, &repo, cache, "svc/web");
    assert_origin(
        &service,
        ".metadata.annotations[\"patched-by\"]",
        &json!({"kind": "git", "file": "deploy/release.yaml", "line": release_line("patched-by:")}),
        &first,
    );

    // Out of band, over what the post-renderer wrote: found, its manager named; revert.
    testenv::shared()
        .kubectl_run(
            &[
                "annotate",
                "-n",
                &ns,
                "svc/web",
                "patched-by=someone",
                "--overwrite",
            ],
            None,
        )
        .unwrap();
    let ran = gitops(&ns, &repo, cache, &["diff", "-o", "json"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let found = items(&json_of(&ran));
    let fields = found["Service/web"]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "{fields:#?}");
    assert_eq!(fields[0]["path"], ".metadata.annotations[\"patched-by\"]");
    assert_eq!(fields[0]["why"]["kind"], "out-of-band", "{:#}", fields[0]);
    assert_eq!(fields[0]["why"]["manager"], "kubectl-annotate");
    let ran = gitops(&ns, &repo, cache, &["revert", "svc/web", "--yes"]);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    all_in_sync(&ns, &repo, cache, "after revert");

    // A new image tag, reconciled: its line is the new commit's, the patches' still the first.
    repo.write("deploy/release.yaml", &release_yaml(3, "1.29"));
    let retag = repo.commit(BOB, "nginx 1.29");
    testenv::flux::shared().reconcile_now(&ns, "apps").unwrap();
    wait_revision(helm, &ns, 2);
    assert_eq!(
        field(
            &ns,
            "deploy/web",
            "{.spec.template.spec.containers[0].image}"
        ),
        "nginx:1.29"
    );
    all_in_sync(&ns, &repo, cache, "after the new tag");
    let deployment = blame(&ns, &repo, cache, "deploy/web");
    assert_origin(
        &deployment,
        image,
        &json!({"kind": "git", "file": "deploy/release.yaml"}),
        &retag,
    );
    assert_origin(
        &deployment,
        ".spec.replicas",
        &json!({"kind": "git", "file": "deploy/release.yaml"}),
        &first,
    );

    // A patch changed in Git and not reconciled yet: pending, with its commit.
    repo.write("deploy/release.yaml", &release_yaml(4, "1.29"));
    let scale = repo.commit(BOB, "Four replicas");
    let ran = gitops(&ns, &repo, cache, &["diff", "-o", "json"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let found = items(&json_of(&ran));
    let fields = found["Deployment/web"]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "{fields:#?}");
    assert_eq!(fields[0]["path"], ".spec.replicas");
    assert_eq!(fields[0]["why"]["kind"], "pending", "{:#}", fields[0]);
    assert_eq!(fields[0]["why"]["commit"], scale.as_str());
    assert_eq!(found["Service/web"]["status"], "in-sync");
    testenv::flux::shared().reconcile_now(&ns, "apps").unwrap();
    wait_revision(helm, &ns, 3);
    all_in_sync(&ns, &repo, cache, "after the patch change was reconciled");

    // A patch that does not apply fails that release's objects, one line each, naming it.
    repo.write(
        "deploy/release.yaml",
        &release_yaml(4, "1.29").replace("path: /spec/replicas", "path: /spec/nothing/here"),
    );
    repo.commit(BOB, "A patch that cannot apply");
    let ran = gitops(&ns, &repo, cache, &["diff", "-o", "json"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    let errors = ran.error_lines();
    assert_eq!(errors.len(), RELEASED.len(), "{}", ran.stderr);
    for line in errors {
        assert!(
            line.contains(&format!("HelmRelease {ns}/web: its postRenderers failed"))
                && line.contains("fix spec.postRenderers in Git"),
            "{line}"
        );
    }
}
