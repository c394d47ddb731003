//! A real control plane for kubectl-gitops tests: etcd and kube-apiserver, built from their Go
//! modules and started as plain processes on loopback, with token users, RBAC and an audit log.
//!
//! Tests call [`shared`] to get the one control plane of their test binary; it stops when the
//! binary ends (panics and kills included: the processes die with their parent). People run it
//! through `tests/testenv/cluster up|down`.
//!
//! It also builds krew from its Go module ([`ensure_krew`]) and packages the plugin for Krew
//! ([`krew`], run by people as `krew/package`), and holds the newcomer's demo ([`demo`], run
//! as `./demo`).

pub mod argo;
pub mod bench;
mod build;
pub mod demo;
pub mod flux;
pub mod helm;
pub mod krew;
mod process;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub use build::{
    Binaries, FluxBinaries, HelmBinaries, KrewBinaries, cache_dir, ensure_binaries, ensure_flux,
    ensure_helm, ensure_krew, ensure_registry,
};
pub use build::{SopsBinaries, ensure_sops};
pub use process::Lifetime;

/// The context of the admin user (group `system:masters`); the kubeconfig's current context.
pub const ADMIN_CONTEXT: &str = "testenv-admin";
/// The context of `viewer`, who may get, list and watch common kinds (not Secrets) and
/// nothing else.
pub const VIEWER_CONTEXT: &str = "testenv-viewer";
/// The user name the server knows the limited user by.
pub const VIEWER_USER: &str = "viewer";
/// Users with no rights until a test binds them to a role (RBAC tests); each has a kubeconfig
/// of its own, [`ControlPlane::kubeconfig_of`]. None is in a group beyond `system:authenticated`.
pub const UNBOUND_USERS: [&str; 4] = [
    "gitops-audited",
    "gitops-reader",
    "gitops-reverter",
    "gitops-partial",
];

/// A running etcd + kube-apiserver pair.
#[derive(Debug)]
pub struct ControlPlane {
    /// Holds the data, certificates, logs and kubeconfig of this control plane.
    pub dir: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// A kubeconfig with the contexts [`ADMIN_CONTEXT`] (current) and [`VIEWER_CONTEXT`].
    pub kubeconfig: PathBuf,
    /// The audit log: one JSON event per line.
    pub audit_log: PathBuf,
    /// The version kube-apiserver reports, e.g. `v1.35.4`.
    pub version: String,
    pids: Vec<u32>,
    /// How kube-apiserver was started, to start it again ([`ControlPlane::start_apiserver`]).
    apiserver: ApiserverSpec,
    lifetime: Lifetime,
}

/// A kube-apiserver started by [`ControlPlane::start_second_apiserver`]; killed when dropped.
#[derive(Debug)]
pub struct SecondApiserver {
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// A kubeconfig like the first server's, pointing at this one.
    pub kubeconfig: PathBuf,
    pid: u32,
}

impl Drop for SecondApiserver {
    fn drop(&mut self) {
        process::kill_all(&[self.pid]);
    }
}

/// What kube-apiserver needs to start again on the same port with the same etcd.
#[derive(Debug, Clone)]
struct ApiserverSpec {
    binary: PathBuf,
    etcd_url: String,
    port: u16,
}

/// The shared control plane, or why it could not start (kept, so that every test that needs it
/// fails with the reason instead of trying again).
static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// The control plane of this test binary, started on first use and stopped when it exits.
///
/// Panics with the reason when it cannot start (for example, no Go to build it with): a test
/// that needs a cluster fails, it is never skipped.
pub fn shared() -> &'static ControlPlane {
    let shared = SHARED.get_or_init(|| {
        process::remove_stale_dirs();
        let dir = std::env::temp_dir().join(format!(
            "{}{}",
            process::TEST_DIR_PREFIX,
            std::process::id()
        ));
        let started = ControlPlane::start(&dir, Lifetime::TiedToThisProcess);
        if let Ok(cp) = &started {
            process::stop_at_exit(cp.pids.clone(), cp.dir.clone());
        }
        started.map_err(|e| format!("{e:#}"))
    });
    match shared {
        Ok(cp) => cp,
        Err(e) => panic!("testenv: cannot start the test control plane: {e}"),
    }
}

