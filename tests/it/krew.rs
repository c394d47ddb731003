//! Krew: the committed manifest is the template rendered for Cargo.toml's version and passes
//! krew-index's own check; the archive the packaging code builds installs with real krew
//! (built from its Go module), runs through kubectl from `$KREW_ROOT/bin`, is listed without
//! warnings, completes with the helper the caveats set up, and uninstalls.

use std::fs;
use std::path::Path;
use std::process::Command;

use testenv::krew::{self, Shas};

use crate::support::{hermetic, run, scratch};

fn krew_tools() -> testenv::KrewBinaries {
    testenv::ensure_krew().unwrap_or_else(|e| panic!("building krew: {e:#}"))
}

/// krew-index's check of a manifest (`validate-krew-manifest`), without installing it.
#[track_caller]
fn assert_valid_for_krew_index(manifest: &Path) {
    let ran = run(Command::new(krew_tools().validate_manifest)
        .arg("-manifest")
        .arg(manifest)
        .arg("-skip-install"));
    assert_eq!(
        ran.code,
        Some(0),
        "{} fails krew-index validation: {}",
        manifest.display(),
        ran.stderr
    );
    assert!(
        ran.stderr.contains("structural validation OK")
            && ran
                .stderr
                .contains("no overlapping spec.platform[].selector"),
        "{}",
        ran.stderr
    );
}

/// Lines of a manifest that do not depend on the archives: no comments, no sha256 values.
fn without_shas(manifest: &str) -> Vec<&str> {
    manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim_start().starts_with("sha256:"))
        .collect()
}

#[test]
fn committed_manifest_is_the_template_for_cargo_version() {
    let path = krew::committed_manifest_path();
    let committed = fs::read_to_string(&path).expect("plugin-manifest/gitops.yaml exists");
    let version_line = format!("  version: v{}", env!("CARGO_PKG_VERSION"));
    assert!(
        committed.lines().any(|l| l == version_line),
        "{} must say `{version_line}` (Cargo.toml's version); regenerate it with \
         `krew/package manifest`",
        path.display()
    );
    let rendered = krew::release_manifest(Shas::Placeholder).unwrap();
    assert_eq!(
        without_shas(&committed),
        without_shas(&rendered),
        "plugin-manifest/gitops.yaml differs from krew/.krew.yaml rendered for this version; \
         regenerate it with `krew/package manifest`"
    );
    for platform in [
        "os: linux\n        arch: amd64",
        "os: linux\n        arch: arm64",
        "os: darwin\n        arch: amd64",
        "os: darwin\n        arch: arm64",
        "os: windows\n        arch: amd64",
    ] {
        assert!(committed.contains(platform), "{platform}");
    }
    assert_eq!(committed.matches("    - from: LICENSE\n").count(), 5);
    assert_valid_for_krew_index(&path);
}

/// `kubectl ARGS` seeing only `$KREW_ROOT/bin` and `tools` on PATH, as a Krew user's shell.
fn kubectl_krew(root: &Path, tools: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("kubectl");
    hermetic(&mut cmd);
    cmd.env(
        "PATH",
        std::env::join_paths([root.join("bin"), tools.to_path_buf()]).unwrap(),
    )
    .env("KREW_ROOT", root)
    .env("KREW_NO_UPGRADE_CHECK", "1")
    .args(args);
    cmd
}

/// A Git repository laid out as krew-index (`plugins/NAME.yaml`), holding `manifest`.
fn local_index(manifest: &Path) -> std::path::PathBuf {
    let index = scratch().join("krew-index");
    let _ = fs::remove_dir_all(&index);
    fs::create_dir_all(index.join("plugins")).unwrap();
    fs::copy(manifest, index.join("plugins").join("gitops.yaml")).unwrap();
    let git = |args: &[&str]| {
        let mut cmd = Command::new("git");
        hermetic(&mut cmd);
        let ran = run(cmd
            .arg("-C")
            .arg(&index)
            .args([
                "-c",
                "user.name=Index",
                "-c",
                "user.email=index@example.com",
            ])
            .args(args));
        assert_eq!(ran.code, Some(0), "git {args:?}: {}", ran.stderr);
    };
    git(&["init", "-q", "-b", "master"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "Add gitops"]);
    index
}

/// The caveats' completion set-up: the lines from `printf` to `chmod`.
fn completion_recipe(manifest: &str) -> String {
    let lines: Vec<&str> = manifest.lines().map(str::trim).collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("printf '#!/bin/sh"))
        .expect("the caveats show how to add kubectl_complete-gitops");
    let end = start
        + lines[start..]
            .iter()
            .position(|l| l.starts_with("chmod +x"))
            .expect("and make it executable");
    lines[start..=end].join("\n")
}

