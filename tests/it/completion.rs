//! `kubectl gitops <TAB>`: kubectl's own completion (`kubectl __complete gitops WORDS...`) runs
//! our `kubectl_complete-gitops` from PATH, against the real control plane.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{gitops, hermetic, kubectl, run, scratch};

/// A directory holding the plugin and its completion helper, as an install puts them.
fn bin_dir() -> PathBuf {
    let dir = scratch().join("completion-bin");
    if !dir.join("kubectl_complete-gitops").exists() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, target) in [
            ("kubectl-gitops", env!("CARGO_BIN_EXE_kubectl-gitops")),
            (
                "kubectl_complete-gitops",
                env!("CARGO_BIN_EXE_kubectl_complete-gitops"),
            ),
        ] {
            let _ = std::os::unix::fs::symlink(target, dir.join(name));
        }
    }
    dir
}

/// `kubectl __complete gitops WORDS...` with the helper on PATH and `kubeconfig` in KUBECONFIG.
fn kubectl_complete(kubeconfig: Option<&Path>, words: &[&str]) -> Command {
    let mut cmd = Command::new("kubectl");
    hermetic(&mut cmd);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(bin_dir()).chain(std::env::split_paths(&path));
    cmd.env("PATH", std::env::join_paths(dirs).unwrap());
    if let Some(kubeconfig) = kubeconfig {
        cmd.env("KUBECONFIG", kubeconfig);
    }
    cmd.args(["__complete", "gitops"]).args(words);
    cmd
}

/// The candidate lines and the directive of a completion answer.
fn answer(cmd: &mut Command) -> (Vec<String>, String) {
    let ran = run(cmd);
    assert_eq!(ran.code, Some(0), "stderr: {}", ran.stderr);
    let mut lines: Vec<String> = ran.stdout.lines().map(str::to_owned).collect();
    let directive = lines.pop().unwrap_or_default();
    assert!(
        directive.starts_with(':'),
        "the last line is the directive: {:?}",
        ran.stdout
    );
    (lines, directive)
}

fn complete(words: &[&str]) -> (Vec<String>, String) {
    answer(&mut kubectl_complete(
        Some(&testenv::shared().kubeconfig),
        words,
    ))
}

#[test]
fn subcommands_with_their_descriptions() {
    let (lines, directive) = complete(&[""]);
    assert_eq!(directive, ":4", "no file names");
    for line in [
        "diff\tReport what drifted from Git, and who changed it",
        "trace\tShow where an object came from: repo, file, lines, commit, reconciler",
        "blame\tShow which commit, or which out-of-band change, set each field",
        "completion\tPrint a shell completion script for kubectl-gitops run on its own",
        "version\tShow the version and the commit it was built from",
    ] {
        assert!(lines.contains(&line.to_owned()), "{line:?} in {lines:#?}");
    }
    assert!(!lines.iter().any(|l| l.starts_with("__")), "{lines:?}");
    // What the user typed narrows them.
    let (lines, _) = complete(&["co"]);
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(names, ["context", "completion"]);
}

#[test]
fn contexts_come_from_the_kubeconfig() {
    let (lines, directive) = complete(&["diff", "--context", ""]);
    assert_eq!(lines, [testenv::ADMIN_CONTEXT, testenv::VIEWER_CONTEXT]);
    assert_eq!(directive, ":4");
    // --kubeconfig on the line, no KUBECONFIG; the attached form keeps its prefix.
    let kubeconfig = testenv::shared().kubeconfig.display().to_string();
    let (lines, _) = answer(&mut kubectl_complete(
        None,
        &["--kubeconfig", &kubeconfig, "blame", "--context=testenv-v"],
    ));
    assert_eq!(lines, [format!("--context={}", testenv::VIEWER_CONTEXT)]);
}

#[test]
fn object_names_come_from_the_cluster() {
    let ns = testenv::shared().namespace("complete-names");
    for name in ["web", "worker"] {
        kubectl(
            &ns,
            &["create", "deployment", name, "--image=nginx:1.27"],
            None,
        );
    }
    kubectl(&ns, &["create", "configmap", "settings"], None);

    // `kubectl __complete gitops blame deploy/""`, the namespace being the context's: a first
    // kubeconfig file gives the admin context that namespace, the real one the rest.
    let first = scratch().join("complete-names.kubeconfig");
    std::fs::write(
        &first,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: {ctx}\n\
             contexts: [{{name: {ctx}, context: {{cluster: testenv, user: admin, namespace: {ns}}}}}]\n",
            ctx = testenv::ADMIN_CONTEXT
        ),
    )
    .unwrap();
    let list =
        std::env::join_paths([first.as_path(), testenv::shared().kubeconfig.as_path()]).unwrap();
    let (lines, directive) =
        answer(kubectl_complete(None, &["blame", "deploy/"]).env("KUBECONFIG", &list));
    assert_eq!(lines, ["deploy/web", "deploy/worker"]);
    assert_eq!(directive, ":4");
    let (lines, _) = complete(&["blame", "-n", &ns, "deploy/"]);
    assert_eq!(lines, ["deploy/web", "deploy/worker"]);
    let (lines, _) = complete(&["blame", "--namespace", &ns, "deploy/wo"]);
    assert_eq!(lines, ["deploy/worker"]);
    let (lines, _) = complete(&["-n", &ns, "diff", "deployments.apps/", "cm/"]);
    assert_eq!(lines, ["cm/settings"]);
    // Another namespace has none of them.
    let (lines, _) = complete(&["blame", "-n", "default", "deploy/"]);
    assert!(lines.is_empty(), "{lines:?}");

    // Types: blame needs a name, so the type ends with `/` and no space follows.
    let (lines, directive) = complete(&["blame", "-n", &ns, "deploym"]);
    assert_eq!(lines, ["deployments/"]);
    assert_eq!(directive, ":6");
    let (lines, directive) = complete(&["diff", "configm"]);
    assert_eq!(lines, ["configmaps"]);
    assert_eq!(directive, ":4");
}

