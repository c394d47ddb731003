//! Discovery is cached on disk for ten minutes; a type that appeared since (a CRD just
//! installed) must still be found: the cache is read again from the server on a miss, as
//! kubectl does.

use serde_json::Value;

use crate::fixture::{ALICE, GitRepo};
use crate::support::{kubectl_gitops, run};

/// A control plane of the test's own: a CRD made on the shared one would be in scope of every
/// other test's `diff`. Stopped when the returned guard is dropped.
fn private_control_plane() -> (testenv::ControlPlane, StopOnDrop) {
    let dir = tempfile::tempdir().unwrap().keep();
    let cp = testenv::ControlPlane::start(&dir.join("cp"), testenv::Lifetime::TiedToThisProcess)
        .expect("starting a control plane of the test's own");
    (cp, StopOnDrop(dir))
}

/// Regression: a TYPE argument of a CRD made after the last run's discovery was cached was
/// "the server doesn't have a resource type" until the cache expired.
#[test]
fn a_type_installed_after_discovery_was_cached_is_found() {
    let (cp, _stop) = private_control_plane();
    let ns = "gadgets".to_owned();
    cp.kubectl_run(&["create", "namespace", &ns], None).unwrap();
    let group = "gadgets.example.com";
    let kc = cp.kubeconfig.display().to_string();
    let cache = tempfile::tempdir().unwrap();
    let gitops = |args: &[&str]| {
        let mut full = args.to_vec();
        full.extend(["--kubeconfig", &kc, "-n", &ns]);
        run(kubectl_gitops(&full).env("XDG_CACHE_HOME", cache.path()))
    };
    // A first run caches discovery.
    let ran = gitops(&["diff", "configmaps"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);

    let crd = format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
         metadata: {{name: gadgets.{group}}}\n\
         spec:\n  group: {group}\n  scope: Namespaced\n\
         \x20 names: {{plural: gadgets, singular: gadget, kind: Gadget, shortNames: [gdg]}}\n\
         \x20 versions:\n  - name: v1\n    served: true\n    storage: true\n\
         \x20   schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}\n"
    );
    cp.kubectl_run(&["apply", "-f", "-"], Some(&crd)).unwrap();
    cp.kubectl_run(
        &[
            "wait",
            "--for=condition=Established",
            &format!("crd/gadgets.{group}"),
        ],
        None,
    )
    .unwrap();
    let mut repo = GitRepo::new();
    repo.write(
        "apps/gadget.yaml",
        &format!("apiVersion: {group}/v1\nkind: Gadget\nmetadata:\n  name: one\nsize: 3\n"),
    );
    repo.commit(ALICE, "A gadget");
    let stamped = run(kubectl_gitops(&["stamp", "apps"]).current_dir(repo.path()));
    assert_eq!(stamped.code, Some(0), "{}", stamped.stderr);
    cp.kubectl_run(
        &["apply", "--server-side", "-n", &ns, "-f", "-"],
        Some(&stamped.stdout),
    )
    .unwrap();

    // Within the cache's ten minutes: TYPE arguments, in diff and blame.
    let ran = gitops(&["diff", "gdg", "-o", "json"]);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    let report: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(report["items"][0]["object"]["name"], "one", "{report}");
    assert_eq!(report["items"][0]["status"], "in-sync", "{report}");
    let ran = gitops(&["blame", "gadget/one"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stdout.contains("apps/gadget.yaml:5"), "{}", ran.stdout);
    // A type that does not exist is still an error, said once.
    let ran = gitops(&["diff", "nosuchthings"]);
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr
            .contains("the server doesn't have a resource type \"nosuchthings\""),
        "{}",
        ran.stderr
    );
}

/// Regression: install the Flux CRDs on a cluster that did not have them, then run `diff`
/// within ten minutes of a run against that cluster: every Flux object failed with "Flux labels
/// on a cluster without the Kustomization CRD is not supported yet". On a control plane of its
/// own, since the shared one has the CRDs from the first test that needs them.
#[test]
fn flux_objects_map_once_the_flux_crds_appear() {
    let mut repo = GitRepo::new();
    let checkout = repo.path().display().to_string();
    let (cp, _stop) = private_control_plane();
    let kc = cp.kubeconfig.display().to_string();
    let cache = tempfile::tempdir().unwrap();
    let gitops = |args: &[&str]| {
        let mut full = args.to_vec();
        full.extend(["--kubeconfig", &kc, "-n", "flux-apps", "--repo", &checkout]);
        run(kubectl_gitops(&full).env("XDG_CACHE_HOME", cache.path()))
    };
    repo.write(
        "deploy/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  level: info\n",
    );
    let applied = repo.commit(ALICE, "Settings");
    cp.kubectl_run(&["create", "namespace", "flux-apps"], None)
        .unwrap();
    cp.kubectl_run(
        &["apply", "--server-side", "--field-manager=kustomize-controller", "-n", "flux-apps", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  labels:\n    \
             kustomize.toolkit.fluxcd.io/name: apps\n    kustomize.toolkit.fluxcd.io/namespace: flux-apps\n\
             data:\n  level: info\n",
        ),
    )
    .unwrap();

    // Without the CRD: an error that names it, and says what it means for the object.
    let ran = gitops(&["diff", "cm/settings"]);
    assert_eq!(ran.code, Some(2), "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr.contains(
            "Kustomization flux-apps/apps is named by the object's Flux labels, but the cluster \
             has no kustomizations.kustomize.toolkit.fluxcd.io CRD: the object cannot be mapped \
             to its source without it"
        ),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("not supported yet"), "{}", ran.stderr);

    // The CRDs appear, and Flux with them; discovery is still in the cache.
    cp.install_crds().expect("installing the Flux CRDs");
    cp.kubectl_run(
        &["apply", "--server-side", "-n", "flux-apps", "-f", "-"],
        Some(&format!(
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {{name: apps}}\n\
             spec: {{url: '{}', interval: 1m, ref: {{branch: main}}}}\n---\n\
             apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {{name: apps}}\n\
             spec: {{interval: 5m, prune: true, path: ./deploy, sourceRef: {{kind: GitRepository, name: apps}}}}\n",
            "https://git.example.com/acme/apps"
        )),
    )
    .unwrap();
    let status = serde_json::json!({"status": {"lastAppliedRevision": format!("main@sha1:{applied}"),
        "conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
                        "message": "Applied", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    cp.kubectl_run(
        &[
            "patch",
            "-n",
            "flux-apps",
            "kustomization/apps",
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ],
        None,
    )
    .unwrap();
    let ran = gitops(&["diff", "cm/settings", "-o", "json"]);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    let report: Value = serde_json::from_str(&ran.stdout).unwrap();
    let item = &report["items"][0];
    assert_eq!(item["status"], "in-sync", "{report}");
    assert_eq!(item["source"]["file"], "deploy/settings.yaml", "{report}");
}

/// Stops a control plane started in a test and removes its directory, when the test ends
/// however it ends.
struct StopOnDrop(std::path::PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = testenv::ControlPlane::stop_dir(&self.0.join("cp"));
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
