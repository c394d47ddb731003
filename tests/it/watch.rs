//! `kubectl gitops watch` on the real control plane: each out-of-band change is one event with
//! the right object, fields and manager, and undoing it brings an in-sync event; a commit shows
//! as pending within one Git interval; an API server restart is survived; `--exec` gets every
//! event and cannot stop the watch; the audit log shows only reads and watches.
//!
//! The watch runs as a child process whose stdout is read line by line; every wait has a
//! deadline and none is a bare sleep.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixture::{ALICE, BOB, GitRepo, deployment};
use crate::support::{kubectl, kubectl_gitops, reconciled_by_flux, run};

/// A Secret value that must never be printed.
const PLANTED: &str = "planted-Secret-value-5c1e";

/// Long enough for a loaded two-core machine; a working watch answers in about a second.
const EVENT_DEADLINE: Duration = Duration::from_secs(30);

fn configmap(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: value\n")
}

/// A repository of Deployments `web` and `api` and ConfigMaps `settings` and `extra`, stamped
/// (our annotations, a `file://` URL: watch fetches it into its cache) and applied with
/// `kubectl apply --server-side`.
fn stamped_setup(apply: impl Fn(&str)) -> GitRepo {
    let mut repo = GitRepo::new();
    repo.write("apps/web.yaml", &deployment("web", 2))
        .write("apps/api.yaml", &deployment("api", 2))
        .write(
            "apps/config.yaml",
            &format!("{}---\n{}", configmap("settings"), configmap("extra")),
        );
    repo.commit(ALICE, "Apps");
    let stamped = run(kubectl_gitops(&["stamp", "apps"]).current_dir(repo.path()));
    assert_eq!(stamped.code, Some(0), "{}", stamped.stderr);
    apply(&stamped.stdout);
    repo
}

/// A running `kubectl gitops watch -o json`, read line by line.
pub(crate) struct Watcher {
    child: Child,
    events: Receiver<Value>,
    stderr: Receiver<String>,
    /// Every stderr line so far, for failure messages.
    said: Vec<String>,
    /// Every event so far.
    seen: Vec<Value>,
    /// Events read while waiting for another one, not yet asked for.
    pending: Vec<Value>,
}

impl Watcher {
    /// Starts the watch and waits until it says it is watching.
    fn start(kubeconfig: &Path, ns: &str, cwd: &Path, cache: &Path, extra: &[&str]) -> Watcher {
        Watcher::start_with_helm(kubeconfig, ns, (cwd, cache), extra, None)
    }

    /// A watch of `ns` on the shared control plane that polls Git and chart repositories
    /// every second, with `helm` on PATH.
    pub(crate) fn polling_each_second(
        ns: &str,
        (cwd, cache): (&Path, &Path),
        helm: &Path,
    ) -> Watcher {
        Watcher::start_with_helm(
            &testenv::shared().kubeconfig,
            ns,
            (cwd, cache),
            &["--git-interval", "1s"],
            Some(helm),
        )
    }

    /// [`Watcher::start`] with `helm` on PATH (else none).
    fn start_with_helm(
        kubeconfig: &Path,
        ns: &str,
        (cwd, cache): (&Path, &Path),
        extra: &[&str],
        helm: Option<&Path>,
    ) -> Watcher {
        let mut watcher = Watcher::spawn_with_helm(kubeconfig, ns, (cwd, cache), extra, helm);
        watcher.said_line(
            "watching",
            |l| l.starts_with("watching "),
            Duration::from_secs(120),
        );
        watcher
    }

    /// Starts the watch; its output is read as it comes.
    pub(crate) fn spawn(
        kubeconfig: &Path,
        ns: &str,
        cwd: &Path,
        cache: &Path,
        extra: &[&str],
    ) -> Watcher {
        Watcher::spawn_with_helm(kubeconfig, ns, (cwd, cache), extra, None)
    }

