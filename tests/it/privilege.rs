//! Least privilege, proven with the ClusterRoles the README documents, read from the README
//! itself: a user bound to the read role runs every read command; one bound to both roles
//! reverts; a user missing one rule is told the verb and the resource, and the other objects
//! are still reported (exit 2).

use serde_json::Value;

use crate::hardening::{
    User, WEB, applied, bind_cluster_wide, bind_in_namespace, configmaps, is_write,
};
use crate::support::kubectl;

/// The ClusterRoles of the README's "RBAC / least privilege" section, by name.
fn documented_roles() -> Vec<Value> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("reading README.md");
    let section = readme
        .split("\n## RBAC / least privilege\n")
        .nth(1)
        .expect("the README has an RBAC / least privilege section");
    let section = section.split("\n## ").next().unwrap();
    let roles: Vec<Value> = section
        .split("```yaml\n")
        .skip(1)
        .map(|block| {
            let yaml = block.split("```").next().unwrap();
            serde_saphyr::from_str(yaml).expect("the README's YAML parses")
        })
        .collect();
    assert_eq!(roles.len(), 2, "a read role and a revert role");
    roles
}

fn role(name: &str) -> Value {
    documented_roles()
        .into_iter()
        .find(|r| r["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the README defines {name}"))
}

/// Applies a ClusterRole (as admin).
fn apply_role(role: &Value) {
    kubectl("default", &["apply", "-f", "-"], Some(&role.to_string()));
}

/// `role` without the rules `keep` refuses, or without `verb`, under another name.
fn without(role: &Value, name: &str, keep: impl Fn(&Value) -> bool, verb: Option<&str>) -> Value {
    let mut role = role.clone();
    role["metadata"]["name"] = name.into();
    let rules: Vec<Value> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| keep(r))
        .cloned()
        .map(|mut r| {
            if let Some(verb) = verb {
                r["verbs"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|v| v.as_str() != Some(verb));
            }
            r
        })
        .collect();
    role["rules"] = Value::Array(rules);
    role
}

fn secret() -> String {
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: hunter2\n"
        .to_owned()
}

/// Drift of every kind revert handles: a value, a label, a scale, an object deleted.
fn drift(ns: &str) {
    kubectl(
        ns,
        &[
            "patch",
            "configmap/cm-a",
            "--type=merge",
            "-p",
            r#"{"data":{"key":"changed"}}"#,
        ],
        None,
    );
    kubectl(ns, &["label", "configmap/cm-b", "team=x"], None);
    kubectl(ns, &["scale", "deployment/web", "--replicas=5"], None);
    kubectl(ns, &["delete", "configmap/cm-gone"], None);
}

fn json(ran: &crate::support::Ran) -> Value {
    serde_json::from_str(&ran.stdout).unwrap_or_else(|e| {
        panic!(
            "-o json: {e}\nstdout: {}\nstderr: {}",
            ran.stdout, ran.stderr
        )
    })
}

fn statuses(doc: &Value) -> std::collections::BTreeMap<String, String> {
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["object"]["name"].as_str().unwrap().to_owned(),
                i["status"]
                    .as_str()
                    .or(i["result"].as_str())
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect()
}

fn objects() -> Vec<(&'static str, String)> {
    vec![
        ("web.yaml", WEB.to_owned()),
        ("config.yaml", configmaps(&["cm-a", "cm-b", "cm-gone"])),
        ("secret.yaml", secret()),
    ]
}

