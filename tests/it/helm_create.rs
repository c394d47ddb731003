//! The chart `helm create` writes, the shape most teams' own charts start from, installed by
//! real helm-controller from a Git repository, and synced as Argo CD syncs it: its
//! server-defaulted probes, empty `{}` maps, named ports, a test hook Pod, and an Ingress and
//! an autoscaler behind `enabled` switches give no false drift, and blame reads through the
//! switches.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::argo_helm::{application, argo_apply, argo_template};
use crate::fixture::{ALICE, GitRepo};
use crate::helm::{assert_origin, blame, gitops};
use crate::support::{items, json_of, kubectl, reconciled_by_flux};
use crate::watch::Watcher;
use testenv::flux::WATCH_LABEL;
use testenv::helm::{ChartRepository, FIELD_MANAGER};

/// The objects the release installs; the chart's test Pod is a hook helm-controller leaves
/// out.
const RELEASED: [&str; 9] = [
    "ConfigMap/web-cache",
    "ConfigMap/web-common",
    "ConfigMap/web-shared",
    "ConfigMap/web-metrics",
    "Deployment/web",
    "Service/web",
    "ServiceAccount/web",
    "Ingress/web",
    "HorizontalPodAutoscaler/web",
];

const FLUX: &str = "Flux HelmRelease labels";
const ARGO: &str = "Argo CD tracking";

fn release_yaml() -> String {
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
  # No controller manager runs: a Deployment never gets ready Pods to wait for.
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
      interval: 1h
      sourceRef:
        kind: GitRepository
        name: apps
  values:
    image:
      tag: \"1.27\"
    ingress:
      enabled: true
    autoscaling:
      enabled: true
      maxReplicas: 5
    metrics:
      enabled: true
    common:
      greeting: hello-from-web
    shared:
      tier: edge
"
    )
}

/// A chart beside it in the repository, a dependency of `web` (`file://../common`) that
/// `web`'s `charts/` does not hold: source-controller adds it when it packages the chart.
/// `web` uses it twice, the second time under the alias `shared`.
const COMMON_CHART: &str = "\
apiVersion: v2
name: common
version: 0.2.0
";

const COMMON_VALUES: &str = "\
greeting: hello
tier: shared
";

const COMMON_CONFIGMAP: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}
data:
  greeting: {{ .Values.greeting | quote }}
  tier: {{ .Values.tier | quote }}
";

/// A chart beside `web` that its `charts/` holds as a symlink (`charts/linked ->
/// ../../linked`), as monorepos share a chart. Argo CD's checkout keeps it; Flux's
/// GitRepository artifact holds no symlinks, so helm-controller installs none of it.
const LINKED_CHART: &str = "\
apiVersion: v2
name: linked
version: 0.1.0
";

const LINKED_CONFIGMAP: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-linked
data:
  word: {{ .Values.word | quote }}
";

/// A chart in a chart repository, a dependency of `web` that its `charts/` does not hold
/// either: source-controller downloads it when it packages the chart.
const CACHE_CHART: &str = "\
apiVersion: v2
name: cache
version: 0.3.1
";

const CACHE_CONFIGMAP: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-cache
  labels:
    helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
data:
  size: {{ .Values.size | quote }}
";

/// A chart repository on loopback serving `cache` 0.3.0 and 0.3.1 (what `0.3.x` picks), and
/// 0.4.0.
fn cache_repository(helm: &testenv::helm::HelmController) -> ChartRepository {
    let index = ChartRepository::start(testenv::flux::shared(), helm).unwrap();
    for version in ["0.3.0", "0.3.1", "0.4.0"] {
        publish_cache(&index, version);
    }
    index
}

/// Publishes `cache` at `version` in `index`.
fn publish_cache(index: &ChartRepository, version: &str) {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("cache");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        CACHE_CHART.replace("0.3.1", version),
    )
    .unwrap();
    std::fs::write(chart.join("values.yaml"), format!("size: {version}-1Gi\n")).unwrap();
    std::fs::write(chart.join("templates/configmap.yaml"), CACHE_CONFIGMAP).unwrap();
    index.publish(&chart).unwrap();
}

