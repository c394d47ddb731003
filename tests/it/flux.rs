//! The reference test: real source-controller and kustomize-controller (tests/testenv) reconcile
//! a repository of the shapes real GitOps repositories have, and every command of ours agrees
//! with what Flux did, with `git blame`, and with `flux diff`/`flux trace`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::fixture::{ALICE, BOB, GitRepo};
use crate::support::{Ran, flux_origin, items, json_of, kubectl, kubectl_gitops, run};
use testenv::flux::FIELD_MANAGER;

/// Plain YAML, no kustomization.yaml: kustomize-controller generates one.
const PLAIN: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: plain-settings
data:
  color: blue
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: plain-runner
";

const PLAIN_RBAC: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: plain-reader
rules:
  - apiGroups: [\"\"]
    resources: [configmaps]
    verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: plain-reader
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: plain-reader
subjects:
  - kind: ServiceAccount
    name: plain-runner
";

/// Deleted out of band, and created again by revert as kustomize-controller creates it.
const PLAIN_WORKER: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: plain-worker
spec:
  selector:
    matchLabels:
      app: worker
  template:
    metadata:
      labels:
        app: worker
    spec:
      containers:
        - name: worker
          image: busybox:1.36
          ports:
            - containerPort: 9000
";

/// The object [`edit_out_of_band`] deletes.
const DELETED: &str = "Deployment/plain-worker";

/// A Secret value that must never be printed.
const PLANTED: &str = "planted-Secret-value-4d8b";

/// kustomize-controller moves `stringData` into `data` before it applies.
fn plain_secret() -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: plain-credentials\nstringData:\n  password: {PLANTED}\n"
    )
}

/// The innermost base; `${LOG_LEVEL}` comes from the Kustomization's postBuild.substitute.
const COMMON_SETTINGS: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: hello
  level: ${LOG_LEVEL}
";

const WEB_DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: web
          image: nginx:1.27
          envFrom:
            - configMapRef:
                name: env
          env:
            - name: LEVEL
              value: info
          volumeMounts:
            - name: settings
              mountPath: /etc/settings
      volumes:
        - name: settings
          configMap:
            name: settings
";

const WEB_SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
    - port: 80
      targetPort: 8080
";

/// The overlay over the nested bases: namePrefix, images, a generator and a strategic patch.
const PROD_KUSTOMIZATION: &str = "\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../bases/web
namePrefix: prod-
images:
  - name: nginx
    newTag: \"1.27.3\"
configMapGenerator:
  - name: env
    literals:
      - MODE=prod
patches:
  - path: replicas.yaml
";

const PROD_REPLICAS: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
";

/// Writes the repository in two commits by two authors, so that blame has more than one
/// answer; returns the repository.
fn repository() -> GitRepo {
    let mut repo = GitRepo::new();
    repo.write("plain/config.yaml", PLAIN)
        .write("plain/rbac.yaml", PLAIN_RBAC)
        .write("plain/secret.yaml", &plain_secret())
        .write("plain/worker.yaml", PLAIN_WORKER)
        .write(
            "bases/common/kustomization.yaml",
            "resources:\n  - settings.yaml\n",
        )
        .write("bases/common/settings.yaml", COMMON_SETTINGS)
        .write(
            "bases/web/kustomization.yaml",
            "resources:\n  - ../common\n  - deployment.yaml\n  - service.yaml\nlabels:\n  - pairs:\n      app.kubernetes.io/part-of: shop\n",
        )
        .write(
            "bases/web/deployment.yaml",
            &WEB_DEPLOYMENT.replace("replicas: 1", "replicas: 3"),
        )
        .write("bases/web/service.yaml", WEB_SERVICE)
        .write("overlays/prod/kustomization.yaml", PROD_KUSTOMIZATION)
        .write("overlays/prod/replicas.yaml", PROD_REPLICAS);
    repo.commit(ALICE, "Shop and plain apps");
    repo.write("bases/web/deployment.yaml", WEB_DEPLOYMENT);
    repo.commit(BOB, "One replica in the base");
    repo
}