    fn spawn_with_helm(
        kubeconfig: &Path,
        ns: &str,
        (cwd, cache): (&Path, &Path),
        extra: &[&str],
        helm: Option<&Path>,
    ) -> Watcher {
        let kc = kubeconfig.display().to_string();
        let mut args = vec!["watch", "--kubeconfig", &kc, "-n", ns];
        if !extra.contains(&"-o") {
            args.extend(["-o", "json"]);
        }
        args.extend_from_slice(extra);
        let mut cmd = kubectl_gitops(&args);
        crate::support::path_with_helm(&mut cmd, helm);
        let mut child = cmd
            .env("XDG_CACHE_HOME", cache)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting kubectl gitops watch");
        let json = !extra.contains(&"-o");
        let (events_tx, events) = channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event = if json {
                    serde_json::from_str(&line).unwrap_or_else(|e| {
                        panic!("watch -o json printed a bad line ({e}): {line}")
                    })
                } else {
                    Value::String(line)
                };
                if events_tx.send(event).is_err() {
                    break;
                }
            }
        });
        let (stderr_tx, stderr) = channel();
        let err = child.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if stderr_tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watcher {
            child,
            events,
            stderr,
            said: Vec::new(),
            seen: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Waits for a stderr line that `matches`.
    fn said_line(
        &mut self,
        what: &str,
        matches: impl Fn(&str) -> bool,
        within: Duration,
    ) -> String {
        if let Some(line) = self.said.iter().find(|l| matches(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.said.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no stderr line {what} within {within:?}; stderr: {:#?}",
                        self.said
                    )
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "watch ended ({:?}) before saying {what}; stderr: {:#?}",
                    self.child.try_wait(),
                    self.said
                ),
            }
        }
    }

    /// Waits until `count` stderr lines match.
    pub(crate) fn said_lines(&mut self, what: &str, matches: impl Fn(&str) -> bool, count: usize) {
        let deadline = Instant::now() + EVENT_DEADLINE;
        while self.said.iter().filter(|l| matches(l)).count() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.said.push(line),
                Err(e) => panic!(
                    "not {count} stderr lines {what} within {EVENT_DEADLINE:?} ({e:?}): {:#?}",
                    self.said
                ),
            }
        }
    }

    /// Reads stderr that is already there, without waiting.
    fn drain_stderr(&mut self) {
        while let Ok(line) = self.stderr.try_recv() {
            self.said.push(line);
        }
    }

    /// Waits for the next event about `name` (others are kept for later).
    /// The next event of `name`, which must be in sync to drifted because a chart repository
    /// published `version`, which the release does not have yet.
    pub(crate) fn published_event(&mut self, name: &str, version: &str) -> Value {
        let event = self.event_for(name);
        assert_eq!(
            (&event["oldStatus"], &event["newStatus"], &event["cause"]),
            (&json!("in-sync"), &json!("drifted"), &json!("chart")),
            "{event:#}"
        );
        let why = &event["fields"][0]["why"];
        assert_eq!(why["kind"], "published", "{event:#}");
        assert_eq!(why["version"], version, "{event:#}");
        event
    }

    pub(crate) fn event_for(&mut self, name: &str) -> Value {
        self.event(name, |e| e["object"]["name"] == name)
    }

    pub(crate) fn event(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.pending.iter().position(&matches) {
            return self.pending.remove(i);
        }
        let deadline = Instant::now() + EVENT_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => {
                    self.seen.push(event.clone());
                    if matches(&event) {
                        return event;
                    }
                    self.pending.push(event);
                }
                Err(e) => {
                    self.drain_stderr();
                    panic!(
                        "no event for {what} within {EVENT_DEADLINE:?} ({e:?}); events: {:#?}\nstderr: {:#?}",
                        self.seen, self.said
                    )
                }
            }
        }
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code and the rest of stderr.
    pub(crate) fn stop(&mut self) -> (Option<i32>, Vec<String>) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let code = self.wait_exit();
        (code, self.said.clone())
    }

    /// Waits (with a deadline) for the process to end by itself; reads all it said.
    fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The readers see end of file once the process is gone.
                while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
                    self.said.push(line);
                }
                while let Ok(event) = self.events.recv_timeout(Duration::from_secs(5)) {
                    self.seen.push(event.clone());
                    self.pending.push(event);
                }
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "watch did not end; stderr: {:#?}",
                self.said
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_pair(event: &Value) -> (String, String) {
    let text = |v: &Value| v.as_str().unwrap_or("(none)").to_owned();
    (text(&event["oldStatus"]), text(&event["newStatus"]))
}

