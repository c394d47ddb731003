//! Argo CD Helm sources and multi-source Applications, end to end: a chart in a local Git
//! repository, rendered with the real `helm` exactly as Argo CD's repo-server calls it and
//! applied as its application controller applies (server-side, field manager
//! argocd-controller, a tracking id on every object); then every command of ours agrees.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::fixture::{ALICE, BOB, GitRepo};
use crate::support::{Ran, items, json_of, kubectl, kubectl_gitops, path_with_helm, run};
use crate::watch::Watcher;

// The Flux Helm test's chart and templates, with values of its own here.
use crate::helm::{CHART, DEPLOYMENT, SERVICE, assert_origin, origins};

const CHART_VALUES: &str = "\
replicas: 1
image: nginx:1.27
port: 8080
greeting: hello
team: nobody
";

const CONFIGMAP: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  greeting: {{ .Values.greeting | quote }}
  team: {{ .Values.team | quote }}
";

/// A plain manifest, the third source of the multi-source Application.
const EXTRA: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: extra-settings
data:
  mode: strict
";

/// An Argo CD PreSync hook beside it: Argo CD runs it and deletes it once it succeeded, so the
/// cluster lacking it is no drift.
const HOOK: &str = "\
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  annotations:
    argocd.argoproj.io/hook: PreSync
    argocd.argoproj.io/hook-delete-policy: HookSucceeded
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: busybox:1.36
";

fn repository() -> GitRepo {
    let mut repo = GitRepo::new();
    repo.write("charts/web/Chart.yaml", CHART)
        .write("charts/web/values.yaml", CHART_VALUES)
        .write("charts/web/templates/deployment.yaml", DEPLOYMENT)
        .write("charts/web/templates/service.yaml", SERVICE)
        .write("charts/web/templates/configmap.yaml", CONFIGMAP)
        .write("env/prod-values.yaml", "greeting: hello-prod\n")
        .write(
            "env/shop-values.yaml",
            "greeting: hello-shop\nimage: nginx:1.28\n",
        )
        .write("extras/settings.yaml", EXTRA)
        .write("extras/migrate.yaml", HOOK);
    repo.commit(ALICE, "The web chart, its values and extras");
    repo
}

pub(crate) fn helm_binary() -> PathBuf {
    testenv::ensure_helm()
        .unwrap_or_else(|e| panic!("building helm: {e:#}"))
        .helm
}

