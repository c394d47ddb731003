//! `kubectl gitops revert` on the real control plane: every out-of-band change of the diff list
//! is put back and owned by the reconciler again; a concurrent change is a conflict and is kept;
//! `--dry-run` and a refused confirmation write nothing (the audit log says so); a user without
//! patch rights is told per object; the prompt works in a real terminal (tmux).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::{ALICE, GitRepo};
use crate::support::{Ran, kubectl, kubectl_gitops, reconciled_by_flux, run};

const PLANTED: &str = "planted-Secret-value-9c2e";

fn deployment(name: &str) -> String {
    crate::fixture::sized_deployment(name, 2)
}

const DEPLOYMENTS: &[&str] = &[
    "d-clean",
    "d-scale",
    "d-image",
    "d-env",
    "d-resources",
    "d-sidecar",
];

fn configmaps() -> String {
    ["cm-clean", "cm-label", "cm-value", "cm-remove", "cm-deleted"]
        .iter()
        .map(|name| {
            format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: value\n  gone: soon\n"
            )
        })
        .collect()
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

fn files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = DEPLOYMENTS
        .iter()
        .map(|name| (format!("{name}.yaml"), deployment(name)))
        .collect();
    files.push(("config.yaml".into(), configmaps()));
    files.push(("services.yaml".into(), SERVICES.into()));
    files.push((
        "secret.yaml".into(),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: sec-value\nstringData:\n  password: {PLANTED}\n  user: admin\n"
        ),
    ));
    files
}

/// The objects applied with `stamp | kubectl apply --server-side` (the reconciler's manager is
/// `kubectl`).
fn stamped(ns: &str) -> GitRepo {
    let mut repo = GitRepo::new();
    for (path, text) in files() {
        repo.write(&format!("apps/{path}"), &text);
    }
    repo.commit(ALICE, "Apps");
    let stamped = run(kubectl_gitops(&["stamp", "apps"]).current_dir(repo.path()));
    assert_eq!(stamped.code, Some(0), "{}", stamped.stderr);
    kubectl(
        ns,
        &["apply", "--server-side", "-f", "-"],
        Some(&stamped.stdout),
    );
    repo
}

/// The objects applied by real Flux: a Kustomization `apps` Ready at the commit.
fn flux(ns: &str) -> GitRepo {
    let mut repo = GitRepo::new();
    for (path, text) in &files() {
        repo.write(&format!("deploy/{path}"), text);
    }
    let applied = repo.commit(ALICE, "Apps");
    assert_eq!(reconciled_by_flux(ns, &repo, "./deploy"), applied);
    repo
}

/// Every out-of-band change of the diff list, made with real kubectl commands.
fn change_out_of_band(ns: &str) {
    kubectl(ns, &["scale", "deployment/d-scale", "--replicas=5"], None);
    kubectl(
        ns,
        &["set", "image", "deployment/d-image", "web=nginx:1.28"],
        None,
    );
    kubectl(ns, &["set", "env", "deployment/d-env", "FOO=bar"], None);
    kubectl(
        ns,
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
        ns,
        &[
            "patch",
            "deployment/d-sidecar",
            "--type=strategic",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.36"}]}}}}"#,
        ],
        None,
    );
    kubectl(ns, &["label", "configmap/cm-label", "team=payments"], None);
    kubectl(
        ns,
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
        ns,
        &[
            "patch",
            "configmap/cm-remove",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/data/gone"}]"#,
        ],
        None,
    );
    kubectl(ns, &["delete", "configmap/cm-deleted"], None);
    kubectl(
        ns,
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
        ns,
        &["annotate", "service/svc-annotate", "note=hand-made"],
        None,
    );
    kubectl(
        ns,
        &[
            "patch",
            "secret/sec-value",
            "--type=merge",
            "-p",
            r#"{"stringData":{"password":"changed-by-hand"}}"#,
        ],
        None,
    );
}

/// `kubectl gitops ARGS --kubeconfig <admin> -n NS`, from the repository's checkout.
fn gitops(ns: &str, repo: &GitRepo, cache: &Path, args: &[&str]) -> Ran {
    let kc = testenv::shared().kubeconfig.display().to_string();
    let mut all = args.to_vec();
    all.extend(["--kubeconfig", kc.as_str(), "-n", ns]);
    run(kubectl_gitops(&all)
        .env("XDG_CACHE_HOME", cache)
        .current_dir(repo.path())
        .stdin(std::process::Stdio::null()))
}