#[test]
fn the_read_role_runs_every_read_command_and_the_revert_role_reverts() {
    let cp = testenv::shared();
    let read = role("kubectl-gitops-read");
    let revert = role("kubectl-gitops-revert");
    apply_role(&read);
    apply_role(&revert);
    let ns = cp.namespace("privilege-roles");
    let repo = applied(
        &ns,
        &objects(),
        &[
            ("api.yaml", WEB.replace("name: web", "name: api")),
            ("settings.yaml", configmaps(&["settings"])),
        ],
    );
    drift(&ns);
    bind_cluster_wide("gitops-reader", "kubectl-gitops-read");
    let reader = User::unbound("gitops-reader");
    let dir = repo.path();

    let ran = reader.run(&ns, dir, &["context", "-o", "json"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(json(&ran)["user"], "gitops-reader");

    let ran = reader.run(
        &ns,
        dir,
        &[
            "trace",
            "deploy/web",
            "cm/cm-a",
            "secret/creds",
            "deploy/api",
            "-o",
            "json",
        ],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let doc = json(&ran);
    assert!(
        doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["error"].is_null()),
        "{doc:#}"
    );
    assert_eq!(
        doc["items"][3]["source"]["reconciler"]["kind"], "Kustomization",
        "the Flux objects were read: {doc:#}"
    );

    let want = [
        ("web", "drifted"),
        ("cm-a", "drifted"),
        ("cm-b", "drifted"),
        ("cm-gone", "missing"),
        ("creds", "in-sync"),
        ("api", "in-sync"),
        ("settings", "in-sync"),
    ];
    for mode in ["false", "auto"] {
        let ran = reader.run(
            &ns,
            dir,
            &["diff", &format!("--server-side={mode}"), "-o", "json"],
        );
        assert_eq!(ran.code, Some(1), "{mode}: {}", ran.stderr);
        let got = statuses(&json(&ran));
        for (name, status) in want {
            assert_eq!(
                got.get(name).map(String::as_str),
                Some(status),
                "{mode}: {got:?}"
            );
        }
        // The role lets every kind of the default scope be listed: no kind is left out.
        for line in ran.stderr.lines() {
            assert!(
                line.starts_with("warning: dry runs are forbidden"),
                "{mode}: {line}"
            );
        }
        if mode == "auto" {
            assert_eq!(
                ran.stderr
                    .matches("warning: dry runs are forbidden")
                    .count(),
                1,
                "{}",
                ran.stderr
            );
        }
    }
    // A dry run is a PATCH: the read role cannot, and says which right is missing.
    let ran = reader.run(&ns, dir, &["diff", "--server-side=true", "cm"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("cannot patch resource \"configmaps\""),
        "{}",
        ran.stderr
    );

    let ran = reader.run(&ns, dir, &["blame", "deploy/web"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stdout.contains("replicas: 5"), "{}", ran.stdout);
    let ran = reader.complete(dir, &["blame", "-n", &ns, "deploy/"]);
    assert!(ran.stdout.contains("deploy/web"), "{}", ran.stdout);

    // Reverting needs the revert role: the reader is refused per object, nothing written.
    let ran = reader.run(&ns, dir, &["revert", "--all", "--yes"]);
    assert_eq!(ran.code, Some(2), "{}\n{}", ran.stderr, ran.stdout);
    assert!(
        ran.stdout.contains("cannot patch resource"),
        "{}",
        ran.stdout
    );

    bind_cluster_wide("gitops-reverter", "kubectl-gitops-read");
    bind_cluster_wide("gitops-reverter", "kubectl-gitops-revert");
    let reverter = User::unbound("gitops-reverter");
    let ran = reverter.run(&ns, dir, &["revert", "--all", "--yes", "-o", "json"]);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stderr, ran.stdout);
    let got = statuses(&json(&ran));
    for name in ["web", "cm-a", "cm-b", "cm-gone"] {
        assert_eq!(got[name], "reverted", "{got:?}");
    }
    let ran = reader.run(&ns, dir, &["diff", "--server-side=false"]);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stderr, ran.stdout);
    // And the reverter used only the two verbs its role grants for writing.
    let writes: Vec<Value> = crate::hardening::audit_of("gitops-reverter", "patch")
        .into_iter()
        .filter(is_write)
        .collect();
    assert!(
        writes
            .iter()
            .all(|e| matches!(e["verb"].as_str(), Some("patch" | "create"))),
        "{writes:#?}"
    );
}

#[test]
fn a_missing_read_rule_is_named_and_the_other_objects_still_reported() {
    let cp = testenv::shared();
    let read = role("kubectl-gitops-read");
    let no_apps = without(
        &read,
        "kubectl-gitops-read-no-apps",
        |r| r["apiGroups"] != serde_json::json!(["apps"]),
        None,
    );
    apply_role(&no_apps);
    let ns = cp.namespace("privilege-no-apps");
    let repo = applied(&ns, &objects(), &[]);
    drift(&ns);
    bind_in_namespace(&ns, "gitops-partial", "kubectl-gitops-read-no-apps");
    let partial = User::unbound("gitops-partial");
    let dir = repo.path();

    // Named kinds: the one not allowed is an error naming verb and resource; exit 2.
    let ran = partial.run(
        &ns,
        dir,
        &["diff", "deployments", "configmaps", "-o", "json"],
    );
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    let errors = ran.error_lines();
    assert_eq!(errors.len(), 1, "{}", ran.stderr);
    assert!(
        errors[0].starts_with("error: deployments.apps: forbidden: ")
            && errors[0].contains(
                "User \"gitops-partial\" cannot list resource \"deployments\" in API group \"apps\""
            )
            && errors[0].ends_with("ask a cluster admin for an RBAC role that allows it"),
        "{}",
        errors[0]
    );
    let got = statuses(&json(&ran));
    assert_eq!(
        got.get("cm-a").map(String::as_str),
        Some("drifted"),
        "{got:?}"
    );
    assert_eq!(
        got.get("cm-gone").map(String::as_str),
        Some("missing"),
        "{got:?}"
    );
    assert!(!got.contains_key("web"));

    // The whole namespace: the kind left out is named in one warning; the rest is compared.
    let ran = partial.run(&ns, dir, &["diff", "-o", "json"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let warning = ran
        .stderr
        .lines()
        .find(|l| l.starts_with("warning: forbidden to list "))
        .unwrap_or_else(|| panic!("a warning: {}", ran.stderr));
    assert!(
        warning.contains("deployments.apps")
            && warning.contains(&format!("in namespace \"{ns}\""))
            && warning.ends_with("were not compared"),
        "{warning}"
    );
    assert_eq!(statuses(&json(&ran))["cm-b"], "drifted");

    // trace and blame: the object that cannot be read is an error, the others are traced.
    let ran = partial.run(&ns, dir, &["trace", "deploy/web", "cm/cm-a", "-o", "json"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("cannot get resource \"deployments\" in API group \"apps\""),
        "{}",
        ran.stderr
    );
    let doc = json(&ran);
    assert_eq!(doc["items"][0]["object"]["name"], "cm-a", "{doc:#}");
    let ran = partial.run(&ns, dir, &["blame", "deploy/web"]);
    let line = ran.assert_one_line_error();
    assert!(
        line.contains("cannot get resource \"deployments\""),
        "{line}"
    );
}

#[test]
fn a_missing_revert_rule_is_named_and_the_other_objects_still_reverted() {
    let cp = testenv::shared();
    let read = role("kubectl-gitops-read");
    let revert = role("kubectl-gitops-revert");
    apply_role(&read);
    apply_role(&without(
        &revert,
        "kubectl-gitops-revert-no-create",
        |_| true,
        Some("create"),
    ));
    let ns = cp.namespace("privilege-no-create");
    let repo = applied(&ns, &objects(), &[]);
    drift(&ns);
    bind_in_namespace(&ns, "gitops-partial", "kubectl-gitops-read");
    bind_in_namespace(&ns, "gitops-partial", "kubectl-gitops-revert-no-create");
    let partial = User::unbound("gitops-partial");
    let ran = partial.run(&ns, repo.path(), &["revert", "--all", "--yes"]);
    assert_eq!(ran.code, Some(2), "{}\n{}", ran.stderr, ran.stdout);
    let line = ran
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("ConfigMap {ns}/cm-gone ")))
        .unwrap_or_else(|| panic!("{}", ran.stdout));
    assert!(
        line.contains(" failed: forbidden: ")
            && line.contains("cannot create resource \"configmaps\""),
        "{line}"
    );
    for name in ["cm-a", "cm-b"] {
        assert!(
            ran.stdout
                .lines()
                .any(|l| l.starts_with(&format!("ConfigMap {ns}/{name} reverted"))),
            "{name}: {}",
            ran.stdout
        );
    }
    let out = cp
        .kubectl()
        .args([
            "get",
            "-n",
            &ns,
            "configmap/cm-a",
            "-o",
            "jsonpath={.data.key}",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "value");
}
