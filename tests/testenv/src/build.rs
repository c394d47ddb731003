//! Builds kube-apiserver, etcd, krew, Flux (source-controller, kustomize-controller, the flux
//! CLI and a Git smart-HTTP server), helm and helm-controller, sops (with age-keygen) and the
//! distribution registry from the pinned Go tool modules
//! under `tests/testenv/go/`, once, into a cache outside `target/` keyed by version and by the
//! module's go.sum.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A binary the control plane needs, and the Go tool module that builds it.
struct Tool {
    /// The file name of the built binary.
    name: &'static str,
    /// The directory of its tool module, under `tests/testenv/go/`.
    module_dir: &'static str,
    /// The module whose version names the build.
    versioned_module: &'static str,
    /// The package that `go build` builds.
    package: &'static str,
    /// Where it is built.
    build_in: BuildIn,
}

/// Where `go build` runs.
#[derive(Clone, Copy)]
enum BuildIn {
    /// The tool module, which requires the versioned module.
    ToolModule,
    /// A copy of the versioned module's own tree, as its release is built, with a placeholder
    /// file added in the given directory: flux2's `cmd/flux` embeds `manifests/*.yaml`, which its
    /// release process generates and its module zip lacks (and Go refuses an `-overlay` of files
    /// in the module cache). Only `flux install` and `flux bootstrap` read those manifests.
    CopyWithPlaceholder(&'static str),
}

const KUBE_APISERVER: Tool = Tool {
    name: "kube-apiserver",
    module_dir: "kube-apiserver",
    versioned_module: "k8s.io/kubernetes",
    package: "k8s.io/kubernetes/cmd/kube-apiserver",
    build_in: BuildIn::ToolModule,
};

const ETCD: Tool = Tool {
    name: "etcd",
    module_dir: "etcd",
    versioned_module: "go.etcd.io/etcd/server/v3",
    package: "go.etcd.io/etcd/server/v3",
    build_in: BuildIn::ToolModule,
};

const KREW: Tool = Tool {
    name: "krew",
    module_dir: "krew",
    versioned_module: "sigs.k8s.io/krew",
    package: "sigs.k8s.io/krew/cmd/krew",
    build_in: BuildIn::ToolModule,
};

/// krew-index's own check of a plugin manifest, from the same module.
const VALIDATE_KREW_MANIFEST: Tool = Tool {
    name: "validate-krew-manifest",
    module_dir: "krew",
    versioned_module: "sigs.k8s.io/krew",
    package: "sigs.k8s.io/krew/cmd/validate-krew-manifest",
    build_in: BuildIn::ToolModule,
};

const SOURCE_CONTROLLER: Tool = Tool {
    name: "source-controller",
    module_dir: "source-controller",
    versioned_module: "github.com/fluxcd/source-controller",
    package: "github.com/fluxcd/source-controller",
    build_in: BuildIn::ToolModule,
};

const KUSTOMIZE_CONTROLLER: Tool = Tool {
    name: "kustomize-controller",
    module_dir: "kustomize-controller",
    versioned_module: "github.com/fluxcd/kustomize-controller",
    package: "github.com/fluxcd/kustomize-controller",
    build_in: BuildIn::ToolModule,
};

const FLUX_CLI: Tool = Tool {
    name: "flux",
    module_dir: "flux",
    versioned_module: "github.com/fluxcd/flux2/v2",
    package: "./cmd/flux",
    build_in: BuildIn::CopyWithPlaceholder("cmd/flux/manifests"),
};

/// Our `main` around fluxcd/pkg's gittestserver (`go/gitserver/main.go`).
const GITSERVER: Tool = Tool {
    name: "gitserver",
    module_dir: "gitserver",
    versioned_module: "github.com/fluxcd/pkg/gittestserver",
    package: "kubectl-gitops.dev/testenv/gitserver",
    build_in: BuildIn::ToolModule,
};

/// sops, which encrypts the Secrets the tests commit and which the plugin runs to decrypt them
/// (`go/sops`).
const SOPS: Tool = Tool {
    name: "sops",
    module_dir: "sops",
    versioned_module: "github.com/getsops/sops/v3",
    package: "github.com/getsops/sops/v3/cmd/sops",
    build_in: BuildIn::ToolModule,
};

/// age-keygen, which makes the age key the tests encrypt for, from the same module.
const AGE_KEYGEN: Tool = Tool {
    name: "age-keygen",
    module_dir: "sops",
    versioned_module: "filippo.io/age",
    package: "filippo.io/age/cmd/age-keygen",
    build_in: BuildIn::ToolModule,
};

/// Paths of the built sops and age-keygen, and sops' version (e.g. `v3.13.3`).
#[derive(Debug, Clone)]
pub struct SopsBinaries {
    pub sops: PathBuf,
    pub sops_version: String,
    pub age_keygen: PathBuf,
}

/// Flux's helm-controller, for the tests that install real Helm releases.
const HELM_CONTROLLER: Tool = Tool {
    name: "helm-controller",
    module_dir: "helm-controller",
    versioned_module: "github.com/fluxcd/helm-controller",
    package: "github.com/fluxcd/helm-controller",
    build_in: BuildIn::ToolModule,
};

/// The `helm` CLI, which the plugin runs as `helm template`.
const HELM_CLI: Tool = Tool {
    name: "helm",
    module_dir: "helm",
    versioned_module: "helm.sh/helm/v4",
    package: "helm.sh/helm/v4/cmd/helm",
    build_in: BuildIn::ToolModule,
};

/// The CNCF distribution registry, an OCI registry the tests push charts to (`go/registry`).
const REGISTRY: Tool = Tool {
    name: "registry",
    module_dir: "registry",
    versioned_module: "github.com/distribution/distribution/v3",
    package: "github.com/distribution/distribution/v3/cmd/registry",
    build_in: BuildIn::ToolModule,
};

/// Paths of the built Helm binaries, and their versions.
#[derive(Debug, Clone)]
pub struct HelmBinaries {
    pub helm_controller: PathBuf,
    /// e.g. `v1.4.3`.
    pub helm_controller_version: String,
    pub helm: PathBuf,
    /// e.g. `v4.3.2`.
    pub helm_version: String,
}

/// Paths of the built Flux binaries, and their versions (e.g. `v1.9.6`).
#[derive(Debug, Clone)]
pub struct FluxBinaries {
    pub source_controller: PathBuf,
    pub source_controller_version: String,
    pub kustomize_controller: PathBuf,
    pub kustomize_controller_version: String,
    /// The flux CLI (`flux diff kustomization`, `flux trace`); `flux install` cannot work, see
    /// [`BuildIn::CopyWithPlaceholder`].
    pub flux: PathBuf,
    pub flux_version: String,
    /// A Git smart-HTTP server for a directory of repositories: `gitserver -root DIR -addr-file F`.
    pub gitserver: PathBuf,
}

/// Paths of the built Krew binaries.
#[derive(Debug, Clone)]
pub struct KrewBinaries {
    /// `krew`, which kubectl runs as `kubectl krew` when it is on PATH as `kubectl-krew`.
    pub krew: PathBuf,
    /// `validate-krew-manifest`, the check krew-index runs on every submitted manifest.
    pub validate_manifest: PathBuf,
    /// The krew version, e.g. `v0.4.3`.
    pub version: String,
}

/// Paths of the built control-plane binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub kube_apiserver: PathBuf,
    pub etcd: PathBuf,
    /// The Kubernetes version kube-apiserver reports, e.g. `v1.35.4`.
    pub kubernetes_version: String,
}

