//! Faults, on the real control plane: an API server that answers 429 or 503 for a while (a
//! small HTTP proxy in front of `kubectl proxy` injects them, since the real server cannot on
//! demand), a Git cache corrupted or locked by another run, and two reverts of the same objects
//! at once. Each ends right or with a clear error, in bounded time, never silently wrong.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::{ALICE, GitRepo};
use crate::hardening::{User, configmaps};
use crate::support::{Ran, kubectl, kubectl_gitops, run};

/// One injected answer.
#[derive(Clone, Copy)]
enum Fault {
    /// 429 with `Retry-After: <seconds>` and a `Status` body, as API priority and fairness
    /// answers.
    TooMany(u32),
    /// 503 with an HTML body and no `Retry-After`, as a load balancer without a backend answers.
    Unavailable,
}

/// `kubectl proxy` (a plain-HTTP door to the real API server, with the admin's credentials),
/// and in front of it a proxy that answers the first requests with faults, then forwards.
struct FaultyServer {
    port: u16,
    faults_served: Arc<AtomicUsize>,
    forwarded: Arc<AtomicUsize>,
    kubectl_proxy: Child,
}

impl Drop for FaultyServer {
    fn drop(&mut self) {
        let _ = self.kubectl_proxy.kill();
        let _ = self.kubectl_proxy.wait();
    }
}

impl FaultyServer {
    /// `faults` are served in order, one per request, then every request is forwarded;
    /// `repeat_last` serves the last fault for ever.
    fn start(faults: Vec<Fault>, repeat_last: bool) -> FaultyServer {
        let cp = testenv::shared();
        let mut kubectl_proxy = cp
            .kubectl()
            .args(["proxy", "--port=0", "--address=127.0.0.1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(kubectl_proxy.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Starting to serve on 127.0.0.1:PORT"
        let upstream: u16 = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("kubectl proxy said: {line:?}"));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let faults_served = Arc::new(AtomicUsize::new(0));
        let forwarded = Arc::new(AtomicUsize::new(0));
        let next = Arc::new(Mutex::new(0usize));
        let (served, passed) = (faults_served.clone(), forwarded.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (faults, next, served, passed) =
                    (faults.clone(), next.clone(), served.clone(), passed.clone());
                std::thread::spawn(move || {
                    serve(
                        client,
                        upstream,
                        &faults,
                        repeat_last,
                        &next,
                        &served,
                        &passed,
                    )
                });
            }
        });
        FaultyServer {
            port,
            faults_served,
            forwarded,
            kubectl_proxy,
        }
    }

    /// A kubeconfig that points at the faulty door.
    fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("faulty-{}.yaml", self.port));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n  - name: faulty\n    cluster:\n      \
                 server: http://127.0.0.1:{}\nusers:\n  - name: u\n    user: {{}}\n\
                 contexts:\n  - name: faulty\n    context: {{cluster: faulty, user: u}}\n\
                 current-context: faulty\n",
                self.port
            ),
        )
        .unwrap();
        path
    }
}

