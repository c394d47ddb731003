//! `kubectl gitops diff` on the real control plane: a clean apply shows no drift in any mode;
//! each out-of-band change is found and attributed; auto equals `--server-side=true`; Secret
//! values never appear; the audit log shows which requests each mode sent.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::fixture::{ALICE, BOB, GitRepo};
use crate::support::{Ran, kubectl, kubectl_gitops, reconciled_by_flux, run};

const PLANTED: &str = "planted-Secret-value-7f3a";

fn deployment(name: &str, replicas: u32) -> String {
    crate::fixture::sized_deployment(name, replicas)
}

const DEPLOYMENTS: &[&str] = &[
    "d-clean",
    "d-scale",
    "d-image",
    "d-env",
    "d-resources",
    "d-sidecar",
    "d-pending",
];

fn configmaps(with_old: bool) -> String {
    let mut text = String::new();
    for name in [
        "cm-clean",
        "cm-label",
        "cm-value",
        "cm-remove",
        "cm-deleted",
        "cm-dropped",
    ] {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: value\n  gone: soon\n  empty: ''\n"
        ));
        if name == "cm-dropped" && with_old {
            text.push_str("  old: kept-by-the-reconciler\n");
        }
    }
    text
}

const SERVICES: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: svc-port
spec:
  selector: {app: web}
  ports:
    - port: 80
      targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: svc-annotate
spec:
  selector: {app: web}
  ports:
    - {port: 443, targetPort: 8443, name: https}
";

fn setup(ns: &str) -> GitRepo {
    let mut repo = GitRepo::new();
    for name in DEPLOYMENTS {
        repo.write(&format!("apps/{name}.yaml"), &deployment(name, 2));
    }
    repo.write("apps/config.yaml", &configmaps(true))
        .write("apps/services.yaml", SERVICES)
        .write(
            "apps/secret.yaml",
            &format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: sec-value\nstringData:\n  password: {PLANTED}\n  user: admin\n"),
        )
        .write("apps/orphan.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-orphan\ndata: {a: b}\n");
    repo.commit(ALICE, "Initial apps");
    let stamped = run(kubectl_gitops(&["stamp", "apps"]).current_dir(repo.path()));
    assert_eq!(stamped.code, Some(0), "{}", stamped.stderr);
    kubectl(
        ns,
        &["apply", "--server-side", "-f", "-"],
        Some(&stamped.stdout),
    );
    repo
}

fn diff(ns: &str, repo: &GitRepo, cache: &std::path::Path, extra: &[&str]) -> Ran {
    let kc = testenv::shared().kubeconfig.display().to_string();
    let mut args = vec!["diff", "--kubeconfig", kc.as_str(), "-n", ns];
    args.extend_from_slice(extra);
    run(kubectl_gitops(&args)
        .env("XDG_CACHE_HOME", cache)
        .current_dir(repo.path()))
}

fn report(ran: &Ran) -> Value {
    serde_json::from_str(&ran.stdout).unwrap_or_else(|e| {
        panic!(
            "diff -o json: {e}\nstdout: {}\nstderr: {}",
            ran.stdout, ran.stderr
        )
    })
}

fn by_name(report: &Value) -> BTreeMap<String, Value> {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["object"]["name"].as_str().unwrap().to_owned(), i.clone()))
        .collect()
}

