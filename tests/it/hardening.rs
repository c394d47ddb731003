//! Hardening, proven on the real control plane: the read commands write nothing (the audit log
//! of a user who could write says so), and no Secret value, planted in Git and live, in `data`
//! and `stringData`, ever appears in any output of any command, with the debug log on.
//!
//! Also the fixture the other hardening files share: a checkout whose objects are applied as
//! `stamp | kubectl apply` and as Flux applies them, and running the plugin as a given user.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::fixture::{ALICE, GitRepo};
use crate::support::{Ran, flux_origin, gitops, kubectl, kubectl_gitops, reconciled_by_flux, run};

pub const WEB: &str = "\
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

pub fn configmaps(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| {
            format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: value\n"
            )
        })
        .collect()
}

/// A checkout whose `apps/` holds `apps_files`, committed and applied with
/// `stamp apps | kubectl apply --server-side`, and whose `deploy/` holds `flux_files`,
/// reconciled by real Flux (a Kustomization `apps`). Its origin is the URL Flux reads it from
/// when there are Flux files, else `https://git.example.com/acme/apps.git`.
pub fn applied(ns: &str, apps_files: &[(&str, String)], flux_files: &[(&str, String)]) -> GitRepo {
    let mut repo = GitRepo::new();
    if flux_files.is_empty() {
        repo.git(&[
            "remote",
            "add",
            "origin",
            "https://git.example.com/acme/apps.git",
        ]);
    } else {
        flux_origin(&repo);
    }
    for (path, text) in apps_files {
        repo.write(&format!("apps/{path}"), text);
    }
    for (path, text) in flux_files {
        repo.write(&format!("deploy/{path}"), text);
    }
    let commit = repo.commit(ALICE, "Apps");
    if !apps_files.is_empty() {
        let stamped = run(kubectl_gitops(&["stamp", "apps"]).current_dir(repo.path()));
        assert_eq!(stamped.code, Some(0), "{}", stamped.stderr);
        kubectl(
            ns,
            &["apply", "--server-side", "-f", "-"],
            Some(&stamped.stdout),
        );
    }
    if !flux_files.is_empty() {
        assert_eq!(reconciled_by_flux(ns, &repo, "./deploy"), commit);
    }
    repo
}

/// One user's way of running the plugin: a kubeconfig, and a cache directory of its own.
pub struct User {
    pub kubeconfig: PathBuf,
    pub cache: tempfile::TempDir,
}

impl User {
    pub fn admin() -> User {
        User::with_kubeconfig(testenv::shared().kubeconfig.clone())
    }

    /// One of testenv's users without rights of their own (bind them first).
    pub fn unbound(name: &str) -> User {
        User::with_kubeconfig(testenv::shared().kubeconfig_of(name))
    }

    pub fn with_kubeconfig(kubeconfig: PathBuf) -> User {
        User {
            kubeconfig,
            cache: tempfile::tempdir().unwrap(),
        }
    }

    /// `kubectl gitops ARGS --kubeconfig K -n NS`, from `dir`, stdin closed.
    pub fn run(&self, ns: &str, dir: &Path, args: &[&str]) -> Ran {
        let kc = self.kubeconfig.display().to_string();
        let mut all = args.to_vec();
        all.extend(["--kubeconfig", kc.as_str(), "-n", ns]);
        run(kubectl_gitops(&all)
            .env("XDG_CACHE_HOME", self.cache.path())
            .current_dir(dir)
            .stdin(std::process::Stdio::null()))
    }