/// The drifted field whose path contains `part`.
fn field<'a>(event: &'a Value, part: &str) -> &'a Value {
    event["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str().unwrap().contains(part))
        .unwrap_or_else(|| panic!("a field with {part}: {event:#}"))
}

fn kubeconfig() -> PathBuf {
    testenv::shared().kubeconfig.clone()
}

#[test]
fn each_out_of_band_change_is_one_event_and_undoing_it_another() {
    let cp = testenv::shared();
    let ns = cp.namespace("watch-oob");
    let mut repo =
        stamped_setup(|yaml| kubectl(&ns, &["apply", "--server-side", "-f", "-"], Some(yaml)));
    repo.write(
        "apps/secret.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: credentials\nstringData:\n  password: {PLANTED}\n"
        ),
    );
    repo.commit(ALICE, "Credentials");
    let stamped = run(kubectl_gitops(&["stamp", "apps/secret.yaml"]).current_dir(repo.path()));
    kubectl(
        &ns,
        &["apply", "--server-side", "-f", "-"],
        Some(&stamped.stdout),
    );
    let cache = tempfile::tempdir().unwrap();
    let mut watch = Watcher::start(&kubeconfig(), &ns, repo.path(), cache.path(), &[]);
    let start_said = watch.said.join("\n");
    assert!(start_said.contains("in-sync: 5"), "{start_said}");

    // (object, change, undo, expected field, expected manager)
    type Step<'a> = (&'a str, Vec<&'a str>, Vec<&'a str>, &'a str, &'a str);
    let steps: Vec<Step> = vec![
        (
            "web",
            vec!["set", "image", "deployment/web", "web=nginx:1.28"],
            vec!["set", "image", "deployment/web", "web=nginx:1.27"],
            "image",
            "kubectl-set",
        ),
        (
            "api",
            vec!["scale", "deployment/api", "--replicas=5"],
            vec!["scale", "deployment/api", "--replicas=2"],
            ".spec.replicas",
            "kubectl",
        ),
        (
            "settings",
            vec!["label", "configmap/settings", "team=payments"],
            vec!["label", "configmap/settings", "team-"],
            "team",
            "kubectl-label",
        ),
        (
            "extra",
            vec![
                "patch",
                "configmap/extra",
                "--type=merge",
                "-p",
                r#"{"data":{"key":"changed"}}"#,
            ],
            vec![
                "patch",
                "configmap/extra",
                "--type=merge",
                "-p",
                r#"{"data":{"key":"value"}}"#,
            ],
            ".data.key",
            "kubectl-patch",
        ),
    ];
    for (name, change, undo, path, manager) in &steps {
        kubectl(&ns, change, None);
        let drifted = watch.event_for(name);
        assert_eq!(drifted["apiVersion"], "kubectl-gitops.dev/v1alpha1");
        assert_eq!(drifted["kind"], "DriftEvent");
        assert_eq!(
            status_pair(&drifted),
            ("in-sync".into(), "drifted".into()),
            "{change:?}: {drifted:#}"
        );
        assert_eq!(drifted["object"]["namespace"], ns.as_str());
        assert_eq!(drifted["cause"], "cluster");
        assert_eq!(drifted["manager"], *manager, "{change:?}: {drifted:#}");
        let f = field(&drifted, path);
        // When: the time managedFields gives the change (a scale's entry has none).
        assert_eq!(drifted["changedAt"], f["why"]["time"], "{drifted:#}");
        if *name != "api" {
            assert!(drifted["changedAt"].is_string(), "{drifted:#}");
        }
        assert_eq!(f["why"]["kind"], "out-of-band", "{f:#}");
        assert_eq!(f["why"]["manager"], *manager, "{f:#}");
        if *name == "api" {
            assert_eq!(f["why"]["subresource"], "scale");
            assert_eq!((f["git"].clone(), f["live"].clone()), (2.into(), 5.into()));
        }

        kubectl(&ns, undo, None);
        let back = watch.event_for(name);
        assert_eq!(
            status_pair(&back),
            ("drifted".into(), "in-sync".into()),
            "{undo:?}: {back:#}"
        );
        assert_eq!(back["fields"], serde_json::json!([]));
    }

    // A Secret's value changed by hand: the field, masked.
    kubectl(
        &ns,
        &[
            "patch",
            "secret/credentials",
            "--type=merge",
            "-p",
            r#"{"stringData":{"password":"changed-by-hand"}}"#,
        ],
        None,
    );
    let secret = watch.event_for("credentials");
    assert_eq!(
        status_pair(&secret),
        ("in-sync".into(), "drifted".into()),
        "{secret:#}"
    );
    assert_eq!(secret["manager"], "kubectl-patch");
    let f = field(&secret, ".data.password");
    assert_eq!(
        (f["git"].clone(), f["live"].clone()),
        ("(hidden git value)".into(), "(hidden live value)".into())
    );

    // A deletion is missing; applying it again as before is in sync.
    kubectl(&ns, &["delete", "configmap/extra"], None);
    let gone = watch.event_for("extra");
    assert_eq!(status_pair(&gone), ("in-sync".into(), "missing".into()));
    assert!(
        gone["source"]["file"]
            .as_str()
            .unwrap()
            .ends_with("config.yaml"),
        "{gone:#}"
    );
    let stamped = run(kubectl_gitops(&["stamp", "apps/config.yaml"]).current_dir(repo.path()));
    kubectl(
        &ns,
        &["apply", "--server-side", "-f", "-"],
        Some(&stamped.stdout),
    );
    let back = watch.event_for("extra");
    assert_eq!(
        status_pair(&back),
        ("missing".into(), "in-sync".into()),
        "{back:#}"
    );

    // A new object that nothing maps to Git.
    kubectl(
        &ns,
        &["create", "configmap", "by-hand", "--from-literal=a=b"],
        None,
    );
    let new = watch.event_for("by-hand");
    assert_eq!(
        status_pair(&new),
        ("(none)".into(), "no-source".into()),
        "{new:#}"
    );

    let (code, said) = watch.stop();
    assert_eq!(code, Some(0), "SIGTERM ends it cleanly: {said:#?}");
    let summary = said.last().expect("a summary line");
    assert!(
        summary.starts_with("stopped (SIGTERM) after ") && summary.contains("12 events"),
        "{said:#?}"
    );
    assert!(
        summary.contains("now 4 in sync, 1 drifted, 0 missing, 0 orphaned, 1 without source"),
        "{summary}"
    );

    // Exactly one event per change: no more than the ones waited for.
    let mut per_object: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for e in &watch.seen {
        per_object
            .entry(e["object"]["name"].as_str().unwrap().to_owned())
            .or_default()
            .push(status_pair(e));
    }
    let there_and_back = vec![
        ("in-sync".to_owned(), "drifted".to_owned()),
        ("drifted".to_owned(), "in-sync".to_owned()),
    ];
    for name in ["web", "api", "settings"] {
        assert_eq!(
            per_object[name], there_and_back,
            "{name}: {:#?}",
            watch.seen
        );
    }
    assert_eq!(per_object["extra"].len(), 4, "{:#?}", watch.seen);
    assert_eq!(per_object["credentials"].len(), 1, "{:#?}", watch.seen);
    assert_eq!(watch.seen.len(), 12, "{:#?}", watch.seen);
    // Secret values: never, in any event or message.
    let printed = format!("{:?}{:?}", watch.seen, said);
    assert!(
        !printed.contains(PLANTED) && !printed.contains("changed-by-hand"),
        "a Secret value was printed"
    );

    // Only reads and watches (auto mode may dry-run a drifted object).
    let ours = |e: &Value| {
        e["userAgent"]
            .as_str()
            .is_some_and(|ua| ua.starts_with("kubectl-gitops/"))
            && e["objectRef"]["namespace"] == ns.as_str()
    };
    let requests = cp
        .audit_events_matching(|e| ours(e) && e["verb"] == "watch")
        .unwrap();
    assert!(!requests.is_empty(), "the watches are in the audit log");
    let all = cp.audit_events_matching(ours).unwrap();
    for e in &all {
        let verb = e["verb"].as_str().unwrap();
        let uri = e["requestURI"].as_str().unwrap();
        assert!(
            matches!(verb, "get" | "list" | "watch")
                || (verb == "patch" && uri.contains("dryRun=All")),
            "{verb} {uri}"
        );
    }
}