#[test]
fn a_clean_apply_is_in_sync_in_every_mode() {
    let cp = testenv::shared();
    let ns = cp.namespace("diff-clean");
    let repo = setup(&ns);
    let cache = tempfile::tempdir().unwrap();
    for mode in [
        "--server-side=false",
        "--server-side=auto",
        "--server-side=true",
    ] {
        let ran = diff(&ns, &repo, cache.path(), &[mode, "-o", "json"]);
        let doc = report(&ran);
        assert_eq!(
            ran.code,
            Some(0),
            "{mode}: {}\n{:#}",
            ran.stderr,
            doc["items"]
        );
        assert_eq!(doc["kind"], "DriftReport");
        assert_eq!(doc["summary"]["drifted"], 0, "{mode}: {:#}", doc);
        assert_eq!(doc["summary"]["inSync"], 17, "{mode}: {:#}", doc["summary"]);
    }
    let ran = diff(&ns, &repo, cache.path(), &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(
        ran.stdout.trim(),
        "17 in sync, 0 drifted, 0 missing, 0 orphaned"
    );
}

#[test]
fn out_of_band_changes_are_found_attributed_and_auto_equals_true() {
    let cp = testenv::shared();
    let ns = cp.namespace("diff-matrix");
    let mut repo = setup(&ns);
    // Git moves on: a replica count not yet applied, a key dropped, a file removed.
    repo.write("apps/d-pending.yaml", &deployment("d-pending", 4))
        .write("apps/config.yaml", &configmaps(false));
    std::fs::remove_file(repo.path().join("apps/orphan.yaml")).unwrap();
    let pending = repo.commit(BOB, "Scale d-pending, drop old, remove orphan");

    // Out of band, with real kubectl commands.
    kubectl(&ns, &["scale", "deployment/d-scale", "--replicas=5"], None);
    kubectl(
        &ns,
        &["set", "image", "deployment/d-image", "web=nginx:1.28"],
        None,
    );
    kubectl(&ns, &["set", "env", "deployment/d-env", "FOO=bar"], None);
    kubectl(
        &ns,
        &[
            "patch",
            "deployment/d-resources",
            "--type=strategic",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","resources":{"limits":{"cpu":"2"}}}]}}}}"#,
        ],
        None,
    );
    kubectl(
        &ns,
        &[
            "patch",
            "deployment/d-sidecar",
            "--type=strategic",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.36"}]}}}}"#,
        ],
        None,
    );
    kubectl(&ns, &["label", "configmap/cm-label", "team=payments"], None);
    kubectl(
        &ns,
        &[
            "patch",
            "configmap/cm-value",
            "--type=merge",
            "-p",
            r#"{"data":{"key":"changed"}}"#,
        ],
        None,
    );
    kubectl(
        &ns,
        &[
            "patch",
            "configmap/cm-remove",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/data/gone"}]"#,
        ],
        None,
    );
    kubectl(&ns, &["delete", "configmap/cm-deleted"], None);
    kubectl(
        &ns,
        &[
            "patch",
            "service/svc-port",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/ports/0/targetPort","value":9090}]"#,
        ],
        None,
    );
    kubectl(
        &ns,
        &["annotate", "service/svc-annotate", "note=hand-made"],
        None,
    );
    kubectl(
        &ns,
        &[
            "patch",
            "secret/sec-value",
            "--type=merge",
            "-p",
            r#"{"stringData":{"password":"changed-by-hand"}}"#,
        ],
        None,
    );

    let cache = tempfile::tempdir().unwrap();
    let mut reports = BTreeMap::new();
    for mode in ["false", "auto", "true"] {
        let ran = diff(
            &ns,
            &repo,
            cache.path(),
            &[&format!("--server-side={mode}"), "-o", "json"],
        );
        assert_eq!(ran.code, Some(1), "{mode}: drift exits 1: {}", ran.stderr);
        assert!(
            !ran.stdout.contains(PLANTED) && !ran.stderr.contains(PLANTED),
            "{mode}: Secret value leaked"
        );
        assert!(
            !ran.stdout.contains("changed-by-hand"),
            "{mode}: Secret value leaked"
        );
        let doc = report(&ran);
        let items = by_name(&doc);
        let status = |name: &str| items[name]["status"].as_str().unwrap().to_owned();
        let field = |name: &str, path_part: &str| -> Value {
            items[name]["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["path"].as_str().unwrap().contains(path_part))
                .cloned()
                .unwrap_or_else(|| {
                    panic!(
                        "{mode}: {name} has a drifted field with {path_part}: {:#}",
                        items[name]
                    )
                })
        };
        let manager = |name: &str, path_part: &str| {
            field(name, path_part)["why"]["manager"]
                .as_str()
                .map(str::to_owned)
        };

        for clean in ["d-clean", "cm-clean"] {
            assert_eq!(
                status(clean),
                "in-sync",
                "{mode}: {clean}: {:#}",
                items[clean]
            );
        }
        assert_eq!(
            manager("d-scale", ".spec.replicas").as_deref(),
            Some("kubectl"),
            "{mode}"
        );
        assert_eq!(
            field("d-scale", ".spec.replicas")["why"]["subresource"],
            "scale"
        );
        assert_eq!(
            manager("d-image", "image").as_deref(),
            Some("kubectl-set"),
            "{mode}"
        );
        assert_eq!(
            manager("d-env", "env").as_deref(),
            Some("kubectl-set"),
            "{mode}"
        );
        assert_eq!(
            manager("d-resources", "limits").as_deref(),
            Some("kubectl-patch"),
            "{mode}"
        );
        assert_eq!(
            manager("d-sidecar", "sidecar").as_deref(),
            Some("kubectl-patch"),
            "{mode}"
        );
        assert_eq!(
            manager("cm-label", "team").as_deref(),
            Some("kubectl-label"),
            "{mode}"
        );
        assert_eq!(
            manager("cm-value", ".data.key").as_deref(),
            Some("kubectl-patch"),
            "{mode}"
        );
        assert_eq!(
            field("cm-remove", ".data.gone")["why"]["kind"],
            "unrecorded",
            "{mode}"
        );
        assert_eq!(
            manager("svc-port", "targetPort").as_deref(),
            Some("kubectl-patch"),
            "{mode}"
        );
        assert_eq!(
            manager("svc-annotate", "note").as_deref(),
            Some("kubectl-annotate"),
            "{mode}"
        );
        let secret = field("sec-value", "password");
        assert_eq!(secret["git"], "(hidden git value)", "{mode}");
        assert_eq!(secret["live"], "(hidden live value)", "{mode}");
        assert_eq!(status("cm-deleted"), "missing", "{mode}");
        assert_eq!(status("cm-orphan"), "orphaned", "{mode}");
        let pending_field = field("d-pending", ".spec.replicas");
        assert_eq!(pending_field["why"]["kind"], "pending", "{mode}");
        assert_eq!(pending_field["why"]["commit"], pending.as_str());
        assert_eq!(pending_field["why"]["author"], BOB.0);
        let dropped = field("cm-dropped", ".data.old");
        assert_eq!(
            dropped["why"]["kind"], "pending",
            "{mode}: a key removed from Git"
        );
        assert!(dropped["git"].is_null());
        reports.insert(mode, doc);
    }
    // auto's answer is the server's: identical statuses, fields and attributions.
    let strip = |doc: &Value| {
        let mut items = doc["items"].clone();
        for item in items.as_array_mut().unwrap() {
            item.as_object_mut().unwrap().remove("verdict");
        }
        items
    };
    assert_eq!(strip(&reports["auto"]), strip(&reports["true"]));

    // Every other format hides the Secret too, and table/markdown name the managers.
    for format in ["diff", "table", "yaml", "markdown"] {
        let ran = diff(&ns, &repo, cache.path(), &["-o", format]);
        assert_eq!(ran.code, Some(1), "{format}: {}", ran.stderr);
        assert!(
            !ran.stdout.contains(PLANTED) && !ran.stdout.contains("changed-by-hand"),
            "{format}: leaked"
        );
        assert!(
            ran.stdout.contains("kubectl-label"),
            "{format}: {}",
            ran.stdout
        );
    }
}

#[test]
fn the_audit_log_shows_what_each_mode_asked() {
    let cp = testenv::shared();
    let ns = cp.namespace("diff-audit");
    let repo = setup(&ns);
    kubectl(&ns, &["label", "configmap/cm-label", "team=x"], None);
    kubectl(
        &ns,
        &[
            "patch",
            "configmap/cm-value",
            "--type=merge",
            "-p",
            r#"{"data":{"key":"changed"}}"#,
        ],
        None,
    );
    let cache = tempfile::tempdir().unwrap();
    let ours = |e: &Value| {
        e["userAgent"]
            .as_str()
            .is_some_and(|ua| ua.starts_with("kubectl-gitops/"))
            && e["objectRef"]["namespace"] == ns.as_str()
    };
    let ran = diff(&ns, &repo, cache.path(), &["--server-side=false"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    // The offline run: GET and LIST only (wait for its LISTs to reach the log).
    let offline = cp
        .audit_events_matching(|e| ours(e) && e["verb"] == "list")
        .unwrap();
    assert!(!offline.is_empty());
    let offline = cp.audit_events_matching(|e| ours(e)).unwrap();
    assert!(
        offline
            .iter()
            .all(|e| matches!(e["verb"].as_str(), Some("get" | "list"))),
        "offline sent only GET and LIST"
    );
    let offline_count = offline.len();

    let ran = diff(&ns, &repo, cache.path(), &["--server-side=auto"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let patches = cp
        .audit_events_matching(|e| ours(e) && e["verb"] == "patch")
        .unwrap();
    // Dry runs only, and only for the object the offline comparison could not prove in sync
    // (cm-value; a label added out of band needs no dry run: managedFields tell it).
    assert!(!patches.is_empty(), "auto dry-ran the drifted object");
    for p in &patches {
        assert!(
            p["requestURI"].as_str().unwrap().contains("dryRun=All"),
            "{p}"
        );
        assert_eq!(p["objectRef"]["name"], "cm-value", "{p}");
    }
    let all = cp.audit_events_matching(|e| ours(e)).unwrap();
    assert!(all.len() > offline_count);
    assert!(
        all.iter()
            .all(|e| matches!(e["verb"].as_str(), Some("get" | "list" | "patch")))
    );
}

#[test]
fn applied_as_flux_applies_it_there_is_no_drift_in_any_mode() {
    let cp = testenv::shared();
    cp.install_gitops_crds();
    let ns = cp.namespace("diff-flux");
    let mut repo = GitRepo::new();
    let mut files = vec![("deploy/web.yaml".to_owned(), deployment("web", 3))];
    files.push(("deploy/config.yaml".to_owned(), configmaps(true)));
    files.push(("deploy/services.yaml".to_owned(), SERVICES.to_owned()));
    for (path, text) in &files {
        repo.write(path, text);
    }
    let applied = repo.commit(ALICE, "Apps");
    assert_eq!(reconciled_by_flux(&ns, &repo, "./deploy"), applied);

    let cache = tempfile::tempdir().unwrap();
    for mode in ["false", "auto", "true"] {
        let ran = diff(
            &ns,
            &repo,
            cache.path(),
            &[&format!("--server-side={mode}"), "-o", "json"],
        );
        let doc = report(&ran);
        assert_eq!(
            ran.code,
            Some(0),
            "{mode}: {}\n{:#}",
            ran.stderr,
            doc["items"]
        );
        // web, 6 ConfigMaps, 2 Services; the Flux objects themselves have no source.
        assert_eq!(doc["summary"]["inSync"], 9, "{mode}: {:#}", doc["summary"]);
    }
}

#[test]
fn bad_input_is_named_and_the_other_objects_still_reported() {
    let cp = testenv::shared();
    let ns = cp.namespace("diff-bad");
    let mut repo = setup(&ns);
    // Git now has a broken file: the objects it held are errors, the rest are compared.
    repo.write(
        "apps/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [broken\n",
    );
    repo.commit(BOB, "Break the config");
    let cache = tempfile::tempdir().unwrap();
    let ran = diff(&ns, &repo, cache.path(), &["-o", "json"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("apps/config.yaml:4: not valid YAML"),
        "{}",
        ran.stderr
    );
    let doc = report(&ran);
    let items = by_name(&doc);
    assert_eq!(items["cm-clean"]["status"], "error");
    assert_eq!(
        items["d-clean"]["status"], "in-sync",
        "the other objects are still compared"
    );

    // A kind the server does not know.
    let ran = diff(&ns, &repo, cache.path(), &["widgets"]);
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr
            .contains("error: widgets: the server doesn't have a resource type \"widgets\""),
        "{}",
        ran.stderr
    );

    // The limited user may not list Secrets: said plainly, exit 2; ConfigMaps still compared.
    let kc = cp.kubeconfig.display().to_string();
    let ran = run(kubectl_gitops(&[
        "diff",
        "--kubeconfig",
        &kc,
        "--context",
        testenv::VIEWER_CONTEXT,
        "-n",
        &ns,
        "secrets",
        "configmaps",
        "-o",
        "json",
    ])
    .env("XDG_CACHE_HOME", cache.path())
    .current_dir(repo.path()));
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("forbidden: ")
            && ran.stderr.contains("cannot list resource \"secrets\""),
        "{}",
        ran.stderr
    );
    let doc = report(&ran);
    assert!(by_name(&doc).contains_key("d-clean") || by_name(&doc).contains_key("cm-value"));
}

#[test]
fn a_user_without_patch_rights_gets_offline_verdicts_in_auto() {
    let cp = testenv::shared();
    let ns = cp.namespace("diff-viewer");
    let repo = setup(&ns);
    kubectl(
        &ns,
        &[
            "patch",
            "configmap/cm-value",
            "--type=merge",
            "-p",
            r#"{"data":{"key":"changed"}}"#,
        ],
        None,
    );
    let cache = tempfile::tempdir().unwrap();
    let kc = cp.kubeconfig.display().to_string();
    let ran = run(kubectl_gitops(&[
        "diff",
        "--kubeconfig",
        &kc,
        "--context",
        testenv::VIEWER_CONTEXT,
        "-n",
        &ns,
        "configmaps",
        "-o",
        "json",
    ])
    .env("XDG_CACHE_HOME", cache.path())
    .current_dir(repo.path()));
    assert_eq!(ran.code, Some(1), "drift found: {}", ran.stderr);
    assert_eq!(
        ran.stderr
            .matches("warning: dry runs are forbidden")
            .count(),
        1,
        "said once: {}",
        ran.stderr
    );
    let doc = report(&ran);
    let items = by_name(&doc);
    assert_eq!(items["cm-value"]["status"], "drifted");
    assert_eq!(items["cm-value"]["verdict"], "offline");
}

#[test]
fn dash_f_limits_the_scope_to_what_a_file_declares() {
    let cp = testenv::shared();
    let ns = cp.namespace("diff-file");
    let repo = setup(&ns);
    kubectl(&ns, &["delete", "configmap/cm-deleted"], None);
    let cache = tempfile::tempdir().unwrap();
    let ran = diff(
        &ns,
        &repo,
        cache.path(),
        &["-f", "apps/config.yaml", "-o", "json"],
    );
    assert_eq!(ran.code, Some(1), "missing is drift: {}", ran.stderr);
    let doc = report(&ran);
    let items = by_name(&doc);
    assert_eq!(
        items.len(),
        6,
        "only the ConfigMaps of that file: {:?}",
        items.keys()
    );
    assert_eq!(items["cm-deleted"]["status"], "missing");
    assert_eq!(items["cm-deleted"]["source"]["file"], "apps/config.yaml");
    assert_eq!(items["cm-clean"]["status"], "in-sync");
}

#[test]
fn ignore_rules_are_applied_and_counted() {
    let cp = testenv::shared();
    let ns = cp.namespace("diff-ignore");
    let mut repo = setup(&ns);
    repo.write(
        ".kubectl-gitops.yaml",
        "ignore:\n  - kind: ConfigMap\n    name: cm-value\n    jsonPointers: [/data/key]\n",
    );
    repo.commit(ALICE, "Ignore cm-value's key");
    kubectl(
        &ns,
        &[
            "patch",
            "configmap/cm-value",
            "--type=merge",
            "-p",
            r#"{"data":{"key":"changed"}}"#,
        ],
        None,
    );
    kubectl(&ns, &["scale", "deployment/d-scale", "--replicas=7"], None);
    let cache = tempfile::tempdir().unwrap();
    let ran = diff(
        &ns,
        &repo,
        cache.path(),
        &["--ignore", "Deployment:/spec/replicas", "-o", "json"],
    );
    assert_eq!(
        ran.code,
        Some(0),
        "everything left is ignored: {}",
        ran.stderr
    );
    let doc = report(&ran);
    assert_eq!(doc["summary"]["drifted"], 0);
    assert_eq!(
        doc["summary"]["ignoredFields"], 2,
        "ignored drift is counted: {:#}",
        doc["summary"]
    );
    let items = by_name(&doc);
    assert_eq!(items["cm-value"]["ignored"][0]["path"], ".data.key");
    assert_eq!(
        items["d-scale"]["ignored"][0]["ignoredBy"],
        "Deployment /spec/replicas"
    );
    let ran = diff(
        &ns,
        &repo,
        cache.path(),
        &["--ignore", "Deployment:/spec/replicas", "--show-ignored"],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stdout
            .contains("(2 ignored fields; --show-ignored lists them)"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("Always ignored:") && ran.stdout.contains("/metadata/managedFields")
    );
    assert!(
        ran.stdout
            .contains("d-scale .spec.replicas (Deployment /spec/replicas)"),
        "{}",
        ran.stdout
    );
}

#[test]
fn a_server_that_dies_mid_run_gives_a_clear_error() {
    use std::io::BufRead;
    // A control plane of this test's own, so that killing it harms no other test.
    let dir = tempfile::tempdir().unwrap();
    let cp =
        testenv::ControlPlane::start(&dir.path().join("cp"), testenv::Lifetime::TiedToThisProcess)
            .unwrap();
    let run_kubectl = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&cp.kubeconfig)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        assert!(
            child.wait_with_output().unwrap().status.success(),
            "kubectl {args:?}"
        );
    };
    run_kubectl(&["create", "namespace", "dies"], "");
    // Many drifted objects and one dry run at a time: the dry runs are still going when the
    // server dies, whatever the machine's speed.
    let many = |value: &str| -> String {
        (0..100)
            .map(|i| {
                format!(
                    "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:03}\ndata:\n  key: {value}\n"
                )
            })
            .collect()
    };
    let mut repo = GitRepo::new();
    repo.write("apps/config.yaml", &many("value"));
    repo.commit(ALICE, "Config");
    let stamped = run(kubectl_gitops(&["stamp", "apps"]).current_dir(repo.path()));
    run_kubectl(
        &["apply", "--server-side", "-n", "dies", "-f", "-"],
        &stamped.stdout,
    );
    run_kubectl(
        &[
            "apply",
            "--server-side",
            "--field-manager=someone",
            "--force-conflicts",
            "-n",
            "dies",
            "-f",
            "-",
        ],
        &many("changed"),
    );

    let cache = tempfile::tempdir().unwrap();
    let kc = cp.kubeconfig.display().to_string();
    let mut child = kubectl_gitops(&[
        "diff",
        "--kubeconfig",
        &kc,
        "-n",
        "dies",
        "-v=2",
        "--concurrency=1",
        "--request-timeout=10s",
    ])
    .env("XDG_CACHE_HOME", cache.path())
    .current_dir(repo.path())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    // Once the ConfigMaps are listed (their dry runs begin), the API server dies.
    for line in lines.by_ref() {
        let line = line.unwrap();
        let listed = line.contains("listed configmaps");
        seen.push(line);
        if listed {
            let apiserver = cp.pids()[1].to_string();
            assert!(
                std::process::Command::new("kill")
                    .args(["-9", &apiserver])
                    .status()
                    .unwrap()
                    .success()
            );
            break;
        }
    }
    seen.extend(lines.map(|l| l.unwrap()));
    let started = std::time::Instant::now();
    let status = child.wait().unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "no hang"
    );
    assert_eq!(status.code(), Some(2), "{seen:#?}");
    let errors: Vec<&String> = seen.iter().filter(|l| l.starts_with("error: ")).collect();
    assert!(!errors.is_empty(), "{seen:#?}");
    assert!(
        errors
            .iter()
            .all(|l| l.contains("cannot connect to") || l.contains("did not answer")),
        "clear messages: {errors:#?}"
    );
    assert!(!seen.iter().any(|l| l.contains("panicked")), "{seen:#?}");
    let _ = std::process::Command::new("kill")
        .args(["-9", &cp.pids()[0].to_string()])
        .status();
}