/// One client connection: requests answered with the next fault while there are some (keeping
/// the connection), then one forwarded to `upstream` with `Connection: close`, its answer
/// relayed as it comes, and the connection closed.
fn serve(
    mut client: TcpStream,
    upstream: u16,
    faults: &[Fault],
    repeat_last: bool,
    next: &Mutex<usize>,
    served: &AtomicUsize,
    passed: &AtomicUsize,
) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let end = line == "\r\n";
            head.push(line);
            if end {
                break;
            }
        }
        let length: usize = head
            .iter()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let fault = {
            let mut n = next.lock().unwrap();
            let fault = faults
                .get(*n)
                .or(faults.last().filter(|_| repeat_last))
                .copied();
            *n += 1;
            fault
        };
        if let Some(fault) = fault {
            served.fetch_add(1, Ordering::SeqCst);
            let (status, extra, body) = match fault {
                Fault::TooMany(after) => (
                    "429 Too Many Requests",
                    format!("Retry-After: {after}\r\nContent-Type: application/json\r\n"),
                    format!(
                        r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"Too many requests, please try again later.","reason":"TooManyRequests","details":{{"retryAfterSeconds":{after}}},"code":429}}"#
                    ),
                ),
                Fault::Unavailable => (
                    "503 Service Unavailable",
                    "Content-Type: text/html\r\n".to_owned(),
                    "<html>\n<body><h1>503 Service Unavailable</h1>\nNo server is available \
                     to handle this request.\n</body>\n</html>\n"
                        .to_owned(),
                ),
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if client.write_all(answer.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        passed.fetch_add(1, Ordering::SeqCst);
        let mut up = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
        for line in &head {
            let name = line.split(':').next().unwrap_or_default();
            if name.eq_ignore_ascii_case("connection") {
                continue;
            }
            if line == "\r\n" {
                up.write_all(b"Connection: close\r\n").unwrap();
            }
            up.write_all(line.as_bytes()).unwrap();
        }
        up.write_all(&body).unwrap();
        let _ = std::io::copy(&mut up, &mut client);
        return;
    }
}

/// A namespace with three ConfigMaps applied from `stamp`, in sync.
fn in_sync(hint: &str) -> (String, GitRepo) {
    let cp = testenv::shared();
    let ns = cp.namespace(hint);
    let mut repo = GitRepo::new();
    repo.write("apps/config.yaml", &configmaps(&["a", "b", "c"]));
    repo.commit(ALICE, "Config");
    let stamped = run(kubectl_gitops(&["stamp", "apps"]).current_dir(repo.path()));
    assert_eq!(stamped.code, Some(0), "{}", stamped.stderr);
    kubectl(
        &ns,
        &["apply", "--server-side", "-f", "-"],
        Some(&stamped.stdout),
    );
    (ns, repo)
}

#[test]
fn a_server_that_answers_429_and_503_for_a_while_is_asked_again() {
    let (ns, repo) = in_sync("faults-retry");
    let dir = tempfile::tempdir().unwrap();

    // The server's Retry-After is honoured (3 s, where our own backoff would wait 0.25 s).
    let server = FaultyServer::start(vec![Fault::TooMany(3)], false);
    let user = User::with_kubeconfig(server.kubeconfig(dir.path()));
    let started = Instant::now();
    let ran = user.run(&ns, repo.path(), &["context", "-o", "json"]);
    let took = started.elapsed();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(ran.stderr, "");
    assert_eq!(server.faults_served.load(Ordering::SeqCst), 1);
    assert!(took >= Duration::from_secs(3), "waited as asked: {took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");

    // 429 then three 503 without Retry-After: backoff 3 + 0.5 + 1 + 2 s, then the answer.
    let server = FaultyServer::start(
        vec![
            Fault::TooMany(3),
            Fault::Unavailable,
            Fault::Unavailable,
            Fault::Unavailable,
        ],
        false,
    );
    let user = User::with_kubeconfig(server.kubeconfig(dir.path()));
    let started = Instant::now();
    let ran = user.run(&ns, repo.path(), &["diff", "-o", "json"]);
    let took = started.elapsed();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let doc: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(doc["summary"]["inSync"], 3, "{doc:#}");
    assert_eq!(server.faults_served.load(Ordering::SeqCst), 4);
    assert!(server.forwarded.load(Ordering::SeqCst) > 3);
    assert!(took >= Duration::from_millis(6_500), "{took:?}");
}