fn json(ran: &Ran) -> Value {
    serde_json::from_str(&ran.stdout).unwrap_or_else(|e| {
        panic!(
            "-o json: {e}\nstdout: {}\nstderr: {}",
            ran.stdout, ran.stderr
        )
    })
}

fn by_name(doc: &Value) -> std::collections::BTreeMap<String, Value> {
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["object"]["name"].as_str().unwrap().to_owned(), i.clone()))
        .collect()
}

/// The live object, managedFields included; None when it does not exist.
fn live(ns: &str, what: &str) -> Option<Value> {
    let out = testenv::shared()
        .kubectl()
        .args(["-n", ns, "get", what, "-o", "json", "--show-managed-fields"])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// The managers (manager, operation) whose FieldsV1 lists `path` (`f:`/`k:` elements).
fn owners(object: &Value, path: &[&str]) -> Vec<(String, String)> {
    object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            let mut here = &e["fieldsV1"];
            path.iter().all(|p| {
                here = &here[*p];
                !here.is_null()
            })
        })
        .map(|e| {
            (
                e["manager"].as_str().unwrap().to_owned(),
                e["operation"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[track_caller]
fn assert_owned_by(object: &Value, path: &[&str], manager: &str) {
    let owners = owners(object, path);
    assert_eq!(
        owners,
        [(manager.to_owned(), "Apply".to_owned())],
        "{} {path:?}: {:#}",
        object["metadata"]["name"],
        object["metadata"]["managedFields"]
    );
}

const WEB: &str = r#"k:{"name":"web"}"#;

#[test]
fn every_out_of_band_change_is_put_back_and_owned_by_the_reconciler_again() {
    let ns = testenv::shared().namespace("revert-flux");
    let repo = flux(&ns);
    change_out_of_band(&ns);
    let cache = tempfile::tempdir().unwrap();

    let ran = gitops(
        &ns,
        &repo,
        cache.path(),
        &["revert", "--all", "--yes", "-o", "json"],
    );
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stderr, ran.stdout);
    for text in [&ran.stdout, &ran.stderr] {
        assert!(
            !text.contains(PLANTED) && !text.contains("changed-by-hand"),
            "a Secret value leaked: {text}"
        );
    }
    assert!(
        ran.stderr
            .contains(&format!("note: Kustomization {ns}/apps"))
            && ran.stderr.contains("is active"),
        "{}",
        ran.stderr
    );
    let doc = json(&ran);
    assert_eq!(doc["kind"], "RevertReport");
    assert_eq!(doc["dryRun"], false);
    let items = by_name(&doc);
    let changed = [
        "d-scale",
        "d-image",
        "d-env",
        "d-resources",
        "d-sidecar",
        "cm-label",
        "cm-value",
        "cm-remove",
        "cm-deleted",
        "svc-port",
        "svc-annotate",
        "sec-value",
    ];
    assert_eq!(
        items.keys().collect::<Vec<_>>().len(),
        changed.len(),
        "only drifted and missing objects: {:?}",
        items.keys()
    );
    for name in changed {
        assert_eq!(
            items[name]["result"], "reverted",
            "{name}: {:#}",
            items[name]
        );
        assert_eq!(items[name]["fieldManager"], "kustomize-controller");
    }
    assert_eq!(items["cm-deleted"]["action"], "create");
    assert_eq!(items["cm-label"]["removed"][0], ".metadata.labels.team");
    assert_eq!(items["sec-value"]["fields"][0]["git"], "(hidden git value)");

    // diff: nothing left.
    let diff = gitops(&ns, &repo, cache.path(), &["diff", "-o", "json"]);
    let report = json(&diff);
    assert_eq!(diff.code, Some(0), "{}\n{:#}", diff.stderr, report["items"]);
    assert_eq!(report["summary"]["inSync"], 14, "{:#}", report["summary"]);

    // Each reverted field is kustomize-controller's again, and no one else's.
    let kc = "kustomize-controller";
    let get = |what: &str| live(&ns, what).unwrap_or_else(|| panic!("{what} exists"));
    let d = get("deployment/d-scale");
    assert_eq!(d["spec"]["replicas"], 2);
    assert_owned_by(&d, &["f:spec", "f:replicas"], kc);
    let containers = ["f:spec", "f:template", "f:spec", "f:containers", WEB];
    let d = get("deployment/d-image");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert_owned_by(&d, &[&containers[..], &["f:image"]].concat(), kc);
    let d = get("deployment/d-env");
    assert!(d["spec"]["template"]["spec"]["containers"][0]["env"].is_null());
    assert!(owners(&d, &[&containers[..], &["f:env"]].concat()).is_empty());
    let d = get("deployment/d-resources");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"],
        "1"
    );
    assert_owned_by(
        &d,
        &[&containers[..], &["f:resources", "f:limits", "f:cpu"]].concat(),
        kc,
    );
    let d = get("deployment/d-sidecar");
    let names: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web"]);
    let cm = get("configmap/cm-label");
    assert!(cm["metadata"]["labels"]["team"].is_null());
    assert_eq!(
        cm["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"], "apps",
        "Flux's own labels are kept"
    );
    let cm = get("configmap/cm-value");
    assert_eq!(cm["data"]["key"], "value");
    assert_owned_by(&cm, &["f:data", "f:key"], kc);
    let cm = get("configmap/cm-remove");
    assert_eq!(cm["data"]["gone"], "soon");
    assert_owned_by(&cm, &["f:data", "f:gone"], kc);
    let cm = get("configmap/cm-deleted");
    assert_owned_by(&cm, &["f:data", "f:key"], kc);
    assert_eq!(
        cm["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"],
        "apps"
    );
    let svc = get("service/svc-port");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_owned_by(
        &svc,
        &[
            "f:spec",
            "f:ports",
            r#"k:{"port":80,"protocol":"TCP"}"#,
            "f:targetPort",
        ],
        kc,
    );
    let svc = get("service/svc-annotate");
    assert!(svc["metadata"]["annotations"]["note"].is_null());
    let secret = get("secret/sec-value");
    assert_eq!(
        secret["data"]["password"],
        kubectl_gitops::drift::base64(PLANTED.as_bytes())
    );
    // kustomize-controller applies a Secret's stringData as data.
    assert_owned_by(&secret, &["f:data", "f:password"], kc);
}

#[test]
fn named_objects_are_reverted_and_a_deleted_one_created_again() {
    let ns = testenv::shared().namespace("revert-named");
    let repo = stamped(&ns);
    change_out_of_band(&ns);
    let cache = tempfile::tempdir().unwrap();
    let ran = gitops(
        &ns,
        &repo,
        cache.path(),
        &[
            "revert",
            "deploy/d-scale",
            "configmap/cm-deleted",
            "cm/cm-clean",
            "--yes",
        ],
    );
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stderr, ran.stdout);
    assert!(
        ran.stdout.contains(&format!(
            "Deployment.apps {ns}/d-scale reverted: applied as kubectl: .spec.replicas"
        )),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains(&format!(
            "ConfigMap {ns}/cm-deleted reverted: created again as kubectl"
        )),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains(&format!(
            "ConfigMap {ns}/cm-clean unchanged: already as Git says"
        )),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .ends_with("2 reverted, 1 unchanged, 0 conflict, 0 failed, 0 skipped\n"),
        "{}",
        ran.stdout
    );
    // Only the named objects were touched.
    assert_eq!(
        live(&ns, "configmap/cm-value").unwrap()["data"]["key"],
        "changed"
    );
    // The recreated object carries the stamp, so diff finds it in sync.
    let diff = gitops(
        &ns,
        &repo,
        cache.path(),
        &[
            "diff",
            "deploy/d-scale",
            "configmap/cm-deleted",
            "-o",
            "json",
        ],
    );
    assert_eq!(diff.code, Some(0), "{}\n{}", diff.stderr, diff.stdout);
    assert_eq!(json(&diff)["summary"]["inSync"], 2);
    let cm = live(&ns, "configmap/cm-deleted").unwrap();
    assert_eq!(
        cm["metadata"]["annotations"]["kubectl-gitops.dev/path"],
        "apps/config.yaml"
    );

    // Usage mistakes: one line, nothing written.
    let ran = gitops(&ns, &repo, cache.path(), &["revert", "configmaps", "--yes"]);
    assert!(
        ran.assert_one_line_error()
            .contains("revert needs TYPE/NAME, got 'configmaps'"),
        "{}",
        ran.stderr
    );
    let ran = gitops(&ns, &repo, cache.path(), &["revert", "cm/nowhere", "--yes"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("error: cm/nowhere: not found in namespace"),
        "{}",
        ran.stderr
    );
}

/// A suspended Kustomization: a warning, as nothing will keep the objects in line after. (It
/// stays suspended: resuming it makes kustomize-controller correct the drift itself.)
#[test]
fn reverting_under_a_suspended_kustomization_warns() {
    let ns = testenv::shared().namespace("revert-suspended");
    let repo = flux(&ns);
    kubectl(
        &ns,
        &[
            "patch",
            "kustomization/apps",
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":true}}"#,
        ],
        None,
    );
    kubectl(&ns, &["label", "configmap/cm-label", "team=payments"], None);
    let cache = tempfile::tempdir().unwrap();
    let ran = gitops(&ns, &repo, cache.path(), &["revert", "--all", "--dry-run"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains(&format!("warning: Kustomization {ns}/apps"))
            && ran.stderr.contains("is suspended"),
        "{}",
        ran.stderr
    );
    assert!(ran.stdout.contains("cm-label"), "{}", ran.stdout);
}

#[test]
fn a_field_a_controller_owns_is_left_alone_and_said() {
    let ns = testenv::shared().namespace("revert-hpa");
    let repo = stamped(&ns);
    // An HorizontalPodAutoscaler scales through the scale subresource as
    // kube-controller-manager; someone also changed the image.
    kubectl(
        &ns,
        &[
            "patch",
            "deployment/d-scale",
            "--subresource=scale",
            "--field-manager=kube-controller-manager",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":4}}"#,
        ],
        None,
    );
    kubectl(
        &ns,
        &["set", "image", "deployment/d-scale", "web=nginx:1.28"],
        None,
    );
    let cache = tempfile::tempdir().unwrap();
    let ran = gitops(
        &ns,
        &repo,
        cache.path(),
        &["revert", "deployment/d-scale", "--yes", "-o", "json"],
    );
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stderr, ran.stdout);
    assert!(
        ran.stderr
            .contains(".spec.replicas is left to kube-controller-manager"),
        "{}",
        ran.stderr
    );
    let item = &json(&ran)["items"][0];
    assert_eq!(item["result"], "reverted");
    assert_eq!(item["held"][0]["path"], ".spec.replicas");
    assert_eq!(item["held"][0]["manager"], "kube-controller-manager");
    let d = live(&ns, "deployment/d-scale").unwrap();
    assert_eq!(d["spec"]["replicas"], 4, "the controller's value is kept");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
}

#[test]
fn a_concurrent_change_is_a_conflict_and_is_kept() {
    let cp = testenv::shared();
    let ns = cp.namespace("revert-race");
    let repo = stamped(&ns);
    change_out_of_band(&ns);
    let cache = tempfile::tempdir().unwrap();
    // Test-only hook: after planning, cm-value changes again and d-env is deleted; after
    // d-sidecar's apply and before its JSON patch, d-sidecar changes.
    let kubectl_admin = format!(
        "kubectl --kubeconfig '{}' -n {ns}",
        cp.admin_kubeconfig().display()
    );
    let hook = format!(
        "case \"$1:$2\" in
           planned:) {kubectl_admin} patch configmap/cm-value --type=merge -p '{{\"data\":{{\"key\":\"concurrent\"}}}}' >/dev/null
                     {kubectl_admin} delete deployment/d-env >/dev/null ;;
           applied:d-sidecar) {kubectl_admin} annotate deployment/d-sidecar concurrent=yes >/dev/null ;;
         esac"
    );
    let kc = cp.kubeconfig.display().to_string();
    let ran = run(kubectl_gitops(&[
        "revert",
        "--all",
        "--yes",
        "-o",
        "json",
        "--kubeconfig",
        &kc,
        "-n",
        &ns,
    ])
    .env("XDG_CACHE_HOME", cache.path())
    .env("KUBECTL_GITOPS_TEST_HOOK", &hook)
    .current_dir(repo.path())
    .stdin(std::process::Stdio::null()));
    assert_eq!(ran.code, Some(2), "{}\n{}", ran.stderr, ran.stdout);
    let doc = json(&ran);
    let items = by_name(&doc);
    assert_eq!(
        items["cm-value"]["result"], "conflict",
        "{:#}",
        items["cm-value"]
    );
    assert!(
        items["cm-value"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing written"),
        "{:#}",
        items["cm-value"]
    );
    assert_eq!(
        live(&ns, "configmap/cm-value").unwrap()["data"]["key"],
        "concurrent",
        "the concurrent change is kept"
    );
    // Deleted in that window: not created again behind the deleter's back.
    assert_eq!(items["d-env"]["result"], "conflict", "{:#}", items["d-env"]);
    assert!(
        items["d-env"]["message"]
            .as_str()
            .unwrap()
            .starts_with("deleted since it was read"),
        "{:#}",
        items["d-env"]
    );
    assert!(live(&ns, "deployment/d-env").is_none());
    // Between the apply and the removal: Git's values are in, the sidecar stays, and so does
    // the concurrent annotation.
    assert_eq!(
        items["d-sidecar"]["result"], "conflict",
        "{:#}",
        items["d-sidecar"]
    );
    let d = live(&ns, "deployment/d-sidecar").unwrap();
    assert_eq!(d["metadata"]["annotations"]["concurrent"], "yes");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Everything else was reverted.
    for (name, item) in &items {
        if !["cm-value", "d-sidecar", "d-env"].contains(&name.as_str()) {
            assert_eq!(item["result"], "reverted", "{name}: {item:#}");
        }
    }
    assert_eq!(doc["summary"]["conflict"], 3);
    // Run again: the conflicts are resolved against the new versions (d-env is missing now:
    // created again).
    let ran = gitops(&ns, &repo, cache.path(), &["revert", "--all", "--yes"]);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stderr, ran.stdout);
    let diff = gitops(&ns, &repo, cache.path(), &["diff", "-o", "json"]);
    assert_eq!(diff.code, Some(0), "{}\n{}", diff.stderr, diff.stdout);
}