#[test]
fn a_commit_shows_as_pending_within_one_git_interval() {
    let cp = testenv::shared();
    let ns = cp.namespace("watch-git");
    let mut repo =
        stamped_setup(|yaml| kubectl(&ns, &["apply", "--server-side", "-f", "-"], Some(yaml)));
    let cache = tempfile::tempdir().unwrap();
    let mut watch = Watcher::start(
        &kubeconfig(),
        &ns,
        repo.path(),
        cache.path(),
        &["--git-interval", "1s"],
    );
    repo.write("apps/web.yaml", &deployment("web", 4));
    let committed = Instant::now();
    let commit = repo.commit(BOB, "Scale web to 4");
    let event = watch.event_for("web");
    let latency = committed.elapsed();
    assert_eq!(
        status_pair(&event),
        ("in-sync".into(), "drifted".into()),
        "{event:#}"
    );
    assert_eq!(event["cause"], "git");
    assert_eq!(event["commit"]["id"], commit.as_str(), "{event:#}");
    assert_eq!(event["commit"]["author"], "Bob Builder");
    assert_eq!(event["commit"]["subject"], "Scale web to 4");
    let f = field(&event, ".spec.replicas");
    assert_eq!(f["why"]["kind"], "pending");
    assert_eq!((f["git"].clone(), f["live"].clone()), (4.into(), 2.into()));
    // One interval, plus a fetch and an evaluation on a busy machine.
    assert!(latency < Duration::from_secs(15), "{latency:?}");

    // Applying the commit brings it back in line.
    let stamped = run(kubectl_gitops(&["stamp", "apps/web.yaml"]).current_dir(repo.path()));
    kubectl(
        &ns,
        &["apply", "--server-side", "-f", "-"],
        Some(&stamped.stdout),
    );
    let applied = watch.event_for("web");
    assert_eq!(
        status_pair(&applied),
        ("drifted".into(), "in-sync".into()),
        "{applied:#}"
    );
    let (code, said) = watch.stop();
    assert_eq!(code, Some(0), "{said:#?}");
}

