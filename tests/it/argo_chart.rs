//! Argo CD Applications whose chart comes from a chart repository (`chart` set), end to end:
//! a Helm repository's index served on loopback, and an OCI registry (the real distribution
//! registry, behind htpasswd, its credentials in an Argo CD repository Secret). The charts are
//! packaged, indexed and pushed by the real `helm`; each Application is rendered by the real
//! `helm template` from the repository as Argo CD's repo-server renders it, and applied as its
//! controller applies (server-side as argocd-controller, a tracking id on every object). The
//! values file comes from a `ref` source in Git, the pattern most multi-source Applications
//! are for.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::argo_helm::{application, argo_apply, gitops, helm_binary, server_version};
use crate::fixture::{ALICE, BOB, GitRepo};
use crate::helm::{CHART, DEPLOYMENT, SERVICE, assert_origin, origins};
use crate::helm_repository::walk;
use crate::support::{items, json_of, kubectl};
use crate::watch::Watcher;
use testenv::helm::{ChartRepository, OciRegistry};

/// The registry's password, in the Argo CD repository Secret: never printed.
const PASSWORD: &str = "planted-argo-registry-password-3c7f";

const CONFIGMAP: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  greeting: {{ .Values.greeting | quote }}
  team: {{ .Values.team | quote }}
  mode: {{ .Values.mode | quote }}
";

/// A plain manifest, the first source of Application api (its chart is the second).
const EXTRA: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: api-extra
data:
  mode: strict
";

const OBJECTS: [&str; 7] = [
    "Deployment/web",
    "Service/web",
    "ConfigMap/web-config",
    "Deployment/api",
    "Service/api",
    "ConfigMap/api-config",
    "ConfigMap/api-extra",
];

/// Chart `web` at `version` with the default `mode`, in a new directory.
fn chart(version: &str, mode: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("web");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    let meta = CHART.replace("version: 0.1.0", &format!("version: {version}"));
    std::fs::write(chart.join("Chart.yaml"), meta).unwrap();
    std::fs::write(
        chart.join("values.yaml"),
        format!(
            "replicas: 1\nimage: nginx:1.27\nport: 8080\ngreeting: hello\nteam: nobody\nmode: {mode}\n"
        ),
    )
    .unwrap();
    for (file, text) in [
        ("deployment.yaml", DEPLOYMENT),
        ("service.yaml", SERVICE),
        ("configmap.yaml", CONFIGMAP),
    ] {
        std::fs::write(chart.join("templates").join(file), text).unwrap();
    }
    dir
}

/// `helm template` of chart `web` from a chart repository, as Argo CD's repo-server runs it
/// (`--repo`, or the chart's `oci://` reference), with the values files in the work tree.
fn argo_template(
    repo: &GitRepo,
    ns: &str,
    release: &str,
    chart: &[&str],
    extra: &[&str],
) -> String {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(helm_binary())
        .current_dir(repo.path())
        .arg("template")
        .args(chart)
        .args(["--name-template", release])
        .args(["--namespace", ns, "--kube-version", &server_version()])
        .args(extra)
        .arg("--include-crds")
        .env("HELM_NO_PLUGINS", "1")
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn diff(ns: &str, repo: &GitRepo, cache: &Path, mode: &str) -> (crate::support::Ran, Value) {
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
    these_in_sync(ns, repo, cache, what, &OBJECTS);
}

/// `objects` in sync in every mode, and no other drift.
fn these_in_sync(ns: &str, repo: &GitRepo, cache: &Path, what: &str, objects: &[&str]) {
    for mode in ["false", "auto", "true"] {
        let (ran, report) = diff(ns, repo, cache, mode);
        assert_eq!(
            ran.code,
            Some(0),
            "{what}, {mode}: {}\n{report:#}",
            ran.stderr
        );
        let found = items(&report);
        for &object in objects {
            assert_eq!(
                found[object]["status"], "in-sync",
                "{what}, {mode}: {object}: {:#}",
                found[object]
            );
        }
    }
}

/// Every output and the plugin's cache are free of the registry's password.
fn assert_no_password(outputs: &[&str], cache: &Path) {
    for out in outputs {
        assert!(!out.contains(PASSWORD), "the password was printed:\n{out}");
    }
    for file in walk(cache) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(PASSWORD),
            "{} holds the password",
            file.display()
        );
    }
}