#[test]
fn dry_run_and_a_missing_confirmation_write_nothing() {
    let cp = testenv::shared();
    let ns = cp.namespace("revert-dry");
    let repo = stamped(&ns);
    change_out_of_band(&ns);
    let cache = tempfile::tempdir().unwrap();
    let before = live(&ns, "configmap/cm-value").unwrap();

    let ran = gitops(
        &ns,
        &repo,
        cache.path(),
        &["revert", "--all", "--dry-run", "-o", "json"],
    );
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stderr, ran.stdout);
    let doc = json(&ran);
    assert_eq!(doc["dryRun"], true);
    assert_eq!(doc["summary"]["reverted"], 12, "{:#}", doc["summary"]);

    // No --yes, stdin not a terminal: refused after the diff, nothing written.
    let ran = gitops(&ns, &repo, cache.path(), &["revert", "--all"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stdout.contains("@@ .data.key @@"),
        "the diff is shown: {}",
        ran.stdout
    );
    let last = ran.stderr.lines().last().unwrap();
    assert_eq!(
        last,
        "error: not reverting 12 objects without confirmation: stdin is not a terminal; pass \
         --yes to revert, or --dry-run to try it (nothing was written)"
    );

    // The audit log: our writes (patch, create, update, delete) in this namespace were all
    // dry runs.
    let ours = |e: &Value| {
        e["userAgent"]
            .as_str()
            .is_some_and(|ua| ua.starts_with("kubectl-gitops/"))
            && e["objectRef"]["namespace"] == ns.as_str()
    };
    let writes = cp
        .audit_events_matching(|e| {
            ours(e)
                && matches!(
                    e["verb"].as_str(),
                    Some("patch" | "create" | "update" | "delete")
                )
        })
        .unwrap();
    assert!(!writes.is_empty(), "the dry run sent its steps");
    for w in &writes {
        assert!(
            w["requestURI"].as_str().unwrap().contains("dryRun=All"),
            "{w}"
        );
    }
    // The dry run tried the removal too, as a JSON patch.
    assert!(
        writes
            .iter()
            .any(|w| w["objectRef"]["name"] == "cm-label" && w["verb"] == "patch"),
        "{writes:#?}"
    );
    assert!(live(&ns, "configmap/cm-deleted").is_none());
    let after = live(&ns, "configmap/cm-value").unwrap();
    assert_eq!(
        before["metadata"]["resourceVersion"],
        after["metadata"]["resourceVersion"]
    );
}