/// The directory holding the Go tool modules.
pub fn go_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("go")
}

/// Where built binaries are kept: `$KUBECTL_GITOPS_TESTENV_CACHE`, else the user's cache dir.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KUBECTL_GITOPS_TESTENV_CACHE") {
        return PathBuf::from(dir);
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("kubectl-gitops-testenv")
}

/// Returns the control-plane binaries, building the ones not yet in the cache.
pub fn ensure_binaries() -> Result<Binaries> {
    let (bin_root, _lock) = lock_bin_root()?;
    let (kube_apiserver, kubernetes_version) = ensure(&KUBE_APISERVER, &bin_root)?;
    let (etcd, _) = ensure(&ETCD, &bin_root)?;
    Ok(Binaries {
        kube_apiserver,
        etcd,
        kubernetes_version,
    })
}

/// Returns krew and validate-krew-manifest, building them if they are not yet in the cache.
pub fn ensure_krew() -> Result<KrewBinaries> {
    let (bin_root, _lock) = lock_bin_root()?;
    let (krew, version) = ensure(&KREW, &bin_root)?;
    let (validate_manifest, _) = ensure(&VALIDATE_KREW_MANIFEST, &bin_root)?;
    Ok(KrewBinaries {
        krew,
        validate_manifest,
        version,
    })
}

