//! Running the plugin the way users do, hermetically: no inherited KUBECONFIG, HOME, NO_COLOR or
//! GIT_* settings.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::fixture::GitRepo;

/// The built plugin binary.
pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kubectl-gitops"))
}

/// A scratch directory for this test binary, removed at exit only by the OS temp cleaner.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("creating a scratch dir"))
        .path()
}

/// A directory holding only `kubectl-gitops`, for kubectl's plugin lookup on PATH.
fn plugin_dir() -> PathBuf {
    let dir = scratch().join("plugin-bin");
    if !dir.join("kubectl-gitops").exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::os::unix::fs::symlink(binary(), dir.join("kubectl-gitops"));
    }
    dir
}

/// Clears what the user's environment could change: KUBECONFIG, NO_COLOR, in-cluster settings,
/// GIT_*; HOME is a scratch directory.
pub fn hermetic(cmd: &mut Command) {
    let home = scratch().join("home");
    std::fs::create_dir_all(&home).unwrap();
    cmd.env_remove("KUBECONFIG")
        .env_remove("NO_COLOR")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("HOME", home);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(key);
        }
    }
}

/// `kubectl-gitops ARGS`, run directly.
pub fn gitops(args: &[&str]) -> Command {
    let mut cmd = Command::new(binary());
    hermetic(&mut cmd);
    cmd.args(args);
    cmd
}

/// `kubectl gitops ARGS`, through kubectl's plugin dispatch.
pub fn kubectl_gitops(args: &[&str]) -> Command {
    let mut cmd = Command::new("kubectl");
    hermetic(&mut cmd);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![plugin_dir()];
    dirs.extend(std::env::split_paths(&path));
    cmd.env("PATH", std::env::join_paths(dirs).unwrap());
    cmd.arg("gitops").args(args);
    cmd
}

/// The result of a finished command, with its output as text.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Ran {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("running the command");
    Ran {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

impl Ran {
    /// A failure the way the plugin promises it: exit 2, nothing on stdout, exactly one line on
    /// stderr starting with `error: `, and no panic or backtrace.
    #[track_caller]
    pub fn assert_one_line_error(&self) -> &str {
        assert_eq!(self.code, Some(2), "exit code; stderr: {}", self.stderr);
        assert_eq!(self.stdout, "", "stdout must stay empty on error");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr, got: {:?}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{}", lines[0]);
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        assert!(!self.stderr.contains("backtrace"), "{}", self.stderr);
        lines[0]
    }

    /// The `error: ` lines on stderr (a run that reports the other objects says each failure
    /// in one).
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect()
    }
}

/// `kubectl --kubeconfig <admin> -n NS ARGS`, with `stdin` fed to it; panics with kubectl's
/// own message when it fails (test setup must not fail silently).
pub fn kubectl(ns: &str, args: &[&str], stdin: Option<&str>) {
    kubectl_run(testenv::shared().kubectl(), ns, args, stdin)
}

/// [`kubectl`] against the control plane of `kubeconfig` (one a test started for itself).
pub fn kubectl_at(kubeconfig: &Path, ns: &str, args: &[&str], stdin: Option<&str>) {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(kubeconfig);
    kubectl_run(cmd, ns, args, stdin)
}

fn kubectl_run(mut cmd: Command, ns: &str, args: &[&str], stdin: Option<&str>) {
    use std::io::Write;
    let mut child = cmd
        .arg("-n")
        .arg(ns)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running kubectl");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("writing to kubectl");
    let out = child.wait_with_output().expect("waiting for kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes `repo`'s `origin` the URL real Flux reads it from (testenv's Git server), so that our
/// commands run in the work tree use it as the local checkout, and stamped objects name it.
pub fn flux_origin(repo: &GitRepo) -> String {
    let url = testenv::flux::shared()
        .git
        .url_of(repo.path())
        .expect("serving the repository to Flux");
    if repo.git(&["remote"]).lines().any(|r| r == "origin") {
        repo.git(&["remote", "set-url", "origin", &url]);
    } else {
        repo.git(&["remote", "add", "origin", &url]);
    }
    url
}

/// Real Flux (tests/testenv's source-controller and kustomize-controller) reconciles branch
/// `main` of `repo` at `path` into `ns`: a GitRepository and a Kustomization `apps`, with
/// `targetNamespace: ns` and `prune: true`, Ready at the branch's tip, which it returns. The
/// repository's `origin` becomes the URL Flux reads ([`flux_origin`]).
pub fn reconciled_by_flux(ns: &str, repo: &GitRepo, path: &str) -> String {
    flux_origin(repo);
    testenv::flux::shared()
        .reconcile(
            ns,
            "apps",
            repo.path(),
            path,
            serde_json::json!({"targetNamespace": ns}),
        )
        .unwrap_or_else(|e| panic!("Flux reconciling {path} into {ns}: {e:#}"))
}

/// The JSON a command printed; panics with its output when it is not JSON.
pub fn json_of(ran: &Ran) -> serde_json::Value {
    serde_json::from_str(&ran.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON: {e}\nstdout: {}\nstderr: {}",
            ran.stdout, ran.stderr
        )
    })
}

/// A report's items by `Kind/name`.
pub fn items(report: &serde_json::Value) -> std::collections::BTreeMap<String, serde_json::Value> {
    report["items"]
        .as_array()
        .expect("a report has items")
        .iter()
        .map(|i| {
            (
                format!(
                    "{}/{}",
                    i["object"]["kind"].as_str().unwrap_or_default(),
                    i["object"]["name"].as_str().unwrap_or_default()
                ),
                i.clone(),
            )
        })
        .collect()
}

/// Sets PATH of `cmd` (from [`kubectl_gitops`]): kubectl's plugin directory first, then the
/// directory of `helm` when given, then the inherited PATH without any `helm` in it.
pub fn path_with_helm(cmd: &mut Command, helm: Option<&Path>) {
    let plugin_path = cmd
        .get_envs()
        .find(|(k, _)| *k == "PATH")
        .and_then(|(_, v)| v.map(|v| v.to_owned()))
        .unwrap_or_default();
    let mut dirs: Vec<std::path::PathBuf> = std::env::split_paths(&plugin_path).take(1).collect();
    if let Some(helm) = helm {
        dirs.push(helm.parent().expect("helm is a file").to_path_buf());
    }
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    dirs.extend(std::env::split_paths(&inherited).filter(|d| !d.join("helm").exists()));
    cmd.env(
        "PATH",
        std::env::join_paths(dirs).expect("PATH entries join"),
    );
}