/// Flux's own Kustomization settings over the overlay: targetNamespace, a patch of its own,
/// and postBuild substitution.
fn shop_spec(ns: &str) -> Value {
    json!({
        "targetNamespace": ns,
        "patches": [{
            "target": {"kind": "Service"},
            "patch": "apiVersion: v1\nkind: Service\nmetadata:\n  name: any\n  annotations:\n    shop.example.com/owner: web-team\n",
        }],
        "postBuild": {"substitute": {"LOG_LEVEL": "info"}},
    })
}

/// Real Flux reconciles `repo`: Kustomization `plain` at ./plain and `shop` at
/// ./overlays/prod, both in `ns`. The repository's `origin` is the URL Flux reads it from, so
/// our commands, run in the work tree, use it as the local checkout. Returns the commit.
fn reconcile(ns: &str, repo: &GitRepo) -> String {
    flux_origin(repo);
    let flux = testenv::flux::shared();
    let plain = flux
        .reconcile(
            ns,
            "plain",
            repo.path(),
            "./plain",
            json!({"targetNamespace": ns}),
        )
        .unwrap();
    let shop = flux
        .reconcile(ns, "shop", repo.path(), "./overlays/prod", shop_spec(ns))
        .unwrap();
    assert_eq!(plain, shop);
    shop
}

/// `kubectl gitops COMMAND --kubeconfig .. -n NS ARGS` in the work tree; no output of it ever
/// holds the Secret's value.
fn gitops(ns: &str, repo: &GitRepo, cache: &Path, args: &[&str]) -> Ran {
    let kc = testenv::shared().kubeconfig.display().to_string();
    let mut full = vec![args[0], "--kubeconfig", kc.as_str(), "-n", ns];
    full.extend_from_slice(&args[1..]);
    let ran = run(kubectl_gitops(&full)
        .env("XDG_CACHE_HOME", cache)
        .current_dir(repo.path()));
    let encoded = kubectl_gitops::drift::base64(PLANTED.as_bytes());
    for text in [&ran.stdout, &ran.stderr] {
        assert!(
            !text.contains(PLANTED) && !text.contains(&encoded),
            "{args:?}: a Secret value leaked"
        );
    }
    ran
}

/// The live object, managedFields included.
fn live(ns: &str, what: &str) -> Value {
    let out = testenv::shared()
        .kubectl_run(
            &["get", "-n", ns, what, "-o", "json", "--show-managed-fields"],
            None,
        )
        .unwrap();
    serde_json::from_str(&out).unwrap()
}

/// The generated ConfigMap's name (`prod-env-<hash>`), as kustomize-controller made it.
fn generated_name(ns: &str) -> String {
    let out = testenv::shared()
        .kubectl_run(&["get", "-n", ns, "configmaps", "-o", "name"], None)
        .unwrap();
    out.lines()
        .filter_map(|l| l.strip_prefix("configmap/"))
        .find(|n| n.starts_with("prod-env-"))
        .unwrap_or_else(|| panic!("no generated ConfigMap in {out}"))
        .to_owned()
}

/// The objects Flux applied: `kind/name` → (the Kustomization, the file that declares it, the
/// document's kind and name in it; no name for a generated object, declared by its
/// kustomization as a whole).
fn expected(ns: &str) -> BTreeMap<String, (&'static str, &'static str, Option<&'static str>)> {
    BTreeMap::from([
        (
            "ConfigMap/plain-settings".into(),
            ("plain", "plain/config.yaml", Some("plain-settings")),
        ),
        (
            "ServiceAccount/plain-runner".into(),
            ("plain", "plain/config.yaml", Some("plain-runner")),
        ),
        (
            DELETED.into(),
            ("plain", "plain/worker.yaml", Some("plain-worker")),
        ),
        (
            "Secret/plain-credentials".into(),
            ("plain", "plain/secret.yaml", Some("plain-credentials")),
        ),
        (
            "Role/plain-reader".into(),
            ("plain", "plain/rbac.yaml", Some("plain-reader")),
        ),
        (
            "RoleBinding/plain-reader".into(),
            ("plain", "plain/rbac.yaml", Some("plain-reader")),
        ),
        (
            "ConfigMap/prod-settings".into(),
            ("shop", "bases/common/settings.yaml", Some("settings")),
        ),
        (
            "Deployment/prod-web".into(),
            ("shop", "bases/web/deployment.yaml", Some("web")),
        ),
        (
            "Service/prod-web".into(),
            ("shop", "bases/web/service.yaml", Some("web")),
        ),
        (
            format!("ConfigMap/{}", generated_name(ns)),
            ("shop", "overlays/prod/kustomization.yaml", None),
        ),
    ])
}

