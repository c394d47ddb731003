//! `kubectl gitops blame` on the real control plane: Git lines keep their commits (checked
//! against `git blame`), out-of-band changes show their managers, defaults show as such.

use serde_json::Value;

use crate::fixture::{ALICE, BOB, GitRepo};
use crate::support::{kubectl, kubectl_gitops, reconciled_by_flux, run};

const WEB: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
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
          env:
            - {name: MODE, value: prod}
            - {name: LEVEL, value: info}
        - name: metrics
          image: prom/exporter:1
        - name: proxy
          image: envoy:1
          env:
            - {name: MODE, value: edge}
";

fn records(ns: &str, repo: &GitRepo, cache: &std::path::Path) -> (crate::support::Ran, Vec<Value>) {
    let kc = testenv::shared().kubeconfig.display().to_string();
    let ran = run(kubectl_gitops(&[
        "blame",
        "--kubeconfig",
        &kc,
        "-n",
        ns,
        "deploy/web",
        "-o",
        "json",
    ])
    .env("XDG_CACHE_HOME", cache)
    .current_dir(repo.path()));
    let records = ran
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (ran, records)
}

#[test]
fn every_line_has_its_commit_or_its_manager() {
    let cp = testenv::shared();
    let ns = cp.namespace("blame");
    let mut repo = GitRepo::new();
    repo.write("apps/web.yaml", &WEB.replace("replicas: 2", "replicas: 1"));
    repo.commit(ALICE, "Add web");
    repo.write("apps/web.yaml", WEB);
    repo.commit(BOB, "Two replicas");
    let stamped = run(kubectl_gitops(&["stamp", "apps"]).current_dir(repo.path()));
    assert_eq!(stamped.code, Some(0), "{}", stamped.stderr);
    kubectl(
        &ns,
        &["apply", "--server-side", "-f", "-"],
        Some(&stamped.stdout),
    );
    kubectl(
        &ns,
        &["set", "image", "deployment/web", "metrics=prom/exporter:2"],
        None,
    );
    kubectl(
        &ns,
        &["set", "env", "deployment/web", "-c", "proxy", "DEBUG=1"],
        None,
    );
    kubectl(&ns, &["label", "deployment/web", "team=payments"], None);
    kubectl(
        &ns,
        &[
            "patch",
            "deployment/web",
            "--type=strategic",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.36"}]}}}}"#,
        ],
        None,
    );

    let cache = tempfile::tempdir().unwrap();
    let (ran, lines) = records(&ns, &repo, cache.path());
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let find = |path: &str| -> &Value {
        lines
            .iter()
            .find(|l| l["path"] == path)
            .unwrap_or_else(|| panic!("no line for {path}: {}", ran.stdout))
    };
    // Git lines carry what `git blame` says for their source line.
    let porcelain = repo.git(&["blame", "--porcelain", "HEAD", "--", "apps/web.yaml"]);
    let blame_of = |line: usize| -> String {
        porcelain
            .lines()
            .find(|l| {
                let parts: Vec<&str> = l.split(' ').collect();
                parts.len() >= 3 && parts[0].len() == 40 && parts[2] == line.to_string()
            })
            .map(|l| l[..40].to_owned())
            .unwrap_or_else(|| panic!("git blame has line {line}"))
    };
    for (path, line) in [
        (".spec.replicas", 8),
        (".spec.template.spec.containers[name=web].image", 17),
        (
            ".spec.template.spec.containers[name=web].env[name=LEVEL].value",
            20,
        ),
        (
            ".spec.template.spec.containers[name=proxy].env[name=MODE].value",
            26,
        ),
        (".metadata.labels.app", 6),
    ] {
        let origin = &find(path)["origin"];
        assert_eq!(origin["kind"], "git", "{path}: {origin}");
        assert_eq!(origin["line"], line, "{path}");
        assert_eq!(origin["file"], "apps/web.yaml");
        assert_eq!(
            origin["commit"],
            blame_of(line).as_str(),
            "{path} against git blame"
        );
    }
    assert_eq!(find(".spec.replicas")["origin"]["author"], BOB.0);
    assert_eq!(
        find(".spec.template.spec.containers[name=web].image")["origin"]["author"],
        ALICE.0
    );
    // Exactly the changed lines are drift, with the right manager.
    for (path, manager) in [
        (
            ".spec.template.spec.containers[name=metrics].image",
            "kubectl-set",
        ),
        (
            ".spec.template.spec.containers[name=proxy].env[name=DEBUG].value",
            "kubectl-set",
        ),
        (".metadata.labels.team", "kubectl-label"),
        (
            ".spec.template.spec.containers[name=sidecar].image",
            "kubectl-patch",
        ),
    ] {
        let origin = &find(path)["origin"];
        assert_eq!(origin["kind"], "drift", "{path}: {origin}");
        assert_eq!(origin["manager"], manager, "{path}");
    }
    assert_eq!(
        find(".spec.template.spec.containers[name=metrics].name")["origin"]["kind"],
        "git"
    );
    assert_eq!(
        find(".spec.progressDeadlineSeconds")["origin"]["kind"],
        "server-default"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["apiVersion"] == "kubectl-gitops.dev/v1alpha1" && l["kind"] == "BlameLine")
    );

    // Text for people, and a second run from the blame cache.
    let kc = cp.kubeconfig.display().to_string();
    let text = run(kubectl_gitops(&[
        "blame",
        "--kubeconfig",
        &kc,
        "-n",
        &ns,
        "deploy/web",
        "--time",
        "none",
    ])
    .env("XDG_CACHE_HOME", cache.path())
    .current_dir(repo.path()));
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    let replicas = text
        .stdout
        .lines()
        .find(|l| l.ends_with("|   replicas: 2"))
        .unwrap_or_else(|| panic!("{}", text.stdout));
    assert!(
        replicas.starts_with(&blame_of(8)[..7]) && replicas.contains("Bob Builder apps/web.yaml:8"),
        "{replicas}"
    );
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("drift: kubectl-label Update") && l.ends_with("team: payments")),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("(server default)")),
        "{}",
        text.stdout
    );
}