/// Deployment `web` and ConfigMap `settings` in `deploy/` of a local checkout, reconciled by
/// real Flux into a new namespace, and a watch of it from the checkout polling each second
/// (with `extra` arguments): the namespace, the checkout, the watch's cache and the watch.
fn flux_checkout_watched(
    prefix: &str,
    extra: &[&str],
) -> (String, GitRepo, tempfile::TempDir, Watcher) {
    let cp = testenv::shared();
    cp.install_gitops_crds();
    let ns = cp.namespace(prefix);
    let mut repo = GitRepo::new();
    repo.write("deploy/web.yaml", &deployment("web", 3))
        .write("deploy/config.yaml", &configmap("settings"));
    let applied = repo.commit(ALICE, "Apps");
    assert_eq!(reconciled_by_flux(&ns, &repo, "./deploy"), applied);
    let cache = tempfile::tempdir().unwrap();
    let args: Vec<&str> = ["--git-interval", "1s"]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    let watch = Watcher::start(&kubeconfig(), &ns, repo.path(), cache.path(), &args);
    (ns, repo, cache, watch)
}

#[test]
fn flux_objects_from_a_local_checkout_show_pending_and_new_objects_missing() {
    let (_ns, mut repo, _cache, mut watch) = flux_checkout_watched("watch-flux", &[]);
    assert!(
        watch.said.iter().any(|l| l == "in-sync: 2"),
        "{:#?}",
        watch.said
    );
    // The checkout's HEAD moves: a replica count and a new ConfigMap, not applied yet.
    repo.write("deploy/web.yaml", &deployment("web", 5))
        .write("deploy/new.yaml", &configmap("new-settings"));
    let commit = repo.commit(BOB, "Scale web, add new-settings");
    let pending = watch.event_for("web");
    assert_eq!(
        status_pair(&pending),
        ("in-sync".into(), "drifted".into()),
        "{pending:#}"
    );
    assert_eq!(pending["commit"]["id"], commit.as_str(), "{pending:#}");
    assert_eq!(field(&pending, ".spec.replicas")["why"]["kind"], "pending");
    let missing = watch.event_for("new-settings");
    assert_eq!(
        status_pair(&missing),
        ("(none)".into(), "missing".into()),
        "{missing:#}"
    );
    assert_eq!(missing["cause"], "git");
    let (code, said) = watch.stop();
    assert_eq!(code, Some(0), "{said:#?}");
    assert!(
        !watch.seen.iter().any(|e| e["object"]["name"] == "settings"),
        "settings did not change: {:#?}",
        watch.seen
    );
}