#[test]
fn a_server_that_keeps_answering_503_is_given_up_on_in_bounded_time() {
    let (ns, repo) = in_sync("faults-give-up");
    let dir = tempfile::tempdir().unwrap();
    let server = FaultyServer::start(vec![Fault::Unavailable], true);
    let user = User::with_kubeconfig(server.kubeconfig(dir.path()));
    let started = Instant::now();
    let ran = user.run(&ns, repo.path(), &["diff"]);
    let took = started.elapsed();
    let line = ran.assert_one_line_error();
    assert_eq!(
        line,
        format!(
            "error: http://127.0.0.1:{} answered 503 Service Unavailable to GET /api: <html> \
             <body><h1>503 Service Unavailable</h1> No server is available to handle this \
             request. </body> </html> (gave up after 5 attempts)",
            server.port
        )
    );
    assert_eq!(server.faults_served.load(Ordering::SeqCst), 5);
    // 0.25 + 0.5 + 1 + 2 s of backoff: seconds, not the minutes of kube's own retry policy.
    assert!(took < Duration::from_secs(20), "{took:?}");

    // 429 for ever: the server's Retry-After (1 s) between tries, five tries, then the error.
    let server = FaultyServer::start(vec![Fault::TooMany(1)], true);
    let user = User::with_kubeconfig(server.kubeconfig(dir.path()));
    let started = Instant::now();
    let ran = user.run(&ns, repo.path(), &["trace", "cm/a"]);
    let took = started.elapsed();
    let line = ran.assert_one_line_error();
    assert!(
        line.ends_with(
            "answered 429 TooManyRequests to GET /api: Too many requests, please try again \
             later. (gave up after 5 attempts)"
        ),
        "{line}"
    );
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(20),
        "{took:?}"
    );

    // --request-timeout bounds the whole, retries included.
    let server = FaultyServer::start(vec![Fault::TooMany(30)], true);
    let user = User::with_kubeconfig(server.kubeconfig(dir.path()));
    let started = Instant::now();
    let ran = user.run(&ns, repo.path(), &["context", "--request-timeout=2s"]);
    let took = started.elapsed();
    let line = ran.assert_one_line_error();
    assert_eq!(
        line,
        format!(
            "error: http://127.0.0.1:{} did not answer GET /version within 2s \
             (--request-timeout); check the network or raise the timeout",
            server.port
        )
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// A bare repository reached by a `file://` URL (so the clone cache is used), whose objects
/// are applied stamped with that URL.
fn remote_repo(ns: &str) -> (GitRepo, tempfile::TempDir, String) {
    let mut work = GitRepo::new();
    work.write("apps/config.yaml", &configmaps(&["a", "b", "c"]));
    work.commit(ALICE, "Config");
    let bare = tempfile::tempdir().unwrap();
    let out = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(work.path())
        .arg(bare.path().join("apps.git"))
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = format!("file://{}", bare.path().join("apps.git").display());
    work.git(&["remote", "add", "origin", &url]);
    let stamped = run(kubectl_gitops(&["stamp", "apps"]).current_dir(work.path()));
    assert_eq!(stamped.code, Some(0), "{}", stamped.stderr);
    assert!(stamped.stdout.contains(&url), "{}", stamped.stdout);
    kubectl(
        ns,
        &["apply", "--server-side", "-f", "-"],
        Some(&stamped.stdout),
    );
    (work, bare, url)
}

/// The cache clone under `cache` (the only one).
fn clone_dir(cache: &Path) -> PathBuf {
    let mut found = Vec::new();
    let mut todo = vec![cache.join("kubectl-gitops/repos")];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.join("HEAD").is_file() && path.join("objects").is_dir() {
                found.push(path);
            } else if path.is_dir() {
                todo.push(path);
            }
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    found.pop().unwrap()
}

/// `<clone>.<what>`: the lock file and the clone in progress sit beside the clone.
fn beside(clone: &Path, what: &str) -> PathBuf {
    let name = clone.file_name().unwrap().to_string_lossy();
    clone.with_file_name(format!("{name}.{what}"))
}

/// The files under `dir` whose extension is `ext`; at least one.
fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                found.push(path);
            }
        }
    }
    assert!(!found.is_empty(), "no .{ext} under {}", dir.display());
    found
}

fn diff_json(user: &User, ns: &str, dir: &Path) -> (Ran, Option<Value>) {
    let ran = user.run(ns, dir, &["diff", "-o", "json"]);
    let doc = serde_json::from_str(&ran.stdout).ok();
    (ran, doc)
}

