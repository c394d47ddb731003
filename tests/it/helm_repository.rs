//! Flux HelmReleases whose chart comes from a HelmRepository, fetched by the real
//! source-controller and installed by the real helm-controller, from each kind of chart
//! repository behind credentials: a chart repository served over HTTP on loopback with basic
//! auth (`testenv::helm::ChartRepository`, charts packaged and indexed by the real `helm`), and
//! an OCI registry (`type: oci`: the real distribution registry with htpasswd, charts pushed by
//! the real `helm push`, its credentials a `.dockerconfigjson` Secret), named by a HelmRepository
//! or by an OCIRepository the HelmRelease's `chartRef` points to. As platform teams often keep
//! them, the source and its credentials live in a namespace of their own, applied by hand; the
//! HelmRelease in Git (values, version constraint) is applied by a Flux Kustomization. One test
//! body runs against each kind.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::fixture::{ALICE, BOB, GitRepo};
use crate::helm::{CHART, DEPLOYMENT};
use crate::support::{
    Ran, items, json_of, kubectl, kubectl_gitops, path_with_helm, reconciled_by_flux, run,
};
use crate::watch::Watcher;
use testenv::flux::WATCH_LABEL;
use testenv::helm::{ChartRepository, OciRegistry};

/// Labelled with the chart's version, as `helm create` charts are: helm-controller's version
/// (an OCIRepository's digest in it) must be the one rendered.
const SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}
  labels:
    helm.sh/chart: {{ printf \"%s-%s\" .Chart.Name .Chart.Version | replace \"+\" \"_\" }}
spec:
  selector:
    app: {{ .Release.Name }}
  ports:
    - name: http
      port: 80
      targetPort: {{ .Values.port }}
";

/// The chart's default greeting, which a published version changes.
const CONFIGMAP: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  greeting: {{ .Values.greeting | quote }}
  note: {{ .Values.note }}
";

/// The chart repository's password (in the HelmRepository's secretRef): never printed.
const PASSWORD: &str = "planted-chart-repo-password-5d2a";

/// A password the user's Helm config once held, refused by the repository.
const OLD_PASSWORD: &str = "an-old-password-91fe";

/// The files under `dir`, at any depth.
pub(crate) fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// The objects of the release, as `Kind/name`.
const RELEASED: [&str; 3] = ["Deployment/web", "Service/web", "ConfigMap/web-config"];

/// Writes chart `web` at `version` with the default `greeting` into a new directory and
/// publishes it into `charts`: the version as helm-controller installs it (from an
/// OCIRepository, with the first 12 hex digits of the manifest's digest as build metadata).
fn publish(charts: &Charts, version: &str, greeting: &str) -> String {
    publish_with(charts, version, greeting, &[])
}

/// [`publish`], with more files in the chart (`(path in the chart, text)`).
fn publish_with(charts: &Charts, version: &str, greeting: &str, more: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("web");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    let meta = CHART.replace("version: 0.1.0", &format!("version: {version}"));
    assert!(meta.contains(version), "{meta}");
    std::fs::write(chart.join("Chart.yaml"), meta).unwrap();
    std::fs::write(
        chart.join("values.yaml"),
        format!("replicas: 1\nimage: nginx:1.27\nport: 8080\ngreeting: {greeting}\n"),
    )
    .unwrap();
    for (file, text) in [
        ("deployment.yaml", DEPLOYMENT),
        ("service.yaml", SERVICE),
        ("configmap.yaml", CONFIGMAP),
    ] {
        std::fs::write(chart.join("templates").join(file), text).unwrap();
    }
    for (file, text) in more {
        std::fs::write(chart.join(file), text).unwrap();
    }
    let published = match charts {
        Charts::Index(repo) => repo.publish(&chart).map(|()| None),
        Charts::Oci {
            registry,
            chart_ref,
        } => registry
            .push(&chart, "charts")
            .map(|digest| chart_ref.then_some(digest)),
    };
    match published.unwrap_or_else(|e| panic!("publishing web {version}: {e:#}")) {
        Some(digest) => format!("{version}+{}", &digest["sha256:".len()..][..12]),
        None => version.to_owned(),
    }
}

/// The chart repository a test runs against, served on loopback behind the user `deploy` and
/// [`PASSWORD`].
enum Charts {
    /// `index.yaml` and archives over HTTP, basic auth.
    Index(ChartRepository),
    /// An OCI registry, htpasswd; the charts under `charts/`. `chart_ref`: named by an
    /// OCIRepository (the HelmRelease's `chartRef`, the constraint its `ref.semver`), else by
    /// a HelmRepository of `type: oci`.
    Oci {
        registry: OciRegistry,
        chart_ref: bool,
    },
}

impl Charts {
    /// `oci`: an OCI registry, named by an OCIRepository when `chart_ref`.
    fn start(oci: bool, chart_ref: bool) -> Charts {
        let flux = testenv::flux::shared();
        let helm = testenv::helm::shared();
        if oci {
            Charts::Oci {
                registry: OciRegistry::start(flux, helm, Some(("deploy", PASSWORD))).unwrap(),
                chart_ref,
            }
        } else {
            Charts::Index(
                ChartRepository::start_with_basic_auth(flux, helm, "deploy", PASSWORD).unwrap(),
            )
        }
    }

    /// The source's `spec.url`.
    fn url(&self) -> String {
        match self {
            Charts::Index(repo) => repo.url.clone(),
            Charts::Oci {
                registry,
                chart_ref: false,
            } => registry.url("charts"),
            Charts::Oci { registry, .. } => registry.url("charts/web"),
        }
    }

    /// The kind of the chart's source.
    fn source_kind(&self) -> &'static str {
        match self {
            Charts::Oci {
                chart_ref: true, ..
            } => "OCIRepository",
            _ => "HelmRepository",
        }
    }

    /// The source `charts`, with its credentials in the Secret `charts-auth`.
    fn repository_yaml(&self) -> String {
        let url = self.url();
        let (spec, secret) = match self {
            Charts::Index(_) => (
                String::new(),
                format!("stringData:\n  username: deploy\n  password: {PASSWORD}\n"),
            ),
            Charts::Oci {
                registry,
                chart_ref,
            } => (
                // The registry speaks plain HTTP.
                if *chart_ref {
                    "  insecure: true\n  ref:\n    semver: \"0.1.x\"\n  layerSelector:\n    \
                     mediaType: application/vnd.cncf.helm.chart.content.v1.tar+gzip\n    \
                     operation: copy\n"
                } else {
                    "  type: oci\n  insecure: true\n"
                }
                .to_owned(),
                format!(
                    "type: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: \
                     '{}'\n",
                    docker_config(&registry.host, PASSWORD)
                ),
            ),
        };
        let kind = self.source_kind();
        format!(
            "\
apiVersion: source.toolkit.fluxcd.io/v1
kind: {kind}
metadata:
  name: charts
  labels:
    {WATCH_LABEL}: real
spec:
{spec}  url: {url}
  interval: 1h
  secretRef:
    name: charts-auth
---
apiVersion: v1
kind: Secret
metadata:
  name: charts-auth
{secret}"
        )
    }

    /// How many times the plugin listed the chart's versions: read `index.yaml`, or the
    /// chart's tags.
    fn listed(&self) -> usize {
        match self {
            Charts::Index(repo) => repo.served("/index.yaml"),
            Charts::Oci { registry, .. } => registry.served_to_plugin("/v2/charts/web/tags/list"),
        }
    }

    /// How many times the plugin downloaded an archive (the index's server counts the
    /// controllers' downloads too).
    fn downloaded(&self) -> usize {
        match self {
            Charts::Index(repo) => repo.served("/web-0.1.0.tgz"),
            Charts::Oci { registry, .. } => registry.served_to_plugin("/v2/charts/web/blobs/"),
        }
    }

    /// The environment variable that names the user's own credentials file for this kind,
    /// and that file's text with `password` for the repository.
    fn user_config(&self, password: &str) -> (&'static str, String) {
        match self {
            Charts::Index(repo) => (
                "HELM_REPOSITORY_CONFIG",
                format!(
                    "apiVersion: \"\"\nrepositories:\n- name: team\n  url: {}/\n  username: \
                     deploy\n  password: {password}\n",
                    repo.url
                ),
            ),
            Charts::Oci { registry, .. } => (
                "HELM_REGISTRY_CONFIG",
                docker_config(&registry.host, password),
            ),
        }
    }

    /// What the plugin tells a user without credentials to run.
    fn login_hint(&self) -> String {
        match self {
            Charts::Index(_) => "helm repo add NAME".to_owned(),
            Charts::Oci { registry, .. } => format!("helm registry login {}", registry.host),
        }
    }

    /// How the user's own credentials file is named in messages.
    fn user_config_named(&self, file: &Path) -> String {
        match self {
            Charts::Index(_) => format!("your Helm config ({})", file.display()),
            Charts::Oci { .. } => format!("your registry config ({})", file.display()),
        }
    }

    fn stop(&self) {
        match self {
            Charts::Index(repo) => repo.stop(),
            Charts::Oci { registry, .. } => registry.stop(),
        }
    }
}

/// A Docker config (`.dockerconfigjson`, `helm registry login`'s file) with `deploy` and
/// `password` for `registry`.
fn docker_config(registry: &str, password: &str) -> String {
    let auth = kubectl_gitops::drift::base64(format!("deploy:{password}").as_bytes());
    format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#)
}

/// The HelmRelease installing `web` from the source `platform/charts` of `charts`, at
/// `constraint` (an OCIRepository holds its own), with `replicas` inline.
fn release_yaml(charts: &Charts, platform: &str, constraint: &str, replicas: u32) -> String {
    let chart = match charts.source_kind() {
        "OCIRepository" => format!(
            "  chartRef:
    kind: OCIRepository
    name: charts
    namespace: {platform}
"
        ),
        kind => format!(
            "  chart:
    metadata:
      labels:
        {WATCH_LABEL}: real
    spec:
      chart: web
      version: \"{constraint}\"
      interval: 1h
      sourceRef:
        kind: {kind}
        name: charts
        namespace: {platform}
"
        ),
    };
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
{chart}  values:
    replicas: {replicas}
"
    )
}