#[test]
fn krew_installs_the_package_and_kubectl_runs_it() {
    let cp = testenv::shared();
    let tools_built = krew_tools();

    // Package the binaries this test run built, as krew/package packages release builds.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_kubectl-gitops"))
        .parent()
        .unwrap();
    let out = scratch().join("krew-package");
    let package = krew::package(bin_dir, &out).unwrap_or_else(|e| panic!("packaging: {e:#}"));
    assert_eq!(package.tag, format!("v{}", env!("CARGO_PKG_VERSION")));
    let listed = run(Command::new("tar").arg("-tzf").arg(&package.archive));
    let mut files: Vec<&str> = listed.stdout.lines().collect();
    files.sort_unstable();
    assert_eq!(
        files,
        [
            "LICENSE",
            "README.md",
            "kubectl-gitops",
            "kubectl_complete-gitops"
        ]
    );
    let manifest = fs::read_to_string(&package.manifest).unwrap();
    assert_eq!(manifest.matches("- selector:").count(), 1, "{manifest}");
    assert!(
        manifest.contains(&format!("    sha256: {}\n", package.sha256)),
        "{manifest}"
    );
    assert_valid_for_krew_index(&package.manifest);

    // A Krew user's machine: krew as `kubectl krew`, kubectl, and $KREW_ROOT/bin on PATH.
    let root = scratch().join("krew-root");
    let tools = scratch().join("krew-tools");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&tools).unwrap();
    let link = |target: &Path, name: &str| {
        let _ = fs::remove_file(tools.join(name));
        std::os::unix::fs::symlink(target, tools.join(name)).unwrap();
    };
    link(&tools_built.krew, "kubectl-krew");
    for tool in ["kubectl", "git"] {
        link(
            &testenv::find_on_path(tool).unwrap_or_else(|| panic!("{tool} on PATH")),
            tool,
        );
    }
    let kubectl = |args: &[&str]| run(&mut kubectl_krew(&root, &tools, args));

    // Krew keeps its plugin index as a Git clone, and `uninstall` wants one. Offline, the
    // index is a local repository (a custom index, in Krew's terms) listing our manifest.
    let index = local_index(&package.manifest);
    let updated =
        run(kubectl_krew(&root, &tools, &["krew", "update"]).env("KREW_DEFAULT_INDEX_URI", &index));
    assert_eq!(updated.code, Some(0), "{}", updated.stderr);

    let version = kubectl(&["krew", "version"]);
    assert!(
        version
            .stdout
            .contains(&format!("GitTag            {}", tools_built.version)),
        "{}{}",
        version.stdout,
        version.stderr
    );

    let installed = kubectl(&[
        "krew",
        "install",
        &format!("--manifest={}", package.manifest.display()),
        &format!("--archive={}", package.archive.display()),
    ]);
    assert_eq!(installed.code, Some(0), "{}", installed.stderr);
    let said = format!("{}{}", installed.stdout, installed.stderr);
    assert!(said.contains("Installed plugin: gitops"), "{said}");
    assert!(
        said.contains("kubectl_complete-gitops"),
        "caveats shown: {said}"
    );
    // Installed from a manifest rather than from an index: "detached" in Krew's words.
    let krew_list = kubectl(&["krew", "list"]);
    assert_eq!(
        krew_list.stdout, "detached/gitops\n",
        "{}",
        krew_list.stderr
    );
    let store = root.join("store").join("gitops").join(&package.tag);
    for file in ["kubectl-gitops", "kubectl_complete-gitops", "LICENSE"] {
        assert!(
            store.join(file).is_file(),
            "{file} installed in {}",
            store.display()
        );
    }

    let ran = kubectl(&["gitops", "version"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stdout
            .starts_with(&format!("kubectl-gitops {} (commit ", package.tag)),
        "{}",
        ran.stdout
    );
    let kubeconfig = cp.kubeconfig.display().to_string();
    let ran = kubectl(&["gitops", "context", "--kubeconfig", &kubeconfig]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stdout
            .lines()
            .any(|l| l.starts_with("Server:") && l.ends_with(&cp.server)),
        "{}",
        ran.stdout
    );

    let listed = kubectl(&["plugin", "list"]);
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    assert_eq!(listed.stderr, "", "kubectl plugin list warns");
    let plugin = root.join("bin").join("kubectl-gitops");
    assert!(
        listed.stdout.lines().any(|l| Path::new(l) == plugin),
        "{} listed: {}",
        plugin.display(),
        listed.stdout
    );

    // The completion helper, set up as the caveats say, answers through kubectl.
    let recipe = completion_recipe(&manifest);
    let set_up = run(Command::new("sh")
        .arg("-c")
        .arg(&recipe)
        .env("KREW_ROOT", &root));
    assert_eq!(set_up.code, Some(0), "{recipe}: {}", set_up.stderr);
    let completed = kubectl(&["__complete", "gitops", "bl"]);
    assert_eq!(
        completed.stdout,
        "blame\tShow which commit, or which out-of-band change, set each field\n:4\n",
        "{}",
        completed.stderr
    );

    let removed = kubectl(&["krew", "uninstall", "gitops"]);
    assert_eq!(removed.code, Some(0), "{}", removed.stderr);
    assert!(
        fs::symlink_metadata(&plugin).is_err(),
        "{} removed",
        plugin.display()
    );
    assert!(!store.exists(), "{} removed", store.display());
    let ran = kubectl(&["gitops", "version"]);
    assert_ne!(
        ran.code,
        Some(0),
        "kubectl gitops still runs: {}",
        ran.stdout
    );
    let listed = kubectl(&["plugin", "list"]);
    assert!(
        !listed.stdout.contains("kubectl-gitops"),
        "{}",
        listed.stdout
    );
}
