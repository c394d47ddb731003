//! Fleet runs on two real control planes at once ("staging": the shared one; "prod": one of
//! this test's own, so that it can be killed): one repository (a kustomize overlay over a
//! base) reconciled into both by real Flux from the same URL, then different drift made in
//! each. `watch` follows both on one stream, `diff` and `trace` report per context, Git is read
//! once for both, and a cluster killed mid-run gives a partial report and exit 2.

use std::io::BufRead;
use std::process::Stdio;

use serde_json::Value;

use crate::fixture::{ALICE, GitRepo};
use crate::support::{Ran, flux_origin, kubectl_at, kubectl_gitops, reconciled_by_flux, run};
use crate::watch::Watcher;

const CONTEXTS: [&str; 2] = ["staging", "prod"];
/// ConfigMaps besides `settings`: enough dry runs, one at a time, to outlast a kill.
const MANY: usize = 150;

/// A base with a Deployment and a ConfigMap, an overlay that adds a label and a ConfigMap of
/// its own; many ConfigMaps besides, so that a run lasts long enough to be cut in the middle.
fn repository() -> GitRepo {
    let mut repo = GitRepo::new();
    let mut many = String::new();
    for i in 0..MANY {
        many.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: many-{i:03}\ndata:\n  key: value\n"
        ));
    }
    repo.write("base/web.yaml", &crate::fixture::deployment("web", 2))
        .write(
            "base/config.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: normal\n",
        )
        .write("base/many.yaml", &many)
        .write(
            "base/kustomization.yaml",
            "resources: [web.yaml, config.yaml, many.yaml]\n",
        )
        .write(
            "apps/kustomization.yaml",
            "resources: [../base]\nlabels:\n  - pairs: {team: shop}\n",
        );
    repo.commit(ALICE, "Shop");
    repo
}

struct Fleet {
    kubeconfig: std::path::PathBuf,
    ns: String,
    repo: GitRepo,
    cache: tempfile::TempDir,
}

impl Fleet {
    fn gitops(&self, args: &[&str]) -> Ran {
        let kc = self.kubeconfig.display().to_string();
        let mut all = vec![args[0], "--kubeconfig", &kc, "-n", &self.ns];
        all.extend_from_slice(&args[1..]);
        run(kubectl_gitops(&all)
            .env("XDG_CACHE_HOME", self.cache.path())
            .current_dir(self.repo.path()))
    }

    fn diff_json(&self, extra: &[&str]) -> (Ran, Value) {
        let mut args = vec!["diff", "-o", "json"];
        args.extend_from_slice(extra);
        let ran = self.gitops(&args);
        let json = serde_json::from_str(&ran.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\nstderr: {}", ran.stdout, ran.stderr));
        (ran, json)
    }
}

/// The context entry of a FleetDriftReport.
fn context<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["context"] == name)
        .unwrap_or_else(|| panic!("no context {name}: {report:#}"))
}