/// The first and last line (1-based) of the document of `kind` named `name` in `text`, from
/// its first line that is not a comment to its last line that is not blank; the whole file
/// when `name` is None.
fn document_lines(text: &str, kind: &str, name: Option<&str>) -> (usize, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let Some(name) = name else {
        return (1, lines.len());
    };
    let mut start = 0;
    let mut documents = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if *line == "---" {
            documents.push((start, i));
            start = i + 1;
        }
    }
    documents.push((start, lines.len()));
    for (from, to) in documents {
        let doc = &lines[from..to];
        if doc.contains(&format!("kind: {kind}").as_str())
            && doc.contains(&format!("  name: {name}").as_str())
        {
            let first = (from..to)
                .find(|&i| !lines[i].starts_with('#') && !lines[i].trim().is_empty())
                .unwrap();
            let last = (from..to)
                .rev()
                .find(|&i| !lines[i].trim().is_empty())
                .unwrap();
            return (first + 1, last + 1);
        }
    }
    panic!("no {kind} {name} in:\n{text}")
}

/// `git blame --porcelain HEAD -- file`: line number → commit.
fn git_blame(repo: &GitRepo, file: &str) -> BTreeMap<u64, String> {
    repo.git(&["blame", "--porcelain", "HEAD", "--", file])
        .lines()
        .filter_map(|l| {
            let parts: Vec<&str> = l.split(' ').collect();
            (parts.len() >= 3
                && parts[0].len() == 40
                && parts[0].bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| (parts[2].parse().unwrap(), parts[0].to_owned()))
        })
        .collect()
}

/// `flux diff kustomization NAME --path PATH`: its exit code, the fields it says its drift
/// correction would change (`Kind/name`, dyff's path such as
/// `spec.template.spec.containers.web.image`, or `(created)` for an object it would create),
/// and its output.
fn flux_diff(ns: &str, name: &str, path: &Path) -> (Option<i32>, Vec<(String, String)>, String) {
    let out = testenv::flux::shared()
        .flux_cli()
        .args([
            "diff",
            "kustomization",
            name,
            "-n",
            ns,
            "--progress-bar=false",
            "--path",
        ])
        .arg(path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let text = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // "► Kind/namespace/name drifted", then per field its path, "± value change" and values.
    let mut drifted = Vec::new();
    let mut object = None;
    let lines: Vec<&str> = stdout.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some(o) = line.strip_prefix("► ") {
            let (o, what) = o.split_once(' ').unwrap_or((o, ""));
            let parts: Vec<&str> = o.split('/').collect();
            let named = format!("{}/{}", parts[0], parts[parts.len() - 1]);
            if what == "created" {
                drifted.push((named.clone(), "(created)".to_owned()));
            }
            object = Some(named);
        } else if lines.get(i + 1).is_some_and(|next| next.starts_with("± "))
            && let Some(object) = &object
        {
            drifted.push((object.clone(), line.trim().to_owned()));
        }
    }
    (out.status.code(), drifted, text)
}

/// Every object's managedFields and resourceVersion.
fn snapshot(
    ns: &str,
    objects: &BTreeMap<String, (&str, &str, Option<&str>)>,
) -> BTreeMap<String, (Value, Value)> {
    objects
        .keys()
        .map(|object| {
            let live = live(ns, object);
            (
                object.clone(),
                (
                    live["metadata"]["managedFields"].clone(),
                    live["metadata"]["resourceVersion"].clone(),
                ),
            )
        })
        .collect()
}