/// A template of ours beside `helm create`'s: behind a switch that it also renders.
const METRICS: &str = "\
{{- if .Values.metrics.enabled }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include \"web.fullname\" . }}-metrics
data:
  enabled: {{ .Values.metrics.enabled | quote }}
  port: \"9090\"
{{- end }}
";

/// A Git repository with the chart `helm create web` writes at `charts/web`, and its
/// HelmRelease at `deploy/`.
fn repository(helm: &Path, cache: &ChartRepository) -> GitRepo {
    let scratch = tempfile::tempdir().unwrap();
    let created = Command::new(helm)
        .args(["create", "web"])
        .current_dir(scratch.path())
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "helm create: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let mut repo = GitRepo::new();
    let chart = scratch.path().join("web");
    let mut dirs = vec![chart.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let inside = path.strip_prefix(&chart).unwrap().to_str().unwrap();
            repo.write(
                &format!("charts/web/{inside}"),
                &std::fs::read_to_string(&path).unwrap(),
            );
        }
    }
    let chart_yaml = std::fs::read_to_string(chart.join("Chart.yaml")).unwrap();
    repo.write(
        "charts/web/Chart.yaml",
        &format!(
            "{chart_yaml}dependencies:\n  - name: common\n    version: 0.2.0\n    \
             repository: file://../common\n  - name: common\n    alias: shared\n    \
             version: 0.2.0\n    repository: file://../common\n  - name: cache\n    version: 0.3.x\n    \
             repository: {}\n",
            cache.url
        ),
    )
    .write("charts/common/Chart.yaml", COMMON_CHART)
    .write("charts/common/values.yaml", COMMON_VALUES)
    .write("charts/common/templates/configmap.yaml", COMMON_CONFIGMAP)
    .write("charts/web/templates/metrics.yaml", METRICS)
    .write("charts/linked/Chart.yaml", LINKED_CHART)
    .write("charts/linked/values.yaml", "word: linked-default\n")
    .write("charts/linked/templates/configmap.yaml", LINKED_CONFIGMAP)
    .write("deploy/release.yaml", &release_yaml());
    std::fs::create_dir_all(repo.path().join("charts/web/charts")).unwrap();
    std::os::unix::fs::symlink("../../linked", repo.path().join("charts/web/charts/linked"))
        .unwrap();
    repo.commit(ALICE, "The chart helm create writes, and its release");
    repo
}

/// `diff --server-side=MODE -o json` finds every released object in sync (by `rule`), and
/// nothing missing.
fn all_in_sync(ns: &str, repo: &GitRepo, cache: &Path, (what, rule): (&str, &str)) {
    for mode in ["false", "auto", "true"] {
        let ran = gitops(
            ns,
            repo,
            cache,
            true,
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
            assert_eq!(
                found[object]["source"]["rule"], rule,
                "{what}, {mode}: {object}"
            );
        }
        assert!(
            !found.contains_key("Pod/web-test-connection"),
            "{what}, {mode}: the test hook is not released: {report:#}"
        );
    }
}