#[test]
fn a_commit_that_breaks_the_render_is_an_error_and_the_commit_that_mends_it_ends_it() {
    let (ns, mut repo, _cache, mut watch) = flux_checkout_watched("watch-mend", &["-v"]);
    // A base with a file kustomize cannot read: Flux's next reconcile would fail, and so does
    // desired.
    repo.write(
        "deploy/kustomization.yaml",
        "resources: [web.yaml, config.yaml, ../shared]\n",
    )
    .write("shared/kustomization.yaml", "resources: [broken.yaml]\n")
    .write("shared/broken.yaml", "kind: [ConfigMap\n");
    repo.commit(BOB, "Add a broken base");
    for name in ["web", "settings"] {
        let broken = watch.event_for(name);
        assert_eq!(
            status_pair(&broken),
            ("in-sync".into(), "error".into()),
            "{broken:#}"
        );
        assert_eq!(broken["cause"], "git");
        // Named by its path in the repository, not in a scratch copy.
        let error = broken["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("path 'shared'") && error.contains("broken.yaml"),
            "{broken:#}"
        );
        assert!(!error.contains("/tmp"), "{broken:#}");
    }
    // Both are tried again at the polls while the error lasts (the next, then two later).
    watch.said_lines(
        "of two rounds trying both again",
        |l| l.ends_with("retry: 2 objects in error, evaluated again"),
        2,
    );
    // The next commit leaves the base out: each object is in sync again, seen at the next poll.
    repo.write(
        "deploy/kustomization.yaml",
        "resources: [web.yaml, config.yaml]\n",
    );
    repo.commit(BOB, "Leave the broken base out");
    for name in ["web", "settings"] {
        let mended = watch.event_for(name);
        assert_eq!(
            status_pair(&mended),
            ("error".into(), "in-sync".into()),
            "{mended:#}"
        );
        assert_eq!(mended["cause"], "git");
    }
    let (code, said) = watch.stop();
    assert_eq!(code, Some(0), "{said:#?}");
    // Tried again while it lasted, the error was said once per object.
    for name in ["Deployment.apps", "ConfigMap"] {
        let errors = said
            .iter()
            .filter(|l| l.starts_with(&format!("error: {name} {ns}/")))
            .count();
        assert_eq!(errors, 1, "{name}: {said:#?}");
    }
}

#[test]
fn objects_whose_repository_cannot_be_cloned_are_tried_again_until_it_can() {
    let cp = testenv::shared();
    let ns = cp.namespace("watch-retry");
    let repo =
        stamped_setup(|yaml| kubectl(&ns, &["apply", "--server-side", "-f", "-"], Some(yaml)));
    // The Git server is away when the watch starts: nothing can be cloned.
    let away = repo.path().with_extension("away");
    std::fs::rename(repo.path(), &away).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut watch = Watcher::start(
        &kubeconfig(),
        &ns,
        elsewhere.path(),
        cache.path(),
        &["--git-interval", "1s"],
    );
    let restored = std::fs::rename(&away, repo.path());
    restored.unwrap();
    assert!(
        watch.said.iter().any(|l| l.starts_with("error: 4 (")),
        "{:#?}",
        watch.said
    );
    for name in ["web", "api", "settings", "extra"] {
        let back = watch.event_for(name);
        assert_eq!(
            status_pair(&back),
            ("error".into(), "in-sync".into()),
            "{back:#}"
        );
        assert_eq!(back["cause"], "retry", "{back:#}");
    }
    let (code, said) = watch.stop();
    assert_eq!(code, Some(0), "{said:#?}");
}

