//! Hostile input through the binary, on the real control plane: what a repository holds (YAML
//! bombs, a 50 MB manifest, invalid UTF-8, binary files, a kustomization that reaches for a
//! remote base or out of the repository), what objects carry (annotations as large as the
//! server allows, a Flux path of 1 MB), and what a kubeconfig says (unknown fields, an exec
//! credential plugin that fails or hangs). Each bad thing fails its own objects with one clear
//! line, exit 2; the other objects are still reported; nothing is written or fetched.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::{ALICE, GitRepo};
use crate::hardening::{User, is_write};
use crate::support::{Ran, gitops, kubectl, run};

const ORIGIN: &str = "https://git.example.com/acme/apps.git";

/// A listener that accepts connections and never answers, counting them: where a remote base
/// would be fetched from.
struct BlackHole {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl BlackHole {
    fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        BlackHole { port, accepted }
    }
}

fn billion_laughs(name: &str) -> String {
    let mut text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\nlaughs:\n  \
         a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
    );
    for (prev, next) in ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i", "j"])
    {
        text.push_str(&format!(
            "  {next}: &{next} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
    }
    text
}

fn annotated(name: &str, path: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations:\n    \
         kubectl-gitops.dev/repo: {ORIGIN}\n    kubectl-gitops.dev/path: '{path}'\n\
         data:\n  key: value\n"
    )
}

fn flux_labelled(ns: &str, name: &str, kustomization: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    \
         kustomize.toolkit.fluxcd.io/name: {kustomization}\n    \
         kustomize.toolkit.fluxcd.io/namespace: {ns}\ndata:\n  key: value\n"
    )
}

fn flux_kustomization(name: &str, path: &str) -> String {
    format!(
        "---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n\
         metadata: {{name: {name}}}\n\
         spec: {{interval: 5m, prune: true, path: '{path}', sourceRef: {{kind: GitRepository, name: apps}}}}\n"
    )
}

/// The objects of a DriftReport or TraceReport, by name.
fn items(ran: &Ran) -> std::collections::BTreeMap<String, Value> {
    let doc: Value = serde_json::from_str(&ran.stdout).unwrap_or_else(|e| {
        panic!(
            "-o json: {e}\nstdout: {}\nstderr: {}",
            ran.stdout, ran.stderr
        )
    });
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["object"]["name"].as_str().unwrap().to_owned(), i.clone()))
        .collect()
}

/// The `error: ` line on stderr about one object (exactly one), checked for manners.
#[track_caller]
fn error_about<'a>(ran: &'a Ran, ns: &str, name: &str) -> &'a str {
    let lines: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|l| l.starts_with(&format!("error: ConfigMap {ns}/{name}: ")))
        .collect();
    assert_eq!(lines.len(), 1, "{name}: {}", ran.stderr);
    assert!(lines[0].len() < 600, "a readable line: {}", lines[0]);
    lines[0]
}