#[test]
fn the_chart_helm_create_writes_installs_with_no_false_drift() {
    let ns = testenv::shared().namespace("helm-create");
    let helm = testenv::helm::shared();
    let cache_index = cache_repository(helm);
    let repo = repository(&helm.binaries.helm, &cache_index);
    let applied = reconciled_by_flux(&ns, &repo, "./deploy");
    helm.wait_release(&ns, "web", None)
        .unwrap_or_else(|e| panic!("installing the release: {e:#}"));
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path();
    all_in_sync(&ns, &repo, cache, ("after install", FLUX));
    // Flux's GitRepository artifact holds no symlinks: nothing of the linked chart is
    // installed, and nothing of it is reported.
    let linked = testenv::shared()
        .kubectl()
        .args([
            "-n",
            &ns,
            "get",
            "configmap",
            "web-linked",
            "--ignore-not-found",
            "-o",
            "name",
        ])
        .output()
        .unwrap();
    assert!(linked.status.success(), "{linked:?}");
    assert_eq!(String::from_utf8_lossy(&linked.stdout), "", "{linked:?}");

    // blame: a value the HelmRelease sets is its line; a chart default is the chart's.
    let release = release_yaml();
    let max_line = release
        .lines()
        .position(|l| l.trim_start().starts_with("maxReplicas:"))
        .unwrap()
        + 1;
    let hpa = blame(&ns, &repo, cache, "hpa/web");
    assert_origin(
        &hpa,
        ".spec.maxReplicas",
        &json!({"kind": "git", "file": "deploy/release.yaml", "line": max_line}),
        &applied,
    );
    assert_eq!(
        hpa[".spec.minReplicas"]["kind"], "chart",
        "{:#}",
        hpa[".spec.minReplicas"]
    );

    // The dependency beside the chart: its objects' templates are its own files; a value
    // the HelmRelease gives it is that line, its own default the chart's.
    let common_source = |ran: &crate::support::Ran| {
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        json_of(ran)["items"][0]["source"].clone()
    };
    let s = common_source(&gitops(
        &ns,
        &repo,
        cache,
        true,
        &["trace", "cm/web-common", "-o", "json"],
    ));
    assert_eq!(s["file"], "charts/common/templates/configmap.yaml", "{s:#}");
    assert_eq!(s["lastChange"]["id"], applied.as_str(), "{s:#}");
    let greeting_line = release
        .lines()
        .position(|l| l.contains("greeting: hello-from-web"))
        .unwrap()
        + 1;
    let common = blame(&ns, &repo, cache, "cm/web-common");
    assert_origin(
        &common,
        ".data.greeting",
        &json!({"kind": "git", "file": "deploy/release.yaml", "line": greeting_line}),
        &applied,
    );
    assert_origin(
        &common,
        ".data.tier",
        &json!({"kind": "chart", "file": "charts/common/templates/configmap.yaml"}),
        &applied,
    );

    // The same dependency under an alias: its own files too, and the values under its alias.
    let s = common_source(&gitops(
        &ns,
        &repo,
        cache,
        true,
        &["trace", "cm/web-shared", "-o", "json"],
    ));
    assert_eq!(s["file"], "charts/common/templates/configmap.yaml", "{s:#}");
    let tier_line = release
        .lines()
        .position(|l| l.contains("tier: edge"))
        .unwrap()
        + 1;
    let shared = blame(&ns, &repo, cache, "cm/web-shared");
    assert_origin(
        &shared,
        ".data.tier",
        &json!({"kind": "git", "file": "deploy/release.yaml", "line": tier_line}),
        &applied,
    );
    assert_origin(
        &shared,
        ".data.greeting",
        &json!({"kind": "chart", "file": "charts/common/templates/configmap.yaml"}),
        &applied,
    );

    // The dependency from the chart repository: the version `0.3.x` picks, its default the
    // chart's.
    assert_eq!(
        crate::helm::field(&ns, "cm/web-cache", "{.data.size}"),
        "0.3.1-1Gi"
    );
    let cache_lines = blame(&ns, &repo, cache, "cm/web-cache");
    assert_eq!(
        cache_lines[".data.size"]["kind"], "chart",
        "{:#}",
        cache_lines[".data.size"]
    );
    // trace says its template is in the dependency's archive, not in Git.
    let s = common_source(&gitops(
        &ns,
        &repo,
        cache,
        true,
        &["trace", "cm/web-cache", "-o", "json"],
    ));
    assert_eq!(
        s["dependency"],
        json!({"chart": "cache", "template": "templates/configmap.yaml",
               "url": cache_index.url, "versionConstraint": "0.3.x",
               "desiredVersion": "0.3.1", "appliedLabel": "cache-0.3.1"}),
        "{s:#}"
    );
    assert_eq!(s["lines"], json!([0, 0]), "{s:#}");
    let text = gitops(&ns, &repo, cache, true, &["trace", "cm/web-cache"]);
    assert!(
        text.stdout
            .contains("File:        templates/configmap.yaml in the archive of dependency cache")
            && text.stdout.contains(&format!(
                "Dependency:  cache from {}; version \"0.3.x\" picks 0.3.1 there now",
                cache_index.url
            )),
        "{}",
        text.stdout
    );

    // A switch the object renders is the values line that sets it.
    let metrics_line = release.find("    metrics:\n").unwrap();
    let metrics_line = release[..metrics_line].lines().count() + 2;
    let metrics = blame(&ns, &repo, cache, "cm/web-metrics");
    assert_origin(
        &metrics,
        ".data.enabled",
        &json!({"kind": "git", "file": "deploy/release.yaml", "line": metrics_line}),
        &applied,
    );
    assert_eq!(
        metrics[".data.port"]["kind"], "chart",
        "{:#}",
        metrics[".data.port"]
    );

    // Out of band: found and attributed; revert puts it back as helm-controller.
    kubectl(
        &ns,
        &["patch", "hpa/web", "-p", r#"{"spec":{"maxReplicas":9}}"#],
        None,
    );
    let ran = gitops(&ns, &repo, cache, true, &["diff", "-o", "json"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let found = items(&json_of(&ran));
    let fields = found["HorizontalPodAutoscaler/web"]["fields"]
        .as_array()
        .unwrap();
    assert_eq!(fields.len(), 1, "{fields:#?}");
    assert_eq!(fields[0]["path"], ".spec.maxReplicas");
    assert_eq!(fields[0]["why"]["kind"], "out-of-band", "{:#}", fields[0]);
    assert_eq!(
        fields[0]["why"]["manager"], "kubectl-patch",
        "{:#}",
        fields[0]
    );
    let revert = gitops(&ns, &repo, cache, true, &["revert", "--all", "--yes"]);
    assert_eq!(revert.code, Some(0), "{}\n{}", revert.stdout, revert.stderr);
    assert!(
        revert
            .stdout
            .contains(&format!("applied as {FIELD_MANAGER}")),
        "{}",
        revert.stdout
    );
    all_in_sync(&ns, &repo, cache, ("after revert", FLUX));

    // A version `0.3.x` picks published: pending as published, with the version the object
    // was applied from (its `helm.sh/chart` label). watch polls the dependency's repository
    // and says so.
    let mut watch = Watcher::polling_each_second(&ns, (repo.path(), cache), &helm.binaries.helm);
    publish_cache(&cache_index, "0.3.2");
    watch.published_event("web-cache", "0.3.2");
    let (code, said) = watch.stop();
    assert_eq!(code, Some(0), "{said:#?}");
    let ran = gitops(&ns, &repo, cache, true, &["diff", "-o", "json"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let found = items(&json_of(&ran));
    let fields = found["ConfigMap/web-cache"]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 2, "{fields:#?}");
    for field in fields {
        assert_eq!(
            field["why"],
            json!({"kind": "published", "chart": "cache", "version": "0.3.2",
                   "source": cache_index.url, "installed": "0.3.1"}),
            "{field:#}"
        );
    }
    assert_eq!(found["ConfigMap/web-common"]["status"], "in-sync");
    // blame still renders it as applied: from 0.3.1, the version its label names.
    let cache_lines = blame(&ns, &repo, cache, "cm/web-cache");
    assert_eq!(
        cache_lines[".data.size"]["kind"], "chart",
        "{:#}",
        cache_lines[".data.size"]
    );

    // The dependency's chart repository unreachable: what `0.3.x` picks is unknown, so each
    // of the chart's objects is one line naming the dependency and its repository (the render
    // cache does not hide it); the HelmRelease itself is still compared.
    cache_index.stop();
    let down = gitops(&ns, &repo, cache, true, &["diff", "-o", "json"]);
    assert_eq!(down.code, Some(2), "{}", down.stderr);
    let lines = down.error_lines();
    assert_eq!(lines.len(), RELEASED.len(), "{}", down.stderr);
    for line in lines {
        assert!(
            line.contains(&format!(
                "its dependency cache 0.3.x from {}",
                cache_index.url
            )),
            "{line}"
        );
    }
    let found = items(&json_of(&down));
    assert_eq!(
        found["HelmRelease/web"]["status"], "in-sync",
        "{}",
        down.stdout
    );
}

/// The same chart synced by Argo CD with its switches set by parameters: a switch a
/// parameter sets is read through as one the values set.
#[test]
fn the_chart_helm_create_writes_synced_by_argo_cd_with_no_false_drift() {
    let cp = testenv::shared();
    cp.install_gitops_crds();
    let ns = cp.namespace("helm-create-argo");
    let helm = testenv::helm::shared();
    let cache_index = cache_repository(helm);
    let repo = repository(&helm.binaries.helm, &cache_index);
    let applied = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    let parameters = [
        ("autoscaling.enabled", "true"),
        ("autoscaling.maxReplicas", "5"),
        ("ingress.enabled", "true"),
        ("metrics.enabled", "true"),
    ];
    let set: Vec<String> = parameters
        .iter()
        .flat_map(|(name, value)| ["--set".to_owned(), format!("{name}={value}")])
        .collect();
    let set: Vec<&str> = set.iter().map(String::as_str).collect();
    // The repo-server builds the chart's dependencies before it renders.
    let helm_home = tempfile::tempdir().unwrap();
    let built = Command::new(&helm.binaries.helm)
        .args(["dependency", "build", "charts/web"])
        .current_dir(repo.path())
        .env("HELM_CACHE_HOME", helm_home.path().join("cache"))
        .env("HELM_CONFIG_HOME", helm_home.path().join("config"))
        .env("HELM_DATA_HOME", helm_home.path().join("data"))
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "helm dependency build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let manifests = argo_template(&repo, &ns, "web", &set);
    std::fs::remove_dir_all(repo.path().join("charts/web/charts")).unwrap();
    std::fs::remove_file(repo.path().join("charts/web/Chart.lock")).unwrap();
    argo_apply(&ns, "web", &manifests);
    let parameters: Vec<_> = parameters
        .iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    application(
        &ns,
        "web",
        json!({
            "repoURL": repo.url(), "path": "charts/web", "targetRevision": "main",
            "helm": {"releaseName": "web", "parameters": parameters},
        }),
        json!({"sync": {"status": "Synced", "revision": applied},
               "health": {"status": "Healthy"}}),
    );
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path();
    all_in_sync(&ns, &repo, cache, ("after the sync", ARGO));
    let linked_source = |ran: &crate::support::Ran| {
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        json_of(ran)["items"][0]["source"].clone()
    };
    // A vendored chart that is a symlink: its templates are where the link leads, and blame
    // reads their history there.
    let s = linked_source(&gitops(
        &ns,
        &repo,
        cache,
        true,
        &["trace", "cm/web-linked", "-o", "json"],
    ));
    assert_eq!(s["file"], "charts/linked/templates/configmap.yaml", "{s:#}");
    let linked = blame(&ns, &repo, cache, "cm/web-linked");
    assert_origin(
        &linked,
        ".data.word",
        &json!({"kind": "chart", "file": "charts/linked/templates/configmap.yaml"}),
        &applied,
    );

    let hpa = blame(&ns, &repo, cache, "hpa/web");
    assert_origin(
        &hpa,
        ".spec.maxReplicas",
        &json!({"kind": "values",
                "source": format!("parameter autoscaling.maxReplicas of Application {ns}/web"),
                "valuesPath": "autoscaling.maxReplicas"}),
        &applied,
    );
    assert_eq!(
        hpa[".spec.minReplicas"]["kind"], "chart",
        "{:#}",
        hpa[".spec.minReplicas"]
    );
    let metrics = blame(&ns, &repo, cache, "cm/web-metrics");
    assert_origin(
        &metrics,
        ".data.enabled",
        &json!({"kind": "values",
                "source": format!("parameter metrics.enabled of Application {ns}/web"),
                "valuesPath": "metrics.enabled"}),
        &applied,
    );
    let traced = gitops(
        &ns,
        &repo,
        cache,
        true,
        &["trace", "cm/web-cache", "-o", "json"],
    );
    assert_eq!(traced.code, Some(0), "{}", traced.stderr);
    let s = &json_of(&traced)["items"][0]["source"];
    assert_eq!(s["dependency"]["chart"], "cache", "{s:#}");
    assert_eq!(s["dependency"]["desiredVersion"], "0.3.1", "{s:#}");
    kubectl(&ns, &["delete", "application.argoproj.io/web"], None);
}