#[test]
fn a_restarted_api_server_is_survived_and_a_change_meanwhile_reported() {
    // A control plane of this test's own: stopping its API server harms no other test.
    let dir = tempfile::tempdir().unwrap();
    let mut cp =
        testenv::ControlPlane::start(&dir.path().join("cp"), testenv::Lifetime::TiedToThisProcess)
            .unwrap();
    let kubeconfig = cp.kubeconfig.clone();
    let own_kubectl = |args: &[&str], stdin: Option<&str>| {
        crate::support::kubectl_at(&kubeconfig, "restart", args, stdin)
    };
    own_kubectl(&["create", "namespace", "restart"], None);
    let repo =
        stamped_setup(|yaml| own_kubectl(&["apply", "--server-side", "-f", "-"], Some(yaml)));
    let cache = tempfile::tempdir().unwrap();
    let mut watch = Watcher::start(&kubeconfig, "restart", repo.path(), cache.path(), &["-v"]);
    // -v says when each watch is open; wait for those of the kinds changed below.
    for kind in ["deployments.apps", "configmaps"] {
        watch.said_line(
            &format!("{kind} watched"),
            |l| l.contains(&format!("] {kind}: watching from resourceVersion")),
            EVENT_DEADLINE,
        );
    }

    cp.stop_apiserver();
    watch.said_line(
        "lost the API server",
        |l| l.starts_with("warning: lost the API server"),
        EVENT_DEADLINE,
    );
    // While it is down, another API server of the same etcd takes a scale and a deletion.
    let second = cp.start_second_apiserver().unwrap();
    let through_second = |args: &[&str]| {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&second.kubeconfig)
            .args(["-n", "restart"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    through_second(&["scale", "deployment/web", "--replicas=7"]);
    through_second(&["delete", "configmap/extra"]);
    drop(second);
    assert!(
        watch.events.try_recv().is_err(),
        "nothing can be seen while the watched server is down"
    );

    cp.start_apiserver().unwrap();
    let event = watch.event_for("web");
    assert_eq!(
        status_pair(&event),
        ("in-sync".into(), "drifted".into()),
        "{event:#}"
    );
    assert_eq!(field(&event, ".spec.replicas")["live"], 7);
    let gone = watch.event_for("extra");
    assert_eq!(
        status_pair(&gone),
        ("in-sync".into(), "missing".into()),
        "{gone:#}"
    );
    watch.said_line(
        "watching again",
        |l| l.starts_with("watching again"),
        EVENT_DEADLINE,
    );
    // Changes after the restart are followed too.
    own_kubectl(&["scale", "deployment/web", "--replicas=2"], None);
    let back = watch.event_for("web");
    assert_eq!(
        status_pair(&back),
        ("drifted".into(), "in-sync".into()),
        "{back:#}"
    );
    let (code, said) = watch.stop();
    assert_eq!(code, Some(0), "{said:#?}");
    assert!(!said.iter().any(|l| l.contains("panicked")), "{said:#?}");
    cp.stop_apiserver();
    let _ = Command::new("kill")
        .args(["-9", &cp.pids()[0].to_string()])
        .status();
}

#[test]
fn exec_gets_each_event_as_json_and_a_failing_or_hanging_one_does_not_stop_the_watch() {
    let cp = testenv::shared();
    let ns = cp.namespace("watch-exec");
    let repo =
        stamped_setup(|yaml| kubectl(&ns, &["apply", "--server-side", "-f", "-"], Some(yaml)));
    let hooks = tempfile::tempdir().unwrap();
    let failing_file = hooks.path().join("failing.jsonl");
    let hanging_file = hooks.path().join("hanging.jsonl");
    let failing_cmd = format!("cat >> '{}'; exit 3", failing_file.display());
    let hanging_cmd = format!("cat >> '{}'; sleep 600", hanging_file.display());
    let cache = tempfile::tempdir().unwrap();
    let mut failing = Watcher::start(
        &kubeconfig(),
        &ns,
        repo.path(),
        cache.path(),
        &["--exec", &failing_cmd],
    );
    let mut hanging = Watcher::start(
        &kubeconfig(),
        &ns,
        repo.path(),
        cache.path(),
        &["--exec", &hanging_cmd, "--exec-timeout", "1s"],
    );

    kubectl(&ns, &["label", "configmap/settings", "team=a"], None);
    for w in [&mut failing, &mut hanging] {
        let e = w.event_for("settings");
        assert_eq!(status_pair(&e), ("in-sync".into(), "drifted".into()));
    }
    kubectl(&ns, &["label", "configmap/settings", "team-"], None);
    for w in [&mut failing, &mut hanging] {
        let e = w.event_for("settings");
        assert_eq!(status_pair(&e), ("drifted".into(), "in-sync".into()));
    }
    hanging.said_lines(
        "saying the hook timed out",
        |l| l.contains("did not finish within 1s"),
        2,
    );
    failing.said_lines(
        "saying the hook failed",
        |l| l.contains("exit status: 3"),
        2,
    );

    for (watch, file) in [(&mut failing, &failing_file), (&mut hanging, &hanging_file)] {
        let (code, said) = watch.stop();
        assert_eq!(code, Some(0), "a hook never decides the exit: {said:#?}");
        let text = std::fs::read_to_string(file).unwrap();
        let handed: Vec<Value> = text
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("--exec got bad JSON ({e}): {l}"))
            })
            .collect();
        assert_eq!(handed.len(), 2, "one run per event: {text}");
        assert!(
            handed
                .iter()
                .all(|e| e["kind"] == "DriftEvent" && e["object"]["name"] == "settings")
        );
        assert_eq!(
            status_pair(&handed[0]),
            ("in-sync".into(), "drifted".into())
        );
        assert_eq!(
            status_pair(&handed[1]),
            ("drifted".into(), "in-sync".into())
        );
    }
}