/// Returns the Flux binaries, building the ones not yet in the cache.
pub fn ensure_flux() -> Result<FluxBinaries> {
    let (bin_root, _lock) = lock_bin_root()?;
    let (gitserver, _) = ensure(&GITSERVER, &bin_root)?;
    let (source_controller, source_controller_version) = ensure(&SOURCE_CONTROLLER, &bin_root)?;
    let (kustomize_controller, kustomize_controller_version) =
        ensure(&KUSTOMIZE_CONTROLLER, &bin_root)?;
    let (flux, flux_version) = ensure(&FLUX_CLI, &bin_root)?;
    Ok(FluxBinaries {
        source_controller,
        source_controller_version,
        kustomize_controller,
        kustomize_controller_version,
        flux,
        flux_version,
        gitserver,
    })
}

/// Returns sops and age-keygen, building them if they are not yet in the cache.
pub fn ensure_sops() -> Result<SopsBinaries> {
    let (bin_root, _lock) = lock_bin_root()?;
    let (sops, sops_version) = ensure(&SOPS, &bin_root)?;
    let (age_keygen, _) = ensure(&AGE_KEYGEN, &bin_root)?;
    Ok(SopsBinaries {
        sops,
        sops_version,
        age_keygen,
    })
}

/// Returns the distribution registry and its version (e.g. `v3.1.2`), building it if it is not
/// yet in the cache.
pub fn ensure_registry() -> Result<(PathBuf, String)> {
    let (bin_root, _lock) = lock_bin_root()?;
    ensure(&REGISTRY, &bin_root)
}

/// Returns helm-controller and the `helm` CLI, building the ones not yet in the cache.
pub fn ensure_helm() -> Result<HelmBinaries> {
    let (bin_root, _lock) = lock_bin_root()?;
    let (helm, helm_version) = ensure(&HELM_CLI, &bin_root)?;
    let (helm_controller, helm_controller_version) = ensure(&HELM_CONTROLLER, &bin_root)?;
    Ok(HelmBinaries {
        helm_controller,
        helm_controller_version,
        helm,
        helm_version,
    })
}

/// The directory of `module` as the tool module in `go/<module_dir>` pins it, downloaded into
/// the Go module cache if it is not there yet.
pub(crate) fn module_source(module_dir: &str, module: &str) -> Result<PathBuf> {
    let go = find_go()?;
    let out = Command::new(go)
        .current_dir(go_dir().join(module_dir))
        .args(["mod", "download", "-json", module])
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running go mod download {module}"))?;
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "reading go mod download output for {module}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    if let Some(error) = info["Error"].as_str() {
        bail!("go mod download {module}: {error}");
    }
    let dir = info["Dir"]
        .as_str()
        .with_context(|| format!("go mod download gave no Dir for {module}"))?;
    Ok(PathBuf::from(dir))
}

/// The cache's `bin/` directory, locked: test binaries may start at the same time, and one
/// builds while the others wait. The lock is held until the returned file is dropped.
fn lock_bin_root() -> Result<(PathBuf, File)> {
    let bin_root = cache_dir().join("bin");
    fs::create_dir_all(&bin_root).with_context(|| format!("creating {}", bin_root.display()))?;
    let lock = File::create(bin_root.join(".lock")).context("creating the build lock")?;
    lock.lock().context("taking the build lock")?;
    Ok((bin_root, lock))
}

