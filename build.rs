//! Records the Git commit the binary is built from, for `kubectl gitops version`.
//! `KUBECTL_GITOPS_COMMIT` overrides it (release builds from a source archive have no .git).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=KUBECTL_GITOPS_COMMIT");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    // `--git-path` finds each where it is (in a worktree, refs and packed-refs live in the
    // common directory). A watched path that does not exist makes cargo run this on every
    // build: packed-refs is watched only when there is one, and a branch written only there
    // through its directory of loose refs.
    let path = |name: &str| git(&["rev-parse", "--git-path", name]).map(std::path::PathBuf::from);
    let watch = |found: &std::path::Path| println!("cargo:rerun-if-changed={}", found.display());
    for name in ["HEAD", "packed-refs"] {
        if let Some(found) = path(name).filter(|p| p.exists()) {
            watch(&found);
        }
    }
    if let Some(found) = git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| path(&r)) {
        match found.parent() {
            _ if found.exists() => watch(&found),
            Some(dir) if dir.exists() => watch(dir),
            _ => {}
        }
    }
    let commit = std::env::var("KUBECTL_GITOPS_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let head = git(&["rev-parse", "HEAD"])?;
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            Some(if dirty { format!("{head}-dirty") } else { head })
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=KUBECTL_GITOPS_COMMIT={commit}");
}
