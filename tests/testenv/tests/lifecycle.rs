//! The control plane starts, answers kubectl, and leaves no process behind, however its owner ends.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testenv::{ControlPlane, Lifetime};

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X')
        )
    })
}

fn wait_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while pids.iter().any(|p| running(*p)) {
        assert!(Instant::now() < deadline, "still running: {pids:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kubectl_get_namespaces(kubeconfig: &Path) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["get", "namespaces", "-o", "name"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn detached_up_then_down_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cluster");
    let cp = ControlPlane::start(&state, Lifetime::Detached).unwrap();
    assert!(kubectl_get_namespaces(&cp.kubeconfig).contains("namespace/kube-system"));
    // The limited user can read but not write.
    let denied = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&cp.kubeconfig)
        .args([
            "--context",
            testenv::VIEWER_CONTEXT,
            "create",
            "namespace",
            "nope",
        ])
        .output()
        .unwrap();
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("forbidden"));
    let pids = cp.pids().to_vec();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|p| running(*p)));
    assert!(ControlPlane::stop_dir(&state).unwrap());
    wait_gone(&pids);
    assert!(!state.exists(), "down removes the files");
    assert!(
        !ControlPlane::stop_dir(&state).unwrap(),
        "a second down finds nothing"
    );
}

/// Runs the testenv binary's `COMMAND DIR`, which starts processes, prints their pids and
/// aborts; checks that `count` pids were printed and that all of them end.
fn owner_aborts_and_nothing_is_left(command: &str, count: usize) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_testenv"))
        .arg(command)
        .arg(dir.path().join("cluster"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "the owner aborted");
    let pids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(
        pids.len(),
        count,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_gone(&pids);
}

#[test]
fn processes_die_with_an_owner_that_aborts() {
    owner_aborts_and_nothing_is_left("start-then-abort", 2);
}

/// etcd, kube-apiserver, source-controller, kustomize-controller and the Git server.
#[test]
fn flux_processes_die_with_an_owner_that_aborts() {
    owner_aborts_and_nothing_is_left("start-flux-then-abort", 5);
}

#[test]
fn the_audit_log_records_verbs_users_and_dry_runs() {
    let cp = testenv::shared();
    let ns = cp.namespace("audit");
    let out = cp
        .kubectl()
        .args([
            "-n",
            &ns,
            "create",
            "configmap",
            "probe",
            "--dry-run=server",
            "--from-literal=a=b",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = cp
        .audit_events_matching(|e| {
            e["verb"] == "create"
                && e["objectRef"]["namespace"] == ns.as_str()
                && e["objectRef"]["resource"] == "configmaps"
        })
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0]["requestURI"]
            .as_str()
            .unwrap()
            .contains("dryRun=All")
    );
    assert_eq!(events[0]["user"]["username"], "admin");
    // Metadata level: no request body, so no Secret value can reach the log.
    assert!(events[0].get("requestObject").is_none());
}

#[test]
fn without_go_the_build_fails_saying_what_to_install() {
    let empty_cache = tempfile::tempdir().unwrap();
    let empty_path = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_testenv"))
        .arg("build")
        .env("KUBECTL_GITOPS_TESTENV_CACHE", empty_cache.path())
        .env("PATH", empty_path.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`go` is not on PATH: install Go 1.25 or newer"),
        "{stderr}"
    );
}

#[test]
fn kube_apiserver_restarts_on_its_port_and_keeps_the_objects() {
    let dir = tempfile::tempdir().unwrap();
    let mut cp =
        ControlPlane::start(&dir.path().join("cluster"), Lifetime::TiedToThisProcess).unwrap();
    let kubeconfig = cp.kubeconfig.clone();
    let kubectl = |args: &[&str]| {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--request-timeout=5s"])
            .args(args)
            .output()
            .unwrap()
    };
    assert!(kubectl(&["create", "namespace", "kept"]).status.success());
    let before = cp.pids().to_vec();
    cp.stop_apiserver();
    wait_gone(&before[1..]);
    assert!(running(before[0]), "etcd keeps running");
    let down = kubectl(&["get", "namespace", "kept"]);
    assert!(!down.status.success(), "nothing answers while it is down");
    cp.start_apiserver().unwrap();
    assert_eq!(cp.pids()[0], before[0]);
    assert_ne!(cp.pids()[1], before[1]);
    let up = kubectl(&["get", "namespace", "kept", "-o", "name"]);
    assert_eq!(
        String::from_utf8_lossy(&up.stdout).trim(),
        "namespace/kept",
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    cp.stop_apiserver();
    wait_gone(&cp.pids()[1..]);
    let _ = Command::new("kill")
        .args(["-9", &cp.pids()[0].to_string()])
        .status();
}