#[test]
fn without_a_source_blame_shows_managers_and_exits_2() {
    let cp = testenv::shared();
    let ns = cp.namespace("blame-nosource");
    kubectl(&ns, &["apply", "--server-side", "-f", "-"], Some(WEB));
    let cache = tempfile::tempdir().unwrap();
    let kc = cp.kubeconfig.display().to_string();
    let ran = run(kubectl_gitops(&[
        "blame",
        "--kubeconfig",
        &kc,
        "-n",
        &ns,
        "deploy/web",
        "--time",
        "none",
    ])
    .env("XDG_CACHE_HOME", cache.path())
    .current_dir(cache.path()));
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("no source found"), "{}", ran.stderr);
    assert!(
        ran.stdout
            .lines()
            .any(|l| l.starts_with("drift: kubectl Apply") && l.ends_with("replicas: 2")),
        "{}",
        ran.stdout
    );
}

#[test]
fn a_source_file_deleted_at_head_is_said_and_exits_2() {
    let cp = testenv::shared();
    let ns = cp.namespace("blame-deleted");
    let mut repo = GitRepo::new();
    repo.write("apps/web.yaml", WEB);
    repo.commit(ALICE, "Add web");
    let stamped = run(kubectl_gitops(&["stamp", "apps"]).current_dir(repo.path()));
    kubectl(
        &ns,
        &["apply", "--server-side", "-f", "-"],
        Some(&stamped.stdout),
    );
    repo.git(&["rm", "-q", "apps/web.yaml"]);
    repo.commit(BOB, "Remove web");
    let cache = tempfile::tempdir().unwrap();
    let kc = cp.kubeconfig.display().to_string();
    let ran = run(kubectl_gitops(&[
        "blame",
        "--kubeconfig",
        &kc,
        "-n",
        &ns,
        "deploy/web",
        "--time",
        "none",
    ])
    .env("XDG_CACHE_HOME", cache.path())
    .current_dir(repo.path()));
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("no longer declares it"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stdout
            .lines()
            .any(|l| l.starts_with("drift: kubectl Apply") && l.ends_with("replicas: 2")),
        "{}",
        ran.stdout
    );
}

