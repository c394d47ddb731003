//! The process environment, read once in `main` and passed down: nothing deeper reads `std::env`.
//! Paths from the command line are resolved against the working directory read here.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What the plugin takes from its environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `$KUBECONFIG`, unsplit.
    pub kubeconfig: Option<OsString>,
    /// The user's home directory (for `~/.kube/config`).
    pub home: Option<PathBuf>,
    /// `NO_COLOR` set to a non-empty value.
    pub no_color: bool,
    /// Whether stdin, stdout and stderr are terminals (revert asks on stdin only when it is).
    pub stdin_tty: bool,
    pub stdout_tty: bool,
    pub stderr_tty: bool,
    /// The working directory.
    pub cwd: Option<PathBuf>,
    /// `$PATH`, where `kubectl` is found (the render cache keys on which one it is).
    pub path: Option<OsString>,
    /// The first `sops` on `$PATH`, which decrypts SOPS-encrypted documents from Git; it reads
    /// the user's own key settings (`SOPS_AGE_KEY_FILE`, PGP, KMS) from the environment it
    /// inherits.
    pub sops: Option<PathBuf>,
    /// Where the plugin keeps its caches: `dirs::cache_dir()/kubectl-gitops`.
    pub cache_dir: Option<PathBuf>,
    /// Set when running in a pod: `KUBERNETES_SERVICE_HOST` and `_PORT` both present.
    pub in_cluster: bool,
    /// Helm's repositories file, as Helm finds it: `$HELM_REPOSITORY_CONFIG`, else
    /// `repositories.yaml` under `$HELM_CONFIG_HOME`, else under Helm's configuration
    /// directory (`$XDG_CONFIG_HOME/helm`, `~/.config/helm`; `~/Library/Preferences/helm` on
    /// macOS, `%APPDATA%\\helm` on Windows).
    pub helm_repository_config: Option<PathBuf>,
    /// Where registry credentials are kept, asked in this order: Helm's (`helm registry
    /// login`: `$HELM_REGISTRY_CONFIG`, else `registry/config.json` in Helm's configuration
    /// directory), then Docker's (`docker login`: `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`).
    pub registry_configs: Vec<PathBuf>,
    /// Test only: `KUBECTL_GITOPS_TEST_HOOK`, a shell command `revert` runs at fixed points
    /// (after planning, after each apply) so that a test can change an object in that window.
    pub test_hook: Option<OsString>,
}

impl Env {
    /// Reads the environment of this process.
    pub fn from_process() -> Env {
        let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let helm_dir = || {
            non_empty("HELM_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| helm_config_dir(non_empty("XDG_CONFIG_HOME")))
        };
        Env {
            kubeconfig: non_empty("KUBECONFIG"),
            home: dirs::home_dir(),
            no_color: non_empty("NO_COLOR").is_some(),
            stdin_tty: std::io::stdin().is_terminal(),
            stdout_tty: std::io::stdout().is_terminal(),
            stderr_tty: std::io::stderr().is_terminal(),
            cwd: std::env::current_dir().ok(),
            path: non_empty("PATH"),
            sops: find_on_path(non_empty("PATH").as_deref(), "sops"),
            cache_dir: dirs::cache_dir().map(|d| d.join("kubectl-gitops")),
            in_cluster: non_empty("KUBERNETES_SERVICE_HOST").is_some()
                && non_empty("KUBERNETES_SERVICE_PORT").is_some(),
            helm_repository_config: non_empty("HELM_REPOSITORY_CONFIG")
                .map(PathBuf::from)
                .or_else(|| Some(helm_dir()?.join("repositories.yaml"))),
            registry_configs: [
                non_empty("HELM_REGISTRY_CONFIG")
                    .map(PathBuf::from)
                    .or_else(|| Some(helm_dir()?.join("registry/config.json"))),
                non_empty("DOCKER_CONFIG")
                    .map(|d| PathBuf::from(d).join("config.json"))
                    .or_else(|| Some(dirs::home_dir()?.join(".docker/config.json"))),
            ]
            .into_iter()
            .flatten()
            .collect(),
            test_hook: non_empty("KUBECTL_GITOPS_TEST_HOOK"),
        }
    }
}

/// Helm's own configuration directory when `$HELM_CONFIG_HOME` is not set (Helm's
/// `helmpath` lazy paths).
fn helm_config_dir(xdg_config_home: Option<OsString>) -> Option<PathBuf> {
    if let Some(xdg) = xdg_config_home {
        return Some(PathBuf::from(xdg).join("helm"));
    }
    if cfg!(target_os = "macos") {
        return dirs::home_dir().map(|h| h.join("Library/Preferences/helm"));
    }
    if cfg!(windows) {
        return dirs::config_dir().map(|d| d.join("helm"));
    }
    dirs::home_dir().map(|h| h.join(".config/helm"))
}

/// The first executable file called `name` (`name.exe` on Windows) in the directories of
/// `path`, as a shell would find it.
pub fn find_on_path(path: Option<&std::ffi::OsStr>, name: &str) -> Option<PathBuf> {
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    std::env::split_paths(path?)
        .map(|dir| dir.join(&file))
        .find(|candidate| candidate.metadata().is_ok_and(|m| is_executable(&m)))
}

impl Env {
    /// The first executable file `name` in `$PATH`.
    pub fn find_program(&self, name: &str) -> Option<PathBuf> {
        find_on_path(self.path.as_deref(), name)
    }
}

#[cfg(unix)]
fn is_executable(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    m.is_file() && m.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(m: &std::fs::Metadata) -> bool {
    m.is_file()
}

/// `path` made absolute against the working directory, symlinks resolved when it exists.
pub fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    joined.canonicalize().unwrap_or(joined)
}

/// `path` relative to `base`, with `/` separators; None when it is not inside.
pub fn relative_to(base: &Path, path: &Path) -> Option<String> {
    let base = base.canonicalize().unwrap_or_else(|_| base.to_path_buf());
    let rel = path.strip_prefix(&base).ok()?;
    Some(rel.to_string_lossy().replace('\\', "/"))
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