#[test]
fn a_user_without_patch_rights_is_told_per_object_and_nothing_changes() {
    let cp = testenv::shared();
    let ns = cp.namespace("revert-viewer");
    let repo = stamped(&ns);
    change_out_of_band(&ns);
    let cache = tempfile::tempdir().unwrap();
    let versions = |names: &[&str]| -> Vec<Value> {
        names
            .iter()
            .map(|n| live(&ns, n).map_or(Value::Null, |o| o["metadata"]["resourceVersion"].clone()))
            .collect()
    };
    let watched = [
        "configmap/cm-value",
        "configmap/cm-label",
        "deployment/d-sidecar",
    ];
    let before = versions(&watched);
    let ran = gitops(
        &ns,
        &repo,
        cache.path(),
        &[
            "revert",
            "configmap/cm-value",
            "configmap/cm-label",
            "configmap/cm-deleted",
            "deployment/d-sidecar",
            "--yes",
            "--context",
            testenv::VIEWER_CONTEXT,
        ],
    );
    assert_eq!(ran.code, Some(2), "{}\n{}", ran.stderr, ran.stdout);
    for (kind, name) in [
        ("ConfigMap", "cm-value"),
        ("ConfigMap", "cm-label"),
        ("ConfigMap", "cm-deleted"),
        ("Deployment.apps", "d-sidecar"),
    ] {
        let line = ran
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{kind} {ns}/{name} ")))
            .unwrap_or_else(|| panic!("a line for {name}: {}", ran.stdout));
        assert!(
            line.contains(" failed: forbidden: ") && line.contains("cannot patch resource"),
            "{line}"
        );
    }
    assert!(
        ran.stdout
            .ends_with("0 reverted, 0 unchanged, 0 conflict, 4 failed, 0 skipped\n"),
        "{}",
        ran.stdout
    );
    assert_eq!(versions(&watched), before, "nothing half-done");
    assert!(live(&ns, "configmap/cm-deleted").is_none());
}