#[test]
fn hostile_repository_content_fails_its_own_objects_only() {
    let cp = testenv::shared();
    cp.install_gitops_crds();
    let ns = cp.namespace("hostile-repo");
    let hole = BlackHole::start();
    // A kustomization outside the repository, which an escaping base would read. It sits in
    // the same temporary directory as the tree exported for `kubectl kustomize`.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("kustomization.yaml"),
        "resources: [stolen.yaml]\n",
    )
    .unwrap();
    std::fs::write(
        outside.path().join("stolen.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stolen}\ndata: {from: outside-the-repo}\n",
    )
    .unwrap();

    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  key: {}\n",
        "a".repeat(50 << 20)
    );
    let big_says = format!(
        "apps/big.yaml is {} bytes, over the 16777216-byte limit for a manifest",
        big.len()
    );
    let mut repo = GitRepo::new();
    repo.git(&["remote", "add", "origin", ORIGIN]);
    repo.write(
        "apps/good.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: good\ndata:\n  key: value\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\ndata:\n  key: value\n",
    )
    .write("apps/bomb.yaml", &billion_laughs("bomb"))
    .write(
        "apps/deep.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\ndata: {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
    )
    .write("apps/big.yaml", &big)
    .write(
        "remote/kustomization.yaml",
        &format!(
            "resources:\n  - cm.yaml\n  - https://127.0.0.1:{}/acme/base//deploy?ref=v1\n",
            hole.port
        ),
    )
    .write(
        "remote/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: remote\ndata:\n  key: value\n",
    )
    .write(
        "escape/kustomization.yaml",
        // Relative, as kustomize takes it (it refuses absolute directories itself): from
        // <export>/escape up to the temporary directory both live in.
        &format!(
            "resources:\n  - cm.yaml\n  - ../../{}\n",
            outside.path().file_name().unwrap().to_string_lossy()
        ),
    )
    .write(
        "escape/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: escape\ndata:\n  key: value\n",
    );
    std::fs::write(
        repo.path().join("apps/latin1.yaml"),
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: latin1\ndata:\n  key: caf\xe9\n",
    )
    .unwrap();
    std::fs::write(
        repo.path().join("apps/binary.yaml"),
        [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13],
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../../../etc/passwd",
        repo.path().join("apps/passwd.yaml"),
    )
    .unwrap();
    let commit = repo.commit(ALICE, "Apps, and worse");

    // `plain` carries no marker: only the search of the whole repository finds it.
    let mut live = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\ndata:\n  key: value\n",
    );
    for (name, file) in [
        ("good", "apps/good.yaml"),
        ("bomb", "apps/bomb.yaml"),
        ("deep", "apps/deep.yaml"),
        ("big", "apps/big.yaml"),
        ("latin1", "apps/latin1.yaml"),
        ("binary", "apps/binary.yaml"),
        ("symlink", "apps/passwd.yaml"),
        ("escape-path", "../../../etc/passwd"),
        ("absolute-path", "/etc/passwd"),
    ] {
        live.push_str(&annotated(name, file));
    }
    // URLs that would run a command, or be read as an option, if they reached Git.
    let pwned = tempfile::tempdir().unwrap();
    let marker = pwned.path().join("pwned");
    let ext = format!("ext::sh -c touch% {}", marker.display());
    let ext_no_space = format!("ext::touch%{}", marker.display());
    let dash = format!("--upload-pack=touch%{}", marker.display());
    live.push_str(&annotated("ext-url", "apps/good.yaml").replace(ORIGIN, &ext_no_space));
    live.push_str(&annotated("ext-space", "apps/good.yaml").replace(ORIGIN, &ext));
    live.push_str(&annotated("dash-url", "apps/good.yaml").replace(ORIGIN, &dash));
    // As large as the API server lets annotations be (256 KiB in all, per object).
    let huge = "a".repeat(250_000);
    live.push_str(&annotated("huge-path", &huge));
    live.push_str(&annotated("huge-repo", "ok.yaml").replace(ORIGIN, &format!("https://{huge}")));
    live.push_str(&format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: huge-origin\n  annotations:\n    \
         config.kubernetes.io/origin: 'path: {huge}'\n"
    ));
    live.push_str(&format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: huge-tracking\n  annotations:\n    \
         argocd.argoproj.io/tracking-id: 'app:/ConfigMap:{ns}/{huge}'\n"
    ));
    live.push_str(&flux_labelled(&ns, "remote", "remote"));
    live.push_str(&flux_labelled(&ns, "escape", "escape"));
    live.push_str(&flux_labelled(&ns, "hugepath", "hugepath"));
    live.push_str(&format!(
        "---\napiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {{name: apps}}\n\
         spec: {{url: '{ORIGIN}', interval: 1m, ref: {{branch: main}}}}\n"
    ));
    live.push_str(&flux_kustomization("remote", "./remote"));
    live.push_str(&flux_kustomization("escape", "./escape"));
    // A Flux path of 1 MB: a Kustomization's spec is not capped like annotations are.
    live.push_str(&flux_kustomization("hugepath", &"p".repeat(1 << 20)));
    kubectl(&ns, &["apply", "--server-side", "-f", "-"], Some(&live));
    for k in ["remote", "escape", "hugepath"] {
        let status =
            serde_json::json!({"status": {"lastAppliedRevision": format!("main@sha1:{commit}")}});
        kubectl(
            &ns,
            &[
                "patch",
                &format!("kustomization/{k}"),
                "--subresource=status",
                "--type=merge",
                "-p",
                &status.to_string(),
            ],
            None,
        );
    }

    let admin = User::admin();
    let dir = repo.path();
    let started = Instant::now();
    let ran = admin.run(&ns, dir, &["diff", "-o", "json", "cm"]);
    let took = started.elapsed();
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(took < Duration::from_secs(60), "bounded: {took:?}");
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
    let got = items(&ran);
    assert_eq!(got["good"]["status"], "in-sync", "{:#}", got["good"]);
    let expect = [
        ("bomb", "apps/bomb.yaml:"),
        ("deep", "apps/deep.yaml:"),
        ("big", big_says.as_str()),
        (
            "latin1",
            "apps/latin1.yaml is not UTF-8 text (a binary file where YAML was expected?)",
        ),
        (
            "binary",
            "apps/binary.yaml is not UTF-8 text (a binary file where YAML was expected?)",
        ),
        (
            "huge-path",
            "kubectl-gitops.dev/path (250000 bytes): longer than 4096 bytes",
        ),
        (
            "huge-repo",
            "kubectl-gitops.dev/repo (250008 bytes): longer than 4096 bytes",
        ),
        ("huge-origin", "config.kubernetes.io/origin"),
        ("huge-tracking", "argocd.argoproj.io/tracking-id"),
        ("remote", "refers to the remote base"),
        ("escape", "outside the repository"),
        ("hugepath", "longer than 4096 bytes"),
        (
            "symlink",
            "refused path 'apps/passwd.yaml': symlink 'apps/passwd.yaml' points outside the \
             repository",
        ),
        ("escape-path", "refused path '../../../etc/passwd'"),
        ("absolute-path", "refused path '/etc/passwd'"),
        ("ext-url", "transport 'ext' is not allowed"),
        ("ext-space", "contains whitespace or control characters"),
        (
            "dash-url",
            "begins with '-' and could be read as a command-line option",
        ),
    ];
    for (name, says) in expect {
        assert_eq!(got[name]["status"], "error", "{name}: {:#}", got[name]);
        let line = error_about(&ran, &ns, name);
        assert!(line.contains(says), "{name}: {line}");
    }
    assert_eq!(
        hole.accepted.load(Ordering::SeqCst),
        0,
        "the remote base was never contacted"
    );
    assert!(!ran.stdout.contains("outside-the-repo"));
    assert!(!ran.stdout.contains("root:x:0:0") && !ran.stderr.contains("root:x:0:0"));
    assert!(!marker.exists(), "no command ran");
    assert!(!ran.stderr.contains(&huge), "values are not echoed");

    // The same through the text report, blame, trace and stamp.
    let ran = admin.run(&ns, dir, &["diff", "cm"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    error_about(&ran, &ns, "bomb");
    // blame still shows each line's field manager, and says why Git could not be read.
    for (name, says) in [
        ("bomb", "apps/bomb.yaml:"),
        ("remote", "refers to the remote base"),
    ] {
        let ran = admin.run(&ns, dir, &["blame", &format!("cm/{name}")]);
        assert_eq!(ran.code, Some(2), "{}", ran.stderr);
        assert!(ran.stdout.contains("| data:"), "{}", ran.stdout);
        assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
        assert!(
            ran.stderr.starts_with("error: ") && ran.stderr.contains(says),
            "{}",
            ran.stderr
        );
    }
    let ran = admin.run(
        &ns,
        dir,
        &["trace", "cm/good", "cm/big", "cm/escape", "-o", "json"],
    );
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert_eq!(items(&ran)["good"]["source"]["file"], "apps/good.yaml");
    error_about(&ran, &ns, "big");
    error_about(&ran, &ns, "escape");
    // The fallback search reads every file of the repository: the bad ones do not stop it.
    let ran = admin.run(
        &ns,
        dir,
        &["trace", "cm/plain", "-o", "json", "--repo", "."],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(items(&ran)["plain"]["source"]["file"], "apps/good.yaml");
    let started = Instant::now();
    let ran = run(gitops(&["stamp", "remote"]).current_dir(dir));
    assert!(started.elapsed() < Duration::from_secs(20));
    let line = ran.assert_one_line_error();
    assert!(line.contains("refers to the remote base"), "{line}");
    let ran = run(gitops(&["stamp", "apps"]).current_dir(dir));
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains(&big_says), "{}", ran.stderr);
    assert_eq!(hole.accepted.load(Ordering::SeqCst), 0);

    // Nothing was written in the namespace by any of it.
    let ours: Vec<Value> = cp
        .audit_events()
        .unwrap()
        .into_iter()
        .filter(|e| {
            e["userAgent"]
                .as_str()
                .is_some_and(|ua| ua.starts_with("kubectl-gitops/"))
                && e["objectRef"]["namespace"] == ns.as_str()
                && is_write(e)
        })
        .collect();
    assert!(ours.is_empty(), "{ours:#?}");
}

/// A kubeconfig for the admin user, written by hand with `user` and `extra` spliced in.
fn kubeconfig(dir: &Path, name: &str, user: &str, extra: &str) -> std::path::PathBuf {
    let cp = testenv::shared();
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\n{extra}clusters:\n  - name: c\n    cluster:\n      \
             server: {}\n      insecure-skip-tls-verify: true\n      some-future-field: [1, 2]\n\
             users:\n  - name: u\n    user:\n{user}\
             contexts:\n  - name: ctx\n    context:\n      cluster: c\n      user: u\n      \
             unknown-too: {{a: b}}\ncurrent-context: ctx\n",
            cp.server
        ),
    )
    .unwrap();
    path
}