#[test]
fn exit_on_drift_ends_at_the_first_drift_and_timeout_ends_clean() {
    let cp = testenv::shared();
    let ns = cp.namespace("watch-gate");
    let repo =
        stamped_setup(|yaml| kubectl(&ns, &["apply", "--server-side", "-f", "-"], Some(yaml)));
    let cache = tempfile::tempdir().unwrap();

    let mut timed = Watcher::start(
        &kubeconfig(),
        &ns,
        repo.path(),
        cache.path(),
        &["--timeout", "2s"],
    );
    assert_eq!(timed.wait_exit(), Some(0), "{:#?}", timed.said);
    assert!(
        timed
            .said
            .last()
            .unwrap()
            .starts_with("stopped (--timeout) after "),
        "{:#?}",
        timed.said
    );

    let mut gate = Watcher::start(
        &kubeconfig(),
        &ns,
        repo.path(),
        cache.path(),
        &["--exit-on-drift", "-o", "text", "--color", "never"],
    );
    kubectl(&ns, &["scale", "deployment/web", "--replicas=3"], None);
    assert_eq!(gate.wait_exit(), Some(1), "{:#?}", gate.said);
    let line = gate.event("the text line", |_| true);
    let line = line.as_str().unwrap();
    let (time, rest) = line.split_once("  ").unwrap();
    assert!(report_time(time), "time first: {line}");
    assert!(
        rest == format!(
            "Deployment.apps {ns}/web  in-sync → drifted  .spec.replicas: 2 → 3 (out of band: kubectl, Update (scale))"
        ),
        "{line}"
    );
    assert!(
        !line.contains('\u{1b}'),
        "no colour with --color never: {line:?}"
    );

    // Drift already there at start: the gate fails at once.
    let ran = run(kubectl_gitops(&[
        "watch",
        "--kubeconfig",
        &kubeconfig().display().to_string(),
        "-n",
        &ns,
        "--exit-on-drift",
    ])
    .env("XDG_CACHE_HOME", cache.path())
    .current_dir(repo.path()));
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("drifted: 1 (Deployment.apps"),
        "{}",
        ran.stderr
    );
}

/// `2026-01-05T10:00:00Z`.
fn report_time(text: &str) -> bool {
    text.len() == 20 && text.ends_with('Z') && text.as_bytes()[10] == b'T'
}