/// `(kind/name, status)` of every object of a context that is not in sync.
fn not_in_sync(report: &Value, name: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = context(report, name)["report"]["items"]
        .as_array()
        .unwrap_or_else(|| panic!("context {name} has no report: {report:#}"))
        .iter()
        .filter(|i| i["status"] != "in-sync")
        .map(|i| {
            (
                format!(
                    "{}/{}",
                    i["object"]["kind"].as_str().unwrap(),
                    i["object"]["name"].as_str().unwrap()
                ),
                i["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    found
}

/// The Git work a `-v` line that contains `marker` counts: renders, clones, fetches and
/// kustomize builds (the work that does not depend on which objects drifted).
fn git_work(stderr: &str, marker: &str) -> Vec<(String, u64)> {
    let line = stderr
        .lines()
        .rfind(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no line with {marker:?}: {stderr}"));
    let counted = &line[line.find("git: ").expect("the Git counters")..];
    let words: Vec<&str> = counted
        .split([' ', ',', ';'])
        .filter(|w| !w.is_empty())
        .collect();
    ["renders", "clones", "fetches", "builds"]
        .iter()
        .map(|what| {
            let at = words
                .iter()
                .position(|w| w == what)
                .unwrap_or_else(|| panic!("no {what} in {counted}"));
            (what.to_string(), words[at - 1].parse().unwrap())
        })
        .collect()
}

#[test]
fn one_run_reports_every_context_reads_git_once_and_survives_a_dead_cluster() {
    let staging = testenv::shared();
    let dir = tempfile::tempdir().unwrap();
    let mut prod =
        testenv::ControlPlane::start(&dir.path().join("cp"), testenv::Lifetime::TiedToThisProcess)
            .unwrap();
    let kubeconfig = dir.path().join("fleet.kubeconfig");
    testenv::fleet_kubeconfig(&kubeconfig, &[("staging", staging), ("prod", &prod)]).unwrap();
    let ns = staging.namespace("fleet");
    kubectl_at(
        &prod.kubeconfig,
        "default",
        &["create", "namespace", &ns],
        None,
    );

    // Real Flux in each cluster reconciles the same repository URL and commit.
    let repo = repository();
    let url = flux_origin(&repo);
    let commit = reconciled_by_flux(&ns, &repo, "apps");
    let prod_flux = testenv::flux::Flux::start(&prod).unwrap();
    let prod_commit = prod_flux
        .reconcile_from(
            &ns,
            "apps",
            &url,
            repo.path(),
            "apps",
            serde_json::json!({"targetNamespace": ns}),
        )
        .unwrap();
    assert_eq!(prod_commit, commit);
    let fleet = Fleet {
        kubeconfig: kubeconfig.clone(),
        ns: ns.clone(),
        repo,
        cache: tempfile::tempdir().unwrap(),
    };

    // In sync everywhere: exit 0, both contexts in sync, in every way of naming them.
    for names in [
        &["--context", "staging,prod"][..],
        &["--context", "staging", "--context", "prod"],
        &["--all-contexts"],
    ] {
        let (ran, report) = fleet.diff_json(names);
        assert_eq!(ran.code, Some(0), "{names:?}: {}", ran.stderr);
        assert_eq!(report["kind"], "FleetDriftReport");
        assert_eq!(report["summary"]["contexts"], 2, "{names:?}");
        assert_eq!(report["summary"]["inSync"], 2, "{names:?}");
        for name in CONTEXTS {
            let c = context(&report, name);
            assert_eq!(c["status"], "in-sync", "{name}: {c:#}");
            assert_eq!(c["report"]["kind"], "DriftReport");
            // The Deployment, the ConfigMaps: every object has its source.
            assert_eq!(c["report"]["summary"]["inSync"], MANY + 2, "{name}: {c:#}");
        }
        assert_eq!(
            context(&report, "prod")["server"].as_str(),
            Some(prod.server.as_str())
        );
    }
    let (_, picked) = fleet.diff_json(&["--context-selector", "pro*"]);
    let names: Vec<&str> = picked["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["context"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["prod"]);

    // watch follows both on one stream; each event names its context. The drift it sees is
    // made here, different in each cluster.
    let mut watch = Watcher::spawn(
        &kubeconfig,
        &ns,
        fleet.repo.path(),
        fleet.cache.path(),
        &["--all-contexts"],
    );
    for name in CONTEXTS {
        watch.said_lines(
            &format!("[{name}] watching"),
            |l| l.starts_with(&format!("[{name}] watching ")),
            1,
        );
    }
    kubectl_at(
        &prod.kubeconfig,
        &ns,
        &["scale", "deployment/web", "--replicas=5"],
        None,
    );
    let event = watch.event("web drifted in prod", |e| {
        e["object"]["name"] == "web" && e["newStatus"] == "drifted"
    });
    assert_eq!(event["context"], "prod", "{event:#}");
    kubectl_at(
        &staging.kubeconfig,
        &ns,
        &[
            "patch",
            "configmap/settings",
            "--field-manager=hotfix",
            "-p",
            r#"{"data":{"mode":"degraded"}}"#,
        ],
        None,
    );
    let event = watch.event("settings drifted in staging", |e| {
        e["object"]["name"] == "settings" && e["newStatus"] == "drifted"
    });
    assert_eq!(event["context"], "staging", "{event:#}");
    assert_eq!(event["manager"], "hotfix", "{event:#}");
    let (code, said) = watch.stop();
    assert_eq!(code, Some(0), "{said:#?}");

    // diff: each context names its own drift, attributed to its own manager; exit 1.
    let (ran, report) = fleet.diff_json(&["--all-contexts", "-v", "--render-cache-size=0"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert_eq!(
        not_in_sync(&report, "staging"),
        [("ConfigMap/settings".to_owned(), "drifted".to_owned())]
    );
    assert_eq!(
        not_in_sync(&report, "prod"),
        [("Deployment/web".to_owned(), "drifted".to_owned())]
    );
    let prod_items = context(&report, "prod")["report"]["items"]
        .as_array()
        .unwrap();
    let web = prod_items
        .iter()
        .find(|i| i["object"]["name"] == "web")
        .unwrap();
    assert_eq!(web["fields"][0]["path"], ".spec.replicas", "{web:#}");
    assert_eq!(web["fields"][0]["why"]["manager"], "kubectl", "{web:#}");
    assert_eq!(report["summary"]["drifted"], 2);

    // Git read once: the fleet of two did the Git work of one context alone.
    let fleet_git = git_work(&ran.stderr, "fleet of 2 contexts, Git read once for all");
    let alone = fleet.gitops(&["diff", "--context", "prod", "-v", "--render-cache-size=0"]);
    assert_eq!(alone.code, Some(1), "{}", alone.stderr);
    let alone_git = git_work(&alone.stderr, "diff done, Git read");
    assert_eq!(
        fleet_git, alone_git,
        "fleet: {}\nalone: {}",
        ran.stderr, alone.stderr
    );
    assert_eq!(fleet_git[0], ("renders".to_owned(), 1), "{fleet_git:?}");
    assert_eq!(fleet_git[3], ("builds".to_owned(), 1), "{fleet_git:?}");
    // Every stderr line of a member is led by its context.
    assert!(
        ran.stderr.contains("[staging] [") && ran.stderr.contains("[prod] ["),
        "{}",
        ran.stderr
    );

    // The other formats: text grouped by context, a CONTEXT column, a summary table first.
    let text = fleet.gitops(&["diff", "--all-contexts"]);
    assert_eq!(text.code, Some(1), "{}", text.stderr);
    let staging_at = text.stdout.find("=== context staging (").unwrap();
    let prod_at = text.stdout.find("=== context prod (").unwrap();
    let web_at = text.stdout.find("--- live Deployment.apps").unwrap();
    let settings_at = text.stdout.find("--- live ConfigMap").unwrap();
    assert!(
        staging_at < settings_at && settings_at < prod_at && prod_at < web_at,
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .ends_with("fleet: 2 contexts: 0 in sync, 2 drifted, 0 failed\n")
    );
    let table = fleet.gitops(&["diff", "--all-contexts", "-o", "table"]);
    let rows: Vec<&str> = table.stdout.lines().collect();
    assert!(rows[0].starts_with("CONTEXT "), "{}", table.stdout);
    assert!(
        rows.iter()
            .any(|r| r.starts_with("prod ") && r.contains(" web ") && r.contains("drifted")),
        "{}",
        table.stdout
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("staging ") && r.contains(" settings ") && r.contains("hotfix")),
        "{}",
        table.stdout
    );
    let md = fleet.gitops(&["diff", "--all-contexts", "-o", "markdown"]);
    assert!(
        md.stdout.contains(&format!(
            "| `staging` | drifted | {} | 1 | 0 | 0 | 0 |",
            MANY + 1
        )),
        "{}",
        md.stdout
    );
    assert!(md.stdout.find("| Context |").unwrap() < md.stdout.find("#### context").unwrap());

    // trace: the same object in both, each context with its source.
    let trace = fleet.gitops(&["trace", "--all-contexts", "deploy/web", "-o", "json"]);
    assert_eq!(trace.code, Some(0), "{}", trace.stderr);
    let trace: Value = serde_json::from_str(&trace.stdout).unwrap();
    assert_eq!(trace["kind"], "FleetTraceReport");
    for name in CONTEXTS {
        let c = trace["contexts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["context"] == name)
            .unwrap();
        assert_eq!(c["items"][0]["source"]["file"], "base/web.yaml", "{c:#}");
    }

    // Commands that work on one cluster say so.
    let revert = fleet.gitops(&["revert", "--all-contexts", "deploy/web", "--yes"]);
    let line = revert.assert_one_line_error();
    assert!(
        line.contains("revert works on one context at a time"),
        "{line}"
    );

    // prod dies in the middle of a run (its ConfigMaps are listed, their dry runs begin, one
    // at a time): staging is reported in full, prod's row says why, exit 2.
    let kc = kubeconfig.display().to_string();
    let mut child = kubectl_gitops(&[
        "diff",
        "--kubeconfig",
        &kc,
        "-n",
        &ns,
        "--all-contexts",
        "-o",
        "json",
        "-v=2",
        "--server-side=true",
        "--concurrency=1",
        "--request-timeout=10s",
    ])
    .env("XDG_CACHE_HOME", fleet.cache.path())
    .current_dir(fleet.repo.path())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::BufReader::new(stdout), &mut text).unwrap();
        text
    });
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let listed = line.starts_with("[prod] ") && line.contains("listed configmaps");
        seen.push(line);
        if listed {
            prod.stop_apiserver();
            break;
        }
    }
    seen.extend(lines.map(|l| l.unwrap()));
    let status = child.wait().unwrap();
    let stdout = reader.join().unwrap();
    assert_eq!(status.code(), Some(2), "{seen:#?}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        context(&report, "staging")["status"],
        "drifted",
        "{report:#}"
    );
    assert_eq!(
        context(&report, "staging")["report"]["summary"]["inSync"],
        MANY + 1
    );
    assert_eq!(context(&report, "prod")["status"], "error", "{report:#}");
    assert_eq!(report["summary"]["failed"], 1);
    assert!(
        seen.iter()
            .any(|l| l.starts_with("[prod] error: ") || l.starts_with("error: context prod: ")),
        "{seen:#?}"
    );
    assert!(!seen.iter().any(|l| l.contains("panicked")), "{seen:#?}");
}