#[test]
fn namespaces_come_from_the_cluster() {
    let ns = testenv::shared().namespace("complete-ns");
    let (lines, directive) = complete(&["diff", "-n", ""]);
    for expected in [ns.as_str(), "default", "kube-system"] {
        assert!(
            lines.contains(&expected.to_owned()),
            "{expected} in {lines:?}"
        );
    }
    assert_eq!(directive, ":4");
    let (lines, _) = complete(&["diff", "--namespace=kube-sy"]);
    assert_eq!(lines, ["--namespace=kube-system"]);
}

#[test]
fn flags_and_their_fixed_values() {
    let (lines, _) = complete(&["diff", "--server-s"]);
    assert_eq!(
        lines,
        [
            "--server-side\tauto: prove in-sync offline, dry-run the rest; true: dry-run every \
             object; false: never (only GET and LIST requests)"
        ]
    );
    let (lines, _) = complete(&["diff", "-o", ""]);
    assert_eq!(lines, ["diff", "table", "json", "yaml", "markdown"]);
    // A path: the shell completes file names.
    let (lines, directive) = complete(&["diff", "-f", ""]);
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(directive, ":0");
}

#[test]
fn the_hidden_command_answers_like_the_helper() {
    let kubeconfig = testenv::shared().kubeconfig.clone();
    let direct =
        run(gitops(&["__complete", "diff", "--context", ""]).env("KUBECONFIG", &kubeconfig));
    let through_kubectl = run(&mut kubectl_complete(
        Some(&kubeconfig),
        &["diff", "--context", ""],
    ));
    assert_eq!(direct.code, Some(0), "{}", direct.stderr);
    assert_eq!(direct.stdout, through_kubectl.stdout);
    assert_eq!(direct.stderr, "");
}

/// A kubeconfig whose server is `server`.
fn kubeconfig_for(name: &str, server: &str) -> PathBuf {
    let path = scratch().join(format!("{name}.kubeconfig"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters: [{{name: c, cluster: {{server: '{server}', insecure-skip-tls-verify: true}}}}]\n\
             users: [{{name: u, user: {{token: t}}}}]\n\
             contexts: [{{name: c, context: {{cluster: c, user: u}}}}]\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn no_cluster_means_no_candidates_soon() {
    // Nothing listens: refused at once.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let refused = kubeconfig_for("refused", &format!("https://127.0.0.1:{port}"));
    let started = Instant::now();
    let (lines, directive) = answer(&mut kubectl_complete(Some(&refused), &["blame", "deploy/"]));
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(directive, ":4");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The kubeconfig's names still complete without a cluster.
    let (lines, _) = answer(&mut kubectl_complete(Some(&refused), &["--context", ""]));
    assert_eq!(lines, ["c"]);

    // A server that takes the connection and never answers: the typed --request-timeout holds,
    // else the completion default of 5 s. Timed on the helper alone: the kubectl on PATH here
    // spends 5 s of its own on such a server before it runs any plugin.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let hanging = kubeconfig_for(
        "hanging",
        &format!("https://127.0.0.1:{}", silent.local_addr().unwrap().port()),
    );
    for (words, at_least, below) in [
        (&["diff", "--request-timeout=1s", "-n", ""][..], 1, 3),
        (&["--request-timeout", "2s", "blame", "deploy/"], 2, 4),
        (&["trace", "cm/"], 5, 7),
    ] {
        let mut helper = Command::new(env!("CARGO_BIN_EXE_kubectl_complete-gitops"));
        hermetic(&mut helper);
        helper.env("KUBECONFIG", &hanging).args(words);
        let started = Instant::now();
        let (lines, directive) = answer(&mut helper);
        let took = started.elapsed();
        assert!(lines.is_empty(), "{words:?}: {lines:?}");
        assert_eq!(directive, ":4");
        assert!(
            took >= Duration::from_secs(at_least) && took < Duration::from_secs(below),
            "{words:?} took {took:?}"
        );
    }
    // Through kubectl, the answer is the same.
    let (lines, directive) = answer(&mut kubectl_complete(
        Some(&hanging),
        &["diff", "--request-timeout=1s", "-n", ""],
    ));
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(directive, ":4");
    drop(silent);
}

#[test]
fn standalone_scripts_load_in_their_shell() {
    let ran = run(&mut crate::support::kubectl_gitops(&["completion", "bash"]));
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let script = scratch().join("kubectl-gitops.bash");
    std::fs::write(&script, &ran.stdout).unwrap();
    let bash = run(Command::new("bash").arg("--norc").arg("-c").arg(format!(
        "source {} && complete -p kubectl-gitops",
        script.display()
    )));
    assert_eq!(bash.code, Some(0), "{}", bash.stderr);
    assert!(
        bash.stdout.contains("kubectl-gitops"),
        "a completion is registered: {}",
        bash.stdout
    );
    for (shell, first) in [("zsh", "#compdef kubectl-gitops"), ("fish", "")] {
        let ran = run(&mut crate::support::kubectl_gitops(&["completion", shell]));
        assert_eq!(ran.code, Some(0), "{shell}: {}", ran.stderr);
        assert!(ran.stdout.starts_with(first), "{shell}: {}", ran.stdout);
        assert!(ran.stdout.contains("blame"), "{shell}");
    }
    let ran = run(&mut crate::support::kubectl_gitops(&["completion", "tcsh"]));
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr.contains("invalid value 'tcsh'"),
        "{}",
        ran.stderr
    );
}