impl ControlPlane {
    /// Builds (once) and starts etcd and kube-apiserver with their files in `dir`.
    pub fn start(dir: &Path, lifetime: Lifetime) -> Result<ControlPlane> {
        let binaries = ensure_binaries()?;
        let kubectl = find_on_path("kubectl").context(
            "kubectl is needed to talk to the test control plane and is not on PATH; install \
             kubectl (https://kubernetes.io/docs/tasks/tools/) and run again",
        )?;
        let openssl = find_on_path("openssl").context(
            "openssl is needed to make the service-account signing key and is not on PATH; \
             install it (Debian: apt-get install openssl)",
        )?;
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(dir.join("etcd"))
            .with_context(|| format!("creating {}", dir.display()))?;

        let admin_token = random_token()?;
        let viewer_token = random_token()?;
        let mut tokens = format!(
            "{admin_token},admin,uid-admin,\"system:masters\"\n\
             {viewer_token},{VIEWER_USER},uid-viewer,\"testenv:viewers\"\n"
        );
        let mut unbound = Vec::new();
        for user in UNBOUND_USERS {
            let token = random_token()?;
            tokens.push_str(&format!("{token},{user},uid-{user}\n"));
            unbound.push((user, token));
        }
        fs::write(dir.join("tokens.csv"), tokens)?;
        fs::write(dir.join("audit-policy.yaml"), AUDIT_POLICY)?;
        let key = dir.join("service-account.key");
        run_ok(
            Command::new(openssl)
                .args(["genrsa", "-out"])
                .arg(&key)
                .arg("2048"),
        )?;

        let mut pids = Vec::new();
        let result = start_processes(dir, &binaries, lifetime, &mut pids);
        let (server, kubeconfig, apiserver) = match result {
            Ok(started) => started,
            Err(e) => {
                process::kill_all(&pids);
                return Err(e);
            }
        };
        let cp = ControlPlane {
            dir: dir.to_path_buf(),
            server,
            kubeconfig,
            audit_log: dir.join("audit.log"),
            version: binaries.kubernetes_version.clone(),
            pids,
            apiserver,
            lifetime,
        };
        let setup = cp.wait_ready(&kubectl).and_then(|()| {
            run_ok(
                Command::new(&kubectl)
                    .arg("--kubeconfig")
                    .arg(dir.join("boot.kubeconfig"))
                    .args(["apply", "-f"])
                    .arg(write_viewer_rbac(dir)?),
            )
        });
        if let Err(e) = setup {
            process::kill_all(&cp.pids);
            return Err(e);
        }
        fs::write(
            dir.join("state"),
            cp.pids
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(" "),
        )?;
        for (user, token) in &unbound {
            fs::write(
                cp.kubeconfig_of(user),
                user_kubeconfig_yaml(&cp.server, user, token),
            )?;
        }
        // Write the kubeconfig with both users only now: its existence means "ready".
        fs::write(
            &cp.kubeconfig,
            kubeconfig_yaml(&cp.server, &admin_token, &viewer_token),
        )?;
        Ok(cp)
    }

    /// The processes of a control plane started with [`Lifetime::Detached`] in `dir`.
    pub fn stop_dir(dir: &Path) -> Result<bool> {
        let Ok(state) = fs::read_to_string(dir.join("state")) else {
            return Ok(false);
        };
        let pids: Vec<u32> = state
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        process::kill_all(&pids);
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        Ok(true)
    }