pub(crate) fn server_version() -> String {
    let out = testenv::shared()
        .kubectl()
        .args(["version", "-o", "json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `helm template` as Argo CD's repo-server runs it (util/helm/cmd.go), in the work tree.
pub(crate) fn argo_template(repo: &GitRepo, ns: &str, release: &str, extra: &[&str]) -> String {
    let out = Command::new(helm_binary())
        .current_dir(repo.path())
        .args(["template", "charts/web", "--name-template", release])
        .args(["--namespace", ns, "--kube-version", &server_version()])
        .args(extra)
        .arg("--include-crds")
        .env("HELM_NO_PLUGINS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Applies `manifests` as Argo CD's controller does for Application `app` of `ns`.
pub(crate) fn argo_apply(ns: &str, app: &str, manifests: &str) {
    testenv::argo::apply(testenv::shared(), ns, app, manifests)
        .unwrap_or_else(|e| panic!("applying as Argo CD: {e:#}"));
}

/// The Application `app` in `ns`, Synced at `status`.
pub(crate) fn application(ns: &str, app: &str, source: Value, status: Value) {
    let mut spec = json!({
        "project": "default",
        "destination": {"server": "https://kubernetes.default.svc", "namespace": ns},
        "syncPolicy": {"automated": {"prune": true}},
    });
    if source.is_array() {
        spec["sources"] = source;
    } else {
        spec["source"] = source;
    }
    let object = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": app, "namespace": ns},
        "spec": spec,
        "status": status,
    });
    kubectl(
        ns,
        &["apply", "--server-side", "-f", "-"],
        Some(&object.to_string()),
    );
    // Argo CD's Application keeps its status in the main resource.
    let patch = json!({ "status": status }).to_string();
    kubectl(
        ns,
        &[
            "patch",
            &format!("application.argoproj.io/{app}"),
            "--type=merge",
            "-p",
            &patch,
        ],
        None,
    );
}

/// `kubectl gitops COMMAND --kubeconfig .. -n NS ARGS` in the work tree, with the built
/// `helm` on PATH when `with_helm`, else without any.
pub(crate) fn gitops(
    ns: &str,
    repo: &GitRepo,
    cache: &Path,
    with_helm: bool,
    args: &[&str],
) -> Ran {
    let kc = testenv::shared().kubeconfig.display().to_string();
    let mut full = vec![args[0], "--kubeconfig", kc.as_str(), "-n", ns];
    full.extend_from_slice(&args[1..]);
    let mut cmd: Command = kubectl_gitops(&full);
    let helm = helm_binary();
    path_with_helm(&mut cmd, with_helm.then_some(helm.as_path()));
    cmd.env("XDG_CACHE_HOME", cache).current_dir(repo.path());
    run(&mut cmd)
}

const OBJECTS: [&str; 7] = [
    "Deployment/web",
    "Service/web",
    "ConfigMap/web-config",
    "Deployment/shop",
    "Service/shop",
    "ConfigMap/shop-config",
    "ConfigMap/extra-settings",
];

fn diff(ns: &str, repo: &GitRepo, cache: &Path, mode: &str) -> (Ran, Value) {
    let ran = gitops(
        ns,
        repo,
        cache,
        true,
        &["diff", &format!("--server-side={mode}"), "-o", "json"],
    );
    let report = json_of(&ran);
    (ran, report)
}

fn all_in_sync(ns: &str, repo: &GitRepo, cache: &Path, what: &str) {
    for mode in ["false", "auto", "true"] {
        let (ran, report) = diff(ns, repo, cache, mode);
        assert_eq!(
            ran.code,
            Some(0),
            "{what}, {mode}: {}\n{report:#}",
            ran.stderr
        );
        let found = items(&report);
        for object in OBJECTS {
            assert_eq!(
                found[object]["status"], "in-sync",
                "{what}, {mode}: {object}: {:#}",
                found[object]
            );
            assert_eq!(found[object]["source"]["rule"], "Argo CD tracking");
        }
    }
}

fn trace_source(ns: &str, repo: &GitRepo, cache: &Path, object: &str) -> Value {
    let ran = gitops(ns, repo, cache, true, &["trace", object, "-o", "json"]);
    assert_eq!(ran.code, Some(0), "{object}: {}", ran.stderr);
    json_of(&ran)["items"][0]["source"].clone()
}

#[test]
fn argo_helm_and_multi_source_applications_end_to_end() {
    let cp = testenv::shared();
    cp.install_gitops_crds();
    let ns = cp.namespace("argo-helm");
    let mut repo = repository();
    let applied = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path();

    // Application web: one Helm source with a values file, inline values and a parameter.
    let inline = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(inline.path(), "team: payments\n").unwrap();
    let web = argo_template(
        &repo,
        &ns,
        "web",
        &[
            "--set",
            "replicas=2",
            "--values",
            "env/prod-values.yaml",
            "--values",
            inline.path().to_str().unwrap(),
        ],
    );
    argo_apply(&ns, "web", &web);
    application(
        &ns,
        "web",
        json!({
            "repoURL": repo.url(), "path": "charts/web", "targetRevision": "main",
            "helm": {
                "releaseName": "web",
                "valueFiles": ["../../env/prod-values.yaml"],
                "values": "team: payments\n",
                "parameters": [{"name": "replicas", "value": "2"}],
            },
        }),
        json!({"sync": {"status": "Synced", "revision": applied},
               "health": {"status": "Healthy"}}),
    );
    // Application shop: the chart with a values file from a `ref` source, and plain manifests
    // (its PreSync hook ran and was deleted, as Argo CD does: not applied here).
    let shop = argo_template(&repo, &ns, "shop", &["--values", "env/shop-values.yaml"]);
    argo_apply(&ns, "shop", &format!("{shop}\n---\n{EXTRA}"));
    application(
        &ns,
        "shop",
        json!([
            {"repoURL": repo.url(), "path": "charts/web", "targetRevision": "main",
             "helm": {"valueFiles": ["$values/env/shop-values.yaml"]}},
            {"repoURL": repo.url(), "targetRevision": "main", "ref": "values"},
            {"repoURL": repo.url(), "path": "extras", "targetRevision": "main"},
        ]),
        json!({"sync": {"status": "Synced", "revisions": [applied, applied, applied]},
               "health": {"status": "Healthy"}}),
    );
    assert_eq!(
        kubectl_field(&ns, "deploy/web", "{.spec.replicas}"),
        "2",
        "the parameter was applied"
    );
    all_in_sync(&ns, &repo, cache, "after the sync");

    // trace: the chart, release and values in Argo CD's order; the template as the file.
    let s = trace_source(&ns, &repo, cache, "deploy/web");
    assert_eq!(s["rule"], "argo-cd", "{s:#}");
    assert_eq!(s["file"], "charts/web/templates/deployment.yaml", "{s:#}");
    assert_eq!(s["renderRoot"], "charts/web");
    assert_eq!(s["appliedCommit"]["id"], applied.as_str());
    assert_eq!(s["reconciler"]["kind"], "Application");
    assert_eq!(
        s["chart"],
        json!({
            "application": format!("Application {ns}/web"),
            "release": "web",
            "namespace": ns,
            "chart": "web",
            "chartVersion": "0.1.0",
            "chartPath": "charts/web",
            "values": [
                {"kind": "valueFiles", "name": "../../env/prod-values.yaml"},
                {"kind": "values", "name": "helm.values"},
                {"kind": "parameter", "name": "replicas"},
            ],
        }),
        "{s:#}"
    );
    // Each object of the multi-source Application maps to the source that made it.
    let s = trace_source(&ns, &repo, cache, "deploy/shop");
    assert_eq!(s["chart"]["release"], "shop", "{s:#}");
    assert_eq!(
        s["chart"]["values"],
        json!([{"kind": "valueFiles", "name": "$values/env/shop-values.yaml"}])
    );
    let s = trace_source(&ns, &repo, cache, "cm/extra-settings");
    assert_eq!(s["file"], "extras/settings.yaml", "{s:#}");
    assert_eq!(s["renderRoot"], "extras");
    assert!(s["chart"].is_null(), "{s:#}");
    let text = gitops(&ns, &repo, cache, true, &["trace", "cm/web-config"]);
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    for expected in [
        format!("Release:     {ns}/web (helm template by Argo CD)"),
        "Chart:       web 0.1.0, path charts/web".to_owned(),
        "Values:      1. valueFiles ../../env/prod-values.yaml, 2. helm.values, 3. parameter \
         replicas (later wins)"
            .to_owned(),
        format!("Reconciler:  Application {ns}/web"),
    ] {
        assert!(
            text.stdout.contains(&expected),
            "{expected}\n{}",
            text.stdout
        );
    }

    // blame: a value set by a values file to its line, by helm.values or a parameter to the
    // Application, a chart default and the chart's own lines to the chart.
    let commit = &applied[..7];
    let blame = |object: &str| {
        origins(
            &gitops(&ns, &repo, cache, true, &["blame", object, "-o", "json"]),
            object,
        )
    };
    let deployment = blame("deploy/web");
    for (path, origin) in [
        (
            ".spec.replicas",
            json!({"kind": "values", "source": format!("parameter replicas of Application {ns}/web"), "valuesPath": "replicas"}),
        ),
        (
            ".spec.template.spec.containers[name=web].image",
            json!({"kind": "chart", "file": "charts/web/templates/deployment.yaml"}),
        ),
        (
            ".kind",
            json!({"kind": "chart", "file": "charts/web/templates/deployment.yaml"}),
        ),
    ] {
        assert_origin(&deployment, path, &origin, commit);
    }
    let config = blame("cm/web-config");
    for (path, origin) in [
        (
            ".data.greeting",
            json!({"kind": "git", "file": "env/prod-values.yaml", "line": 1}),
        ),
        (
            ".data.team",
            json!({"kind": "values", "source": format!("helm.values of Application {ns}/web"), "valuesPath": "team"}),
        ),
    ] {
        assert_origin(&config, path, &origin, commit);
    }
    // A value file of a `ref` source, by its line.
    let shop = blame("deploy/shop");
    assert_origin(
        &shop,
        ".spec.template.spec.containers[name=web].image",
        &json!({"kind": "git", "file": "env/shop-values.yaml", "line": 2}),
        commit,
    );
    let text = gitops(
        &ns,
        &repo,
        cache,
        true,
        &["blame", "deploy/web", "--time", "none"],
    );
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    assert!(
        text.stdout.contains("chart charts/web 0.1.0"),
        "{}",
        text.stdout
    );

    // Out of band: found in every mode and attributed; a deleted object of the third source
    // is missing.
    let edits: [(&str, &[&str], &str, &str); 3] = [
        (
            "Deployment/web",
            &["scale", "deploy/web", "--replicas=5"],
            ".spec.replicas",
            "kubectl",
        ),
        (
            "ConfigMap/web-config",
            &["patch", "cm/web-config", "-p", r#"{"data":{"team":"ops"}}"#],
            ".data.team",
            "kubectl-patch",
        ),
        (
            "Deployment/shop",
            &["set", "image", "deploy/shop", "web=nginx:1.29"],
            ".spec.template.spec.containers[name=web].image",
            "kubectl-set",
        ),
    ];
    for (_, args, _, _) in &edits {
        kubectl(&ns, args, None);
    }
    kubectl(&ns, &["delete", "configmap", "extra-settings"], None);
    for mode in ["false", "auto", "true"] {
        let (ran, report) = diff(&ns, &repo, cache, mode);
        assert_eq!(ran.code, Some(1), "{mode}: {}", ran.stderr);
        let found = items(&report);
        for (object, _, path, manager) in &edits {
            let fields = found[*object]["fields"].as_array().unwrap();
            assert_eq!(fields.len(), 1, "{mode}: {object}: {fields:#?}");
            assert_eq!(fields[0]["path"], *path, "{mode}: {object}");
            assert_eq!(
                fields[0]["why"]["kind"], "out-of-band",
                "{mode}: {:#}",
                fields[0]
            );
            assert_eq!(
                fields[0]["why"]["manager"], *manager,
                "{mode}: {:#}",
                fields[0]
            );
        }
        assert_eq!(
            found["ConfigMap/extra-settings"]["status"], "missing",
            "{mode}: {report:#}"
        );
        assert_eq!(found["Service/web"]["status"], "in-sync", "{mode}");
    }
    // revert: as Argo CD's manager, back to what Argo CD rendered.
    let ran = gitops(&ns, &repo, cache, true, &["revert", "--all", "--yes"]);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains("applied as argocd-controller"),
        "{}",
        ran.stdout
    );
    all_in_sync(&ns, &repo, cache, "after revert");

    // An Application with a chart from a Helm repository that cannot be reached beside a
    // plain source: the plain source's object is compared, the chart's is one line saying
    // which repository and why.
    let redis = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: redis-config\ndata:\n  maxmemory: 64mb\n";
    repo.write(
        "more/settings.yaml",
        &EXTRA.replace("extra-settings", "more-settings"),
    );
    let more = repo.commit(BOB, "More settings");
    argo_apply(
        &ns,
        "mixed",
        &format!(
            "{redis}---\n{}",
            EXTRA.replace("extra-settings", "more-settings")
        ),
    );
    application(
        &ns,
        "mixed",
        json!([
            {"repoURL": "http://127.0.0.1:9/stable", "chart": "redis",
             "targetRevision": "19.0.0"},
            {"repoURL": repo.url(), "path": "more", "targetRevision": "main"},
        ]),
        json!({"sync": {"status": "Synced", "revisions": ["19.0.0", more]},
               "health": {"status": "Healthy"}}),
    );
    let ran = gitops(&ns, &repo, cache, true, &["diff", "-o", "json"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    let lines = ran.error_lines();
    assert_eq!(lines.len(), 1, "{}", ran.stderr);
    let line = lines[0];
    assert!(
        line.starts_with(&format!("error: ConfigMap {ns}/redis-config: ")),
        "{line}"
    );
    assert!(
        line.contains(&format!("Application {ns}/mixed"))
            && line.contains("cannot read chart redis from http://127.0.0.1:9/stable"),
        "{line}"
    );
    let found = items(&json_of(&ran));
    assert_eq!(
        found["ConfigMap/more-settings"]["status"], "in-sync",
        "{:#}",
        found["ConfigMap/more-settings"]
    );
    assert_eq!(found["Deployment/web"]["status"], "in-sync");
    kubectl(
        &ns,
        &[
            "delete",
            "application.argoproj.io/mixed",
            "configmap/redis-config",
            "configmap/more-settings",
        ],
        None,
    );

    // A values change pushed to Git, not synced yet: pending, with its commit.
    repo.write("env/prod-values.yaml", "greeting: hello-again\n");
    let change = repo.commit(BOB, "Greet again in prod");
    let (ran, report) = diff(&ns, &repo, cache, "auto");
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let found = items(&report);
    let fields = found["ConfigMap/web-config"]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "{fields:#?}");
    assert_eq!(fields[0]["path"], ".data.greeting");
    assert_eq!(fields[0]["why"]["kind"], "pending", "{:#}", fields[0]);
    assert_eq!(fields[0]["why"]["commit"], change.as_str());
    for object in [
        "Deployment/web",
        "ConfigMap/shop-config",
        "ConfigMap/extra-settings",
    ] {
        assert_eq!(found[object]["status"], "in-sync", "{object}");
    }

    // No helm on PATH: one line per chart object, naming the Application and the fix; the
    // plain source's object is still compared.
    let ran = gitops(&ns, &repo, cache, false, &["diff", "-o", "json"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    let lines = ran.error_lines();
    assert_eq!(lines.len(), 6, "{}", ran.stderr);
    for line in &lines {
        assert!(line.contains(&format!("Application {ns}/")), "{line}");
        assert!(
            line.contains("helm is not on PATH") && line.contains("install Helm"),
            "{line}"
        );
    }
    assert_eq!(
        items(&json_of(&ran))["ConfigMap/extra-settings"]["status"],
        "in-sync"
    );

    // A chart that fails to render at the tip: one line per chart object, naming the fix.
    repo.write(
        "charts/web/templates/broken.yaml",
        "{{ required \"set .Values.mustHave\" .Values.mustHave }}\n",
    );
    repo.commit(BOB, "A template that needs a value nobody sets");
    let ran = gitops(&ns, &repo, cache, true, &["diff", "-o", "json"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    let lines = ran.error_lines();
    assert_eq!(lines.len(), 6, "{}", ran.stderr);
    for line in &lines {
        assert!(line.contains("helm template of chart charts/web"), "{line}");
        assert!(line.contains("set .Values.mustHave"), "{line}");
        assert!(
            line.contains("fix the chart or the values in Git"),
            "{line}"
        );
    }
    assert_eq!(
        items(&json_of(&ran))["ConfigMap/extra-settings"]["status"],
        "in-sync"
    );
}

fn kubectl_field(ns: &str, object: &str, path: &str) -> String {
    let out = testenv::shared()
        .kubectl()
        .args(["get", "-n", ns, object, "-o", &format!("jsonpath={path}")])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// The values of the values repositories test's Application, in a repository of their own.
const CONFIG_VALUES: &str = "\
greeting: hello-from-config
image: nginx:1.28
";

#[test]
fn argo_chart_in_git_with_values_from_other_repositories() {
    let cp = testenv::shared();
    cp.install_gitops_crds();
    let ns = cp.namespace("argo-values-repo");
    let repo = repository();
    let mut config = GitRepo::new();
    config.write("prod/web-values.yaml", CONFIG_VALUES);
    let config_synced = config.commit(BOB, "Prod values for web");
    // A third repository with values every environment shares, merged first.
    let mut shared = GitRepo::new();
    shared.write("common.yaml", "team: platform\ngreeting: from-shared\n");
    let shared_synced = shared.commit(ALICE, "Shared values");
    let shared_url = shared.url();
    let shared_values = shared.path().join("common.yaml");
    let chart_synced = repo.head();
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path();
    let (config_url, config_values) = (config.url(), config.path().join("prod/web-values.yaml"));

    // The chart of one repository with a values file of another (a `ref` source), rendered
    // and applied as Argo CD does; status names the commit synced of each source.
    let sync = |config_commit: &str| {
        let manifests = argo_template(
            &repo,
            &ns,
            "cfg",
            &[
                "--values",
                shared_values.to_str().unwrap(),
                "--values",
                config_values.to_str().unwrap(),
            ],
        );
        argo_apply(&ns, "cfg", &manifests);
        application(
            &ns,
            "cfg",
            json!([
                {"repoURL": repo.url(), "path": "charts/web", "targetRevision": "main",
                 "helm": {"valueFiles": ["$shared/common.yaml", "$config/prod/web-values.yaml"]}},
                {"repoURL": config_url, "targetRevision": "main", "ref": "config"},
                {"repoURL": shared_url, "targetRevision": "main", "ref": "shared"},
            ]),
            json!({"sync": {"status": "Synced",
                            "revisions": [chart_synced, config_commit, shared_synced]},
                   "health": {"status": "Healthy"}}),
        );
    };
    sync(&config_synced);
    let objects = ["Deployment/cfg", "Service/cfg", "ConfigMap/cfg-config"];
    let in_sync = |what: &str| {
        for mode in ["false", "auto", "true"] {
            let (ran, report) = diff(&ns, &repo, cache, mode);
            assert_eq!(ran.code, Some(0), "{what}, {mode}: {}", ran.stderr);
            let found = items(&report);
            for object in objects {
                assert_eq!(
                    found[object]["status"], "in-sync",
                    "{what}, {mode}: {object}: {:#}",
                    found[object]
                );
            }
        }
    };
    in_sync("after the sync");
    // Kept in the render cache: the next run reads the chart's render from it, not helm.
    let ran = gitops(&ns, &repo, cache, true, &["diff", "-v=1"]);
    assert!(
        ran.stderr
            .contains("helm: 0 templates, 1 from the render cache"),
        "{}",
        ran.stderr
    );
    // `--repo` naming the chart's checkout stands for the chart's repository only.
    let chart_checkout = repo.path().display().to_string();
    let ran = gitops(
        &ns,
        &repo,
        cache,
        true,
        &["diff", "--repo", &chart_checkout, "-o", "json"],
    );
    assert_eq!(ran.code, Some(0), "--repo: {}", ran.stderr);
    assert_eq!(
        kubectl_field(&ns, "cm/cfg-config", "{.data.greeting}"),
        "hello-from-config",
        "the other repository's values were applied"
    );
    assert_eq!(
        kubectl_field(&ns, "cm/cfg-config", "{.data.team}"),
        "platform"
    );

    // trace: the values file as written, and the repository it is read from, at its commit.
    let s = trace_source(&ns, &repo, cache, "cm/cfg-config");
    assert_eq!(s["appliedCommit"]["id"], chart_synced.as_str(), "{s:#}");
    assert_eq!(
        s["chart"]["values"],
        json!([{"kind": "valueFiles", "name": "$shared/common.yaml"},
               {"kind": "valueFiles", "name": "$config/prod/web-values.yaml"}]),
        "{s:#}"
    );
    // Each repository once, in the order the values files first name them.
    let repos = s["chart"]["valuesRepos"].as_array().unwrap();
    assert_eq!(repos.len(), 2, "{s:#}");
    assert_eq!(repos[0]["source"], 2, "{s:#}");
    assert_eq!(repos[0]["syncedCommit"], shared_synced.as_str(), "{s:#}");
    let v = &repos[1];
    assert_eq!(v["source"], 1, "{s:#}");
    assert_eq!(v["trackedRef"], "main", "{s:#}");
    assert_eq!(v["syncedCommit"], config_synced.as_str(), "{s:#}");
    assert!(
        v["repo"]
            .as_str()
            .unwrap()
            .contains(config.path().file_name().unwrap().to_str().unwrap()),
        "{s:#}"
    );
    let config_repo = v["repo"].as_str().unwrap().to_owned();
    let text = gitops(&ns, &repo, cache, true, &["trace", "cm/cfg-config"]);
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    let expected = format!(
        "Values repo: {config_repo} (spec.sources[1], main): $ref files read at {}",
        &config_synced[..7]
    );
    assert!(
        text.stdout.contains(&expected),
        "{expected}\n{}",
        text.stdout
    );

    // blame: a value of the other repository's file, by its line there, naming it.
    let blame = |object: &str| {
        origins(
            &gitops(&ns, &repo, cache, true, &["blame", object, "-o", "json"]),
            object,
        )
    };
    let found = blame("cm/cfg-config");
    assert_origin(
        &found,
        ".data.greeting",
        &json!({"kind": "git", "file": "prod/web-values.yaml", "line": 1,
                "repo": config_repo, "author": BOB.0}),
        &config_synced[..7],
    );
    let shared_repo = repos[0]["repo"].as_str().unwrap();
    assert_origin(
        &found,
        ".data.team",
        &json!({"kind": "git", "file": "common.yaml", "line": 1, "repo": shared_repo,
                "author": ALICE.0}),
        &shared_synced[..7],
    );
    let found = blame("deploy/cfg");
    assert_origin(
        &found,
        ".spec.template.spec.containers[name=web].image",
        &json!({"kind": "git", "file": "prod/web-values.yaml", "line": 2, "repo": config_repo}),
        &config_synced[..7],
    );
    let text = gitops(
        &ns,
        &repo,
        cache,
        true,
        &["blame", "cm/cfg-config", "--time", "none"],
    );
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    assert!(
        text.stdout
            .contains(&format!("prod/web-values.yaml:1 in {config_repo}")),
        "{}",
        text.stdout
    );

    // A change pushed to the values repository only, not synced: pending, with its commit;
    // `watch` polls that repository too and says so.
    let helm = helm_binary();
    let mut watch = Watcher::polling_each_second(&ns, (repo.path(), cache), &helm);
    config.write(
        "prod/web-values.yaml",
        "greeting: hello-again\nimage: nginx:1.28\n",
    );
    let change = config.commit(ALICE, "Greet again in prod");
    let event = watch.event_for("cfg-config");
    assert_eq!(
        (&event["oldStatus"], &event["newStatus"], &event["cause"]),
        (&json!("in-sync"), &json!("drifted"), &json!("git")),
        "{event:#}"
    );
    assert_eq!(event["commit"]["id"], change.as_str(), "{event:#}");
    let (code, said) = watch.stop();
    assert_eq!(code, Some(0), "{said:#?}");
    let (ran, report) = diff(&ns, &repo, cache, "auto");
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let found = items(&report);
    let fields = found["ConfigMap/cfg-config"]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "{fields:#?}");
    assert_eq!(fields[0]["path"], ".data.greeting");
    assert_eq!(fields[0]["why"]["kind"], "pending", "{:#}", fields[0]);
    assert_eq!(fields[0]["why"]["commit"], change.as_str());
    for object in ["Deployment/cfg", "Service/cfg"] {
        assert_eq!(found[object]["status"], "in-sync", "{object}");
    }

    // Argo CD syncs it: in sync again, the values read at the new commit.
    sync(&change);
    in_sync("after the second sync");
    let s = trace_source(&ns, &repo, cache, "cm/cfg-config");
    assert_eq!(
        s["chart"]["valuesRepos"][1]["syncedCommit"],
        change.as_str(),
        "{s:#}"
    );

    // A values file the other repository lacks: one line per chart object naming it and the
    // fix; skipped with ignoreMissingValueFiles, as Argo CD skips it.
    let with_files = |helm: Value| {
        application(
            &ns,
            "cfg",
            json!([
                {"repoURL": repo.url(), "path": "charts/web", "targetRevision": "main",
                 "helm": helm},
                {"repoURL": config_url, "targetRevision": "main", "ref": "config"},
                {"repoURL": shared_url, "targetRevision": "main", "ref": "shared"},
            ]),
            json!({"sync": {"status": "Synced",
                            "revisions": [chart_synced, change, shared_synced]},
                   "health": {"status": "Healthy"}}),
        );
    };
    let files = json!([
        "$shared/common.yaml",
        "$config/prod/web-values.yaml",
        "$config/prod/missing.yaml"
    ]);
    with_files(json!({"valueFiles": files}));
    let (ran, _) = diff(&ns, &repo, cache, "auto");
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    let lines = ran.error_lines();
    assert_eq!(lines.len(), 3, "{}", ran.stderr);
    for line in &lines {
        assert!(
            line.contains("there is no values file prod/missing.yaml in its values repository")
                && line.contains("ignoreMissingValueFiles"),
            "{line}"
        );
    }
    with_files(json!({"valueFiles": files, "ignoreMissingValueFiles": true}));
    in_sync("with the missing values file skipped");

    // A second Application of the same chart path, its own release: an object deleted from
    // each is missing from each (the chart's objects are listed per Application).
    let plain = argo_template(&repo, &ns, "plain", &[]);
    argo_apply(&ns, "plain", &plain);
    application(
        &ns,
        "plain",
        json!({"repoURL": repo.url(), "path": "charts/web", "targetRevision": "main"}),
        json!({"sync": {"status": "Synced", "revision": chart_synced},
               "health": {"status": "Healthy"}}),
    );
    kubectl(&ns, &["delete", "cm/cfg-config", "cm/plain-config"], None);
    let (ran, report) = diff(&ns, &repo, cache, "auto");
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let found = items(&report);
    for object in ["ConfigMap/cfg-config", "ConfigMap/plain-config"] {
        assert_eq!(found[object]["status"], "missing", "{object}: {report:#}");
    }
    assert_eq!(found["Deployment/plain"]["status"], "in-sync");
}