#[test]
fn values_from_an_overlay_patch_point_at_the_patch() {
    let cp = testenv::shared();
    cp.install_gitops_crds();
    let ns = cp.namespace("blame-patch");
    let mut repo = GitRepo::new();
    repo.write("base/kustomization.yaml", "resources: [web.yaml]\n")
        .write("base/web.yaml", WEB)
        .write(
            "overlays/prod/kustomization.yaml",
            "resources: [../../base]\npatches:\n  - path: replicas.yaml\n",
        )
        .write(
            "overlays/prod/replicas.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 5\n",
        );
    let applied = repo.commit(ALICE, "Base and prod overlay");
    assert_eq!(reconciled_by_flux(&ns, &repo, "./overlays/prod"), applied);

    let cache = tempfile::tempdir().unwrap();
    let (ran, lines) = records(&ns, &repo, cache.path());
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let origin = |path: &str| {
        lines
            .iter()
            .find(|l| l["path"] == path)
            .map(|l| l["origin"].clone())
            .unwrap_or_else(|| panic!("{path}: {}", ran.stdout))
    };
    assert_eq!(
        origin(".spec.replicas")["file"],
        "overlays/prod/replicas.yaml",
        "{}",
        ran.stdout
    );
    assert_eq!(origin(".spec.replicas")["line"], 6);
    assert_eq!(
        origin(".spec.template.spec.containers[name=web].image")["file"],
        "base/web.yaml"
    );
    assert_eq!(
        origin(".spec.template.spec.containers[name=web].image")["line"],
        17
    );
}

const CAROL: (&str, &str) = ("Carol Clerk", "carol@example.com");
const DAVE: (&str, &str) = ("Dave Deployer", "dave@example.com");
const ERIN: (&str, &str) = ("Erin Engineer", "erin@example.com");

