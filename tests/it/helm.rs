//! Flux HelmReleases end to end: real helm-controller (tests/testenv) installs a chart written
//! here from a Git repository served over HTTP, with values inline, from a ConfigMap, from a
//! Secret and from a values file in Git; then every command of ours agrees with what it did.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::fixture::{ALICE, BOB, GitRepo};
use crate::support::{
    Ran, items, json_of, kubectl, kubectl_gitops, path_with_helm, reconciled_by_flux, run,
};
use testenv::flux::WATCH_LABEL;
use testenv::helm::FIELD_MANAGER;

/// A value from a Secret (valuesFrom), rendered into a chart Secret: never printed.
const PLANTED: &str = "planted-helm-Secret-value-7e1c";

pub(crate) const CHART: &str = "\
apiVersion: v2
name: web
version: 0.1.0
";

/// `logLevel` is left at this default by every values source.
const CHART_VALUES: &str = "\
replicas: 1
image: nginx:1.27
port: 8080
greeting: hello
logLevel: info
team: nobody
apiKey: none
";

pub(crate) const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  labels:
    app: {{ .Release.Name }}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels:
      app: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app: {{ .Release.Name }}
    spec:
      containers:
        - name: web
          image: {{ .Values.image }}
          ports:
            - containerPort: {{ .Values.port }}
";

pub(crate) const SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}
spec:
  selector:
    app: {{ .Release.Name }}
  ports:
    - name: http
      port: 80
      targetPort: {{ .Values.port }}
";

