//! Flux's own source-controller and kustomize-controller, built from their Go modules and run as
//! plain processes against the test control plane, with Git served over smart HTTP on loopback:
//! the reference for what Flux really applies (inventory, labels, field managers, pruning),
//! instead of our belief of it.
//!
//! ```no_run
//! let cp = testenv::shared();
//! let flux = testenv::flux::shared();
//! let ns = cp.namespace("app");
//! // `repo` is a Git work tree (or bare repository) with a branch `main`.
//! # let repo = std::path::Path::new("/tmp/repo");
//! let commit = flux
//!     .reconcile(&ns, "app", repo, "./deploy", serde_json::json!({"targetNamespace": ns}))
//!     .unwrap();
//! // Later: "the next reconcile changes nothing".
//! assert_eq!(flux.reconcile_now(&ns, "app").unwrap(), commit);
//! ```
//!
//! One [`Flux`] per control plane: its controllers watch every namespace, so each test keeps to
//! namespaces of its own. They reconcile only the Flux objects [`Flux::reconcile`] makes
//! ([`WATCH_LABEL`]); ones a test writes by hand stay as written. No kube-controller-manager runs, so there are no service-account
//! tokens: kustomize-controller applies as itself (the admin), never impersonating.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::build::{FluxBinaries, ensure_flux};
use crate::process::{self, Lifetime};
use crate::{ControlPlane, free_port, log_tail};

/// How long [`Flux::reconcile`] and [`Flux::reconcile_now`] wait for Ready at the commit.
pub const RECONCILE_TIMEOUT: Duration = Duration::from_secs(120);

/// The field manager kustomize-controller applies with.
pub const FIELD_MANAGER: &str = "kustomize-controller";

/// The label that makes the controllers reconcile a GitRepository or Kustomization
/// (`--watch-label-selector`): [`Flux::reconcile`] sets it, so Flux objects a test writes by
/// hand (to make a state the controllers cannot) are left as they are.
pub const WATCH_LABEL: &str = "testenv.kubectl-gitops.dev/flux";

/// The annotation that asks a Flux controller to reconcile now; it answers by copying the value
/// to `status.lastHandledReconcileAt`.
pub(crate) const REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";

/// source-controller, kustomize-controller and a Git server, running against one control plane.
#[derive(Debug)]
pub struct Flux {
    /// Holds the controllers' logs (`source-controller.log`, `kustomize-controller.log`), the
    /// artifact storage and the Git server's directory.
    pub dir: PathBuf,
    /// The built binaries; `binaries.flux` is the flux CLI of the same release line.
    pub binaries: FluxBinaries,
    /// Serves the repositories the Kustomizations read.
    pub git: GitServer,
    kubeconfig: PathBuf,
    source_controller: u32,
    kustomize_controller: u32,
}

impl Drop for Flux {
    fn drop(&mut self) {
        process::kill_all(&[self.kustomize_controller, self.source_controller]);
    }
}

/// The Flux of the shared control plane ([`crate::shared`]), started on first use; it ends with
/// the test binary.
///
/// Panics with the reason when it cannot start: a test that needs Flux fails, it is never
/// skipped.
pub fn shared() -> &'static Flux {
    static SHARED: OnceLock<Result<Flux, String>> = OnceLock::new();
    let flux = SHARED.get_or_init(|| Flux::start(crate::shared()).map_err(|e| format!("{e:#}")));
    match flux {
        Ok(flux) => flux,
        Err(e) => panic!("testenv: cannot start Flux: {e}"),
    }
}