    /// `kubectl-gitops __complete WORDS...` as kubectl's completion calls it, this user's
    /// kubeconfig in KUBECONFIG.
    pub fn complete(&self, dir: &Path, words: &[&str]) -> Ran {
        let mut args = vec!["__complete"];
        args.extend_from_slice(words);
        run(gitops(&args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("XDG_CACHE_HOME", self.cache.path())
            .current_dir(dir)
            .stdin(std::process::Stdio::null()))
    }
}

/// Binds `user` to the ClusterRole `role` in the whole cluster (idempotent).
pub fn bind_cluster_wide(user: &str, role: &str) {
    let binding = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n\
         metadata: {{name: {user}-{role}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\n\
         subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]\n"
    );
    kubectl("default", &["apply", "-f", "-"], Some(&binding));
}

/// Binds `user` to the ClusterRole `role` in namespace `ns` only.
pub fn bind_in_namespace(ns: &str, user: &str, role: &str) {
    let binding = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
         metadata: {{name: {user}-{role}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\n\
         subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]\n"
    );
    kubectl(ns, &["apply", "-f", "-"], Some(&binding));
}

/// The audit events of requests made by `user`, waiting until at least one with `verb` is in
/// (the server writes an event when its response is complete).
pub fn audit_of(user: &str, verb: &str) -> Vec<Value> {
    let cp = testenv::shared();
    let by = |e: &Value| e["user"]["username"] == user;
    let seen = cp
        .audit_events_matching(|e| by(e) && e["verb"] == verb)
        .unwrap();
    assert!(!seen.is_empty(), "no {verb} by {user} in the audit log");
    cp.audit_events().unwrap().into_iter().filter(by).collect()
}

/// Whether an audit event is a write: create, update, delete, deletecollection, or a patch
/// that is not a dry run.
pub fn is_write(event: &Value) -> bool {
    let uri = event["requestURI"].as_str().unwrap_or_default();
    match event["verb"].as_str().unwrap_or_default() {
        "get" | "list" | "watch" => false,
        "patch" => !uri.contains("dryRun=All"),
        _ => true,
    }
}

#[test]
fn the_read_commands_write_nothing_even_for_a_user_who_may() {
    const USER: &str = "gitops-audited";
    let cp = testenv::shared();
    let ns = cp.namespace("harden-readonly");
    let repo = applied(
        &ns,
        &[
            ("web.yaml", WEB.to_owned()),
            ("config.yaml", configmaps(&["cm-a", "cm-b", "cm-gone"])),
            (
                "secret.yaml",
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: hunter2\n"
                    .to_owned(),
            ),
        ],
        &[
            ("api.yaml", WEB.replace("name: web", "name: api")),
            ("settings.yaml", configmaps(&["settings"])),
        ],
    );
    // Drift of every sort, so that each mode has work: out of band, missing, and a dry run.
    kubectl(
        &ns,
        &[
            "patch",
            "configmap/cm-a",
            "--type=merge",
            "-p",
            r#"{"data":{"key":"changed"}}"#,
        ],
        None,
    );
    kubectl(&ns, &["scale", "deployment/web", "--replicas=5"], None);
    kubectl(&ns, &["delete", "configmap/cm-gone"], None);
    kubectl(&ns, &["label", "configmap/settings", "team=x"], None);
    // This user could write anything: what it does not write, it chose not to.
    bind_cluster_wide(USER, "cluster-admin");
    let user = User::unbound(USER);
    let dir = repo.path();

    let mut runs: Vec<(String, Ran)> = Vec::new();
    let mut go = |args: &[&str]| {
        let mut all = args.to_vec();
        all.push("-v=9");
        runs.push((args.join(" "), user.run(&ns, dir, &all)));
    };
    go(&["context"]);
    go(&["context", "-o", "json"]);
    for format in ["text", "json", "yaml"] {
        go(&[
            "trace",
            "deploy/web",
            "cm/cm-a",
            "cm/settings",
            "deploy/api",
            "-o",
            format,
        ]);
    }
    for mode in ["auto", "true", "false"] {
        for format in ["diff", "json"] {
            go(&["diff", &format!("--server-side={mode}"), "-o", format]);
        }
    }
    go(&["diff", "-A", "-o", "table"]);
    go(&["diff", "-f", "apps/config.yaml"]);
    go(&["blame", "deploy/web"]);
    go(&["blame", "cm/settings", "-o", "json"]);
    go(&["stamp", "apps"]);
    go(&["version"]);
    go(&["completion", "bash"]);
    // Revert that stops short of writing: --dry-run, and no confirmation.
    go(&["revert", "--all", "--dry-run"]);
    go(&["revert", "--all"]);
    for (what, ran) in &runs {
        assert!(
            matches!(ran.code, Some(0..=2)),
            "{what}: exit {:?}: {}",
            ran.code,
            ran.stderr
        );
        assert!(!ran.stderr.contains("panicked"), "{what}: {}", ran.stderr);
    }
    let by_name = |name: &str| &runs.iter().find(|(w, _)| w == name).unwrap().1;
    assert_eq!(by_name("diff --server-side=true -o json").code, Some(1));
    assert_eq!(by_name("revert --all").code, Some(2));
    for words in [
        &["diff", "-n", &ns, "cm/"][..],
        &["trace", "-n", &ns, "deploy/"],
        &["blame", "-n", ""],
        &["diff", "--context", ""],
    ] {
        let ran = user.complete(dir, words);
        assert_eq!(ran.code, Some(0), "{words:?}: {}", ran.stderr);
    }
    let ran = user.complete(dir, &["diff", "-n", &ns, "cm/"]);
    assert!(
        ran.stdout.contains("cm/cm-a"),
        "completion asked the cluster: {}",
        ran.stdout
    );

    // Everything this user sent: reads, and patches that are dry runs; nothing else.
    let events = audit_of(USER, "list");
    for verb in ["get", "list", "patch"] {
        assert!(
            events.iter().any(|e| e["verb"] == verb),
            "the runs sent {verb} requests: the audit log is the one we read"
        );
    }
    let writes: Vec<&Value> = events.iter().filter(|e| is_write(e)).collect();
    assert!(writes.is_empty(), "writes by read commands: {writes:#?}");
    for e in &events {
        let agent = e["userAgent"].as_str().unwrap_or_default();
        assert!(agent.starts_with("kubectl-gitops/"), "{agent}: {e}");
    }
    assert!(
        events
            .iter()
            .any(|e| e["verb"] == "patch" && e["objectRef"]["name"] == "cm-a"),
        "dry runs were sent (and are the only patches)"
    );
    // The object deleted out of band was not created again.
    let out = cp
        .kubectl()
        .args(["get", "-n", &ns, "configmap/cm-gone"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Secret values planted for the leak test: in Git (`data`, `stringData`), set live out of band
/// (a changed key, a key only live), applied client-side (so `last-applied-configuration`
/// carries it), applied by Flux, and in a file whose YAML is broken right at the value.
const SECRETS: [&str; 9] = [
    "git-data-secret-0b1e",
    "git-stringdata-secret-7c4d",
    "live-secret-value-3f9a",
    "live-only-secret-5d2b",
    "client-applied-secret-8e6f",
    "client-live-secret-1a7b",
    "flux-secret-value-6c3e",
    "flux-live-secret-9d8f",
    "broken-yaml-secret-2a8c",
];
/// Not secret: they may, and where they belong must, appear.
const CONFIGMAP_VALUE: &str = "configmap-value-visible-4242";
const CONFIGMAP_LIVE: &str = "configmap-live-visible-4343";
const ANNOTATION_VALUE: &str = "annotation-value-visible-4444";

/// A long, many-line value (a private key), in `stringData` under a key with a dot: an
/// emitter that folds long strings, or a mask that stops at the first line, would show part
/// of it.
/// (No `BEGIN` line: a prefix it shared with the value that replaces it live would look like
/// a leak of both.)
fn pem() -> String {
    (0..12)
        .map(|line| format!("planted-pem-{line:02}-{}\n", "Qk9vbS".repeat(9)))
        .collect()
}

/// The Secret values that show in `text`: as they are (each line of a many-line one), or
/// base64 (any 32 characters of it, aligned as they would be in a wrapped or folded line).
fn leaks(text: &str) -> Vec<String> {
    SECRETS
        .iter()
        .map(|s| s.to_string())
        .chain([pem(), pem().replace("planted", "changed")])
        .filter(|secret| {
            let b64 = kubectl_gitops::drift::base64(secret.as_bytes());
            let plain = secret
                .lines()
                .filter(|l| l.len() >= 16)
                .any(|l| text.contains(l));
            let encoded = (0..b64.len().saturating_sub(32))
                .step_by(4)
                .any(|i| text.contains(&b64[i..i + 32]));
            plain || encoded || text.contains(b64.trim_end_matches('='))
        })
        .collect()
}

#[test]
fn no_secret_value_appears_in_any_output_of_any_command() {
    let cp = testenv::shared();
    let ns = cp.namespace("harden-secrets");
    let b64 = |s: &str| kubectl_gitops::drift::base64(s.as_bytes());
    let [
        git_data,
        git_string,
        live_value,
        live_only,
        client_value,
        client_live,
        flux_value,
        flux_live,
        broken_value,
    ] = SECRETS;
    let mut repo = applied(
        &ns,
        &[
            (
                "secret.yaml",
                format!(
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n  annotations:\n    \
                     note: {ANNOTATION_VALUE}\ndata:\n  password: {}\nstringData:\n  token: {git_string}\n  \
                     tls.key: |\n{}",
                    b64(git_data),
                    pem()
                        .lines()
                        .map(|l| format!("    {l}\n"))
                        .collect::<String>()
                ),
            ),
            (
                "config.yaml",
                format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  key: {CONFIGMAP_VALUE}\n"
                ),
            ),
        ],
        &[(
            "secret.yaml",
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: flux-creds\nstringData:\n  password: {flux_value}\n"
            ),
        )],
    );
    // Applied client-side: the whole Secret, values included, lands in last-applied-configuration.
    repo.write(
        "client/secret.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: client\nstringData:\n  password: {client_value}\n"
        ),
    )
    .write(
        "broken/secret.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: broken\nstringData:\n  password: [{broken_value}\n"
        ),
    );
    repo.commit(ALICE, "More Secrets");
    let stamped = run(kubectl_gitops(&["stamp", "client/secret.yaml"]).current_dir(repo.path()));
    assert_eq!(stamped.code, Some(0), "{}", stamped.stderr);
    kubectl(&ns, &["apply", "-f", "-"], Some(&stamped.stdout));
    let origin = repo.git(&["remote", "get-url", "origin"]);
    kubectl(
        &ns,
        &["apply", "--server-side", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: broken\n  annotations:\n    \
             kubectl-gitops.dev/repo: {}\n    \
             kubectl-gitops.dev/path: broken/secret.yaml\ndata:\n  password: {}\n",
            origin.trim(),
            b64(broken_value)
        )),
    );
    // Out of band: values changed and added, live.
    let patch = |object: &str, data: serde_json::Value| {
        kubectl(
            &ns,
            &[
                "patch",
                object,
                "--type=merge",
                "-p",
                &serde_json::json!({ "data": data }).to_string(),
            ],
            None,
        );
    };
    patch(
        "secret/creds",
        serde_json::json!({"password": b64(live_value), "extra": b64(live_only),
                           "tls.key": b64(&pem().replace("planted", "changed"))}),
    );
    patch(
        "secret/client",
        serde_json::json!({"password": b64(client_live)}),
    );
    patch(
        "secret/flux-creds",
        serde_json::json!({"password": b64(flux_live)}),
    );
    patch(
        "configmap/settings",
        serde_json::json!({"key": CONFIGMAP_LIVE}),
    );
    // The values are really there, in the cluster and in Git.
    let live = cp
        .kubectl()
        .args(["get", "-n", &ns, "secrets", "-o", "json"])
        .output()
        .unwrap();
    let live = String::from_utf8_lossy(&live.stdout);
    for secret in [
        git_string,
        live_value,
        live_only,
        client_value,
        client_live,
        flux_live,
    ] {
        assert!(leaks(&live).iter().any(|l| l == secret), "{secret} is live");
    }
    assert_eq!(
        leaks(&live).len(),
        9,
        "all but the Git values replaced live (git_data, the planted key) are live"
    );

    let admin = User::admin();
    let dir = repo.path();
    let mut runs: Vec<(String, Ran)> = Vec::new();
    let mut go = |args: &[&str]| {
        let mut all = args.to_vec();
        all.push("-v=9");
        let ran = admin.run(&ns, dir, &all);
        runs.push((args.join(" "), ran));
    };
    go(&["context"]);
    go(&["context", "-o", "json"]);
    go(&["version", "-o", "json"]);
    let secrets = [
        "secret/creds",
        "secret/client",
        "secret/flux-creds",
        "secret/broken",
    ];
    for format in ["text", "json", "yaml"] {
        let mut args = vec!["trace"];
        args.extend(secrets);
        args.extend(["cm/settings", "-o", format]);
        go(&args);
    }
    for mode in ["auto", "true", "false"] {
        for format in ["diff", "table", "json", "yaml", "markdown"] {
            go(&["diff", &format!("--server-side={mode}"), "-o", format]);
        }
    }
    go(&[
        "diff",
        "--ignore",
        "Secret/creds:/data/extra",
        "--show-ignored",
        "-o",
        "json",
    ]);
    go(&[
        "diff",
        "--ignore",
        "Secret:/data/password",
        "--show-ignored",
    ]);
    go(&["diff", "secrets", "--server-side=true", "-o", "yaml"]);
    for secret in secrets {
        for format in ["text", "json"] {
            for time in ["relative", "full", "none"] {
                go(&["blame", secret, "-o", format, "--time", time]);
            }
        }
    }
    go(&["blame", "cm/settings"]);
    go(&["revert", "--all", "--dry-run"]);
    go(&["revert", "--all", "--dry-run", "-o", "json"]);
    go(&["revert", "--all"]);
    go(&[
        "revert",
        "secret/creds",
        "secret/client",
        "--yes",
        "-o",
        "json",
    ]);
    go(&["revert", "--all", "--yes"]);
    // stamp's stdout is the manifests themselves, for `kubectl apply -f -`: a Secret in Git is
    // printed as Git has it. Its log and errors are checked like everything else.
    let stamp = run(gitops(&["stamp", "apps", "-v=9"]).current_dir(dir));
    assert_eq!(stamp.code, Some(0), "{}", stamp.stderr);
    runs.push((
        "stamp apps (stderr)".into(),
        Ran {
            code: stamp.code,
            stdout: String::new(),
            stderr: stamp.stderr,
        },
    ));
    let stamp = run(gitops(&["stamp", "broken", "-v=9"]).current_dir(dir));
    runs.push(("stamp broken".into(), stamp));
    for words in [
        &["blame", "-n", ns.as_str(), "secret/"][..],
        &["diff", "secret/c"],
    ] {
        let ran = admin.complete(dir, words);
        runs.push((format!("__complete {}", words.join(" ")), ran));
    }

    for (what, ran) in &runs {
        assert!(
            matches!(ran.code, Some(0..=2)),
            "{what}: exit {:?}: {}",
            ran.code,
            ran.stderr
        );
        assert!(!ran.stderr.contains("panicked"), "{what}: {}", ran.stderr);
        let found = leaks(&format!("{}\n{}", ran.stdout, ran.stderr));
        assert!(
            found.is_empty(),
            "{what}: Secret values {found:?} in\nstdout: {}\nstderr: {}",
            ran.stdout,
            ran.stderr
        );
    }
    // The runs did see the Secrets: drift on each, the broken file named, and the debug log on.
    let by = |name: &str| &runs.iter().find(|(w, _)| w == name).unwrap().1;
    let doc: Value = serde_json::from_str(&by("diff --server-side=true -o json").stdout).unwrap();
    for name in ["creds", "client", "flux-creds"] {
        let item = doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["object"]["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {doc:#}"));
        assert_eq!(item["status"], "drifted", "{name}: {item:#}");
    }
    let broken = by("diff --server-side=auto -o diff");
    assert!(
        broken.stderr.contains("broken/secret.yaml:"),
        "{}",
        broken.stderr
    );
    assert!(
        by("stamp broken").stderr.contains("broken/secret.yaml:"),
        "{}",
        by("stamp broken").stderr
    );
    // Redaction hides Secrets, not everything: the ConfigMap's values and the Secret's
    // annotation show where they belong.
    let blame = &by("blame cm/settings").stdout;
    assert!(blame.contains(CONFIGMAP_LIVE), "{blame}");
    let diff = &by("diff --server-side=auto -o diff").stdout;
    assert!(
        diff.contains(CONFIGMAP_VALUE) && diff.contains(CONFIGMAP_LIVE),
        "{diff}"
    );
    let blame = &by("blame secret/creds -o text --time none").stdout;
    assert!(blame.contains(ANNOTATION_VALUE), "{blame}");
    assert!(blame.contains("password: (hidden)"), "{blame}");
    // The last revert put the Secrets back (and the values it wrote were never shown).
    let ran = admin.run(&ns, dir, &["diff", "secrets", "-o", "json"]);
    let doc: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(doc["summary"]["drifted"], 0, "{doc:#}");
}
