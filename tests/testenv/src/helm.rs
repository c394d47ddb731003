//! Flux's helm-controller, built from its Go module and run next to [`crate::flux::Flux`]'s
//! controllers, and the `helm` CLI the plugin renders charts with: real Helm releases for the
//! tests that need them. Started only by those tests (it is one more controller on two cores).
//!
//! ```no_run
//! let helm = testenv::helm::shared();
//! let ns = testenv::shared().namespace("app");
//! // A HelmRelease a test applies with `helm.watched(...)` labels is installed for real.
//! helm.wait_release(&ns, "web", None).unwrap();
//! ```
//!
//! Like the other controllers it reconciles only objects labelled [`WATCH_LABEL`]`=real`, so
//! parallel tests do not interfere, and HelmReleases a test writes by hand stay as written.

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::build::{HelmBinaries, ensure_helm};
use crate::flux::{self, Flux, WATCH_LABEL};
use crate::process::{self, Lifetime};
use crate::{ControlPlane, build, free_port, log_tail};

/// The field manager helm-controller writes with (`kube.ManagedFieldsManager`), for every
/// object of every release it installs or upgrades (client-side: operation `Update`).
pub const FIELD_MANAGER: &str = "helm-controller";

/// The HelmRelease CRD, in the helm-controller module the controller is built from.
const HELMRELEASE_CRD: &str = "config/crd/bases/helm.toolkit.fluxcd.io_helmreleases.yaml";

/// helm-controller against one control plane, with the Flux it gets its charts from.
#[derive(Debug)]
pub struct HelmController {
    pub binaries: HelmBinaries,
    /// Its log, `helm-controller.log`.
    pub dir: PathBuf,
    kubeconfig: PathBuf,
    pid: u32,
}

impl Drop for HelmController {
    fn drop(&mut self) {
        process::kill_all(&[self.pid]);
    }
}

/// The helm-controller of the shared control plane, next to [`flux::shared`], started on first
/// use. Panics with the reason when it cannot start: a test that needs it fails, never skips.
pub fn shared() -> &'static HelmController {
    static SHARED: OnceLock<Result<HelmController, String>> = OnceLock::new();
    let started = SHARED.get_or_init(|| {
        HelmController::start(crate::shared(), flux::shared()).map_err(|e| format!("{e:#}"))
    });
    match started {
        Ok(helm) => helm,
        Err(e) => panic!("testenv: cannot start helm-controller: {e}"),
    }
}

impl HelmController {
    /// Builds (once) helm-controller and `helm`, installs the HelmRelease CRD (the source CRDs
    /// come with `flux`), starts the controller and waits until it is ready.
    pub fn start(cp: &ControlPlane, flux: &Flux) -> Result<HelmController> {
        let binaries = ensure_helm()?;
        let crd = build::module_source("helm-controller", "github.com/fluxcd/helm-controller")?
            .join(HELMRELEASE_CRD);
        cp.apply_crd_files(&[crd])?;
        let dir = flux.dir.clone();
        fs::create_dir_all(&dir)?;
        let kubeconfig = cp.admin_kubeconfig().to_path_buf();
        let health = free_port()?;
        let mut cmd = flux::controller_command(&binaries.helm_controller, &kubeconfig, health)?;
        // A HelmRelease waits for its HelmChart's artifact at most this long between tries.
        cmd.args(["--requeue-dependency", "2s"]);
        let log = dir.join("helm-controller.log");
        let pid = process::spawn(cmd, &log, Lifetime::TiedToThisProcess)?;
        let helm = HelmController {
            binaries,
            dir,
            kubeconfig,
            pid,
        };
        flux::wait_ready("helm-controller", pid, health, &log)?;
        Ok(helm)
    }

    /// The pid of helm-controller.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The log file of helm-controller.
    pub fn log(&self) -> PathBuf {
        self.dir.join("helm-controller.log")
    }