/// A terminal of its own (tmux on a private socket), running one command.
struct Tmux {
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    fn start(script: &str) -> Tmux {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tmux.sock");
        let path = dir.path().join("run.sh");
        std::fs::write(&path, script).unwrap();
        let status = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "200",
                "-y",
                "50",
            ])
            .arg(format!("sh {}", path.display()))
            .status()
            .unwrap();
        assert!(status.success(), "tmux starts");
        Tmux { socket, _dir: dir }
    }

    fn screen(&self) -> String {
        let out = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["capture-pane", "-p", "-J", "-S", "-200"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `text`.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(Instant::now() < deadline, "waiting for {text:?}:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn keys(&self, keys: &[&str]) {
        let status = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["send-keys", "-t", "0"])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .status();
    }
}

#[test]
fn the_prompt_works_in_a_real_terminal() {
    let cp = testenv::shared();
    let ns = cp.namespace("revert-tty");
    let repo = stamped(&ns);
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
    let home = tempfile::tempdir().unwrap();
    let script = |answer_file: &str| {
        format!(
            "unset KUBECONFIG NO_COLOR KUBERNETES_SERVICE_HOST GIT_DIR GIT_WORK_TREE
export HOME='{home}' XDG_CACHE_HOME='{cache}'
cd '{repo}'
'{bin}' revert configmap/cm-value --color=never --kubeconfig '{kc}' -n {ns}
echo \"exit=$?\" > '{answer_file}'
echo DONE
sleep 60
",
            home = home.path().display(),
            cache = cache.path().display(),
            repo = repo.path().display(),
            bin = crate::support::binary().display(),
            kc = cp.kubeconfig.display(),
        )
    };
    let question = format!(
        "Revert 1 object in context '{}'? [y/N]",
        testenv::ADMIN_CONTEXT
    );

    // No: nothing written.
    let result = home.path().join("no");
    let tty = Tmux::start(&script(&result.display().to_string()));
    let screen = tty.wait_for(&question);
    assert!(
        screen.contains("@@ .data.key @@"),
        "the diff first:\n{screen}"
    );
    tty.keys(&["n", "Enter"]);
    let screen = tty.wait_for("DONE");
    assert!(screen.contains("Nothing was written."), "{screen}");
    assert_eq!(std::fs::read_to_string(&result).unwrap().trim(), "exit=0");
    assert_eq!(
        live(&ns, "configmap/cm-value").unwrap()["data"]["key"],
        "changed"
    );
    drop(tty);

    // Yes: reverted.
    let result = home.path().join("yes");
    let tty = Tmux::start(&script(&result.display().to_string()));
    tty.wait_for(&question);
    tty.keys(&["y", "Enter"]);
    let screen = tty.wait_for("DONE");
    assert!(
        screen.contains(&format!("ConfigMap {ns}/cm-value reverted")),
        "{screen}"
    );
    assert_eq!(std::fs::read_to_string(&result).unwrap().trim(), "exit=0");
    assert_eq!(
        live(&ns, "configmap/cm-value").unwrap()["data"]["key"],
        "value"
    );
}