const CONFIGMAP: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
  labels:
    {{- /* As `helm create` writes it: the version source-controller packaged. */}}
    helm.sh/chart: {{ printf \"%s-%s\" .Chart.Name .Chart.Version | replace \"+\" \"_\" }}
data:
  greeting: {{ .Values.greeting | quote }}
  logLevel: {{ .Values.logLevel | quote }}
  team: {{ .Values.team | quote }}
  {{- /* A value from the valuesFrom Secret in a ConfigMap: hidden in every output. */}}
  endpoint: {{ printf \"https://api.example/?key=%s\" .Values.apiKey | quote }}
  {{- /* helm-controller installs revision 1 and upgrades the others. */}}
  action: {{ if .Release.IsUpgrade }}upgrade{{ else }}install{{ end }}
  {{- /* In helm-controller's capabilities (from discovery), not in Helm's built-in list. */}}
  {{- if .Capabilities.APIVersions.Has \"helm.toolkit.fluxcd.io/v2/HelmRelease\" }}
  fluxServed: \"yes\"
  {{- end }}
";

/// Deleted out of band, and created again by revert.
const SERVICE_ACCOUNT: &str = "\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ .Release.Name }}-runner
";

const SECRET: &str = "\
apiVersion: v1
kind: Secret
metadata:
  name: {{ .Release.Name }}-credentials
type: Opaque
data:
  apiKey: {{ .Values.apiKey | b64enc }}
";

/// The HelmRelease and its valuesFrom sources, applied by a Flux Kustomization at ./deploy.
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
      reconcileStrategy: Revision
      interval: 1h
      sourceRef:
        kind: GitRepository
        name: apps
      # Not in Git: skipped, as source-controller skips it.
      valuesFiles:
        - charts/web/values.yaml
        - env/prod-values.yaml
        - env/staging-values.yaml
      ignoreMissingValuesFiles: true
  valuesFrom:
    - kind: ConfigMap
      name: web-values
    - kind: Secret
      name: web-secret-values
  values:
    replicas: 2
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-values
data:
  values.yaml: |
    team: payments
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret-values
stringData:
  values.yaml: |
    apiKey: {PLANTED}
"
    )
}

fn repository() -> GitRepo {
    let mut repo = GitRepo::new();
    repo.write("charts/web/Chart.yaml", CHART)
        .write("charts/web/values.yaml", CHART_VALUES)
        .write("charts/web/templates/deployment.yaml", DEPLOYMENT)
        .write("charts/web/templates/service.yaml", SERVICE)
        .write("charts/web/templates/configmap.yaml", CONFIGMAP)
        .write("charts/web/templates/secret.yaml", SECRET)
        .write("charts/web/templates/serviceaccount.yaml", SERVICE_ACCOUNT)
        .write("env/prod-values.yaml", "greeting: hello-prod\n")
        .write("deploy/release.yaml", &release_yaml());
    repo.commit(ALICE, "The web chart and its release");
    repo
}

/// `kubectl gitops COMMAND --kubeconfig .. -n NS ARGS` in the work tree; no output of it ever
/// holds the Secret value, plain or encoded.
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
    // kubectl finds the plugin through PATH: keep its directory, change only helm's.
    let helm = &testenv::helm::shared().binaries.helm;
    path_with_helm(&mut cmd, with_helm.then_some(helm.as_path()));
    cmd.env("XDG_CACHE_HOME", cache).current_dir(repo.path());
    let ran = run(&mut cmd);
    let encoded = kubectl_gitops::drift::base64(PLANTED.as_bytes());
    for text in [&ran.stdout, &ran.stderr] {
        assert!(
            !text.contains(PLANTED) && !text.contains(&encoded),
            "{args:?}: a Secret value leaked:\n{text}"
        );
    }
    ran
}

/// The objects of the release, as `Kind/name`.
const RELEASED: [&str; 5] = [
    "Deployment/web",
    "Service/web",
    "ConfigMap/web-config",
    "Secret/web-credentials",
    "ServiceAccount/web-runner",
];

/// resourceVersion of every released object, and the release records there are.
fn snapshot(ns: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let versions = RELEASED
        .iter()
        .map(|o| (o.to_string(), field(ns, o, "{.metadata.resourceVersion}")))
        .collect();
    (versions, records(ns))
}

/// `kubectl get -n NS WHAT -o jsonpath=PATH`.
pub(crate) fn field(ns: &str, what: &str, path: &str) -> String {
    testenv::shared()
        .kubectl_run(
            &["get", "-n", ns, what, "-o", &format!("jsonpath={path}")],
            None,
        )
        .unwrap()
}

/// The release records of `web` in `ns`.
fn records(ns: &str) -> Vec<String> {
    testenv::shared()
        .kubectl_run(
            &[
                "get",
                "secrets",
                "-n",
                ns,
                "-l",
                "owner=helm,name=web",
                "-o",
                "name",
            ],
            None,
        )
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `diff --server-side=MODE -o json`, and its report.
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

/// Every object in sync, in every mode.
fn all_in_sync(ns: &str, repo: &GitRepo, cache: &Path, what: &str) {
    for mode in ["false", "auto", "true"] {
        let (ran, report) = diff(ns, repo, cache, mode);
        let found = items(&report);
        assert_eq!(
            ran.code,
            Some(0),
            "{what}, {mode}: {}\n{report:#}",
            ran.stderr
        );
        for object in RELEASED {
            assert_eq!(
                found[object]["status"], "in-sync",
                "{what}, {mode}: {object}: {:#}",
                found[object]
            );
            assert_eq!(found[object]["source"]["rule"], "Flux HelmRelease labels");
        }
        assert_eq!(found["HelmRelease/web"]["status"], "in-sync", "{mode}");
    }
}

#[test]
fn real_helm_controller_installs_and_every_command_agrees() {
    let ns = testenv::shared().namespace("helm-accept");
    let mut repo = repository();
    let helm = testenv::helm::shared();
    let applied = reconciled_by_flux(&ns, &repo, "./deploy");
    helm.wait_release(&ns, "web", None)
        .unwrap_or_else(|e| panic!("installing the release: {e:#}"));
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path();
    // The chart saw the cluster's API versions, as helm-controller gives them.
    let served = field(&ns, "cm/web-config", "{.data.fluxServed}");
    assert_eq!(served, "yes");
    // A clean install: no drift in any mode.
    all_in_sync(&ns, &repo, cache, "after install");
    // Values from a Secret: the render is never kept on disk, so helm runs each time. (The
    // render cache holds the kustomize render of ./deploy, whose Secret is in Git as it is.)
    let ran = gitops(&ns, &repo, cache, true, &["diff", "-v=1"]);
    assert!(
        ran.stderr
            .contains("helm: 1 templates, 0 from the render cache"),
        "{}",
        ran.stderr
    );
    for entry in std::fs::read_dir(cache.join("kubectl-gitops/renders")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("charts/web/templates/"),
            "{} is a chart render",
            path.display()
        );
    }

    // trace: the release, its chart and values sources in order, the HelmRelease's own file.
    let ran = gitops(
        &ns,
        &repo,
        cache,
        true,
        &["trace", "deploy/web", "-o", "json"],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let s = json_of(&ran)["items"][0]["source"].clone();
    assert_eq!(s["rule"], "helm", "{s:#}");
    assert_eq!(s["file"], "charts/web/templates/deployment.yaml", "{s:#}");
    assert_eq!(s["renderRoot"], "charts/web");
    assert_eq!(s["appliedCommit"]["id"], applied.as_str(), "{s:#}");
    assert_eq!(s["trackedCommit"], applied.as_str());
    assert_eq!(s["reconciler"]["kind"], "HelmRelease");
    let h = &s["helm"];
    assert_eq!(h["helmRelease"], format!("{ns}/web"));
    assert_eq!(h["release"], "web");
    assert_eq!(h["revision"], 1);
    assert_eq!(h["status"], "deployed");
    assert_eq!(h["chart"], "web");
    assert!(
        h["chartVersion"].as_str().unwrap().starts_with("0.1.0"),
        "{h:#}"
    );
    assert_eq!(h["chartSource"], format!("GitRepository {ns}/apps"));
    assert_eq!(
        h["values"],
        json!([
            {"kind": "valuesFile", "name": "charts/web/values.yaml"},
            {"kind": "valuesFile", "name": "env/prod-values.yaml"},
            {"kind": "valuesFile", "name": "env/staging-values.yaml"},
            {"kind": "ConfigMap", "name": "web-values", "key": "values.yaml"},
            {"kind": "Secret", "name": "web-secret-values", "key": "values.yaml"},
            {"kind": "values", "name": "spec.values"},
        ]),
        "{h:#}"
    );
    assert_eq!(h["helmReleaseFile"], "deploy/release.yaml", "{h:#}");
    assert_eq!(h["helmReleaseLines"][0], 1, "{h:#}");
    assert_eq!(h["valuesFromGit"], true);
    let text = gitops(&ns, &repo, cache, true, &["trace", "cm/web-config"]);
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    for expected in [
        format!("Release:     {ns}/web revision 1 (deployed)"),
        format!("from GitRepository {ns}/apps, path charts/web"),
        "4. ConfigMap web-values key values.yaml".to_owned(),
        format!("HelmRelease: {ns}/web in deploy/release.yaml:1-"),
        "Found by:    Flux HelmRelease labels".to_owned(),
    ] {
        assert!(
            text.stdout.contains(&expected),
            "{expected}\n{}",
            text.stdout
        );
    }

    // blame: each line to the values line that sets it (the chart rendered once per value),
    // a valuesFrom object's value to that object, the chart's own lines to the chart.
    let commit = &applied[..7];
    let release_line = line_of(&release_yaml(), "    replicas: 2");
    let values_line = |needle: &str| line_of(CHART_VALUES, needle);
    let deployment = blame(&ns, &repo, cache, "deploy/web");
    let expected_deployment = [
        (
            ".spec.replicas",
            json!({"kind": "git", "file": "deploy/release.yaml", "line": release_line}),
        ),
        (
            ".spec.template.spec.containers[name=web].image",
            json!({"kind": "git", "file": "charts/web/values.yaml", "line": values_line("image:")}),
        ),
        (
            ".spec.template.spec.containers[name=web].ports[containerPort=8080,protocol=TCP].containerPort",
            json!({"kind": "git", "file": "charts/web/values.yaml", "line": values_line("port:")}),
        ),
        (
            ".kind",
            json!({"kind": "chart", "file": "charts/web/templates/deployment.yaml"}),
        ),
        (
            ".spec.selector.matchLabels.app",
            json!({"kind": "chart", "file": "charts/web/templates/deployment.yaml"}),
        ),
    ];
    for (path, origin) in &expected_deployment {
        assert_origin(&deployment, path, origin, commit);
    }
    // Set by the API server or by helm-controller, not by the chart: their managers.
    assert_eq!(
        deployment[".spec.revisionHistoryLimit"]["kind"], "drift",
        "{:#}",
        deployment[".spec.revisionHistoryLimit"]
    );
    assert_eq!(
        deployment[".metadata.labels[\"app.kubernetes.io/managed-by\"]"]["manager"],
        FIELD_MANAGER
    );
    let config = blame(&ns, &repo, cache, "cm/web-config");
    for (path, origin) in [
        (
            ".data.greeting",
            json!({"kind": "git", "file": "env/prod-values.yaml", "line": 1}),
        ),
        // Left at its default in the chart's values.yaml, which is a valuesFile here.
        (
            ".data.logLevel",
            json!({"kind": "git", "file": "charts/web/values.yaml", "line": values_line("logLevel:")}),
        ),
        (
            ".data.team",
            json!({"kind": "values", "source": "ConfigMap web-values key values.yaml", "valuesPath": "team"}),
        ),
        (
            ".data.fluxServed",
            json!({"kind": "chart", "file": "charts/web/templates/configmap.yaml"}),
        ),
        // The version source-controller packaged (`0.1.0+<commit>.<generation>`).
        (
            ".metadata.labels[\"helm.sh/chart\"]",
            json!({"kind": "chart", "file": "charts/web/templates/configmap.yaml"}),
        ),
    ] {
        assert_origin(&config, path, &origin, commit);
    }
    let secret = blame(&ns, &repo, cache, "secret/web-credentials");
    assert_origin(
        &secret,
        ".data.apiKey",
        &json!({"kind": "values", "source": "Secret web-secret-values key values.yaml", "valuesPath": "apiKey"}),
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
    for expected in [
        format!("{commit} Alice Example deploy/release.yaml:{release_line}"),
        "chart charts/web 0.1.0+".to_owned(),
        " charts/web/templates/deployment.yaml | kind: Deployment".to_owned(),
    ] {
        assert!(
            text.stdout.contains(&expected),
            "{expected}\n{}",
            text.stdout
        );
    }
    let text = gitops(
        &ns,
        &repo,
        cache,
        true,
        &["blame", "cm/web-config", "--time", "none"],
    );
    assert!(
        text.stdout.lines().any(|l| l
            .starts_with("values: ConfigMap web-values key values.yaml (team) ")
            && l.ends_with("|   team: payments")),
        "{}",
        text.stdout
    );

    // Out-of-band edits, each by its own manager, each found and attributed to it.
    let edits: [(&str, &[&str], &str, &str); 6] = [
        (
            "Deployment/web",
            &["scale", "deploy/web", "--replicas=5"],
            ".spec.replicas",
            "kubectl",
        ),
        (
            "Deployment/web",
            &["set", "image", "deploy/web", "web=nginx:1.28"],
            ".spec.template.spec.containers[name=web].image",
            "kubectl-set",
        ),
        (
            "ConfigMap/web-config",
            &["label", "cm/web-config", "owner=ops"],
            ".metadata.labels.owner",
            "kubectl-label",
        ),
        (
            "ConfigMap/web-config",
            &[
                "patch",
                "cm/web-config",
                "-p",
                r#"{"data":{"team":"ops","endpoint":"https://api.example/?key=edited"}}"#,
            ],
            ".data.team",
            "kubectl-patch",
        ),
        (
            "Service/web",
            &["annotate", "svc/web", "example.com/note=by-hand"],
            ".metadata.annotations[\"example.com/note\"]",
            "kubectl-annotate",
        ),
        (
            "Secret/web-credentials",
            &[
                "patch",
                "secret/web-credentials",
                "--field-manager=ops-script",
                "-p",
                r#"{"data":{"apiKey":"Y2hhbmdlZA=="}}"#,
            ],
            ".data.apiKey",
            "ops-script",
        ),
    ];
    for (_, args, _, _) in &edits {
        kubectl(&ns, args, None);
    }
    kubectl(&ns, &["delete", "serviceaccount", "web-runner"], None);
    // The Secret's new value shows in no format.
    for format in ["diff", "table", "json", "yaml", "markdown"] {
        let ran = gitops(&ns, &repo, cache, true, &["diff", "-o", format, "-v=2"]);
        assert_eq!(ran.code, Some(1), "{format}: {}", ran.stderr);
        for text in [&ran.stdout, &ran.stderr] {
            assert!(
                !text.contains("Y2hhbmdlZA") && !text.contains("changed\n"),
                "{format}: the Secret's live value leaked:\n{text}"
            );
        }
    }
    for mode in ["false", "auto", "true"] {
        let (ran, report) = diff(&ns, &repo, cache, mode);
        assert_eq!(ran.code, Some(1), "{mode}: {}", ran.stderr);
        let found = items(&report);
        for (object, _, path, manager) in &edits {
            let fields = found[*object]["fields"].as_array().unwrap();
            let field = fields
                .iter()
                .find(|f| f["path"] == *path)
                .unwrap_or_else(|| panic!("{mode}: {object} {path}: {:#}", found[*object]));
            assert_eq!(field["why"]["kind"], "out-of-band", "{mode}: {field:#}");
            assert_eq!(field["why"]["manager"], *manager, "{mode}: {field:#}");
        }
        // The field that renders the valuesFrom Secret's value: drifted, both sides hidden.
        let endpoint = found["ConfigMap/web-config"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == ".data.endpoint")
            .unwrap_or_else(|| panic!("{mode}: {:#}", found["ConfigMap/web-config"]));
        assert_eq!(
            (&endpoint["git"], &endpoint["live"]),
            (&json!("(hidden git value)"), &json!("(hidden live value)")),
            "{mode}: {endpoint:#}"
        );
        assert_eq!(
            found["ServiceAccount/web-runner"]["status"], "missing",
            "{mode}: {:#}",
            found["ServiceAccount/web-runner"]
        );
    }

    // blame: an edited line is its manager's, the others still their values'.
    let deployment = blame(&ns, &repo, cache, "deploy/web");
    assert_eq!(
        deployment[".spec.replicas"]["kind"], "drift",
        "{deployment:#?}"
    );
    assert_eq!(deployment[".spec.replicas"]["manager"], "kubectl");
    assert_eq!(
        deployment[".spec.template.spec.containers[name=web].image"]["manager"],
        "kubectl-set"
    );
    assert_origin(
        &deployment,
        expected_deployment[2].0,
        &expected_deployment[2].1,
        commit,
    );

    // revert: back to the release manifest, as helm-controller, no new release revision.
    let before = records(&ns);
    let ran = gitops(&ns, &repo, cache, true, &["revert", "--all", "--yes"]);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains("no new release revision")
            || ran.stderr.contains("no new release revision"),
        "{}\n{}",
        ran.stdout,
        ran.stderr
    );
    assert!(
        ran.stdout.contains(&format!("applied as {FIELD_MANAGER}")),
        "{}",
        ran.stdout
    );
    let after = snapshot(&ns);
    assert_eq!(before, after.1, "revert made a release record");
    assert!(
        ran.stdout.contains(&format!(
            "ServiceAccount {ns}/web-runner reverted: created again as {FIELD_MANAGER}"
        )),
        "{}",
        ran.stdout
    );
    all_in_sync(&ns, &repo, cache, "after revert");
    // The next reconcile changes nothing.
    helm.reconcile_now(&ns, "web").unwrap();
    assert_eq!(
        snapshot(&ns),
        after,
        "helm-controller changed something after revert"
    );
    all_in_sync(&ns, &repo, cache, "after the next reconcile");

    // A deleted object the server refuses to create again, with a message that quotes the
    // value the chart renders from the valuesFrom Secret (a ValidatingAdmissionPolicy of
    // this namespace): revert says it failed, the value hidden in every format.
    kubectl(&ns, &["delete", "cm/web-config"], None);
    let refusal = refuse_web_config(&ns);
    for format in ["text", "json", "yaml"] {
        let ran = gitops(
            &ns,
            &repo,
            cache,
            true,
            &["revert", "cm/web-config", "--yes", "-o", format],
        );
        assert_eq!(
            ran.code,
            Some(2),
            "{format}: {}\n{}",
            ran.stdout,
            ran.stderr
        );
        let said = format!("{}{}", ran.stdout, ran.stderr);
        assert!(said.contains("refused here"), "{format}: {said}");
        assert!(
            !said.contains(PLANTED),
            "{format}: the Secret's value leaked:\n{said}"
        );
    }
    refusal.lift();
    let ran = gitops(
        &ns,
        &repo,
        cache,
        true,
        &["revert", "cm/web-config", "--yes"],
    );
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    all_in_sync(
        &ns,
        &repo,
        cache,
        "after the refused object was created again",
    );

    // A values change pushed to Git and not reconciled yet: pending, with its commit.
    repo.write("env/prod-values.yaml", "greeting: hello-again\n");
    let change = repo.commit(BOB, "Greet again in prod");
    let (ran, report) = diff(&ns, &repo, cache, "auto");
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let found = items(&report);
    // With `reconcileStrategy: Revision` the chart's version carries the commit, so the label
    // that renders it changes at the next upgrade too.
    let fields = found["ConfigMap/web-config"]["fields"].as_array().unwrap();
    let paths: Vec<&str> = fields.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [".data.greeting", ".metadata.labels[\"helm.sh/chart\"]"],
        "{fields:#?}"
    );
    let short = &change.as_str()[..12];
    assert_eq!(
        fields[1]["git"],
        format!("web-0.1.0_{short}.1"),
        "{fields:#?}"
    );
    for field in fields {
        assert_eq!(field["why"]["kind"], "pending", "{field:#}");
        assert_eq!(field["why"]["commit"], change.as_str());
    }
    assert_eq!(found["Deployment/web"]["status"], "in-sync");
    // revert leaves a pending change to helm-controller: it writes the release manifest only.
    let ran = gitops(
        &ns,
        &repo,
        cache,
        true,
        &["revert", "cm/web-config", "--yes", "-v"],
    );
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains("unchanged: already as the release manifest says"),
        "{}",
        ran.stdout
    );
    let greeting = field(&ns, "cm/web-config", "{.data.greeting}");
    assert_eq!(greeting, "hello-prod");
    // Reconciled: the release moves to revision 2 and nothing is left.
    testenv::flux::shared().reconcile_now(&ns, "apps").unwrap();
    wait_revision(helm, &ns, 2);
    all_in_sync(&ns, &repo, cache, "after the values change was reconciled");

    // No helm on PATH: each Helm object is one error line naming it and the fix; the others
    // are still reported.
    let ran = gitops(&ns, &repo, cache, false, &["diff", "-o", "json"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(lines.len(), RELEASED.len(), "{}", ran.stderr);
    for line in &lines {
        assert!(line.starts_with("error: "), "{line}");
        assert!(line.contains(&format!("HelmRelease {ns}/web")), "{line}");
        assert!(
            line.contains("helm is not on PATH") && line.contains("install Helm"),
            "{line}"
        );
    }
    let found = items(&json_of(&ran));
    assert_eq!(found["HelmRelease/web"]["status"], "in-sync");
    assert_eq!(found["Deployment/web"]["status"], "error");

    // A user who may not read Secrets cannot read the release records: one line per object.
    let ran = gitops(
        &ns,
        &repo,
        cache,
        true,
        &["diff", "-o", "json", "--context", testenv::VIEWER_CONTEXT],
    );
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    let errors = ran.error_lines();
    // The viewer cannot list Secrets at all: the chart's Secret is not compared (a warning).
    assert_eq!(errors.len(), RELEASED.len() - 1, "{}", ran.stderr);
    for line in errors {
        assert!(
            line.contains(&format!(
                "HelmRelease {ns}/web: you may not list Secrets in namespace {ns}, where Helm \
                 keeps the release records of web"
            )),
            "{line}"
        );
    }
    let found = items(&json_of(&ran));
    assert_eq!(found["HelmRelease/web"]["status"], "in-sync");
    assert_eq!(found["ConfigMap/web-values"]["status"], "in-sync");
    // blame cannot tell which values came from the Secrets it may not read: every line shows
    // its manager, no value (the ConfigMap renders the valuesFrom Secret's).
    for format in ["text", "json"] {
        let ran = gitops(
            &ns,
            &repo,
            cache,
            true,
            &[
                "blame",
                "cm/web-config",
                "-o",
                format,
                "--context",
                testenv::VIEWER_CONTEXT,
            ],
        );
        assert_eq!(ran.code, Some(2), "{format}: {}", ran.stderr);
        assert!(
            ran.stderr.contains("every value is hidden"),
            "{format}: {}",
            ran.stderr
        );
        assert!(
            ran.stdout.contains("endpoint: (hidden)"),
            "{format}: {}",
            ran.stdout
        );
        assert!(
            !ran.stdout.contains("hello-prod"),
            "{format}: {}",
            ran.stdout
        );
        assert!(
            ran.stdout.contains(FIELD_MANAGER),
            "{format}: {}",
            ran.stdout
        );
    }

    // A chart that fails to render at the tip: one line per object, naming the chart and fix.
    // Its message quotes the value from the Secret: helm's words are shown, that value is not.
    repo.write(
        "charts/web/templates/broken.yaml",
        "{{ required (printf \"set .Values.mustHave (apiKey is %s)\" .Values.apiKey) .Values.mustHave }}\n",
    );
    repo.commit(BOB, "A template that needs a value nobody sets");
    let ran = gitops(&ns, &repo, cache, true, &["diff", "-o", "json"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(lines.len(), RELEASED.len(), "{}", ran.stderr);
    for line in &lines {
        assert!(line.starts_with("error: "), "{line}");
        assert!(line.contains("helm template of chart charts/web"), "{line}");
        assert!(
            line.contains("set .Values.mustHave (apiKey is (hidden))"),
            "{line}"
        );
        assert!(
            line.contains("fix the chart or the values in Git"),
            "{line}"
        );
    }
    assert_eq!(
        items(&json_of(&ran))["HelmRelease/web"]["status"],
        "in-sync"
    );
}

/// An upgrade that fails is rolled back by real helm-controller's remediation: the release's
/// newest revision is then the install's manifest again, rendered with `.Release.IsInstall`,
/// and diff renders the chart as that revision was rendered (it took every revision after the
/// first for an upgrade, and the rolled-back ConfigMap drifted).
#[test]
fn a_rollback_remediation_renders_as_the_revision_it_went_back_to() {
    let ns = testenv::shared().namespace("helm-rollback");
    let mut repo = repository();
    repo.write(
        "deploy/release.yaml",
        &release_yaml().replace(
            "  upgrade:\n    disableWait: true\n",
            "  upgrade:\n    disableWait: true\n    remediation:\n      retries: 0\n      \
             remediateLastFailure: true\n      strategy: rollback\n  rollback:\n    \
             disableWait: true\n",
        ),
    );
    repo.commit(ALICE, "Roll back a failed upgrade");
    let helm = testenv::helm::shared();
    reconciled_by_flux(&ns, &repo, "./deploy");
    helm.wait_release(&ns, "web", None)
        .unwrap_or_else(|e| panic!("installing the release: {e:#}"));
    // The API server refuses the Deployment of the upgrade: it fails and is rolled back.
    repo.write(
        "env/prod-values.yaml",
        "greeting: hello-prod\nport: 70000\n",
    );
    let change = repo.commit(BOB, "Serve web on a port that is not one");
    // Waits until the newest release is `revision`, deployed, not made of `failing`.
    let rolled_back_to = |revision: u64, failing: &str| {
        testenv::flux::shared().reconcile_now(&ns, "apps").unwrap();
        let deadline = std::time::Instant::now() + testenv::flux::RECONCILE_TIMEOUT;
        loop {
            let hr: Value = serde_json::from_str(
                &testenv::shared()
                    .kubectl_run(
                        &["get", "-n", &ns, "helmrelease", "web", "-o", "json"],
                        None,
                    )
                    .unwrap(),
            )
            .unwrap();
            let newest = &hr["status"]["history"][0];
            if newest["status"] == "deployed"
                && newest["version"] == revision
                && newest["chartVersion"]
                    .as_str()
                    .is_some_and(|v| !v.contains(&failing[..12]))
            {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no rollback to revision {revision}: {:#}",
                hr["status"]
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    };
    // No retry: revision 2 fails, and revision 3 is "Rollback to 1".
    rolled_back_to(3, &change);
    assert_eq!(field(&ns, "cm/web-config", "{.data.action}"), "install");
    let cache = tempfile::tempdir().unwrap();
    // A dry run of Git's port is refused as helm-controller's upgrade was: those objects are
    // errors in the server-side modes, the others still compared.
    for (mode, code) in [("false", 1), ("auto", 2), ("true", 2)] {
        let (ran, report) = diff(&ns, &repo, cache.path(), mode);
        assert_eq!(ran.code, Some(code), "{mode}: {}", ran.stderr);
        let found = items(&report);
        let config = &found["ConfigMap/web-config"];
        // The chart's version carries the commit (reconcileStrategy: Revision): pending.
        assert_eq!(
            drifted_paths(config),
            [".metadata.labels[\"helm.sh/chart\"]"],
            "{mode}: {config:#}"
        );
        if code == 2 {
            assert!(
                ran.stderr
                    .contains("containerPort: Invalid value: 70000: must be between 1 and 65535"),
                "{mode}: {}",
                ran.stderr
            );
            continue;
        }
        // The port Git wants is pending with its commit: the release holds the one before.
        // So is the port Git removed, though the server filled in its protocol.
        for (side, port) in [("git", 70000), ("live", 8080)] {
            let field = found["Deployment/web"]["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f[side]["containerPort"] == port)
                .unwrap_or_else(|| panic!("{mode}: {:#}", found["Deployment/web"]));
            assert_eq!(
                (&field["why"]["kind"], &field["why"]["commit"]),
                (&json!("pending"), &json!(change.as_str())),
                "{mode}: {field:#}"
            );
        }
    }

    // Another failed upgrade: revision 4 fails, and revision 5 is "Rollback to 3", itself a
    // rollback to the install. Its manifest is the install's, rendered so (before, revision
    // 3 was taken for an upgrade, and the ConfigMap's action drifted).
    repo.write(
        "env/prod-values.yaml",
        "greeting: hello-prod\nport: 70001\n",
    );
    let again = repo.commit(BOB, "Serve web on another port that is not one");
    rolled_back_to(5, &again);
    assert_eq!(field(&ns, "cm/web-config", "{.data.action}"), "install");
    let records = records(&ns);
    assert_eq!(records.len(), 5, "{records:?}");
    let (ran, report) = diff(&ns, &repo, cache.path(), "false");
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let config = &items(&report)["ConfigMap/web-config"];
    assert_eq!(
        drifted_paths(config),
        [".metadata.labels[\"helm.sh/chart\"]"],
        "{config:#}"
    );
}

/// The paths of an object's drifted fields in a diff report, in order.
fn drifted_paths(object: &Value) -> Vec<&str> {
    object["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect()
}

/// The 1-based line of `text` that starts with `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(needle))
        .unwrap_or_else(|| panic!("no line {needle:?} in:\n{text}"))
        + 1
}

/// `blame OBJECT -o json`: each line's origin by its path.
pub(crate) fn blame(
    ns: &str,
    repo: &GitRepo,
    cache: &Path,
    object: &str,
) -> BTreeMap<String, Value> {
    origins(
        &gitops(ns, repo, cache, true, &["blame", object, "-o", "json"]),
        object,
    )
}

/// What `blame OBJECT -o json` printed: each line's origin by its path.
pub(crate) fn origins(ran: &Ran, object: &str) -> BTreeMap<String, Value> {
    assert_eq!(ran.code, Some(0), "blame {object}: {}", ran.stderr);
    assert_eq!(ran.stderr, "", "blame {object}");
    ran.stdout
        .lines()
        .map(|l| {
            let record: Value = serde_json::from_str(l).unwrap();
            (
                record["path"].as_str().unwrap().to_owned(),
                record["origin"].clone(),
            )
        })
        .collect()
}

/// The origin at `path` has every field of `expected` (and a Git one, `commit`).
pub(crate) fn assert_origin(
    found: &BTreeMap<String, Value>,
    path: &str,
    expected: &Value,
    commit: &str,
) {
    let origin = found
        .get(path)
        .unwrap_or_else(|| panic!("no line {path}: {:#?}", found.keys()));
    for (k, v) in expected.as_object().unwrap() {
        assert_eq!(&origin[k], v, "{path}: {origin:#}");
    }
    if origin["kind"] == "git" {
        assert!(
            origin["commit"].as_str().unwrap().starts_with(commit),
            "{path}: {origin:#}"
        );
    }
}

/// Waits until the HelmRelease's latest release is revision `revision`.
pub(crate) fn wait_revision(helm: &testenv::helm::HelmController, ns: &str, revision: u64) {
    let deadline = std::time::Instant::now() + testenv::flux::RECONCILE_TIMEOUT;
    loop {
        let hr = helm.wait_release(ns, "web", None).unwrap();
        if hr["status"]["history"][0]["version"] == revision {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "release revision {revision} did not come: {:#}",
            hr["status"]
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// A ValidatingAdmissionPolicy refusing to create ConfigMap web-config in `ns`, its message
/// quoting the ConfigMap's `endpoint`; in force when this returns.
struct Refusal {
    name: String,
    ns: String,
}

fn refuse_web_config(ns: &str) -> Refusal {
    let name = format!("refuse-web-config-{ns}");
    let scope = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}});
    let mut constraints = scope.clone();
    constraints["resourceRules"] = json!([{"apiGroups": [""], "apiVersions": ["v1"],
        "operations": ["CREATE"], "resources": ["configmaps"]}]);
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
         "metadata": {"name": name},
         "spec": {"failurePolicy": "Fail", "matchConstraints": constraints,
                  "validations": [{
                      "expression": "object.metadata.name != 'web-config'",
                      "messageExpression": "'web-config is refused here, endpoint ' + \
                          (has(object.data) && 'endpoint' in object.data ? \
                           object.data.endpoint : 'none')"}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1",
         "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": {"name": name},
         "spec": {"policyName": name, "validationActions": ["Deny"], "matchResources": scope}},
    ]});
    kubectl(ns, &["apply", "-f", "-"], Some(&objects.to_string()));
    // The API server compiles a policy a moment after it is written.
    wait_web_config_created(ns, false);
    Refusal {
        name,
        ns: ns.to_owned(),
    }
}

impl Refusal {
    fn lift(self) {
        for kind in [
            "validatingadmissionpolicybinding",
            "validatingadmissionpolicy",
        ] {
            kubectl(&self.ns, &["delete", kind, &self.name], None);
        }
        wait_web_config_created(&self.ns, true);
    }
}

/// Waits until a server-side dry run of creating ConfigMap web-config in `ns` succeeds
/// (`allowed`) or is refused.
fn wait_web_config_created(ns: &str, allowed: bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = testenv::shared()
            .kubectl()
            .args([
                "-n",
                ns,
                "create",
                "configmap",
                "web-config",
                "--dry-run=server",
            ])
            .output()
            .unwrap();
        if out.status.success() == allowed {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the policy is not {}: {}",
            if allowed { "lifted" } else { "in force" },
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}