    /// Waits until the HelmRelease `ns/name` has handled the reconcile request `token` (when
    /// given), is Ready for its current generation, and returns it.
    pub fn wait_release(&self, ns: &str, name: &str, token: Option<&str>) -> Result<Value> {
        let deadline = Instant::now() + flux::RECONCILE_TIMEOUT;
        loop {
            let out = crate::kubectl_run_with(
                &self.kubeconfig,
                &["get", "-n", ns, "helmrelease", name, "-o", "json"],
                None,
            )?;
            let hr: Value = serde_json::from_str(&out).context("reading the HelmRelease")?;
            let status = &hr["status"];
            let handled = token.is_none_or(|t| status["lastHandledReconcileAt"] == t);
            let (ready, message) = flux::condition(&hr, "Ready");
            if handled
                && ready == "True"
                && status["observedGeneration"] == hr["metadata"]["generation"]
            {
                return Ok(hr);
            }
            if !process::alive(self.pid) {
                bail!(
                    "helm-controller exited; its log:\n{}",
                    log_tail(&self.log())
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "HelmRelease {ns}/{name} was not Ready within {} s: Ready={ready}: \
                     {message}\nhelm-controller log:\n{}",
                    flux::RECONCILE_TIMEOUT.as_secs(),
                    log_tail(&self.log())
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Asks the HelmRelease `ns/name` to reconcile now (`reconcile.fluxcd.io/requestedAt`, and
    /// `forceAt`-free: an upgrade happens only when something changed) and waits until it has.
    pub fn reconcile_now(&self, ns: &str, name: &str) -> Result<Value> {
        let token = flux::request_token();
        crate::kubectl_run_with(
            &self.kubeconfig,
            &[
                "annotate",
                "--overwrite",
                "-n",
                ns,
                &format!("helmrelease/{name}"),
                &format!("{}={token}", flux::REQUESTED_AT),
            ],
            None,
        )?;
        self.wait_release(ns, name, Some(&token))
    }
}

/// The labels that make the controllers reconcile an object a test applies by hand.
pub fn watched() -> Value {
    serde_json::json!({ WATCH_LABEL: "real" })
}

/// A Helm chart repository served over HTTP on loopback, as chart repositories are served
/// (static files: `index.yaml` and the chart archives), by the `gitserver` binary in its
/// `-files` mode. Charts are packaged and indexed by the real `helm` (`helm package`,
/// `helm repo index`). Dropping it, or [`ChartRepository::stop`], stops the server.
#[derive(Debug)]
pub struct ChartRepository {
    /// The directory served: `index.yaml` and `<chart>-<version>.tgz`.
    pub dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    helm: PathBuf,
    pid: u32,
}

impl Drop for ChartRepository {
    fn drop(&mut self) {
        process::kill_all(&[self.pid]);
    }
}

impl ChartRepository {
    /// Serves a new empty repository in a temporary directory of `flux`'s, to anyone.
    pub fn start(flux: &Flux, helm: &HelmController) -> Result<ChartRepository> {
        ChartRepository::serve(flux, helm, None)
    }

    /// Serves a new empty repository that answers 401 to a request without basic auth
    /// `user`/`password`.
    pub fn start_with_basic_auth(
        flux: &Flux,
        helm: &HelmController,
        user: &str,
        password: &str,
    ) -> Result<ChartRepository> {
        ChartRepository::serve(flux, helm, Some((user, password)))
    }

    fn serve(
        flux: &Flux,
        helm: &HelmController,
        auth: Option<(&str, &str)>,
    ) -> Result<ChartRepository> {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = flux.dir.join(format!("charts-{}-{n}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        let served = dir.join("served");
        fs::create_dir_all(&served).with_context(|| format!("creating {}", served.display()))?;
        let mut cmd = std::process::Command::new(&flux.binaries.gitserver);
        cmd.arg("-files").arg(&served);
        if let Some((user, password)) = auth {
            let file = dir.join("basic-auth");
            fs::write(&file, format!("{user}:{password}"))?;
            cmd.arg("-basic-auth-file").arg(file);
        }
        let (pid, url) = flux::spawn_gitserver(cmd, &dir.join("url"), &dir.join("chartserver.log"))
            .context("the chart repository server did not start")?;
        Ok(ChartRepository {
            dir: served,
            url,
            helm: helm.binaries.helm.clone(),
            pid,
        })
    }

    /// Packages the chart directory `chart` into the repository (`helm package`) and indexes
    /// the repository again (`helm repo index --url`), as a chart is published.
    pub fn publish(&self, chart: &std::path::Path) -> Result<()> {
        let home = self
            .dir
            .parent()
            .expect("served under the repository's directory");
        helm_cli(
            &self.helm,
            home,
            &[
                "package".as_ref(),
                chart.as_os_str(),
                "-d".as_ref(),
                self.dir.as_os_str(),
            ],
        )?;
        helm_cli(
            &self.helm,
            home,
            &[
                "repo".as_ref(),
                "index".as_ref(),
                self.dir.as_os_str(),
                "--url".as_ref(),
                self.url.as_ref(),
            ],
        )?;
        Ok(())
    }

    /// How many requests for `path` (`/index.yaml`, `/web-0.1.0.tgz`) the server has answered
    /// with the file (not with 401).
    pub fn served(&self, path: &str) -> usize {
        let log = self.dir.with_file_name("chartserver.log");
        let wanted = format!("gitserver: GET {path}");
        fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == wanted)
            .count()
    }

    /// Stops serving: the repository becomes unreachable at its URL.
    pub fn stop(&self) {
        process::kill_all(&[self.pid]);
    }
}

/// Runs the test `helm` with `args`, its cache, config and data under `home` (never the user's),
/// and no plugins.
fn helm_cli(
    helm: &std::path::Path,
    home: &std::path::Path,
    args: &[&std::ffi::OsStr],
) -> Result<String> {
    let out = std::process::Command::new(helm)
        .args(args)
        .env("HELM_NO_PLUGINS", "1")
        .env("HELM_CACHE_HOME", home.join("helm-cache"))
        .env("HELM_CONFIG_HOME", home.join("helm-config"))
        .env("HELM_DATA_HOME", home.join("helm-data"))
        .output()
        .context("running helm")?;
    if !out.status.success() {
        bail!(
            "helm {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// An OCI registry on loopback: the CNCF distribution registry built from its Go module, with
/// filesystem storage, speaking plain HTTP (Flux's `spec.insecure: true`), optionally behind
/// htpasswd basic auth. Charts are pushed with the real `helm push`. Dropping it, or
/// [`OciRegistry::stop`], stops it.
#[derive(Debug)]
pub struct OciRegistry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The registry's version, e.g. `v3.1.2`.
    pub version: String,
    dir: PathBuf,
    helm: PathBuf,
    auth: Option<(String, String)>,
    pid: u32,
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        process::kill_all(&[self.pid]);
    }
}

impl OciRegistry {
    /// Builds (once) and starts a new empty registry in a directory of `flux`'s; with `auth`,
    /// every request without that user and password is answered 401 (`Basic` challenge).
    pub fn start(
        flux: &Flux,
        helm: &HelmController,
        auth: Option<(&str, &str)>,
    ) -> Result<OciRegistry> {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let (binary, version) = build::ensure_registry()?;
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = flux
            .dir
            .join(format!("registry-{}-{n}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(dir.join("data"))?;
        let port = free_port()?;
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: \
             {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: testenv-{n}\n",
            dir.join("data").display()
        );
        if let Some((user, password)) = auth {
            let hash = bcrypt::hash(password, 4).context("hashing the registry password")?;
            fs::write(dir.join("htpasswd"), format!("{user}:{hash}\n"))?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: testenv\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        fs::write(dir.join("config.yml"), config)?;
        let log = dir.join("registry.log");
        let mut cmd = std::process::Command::new(&binary);
        cmd.arg("serve").arg(dir.join("config.yml"));
        let pid = process::spawn(cmd, &log, Lifetime::TiedToThisProcess)?;
        let registry = OciRegistry {
            host: format!("127.0.0.1:{port}"),
            version,
            dir,
            helm: helm.binaries.helm.clone(),
            auth: auth.map(|(u, p)| (u.to_owned(), p.to_owned())),
            pid,
        };
        if let Err(e) = crate::wait_port(port, Duration::from_secs(30)) {
            bail!(
                "the registry did not start: {e}; its log:\n{}",
                log_tail(&log)
            );
        }
        Ok(registry)
    }

    /// `oci://HOST/path`.
    pub fn url(&self, path: &str) -> String {
        format!("oci://{}/{path}", self.host)
    }

    /// Packages the chart directory `chart` (`helm package`) and pushes it under `path`
    /// (`helm push CHART.tgz oci://HOST/path --plain-http`), as a chart is published: the
    /// manifest's digest helm reports (`sha256:...`).
    pub fn push(&self, chart: &std::path::Path, path: &str) -> Result<String> {
        let packaged = self.dir.join("packaged");
        if packaged.exists() {
            fs::remove_dir_all(&packaged)?;
        }
        fs::create_dir_all(&packaged)?;
        helm_cli(
            &self.helm,
            &self.dir,
            &[
                "package".as_ref(),
                chart.as_os_str(),
                "-d".as_ref(),
                packaged.as_os_str(),
            ],
        )?;
        let archive = fs::read_dir(&packaged)?
            .next()
            .context("helm package wrote no archive")??
            .path();
        let url = self.url(path);
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "push".as_ref(),
            archive.as_os_str(),
            url.as_ref(),
            "--plain-http".as_ref(),
        ];
        if let Some((user, password)) = &self.auth {
            use std::ffi::OsStr;
            args.extend([
                OsStr::new("--username"),
                OsStr::new(user),
                OsStr::new("--password"),
                OsStr::new(password),
            ]);
        }
        let said = helm_cli(&self.helm, &self.dir, &args)?;
        said.lines()
            .find_map(|l| l.trim().strip_prefix("Digest: "))
            .map(|d| d.trim().to_owned())
            .with_context(|| format!("helm push named no digest: {said}"))
    }

    /// How many GETs of a path starting with `prefix` (`/v2/charts/web/blobs/`) the registry
    /// answered 200 to the plugin (its user agent), from its access log.
    pub fn served_to_plugin(&self, prefix: &str) -> usize {
        let wanted = format!("\"GET {prefix}");
        fs::read_to_string(self.dir.join("registry.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains(&wanted) && l.contains("\" 200 ") && l.contains("kubectl-gitops/")
            })
            .count()
    }

    /// Stops the registry: its charts become unreachable.
    pub fn stop(&self) {
        process::kill_all(&[self.pid]);
    }
}