    /// `kubectl --kubeconfig <admin kubeconfig>`, ready for more arguments.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(self.admin_kubeconfig());
        cmd
    }

    /// Runs `kubectl ARGS` as the admin, with `input` on its stdin; its stdout, or an error
    /// with kubectl's own message.
    pub fn kubectl_run(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        kubectl_run_with(self.admin_kubeconfig(), args, input)
    }

    /// Creates a fresh namespace for one test and returns its name.
    pub fn namespace(&self, hint: &str) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let clean: String = hint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let name = format!(
            "{}-{}-{}",
            clean.trim_matches('-'),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run_ok(self.kubectl().args(["create", "namespace", &name]))
            .unwrap_or_else(|e| panic!("testenv: creating namespace {name}: {e:#}"));
        name
    }

    /// Every audit event written so far, oldest first.
    pub fn audit_events(&self) -> Result<Vec<serde_json::Value>> {
        let text = fs::read_to_string(&self.audit_log)
            .with_context(|| format!("reading {}", self.audit_log.display()))?;
        // The server may be writing the last line right now: only whole lines count.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        whole
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).context("parsing an audit event"))
            .collect()
    }

    /// Audit events that `matches`, waiting up to 10 s for at least one: the server writes an
    /// event when the response is complete, which may be a moment after the client has it.
    pub fn audit_events_matching(
        &self,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<Vec<serde_json::Value>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<_> = self.audit_events()?.into_iter().filter(&matches).collect();
            if !found.is_empty() || Instant::now() > deadline {
                return Ok(found);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Installs the real Flux (Kustomization, GitRepository) and Argo CD (Application) CRDs,
    /// once per test binary, and waits until they are served. Their definitions come from the
    /// Go modules pinned under `go/`: Flux's from the very controllers [`flux::Flux`] runs
    /// (`go/source-controller`, `go/kustomize-controller`), Argo CD's from `go/crds`.
    pub fn install_gitops_crds(&self) {
        static DONE: OnceLock<Result<(), String>> = OnceLock::new();
        let done = DONE.get_or_init(|| self.install_crds().map_err(|e| format!("{e:#}")));
        if let Err(e) = done {
            panic!("testenv: installing the Flux and Argo CD CRDs: {e}");
        }
    }

    /// Installs every CRD of the pinned source-controller and kustomize-controller (what they
    /// watch: Git, OCI, Bucket, Helm and external sources, Kustomizations), once per control
    /// plane.
    pub fn install_flux_crds(&self) -> Result<()> {
        static DONE: std::sync::Mutex<Vec<(PathBuf, Result<(), String>)>> =
            std::sync::Mutex::new(Vec::new());
        // Held while installing: a second caller for the same control plane waits for the first.
        let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
        let result = match done.iter().find(|(dir, _)| dir == &self.dir) {
            Some((_, result)) => result.clone(),
            None => {
                let result = flux_crd_files()
                    .and_then(|files| self.apply_crd_files(&files))
                    .map_err(|e| format!("{e:#}"));
                done.push((self.dir.clone(), result.clone()));
                result
            }
        };
        result.map_err(|e| anyhow::anyhow!("installing the Flux CRDs: {e}"))
    }

    /// Installs the real Flux and Argo CD CRDs on this control plane, every time it is called
    /// ([`ControlPlane::install_gitops_crds`] does it once, for the shared one).
    pub fn install_crds(&self) -> Result<()> {
        let mut files = Vec::new();
        for (module_dir, module, file) in GITOPS_CRDS {
            files.push(build::module_source(module_dir, module)?.join(file));
        }
        self.apply_crd_files(&files)
    }

    /// Applies CRD definitions and waits until every one is served.
    pub(crate) fn apply_crd_files(&self, files: &[PathBuf]) -> Result<()> {
        let mut names = Vec::new();
        for file in files {
            let out = run_ok(
                self.kubectl()
                    .args(["apply", "--server-side", "-o", "name", "-f"])
                    .arg(file),
            )?;
            names.extend(
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(str::to_owned),
            );
        }
        run_ok(
            self.kubectl()
                .args(["wait", "--for=condition=Established", "--timeout=60s"])
                .args(&names),
        )?;
        Ok(())
    }

    /// Stops kube-apiserver (SIGKILL, as a crash would) and leaves etcd running: clients see
    /// their connections drop and new ones refused.
    pub fn stop_apiserver(&mut self) {
        process::kill_all(&self.pids[1..]);
    }

    /// Starts kube-apiserver again, on the same port with the same etcd, certificates and
    /// audit log, and waits until it is ready. Objects and resourceVersions are kept (they
    /// live in etcd).
    pub fn start_apiserver(&mut self) -> Result<()> {
        let kubectl = find_on_path("kubectl").context("kubectl is not on PATH")?;
        let spec = self.apiserver.clone();
        let log = self.dir.join("kube-apiserver.log");
        let cmd = apiserver_command(&self.dir, &spec, &self.dir);
        let pid = process::spawn(cmd, &log, self.lifetime)?;
        self.pids.truncate(1);
        self.pids.push(pid);
        fs::write(
            self.dir.join("state"),
            self.pids
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(" "),
        )?;
        self.wait_ready(&kubectl)
    }

    /// A second kube-apiserver on the same etcd, on a port of its own, as in a control plane
    /// with several: it serves while the first is stopped. Stopped when dropped.
    pub fn start_second_apiserver(&self) -> Result<SecondApiserver> {
        let kubectl = find_on_path("kubectl").context("kubectl is not on PATH")?;
        let spec = ApiserverSpec {
            port: free_port()?,
            ..self.apiserver.clone()
        };
        let own = self.dir.join(format!("apiserver-{}", spec.port));
        fs::create_dir_all(&own).with_context(|| format!("creating {}", own.display()))?;
        let log = own.join("kube-apiserver.log");
        let pid = process::spawn(
            apiserver_command(&self.dir, &spec, &own),
            &log,
            self.lifetime,
        )?;
        let second = SecondApiserver {
            server: format!("https://127.0.0.1:{}", spec.port),
            kubeconfig: own.join("kubeconfig"),
            pid,
        };
        let tokens = fs::read_to_string(self.dir.join("tokens.csv"))?;
        let token = |line: usize| {
            tokens
                .lines()
                .nth(line)
                .and_then(|l| l.split(',').next())
                .unwrap_or_default()
                .to_owned()
        };
        fs::write(
            &second.kubeconfig,
            kubeconfig_yaml(&second.server, &token(0), &token(1)),
        )?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = Command::new(&kubectl)
                .arg("--kubeconfig")
                .arg(&second.kubeconfig)
                .args(["get", "--raw", "/readyz", "--request-timeout=5s"])
                .output()?;
            if out.status.success() {
                return Ok(second);
            }
            if process::first_exited(&[pid]).is_some() || Instant::now() > deadline {
                bail!(
                    "the second kube-apiserver did not become ready; the end of its log:\n{}",
                    log_tail(&log)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The pids of etcd and kube-apiserver.
    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// A kubeconfig for one of [`UNBOUND_USERS`], whose only (and current) context is
    /// `testenv-<user>`.
    pub fn kubeconfig_of(&self, user: &str) -> PathBuf {
        self.dir.join(format!("kubeconfig-{user}"))
    }

    /// The kubeconfig with both users (what [`ControlPlane::kubeconfig`] holds).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    fn wait_ready(&self, kubectl: &Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let boot = self.dir.join("boot.kubeconfig");
        loop {
            let out = Command::new(kubectl)
                .arg("--kubeconfig")
                .arg(&boot)
                .args(["get", "--raw", "/readyz", "--request-timeout=5s"])
                .output()?;
            if out.status.success() {
                return Ok(());
            }
            if let Some(dead) = process::first_exited(&self.pids) {
                bail!(
                    "{dead} exited while starting; the end of its log:\n{}",
                    log_tail(&self.dir.join(format!("{dead}.log")))
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "kube-apiserver was not ready after 120 s ({}); the end of its log:\n{}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    log_tail(&self.dir.join("kube-apiserver.log"))
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn start_processes(
    dir: &Path,
    binaries: &Binaries,
    lifetime: Lifetime,
    pids: &mut Vec<u32>,
) -> Result<(String, PathBuf, ApiserverSpec)> {
    let etcd_port = free_port()?;
    let peer_port = free_port()?;
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let mut etcd = Command::new(&binaries.etcd);
    etcd.arg("--data-dir")
        .arg(dir.join("etcd"))
        .args(["--name", "testenv"])
        .args(["--listen-client-urls", &etcd_url])
        .args(["--advertise-client-urls", &etcd_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("testenv={peer_url}")])
        .args(["--unsafe-no-fsync", "--log-level", "error"]);
    pids.push(process::spawn(etcd, &dir.join("etcd.log"), lifetime)?);
    wait_port(etcd_port, Duration::from_secs(30)).context("etcd did not open its client port")?;

    let port = free_port()?;
    let server = format!("https://127.0.0.1:{port}");
    let spec = ApiserverSpec {
        binary: binaries.kube_apiserver.clone(),
        etcd_url,
        port,
    };
    let apiserver = apiserver_command(dir, &spec, dir);
    pids.push(process::spawn(
        apiserver,
        &dir.join("kube-apiserver.log"),
        lifetime,
    )?);
    // A kubeconfig for the readiness probe; the real one is written once the server is ready.
    let admin_token = fs::read_to_string(dir.join("tokens.csv"))?
        .split(',')
        .next()
        .unwrap_or_default()
        .to_owned();
    fs::write(
        dir.join("boot.kubeconfig"),
        kubeconfig_yaml(&server, &admin_token, "unused"),
    )?;
    Ok((server, dir.join("kubeconfig"), spec))
}

/// kube-apiserver with the keys, tokens and audit policy of `dir`, its serving certificate and
/// audit log in `own` (`dir` itself for the first server).
fn apiserver_command(dir: &Path, spec: &ApiserverSpec, own: &Path) -> Command {
    let mut apiserver = Command::new(&spec.binary);
    apiserver
        .args(["--etcd-servers", &spec.etcd_url])
        .arg("--cert-dir")
        .arg(own.join("certs"))
        .args(["--secure-port", &spec.port.to_string()])
        .args([
            "--bind-address",
            "127.0.0.1",
            "--advertise-address",
            "127.0.0.1",
        ])
        .args(["--service-cluster-ip-range", "10.0.0.0/24"])
        .args([
            "--service-account-issuer",
            "https://kubernetes.default.svc.cluster.local",
        ])
        .arg("--service-account-key-file")
        .arg(dir.join("service-account.key"))
        .arg("--service-account-signing-key-file")
        .arg(dir.join("service-account.key"))
        .arg("--token-auth-file")
        .arg(dir.join("tokens.csv"))
        .args(["--authorization-mode", "RBAC"])
        // No controller manager runs to mint service-account tokens.
        .args(["--disable-admission-plugins", "ServiceAccount"])
        .arg("--audit-policy-file")
        .arg(dir.join("audit-policy.yaml"))
        .arg("--audit-log-path")
        .arg(own.join("audit.log"))
        .args(["--audit-log-mode", "blocking"])
        .args(["--v", "1"]);
    apiserver
}

/// The source of the argo-cd module `go/crds` pins (its `manifests/` is Argo CD's upstream
/// install), downloaded into the Go module cache if it is not there yet.
pub fn argo_cd_module() -> Result<PathBuf> {
    let (module_dir, module, _) = GITOPS_CRDS[2];
    build::module_source(module_dir, module)
}

/// Every CRD definition in the pinned Flux controllers' `config/crd/bases`.
fn flux_crd_files() -> Result<Vec<PathBuf>> {
    let mut crds = Vec::new();
    for (module_dir, module, _) in &GITOPS_CRDS[..2] {
        let bases = build::module_source(module_dir, module)?.join("config/crd/bases");
        let mut files: Vec<_> = fs::read_dir(&bases)
            .with_context(|| format!("reading {}", bases.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        crds.extend(files);
    }
    Ok(crds)
}

/// The CRDs [`ControlPlane::install_gitops_crds`] installs: the tool module under `go/` that
/// pins the module, the module, and the file in it.
const GITOPS_CRDS: [(&str, &str, &str); 3] = [
    (
        "kustomize-controller",
        "github.com/fluxcd/kustomize-controller",
        "config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml",
    ),
    (
        "source-controller",
        "github.com/fluxcd/source-controller",
        "config/crd/bases/source.toolkit.fluxcd.io_gitrepositories.yaml",
    ),
    (
        "crds",
        "github.com/argoproj/argo-cd/v3",
        "manifests/crds/application-crd.yaml",
    ),
];

const AUDIT_POLICY: &str = "\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  # Metadata only: verbs, URIs (with dryRun), users and objects; never a request body.
  - level: Metadata
";

/// Writes a kubeconfig whose contexts are the admin users of several control planes, each
/// context named as given (a fleet: `--context a,b`, `--all-contexts`). The current context
/// is the first.
pub fn fleet_kubeconfig(path: &Path, members: &[(&str, &ControlPlane)]) -> Result<()> {
    let mut clusters = String::new();
    let mut users = String::new();
    let mut contexts = String::new();
    for (name, cp) in members {
        let token = fs::read_to_string(cp.dir.join("tokens.csv"))?
            .split(',')
            .next()
            .unwrap_or_default()
            .to_owned();
        clusters.push_str(&format!(
            "  - name: {name}\n    cluster:\n      server: {}\n      insecure-skip-tls-verify: true\n",
            cp.server
        ));
        users.push_str(&format!(
            "  - name: {name}-admin\n    user:\n      token: {token}\n"
        ));
        contexts.push_str(&format!(
            "  - name: {name}\n    context:\n      cluster: {name}\n      user: {name}-admin\n"
        ));
    }
    let current = members.first().map(|(n, _)| *n).unwrap_or_default();
    fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n{clusters}users:\n{users}contexts:\n{contexts}current-context: {current}\n"
        ),
    )?;
    Ok(())
}

fn kubeconfig_yaml(server: &str, admin_token: &str, viewer_token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
  - name: testenv
    cluster:
      server: {server}
      insecure-skip-tls-verify: true
users:
  - name: admin
    user:
      token: {admin_token}
  - name: {VIEWER_USER}
    user:
      token: {viewer_token}
contexts:
  - name: {ADMIN_CONTEXT}
    context:
      cluster: testenv
      user: admin
  - name: {VIEWER_CONTEXT}
    context:
      cluster: testenv
      user: {VIEWER_USER}
current-context: {ADMIN_CONTEXT}
"
    )
}

fn user_kubeconfig_yaml(server: &str, user: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
  - name: testenv
    cluster:
      server: {server}
      insecure-skip-tls-verify: true
users:
  - name: {user}
    user:
      token: {token}
contexts:
  - name: testenv-{user}
    context:
      cluster: testenv
      user: {user}
current-context: testenv-{user}
"
    )
}

/// The viewer's rights: read what a GitOps tool reads, never Secrets, never write. (The
/// built-in `view` role is aggregated by a controller that does not run here, so it is empty.)
fn write_viewer_rbac(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("viewer-rbac.yaml");
    fs::write(
        &path,
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: testenv-view}}
rules:
  - apiGroups: ['', apps, batch, networking.k8s.io, policy, autoscaling, rbac.authorization.k8s.io,
                apiextensions.k8s.io, kustomize.toolkit.fluxcd.io, source.toolkit.fluxcd.io, argoproj.io,
                helm.toolkit.fluxcd.io]
    resources: [configmaps, services, serviceaccounts, namespaces, pods, endpoints, events,
                persistentvolumeclaims, deployments, statefulsets, daemonsets, replicasets, jobs,
                cronjobs, ingresses, networkpolicies, poddisruptionbudgets, horizontalpodautoscalers,
                roles, rolebindings, customresourcedefinitions, kustomizations, gitrepositories,
                applications, helmreleases, helmcharts]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: testenv-viewer}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: testenv-view}}
subjects:
  - {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {VIEWER_USER}}}
"
        ),
    )?;
    Ok(path)
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    use std::io::Read;
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A loopback port free now and never handed out before in this process: the kernel may give
/// a port back as soon as its listener is closed, so two ports asked for before either is
/// bound (a controller's health and metrics ports) could otherwise be the same.
fn free_port() -> Result<u16> {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if given.insert(port) {
            return Ok(port);
        }
    }
    bail!("no loopback port was free that this test run had not handed out already")
}

