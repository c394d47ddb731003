//! Test fixtures: repositories built with the real `git` CLI, whose output is the reference.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// Runs `git` in `dir` without the caller's Git environment or config, and returns its stdout
/// (trailing newline removed). Panics with git's stderr if it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_with_env(dir, args, &[])
}

/// Like [`git`], with extra environment variables.
pub fn git_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = git_command(dir, args, env)
        .output()
        .expect("running git (is it installed?)");
    assert!(
        output.status.success(),
        "git {args:?} failed in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut out = String::from_utf8(output.stdout).expect("git output is UTF-8");
    if out.ends_with('\n') {
        out.pop();
    }
    out
}

/// Raw bytes of `git show <commit>:<path>`.
pub fn git_show(dir: &Path, commit: &str, path: &str) -> Vec<u8> {
    let output = git_command(dir, &["show", &format!("{commit}:{path}")], &[])
        .output()
        .expect("running git show");
    assert!(output.status.success(), "git show {commit}:{path} failed");
    output.stdout
}

fn git_command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir).args(args);
    // Hermetic: nothing from the caller's Git environment, no global or system config.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", dir)
        .env("LC_ALL", "C");
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd
}

/// Someone who commits in a fixture.
#[derive(Clone, Copy)]
pub struct Person {
    pub name: &'static str,
    pub email: &'static str,
    /// Time zone as git writes it, e.g. "+0200".
    pub tz: &'static str,
}

pub const ALICE: Person = Person {
    name: "Alice Liddell",
    email: "alice@example.com",
    tz: "+0200",
};
pub const BOB: Person = Person {
    name: "Bob Builder",
    email: "bob@example.org",
    tz: "-0500",
};
pub const CAROL: Person = Person {
    name: "Carol Danvers",
    email: "carol@example.net",
    tz: "+0000",
};
pub const DAVE: Person = Person {
    name: "Dave Lister",
    email: "dave@example.com",
    tz: "+0530",
};

/// A working-tree repository in a temporary directory, with a clock for deterministic commits.
pub struct Fixture {
    _dir: TempDir,
    pub path: PathBuf,
    clock: i64,
}

impl Fixture {
    /// An empty repository on branch `main`.
    pub fn new() -> Fixture {
        let dir = TempDir::new().expect("temp dir");
        let path = dir.path().join("repo");
        std::fs::create_dir(&path).expect("creating repo dir");
        git(&path, &["init", "-q", "-b", "main"]);
        Fixture {
            _dir: dir,
            path,
            clock: 1_700_000_000,
        }
    }

    /// Runs git in the working tree.
    pub fn git(&self, args: &[&str]) -> String {
        git(&self.path, args)
    }

    /// Writes `content` to the repo-relative `path`, creating directories.
    pub fn write(&self, path: &str, content: &str) {
        let full = self.path.join(path);
        std::fs::create_dir_all(full.parent().expect("a parent")).expect("mkdir");
        std::fs::write(full, content).expect("write");
    }

    /// Creates a symlink at the repo-relative `path` pointing at `target` (as written).
    #[cfg(unix)]
    pub fn symlink(&self, path: &str, target: &str) {
        let full = self.path.join(path);
        std::fs::create_dir_all(full.parent().expect("a parent")).expect("mkdir");
        std::os::unix::fs::symlink(target, full).expect("symlink");
    }

    /// Stages everything and commits as `who`, one minute after the previous commit; returns the id.
    pub fn commit(&mut self, who: Person, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.commit_staged(who, message, &[])
    }

    /// Commits what is staged (extra `git commit` arguments allowed) and returns the id.
    pub fn commit_staged(&mut self, who: Person, message: &str, extra: &[&str]) -> String {
        self.clock += 60;
        let date = format!("{} {}", self.clock, who.tz);
        let name = format!("user.name={}", who.name);
        let email = format!("user.email={}", who.email);
        let mut args = vec!["-c", &name, "-c", &email, "commit", "-q", "-m", message];
        args.extend_from_slice(extra);
        git_with_env(
            &self.path,
            &args,
            &[("GIT_AUTHOR_DATE", &date), ("GIT_COMMITTER_DATE", &date)],
        );
        self.git(&["rev-parse", "HEAD"])
    }