#[test]
fn argo_charts_from_a_helm_repository_and_an_oci_registry() {
    let cp = testenv::shared();
    cp.install_gitops_crds();
    let flux = testenv::flux::shared();
    let helm = testenv::helm::shared();
    let ns = cp.namespace("argo-charts");
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path();

    let index = ChartRepository::start(flux, helm).unwrap();
    let registry = OciRegistry::start(flux, helm, Some(("deploy", PASSWORD))).unwrap();
    let v010 = chart("0.1.0", "strict");
    index.publish(&v010.path().join("web")).unwrap();
    registry.push(&v010.path().join("web"), "charts").unwrap();

    let mut repo = GitRepo::new();
    repo.write("env/web-values.yaml", "greeting: hello-web\n")
        .write(
            "env/api-values.yaml",
            "greeting: hello-api\nimage: nginx:1.28\n",
        )
        .write("extras/settings.yaml", EXTRA);
    let applied = repo.commit(ALICE, "Values of web and api");

    // Application web: the chart from the Helm repository (a version constraint), its values
    // file from a `ref` source, inline values and a parameter.
    let inline = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(inline.path(), "team: payments\n").unwrap();
    // Synced as Argo CD syncs web: rendered from the index with the values files as they are
    // in the work tree.
    let sync_web = |repo: &GitRepo| {
        let web = argo_template(
            repo,
            &ns,
            "web",
            &["web", "--repo", &index.url, "--version", "0.1.0"],
            &[
                "--values",
                "env/web-values.yaml",
                "--values",
                inline.path().to_str().unwrap(),
                "--set",
                "replicas=2",
            ],
        );
        argo_apply(&ns, "web", &web);
    };
    sync_web(&repo);
    application(
        &ns,
        "web",
        json!([
            {"repoURL": index.url, "chart": "web", "targetRevision": "0.1.*",
             "helm": {
                 "valueFiles": ["$values/env/web-values.yaml"],
                 "values": "team: payments\n",
                 "parameters": [{"name": "replicas", "value": "2"}],
             }},
            {"repoURL": repo.url(), "targetRevision": "main", "ref": "values"},
        ]),
        json!({"sync": {"status": "Synced", "revisions": ["0.1.0", applied]},
               "health": {"status": "Healthy"}}),
    );
    // Application api: a plain directory, then the chart from the OCI registry, as Argo CD
    // names one (host/path, the repository Secret enabling OCI over plain HTTP, with the
    // registry's credentials).
    // The repository Secret holds no credentials: they come from the repo-creds Secret for
    // the whole registry (Argo CD's enrichCredsToRepo). Its booleans are written as Go's
    // ParseBool reads them.
    let bare = registry.url("charts")["oci://".len()..].to_owned();
    let host = bare.split('/').next().unwrap().to_owned();
    let secret = |name: &str, kind: &str, data: Value| {
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"argocd.argoproj.io/secret-type": kind}},
            "stringData": data,
        })
    };
    kubectl(
        &ns,
        &["apply", "-f", "-"],
        Some(
            &json!({"apiVersion": "v1", "kind": "List", "items": [
                secret("registry", "repository", json!({"url": bare, "type": "helm",
                    "enableOCI": "True", "insecureOCIForceHttp": "1"})),
                secret("registry-creds", "repo-creds", json!({"url": host, "type": "helm",
                    "username": "deploy", "password": PASSWORD})),
            ]})
            .to_string(),
        ),
    );
    let api = argo_template(
        &repo,
        &ns,
        "api",
        &[
            &format!("{}/web", registry.url("charts")),
            "--version",
            "0.1.0",
        ],
        &[
            "--plain-http",
            "--username",
            "deploy",
            "--password",
            PASSWORD,
            "--values",
            "env/api-values.yaml",
        ],
    );
    argo_apply(&ns, "api", &format!("{api}\n---\n{EXTRA}"));
    application(
        &ns,
        "api",
        json!([
            {"repoURL": repo.url(), "path": "extras", "targetRevision": "main"},
            {"repoURL": bare, "chart": "web", "targetRevision": "0.1.0",
             "helm": {"releaseName": "api", "valueFiles": ["$values/env/api-values.yaml"]}},
            {"repoURL": repo.url(), "targetRevision": "main", "ref": "values"},
        ]),
        json!({"sync": {"status": "Synced", "revisions": [applied, "0.1.0", applied]},
               "health": {"status": "Healthy"}}),
    );
    all_in_sync(&ns, &repo, cache, "after the sync");
    // Both renders are kept in the render cache (by the archives' digests): none runs helm.
    let ran = gitops(&ns, &repo, cache, true, &["diff", "-v=1"]);
    assert!(
        ran.stderr
            .contains("helm: 0 templates, 2 from the render cache"),
        "{}",
        ran.stderr
    );

    // trace: the chart's repository, the constraint and what it picks, the values in order.
    let ran = gitops(
        &ns,
        &repo,
        cache,
        true,
        &["trace", "cm/web-config", "-o", "json"],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let s = json_of(&ran)["items"][0]["source"].clone();
    assert_eq!(s["rule"], "argo-cd", "{s:#}");
    assert_eq!(s["file"], "web/templates/configmap.yaml", "{s:#}");
    assert_eq!(s["appliedCommit"]["id"], applied.as_str(), "{s:#}");
    assert_eq!(
        s["chart"],
        json!({
            "application": format!("Application {ns}/web"),
            "release": "web",
            "namespace": ns,
            "chart": "web",
            "chartVersion": "0.1.0",
            "chartPath": "",
            "values": [
                {"kind": "valueFiles", "name": "$values/env/web-values.yaml"},
                {"kind": "values", "name": "helm.values"},
                {"kind": "parameter", "name": "replicas"},
            ],
            "chartUrl": index.url,
            "versionConstraint": "0.1.*",
            "desiredChartVersion": "0.1.0",
        }),
        "{s:#}"
    );
    let ran = gitops(&ns, &repo, cache, true, &["trace", "deploy/api"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stdout.contains(&format!(
            "Chart:       web 0.1.0 from {}; version \"0.1.0\" picks 0.1.0 there now",
            registry.url("charts")
        )),
        "{}",
        ran.stdout
    );

    // blame: a values file line, helm.values and a parameter to the Application, a chart
    // default to the chart (its archive's template).
    let commit = &applied[..7];
    let blame = |object: &str| {
        origins(
            &gitops(&ns, &repo, cache, true, &["blame", object, "-o", "json"]),
            object,
        )
    };
    let config = blame("cm/web-config");
    for (path, origin) in [
        (
            ".data.greeting",
            json!({"kind": "git", "file": "env/web-values.yaml", "line": 1}),
        ),
        (
            ".data.team",
            json!({"kind": "values", "source": format!("helm.values of Application {ns}/web")}),
        ),
        (
            ".data.mode",
            json!({"kind": "chart", "file": "web/templates/configmap.yaml",
                   "chart": format!("chart web 0.1.0 from {}", index.url)}),
        ),
    ] {
        assert_origin(&config, path, &origin, commit);
    }
    let deployment = blame("deploy/web");
    assert_origin(
        &deployment,
        ".spec.replicas",
        &json!({"kind": "values", "source": format!("parameter replicas of Application {ns}/web")}),
        commit,
    );
    let api_deployment = blame("deploy/api");
    assert_origin(
        &api_deployment,
        ".spec.template.spec.containers[name=web].image",
        &json!({"kind": "git", "file": "env/api-values.yaml", "line": 2}),
        commit,
    );

    // Out of band: found and attributed, a deleted object is missing; revert puts them back
    // as Argo CD's manager.
    kubectl(
        &ns,
        &[
            "patch",
            "cm/web-config",
            "-p",
            r#"{"data":{"mode":"loose"}}"#,
        ],
        None,
    );
    kubectl(&ns, &["scale", "deploy/api", "--replicas=4"], None);
    kubectl(&ns, &["delete", "service", "api"], None);
    for mode in ["false", "auto", "true"] {
        let (ran, report) = diff(&ns, &repo, cache, mode);
        assert_eq!(ran.code, Some(1), "{mode}: {}", ran.stderr);
        let found = items(&report);
        for (object, path, manager) in [
            ("ConfigMap/web-config", ".data.mode", "kubectl-patch"),
            ("Deployment/api", ".spec.replicas", "kubectl"),
        ] {
            let fields = found[object]["fields"].as_array().unwrap();
            assert_eq!(fields.len(), 1, "{mode}: {object}: {fields:#?}");
            assert_eq!(fields[0]["path"], path, "{mode}: {object}");
            assert_eq!(
                fields[0]["why"]["kind"], "out-of-band",
                "{mode}: {:#}",
                fields[0]
            );
            assert_eq!(
                fields[0]["why"]["manager"], manager,
                "{mode}: {:#}",
                fields[0]
            );
        }
        assert_eq!(
            found["Service/api"]["status"], "missing",
            "{mode}: {report:#}"
        );
        assert_eq!(found["Service/web"]["status"], "in-sync", "{mode}");
    }
    let revert = gitops(&ns, &repo, cache, true, &["revert", "--all", "--yes"]);
    assert_eq!(revert.code, Some(0), "{}\n{}", revert.stdout, revert.stderr);
    assert!(
        revert.stdout.contains("applied as argocd-controller"),
        "{}",
        revert.stdout
    );
    all_in_sync(&ns, &repo, cache, "after revert");

    // A values change pushed to Git, not synced yet: pending, with its commit. Argo CD has
    // refreshed: the last comparison (`status.sync`) is at the new commit, and what it
    // deployed is in `status.history`.
    repo.write("env/web-values.yaml", "greeting: hello-again\n");
    let change = repo.commit(BOB, "Greet again");
    let status = |sync: &str, synced: &str, history: &[&str]| {
        let history: Vec<Value> = history
            .iter()
            .enumerate()
            .map(|(id, commit)| {
                json!({"id": id, "revisions": ["0.1.0", commit],
                       "deployedAt": format!("2026-01-01T00:0{id}:00Z")})
            })
            .collect();
        json!({"status": {"sync": {"status": sync, "revisions": ["0.1.0", synced]},
                          "history": history}})
        .to_string()
    };
    kubectl(
        &ns,
        &[
            "patch",
            "application.argoproj.io/web",
            "--type=merge",
            "-p",
            &status("OutOfSync", &change, &[&applied]),
        ],
        None,
    );
    let (ran, report) = diff(&ns, &repo, cache, "auto");
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let found = items(&report);
    let fields = found["ConfigMap/web-config"]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "{fields:#?}");
    assert_eq!(fields[0]["path"], ".data.greeting");
    assert_eq!(fields[0]["why"]["kind"], "pending", "{:#}", fields[0]);
    assert_eq!(fields[0]["why"]["commit"], change.as_str());
    assert_eq!(found["ConfigMap/api-config"]["status"], "in-sync");
    // Synced: in sync again.
    sync_web(&repo);
    kubectl(
        &ns,
        &[
            "patch",
            "application.argoproj.io/web",
            "--type=merge",
            "-p",
            &status("Synced", &change, &[&applied, &change]),
        ],
        None,
    );
    all_in_sync(&ns, &repo, cache, "after syncing the values");

    // A chart version the constraint picks, published and not synced: pending as published;
    // `watch` polls the index and says so. It declares one more ConfigMap: missing, by the
    // chart. The next version no longer declares it: gone from watch again. The same for a
    // watch that starts with it missing.
    let helm = helm_binary();
    let mut watch = Watcher::polling_each_second(&ns, (repo.path(), cache), &helm);
    let v011 = chart("0.1.1", "relaxed");
    let more = v011.path().join("web/templates/more.yaml");
    std::fs::write(&more, CONFIGMAP.replace("-config", "-more")).unwrap();
    index.publish(&v011.path().join("web")).unwrap();
    watch.published_event("web-config", "0.1.1");
    let missing = watch.event_for("web-more");
    assert_eq!(
        (
            &missing["oldStatus"],
            &missing["newStatus"],
            &missing["cause"]
        ),
        (&Value::Null, &json!("missing"), &json!("chart")),
        "{missing:#}"
    );
    let v012 = chart("0.1.2", "relaxed");
    index.publish(&v012.path().join("web")).unwrap();
    let gone = watch.event_for("web-more");
    assert_eq!(
        (&gone["oldStatus"], &gone["newStatus"], &gone["cause"]),
        (&json!("missing"), &Value::Null, &json!("chart")),
        "{gone:#}"
    );
    let (code, said) = watch.stop();
    assert_eq!(code, Some(0), "{said:#?}");
    let v013 = chart("0.1.3", "relaxed");
    let more = v013.path().join("web/templates/more.yaml");
    std::fs::write(&more, CONFIGMAP.replace("-config", "-more")).unwrap();
    index.publish(&v013.path().join("web")).unwrap();
    let mut watch = Watcher::polling_each_second(&ns, (repo.path(), cache), &helm);
    watch.said_lines(
        "saying web-more is missing",
        |l| l.starts_with("missing: 1 (") && l.contains("/web-more"),
        1,
    );
    let v014 = chart("0.1.4", "relaxed");
    index.publish(&v014.path().join("web")).unwrap();
    let gone = watch.event_for("web-more");
    assert_eq!(
        (&gone["oldStatus"], &gone["newStatus"], &gone["cause"]),
        (&json!("missing"), &Value::Null, &json!("chart")),
        "{gone:#}"
    );
    let (code, said) = watch.stop();
    assert_eq!(code, Some(0), "{said:#?}");
    let (ran, report) = diff(&ns, &repo, cache, "auto");
    assert_eq!(ran.code, Some(1), "{}\n{report:#}", ran.stderr);
    let found = items(&report);
    let fields = found["ConfigMap/web-config"]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "{fields:#?}");
    assert_eq!(fields[0]["path"], ".data.mode");
    assert_eq!(fields[0]["why"]["kind"], "published", "{:#}", fields[0]);
    assert_eq!(fields[0]["why"]["version"], "0.1.4", "{:#}", fields[0]);
    // api pins 0.1.0 in the registry: unchanged.
    assert_eq!(found["ConfigMap/api-config"]["status"], "in-sync");
    let text = gitops(&ns, &repo, cache, true, &["diff"]);
    assert!(
        text.stdout
            .contains("pending: chart web 0.1.4 published in"),
        "{}",
        text.stdout
    );

    // The registry stopped: one line per object of api, naming the Application and the
    // registry; web's objects are still reported.
    registry.stop();
    let down = gitops(&ns, &repo, cache, true, &["diff", "-o", "json"]);
    assert_eq!(down.code, Some(2), "{}", down.stderr);
    let lines = down.error_lines();
    assert_eq!(lines.len(), 3, "{}", down.stderr);
    for line in &lines {
        assert!(line.contains(&format!("Application {ns}/api")), "{line}");
        assert!(line.contains(&bare), "{line}");
    }
    let found = items(&json_of(&down));
    assert_eq!(
        found["Service/web"]["status"], "in-sync",
        "{:#}",
        found["Service/web"]
    );

    assert_no_password(
        &[
            &ran.stdout,
            &ran.stderr,
            &text.stdout,
            &text.stderr,
            &down.stdout,
            &down.stderr,
            &revert.stdout,
            &revert.stderr,
        ],
        cache,
    );
    kubectl(
        &ns,
        &[
            "delete",
            "application.argoproj.io/web",
            "application.argoproj.io/api",
        ],
        None,
    );
}