/// What kustomize-controller owns of every object (its managedFields entry's fieldsV1).
fn owned_by_flux(
    ns: &str,
    objects: &BTreeMap<String, (&str, &str, Option<&str>)>,
) -> BTreeMap<String, Value> {
    objects
        .keys()
        .map(|object| {
            let live = live(ns, object);
            let entry = live["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["manager"] == FIELD_MANAGER)
                .map(|e| e["fieldsV1"].clone())
                .unwrap_or_default();
            (object.clone(), entry)
        })
        .collect()
}

/// The six kinds of out-of-band edit (and a Secret's), and what each must be found as: object, a part of the
/// field path, the manager managedFields names.
fn edit_out_of_band(ns: &str) -> Vec<(&'static str, &'static str, &'static str)> {
    kubectl(
        ns,
        &["set", "image", "deployment/prod-web", "web=nginx:1.28"],
        None,
    );
    kubectl(
        ns,
        &["set", "env", "deployment/prod-web", "-c", "web", "DEBUG=1"],
        None,
    );
    kubectl(ns, &["label", "service/prod-web", "tier=edge"], None);
    kubectl(
        ns,
        &["annotate", "configmap/prod-settings", "note=hand-made"],
        None,
    );
    kubectl(
        ns,
        &[
            "patch",
            "configmap/plain-settings",
            "--type=merge",
            "-p",
            r#"{"data":{"color":"red"}}"#,
        ],
        None,
    );
    kubectl(
        ns,
        &[
            "patch",
            "deployment/prod-web",
            "--type=strategic",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.36"}]}}}}"#,
        ],
        None,
    );
    // A deleted object, missing.
    kubectl(ns, &["delete", "deployment/plain-worker"], None);
    // And a Secret, whose values must stay hidden all along.
    kubectl(
        ns,
        &[
            "patch",
            "secret/plain-credentials",
            "--type=merge",
            "-p",
            r#"{"stringData":{"password":"changed-by-hand"}}"#,
        ],
        None,
    );
    vec![
        (
            "Secret/plain-credentials",
            ".data.password",
            "kubectl-patch",
        ),
        (
            "Deployment/prod-web",
            ".spec.template.spec.containers[name=web].image",
            "kubectl-set",
        ),
        (
            "Deployment/prod-web",
            ".spec.template.spec.containers[name=web].env[name=DEBUG]",
            "kubectl-set",
        ),
        (
            "Deployment/prod-web",
            ".spec.template.spec.containers[name=sidecar]",
            "kubectl-patch",
        ),
        ("Service/prod-web", ".metadata.labels.tier", "kubectl-label"),
        (
            "ConfigMap/prod-settings",
            ".metadata.annotations.note",
            "kubectl-annotate",
        ),
        ("ConfigMap/plain-settings", ".data.color", "kubectl-patch"),
    ]
}

#[test]
fn real_flux_reconciles_and_every_command_agrees() {
    let ns = testenv::shared().namespace("flux-accept");
    let repo = repository();
    let applied = reconcile(&ns, &repo);
    let cache = tempfile::tempdir().unwrap();
    let objects = expected(&ns);
    let diff = |mode: &str| {
        let ran = gitops(
            &ns,
            &repo,
            cache.path(),
            &["diff", &format!("--server-side={mode}"), "-o", "json"],
        );
        let report = json_of(&ran);
        (ran, report)
    };

    // A clean reconcile: no drift in any mode, and none for Flux's own diff.
    for mode in ["false", "auto", "true"] {
        let (ran, report) = diff(mode);
        assert_eq!(ran.code, Some(0), "{mode}: {}\n{report:#}", ran.stderr);
        let found = items(&report);
        for object in objects.keys() {
            assert_eq!(
                found[object]["status"], "in-sync",
                "{mode}: {object}: {:#}",
                found[object]
            );
        }
        assert_eq!(
            report["summary"]["inSync"],
            objects.len(),
            "{mode}: {:#}",
            report["summary"]
        );
    }
    for (name, path) in [("plain", "plain"), ("shop", "overlays/prod")] {
        let (code, drifted, text) = flux_diff(&ns, name, &repo.path().join(path));
        assert_eq!(
            (code, drifted),
            (Some(0), vec![]),
            "flux diff {name}: {text}"
        );
    }

    // trace: the file, the document's lines, the applied commit and the Kustomization of every
    // object, as Flux's own trace names them.
    for (object, (kustomization, file, name)) in &objects {
        let ran = gitops(&ns, &repo, cache.path(), &["trace", object, "-o", "json"]);
        assert_eq!(ran.code, Some(0), "{object}: {}", ran.stderr);
        let doc = json_of(&ran);
        let s = &doc["items"][0]["source"];
        let text = std::fs::read_to_string(repo.path().join(file)).unwrap();
        let kind = object.split('/').next().unwrap();
        let (first, last) = document_lines(&text, kind, *name);
        assert_eq!(s["rule"], "flux", "{object}: {s:#}");
        assert_eq!(s["file"], *file, "{object}: {s:#}");
        assert_eq!(
            s["lines"],
            json!([first, last]),
            "{object}: {s:#} {}",
            ran.stderr
        );
        assert_eq!(s["appliedCommit"]["id"], applied.as_str(), "{object}");
        assert_eq!(
            s["lastChange"]["id"],
            repo.last_change(file).0.as_str(),
            "{object}"
        );
        assert_eq!(s["reconciler"]["kind"], "Kustomization", "{object}");
        assert_eq!(s["reconciler"]["name"], *kustomization, "{object}");

        let (kind, name) = object.split_once('/').unwrap();
        let flux_trace = testenv::flux::shared()
            .flux_cli()
            .args(["trace", "-n", &ns, &kind.to_lowercase(), name])
            .output()
            .unwrap();
        let flux_trace = String::from_utf8_lossy(&flux_trace.stdout).into_owned();
        assert!(
            flux_trace.contains(&format!("Kustomization:   {kustomization}"))
                || flux_trace.lines().any(|l| l.starts_with("Kustomization:")
                    && l.ends_with(&format!(" {kustomization}"))),
            "flux trace {object}: {flux_trace}"
        );
        assert!(
            flux_trace.contains(&format!("main@sha1:{applied}")),
            "flux trace {object} names the applied revision: {flux_trace}"
        );
    }

    // blame: every line it gives a Git origin for has the commit `git blame` gives that line.
    let mut git_lines = 0;
    for object in objects.keys() {
        let ran = gitops(&ns, &repo, cache.path(), &["blame", object, "-o", "json"]);
        assert_eq!(ran.code, Some(0), "blame {object}: {}", ran.stderr);
        for record in ran.stdout.lines() {
            let record: Value = serde_json::from_str(record).unwrap();
            let origin = &record["origin"];
            if origin["kind"] != "git" {
                continue;
            }
            let file = origin["file"].as_str().unwrap();
            let line = origin["line"].as_u64().unwrap();
            assert_eq!(
                origin["commit"].as_str(),
                git_blame(&repo, file).get(&line).map(String::as_str),
                "blame {object} {}: {file}:{line}",
                record["path"]
            );
            git_lines += 1;
        }
    }
    assert!(git_lines > 30, "blame named Git lines: {git_lines}");

    let owned_as_applied = owned_by_flux(&ns, &objects);

    // Six kinds of out-of-band edit: each found, attributed to its manager, in every mode, and
    // nothing else drifted.
    let edits = edit_out_of_band(&ns);
    for mode in ["false", "auto", "true"] {
        let (ran, report) = diff(mode);
        assert_eq!(ran.code, Some(1), "{mode}: {}\n{report:#}", ran.stderr);
        let found = items(&report);
        assert_eq!(
            found[DELETED]["status"], "missing",
            "{mode}: {:#}",
            found[DELETED]
        );
        for object in objects.keys().filter(|o| *o != DELETED) {
            let mine: Vec<_> = edits.iter().filter(|(o, _, _)| o == object).collect();
            let fields = found[object]["fields"].as_array().unwrap();
            if mine.is_empty() {
                assert_eq!(
                    found[object]["status"], "in-sync",
                    "{mode}: {object}: {:#}",
                    found[object]
                );
                continue;
            }
            assert_eq!(found[object]["status"], "drifted", "{mode}: {object}");
            assert_eq!(
                fields.len(),
                mine.len(),
                "{mode}: {object}: exactly the edits: {fields:#?}"
            );
            for (_, path, manager) in mine {
                let field = fields
                    .iter()
                    .find(|f| f["path"].as_str().unwrap().starts_with(path))
                    .unwrap_or_else(|| panic!("{mode}: {object}: no drift at {path}: {fields:#?}"));
                assert_eq!(
                    field["why"]["kind"], "out-of-band",
                    "{mode}: {object} {path}: {field:#}"
                );
                assert_eq!(
                    field["why"]["manager"], *manager,
                    "{mode}: {object} {path}: {field:#}"
                );
            }
        }
    }
    // Flux's own drift correction would undo some of them (the values it owns; not what others
    // added): every field it would change is one we found.
    let mut flux_fields = Vec::new();
    for (name, path) in [("plain", "plain"), ("shop", "overlays/prod")] {
        let (code, drifted, text) = flux_diff(&ns, name, &repo.path().join(path));
        assert_eq!(code, Some(1), "flux diff {name}: {text}");
        // A dry run's own bookkeeping, not a field of the object.
        flux_fields.extend(
            drifted
                .into_iter()
                .filter(|(_, f)| f != "metadata.generation"),
        );
    }
    flux_fields.sort();
    // Our path in dyff's spelling: no leading dot, a keyed list item by its name.
    let dyff = |path: &str| {
        path.trim_start_matches('.')
            .replace("[name=", ".")
            .replace(']', "")
    };
    let ours: Vec<(String, String)> = edits
        .iter()
        .map(|(o, p, _)| ((*o).to_owned(), dyff(p)))
        .collect();
    assert_eq!(
        flux_fields,
        [
            ("ConfigMap/plain-settings".into(), "data.color".into()),
            (DELETED.into(), "(created)".into()),
            (
                "Deployment/prod-web".into(),
                "spec.template.spec.containers.web.image".into()
            ),
            ("Secret/plain-credentials".into(), "data.password".into()),
        ]
    );
    for field in flux_fields.iter().filter(|(o, _)| o != DELETED) {
        assert!(ours.contains(field), "{field:?} is not among {ours:?}");
    }

    // revert puts every edit back; the next reconcile by kustomize-controller then changes
    // nothing: every object keeps its managedFields and resourceVersion.
    let ran = gitops(
        &ns,
        &repo,
        cache.path(),
        &["revert", "--all", "--yes", "-o", "json"],
    );
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stderr, ran.stdout);
    let reverted = items(&json_of(&ran));
    let mut edited: Vec<&str> = edits.iter().map(|(o, _, _)| *o).collect();
    edited.push(DELETED);
    edited.sort();
    edited.dedup();
    assert_eq!(
        reverted.keys().map(String::as_str).collect::<Vec<_>>(),
        edited,
        "the edited objects, and only they"
    );
    for object in &edited {
        assert_eq!(
            reverted[*object]["result"], "reverted",
            "{object}: {:#}",
            reverted[*object]
        );
        assert_eq!(reverted[*object]["fieldManager"], FIELD_MANAGER, "{object}");
    }
    assert_eq!(reverted[DELETED]["action"], "create");
    for mode in ["false", "auto", "true"] {
        let (ran, report) = diff(mode);
        assert_eq!(
            ran.code,
            Some(0),
            "{mode} after revert: {}\n{report:#}",
            ran.stderr
        );
    }
    let before = snapshot(&ns, &objects);
    let flux = testenv::flux::shared();
    for name in ["plain", "shop"] {
        assert_eq!(flux.reconcile_now(&ns, name).unwrap(), applied);
    }
    let after = snapshot(&ns, &objects);
    for object in objects.keys() {
        assert_eq!(
            after[object], before[object],
            "{object}: the reconcile after revert changed it"
        );
    }
    // And kustomize-controller owns what it owned before the edits, field for field: revert
    // applied, and created again, what it sends.
    assert_eq!(owned_by_flux(&ns, &objects), owned_as_applied);
    let d = live(&ns, "deployment/prod-web");
    let containers = &d["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().unwrap().len(), 1, "{containers:#}");
    assert_eq!(containers[0]["image"], "nginx:1.27.3");
    assert_eq!(
        live(&ns, "secret/plain-credentials")["data"]["password"],
        kubectl_gitops::drift::base64(PLANTED.as_bytes())
    );

    // Git stops declaring an object: orphaned until Flux prunes it, then gone from both.
    repo.git(&["rm", "-q", "plain/worker.yaml"]);
    repo.git(&[
        "-c",
        "user.name=Alice Example",
        "-c",
        "user.email=alice@example.com",
        "commit",
        "-q",
        "-m",
        "Retire the worker",
    ]);
    let retired = repo.head();
    let (ran, report) = diff("auto");
    assert_eq!(ran.code, Some(1), "{}\n{report:#}", ran.stderr);
    assert_eq!(items(&report)[DELETED]["status"], "orphaned", "{report:#}");
    assert_eq!(flux.reconcile_now(&ns, "plain").unwrap(), retired);
    let gone = testenv::shared().kubectl_run(&["get", "-n", &ns, "deployment/plain-worker"], None);
    assert!(gone.is_err(), "Flux pruned it: {gone:?}");
    let (ran, report) = diff("auto");
    assert_eq!(ran.code, Some(0), "{}\n{report:#}", ran.stderr);
    assert!(!items(&report).contains_key(DELETED), "{report:#}");
}

/// `postBuild` variables as real kustomize-controller loads them: each `substituteFrom` in
/// order, a later one's key over an earlier one's, a value's newlines taken out, then the
/// inline `substitute` over all. Every mode of `diff` then agrees with what it applied, and
/// the Secret's value is in no output.
#[test]
fn substitution_variables_are_loaded_as_kustomize_controller_loads_them() {
    let ns = testenv::shared().namespace("flux-substitute");
    let mut repo = GitRepo::new();
    repo.write(
        "deploy/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  \
         tier: ${TIER}\n  region: ${REGION}\n  token: ${TOKEN}\n",
    );
    repo.commit(ALICE, "settings from variables");
    flux_origin(&repo);
    // The Secret's value has a newline, which kustomize-controller takes out.
    let token = format!("{}\n{}", &PLANTED[..8], &PLANTED[8..]);
    kubectl(
        &ns,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: first}}\n\
             data: {{TIER: first, REGION: first}}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: second}}\ndata: {{TIER: second}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: token}}\n\
             data: {{TOKEN: {}}}\n",
            kubectl_gitops::drift::base64(token.as_bytes())
        )),
    );
    testenv::flux::shared()
        .reconcile(
            &ns,
            "settings",
            repo.path(),
            "./deploy",
            json!({
                "targetNamespace": ns,
                "postBuild": {
                    "substitute": {"REGION": "inline"},
                    "substituteFrom": [
                        {"kind": "ConfigMap", "name": "first"},
                        {"kind": "ConfigMap", "name": "second"},
                        {"kind": "Secret", "name": "token"},
                    ],
                },
            }),
        )
        .unwrap();
    let data = &live(&ns, "configmap/settings")["data"];
    assert_eq!(
        (&data["tier"], &data["region"]),
        (&json!("second"), &json!("inline")),
        "{data:#}"
    );
    assert_eq!(
        data["token"], PLANTED,
        "kustomize-controller keeps no newline"
    );
    let cache = tempfile::tempdir().unwrap();
    for mode in ["false", "auto", "true"] {
        let ran = gitops(
            &ns,
            &repo,
            cache.path(),
            &["diff", &format!("--server-side={mode}"), "-o", "json"],
        );
        assert_eq!(ran.code, Some(0), "{mode}: {}\n{}", ran.stderr, ran.stdout);
        let found = items(&json_of(&ran));
        assert_eq!(
            found["ConfigMap/settings"]["status"], "in-sync",
            "{mode}: {:#}",
            found["ConfigMap/settings"]
        );
    }

    // blame shows the line of the substituted value with the value hidden.
    for format in ["text", "json"] {
        let ran = gitops(
            &ns,
            &repo,
            cache.path(),
            &["blame", "configmap/settings", "-o", format],
        );
        assert_eq!(
            ran.code,
            Some(0),
            "{format}: {}\n{}",
            ran.stderr,
            ran.stdout
        );
        assert!(
            ran.stdout.contains("token: (hidden)") && ran.stdout.contains("tier: second"),
            "{format}: {}",
            ran.stdout
        );
        // A user who may not read the substituteFrom Secret: which values came from it is
        // unknown, so every value is hidden and each line shows its manager.
        let ran = gitops(
            &ns,
            &repo,
            cache.path(),
            &[
                "blame",
                "configmap/settings",
                "-o",
                format,
                "--context",
                testenv::VIEWER_CONTEXT,
            ],
        );
        assert_eq!(ran.code, Some(2), "{format}: {}", ran.stderr);
        assert!(
            ran.stderr.contains("you may not read Secret")
                && ran.stderr.contains("every value is hidden"),
            "{format}: {}",
            ran.stderr
        );
        assert!(
            ran.stdout.contains("token: (hidden)") && ran.stdout.contains("tier: (hidden)"),
            "{format}: {}",
            ran.stdout
        );
    }

    // Edited out of band, the field that holds the Secret's value is drifted with both values
    // hidden in every format (a live value of such a field may be an older Secret value); a
    // field from a ConfigMap is shown.
    // (gitops() fails on the value in any output.)
    kubectl(
        &ns,
        &[
            "patch",
            "configmap",
            "settings",
            "--type=merge",
            "-p",
            r#"{"data":{"token":"edited-token","tier":"edited-tier"}}"#,
        ],
        None,
    );
    for format in ["diff", "table", "json", "yaml", "markdown"] {
        let ran = gitops(&ns, &repo, cache.path(), &["diff", "-o", format]);
        assert_eq!(
            ran.code,
            Some(1),
            "{format}: {}\n{}",
            ran.stderr,
            ran.stdout
        );
        // A table names the fields, not their values.
        assert!(
            (format == "table" || ran.stdout.contains("edited-tier"))
                && !ran.stdout.contains("edited-token"),
            "{format}: {}",
            ran.stdout
        );
    }
    let ran = gitops(&ns, &repo, cache.path(), &["diff", "-o", "json"]);
    let settings = &items(&json_of(&ran))["ConfigMap/settings"];
    let fields: BTreeMap<&str, (&Value, &Value)> = settings["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), (&f["git"], &f["live"])))
        .collect();
    assert_eq!(
        fields,
        BTreeMap::from([
            (".data.tier", (&json!("second"), &json!("edited-tier"))),
            (
                ".data.token",
                (&json!("(hidden git value)"), &json!("(hidden live value)"))
            ),
        ]),
        "{settings:#}"
    );
    // revert puts the Secret's value back without showing it.
    let ran = gitops(
        &ns,
        &repo,
        cache.path(),
        &["revert", "configmap/settings", "--yes", "-o", "json"],
    );
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stderr, ran.stdout);
    assert!(!ran.stdout.contains("edited-token"), "{}", ran.stdout);
    let data = &live(&ns, "configmap/settings")["data"];
    assert_eq!(
        (&data["tier"], &data["token"]),
        (&json!("second"), &json!(PLANTED))
    );
}