#[test]
fn a_corrupted_or_locked_git_cache_is_rebuilt_or_waited_for() {
    let cp = testenv::shared();
    let ns = cp.namespace("faults-cache");
    let (_work, _bare, _url) = remote_repo(&ns);
    let user = User::admin();
    // Not a checkout: the repository comes from the cache.
    let elsewhere = tempfile::tempdir().unwrap();
    let check_in_sync = |what: &str| {
        let (ran, doc) = diff_json(&user, &ns, elsewhere.path());
        assert_eq!(ran.code, Some(0), "{what}: {}\n{}", ran.stderr, ran.stdout);
        assert_eq!(doc.unwrap()["summary"]["inSync"], 3, "{what}");
    };
    check_in_sync("first clone");
    let clone = clone_dir(user.cache.path());

    // Each kind of damage, then a run: the clone is found unsound and cloned again, and the
    // report is right.
    type Damage = Box<dyn Fn(&Path)>;
    let damages: Vec<(&str, Damage)> = vec![
        (
            "HEAD overwritten",
            Box::new(|c: &Path| std::fs::write(c.join("HEAD"), "garbage").unwrap()),
        ),
        (
            "objects removed",
            Box::new(|c: &Path| {
                std::fs::remove_dir_all(c.join("objects")).unwrap();
                std::fs::create_dir_all(c.join("objects/pack")).unwrap();
            }),
        ),
        (
            "packs truncated",
            Box::new(|c: &Path| {
                for pack in files_under(&c.join("objects"), "pack") {
                    let len = std::fs::metadata(&pack).unwrap().len();
                    let file = std::fs::OpenOptions::new().write(true).open(&pack).unwrap();
                    file.set_len(len / 2).unwrap();
                }
            }),
        ),
        (
            "pack bytes overwritten",
            Box::new(|c: &Path| {
                for pack in files_under(&c.join("objects"), "pack") {
                    let mut bytes = std::fs::read(&pack).unwrap();
                    let len = bytes.len();
                    for b in &mut bytes[12..len - 20] {
                        *b = 0x5a;
                    }
                    std::fs::write(&pack, bytes).unwrap();
                }
            }),
        ),
        (
            "branch pointing at nothing",
            Box::new(|c: &Path| {
                let _ = std::fs::remove_file(c.join("packed-refs"));
                std::fs::create_dir_all(c.join("refs/heads")).unwrap();
                std::fs::write(
                    c.join("refs/heads/main"),
                    "0123456789abcdef0123456789abcdef01234567\n",
                )
                .unwrap();
            }),
        ),
        (
            "a clone cut short beside it",
            Box::new(|c: &Path| {
                let partial = beside(c, "partial");
                std::fs::create_dir_all(partial.join("objects")).unwrap();
                std::fs::write(partial.join("HEAD"), "ref: refs/heads/main\n").unwrap();
            }),
        ),
    ];
    for (what, damage) in damages {
        damage(&clone);
        check_in_sync(what);
        // Rebuilt: the next run is right too, and reuses it.
        check_in_sync(what);
    }

    // Locked by another run: waited for, then used.
    let lock = beside(&clone, "lock");
    let held = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .unwrap();
    held.lock().unwrap();
    // A clone is needed: the lock guards it.
    std::fs::remove_dir_all(&clone).unwrap();
    let started = Instant::now();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        drop(held);
    });
    check_in_sync("locked");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "waited for the other run: {:?}",
        started.elapsed()
    );
    release.join().unwrap();
}

