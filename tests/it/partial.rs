//! A render reads only what its kustomizations refer to: in a partial clone
//! (`--filter=blob:none`, sparse checkout) the blobs outside the cone are not there, and an
//! object that does not need them is still compared. One that does is an error of its own.

use serde_json::Value;

use crate::fixture::{ALICE, GitRepo, git};
use crate::support::{kubectl, kubectl_gitops, reconciled_by_flux, run};

const BASE_DEPLOY: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27
";

/// Regression: the render exported the whole tree at the commit, so one blob that could not be
/// read anywhere in the repository made every object of the run an error.
#[test]
fn a_partial_clone_renders_what_its_cone_holds() {
    let cp = testenv::shared();
    let ns = cp.namespace("partial");
    let mut origin = GitRepo::new();
    origin
        .write("bases/web/kustomization.yaml", "resources: [deploy.yaml]\n")
        .write("bases/web/deploy.yaml", BASE_DEPLOY)
        .write(
            "deploy/kustomization.yaml",
            "resources: [../bases/web, settings.yaml]\n\
             images:\n- name: nginx\n  newTag: '1.28'\n\
             configMapGenerator:\n- name: web-env\n  envs: [web.env]\n",
        )
        .write(
            "deploy/settings.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  level: info\n",
        )
        .write("deploy/web.env", "MODE=edge\n")
        .write(
            "other/team.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: team\ndata:\n  owner: other\n",
        );
    for i in 0..20 {
        origin.write(
            &format!("elsewhere/app-{i}.yaml"),
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: far-{i}}}\n"),
        );
    }
    let applied = origin.commit(ALICE, "A monorepo");
    origin.git(&["config", "uploadpack.allowFilter", "true"]);

    // Real Flux reconciles deploy/; `team` is applied by a pipeline, stamped.
    assert_eq!(reconciled_by_flux(&ns, &origin, "./deploy"), applied);
    let stamped = run(kubectl_gitops(&["stamp", "other"]).current_dir(origin.path()));
    assert_eq!(stamped.code, Some(0), "{}", stamped.stderr);
    kubectl(
        &ns,
        &["apply", "--server-side", "-f", "-"],
        Some(&stamped.stdout),
    );

    // A partial clone whose sparse cone holds the render's paths, not `other/` or `elsewhere/`.
    let clones = tempfile::tempdir().unwrap();
    git(
        clones.path(),
        &[
            "clone",
            "-q",
            "--filter=blob:none",
            "--no-checkout",
            &origin.url(),
            "mono",
        ],
    );
    let clone = clones.path().join("mono");
    git(
        &clone,
        &[
            "sparse-checkout",
            "set",
            "--no-cone",
            "/deploy/",
            "/bases/",
            "/shared/",
        ],
    );
    git(&clone, &["checkout", "-q", "main"]);
    let missing = git(
        &clone,
        &["rev-list", "--objects", "--missing=print", "HEAD"],
    );
    let missing: Vec<&str> = missing.lines().filter(|l| l.starts_with('?')).collect();
    assert_eq!(
        missing.len(),
        21,
        "the clone lacks other/ and elsewhere/: {missing:?}"
    );

    let kc = cp.kubeconfig.display().to_string();
    let cache = tempfile::tempdir().unwrap();
    let checkout = clone.display().to_string();
    for mode in ["false", "auto", "true"] {
        let ran = run(kubectl_gitops(&[
            "diff",
            "--kubeconfig",
            &kc,
            "-n",
            &ns,
            "--repo",
            &checkout,
            &format!("--server-side={mode}"),
            "-o",
            "json",
        ])
        .env("XDG_CACHE_HOME", cache.path()));
        // `team` needs a blob the clone does not have: its error, and only its.
        assert_eq!(ran.code, Some(2), "{mode}: {}\n{}", ran.stdout, ran.stderr);
        let report: Value = serde_json::from_str(&ran.stdout).unwrap();
        let status = |name: &str| {
            report["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["object"]["name"] == name)
                .map(|i| i["status"].clone())
        };
        for name in ["web", "settings"] {
            assert_eq!(
                status(name),
                Some("in-sync".into()),
                "{mode} {name}: {report:#}"
            );
        }
        assert!(
            report["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["object"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("web-env-"))
                    && i["status"] == "in-sync"),
            "{mode}: the generated ConfigMap: {report:#}"
        );
        assert_eq!(status("team"), Some("error".into()), "{mode}: {report:#}");
        assert!(
            ran.stderr.contains("cannot read 'other/team.yaml'"),
            "{mode}: {}",
            ran.stderr
        );
        assert_eq!(report["summary"]["errors"], 1, "{mode}: {report:#}");
    }
}