fn ensure(tool: &Tool, bin_root: &Path) -> Result<(PathBuf, String)> {
    let module = go_dir().join(tool.module_dir);
    let go_mod = fs::read_to_string(module.join("go.mod"))
        .with_context(|| format!("reading {}/go.mod", module.display()))?;
    let version = required_version(&go_mod, tool.versioned_module).with_context(|| {
        format!(
            "{}/go.mod does not require {}",
            module.display(),
            tool.versioned_module
        )
    })?;
    let mut inputs = fs::read(module.join("go.sum")).unwrap_or_default();
    // A main package of ours is part of what is built.
    if let Ok(main) = fs::read(module.join("main.go")) {
        inputs.extend(main);
    }
    let key = format!("{}-{}-{:016x}", tool.name, version, fnv1a(&inputs));
    let dir = bin_root.join(key);
    let binary = dir.join(tool.name);
    if binary.is_file() {
        return Ok((binary, version));
    }
    let go = find_go()?;
    eprintln!(
        "testenv: building {} {} from its Go module (first run only; a few minutes)...",
        tool.name, version
    );
    fs::create_dir_all(&dir)?;
    let partial = dir.join(format!("{}.partial", tool.name));
    let build_dir = match tool.build_in {
        BuildIn::ToolModule => module.clone(),
        BuildIn::CopyWithPlaceholder(placeholder_dir) => {
            let source = module_source(tool.module_dir, tool.versioned_module)?;
            let copy = dir.join("src");
            if copy.exists() {
                fs::remove_dir_all(&copy)?;
            }
            copy_tree(&source, &copy)
                .with_context(|| format!("copying {} to {}", source.display(), copy.display()))?;
            fs::create_dir_all(copy.join(placeholder_dir))?;
            fs::write(
                copy.join(placeholder_dir).join("placeholder.yaml"),
                "# Not built for the tests: the release process generates these manifests.\n",
            )?;
            copy
        }
    };
    let mut cmd = Command::new(go);
    cmd.current_dir(&build_dir)
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "-mod=readonly")
        .args(["build", "-trimpath", "-o"])
        .arg(&partial);
    match tool.versioned_module {
        "k8s.io/kubernetes" => {
            cmd.arg("-ldflags").arg(kube_version_ldflags(&version)?);
        }
        // Else `krew version` says "unknown".
        "sigs.k8s.io/krew" => {
            cmd.arg("-ldflags").arg(format!(
                "-s -w -X sigs.k8s.io/krew/internal/version.gitTag={version}"
            ));
        }
        // Else `flux version` says 0.0.0-dev.0; the CLI's own Makefile sets it so.
        "github.com/fluxcd/flux2/v2" => {
            cmd.arg("-ldflags").arg(format!(
                "-s -w -X main.VERSION={}",
                version.trim_start_matches('v')
            ));
        }
        // Else `helm version` says v4.3 without the patch; the Makefile sets it so for a tag.
        "helm.sh/helm/v4" => {
            cmd.arg("-ldflags").arg(format!(
                "-s -w -X helm.sh/helm/v4/internal/version.version={version}"
            ));
        }
        _ => {}
    }
    cmd.arg(tool.package);
    let started = std::time::Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("running go build for {}", tool.name))?;
    if !status.success() {
        bail!(
            "go build of {} {} in {} failed ({status}); see the output above",
            tool.name,
            version,
            module.display()
        );
    }
    fs::rename(&partial, &binary)?;
    eprintln!(
        "testenv: built {} {} in {} s",
        tool.name,
        version,
        started.elapsed().as_secs()
    );
    if build_dir != module {
        let _ = fs::remove_dir_all(&build_dir);
    }
    Ok((binary, version))
}

/// Copies a directory tree of plain files, writable (the module cache's files are read-only).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
            fs::set_permissions(&target, fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

/// Without these the server reports `v0.0.0-master+$Format:%H$`, which kubectl cannot parse.
fn kube_version_ldflags(version: &str) -> Result<String> {
    let mut parts = version.trim_start_matches('v').split('.');
    let (Some(major), Some(minor)) = (parts.next(), parts.next()) else {
        bail!("cannot read major and minor from kubernetes version {version}");
    };
    let pkg = "k8s.io/component-base/version";
    Ok(format!(
        "-s -w -X {pkg}.gitVersion={version} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor} \
         -X {pkg}.gitTreeState=clean"
    ))
}

fn find_go() -> Result<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("go"))
            .find(|candidate| candidate.is_file())
    });
    match found {
        Some(go) => Ok(go),
        None => bail!(
            "Go is needed to build the test tools (kube-apiserver, etcd, krew) from their Go \
             modules, and `go` is not on PATH: install Go 1.25 or newer (Debian: apt-get install \
             golang-go; or https://go.dev/dl) and run the tests again"
        ),
    }
}

/// The version that `go.mod` requires of `module`, e.g. `v1.35.4`.
fn required_version(go_mod: &str, module: &str) -> Option<String> {
    go_mod.lines().find_map(|line| {
        let line = line.trim().trim_start_matches("require").trim();
        let mut words = line.split_whitespace();
        (words.next() == Some(module))
            .then(|| words.next().map(str::to_owned))
            .flatten()
    })
}