fn wait_port(port: u16, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on 127.0.0.1:{port} after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Runs `kubectl --kubeconfig KUBECONFIG ARGS` with `input` on its stdin; its stdout, or an
/// error with kubectl's own message.
fn kubectl_run_with(kubeconfig: &Path, args: &[&str], input: Option<&str>) -> Result<String> {
    use std::io::Write;
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("running kubectl")?;
    if let Some(text) = input {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Finds `name` in PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn run_ok(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Makes `repo` (generated files already in it) a repository whose origin is `origin`, with one
/// commit of everything; returns its id. For the benchmarks: no user or system configuration,
/// fixed identity and dates.
pub fn init_bench_repo(repo: &Path, origin: &str) -> Result<String> {
    git(repo, &["init", "-q", "-b", "main"])?;
    git(repo, &["remote", "add", "origin", origin])?;
    git(repo, &["add", "-A"])?;
    git(repo, &["commit", "-q", "-m", "Bench apps"])?;
    git(repo, &["rev-parse", "HEAD"])
}

/// `git` with no user or system configuration and fixed identities and dates.
fn git(repo: &Path, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("git");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .current_dir(repo)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_DATE", "2026-01-05T10:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-05T10:00:00Z")
        .args([
            "-c",
            "user.name=Bench",
            "-c",
            "user.email=bench@example.com",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