/// `kubectl gitops COMMAND --kubeconfig .. -n NS ARGS` in the work tree, with helm on PATH
/// and no Helm or Docker config of the user's; no output of it ever holds the repository's
/// password.
fn gitops(ns: &str, repo: &GitRepo, cache: &Path, args: &[&str]) -> Ran {
    gitops_with(ns, repo, cache, None, args)
}

/// [`gitops`] with the user's own credentials file: the environment variable that names it,
/// and its path.
fn gitops_with(
    ns: &str,
    repo: &GitRepo,
    cache: &Path,
    user_config: Option<(&str, &Path)>,
    args: &[&str],
) -> Ran {
    let kc = testenv::shared().kubeconfig.display().to_string();
    let mut full = vec![args[0], "--kubeconfig", kc.as_str(), "-n", ns];
    full.extend_from_slice(&args[1..]);
    let mut cmd: Command = kubectl_gitops(&full);
    let helm = &testenv::helm::shared().binaries.helm;
    path_with_helm(&mut cmd, Some(helm.as_path()));
    let none = cache.join("no-user-config");
    cmd.env("XDG_CACHE_HOME", cache)
        .env("HELM_REPOSITORY_CONFIG", &none)
        .env("HELM_REGISTRY_CONFIG", &none)
        .env("DOCKER_CONFIG", &none)
        .current_dir(repo.path());
    if let Some((var, file)) = user_config {
        cmd.env(var, file);
    }
    let ran = run(&mut cmd);
    let leaked = |text: &str| {
        [PASSWORD, OLD_PASSWORD]
            .iter()
            .flat_map(|p| {
                [
                    p.to_string(),
                    kubectl_gitops::drift::base64(p.as_bytes()),
                    kubectl_gitops::drift::base64(format!("deploy:{p}").as_bytes()),
                ]
            })
            .any(|secret| text.contains(&secret))
    };
    for text in [&ran.stdout, &ran.stderr] {
        assert!(
            !leaked(text),
            "{args:?}: the repository's password leaked:\n{text}"
        );
    }
    // Nor does the cache hold it.
    for entry in walk(&cache.join("kubectl-gitops")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !leaked(&String::from_utf8_lossy(&bytes)),
            "{args:?}: {} holds the password",
            entry.display()
        );
    }
    ran
}