/// A stable hash for cache keys (std's hasher may change between Rust releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_required_version_in_either_form() {
        let go_mod = "module x\n\nrequire k8s.io/kubernetes v1.35.4\n\nrequire (\n\tgo.etcd.io/etcd/server/v3 v3.6.16\n)\n";
        assert_eq!(
            required_version(go_mod, "k8s.io/kubernetes").as_deref(),
            Some("v1.35.4")
        );
        assert_eq!(
            required_version(go_mod, "go.etcd.io/etcd/server/v3").as_deref(),
            Some("v3.6.16")
        );
        assert_eq!(required_version(go_mod, "k8s.io/api"), None);
    }

    #[test]
    fn pinned_modules_name_the_versions_that_build_here() {
        let read = |dir: &str| fs::read_to_string(go_dir().join(dir).join("go.mod")).unwrap();
        assert_eq!(
            required_version(&read("kube-apiserver"), "k8s.io/kubernetes").as_deref(),
            Some("v1.35.4")
        );
        // Every staging module is replaced by the published version of the same minor.
        let go_mod = read("kube-apiserver");
        let replaces: Vec<&str> = go_mod
            .lines()
            .filter(|l| l.starts_with("replace k8s.io/"))
            .collect();
        assert_eq!(replaces.len(), 29, "{replaces:?}");
        assert!(replaces.iter().all(|l| l.ends_with(" v0.35.4")));
    }

    #[test]
    fn krew_is_pinned_with_a_reflect2_that_runs_on_current_go() {
        let go_mod = fs::read_to_string(go_dir().join("krew").join("go.mod")).unwrap();
        assert_eq!(
            required_version(&go_mod, "sigs.k8s.io/krew").as_deref(),
            Some("v0.4.3")
        );
        // The reflect2 krew v0.4.3 names (v1.0.1) panics at start on Go 1.26.
        assert_eq!(
            required_version(&go_mod, "github.com/modern-go/reflect2").as_deref(),
            Some("v1.0.3-0.20250322232337-35a7c28c31ee")
        );
    }

    #[test]
    fn flux_modules_pin_the_versions_that_build_here() {
        let read = |dir: &str| fs::read_to_string(go_dir().join(dir).join("go.mod")).unwrap();
        // v1.10 and later need Go 1.27.
        for tool in [&SOURCE_CONTROLLER, &KUSTOMIZE_CONTROLLER] {
            assert_eq!(
                required_version(&read(tool.module_dir), tool.versioned_module).as_deref(),
                Some("v1.9.6"),
                "{}",
                tool.name
            );
        }
        assert_eq!(
            required_version(&read("flux"), "github.com/fluxcd/flux2/v2").as_deref(),
            Some("v2.9.5")
        );
        assert_eq!(
            required_version(&read("gitserver"), "github.com/fluxcd/pkg/gittestserver").as_deref(),
            Some("v0.25.0")
        );
        // The proxy refuses the artifact module v1.9.6 names (v0.18.3): see go/pin-flux.
        assert!(read("source-controller").contains(
            "replace github.com/fluxcd/pkg/artifact => github.com/fluxcd/pkg/artifact v0.18.1"
        ));
        // The controllers' own published replaces are carried over.
        assert!(
            read("kustomize-controller")
                .contains("replace sigs.k8s.io/kustomize/api => sigs.k8s.io/kustomize/api v0.21.1")
        );
    }

    #[test]
    fn sops_module_pins_the_versions_that_build_here() {
        let go_mod = fs::read_to_string(go_dir().join("sops").join("go.mod")).unwrap();
        assert_eq!(
            required_version(&go_mod, SOPS.versioned_module).as_deref(),
            Some("v3.13.3")
        );
        assert_eq!(
            required_version(&go_mod, AGE_KEYGEN.versioned_module).as_deref(),
            Some("v1.3.2")
        );
    }

    #[test]
    fn helm_modules_pin_the_versions_the_proxy_serves() {
        let read = |dir: &str| fs::read_to_string(go_dir().join(dir).join("go.mod")).unwrap();
        // The proxy serves these exact versions only (helm-controller's list is refused).
        assert_eq!(
            required_version(&read("helm-controller"), HELM_CONTROLLER.versioned_module).as_deref(),
            Some("v1.4.3")
        );
        assert_eq!(
            required_version(&read("helm"), HELM_CLI.versioned_module).as_deref(),
            Some("v4.3.2")
        );
        // helm-controller's own published replaces are carried over.
        assert!(
            read("helm-controller")
                .contains("replace sigs.k8s.io/kustomize/api => sigs.k8s.io/kustomize/api v0.20.1")
        );
    }

    #[test]
    fn ldflags_carry_major_and_minor() {
        let flags = kube_version_ldflags("v1.35.4").unwrap();
        assert!(flags.contains("gitVersion=v1.35.4"));
        assert!(flags.contains("gitMajor=1 "));
        assert!(flags.contains("gitMinor=35 "));
    }
}