#[test]
fn values_from_kustomize_transformers_and_generators_point_at_the_kustomization() {
    let cp = testenv::shared();
    cp.install_gitops_crds();
    let ns = cp.namespace("blame-transformers");
    let mut repo = GitRepo::new();
    let web = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
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
          image: nginx:1.25
      volumes:
        - name: settings
          configMap: {name: settings}
";
    // Each setting of the kustomization comes in its own commit, by its own author.
    let mut kustomization = format!("namespace: {ns}\nresources:\n  - web.yaml\n");
    repo.write("apps/web.yaml", web)
        .write("apps/kustomization.yaml", &kustomization);
    repo.commit(ALICE, "Add web");
    for (setting, author) in [
        ("namePrefix: prod-\n", BOB),
        ("commonLabels:\n  team: payments\n", CAROL),
        ("images:\n  - name: nginx\n    newTag: \"1.27\"\n", DAVE),
        (
            "configMapGenerator:\n  - name: settings\n    literals:\n      - MODE=prod\n      - LEVEL=info\n\
             secretGenerator:\n  - name: creds\n    literals:\n      - PASSWORD=s3cr3t-value\n",
            ERIN,
        ),
    ] {
        kustomization.push_str(setting);
        repo.write("apps/kustomization.yaml", &kustomization);
        repo.commit(author, setting.lines().next().unwrap());
    }
    // A later change to one literal: that line, and only it, moves to the new commit.
    kustomization = kustomization.replace("LEVEL=info", "LEVEL=debug");
    repo.write("apps/kustomization.yaml", &kustomization);
    let applied = repo.commit(ALICE, "Debug logging");
    assert_eq!(reconciled_by_flux(&ns, &repo, "./apps"), applied);
    // The generated names, as kustomize-controller made them.
    let names = testenv::shared()
        .kubectl_run(
            &["get", "-n", &ns, "configmaps,secrets", "-o", "name"],
            None,
        )
        .unwrap();
    let generated = |prefix: &str| -> String {
        names
            .lines()
            .filter_map(|l| l.split_once('/').map(|(_, n)| n))
            .find(|n| n.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix}* in {names}"))
            .to_owned()
    };
    let (configmap, secret) = (generated("prod-settings-"), generated("prod-creds-"));

    // The reference: what `git blame --porcelain` says of each kustomization.yaml line.
    let porcelain = repo.git(&[
        "blame",
        "--porcelain",
        "HEAD",
        "--",
        "apps/kustomization.yaml",
    ]);
    let commit_of = |line: usize| -> String {
        porcelain
            .lines()
            .find(|l| {
                let parts: Vec<&str> = l.split(' ').collect();
                parts.len() >= 3 && parts[0].len() == 40 && parts[2] == line.to_string()
            })
            .map(|l| l[..40].to_owned())
            .unwrap_or_else(|| panic!("git blame has line {line}"))
    };
    let line_of = |needle: &str| -> usize {
        kustomization
            .lines()
            .position(|l| l.trim_start() == needle)
            .unwrap_or_else(|| panic!("{needle} in {kustomization}"))
            + 1
    };
    let cache = tempfile::tempdir().unwrap();
    let kc = cp.kubeconfig.display().to_string();
    let blame = |object: &str| -> (crate::support::Ran, Vec<Value>) {
        let ran = run(kubectl_gitops(&[
            "blame",
            "--kubeconfig",
            &kc,
            "-n",
            &ns,
            object,
            "-o",
            "json",
        ])
        .env("XDG_CACHE_HOME", cache.path())
        .current_dir(repo.path()));
        assert_eq!(ran.code, Some(0), "{object}: {}", ran.stderr);
        let records = ran
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        (ran, records)
    };
    let check = |object: &str, expected: &[(&str, &str, (&str, &str))]| {
        let (ran, records) = blame(object);
        for (path, needle, author) in expected {
            let origin = &records
                .iter()
                .find(|r| r["path"] == *path)
                .unwrap_or_else(|| panic!("{object}: no line for {path}: {}", ran.stdout))["origin"];
            let line = line_of(needle);
            assert_eq!(origin["kind"], "git", "{object} {path}: {origin}");
            assert_eq!(
                (origin["file"].as_str(), origin["line"].as_u64()),
                (Some("apps/kustomization.yaml"), Some(line as u64)),
                "{object} {path}: {origin}"
            );
            assert_eq!(
                origin["commit"],
                commit_of(line).as_str(),
                "{object} {path} against git blame"
            );
            assert_eq!(origin["author"], author.0, "{object} {path}");
        }
        records
    };

    let records = check(
        "deploy/prod-web",
        &[
            (".metadata.name", "namePrefix: prod-", BOB),
            (".metadata.namespace", &format!("namespace: {ns}"), ALICE),
            (".metadata.labels.team", "team: payments", CAROL),
            (".spec.selector.matchLabels.team", "team: payments", CAROL),
            (
                ".spec.template.metadata.labels.team",
                "team: payments",
                CAROL,
            ),
            (
                ".spec.template.spec.containers[name=web].image",
                "newTag: \"1.27\"",
                DAVE,
            ),
            // The generated name's prefix (Bob) and hash (Erin's generator): Erin's is newer.
            (
                ".spec.template.spec.volumes[name=settings].configMap.name",
                "- name: settings",
                ERIN,
            ),
        ],
    );
    // What kustomize left alone keeps its own file's line.
    for path in [
        ".spec.replicas",
        ".spec.template.spec.containers[name=web].name",
        ".metadata.labels.app",
    ] {
        let origin = &records.iter().find(|r| r["path"] == path).unwrap()["origin"];
        assert_eq!(origin["file"], "apps/web.yaml", "{path}: {origin}");
        assert_eq!(origin["author"], ALICE.0, "{path}");
    }

    check(
        &format!("configmap/{configmap}"),
        &[
            (".data.MODE", "- MODE=prod", ERIN),
            (".data.LEVEL", "- LEVEL=debug", ALICE),
            (".metadata.name", "- name: settings", ERIN),
            (".metadata.namespace", &format!("namespace: {ns}"), ALICE),
            (".metadata.labels.team", "team: payments", CAROL),
            (".kind", "- name: settings", ERIN),
        ],
    );
    let secret_records = check(
        &format!("secret/{secret}"),
        &[
            (".data.PASSWORD", "- PASSWORD=s3cr3t-value", ERIN),
            (".metadata.name", "- name: creds", ERIN),
        ],
    );
    // Secret values are never shown, whatever line they are tied to.
    let text = serde_json::to_string(&secret_records).unwrap();
    assert!(
        !text.contains("s3cr3t") && !text.contains("czNjcjN0"),
        "{text}"
    );
}