impl Flux {
    /// Builds (once) and starts source-controller, kustomize-controller and a Git server against
    /// `cp`, after installing every CRD the controllers watch, and waits until both controllers
    /// report ready. The processes die with this process, or when the value is dropped.
    pub fn start(cp: &ControlPlane) -> Result<Flux> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let binaries = ensure_flux()?;
        cp.install_flux_crds()?;
        let dir = cp
            .dir
            .join(format!("flux-{}", COUNTER.fetch_add(1, Ordering::Relaxed)));
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(dir.join("storage"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let git = GitServer::start(&binaries.gitserver, &dir.join("git"))?;
        let kubeconfig = cp.admin_kubeconfig().to_path_buf();

        let storage = format!("127.0.0.1:{}", free_port()?);
        let (source_health, kustomize_health) = (free_port()?, free_port()?);
        let mut source =
            controller_command(&binaries.source_controller, &kubeconfig, source_health)?;
        source
            .arg("--storage-path")
            .arg(dir.join("storage"))
            .args(["--storage-addr", &storage])
            // Where kustomize-controller downloads artifacts from: the same loopback address.
            .args(["--storage-adv-addr", &storage]);
        let source_controller = process::spawn(
            source,
            &dir.join("source-controller.log"),
            Lifetime::TiedToThisProcess,
        )?;
        let mut kustomize = controller_command(
            &binaries.kustomize_controller,
            &kubeconfig,
            kustomize_health,
        )?;
        // Nothing may leave the machine: a remote base would wait for the network.
        kustomize
            .args(["--no-remote-bases=true", "--concurrent-ssa", "2"])
            // A Kustomization created with its source waits for the first artifact this long
            // at most (its default is 30 s; the artifact event usually wakes it first).
            .args(["--requeue-dependency", "2s"]);
        let kustomize_controller = match process::spawn(
            kustomize,
            &dir.join("kustomize-controller.log"),
            Lifetime::TiedToThisProcess,
        ) {
            Ok(pid) => pid,
            Err(e) => {
                process::kill_all(&[source_controller]);
                return Err(e);
            }
        };
        let flux = Flux {
            dir,
            binaries,
            git,
            kubeconfig,
            source_controller,
            kustomize_controller,
        };
        flux.wait_ready("source-controller", source_controller, source_health)?;
        flux.wait_ready(
            "kustomize-controller",
            kustomize_controller,
            kustomize_health,
        )?;
        Ok(flux)
    }

    /// The pids of source-controller and kustomize-controller, in that order.
    pub fn pids(&self) -> [u32; 2] {
        [self.source_controller, self.kustomize_controller]
    }

    /// The log file of `controller` (`source-controller` or `kustomize-controller`).
    pub fn log(&self, controller: &str) -> PathBuf {
        self.dir.join(format!("{controller}.log"))
    }

    /// The flux CLI with `--kubeconfig` of the control plane, ready for more arguments.
    pub fn flux_cli(&self) -> Command {
        let mut cmd = Command::new(&self.binaries.flux);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// Makes Flux reconcile `repo_dir` (a Git work tree or bare repository, branch `main`) at
    /// `path`, in namespace `ns`: applies a GitRepository and a Kustomization both named `name`
    /// (`prune: true`; `extra_spec` is merged into the Kustomization's spec, for
    /// `targetNamespace`, `patches`, `images`, `postBuild`, ...), asks both to reconcile now, and
    /// waits until the Kustomization is Ready with `lastAppliedRevision` `main@sha1:<main>`.
    /// Returns that commit. Called again (a new commit, another spec), it applies the change.
    pub fn reconcile(
        &self,
        ns: &str,
        name: &str,
        repo_dir: &Path,
        path: &str,
        extra_spec: Value,
    ) -> Result<String> {
        let url = self.git.url_of(repo_dir)?;
        self.reconcile_from(ns, name, &url, repo_dir, path, extra_spec)
    }

    /// [`Flux::reconcile`], reading the repository at `url` (another Flux's Git server: two
    /// clusters reconciled from one repository URL, as a fleet is).
    pub fn reconcile_from(
        &self,
        ns: &str,
        name: &str,
        url: &str,
        repo_dir: &Path,
        path: &str,
        extra_spec: Value,
    ) -> Result<String> {
        let commit = crate::git(repo_dir, &["rev-parse", "refs/heads/main"])
            .with_context(|| format!("reading branch main of {}", repo_dir.display()))?;
        let token = request_token();
        let mut spec = json!({
            "interval": "1h",
            "retryInterval": "2s",
            "timeout": "1m",
            "path": path,
            "prune": true,
            "sourceRef": {"kind": "GitRepository", "name": name},
        });
        match extra_spec {
            Value::Null => {}
            Value::Object(extra) => spec
                .as_object_mut()
                .expect("spec is an object")
                .extend(extra),
            other => bail!("the extra Kustomization spec must be a JSON object, not {other}"),
        }
        let metadata = json!({
            "name": name,
            "namespace": ns,
            "labels": {WATCH_LABEL: "real"},
            "annotations": {REQUESTED_AT: token},
        });
        let objects = json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {
                    "apiVersion": "source.toolkit.fluxcd.io/v1",
                    "kind": "GitRepository",
                    "metadata": metadata,
                    "spec": {
                        "url": url,
                        "ref": {"branch": "main"},
                        // Long: a commit made after a reconcile stays pending until asked for.
                        "interval": "1h",
                        "timeout": "30s",
                    },
                },
                {
                    "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                    "kind": "Kustomization",
                    "metadata": metadata,
                    "spec": spec,
                },
            ],
        });
        self.kubectl_run(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=testenv-flux",
                "-f",
                "-",
            ],
            Some(&objects.to_string()),
        )?;
        let revision = format!("main@sha1:{commit}");
        self.wait_kustomization(ns, name, &token, &revision)?;
        Ok(commit)
    }

    /// Asks the GitRepository and then the Kustomization `ns/name` to reconcile now, as
    /// `flux reconcile kustomization --with-source` does, and waits until both have, the
    /// Kustomization Ready at the revision the source then has. Returns its commit.
    pub fn reconcile_now(&self, ns: &str, name: &str) -> Result<String> {
        let token = request_token();
        let annotation = format!("{REQUESTED_AT}={token}");
        let repo = self.source_request(ns, "gitrepository", name, &token)?;
        let Some(revision) = repo["status"]["artifact"]["revision"].as_str() else {
            bail!(
                "GitRepository {ns}/{name} has no artifact: {}",
                describe(&repo)
            );
        };
        let revision = revision.to_owned();
        self.kubectl_run(
            &[
                "annotate",
                "--overwrite",
                "-n",
                ns,
                &format!("kustomization/{name}"),
                &annotation,
            ],
            None,
        )?;
        self.wait_kustomization(ns, name, &token, &revision)?;
        Ok(revision
            .rsplit_once("sha1:")
            .map_or(revision.as_str(), |(_, sha)| sha)
            .to_owned())
    }

    /// Asks source-controller to fetch the source `kind` `ns/name` (a GitRepository, a
    /// HelmRepository, a HelmChart) now, as `flux reconcile source` does, and waits until it
    /// has and is Ready. Returns the source.
    pub fn fetch_source_now(&self, ns: &str, kind: &str, name: &str) -> Result<Value> {
        self.source_request(ns, kind, name, &request_token())
    }

    fn source_request(&self, ns: &str, kind: &str, name: &str, token: &str) -> Result<Value> {
        self.kubectl_run(
            &[
                "annotate",
                "--overwrite",
                "-n",
                ns,
                &format!("{kind}/{name}"),
                &format!("{REQUESTED_AT}={token}"),
            ],
            None,
        )?;
        let deadline = Instant::now() + RECONCILE_TIMEOUT;
        loop {
            let source = self.get(ns, kind, name)?;
            if source["status"]["lastHandledReconcileAt"] == token
                && condition(&source, "Ready").0 == "True"
            {
                return Ok(source);
            }
            if Instant::now() > deadline {
                bail!(
                    "{kind} {ns}/{name} did not handle the reconcile request within {} s: \
                     {}\nsource-controller log:\n{}",
                    RECONCILE_TIMEOUT.as_secs(),
                    describe(&source),
                    log_tail(&self.log("source-controller"))
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The Kustomization `ns/name` as the server has it.
    pub fn kustomization(&self, ns: &str, name: &str) -> Result<Value> {
        self.get(ns, "kustomization", name)
    }

    /// Waits until the Kustomization has handled `token`, applied `revision` and is Ready.
    fn wait_kustomization(&self, ns: &str, name: &str, token: &str, revision: &str) -> Result<()> {
        let deadline = Instant::now() + RECONCILE_TIMEOUT;
        loop {
            let ks = self.get(ns, "kustomization", name)?;
            let status = &ks["status"];
            if status["lastHandledReconcileAt"] == token
                && status["lastAppliedRevision"] == revision
                && status["observedGeneration"] == ks["metadata"]["generation"]
                && condition(&ks, "Ready").0 == "True"
            {
                return Ok(());
            }
            for controller in [self.source_controller, self.kustomize_controller] {
                if !process::alive(controller) {
                    bail!(
                        "a Flux controller exited; source-controller log:\n{}\n\
                         kustomize-controller log:\n{}",
                        log_tail(&self.log("source-controller")),
                        log_tail(&self.log("kustomize-controller"))
                    );
                }
            }
            if Instant::now() > deadline {
                let repo = self.get(ns, "gitrepository", name).unwrap_or_default();
                bail!(
                    "Kustomization {ns}/{name} was not Ready at {revision} within {} s: {} \
                     (last applied {}); GitRepository: {}\nkustomize-controller log:\n{}\n\
                     source-controller log:\n{}",
                    RECONCILE_TIMEOUT.as_secs(),
                    describe(&ks),
                    status["lastAppliedRevision"].as_str().unwrap_or("nothing"),
                    describe(&repo),
                    log_tail(&self.log("kustomize-controller")),
                    log_tail(&self.log("source-controller"))
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn get(&self, ns: &str, kind: &str, name: &str) -> Result<Value> {
        let out = self.kubectl_run(&["get", "-n", ns, kind, name, "-o", "json"], None)?;
        serde_json::from_str(&out).with_context(|| format!("reading {kind} {ns}/{name}"))
    }

    fn kubectl_run(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        crate::kubectl_run_with(&self.kubeconfig, args, input)
    }

    /// Waits until the controller answers `/readyz` on its health port.
    fn wait_ready(&self, name: &str, pid: u32, health_port: u16) -> Result<()> {
        wait_ready(name, pid, health_port, &self.log(name))
    }
}

/// Waits until controller `name` (process `pid`, logging to `log`) answers `/readyz` on its
/// health port.
pub(crate) fn wait_ready(name: &str, pid: u32, health_port: u16, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if http_status(health_port, "/readyz") == Some(200) {
            return Ok(());
        }
        if !process::alive(pid) {
            bail!(
                "{name} exited while starting; the end of its log:\n{}",
                log_tail(log)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{name} was not ready after 60 s; the end of its log:\n{}",
                log_tail(log)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Flux controller against the admin kubeconfig: no leader election (nothing to elect
/// against), metrics and health on free loopback ports, every namespace watched, few workers.
pub(crate) fn controller_command(
    binary: &Path,
    kubeconfig: &Path,
    health_port: u16,
) -> Result<Command> {
    let mut cmd = Command::new(binary);
    // controller-runtime reads KUBECONFIG; its --kubeconfig flag is a Go flag, which the Flux
    // controllers' pflag command lines do not take.
    cmd.env("KUBECONFIG", kubeconfig)
        .args([
            "--enable-leader-election=false",
            "--watch-all-namespaces=true",
        ])
        .arg(format!("--watch-label-selector={WATCH_LABEL}=real"))
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port()?)])
        .args(["--health-addr", &format!("127.0.0.1:{health_port}")])
        .args(["--concurrent", "2"])
        .args(["--log-encoding", "console", "--log-level", "info"]);
    Ok(cmd)
}

/// A value for [`REQUESTED_AT`] no earlier request used.
pub(crate) fn request_token() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "testenv-{nanos}-{}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The status and message of condition `kind` of a Flux object.
pub(crate) fn condition<'a>(object: &'a Value, kind: &str) -> (&'a str, &'a str) {
    object["status"]["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == kind))
        .map_or(("Unknown", "no such condition yet"), |c| {
            (
                c["status"].as_str().unwrap_or("Unknown"),
                c["message"].as_str().unwrap_or(""),
            )
        })
}

/// "Ready=False: <message>" for an error message.
fn describe(object: &Value) -> String {
    let (status, message) = condition(object, "Ready");
    format!("Ready={status}: {message}")
}

/// The status code of `GET path` on 127.0.0.1:`port`, or `None` when nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// fluxcd/pkg's gittestserver on a free loopback port, serving repositories over smart HTTP.
/// Repositories stay where they are: [`GitServer::url_of`] links each into the served root.
#[derive(Debug)]
pub struct GitServer {
    root: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pid: u32,
    /// Repositories served so far: canonical Git directory → URL.
    served: Mutex<HashMap<PathBuf, String>>,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        process::kill_all(&[self.pid]);
    }
}

/// Spawns `cmd` (a `gitserver`) with `-addr-file addr_file`, its output in `log`, and waits
/// until it has written its URL: its pid and URL. It dies with this process.
pub(crate) fn spawn_gitserver(
    mut cmd: Command,
    addr_file: &Path,
    log: &Path,
) -> Result<(u32, String)> {
    let _ = fs::remove_file(addr_file);
    cmd.arg("-addr-file").arg(addr_file);
    let pid = process::spawn(cmd, log, Lifetime::TiedToThisProcess)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(url) = fs::read_to_string(addr_file) {
            return Ok((pid, url.trim().to_owned()));
        }
        if !process::alive(pid) || Instant::now() > deadline {
            process::kill_all(&[pid]);
            bail!("the end of its log:\n{}", log_tail(log));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl GitServer {
    /// Starts `binary` (the built `gitserver`) serving `dir/root`, its log in `dir/gitserver.log`.
    pub fn start(binary: &Path, dir: &Path) -> Result<GitServer> {
        let root = dir.join("root");
        fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let mut cmd = Command::new(binary);
        // upload-pack must not read the user's Git configuration.
        cmd.env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .arg("-root")
            .arg(&root);
        let (pid, url) = spawn_gitserver(cmd, &dir.join("url"), &dir.join("gitserver.log"))
            .context("the Git server did not start")?;
        Ok(GitServer {
            root,
            url,
            pid,
            served: Mutex::new(HashMap::new()),
        })
    }

    /// The URL this server serves `repo_dir` at (a work tree or a bare repository), linking it
    /// into the served root on first use. The repository is read live: new commits are served
    /// as soon as they are made.
    pub fn url_of(&self, repo_dir: &Path) -> Result<String> {
        let git_dir = if repo_dir.join(".git").is_dir() {
            repo_dir.join(".git")
        } else if repo_dir.join("objects").is_dir() {
            repo_dir.to_path_buf()
        } else {
            bail!(
                "{} is neither a Git work tree nor a bare repository",
                repo_dir.display()
            );
        };
        let git_dir = git_dir
            .canonicalize()
            .with_context(|| format!("resolving {}", git_dir.display()))?;
        let mut served = self.served.lock().expect("the served map lock");
        if let Some(url) = served.get(&git_dir) {
            return Ok(url.clone());
        }
        let stem: String = repo_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let link = format!("{}-{}.git", stem.trim_matches('-'), served.len());
        std::os::unix::fs::symlink(&git_dir, self.root.join(&link)).with_context(|| {
            format!("linking {} into {}", git_dir.display(), self.root.display())
        })?;
        let url = format!("{}/{link}", self.url);
        served.insert(git_dir, url.clone());
        Ok(url)
    }

    /// The pid of the server.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}