fn admin_token() -> String {
    let cp = testenv::shared();
    let text = std::fs::read_to_string(cp.dir.join("tokens.csv")).unwrap();
    text.split(',').next().unwrap().to_owned()
}

#[test]
fn a_kubeconfig_with_unknown_fields_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = kubeconfig(
        dir.path(),
        "unknown.yaml",
        &format!(
            "      token: {}\n      an-unknown-credential-field: x\n",
            admin_token()
        ),
        "preferences: {colors: true, someday: maybe}\nextensions:\n  - name: x\n    extension: {a: 1}\nnot-a-kubeconfig-field: 3\n",
    );
    let user = User::with_kubeconfig(path);
    let ran = user.run("default", dir.path(), &["context", "-o", "json"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let doc: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(doc["context"], "ctx");
    assert!(doc["serverVersion"]["gitVersion"].is_string(), "{doc:#}");
    let ran = user.run("default", dir.path(), &["diff", "cm"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
}

/// An exec credential plugin: a shell script.
fn plugin(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn exec_user(command: &str, interactive: &str) -> String {
    format!(
        "      exec:\n        apiVersion: client.authentication.k8s.io/v1\n        \
         command: {command}\n        interactiveMode: {interactive}\n        \
         env:\n          - {{name: PLANTED_EXEC_ENV, value: planted-exec-env-9d1c}}\n"
    )
}

#[test]
fn an_exec_plugin_that_fails_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let failing = plugin(
        dir.path(),
        "fails.sh",
        "echo '{\"token\": \"planted-half-token-5e7a\"}'\necho 'login expired: run sso login' >&2\nexit 3\n",
    );
    // Never interactive: the plugin's stderr is ours to report, in one line.
    let path = kubeconfig(dir.path(), "fails.yaml", &exec_user(&failing, "Never"), "");
    let user = User::with_kubeconfig(path);
    let ran = user.run("default", dir.path(), &["context"]);
    let line = ran.assert_one_line_error();
    assert_eq!(
        line,
        format!(
            "error: cannot get credentials for user 'u': the exec plugin '{failing}' failed \
             (exit status: 3): login expired: run sso login"
        )
    );
    // Interactive (the default): its stderr went to the terminal as it ran; our line follows.
    let path = kubeconfig(
        dir.path(),
        "fails-interactive.yaml",
        &exec_user(&failing, "IfAvailable"),
        "",
    );
    let user = User::with_kubeconfig(path);
    let ran = user.run("default", dir.path(), &["diff"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert_eq!(
        ran.stderr,
        format!(
            "login expired: run sso login\nerror: cannot get credentials for user 'u': the exec \
             plugin '{failing}' failed (exit status: 3)\n"
        )
    );
    for leaked in ["planted-exec-env-9d1c", "planted-half-token-5e7a"] {
        assert!(!ran.stderr.contains(leaked), "{leaked}: {}", ran.stderr);
    }
    // A plugin that is not there.
    let path = kubeconfig(
        dir.path(),
        "missing.yaml",
        &exec_user("/nonexistent/kubectl-login", "Never"),
        "",
    );
    let ran = User::with_kubeconfig(path).run("default", dir.path(), &["trace", "cm/x"]);
    let line = ran.assert_one_line_error();
    assert!(
        line.starts_with(
            "error: cannot get credentials for user 'u': cannot run the exec plugin \
             '/nonexistent/kubectl-login': "
        ),
        "{line}"
    );
}

#[test]
fn an_exec_plugin_that_hangs_is_bounded_by_the_request_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("plugin.pid");
    // It lets go of our stderr (a caller reading it to the end would wait for the plugin too)
    // and waits for ever, as a login waiting for a browser does.
    let hanging = plugin(
        dir.path(),
        "hangs.sh",
        &format!(
            "echo $$ > '{}'\nexec 2>/dev/null\nexec sleep 600\n",
            pid_file.display()
        ),
    );
    let path = kubeconfig(dir.path(), "hangs.yaml", &exec_user(&hanging, "Never"), "");
    let user = User::with_kubeconfig(path);
    for args in [
        &["context", "--request-timeout=2s"][..],
        &["diff", "--request-timeout=2s"],
    ] {
        let started = Instant::now();
        let ran = user.run("default", dir.path(), args);
        let took = started.elapsed();
        let line = ran.assert_one_line_error();
        assert_eq!(
            line,
            format!(
                "error: cannot get credentials for user 'u': the exec plugin '{hanging}' did \
                 not answer within 2s (--request-timeout)"
            )
        );
        assert!(took < Duration::from_secs(10), "{args:?}: {took:?}");
        // The plugin is left behind (it is not ours to kill); end it here.
        let mut pid = String::new();
        std::fs::File::open(&pid_file)
            .unwrap()
            .read_to_string(&mut pid)
            .unwrap();
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    }
}