    /// Merges `branch` into the current branch with a merge commit by `who`; returns the id.
    pub fn merge(&mut self, who: Person, branch: &str, message: &str) -> String {
        self.clock += 60;
        let date = format!("{} {}", self.clock, who.tz);
        let name = format!("user.name={}", who.name);
        let email = format!("user.email={}", who.email);
        git_with_env(
            &self.path,
            &[
                "-c", &name, "-c", &email, "merge", "-q", "--no-ff", "-m", message, branch,
            ],
            &[("GIT_AUTHOR_DATE", &date), ("GIT_COMMITTER_DATE", &date)],
        );
        self.git(&["rev-parse", "HEAD"])
    }
}

/// The fixture most tests share. History (oldest first):
///
/// ```text
/// c1 Alice  add app/deploy.yaml, app/service.yaml, base/kustomization.yaml, README.md, .gitignore
/// c2 Bob    change app/deploy.yaml
///   c3 Carol (branch feature) change base/kustomization.yaml
///   c4 Carol (branch feature) add feature.txt
/// c5 Alice  change app/service.yaml
/// m6 Bob    merge feature (base/kustomization.yaml and feature.txt changed through the merge)
/// c7 Dave   rename app/service.yaml -> app/svc.yaml
/// c8 Alice  symlinks under links/, a submodule entry `vendor/sub`, executable bin/run.sh
/// c9 Bob    change app/deploy.yaml again, delete README.md          (tag v1 on c2, v2 on c9)
/// ```
pub struct History {
    pub repo: Fixture,
    /// c1..c9 in order (m6 included).
    pub commits: Vec<String>,
}

pub fn history() -> History {
    let mut f = Fixture::new();
    let mut commits = Vec::new();
    f.write(
        "app/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n",
    );
    f.write(
        "app/service.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n",
    );
    f.write(
        "base/kustomization.yaml",
        "resources:\n  - ../app/deploy.yaml\n",
    );
    f.write("README.md", "# fixture\n");
    f.write(".gitignore", "*.log\n");
    commits.push(f.commit(ALICE, "Add the web app"));

    f.write(
        "app/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n",
    );
    commits.push(f.commit(BOB, "Scale web to 3\n\nMore traffic expected."));
    f.git(&["tag", "v1"]);

    f.git(&["checkout", "-q", "-b", "feature"]);
    f.write(
        "base/kustomization.yaml",
        "resources:\n  - ../app/deploy.yaml\nnamespace: web\n",
    );
    commits.push(f.commit(CAROL, "Put web in its namespace"));
    f.write("feature.txt", "feature\n");
    commits.push(f.commit(CAROL, "Add the feature note"));

    f.git(&["checkout", "-q", "main"]);
    f.write(
        "app/service.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: ClusterIP\n",
    );
    commits.push(f.commit(ALICE, "Make the service explicit"));
    commits.push(f.merge(BOB, "feature", "Merge branch 'feature'"));

    f.git(&["mv", "app/service.yaml", "app/svc.yaml"]);
    commits.push(f.commit(DAVE, "Rename the service manifest"));

    #[cfg(unix)]
    {
        f.symlink("links/passwd", "../../../etc/passwd");
        f.symlink("links/abs", "/etc/passwd");
        f.symlink("links/deploy", "../app/deploy.yaml");
        f.symlink("links/appdir", "../app");
        f.symlink("links/self", ".");
        // Lexically "links/self/self/../../.." is the root, but a filesystem resolves each
        // `self` to `links` first and then climbs above the root.
        f.symlink("links/sneaky", "self/self/../../..");
        f.symlink("links/loop1", "loop2");
        f.symlink("links/loop2", "loop1");
        f.symlink("links/dangling", "../nowhere.yaml");
        f.symlink("links/chain", "deploy");
    }
    f.write("bin/run.sh", "#!/bin/sh\necho run\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let script = f.path.join("bin/run.sh");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    f.git(&["add", "-A"]);
    // A submodule entry without a .gitmodules: only the tree entry matters here. Its empty
    // directory is what a clone without `--recurse-submodules` leaves behind.
    std::fs::create_dir_all(f.path.join("vendor/sub")).expect("mkdir");
    f.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{},vendor/sub", commits[0]),
    ]);
    commits.push(f.commit_staged(ALICE, "Add links, a script and a submodule", &[]));

    f.write(
        "app/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 5\n",
    );
    f.git(&["add", "app/deploy.yaml"]);
    f.git(&["rm", "-q", "README.md"]);
    commits.push(f.commit_staged(BOB, "Scale web to 5, drop the README", &[]));
    f.git(&[
        "-c",
        "user.name=Tagger",
        "-c",
        "user.email=tagger@example.com",
        "tag",
        "-a",
        "v2",
        "-m",
        "release 2",
    ]);

    History { repo: f, commits }
}