#[test]
fn two_reverts_of_the_same_objects_at_once_lose_no_update() {
    let cp = testenv::shared();
    let ns = cp.namespace("faults-two-reverts");
    let mut repo = GitRepo::new();
    repo.write("apps/config.yaml", &configmaps(&["a", "b", "c", "d"]));
    repo.commit(ALICE, "Config");
    let stamped = run(kubectl_gitops(&["stamp", "apps"]).current_dir(repo.path()));
    kubectl(
        &ns,
        &["apply", "--server-side", "-f", "-"],
        Some(&stamped.stdout),
    );
    for name in ["a", "b", "c"] {
        kubectl(
            &ns,
            &[
                "patch",
                &format!("configmap/{name}"),
                "--type=merge",
                "-p",
                r#"{"data":{"key":"changed"}}"#,
            ],
            None,
        );
    }
    kubectl(&ns, &["label", "configmap/d", "team=x"], None);

    // Both plan from the same versions; each waits at "planned" until the other has planned
    // too, then both write at once. After the first apply of `b`, someone changes it again:
    // whichever run comes second must not overwrite that.
    let barrier = tempfile::tempdir().unwrap();
    let kubectl_admin = format!(
        "kubectl --kubeconfig '{}' -n {ns}",
        cp.admin_kubeconfig().display()
    );
    let hook = |me: &str| {
        let b = barrier.path().display();
        format!(
            "case \"$1:$2\" in
               planned:) touch '{b}/{me}'; n=0
                         while [ $(ls '{b}' | grep -c -e '^one$' -e '^two$') -lt 2 ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done ;;
               applied:b) if mkdir '{b}/b-changed' 2>/dev/null; then
                            {kubectl_admin} patch configmap/b --type=merge -p '{{\"data\":{{\"key\":\"by-hand-after\"}}}}' >/dev/null
                          fi ;;
             esac"
        )
    };
    let kc = cp.kubeconfig.display().to_string();
    let spawn = |me: &str| {
        let cache = tempfile::tempdir().unwrap();
        let child = kubectl_gitops(&[
            "revert",
            "--all",
            "--yes",
            "-o",
            "json",
            "--kubeconfig",
            &kc,
            "-n",
            &ns,
        ])
        .env("XDG_CACHE_HOME", cache.path())
        .env("KUBECTL_GITOPS_TEST_HOOK", hook(me))
        .current_dir(repo.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        (child, cache)
    };
    let (one, _c1) = spawn("one");
    let (two, _c2) = spawn("two");
    let results: Vec<(Option<i32>, Value, String)> = [one, two]
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            let doc: Value =
                serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
            (out.status.code(), doc, stderr)
        })
        .collect();
    let result_of = |run: usize, name: &str| -> (String, String) {
        let item = results[run].1["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["object"]["name"] == name)
            .unwrap_or_else(|| panic!("{name} in run {run}: {:#}", results[run].1));
        (
            item["result"].as_str().unwrap().to_owned(),
            item["message"].as_str().unwrap_or_default().to_owned(),
        )
    };
    for name in ["a", "b", "c", "d"] {
        let (r1, m1) = result_of(0, name);
        let (r2, m2) = result_of(1, name);
        let mut pair = [r1.as_str(), r2.as_str()];
        pair.sort();
        // Exactly one run wrote each object; the other found it changed since it read it,
        // wrote nothing, and said so.
        assert_eq!(pair, ["conflict", "reverted"], "{name}: {m1} | {m2}");
        let conflict = if r1 == "conflict" { &m1 } else { &m2 };
        assert!(
            conflict.contains("nothing written") || conflict.contains("that change is kept"),
            "{name}: {conflict}"
        );
    }
    for (code, _, stderr) in &results {
        assert!(matches!(code, Some(0 | 2)), "{stderr}");
    }
    // The change made by hand after the first revert of `b` is kept.
    let out = cp
        .kubectl()
        .args([
            "get",
            "-n",
            &ns,
            "configmap/b",
            "-o",
            "jsonpath={.data.key}",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "by-hand-after");
    // And everything else is as Git says.
    let user = User::admin();
    let ran = user.run(&ns, repo.path(), &["diff", "-o", "json"]);
    let doc: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(doc["summary"]["inSync"], 3, "{doc:#}");
    assert_eq!(doc["summary"]["drifted"], 1, "only b, changed by hand");
}