/// `diff --server-side=MODE -o json`, and its report by `Kind/name`.
fn diff(
    ns: &str,
    repo: &GitRepo,
    cache: &Path,
    mode: &str,
) -> (Ran, std::collections::BTreeMap<String, Value>) {
    let ran = gitops(
        ns,
        repo,
        cache,
        &["diff", &format!("--server-side={mode}"), "-o", "json"],
    );
    let found = items(&json_of(&ran));
    (ran, found)
}

/// Every object in sync, in every mode.
fn all_in_sync(ns: &str, repo: &GitRepo, cache: &Path, what: &str) {
    for mode in ["false", "auto", "true"] {
        let (ran, found) = diff(ns, repo, cache, mode);
        assert_eq!(
            ran.code,
            Some(0),
            "{what}, {mode}: {}\n{found:#?}",
            ran.stderr
        );
        for object in RELEASED.iter().chain(&["HelmRelease/web"]) {
            assert_eq!(
                found[*object]["status"], "in-sync",
                "{what}, {mode}: {object}: {:#}",
                found[*object]
            );
        }
    }
}

/// Waits until the HelmRelease `web` has release revision `revision` of chart version
/// `version`.
fn wait_installed(ns: &str, revision: u64, version: &str) {
    let helm = testenv::helm::shared();
    let deadline = std::time::Instant::now() + testenv::flux::RECONCILE_TIMEOUT;
    loop {
        let hr = helm.wait_release(ns, "web", None).unwrap();
        let latest = &hr["status"]["history"][0];
        if latest["version"] == revision && latest["chartVersion"] == version {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "release revision {revision} of {version} did not come: {:#}",
            hr["status"]
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// `spec.chart.spec.valuesFiles` of a chart from a HelmRepository are files inside the chart:
/// source-controller merges them in place of its values.yaml and packages it again, its
/// version with the HelmChart's generation (`0.1.0+1`), which the chart renders in a label.
#[test]
fn values_files_inside_a_repository_chart() {
    let ns = testenv::shared().namespace("helm-repo-values");
    let platform = testenv::shared().namespace("helm-repo-values-platform");
    let flux = testenv::flux::shared();
    let charts = Charts::start(false, false);
    publish_with(
        &charts,
        "0.1.0",
        "hello",
        &[("values-prod.yaml", "greeting: hello-prod\nport: 9090\n")],
    );
    kubectl(
        &platform,
        &["apply", "-f", "-"],
        Some(&charts.repository_yaml()),
    );
    flux.fetch_source_now(&platform, "helmrepository", "charts")
        .unwrap();
    let mut repo = GitRepo::new();
    let release = release_yaml(&charts, &platform, "0.1.x", 2).replace(
        "      interval: 1h\n      sourceRef:",
        "      valuesFiles:\n        - values.yaml\n        - values-prod.yaml\n        - \
         values-missing.yaml\n      ignoreMissingValuesFiles: true\n      interval: 1h\n      \
         sourceRef:",
    );
    assert!(release.contains("values-prod.yaml"), "{release}");
    repo.write("deploy/release.yaml", &release);
    repo.commit(ALICE, "web with the chart's prod values");
    reconciled_by_flux(&ns, &repo, "./deploy");
    let hr = testenv::helm::shared()
        .wait_release(&ns, "web", None)
        .unwrap();
    let installed = hr["status"]["history"][0]["chartVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(installed, "0.1.0+1", "{:#}", hr["status"]);
    let greeting = testenv::shared()
        .kubectl_run(
            &[
                "get",
                "-n",
                &ns,
                "cm/web-config",
                "-o",
                "jsonpath={.data.greeting}",
            ],
            None,
        )
        .unwrap();
    assert_eq!(greeting, "hello-prod");
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path();
    // The Service's label holds the version, the ConfigMap and the port the prod values.
    all_in_sync(&ns, &repo, cache, "after install");

    let ran = gitops(&ns, &repo, cache, &["trace", "cm/web-config", "-o", "json"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let h = json_of(&ran)["items"][0]["source"]["helm"].clone();
    let values: Vec<&str> = h["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        values,
        [
            "values.yaml (in chart web)",
            "values-prod.yaml (in chart web)",
            "values-missing.yaml (in chart web)",
            "spec.values"
        ],
        "{h:#}"
    );
    assert_eq!(h["chartVersion"], "0.1.0+1", "{h:#}");

    // A value from a values file in the chart is the chart's.
    let ran = gitops(&ns, &repo, cache, &["blame", "cm/web-config", "-o", "json"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let greeting = ran
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["path"] == ".data.greeting")
        .unwrap_or_else(|| panic!("no greeting:\n{}", ran.stdout))["origin"]
        .clone();
    assert_eq!(greeting["kind"], "chart", "{greeting:#}");
    assert_eq!(
        greeting["chart"],
        format!("chart web 0.1.0+1 from HelmRepository {platform}/charts")
    );

    // Git's list changed and not reconciled yet: what Git wants is the chart packaged with
    // Git's list (one more generation of the HelmChart), pending with its commit.
    let without_prod = release.replace("        - values-prod.yaml\n", "");
    assert_ne!(without_prod, release);
    repo.write("deploy/release.yaml", &without_prod);
    let change = repo.commit(BOB, "web without the chart's prod values");
    let (ran, found) = diff(&ns, &repo, cache, "auto");
    assert_eq!(ran.code, Some(1), "{}\n{found:#?}", ran.stderr);
    let fields = found["ConfigMap/web-config"]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "{fields:#?}");
    assert_eq!(fields[0]["path"], ".data.greeting");
    assert_eq!(fields[0]["git"], "hello", "{:#}", fields[0]);
    assert_eq!(fields[0]["why"]["kind"], "pending", "{:#}", fields[0]);
    assert_eq!(fields[0]["why"]["commit"], change.as_str());

    // Without ignoreMissingValuesFiles, a values file the chart lacks is one error line per
    // object, naming it.
    let strict = release.replace("      ignoreMissingValuesFiles: true\n", "");
    assert_ne!(strict, release);
    repo.write("deploy/release.yaml", &strict);
    repo.commit(BOB, "web without ignoring missing values files");
    let ran = gitops(&ns, &repo, cache, &["diff", "-o", "json"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    for line in ran.error_lines() {
        assert!(
            line.contains("the chart has no values file values-missing.yaml"),
            "{line}"
        );
    }
    assert_eq!(ran.error_lines().len(), RELEASED.len(), "{}", ran.stderr);

    // A list that is only values.yaml is no list to source-controller: the chart is not
    // packaged again, so its version (in the Service's label) has no build metadata.
    let only_default = release.replace(
        "        - values-prod.yaml\n        - values-missing.yaml\n      \
         ignoreMissingValuesFiles: true\n",
        "",
    );
    assert_ne!(only_default, release);
    repo.write("deploy/release.yaml", &only_default);
    repo.commit(BOB, "web with the chart's own values");
    reconciled_by_flux(&ns, &repo, "./deploy");
    let installed = wait_chart_version(&ns, |v| v == "0.1.0");
    assert_eq!(installed, "0.1.0");
    all_in_sync(&ns, &repo, cache, "with only values.yaml listed");

    // Every values file missing, and ignored: source-controller merges nothing in place of
    // the chart's values.yaml, so the chart's default greeting is gone.
    let none_there = release
        .replace("        - values.yaml\n        - values-prod.yaml\n", "")
        .replace(
            "  values:\n    replicas: 2\n",
            "  values:\n    replicas: 2\n    image: nginx:1.27\n    port: 8080\n",
        );
    assert!(none_there.contains("port: 8080") && !none_there.contains("values-prod"));
    repo.write("deploy/release.yaml", &none_there);
    repo.commit(BOB, "web with a values file the chart does not have");
    reconciled_by_flux(&ns, &repo, "./deploy");
    let installed = wait_chart_version(&ns, |v| v.starts_with("0.1.0+") && v != "0.1.0+1");
    let greeting = testenv::shared()
        .kubectl_run(
            &[
                "get",
                "-n",
                &ns,
                "cm/web-config",
                "-o",
                "jsonpath={.data.greeting}",
            ],
            None,
        )
        .unwrap();
    assert_eq!(greeting, "", "installed {installed}");
    all_in_sync(&ns, &repo, cache, "with every values file missing");
    charts.stop();
}

/// Waits until the HelmRelease `web`'s latest release is of a chart version `wanted` takes,
/// and returns it.
fn wait_chart_version(ns: &str, wanted: impl Fn(&str) -> bool) -> String {
    let helm = testenv::helm::shared();
    let deadline = std::time::Instant::now() + testenv::flux::RECONCILE_TIMEOUT;
    loop {
        let hr = helm.wait_release(ns, "web", None).unwrap();
        let latest = hr["status"]["history"][0]["chartVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if wanted(&latest) {
            return latest;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no release of the chart version wanted came: {:#}",
            hr["status"]
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

#[test]
fn chart_from_a_helm_repository_installed_by_real_flux() {
    chart_from_a_repository(false, false);
}

#[test]
fn chart_from_an_oci_registry_installed_by_real_flux() {
    chart_from_a_repository(true, false);
}

#[test]
fn chart_from_an_oci_repository_installed_by_real_flux() {
    chart_from_a_repository(true, true);
}

/// The whole story against a chart repository (`oci`: an OCI registry, named by an
/// OCIRepository when `chart_ref`).
fn chart_from_a_repository(oci: bool, chart_ref: bool) {
    let name = match (oci, chart_ref) {
        (false, _) => "helm-repo",
        (true, false) => "helm-oci",
        (true, true) => "helm-ocirepo",
    };
    let ns = testenv::shared().namespace(name);
    let platform = testenv::shared().namespace(&format!("{name}-platform"));
    let flux = testenv::flux::shared();
    let charts = Charts::start(oci, chart_ref);
    let source = format!("{} {platform}/charts", charts.source_kind());
    let url = charts.url();
    let v010 = publish(&charts, "0.1.0", "hello");
    kubectl(
        &platform,
        &["apply", "-f", "-"],
        Some(&charts.repository_yaml()),
    );
    // source-controller leaves an OCI HelmRepository as written (nothing to fetch).
    if !oci {
        flux.fetch_source_now(&platform, "helmrepository", "charts")
            .unwrap();
    }
    if chart_ref {
        flux.fetch_source_now(&platform, "ocirepository", "charts")
            .unwrap();
    }
    let mut repo = GitRepo::new();
    repo.write(
        "deploy/release.yaml",
        &release_yaml(&charts, &platform, "0.1.x", 2),
    );
    let first = repo.commit(ALICE, "web from the team's chart repository");
    reconciled_by_flux(&ns, &repo, "./deploy");
    wait_installed(&ns, 1, &v010);
    let listed = charts.listed();
    let downloaded = charts.downloaded();
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path();
    all_in_sync(&ns, &repo, cache, "after install");
    // The archive is kept by its digest: the three runs above (each listing the versions)
    // download it once.
    assert!(charts.listed() >= listed + 3);
    assert_eq!(charts.downloaded(), downloaded + 1);
    // The render is kept too (its values come from Git alone): a later run runs no helm.
    let ran = gitops(&ns, &repo, cache, &["diff", "-v=1"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("helm: 0 templates, 1 from the render cache"),
        "{}",
        ran.stderr
    );
    let kept: Vec<String> = std::fs::read_dir(cache.join("kubectl-gitops/charts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        kept[0].starts_with("sha256-") && kept[0].ends_with(".tgz"),
        "{kept:?}"
    );

    // trace: the chart, where it comes from, the constraint and what it picks; the
    // HelmRelease's own file in Git.
    let ran = gitops(&ns, &repo, cache, &["trace", "cm/web-config", "-o", "json"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let s = json_of(&ran)["items"][0]["source"].clone();
    assert_eq!(s["rule"], "helm", "{s:#}");
    assert_eq!(s["file"], "web/templates/configmap.yaml", "{s:#}");
    assert_eq!(
        s["renderRoot"],
        format!("chart web {v010} from {source}"),
        "{s:#}"
    );
    assert_eq!(s["appliedCommit"]["id"], first.as_str(), "{s:#}");
    let h = &s["helm"];
    assert_eq!(h["chart"], "web");
    assert_eq!(h["chartVersion"], v010.as_str(), "{h:#}");
    assert_eq!(h["chartSource"], source.as_str());
    assert_eq!(h["chartUrl"], url.as_str(), "{h:#}");
    assert_eq!(h["versionConstraint"], "0.1.x", "{h:#}");
    assert_eq!(h["desiredChartVersion"], v010.as_str(), "{h:#}");
    assert_eq!(h["helmReleaseFile"], "deploy/release.yaml", "{h:#}");
    let text = gitops(&ns, &repo, cache, &["trace", "deploy/web"]);
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    for expected in [
        format!("web {v010} from {source} at {url}; version \"0.1.x\" picks {v010}"),
        "File:        web/templates/deployment.yaml\n".to_owned(),
        format!("HelmRelease: {ns}/web in deploy/release.yaml:"),
    ] {
        assert!(
            text.stdout.contains(&expected),
            "{expected}\n{}",
            text.stdout
        );
    }

    // blame: a value from the HelmRelease in Git is its line; the archive's own default is
    // the chart's.
    let ran = gitops(&ns, &repo, cache, &["blame", "deploy/web", "-o", "json"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let origin = |ran: &Ran, path: &str| -> Value {
        ran.stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|r| r["path"] == path)
            .unwrap_or_else(|| panic!("no line {path}:\n{}", ran.stdout))["origin"]
            .clone()
    };
    let replicas = origin(&ran, ".spec.replicas");
    let release = release_yaml(&charts, &platform, "0.1.x", 2);
    let line = release
        .lines()
        .position(|l| l == "    replicas: 2")
        .unwrap()
        + 1;
    assert_eq!(replicas["kind"], "git", "{replicas:#}");
    assert_eq!(replicas["file"], "deploy/release.yaml");
    assert_eq!(replicas["line"], line);
    assert_eq!(replicas["commit"], first.as_str());
    let ran = gitops(&ns, &repo, cache, &["blame", "cm/web-config", "-o", "json"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let greeting = origin(&ran, ".data.greeting");
    assert_eq!(greeting["kind"], "chart", "{greeting:#}");
    assert_eq!(greeting["chart"], format!("chart web {v010} from {source}"));
    assert_eq!(greeting["file"], "web/templates/configmap.yaml");

    // Out-of-band edits are found and attributed as for any chart.
    kubectl(&ns, &["scale", "deploy/web", "--replicas=5"], None);
    kubectl(
        &ns,
        &[
            "patch",
            "cm/web-config",
            "-p",
            r#"{"data":{"greeting":"hi"}}"#,
        ],
        None,
    );
    for mode in ["false", "auto", "true"] {
        let (ran, found) = diff(&ns, &repo, cache, mode);
        assert_eq!(ran.code, Some(1), "{mode}: {}", ran.stderr);
        for (object, path, manager) in [
            ("Deployment/web", ".spec.replicas", "kubectl"),
            ("ConfigMap/web-config", ".data.greeting", "kubectl-patch"),
        ] {
            let fields = found[object]["fields"].as_array().unwrap();
            assert_eq!(fields.len(), 1, "{mode}: {object}: {fields:#?}");
            assert_eq!(fields[0]["path"], path, "{mode}: {fields:#?}");
            assert_eq!(fields[0]["why"]["kind"], "out-of-band", "{mode}");
            assert_eq!(fields[0]["why"]["manager"], manager, "{mode}");
        }
        assert_eq!(found["Service/web"]["status"], "in-sync", "{mode}");
    }
    let ran = gitops(&ns, &repo, cache, &["revert", "--all", "--yes"]);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    all_in_sync(&ns, &repo, cache, "after revert");

    // A values change pushed to Git and not reconciled yet: pending, with its commit.
    repo.write(
        "deploy/release.yaml",
        &release_yaml(&charts, &platform, "0.1.x", 3),
    );
    let change = repo.commit(BOB, "Three replicas of web");
    let (ran, found) = diff(&ns, &repo, cache, "auto");
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let fields = found["Deployment/web"]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "{fields:#?}");
    assert_eq!(fields[0]["path"], ".spec.replicas");
    assert_eq!(fields[0]["why"]["kind"], "pending", "{:#}", fields[0]);
    assert_eq!(fields[0]["why"]["commit"], change.as_str());
    assert_eq!(found["ConfigMap/web-config"]["status"], "in-sync");
    flux.reconcile_now(&ns, "apps").unwrap();
    wait_installed(&ns, 2, &v010);
    all_in_sync(&ns, &repo, cache, "after the values change was reconciled");

    // A new chart version the constraint picks is published: pending too, with no commit
    // behind it, until source-controller and helm-controller take it. `watch` polls the
    // chart repository as it polls Git, and says so.
    let helm = &testenv::helm::shared().binaries.helm;
    let mut watch = Watcher::polling_each_second(&ns, (repo.path(), cache), helm);
    let v011 = publish(&charts, "0.1.1", "hello-from-0.1.1");
    publish(&charts, "0.2.0", "not-picked");
    watch.published_event("web-config", &v011);
    let (code, said) = watch.stop();
    assert_eq!(code, Some(0), "{said:#?}");
    for mode in ["false", "auto", "true"] {
        let (ran, found) = diff(&ns, &repo, cache, mode);
        assert_eq!(ran.code, Some(1), "{mode}: {}\n{found:#?}", ran.stderr);
        let fields = found["ConfigMap/web-config"]["fields"].as_array().unwrap();
        assert_eq!(fields.len(), 1, "{mode}: {fields:#?}");
        assert_eq!(fields[0]["path"], ".data.greeting");
        assert_eq!(fields[0]["git"], "hello-from-0.1.1", "{mode}");
        let why = &fields[0]["why"];
        assert_eq!(why["kind"], "published", "{mode}: {why:#}");
        assert_eq!(why["chart"], "web");
        assert_eq!(why["version"], v011.as_str());
        assert_eq!(why["installed"], v010.as_str());
        assert_eq!(why["source"], source.as_str());
        assert_eq!(found["Deployment/web"]["status"], "in-sync", "{mode}");
    }
    let text = gitops(&ns, &repo, cache, &["diff"]);
    assert_eq!(text.code, Some(1), "{}", text.stderr);
    let said = format!("pending: chart web {v011} published in {source} (the release has {v010})");
    assert!(text.stdout.contains(&said), "{said}\n{}", text.stdout);
    // revert leaves a published version to helm-controller, like a pending commit.
    let ran = gitops(
        &ns,
        &repo,
        cache,
        &["revert", "cm/web-config", "--yes", "-v"],
    );
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains("unchanged: already as the release manifest says"),
        "{}",
        ran.stdout
    );
    if !oci {
        flux.fetch_source_now(&platform, "helmrepository", "charts")
            .unwrap();
    }
    if chart_ref {
        flux.fetch_source_now(&platform, "ocirepository", "charts")
            .unwrap();
    } else {
        flux.fetch_source_now(&platform, "helmchart", &format!("{ns}-web"))
            .unwrap();
    }
    wait_installed(&ns, 3, &v011);
    all_in_sync(&ns, &repo, cache, "after 0.1.1 was installed");

    // A user who may read the release's namespace but not the Secret of the platform's
    // HelmRepository: the credentials the user's Helm config keeps for its URL, else one line
    // per chart object saying what to do.
    let reader = "chart-reader";
    for (at, rules) in [
        (
            &ns,
            r#"[{"apiGroups":["*"],"resources":["*"],"verbs":["get","list","watch"]}]"#,
        ),
        (
            &platform,
            r#"[{"apiGroups":["source.toolkit.fluxcd.io"],"resources":["*"],"verbs":["get","list","watch"]}]"#,
        ),
    ] {
        let rbac = format!(
            r#"{{"apiVersion":"v1","kind":"List","items":[
              {{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role",
                "metadata":{{"name":"{reader}"}},"rules":{rules}}},
              {{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding",
                "metadata":{{"name":"{reader}"}},
                "roleRef":{{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"{reader}"}},
                "subjects":[{{"apiGroup":"rbac.authorization.k8s.io","kind":"User","name":"{reader}"}}]}}]}}"#
        );
        kubectl(at, &["apply", "-f", "-"], Some(&rbac));
    }
    let as_reader = ["diff", "-o", "json", "--as", reader];
    let ran = gitops(&ns, &repo, cache, &as_reader);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    let errors = ran.error_lines();
    assert_eq!(errors.len(), RELEASED.len(), "{}", ran.stderr);
    for line in errors {
        assert!(
            line.contains(&format!(
                "you may not read Secret {platform}/charts-auth, the credentials of \
                 {source}"
            )),
            "{line}"
        );
        assert!(line.contains(&charts.login_hint()), "{line}");
    }
    assert_eq!(
        items(&json_of(&ran))["HelmRelease/web"]["status"],
        "in-sync"
    );
    let helm_config = cache.join("user-config");
    let (var, text) = charts.user_config(PASSWORD);
    std::fs::write(&helm_config, text).unwrap();
    let mine = Some((var, helm_config.as_path()));
    let ran = gitops_with(&ns, &repo, cache, mine, &as_reader);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    std::fs::write(&helm_config, charts.user_config(OLD_PASSWORD).1).unwrap();
    let ran = gitops_with(&ns, &repo, cache, mine, &as_reader);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert_eq!(ran.error_lines().len(), RELEASED.len(), "{}", ran.stderr);
    for line in ran.error_lines() {
        assert!(
            line.contains(&format!(
                "answered 401 Unauthorized: the credentials from {} are refused",
                charts.user_config_named(&helm_config)
            )),
            "{line}"
        );
    }

    // The repository cannot be reached: one line per chart object naming the HelmRepository,
    // its URL and what to check; the other objects are still reported.
    charts.stop();
    let ran = gitops(&ns, &repo, cache, &["diff", "-o", "json"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    let errors = ran.error_lines();
    assert_eq!(errors.len(), RELEASED.len(), "{}", ran.stderr);
    for line in errors {
        assert!(line.contains(&format!("HelmRelease {ns}/web")), "{line}");
        assert!(line.contains(&format!("{source} ({url})")), "{line}");
        assert!(
            line.contains("check that the repository is reachable"),
            "{line}"
        );
    }
    let found = items(&json_of(&ran));
    assert_eq!(found["HelmRelease/web"]["status"], "in-sync");
    assert_eq!(found["Deployment/web"]["status"], "error");
}
