//! Fixture Git repositories, built with the real `git`, with several commits and authors.

use std::path::Path;
use std::process::Command;

/// A repository in a temporary directory.
pub struct GitRepo {
    dir: tempfile::TempDir,
    clock: i64,
}

/// Authors used across fixtures.
pub const ALICE: (&str, &str) = ("Alice Example", "alice@example.com");
pub const BOB: (&str, &str) = ("Bob Builder", "bob@example.com");

impl GitRepo {
    pub fn new() -> GitRepo {
        let dir = tempfile::tempdir().expect("temp dir for a fixture repo");
        let repo = GitRepo {
            dir,
            clock: 1_750_000_000,
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `file://` URL of the repository.
    pub fn url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    /// Runs git in the repository, hermetic, and returns its stdout.
    pub fn git(&self, args: &[&str]) -> String {
        git(self.path(), args)
    }

    pub fn write(&self, path: &str, text: &str) -> &Self {
        let full = self.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
        self
    }

    /// Commits everything as `author` and returns the commit id.
    pub fn commit(&mut self, author: (&str, &str), message: &str) -> String {
        self.clock += 3600;
        let date = format!("{} +0000", self.clock);
        self.git(&["add", "-A"]);
        let mut cmd = Command::new("git");
        cmd.current_dir(self.path());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("GIT_") {
                cmd.env_remove(key);
            }
        }
        let out = cmd
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", author.0)
            .env("GIT_AUTHOR_EMAIL", author.1)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_NAME", author.0)
            .env("GIT_COMMITTER_EMAIL", author.1)
            .env("GIT_COMMITTER_DATE", &date)
            .args(["commit", "-q", "-m", message])
            .output()
            .expect("git commit");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    /// `git log -1 --format=%H|%an|%ae|%s -- path`: the reference for "last change".
    pub fn last_change(&self, path: &str) -> (String, String, String, String) {
        let line = self.git(&["log", "-1", "--format=%H|%an|%ae|%s", "--", path]);
        let parts: Vec<&str> = line.trim().splitn(4, '|').collect();
        (
            parts[0].into(),
            parts[1].into(),
            parts[2].into(),
            parts[3].into(),
        )
    }

    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }
}

/// Runs git in `dir`, hermetic (no user or system config, no inherited GIT_*), and returns its
/// stdout; panics with git's stderr when it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(args)
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("git output is UTF-8")
}

/// A Deployment of one nginx container, as a file in Git declares it.
pub fn deployment(name: &str, replicas: u32) -> String {
    deployment_with(name, replicas, "")
}

/// [`deployment`] with a container port, requests and limits (which the server normalizes:
/// `cpu: 0.5` is stored as `500m`, `1024Mi` as `1Gi`).
pub fn sized_deployment(name: &str, replicas: u32) -> String {
    deployment_with(
        name,
        replicas,
        "          ports:
            - containerPort: 80
          resources:
            requests: {cpu: 0.5, memory: 1Gi}
            limits: {cpu: '1', memory: 1024Mi}
",
    )
}

fn deployment_with(name: &str, replicas: u32, container: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: web
          image: nginx:1.27
{container}"
    )
}
