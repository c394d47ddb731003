//! OpenAPI v3 schemas and discovery read from the real control plane, and their disk cache.
//!
//! Each test acts as a user of its own (admin impersonating a unique name), so that its requests
//! can be counted in the audit log that every test of this binary shares.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use kubectl_gitops::cluster::kubeconfig::Selectors;
use kubectl_gitops::cluster::{self, Cluster, ConnectOptions, Impersonation, cache, openapi};
use kubectl_gitops::env::Env;
use kubectl_gitops::schema::{ListKind, Node, Schemas, Shape};

/// A unique user name for one test's requests.
fn marker(test: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "openapi-{test}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

async fn connect_as(user: &str) -> Cluster {
    let cp = testenv::shared();
    let options = ConnectOptions {
        selectors: Selectors {
            kubeconfig: Some(cp.kubeconfig.clone()),
            ..Default::default()
        },
        impersonate: Some(Impersonation {
            user: user.to_owned(),
            groups: vec!["system:masters".to_owned()],
        }),
        ..Default::default()
    };
    cluster::connect(&options, &Env::default())
        .await
        .expect("connecting to the test control plane")
}

/// The request URIs `user` sent under `prefix`, once `want` of them are logged and a moment
/// has passed for any extra one to show up.
fn requests(user: &str, prefix: &str, want: usize) -> Vec<String> {
    let cp = testenv::shared();
    let read = || -> Vec<String> {
        cp.audit_events()
            .expect("reading the audit log")
            .iter()
            .filter(|e| e["impersonatedUser"]["username"] == user)
            .filter_map(|e| e["requestURI"].as_str())
            .filter(|uri| uri.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while read().len() < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    read()
}

fn gvs(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Follows `spec.template.spec.containers[].ports`: `.name` a field, `[]` a list's items.
fn shape_at(schemas: &Schemas, (group, version, kind): (&str, &str, &str), path: &str) -> Shape {
    let mut node: Node<'_> = schemas
        .kind(group, version, kind)
        .unwrap_or_else(|| panic!("the server declares no {group}/{version} {kind}"));
    for part in path.split('.') {
        let (name, items) = match part.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (part, false),
        };
        node = node
            .field(name)
            .unwrap_or_else(|| panic!("{kind} has no {path} (at {name})"));
        if items {
            node = node
                .items()
                .unwrap_or_else(|| panic!("{kind} {path}: {name} is not a list"));
        }
    }
    node.shape()
}

fn keyed(keys: &[&str]) -> Shape {
    Shape::List(ListKind::Map {
        keys: keys.iter().map(|k| k.to_string()).collect(),
    })
}

/// Every file under `dir`, relative to it, with its modification time.
fn files(dir: &Path) -> Vec<(PathBuf, SystemTime)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("listing the cache") {
            let path = entry.expect("a cache entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let modified = path.metadata().unwrap().modified().unwrap();
                found.push((path.strip_prefix(dir).unwrap().to_path_buf(), modified));
            }
        }
    }
    found.sort();
    found
}

fn server_dir(root: &Path, what: &str) -> PathBuf {
    cache::server_dir(root, what, &testenv::shared().server)
}

/// The one cached document of `path` (`apis/apps/v1`).
fn document_file(root: &Path, path: &str) -> PathBuf {
    let dir = server_dir(root, "openapi").join(path);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.pop().unwrap()
}

fn age(file: &Path, by: Duration) {
    std::fs::File::options()
        .write(true)
        .open(file)
        .unwrap()
        .set_modified(SystemTime::now() - by)
        .unwrap();
}

const DEPLOYMENT: (&str, &str, &str) = ("apps", "v1", "Deployment");
const SERVICE: (&str, &str, &str) = ("", "v1", "Service");
const KUSTOMIZATION: (&str, &str, &str) = ("kustomize.toolkit.fluxcd.io", "v1", "Kustomization");
const APPLICATION: (&str, &str, &str) = ("argoproj.io", "v1alpha1", "Application");

#[tokio::test]
async fn fields_merge_as_the_server_schemas_say() {
    let cp = testenv::shared();
    cp.install_gitops_crds();
    let cluster = connect_as(&marker("shapes")).await;
    let cache_dir = tempfile::tempdir().unwrap();
    let wanted = gvs(&[
        "apps/v1",
        "v1",
        "kustomize.toolkit.fluxcd.io/v1",
        "argoproj.io/v1alpha1",
        "nothing.example.com/v1",
    ]);
    // The server publishes a new CRD's schema a moment after the CRD is established.
    let deadline = Instant::now() + Duration::from_secs(30);
    let schemas = loop {
        let schemas = openapi::schemas(&cluster, &wanted, Some(cache_dir.path()), false)
            .await
            .expect("reading the schemas");
        let published = [KUSTOMIZATION, APPLICATION]
            .iter()
            .all(|(g, v, k)| schemas.kind(g, v, k).is_some());
        if published || Instant::now() > deadline {
            break schemas;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let pod = "spec.template.spec";
    let cases = [
        (DEPLOYMENT, format!("{pod}.containers"), keyed(&["name"])),
        (
            DEPLOYMENT,
            format!("{pod}.containers[].ports"),
            keyed(&["containerPort", "protocol"]),
        ),
        (
            DEPLOYMENT,
            format!("{pod}.containers[].env"),
            keyed(&["name"]),
        ),
        (
            DEPLOYMENT,
            format!("{pod}.containers[].resources.limits.cpu"),
            Shape::Quantity,
        ),
        (
            DEPLOYMENT,
            format!("{pod}.containers[].args"),
            Shape::List(ListKind::Atomic),
        ),
        (
            DEPLOYMENT,
            format!("{pod}.tolerations"),
            Shape::List(ListKind::Atomic),
        ),
        (
            DEPLOYMENT,
            format!("{pod}.imagePullSecrets"),
            keyed(&["name"]),
        ),
        (
            DEPLOYMENT,
            format!("{pod}.nodeSelector"),
            Shape::Object { atomic: true },
        ),
        (
            DEPLOYMENT,
            "spec.selector".to_owned(),
            Shape::Object { atomic: true },
        ),
        (
            DEPLOYMENT,
            "spec.strategy.rollingUpdate.maxSurge".to_owned(),
            Shape::IntOrString,
        ),
        (
            DEPLOYMENT,
            "metadata.finalizers".to_owned(),
            Shape::List(ListKind::Set),
        ),
        (
            DEPLOYMENT,
            "metadata.labels".to_owned(),
            Shape::Object { atomic: false },
        ),
        (
            SERVICE,
            "spec.ports[].targetPort".to_owned(),
            Shape::IntOrString,
        ),
        (
            SERVICE,
            "spec.ports".to_owned(),
            keyed(&["port", "protocol"]),
        ),
        (
            SERVICE,
            "metadata.finalizers".to_owned(),
            Shape::List(ListKind::Set),
        ),
        (
            SERVICE,
            "metadata.labels".to_owned(),
            Shape::Object { atomic: false },
        ),
        // Flux declares no list type on patches: replaced whole by server-side apply.
        (
            KUSTOMIZATION,
            "spec.patches".to_owned(),
            Shape::List(ListKind::Atomic),
        ),
        (
            KUSTOMIZATION,
            "spec.patches[].target".to_owned(),
            Shape::Object { atomic: false },
        ),
        (
            KUSTOMIZATION,
            "spec.postBuild.substitute".to_owned(),
            Shape::Object { atomic: false },
        ),
        (
            KUSTOMIZATION,
            "metadata.finalizers".to_owned(),
            Shape::List(ListKind::Set),
        ),
        // Argo CD keeps Helm values as free-form objects.
        (
            APPLICATION,
            "spec.source.helm.valuesObject".to_owned(),
            Shape::Object { atomic: false },
        ),
        (
            APPLICATION,
            "spec.source.helm.valuesObject.replicaCount".to_owned(),
            Shape::Unknown,
        ),
    ];
    for (kind, path, want) in cases {
        assert_eq!(shape_at(&schemas, kind, &path), want, "{} {path}", kind.2);
    }
    // Not served: nothing declared, and no error.
    assert!(schemas.kind("nothing.example.com", "v1", "Thing").is_none());
}

#[tokio::test]
async fn a_second_run_reads_the_disk_cache_and_refresh_asks_again() {
    let user = marker("cache");
    let cluster = connect_as(&user).await;
    let root = tempfile::tempdir().unwrap();
    let wanted = gvs(&["apps/v1", "v1"]);

    openapi::schemas(&cluster, &wanted, Some(root.path()), false)
        .await
        .expect("first run");
    let first = requests(&user, "/openapi/v3", 3);
    assert_eq!(first.len(), 3, "{first:#?}");
    assert!(first[0].starts_with("/openapi/v3?") || first[0] == "/openapi/v3");
    // Each document is cached under the hash the index gave it.
    let cached = files(&server_dir(root.path(), "openapi"));
    for path in ["apis/apps/v1", "api/v1"] {
        let file = document_file(root.path(), path);
        let hash = file.file_stem().unwrap().to_str().unwrap();
        assert!(
            first
                .iter()
                .any(|uri| uri.starts_with(&format!("/openapi/v3/{path}?hash={hash}"))),
            "{hash} not in {first:#?}"
        );
    }
    assert_eq!(cached.len(), 3, "{cached:#?}");

    let again = openapi::schemas(&cluster, &wanted, Some(root.path()), false)
        .await
        .expect("second run");
    assert!(again.kind("apps", "v1", "Deployment").is_some());
    assert!(again.kind("", "v1", "Service").is_some());
    assert_eq!(
        files(&server_dir(root.path(), "openapi")),
        cached,
        "files rewritten"
    );

    openapi::schemas(&cluster, &wanted, Some(root.path()), true)
        .await
        .expect("refresh");
    // The second run asked nothing; the refresh asked everything again.
    let all = requests(&user, "/openapi/v3", 6);
    assert_eq!(all.len(), 6, "{all:#?}");
    let (mut asked_first, mut asked_again) = (first.clone(), all[3..].to_vec());
    asked_first.sort();
    asked_again.sort();
    assert_eq!(
        asked_again, asked_first,
        "the refresh asks what the first run asked"
    );
    let rewritten = files(&server_dir(root.path(), "openapi"));
    assert_eq!(rewritten.len(), 3);
    assert!(
        rewritten
            .iter()
            .zip(&cached)
            .all(|(new, old)| new.1 > old.1),
        "refresh rewrote the cache"
    );
}

#[tokio::test]
async fn stale_or_corrupt_cache_files_are_fetched_again() {
    let user = marker("stale");
    let cluster = connect_as(&user).await;
    let root = tempfile::tempdir().unwrap();
    let wanted = gvs(&["apps/v1", "v1"]);
    let openapi_dir = server_dir(root.path(), "openapi");
    let run = || openapi::schemas(&cluster, &wanted, Some(root.path()), false);

    run().await.expect("first run");
    let first = requests(&user, "/openapi/v3", 3);
    assert_eq!(first.len(), 3, "{first:#?}");

    // An index older than ten minutes is fetched again; the documents, whose hashes did not
    // change, are not.
    age(
        &openapi_dir.join("index.json"),
        Duration::from_secs(11 * 60),
    );
    run().await.expect("stale index");
    let after_stale = requests(&user, "/openapi/v3", 4);
    assert_eq!(after_stale.len(), 4, "{after_stale:#?}");
    assert_eq!(after_stale[3], first[0]);

    // A damaged document is never trusted: it is fetched again and rewritten.
    let apps = document_file(root.path(), "apis/apps/v1");
    std::fs::write(&apps, "{\"components\": {\"schemas\": ").unwrap();
    let schemas = run().await.expect("corrupt document");
    assert!(schemas.kind("apps", "v1", "Deployment").is_some());
    let after_corrupt = requests(&user, "/openapi/v3", 5);
    assert_eq!(after_corrupt.len(), 5, "{after_corrupt:#?}");
    assert!(
        after_corrupt[4].starts_with("/openapi/v3/apis/apps/v1?hash="),
        "{after_corrupt:#?}"
    );
    let text = std::fs::read_to_string(&apps).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).expect("the rewritten file is whole");

    // So is a damaged index.
    std::fs::write(openapi_dir.join("index.json"), "not json").unwrap();
    run().await.expect("corrupt index");
    let after_index = requests(&user, "/openapi/v3", 6);
    assert_eq!(after_index.len(), 6, "{after_index:#?}");
    assert_eq!(after_index[5], first[0]);

    // A group-version missing from a fresh cached index makes it ask the index again (a CRD
    // may have been installed since); the cached documents are still used.
    let schemas = openapi::schemas(
        &cluster,
        &gvs(&["apps/v1", "nothing.example.com/v1"]),
        Some(root.path()),
        false,
    )
    .await
    .expect("unknown group-version");
    assert!(schemas.kind("apps", "v1", "Deployment").is_some());
    let after_unknown = requests(&user, "/openapi/v3", 7);
    assert_eq!(after_unknown.len(), 7, "{after_unknown:#?}");
    assert_eq!(after_unknown[6], first[0]);
}

#[tokio::test]
async fn discovery_is_cached_the_same_way() {
    let user = marker("discovery");
    let cluster = connect_as(&user).await;
    let root = tempfile::tempdir().unwrap();
    let discovery_requests = |want| {
        let mut found = requests(&user, "/api", want);
        found.retain(|uri| uri == "/api" || uri == "/apis");
        found
    };

    let first = cache::discovery(&cluster, Some(root.path()), false)
        .await
        .expect("first run");
    assert_eq!(discovery_requests(2).len(), 2);
    let cached = cache::discovery(&cluster, Some(root.path()), false)
        .await
        .expect("second run");
    assert_eq!(
        cached.resolve("deploy").unwrap(),
        first.resolve("deploy").unwrap()
    );
    assert_eq!(cached.resources, first.resources);

    let file = server_dir(root.path(), "discovery").join("aggregated.json");
    std::fs::write(&file, "{\"resources\": [").unwrap();
    cache::discovery(&cluster, Some(root.path()), false)
        .await
        .expect("corrupt file");
    age(&file, Duration::from_secs(11 * 60));
    cache::discovery(&cluster, Some(root.path()), false)
        .await
        .expect("stale file");
    cache::discovery(&cluster, Some(root.path()), true)
        .await
        .expect("refresh");
    // First run, corrupt, stale, refresh: two requests each; the second run none.
    let all = discovery_requests(8);
    assert_eq!(all.len(), 8, "{all:#?}");
}
