//! The newcomer's demo (`./demo`, `testenv::demo`) on the test control plane: every step ends as
//! a user should see it end, the transcript shows the drift found, blamed and reverted, and the
//! cluster really is back at Git afterwards.

use std::process::Command;

use testenv::demo::{self, Options};

use crate::support::binary;

/// The text a command printed: from its `$ LINE` to the next command or narration line. With
/// `last`, the last run of that command, else the first.
fn output_of<'a>(transcript: &'a str, line: &str, last: bool) -> &'a str {
    let marker = format!("\n$ {line}\n");
    let found = if last {
        transcript.rfind(&marker)
    } else {
        transcript.find(&marker)
    };
    let start =
        found.unwrap_or_else(|| panic!("no `$ {line}` in the demo:\n{transcript}")) + marker.len();
    let rest = &transcript[start..];
    let end = rest
        .find("\n$ ")
        .into_iter()
        .chain(rest.find("\n# "))
        .min()
        .map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

fn live(ns: &str, jsonpath: &str) -> String {
    let out = testenv::shared()
        .kubectl()
        .args(["get", "-n", ns, "deployment/web", "-o"])
        .arg(format!("jsonpath={jsonpath}"))
        .output()
        .expect("running kubectl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn demo_finds_blames_and_reverts_drift() {
    let cp = testenv::shared();
    let work = tempfile::tempdir().expect("a scratch dir");
    let ns = format!("demo-shop-{}", std::process::id());
    let flux_ns = format!("demo-flux-{}", std::process::id());
    let options = Options {
        plugin: binary().to_path_buf(),
        work: work.path().to_path_buf(),
        namespace: ns.clone(),
        flux_namespace: flux_ns.clone(),
        color: false,
    };
    let mut transcript = Vec::new();
    let result = demo::run(cp, testenv::flux::shared(), &options, &mut transcript);
    let transcript = String::from_utf8(transcript).expect("the transcript is UTF-8");
    // `./demo` exits 0 exactly when this is Ok.
    if let Err(e) = result {
        panic!("the demo failed: {e:#}\n{transcript}");
    }

    // The history: three commits applied, one pending, by four people.
    let log = output_of(&transcript, "git log '--format=%h %an, %ar: %s'", false);
    for who in ["Alice Example", "Bob Builder", "Carol Coder"] {
        assert!(log.contains(who), "{log}");
    }
    let repo = work.path().join("shop");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .output()
            .expect("running git");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let head = git(&["rev-parse", "--short=7", "HEAD"]);
    let applied = git(&["rev-parse", "--short=7", "HEAD~1"]);
    assert_eq!(git(&["log", "-1", "--format=%an"]), "Dana Devops");

    let trace = output_of(
        &transcript,
        &format!("kubectl gitops trace deploy/web -n {ns}"),
        false,
    );
    assert!(trace.contains("File:        apps/web.yaml:1-28"), "{trace}");
    assert!(
        trace.contains(&format!(
            "Applied:     {applied} Carol Coder <carol@example.com>"
        )),
        "{trace}"
    );
    assert!(
        trace.contains(&format!(
            "Tracking:    main at {head}, 1 commit past the applied one"
        )),
        "{trace}"
    );
    assert!(
        trace.contains(&format!(
            "Reconciler:  Kustomization {flux_ns}/shop, Ready: True"
        )),
        "{trace}"
    );
    assert!(
        trace.contains("Found by:    Flux Kustomization labels"),
        "{trace}"
    );

    // Drift found: both changes made by hand, with their managers, and Dana's pending commit.
    let diff = output_of(&transcript, &format!("kubectl gitops diff -n {ns}"), false);
    assert!(
        diff.contains("@@ .spec.replicas @@ out of band: kubectl, Update (scale)\n-5\n+3\n"),
        "{diff}"
    );
    assert!(
        diff.contains(
            "@@ .spec.template.spec.containers[name=web].image @@ out of band: kubectl-set, Update"
        ) && diff.contains("-nginx:1.28\n+nginx:1.27.3\n"),
        "{diff}"
    );
    assert!(
        diff.contains(&format!(
            "@@ .data.LOG_LEVEL @@ pending: {head} Dana Devops"
        )) && diff.contains("-info\n+debug\n"),
        "{diff}"
    );
    assert!(
        diff.ends_with("1 in sync, 2 drifted, 0 missing, 0 orphaned\n"),
        "{diff}"
    );
    assert!(transcript.contains("# Exit code 1: drift found."));

    // Blamed: the fields changed by hand name their managers; the others their commits.
    let blame = output_of(
        &transcript,
        &format!("kubectl gitops blame deploy/web -n {ns}"),
        false,
    );
    let line_of = |field: &str| {
        blame
            .lines()
            .find(|l| l.ends_with(field))
            .unwrap_or_else(|| panic!("no `{field}` in the blame:\n{blame}"))
    };
    assert!(
        line_of("|   replicas: 5").starts_with("drift: kubectl Update/scale"),
        "{blame}"
    );
    assert!(
        line_of("image: nginx:1.28").starts_with("drift: kubectl-set Update"),
        "{blame}"
    );
    assert!(
        line_of("name: web-settings").contains("Bob Builder"),
        "{blame}"
    );
    assert!(line_of("cpu: 100m").contains("Alice Example"), "{blame}");
    assert!(
        line_of("progressDeadlineSeconds: 600").starts_with("(server default)"),
        "{blame}"
    );

    // Reverted, and in sync afterwards; the cluster says so too, not only the plugin.
    let revert = output_of(
        &transcript,
        &format!("kubectl gitops revert --all -n {ns} --yes"),
        false,
    );
    assert!(
        revert.contains(&format!(
            "Deployment.apps {ns}/web reverted: applied as kustomize-controller"
        )),
        "{revert}"
    );
    assert!(
        revert.contains("2 reverted, 0 unchanged, 0 conflict, 0 failed"),
        "{revert}"
    );
    let after = output_of(&transcript, &format!("kubectl gitops diff -n {ns}"), true);
    assert_eq!(after, "3 in sync, 0 drifted, 0 missing, 0 orphaned\n");
    assert!(
        transcript
            .trim_end()
            .ends_with("# Exit code 0: the cluster matches Git again.")
    );
    assert_eq!(
        live(
            &ns,
            "{.spec.replicas} {.spec.template.spec.containers[0].image}"
        ),
        "3 nginx:1.27.3"
    );
    let managers = live(&ns, "{.metadata.managedFields[*].manager}");
    assert!(!managers.contains("kubectl-set"), "{managers}");
}