/// The objects of Applications web and lax, each rendered from chart `web`.
const INSIDE: [&str; 6] = [
    "Deployment/web",
    "Service/web",
    "ConfigMap/web-config",
    "Deployment/lax",
    "Service/lax",
    "ConfigMap/lax-config",
];

/// `valueFiles` without `$` of a chart from a chart repository are files inside the chart's
/// archive, as Argo CD's repo-server reads them from the chart it unpacked (the chart's
/// directory is then also the root): merged in order with one from a `ref` source, skipped
/// with `ignoreMissingValueFiles`, an error naming the file without it. The synced renders
/// are the real `helm template` of the chart from the index, with the chart's own file.
#[test]
fn argo_values_files_inside_a_chart_from_a_repository() {
    let cp = testenv::shared();
    cp.install_gitops_crds();
    let flux = testenv::flux::shared();
    let helm = testenv::helm::shared();
    let ns = cp.namespace("argo-chart-values");
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path();

    let index = ChartRepository::start(flux, helm).unwrap();
    let publish = |version: &str, greeting: &str| {
        let dir = chart(version, "strict");
        let prod = dir.path().join("web/values-prod.yaml");
        std::fs::write(&prod, format!("greeting: {greeting}\nteam: chart-team\n")).unwrap();
        let per_namespace = dir.path().join(format!("web/values-{ns}.yaml"));
        std::fs::write(per_namespace, "mode: per-namespace\n").unwrap();
        index.publish(&dir.path().join("web")).unwrap();
        dir
    };
    let v010 = publish("0.1.0", "hello-prod");
    let prod = v010.path().join("web/values-prod.yaml");
    let prod = prod.to_str().unwrap();
    let per_namespace = v010.path().join(format!("web/values-{ns}.yaml"));
    let per_namespace = per_namespace.to_str().unwrap();

    let mut repo = GitRepo::new();
    repo.write("env/override.yaml", "team: platform\n");
    let applied = repo.commit(ALICE, "Team of web");
    let synced = |release: &str, values: &[&str]| {
        let mut extra = Vec::new();
        for file in values {
            extra.extend(["--values", file]);
        }
        let chart = ["web", "--repo", index.url.as_str(), "--version", "0.1.0"];
        argo_apply(
            &ns,
            release,
            &argo_template(&repo, &ns, release, &chart, &extra),
        );
    };
    // web: the chart's values-prod.yaml, then a `ref` source's file over it.
    synced("web", &[prod, "env/override.yaml"]);
    application(
        &ns,
        "web",
        json!([
            {"repoURL": index.url, "chart": "web", "targetRevision": "0.1.*",
             "helm": {"valueFiles": ["values-prod.yaml", "$values/env/override.yaml"]}},
            {"repoURL": repo.url(), "targetRevision": "main", "ref": "values"},
        ]),
        json!({"sync": {"status": "Synced", "revisions": ["0.1.0", applied]},
               "health": {"status": "Healthy"}}),
    );
    // lax: only the chart's files, one written from the root, one named with Argo CD's build
    // environment, one the chart does not hold.
    synced("lax", &[prod, per_namespace]);
    application(
        &ns,
        "lax",
        json!({"repoURL": index.url, "chart": "web", "targetRevision": "0.1.0",
               "helm": {"valueFiles": ["/values-prod.yaml",
                                       "values-${ARGOCD_APP_NAMESPACE}.yaml",
                                       "values-staging.yaml"],
                        "ignoreMissingValueFiles": true}}),
        json!({"sync": {"status": "Synced", "revision": "0.1.0"},
               "health": {"status": "Healthy"}}),
    );
    let in_sync = |what: &str| these_in_sync(&ns, &repo, cache, what, &INSIDE);
    in_sync("after the sync");

    // trace names the chart's file apart from Git's, in order.
    let ran = gitops(
        &ns,
        &repo,
        cache,
        true,
        &["trace", "cm/web-config", "-o", "json"],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let s = json_of(&ran)["items"][0]["source"].clone();
    assert_eq!(
        s["chart"]["values"],
        json!([
            {"kind": "chartValueFiles", "name": "values-prod.yaml"},
            {"kind": "valueFiles", "name": "$values/env/override.yaml"},
        ]),
        "{s:#}"
    );
    assert_eq!(s["appliedCommit"]["id"], applied.as_str(), "{s:#}");
    let ran = gitops(&ns, &repo, cache, true, &["trace", "cm/web-config"]);
    assert!(
        ran.stdout.contains(
            "1. chartValueFiles values-prod.yaml, 2. valueFiles $values/env/override.yaml \
             (later wins)"
        ),
        "{}",
        ran.stdout
    );

    // blame: a value of the chart's file to that file of the synced version; the one Git's
    // file sets over it to Git's line; a chart default to the template.
    let chart_name = format!("chart web 0.1.0 from {}", index.url);
    let config = origins(
        &gitops(
            &ns,
            &repo,
            cache,
            true,
            &["blame", "cm/web-config", "-o", "json"],
        ),
        "cm/web-config",
    );
    for (path, origin) in [
        (
            ".data.greeting",
            json!({"kind": "values",
                   "source": format!("values file values-prod.yaml of {chart_name}")}),
        ),
        (
            ".data.team",
            json!({"kind": "git", "file": "env/override.yaml", "line": 1}),
        ),
        (
            ".data.mode",
            json!({"kind": "chart", "file": "web/templates/configmap.yaml", "chart": chart_name}),
        ),
    ] {
        assert_origin(&config, path, &origin, &applied[..7]);
    }
    let lax = origins(
        &gitops(
            &ns,
            &repo,
            cache,
            true,
            &["blame", "cm/lax-config", "-o", "json"],
        ),
        "cm/lax-config",
    );
    assert_origin(
        &lax,
        ".data.team",
        &json!({"kind": "values", "source": format!("values file values-prod.yaml of {chart_name}")}),
        "",
    );
    assert_origin(
        &lax,
        ".data.mode",
        &json!({"kind": "values",
                "source": format!("values file values-{ns}.yaml of {chart_name}")}),
        "",
    );

    // Values files of two `ref` repositories: each read at its own synced commit, each value
    // blamed on its repository's line, a commit to the second alone pending.
    let mut more = GitRepo::new();
    more.write("mode.yaml", "mode: from-more\n");
    let more_synced = more.commit(BOB, "Mode of multi");
    let more_file = more.path().join("mode.yaml");
    synced("multi", &["env/override.yaml", more_file.to_str().unwrap()]);
    application(
        &ns,
        "multi",
        json!([
            {"repoURL": index.url, "chart": "web", "targetRevision": "0.1.0",
             "helm": {"valueFiles": ["$values/env/override.yaml", "$more/mode.yaml"]}},
            {"repoURL": repo.url(), "targetRevision": "main", "ref": "values"},
            {"repoURL": more.url(), "targetRevision": "main", "ref": "more"},
        ]),
        json!({"sync": {"status": "Synced", "revisions": ["0.1.0", applied, more_synced]},
               "health": {"status": "Healthy"}}),
    );
    let multi = [
        "Deployment/multi",
        "Service/multi",
        "ConfigMap/multi-config",
    ];
    these_in_sync(&ns, &repo, cache, "two ref repositories", &multi);
    let ran = gitops(
        &ns,
        &repo,
        cache,
        true,
        &["trace", "cm/multi-config", "-o", "json"],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let s = json_of(&ran)["items"][0]["source"].clone();
    let repos = s["chart"]["valuesRepos"].as_array().unwrap();
    assert_eq!(repos.len(), 1, "{s:#}");
    assert_eq!(repos[0]["source"], 2, "{s:#}");
    assert_eq!(repos[0]["syncedCommit"], more_synced.as_str(), "{s:#}");
    let more_repo = repos[0]["repo"].as_str().unwrap().to_owned();
    let found = origins(
        &gitops(
            &ns,
            &repo,
            cache,
            true,
            &["blame", "cm/multi-config", "-o", "json"],
        ),
        "cm/multi-config",
    );
    assert_origin(
        &found,
        ".data.team",
        &json!({"kind": "git", "file": "env/override.yaml", "line": 1}),
        &applied[..7],
    );
    assert!(
        found[".data.team"]["repo"].is_null(),
        "{:#}",
        found[".data.team"]
    );
    assert_origin(
        &found,
        ".data.mode",
        &json!({"kind": "git", "file": "mode.yaml", "line": 1, "repo": more_repo}),
        &more_synced[..7],
    );
    more.write("mode.yaml", "mode: changed\n");
    let change = more.commit(ALICE, "Another mode");
    let (ran, report) = diff(&ns, &repo, cache, "auto");
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let found = items(&report);
    let fields = found["ConfigMap/multi-config"]["fields"]
        .as_array()
        .unwrap();
    assert_eq!(fields.len(), 1, "{fields:#?}");
    assert_eq!(fields[0]["path"], ".data.mode");
    assert_eq!(fields[0]["why"]["kind"], "pending", "{:#}", fields[0]);
    assert_eq!(fields[0]["why"]["commit"], change.as_str());
    assert_eq!(found["ConfigMap/web-config"]["status"], "in-sync");
    kubectl(
        &ns,
        &[
            "delete",
            "application.argoproj.io/multi",
            "deploy/multi",
            "svc/multi",
            "cm/multi-config",
        ],
        None,
    );

    // Out of band, then reverted as Argo CD's manager.
    kubectl(
        &ns,
        &[
            "patch",
            "cm/lax-config",
            "-p",
            r#"{"data":{"greeting":"edited"}}"#,
        ],
        None,
    );
    let (ran, report) = diff(&ns, &repo, cache, "auto");
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let fields = items(&report)["ConfigMap/lax-config"]["fields"].clone();
    assert_eq!(fields.as_array().map(Vec::len), Some(1), "{fields:#}");
    assert_eq!(fields[0]["path"], ".data.greeting");
    assert_eq!(fields[0]["why"]["kind"], "out-of-band", "{:#}", fields[0]);
    let revert = gitops(
        &ns,
        &repo,
        cache,
        true,
        &["revert", "cm/lax-config", "--yes"],
    );
    assert_eq!(revert.code, Some(0), "{}\n{}", revert.stdout, revert.stderr);
    in_sync("after revert");

    // 0.1.1 changes the chart's file: web's constraint picks it, published; lax pins 0.1.0.
    let _v011 = publish("0.1.1", "hello-prod-2");
    let (ran, report) = diff(&ns, &repo, cache, "auto");
    assert_eq!(ran.code, Some(1), "{}\n{report:#}", ran.stderr);
    let found = items(&report);
    let fields = found["ConfigMap/web-config"]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "{fields:#?}");
    assert_eq!(fields[0]["path"], ".data.greeting");
    assert_eq!(fields[0]["why"]["kind"], "published", "{:#}", fields[0]);
    assert_eq!(fields[0]["why"]["version"], "0.1.1", "{:#}", fields[0]);
    assert_eq!(found["ConfigMap/lax-config"]["status"], "in-sync");

    // Without ignoreMissingValueFiles, a file the chart does not hold: one line per object
    // naming the Application and the file; the others are still compared.
    synced("broken", &[]);
    application(
        &ns,
        "broken",
        json!({"repoURL": index.url, "chart": "web", "targetRevision": "0.1.0",
               "helm": {"valueFiles": ["values-staging.yaml"]}}),
        json!({"sync": {"status": "Synced", "revision": "0.1.0"},
               "health": {"status": "Healthy"}}),
    );
    let ran = gitops(&ns, &repo, cache, true, &["diff", "-o", "json"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    let lines = ran.error_lines();
    assert_eq!(lines.len(), 3, "{}", ran.stderr);
    for line in &lines {
        assert!(line.contains(&format!("Application {ns}/broken")), "{line}");
        assert!(
            line.contains("the values file values-staging.yaml is not in the chart"),
            "{line}"
        );
    }
    let found = items(&json_of(&ran));
    assert_eq!(found["ConfigMap/lax-config"]["status"], "in-sync");
    kubectl(
        &ns,
        &[
            "delete",
            "application.argoproj.io/web",
            "application.argoproj.io/lax",
            "application.argoproj.io/broken",
        ],
        None,
    );
}
